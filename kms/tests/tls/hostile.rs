//! Hostile peers against the TLS transport, on loopback: servers and proxies that drip (one byte per interval,
//! never finishing), options at the edge of time (`Duration::MAX`), rounds of many requests (bounded threads), and
//! option files that never end or cost hours to decrypt. A request ends by its deadline plus a
//! margin, with a timeout error naming the step; nothing panics. Margins are generous: CI machines are slow.

use crate::support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::spec::BinarySubtype;
use bson::{doc, Binary, Document};
use libmongocrypt::{Crypt, Ctx, KeyEncryptionKey, State};
use libmongocrypt_kms::tls::{
    HttpProxy, KmsIoError, KmsIoErrorKind, KmsStream, KmsTransport, KmsTransportBuilder, TlsConfigError, TlsOptions,
    DEFAULT_MAX_CONCURRENT, MAX_PBKDF2_ITERATIONS, MAX_SCRYPT_MEMORY, MAX_SCRYPT_WORK, MAX_TLS_FILE,
};

use support::drip::{Dripper, ENDLESS_TLS_RECORD};
use support::pki::Pki;
use support::server::{self, MockServer, Options};
use support::*;

/// The request timeout of these tests, and how long past it a request may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(1);
const MARGIN: Duration = Duration::from_secs(3);

fn crypt() -> Crypt {
    Crypt::builder().kms_providers(&providers()).unwrap().build().unwrap()
}

fn aws_datakey(crypt: &Crypt) -> Ctx {
    crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", AWS_KEY_ARN)).unwrap().datakey().unwrap()
}

fn datakey(transport: &KmsTransport) -> Result<Document, KmsIoError> {
    let crypt = crypt();
    let mut ctx = aws_datakey(&crypt);
    loop {
        match ctx.state() {
            State::NeedKms => transport.serve_and_done(ctx.kms_scope().unwrap())?,
            State::Ready => return Ok(Document::try_from(ctx.finalize_owned().unwrap().as_ref()).unwrap()),
            other => panic!("unexpected state {other:?}"),
        }
    }
}

/// A KMS that starts a TLS record and drips it a byte every 50 ms: each byte would restart a socket timeout.
fn dripping_kms() -> Dripper {
    Dripper::start(ENDLESS_TLS_RECORD, 0, Duration::from_millis(50), Duration::from_secs(30))
}

/// A transport to `addr` with long per-step timeouts: only the request timeout can end a dripped step.
fn slow_steps_to(addr: SocketAddr) -> KmsTransportBuilder {
    KmsTransport::builder()
        .resolver(move |_host, _port| Ok(vec![addr]))
        .connect_timeout(Duration::from_secs(20))
        .io_timeout(Duration::from_secs(20))
        .request_timeout(Some(DEADLINE))
}

/// Runs a data key that must time out during `step`, by the deadline plus the margin.
fn assert_times_out(transport: &KmsTransport, step: &str, deadline: Duration) {
    let started = Instant::now();
    let err = datakey(transport).unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err.kind(), KmsIoErrorKind::Timeout { during, after } if *during == step && *after == deadline),
        "{err}"
    );
    assert!(err.is_timeout() && err.is_network(), "{err}");
    assert!(elapsed >= deadline && elapsed < deadline + MARGIN, "{step}: took {elapsed:?}");
}

#[test]
fn a_dripped_handshake_ends_at_the_request_timeout() {
    let kms = dripping_kms();
    assert_times_out(&slow_steps_to(kms.addr()).build().unwrap(), "the TLS handshake", DEADLINE);
}

/// Without a request timeout, the I/O timeout bounds the whole handshake, not each of its reads.
#[test]
fn a_dripped_handshake_ends_at_the_io_timeout() {
    let kms = dripping_kms();
    let transport = slow_steps_to(kms.addr()).request_timeout(None).io_timeout(DEADLINE).build().unwrap();
    assert_times_out(&transport, "the TLS handshake", DEADLINE);
}

#[cfg(feature = "openssl")]
#[test]
fn a_dripped_openssl_handshake_ends_at_the_request_timeout() {
    let kms = dripping_kms();
    assert_times_out(&slow_steps_to(kms.addr()).openssl_for_all().build().unwrap(), "the TLS handshake", DEADLINE);
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripped_handshake_ends_at_the_request_timeout_async() {
    use libmongocrypt_kms::tls::TokioKmsTransport;
    let kms = dripping_kms();
    let transport = TokioKmsTransport::new(slow_steps_to(kms.addr()).build().unwrap());
    let crypt = crypt();
    let mut ctx = aws_datakey(&crypt);
    let started = Instant::now();
    let mut scope = ctx.kms_scope().unwrap();
    let mut kms_ctx = scope.next_kms_ctx().unwrap();
    let err = transport.exchange(&mut kms_ctx).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_timed_out(&err, elapsed, "the TLS handshake");
}

/// A proxy that answers CONNECT with a header line that never ends, a byte every 50 ms: the connector has the
/// request's deadline, not a timeout per read.
#[test]
fn a_dripping_proxy_ends_at_the_request_timeout() {
    let proxy =
        Dripper::start(b"HTTP/1.1 200 OK\r\nX-Drip: ", b'a', Duration::from_millis(50), Duration::from_secs(30));
    let transport = slow_steps_to(proxy.addr()).connector(HttpProxy::new(proxy.addr().to_string())).build().unwrap();
    assert_times_out(&transport, "connecting through the connector", DEADLINE);
}

/// One exchange of a data key's request on the async face: its error, and how long it took.
#[cfg(feature = "tokio")]
async fn exchange_error_async(transport: KmsTransport) -> (KmsIoError, Duration) {
    let transport = libmongocrypt_kms::tls::TokioKmsTransport::new(transport);
    let crypt = crypt();
    let mut ctx = aws_datakey(&crypt);
    let mut scope = ctx.kms_scope().unwrap();
    let mut kms_ctx = scope.next_kms_ctx().unwrap();
    let started = Instant::now();
    let err = transport.exchange(&mut kms_ctx).await.unwrap_err();
    (err, started.elapsed())
}

/// `err` is a timeout during `step` after the request timeout, which ended it in time.
#[cfg(feature = "tokio")]
fn assert_timed_out(err: &KmsIoError, elapsed: Duration, step: &str) {
    assert!(
        matches!(err.kind(), KmsIoErrorKind::Timeout { during, after } if *during == step && *after == DEADLINE),
        "{err}"
    );
    assert!(err.is_timeout() && err.is_network(), "{err}");
    assert!(elapsed >= DEADLINE && elapsed < DEADLINE + MARGIN, "{step}: took {elapsed:?}");
}

/// The dripping proxy on the async face (`HttpProxy` as an `AsyncConnector`): the connector's deadline bounds the
/// whole CONNECT, reply included.
#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_proxy_ends_at_the_request_timeout_async() {
    let proxy =
        Dripper::start(b"HTTP/1.1 200 OK\r\nX-Drip: ", b'a', Duration::from_millis(50), Duration::from_secs(30));
    let transport =
        slow_steps_to(proxy.addr()).async_connector(HttpProxy::new(proxy.addr().to_string())).build().unwrap();
    let (err, elapsed) = exchange_error_async(transport).await;
    assert_timed_out(&err, elapsed, "connecting through the connector");
}

/// An async connector that never answers, whatever its deadline: the transport stops waiting at the deadline.
#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_never_answers_ends_at_the_request_timeout_async() {
    use libmongocrypt_kms::tls::{AsyncConnect, AsyncConnector};
    struct Never;
    impl AsyncConnector for Never {
        fn connect<'a>(&'a self, _host: &'a str, _port: u16, _deadline: Instant) -> AsyncConnect<'a> {
            Box::pin(std::future::pending())
        }
    }
    let transport = slow_steps_to("127.0.0.1:9".parse().unwrap()).async_connector(Never).build().unwrap();
    let (err, elapsed) = exchange_error_async(transport).await;
    assert_timed_out(&err, elapsed, "connecting through the connector");
}

/// A dripped OpenSSL handshake on the async face (tokio-openssl) ends at the request timeout too.
#[cfg(all(feature = "tokio", feature = "openssl"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripped_openssl_handshake_ends_at_the_request_timeout_async() {
    let kms = dripping_kms();
    let (err, elapsed) = exchange_error_async(slow_steps_to(kms.addr()).openssl_for_all().build().unwrap()).await;
    assert_timed_out(&err, elapsed, "the TLS handshake");
}

/// `Duration::MAX` as every timeout is no limit: requests are served, nothing panics, on both faces.
#[test]
fn timeouts_past_the_end_of_time_are_no_limit() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let tls = || TlsOptions::new().ca_pem(pki.ca_pem.as_bytes()).unwrap();
    let addr = kms.addr();
    let to = move || KmsTransport::builder().default_tls_options(tls()).resolver(move |_, _| Ok(vec![addr]));
    datakey(&to().timeout(Duration::MAX).build().unwrap()).unwrap();
    datakey(&to().request_timeout(Some(Duration::MAX)).build().unwrap()).unwrap();
    datakey(&to().keep_alive(Some(Duration::MAX)).timeout(Duration::MAX).build().unwrap()).unwrap();
    #[cfg(feature = "tokio")]
    {
        let transport = libmongocrypt_kms::tls::TokioKmsTransport::new(to().timeout(Duration::MAX).build().unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let crypt = crypt();
        let mut ctx = aws_datakey(&crypt);
        runtime.block_on(async {
            let mut scope = ctx.kms_scope().unwrap();
            let mut kms_ctx = scope.next_kms_ctx().unwrap();
            transport.exchange(&mut kms_ctx).await.unwrap();
        });
    }
    assert_eq!(kms.stop().len(), if cfg!(feature = "tokio") { 4 } else { 3 });
}

/// A stream that counts the streams open at once (the requests in flight), and the most seen.
struct Counted {
    sock: std::net::TcpStream,
    gauge: Arc<(AtomicUsize, AtomicUsize)>,
}

impl Counted {
    fn open(addr: SocketAddr, gauge: &Arc<(AtomicUsize, AtomicUsize)>) -> std::io::Result<Counted> {
        let sock = std::net::TcpStream::connect(addr)?;
        let now = gauge.0.fetch_add(1, Ordering::SeqCst) + 1;
        gauge.1.fetch_max(now, Ordering::SeqCst);
        Ok(Counted { sock, gauge: gauge.clone() })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.gauge.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::io::Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.sock.read(buf)
    }
}

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sock.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.sock.flush()
    }
}

impl KmsStream for Counted {
    fn set_io_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        self.sock.set_io_timeout(timeout)
    }
}

/// A rewrap of 40 AWS keys is one round of 40 KMS requests: `serve` runs at most `max_concurrent` of them at once
/// (16 by default, as the runner), never a thread per request.
#[test]
fn serve_bounds_its_threads() {
    const KEYS: usize = 40;
    let keys: Vec<_> = (0..KEYS)
        .map(|i| {
            let mut key = doc("example/key-document.json");
            key.insert("_id", Binary { subtype: BinarySubtype::Uuid, bytes: format!("{i:016}").into_bytes() });
            key.remove("keyAltNames");
            raw(&key)
        })
        .collect();
    let pki = Pki::new("mock CA");
    for (limit, expected) in [(None, DEFAULT_MAX_CONCURRENT), (Some(4), 4)] {
        let config = server::tls_config(vec![pki.server.cert.clone()], pki.server.key(), None);
        // Each reply is held a little, so that requests overlap.
        let kms = MockServer::start(
            Options { tls: Some(config), max_connections: KEYS + 8, ..Options::default() },
            |request| {
                std::thread::sleep(Duration::from_millis(50));
                aws_replies(request)
            },
        );
        let gauge = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let addr = kms.addr();
        let connector_gauge = gauge.clone();
        let mut builder = transport_to(&pki, addr).connector(move |_: &str, _: u16, _: Instant| {
            Ok(Box::new(Counted::open(addr, &connector_gauge)?) as Box<dyn KmsStream>)
        });
        if let Some(limit) = limit {
            builder = builder.max_concurrent(limit);
        }
        let transport = builder.build().unwrap();
        let crypt = crypt();
        let mut ctx = crypt
            .ctx()
            .key_encryption_key(&KeyEncryptionKey::local("local"))
            .unwrap()
            .rewrap_many_datakey(&doc! {})
            .unwrap();
        for key in &keys {
            ctx.mongo_feed(key).unwrap();
        }
        ctx.mongo_done().unwrap();
        assert_eq!(ctx.state(), State::NeedKms);
        transport.serve_and_done(ctx.kms_scope().unwrap()).unwrap();
        let result = Document::try_from(ctx.finalize_owned().unwrap().as_ref()).unwrap();
        assert_eq!(result.get_array("v").unwrap().len(), KEYS);
        assert_eq!(kms.stop().len(), KEYS);
        let most = gauge.1.load(Ordering::SeqCst);
        assert!(most <= expected && most > 1, "limit {limit:?}: {most} requests at once");
    }
}

/// `tlsCAFile` and `tlsCertificateKeyFile` that never end: a device, a FIFO (no writer), a file past
/// [`MAX_TLS_FILE`]: refused at once, typed.
#[test]
fn option_files_are_bounded() {
    let dir = std::env::temp_dir().join(format!("mongocrypt-hostile-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success(), "mkfifo");
    let large = dir.join("large.pem");
    std::fs::write(&large, vec![b'a'; MAX_TLS_FILE as usize + 1]).unwrap();
    for path in [std::path::Path::new("/dev/zero"), &fifo, &dir] {
        let err = TlsOptions::new().ca_file(path).unwrap_err();
        assert!(matches!(err, TlsConfigError::NotAFile { .. }), "{}: {err}", path.display());
        let err = TlsOptions::new().certificate_key_file(path, None).unwrap_err();
        assert!(matches!(err, TlsConfigError::NotAFile { .. }), "{}: {err}", path.display());
    }
    let err = TlsOptions::new().ca_file(&large).unwrap_err();
    assert!(matches!(err, TlsConfigError::FileTooLarge { limit: MAX_TLS_FILE, .. }), "{err}");
    assert!(err.to_string().contains(&format!("longer than {MAX_TLS_FILE} bytes")), "{err}");
    let err = TlsOptions::new().certificate_key_file(&large, Some("pw")).unwrap_err();
    assert!(matches!(err, TlsConfigError::FileTooLarge { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An `ENCRYPTED PRIVATE KEY` whose parameters ask for hours of PBKDF2 or terabytes of scrypt memory is refused
/// before any derivation, with the limit it passes (the encrypted bytes are never looked at).
#[test]
fn costly_key_derivations_are_refused_before_deriving() {
    use pkcs8::der::EncodePem;
    use pkcs8::pkcs5::pbes2::{self, Pbkdf2Params, Pbkdf2Prf, ScryptParams};
    use pkcs8::{EncryptedPrivateKeyInfo, LineEnding};

    let pki = Pki::new("mock CA");
    let iv = [7u8; 16];
    let salt = [9u8; 16];
    let encrypted_data = [0u8; 64];
    let pem = |kdf: pbes2::Kdf<'_>| {
        let params = pbes2::Parameters { kdf, encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: &iv } };
        let info = EncryptedPrivateKeyInfo { encryption_algorithm: params.into(), encrypted_data: &encrypted_data };
        let key = info.to_pem(LineEnding::LF).unwrap();
        format!("{}{key}", pki.client.cert_pem)
    };
    let pbkdf2 = |iterations| {
        pem(Pbkdf2Params { salt: &salt, iteration_count: iterations, key_length: None, prf: Pbkdf2Prf::HmacWithSha256 }
            .into())
    };
    let scrypt = |n: u64, r: u16, p: u16| {
        pem(ScryptParams { salt: &salt, cost_parameter: n, block_size: r, parallelization: p, key_length: Some(32) }
            .into())
    };
    let cases = [
        (pbkdf2(u32::MAX), "PBKDF2 with 4294967295 iterations".to_owned()),
        (pbkdf2(MAX_PBKDF2_ITERATIONS + 1), format!("more than {MAX_PBKDF2_ITERATIONS}")),
        (scrypt(1 << 36, 8, 1), format!("more than {MAX_SCRYPT_MEMORY}")),
        (scrypt(1 << 62, 8, 1), format!("more than {MAX_SCRYPT_MEMORY}")),
        (scrypt(1 << 14, 8, 1024), format!("N·r·p more than {MAX_SCRYPT_WORK}")),
    ];
    for (pem, limit) in cases {
        let started = Instant::now();
        let err = TlsOptions::new().certificate_key_pem(pem.as_bytes(), Some("pw")).unwrap_err();
        assert!(matches!(err, TlsConfigError::KeyDerivationLimit { .. }), "{err}");
        assert!(err.to_string().contains(&limit), "{limit}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5), "{limit}: took {:?}", started.elapsed());
    }
    // Within the limits, the derivation runs: a wrong password (the data is zeros), not a limit.
    for pem in [pbkdf2(2048), scrypt(1 << 14, 8, 1)] {
        let err = TlsOptions::new().certificate_key_pem(pem.as_bytes(), Some("pw")).unwrap_err();
        assert!(matches!(err, TlsConfigError::WrongKeyPassword { .. }), "{err}");
    }
}

/// Timeouts of zero and one nanosecond: the request ends at once with a timeout error naming the step, never a
/// panic, and zero never means "no timeout".
#[test]
fn timeouts_of_zero_and_one_nanosecond_end_at_once() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let addr = kms.addr();
    let to = || {
        KmsTransport::builder()
            .default_tls_options(TlsOptions::new().ca_pem(pki.ca_pem.as_bytes()).unwrap())
            .resolver(move |_, _| Ok(vec![addr]))
    };
    for tiny in [Duration::ZERO, Duration::from_nanos(1)] {
        for (name, transport) in [
            ("request_timeout", to().request_timeout(Some(tiny))),
            ("io_timeout", to().io_timeout(tiny)),
            ("timeout", to().timeout(tiny)),
        ] {
            let started = Instant::now();
            let err = datakey(&transport.build().unwrap()).unwrap_err();
            assert!(matches!(err.kind(), KmsIoErrorKind::Timeout { .. }), "{name}({tiny:?}): {err}");
            assert!(started.elapsed() < MARGIN, "{name}({tiny:?}): took {:?}", started.elapsed());
        }
    }
}
