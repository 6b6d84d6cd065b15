//! On-demand KMS credentials for the NEED_KMS_CREDENTIALS state (feature `kms-tls`).
//!
//! A KMS provider configured as an empty document ([`KmsProviders::on_demand`]) gets its credentials when an
//! operation needs them, provided the `Crypt` was built with
//! [`use_need_kms_credentials_state`](crate::CryptBuilder::use_need_kms_credentials_state): the ctx enters
//! NEED_KMS_CREDENTIALS and the driver answers with [`Ctx::provide_kms_providers`]. [`CredentialsFetcher`] finds
//! them as MongoDB's client-side encryption spec says:
//!
//! | provider | where from | what libmongocrypt gets |
//! |---|---|---|
//! | `aws` | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (optional) | `{"aws": {"accessKeyId", "secretAccessKey", "sessionToken"}}` |
//! | `gcp` | the metadata server, [`GCP_TOKEN_URL`] with `Metadata-Flavor: Google` | `{"gcp": {"accessToken"}}` |
//! | `azure` | the instance metadata service, [`AZURE_TOKEN_URL`] with `Metadata: true`; the token is cached until it is about to expire (`expires_in`) | `{"azure": {"accessToken"}}` |
//!
//! Only the providers the fetcher was given are fetched: [`CredentialsFetcher::for_kms_providers`] takes those
//! configured as empty documents. The metadata endpoints are plain HTTP on link-local or internal addresses; they
//! are reached with a minimal HTTP/1.1 client with timeouts, and can be overridden (for tests, or a proxy).
//! AWS credentials come from the environment only (no ECS, EC2 instance metadata or web identity).
//!
//! ```no_run
//! use mongocrypt::kms_credentials::CredentialsFetcher;
//! use mongocrypt::{Crypt, KmsProviders, State};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let providers = KmsProviders::new().on_demand("aws").on_demand("azure");
//! let crypt = Crypt::builder().kms_providers(&providers)?.use_need_kms_credentials_state().build()?;
//! let credentials = CredentialsFetcher::for_kms_providers(&providers);
//! # let kek = mongocrypt::KeyEncryptionKey::aws("aws", "us-east-1", "arn:...");
//! let mut ctx = crypt.ctx().key_encryption_key(&kek)?.datakey()?;
//! if ctx.state() == State::NeedKmsCredentials {
//!     credentials.provide(&mut ctx)?; // or return `credentials.kms_credentials()` from StateMachineIo
//! }
//! # Ok(())
//! # }
//! ```
//!
//! With the [state-machine runner](crate::state_machine), delegate
//! [`StateMachineIo::kms_credentials`](crate::state_machine::StateMachineIo::kms_credentials) to
//! [`CredentialsFetcher::kms_credentials`].

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::{doc, Document, RawDocumentBuf};

use crate::ctx::Ctx;
use crate::error::Error;
use crate::options::KmsProviders;

/// The GCP metadata server's token endpoint for the default service account.
pub const GCP_TOKEN_URL: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";

/// The Azure instance metadata service's managed-identity token endpoint, for Key Vault.
pub const AZURE_TOKEN_URL: &str =
    "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net";

/// Default [`CredentialsFetcher::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default [`CredentialsFetcher::azure_refresh_margin`]: a token is fetched anew a minute before it expires.
pub const DEFAULT_AZURE_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The largest metadata reply accepted.
const MAX_REPLY: usize = 1 << 20;

type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

struct CachedToken {
    token: String,
    expires: Instant,
}

/// Fetches on-demand credentials for a fixed set of KMS providers. `Send + Sync`; keeps the Azure token cache, so
/// keep one per client.
pub struct CredentialsFetcher {
    providers: Vec<String>,
    gcp_url: String,
    azure_url: String,
    timeout: Duration,
    env: Arc<EnvLookup>,
    azure_refresh_margin: Duration,
    azure_cache: Mutex<Option<CachedToken>>,
}

impl fmt::Debug for CredentialsFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsFetcher")
            .field("providers", &self.providers)
            .field("gcp_url", &self.gcp_url)
            .field("azure_url", &self.azure_url)
            .field("timeout", &self.timeout)
            .field("azure_refresh_margin", &self.azure_refresh_margin)
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
            timeout: DEFAULT_TIMEOUT,
            env: Arc::new(|name| std::env::var(name).ok()),
            azure_refresh_margin: DEFAULT_AZURE_REFRESH_MARGIN,
            azure_cache: Mutex::new(None),
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

    /// Overrides the GCP token URL ([`GCP_TOKEN_URL`]); `http://` only.
    pub fn gcp_endpoint(mut self, url: impl Into<String>) -> CredentialsFetcher {
        self.gcp_url = url.into();
        self
    }

    /// Overrides the Azure token URL ([`AZURE_TOKEN_URL`]); `http://` only.
    pub fn azure_endpoint(mut self, url: impl Into<String>) -> CredentialsFetcher {
        self.azure_url = url.into();
        self
    }

    /// Bounds each metadata request, from connecting to the end of the reply (default 10 s).
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

    /// Forgets the cached Azure token.
    pub fn clear_cache(&self) {
        *self.azure_cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The KMS providers document with fresh credentials for every provider of this fetcher.
    pub fn fetch(&self) -> Result<Document, CredentialsError> {
        let mut out = Document::new();
        for provider in &self.providers {
            let credentials = match provider.as_str() {
                "aws" => self.aws()?,
                "gcp" => doc! { "accessToken": self.gcp()? },
                "azure" => doc! { "accessToken": self.azure()? },
                _ => return Err(CredentialsError::new(provider, CredentialsErrorKind::Unsupported)),
            };
            out.insert(provider.clone(), credentials);
        }
        Ok(out)
    }

    /// [`fetch`](Self::fetch) as BSON bytes.
    pub fn fetch_raw(&self) -> Result<RawDocumentBuf, CredentialsError> {
        let doc = self.fetch()?;
        RawDocumentBuf::try_from(&doc)
            .map_err(|e| CredentialsError::new("all", CredentialsErrorKind::Mongocrypt(Error::from(e))))
    }

    /// [`fetch_raw`](Self::fetch_raw) for
    /// [`StateMachineIo::kms_credentials`](crate::state_machine::StateMachineIo::kms_credentials).
    pub fn kms_credentials(&self) -> crate::state_machine::IoResult<RawDocumentBuf> {
        Ok(self.fetch_raw()?)
    }

    /// Fetches and passes the credentials to a ctx in NEED_KMS_CREDENTIALS ([`Ctx::provide_kms_providers`]).
    pub fn provide(&self, ctx: &mut Ctx) -> Result<(), CredentialsError> {
        let doc = self.fetch()?;
        ctx.provide_kms_providers(&doc).map_err(|e| CredentialsError::new("all", CredentialsErrorKind::Mongocrypt(e)))
    }

    fn aws(&self) -> Result<Document, CredentialsError> {
        let var = |name: &'static str| (self.env)(name).filter(|v| !v.is_empty());
        let missing = |name| CredentialsError::new("aws", CredentialsErrorKind::MissingEnvironment(name));
        let id = var("AWS_ACCESS_KEY_ID").ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?;
        let secret = var("AWS_SECRET_ACCESS_KEY").ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?;
        let mut d = doc! { "accessKeyId": id, "secretAccessKey": secret };
        if let Some(token) = var("AWS_SESSION_TOKEN") {
            d.insert("sessionToken", token);
        }
        Ok(d)
    }

    fn gcp(&self) -> Result<String, CredentialsError> {
        let reply = self.token_request("gcp", &self.gcp_url, &[("Metadata-Flavor", "Google")])?;
        Ok(reply.token)
    }

    fn azure(&self) -> Result<String, CredentialsError> {
        {
            let cache = self.azure_cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cached) = cache.as_ref() {
                if Instant::now() + self.azure_refresh_margin < cached.expires {
                    return Ok(cached.token.clone());
                }
            }
        }
        let fetched_at = Instant::now();
        let reply =
            self.token_request("azure", &self.azure_url, &[("Metadata", "true"), ("Accept", "application/json")])?;
        let expires_in = reply.expires_in.ok_or_else(|| {
            CredentialsError::new(
                "azure",
                CredentialsErrorKind::Reply { url: self.azure_url.clone(), message: "no expires_in".into() },
            )
        })?;
        *self.azure_cache.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(CachedToken { token: reply.token.clone(), expires: fetched_at + expires_in });
        Ok(reply.token)
    }

    fn token_request(
        &self,
        provider: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<TokenReply, CredentialsError> {
        let fail = |kind| CredentialsError::new(provider, kind);
        let reply = http_get(url, headers, self.timeout).map_err(fail)?;
        if reply.status != 200 {
            return Err(fail(CredentialsErrorKind::Http {
                url: url.to_owned(),
                status: reply.status,
                body: String::from_utf8_lossy(&reply.body[..reply.body.len().min(1024)]).into_owned(),
            }));
        }
        let bad = |message: String| fail(CredentialsErrorKind::Reply { url: url.to_owned(), message });
        let json: serde_json::Value =
            serde_json::from_slice(&reply.body).map_err(|e| bad(format!("reply is not JSON: {e}")))?;
        let token = match json.get("access_token") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(bad("reply has no access_token".into())),
        };
        // A number for GCP, a string of digits for Azure.
        let expires_in = match json.get("expires_in") {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .map(Duration::from_secs);
        Ok(TokenReply { token, expires_in })
    }
}

/// The providers of `providers` configured as empty documents: those whose credentials are fetched on demand.
pub fn on_demand_providers(providers: &KmsProviders) -> Vec<String> {
    providers
        .as_document()
        .iter()
        .filter(|(_, value)| matches!(value, bson::Bson::Document(d) if d.is_empty()))
        .map(|(name, _)| name.clone())
        .collect()
}

struct TokenReply {
    token: String,
    expires_in: Option<Duration>,
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
    /// An environment variable is not set (or empty).
    #[error("{0} is not set")]
    MissingEnvironment(&'static str),
    /// The provider has no on-demand credentials (only `aws`, `gcp` and `azure` do).
    #[error("not a provider with on-demand credentials (aws, gcp, azure)")]
    Unsupported,
    /// The URL is not `http://host[:port]/path`.
    #[error("invalid URL {0}")]
    Url(String),
    /// No connection could be made.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// The error of the last address tried.
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
        /// The start of the body.
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

// ---------------------------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client for the metadata endpoints: GET, plain TCP, `Connection: close`, one bounded reply.

#[derive(Debug)]
struct HttpReply {
    status: u16,
    body: Vec<u8>,
}

/// `http://host[:port]/path?query` → (`host`, port, `host[:port]`, `/path?query`); the path may be just `?query`.
fn parse_url(url: &str) -> Option<(&str, u16, &str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 80,
            None => return None,
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, 80),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((host, port, authority, path))
}

fn http_get(url: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<HttpReply, CredentialsErrorKind> {
    let (host, port, authority, path) = parse_url(url).ok_or_else(|| CredentialsErrorKind::Url(url.to_owned()))?;
    // "/?query" for a URL whose path is empty.
    let target = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
    let deadline = Instant::now() + timeout;
    let timed_out = || CredentialsErrorKind::Timeout { url: url.to_owned(), after: timeout };
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(timed_out())
        } else {
            Ok(left)
        }
    };
    let io_err = |e: io::Error| {
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            timed_out()
        } else {
            CredentialsErrorKind::Io { url: url.to_owned(), source: e }
        }
    };

    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|source| CredentialsErrorKind::Connect { url: url.to_owned(), source })?
        .collect();
    let mut sock = None;
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left()?) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(timed_out())
            }
            Err(e) => last = e,
        }
    }
    let mut sock = sock.ok_or_else(|| CredentialsErrorKind::Connect { url: url.to_owned(), source: last })?;

    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    sock.set_write_timeout(Some(left()?)).map_err(io_err)?;
    sock.write_all(request.as_bytes()).map_err(io_err)?;

    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if complete_reply(&buf).is_some() {
            break;
        }
        sock.set_read_timeout(Some(left()?)).map_err(io_err)?;
        let n = match sock.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REPLY {
            return Err(CredentialsErrorKind::Reply { url: url.to_owned(), message: "reply too large".into() });
        }
    }
    parse_reply(&buf).map_err(|message| CredentialsErrorKind::Reply { url: url.to_owned(), message })
}

/// The head of a reply.
struct Head {
    status: u16,
    /// Where the body starts.
    end: usize,
    /// Content-Length.
    length: Option<usize>,
    /// Transfer-Encoding: chunked.
    chunked: bool,
}

/// The head of a reply; `None` while incomplete.
fn parse_head(buf: &[u8]) -> Option<Result<Head, String>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = match std::str::from_utf8(&buf[..end]) {
        Ok(head) => head,
        Err(_) => return Some(Err("reply head is not text".into())),
    };
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status =
        status_line.strip_prefix("HTTP/1.").and_then(|rest| rest.get(2..5)).and_then(|code| code.parse::<u16>().ok());
    let Some(status) = status else {
        return Some(Err(format!("not an HTTP reply: {status_line:?}")));
    };
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse() {
                Ok(n) => length = Some(n),
                Err(_) => return Some(Err(format!("bad Content-Length {value:?}"))),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        }
    }
    Some(Ok(Head { status, end, length, chunked }))
}

/// Decodes a chunked body; `None` while incomplete.
fn dechunk(mut body: &[u8]) -> Option<Result<Vec<u8>, String>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim().to_owned();
        let Ok(size) = usize::from_str_radix(&size_text, 16) else {
            return Some(Err(format!("bad chunk size {size_text:?}")));
        };
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(Ok(out));
        }
        if body.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// `Some` when `buf` holds a whole reply (by Content-Length or chunked encoding); a reply with neither ends at EOF.
fn complete_reply(buf: &[u8]) -> Option<()> {
    let Head { end, length, chunked, .. } = parse_head(buf)?.ok()?;
    let body = &buf[end..];
    if chunked {
        dechunk(body).map(|_| ())
    } else {
        (body.len() >= length?).then_some(())
    }
}

fn parse_reply(buf: &[u8]) -> Result<HttpReply, String> {
    let Head { status, end, length, chunked } = match parse_head(buf) {
        Some(head) => head?,
        None if buf.is_empty() => return Err("connection closed without a reply".into()),
        None => return Err("reply cut off in its head".into()),
    };
    let body = &buf[end..];
    let body = if chunked {
        dechunk(body).ok_or("chunked reply cut off")??
    } else if let Some(length) = length {
        if body.len() < length {
            return Err(format!("reply cut off: {} of {length} body bytes", body.len()));
        }
        body[..length].to_vec()
    } else {
        body.to_vec()
    };
    Ok(HttpReply { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse_url(GCP_TOKEN_URL),
            Some((
                "metadata.google.internal",
                80,
                "metadata.google.internal",
                "/computeMetadata/v1/instance/service-accounts/default/token"
            ))
        );
        let (host, port, authority, path) = parse_url(AZURE_TOKEN_URL).unwrap();
        assert_eq!((host, port, authority), ("169.254.169.254", 80, "169.254.169.254"));
        assert!(path.starts_with("/metadata/identity/oauth2/token?api-version=2018-02-01&resource="));
        assert_eq!(parse_url("http://127.0.0.1:8080"), Some(("127.0.0.1", 8080, "127.0.0.1:8080", "/")));
        assert_eq!(parse_url("http://[::1]:81/x"), Some(("::1", 81, "[::1]:81", "/x")));
        assert_eq!(parse_url("http://h?q=1"), Some(("h", 80, "h", "?q=1")));
        assert_eq!(parse_url("https://h/"), None);
        assert_eq!(parse_url("http://:80/"), None);
        assert_eq!(parse_url("http://h:port/"), None);
    }

    #[test]
    fn replies_parse() {
        let reply = parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra").unwrap();
        assert_eq!((reply.status, reply.body.as_slice()), (200, &b"{}"[..]));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert!(complete_reply(chunked).is_some());
        assert_eq!(parse_reply(chunked).unwrap().body, b"abcde");
        assert!(complete_reply(&chunked[..chunked.len() - 9]).is_none());
        assert_eq!(parse_reply(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap().body, b"nope");
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").unwrap_err().contains("cut off"));
        assert!(parse_reply(b"SSH-2.0\r\n\r\n").unwrap_err().contains("not an HTTP reply"));
        assert!(parse_reply(b"").is_err());
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
        let err = CredentialsFetcher::new(["aws"]).env(|_| None).fetch().unwrap_err();
        assert_eq!(err.to_string(), "on-demand aws KMS credentials: AWS_ACCESS_KEY_ID is not set");
        let err = CredentialsFetcher::new(["kmip"]).fetch().unwrap_err();
        assert!(matches!(err.kind(), CredentialsErrorKind::Unsupported), "{err}");
    }
}
