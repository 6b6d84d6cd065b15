//! [`KmsTransport`] and its builder: the configuration, and the entry points that hand the request loop to the
//! state-machine core.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::bson::Document;
use rustls::ClientConfig;

use super::bounded::BlockingTls;
use super::connect::{EndpointKey, Exchanged};
use super::keep_alive::Pool;
#[cfg(feature = "tokio")]
use super::AsyncConnector;
use super::{Connector, KmsIoError, KmsIoErrorKind, Resolver, TlsConfigError, TlsOptions};
use libmongocrypt::state_machine::{IoResult, KmsAttemptError, Runner};
use libmongocrypt::Error;
use libmongocrypt::{KmsCtx, KmsScope};

/// Serves KMS requests over TLS. Cheap to clone (the configuration is shared), `Send + Sync`.
///
/// ```no_run
/// use std::time::Duration;
/// use libmongocrypt_kms::tls::{KmsTransport, TlsOptions};
///
/// let transport = KmsTransport::builder()
///     .tls_options("kmip", TlsOptions::new().ca_file("ca.pem")?.certificate_key_file("client.pem", None)?)
///     .timeout(Duration::from_secs(10))
///     .build()?;
/// # Ok::<(), libmongocrypt_kms::tls::TlsConfigError>(())
/// ```
#[derive(Clone)]
pub struct KmsTransport {
    pub(super) default_config: Arc<ClientConfig>,
    pub(super) provider_configs: Arc<HashMap<String, Arc<ClientConfig>>>,
    pub(super) connect_timeout: Duration,
    pub(super) io_timeout: Duration,
    pub(super) request_timeout: Option<Duration>,
    pub(super) resolver: Option<Arc<Resolver>>,
    pub(super) max_attempts: u32,
    pub(super) max_concurrent: usize,
    pub(super) default_connector: Option<Arc<dyn Connector>>,
    pub(super) provider_connectors: Arc<HashMap<String, Arc<dyn Connector>>>,
    #[cfg(feature = "tokio")]
    pub(super) default_async_connector: Option<Arc<dyn AsyncConnector>>,
    #[cfg(feature = "tokio")]
    pub(super) provider_async_connectors: Arc<HashMap<String, Arc<dyn AsyncConnector>>>,
    #[cfg(feature = "openssl")]
    pub(super) openssl: Arc<OpenSslChoice<openssl::ssl::SslConnector>>,
    pub(super) keep_alive: Option<Duration>,
    pub(super) pool: Arc<Pool<BlockingTls, EndpointKey<()>>>,
}

/// Which providers the OpenSSL backend serves (feature `openssl`), and their connectors.
#[cfg(feature = "openssl")]
pub(super) struct OpenSslChoice<T> {
    pub(super) all: Option<T>,
    pub(super) providers: HashMap<String, T>,
}

#[cfg(feature = "openssl")]
impl<T> Default for OpenSslChoice<T> {
    fn default() -> Self {
        OpenSslChoice { all: None, providers: HashMap::new() }
    }
}

impl fmt::Debug for KmsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut providers: Vec<_> = self.provider_configs.keys().collect();
        providers.sort();
        let mut debug = f.debug_struct("KmsTransport");
        debug
            .field("tls_options_for", &providers)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("custom_resolver", &self.resolver.is_some())
            .field("max_attempts", &self.max_attempts)
            .field("max_concurrent", &self.max_concurrent)
            .field("keep_alive", &self.keep_alive)
            .field("pool", &self.pool);
        #[cfg(feature = "openssl")]
        {
            let mut openssl: Vec<_> = self.openssl.providers.keys().collect();
            openssl.sort();
            debug.field("openssl_for", &openssl).field("openssl_for_all", &self.openssl.all.is_some());
        }
        debug.finish()
    }
}

/// Configures a [`KmsTransport`].
pub struct KmsTransportBuilder {
    default_options: TlsOptions,
    provider_options: HashMap<String, TlsOptions>,
    connect_timeout: Duration,
    io_timeout: Duration,
    request_timeout: Option<Duration>,
    resolver: Option<Arc<Resolver>>,
    max_attempts: u32,
    max_concurrent: usize,
    default_client_config: Option<Arc<ClientConfig>>,
    provider_client_configs: HashMap<String, Arc<ClientConfig>>,
    default_connector: Option<Arc<dyn Connector>>,
    provider_connectors: HashMap<String, Arc<dyn Connector>>,
    #[cfg(feature = "tokio")]
    default_async_connector: Option<Arc<dyn AsyncConnector>>,
    #[cfg(feature = "tokio")]
    provider_async_connectors: HashMap<String, Arc<dyn AsyncConnector>>,
    #[cfg(feature = "openssl")]
    openssl: OpenSslChoice<()>,
    keep_alive: Option<Duration>,
}

impl fmt::Debug for KmsTransportBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut providers: Vec<_> = self.provider_options.keys().collect();
        providers.sort();
        f.debug_struct("KmsTransportBuilder")
            .field("default_options", &self.default_options)
            .field("tls_options_for", &providers)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("custom_resolver", &self.resolver.is_some())
            .field("max_attempts", &self.max_attempts)
            .field("max_concurrent", &self.max_concurrent)
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

/// Default [`KmsTransportBuilder::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`KmsTransportBuilder::io_timeout`].
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`KmsTransportBuilder::max_attempts`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Default [`KmsTransportBuilder::max_concurrent`]: the state-machine runner's own default
/// ([`Runner::max_concurrent_kms`]).
pub const DEFAULT_MAX_CONCURRENT: usize = 16;

impl Default for KmsTransportBuilder {
    fn default() -> KmsTransportBuilder {
        KmsTransportBuilder {
            default_options: TlsOptions::new(),
            provider_options: HashMap::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
            request_timeout: None,
            resolver: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            default_client_config: None,
            provider_client_configs: HashMap::new(),
            default_connector: None,
            provider_connectors: HashMap::new(),
            #[cfg(feature = "tokio")]
            default_async_connector: None,
            #[cfg(feature = "tokio")]
            provider_async_connectors: HashMap::new(),
            #[cfg(feature = "openssl")]
            openssl: OpenSslChoice::default(),
            keep_alive: None,
        }
    }
}

impl KmsTransportBuilder {
    /// The TLS options of requests to provider `provider`. Requests are matched by [`KmsCtx::kms_provider`]:
    /// first the full name (`aws:name` for a named provider on libraries that report it), then the type (`aws`).
    /// The same lookup finds a request's options, ready configuration, connector and backend on every path: a
    /// `kmip:name` with options of its own keeps them when OpenSSL is chosen for all of `kmip`.
    pub fn tls_options(mut self, provider: &str, options: TlsOptions) -> KmsTransportBuilder {
        self.provider_options.insert(provider.to_owned(), options);
        self
    }

    /// The TLS options of every provider of a spec `tlsOptions` document: `{"kmip": {"tlsCAFile": ...,
    /// "tlsCertificateKeyFile": ...}, "aws": {...}}` (see [`TlsOptions::from_document`]).
    pub fn tls_options_document(mut self, doc: &Document) -> Result<KmsTransportBuilder, TlsConfigError> {
        for (provider, value) in doc {
            let crate::bson::Bson::Document(options) = value else {
                return Err(TlsConfigError::Document(format!("tlsOptions.{provider} is not a document")));
            };
            self = self.tls_options(provider, TlsOptions::from_document(options)?);
        }
        Ok(self)
    }

    /// The TLS options of providers without their own (default: Mozilla's roots, no client certificate).
    pub fn default_tls_options(mut self, options: TlsOptions) -> KmsTransportBuilder {
        self.default_options = options;
        self
    }

    /// How long to wait for the host's name lookup, for a TCP connection (per address tried), or for a
    /// [`Connector`]'s whole work (a proxy's lookup, connection, CONNECT and reply) (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> KmsTransportBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// How long each step may take, as a whole: the TLS handshake, writing the request, each read of the reply
    /// (default 30 s). A deadline, not a socket timeout: a peer sending a byte at a time does not stretch it.
    pub fn io_timeout(mut self, timeout: Duration) -> KmsTransportBuilder {
        self.io_timeout = timeout;
        self
    }

    /// An upper bound on one whole attempt, from connecting to the last byte of the reply (default: none, each
    /// step bounded by its own timeout only). It guards against a server that trickles its reply: every step
    /// (connecting, a [`Connector`]'s work such as a proxy's CONNECT, the TLS handshake on either backend,
    /// writing, reading) ends by it, with a [`KmsIoErrorKind::Timeout`] naming the step. A timeout too long to
    /// add to the current time (`Duration::MAX`) is no limit.
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> KmsTransportBuilder {
        self.request_timeout = timeout;
        self
    }

    /// Keeps connections open between requests to the same endpoint (and provider), for at most `idle` between
    /// two requests; `None` (the default) opens a connection for every request, as libmongocrypt's
    /// `Connection: close` asks.
    ///
    /// With keep-alive, an HTTP request goes out without its `Connection: close` line (unless an AWS signature
    /// covers it), and its connection is kept if the reply was read to its end, framed by its length or chunked,
    /// and did not say `Connection: close` itself: a request then costs no TCP or TLS handshake. Before reuse, a
    /// kept connection is checked without waiting: one on which the server sent anything or closed meanwhile is
    /// closed instead. If the request still fails on it before any byte of the reply (the server closed it as the
    /// request went out), the request goes out again on a new connection, in the same attempt: the server may then
    /// see it twice, which KMS requests (encrypt, decrypt, tokens) allow. Any failure on a kept connection closes
    /// the endpoint's other idle ones. KMIP requests, the OpenSSL backend (`openssl_for`, feature `openssl`),
    /// streams of a [`Connector`] that cannot be made non-blocking ([`KmsStream::set_nonblocking`](super::KmsStream::set_nonblocking)) and
    /// connections left in an error are never kept (an async connector's streams can be: they are polled). At most
    /// 128 idle connections are kept per endpoint.
    ///
    /// Clones of the transport share the kept connections; a `TokioKmsTransport` keeps its own, per tokio runtime
    /// (a socket belongs to the runtime that opened it), shared by its clones: make it once, not per request.
    ///
    /// ```
    /// use std::time::Duration;
    /// use libmongocrypt_kms::tls::KmsTransport;
    ///
    /// let transport = KmsTransport::builder().keep_alive(Some(Duration::from_secs(30))).build()?;
    /// # Ok::<(), libmongocrypt_kms::tls::TlsConfigError>(())
    /// ```
    pub fn keep_alive(mut self, idle: Option<Duration>) -> KmsTransportBuilder {
        self.keep_alive = idle;
        self
    }

    /// Sets the connect, I/O and request timeouts at once.
    pub fn timeout(self, timeout: Duration) -> KmsTransportBuilder {
        self.connect_timeout(timeout).io_timeout(timeout).request_timeout(Some(timeout))
    }

    /// Resolves `host`, `port` to the addresses to connect to, instead of the system resolver. The TLS server
    /// name stays `host`.
    ///
    /// Either resolver runs on a helper thread (tokio's blocking pool on the async face), and the request waits for
    /// it no longer than the connect timeout and the request's deadline allow: a lookup that does not answer ends
    /// the attempt with a timeout "resolving". While 32 lookups are left running unanswered in the process, new ones
    /// fail at once. A resolver that panics fails the attempt.
    pub fn resolver(
        mut self,
        resolver: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> KmsTransportBuilder {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// At most this many attempts per request in [`KmsTransport::serve`], whatever libmongocrypt allows
    /// (default 10; libmongocrypt itself stops after 4). At least 1.
    pub fn max_attempts(mut self, attempts: u32) -> KmsTransportBuilder {
        self.max_attempts = attempts.max(1);
        self
    }

    /// At most this many requests of a round at once in [`KmsTransport::serve`], each on a thread of its own
    /// (default [`DEFAULT_MAX_CONCURRENT`], 16); the others wait for a place. 0 counts as 1.
    pub fn max_concurrent(mut self, limit: usize) -> KmsTransportBuilder {
        self.max_concurrent = limit.max(1);
        self
    }

    /// A ready rustls configuration for requests to `provider` (matched as for
    /// [`tls_options`](Self::tls_options)), used as is: its roots, client certificate, cipher suites, protocol
    /// versions and crypto provider. It takes the place of the provider's [`TlsOptions`].
    pub fn client_config(mut self, provider: &str, config: Arc<ClientConfig>) -> KmsTransportBuilder {
        self.provider_client_configs.insert(provider.to_owned(), config);
        self
    }

    /// A ready rustls configuration for the providers without their own, instead of
    /// [`default_tls_options`](Self::default_tls_options).
    pub fn default_client_config(mut self, config: Arc<ClientConfig>) -> KmsTransportBuilder {
        self.default_client_config = Some(config);
        self
    }

    /// Opens every request's stream with `connector` (a proxy, ...) instead of a TCP connection to the endpoint,
    /// for the providers without their own ([`provider_connector`](Self::provider_connector)). TLS runs over the
    /// stream with the KMS host. Used by [`KmsTransport`]; `TokioKmsTransport` uses the async connectors
    /// (`async_connector`, feature `tokio`), and refuses a request that would have a blocking connector only
    /// (rather than go around it).
    pub fn connector(mut self, connector: impl Connector + 'static) -> KmsTransportBuilder {
        self.default_connector = Some(Arc::new(connector));
        self
    }

    /// Opens the streams of requests to `provider` (matched as for [`tls_options`](Self::tls_options)) with
    /// `connector`.
    pub fn provider_connector(mut self, provider: &str, connector: impl Connector + 'static) -> KmsTransportBuilder {
        self.provider_connectors.insert(provider.to_owned(), Arc::new(connector));
        self
    }

    /// [`connector`](Self::connector) for `TokioKmsTransport` (feature `tokio`): opens every request's stream with
    /// the async `connector`, for the providers without their own
    /// ([`provider_async_connector`](Self::provider_async_connector)). [`HttpProxy`](super::HttpProxy) is both
    /// kinds: give a clone to each to tunnel both faces' requests.
    #[cfg(feature = "tokio")]
    pub fn async_connector(mut self, connector: impl AsyncConnector + 'static) -> KmsTransportBuilder {
        self.default_async_connector = Some(Arc::new(connector));
        self
    }

    /// [`provider_connector`](Self::provider_connector) for `TokioKmsTransport` (feature `tokio`): opens the
    /// streams of requests to `provider` (matched as for [`tls_options`](Self::tls_options)) with the async
    /// `connector`.
    #[cfg(feature = "tokio")]
    pub fn provider_async_connector(
        mut self,
        provider: &str,
        connector: impl AsyncConnector + 'static,
    ) -> KmsTransportBuilder {
        self.provider_async_connectors.insert(provider.to_owned(), Arc::new(connector));
        self
    }

    /// Serves requests to `provider` (matched as for [`tls_options`](Self::tls_options): `"kmip"` for every KMIP
    /// provider, `"kmip:name"` for one) with OpenSSL instead of rustls (feature `openssl`), with the same
    /// [`TlsOptions`]: for KMIP servers that offer only TLS 1.2 CBC suites with RSA key exchange
    /// (`TLS_RSA_WITH_AES_128_CBC_SHA256`, ...), which rustls does not implement. It offers TLS 1.2 and 1.3 and
    /// [`OPENSSL_TLS12_CIPHERS`](super::OPENSSL_TLS12_CIPHERS); SNI and hostname verification name the KMS host;
    /// without `tlsCAFile`, server certificates are checked against the system's roots (OpenSSL's default
    /// paths). A ready rustls [`client_config`](Self::client_config) of the provider is then unused. Both faces
    /// have this backend (`TokioKmsTransport` through tokio-openssl); its connections are never kept alive.
    #[cfg(feature = "openssl")]
    pub fn openssl_for(mut self, provider: &str) -> KmsTransportBuilder {
        self.openssl.providers.insert(provider.to_owned(), ());
        self
    }

    /// [`openssl_for`](Self::openssl_for) every provider.
    #[cfg(feature = "openssl")]
    pub fn openssl_for_all(mut self) -> KmsTransportBuilder {
        self.openssl.all = Some(());
        self
    }

    /// Builds the TLS configurations.
    pub fn build(self) -> Result<KmsTransport, TlsConfigError> {
        #[cfg(feature = "openssl")]
        let openssl = {
            let options_of = |provider: &str| {
                let kind = provider.split(':').next().unwrap_or(provider);
                self.provider_options
                    .get(provider)
                    .or_else(|| self.provider_options.get(kind))
                    .unwrap_or(&self.default_options)
            };
            let chosen = |provider: &str| {
                let kind = provider.split(':').next().unwrap_or(provider);
                self.openssl.all.is_some()
                    || self.openssl.providers.contains_key(provider)
                    || self.openssl.providers.contains_key(kind)
            };
            // A connector for every name OpenSSL serves and every name with options of its own that OpenSSL
            // serves (`kmip:name` under `openssl_for("kmip")`), each from that name's options: a request then finds
            // its connector as the rustls path finds its configuration, by full name first, then by kind.
            let mut choice = OpenSslChoice::default();
            for provider in self.openssl.providers.keys().chain(self.provider_options.keys()) {
                if chosen(provider) && !choice.providers.contains_key(provider) {
                    choice.providers.insert(provider.clone(), options_of(provider).openssl_connector()?);
                }
            }
            if self.openssl.all.is_some() {
                choice.all = Some(self.default_options.openssl_connector()?);
            }
            Arc::new(choice)
        };
        let mut provider_configs = self
            .provider_options
            .iter()
            .map(|(name, options)| Ok((name.clone(), Arc::new(options.client_config()?))))
            .collect::<Result<HashMap<_, _>, TlsConfigError>>()?;
        provider_configs.extend(self.provider_client_configs);
        let default_config = match self.default_client_config {
            Some(config) => config,
            None => Arc::new(self.default_options.client_config()?),
        };
        Ok(KmsTransport {
            default_connector: self.default_connector,
            provider_connectors: Arc::new(self.provider_connectors),
            #[cfg(feature = "tokio")]
            default_async_connector: self.default_async_connector,
            #[cfg(feature = "tokio")]
            provider_async_connectors: Arc::new(self.provider_async_connectors),
            default_config,
            provider_configs: Arc::new(provider_configs),
            connect_timeout: self.connect_timeout,
            io_timeout: self.io_timeout,
            request_timeout: self.request_timeout,
            resolver: self.resolver,
            max_attempts: self.max_attempts,
            max_concurrent: self.max_concurrent,
            #[cfg(feature = "openssl")]
            openssl,
            keep_alive: self.keep_alive,
            pool: Arc::default(),
        })
    }
}

impl KmsTransport {
    /// A transport with the default options: Mozilla's roots for every provider, default timeouts.
    pub fn new() -> Result<KmsTransport, TlsConfigError> {
        KmsTransport::builder().build()
    }

    /// Starts configuring a transport.
    pub fn builder() -> KmsTransportBuilder {
        KmsTransportBuilder::default()
    }

    /// Serves every request of one NEED_KMS state, without ending it: each round's requests concurrently (on
    /// scoped threads, at most [`max_concurrent`](KmsTransportBuilder::max_concurrent) at once; a thread that
    /// cannot start is an error, not a panic), waiting [`KmsCtx::sleep_duration`] before each attempt
    /// and retrying as libmongocrypt allows (at most [`max_attempts`](KmsTransportBuilder::max_attempts) times),
    /// until libmongocrypt hands out no more. Returns the first error in request order.
    ///
    /// The rounds, back-off, attempt counting and failure handling are the state-machine runner's own
    /// ([`Runner::serve_kms`]): this transport only makes the exchanges.
    ///
    /// Then call [`KmsScope::done`], or use [`serve_and_done`](Self::serve_and_done).
    pub fn serve(&self, scope: &mut KmsScope<'_>) -> Result<(), KmsIoError> {
        Runner::new()
            .max_concurrent_kms(self.max_concurrent)
            .max_kms_attempts(self.max_attempts)
            .serve_kms(scope, |kms| self.attempt(kms))
            .map_err(KmsIoError::from_serve_error)
    }

    /// [`serve`](Self::serve), then [`KmsScope::done`]; an error of `done` is returned as
    /// [`KmsIoErrorKind::Mongocrypt`] with endpoint `"kms_done"`.
    pub fn serve_and_done(&self, mut scope: KmsScope<'_>) -> Result<(), KmsIoError> {
        self.serve(&mut scope)?;
        scope.done().map_err(|e| KmsIoError::new("kms_done", "", KmsIoErrorKind::Mongocrypt(e)))
    }

    /// One attempt for [`serve`](Self::serve): the exchange, with a retry libmongocrypt scheduled reported as
    /// such, so that the runner keeps its HTTP status as the attempt's error.
    fn attempt(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        match self.exchange_inner(kms) {
            Ok(Exchanged::Complete) => Ok(()),
            Ok(Exchanged::RetryRequested(status)) => {
                Err(KmsAttemptError::from(retry_requested_error(kms, status).retry_scheduled()).into())
            }
            Err(error) => Err(KmsAttemptError::from(error).into()),
        }
    }

    /// One exchange with the request's endpoint: connect, TLS handshake, write the message, read and feed the
    /// reply until libmongocrypt needs no more bytes. No back-off, no [`KmsCtx::fail`]: the caller's job.
    ///
    /// Returns `Ok` when the reply was fed in full, and also when libmongocrypt asked for a retry (a retryable
    /// HTTP status, retries enabled): it then hands the request out again from [`KmsScope::next_kms_ctx`].
    pub fn exchange(&self, kms: &mut KmsCtx<'_>) -> Result<(), KmsIoError> {
        self.exchange_inner(kms).map(|_| ())
    }

    /// [`exchange`](Self::exchange) for [`StateMachineIo::kms_request`](libmongocrypt::state_machine::StateMachineIo::kms_request):
    /// the [`KmsIoError`] in a [`KmsAttemptError`], which the runner handles as its
    /// [`KmsFailure`](libmongocrypt::state_machine::KmsFailure) says: it calls [`KmsCtx::fail`] on network errors
    /// only, and reports the errors libmongocrypt raised (an HTTP error status, a bad reply) as
    /// [`RunError::Mongocrypt`](libmongocrypt::state_machine::RunError::Mongocrypt), with the endpoint added to the
    /// message.
    pub fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        for_runner(self.exchange(kms))
    }

    pub(super) fn connector_for(&self, provider: &str) -> Option<&Arc<dyn Connector>> {
        by_name(&self.provider_connectors, self.default_connector.as_ref(), provider)
    }

    /// The async connector of `provider`'s requests (feature `tokio`), found as [`connector_for`](Self::connector_for).
    #[cfg(feature = "tokio")]
    pub(super) fn async_connector_for(&self, provider: &str) -> Option<&Arc<dyn AsyncConnector>> {
        by_name(&self.provider_async_connectors, self.default_async_connector.as_ref(), provider)
    }

    /// The OpenSSL connector of `provider`'s requests, when OpenSSL serves them.
    #[cfg(feature = "openssl")]
    pub(super) fn openssl_for(&self, provider: &str) -> Option<&openssl::ssl::SslConnector> {
        by_name(&self.openssl.providers, self.openssl.all.as_ref(), provider)
    }

    /// Whether connections of `provider`'s requests may be kept alive: not OpenSSL's, which serves KMIP, whose
    /// requests are never kept.
    pub(super) fn may_keep(&self, provider: &str) -> bool {
        #[cfg(feature = "openssl")]
        if self.openssl_for(provider).is_some() {
            return false;
        }
        let _ = provider;
        true
    }

    pub(super) fn config_for(&self, provider: &str) -> Arc<ClientConfig> {
        by_name(&self.provider_configs, Some(&self.default_config), provider).unwrap_or(&self.default_config).clone()
    }
}

/// What is configured for `provider`: by its full name (`kmip:name`), then by its kind (`kmip`), then `default`.
fn by_name<'a, T>(by_provider: &'a HashMap<String, T>, default: Option<&'a T>, provider: &str) -> Option<&'a T> {
    let kind = provider.split(':').next().unwrap_or(provider);
    by_provider.get(provider).or_else(|| by_provider.get(kind)).or(default)
}

/// The error of an attempt whose reply libmongocrypt retries (a retryable HTTP status).
fn retry_requested_error(kms: &KmsCtx<'_>, status: Option<u16>) -> KmsIoError {
    let message = match status {
        Some(status) => format!("HTTP status {status}, which libmongocrypt retries"),
        None => "libmongocrypt asked for a retry".to_owned(),
    };
    let kind = KmsIoErrorKind::Http { status: status.unwrap_or(0), error: Error::Kms { code: 0, message } };
    KmsIoError::new(kms.endpoint().unwrap_or("<unknown endpoint>"), kms.kms_provider().as_str(), kind)
}

/// An exchange's result as a runner's `kms_request` returns it: the [`KmsIoError`] as the
/// [`KmsFailure`](libmongocrypt::state_machine::KmsFailure) the runner handles.
pub(super) fn for_runner(result: Result<(), KmsIoError>) -> IoResult<()> {
    result.map_err(|error| KmsAttemptError::from(error).into())
}
