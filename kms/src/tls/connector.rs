//! Pluggable connections: a [`Connector`] returns the byte stream to a KMS endpoint (a proxy tunnel, an
//! in-process test server, a socket of the caller's making), over which the transport runs TLS with the KMS host;
//! [`HttpProxy`] is one, for HTTP CONNECT proxies.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A byte stream to a KMS endpoint, as a [`Connector`] returns it. TLS runs over it, end to end with the KMS host.
pub trait KmsStream: Read + Write + Send {
    /// Bounds each following read and write to `timeout` (the transport calls it before each step of an
    /// exchange). The default does nothing: the stream's reads and writes are then bounded only by the stream
    /// itself.
    fn set_io_timeout(&self, timeout: Duration) -> io::Result<()> {
        let _ = timeout;
        Ok(())
    }

    /// Makes reads return [`io::ErrorKind::WouldBlock`] instead of waiting, or wait again. With
    /// [`keep_alive`](super::KmsTransportBuilder::keep_alive), the transport checks a kept connection this way
    /// before reusing it (for what the server sent or closed meanwhile); the default refuses, and connections over
    /// such a stream are then not kept.
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        let _ = nonblocking;
        Err(io::Error::new(io::ErrorKind::Unsupported, "this stream cannot be made non-blocking"))
    }
}

impl KmsStream for TcpStream {
    fn set_io_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        TcpStream::set_nonblocking(self, nonblocking)
    }
}

/// Opens the byte stream for one attempt at a KMS request to `host`:`port`, by `deadline` (the transport's
/// connect timeout from now, or the end of its request timeout if sooner). Called again for every retry.
///
/// The deadline is for the whole of the connector's work (connecting, a proxy's CONNECT and its reply...), not for
/// each read: a connector must re-arm its socket's timeouts to the time left before each read and write, and fail
/// with [`io::ErrorKind::TimedOut`] once none is left (the transport reports that as a
/// [`KmsIoErrorKind::Timeout`](super::KmsIoErrorKind::Timeout)). A socket timeout set once would restart with every
/// byte a slow peer sends.
///
/// Any `Fn(&str, u16, Instant) -> io::Result<Box<dyn KmsStream>> + Send + Sync` is one. Its other errors are
/// network errors ([`KmsIoErrorKind::Connector`](super::KmsIoErrorKind::Connector)): retried as libmongocrypt
/// allows.
pub trait Connector: Send + Sync {
    /// A connected stream to `host`:`port`, by `deadline`.
    fn connect(&self, host: &str, port: u16, deadline: Instant) -> io::Result<Box<dyn KmsStream>>;
}

impl<F> Connector for F
where
    F: Fn(&str, u16, Instant) -> io::Result<Box<dyn KmsStream>> + Send + Sync,
{
    fn connect(&self, host: &str, port: u16, deadline: Instant) -> io::Result<Box<dyn KmsStream>> {
        self(host, port, deadline)
    }
}

/// What is left until `deadline`, or a [`io::ErrorKind::TimedOut`] error naming `step` once nothing is (never a
/// zero duration, which a socket takes as "no timeout").
fn left(deadline: Instant, step: impl FnOnce() -> String) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, format!("{} did not end by its deadline", step())));
    }
    Ok(left)
}

/// The longest CONNECT reply head [`HttpProxy`] reads.
const MAX_PROXY_REPLY: usize = 16 * 1024;

/// A [`Connector`] through an HTTP proxy: a TCP connection to the proxy, `CONNECT host:port`, and the tunnel it
/// opens (MongoDB's drivers' `kmsConnectCallback` use case). TLS then runs through the tunnel with the KMS host:
/// SNI and certificate verification name the KMS host, never the proxy.
///
/// ```no_run
/// use libmongocrypt_kms::tls::{HttpProxy, KmsTransport};
///
/// let transport = KmsTransport::builder().connector(HttpProxy::new("proxy.internal:3128")).build()?;
/// # Ok::<(), libmongocrypt_kms::tls::TlsConfigError>(())
/// ```
#[derive(Clone)]
pub struct HttpProxy {
    proxy: String,
    target: Option<Arc<ProxyTarget>>,
}

/// What [`HttpProxy`] asks the proxy to connect to, for a host and port.
type ProxyTarget = dyn Fn(&str, u16) -> String + Send + Sync;

impl fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProxy").field("proxy", &self.proxy).field("custom_target", &self.target.is_some()).finish()
    }
}

impl HttpProxy {
    /// The proxy at `proxy` (`host:port`).
    pub fn new(proxy: impl Into<String>) -> HttpProxy {
        HttpProxy { proxy: proxy.into(), target: None }
    }

    /// What to ask the proxy to connect to, instead of `host:port`: for a proxy that should reach the KMS by
    /// another name or address. TLS still names `host`.
    pub fn target(mut self, target: impl Fn(&str, u16) -> String + Send + Sync + 'static) -> HttpProxy {
        self.target = Some(Arc::new(target));
        self
    }

    /// The tunnel, all of it (connecting, CONNECT, its reply) by `deadline`.
    fn tunnel(&self, host: &str, port: u16, deadline: Instant) -> io::Result<TcpStream> {
        let addrs: Vec<SocketAddr> = self.proxy.to_socket_addrs()?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("proxy {} has no address", self.proxy));
        let mut sock = None;
        for addr in addrs {
            let timeout = left(deadline, || format!("connecting to proxy {}", self.proxy))?;
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let mut sock = sock.ok_or_else(|| io::Error::new(last.kind(), format!("proxy {}: {last}", self.proxy)))?;
        let target = match &self.target {
            Some(target) => target(host, port),
            None if host.contains(':') => format!("[{host}]:{port}"),
            None => format!("{host}:{port}"),
        };
        let step = || format!("CONNECT {target} through proxy {}", self.proxy);
        sock.set_io_timeout(left(deadline, step)?)?;
        sock.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())?;
        // Re-armed before each byte: a proxy dripping its reply gets the time left, not a timeout per byte.
        connect_reply(&mut &sock, || sock.set_io_timeout(left(deadline, step)?), &self.proxy, &target)?;
        Ok(sock)
    }
}

/// Reads a proxy's reply to `CONNECT target` from `reader`, byte by byte (nothing of the tunnel may be read past
/// it), calling `before_read` before each read, and checks it: a complete HTTP head of at most
/// [`MAX_PROXY_REPLY`] bytes with a 2xx status.
pub(crate) fn connect_reply(
    reader: &mut impl Read,
    mut before_read: impl FnMut() -> io::Result<()>,
    proxy: &str,
    target: &str,
) -> io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_PROXY_REPLY {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the proxy's reply head is too long"));
        }
        before_read()?;
        match reader.read(&mut byte) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("proxy {proxy} closed the connection before answering CONNECT {target}"),
                ))
            }
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut reply = httparse::Response::new(&mut headers);
    match reply.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the proxy's reply to CONNECT is not HTTP"))
        }
    }
    match reply.code {
        Some(code) if (200..300).contains(&code) => Ok(()),
        code => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!(
                "proxy {proxy} refused CONNECT {target}: HTTP status {} {}",
                code.unwrap_or(0),
                reply.reason.unwrap_or_default()
            ),
        )),
    }
}

impl Connector for HttpProxy {
    fn connect(&self, host: &str, port: u16, deadline: Instant) -> io::Result<Box<dyn KmsStream>> {
        Ok(Box::new(self.tunnel(host, port, deadline)?))
    }
}
