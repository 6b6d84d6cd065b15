//! The blocking exchange: one attempt at one KMS request over a `TcpStream` and rustls, with its timeouts. No
//! back-off, no retry, no [`KmsCtx::fail`]: those are the state-machine core's.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};

use super::connect::{closed_early, Feeder, Target};
use super::connector::KmsStream;
use super::keep_alive::{nothing_pending, request_cut, still_idle, Conversed, Failed};
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

impl KmsTransport {
    pub(super) fn exchange_inner(&self, kms: &mut KmsCtx<'_>) -> Result<Exchanged, KmsIoError> {
        let target = Target::of(kms)?;
        let fail = |kind| target.fail(kind);
        let deadline = self.request_timeout.map(|t| (Instant::now() + t, t));
        #[cfg(feature = "openssl")]
        let openssl = self.openssl_for(&target.provider);
        #[cfg(not(feature = "openssl"))]
        let openssl: Option<()> = None;
        let cut = match (self.keep_alive, &openssl) {
            (Some(_), None) => kms.message().ok().and_then(request_cut),
            _ => None,
        };

        if let (Some(max_idle), Some(cut)) = (self.keep_alive, &cut) {
            if let Some(mut tls) = self.pool.take((), &target, max_idle) {
                if !still_idle(&mut tls) {
                    self.pool.clear((), &target);
                } else {
                    match self.converse(&mut tls, kms, Some(cut.clone()), deadline) {
                        Ok(conversed) => return Ok(self.keep(&target, tls, conversed)),
                        Err(failed) => {
                            self.pool.clear((), &target);
                            if !failed.closed_while_idle(&target) {
                                return Err(fail(failed.kind));
                            }
                        }
                    }
                }
            }
        }

        let sock = self.open(&target, deadline).map_err(fail)?;
        let during = "the TLS handshake";
        self.arm(&*sock, deadline, during).map_err(fail)?;
        #[cfg(feature = "openssl")]
        if let Some(connector) = openssl {
            let mut tls = self.openssl_handshake(connector, &target, sock, deadline).map_err(fail)?;
            return self.converse(&mut tls, kms, None, deadline).map(|c| c.exchanged).map_err(|f| fail(f.kind));
        }
        let conn = ClientConnection::new(self.config_for(&target.provider), target.server_name.clone())
            .map_err(|e| fail(KmsIoErrorKind::Tls(e)))?;
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).map_err(|e| fail(self.classify(e, during, deadline)))?;
        }
        match self.converse(&mut tls, kms, cut, deadline) {
            Ok(conversed) => Ok(self.keep(&target, tls, conversed)),
            Err(failed) => Err(fail(failed.kind)),
        }
    }

    /// Returns a connection to the pool if its conversation left it reusable.
    fn keep(&self, target: &Target, mut tls: BlockingTls, conversed: Conversed) -> Exchanged {
        if let (true, Some(max_idle)) = (conversed.reusable, self.keep_alive) {
            if nothing_pending(&mut tls.conn) {
                self.pool.put((), target, tls, max_idle);
            }
        }
        conversed.exchanged
    }

    /// After the handshake, whatever the TLS backend: write the request (without the `cut` bytes, on a kept-alive
    /// connection), read and feed the reply.
    fn converse(
        &self,
        tls: &mut dyn TlsSession,
        kms: &mut KmsCtx<'_>,
        cut: Option<Range<usize>>,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<Conversed, Failed> {
        let during = "writing the request";
        self.arm(tls.sock(), deadline, during)?;
        // Written from libmongocrypt's buffer (no copy: for Azure and GCP it holds the access token).
        let message = kms.message().map_err(KmsIoErrorKind::Mongocrypt)?;
        let (before, after) = match &cut {
            Some(cut) => (&message[..cut.start], &message[cut.end..]),
            None => (message, &[][..]),
        };
        tls.write_all(before)
            .and_then(|()| tls.write_all(after))
            .and_then(|()| tls.flush())
            .map_err(|e| self.classify(e, during, deadline))?;

        let during = "reading the reply";
        let mut buf = vec![0u8; 16 * 1024];
        let mut feeder = Feeder::default();
        loop {
            let wanted = feeder.wanted(kms, buf.len());
            if wanted == 0 {
                return Ok(feeder.complete(cut.is_some()));
            }
            self.arm(tls.sock(), deadline, during).map_err(|kind| feeder.failed(kind))?;
            let n = match tls.read(&mut buf[..wanted]) {
                Ok(0) => return Err(feeder.failed(closed_early(feeder.received()))),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // rustls's "peer closed connection without sending TLS close_notify": the same to a user.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(feeder.failed(closed_early(feeder.received())))
                }
                Err(e) => return Err(feeder.failed(self.classify(e, during, deadline))),
            };
            if let Some(exchanged) = feeder.feed(kms, &buf[..n]).map_err(|kind| feeder.failed(kind))? {
                return Ok(Conversed { exchanged, reusable: false });
            }
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
