//! The async exchange on tokio (feature `tokio`): [`TokioKmsTransport`], one attempt at one KMS
//! request over `tokio::net::TcpStream` and tokio-rustls, with the same configuration, timeouts and errors as the
//! blocking [`KmsTransport`]. No back-off, no retry, no [`KmsCtx::fail`]: the state-machine core does those for
//! [`run_async`](libmongocrypt::state_machine::run_async) and [`run_tokio`](libmongocrypt::state_machine::run_tokio).

use std::future::Future;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::connect::{closed_early, Feeder, Target};
use super::keep_alive::{nothing_pending, request_cut, Conversed, Failed, Pool};
use super::transport::{for_runner, Exchanged};
use super::{KmsIoError, KmsIoErrorKind, KmsTransport};
use libmongocrypt::state_machine::IoResult;
use libmongocrypt::KmsCtx;

/// A [`KmsTransport`] on tokio: the same TLS options, resolver and timeouts, with async I/O. Cheap to clone,
/// `Send + Sync`; its futures are `Send`. Needs a tokio runtime with its I/O and timer enabled.
///
/// An [`AsyncStateMachineIo`](libmongocrypt::state_machine::AsyncStateMachineIo) serves NEED_KMS with it in one line:
///
/// ```
/// use bson::{RawDocument, RawDocumentBuf};
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
    pool: Arc<Pool<TlsStream<TcpStream>, tokio::runtime::Id>>,
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
        self.exchange_inner(kms).await.map(|_| ())
    }

    async fn exchange_inner(&self, kms: &mut KmsCtx<'_>) -> Result<Exchanged, KmsIoError> {
        let config = &self.inner;
        let target = Target::of(kms)?;
        let fail = |kind| target.fail(kind);
        let deadline = config.request_timeout.map(|t| (Instant::now() + t, t));
        let cut = config.keep_alive.and_then(|_| kms.message().ok().and_then(request_cut));

        // A socket belongs to the runtime that opened it: each runtime has its own kept connections.
        let runtime = tokio::runtime::Handle::try_current().map(|h| h.id()).ok();
        if let (Some(max_idle), Some(cut), Some(runtime)) = (config.keep_alive, &cut, runtime) {
            if let Some(mut tls) = self.pool.take(runtime, &target, max_idle) {
                if !still_idle(&mut tls).await {
                    self.pool.clear(runtime, &target);
                } else {
                    match self.converse(&mut tls, kms, Some(cut.clone()), deadline).await {
                        Ok(conversed) => return Ok(self.keep(&target, tls, conversed)),
                        Err(failed) => {
                            self.pool.clear(runtime, &target);
                            if !failed.closed_while_idle(&target) {
                                return Err(fail(failed.kind));
                            }
                        }
                    }
                }
            }
        }

        let sock = self.connect(&target, deadline).await.map_err(fail)?;
        let _ = sock.set_nodelay(true);
        let connector = TlsConnector::from(config.config_for(&target.provider));
        let handshake = connector.connect(target.server_name.clone(), sock);
        let mut tls = self.step(deadline, "the TLS handshake", handshake).await.map_err(fail)?;
        match self.converse(&mut tls, kms, cut, deadline).await {
            Ok(conversed) => Ok(self.keep(&target, tls, conversed)),
            Err(failed) => Err(fail(failed.kind)),
        }
    }

    /// Returns a connection to the pool if its conversation left it reusable.
    fn keep(&self, target: &Target, mut tls: TlsStream<TcpStream>, conversed: Conversed) -> Exchanged {
        let runtime = tokio::runtime::Handle::try_current().map(|h| h.id());
        if let (true, Some(max_idle), Ok(runtime)) = (conversed.reusable, self.inner.keep_alive, runtime) {
            if nothing_pending(tls.get_mut().1) {
                self.pool.put(runtime, target, tls, max_idle);
            }
        }
        conversed.exchanged
    }

    /// After the handshake: write the request (without the `cut` bytes, on a kept-alive connection), read and feed
    /// the reply.
    async fn converse(
        &self,
        tls: &mut TlsStream<TcpStream>,
        kms: &mut KmsCtx<'_>,
        cut: Option<Range<usize>>,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<Conversed, Failed> {
        // Written from libmongocrypt's buffer (no copy: for Azure and GCP it holds the access token).
        let message = kms.message().map_err(KmsIoErrorKind::Mongocrypt)?;
        let (before, after) = match &cut {
            Some(cut) => (&message[..cut.start], &message[cut.end..]),
            None => (message, &[][..]),
        };
        let write = async {
            tls.write_all(before).await?;
            tls.write_all(after).await?;
            tls.flush().await
        };
        self.step(deadline, "writing the request", write).await?;

        let mut buf = vec![0u8; 16 * 1024];
        let mut feeder = Feeder::default();
        loop {
            let wanted = feeder.wanted(kms, buf.len());
            if wanted == 0 {
                return Ok(feeder.complete(cut.is_some()));
            }
            let n = match self.step(deadline, "reading the reply", tls.read(&mut buf[..wanted])).await {
                Ok(0) => return Err(feeder.failed(closed_early(feeder.received()))),
                Ok(n) => n,
                // rustls's "peer closed connection without sending TLS close_notify": the same to a user.
                Err(KmsIoErrorKind::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(feeder.failed(closed_early(feeder.received())))
                }
                Err(kind) => return Err(feeder.failed(kind)),
            };
            if let Some(exchanged) = feeder.feed(kms, &buf[..n]).map_err(|kind| feeder.failed(kind))? {
                return Ok(Conversed { exchanged, reusable: false });
            }
        }
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
            Ok(Err(e)) => Err(match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                Some(tls) => KmsIoErrorKind::Tls(tls.clone()),
                None if e.kind() == io::ErrorKind::TimedOut => KmsIoErrorKind::Timeout { during, after },
                None => KmsIoErrorKind::Io(e),
            }),
        }
    }

    async fn connect(
        &self,
        target: &Target,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<TcpStream, KmsIoErrorKind> {
        let (host, port) = (target.host.as_str(), target.port);
        if self.inner.connector_for(&target.provider).is_some() {
            return Err(KmsIoErrorKind::Connector(io::Error::other(
                "a connector is configured for this provider; connectors are blocking: use KmsTransport",
            )));
        }
        #[cfg(feature = "openssl")]
        if self.inner.openssl_for(&target.provider).is_some() {
            return Err(KmsIoErrorKind::Connector(io::Error::other(
                "the OpenSSL backend is chosen for this provider (openssl_for); it is blocking: use KmsTransport",
            )));
        }
        let addrs = match &self.inner.resolver {
            Some(resolve) => resolve(host, port),
            None => tokio::net::lookup_host((host, port)).await.map(Iterator::collect),
        }
        .map_err(KmsIoErrorKind::Resolve)?;
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

/// Whether a kept connection can carry another request: one poll of a read finds nothing (no bytes, which would be
/// read as the next reply; no close).
async fn still_idle(tls: &mut TlsStream<TcpStream>) -> bool {
    let mut byte = [0u8; 1];
    std::future::poll_fn(|cx| {
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        std::task::Poll::Ready(std::pin::Pin::new(&mut *tls).poll_read(cx, &mut buf).is_pending())
    })
    .await
}
