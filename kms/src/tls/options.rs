//! TLS options: [`TlsOptions`] (the spec's `tlsOptions`), client keys and their decryption, [`TlsConfigError`].

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::bson::Document;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, InconsistentKeys, RootCertStore};
use zeroize::Zeroizing;

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
    /// The key's DER, borrowed.
    #[cfg(feature = "openssl")]
    fn der(&self) -> &[u8] {
        match self {
            ClientKey::Der(key) => key.secret_der(),
            ClientKey::DecryptedPkcs8(der) => der.as_slice(),
        }
    }

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
        let pem = read_file(path)?;
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
    /// ignored for an unencrypted key). As the spec requires, `tlsDisableOCSPEndpointCheck` is accepted (and
    /// changes nothing: no OCSP check is made); options that weaken security (`tlsInsecure`,
    /// `tlsAllowInvalidCertificates`, `tlsAllowInvalidHostnames`, `tlsDisableCertificateRevocationCheck`) give an
    /// error containing "Insecure TLS options prohibited"; `tls: false` or `ssl: false` gives "TLS is required";
    /// any other field is an error naming it.
    pub fn from_document(doc: &Document) -> Result<TlsOptions, TlsConfigError> {
        let string = |field: &str| -> Result<Option<&str>, TlsConfigError> {
            match doc.get(field) {
                None => Ok(None),
                Some(crate::bson::Bson::String(s)) => Ok(Some(s)),
                Some(other) => {
                    Err(TlsConfigError::Document(format!("{field} must be a string, not {:?}", other.element_type())))
                }
            }
        };
        for (field, value) in doc {
            match field.as_str() {
                "tlsCAFile" | "tlsCertificateKeyFile" | "tlsCertificateKeyFilePassword" => {}
                // The spec: drivers MUST NOT raise an error for it. There is no OCSP endpoint check to disable
                // (rustls does no OCSP), so it changes nothing.
                "tlsDisableOCSPEndpointCheck" => {}
                "tlsInsecure"
                | "tlsAllowInvalidCertificates"
                | "tlsAllowInvalidHostnames"
                | "tlsDisableCertificateRevocationCheck" => {
                    return Err(TlsConfigError::Document(format!(
                        "Insecure TLS options prohibited: {field} is not allowed in KMS TLS options"
                    )))
                }
                // Only `false` disables TLS; `true` asks for what is done anyway.
                "tls" | "ssl" => {
                    if value.as_bool() != Some(true) {
                        return Err(TlsConfigError::Document(format!(
                            "TLS is required for KMS requests: {field}: {value} is not allowed"
                        )));
                    }
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

    /// The CA certificates, in DER, when some were given.
    #[cfg(feature = "openssl")]
    pub(super) fn ca_certs_der(&self) -> Option<impl Iterator<Item = &[u8]>> {
        self.ca_certs.as_ref().map(|certs| certs.iter().map(|c| c.as_ref()))
    }

    /// The client certificate chain and key, in DER (the key borrowed: no copy).
    #[cfg(feature = "openssl")]
    pub(super) fn client_auth_der(&self) -> Option<(Vec<&[u8]>, &[u8])> {
        self.client_auth.as_ref().map(|(chain, key)| (chain.iter().map(|c| c.as_ref()).collect(), key.der()))
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

/// The longest CA or certificate-key file read (`tlsCAFile`, `tlsCertificateKeyFile`): 4 MiB, thousands of
/// certificates. A longer file is [`TlsConfigError::FileTooLarge`]; only regular files are read
/// ([`TlsConfigError::NotAFile`]).
pub const MAX_TLS_FILE: u64 = 4 * 1024 * 1024;

/// The most PBKDF2 iterations an `ENCRYPTED PRIVATE KEY` may ask for (OpenSSL writes 2,048 by default, and
/// current guidance asks for at most a few hundred thousand); more is [`TlsConfigError::KeyDerivationLimit`].
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// The most memory the scrypt parameters of an `ENCRYPTED PRIVATE KEY` may ask for, counted as OpenSSL does
/// (128·r·(N + p + 2) bytes), and OpenSSL's own default limit: 32 MiB (`openssl pkcs8 -scrypt` writes N = 16384,
/// r = 8, p = 1: 16 MiB). More is [`TlsConfigError::KeyDerivationLimit`].
pub const MAX_SCRYPT_MEMORY: u64 = 32 * 1024 * 1024;

/// The most scrypt work (N·r·p) an `ENCRYPTED PRIVATE KEY` may ask for: 2^24, sixteen times OpenSSL's default,
/// about a second; a large `p` costs time, not memory. More is [`TlsConfigError::KeyDerivationLimit`].
pub const MAX_SCRYPT_WORK: u64 = 1 << 24;

/// A CA or certificate-key file, bounded ([`MAX_TLS_FILE`]); wiped when dropped (it may hold a key).
fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsConfigError> {
    let shown = || path.display().to_string();
    crate::file::read_bounded(path, MAX_TLS_FILE).map_err(|e| match e {
        crate::file::FileError::Io(source) => TlsConfigError::File { path: shown(), source },
        crate::file::FileError::NotAFile => TlsConfigError::NotAFile { path: shown() },
        crate::file::FileError::TooLarge(limit) => TlsConfigError::FileTooLarge { path: shown(), limit },
    })
}

/// Refuses key-derivation parameters past the limits, before any derivation: a key file must not cost hours of
/// CPU or terabytes of memory.
fn check_kdf(kdf: &pkcs8::pkcs5::pbes2::Kdf<'_>, origin: &str) -> Result<(), TlsConfigError> {
    let refuse = |limit: String| TlsConfigError::KeyDerivationLimit { origin: origin.to_owned(), limit };
    if let Some(pbkdf2) = kdf.pbkdf2() {
        if pbkdf2.iteration_count > MAX_PBKDF2_ITERATIONS {
            return Err(refuse(format!(
                "PBKDF2 with {} iterations, more than {MAX_PBKDF2_ITERATIONS}",
                pbkdf2.iteration_count
            )));
        }
    }
    if let Some(scrypt) = kdf.scrypt() {
        let (n, r, p) = (scrypt.cost_parameter, u64::from(scrypt.block_size), u64::from(scrypt.parallelization));
        // Checked: N is up to 2^63 here, and the products overflow u64.
        let memory = n.checked_add(p + 2).and_then(|x| x.checked_mul(128 * r));
        if memory.is_none_or(|m| m > MAX_SCRYPT_MEMORY) {
            return Err(refuse(format!(
                "scrypt with N = {n}, r = {r}, p = {p}: 128·r·(N + p + 2) bytes, more than {MAX_SCRYPT_MEMORY}"
            )));
        }
        let work = n.checked_mul(r).and_then(|x| x.checked_mul(p));
        if work.is_none_or(|w| w > MAX_SCRYPT_WORK) {
            return Err(refuse(format!("scrypt with N = {n}, r = {r}, p = {p}: N·r·p more than {MAX_SCRYPT_WORK}")));
        }
    }
    Ok(())
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
                log::debug!(target: "libmongocrypt_kms::tls", "{source}: unencrypted private key; password ignored");
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
pub(super) enum KeySection<'a> {
    /// Unencrypted: rustls's PEM parser reads it.
    Plain,
    /// `ENCRYPTED PRIVATE KEY`: its base64 body, without whitespace; whether the END line was found.
    Encrypted { body: String, complete: bool },
    /// OpenSSL's traditional encryption: a `Proc-Type: 4,ENCRYPTED` header; the label and the cipher of
    /// `DEK-Info` (before its IV).
    TraditionalEncrypted { label: &'a str, dek_info: Option<&'a str> },
}

pub(super) fn first_key_section(text: &str) -> Option<KeySection<'_>> {
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
    if let Some(pbes2) = info.encryption_algorithm.pbes2() {
        check_kdf(&pbes2.kdf, source)?;
    }
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
    /// A file is not a regular file (a directory, a FIFO, a device): not read.
    #[error("cannot read {path}: not a regular file")]
    NotAFile {
        /// The file.
        path: String,
    },
    /// A file is longer than the limit ([`MAX_TLS_FILE`]): not read.
    #[error("cannot read {path}: longer than {limit} bytes")]
    FileTooLarge {
        /// The file.
        path: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The key-derivation parameters of an `ENCRYPTED PRIVATE KEY` ask for more than a limit
    /// ([`MAX_PBKDF2_ITERATIONS`], [`MAX_SCRYPT_MEMORY`], [`MAX_SCRYPT_WORK`]): refused before any derivation.
    #[error("{origin}: the private key's encryption asks too much of its key derivation: {limit}")]
    KeyDerivationLimit {
        /// The file, or what the PEM text was.
        origin: String,
        /// Which parameters, and the limit they pass.
        limit: String,
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
    /// OpenSSL rejected the configuration of the `openssl` backend (a bad CA certificate, a key that does not
    /// fit the certificate, ...).
    #[cfg(feature = "openssl")]
    #[error("TLS configuration (OpenSSL): {0}")]
    OpenSsl(String),
}
