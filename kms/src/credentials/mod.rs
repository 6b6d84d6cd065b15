//! On-demand KMS credentials for the NEED_KMS_CREDENTIALS state (the async fetch needs
//! `tokio`).
//!
//! A KMS provider configured as an empty document ([`KmsProviders::on_demand`]) gets its credentials when an
//! operation needs them, provided the `Crypt` was built with
//! [`use_need_kms_credentials_state`](libmongocrypt::CryptBuilder::use_need_kms_credentials_state): the ctx enters
//! NEED_KMS_CREDENTIALS and the driver answers with [`Ctx::provide_kms_providers`]. [`CredentialsFetcher`] finds
//! them as MongoDB's client-side encryption spec says:
//!
//! | provider | where from | what libmongocrypt gets |
//! |---|---|---|
//! | `aws` | the chain below | `{"aws": {"accessKeyId", "secretAccessKey", "sessionToken"}}` |
//! | `gcp` | the metadata server, [`GCP_TOKEN_URL`] with `Metadata-Flavor: Google` | `{"gcp": {"accessToken"}}` |
//! | `azure` | the instance metadata service, [`AZURE_TOKEN_URL`] with `Metadata: true`; the token is cached until it is about to expire (`expires_in`) | `{"azure": {"accessToken"}}` |
//!
//! Named providers (`aws:name`, ...) never have on-demand credentials, and are refused.
//!
//! # The AWS chain
//!
//! In the order of the authentication spec, the first that applies wins:
//!
//! 1. a custom provider ([`CredentialsFetcher::aws_credential_provider`], a closure or an
//!    [`AwsCredentialProvider`], blocking and async): when set, it replaces the rest of the chain;
//! 2. the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`;
//! 3. `AssumeRoleWithWebIdentity` when `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN` are set
//!    (`AWS_ROLE_SESSION_NAME` optional), against [`AWS_STS_URL`] ([`CredentialsFetcher::aws_sts_endpoint`]);
//! 4. ECS: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` against [`AWS_ECS_URL`]
//!    ([`CredentialsFetcher::aws_ecs_endpoint`]), or `AWS_CONTAINER_CREDENTIALS_FULL_URI`, with the
//!    `Authorization` header from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or `AWS_CONTAINER_AUTHORIZATION_TOKEN`;
//! 5. otherwise EC2 instance metadata, IMDSv2, at [`AWS_IMDS_URL`] ([`CredentialsFetcher::aws_imds_endpoint`]): a
//!    session token by `PUT /latest/api/token`, the role name, then the role's credentials.
//!
//! A step that is not configured is skipped; one that is configured and fails ends the chain, and the error
//! ([`CredentialsErrorKind::NoAwsCredentials`]) names every step skipped and why, then the one that failed:
//! `no AWS credentials: environment not set; web identity not configured; ECS not configured; EC2 instance
//! metadata: cannot connect to http://169.254.169.254/latest/api/token: ...`. Credentials from the chain that carry
//! an `Expiration` are cached until [`aws_refresh_margin`](CredentialsFetcher::aws_refresh_margin) (five minutes)
//! before it; those from the environment are read each time, and a custom provider's are not cached.
//!
//! ## Feature `aws-sdk`
//!
//! With the `aws-sdk` feature (which implies `tokio`), steps 2 to 5 are replaced by `aws-config`'s
//! default credential chain (`aws_config::defaults(BehaviorVersion::latest())`, its `credentials_provider()`):
//! environment, shared config and credentials files, web identity, ECS, IMDS, as the AWS SDKs order them, reading
//! the process environment itself (so [`CredentialsFetcher::env`] and the endpoint overrides do not apply to it). A
//! custom provider still replaces it, its credentials are cached like the chain's, each fetch is bounded by
//! [`CredentialsFetcher::timeout`], and its failure is [`CredentialsErrorKind::AwsSdk`]. The async fetch awaits it
//! on the current runtime; the blocking fetch runs it on a current-thread runtime of its own (on a scoped thread
//! when called from inside a tokio runtime). Its HTTPS client is `aws-smithy-http-client` on rustls with ring:
//! `default-features = false` leaves out aws-lc-sys (the SDK's default TLS), SSO and `credential_process`.
//!
//! It is not free: 2 min 11 s of debug build on top of a `tokio` build (`cargo build --timings`, two
//! shared cores; 123 crates, aws-smithy-http-client 25 s, aws-config 12 s, h2 10 s, aws-sdk-sts 8 s), and
//! `aws-config` 1.13 needs Rust 1.94.1, above this crate's minimum. Its test:
//! `cargo test -p libmongocrypt-kms --features aws-sdk --test credentials_aws_sdk`.
//!
//! # Blocking and async
//!
//! The steps, their requests, their reply parsing and the caches are written once, as code generic over how a
//! request is sent; [`CredentialsFetcher::fetch`] sends on the calling thread, and
//! `CredentialsFetcher::fetch_async` (feature `tokio`) sends with an async client on tokio's
//! sockets, so that neither an async driver's executor threads nor tokio's blocking pool ever wait on a metadata
//! server. Each request is bounded by [`CredentialsFetcher::timeout`].
//!
//! The blocking client is `ureq`: small, blocking, on the rustls and ring that `tls`
//! already uses (STS is HTTPS), so it adds eight small crates, 4.3 s of debug compile in all (measured with
//! `cargo build --timings` on a shared two-core machine).
//!
//! The async client is `hyper` 1's low-level HTTP/1.1 client, one connection per request
//! over a tokio `TcpStream` (`hyper-util`'s `TokioIo`), with `tokio-rustls` for HTTPS on the same rustls, ring and
//! webpki roots, and `http-body-util` to read the reply. It adds eleven crates (hyper, hyper-util, http-body,
//! http-body-util, tokio-rustls, mio, socket2, want, try-lock, atomic-waker, smallvec) and tokio's `net` module:
//! 12.4 s of debug compile for those crates (`cargo build --timings`, two shared cores; hyper 3.8 s, socket2 2.3 s,
//! mio 2.2 s, tokio-rustls 1.1 s, the rest under a second each). `reqwest` (even with `default-features = false`
//! and rustls) would add `hyper-util`'s pooled legacy client, `tower`, `url` with its IDNA tables, `hyper-rustls`
//! and more, for the three or four requests of a fetch that need no pool, no redirects and no proxy; the legacy
//! client of `hyper-util` would add `tower-service` and a connector per scheme (`hyper-rustls`) for the same.
//! Polled outside a tokio runtime (another executor), the async fetch falls back to the blocking client on the
//! polling thread.
//!
//! ```no_run
//! use libmongocrypt_kms::credentials::CredentialsFetcher;
//! use libmongocrypt::{Crypt, KmsProviders, State};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let providers = KmsProviders::new().on_demand("aws").on_demand("azure");
//! let crypt = Crypt::builder().kms_providers(&providers)?.use_need_kms_credentials_state().build()?;
//! let credentials = CredentialsFetcher::for_kms_providers(&providers);
//! # let kek = libmongocrypt::KeyEncryptionKey::aws("aws", "us-east-1", "arn:...");
//! let mut ctx = crypt.ctx().key_encryption_key(&kek)?.datakey()?;
//! if ctx.state() == State::NeedKmsCredentials {
//!     credentials.provide(&mut ctx)?; // or return `credentials.kms_credentials()` from StateMachineIo
//! }
//! # Ok(())
//! # }
//! ```
//!
//! With the [state-machine runner](libmongocrypt::state_machine), delegate
//! [`StateMachineIo::kms_credentials`](libmongocrypt::state_machine::StateMachineIo::kms_credentials) to
//! [`CredentialsFetcher::kms_credentials`], and
//! [`AsyncStateMachineIo::kms_credentials`](libmongocrypt::state_machine::AsyncStateMachineIo::kms_credentials) to
//! `fetcher.kms_credentials_async().await`.

mod aws;
#[cfg(feature = "aws-sdk")]
mod aws_sdk;
mod azure;
mod cache;
mod gcp;
mod http;
#[cfg(feature = "tokio")]
mod http_async;

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use libmongocrypt::bson::{doc, Document, RawDocumentBuf};
use zeroize::Zeroizing;

use libmongocrypt::state_machine::{io_deadline, IoError};
use libmongocrypt::Ctx;
use libmongocrypt::Error;
use libmongocrypt::KmsProviders;

pub use self::aws::{AWS_ECS_URL, AWS_IMDS_URL, AWS_STS_URL};
pub use self::azure::AZURE_TOKEN_URL;
use self::cache::Cache;
pub use self::gcp::GCP_TOKEN_URL;
use self::http::{error_body, HttpResponse, Transport};

/// Default [`CredentialsFetcher::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default [`CredentialsFetcher::azure_refresh_margin`]: a token is fetched anew a minute before it expires.
pub const DEFAULT_AZURE_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Default [`CredentialsFetcher::aws_refresh_margin`]: credentials are fetched anew five minutes before their
/// `Expiration`, as the AWS SDKs do.
pub const DEFAULT_AWS_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The longest token file read (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`): 64 KiB,
/// far more than a JWT or an ECS token needs. A longer file is [`CredentialsErrorKind::FileTooLarge`]; only
/// regular files are read ([`CredentialsErrorKind::NotAFile`]).
pub const MAX_TOKEN_FILE: u64 = 64 * 1024;

type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// AWS credentials: from a step of the chain or from a custom provider. The strings are wiped when dropped, and
/// `Debug` shows only the access key id.
#[derive(Clone)]
pub struct AwsCredentials {
    access_key_id: Zeroizing<String>,
    secret_access_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
    expiration: Option<SystemTime>,
}

impl AwsCredentials {
    /// Long-term credentials (no session token, no expiration).
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> AwsCredentials {
        AwsCredentials::from_parts(
            Zeroizing::new(access_key_id.into()),
            Zeroizing::new(secret_access_key.into()),
            None,
            None,
        )
    }

    /// Adds a session token (temporary credentials).
    pub fn with_session_token(mut self, token: impl Into<String>) -> AwsCredentials {
        self.session_token = Some(Zeroizing::new(token.into()));
        self
    }

    /// Adds when the credentials expire.
    pub fn with_expiration(mut self, expiration: SystemTime) -> AwsCredentials {
        self.expiration = Some(expiration);
        self
    }

    fn from_parts(
        access_key_id: Zeroizing<String>,
        secret_access_key: Zeroizing<String>,
        session_token: Option<Zeroizing<String>>,
        expiration: Option<SystemTime>,
    ) -> AwsCredentials {
        AwsCredentials { access_key_id, secret_access_key, session_token, expiration }
    }

    /// The access key id.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret access key.
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// The session token, for temporary credentials.
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref().map(String::as_str)
    }

    /// When they expire, if they do.
    pub fn expiration(&self) -> Option<SystemTime> {
        self.expiration
    }

    fn document(&self) -> Document {
        let mut d =
            doc! { "accessKeyId": self.access_key_id.as_str(), "secretAccessKey": self.secret_access_key.as_str() };
        if let Some(token) = &self.session_token {
            d.insert("sessionToken", token.as_str());
        }
        d
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id.as_str())
            .field("session_token", &self.session_token.as_ref().map(|_| "..."))
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// The future of [`AwsCredentialProvider::credentials_async`].
pub type AwsCredentialsFuture<'a> = Pin<Box<dyn Future<Output = Result<AwsCredentials, IoError>> + Send + 'a>>;

/// A custom AWS credential provider (the spec's `credentialProviders.aws`): when a fetcher has one, it replaces the
/// whole chain. Any `Fn() -> Result<AwsCredentials, IoError> + Send + Sync` closure is one; implement
/// [`credentials_async`](Self::credentials_async) too for a provider that has async I/O of its own.
pub trait AwsCredentialProvider: Send + Sync {
    /// The credentials, for [`CredentialsFetcher::fetch`].
    fn credentials(&self) -> Result<AwsCredentials, IoError>;

    /// The credentials, for `CredentialsFetcher::fetch_async`; by default [`credentials`](Self::credentials).
    fn credentials_async(&self) -> AwsCredentialsFuture<'_> {
        Box::pin(std::future::ready(self.credentials()))
    }
}

impl<F> AwsCredentialProvider for F
where
    F: Fn() -> Result<AwsCredentials, IoError> + Send + Sync,
{
    fn credentials(&self) -> Result<AwsCredentials, IoError> {
        self()
    }
}

/// Fetches on-demand credentials for a fixed set of KMS providers. `Send + Sync`; keeps the Azure token and AWS
/// credential caches, so keep one per client.
pub struct CredentialsFetcher {
    providers: Vec<String>,
    gcp_url: String,
    azure_url: String,
    aws_sts_url: String,
    aws_ecs_url: String,
    aws_imds_url: String,
    timeout: Duration,
    env: Arc<EnvLookup>,
    aws_provider: Option<Arc<dyn AwsCredentialProvider>>,
    azure_refresh_margin: Duration,
    aws_refresh_margin: Duration,
    azure_cache: Cache<Zeroizing<String>>,
    aws_cache: Cache<AwsCredentials>,
}

impl fmt::Debug for CredentialsFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsFetcher")
            .field("providers", &self.providers)
            .field("gcp_url", &self.gcp_url)
            .field("azure_url", &self.azure_url)
            .field("aws_sts_url", &self.aws_sts_url)
            .field("aws_ecs_url", &self.aws_ecs_url)
            .field("aws_imds_url", &self.aws_imds_url)
            .field("timeout", &self.timeout)
            .field("aws_provider", &self.aws_provider.is_some())
            .field("azure_refresh_margin", &self.azure_refresh_margin)
            .field("aws_refresh_margin", &self.aws_refresh_margin)
            .finish_non_exhaustive()
    }
}

impl CredentialsFetcher {
    /// A fetcher for these providers: any of `aws`, `gcp`, `azure`.
    pub fn new<S: Into<String>>(providers: impl IntoIterator<Item = S>) -> CredentialsFetcher {
        CredentialsFetcher {
            providers: providers.into_iter().map(Into::into).collect(),
            gcp_url: GCP_TOKEN_URL.to_owned(),
            azure_url: AZURE_TOKEN_URL.to_owned(),
            aws_sts_url: AWS_STS_URL.to_owned(),
            aws_ecs_url: AWS_ECS_URL.to_owned(),
            aws_imds_url: AWS_IMDS_URL.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            env: Arc::new(|name| std::env::var(name).ok()),
            aws_provider: None,
            azure_refresh_margin: DEFAULT_AZURE_REFRESH_MARGIN,
            aws_refresh_margin: DEFAULT_AWS_REFRESH_MARGIN,
            azure_cache: Cache::new(),
            aws_cache: Cache::new(),
        }
    }

    /// A fetcher for the providers of `providers` that are configured as empty documents (on demand).
    pub fn for_kms_providers(providers: &KmsProviders) -> CredentialsFetcher {
        CredentialsFetcher::new(on_demand_providers(providers))
    }

    /// The providers this fetcher fetches.
    pub fn providers(&self) -> &[String] {
        &self.providers
    }

    /// Overrides the GCP token URL ([`GCP_TOKEN_URL`]).
    pub fn gcp_endpoint(mut self, url: impl Into<String>) -> CredentialsFetcher {
        self.gcp_url = url.into();
        self
    }

    /// Overrides the Azure token URL ([`AZURE_TOKEN_URL`]).
    pub fn azure_endpoint(mut self, url: impl Into<String>) -> CredentialsFetcher {
        self.azure_url = url.into();
        self
    }

    /// Overrides the STS URL of the web identity step ([`AWS_STS_URL`]).
    pub fn aws_sts_endpoint(mut self, url: impl Into<String>) -> CredentialsFetcher {
        self.aws_sts_url = url.into();
        self
    }

    /// Overrides the ECS endpoint that `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is relative to ([`AWS_ECS_URL`]).
    pub fn aws_ecs_endpoint(mut self, url: impl Into<String>) -> CredentialsFetcher {
        self.aws_ecs_url = url.into();
        self
    }

    /// Overrides the EC2 instance metadata endpoint ([`AWS_IMDS_URL`]; scheme, host and port).
    pub fn aws_imds_endpoint(mut self, url: impl Into<String>) -> CredentialsFetcher {
        self.aws_imds_url = url.into();
        self
    }

    /// A custom AWS credential provider, which replaces the AWS chain.
    pub fn aws_credential_provider(mut self, provider: impl AwsCredentialProvider + 'static) -> CredentialsFetcher {
        self.aws_provider = Some(Arc::new(provider));
        self
    }

    /// Bounds each HTTP request, from connecting to the end of the reply (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> CredentialsFetcher {
        self.timeout = timeout;
        self
    }

    /// Reads the AWS variables through `lookup` instead of the process environment.
    pub fn env(mut self, lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> CredentialsFetcher {
        self.env = Arc::new(lookup);
        self
    }

    /// How long before its expiry a cached Azure token is fetched anew (default one minute).
    pub fn azure_refresh_margin(mut self, margin: Duration) -> CredentialsFetcher {
        self.azure_refresh_margin = margin;
        self
    }

    /// How long before their `Expiration` cached AWS credentials are fetched anew (default five minutes).
    pub fn aws_refresh_margin(mut self, margin: Duration) -> CredentialsFetcher {
        self.aws_refresh_margin = margin;
        self
    }

    /// Forgets the cached Azure token and AWS credentials.
    pub fn clear_cache(&self) {
        self.azure_cache.clear();
        self.aws_cache.clear();
    }

    /// The KMS providers document with fresh credentials for every provider of this fetcher, fetched on the
    /// calling thread.
    /// The document is the caller's copy; the fetcher's own copies are wiped.
    pub fn fetch(&self) -> Result<Document, CredentialsError> {
        Ok(self.fetch_blocking()?.as_document().clone())
    }

    /// [`fetch`](Self::fetch) as BSON bytes.
    pub fn fetch_raw(&self) -> Result<RawDocumentBuf, CredentialsError> {
        to_raw(&self.fetch_blocking()?)
    }

    /// The blocking face.
    fn fetch_blocking(&self) -> Result<KmsProviders, CredentialsError> {
        // The blocking face's futures are all ready at their first poll.
        self.fetch_with(&http::Blocking { timeout: self.timeout })
            .now_or_never()
            .expect("the blocking transport's futures are all ready at once")
    }

    /// [`fetch_raw`](Self::fetch_raw) for
    /// [`StateMachineIo::kms_credentials`](libmongocrypt::state_machine::StateMachineIo::kms_credentials).
    pub fn kms_credentials(&self) -> libmongocrypt::state_machine::IoResult<RawDocumentBuf> {
        Ok(self.fetch_raw()?)
    }

    /// [`fetch`](Self::fetch) without blocking: each HTTP request is async I/O on tokio's sockets (no thread of
    /// the blocking pool is used), and a custom provider's
    /// [`credentials_async`](AwsCredentialProvider::credentials_async) is awaited. In a tokio runtime, it needs the
    /// runtime's I/O and time drivers (`enable_all`, as `#[tokio::main]` does). Polled outside a tokio runtime
    /// (another executor), it still works, but each request then blocks the polling thread.
    #[cfg(feature = "tokio")]
    pub async fn fetch_async(&self) -> Result<Document, CredentialsError> {
        Ok(self.fetch_with(&http_async::Tokio { timeout: self.timeout }).await?.as_document().clone())
    }

    /// [`fetch_async`](Self::fetch_async) as BSON bytes, for
    /// [`AsyncStateMachineIo::kms_credentials`](libmongocrypt::state_machine::AsyncStateMachineIo::kms_credentials).
    #[cfg(feature = "tokio")]
    pub async fn kms_credentials_async(&self) -> libmongocrypt::state_machine::IoResult<RawDocumentBuf> {
        Ok(to_raw(&self.fetch_with(&http_async::Tokio { timeout: self.timeout }).await?)?)
    }

    /// Fetches and passes the credentials to a ctx in NEED_KMS_CREDENTIALS ([`Ctx::provide_kms_providers`]).
    pub fn provide(&self, ctx: &mut Ctx) -> Result<(), CredentialsError> {
        let providers = self.fetch_blocking()?;
        ctx.provide_kms_providers(providers.as_document())
            .map_err(|e| CredentialsError::new("all", CredentialsErrorKind::Mongocrypt(e)))
    }

    /// The one fetch, for both transports. A [`KmsProviders`], so that the credentials are wiped when it drops.
    async fn fetch_with<T: Transport>(&self, transport: &T) -> Result<KmsProviders, CredentialsError> {
        let mut out = KmsProviders::new();
        for provider in &self.providers {
            let credentials = match provider.as_str() {
                "aws" => self.aws_with(transport).await?.document(),
                "gcp" => doc! { "accessToken": self.gcp_with(transport).await?.as_str() },
                "azure" => doc! { "accessToken": self.azure_with(transport).await?.as_str() },
                _ => return Err(CredentialsError::new(provider, CredentialsErrorKind::Unsupported)),
            };
            out = out.provider(provider, credentials);
        }
        Ok(out)
    }
}

/// `timeout`, or what remains of the operation's deadline when a runner calls ([`io_deadline`]: set while the
/// runner's `kms_credentials` call runs or its future is polled), whichever ends first: a fetch inside a run with
/// `timeoutMS` ends with it.
pub(crate) fn within_operation(timeout: Duration) -> Duration {
    io_deadline().map_or(timeout, |deadline| timeout.min(deadline.saturating_duration_since(Instant::now())))
}

fn to_raw(providers: &KmsProviders) -> Result<RawDocumentBuf, CredentialsError> {
    RawDocumentBuf::try_from(providers.as_document())
        .map_err(|e| CredentialsError::new("all", CredentialsErrorKind::Mongocrypt(Error::from(e))))
}

/// The providers of `providers` configured as empty documents: those whose credentials are fetched on demand.
pub fn on_demand_providers(providers: &KmsProviders) -> Vec<String> {
    providers
        .as_document()
        .iter()
        .filter(|(_, value)| matches!(value, crate::bson::Bson::Document(d) if d.is_empty()))
        .map(|(name, _)| name.clone())
        .collect()
}

/// An OAuth-style token reply (GCP, Azure).
struct TokenReply {
    token: Zeroizing<String>,
    expires_in: Option<Duration>,
}

/// Parses a GCP or Azure token reply: `{"access_token", "expires_in"}`, the latter a number (GCP) or a string of
/// digits (Azure).
fn oauth_token(url: &str, response: &HttpResponse) -> Result<TokenReply, CredentialsErrorKind> {
    if response.status != 200 {
        return Err(CredentialsErrorKind::Http {
            url: url.to_owned(),
            status: response.status,
            body: error_body(&response.body),
        });
    }
    let bad = |message: String| CredentialsErrorKind::Reply { url: url.to_owned(), message };
    let json: serde_json::Value =
        serde_json::from_slice(&response.body).map_err(|e| bad(format!("reply is not JSON: {e}")))?;
    let token = match json.get("access_token") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Zeroizing::new(s.clone()),
        _ => return Err(bad("reply has no access_token".into())),
    };
    let expires_in = match json.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
    .map(Duration::from_secs);
    Ok(TokenReply { token, expires_in })
}

/// The fuzz targets' way into the parsers of metadata-server and STS replies ([`crate::fuzzing`]): byte 0 of
/// `data` picks the parser (ECS and IMDS credentials, STS, GCP and Azure tokens), the rest is the body of a 200
/// reply. None may panic, whatever the bytes.
pub(crate) fn fuzz_reply(data: &[u8]) {
    let [which, body @ ..] = data else { return };
    let response = HttpResponse { status: 200, body: Zeroizing::new(body.to_vec()) };
    match which % 3 {
        0 => drop(aws::parse_credentials_json("u", &response)),
        1 => drop(aws::parse_sts("u", &response)),
        _ => drop(oauth_token("u", &response)),
    }
}

/// A step of the AWS chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AwsStep {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    Environment,
    /// `AssumeRoleWithWebIdentity`.
    WebIdentity,
    /// The ECS container credentials endpoint.
    Ecs,
    /// EC2 instance metadata (IMDSv2).
    Ec2,
}

impl fmt::Display for AwsStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AwsStep::Environment => "environment",
            AwsStep::WebIdentity => "web identity",
            AwsStep::Ecs => "ECS",
            AwsStep::Ec2 => "EC2 instance metadata",
        })
    }
}

/// Why on-demand credentials could not be fetched.
#[derive(Debug)]
pub struct CredentialsError {
    provider: String,
    kind: CredentialsErrorKind,
}

/// What went wrong fetching credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsErrorKind {
    /// The provider has no on-demand credentials: only `aws`, `gcp` and `azure` do, never a named one.
    #[error("not a provider with on-demand credentials (aws, gcp, azure; never a named provider)")]
    Unsupported,
    /// The AWS chain found no credentials: the steps it skipped, and the step that failed.
    #[error("no AWS credentials: {}{step}: {source}", skipped.iter().map(|(_, why)| format!("{why}; ")).collect::<String>())]
    NoAwsCredentials {
        /// The steps that were not configured, and why.
        skipped: Vec<(AwsStep, String)>,
        /// The step that was configured and failed (EC2 when nothing else was configured).
        step: AwsStep,
        /// Why it failed.
        #[source]
        source: Box<CredentialsErrorKind>,
    },
    /// Feature `aws-sdk`: `aws-config`'s default credential chain found no credentials.
    #[error("the AWS SDK's default credential chain failed: {0}")]
    AwsSdk(String),
    /// The custom AWS credential provider failed.
    #[error("the custom AWS credential provider failed: {0}")]
    AwsProvider(#[source] IoError),
    /// A file named by the environment is not a regular file (a directory, a FIFO, a device): not read.
    #[error("cannot read {path}: not a regular file")]
    NotAFile {
        /// The path.
        path: String,
    },
    /// A file named by the environment is longer than the limit ([`MAX_TOKEN_FILE`]): not read.
    #[error("cannot read {path}: longer than {limit} bytes")]
    FileTooLarge {
        /// The path.
        path: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A file named by the environment could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The URL is not a valid HTTP URL.
    #[error("invalid URL {0}")]
    Url(String),
    /// No connection could be made.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The request did not complete in time.
    #[error("{url} did not answer within {after:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// Another I/O error.
    #[error("{url}: {source}")]
    Io {
        /// The URL.
        url: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The endpoint answered with an error status.
    #[error("{url} answered HTTP status {status}: {body}")]
    Http {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body (a few hundred bytes), or `(empty body)`.
        body: String,
    },
    /// The reply is not what was expected (not HTTP, not JSON, no token).
    #[error("{url}: {message}")]
    Reply {
        /// The URL.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// libmongocrypt rejected the credentials.
    #[error("{0}")]
    Mongocrypt(#[source] Error),
}

impl CredentialsError {
    fn new(provider: &str, kind: CredentialsErrorKind) -> CredentialsError {
        CredentialsError { provider: provider.to_owned(), kind }
    }

    /// The provider whose credentials failed (`all` for an error of the whole document).
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// What went wrong.
    pub fn kind(&self) -> &CredentialsErrorKind {
        &self.kind
    }
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "on-demand {} KMS credentials: {}", self.provider, self.kind)
    }
}

impl std::error::Error for CredentialsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expires_in` at the edges, as a number and as Azure's string: seconds up to u64::MAX (the cache makes an
    /// unrepresentable expiry "no limit"); negative, fractional, NaN or 1e300 are no `expires_in` at all.
    #[test]
    fn token_expiries_at_the_edges_parse_or_are_absent() {
        let expires_in = |value: &str| {
            let body = format!(r#"{{"access_token": "t", "expires_in": {value}}}"#);
            let response = HttpResponse { status: 200, body: Zeroizing::new(body.into_bytes()) };
            oauth_token("u", &response).unwrap().expires_in
        };
        assert_eq!(expires_in("0"), Some(Duration::ZERO));
        assert_eq!(expires_in("\"1\""), Some(Duration::from_secs(1)));
        assert_eq!(expires_in("18446744073709551615"), Some(Duration::from_secs(u64::MAX)));
        assert_eq!(expires_in("\"18446744073709551615\""), Some(Duration::from_secs(u64::MAX)));
        for absent in ["-1", "\"-1\"", "1.5", "1e300", "\"1e300\"", "\"NaN\"", "18446744073709551616", "null"] {
            assert_eq!(expires_in(absent), None, "{absent}");
        }
    }

    #[test]
    fn on_demand_providers_are_the_empty_ones() {
        let providers = KmsProviders::new().on_demand("aws").local("local", &[0; 96]).on_demand("azure");
        assert_eq!(on_demand_providers(&providers), ["aws", "azure"]);
    }

    #[test]
    fn aws_from_environment_lookup() {
        let fetcher = CredentialsFetcher::new(["aws"]).env(|name| match name {
            "AWS_ACCESS_KEY_ID" => Some("id".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".into()),
            _ => None,
        });
        assert_eq!(fetcher.fetch().unwrap(), doc! { "aws": { "accessKeyId": "id", "secretAccessKey": "secret" } });
        let err = CredentialsFetcher::new(["kmip"]).fetch().unwrap_err();
        assert!(matches!(err.kind(), CredentialsErrorKind::Unsupported), "{err}");
        let err = CredentialsFetcher::new(["aws:named"]).fetch().unwrap_err();
        assert!(matches!(err.kind(), CredentialsErrorKind::Unsupported), "{err}");
        assert_eq!(err.provider(), "aws:named");
    }
}
