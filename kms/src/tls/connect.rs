//! What the blocking and async exchanges share: the request's endpoint and TLS server name, and the feeding of
//! the reply to libmongocrypt (pieces of at most `bytes_needed`, retry detection, error classification), how a
//! conversation ended, and which kept connections may serve a request.

use rustls::pki_types::ServerName;

use super::keep_alive::reply_keeps_alive;
use super::{KmsIoError, KmsIoErrorKind};
use libmongocrypt::KmsCtx;

/// What an exchange needs to know before connecting.
pub(super) struct Target {
    pub(super) endpoint: String,
    pub(super) provider: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) server_name: ServerName<'static>,
}

impl Target {
    /// The request's endpoint, checked (and its message too, before anything is sent).
    pub(super) fn of(kms: &KmsCtx<'_>) -> Result<Target, KmsIoError> {
        let provider = kms.kms_provider().to_string();
        let endpoint = match kms.endpoint() {
            Ok(endpoint) => endpoint.to_owned(),
            Err(e) => return Err(KmsIoError::new("<unknown endpoint>", &provider, KmsIoErrorKind::Mongocrypt(e))),
        };
        let fail = |kind| KmsIoError::new(&endpoint, &provider, kind);
        kms.message().map_err(|e| fail(KmsIoErrorKind::Mongocrypt(e)))?;
        let (host, port) = split_endpoint(&endpoint).map_err(fail)?;
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|e| fail(KmsIoErrorKind::Endpoint(format!("{host} is not a valid server name: {e}"))))?;
        let host = host.to_owned();
        Ok(Target { endpoint, provider, host, port, server_name })
    }

    /// The idle connections that may serve this request in `scope`.
    pub(super) fn pool_key<S>(&self, scope: S) -> EndpointKey<S> {
        EndpointKey { scope, provider: self.provider.clone(), host: self.host.clone(), port: self.port }
    }

    /// An error of this request.
    pub(super) fn fail(&self, kind: KmsIoErrorKind) -> KmsIoError {
        KmsIoError::new(&self.endpoint, &self.provider, kind)
    }
}

/// The longest reply head kept (to name the HTTP status in errors, and to see whether the connection stays
/// open); a longer one closes the connection.
const MAX_HEAD: usize = 16 * 1024;

/// Feeds a reply as it is read: how many bytes to read next, and what each piece means.
#[derive(Default)]
pub(super) struct Feeder {
    /// The reply's status line and headers, through the blank line once it has arrived (no body bytes: a
    /// Decrypt reply's body holds key material).
    head: Vec<u8>,
    head_complete: bool,
    received: usize,
}

impl Feeder {
    /// How many bytes to read next, at most `buf_len`; 0 when the reply is complete.
    pub(super) fn wanted(&self, kms: &KmsCtx<'_>, buf_len: usize) -> usize {
        (kms.bytes_needed() as usize).min(buf_len)
    }

    /// Bytes received so far.
    pub(super) fn received(&self) -> usize {
        self.received
    }

    /// The reply was fed in full; its connection may be kept if the request went out `kept_alive` (without
    /// `Connection: close`) and the reply keeps it alive too.
    pub(super) fn complete(&self, kept_alive: bool) -> Conversed {
        let reusable = kept_alive && self.head_complete && reply_keeps_alive(&self.head);
        Conversed { exchanged: Exchanged::Complete, reusable }
    }

    /// The conversation failed with `kind`, after what was received so far.
    pub(super) fn failed(&self, kind: KmsIoErrorKind) -> Failed {
        Failed { kind, before_reply: self.received == 0 }
    }

    /// Feeds one piece; `Some` when the exchange is over (libmongocrypt scheduled a retry).
    pub(super) fn feed(&mut self, kms: &mut KmsCtx<'_>, chunk: &[u8]) -> Result<Option<Exchanged>, KmsIoErrorKind> {
        self.received += chunk.len();
        // Byte by byte, up to the blank line: no byte of the body is copied, nor more than 5 bytes of a reply that
        // is not HTTP (a KMIP reply holds the key).
        for &byte in chunk {
            let not_http = self.head.len() >= 5 && !self.head.starts_with(b"HTTP/");
            if self.head_complete || self.head.len() >= MAX_HEAD || not_http {
                break;
            }
            self.head.push(byte);
            self.head_complete = self.head.ends_with(b"\r\n\r\n");
        }
        let fed = if libmongocrypt::KMS_RETRIES_SUPPORTED {
            kms.feed_with_retry(chunk)
        } else {
            kms.feed(chunk).map(|()| false)
        };
        match fed {
            Ok(false) => Ok(None),
            Ok(true) => {
                let status = http_status(&self.head);
                log::debug!(target: "libmongocrypt_kms::tls", "HTTP status {status:?}; libmongocrypt will retry");
                Ok(Some(Exchanged::RetryRequested(status)))
            }
            Err(error) => Err(match http_status(&self.head) {
                Some(status) if !(200..300).contains(&status) => KmsIoErrorKind::Http { status, error },
                _ => KmsIoErrorKind::Mongocrypt(error),
            }),
        }
    }
}

/// A peer that closed the connection before the reply was complete.
pub(super) fn closed_early(received: usize) -> KmsIoErrorKind {
    KmsIoErrorKind::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("the server closed the connection before sending a complete reply ({received} bytes received)"),
    ))
}

/// `host:port`, `[v6]:port` → host (without brackets) and port.
pub(super) fn split_endpoint(endpoint: &str) -> Result<(&str, u16), KmsIoErrorKind> {
    let bad = || KmsIoErrorKind::Endpoint(format!("{endpoint:?} is not host:port"));
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

/// The status code of an HTTP reply that starts with `HTTP/1.x NNN`.
pub(super) fn http_status(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/")?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let code = rest.get(space + 1..space + 4)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// How one exchange ended, when it did not fail.
pub(super) enum Exchanged {
    /// The reply was fed in full.
    Complete,
    /// libmongocrypt asked for the request to be retried (a retryable HTTP status, if the reply had one).
    RetryRequested(Option<u16>),
}

/// How a conversation over a connection ended, when it did not fail.
pub(super) struct Conversed {
    pub(super) exchanged: Exchanged,
    /// The request went out kept alive, the reply was complete and keeps the connection alive.
    pub(super) reusable: bool,
}

/// How a conversation over a connection failed.
pub(super) struct Failed {
    pub(super) kind: KmsIoErrorKind,
    /// No byte of the reply had arrived.
    pub(super) before_reply: bool,
}

impl From<KmsIoErrorKind> for Failed {
    fn from(kind: KmsIoErrorKind) -> Failed {
        Failed { kind, before_reply: true }
    }
}

impl Failed {
    /// A kept connection the server closed as the request went out (an I/O error or end of stream before any
    /// reply byte): nothing was fed to libmongocrypt, so the request goes out again on a new connection, as the
    /// same attempt. The server may have read it (KMS requests are safe to repeat; KMIP's are never kept).
    pub(super) fn closed_while_idle(&self, target: &Target) -> bool {
        let closed = self.before_reply && matches!(self.kind, KmsIoErrorKind::Io(_));
        if closed {
            log::debug!(
                target: "libmongocrypt_kms::tls",
                "{}: the kept connection was closed ({}); sending the request again on a new one",
                target.endpoint,
                self.kind
            );
        }
        closed
    }
}

/// Which connections may serve a request: the same scope (the async face's runtime: a socket belongs to the
/// runtime that opened it), provider (so the same TLS configuration) and endpoint.
#[derive(PartialEq, Eq, Hash)]
pub(super) struct EndpointKey<S> {
    scope: S,
    provider: String,
    host: String,
    port: u16,
}
