//! A scripted HTTP server on loopback, plain or TLS (rustls, ring), for the KMS and metadata-endpoint tests.
//!
//! Every server is bounded: it accepts at most `max_connections` connections, lives at most `lifetime`, stalls at
//! most as long as it is told, uses 5 s socket timeouts, and stops (joining all its threads) when dropped.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libmongocrypt_kms::tls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Request line and headers.
    pub head: String,
    pub body: Vec<u8>,
    /// 0-based number of the connection it came on.
    pub conn: usize,
    /// For a server with a barrier: whether every expected connection had arrived before this one was answered.
    pub barrier_met: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn request_line(&self) -> &str {
        self.head.split("\r\n").next().unwrap_or_default()
    }
}

/// What to do with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Write these bytes, then close cleanly.
    Bytes(Vec<u8>),
    /// Answer nothing for this long (bounded by the server's lifetime), then close.
    Stall(Duration),
    /// Write only the first `n` bytes of the reply, then close without a TLS close_notify.
    CutOff(Vec<u8>, usize),
    /// Write these bytes, wait this long (a server that closes idle connections), then close cleanly, even on a
    /// keep-alive server.
    ThenClose(Vec<u8>, Duration),
    /// Write the first bytes, wait this long, write the second (unasked: what a server may send on an idle
    /// connection), then go on as after `Bytes`.
    ThenSend(Vec<u8>, Duration, Vec<u8>),
}

/// An HTTP reply with a body and its Content-Length.
pub fn http(status: u16, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status} Mock\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .into_bytes()
}

pub struct Options {
    pub tls: Option<Arc<ServerConfig>>,
    /// Hold every reply until this many requests arrived (bounded by 5 s); 0 for none.
    pub barrier: usize,
    pub max_connections: usize,
    pub lifetime: Duration,
    pub ipv6: bool,
    /// After a `Reply::Bytes`, read the next request on the same connection, unless the request or the reply
    /// said `Connection: close`.
    pub keep_alive: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            tls: None,
            barrier: 0,
            max_connections: 16,
            lifetime: Duration::from_secs(30),
            ipv6: false,
            keep_alive: false,
        }
    }
}

/// A TLS server configuration with `chain`/`key`, requiring a client certificate signed by `client_ca` if given.
pub fn tls_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<CertificateDer<'static>>,
) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    Arc::new(builder.with_single_cert(chain, key).expect("server certificate"))
}

type Responder = dyn Fn(&Request) -> Reply + Send + Sync;

struct Shared {
    stop: AtomicBool,
    deadline: Instant,
    requests: Mutex<Vec<Request>>,
    handshake_errors: Mutex<Vec<String>>,
    connections: AtomicUsize,
    arrived: Mutex<usize>,
    arrived_cv: Condvar,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }
}

pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl MockServer {
    pub fn start(options: Options, responder: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> MockServer {
        let bind = if options.ipv6 { "[::1]:0" } else { "127.0.0.1:0" };
        let listener = TcpListener::bind(bind).expect("bind loopback");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            deadline: Instant::now() + options.lifetime,
            requests: Mutex::new(Vec::new()),
            handshake_errors: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            arrived: Mutex::new(0),
            arrived_cv: Condvar::new(),
        });
        let responder: Arc<Responder> = Arc::new(responder);
        let accept = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut workers = Vec::new();
                while !shared.stopping() && workers.len() < options.max_connections {
                    match listener.accept() {
                        Ok((sock, _)) => {
                            let n = shared.connections.fetch_add(1, Ordering::SeqCst);
                            let (shared, responder, tls) = (shared.clone(), responder.clone(), options.tls.clone());
                            let (barrier, keep_alive) = (options.barrier, options.keep_alive);
                            workers.push(std::thread::spawn(move || {
                                serve(sock, n, tls, barrier, keep_alive, &shared, &*responder);
                            }));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                        Err(_) => break,
                    }
                }
                drop(listener);
                for w in workers {
                    let _ = w.join();
                }
            })
        };
        MockServer { addr, shared, accept: Some(accept) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    pub fn handshake_errors(&self) -> Vec<String> {
        self.shared.handshake_errors.lock().unwrap().clone()
    }

    /// Stops accepting, ends stalls, and waits for every connection thread.
    pub fn stop(mut self) -> Vec<Request> {
        self.shutdown();
        self.requests()
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.arrived_cv.notify_all();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

impl Conn {
    fn sock(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    /// Waits for the first byte of another request on a kept connection, checking for the server's stop every
    /// 50 ms; `None` when the client closed the connection or the server stops.
    fn next_byte(&mut self, shared: &Shared) -> Option<u8> {
        let _ = self.sock().set_read_timeout(Some(Duration::from_millis(50)));
        let mut byte = [0u8; 1];
        let first = loop {
            match self.read(&mut byte) {
                Ok(1) => break Some(byte[0]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if shared.stopping() {
                        break None;
                    }
                }
                _ => break None,
            }
        };
        let _ = self.sock().set_read_timeout(Some(Duration::from_secs(5)));
        first
    }
}

fn serve(
    sock: TcpStream,
    n: usize,
    tls: Option<Arc<ServerConfig>>,
    barrier: usize,
    keep_alive: bool,
    shared: &Shared,
    responder: &Responder,
) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = sock.set_write_timeout(Some(Duration::from_secs(5)));
    let mut conn = match tls {
        None => Conn::Plain(sock),
        Some(config) => {
            let mut tls = StreamOwned::new(ServerConnection::new(config).unwrap(), sock);
            while tls.conn.is_handshaking() {
                if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                    shared.handshake_errors.lock().unwrap().push(e.to_string());
                    return;
                }
            }
            Conn::Tls(Box::new(tls))
        }
    };
    let mut first = Vec::new();
    loop {
        let (head, body) = match read_request(&mut conn, first) {
            Ok(request) => request,
            Err(e) => {
                shared.handshake_errors.lock().unwrap().push(format!("reading the request: {e}"));
                return;
            }
        };
        let mut barrier_met = true;
        if barrier > 0 {
            let mut arrived = shared.arrived.lock().unwrap();
            *arrived += 1;
            shared.arrived_cv.notify_all();
            let until = Instant::now() + Duration::from_secs(5);
            while *arrived < barrier && !shared.stopping() && Instant::now() < until {
                arrived = shared.arrived_cv.wait_timeout(arrived, Duration::from_millis(50)).unwrap().0;
            }
            barrier_met = *arrived >= barrier;
        }
        let request = Request { head, body, conn: n, barrier_met };
        shared.requests.lock().unwrap().push(request.clone());
        let closes = |head: &str| {
            head.split("\r\n").any(|l| {
                l.split_once(':').is_some_and(|(n, v)| {
                    n.trim().eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close")
                })
            })
        };
        let reply = match responder(&request) {
            Reply::ThenSend(bytes, idle, unasked) => {
                let _ = conn.write_all(&bytes).and_then(|()| conn.flush());
                let until = Instant::now() + idle;
                while Instant::now() < until && !shared.stopping() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                // Written as a reply of its own; its head decides whether the connection stays.
                Reply::Bytes(unasked)
            }
            reply => reply,
        };
        match reply {
            Reply::ThenSend(..) => unreachable!("turned into Bytes above"),
            Reply::Bytes(bytes) => {
                let _ = conn.write_all(&bytes).and_then(|()| conn.flush());
                let reply_head = String::from_utf8_lossy(&bytes).split("\r\n\r\n").next().unwrap_or("").to_owned();
                if keep_alive && !closes(&request.head) && !closes(&reply_head) {
                    match conn.next_byte(shared) {
                        Some(byte) => {
                            first = vec![byte];
                            continue;
                        }
                        None => return,
                    }
                }
                close_notify(&mut conn);
            }
            Reply::ThenClose(bytes, idle) => {
                let _ = conn.write_all(&bytes).and_then(|()| conn.flush());
                let until = Instant::now() + idle;
                while Instant::now() < until && !shared.stopping() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                close_notify(&mut conn);
            }
            Reply::CutOff(bytes, cut) => {
                let _ = conn.write_all(&bytes[..cut.min(bytes.len())]).and_then(|()| conn.flush());
                // Dropped without close_notify.
            }
            Reply::Stall(d) => {
                let until = Instant::now() + d;
                while Instant::now() < until && !shared.stopping() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        return;
    }
}

fn close_notify(conn: &mut Conn) {
    if let Conn::Tls(tls) = conn {
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
}

/// Reads one request whose first bytes, `buf`, were already read.
fn read_request(conn: &mut Conn, mut buf: Vec<u8>) -> io::Result<(String, Vec<u8>)> {
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed in the request head"));
        }
        buf.push(byte[0]);
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("request head too large"));
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let length = head
        .split("\r\n")
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-length")))
        .map(|(_, v)| v.trim().parse::<usize>().unwrap_or(0))
        .unwrap_or(0)
        .min(1 << 20);
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body)?;
    Ok((head, body))
}
