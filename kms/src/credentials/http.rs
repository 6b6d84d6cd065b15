//! The HTTP faces of the credentials core: the core builds [`HttpRequest`]s and parses [`HttpResponse`]s, and a
//! [`Transport`] only moves them. [`Blocking`] sends on the calling thread with `ureq`; the async face
//! (`http_async`, feature `tokio`) sends the same requests with hyper on tokio's sockets.
//!
//! Why `ureq` for the blocking face: the metadata servers and STS need a few small requests with a timeout, plain
//! HTTP and (STS) HTTPS. `ureq` is a blocking client of a handful of crates, and uses the rustls, ring and
//! webpki-roots that `tls` already compiles, so it adds eight small crates and 4.3 s of debug compile
//! (`cargo build --timings`, two shared cores). The module docs of `credentials` say why hyper for the async
//! face.

use std::future::Future;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{AwsCredentialProvider, AwsCredentials, CredentialsErrorKind};
use libmongocrypt::state_machine::IoError;

/// The largest reply accepted.
pub(crate) const MAX_REPLY: u64 = 1 << 20;

/// How much of an error reply's body an error keeps.
pub(crate) const MAX_ERROR_BODY: usize = 300;

/// One request of the core. Bodies and header values can hold secrets (a web identity token, an ECS authorization
/// token): they are wiped when the request is dropped.
pub(crate) struct HttpRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, Zeroizing<String>)>,
    pub body: Zeroizing<Vec<u8>>,
}

impl HttpRequest {
    pub fn get(url: impl Into<String>) -> HttpRequest {
        HttpRequest { method: "GET", url: url.into(), headers: Vec::new(), body: Zeroizing::new(Vec::new()) }
    }

    pub fn put(url: impl Into<String>) -> HttpRequest {
        HttpRequest { method: "PUT", ..HttpRequest::get(url) }
    }

    pub fn post(url: impl Into<String>, body: Vec<u8>) -> HttpRequest {
        HttpRequest { method: "POST", body: Zeroizing::new(body), ..HttpRequest::get(url) }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> HttpRequest {
        self.headers.push((name, Zeroizing::new(value.into())));
        self
    }
}

/// A reply; the body (credentials, tokens) is wiped when dropped.
pub(crate) struct HttpResponse {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

/// The start of an error reply's body, for an error message: at most [`MAX_ERROR_BODY`] bytes, and says so when
/// it is empty or cut.
pub(crate) fn error_body(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".to_owned();
    }
    let mut end = body.len().min(MAX_ERROR_BODY);
    let text = loop {
        // Cut on a character boundary; a body that is not UTF-8 is shown lossily.
        match std::str::from_utf8(&body[..end]) {
            Ok(text) => break text.to_owned(),
            Err(e) if e.valid_up_to() > 0 && end - e.valid_up_to() < 4 && e.error_len().is_none() => {
                end = e.valid_up_to()
            }
            Err(_) => break String::from_utf8_lossy(&body[..end]).into_owned(),
        }
    };
    let text = text.trim_end();
    if body.len() > end {
        format!("{text}... ({} bytes)", body.len())
    } else {
        text.to_owned()
    }
}

/// How the core's requests (and the custom AWS provider) are served: the only part that differs between the
/// blocking and the async fetch.
pub(crate) trait Transport: Sync {
    fn send(&self, request: HttpRequest) -> impl Future<Output = Result<HttpResponse, CredentialsErrorKind>> + Send;

    fn custom_aws<'a>(
        &'a self,
        provider: &'a dyn AwsCredentialProvider,
    ) -> impl Future<Output = Result<AwsCredentials, IoError>> + Send + 'a;

    /// Feature `aws-sdk`: `aws-config`'s default credential chain, which does its own I/O.
    #[cfg(feature = "aws-sdk")]
    fn aws_sdk(&self) -> impl Future<Output = Result<AwsCredentials, CredentialsErrorKind>> + Send;
}

/// The blocking face: each future is ready at its first poll.
pub(crate) struct Blocking {
    pub timeout: Duration,
}

impl Transport for Blocking {
    fn send(&self, request: HttpRequest) -> impl Future<Output = Result<HttpResponse, CredentialsErrorKind>> + Send {
        std::future::ready(send_blocking(&request, self.timeout))
    }

    fn custom_aws<'a>(
        &'a self,
        provider: &'a dyn AwsCredentialProvider,
    ) -> impl Future<Output = Result<AwsCredentials, IoError>> + Send + 'a {
        std::future::ready(provider.credentials())
    }

    #[cfg(feature = "aws-sdk")]
    fn aws_sdk(&self) -> impl Future<Output = Result<AwsCredentials, CredentialsErrorKind>> + Send {
        std::future::ready(super::aws_sdk::credentials_blocking(self.timeout))
    }
}

/// One request with `ureq`: no proxy (the metadata servers are link-local), no redirects, error statuses returned
/// as replies, the whole exchange bounded by `timeout` and the reply by [`MAX_REPLY`].
pub(crate) fn send_blocking(request: &HttpRequest, timeout: Duration) -> Result<HttpResponse, CredentialsErrorKind> {
    let timeout = super::within_operation(timeout);
    let url = &request.url;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        // ureq adds the timeout to an Instant: one past what an Instant holds is no limit.
        .timeout_global(std::time::Instant::now().checked_add(timeout).map(|_| timeout))
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .build()
        .into();
    let mut builder = ureq::http::Request::builder().method(request.method).uri(url.as_str());
    for (name, value) in &request.headers {
        builder = builder.header(*name, value.as_str());
    }
    let http_request = builder.body(request.body.as_slice()).map_err(|_| CredentialsErrorKind::Url(url.to_owned()))?;
    let mut response = agent.run(http_request).map_err(|e| classify(url, timeout, e))?;
    let status = response.status().as_u16();
    // A reply that announces more than the limit is refused before its body is waited for.
    let announced = response.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > MAX_REPLY) {
        return Err(CredentialsErrorKind::Reply { url: url.to_owned(), message: "reply too large".into() });
    }
    let body =
        response.body_mut().with_config().limit(MAX_REPLY).read_to_vec().map_err(|e| classify(url, timeout, e))?;
    Ok(HttpResponse { status, body: Zeroizing::new(body) })
}

/// `ureq`'s errors as this module's kinds.
fn classify(url: &str, timeout: Duration, error: ureq::Error) -> CredentialsErrorKind {
    let url = url.to_owned();
    match error {
        ureq::Error::Timeout(_) => CredentialsErrorKind::Timeout { url, after: timeout },
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => CredentialsErrorKind::Url(url),
        ureq::Error::Io(source) if source.kind() == std::io::ErrorKind::TimedOut => {
            CredentialsErrorKind::Timeout { url, after: timeout }
        }
        ureq::Error::Io(source) if source.kind() == std::io::ErrorKind::ConnectionRefused => {
            CredentialsErrorKind::Connect { url, source }
        }
        ureq::Error::Io(source) => CredentialsErrorKind::Io { url, source },
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => CredentialsErrorKind::Connect {
            url,
            source: std::io::Error::new(std::io::ErrorKind::NotConnected, error.to_string()),
        },
        ureq::Error::BodyExceedsLimit(_) => CredentialsErrorKind::Reply { url, message: "reply too large".into() },
        other => CredentialsErrorKind::Reply { url, message: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_cut_and_empty_ones_say_so() {
        assert_eq!(error_body(b""), "(empty body)");
        assert_eq!(error_body(b"not found\n"), "not found");
        let long = "x".repeat(1000);
        let cut = error_body(long.as_bytes());
        assert!(cut.starts_with(&"x".repeat(MAX_ERROR_BODY)) && cut.ends_with("... (1000 bytes)"), "{cut}");
        // A multi-byte character across the cut is left out, not mangled.
        let text = format!("{}é{}", "a".repeat(MAX_ERROR_BODY - 1), "b".repeat(10));
        assert_eq!(
            error_body(text.as_bytes()),
            format!("{}... ({} bytes)", "a".repeat(MAX_ERROR_BODY - 1), text.len())
        );
    }
}
