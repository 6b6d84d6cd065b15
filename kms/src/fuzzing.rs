//! Not part of the API: the entry points of the fuzz targets (`fuzz/fuzz_targets/`) into the parsers of what
//! network peers send, which are private. Each must not panic, whatever the bytes.

/// Metadata-server and STS replies: byte 0 picks the parser (ECS and IMDS credentials, STS, GCP and Azure
/// tokens), the rest is the body.
pub fn credentials_reply(data: &[u8]) {
    crate::credentials::fuzz_reply(data);
}

/// An HTTP proxy's reply to CONNECT, read as `HttpProxy` reads it.
pub fn proxy_connect_reply(data: &[u8]) {
    crate::tls::fuzz_connect_reply(data);
}

/// The framing of KMS replies and requests: the status line, whether a reply keeps its connection alive, the
/// `Connection: close` line cut from a request.
pub fn kms_framing(data: &[u8]) {
    crate::tls::fuzz_framing(data);
}
