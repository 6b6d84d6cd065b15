//! The OpenSSL TLS backend of both faces' exchange (feature `openssl`), for the providers chosen with
//! [`KmsTransportBuilder::openssl_for`](super::KmsTransportBuilder::openssl_for): KMIP servers (PyKMIP's defaults,
//! the KMIP profiles' mandatory suites) often offer only TLS 1.2 CBC suites with RSA key exchange, such as
//! `TLS_RSA_WITH_AES_128_CBC_SHA256`, which rustls does not implement.
//!
//! The same [`TlsOptions`] configure it (CA certificates, client certificate and key, decrypted as for rustls);
//! SNI and hostname verification name the KMS host. Only the handshake differs from the rustls exchange: writing
//! the request and feeding the reply are shared, and so is the one retry core. The blocking face runs the
//! handshake with the `openssl` crate's streams, the async face with tokio-openssl's, on the same [`session`]s.

use std::fmt;

use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslMethod, SslVersion};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

use super::{TlsConfigError, TlsOptions};

/// The TLS 1.2 cipher suites the OpenSSL backend offers (OpenSSL names), in order of preference: ECDHE with
/// AES-GCM or ChaCha20-Poly1305 first, then the RSA key exchange and CBC suites KMIP servers want. TLS 1.3 suites
/// are OpenSSL's defaults.
pub const OPENSSL_TLS12_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:AES256-SHA256:\
AES128-SHA:AES256-SHA";

/// What the OpenSSL backend offers, for handshake errors.
pub(super) fn offered() -> String {
    format!(
        "OpenSSL ({}) offered TLS 1.2 and TLS 1.3, TLS 1.2 cipher suites {}",
        openssl::version::version(),
        OPENSSL_TLS12_CIPHERS.replace(':', ", ")
    )
}

/// An OpenSSL TLS failure: OpenSSL's error, the certificate verification result when it failed, and what was
/// offered when the handshake itself was refused.
#[derive(Debug)]
pub struct OpenSslError {
    pub(super) message: String,
}

impl fmt::Display for OpenSslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OpenSslError {}

impl TlsOptions {
    /// The OpenSSL connector of these options: TLS 1.2 and 1.3, [`OPENSSL_TLS12_CIPHERS`], the CA certificates of
    /// the options (or OpenSSL's default verify paths, the system's roots, when there are none), the client
    /// certificate and key. OpenSSL parses the key from the options' DER in place: no other copy of it is made here.
    pub(super) fn openssl_connector(&self) -> Result<SslConnector, TlsConfigError> {
        fn err(context: &'static str) -> impl Fn(openssl::error::ErrorStack) -> TlsConfigError {
            move |e| TlsConfigError::OpenSsl(format!("{context}: {e}"))
        }
        let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(err("SSL_CTX_new"))?;
        builder.set_min_proto_version(Some(SslVersion::TLS1_2)).map_err(err("TLS versions"))?;
        builder.set_cipher_list(OPENSSL_TLS12_CIPHERS).map_err(err("cipher suites"))?;
        if let Some(certs) = self.ca_certs_der() {
            let mut store = X509StoreBuilder::new().map_err(err("X509_STORE_new"))?;
            for cert in certs {
                let cert = X509::from_der(cert).map_err(err("a CA certificate (tlsCAFile)"))?;
                store.add_cert(cert).map_err(err("a CA certificate (tlsCAFile)"))?;
            }
            builder.set_verify_cert_store(store.build()).map_err(err("the CA certificates"))?;
        }
        if let Some((chain, key)) = self.client_auth_der() {
            let mut chain = chain.iter();
            if let Some(leaf) = chain.next() {
                let leaf = X509::from_der(leaf).map_err(err("the client certificate (tlsCertificateKeyFile)"))?;
                builder.set_certificate(&leaf).map_err(err("the client certificate"))?;
            }
            for extra in chain {
                let extra = X509::from_der(extra).map_err(err("the client certificate chain"))?;
                builder.add_extra_chain_cert(extra).map_err(err("the client certificate chain"))?;
            }
            let key = PKey::private_key_from_der(key).map_err(err("the client key (tlsCertificateKeyFile)"))?;
            builder.set_private_key(&key).map_err(err("the client key"))?;
            builder.check_private_key().map_err(err("the client certificate and key do not match"))?;
        }
        Ok(builder.build())
    }
}

/// A new TLS session of `connector` to `host` (SNI and hostname verification name it), recording the certificate
/// that fails verification for [`handshake_error`]: the same on both faces.
pub(super) fn session(
    connector: &SslConnector,
    host: &str,
) -> Result<(openssl::ssl::Ssl, FailedCertificate), super::KmsIoErrorKind> {
    let setup = |e: openssl::error::ErrorStack| super::KmsIoErrorKind::OpenSsl(OpenSslError { message: e.to_string() });
    let mut config = connector.configure().map_err(setup)?;
    let failed_cert = record_failed_certificate(&mut config);
    Ok((config.into_ssl(host).map_err(setup)?, failed_cert))
}

/// The subject and validity of the first certificate that failed verification in a handshake, for its error.
pub(super) type FailedCertificate = std::sync::Arc<std::sync::Mutex<Option<String>>>;

/// Records, during the handshake of `config`, the first certificate that fails verification (OpenSSL's own
/// verification decides; the callback only looks). Hostname verification stays on.
fn record_failed_certificate(config: &mut openssl::ssl::ConnectConfiguration) -> FailedCertificate {
    use openssl::ssl::SslVerifyMode;
    let failed = FailedCertificate::default();
    let record = failed.clone();
    config.set_verify_callback(SslVerifyMode::PEER, move |ok, store| {
        if !ok {
            if let (Some(cert), Ok(mut slot)) = (store.current_cert(), record.lock()) {
                if slot.is_none() {
                    let subject = cert
                        .subject_name()
                        .entries()
                        .filter_map(|e| e.data().to_string().ok())
                        .collect::<Vec<_>>()
                        .join(", ");
                    *slot = Some(format!(
                        "certificate {subject:?}: valid from {} to {}",
                        cert.not_before(),
                        cert.not_after()
                    ));
                }
            }
        }
        ok
    });
    failed
}

/// The error of a failed OpenSSL handshake: OpenSSL's error; the certificate verification result and the
/// server certificate's validity when verification failed; otherwise what was offered and what the server may
/// want.
pub(super) fn handshake_error(
    error: &openssl::ssl::Error,
    ssl: &openssl::ssl::SslRef,
    failed_cert: &FailedCertificate,
) -> super::KmsIoErrorKind {
    use openssl::x509::X509VerifyResult;
    let verify = ssl.verify_result();
    let message = if verify != X509VerifyResult::OK {
        let failed = failed_cert.lock().map(|c| c.clone()).unwrap_or_default();
        let validity = failed.map(|c| format!(" ({c})")).unwrap_or_default();
        format!("the server certificate failed verification: {}{validity}", verify.error_string())
    } else {
        format!(
            "{error}: the server refused the handshake; it may want a client certificate (tlsCertificateKeyFile), or \
             other cipher suites or TLS versions; {}",
            offered()
        )
    };
    super::KmsIoErrorKind::OpenSsl(OpenSslError { message })
}
