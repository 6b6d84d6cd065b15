//! Certificates made at test time with rcgen: a CA, a server certificate for the KMS host names the fixtures use
//! (and loopback), and a client certificate, all signed by the CA; plus a second, untrusted CA. Keys can be
//! password-protected at test time with the `pkcs8` crate, as `openssl pkcs8 -topk8 -v2 aes-256-cbc` does.

use libmongocrypt_kms::tls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use pkcs8::der::pem::PemLabel;
use pkcs8::pkcs5::pbes2::{self, Pbkdf2Params};
use pkcs8::{EncryptedPrivateKeyInfo, LineEnding, PrivateKeyInfo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

pub use pkcs8::pkcs5::pbes2::Pbkdf2Prf as Prf;

/// One certificate with its key.
pub struct Leaf {
    pub cert: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_der: Vec<u8>,
    pub key_pem: String,
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Certificate then key, as a `tlsCertificateKeyFile` holds them.
    pub fn cert_key_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }

    /// The key as an `ENCRYPTED PRIVATE KEY` (PKCS#8 EncryptedPrivateKeyInfo): PBES2 with PBKDF2-HMAC-SHA256,
    /// 2048 iterations, and AES-256-CBC, random salt and IV: what `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes.
    pub fn encrypted_key_pem(&self, password: &str) -> String {
        self.encrypted_key_pem_with(password, Prf::HmacWithSha256)
    }

    /// As [`encrypted_key_pem`](Self::encrypted_key_pem), with the PBKDF2 pseudo-random function `prf`
    /// (hmacWithSHA1 is what OpenSSL 1.0 wrote).
    pub fn encrypted_key_pem_with(&self, password: &str, prf: Prf) -> String {
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        getrandom::fill(&mut salt).expect("salt");
        getrandom::fill(&mut iv).expect("IV");
        let kdf = Pbkdf2Params { salt: &salt, iteration_count: 2048, key_length: None, prf };
        let params = pbes2::Parameters { kdf: kdf.into(), encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: &iv } };
        let info = PrivateKeyInfo::try_from(self.key_der.as_slice()).expect("rcgen writes PKCS#8");
        let encrypted = info.encrypt_with_params(params, password).expect("encryption");
        encrypted.to_pem(EncryptedPrivateKeyInfo::PEM_LABEL, LineEnding::LF).expect("PEM").to_string()
    }

    /// Certificate then encrypted key (see [`encrypted_key_pem`](Self::encrypted_key_pem)).
    pub fn cert_encrypted_key_pem(&self, password: &str) -> String {
        format!("{}{}", self.cert_pem, self.encrypted_key_pem(password))
    }
}

/// A CA with a server and a client certificate.
pub struct Pki {
    pub ca: CertificateDer<'static>,
    pub ca_pem: String,
    pub server: Leaf,
    pub client: Leaf,
}

/// The names the server certificate is valid for.
pub const SERVER_NAMES: &[&str] = &[
    "kms.us-east-1.amazonaws.com",
    "example.com",
    "cloudkms.googleapis.com",
    "mock.vault.azure.net",
    "localhost",
    "127.0.0.1",
    "::1",
];

impl Pki {
    pub fn new(ca_name: &str) -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, ca_name);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |names: &[&str], usage: ExtendedKeyUsagePurpose, cn: &str| {
            let key = KeyPair::generate().expect("leaf key");
            let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).expect("leaf certificate");
            Leaf {
                cert: cert.der().clone(),
                cert_pem: cert.pem(),
                key_der: key.serialize_der(),
                key_pem: key.serialize_pem(),
            }
        };
        let server = leaf(SERVER_NAMES, ExtendedKeyUsagePurpose::ServerAuth, "mock KMS");
        let client = leaf(&["client"], ExtendedKeyUsagePurpose::ClientAuth, "mock KMS client");
        Pki { ca: ca_cert.der().clone(), ca_pem: ca_cert.pem(), server, client }
    }
}
