//! `crypto_provider` / `rust_crypto` (`mongocrypt_setopt_crypto_hooks` and friends): the pure-Rust provider against
//! the library's native crypto, byte for byte where the output is deterministic, and custom providers that prove
//! which hooks libmongocrypt calls.
//!
//! On a "nocrypto" build (the wheel builds 1.10.1 to 1.21.0; `libmongocrypt::is_crypto_available()` says which) there
//! is no native crypto: a `Crypt` built without a provider installs `RustCrypto` itself, so "native" below is
//! RustCrypto again there; the known-answer fixture still pins the bytes.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::*;
use libmongocrypt::bson::{doc, rawdoc, Bson, RawDocumentBuf};
use libmongocrypt::{Algorithm, Crypt, CryptoError, CryptoProvider, KeyEncryptionKey, RustCrypto, State};

const DET: &str = "fle1-explicit-local/FLE1DeterministicEncryptedValue.json";
const KEY: &str = "fle1-explicit-local/key-ABCDEFAB-local.json";

fn native() -> Crypt {
    let crypt = crypt();
    assert_eq!(crypt.uses_crypto_hooks(), !libmongocrypt::is_crypto_available(), "hooks only where crypto is missing");
    crypt
}

fn rust() -> Crypt {
    let crypt = builder().rust_crypto().build().unwrap();
    assert!(crypt.uses_crypto_hooks());
    crypt
}

fn encrypt(crypt: &Crypt, algorithm: &Algorithm, value: Bson) -> RawDocumentBuf {
    let mut ctx = crypt
        .ctx()
        .key_id(&key_abcdefab())
        .and_then(|b| b.algorithm(algorithm))
        .and_then(|b| b.explicit_encrypt(&doc! { "v": value.clone() }))
        .unwrap_or_else(|e| panic!("encrypt {value:?}: {e}"));
    drive(&mut ctx, &Mock { keys: vec![load_raw(KEY)], ..Mock::default() }).output().to_owned()
}

fn decrypt(crypt: &Crypt, ciphertext: &RawDocumentBuf) -> RawDocumentBuf {
    let mut ctx = crypt.ctx().explicit_decrypt(ciphertext).unwrap();
    drive(&mut ctx, &Mock { keys: vec![load_raw(KEY)], ..Mock::default() }).output().to_owned()
}

/// Values Deterministic encryption accepts.
fn deterministic_values() -> Vec<Bson> {
    vec![
        Bson::String("foo".into()),
        Bson::String(String::new()),
        Bson::String("x".repeat(1000)),
        Bson::Int32(-7),
        Bson::Int64(1 << 40),
        Bson::Binary(libmongocrypt::bson::Binary {
            subtype: libmongocrypt::bson::spec::BinarySubtype::Generic,
            bytes: vec![0, 1, 2, 255],
        }),
        Bson::DateTime(libmongocrypt::bson::DateTime::from_millis(1_648_914_851_981)),
        Bson::ObjectId(libmongocrypt::bson::oid::ObjectId::parse_str("5f0c3a3d8b8c4e1a2b3c4d5e").unwrap()),
    ]
}

#[test]
fn rust_crypto_deterministic_equals_native_byte_for_byte() {
    let (native, rust) = (native(), rust());
    // The known answer first.
    assert_bson_eq(&encrypt(&rust, &Algorithm::Deterministic, "foo".into()), &load_raw(DET));
    assert_bson_eq(&encrypt(&native, &Algorithm::Deterministic, "foo".into()), &load_raw(DET));
    for value in deterministic_values() {
        let a = encrypt(&native, &Algorithm::Deterministic, value.clone());
        let b = encrypt(&rust, &Algorithm::Deterministic, value.clone());
        assert_eq!(a.as_bytes(), b.as_bytes(), "Deterministic({value:?}) differs between native and RustCrypto");
        assert_bson_eq(&decrypt(&rust, &a), &raw(&doc! { "v": value }));
    }
}

#[test]
fn rust_crypto_equals_native_on_values_across_its_buffer_and_block_sizes() {
    // RustCrypto's CBC runs through a 1 KiB stack buffer and its HMAC-SHA-512 pairs 128-byte blocks: values whose
    // ciphertexts end just before, at and after those edges, and one of many buffers.
    let (native, rust) = (native(), rust());
    for len in [990, 1000, 1007, 1008, 1009, 1024, 1040, 2047, 2048, 2100, 70_000] {
        let value = Bson::String("x".repeat(len));
        let a = encrypt(&native, &Algorithm::Deterministic, value.clone());
        let b = encrypt(&rust, &Algorithm::Deterministic, value.clone());
        assert_eq!(a.as_bytes(), b.as_bytes(), "Deterministic of a {len}-byte string differs");
        assert_bson_eq(&decrypt(&rust, &a), &raw(&doc! { "v": value.clone() }));
        let by_rust = encrypt(&rust, &Algorithm::Random, value.clone());
        assert_bson_eq(&decrypt(&native, &by_rust), &raw(&doc! { "v": value }));
    }
}

#[test]
fn random_crosses_between_providers() {
    let (native, rust) = (native(), rust());
    for value in
        [Bson::String("foo".into()), Bson::Double(1.5), Bson::Document(doc! { "a": [1, 2] }), Bson::Boolean(true)]
    {
        let expected = raw(&doc! { "v": value.clone() });
        let by_rust = encrypt(&rust, &Algorithm::Random, value.clone());
        let by_native = encrypt(&native, &Algorithm::Random, value.clone());
        assert_ne!(by_rust.as_bytes(), by_native.as_bytes());
        assert_bson_eq(&decrypt(&native, &by_rust), &expected);
        assert_bson_eq(&decrypt(&rust, &by_native), &expected);
    }
}

#[test]
fn queryable_encryption_unindexed_crosses_between_providers() {
    // FLE2 payloads use AES-256-CTR (and, from 1.8, CBC for V2): the CTR hooks are exercised here.
    let (native, rust) = (native(), rust());
    for (from, to) in [(&native, &rust), (&rust, &native)] {
        let ciphertext = encrypt(from, &Algorithm::Unindexed, "qe".into());
        let v = ciphertext.get_binary("v").unwrap();
        assert_eq!(u8::from(v.subtype), 6);
        assert!(v.bytes[0] == 6 || v.bytes[0] == 16, "FLE2UnindexedEncryptedValue(V2), got type {}", v.bytes[0]);
        assert_bson_eq(&decrypt(to, &ciphertext), &rawdoc! { "v": "qe" });
    }
}

#[test]
fn rust_crypto_data_keys_cross_between_providers() {
    let (native, rust) = (native(), rust());
    for (from, to) in [(&native, &rust), (&rust, &native)] {
        let mut ctx = from.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
        let key = ctx.finalize_owned().unwrap();
        let id = key.get_binary("_id").unwrap().bytes.to_vec();
        let mut ctx = to
            .ctx()
            .key_id(&id)
            .and_then(|b| b.algorithm(&Algorithm::Deterministic))
            .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": "k" }))
            .unwrap();
        let t = drive(&mut ctx, &Mock { keys: vec![key], ..Mock::default() });
        assert!(t.error.is_none(), "{:?}", t.error);
    }
}

/// HMAC-SHA-256 and hex, for checking AWS signatures.
fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Recomputes the AWS Signature V4 of a KMS request (secret "example") and compares it to the one sent.
fn assert_aws_signature_valid(message: &str) {
    use sha2::Digest;
    let (head, body) = message.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("POST / HTTP/1.1"));
    let headers: BTreeMap<String, String> =
        lines.map(|l| l.split_once(':').unwrap()).map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned())).collect();
    let auth = &headers["authorization"];
    let field = |name: &str| {
        let start = auth.find(name).unwrap() + name.len();
        auth[start..].split([',', ' ']).next().unwrap().to_owned()
    };
    let credential = field("Credential=");
    let signed = field("SignedHeaders=");
    let signature = field("Signature=");
    let scope = credential.split_once('/').unwrap().1;
    let date = scope.split('/').next().unwrap();
    let region = scope.split('/').nth(1).unwrap();
    let canonical_headers: String = signed.split(';').map(|h| format!("{h}:{}\n", headers[h])).collect();
    let canonical =
        format!("POST\n/\n\n{canonical_headers}\n{signed}\n{}", hex_lower(&sha2::Sha256::digest(body.as_bytes())));
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        headers["x-amz-date"],
        hex_lower(&sha2::Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac256(b"AWS4example", date.as_bytes());
    for part in [region, "kms", "aws4_request"] {
        key = hmac256(&key, part.as_bytes());
    }
    assert_eq!(signature, hex_lower(&hmac256(&key, to_sign.as_bytes())), "AWS SigV4 of\n{message}");
}

#[test]
fn aws_request_signatures_are_valid_with_either_provider() {
    for crypt in [native(), rust()] {
        let mut ctx = crypt.ctx().decrypt(&load_raw("csfle-auto-aws-example/expected-encrypted-cmd.json")).unwrap();
        let t = drive(
            &mut ctx,
            &Mock {
                keys: vec![load_raw("csfle-auto-aws-example/key-document.json")],
                kms: vec![http_reply("csfle-auto-aws-example/kms-decrypt-reply.txt")],
                ..Mock::default()
            },
        );
        assert_eq!(t.kms.len(), 1);
        assert_aws_signature_valid(&t.kms[0].message_str());
        assert_bson_eq(t.output(), &rawdoc! { "filter": { "ssn": "457-55-5462" }, "find": "test" });
    }
}

/// Wraps RustCrypto and counts the calls of each hook.
#[derive(Clone, Default)]
struct Counting(Arc<Mutex<BTreeMap<&'static str, usize>>>);

impl Counting {
    fn hit(&self, name: &'static str) {
        *self.0.lock().unwrap().entry(name).or_default() += 1;
    }

    fn count(&self, name: &str) -> usize {
        self.0.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

impl CryptoProvider for Counting {
    fn aes_256_cbc_encrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        self.hit("aes_256_cbc_encrypt");
        RustCrypto.aes_256_cbc_encrypt(k, iv, i, o)
    }
    fn aes_256_cbc_decrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        self.hit("aes_256_cbc_decrypt");
        RustCrypto.aes_256_cbc_decrypt(k, iv, i, o)
    }
    fn aes_256_ctr_encrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        self.hit("aes_256_ctr_encrypt");
        RustCrypto.aes_256_ctr_encrypt(k, iv, i, o)
    }
    fn aes_256_ctr_decrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        self.hit("aes_256_ctr_decrypt");
        RustCrypto.aes_256_ctr_decrypt(k, iv, i, o)
    }
    fn aes_256_ecb_encrypt(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        self.hit("aes_256_ecb_encrypt");
        RustCrypto.aes_256_ecb_encrypt(k, i, o)
    }
    fn hmac_sha_512(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        self.hit("hmac_sha_512");
        RustCrypto.hmac_sha_512(k, i, o)
    }
    fn hmac_sha_256(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        self.hit("hmac_sha_256");
        RustCrypto.hmac_sha_256(k, i, o)
    }
    fn sha_256(&self, i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        self.hit("sha_256");
        RustCrypto.sha_256(i, o)
    }
    fn random(&self, o: &mut [u8]) -> Result<(), CryptoError> {
        self.hit("random");
        RustCrypto.random(o)
    }
    fn sign_rsassa_pkcs1_v1_5_sha256(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        self.hit("sign_rsassa_pkcs1_v1_5_sha256");
        RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(k, i, o)
    }
}

#[test]
fn custom_provider_hooks_are_called() {
    let counter = Counting::default();
    let crypt = builder().crypto_provider(counter.clone()).build().unwrap();
    assert!(crypt.uses_crypto_hooks());
    assert!(counter.0.lock().unwrap().is_empty(), "nothing before use: {:?}", counter.0.lock().unwrap());

    // Explicit Random round trip: the key is unwrapped (CBC decrypt + HMAC-SHA-512), then a random IV, CBC encrypt
    // and HMAC-SHA-512 for the value.
    let ciphertext = encrypt(&crypt, &Algorithm::Random, "foo".into());
    assert!(counter.count("aes_256_cbc_decrypt") >= 1);
    assert!(counter.count("aes_256_cbc_encrypt") >= 1);
    assert!(counter.count("hmac_sha_512") >= 2);
    assert!(counter.count("random") >= 1);
    assert_bson_eq(&decrypt(&crypt, &ciphertext), &rawdoc! { "v": "foo" });

    // AWS request signing: SHA-256 and HMAC-SHA-256.
    let (sha, hmac) = (counter.count("sha_256"), counter.count("hmac_sha_256"));
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn"))
        .and_then(|b| b.datakey())
        .unwrap();
    assert_eq!(ctx.state(), State::NeedKms);
    assert!(counter.count("sha_256") > sha);
    assert!(counter.count("hmac_sha_256") > hmac);
    let mut scope = ctx.kms_scope().unwrap();
    let message = String::from_utf8_lossy(scope.next_kms_ctx().unwrap().message().unwrap()).into_owned();
    assert_aws_signature_valid(&message);
}

/// A provider whose randomness is all zeros: Random encryption becomes repeatable, which shows the random hook is
/// the only source of IVs.
struct ZeroRandom;

impl CryptoProvider for ZeroRandom {
    fn aes_256_cbc_encrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        RustCrypto.aes_256_cbc_encrypt(k, iv, i, o)
    }
    fn aes_256_cbc_decrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        RustCrypto.aes_256_cbc_decrypt(k, iv, i, o)
    }
    fn aes_256_ctr_encrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        RustCrypto.aes_256_ctr_encrypt(k, iv, i, o)
    }
    fn aes_256_ctr_decrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        RustCrypto.aes_256_ctr_decrypt(k, iv, i, o)
    }
    fn aes_256_ecb_encrypt(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        RustCrypto.aes_256_ecb_encrypt(k, i, o)
    }
    fn hmac_sha_512(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.hmac_sha_512(k, i, o)
    }
    fn hmac_sha_256(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.hmac_sha_256(k, i, o)
    }
    fn sha_256(&self, i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.sha_256(i, o)
    }
    fn random(&self, o: &mut [u8]) -> Result<(), CryptoError> {
        o.fill(0);
        Ok(())
    }
    fn sign_rsassa_pkcs1_v1_5_sha256(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(k, i, o)
    }
}

#[test]
fn random_hook_supplies_the_iv() {
    let crypt = builder().crypto_provider(ZeroRandom).build().unwrap();
    let a = encrypt(&crypt, &Algorithm::Random, "foo".into());
    let b = encrypt(&crypt, &Algorithm::Random, "foo".into());
    assert_eq!(a.as_bytes(), b.as_bytes(), "zero randomness: identical Random ciphertexts");
    // The IV (bytes 18..34 of the blob: type, key id, BSON type, then IV) is all zeros.
    assert_eq!(&a.get_binary("v").unwrap().bytes[18..34], &[0u8; 16]);
    // It is still a valid ciphertext for any provider.
    assert_bson_eq(&decrypt(&native(), &a), &rawdoc! { "v": "foo" });
    // A data key's _id comes from the random hook too.
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    let key = ctx.finalize_owned().unwrap();
    let id = key.get_binary("_id").unwrap().bytes.to_vec();
    assert_eq!(id[..6], [0u8; 6], "UUID from zero randomness (only version/variant bits set): {id:?}");
}

/// A provider whose CBC encryption fails or panics.
struct Broken {
    panic: bool,
}

impl CryptoProvider for Broken {
    fn aes_256_cbc_encrypt(&self, _: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> Result<usize, CryptoError> {
        if self.panic {
            panic!("cbc exploded");
        }
        Err(CryptoError::new("cbc refused by test provider"))
    }
    fn aes_256_cbc_decrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        RustCrypto.aes_256_cbc_decrypt(k, iv, i, o)
    }
    fn aes_256_ctr_encrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        RustCrypto.aes_256_ctr_encrypt(k, iv, i, o)
    }
    fn aes_256_ctr_decrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        RustCrypto.aes_256_ctr_decrypt(k, iv, i, o)
    }
    fn aes_256_ecb_encrypt(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        RustCrypto.aes_256_ecb_encrypt(k, i, o)
    }
    fn hmac_sha_512(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.hmac_sha_512(k, i, o)
    }
    fn hmac_sha_256(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.hmac_sha_256(k, i, o)
    }
    fn sha_256(&self, i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.sha_256(i, o)
    }
    fn random(&self, o: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.random(o)
    }
    fn sign_rsassa_pkcs1_v1_5_sha256(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(k, i, o)
    }
}

#[test]
fn provider_errors_reach_the_ctx() {
    for (panic, expected) in [(false, "cbc refused by test provider"), (true, "cbc exploded")] {
        let crypt = builder().crypto_provider(Broken { panic }).build().unwrap();
        // Decryption does not need the failing hook.
        assert_bson_eq(&decrypt(&crypt, &load_raw(DET)), &rawdoc! { "v": "foo" });
        // Encryption does; the ctx fails with the provider's message instead of unwinding into C.
        let mut ctx = crypt
            .ctx()
            .key_id(&key_abcdefab())
            .and_then(|b| b.algorithm(&Algorithm::Deterministic))
            .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": "foo" }))
            .unwrap();
        let t = drive(&mut ctx, &Mock { keys: vec![load_raw(KEY)], ..Mock::default() });
        assert_eq!(t.states.last(), Some(&State::Error));
        let message = t.error_message();
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("aes_256_cbc_encrypt"), "the hook is named: {message}");
    }
}
