//! KMS I/O over TLS: a ready-made transport for the NEED_KMS state.
//!
//! In NEED_KMS, libmongocrypt hands out one [`KmsCtx`] per KMS request. Each names a `host:port`
//! [`endpoint`](KmsCtx::endpoint) and a [`message`](KmsCtx::message) (an HTTP request for AWS, Azure and GCP, a
//! binary KMIP request for KMIP). The driver connects over TLS, writes the message, and feeds the reply back until
//! [`bytes_needed`](KmsCtx::bytes_needed) is 0. [`KmsTransport`] does exactly that with [rustls] (ring provider):
//!
//! - server certificates are checked against Mozilla's root store ([webpki-roots]) by default, or against the CA
//!   certificates of the provider's [`TlsOptions`] (`tlsCAFile` of MongoDB's client-side encryption spec);
//! - a client certificate and key (`tlsCertificateKeyFile`) is presented when configured: mutual TLS, as KMIP
//!   servers require. A password-protected PKCS#8 key (`ENCRYPTED PRIVATE KEY`, as `openssl pkcs8 -topk8 -v2
//!   aes-256-cbc` writes it) is decrypted with `tlsCertificateKeyFilePassword`; see [`TlsOptions`];
//! - connect, read/write and whole-request timeouts bound every exchange, and so does the deadline of the operation
//!   the request belongs to, [`KmsCtx::deadline`] (set by a runner with
//!   [`Runner::timeout`](libmongocrypt::Runner::timeout)): every step ends by the sooner of its own timeout and
//!   that deadline;
//! - a [resolver](KmsTransportBuilder::resolver) hook maps `host:port` to socket addresses (tests point
//!   `kms.us-east-1.amazonaws.com:443` at a server on loopback with it);
//! - the reply is read in pieces of at most [`bytes_needed`](KmsCtx::bytes_needed) bytes, so that libmongocrypt is
//!   never fed more than it asked for.
//!
//! [rustls]: https://docs.rs/rustls
//! [webpki-roots]: https://docs.rs/webpki-roots
//!
//! # Retries
//!
//! libmongocrypt ≥ 1.12 can retry KMS requests, but only when the `Crypt` was built with
//! [`CryptBuilder::retry_kms(true)`](libmongocrypt::CryptBuilder::retry_kms) ([`enable_retries`] does that where the
//! linked library supports it, and nothing otherwise). Then:
//!
//! - before each attempt the transport waits [`KmsCtx::sleep_duration`] (libmongocrypt's back-off);
//! - a network error (connect, TLS, timeout, connection closed mid-reply) is reported with [`KmsCtx::fail`], and
//!   libmongocrypt hands the request out again if it may be retried;
//! - a retryable HTTP status (429, 503, ...) is detected by [`KmsCtx::feed_with_retry`]; libmongocrypt then hands
//!   the request out again too.
//!
//! TLS failures count as network errors, as in MongoDB's drivers. libmongocrypt allows three retries (and the
//! transport never makes more than [`max_attempts`](KmsTransportBuilder::max_attempts)). When the last one fails, the [`KmsIoError`] names the endpoint and carries
//! the last network error or HTTP status, and how many attempts were made. On libraries before 1.12 there is one
//! attempt, and its error is returned as is.
//!
//! # Errors
//!
//! Transport failures are a [`KmsIoError`] rather than a variant of [`libmongocrypt::Error`]: they are not
//! libmongocrypt's errors, they carry the endpoint and an [`io::Error`] or [`rustls::Error`] (neither of which is
//! `Clone + Eq` like [`libmongocrypt::Error`]), and [`libmongocrypt::Error`] stays free of TLS types. A
//! libmongocrypt error raised while feeding the reply is kept inside it ([`KmsIoErrorKind::Mongocrypt`] or, for an
//! HTTP error status, [`KmsIoErrorKind::Http`]). It implements the runner's
//! [`KmsFailure`](libmongocrypt::state_machine::KmsFailure): a network error, a retry libmongocrypt scheduled, or
//! a final error, whose libmongocrypt error (with the endpoint added) a run returns as
//! [`RunError::Mongocrypt`](libmongocrypt::RunError::Mongocrypt); [`KmsTransport::kms_request`] hands it to the
//! runner that way (see there).
//!
//! # The whole loop, by hand
//!
//! ```no_run
//! use libmongocrypt_kms::tls::{enable_retries, KmsTransport};
//! use libmongocrypt::{Crypt, KeyEncryptionKey, KmsProviders, State};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let providers = KmsProviders::new().aws("aws", "AKIA...", "secret", None);
//! // Retries where the library has them (libmongocrypt ≥ 1.12); a no-op elsewhere.
//! let crypt = enable_retries(Crypt::builder().kms_providers(&providers)?)?.build()?;
//! let transport = KmsTransport::new()?; // Mozilla's roots, default timeouts
//!
//! let kek = KeyEncryptionKey::aws("aws", "us-east-1", "arn:aws:kms:us-east-1:123456789012:key/...");
//! let mut ctx = crypt.ctx().key_encryption_key(&kek)?.datakey()?;
//! loop {
//!     match ctx.state() {
//!         // Every request of the round, concurrently, retried as libmongocrypt allows; then kms_done.
//!         State::NeedKms => transport.serve_and_done(ctx.kms_scope()?)?,
//!         State::Ready => {
//!             let key_document = ctx.finalize_owned()?;
//!             println!("insert into the key vault: {key_document:?}");
//!         }
//!         State::Done => break,
//!         State::Error => return Err(ctx.status().unwrap_err().into()),
//!         other => unreachable!("a data key never needs {other:?}"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! To serve the requests one by one instead, take them from the scope and call [`KmsTransport::exchange`] on
//! each (then [`KmsCtx::fail`] on a network error, and [`KmsScope::kms_ctxs`] again for the retries), or use
//! [`KmsTransport::serve`] and call [`KmsScope::done`] yourself.
//!
//! # With the state-machine runner
//!
//! [`libmongocrypt::state_machine::run`] calls [`StateMachineIo::kms_request`](libmongocrypt::state_machine::StateMachineIo::kms_request)
//! once per attempt, and waits and calls [`KmsCtx::fail`] itself. Delegate it to [`KmsTransport::kms_request`]:
//!
//! ```
//! use libmongocrypt::bson::{RawDocument, RawDocumentBuf};
//! use libmongocrypt_kms::tls::KmsTransport;
//! use libmongocrypt::state_machine::{IoResult, StateMachineIo};
//! use libmongocrypt::KmsCtx;
//!
//! struct Driver {
//!     kms: KmsTransport,
//!     // ... the encrypted client, mongocryptd, the key vault ...
//! }
//!
//! impl StateMachineIo for Driver {
//!     # fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> { Err("not here".into()) }
//!     # fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> { Err("not here".into()) }
//!     # fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> { Err("not here".into()) }
//!     // list_collections, mark_command, find_keys: the driver's own.
//!     fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
//!         self.kms.kms_request(kms)
//!     }
//! }
//! ```
//!
//! [`run_concurrent`](libmongocrypt::state_machine::run_concurrent) then serves the requests of a round in parallel.
//!
//! # Bringing your own transport
//!
//! Nothing in the `libmongocrypt` crate depends on this one: any type implementing
//! [`StateMachineIo::kms_request`](libmongocrypt::state_machine::StateMachineIo::kms_request) (or any code that drives a
//! [`KmsScope`] by hand) can do the I/O instead: an async runtime's TLS, a proxy, a native-tls stack. The contract
//! is the one above: connect to [`KmsCtx::endpoint`] over TLS, write [`KmsCtx::message`], then
//! `while bytes_needed() > 0` read at most that many bytes and feed them (with
//! [`feed_with_retry`](KmsCtx::feed_with_retry) on libmongocrypt ≥ 1.12), and report network errors with
//! [`KmsCtx::fail`]. Through the runner, return the errors in a
//! [`KmsAttemptError`](libmongocrypt::state_machine::KmsAttemptError) to say which are final.

//!
//! # Connections: proxies and ready TLS configurations
//!
//! Per provider or for all, [`KmsTransportBuilder`] takes:
//!
//! - a ready rustls `ClientConfig` ([`client_config`](KmsTransportBuilder::client_config),
//!   [`default_client_config`](KmsTransportBuilder::default_client_config)): cipher suites, protocol versions,
//!   crypto provider, roots, client certificate, all the caller's;
//! - a [`Connector`] ([`connector`](KmsTransportBuilder::connector),
//!   [`provider_connector`](KmsTransportBuilder::provider_connector)) that returns the byte stream for an endpoint,
//!   called again for each retry: a proxy tunnel, an in-process test server, a socket of the caller's making.
//!   [`HttpProxy`] is the one for HTTP CONNECT proxies. TLS runs over the stream end to end with the KMS host:
//!   SNI and certificate verification name the KMS host, never the proxy;
//! - for the async face (feature `tokio`), an `AsyncConnector` (`async_connector`, `provider_async_connector`),
//!   found the same way (full provider name, then kind, then the one for all). [`HttpProxy`] is one too, with the
//!   same request and reply parsing. Its deadline bounds the whole connect, a proxy's reply included; the
//!   transport stops waiting at it whatever the connector does. A request whose provider has only a blocking
//!   connector is refused by the async face rather than sent around it.
//!
//! # Keep-alive
//!
//! libmongocrypt writes `Connection: close` into its HTTP requests, and by default every request is a new TCP
//! connection and TLS handshake, as in MongoDB's other drivers. With
//! [`keep_alive`](KmsTransportBuilder::keep_alive), requests to the same endpoint share connections: a request
//! then costs neither handshake's round trips nor their CPU (on 2 cores, the handshakes limit a driver to ~0.45 of
//! the rate 256 requests in flight at 20 ms allow; kept alive, 0.86–0.91: `BENCHMARKS.md`). The decisions (which
//! requests, which replies, a kept connection found closed) are made once, in `keep_alive`, for both faces.
//!
//! # OpenSSL, for KMIP servers (feature `openssl`)
//!
//! KMIP servers often offer only TLS 1.2 CBC suites with RSA key exchange (`TLS_RSA_WITH_AES_128_CBC_SHA256`,
//! `TLS_RSA_WITH_AES_256_CBC_SHA256`: PyKMIP's defaults, the KMIP profiles' mandatory suites), which rustls does
//! not implement: the handshake then fails with a `HandshakeFailure` alert. With the `openssl` feature,
//! `KmsTransportBuilder::openssl_for("kmip")` (or `openssl_for_all`) serves those providers' requests with
//! OpenSSL (the `openssl` crate, the system's library), configured from the same [`TlsOptions`]. rustls stays the
//! default; only the handshake differs, and the one retry core serves both. Both faces have it: the async one
//! through tokio-openssl, with the same per-provider OpenSSL connectors. Its connections are never kept alive.
//!
//! ```no_run
//! # #[cfg(feature = "openssl")]
//! # fn f() -> Result<(), libmongocrypt_kms::tls::TlsConfigError> {
//! use libmongocrypt_kms::tls::{KmsTransport, TlsOptions};
//!
//! let transport = KmsTransport::builder()
//!     .tls_options("kmip", TlsOptions::new().ca_file("ca.pem")?.certificate_key_file("client.pem", None)?)
//!     .openssl_for("kmip")
//!     .build()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! `options` (TLS options, key decryption, [`TlsConfigError`]), `error` ([`KmsIoError`]), `transport`
//! ([`KmsTransport`], its builder and entry points), `exchange` (the one exchange of both faces: kept connection or
//! new one, handshake, conversation, keep), `blocking` (the blocking face's I/O), `connector` (pluggable
//! connections, blocking and async, [`HttpProxy`] and its CONNECT reply parsing), `connect` (the endpoint, the
//! feeding of the reply), `keep_alive` (which requests and replies allow keeping a connection, the pool), `openssl`
//! (the OpenSSL connectors and errors, feature `openssl`), `tokio` (the async face's I/O, `TokioKmsTransport`, with
//! the `tokio` feature).
//!
//! # Async, on tokio
//!
//! With the `tokio` feature, `TokioKmsTransport` is the same transport with async I/O: tokio's sockets or an
//! `AsyncConnector`'s stream, tokio-rustls or (feature `openssl`) tokio-openssl, the same timeouts, keep-alive and
//! errors. An [`AsyncStateMachineIo`](libmongocrypt::state_machine::AsyncStateMachineIo) forwards `kms_request` to
//! it, and `libmongocrypt::state_machine::run_tokio` does the back-off, retries and attempt counting, as for the
//! blocking runners. A driver reaches a KMIP server with CBC-only suites, or goes through a proxy, without
//! blocking a worker:
//!
//! ```no_run
//! # #[cfg(all(feature = "tokio", feature = "openssl"))]
//! # fn f() -> Result<(), libmongocrypt_kms::tls::TlsConfigError> {
//! use libmongocrypt_kms::tls::{HttpProxy, KmsTransport, TlsOptions, TokioKmsTransport};
//!
//! let transport = TokioKmsTransport::new(
//!     KmsTransport::builder()
//!         .tls_options("kmip", TlsOptions::new().ca_file("ca.pem")?.certificate_key_file("client.pem", None)?)
//!         .openssl_for("kmip")
//!         .provider_async_connector("aws", HttpProxy::new("proxy.internal:3128"))
//!         .build()?,
//! );
//! # Ok(())
//! # }
//! ```

mod blocking;
mod bounded;
mod connect;
mod connector;
mod error;
mod exchange;
mod keep_alive;
#[cfg(feature = "openssl")]
mod openssl;
mod options;
mod resolve;
#[cfg(feature = "tokio")]
mod tokio;
mod transport;

use std::io;
use std::net::SocketAddr;

use libmongocrypt::CryptBuilder;
// For the links of the module documentation.
#[allow(unused_imports)]
use libmongocrypt::{KmsCtx, KmsScope};

#[cfg(feature = "openssl")]
pub use self::openssl::{OpenSslError, OPENSSL_TLS12_CIPHERS};
#[cfg(feature = "tokio")]
pub use self::tokio::TokioKmsTransport;
#[cfg(feature = "tokio")]
pub use connector::{AsyncConnect, AsyncConnector, AsyncKmsStream};
pub use connector::{Connector, HttpProxy, KmsStream};
pub use error::{KmsIoError, KmsIoErrorKind, MAX_QUOTED_BODY};
pub use options::{
    TlsConfigError, TlsOptions, MAX_PBKDF2_ITERATIONS, MAX_SCRYPT_MEMORY, MAX_SCRYPT_WORK, MAX_TLS_FILE,
};
pub use transport::{
    KmsTransport, KmsTransportBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_CONCURRENT,
};

/// The certificate and key types of [`TlsOptions`]'s in-memory options (`rustls::pki_types`). The whole `rustls`
/// crate is not re-exported (its `CryptoProvider` would then shadow this crate's in compiler messages); add it as a
/// dependency to match on [`KmsIoErrorKind::Tls`] errors or build a `ClientConfig` by hand.
pub use rustls::pki_types;

/// Whether the linked libmongocrypt can retry KMS requests: [`libmongocrypt::KMS_RETRIES_SUPPORTED`] (≥ 1.17).
pub use libmongocrypt::KMS_RETRIES_SUPPORTED as RETRIES_SUPPORTED;

/// Turns on KMS retries ([`CryptBuilder::retry_kms`]) where the linked libmongocrypt has them
/// ([`RETRIES_SUPPORTED`]) and returns the builder unchanged elsewhere, so that the same code builds against any
/// library.
pub fn enable_retries(builder: CryptBuilder) -> libmongocrypt::Result<CryptBuilder> {
    if RETRIES_SUPPORTED {
        builder.retry_kms(true)
    } else {
        Ok(builder)
    }
}

/// The fuzz targets' way into the parsers of a KMS reply's framing and a proxy's CONNECT reply
/// ([`crate::fuzzing`]): none may panic, whatever the bytes.
pub(crate) fn fuzz_framing(bytes: &[u8]) {
    let _ = connect::http_status(bytes);
    let _ = keep_alive::reply_keeps_alive(bytes);
    if let Some(cut) = keep_alive::request_cut(bytes) {
        assert!(cut.start <= cut.end && cut.end <= bytes.len(), "a cut inside the message");
    }
}

/// See [`fuzz_framing`].
pub(crate) fn fuzz_connect_reply(bytes: &[u8]) {
    let _ = connector::connect_reply(&mut &bytes[..], || Ok(()), "proxy", "kms:443");
}

/// A function from `host` and `port` to the addresses to try, in order.
pub type Resolver = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

#[cfg(test)]
mod tests {
    use super::connect::{http_status, split_endpoint};
    use super::options::{first_key_section, KeySection};
    use super::*;

    #[test]
    fn endpoints_split() {
        assert_eq!(split_endpoint("kms.us-east-1.amazonaws.com:443").unwrap(), ("kms.us-east-1.amazonaws.com", 443));
        assert_eq!(split_endpoint("[::1]:5696").unwrap(), ("::1", 5696));
        assert!(split_endpoint("example.com").is_err());
        assert!(split_endpoint(":443").is_err());
        assert!(split_endpoint("example.com:http").is_err());
    }

    #[test]
    fn http_status_parses() {
        assert_eq!(http_status(b"HTTP/1.1 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(http_status(b"HTTP/1.1 2"), None);
        assert_eq!(http_status(b"\x42\x00"), None);
    }

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";

    #[test]
    fn key_sections_are_told_apart() {
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\r\nMIIB\r\n vTBX \r\n-----END ENCRYPTED PRIVATE KEY-----\r\n";
        assert_eq!(
            first_key_section(&format!("{CERT}{encrypted}")),
            Some(KeySection::Encrypted { body: "MIIBvTBX".into(), complete: true })
        );
        assert_eq!(
            first_key_section("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n"),
            Some(KeySection::Encrypted { body: "MIIB".into(), complete: false })
        );
        let traditional = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                           DEK-Info: AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\n\
                           MIIB\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(
            first_key_section(traditional),
            Some(KeySection::TraditionalEncrypted { label: "RSA PRIVATE KEY", dek_info: Some("AES-256-CBC") })
        );
        // The first key section counts.
        let plain = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
        assert_eq!(first_key_section(&format!("{CERT}{plain}{encrypted}")), Some(KeySection::Plain));
        assert_eq!(first_key_section(CERT), None);
    }

    #[test]
    fn encrypted_keys_without_password_or_in_unsupported_forms_are_refused_clearly() {
        let encrypted =
            format!("{CERT}-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n");
        let err = TlsOptions::new().certificate_key_pem(encrypted.as_bytes(), None).unwrap_err();
        assert!(matches!(err, TlsConfigError::KeyPasswordRequired { .. }), "{err}");
        assert!(err.to_string().contains("tlsCertificateKeyFilePassword"), "{err}");
        // Not an EncryptedPrivateKeyInfo.
        let err = TlsOptions::new().certificate_key_pem(encrypted.as_bytes(), Some("pw")).unwrap_err();
        assert!(matches!(err, TlsConfigError::Pem { .. }), "{err}");
        assert!(err.to_string().contains("invalid ENCRYPTED PRIVATE KEY"), "{err}");

        let traditional = format!(
            "{CERT}-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
             DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nMAA=\n-----END EC PRIVATE KEY-----\n"
        );
        let err = TlsOptions::new().certificate_key_pem(traditional.as_bytes(), Some("pw")).unwrap_err();
        assert!(matches!(err, TlsConfigError::EncryptedKey { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("Proc-Type") && text.contains("AES-128-CBC") && text.contains("not supported"), "{text}");
    }

    #[test]
    fn insecure_document_options_are_refused() {
        for field in [
            "tlsInsecure",
            "tlsAllowInvalidCertificates",
            "tlsAllowInvalidHostnames",
            "tlsDisableCertificateRevocationCheck",
        ] {
            for value in [true, false] {
                let err = TlsOptions::from_document(&crate::bson::doc! { field: value }).unwrap_err();
                let text = err.to_string();
                assert!(text.contains("Insecure TLS options prohibited") && text.contains(field), "{text}");
            }
        }
        TlsOptions::from_document(&crate::bson::doc! { "tlsDisableOCSPEndpointCheck": true }).unwrap();
        TlsOptions::from_document(&crate::bson::doc! { "tlsDisableOCSPEndpointCheck": false }).unwrap();
        for field in ["tls", "ssl"] {
            let err = TlsOptions::from_document(&crate::bson::doc! { field: false }).unwrap_err();
            assert!(err.to_string().contains("TLS is required"), "{err}");
            TlsOptions::from_document(&crate::bson::doc! { field: true }).unwrap();
        }
        let err = TlsOptions::from_document(&crate::bson::doc! { "tlsFoo": 1 }).unwrap_err();
        assert!(err.to_string().contains("unknown KMS TLS option tlsFoo"), "{err}");
        let err = TlsOptions::from_document(&crate::bson::doc! { "tlsCAFile": 1 }).unwrap_err();
        assert!(err.to_string().contains("tlsCAFile must be a string"), "{err}");
    }
}
