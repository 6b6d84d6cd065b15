//! GCP service-account keys in both RSA encodings, PKCS#8 and PKCS#1: each signs the OAuth JWT of a GCP data key,
//! with the library's crypto (native OpenSSL on Debian's 1.7.2; the Rust provider on the nocrypto builds) and with
//! the Rust provider chosen explicitly. Each JWT's signature is checked against the one the Rust provider makes
//! from the PKCS#8 key over the same signing input: RSASSA-PKCS1-v1_5 is deterministic, so on 1.7.2 this compares
//! native crypto's signature with the Rust provider's byte for byte. The GCP endpoints are a loopback TLS mock.

use crate::support;

use libmongocrypt::bson::Document;
use libmongocrypt::{CryptoProvider, KeyEncryptionKey, KmsProviders, RustCrypto};
use pkcs8::der::Decode;

use support::common::b64;
use support::pki::Pki;
use support::server::{self, Reply, Request};
use support::*;

const GCP_PRIVATE_KEY: &str = include_str!("../../../tests/keys/rsa-2048.pkcs8.b64");

fn pkcs8_key() -> Vec<u8> {
    b64(GCP_PRIVATE_KEY.trim())
}

/// The PKCS#1 `RSAPrivateKey` inside the PKCS#8 wrapping.
fn pkcs1_key() -> Vec<u8> {
    let der = pkcs8_key();
    pkcs8::PrivateKeyInfo::from_der(&der).unwrap().private_key.to_vec()
}

fn gcp_replies(request: &Request) -> Reply {
    if request.header("Host").is_some_and(|h| h.starts_with("example.com")) {
        Reply::Bytes(server::http(
            200,
            r#"{"access_token": "gcp-oauth-token", "expires_in": 3599, "token_type": "Bearer"}"#,
        ))
    } else {
        // 96 bytes of 7, in base64.
        let ciphertext = "BwcH".repeat(32);
        Reply::Bytes(server::http(
            200,
            &format!(r#"{{"name": "projects/p/locations/l/keyRings/r/cryptoKeys/k", "ciphertext": "{ciphertext}"}}"#),
        ))
    }
}

/// base64url without padding to bytes.
fn b64url(s: &str) -> Vec<u8> {
    let mut standard = s.replace('-', "+").replace('_', "/");
    while !standard.len().is_multiple_of(4) {
        standard.push('=');
    }
    b64(&standard)
}

#[test]
fn gcp_datakey_with_pkcs8_and_pkcs1_keys() {
    assert_ne!(pkcs1_key(), pkcs8_key());
    for (encoding, key) in [("PKCS#8", pkcs8_key()), ("PKCS#1", pkcs1_key())] {
        for rust_crypto in [false, true] {
            let what = format!("{encoding} key, {}", if rust_crypto { "Rust provider" } else { "library crypto" });
            let pki = Pki::new("mock CA");
            let kms = tls_kms(&pki, false, 0, gcp_replies);
            // The OAuth endpoint is `example.com`, a name of the mock's certificate.
            let providers = KmsProviders::new().provider(
                "gcp",
                libmongocrypt::bson::doc! {
                    "email": "test@example.iam.gserviceaccount.com",
                    "privateKey": libmongocrypt::bson::Binary { subtype: libmongocrypt::bson::spec::BinarySubtype::Generic, bytes: key.clone() },
                    "endpoint": "example.com",
                },
            );
            let mut builder = libmongocrypt::Crypt::builder().kms_providers(&providers).unwrap();
            if rust_crypto {
                builder = builder.rust_crypto();
            }
            let crypt = builder.build().unwrap();
            let transport = transport_to(&pki, kms.addr()).build().unwrap();
            let kek = KeyEncryptionKey::gcp("gcp", "p", "l", "r", "k");
            let mut ctx = crypt.ctx().key_encryption_key(&kek).unwrap().datakey().unwrap();
            let io = ExampleIo { kms: transport, keys: Vec::new() };
            let key_document = libmongocrypt::state_machine::run(&mut ctx, &io)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .expect("a key document");
            let key_document = Document::try_from(key_document.as_ref()).unwrap();
            assert_eq!(key_document.get_binary_generic("keyMaterial").unwrap(), &vec![7u8; 96], "{what}");

            let requests = kms.stop();
            assert_eq!(requests.len(), 2, "{what}: the OAuth request, then the encrypt request");
            assert_eq!(requests[1].header("Authorization"), Some("Bearer gcp-oauth-token"), "{what}");
            let body = String::from_utf8(requests[0].body.clone()).unwrap();
            let jwt = body.split('&').find_map(|p| p.strip_prefix("assertion=")).unwrap_or_else(|| panic!("{body}"));
            let (signing_input, signature) = jwt.rsplit_once('.').unwrap();
            let mut expected = [0u8; 256];
            RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(&pkcs8_key(), signing_input.as_bytes(), &mut expected).unwrap();
            assert_eq!(b64url(signature), expected, "{what}: the JWT's signature is the PKCS#8 key's");
        }
    }
}

#[test]
fn rust_provider_signs_the_same_with_both_encodings() {
    let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
    RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(&pkcs8_key(), b"header.payload", &mut a).unwrap();
    RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(&pkcs1_key(), b"header.payload", &mut b).unwrap();
    assert_eq!(a, b);
    let err = RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(b"neither", b"x", &mut a).unwrap_err();
    assert!(err.to_string().contains("PKCS#8") && err.to_string().contains("PKCS#1"), "{err}");
}
