//! Certificates made at test time with rcgen: a CA, a server certificate for the KMS host names the fixtures use
//! (and loopback), and a client certificate, all signed by the CA; plus a second, untrusted CA.

use mongocrypt::kms_tls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

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
