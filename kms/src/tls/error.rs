//! [`KmsIoError`]: why a KMS request failed, with its endpoint, provider and attempt count.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use libmongocrypt::state_machine::{IoError, KmsFailure, KmsFailureKind};
use libmongocrypt::Error;
// For the links of the documentation.
#[allow(unused_imports)]
use libmongocrypt::KmsCtx;

/// Why one KMS request failed: the endpoint, the provider, how many attempts were made, and the last error.
/// (Boxed inside, so that a `Result` carrying it stays small.)
#[derive(Debug)]
pub struct KmsIoError(Box<KmsIoErrorInner>);

#[derive(Debug)]
struct KmsIoErrorInner {
    endpoint: String,
    provider: String,
    attempts: u32,
    /// libmongocrypt has scheduled a retry of the request (a retryable HTTP status).
    retry_scheduled: bool,
    kind: KmsIoErrorKind,
}

/// What went wrong in a KMS exchange.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsIoErrorKind {
    /// The endpoint is not `host:port`, or the host is not a valid TLS server name.
    #[error("invalid endpoint: {0}")]
    Endpoint(String),
    /// The host name could not be resolved.
    #[error("cannot resolve host: {0}")]
    Resolve(#[source] io::Error),
    /// No address of the host accepted a connection (the last address's error).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// Its error.
        #[source]
        source: io::Error,
    },
    /// The caller's [`Connector`](super::Connector) (a proxy, ...) could not open the stream.
    #[error("cannot connect through the connector: {0}")]
    Connector(#[source] io::Error),
    /// TLS failed: an untrusted or mismatched server certificate, a client certificate the server refused, an
    /// alert, a protocol error.
    #[error("TLS: {}", tls_text(.0))]
    Tls(#[source] rustls::Error),
    /// TLS failed in the OpenSSL backend (feature `openssl`): OpenSSL's error, with the certificate
    /// verification result, and what was offered when the server refused the handshake.
    #[cfg(feature = "openssl")]
    #[error("TLS (OpenSSL): {0}")]
    OpenSsl(#[source] super::openssl::OpenSslError),
    /// A timeout elapsed.
    #[error("timed out after {after:?} while {during}")]
    Timeout {
        /// What was under way: `connecting`, `connecting through the connector` (a [`Connector`](super::Connector)'s
        /// whole work, such as a proxy's CONNECT), `the TLS handshake`, `writing the request`, `reading the reply`.
        during: &'static str,
        /// The timeout that elapsed: the request timeout when its deadline ended the step, else the step's own.
        after: Duration,
    },
    /// Any other I/O error, including a connection closed before the reply was complete.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// The KMS answered with an HTTP error status; `error` is libmongocrypt's report of it.
    #[error("HTTP status {status}: {}", cut_body(&error.to_string()))]
    Http {
        /// The HTTP status code.
        status: u16,
        /// libmongocrypt's error.
        #[source]
        error: Error,
    },
    /// libmongocrypt rejected the reply or the request (an unparsable reply, a bad KMS ctx, ...).
    #[error("{0}")]
    Mongocrypt(#[source] Error),
}

impl KmsIoError {
    pub(super) fn new(endpoint: &str, provider: &str, kind: KmsIoErrorKind) -> KmsIoError {
        KmsIoError(Box::new(KmsIoErrorInner {
            endpoint: endpoint.to_owned(),
            provider: provider.to_owned(),
            attempts: 1,
            retry_scheduled: false,
            kind,
        }))
    }

    /// This error, for an attempt whose request libmongocrypt has already scheduled to retry.
    pub(super) fn retry_scheduled(mut self) -> KmsIoError {
        self.0.retry_scheduled = true;
        self
    }

    /// The `host:port` of the request.
    pub fn endpoint(&self) -> &str {
        &self.0.endpoint
    }

    /// The KMS provider of the request, as [`KmsCtx::kms_provider`] reported it.
    pub fn provider(&self) -> &str {
        &self.0.provider
    }

    /// How many attempts were made (1 without retries).
    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }

    /// The last error.
    pub fn kind(&self) -> &KmsIoErrorKind {
        &self.0.kind
    }

    /// The last error, by value.
    pub fn into_kind(self) -> KmsIoErrorKind {
        self.0.kind
    }

    /// The [`KmsIoError`] of a failed [`KmsTransport::serve`](super::KmsTransport::serve): the attempt's own, as
    /// the runner returned it, or the runner's error wrapped.
    pub(super) fn from_serve_error(error: IoError) -> KmsIoError {
        let error = match error.downcast::<KmsIoError>() {
            Ok(error) => return *error,
            Err(error) => error,
        };
        let kind = match error.downcast::<Error>() {
            Ok(e) => KmsIoErrorKind::Mongocrypt(*e),
            // An io::Error (a thread that could not start) keeps its kind.
            Err(other) => KmsIoErrorKind::Io(match other.downcast::<io::Error>() {
                Ok(e) => *e,
                Err(other) => io::Error::other(other),
            }),
        };
        KmsIoError::new("<unknown endpoint>", "", kind)
    }

    /// Whether this is a network error (resolve, connect, TLS, timeout, I/O), which libmongocrypt may retry after
    /// [`KmsCtx::fail`].
    pub fn is_network(&self) -> bool {
        matches!(
            self.0.kind,
            KmsIoErrorKind::Resolve(_)
                | KmsIoErrorKind::Connect { .. }
                | KmsIoErrorKind::Connector(_)
                | KmsIoErrorKind::Tls(_)
                | KmsIoErrorKind::Timeout { .. }
                | KmsIoErrorKind::Io(_)
        ) || self.is_openssl()
    }

    #[cfg(feature = "openssl")]
    fn is_openssl(&self) -> bool {
        matches!(self.0.kind, KmsIoErrorKind::OpenSsl(_))
    }

    #[cfg(not(feature = "openssl"))]
    fn is_openssl(&self) -> bool {
        false
    }

    /// Whether this is a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.0.kind, KmsIoErrorKind::Timeout { .. })
    }

    /// The HTTP status of an HTTP error.
    pub fn http_status(&self) -> Option<u16> {
        match self.0.kind {
            KmsIoErrorKind::Http { status, .. } => Some(status),
            _ => None,
        }
    }

    /// libmongocrypt's error, for [`KmsIoErrorKind::Http`] and [`KmsIoErrorKind::Mongocrypt`].
    pub fn mongocrypt_error(&self) -> Option<&Error> {
        match &self.0.kind {
            KmsIoErrorKind::Http { error, .. } | KmsIoErrorKind::Mongocrypt(error) => Some(error),
            _ => None,
        }
    }

    /// libmongocrypt's error, with this error's endpoint added to its message, for the errors libmongocrypt
    /// raised; `Err(self)` for transport errors.
    pub fn into_mongocrypt_error(self) -> Result<Error, KmsIoError> {
        let inner = *self.0;
        let error = match inner.kind {
            KmsIoErrorKind::Http { error, .. } | KmsIoErrorKind::Mongocrypt(error) => error,
            kind => return Err(KmsIoError(Box::new(KmsIoErrorInner { kind, ..inner }))),
        };
        Ok(with_endpoint(error, &inner.endpoint))
    }
}

/// The runner's contract: network errors are retried as libmongocrypt allows, a retryable HTTP status
/// libmongocrypt scheduled is retried, anything else is final; libmongocrypt's errors end a run as
/// [`RunError::Mongocrypt`](libmongocrypt::RunError::Mongocrypt), with the endpoint added to their message.
impl KmsFailure for KmsIoError {
    fn failure_kind(&self) -> KmsFailureKind {
        if self.0.retry_scheduled {
            KmsFailureKind::RetryScheduled
        } else if self.is_network() {
            KmsFailureKind::Network
        } else {
            KmsFailureKind::Final
        }
    }

    fn record_attempts(&mut self, attempts: u32) {
        self.0.attempts = attempts;
    }

    fn mongocrypt_error(&self) -> Option<Error> {
        KmsIoError::mongocrypt_error(self).map(|error| with_endpoint(error.clone(), &self.0.endpoint))
    }
}

/// libmongocrypt's `error`, its message cut and naming the KMS endpoint.
fn with_endpoint(error: Error, endpoint: &str) -> Error {
    // Both parts are a peer's (the endpoint comes from a key document): each is cut, so the whole stays far within
    // libmongocrypt::MAX_ERROR_MESSAGE_LEN.
    let with_endpoint = |message: String| format!("{} (KMS endpoint {})", cut_body(&message), cut_body(endpoint));
    match error {
        Error::Client { code, message } => Error::Client { code, message: with_endpoint(message) },
        Error::Kms { code, message } => Error::Kms { code, message: with_endpoint(message) },
        other => other,
    }
}

impl fmt::Display for KmsIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.0;
        write!(f, "KMS request to {} ({})", inner.endpoint, inner.provider)?;
        if inner.attempts > 1 {
            write!(f, " failed after {} attempts: {}", inner.attempts, inner.kind)
        } else {
            write!(f, " failed: {}", inner.kind)
        }
    }
}

impl std::error::Error for KmsIoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0.kind)
    }
}

/// At most this many bytes of an HTTP error reply's body are quoted in an error message.
pub const MAX_QUOTED_BODY: usize = 300;

/// `text` cut to [`MAX_QUOTED_BODY`] bytes (at a character boundary), saying how much was left out: KMS error
/// replies can be whole HTML pages.
fn cut_body(text: &str) -> String {
    if text.len() <= MAX_QUOTED_BODY {
        return text.to_owned();
    }
    // A message already cut as it was copied out of C keeps its note, which states the full length.
    let (body, note) = match text.rfind(" \u{2026} (message cut: ") {
        Some(at) if text.ends_with(" bytes in all)") => text.split_at(at),
        _ => (text, ""),
    };
    let mut end = MAX_QUOTED_BODY.min(body.len());
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    if note.is_empty() {
        format!("{}... ({} more bytes)", &body[..end], body.len() - end)
    } else {
        format!("{}{note}", &body[..end])
    }
}

/// rustls's error, with certificate validity times as dates and a hint for a handshake the server refused.
fn tls_text(error: &rustls::Error) -> String {
    use rustls::{AlertDescription, CertificateError};
    match error {
        rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { time, not_after }) => format!(
            "invalid peer certificate: expired: not valid after {}, and it is {} now",
            date(not_after.as_secs()),
            date(time.as_secs())
        ),
        rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { time, not_before }) => format!(
            "invalid peer certificate: not valid yet: not valid before {}, and it is {} now",
            date(not_before.as_secs()),
            date(time.as_secs())
        ),
        rustls::Error::AlertReceived(AlertDescription::HandshakeFailure) => format!(
            "{error}: the server refused the handshake; it may want a client certificate (tlsCertificateKeyFile), or \
             cipher suites or TLS versions this transport does not offer (rustls offers TLS 1.3 and TLS 1.2 ECDHE \
             suites with AES-GCM or ChaCha20-Poly1305, no CBC or RSA key exchange)"
        ),
        other => other.to_string(),
    }
}

/// Seconds since the Unix epoch as a UTC date and time.
fn date(secs: u64) -> String {
    match i64::try_from(secs).ok().and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok()) {
        Some(t) => format!("{} {:02}:{:02}:{:02} UTC", t.date(), t.hour(), t.minute(), t.second()),
        None => format!("{secs} s after 1970"),
    }
}

/// The TLS error inside an I/O error of a TLS stream (rustls's, or OpenSSL's with feature `openssl`), as both faces
/// report it.
pub(super) fn tls_error_of(e: &io::Error) -> Option<KmsIoErrorKind> {
    let inner = e.get_ref()?;
    if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
        return Some(KmsIoErrorKind::Tls(tls.clone()));
    }
    #[cfg(feature = "openssl")]
    if let Some(stack) = inner.downcast_ref::<openssl::ssl::Error>().and_then(openssl::ssl::Error::ssl_error) {
        return Some(KmsIoErrorKind::OpenSsl(super::openssl::OpenSslError { message: format!("{stack}") }));
    }
    None
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::UnixTime;
    use rustls::{AlertDescription, CertificateError};

    use super::*;

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    #[test]
    fn certificate_validity_times_are_dates() {
        let expired = rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: at(1_700_000_000),
            not_after: at(1_600_000_000),
        });
        let text = KmsIoErrorKind::Tls(expired).to_string();
        assert!(text.contains("not valid after 2020-09-13 12:26:40 UTC"), "{text}");
        assert!(text.contains("2023-11-14 22:13:20 UTC now"), "{text}");
        let early = rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext {
            time: at(1_600_000_000),
            not_before: at(1_700_000_000),
        });
        let text = KmsIoErrorKind::Tls(early).to_string();
        assert!(text.contains("not valid before 2023-11-14 22:13:20 UTC"), "{text}");
        let refused = KmsIoErrorKind::Tls(rustls::Error::AlertReceived(AlertDescription::HandshakeFailure));
        assert!(refused.to_string().contains("may want a client certificate"), "{refused}");
    }

    #[test]
    fn long_bodies_are_cut() {
        let body = "é".repeat(1000);
        let cut = cut_body(&body);
        assert!(cut.len() < MAX_QUOTED_BODY + 40 && cut.ends_with("(1700 more bytes)"), "{cut}");
        assert_eq!(cut_body("short"), "short");
        // A message libmongocrypt's status already cut (libmongocrypt's cut_message): its note survives.
        let long = format!("{} \u{2026} (message cut: 10485760 bytes in all)", "x".repeat(4050));
        assert_eq!(cut_body(&long), format!("{} \u{2026} (message cut: 10485760 bytes in all)", "x".repeat(300)));
    }
}
