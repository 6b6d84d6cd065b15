//! Shared set-up of the fuzz targets: one crypt with every KMS provider, a local data key, a driver that answers
//! every state with valid input (so a fuzzed input in one state is followed through the rest), and the rule every
//! call must follow: `Ok` or a typed error (a panic or an abort is a crash for libFuzzer).
#![allow(dead_code)]

use std::sync::OnceLock;

use bson::spec::BinarySubtype;
use bson::{doc, rawdoc, Binary, Document, RawDocumentBuf};
use libmongocrypt::{Crypt, Ctx, KeyEncryptionKey, State};

pub const LOCAL_KEK: [u8; 96] = [7; 96];
const GCP_PRIVATE_KEY: &str = include_str!("../../tests/keys/rsa-2048.pkcs8.b64");

pub fn generic(bytes: &[u8]) -> Binary {
    Binary { subtype: BinarySubtype::Generic, bytes: bytes.to_vec() }
}

pub fn uuid(bytes: &[u8]) -> Binary {
    Binary { subtype: BinarySubtype::Uuid, bytes: bytes.to_vec() }
}

fn b64_decode(s: &str) -> Vec<u8> {
    Binary::from_base64(s.trim(), None).expect("test key is base64").bytes
}

pub fn all_providers() -> Document {
    doc! {
        "local": { "key": generic(&LOCAL_KEK) },
        "aws": { "accessKeyId": "example", "secretAccessKey": "example" },
        "azure": { "tenantId": "tenant", "clientId": "client", "clientSecret": "secret" },
        "gcp": { "email": "test@example.com", "privateKey": generic(&b64_decode(GCP_PRIVATE_KEY)) },
        "kmip": { "endpoint": "localhost:5696" },
    }
}

pub fn schema_map(key_id: &[u8]) -> Document {
    doc! { "test.test": {
        "bsonType": "object",
        "properties": { "ssn": { "encrypt": { "keyId": [uuid(key_id)], "bsonType": "string",
            "algorithm": "AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic" } } },
    } }
}

pub struct Fixture {
    pub crypt: Crypt,
    /// With a schema map for test.test: encrypt goes to NEED_MONGO_MARKINGS.
    pub crypt_with_schema: Crypt,
    pub key: RawDocumentBuf,
    pub key_id: Vec<u8>,
    pub ciphertext: RawDocumentBuf,
}

fn build(rust_crypto: bool) -> Fixture {
    let builder = || {
        let b = Crypt::builder();
        if rust_crypto {
            b.rust_crypto()
        } else {
            b
        }
    };
    let crypt = builder().kms_providers(&all_providers()).unwrap().build().unwrap();
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    let key = ctx.finalize_owned().unwrap();
    let key_id = key.get_binary("_id").unwrap().bytes.to_vec();
    let crypt_with_schema =
        builder().kms_providers(&all_providers()).unwrap().schema_map(&schema_map(&key_id)).unwrap().build().unwrap();
    let mut ctx = crypt
        .ctx()
        .key_id(&key_id)
        .unwrap()
        .algorithm(&libmongocrypt::Algorithm::Deterministic)
        .unwrap()
        .explicit_encrypt(&rawdoc! { "v": "457-55-5462" })
        .unwrap();
    let ciphertext = drive(&mut ctx, &key).expect("a valid encryption");
    Fixture { crypt, crypt_with_schema, key, key_id, ciphertext }
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build(false))
}

/// The same with the built-in Rust crypto provider for every primitive.
pub fn rust_crypto_fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build(true))
}

/// `Ok` or a typed error; every error formats.
pub fn ok<T>(r: libmongocrypt::Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            let _ = (e.kind(), e.code(), e.to_string());
            None
        }
    }
}

/// A valid mongocryptd reply marking `ssn` of `{"find": "test", "filter": {"ssn": ...}}`.
pub fn markings_reply(key_id: &[u8]) -> RawDocumentBuf {
    let inner = bson::serialize_to_vec(&doc! { "a": 1, "ki": uuid(key_id), "v": "457-55-5462" }).unwrap();
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&inner);
    let marking = Binary { subtype: BinarySubtype::Encrypted, bytes };
    RawDocumentBuf::try_from(&doc! {
        "schemaRequiresEncryption": true, "ok": 1, "hasEncryptedPlaceholders": true,
        "result": { "find": "test", "filter": { "ssn": marking } },
    })
    .unwrap()
}

/// Drives `ctx` to the end with valid input (the local key; KMS requests get an error reply); the result, if any.
pub fn drive(ctx: &mut Ctx, key: &RawDocumentBuf) -> Option<RawDocumentBuf> {
    for _ in 0..16 {
        match ctx.state() {
            State::NeedMongoCollinfo | State::NeedMongoCollinfoWithDb => ok(ctx.mongo_done())?,
            State::NeedMongoMarkings => {
                let id = fixture().key_id.clone();
                ok(ctx.mongo_feed(&markings_reply(&id)))?;
                ok(ctx.mongo_done())?;
            }
            State::NeedMongoKeys => {
                ok(ctx.mongo_op().map(drop))?;
                ok(ctx.mongo_feed(key))?;
                ok(ctx.mongo_done())?;
            }
            State::NeedKms => {
                let mut scope = ctx.kms_scope().ok()?;
                while let Some(mut kms) = scope.next_kms_ctx() {
                    let _ = ok(kms.feed(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"));
                }
                ok(scope.done())?;
            }
            State::NeedKmsCredentials => ok(ctx.provide_kms_providers(&all_providers()))?,
            State::Ready => return ok(ctx.finalize_owned()),
            _ => return None,
        }
    }
    None
}
