//! The blocking face of the exchange (`exchange`): its I/O over a `TcpStream` (or a connector's stream) and rustls
//! or OpenSSL, with its timeouts.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rustls::{ClientConnection, StreamOwned};

use super::connect::Target;
use super::connector::KmsStream;
use super::exchange::{exchange, Face};
use super::keep_alive::{nothing_pending, request_cut, still_idle};
use super::transport::{BlockingTls, Exchanged};
use super::{KmsIoError, KmsIoErrorKind, KmsTransport};
use libmongocrypt::KmsCtx;

/// A TLS stream after its handshake, rustls's or OpenSSL's, and the stream it runs over (for its timeouts).
trait TlsSession: Read + Write {
    fn sock(&self) -> &dyn KmsStream;
}

impl TlsSession for StreamOwned<ClientConnection, Box<dyn KmsStream>> {
    fn sock(&self) -> &dyn KmsStream {
        &*self.sock
    }
}

#[cfg(feature = "openssl")]
impl TlsSession for openssl::ssl::SslStream<Box<dyn KmsStream>> {
    fn sock(&self) -> &dyn KmsStream {
        &**self.get_ref()
    }
}

/// A connection of the blocking face: rustls's, or OpenSSL's (never kept).
#[allow(clippy::large_enum_variant, reason = "one per exchange, on its stack; rustls's is moved whole into the pool")]
pub(super) enum Conn {
    Rustls(BlockingTls),
    #[cfg(feature = "openssl")]
    OpenSsl(openssl::ssl::SslStream<Box<dyn KmsStream>>),
}

impl Conn {
    fn session(&mut self) -> &mut dyn TlsSession {
        match self {
            Conn::Rustls(tls) => tls,
            #[cfg(feature = "openssl")]
            Conn::OpenSsl(tls) => tls,
        }
    }
}

/// The blocking I/O of the exchange: each future is ready at its first poll.
impl Face for KmsTransport {
    type Conn = Conn;
    type Deadline = Option<(Instant, Duration)>;

    fn deadline(&self) -> Self::Deadline {
        self.request_timeout.map(|t| (Instant::now() + t, t))
    }

    fn max_idle(&self) -> Option<Duration> {
        self.keep_alive
    }

    fn request_cut(&self, target: &Target, message: &[u8]) -> Option<Range<usize>> {
        // The OpenSSL backend serves KMIP, whose requests are never kept.
        #[cfg(feature = "openssl")]
        if self.openssl_for(&target.provider).is_some() {
            return None;
        }
        let _ = target;
        request_cut(message)
    }

    fn take_idle(&self, target: &Target, max_idle: Duration) -> Option<Conn> {
        self.pool.take((), target, max_idle).map(Conn::Rustls)
    }

    fn still_idle(&self, conn: &mut Conn) -> impl Future<Output = bool> {
        std::future::ready(match conn {
            Conn::Rustls(tls) => still_idle(tls),
            #[cfg(feature = "openssl")]
            Conn::OpenSsl(_) => false,
        })
    }

    fn clear_idle(&self, target: &Target) {
        self.pool.clear((), target);
    }

    fn keep_idle(&self, target: &Target, conn: Conn, max_idle: Duration) {
        match conn {
            Conn::Rustls(mut tls) => {
                if nothing_pending(&mut tls.conn) {
                    self.pool.put((), target, tls, max_idle);
                }
            }
            #[cfg(feature = "openssl")]
            Conn::OpenSsl(_) => {}
        }
    }

    fn open(&self, target: &Target, deadline: Self::Deadline) -> impl Future<Output = Result<Conn, KmsIoErrorKind>> {
        std::future::ready(self.open_tls(target, deadline))
    }

    fn write(
        &self,
        conn: &mut Conn,
        before: &[u8],
        after: &[u8],
        deadline: Self::Deadline,
    ) -> impl Future<Output = Result<(), KmsIoErrorKind>> {
        let during = "writing the request";
        let tls = conn.session();
        std::future::ready(self.arm(tls.sock(), deadline, during).and_then(|()| {
            tls.write_all(before)
                .and_then(|()| tls.write_all(after))
                .and_then(|()| tls.flush())
                .map_err(|e| self.classify(e, during, deadline))
        }))
    }

    fn read(
        &self,
        conn: &mut Conn,
        buf: &mut [u8],
        deadline: Self::Deadline,
    ) -> impl Future<Output = Result<usize, KmsIoErrorKind>> {
        std::future::ready(self.read_some(conn.session(), buf, deadline))
    }
}

impl KmsTransport {
    pub(super) fn exchange_inner(&self, kms: &mut KmsCtx<'_>) -> Result<Exchanged, KmsIoError> {
        exchange(self, kms).now_or_never().expect("the blocking face's futures are all ready at once")
    }

    /// A new connection: the stream, then the handshake of the provider's TLS backend.
    fn open_tls(&self, target: &Target, deadline: Option<(Instant, Duration)>) -> Result<Conn, KmsIoErrorKind> {
        let sock = self.open(target, deadline)?;
        let during = "the TLS handshake";
        self.arm(&*sock, deadline, during)?;
        #[cfg(feature = "openssl")]
        if let Some(connector) = self.openssl_for(&target.provider) {
            return self.openssl_handshake(connector, target, sock, deadline).map(Conn::OpenSsl);
        }
        let conn = ClientConnection::new(self.config_for(&target.provider), target.server_name.clone())
            .map_err(KmsIoErrorKind::Tls)?;
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).map_err(|e| self.classify(e, during, deadline))?;
        }
        Ok(Conn::Rustls(tls))
    }

    /// One read of the reply, bounded by its timeout; 0 when the peer closed the connection.
    fn read_some(
        &self,
        tls: &mut dyn TlsSession,
        buf: &mut [u8],
        deadline: Option<(Instant, Duration)>,
    ) -> Result<usize, KmsIoErrorKind> {
        let during = "reading the reply";
        loop {
            self.arm(tls.sock(), deadline, during)?;
            return match tls.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // rustls's "peer closed connection without sending TLS close_notify": the same to a user.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                Err(e) => Err(self.classify(e, during, deadline)),
                Ok(n) => Ok(n),
            };
        }
    }

    /// The OpenSSL handshake (feature `openssl`): SNI and hostname verification name the KMS host.
    #[cfg(feature = "openssl")]
    fn openssl_handshake(
        &self,
        connector: &openssl::ssl::SslConnector,
        target: &Target,
        sock: Box<dyn KmsStream>,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<openssl::ssl::SslStream<Box<dyn KmsStream>>, KmsIoErrorKind> {
        use openssl::ssl::HandshakeError;
        let mut config = connector
            .configure()
            .map_err(|e| KmsIoErrorKind::OpenSsl(super::openssl::OpenSslError { message: e.to_string() }))?;
        let failed_cert = super::openssl::record_failed_certificate(&mut config);
        match config.connect(&target.host, sock) {
            Ok(stream) => Ok(stream),
            Err(HandshakeError::SetupFailure(e)) => {
                Err(KmsIoErrorKind::OpenSsl(super::openssl::OpenSslError { message: e.to_string() }))
            }
            // A blocking socket's read timed out (EAGAIN).
            Err(HandshakeError::WouldBlock(_)) => {
                let after = match deadline {
                    Some((at, total)) if Instant::now() + Duration::from_millis(5) >= at => total,
                    _ => self.io_timeout,
                };
                Err(KmsIoErrorKind::Timeout { during: "the TLS handshake", after })
            }
            Err(HandshakeError::Failure(mid)) => {
                Err(super::openssl::handshake_error(mid.error(), mid.ssl(), &failed_cert))
            }
        }
    }

    /// Sets the socket's timeouts for the next step: the I/O timeout, capped by what is left of the request
    /// timeout.
    fn arm(
        &self,
        sock: &dyn KmsStream,
        deadline: Option<(Instant, Duration)>,
        during: &'static str,
    ) -> Result<(), KmsIoErrorKind> {
        let mut timeout = self.io_timeout;
        if let Some((at, total)) = deadline {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(KmsIoErrorKind::Timeout { during, after: total });
            }
            timeout = timeout.min(left);
        }
        // A zero timeout means "block forever" to set_read_timeout; it is refused instead, so never pass one.
        let timeout = timeout.max(Duration::from_millis(1));
        sock.set_io_timeout(timeout).map_err(KmsIoErrorKind::Io)
    }

    fn classify(&self, e: io::Error, during: &'static str, deadline: Option<(Instant, Duration)>) -> KmsIoErrorKind {
        if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return KmsIoErrorKind::Tls(tls.clone());
        }
        #[cfg(feature = "openssl")]
        if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<openssl::ssl::Error>()) {
            if let Some(stack) = tls.ssl_error() {
                let message = format!("{stack}");
                return KmsIoErrorKind::OpenSsl(super::openssl::OpenSslError { message });
            }
        }
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            let after = match deadline {
                Some((at, total)) if Instant::now() + Duration::from_millis(5) >= at => total,
                _ => self.io_timeout,
            };
            return KmsIoErrorKind::Timeout { during, after };
        }
        KmsIoErrorKind::Io(e)
    }

    /// The stream of one attempt: the provider's connector's, or a TCP connection.
    fn open(
        &self,
        target: &Target,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<Box<dyn KmsStream>, KmsIoErrorKind> {
        let Some(connector) = self.connector_for(&target.provider) else {
            let sock = self.connect(&target.host, target.port, deadline)?;
            let _ = sock.set_nodelay(true);
            return Ok(Box::new(sock));
        };
        let timeout = self.connect_timeout_within(deadline)?;
        connector.connect(&target.host, target.port, timeout).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                KmsIoErrorKind::Timeout { during: "connecting", after: timeout }
            }
            _ => KmsIoErrorKind::Connector(e),
        })
    }

    /// The connect timeout, cut to what is left of `deadline` (the request's whole budget and its length); a
    /// timeout error once nothing is left.
    fn connect_timeout_within(&self, deadline: Option<(Instant, Duration)>) -> Result<Duration, KmsIoErrorKind> {
        let Some((at, total)) = deadline else { return Ok(self.connect_timeout) };
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(KmsIoErrorKind::Timeout { during: "connecting", after: total });
        }
        Ok(self.connect_timeout.min(left))
    }

    fn connect(
        &self,
        host: &str,
        port: u16,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<TcpStream, KmsIoErrorKind> {
        let addrs = match &self.resolver {
            Some(resolve) => resolve(host, port),
            None => (host, port).to_socket_addrs().map(Iterator::collect),
        }
        .map_err(KmsIoErrorKind::Resolve)?;
        let mut last = None;
        for addr in addrs {
            let timeout = self.connect_timeout_within(deadline)?;
            match TcpStream::connect_timeout(&addr, timeout.max(Duration::from_millis(1))) {
                Ok(sock) => return Ok(sock),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    last = Some(KmsIoErrorKind::Timeout { during: "connecting", after: timeout });
                }
                Err(source) => last = Some(KmsIoErrorKind::Connect { addr, source }),
            }
        }
        Err(last.unwrap_or_else(|| {
            KmsIoErrorKind::Resolve(io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")))
        }))
    }
}
