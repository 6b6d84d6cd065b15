//! The blocking face of the exchange (`exchange`): its I/O over a `TcpStream` (or a connector's stream) and rustls
//! or OpenSSL, with its timeouts.
//!
//! Every step (connect, handshake, write, each read of the reply) has a deadline, the sooner of its own timeout
//! and the request's: the stream under TLS ([`Bounded`]) sets the socket's timeouts to what is left of it before
//! each read and write, so that a peer sending a byte at a time cannot stretch a step (a socket timeout alone
//! restarts with every byte).

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::ops::Range;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rustls::{ClientConnection, StreamOwned};

use super::bounded::{BlockingTls, Bounded, StepDeadline};
use super::connect::{Exchanged, Target};
use super::connector::{deadline_after, KmsStream};
use super::error::tls_error_of;
use super::exchange::{exchange, request_deadline, Face};
use super::keep_alive::{nothing_pending, request_cut, still_idle};
use super::resolve::{self, Lookup};
use super::{KmsIoError, KmsIoErrorKind, KmsTransport};
use libmongocrypt::KmsCtx;

/// A TLS stream, rustls's or OpenSSL's, and the bounded stream it runs over.
trait TlsSession: Read + Write {
    fn bounded(&mut self) -> &mut Bounded;
}

impl TlsSession for BlockingTls {
    fn bounded(&mut self) -> &mut Bounded {
        &mut self.sock
    }
}

#[cfg(feature = "openssl")]
impl TlsSession for openssl::ssl::SslStream<Bounded> {
    fn bounded(&mut self) -> &mut Bounded {
        self.get_mut()
    }
}

/// A connection of the blocking face: rustls's, or OpenSSL's (never kept).
#[allow(clippy::large_enum_variant, reason = "one per exchange, on its stack; rustls's is moved whole into the pool")]
pub(super) enum Conn {
    Rustls(BlockingTls),
    #[cfg(feature = "openssl")]
    OpenSsl(openssl::ssl::SslStream<Bounded>),
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

    fn deadline(&self, kms: &KmsCtx<'_>) -> Self::Deadline {
        request_deadline(Instant::now(), self.request_timeout, kms.deadline())
    }

    fn max_idle(&self) -> Option<Duration> {
        self.keep_alive
    }

    fn request_cut(&self, target: &Target, message: &[u8]) -> Option<Range<usize>> {
        self.may_keep(&target.provider).then(|| request_cut(message))?
    }

    fn take_idle(&self, target: &Target, max_idle: Duration) -> Option<Conn> {
        self.pool.take(target.pool_key(()), max_idle).map(Conn::Rustls)
    }

    fn still_idle(&self, conn: &mut Conn) -> impl Future<Output = bool> {
        std::future::ready(match conn {
            Conn::Rustls(tls) => still_idle(tls),
            #[cfg(feature = "openssl")]
            Conn::OpenSsl(_) => false,
        })
    }

    fn clear_idle(&self, target: &Target) {
        self.pool.clear(&target.pool_key(()));
    }

    fn keep_idle(&self, target: &Target, conn: Conn, max_idle: Duration) {
        match conn {
            Conn::Rustls(mut tls) => {
                tls.sock.step = None;
                if nothing_pending(&mut tls.conn) {
                    self.pool.put(target.pool_key(()), tls, max_idle);
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
        std::future::ready(self.arm(tls.bounded(), deadline, during).and_then(|()| {
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
        let mut sock = Bounded::new(self.open(target, deadline)?);
        let during = "the TLS handshake";
        // The whole handshake is one step: each of its reads and writes gets what is left of it.
        self.arm(&mut sock, deadline, during)?;
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
        // One read of the exchange is one step, however many records it takes.
        self.arm(tls.bounded(), deadline, during)?;
        loop {
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
        sock: Bounded,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<openssl::ssl::SslStream<Bounded>, KmsIoErrorKind> {
        use openssl::ssl::HandshakeError;
        let (ssl, failed_cert) = super::openssl::session(connector, &target.host)?;
        match ssl.connect(sock) {
            Ok(stream) => Ok(stream),
            Err(HandshakeError::SetupFailure(e)) => {
                Err(KmsIoErrorKind::OpenSsl(super::openssl::OpenSslError { message: e.to_string() }))
            }
            // A blocking socket's read timed out (EAGAIN).
            Err(HandshakeError::WouldBlock(_)) => Err(self.timeout("the TLS handshake", deadline)),
            // The step's deadline passed (Bounded's TimedOut).
            Err(HandshakeError::Failure(mid))
                if mid.error().io_error().is_some_and(|e| e.kind() == io::ErrorKind::TimedOut) =>
            {
                Err(self.timeout("the TLS handshake", deadline))
            }
            Err(HandshakeError::Failure(mid)) => {
                Err(super::openssl::handshake_error(mid.error(), mid.ssl(), &failed_cert))
            }
        }
    }

    /// Starts a step on `sock`: its deadline is the I/O timeout from now, or the request's deadline if sooner.
    fn arm(
        &self,
        sock: &mut Bounded,
        deadline: Option<(Instant, Duration)>,
        during: &'static str,
    ) -> Result<(), KmsIoErrorKind> {
        let now = Instant::now();
        let own = now.checked_add(self.io_timeout).map(|at| StepDeadline { at, after: self.io_timeout });
        let request = deadline.map(|(at, after)| StepDeadline { at, after });
        sock.step = match (own, request) {
            (Some(own), Some(request)) => Some(if request.at < own.at { request } else { own }),
            (own, request) => own.or(request),
        };
        match sock.step {
            Some(step) if step.at <= now => Err(KmsIoErrorKind::Timeout { during, after: step.after }),
            _ => Ok(()),
        }
    }

    /// The timeout error of a step: the request timeout if that is what ran out, else the step's own (`own`).
    fn timeout_of(during: &'static str, own: Duration, deadline: Option<(Instant, Duration)>) -> KmsIoErrorKind {
        let after = match deadline {
            Some((at, total)) if Instant::now() + Duration::from_millis(5) >= at => total,
            _ => own,
        };
        KmsIoErrorKind::Timeout { during, after }
    }

    /// [`timeout_of`](Self::timeout_of) a step bounded by the I/O timeout.
    fn timeout(&self, during: &'static str, deadline: Option<(Instant, Duration)>) -> KmsIoErrorKind {
        Self::timeout_of(during, self.io_timeout, deadline)
    }

    fn classify(&self, e: io::Error, during: &'static str, deadline: Option<(Instant, Duration)>) -> KmsIoErrorKind {
        if let Some(tls) = tls_error_of(&e) {
            return tls;
        }
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            return self.timeout(during, deadline);
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
        // The connector's deadline: the connect timeout from now, or the request's if sooner.
        let until = deadline_after(Instant::now(), self.connect_timeout_within(deadline)?);
        connector.connect(&target.host, target.port, until).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                Self::timeout_of("connecting through the connector", self.connect_timeout, deadline)
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
        let lookup = Lookup::Host { resolver: self.resolver.clone(), host: host.to_owned(), port };
        let addrs = resolve::within(lookup, self.connect_timeout_within(deadline)?)
            .map_err(KmsIoErrorKind::Resolve)?
            .ok_or_else(|| Self::timeout_of("resolving", self.connect_timeout, deadline))?;
        let mut last = None;
        for addr in addrs {
            let timeout = self.connect_timeout_within(deadline)?;
            match TcpStream::connect_timeout(&addr, timeout.max(Duration::from_millis(1))) {
                Ok(sock) => return Ok(sock),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    last = Some(Self::timeout_of("connecting", self.connect_timeout, deadline));
                }
                Err(source) => last = Some(KmsIoErrorKind::Connect { addr, source }),
            }
        }
        Err(last.unwrap_or_else(|| {
            KmsIoErrorKind::Resolve(io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")))
        }))
    }
}
