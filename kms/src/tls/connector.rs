//! Pluggable connections: a [`Connector`] (an `AsyncConnector` on the async face) returns the byte stream to a KMS
//! endpoint (a proxy tunnel, an in-process test server, a socket of the caller's making), over which the transport
//! runs TLS with the KMS host; [`HttpProxy`] is both, for HTTP CONNECT proxies: only its I/O differs between the
//! faces.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::resolve::{self, Lookup};

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

/// `timeout` from `now`; a time that cannot be represented is a century away (no limit, in effect).
pub(super) fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout).or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600))).unwrap_or(now)
}

/// The longest CONNECT reply head [`HttpProxy`] reads.
const MAX_PROXY_REPLY: usize = 16 * 1024;

/// A [`Connector`] through an HTTP proxy: a TCP connection to the proxy, `CONNECT host:port`, and the tunnel it
/// opens (MongoDB's drivers' `kmsConnectCallback` use case). TLS then runs through the tunnel with the KMS host:
/// SNI and certificate verification name the KMS host, never the proxy.
///
/// It is a blocking [`Connector`] and, with the `tokio` feature, an `AsyncConnector` too (the same request and
/// reply parsing, async I/O): give a clone to each face.
///
/// ```no_run
/// use libmongocrypt_kms::tls::{HttpProxy, KmsTransport};
///
/// let proxy = HttpProxy::new("proxy.internal:3128");
/// let builder = KmsTransport::builder().connector(proxy.clone());
/// # #[cfg(feature = "tokio")]
/// let builder = builder.async_connector(proxy); // for TokioKmsTransport
/// let transport = builder.build()?;
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
        let resolving = || format!("resolving proxy {}", self.proxy);
        let looked_up = resolve::within(Lookup::Address(self.proxy.clone()), left(deadline, resolving)?)?;
        let addrs = looked_up.ok_or_else(|| {
            io::Error::new(io::ErrorKind::TimedOut, format!("{} did not end by its deadline", resolving()))
        })?;
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
        let (target, request) = self.connect_request(host, port);
        let step = || format!("CONNECT {target} through proxy {}", self.proxy);
        sock.set_io_timeout(left(deadline, step)?)?;
        sock.write_all(request.as_bytes())?;
        // Re-armed before each byte: a proxy dripping its reply gets the time left, not a timeout per byte.
        connect_reply(&mut &sock, || sock.set_io_timeout(left(deadline, step)?), &self.proxy, &target)?;
        Ok(sock)
    }

    /// What to CONNECT to for `host`:`port`, and the request that asks for it: the same on both faces.
    fn connect_request(&self, host: &str, port: u16) -> (String, String) {
        let target = match &self.target {
            Some(target) => target(host, port),
            None if host.contains(':') => format!("[{host}]:{port}"),
            None => format!("{host}:{port}"),
        };
        let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        (target, request)
    }

    /// The tunnel on tokio: the same request and reply parsing as [`tunnel`](Self::tunnel), only the I/O differs.
    /// Unbounded here: the caller's one deadline covers all of it.
    #[cfg(feature = "tokio")]
    async fn tunnel_async(&self, host: &str, port: u16) -> io::Result<tokio::net::TcpStream> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("proxy {} has no address", self.proxy));
        let mut sock = None;
        for addr in tokio::net::lookup_host(self.proxy.as_str()).await? {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let mut sock = sock.ok_or_else(|| io::Error::new(last.kind(), format!("proxy {}: {last}", self.proxy)))?;
        let (target, request) = self.connect_request(host, port);
        sock.write_all(request.as_bytes()).await?;
        // Byte by byte, unbuffered: nothing of the tunnel may be read past the reply's head.
        let mut reply = ReplyHead::default();
        let mut byte = [0u8; 1];
        while !reply.push(sock.read(&mut byte).await?, byte[0], &self.proxy, &target)? {}
        reply.check(&self.proxy, &target)?;
        Ok(sock)
    }
}

/// A proxy's reply head to CONNECT, as it arrives, one byte at a time; both faces read into it.
#[derive(Default)]
struct ReplyHead {
    head: Vec<u8>,
}

impl ReplyHead {
    /// Adds the result of a one-byte read (`n` bytes read into `byte`); whether the head is complete. The peer
    /// closing the connection first, or a head longer than [`MAX_PROXY_REPLY`], is an error.
    fn push(&mut self, n: usize, byte: u8, proxy: &str, target: &str) -> io::Result<bool> {
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("proxy {proxy} closed the connection before answering CONNECT {target}"),
            ));
        }
        self.head.push(byte);
        if self.head.ends_with(b"\r\n\r\n") {
            return Ok(true);
        }
        if self.head.len() >= MAX_PROXY_REPLY {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the proxy's reply head is too long"));
        }
        Ok(false)
    }

    /// Checks a complete head: HTTP, with a 2xx status.
    fn check(&self, proxy: &str, target: &str) -> io::Result<()> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut reply = httparse::Response::new(&mut headers);
        match reply.parse(&self.head) {
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
    let mut reply = ReplyHead::default();
    let mut byte = [0u8; 1];
    loop {
        before_read()?;
        let n = match reader.read(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            n => n?,
        };
        if reply.push(n, byte[0], proxy, target)? {
            return reply.check(proxy, target);
        }
    }
}

impl Connector for HttpProxy {
    fn connect(&self, host: &str, port: u16, deadline: Instant) -> io::Result<Box<dyn KmsStream>> {
        Ok(Box::new(self.tunnel(host, port, deadline)?))
    }
}

/// A byte stream to a KMS endpoint, as an [`AsyncConnector`] returns it (feature `tokio`): any tokio
/// `AsyncRead + AsyncWrite` that is `Unpin + Send`, such as a `tokio::net::TcpStream`. TLS runs over it, end to end
/// with the KMS host. The transport bounds its reads and writes itself (by each step's deadline).
#[cfg(feature = "tokio")]
pub trait AsyncKmsStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

#[cfg(feature = "tokio")]
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncKmsStream for T {}

/// The future of [`AsyncConnector::connect`]: boxed, so that the trait is object-safe, and `Send`, so that a
/// transport's futures stay `Send`.
#[cfg(feature = "tokio")]
pub type AsyncConnect<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Box<dyn AsyncKmsStream>>> + Send + 'a>>;

/// The async [`Connector`] (feature `tokio`), for `TokioKmsTransport`: opens the byte stream for one attempt at a
/// KMS request to `host`:`port`, by `deadline` (the transport's connect timeout from now, or the end of its request
/// timeout if sooner). Called again for every retry.
///
/// The transport also stops waiting for the future at `deadline`, whatever the connector does: a
/// [`KmsIoErrorKind::Timeout`](super::KmsIoErrorKind::Timeout), as is an error of kind [`io::ErrorKind::TimedOut`].
/// Its other errors are network errors ([`KmsIoErrorKind::Connector`](super::KmsIoErrorKind::Connector)): retried
/// as libmongocrypt allows.
///
/// [`HttpProxy`] is one. So is any type with a `connect` that returns its future boxed:
///
/// ```
/// use std::time::Instant;
/// use libmongocrypt_kms::tls::{AsyncConnect, AsyncConnector, AsyncKmsStream};
///
/// /// Connects to one address, whatever the endpoint (a test server, a sidecar).
/// struct To(std::net::SocketAddr);
///
/// impl AsyncConnector for To {
///     fn connect<'a>(&'a self, _host: &'a str, _port: u16, _deadline: Instant) -> AsyncConnect<'a> {
///         Box::pin(async move {
///             let sock = tokio::net::TcpStream::connect(self.0).await?;
///             Ok(Box::new(sock) as Box<dyn AsyncKmsStream>)
///         })
///     }
/// }
/// ```
#[cfg(feature = "tokio")]
pub trait AsyncConnector: Send + Sync {
    /// A connected stream to `host`:`port`, by `deadline`.
    fn connect<'a>(&'a self, host: &'a str, port: u16, deadline: Instant) -> AsyncConnect<'a>;
}

/// The tunnel on tokio: the same CONNECT request and reply parsing as the blocking [`Connector`], all of it by
/// `deadline` (a proxy dripping its reply cannot stretch it).
#[cfg(feature = "tokio")]
impl AsyncConnector for HttpProxy {
    fn connect<'a>(&'a self, host: &'a str, port: u16, deadline: Instant) -> AsyncConnect<'a> {
        Box::pin(async move {
            match tokio::time::timeout_at(deadline.into(), self.tunnel_async(host, port)).await {
                Ok(sock) => Ok(Box::new(sock?) as Box<dyn AsyncKmsStream>),
                Err(_elapsed) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("CONNECT {host}:{port} through proxy {} did not end by its deadline", self.proxy),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(bytes: &[u8]) -> io::Result<()> {
        connect_reply(&mut &bytes[..], || Ok(()), "proxy:3128", "kms:443")
    }

    #[test]
    fn connect_replies_are_checked() {
        reply(b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\n").unwrap();
        let refused = reply(b"HTTP/1.1 403 Forbidden\r\n\r\n").unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(refused.to_string(), "proxy proxy:3128 refused CONNECT kms:443: HTTP status 403 Forbidden");
        let closed = reply(b"HTTP/1.1 200 OK\r\n").unwrap_err();
        assert_eq!(closed.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(reply(b"SSH-2.0-OpenSSH\r\n\r\n").unwrap_err().kind(), io::ErrorKind::InvalidData);
        let endless = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; MAX_PROXY_REPLY]].concat();
        let long = reply(&endless).unwrap_err();
        assert_eq!(
            (long.kind(), long.to_string().as_str()),
            (io::ErrorKind::InvalidData, "the proxy's reply head is too long")
        );
    }

    /// The async tunnel reads the reply head and nothing past it: the first bytes through the tunnel are the KMS's.
    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn the_async_tunnel_reads_nothing_past_the_reply() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                assert_eq!(sock.read(&mut byte).await.unwrap(), 1);
                request.push(byte[0]);
            }
            sock.write_all(b"HTTP/1.1 200 Connection established\r\n\r\nfrom the KMS").await.unwrap();
            request
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut stream =
            AsyncConnector::connect(&HttpProxy::new(proxy.to_string()), "::1", 443, deadline).await.unwrap();
        let mut tunnelled = [0u8; 12];
        stream.read_exact(&mut tunnelled).await.unwrap();
        assert_eq!(&tunnelled, b"from the KMS");
        assert_eq!(server.await.unwrap(), b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n");
    }
}
