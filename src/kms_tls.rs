//! KMS I/O over TLS: a ready-made transport for the NEED_KMS state (feature `kms-tls`).
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
//! - connect, read/write and whole-request timeouts bound every exchange;
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
//! [`CryptBuilder::retry_kms(true)`](crate::CryptBuilder::retry_kms) ([`enable_retries`] does that where the
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
//! Transport failures are a [`KmsIoError`] rather than a variant of [`crate::Error`]: they are not
//! libmongocrypt's errors, they carry the endpoint and an [`io::Error`] or [`rustls::Error`] (neither of which is
//! `Clone + Eq` like [`crate::Error`]), and [`crate::Error`] stays free of the optional dependencies. A
//! libmongocrypt error raised while feeding the reply is kept inside it ([`KmsIoErrorKind::Mongocrypt`] or, for an
//! HTTP error status, [`KmsIoErrorKind::Http`]). [`KmsTransport::kms_request`] converts for the state-machine
//! runner, which needs libmongocrypt's errors as [`crate::Error`] (see there).
//!
//! # The whole loop, by hand
//!
//! ```no_run
//! use mongocrypt::kms_tls::{enable_retries, KmsTransport};
//! use mongocrypt::{Crypt, KeyEncryptionKey, KmsProviders, State};
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
//! [`crate::state_machine::run`] calls [`StateMachineIo::kms_request`](crate::state_machine::StateMachineIo::kms_request)
//! once per attempt, and waits and calls [`KmsCtx::fail`] itself. Delegate it to [`KmsTransport::kms_request`]:
//!
//! ```
//! use bson::{RawDocument, RawDocumentBuf};
//! use mongocrypt::kms_tls::KmsTransport;
//! use mongocrypt::state_machine::{IoResult, StateMachineIo};
//! use mongocrypt::KmsCtx;
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
//! [`run_concurrent`](crate::state_machine::run_concurrent) then serves the requests of a round in parallel.
//!
//! # Bringing your own transport
//!
//! Nothing in the crate depends on this module: any type implementing
//! [`StateMachineIo::kms_request`](crate::state_machine::StateMachineIo::kms_request) (or any code that drives a
//! [`KmsScope`] by hand) can do the I/O instead: an async runtime's TLS, a proxy, a native-tls stack. The contract
//! is the one above: connect to [`KmsCtx::endpoint`] over TLS, write [`KmsCtx::message`], then
//! `while bytes_needed() > 0` read at most that many bytes and feed them (with
//! [`feed_with_retry`](KmsCtx::feed_with_retry) on libmongocrypt ≥ 1.12), and report network errors with
//! [`KmsCtx::fail`].

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::Document;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, ClientConnection, InconsistentKeys, RootCertStore, StreamOwned};
use zeroize::Zeroizing;

use crate::crypt::CryptBuilder;
use crate::error::Error;
use crate::kms::{KmsCtx, KmsScope};

/// The certificate and key types of [`TlsOptions`]'s in-memory options (`rustls::pki_types`). The whole `rustls`
/// crate is not re-exported (its `CryptoProvider` would then shadow this crate's in compiler messages); add it as a
/// dependency to match on [`KmsIoErrorKind::Tls`] errors or build a `ClientConfig` by hand.
pub use rustls::pki_types;

/// Whether the linked libmongocrypt can retry KMS requests: it has `mongocrypt_kms_ctx_fail`,
/// `mongocrypt_kms_ctx_usleep` and `mongocrypt_setopt_retry_kms` (≥ 1.12) and `mongocrypt_kms_ctx_feed_with_retry`
/// (≥ 1.17).
pub const RETRIES_SUPPORTED: bool = cfg!(all(
    mongocrypt_has_kms_ctx_fail,
    mongocrypt_has_kms_ctx_usleep,
    mongocrypt_has_kms_ctx_feed_with_retry,
    mongocrypt_has_setopt_retry_kms
));

/// Turns on KMS retries ([`CryptBuilder::retry_kms`]) where the linked libmongocrypt has them
/// ([`RETRIES_SUPPORTED`]) and returns the builder unchanged elsewhere, so that the same code builds against any
/// library.
pub fn enable_retries(builder: CryptBuilder) -> crate::Result<CryptBuilder> {
    if RETRIES_SUPPORTED {
        builder.retry_kms(true)
    } else {
        Ok(builder)
    }
}

/// A function from `host` and `port` to the addresses to try, in order.
pub type Resolver = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

// ---------------------------------------------------------------------------------------------------------------
// TLS options

/// The TLS options of one KMS provider, as the `tlsOptions` of MongoDB's client-side encryption spec: trusted CA
/// certificates (`tlsCAFile`) and a client certificate with its key (`tlsCertificateKeyFile`,
/// `tlsCertificateKeyFilePassword`), from files or from memory.
///
/// Without CA certificates, Mozilla's root store is trusted; with them, only they are.
///
/// # Private keys and passwords
///
/// The private key of a certificate-key PEM ([`certificate_key_file`](TlsOptions::certificate_key_file),
/// [`certificate_key_pem`](TlsOptions::certificate_key_pem)) is its first private-key section:
///
/// - `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1), `EC PRIVATE KEY` (SEC1): used as is. A password given
///   with such a key is ignored.
/// - `ENCRYPTED PRIVATE KEY` (PKCS#8 `EncryptedPrivateKeyInfo`): decrypted with the password
///   (`tlsCertificateKeyFilePassword`). Supported: PBES2 with PBKDF2 (HMAC-SHA-1, -224, -256, -384 or -512) or
///   scrypt, and AES-128, -192 or -256 in CBC mode, which covers what `openssl pkcs8 -topk8 -v2 aes-256-cbc`
///   (or `-v2 aes-128-cbc`, `-scrypt`) writes. Without a password that is
///   [`TlsConfigError::KeyPasswordRequired`]; a password that does not decrypt the key is
///   [`TlsConfigError::WrongKeyPassword`]; another scheme (PBES1, 3DES, ...) is [`TlsConfigError::EncryptedKey`].
/// - OpenSSL's traditional encryption (`Proc-Type: 4,ENCRYPTED` and `DEK-Info` headers in an `RSA PRIVATE KEY` or
///   `EC PRIVATE KEY` section) is not supported: [`TlsConfigError::EncryptedKey`]. It derives the key with
///   OpenSSL's own `EVP_BytesToKey` (a single MD5 round, no standard); convert the key to PKCS#8 with
///   `openssl pkcs8 -topk8 -v2 aes-256-cbc -in old.pem -out new.pem`.
///
/// The decrypted key is kept in memory that is wiped when the options are dropped; rustls keeps its own copy, in
/// the form of its signing key, in the configurations built from them.
#[derive(Default, Clone)]
pub struct TlsOptions {
    ca_certs: Option<Vec<CertificateDer<'static>>>,
    client_auth: Option<(Vec<CertificateDer<'static>>, ClientKey)>,
}

/// The private key of a client certificate.
enum ClientKey {
    /// Given in DER, or read from an unencrypted PEM section.
    Der(PrivateKeyDer<'static>),
    /// PKCS#8 DER decrypted from an `ENCRYPTED PRIVATE KEY` section; wiped when dropped.
    DecryptedPkcs8(Zeroizing<Vec<u8>>),
}

impl Clone for ClientKey {
    fn clone(&self) -> ClientKey {
        match self {
            ClientKey::Der(key) => ClientKey::Der(key.clone_key()),
            ClientKey::DecryptedPkcs8(der) => ClientKey::DecryptedPkcs8(der.clone()),
        }
    }
}

impl ClientKey {
    /// rustls's signing key (ring provider) for this key, parsed from a borrowed DER: no copy of the key is left
    /// behind outside this value.
    fn signing_key(&self) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        match self {
            ClientKey::Der(key) => rustls::crypto::ring::sign::any_supported_type(key),
            ClientKey::DecryptedPkcs8(der) => rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(
                PrivatePkcs8KeyDer::from(der.as_slice()),
            )),
        }
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_certs", &self.ca_certs.as_ref().map(Vec::len))
            .field("client_cert_chain", &self.client_auth.as_ref().map(|(chain, _)| chain.len()))
            .finish_non_exhaustive()
    }
}

impl TlsOptions {
    /// No options: Mozilla's roots, no client certificate.
    pub fn new() -> TlsOptions {
        TlsOptions::default()
    }

    /// Trusts the CA certificates of a PEM file (`tlsCAFile`), instead of Mozilla's roots. May be called several
    /// times; the certificates add up.
    pub fn ca_file(self, path: impl AsRef<Path>) -> Result<TlsOptions, TlsConfigError> {
        let path = path.as_ref();
        let pem = read_file(path)?;
        self.ca_pem_from(&pem, &path.display().to_string())
    }

    /// Trusts the CA certificates of PEM text, instead of Mozilla's roots.
    pub fn ca_pem(self, pem: &[u8]) -> Result<TlsOptions, TlsConfigError> {
        self.ca_pem_from(pem, "CA PEM")
    }

    fn ca_pem_from(self, pem: &[u8], source: &str) -> Result<TlsOptions, TlsConfigError> {
        let certs = parse_certs(pem, source)?;
        Ok(self.ca_certs(certs))
    }

    /// Trusts these CA certificates (DER), instead of Mozilla's roots.
    pub fn ca_certs(mut self, certs: impl IntoIterator<Item = CertificateDer<'static>>) -> TlsOptions {
        self.ca_certs.get_or_insert_with(Vec::new).extend(certs);
        self
    }

    /// Presents the client certificate of a PEM file holding the certificate chain and its private key
    /// (`tlsCertificateKeyFile`). `password` (`tlsCertificateKeyFilePassword`) decrypts an `ENCRYPTED PRIVATE KEY`
    /// and is ignored for an unencrypted key (see [Private keys and passwords](TlsOptions#private-keys-and-passwords)).
    pub fn certificate_key_file(
        self,
        path: impl AsRef<Path>,
        password: Option<&str>,
    ) -> Result<TlsOptions, TlsConfigError> {
        let path = path.as_ref();
        // The file may hold an unencrypted key: wiped once parsed.
        let pem = Zeroizing::new(read_file(path)?);
        self.certificate_key_pem_from(&pem, password, &path.display().to_string())
    }

    /// Presents the client certificate of PEM text holding the certificate chain and its private key, decrypted
    /// with `password` if it is an `ENCRYPTED PRIVATE KEY` (as [`certificate_key_file`](Self::certificate_key_file)).
    pub fn certificate_key_pem(self, pem: &[u8], password: Option<&str>) -> Result<TlsOptions, TlsConfigError> {
        self.certificate_key_pem_from(pem, password, "certificate-key PEM")
    }

    fn certificate_key_pem_from(
        mut self,
        pem: &[u8],
        password: Option<&str>,
        source: &str,
    ) -> Result<TlsOptions, TlsConfigError> {
        // The key first: rustls's PEM parser, which reads the certificates, fails on the headers of a
        // traditionally encrypted key before its error could be explained.
        let key = parse_key(pem, password, source)?;
        let chain = parse_certs(pem, source)?;
        self.client_auth = Some((chain, key));
        Ok(self)
    }

    /// Presents this client certificate chain (leaf first) and private key (DER).
    pub fn client_auth(mut self, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> TlsOptions {
        self.client_auth = Some((chain, ClientKey::Der(key)));
        self
    }

    /// The options of one provider's entry in a spec `tlsOptions` document: `tlsCAFile`, `tlsCertificateKeyFile`,
    /// `tlsCertificateKeyFilePassword` (the password of an `ENCRYPTED PRIVATE KEY` in `tlsCertificateKeyFile`;
    /// ignored for an unencrypted key). As the spec requires, options that weaken security (`tlsInsecure`,
    /// `tlsAllowInvalidCertificates`, `tlsAllowInvalidHostnames`, `tlsDisableOCSPEndpointCheck`,
    /// `tlsDisableCertificateRevocationCheck`) are errors, and so is any other field.
    pub fn from_document(doc: &Document) -> Result<TlsOptions, TlsConfigError> {
        let string = |field: &str| -> Result<Option<&str>, TlsConfigError> {
            match doc.get(field) {
                None => Ok(None),
                Some(bson::Bson::String(s)) => Ok(Some(s)),
                Some(other) => {
                    Err(TlsConfigError::Document(format!("{field} must be a string, not {:?}", other.element_type())))
                }
            }
        };
        for field in doc.keys() {
            match field.as_str() {
                "tlsCAFile" | "tlsCertificateKeyFile" | "tlsCertificateKeyFilePassword" => {}
                "tlsInsecure"
                | "tlsAllowInvalidCertificates"
                | "tlsAllowInvalidHostnames"
                | "tlsDisableOCSPEndpointCheck"
                | "tlsDisableCertificateRevocationCheck" => {
                    return Err(TlsConfigError::Document(format!("{field} is not allowed in KMS TLS options")))
                }
                other => return Err(TlsConfigError::Document(format!("unknown KMS TLS option {other}"))),
            }
        }
        let mut options = TlsOptions::new();
        if let Some(ca) = string("tlsCAFile")? {
            options = options.ca_file(ca)?;
        }
        let password = string("tlsCertificateKeyFilePassword")?;
        if let Some(file) = string("tlsCertificateKeyFile")? {
            options = options.certificate_key_file(file, password)?;
        } else if password.is_some() {
            return Err(TlsConfigError::Document("tlsCertificateKeyFilePassword without tlsCertificateKeyFile".into()));
        }
        Ok(options)
    }

    /// The rustls client configuration of these options (ring provider, TLS 1.2 and 1.3).
    pub fn client_config(&self) -> Result<ClientConfig, TlsConfigError> {
        let mut roots = RootCertStore::empty();
        match &self.ca_certs {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(certs) => {
                for cert in certs {
                    roots.add(cert.clone()).map_err(TlsConfigError::Rustls)?;
                }
            }
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsConfigError::Rustls)?
            .with_root_certificates(roots);
        match &self.client_auth {
            None => Ok(builder.with_no_client_auth()),
            Some((chain, key)) => {
                // As `with_client_auth_cert`, but from a borrowed key, so that no unwiped copy of a decrypted key
                // is made.
                let certified = CertifiedKey::new(chain.clone(), key.signing_key().map_err(TlsConfigError::Rustls)?);
                match certified.keys_match() {
                    Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
                    Err(e) => return Err(TlsConfigError::Rustls(e)),
                }
                Ok(builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified))))
            }
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::File { path: path.display().to_string(), source })
}

fn parse_certs(pem: &[u8], source: &str) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Pem { origin: source.to_owned(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsConfigError::Pem { origin: source.to_owned(), message: "no CERTIFICATE found".into() });
    }
    Ok(certs)
}

/// The private key of certificate-key PEM: its first private-key section, decrypted if it is an
/// `ENCRYPTED PRIVATE KEY`.
fn parse_key(pem: &[u8], password: Option<&str>, source: &str) -> Result<ClientKey, TlsConfigError> {
    let origin = || source.to_owned();
    // Borrowed for UTF-8 (as PEM is): no copy of an unencrypted key.
    let text = String::from_utf8_lossy(pem);
    match first_key_section(&text) {
        Some(KeySection::Encrypted { body, complete }) => {
            if !complete {
                return Err(TlsConfigError::Pem {
                    origin: origin(),
                    message: "the ENCRYPTED PRIVATE KEY section has no END line".into(),
                });
            }
            let password = password.ok_or_else(|| TlsConfigError::KeyPasswordRequired { origin: origin() })?;
            decrypt_pkcs8(&body, password, source).map(ClientKey::DecryptedPkcs8)
        }
        Some(KeySection::TraditionalEncrypted { label, dek_info }) => Err(TlsConfigError::EncryptedKey {
            origin: origin(),
            reason: format!(
                "the {label} has OpenSSL's traditional encryption (Proc-Type: 4,ENCRYPTED{}), which derives its \
                 key with OpenSSL's own EVP_BytesToKey (one MD5 round) and is not supported; convert it to an \
                 ENCRYPTED PRIVATE KEY (PKCS#8) with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in key.pem -out \
                 key-pkcs8.pem`",
                dek_info.map(|cipher| format!(", DEK-Info: {cipher}")).unwrap_or_default()
            ),
        }),
        Some(KeySection::Plain) | None => {
            if password.is_some() {
                log::debug!(target: "mongocrypt::kms_tls", "{source}: unencrypted private key; password ignored");
            }
            PrivateKeyDer::from_pem_slice(pem).map(ClientKey::Der).map_err(|e| TlsConfigError::Pem {
                origin: origin(),
                message: match e {
                    rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY found".into(),
                    other => other.to_string(),
                },
            })
        }
    }
}

/// The first private-key section (a label ending in `PRIVATE KEY`) of PEM text.
#[derive(Debug, PartialEq)]
enum KeySection<'a> {
    /// Unencrypted: rustls's PEM parser reads it.
    Plain,
    /// `ENCRYPTED PRIVATE KEY`: its base64 body, without whitespace; whether the END line was found.
    Encrypted { body: String, complete: bool },
    /// OpenSSL's traditional encryption: a `Proc-Type: 4,ENCRYPTED` header; the label and the cipher of
    /// `DEK-Info` (before its IV).
    TraditionalEncrypted { label: &'a str, dek_info: Option<&'a str> },
}

fn first_key_section(text: &str) -> Option<KeySection<'_>> {
    let mut lines = text.lines().map(str::trim);
    let label = lines.find_map(|line| {
        let label = line.strip_prefix("-----BEGIN ")?.strip_suffix("-----")?;
        label.ends_with("PRIVATE KEY").then_some(label)
    })?;
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    let (mut encrypted_header, mut dek_info, mut complete) = (false, None, false);
    for line in lines {
        if line == end {
            complete = true;
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            // RFC 1421 headers, as OpenSSL writes them before the base64 of a traditionally encrypted key.
            match name.trim() {
                "Proc-Type" => encrypted_header |= value.contains("ENCRYPTED"),
                "DEK-Info" => dek_info = value.split(',').next().map(str::trim),
                _ => {}
            }
        } else if label == "ENCRYPTED PRIVATE KEY" {
            body.extend(line.chars().filter(|c| !c.is_whitespace()));
        }
    }
    Some(if label == "ENCRYPTED PRIVATE KEY" {
        KeySection::Encrypted { body, complete }
    } else if encrypted_header {
        KeySection::TraditionalEncrypted { label, dek_info }
    } else {
        KeySection::Plain
    })
}

/// Decrypts the base64 body of an `ENCRYPTED PRIVATE KEY` section to PKCS#8 DER.
fn decrypt_pkcs8(body: &str, password: &str, source: &str) -> Result<Zeroizing<Vec<u8>>, TlsConfigError> {
    use pkcs8::der::pem;
    use pkcs8::pkcs5;

    let origin = || source.to_owned();
    // pem-rfc7468 wants 64-character lines; the body may have been wrapped otherwise.
    let mut wrapped = String::from("-----BEGIN ENCRYPTED PRIVATE KEY-----\n");
    for chunk in body.as_bytes().chunks(64) {
        wrapped.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        wrapped.push('\n');
    }
    wrapped.push_str("-----END ENCRYPTED PRIVATE KEY-----\n");
    let (_, der) = pem::decode_vec(wrapped.as_bytes())
        .map_err(|e| TlsConfigError::Pem { origin: origin(), message: format!("ENCRYPTED PRIVATE KEY: {e}") })?;
    const SUPPORTED: &str = "supported: PBES2 with PBKDF2 (HMAC-SHA-1/224/256/384/512) or scrypt, and \
                             AES-128/192/256-CBC";
    let unsupported =
        |what: String| TlsConfigError::EncryptedKey { origin: origin(), reason: format!("{what}; {SUPPORTED}") };
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice()).map_err(|e| {
        // pkcs5 parses only the schemes it knows: name the scheme of a well-formed EncryptedPrivateKeyInfo.
        match encryption_algorithm(&der) {
            Some(oid) => unsupported(match oid.to_string() {
                pbes2 if oid == pkcs5::pbes2::PBES2_OID => {
                    format!("the key is encrypted with PBES2 ({pbes2}) and an unsupported KDF or cipher ({e})")
                }
                pkcs12 if pkcs12.starts_with("1.2.840.113549.1.12.1.") => format!(
                    "the key is encrypted with a PKCS#12 password-based scheme ({pkcs12}, e.g. `openssl pkcs8 -v1 \
                     PBE-SHA1-3DES`)"
                ),
                pbes1 if pbes1.starts_with("1.2.840.113549.1.5.") => {
                    format!("the key is encrypted with PBES1 ({pbes1}, PKCS#5 v1.5: DES or RC2 with MD5 or SHA-1)")
                }
                other => format!("the key is encrypted with an unknown algorithm ({other})"),
            }),
            None => TlsConfigError::Pem { origin: origin(), message: format!("invalid ENCRYPTED PRIVATE KEY: {e}") },
        }
    })?;
    let wrong_password = || TlsConfigError::WrongKeyPassword { origin: origin() };
    let decrypted = info.decrypt(password).map_err(|e| match e {
        // A bad padding (which pkcs5 0.7 reports as EncryptFailed), or a plaintext that is not DER: what a wrong
        // password gives.
        pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::DecryptFailed | pkcs5::Error::EncryptFailed)
        | pkcs8::Error::Asn1(_) => wrong_password(),
        pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::NoPbes1CryptSupport) => {
            unsupported("the key is encrypted with PBES1 (PKCS#5 v1.5: DES or RC2 with MD5 or SHA-1)".into())
        }
        pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::UnsupportedAlgorithm { oid }) => {
            unsupported(format!("the key is encrypted with an unsupported algorithm (OID {oid})"))
        }
        other => unsupported(format!("the key's encryption cannot be used: {other}")),
    })?;
    // A wrong password passes the padding check about once in 256 tries: check that a key came out.
    pkcs8::PrivateKeyInfo::try_from(decrypted.as_bytes()).map_err(|_| wrong_password())?;
    Ok(Zeroizing::new(decrypted.as_bytes().to_vec()))
}

/// The algorithm OID of a DER `EncryptedPrivateKeyInfo`, whatever its parameters.
fn encryption_algorithm(der: &[u8]) -> Option<pkcs8::ObjectIdentifier> {
    use pkcs8::der::asn1::OctetStringRef;
    use pkcs8::der::{Decode, Reader, SliceReader};

    let mut reader = SliceReader::new(der).ok()?;
    let oid = reader
        .sequence(|r| {
            let algorithm = pkcs8::AlgorithmIdentifierRef::decode(r)?;
            OctetStringRef::decode(r)?;
            Ok(algorithm.oid)
        })
        .ok()?;
    reader.finish(oid).ok()
}

/// A TLS option that cannot be used: a file that cannot be read, PEM without the expected sections, an encrypted
/// key without its password or in an unsupported form, a configuration rustls refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// PEM text did not hold what was expected.
    #[error("{origin}: {message}")]
    Pem {
        /// The file, or what the PEM text was.
        origin: String,
        /// What was wrong.
        message: String,
    },
    /// The private key is encrypted in a form this transport cannot decrypt: OpenSSL's traditional
    /// `Proc-Type: 4,ENCRYPTED`, PBES1, a cipher other than AES-CBC (see
    /// [Private keys and passwords](TlsOptions#private-keys-and-passwords)).
    #[error("{origin}: unsupported encrypted private key: {reason}")]
    EncryptedKey {
        /// The file, or what the PEM text was.
        origin: String,
        /// Which encryption, and what to do.
        reason: String,
    },
    /// The private key is an `ENCRYPTED PRIVATE KEY` and no password was given.
    #[error(
        "{origin}: the private key is encrypted (ENCRYPTED PRIVATE KEY) and no password was given \
         (tlsCertificateKeyFilePassword)"
    )]
    KeyPasswordRequired {
        /// The file, or what the PEM text was.
        origin: String,
    },
    /// The password does not decrypt the `ENCRYPTED PRIVATE KEY`: it is wrong, or the key is damaged (the two
    /// cannot be told apart).
    #[error(
        "{origin}: cannot decrypt the private key: wrong password (tlsCertificateKeyFilePassword), or a damaged key"
    )]
    WrongKeyPassword {
        /// The file, or what the PEM text was.
        origin: String,
    },
    /// A `tlsOptions` document is invalid.
    #[error("invalid KMS TLS options: {0}")]
    Document(String),
    /// rustls rejected the configuration (a bad CA certificate, a key that does not fit the certificate, ...).
    #[error("TLS configuration: {0}")]
    Rustls(#[source] rustls::Error),
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

/// Why one KMS request failed: the endpoint, the provider, how many attempts were made, and the last error.
/// (Boxed inside, so that a `Result` carrying it stays small.)
#[derive(Debug)]
pub struct KmsIoError(Box<KmsIoErrorInner>);

#[derive(Debug)]
struct KmsIoErrorInner {
    endpoint: String,
    provider: String,
    attempts: u32,
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
    /// TLS failed: an untrusted or mismatched server certificate, a client certificate the server refused, an
    /// alert, a protocol error.
    #[error("TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// A timeout elapsed.
    #[error("timed out after {after:?} while {during}")]
    Timeout {
        /// What was under way: `connecting`, `the TLS handshake`, `writing the request`, `reading the reply`.
        during: &'static str,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// Any other I/O error, including a connection closed before the reply was complete.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// The KMS answered with an HTTP error status; `error` is libmongocrypt's report of it.
    #[error("HTTP status {status}: {error}")]
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
    fn new(endpoint: &str, provider: &str, kind: KmsIoErrorKind) -> KmsIoError {
        KmsIoError(Box::new(KmsIoErrorInner {
            endpoint: endpoint.to_owned(),
            provider: provider.to_owned(),
            attempts: 1,
            kind,
        }))
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

    fn with_attempts(mut self, attempts: u32) -> KmsIoError {
        self.0.attempts = attempts;
        self
    }

    /// Whether this is a network error (resolve, connect, TLS, timeout, I/O), which libmongocrypt may retry after
    /// [`KmsCtx::fail`].
    pub fn is_network(&self) -> bool {
        matches!(
            self.0.kind,
            KmsIoErrorKind::Resolve(_)
                | KmsIoErrorKind::Connect { .. }
                | KmsIoErrorKind::Tls(_)
                | KmsIoErrorKind::Timeout { .. }
                | KmsIoErrorKind::Io(_)
        )
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
        let endpoint = inner.endpoint.clone();
        let error = match inner.kind {
            KmsIoErrorKind::Http { error, .. } | KmsIoErrorKind::Mongocrypt(error) => error,
            kind => return Err(KmsIoError(Box::new(KmsIoErrorInner { kind, ..inner }))),
        };
        let with_endpoint = |message: String| format!("{message} (KMS endpoint {endpoint})");
        Ok(match error {
            Error::Client { code, message } => Error::Client { code, message: with_endpoint(message) },
            Error::Kms { code, message } => Error::Kms { code, message: with_endpoint(message) },
            other => other,
        })
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

// ---------------------------------------------------------------------------------------------------------------
// The transport

/// Serves KMS requests over TLS. Cheap to clone (the configuration is shared), `Send + Sync`.
///
/// ```no_run
/// use std::time::Duration;
/// use mongocrypt::kms_tls::{KmsTransport, TlsOptions};
///
/// let transport = KmsTransport::builder()
///     .tls_options("kmip", TlsOptions::new().ca_file("ca.pem")?.certificate_key_file("client.pem", None)?)
///     .timeout(Duration::from_secs(10))
///     .build()?;
/// # Ok::<(), mongocrypt::kms_tls::TlsConfigError>(())
/// ```
#[derive(Clone)]
pub struct KmsTransport {
    default_config: Arc<ClientConfig>,
    provider_configs: Arc<HashMap<String, Arc<ClientConfig>>>,
    connect_timeout: Duration,
    io_timeout: Duration,
    request_timeout: Option<Duration>,
    resolver: Option<Arc<Resolver>>,
    max_attempts: u32,
}

impl fmt::Debug for KmsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut providers: Vec<_> = self.provider_configs.keys().collect();
        providers.sort();
        f.debug_struct("KmsTransport")
            .field("tls_options_for", &providers)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("custom_resolver", &self.resolver.is_some())
            .field("max_attempts", &self.max_attempts)
            .finish()
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
            .finish()
    }
}

/// Default [`KmsTransportBuilder::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`KmsTransportBuilder::io_timeout`].
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`KmsTransportBuilder::max_attempts`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

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
        }
    }
}

impl KmsTransportBuilder {
    /// The TLS options of requests to provider `provider`. Requests are matched by [`KmsCtx::kms_provider`]:
    /// first the full name (`aws:name` for a named provider on libraries that report it), then the type (`aws`).
    pub fn tls_options(mut self, provider: &str, options: TlsOptions) -> KmsTransportBuilder {
        self.provider_options.insert(provider.to_owned(), options);
        self
    }

    /// The TLS options of every provider of a spec `tlsOptions` document: `{"kmip": {"tlsCAFile": ...,
    /// "tlsCertificateKeyFile": ...}, "aws": {...}}` (see [`TlsOptions::from_document`]).
    pub fn tls_options_document(mut self, doc: &Document) -> Result<KmsTransportBuilder, TlsConfigError> {
        for (provider, value) in doc {
            let bson::Bson::Document(options) = value else {
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

    /// How long to wait for a TCP connection, per address tried (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> KmsTransportBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// How long one read or write may block: the TLS handshake, writing the request, each read of the reply
    /// (default 30 s).
    pub fn io_timeout(mut self, timeout: Duration) -> KmsTransportBuilder {
        self.io_timeout = timeout;
        self
    }

    /// An upper bound on one whole attempt, from connecting to the last byte of the reply (default: none, each
    /// step bounded by its own timeout only). It guards against a server that trickles its reply.
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> KmsTransportBuilder {
        self.request_timeout = timeout;
        self
    }

    /// Sets the connect, I/O and request timeouts at once.
    pub fn timeout(self, timeout: Duration) -> KmsTransportBuilder {
        self.connect_timeout(timeout).io_timeout(timeout).request_timeout(Some(timeout))
    }

    /// Resolves `host`, `port` to the addresses to connect to, instead of the system resolver. The TLS server
    /// name stays `host`.
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

    /// Builds the rustls configurations.
    pub fn build(self) -> Result<KmsTransport, TlsConfigError> {
        let provider_configs = self
            .provider_options
            .iter()
            .map(|(name, options)| Ok((name.clone(), Arc::new(options.client_config()?))))
            .collect::<Result<HashMap<_, _>, TlsConfigError>>()?;
        Ok(KmsTransport {
            default_config: Arc::new(self.default_options.client_config()?),
            provider_configs: Arc::new(provider_configs),
            connect_timeout: self.connect_timeout,
            io_timeout: self.io_timeout,
            request_timeout: self.request_timeout,
            resolver: self.resolver,
            max_attempts: self.max_attempts,
        })
    }
}

/// How one exchange ended, when it did not fail.
enum Exchanged {
    /// The reply was fed in full.
    Complete,
    /// libmongocrypt asked for the request to be retried (a retryable HTTP status, if the reply had one).
    RetryRequested(Option<u16>),
}

/// How one attempt in [`KmsTransport::serve`] ended, when it did not fail for good.
enum Attempted {
    Done,
    /// The request will be handed out again; this was the attempt's error.
    Retrying(KmsIoError),
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

    /// Serves every request of one NEED_KMS state, without ending it: each round's requests concurrently (one
    /// scoped thread per request when there are several), waiting [`KmsCtx::sleep_duration`] before each attempt
    /// and retrying as libmongocrypt allows, until libmongocrypt hands out no more. Returns the first error in
    /// request order.
    ///
    /// Then call [`KmsScope::done`], or use [`serve_and_done`](Self::serve_and_done).
    pub fn serve(&self, scope: &mut KmsScope<'_>) -> Result<(), KmsIoError> {
        // Attempts per request, by kms ctx address: a retried request is handed out again as the same kms ctx.
        let mut attempts: HashMap<usize, u32> = HashMap::new();
        // The error of each request's last attempt, when it is being retried.
        let mut last_errors: HashMap<usize, KmsIoError> = HashMap::new();
        loop {
            let mut batch = scope.kms_ctxs();
            if batch.is_empty() {
                return Ok(());
            }
            let numbers: Vec<u32> = batch
                .iter()
                .map(|kms| {
                    let n = attempts.entry(kms.as_raw() as usize).or_insert(0);
                    *n += 1;
                    *n
                })
                .collect();
            for (kms, &attempt) in batch.iter().zip(&numbers) {
                if attempt > self.max_attempts {
                    // The transport's own cap (KmsTransportBuilder::max_attempts): the last attempt's error.
                    let error = last_errors.remove(&(kms.as_raw() as usize)).unwrap_or_else(|| {
                        let endpoint = kms.endpoint().unwrap_or("<unknown endpoint>");
                        let kind = KmsIoErrorKind::Io(io::Error::other("retries exhausted"));
                        KmsIoError::new(endpoint, kms.kms_provider().as_str(), kind)
                    });
                    return Err(error.with_attempts(self.max_attempts));
                }
            }
            let keys: Vec<usize> = batch.iter().map(|kms| kms.as_raw() as usize).collect();
            let results: Vec<Result<Attempted, KmsIoError>> = if batch.len() == 1 {
                vec![self.attempt(&mut batch[0], numbers[0])]
            } else {
                std::thread::scope(|s| {
                    let handles: Vec<_> = batch
                        .iter_mut()
                        .zip(&numbers)
                        .map(|(kms, &attempt)| s.spawn(move || self.attempt(kms, attempt)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                        .collect()
                })
            };
            for (key, result) in keys.into_iter().zip(results) {
                match result? {
                    Attempted::Done => {
                        last_errors.remove(&key);
                    }
                    Attempted::Retrying(error) => {
                        last_errors.insert(key, error);
                    }
                }
            }
        }
    }

    /// [`serve`](Self::serve), then [`KmsScope::done`]; an error of `done` is returned as
    /// [`KmsIoErrorKind::Mongocrypt`] with endpoint `"kms_done"`.
    pub fn serve_and_done(&self, mut scope: KmsScope<'_>) -> Result<(), KmsIoError> {
        self.serve(&mut scope)?;
        scope.done().map_err(|e| KmsIoError::new("kms_done", "", KmsIoErrorKind::Mongocrypt(e)))
    }

    /// One attempt of a request in [`serve`](Self::serve): back-off, exchange, and `fail` on a network error.
    fn attempt(&self, kms: &mut KmsCtx<'_>, attempt: u32) -> Result<Attempted, KmsIoError> {
        // Zero, or unsupported (libmongocrypt < 1.12, where there is no back-off).
        let delay = kms.sleep_duration().unwrap_or_default();
        if !delay.is_zero() {
            log::debug!(target: "mongocrypt::kms_tls", "waiting {delay:?} before attempt {attempt}");
            std::thread::sleep(delay);
        }
        match self.exchange_inner(kms) {
            Ok(Exchanged::Complete) => Ok(Attempted::Done),
            Ok(Exchanged::RetryRequested(status)) => {
                let message = match status {
                    Some(status) => format!("HTTP status {status}, which libmongocrypt retries"),
                    None => "libmongocrypt asked for a retry".to_owned(),
                };
                let kind = KmsIoErrorKind::Http { status: status.unwrap_or(0), error: Error::Kms { code: 0, message } };
                let endpoint = kms.endpoint().unwrap_or("<unknown endpoint>");
                Ok(Attempted::Retrying(
                    KmsIoError::new(endpoint, kms.kms_provider().as_str(), kind).with_attempts(attempt),
                ))
            }
            Err(error) => {
                let error = error.with_attempts(attempt);
                if !error.is_network() {
                    return Err(error);
                }
                match kms.fail() {
                    Ok(true) => {
                        log::debug!(target: "mongocrypt::kms_tls", "{error}; libmongocrypt will retry");
                        Ok(Attempted::Retrying(error))
                    }
                    // No retry allowed (disabled, attempts used up), or unsupported (libmongocrypt < 1.12).
                    Ok(false) | Err(_) => Err(error),
                }
            }
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

    /// [`exchange`](Self::exchange) for [`StateMachineIo::kms_request`](crate::state_machine::StateMachineIo::kms_request):
    /// errors that libmongocrypt raised (an HTTP error status, a bad reply) are returned as [`crate::Error`], with
    /// the endpoint added to the message, so that the runner reports them as
    /// [`RunError::Mongocrypt`](crate::state_machine::RunError::Mongocrypt) and does not call [`KmsCtx::fail`] on
    /// them; network errors stay a [`KmsIoError`], for which it does.
    pub fn kms_request(&self, kms: &mut KmsCtx<'_>) -> crate::state_machine::IoResult<()> {
        match self.exchange(kms) {
            Ok(()) => Ok(()),
            Err(error) => match error.into_mongocrypt_error() {
                Ok(mongocrypt) => Err(Box::new(mongocrypt)),
                Err(io) => Err(Box::new(io)),
            },
        }
    }

    fn config_for(&self, provider: &str) -> Arc<ClientConfig> {
        let kind = provider.split(':').next().unwrap_or(provider);
        self.provider_configs
            .get(provider)
            .or_else(|| self.provider_configs.get(kind))
            .unwrap_or(&self.default_config)
            .clone()
    }

    fn exchange_inner(&self, kms: &mut KmsCtx<'_>) -> Result<Exchanged, KmsIoError> {
        let provider = kms.kms_provider().to_string();
        let endpoint = match kms.endpoint() {
            Ok(endpoint) => endpoint.to_owned(),
            Err(e) => return Err(KmsIoError::new("<unknown endpoint>", &provider, KmsIoErrorKind::Mongocrypt(e))),
        };
        let fail = |kind| KmsIoError::new(&endpoint, &provider, kind);
        // Checked before connecting; written from libmongocrypt's buffer (no copy: for Azure and GCP it holds the
        // access token).
        kms.message().map_err(|e| fail(KmsIoErrorKind::Mongocrypt(e)))?;
        let (host, port) = split_endpoint(&endpoint).map_err(fail)?;
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|e| fail(KmsIoErrorKind::Endpoint(format!("{host} is not a valid server name: {e}"))))?;
        let deadline = self.request_timeout.map(|t| (Instant::now() + t, t));

        let sock = self.connect(host, port, deadline).map_err(fail)?;
        let _ = sock.set_nodelay(true);
        let conn =
            ClientConnection::new(self.config_for(&provider), server_name).map_err(|e| fail(KmsIoErrorKind::Tls(e)))?;
        let mut tls = StreamOwned::new(conn, sock);

        let during = "the TLS handshake";
        self.arm(&tls.sock, deadline, during).map_err(fail)?;
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).map_err(|e| fail(self.classify(e, during, deadline)))?;
        }

        let during = "writing the request";
        self.arm(&tls.sock, deadline, during).map_err(fail)?;
        let message = kms.message().map_err(|e| fail(KmsIoErrorKind::Mongocrypt(e)))?;
        tls.write_all(message).and_then(|()| tls.flush()).map_err(|e| fail(self.classify(e, during, deadline)))?;

        let during = "reading the reply";
        let mut buf = vec![0u8; 16 * 1024];
        let buf_len = buf.len();
        // The start of the reply, to name the HTTP status in errors.
        let mut head: Vec<u8> = Vec::new();
        let mut received = 0usize;
        loop {
            let needed = kms.bytes_needed() as usize;
            if needed == 0 {
                return Ok(Exchanged::Complete);
            }
            self.arm(&tls.sock, deadline, during).map_err(fail)?;
            let n = match tls.read(&mut buf[..needed.min(buf_len)]) {
                Ok(0) => {
                    return Err(fail(KmsIoErrorKind::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection closed after {received} bytes of the reply, {needed} more expected"),
                    ))))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail(self.classify(e, during, deadline))),
            };
            received += n;
            if head.len() < 64 {
                head.extend_from_slice(&buf[..n.min(64 - head.len())]);
            }
            let chunk = &buf[..n];
            let fed = {
                #[cfg(mongocrypt_has_kms_ctx_feed_with_retry)]
                {
                    kms.feed_with_retry(chunk)
                }
                #[cfg(not(mongocrypt_has_kms_ctx_feed_with_retry))]
                {
                    kms.feed(chunk).map(|()| false)
                }
            };
            match fed {
                Ok(false) => {}
                Ok(true) => {
                    let status = http_status(&head);
                    log::debug!(target: "mongocrypt::kms_tls", "{endpoint}: HTTP status {status:?}; libmongocrypt will retry");
                    return Ok(Exchanged::RetryRequested(status));
                }
                Err(error) => {
                    return Err(fail(match http_status(&head) {
                        Some(status) if !(200..300).contains(&status) => KmsIoErrorKind::Http { status, error },
                        _ => KmsIoErrorKind::Mongocrypt(error),
                    }))
                }
            }
        }
    }

    /// Sets the socket's timeouts for the next step: the I/O timeout, capped by what is left of the request
    /// timeout.
    fn arm(
        &self,
        sock: &TcpStream,
        deadline: Option<(Instant, Duration)>,
        during: &'static str,
    ) -> Result<(), KmsIoErrorKind> {
        let mut timeout = self.io_timeout;
        if let Some((at, total)) = deadline {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(KmsIoErrorKind::Timeout { during, after: total });
            }
            timeout = timeout.min(left);
        }
        // A zero timeout means "block forever" to set_read_timeout; it is refused instead, so never pass one.
        let timeout = timeout.max(Duration::from_millis(1));
        sock.set_read_timeout(Some(timeout))
            .and_then(|()| sock.set_write_timeout(Some(timeout)))
            .map_err(KmsIoErrorKind::Io)
    }

    fn classify(&self, e: io::Error, during: &'static str, deadline: Option<(Instant, Duration)>) -> KmsIoErrorKind {
        if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return KmsIoErrorKind::Tls(tls.clone());
        }
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            let after = match deadline {
                Some((at, total)) if Instant::now() + Duration::from_millis(5) >= at => total,
                _ => self.io_timeout,
            };
            return KmsIoErrorKind::Timeout { during, after };
        }
        KmsIoErrorKind::Io(e)
    }

    fn connect(
        &self,
        host: &str,
        port: u16,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<TcpStream, KmsIoErrorKind> {
        let addrs = match &self.resolver {
            Some(resolve) => resolve(host, port),
            None => (host, port).to_socket_addrs().map(Iterator::collect),
        }
        .map_err(KmsIoErrorKind::Resolve)?;
        let mut last = None;
        for addr in addrs {
            let mut timeout = self.connect_timeout;
            if let Some((at, total)) = deadline {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(KmsIoErrorKind::Timeout { during: "connecting", after: total });
                }
                timeout = timeout.min(left);
            }
            match TcpStream::connect_timeout(&addr, timeout.max(Duration::from_millis(1))) {
                Ok(sock) => return Ok(sock),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    last = Some(KmsIoErrorKind::Timeout { during: "connecting", after: timeout });
                }
                Err(source) => last = Some(KmsIoErrorKind::Connect { addr, source }),
            }
        }
        Err(last.unwrap_or_else(|| {
            KmsIoErrorKind::Resolve(io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")))
        }))
    }
}

/// `host:port`, `[v6]:port` → host (without brackets) and port.
fn split_endpoint(endpoint: &str) -> Result<(&str, u16), KmsIoErrorKind> {
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
fn http_status(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/")?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let code = rest.get(space + 1..space + 4)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
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
        let err = TlsOptions::from_document(&bson::doc! { "tlsInsecure": true }).unwrap_err();
        assert!(err.to_string().contains("tlsInsecure"), "{err}");
        let err = TlsOptions::from_document(&bson::doc! { "tlsCAFile": 1 }).unwrap_err();
        assert!(err.to_string().contains("tlsCAFile must be a string"), "{err}");
    }
}
