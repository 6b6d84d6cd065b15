//! Async throughput under KMS latency (issue 13, item 3): many data-key creations in flight, each needing exactly
//! one AWS KMS `Encrypt` round trip, against a loopback mock AWS KMS over TLS that holds every request 20 ms without
//! blocking the others. The mock runs on a tokio runtime of its own (2 threads); the measured side is
//!
//! - `async`: `run_tokio` with `TokioKmsTransport`, one task per operation in flight, on a tokio runtime with 2
//!   worker threads;
//! - `threads`: `run_concurrent` with the blocking `KmsTransport`, one OS thread per operation in flight;
//! - `tls` (the baseline, first): the same exchange with the mock and nothing else: TCP connect, TLS handshake
//!   (the transport's rustls configuration), one captured libmongocrypt request, its reply read to the end, one
//!   tokio task per operation on the same runtime. No libmongocrypt, runner or transport: what this machine allows
//!   at each level, against which the async runner's rate is also given.
//!
//! For 1, 16, 64 and 256 operations in flight it prints the achieved rate, the ideal rate (in flight ÷ 20 ms), their
//! ratio, the most requests the server held at once (so serialized requests would show), CPU time per operation
//! (client and mock server together: they share the process), the cores the process used meanwhile (CPU time ÷
//! wall time: on a shared machine, what the scheduler gave it), peak RSS and threads. Only ratios of the same run
//! are printed as results; nothing here asserts a time.
//!
//! `cargo bench -p libmongocrypt-bench --bench kms_latency --features kms-latency`. Without `--bench` (as
//! `cargo test --all-targets` runs it) it is a smoke run of a fraction of a second whose numbers mean nothing.
//! Knobs: `KMS_LATENCY_PHASE_MS` (measured time per phase, default 2000, at most 10000).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::{RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{run_concurrent, run_tokio, AsyncStateMachineIo, IoResult, StateMachineIo};
use libmongocrypt::{Crypt, KeyEncryptionKey, KmsCtx, KmsProviders};
use libmongocrypt_kms::tls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use libmongocrypt_kms::tls::{KmsTransport, TlsOptions, TokioKmsTransport};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const LATENCY: Duration = Duration::from_millis(20);
const KMS_HOST: &str = "kms.us-east-1.amazonaws.com";
const KEY_ARN: &str = "arn:aws:kms:us-east-1:579766882180:key/89fcc2c4-08b0-4bd9-9f25-e30687b580d0";
/// The AWS Encrypt reply of `tests/data/open/datakey-local-aws` (line ends made `\r\n` below).
const ENCRYPT_REPLY: &str = include_str!("../../tests/data/open/datakey-local-aws/kms-aws-encrypt-response.txt");

// ---------------------------------------------------------------------------------------------------------------
// The mock KMS.

/// A CA and a server certificate for the AWS host, made with rcgen.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "kms_latency bench CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("server key");
    let leaf = CertificateParams::new(vec![KMS_HOST.to_string()]).expect("server params");
    let cert = leaf.signed_by(&key, &issuer).expect("server certificate");
    Pki {
        ca_pem: ca_cert.pem(),
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

#[derive(Default)]
struct ServerStats {
    connections: AtomicUsize,
    requests: AtomicUsize,
    resumed: AtomicUsize,
    holding: AtomicUsize,
    max_holding: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

/// The mock AWS KMS: loopback only, on its own 2-thread runtime; every connection is one request, held
/// [`LATENCY`] with `tokio::time::sleep` (other requests go on meanwhile), answered with the fixture and closed.
/// A connection serves requests until one says `Connection: close` (libmongocrypt's, unless the transport keeps
/// connections alive); every connection is bounded by 60 s; the server stops when dropped (or after 5 minutes or
/// 200,000 connections).
struct MockKms {
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    stop: Arc<AtomicBool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl MockKms {
    fn start(pki: &Pki) -> MockKms {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), pki.key.clone_key())
            .expect("server certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let reply: Arc<[u8]> = ENCRYPT_REPLY.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes().into();
        let kept_alive = String::from_utf8_lossy(&reply).replacen("\r\nConnection: close\r\n", "\r\n", 1);
        assert!(kept_alive.len() < reply.len(), "the fixture says Connection: close");
        let reply_kept_alive: Arc<[u8]> = kept_alive.into_bytes().into();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mock-kms")
            .enable_all()
            .build()
            .expect("the mock KMS runtime");
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let stats = Arc::new(ServerStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (stats.clone(), stop.clone());
        runtime.spawn(async move {
            // Bounded: until dropped, at most 5 minutes, at most 200,000 connections.
            let until = Instant::now() + Duration::from_secs(300);
            let mut accepted_total = 0usize;
            while !st.load(Ordering::Relaxed) && Instant::now() < until && accepted_total < 200_000 {
                let Ok(accepted) = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await else {
                    continue;
                };
                let Ok((sock, _)) = accepted else { continue };
                accepted_total += 1;
                let _ = sock.set_nodelay(true);
                s.connections.fetch_add(1, Ordering::Relaxed);
                let (acceptor, reply, reply_kept_alive, stats) =
                    (acceptor.clone(), reply.clone(), reply_kept_alive.clone(), s.clone());
                tokio::spawn(async move {
                    let served = tokio::time::timeout(Duration::from_secs(60), async {
                        let mut tls = acceptor.accept(sock).await?;
                        if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                            stats.resumed.fetch_add(1, Ordering::Relaxed);
                        }
                        // Requests until one says `Connection: close` or the client closes between two.
                        let mut first = true;
                        loop {
                            let Some(closes) = read_request(&mut tls, first).await? else { return Ok(()) };
                            first = false;
                            stats.requests.fetch_add(1, Ordering::Relaxed);
                            let now = stats.holding.fetch_add(1, Ordering::Relaxed) + 1;
                            stats.max_holding.fetch_max(now, Ordering::Relaxed);
                            tokio::time::sleep(LATENCY).await;
                            stats.holding.fetch_sub(1, Ordering::Relaxed);
                            if !closes {
                                tls.write_all(&reply_kept_alive).await?;
                                tls.flush().await?;
                                continue;
                            }
                            tls.write_all(&reply).await?;
                            return tls.shutdown().await; // close_notify
                        }
                    })
                    .await;
                    let error = match served {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "connection took over 60 s".to_string(),
                    };
                    let mut errors = stats.errors.lock().unwrap();
                    if errors.len() < 8 {
                        errors.push(error);
                    }
                });
            }
        });
        MockKms { addr, stats, stop, runtime: Some(runtime) }
    }

    /// The most requests held at once since the last call, which it resets.
    fn take_max_holding(&self) -> usize {
        self.stats.max_holding.swap(0, Ordering::Relaxed)
    }
}

impl Drop for MockKms {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// Reads one HTTP request (head and Content-Length body), at most 64 KiB: whether it says `Connection: close`.
/// `None` if the client closed the connection before another request (not `first`).
async fn read_request(tls: &mut (impl AsyncReadExt + Unpin), first: bool) -> io::Result<Option<bool>> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    loop {
        let n = match tls.read(&mut chunk).await {
            Ok(0) | Err(_) if buf.is_empty() && !first => return Ok(None),
            read => read?,
        };
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed in the request"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]);
            let header = |name: &str| {
                head.split("\r\n")
                    .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)))
                    .map(|(_, v)| v.trim().to_owned())
            };
            let length = header("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Ok(Some(header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))));
            }
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("request too large"));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The driver side: a data key needs only KMS.

struct KmsOnly<T> {
    kms: T,
}

const NOT_HERE: &str = "a data key needs only KMS";

impl AsyncStateMachineIo for KmsOnly<TokioKmsTransport> {
    async fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(NOT_HERE.into())
    }
    async fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err(NOT_HERE.into())
    }
    async fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(NOT_HERE.into())
    }
    async fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.kms.kms_request(kms).await
    }
}

impl StateMachineIo for KmsOnly<KmsTransport> {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(NOT_HERE.into())
    }
    fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err(NOT_HERE.into())
    }
    fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(NOT_HERE.into())
    }
    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.kms.kms_request(kms)
    }
}

fn kek() -> KeyEncryptionKey {
    KeyEncryptionKey::aws("aws", "us-east-1", KEY_ARN)
}

/// One data key through `run_tokio`; checks that the key came back.
async fn async_op(crypt: &Crypt, io: &KmsOnly<TokioKmsTransport>) -> Result<(), String> {
    let mut ctx = crypt.ctx().key_encryption_key(&kek()).and_then(|b| b.datakey()).map_err(|e| e.to_string())?;
    match run_tokio(&mut ctx, io).await {
        Ok(Some(key)) if key.get_binary("keyMaterial").is_ok() => Ok(()),
        Ok(other) => Err(format!("unexpected result {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// One data key through `run_concurrent`.
fn thread_op(crypt: &Crypt, io: &KmsOnly<KmsTransport>) -> Result<(), String> {
    let mut ctx = crypt.ctx().key_encryption_key(&kek()).and_then(|b| b.datakey()).map_err(|e| e.to_string())?;
    match run_concurrent(&mut ctx, io) {
        Ok(Some(key)) if key.get_binary("keyMaterial").is_ok() => Ok(()),
        Ok(other) => Err(format!("unexpected result {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The baseline's operation: one TLS exchange with the mock, no libmongocrypt; checks the reply's length.
async fn tls_op(connector: &TlsConnector, addr: SocketAddr, request: &[u8], reply_len: usize) -> Result<(), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(KMS_HOST).expect("server name");
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    tls.write_all(request).await.map_err(|e| e.to_string())?;
    let mut reply = Vec::with_capacity(reply_len);
    tls.read_to_end(&mut reply).await.map_err(|e| e.to_string())?;
    if reply.len() == reply_len {
        Ok(())
    } else {
        Err(format!("reply of {} bytes, expected {reply_len}", reply.len()))
    }
}

/// The request libmongocrypt makes for one data key (its date and signature vary; its size does not).
fn captured_request(crypt: &Crypt) -> Vec<u8> {
    let mut ctx = crypt.ctx().key_encryption_key(&kek()).and_then(|b| b.datakey()).expect("a data key ctx");
    let mut scope = ctx.kms_scope().expect("NEED_KMS");
    let kms = scope.next_kms_ctx().expect("one KMS request");
    kms.message().expect("the request").to_vec()
}

// ---------------------------------------------------------------------------------------------------------------
// Measurement.

/// A `/proc/self/status` field in kB (or a count, for `Threads`).
fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time of the whole process (`/proc/self/stat`, in clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

/// Samples VmRSS and Threads every 5 ms until stopped; returns the peaks.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(u64, u64)>,
}

impl Sampler {
    fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut rss, mut threads) = (0, 0);
            // Bounded: the phases are bounded, and so is this loop (at most 60 s).
            let until = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::Relaxed) && Instant::now() < until {
                rss = rss.max(status_field("VmRSS"));
                threads = threads.max(status_field("Threads"));
                std::thread::sleep(Duration::from_millis(5));
            }
            (rss, threads)
        });
        Sampler { stop, handle }
    }

    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("sampler")
    }
}

struct Phase {
    runner: &'static str,
    in_flight: usize,
    ops: usize,
    elapsed: Duration,
    cpu: Duration,
    max_holding: usize,
    connections: usize,
    rss_before_kib: u64,
    peak_rss_kib: u64,
    peak_threads: u64,
    errors: Vec<String>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn ideal(&self) -> f64 {
        self.in_flight as f64 / LATENCY.as_secs_f64()
    }
    fn ratio(&self) -> f64 {
        self.rate() / self.ideal()
    }
    fn print(&self) {
        let cpu_per_op = self.cpu.as_secs_f64() / self.ops.max(1) as f64;
        let grown = self.peak_rss_kib.saturating_sub(self.rss_before_kib);
        println!(
            "{:<10} in_flight={:<3} ops={:<5} rate={:>7.0}/s ideal={:>6.0}/s ratio={:.2} server_max_held={:<3} \
             connections={:<5} cpu={:>4.0}us/op cores={:.2} peak_rss={:.1}MiB (+{:.1}MiB, {:.1}KiB per op in flight) peak_threads={}{}",
            self.runner,
            self.in_flight,
            self.ops,
            self.rate(),
            self.ideal(),
            self.ratio(),
            self.max_holding,
            self.connections,
            cpu_per_op * 1e6,
            self.cpu.as_secs_f64() / self.elapsed.as_secs_f64(),
            self.peak_rss_kib as f64 / 1024.0,
            grown as f64 / 1024.0,
            grown as f64 / self.in_flight as f64,
            self.peak_threads,
            if self.errors.is_empty() { String::new() } else { format!(" ERRORS: {:?}", self.errors) },
        );
    }
}

/// Runs `in_flight` workers, each doing operations back to back until `window` has passed (and at most `cap`
/// each); `work` runs them and returns (operations done, errors).
fn phase(
    runner: &'static str,
    in_flight: usize,
    server: &MockKms,
    work: impl FnOnce(Instant) -> (usize, Vec<String>),
    window: Duration,
) -> Phase {
    server.take_max_holding();
    let connections0 = server.stats.connections.load(Ordering::Relaxed);
    let rss_before_kib = status_field("VmRSS");
    let sampler = Sampler::start();
    let cpu0 = cpu_time();
    let started = Instant::now();
    let (ops, errors) = work(started + window);
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    let (peak_rss_kib, peak_threads) = sampler.finish();
    Phase {
        runner,
        in_flight,
        ops,
        elapsed,
        cpu,
        max_holding: server.take_max_holding(),
        connections: server.stats.connections.load(Ordering::Relaxed) - connections0,
        rss_before_kib,
        peak_rss_kib,
        peak_threads,
        errors,
    }
}

/// `n` tokio tasks on `runtime`, each running `op()` back to back until `deadline` (at most `cap` times, or until
/// one fails); the operations done, and the errors.
fn tasks_until<F, Fut>(
    runtime: &tokio::runtime::Runtime,
    n: usize,
    cap: usize,
    deadline: Instant,
    op: F,
) -> (usize, Vec<String>)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    runtime.block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let op = op.clone();
                tokio::spawn(async move {
                    let mut done = 0;
                    while done < cap && Instant::now() < deadline {
                        if let Err(e) = op().await {
                            return (done, Some(e));
                        }
                        done += 1;
                    }
                    (done, None)
                })
            })
            .collect();
        let mut results = Vec::with_capacity(n);
        for task in tasks {
            results.push(task.await.unwrap_or_else(|e| (0, Some(e.to_string()))));
        }
        collect(results)
    })
}

fn collect(results: impl IntoIterator<Item = (usize, Option<String>)>) -> (usize, Vec<String>) {
    let mut total = 0;
    let mut errors = Vec::new();
    for (done, error) in results {
        total += done;
        if let Some(e) = error {
            if errors.len() < 4 {
                errors.push(e);
            }
        }
    }
    (total, errors)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let window = if bench {
        let ms = std::env::var("KMS_LATENCY_PHASE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000u64);
        Duration::from_millis(ms.clamp(100, 10_000))
    } else {
        Duration::from_millis(100)
    };
    let levels: &[usize] = if bench { &[1, 16, 64, 256] } else { &[1, 4] };
    // Each worker stops after this many operations even if the window has not passed (2x what 20 ms allows).
    let cap = (2 * window.as_millis() / LATENCY.as_millis()).max(2) as usize;

    let pki = pki();
    let server = MockKms::start(&pki);
    let addr = server.addr;
    let tls_options = TlsOptions::new().ca_pem(pki.ca_pem.as_bytes()).expect("CA");
    let connector = TlsConnector::from(Arc::new(tls_options.client_config().expect("client config")));
    let builder = || {
        KmsTransport::builder()
            .default_tls_options(tls_options.clone())
            .resolver(move |_host, _port| Ok(vec![addr]))
            .timeout(Duration::from_secs(5))
    };
    let kept_alive = builder().keep_alive(Some(Duration::from_secs(5))).build().expect("transport");
    let transport = builder().build().expect("transport");
    let providers = KmsProviders::new().aws("aws", "example", "example", None);
    let crypt = Crypt::builder().kms_providers(&providers).and_then(|b| b.build()).expect("crypt");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("measured")
        .enable_all()
        .build()
        .expect("the measured runtime");
    let async_io = Arc::new(KmsOnly { kms: TokioKmsTransport::new(transport.clone()) });
    let async_ka_io = Arc::new(KmsOnly { kms: TokioKmsTransport::new(kept_alive.clone()) });
    let blocking_io = KmsOnly { kms: transport };
    let blocking_ka_io = KmsOnly { kms: kept_alive };

    let request = Arc::new(captured_request(&crypt));
    let reply_len = ENCRYPT_REPLY.replace("\r\n", "\n").replace('\n', "\r\n").len();

    // Outside the measurements: one of each, checked.
    runtime.block_on(tls_op(&connector, addr, &request, reply_len)).expect("a TLS exchange");
    runtime.block_on(async_op(&crypt, &async_io)).expect("an async data key");
    runtime.block_on(async_op(&crypt, &async_ka_io)).expect("an async data key, kept alive");
    thread_op(&crypt, &blocking_io).expect("a blocking data key");
    thread_op(&crypt, &blocking_ka_io).expect("a blocking data key, kept alive");

    println!(
        "libmongocrypt {}, {} cores; mock AWS KMS over TLS on loopback ({} ms per request, its own 2-thread tokio \
         runtime); async: run_tokio + TokioKmsTransport on a 2-worker tokio runtime; threads: run_concurrent + \
         KmsTransport, one OS thread per operation in flight; {} ms per phase; one data key (one KMS Encrypt) per op",
        libmongocrypt::version(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        LATENCY.as_millis(),
        window.as_millis(),
    );
    let start_rss = status_field("VmRSS");
    let mut phases = Vec::new();
    for &n in levels {
        let (connector, request) = (connector.clone(), request.clone());
        let work = |deadline| {
            tasks_until(&runtime, n, cap, deadline, move || {
                let (connector, request) = (connector.clone(), request.clone());
                async move { tls_op(&connector, addr, &request, reply_len).await }
            })
        };
        let p = phase("tls", n, &server, work, window);
        p.print();
        phases.push(p);
    }
    for (runner, async_io) in [("async", &async_io), ("async-ka", &async_ka_io)] {
        for &n in levels {
            let work = |deadline| {
                let (crypt, io) = (crypt.clone(), async_io.clone());
                tasks_until(&runtime, n, cap, deadline, move || {
                    let (crypt, io) = (crypt.clone(), io.clone());
                    async move { async_op(&crypt, &io).await }
                })
            };
            let p = phase(runner, n, &server, work, window);
            p.print();
            phases.push(p);
        }
    }
    let hwm_async = status_field("VmHWM");
    for (runner, blocking_io) in [("threads", &blocking_io), ("threads-ka", &blocking_ka_io)] {
        for &n in levels {
            let p = phase(
                runner,
                n,
                &server,
                |deadline| {
                    std::thread::scope(|scope| {
                        let handles: Vec<_> = (0..n)
                            .map(|_| {
                                scope.spawn(|| {
                                    let mut done = 0;
                                    while done < cap && Instant::now() < deadline {
                                        if let Err(e) = thread_op(&crypt, blocking_io) {
                                            return (done, Some(e));
                                        }
                                        done += 1;
                                    }
                                    (done, None)
                                })
                            })
                            .collect();
                        collect(handles.into_iter().map(|h| h.join().unwrap_or((0, Some("panicked".into())))))
                    })
                },
                window,
            );
            p.print();
            phases.push(p);
        }
    }
    let errors = server.stats.errors.lock().unwrap().clone();
    println!(
        "VmRSS at start {:.1}MiB; VmHWM after the async phases {:.1}MiB, after all {:.1}MiB; server requests {} ({} \
         on resumed TLS sessions){}",
        start_rss as f64 / 1024.0,
        hwm_async as f64 / 1024.0,
        status_field("VmHWM") as f64 / 1024.0,
        server.stats.requests.load(Ordering::Relaxed),
        server.stats.resumed.load(Ordering::Relaxed),
        if errors.is_empty() { String::new() } else { format!("; server errors: {errors:?}") },
    );
    let top = *levels.last().expect("levels");
    let at = |runner: &str| phases.iter().find(|p| p.runner == runner && p.in_flight == top).expect("phase");
    let (a, ka, t, tka, tls) = (at("async"), at("async-ka"), at("threads"), at("threads-ka"), at("tls"));
    let met = if ka.ratio() >= 0.80 { "met" } else { "MISSED" };
    println!(
        "kms_latency: async-ka{top}={:.2} async{top}={:.2} threads-ka{top}={:.2} threads{top}={:.2} tls{top}={:.2} \
         (rate / ideal); target async-ka{top} >= 0.80 (the async runner and transport, keep-alive on): {met}; \
         async{top} / tls{top} = {:.2} (a new TCP and TLS connection per request, libmongocrypt's Connection: close \
         and the transport's default, against TLS alone); peak RSS async-ka{top} {:.1}MiB, threads-ka{top} {:.1}MiB \
         with {} threads",
        ka.ratio(),
        a.ratio(),
        tka.ratio(),
        t.ratio(),
        tls.ratio(),
        a.rate() / tls.rate(),
        ka.peak_rss_kib as f64 / 1024.0,
        tka.peak_rss_kib as f64 / 1024.0,
        tka.peak_threads,
    );
    if !bench {
        println!("(smoke run: the numbers mean nothing; run with `cargo bench`)");
    }
    drop(runtime);
    drop(server);
    if phases.iter().any(|p| !p.errors.is_empty()) {
        std::process::exit(1);
    }
}
