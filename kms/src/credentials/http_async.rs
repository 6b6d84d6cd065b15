//! The async face of the credentials core (feature `tokio`): the same [`HttpRequest`]s as the
//! blocking face, sent without blocking any thread. Each request is one HTTP/1.1 connection (the metadata servers
//! and STS answer a handful of requests per fetch, so there is no pool): a tokio `TcpStream`, TLS for `https` by
//! `tokio-rustls` on the ring-backed rustls and webpki roots that `tls` already builds, and hyper's low-level
//! client (`hyper::client::conn::http1`) with its connection task spawned on the current runtime. The whole
//! exchange is bounded by the fetcher's timeout with `tokio::time::timeout`.
//!
//! Polled outside a tokio runtime (another executor), a request falls back to the blocking face on the polling
//! thread, rather than panicking for want of tokio's reactor.

use std::future::Future;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_LENGTH, HOST};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use zeroize::{Zeroize, Zeroizing};

use super::http::{send_blocking, HttpRequest, HttpResponse, Transport, MAX_REPLY};
use super::{AwsCredentialProvider, AwsCredentials, CredentialsErrorKind};
use libmongocrypt::state_machine::IoError;

/// The async face (tokio).
pub(crate) struct Tokio {
    pub timeout: Duration,
}

impl Transport for Tokio {
    fn send(&self, request: HttpRequest) -> impl Future<Output = Result<HttpResponse, CredentialsErrorKind>> + Send {
        let timeout = self.timeout;
        async move {
            if tokio::runtime::Handle::try_current().is_err() {
                return send_blocking(&request, timeout);
            }
            let url = request.url.clone();
            let timeout = super::within_operation(timeout);
            match tokio::time::timeout(timeout, exchange(request)).await {
                Ok(result) => result,
                Err(_) => Err(CredentialsErrorKind::Timeout { url, after: timeout }),
            }
        }
    }

    fn custom_aws<'a>(
        &'a self,
        provider: &'a dyn AwsCredentialProvider,
    ) -> impl Future<Output = Result<AwsCredentials, IoError>> + Send + 'a {
        provider.credentials_async()
    }

    #[cfg(feature = "aws-sdk")]
    fn aws_sdk(&self) -> impl Future<Output = Result<AwsCredentials, CredentialsErrorKind>> + Send {
        let timeout = self.timeout;
        async move {
            if tokio::runtime::Handle::try_current().is_err() {
                return super::aws_sdk::credentials_blocking(timeout);
            }
            super::aws_sdk::credentials(timeout).await
        }
    }
}

/// Aborts the spawned connection task when the exchange ends, however it ends (reply read, error, timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request on a new connection: no proxy (the metadata servers are link-local), no redirects, any status
/// returned as a reply, the reply bounded by [`MAX_REPLY`].
async fn exchange(mut request: HttpRequest) -> Result<HttpResponse, CredentialsErrorKind> {
    let url = request.url.clone();
    let bad_url = || CredentialsErrorKind::Url(url.clone());
    let uri: Uri = url.parse().map_err(|_| bad_url())?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(bad_url()),
    };
    let authority = uri.authority().ok_or_else(bad_url)?;
    if authority.as_str().contains('@') {
        return Err(bad_url());
    }
    // `[::1]` in the URL, `::1` for the socket and the TLS server name.
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });

    let mut builder = hyper::Request::builder()
        .method(request.method)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(HOST, authority.as_str());
    // Header values and the body go to hyper in buffers that own the request's wiped strings: no unwiped copy.
    for (name, value) in std::mem::take(&mut request.headers) {
        let value = HeaderValue::from_maybe_shared(Bytes::from_owner(value)).map_err(|_| bad_url())?;
        builder = builder.header(name, value);
    }
    // hyper writes the Content-Length of the body (0 for the IMDS token's PUT).
    let body = Full::new(Bytes::from_owner(std::mem::take(&mut request.body)));
    let http_request = builder.body(body).map_err(|_| bad_url())?;

    let tcp = TcpStream::connect((host, port)).await.map_err(|source| connect_error(&url, source))?;
    if tls {
        let name = ServerName::try_from(host.to_owned()).map_err(|_| bad_url())?;
        let stream = tokio_rustls::TlsConnector::from(tls_config(&url)?)
            .connect(name, tcp)
            .await
            .map_err(|source| CredentialsErrorKind::Io { url: url.clone(), source })?;
        round_trip(&url, TokioIo::new(stream), http_request).await
    } else {
        round_trip(&url, TokioIo::new(tcp), http_request).await
    }
}

/// Sends the request on a connection and reads the whole reply.
async fn round_trip<I>(
    url: &str,
    io: I,
    request: hyper::Request<Full<Bytes>>,
) -> Result<HttpResponse, CredentialsErrorKind>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| hyper_error(url, e))?;
    // The connection's I/O runs as its own task; its errors also surface through `send_request` and the body.
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender.send_request(request).await.map_err(|e| hyper_error(url, e))?;
    let status = response.status().as_u16();
    let too_large = || CredentialsErrorKind::Reply { url: url.to_owned(), message: "reply too large".into() };
    let expected = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if expected > MAX_REPLY {
        return Err(too_large());
    }
    let mut body = Zeroizing::new(Vec::with_capacity(expected as usize));
    let mut incoming = response.into_body();
    while let Some(frame) = incoming.frame().await {
        let Ok(data) = frame.map_err(|e| hyper_error(url, e))?.into_data() else { continue };
        if (body.len() + data.len()) as u64 > MAX_REPLY {
            wipe(data);
            return Err(too_large());
        }
        append_wiped(&mut body, &data);
        wipe(data);
    }
    Ok(HttpResponse { status, body })
}

/// Appends to a wiped buffer without leaving an unwiped copy behind when it grows: the old allocation is wiped
/// when it is replaced.
fn append_wiped(buffer: &mut Zeroizing<Vec<u8>>, data: &[u8]) {
    if buffer.capacity() - buffer.len() < data.len() {
        let capacity = (buffer.len() + data.len()).max(2 * buffer.capacity());
        let mut bigger = Zeroizing::new(Vec::with_capacity(capacity));
        bigger.extend_from_slice(buffer);
        *buffer = bigger;
    }
    buffer.extend_from_slice(data);
}

/// Wipes a chunk of the reply when this is its last reference; a chunk that still shares hyper's read buffer is
/// hyper's to reuse.
fn wipe(data: Bytes) {
    if let Ok(mut data) = data.try_into_mut() {
        data.as_mut().zeroize();
    }
}

/// The rustls configuration of the HTTPS endpoints (STS): ring, TLS 1.2 and 1.3, webpki roots; built once.
fn tls_config(url: &str) -> Result<Arc<ClientConfig>, CredentialsErrorKind> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map(|builder| Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|message| CredentialsErrorKind::Reply { url: url.to_owned(), message })
}

fn connect_error(url: &str, source: io::Error) -> CredentialsErrorKind {
    CredentialsErrorKind::Connect { url: url.to_owned(), source }
}

/// hyper's errors as this module's kinds: an I/O error underneath stays one.
fn hyper_error(url: &str, error: hyper::Error) -> CredentialsErrorKind {
    let url = url.to_owned();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(io_error) = cause.downcast_ref::<io::Error>() {
            return CredentialsErrorKind::Io { url, source: io::Error::new(io_error.kind(), error.to_string()) };
        }
        source = cause.source();
    }
    CredentialsErrorKind::Reply { url, message: error.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_wiped_grows_and_keeps_the_bytes() {
        let mut buffer = Zeroizing::new(Vec::new());
        for chunk in [&b"abc"[..], b"defgh", b"", b"ijklmnopqrstuvwxyz"] {
            append_wiped(&mut buffer, chunk);
        }
        assert_eq!(buffer.as_slice(), b"abcdefghijklmnopqrstuvwxyz");
    }
}
