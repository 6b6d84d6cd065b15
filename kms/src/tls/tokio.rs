//! The async face of the exchange on tokio (feature `tokio`): [`TokioKmsTransport`], the I/O of one attempt at one
//! KMS request (`exchange`) over a `tokio::net::TcpStream` or an [`AsyncConnector`](super::AsyncConnector)'s stream, and tokio-rustls or
//! (feature `openssl`) tokio-openssl, with the same configuration, timeouts and errors as the blocking
//! [`KmsTransport`]. No back-off, no retry, no [`KmsCtx::fail`]: the state-machine core does those for
//! [`run_async`](libmongocrypt::state_machine::run_async) and [`run_tokio`](libmongocrypt::state_machine::run_tokio).

use std::future::Future;
use std::io;
use std::ops::Range;
#[cfg(feature = "openssl")]
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::connect::{EndpointKey, Target};
use super::connector::{deadline_after, AsyncKmsStream};
use super::error::tls_error_of;
use super::exchange::{exchange, request_deadline, Face};
use super::keep_alive::{nothing_pending, request_cut, Pool};
use super::resolve::{self, Lookup};
use super::transport::for_runner;
use super::{KmsIoError, KmsIoErrorKind, KmsTransport};
use libmongocrypt::state_machine::IoResult;
use libmongocrypt::KmsCtx;

/// A [`KmsTransport`] on tokio: the same TLS options, resolver and timeouts, with async I/O. Cheap to clone,
/// `Send + Sync`; its futures are `Send`. Needs a tokio runtime with its I/O and timer enabled.
///
/// An [`AsyncStateMachineIo`](libmongocrypt::state_machine::AsyncStateMachineIo) serves NEED_KMS with it in one line:
///
/// ```
/// use libmongocrypt::bson::{RawDocument, RawDocumentBuf};
/// use libmongocrypt_kms::tls::TokioKmsTransport;
/// use libmongocrypt::state_machine::{AsyncStateMachineIo, IoResult};
/// use libmongocrypt::KmsCtx;
///
/// struct Driver {
///     kms: TokioKmsTransport,
/// }
///
/// impl AsyncStateMachineIo for Driver {
///     # async fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> { Err("not here".into()) }
///     # async fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> { Err("not here".into()) }
///     # async fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> { Err("not here".into()) }
///     // list_collections, mark_command, find_keys: the driver's own.
///     async fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
///         self.kms.kms_request(kms).await
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct TokioKmsTransport {
    inner: KmsTransport,
    /// Kept-alive connections ([`KmsTransportBuilder::keep_alive`](super::KmsTransportBuilder::keep_alive)): this
    /// face's own, shared by its clones.
    pool: Arc<Pool<TlsStream<Stream>, EndpointKey<tokio::runtime::Id>>>,
}

/// The byte stream under TLS: a TCP connection, or an async connector's stream.
type Stream = Box<dyn AsyncKmsStream>;

/// A connection of the async face: rustls's, or OpenSSL's (never kept).
#[allow(clippy::large_enum_variant, reason = "one per exchange, in its future; rustls's is moved whole into the pool")]
pub(super) enum Conn {
    Rustls(TlsStream<Stream>),
    #[cfg(feature = "openssl")]
    OpenSsl(tokio_openssl::SslStream<Stream>),
}

impl Conn {
    fn io(&mut self) -> &mut dyn AsyncKmsStream {
        match self {
            Conn::Rustls(tls) => tls,
            #[cfg(feature = "openssl")]
            Conn::OpenSsl(tls) => tls,
        }
    }
}

impl From<KmsTransport> for TokioKmsTransport {
    fn from(inner: KmsTransport) -> TokioKmsTransport {
        TokioKmsTransport::new(inner)
    }
}

impl TokioKmsTransport {
    /// The async face of `transport` (its configuration is shared; kept-alive connections are not: each face keeps
    /// its own).
    pub fn new(transport: KmsTransport) -> TokioKmsTransport {
        TokioKmsTransport { inner: transport, pool: Arc::default() }
    }

    /// The blocking transport of the same configuration.
    pub fn blocking(&self) -> &KmsTransport {
        &self.inner
    }

    /// [`KmsTransport::kms_request`], async: for
    /// [`AsyncStateMachineIo::kms_request`](libmongocrypt::state_machine::AsyncStateMachineIo::kms_request). The runner
    /// handles the [`KmsIoError`] as for the blocking transport: errors that libmongocrypt raised end the run as
    /// [`RunError::Mongocrypt`](libmongocrypt::state_machine::RunError::Mongocrypt) with the endpoint added; network
    /// errors are reported with [`KmsCtx::fail`], and the last is the source of
    /// [`RunError::Io`](libmongocrypt::state_machine::RunError::Io), with the attempt count.
    pub async fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        for_runner(self.exchange(kms).await)
    }

    /// [`KmsTransport::exchange`], async: one exchange with the request's endpoint.
    pub async fn exchange(&self, kms: &mut KmsCtx<'_>) -> Result<(), KmsIoError> {
        exchange(self, kms).await.map(|_| ())
    }

    /// The timeout of the next step: the I/O timeout (or `per_step`), capped by what is left of the request
    /// timeout; and whether it is the request timeout that binds.
    fn budget(
        &self,
        deadline: Option<(Instant, Duration)>,
        per_step: Duration,
        during: &'static str,
    ) -> Result<(Duration, Duration), KmsIoErrorKind> {
        match deadline {
            None => Ok((per_step, per_step)),
            Some((at, total)) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(KmsIoErrorKind::Timeout { during, after: total });
                }
                Ok(if left < per_step { (left, total) } else { (per_step, per_step) })
            }
        }
    }

    /// One step of the exchange, bounded by its timeout; I/O errors classified as the blocking transport does.
    async fn step<T>(
        &self,
        deadline: Option<(Instant, Duration)>,
        during: &'static str,
        step: impl Future<Output = io::Result<T>>,
    ) -> Result<T, KmsIoErrorKind> {
        let (timeout, after) = self.budget(deadline, self.inner.io_timeout, during)?;
        match tokio::time::timeout(timeout, step).await {
            Err(_elapsed) => Err(KmsIoErrorKind::Timeout { during, after }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(match tls_error_of(&e) {
                Some(tls) => tls,
                None if e.kind() == io::ErrorKind::TimedOut => KmsIoErrorKind::Timeout { during, after },
                None => KmsIoErrorKind::Io(e),
            }),
        }
    }

    /// The stream of one attempt: the provider's async connector's, or a TCP connection. The connector's whole
    /// work is bounded by its deadline here too, whatever the connector does.
    async fn stream(&self, target: &Target, deadline: Option<(Instant, Duration)>) -> Result<Stream, KmsIoErrorKind> {
        let Some(connector) = self.inner.async_connector_for(&target.provider) else {
            if self.inner.connector_for(&target.provider).is_some() {
                // Going around the caller's proxy would be worse than failing.
                return Err(KmsIoErrorKind::Connector(io::Error::other(
                    "only a blocking connector is configured for this provider: configure an async one \
                     (KmsTransportBuilder::async_connector), or use KmsTransport",
                )));
            }
            let sock = self.connect(target, deadline).await?;
            let _ = sock.set_nodelay(true);
            return Ok(Box::new(sock));
        };
        let during = "connecting through the connector";
        let (timeout, after) = self.budget(deadline, self.inner.connect_timeout, during)?;
        let until = deadline_after(std::time::Instant::now(), timeout);
        match tokio::time::timeout_at(until.into(), connector.connect(&target.host, target.port, until)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) if !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Err(KmsIoErrorKind::Connector(e))
            }
            Ok(Err(_)) | Err(_) => Err(KmsIoErrorKind::Timeout { during, after }),
        }
    }

    /// The OpenSSL handshake (feature `openssl`), one step bounded as rustls's: SNI and hostname verification name
    /// the KMS host; the same connector, and the same errors, as on the blocking face.
    #[cfg(feature = "openssl")]
    async fn openssl_handshake(
        &self,
        connector: &openssl::ssl::SslConnector,
        target: &Target,
        sock: Stream,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<tokio_openssl::SslStream<Stream>, KmsIoErrorKind> {
        use super::openssl::{handshake_error, session, OpenSslError};
        let (ssl, failed_cert) = session(connector, &target.host)?;
        let mut tls = tokio_openssl::SslStream::new(ssl, sock)
            .map_err(|e| KmsIoErrorKind::OpenSsl(OpenSslError { message: e.to_string() }))?;
        let during = "the TLS handshake";
        let (timeout, after) = self.budget(deadline, self.inner.io_timeout, during)?;
        match tokio::time::timeout(timeout, Pin::new(&mut tls).connect()).await {
            Ok(Ok(())) => Ok(tls),
            Ok(Err(e)) if e.io_error().is_some_and(|io| io.kind() == io::ErrorKind::TimedOut) => {
                Err(KmsIoErrorKind::Timeout { during, after })
            }
            Ok(Err(e)) => Err(handshake_error(&e, tls.ssl(), &failed_cert)),
            Err(_elapsed) => Err(KmsIoErrorKind::Timeout { during, after }),
        }
    }

    async fn connect(
        &self,
        target: &Target,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<TcpStream, KmsIoErrorKind> {
        let (host, port) = (target.host.as_str(), target.port);
        let (timeout, after) = self.budget(deadline, self.inner.connect_timeout, "resolving")?;
        let lookup = Lookup::Host { resolver: self.inner.resolver.clone(), host: host.to_owned(), port };
        let addrs = resolve::within_async(lookup, timeout)
            .await
            .map_err(KmsIoErrorKind::Resolve)?
            .ok_or(KmsIoErrorKind::Timeout { during: "resolving", after })?;
        let mut last = None;
        for addr in addrs {
            let (timeout, after) = self.budget(deadline, self.inner.connect_timeout, "connecting")?;
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(sock)) => return Ok(sock),
                Ok(Err(source)) => last = Some(KmsIoErrorKind::Connect { addr, source }),
                Err(_elapsed) => last = Some(KmsIoErrorKind::Timeout { during: "connecting", after }),
            }
        }
        Err(last.unwrap_or_else(|| {
            KmsIoErrorKind::Resolve(io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")))
        }))
    }
}

/// The async I/O of the exchange, on tokio. A socket belongs to the runtime that opened it: each runtime has its own
/// kept connections.
impl Face for TokioKmsTransport {
    type Conn = Conn;
    type Deadline = Option<(Instant, Duration)>;

    fn deadline(&self, kms: &KmsCtx<'_>) -> Self::Deadline {
        request_deadline(std::time::Instant::now(), self.inner.request_timeout, kms.deadline())
            .map(|(at, after)| (Instant::from_std(at), after))
    }

    fn max_idle(&self) -> Option<Duration> {
        self.inner.keep_alive
    }

    fn request_cut(&self, target: &Target, message: &[u8]) -> Option<Range<usize>> {
        self.inner.may_keep(&target.provider).then(|| request_cut(message))?
    }

    fn take_idle(&self, target: &Target, max_idle: Duration) -> Option<Self::Conn> {
        let runtime = tokio::runtime::Handle::try_current().ok()?.id();
        self.pool.take(target.pool_key(runtime), max_idle).map(Conn::Rustls)
    }

    async fn still_idle(&self, conn: &mut Self::Conn) -> bool {
        match conn {
            Conn::Rustls(tls) => still_idle(tls).await,
            #[cfg(feature = "openssl")]
            Conn::OpenSsl(_) => false,
        }
    }

    fn clear_idle(&self, target: &Target) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            self.pool.clear(&target.pool_key(handle.id()));
        }
    }

    fn keep_idle(&self, target: &Target, conn: Self::Conn, max_idle: Duration) {
        match conn {
            Conn::Rustls(mut tls) => {
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    if nothing_pending(tls.get_mut().1) {
                        self.pool.put(target.pool_key(handle.id()), tls, max_idle);
                    }
                }
            }
            #[cfg(feature = "openssl")]
            Conn::OpenSsl(_) => {}
        }
    }

    async fn open(&self, target: &Target, deadline: Self::Deadline) -> Result<Self::Conn, KmsIoErrorKind> {
        let sock = self.stream(target, deadline).await?;
        #[cfg(feature = "openssl")]
        if let Some(connector) = self.inner.openssl_for(&target.provider) {
            return self.openssl_handshake(connector, target, sock, deadline).await.map(Conn::OpenSsl);
        }
        let connector = TlsConnector::from(self.inner.config_for(&target.provider));
        let handshake = connector.connect(target.server_name.clone(), sock);
        self.step(deadline, "the TLS handshake", handshake).await.map(Conn::Rustls)
    }

    async fn write(
        &self,
        conn: &mut Self::Conn,
        before: &[u8],
        after: &[u8],
        deadline: Self::Deadline,
    ) -> Result<(), KmsIoErrorKind> {
        let conn = conn.io();
        let write = async {
            conn.write_all(before).await?;
            conn.write_all(after).await?;
            conn.flush().await
        };
        self.step(deadline, "writing the request", write).await
    }

    async fn read(
        &self,
        conn: &mut Self::Conn,
        buf: &mut [u8],
        deadline: Self::Deadline,
    ) -> Result<usize, KmsIoErrorKind> {
        match self.step(deadline, "reading the reply", conn.io().read(buf)).await {
            // rustls's "peer closed connection without sending TLS close_notify": the same to a user.
            Err(KmsIoErrorKind::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            result => result,
        }
    }
}

/// Whether a kept connection can carry another request: one poll of a read finds nothing (no bytes, which would be
/// read as the next reply; no close).
async fn still_idle(tls: &mut TlsStream<Stream>) -> bool {
    let mut byte = [0u8; 1];
    std::future::poll_fn(|cx| {
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        std::task::Poll::Ready(std::pin::Pin::new(&mut *tls).poll_read(cx, &mut buf).is_pending())
    })
    .await
}
