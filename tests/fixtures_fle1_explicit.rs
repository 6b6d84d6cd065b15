//! MANIFEST section 1, `fle1-explicit-local/`: explicit CSFLE with a local KEK (libmongocrypt's
//! `test-mongocrypt-ctx-decrypt.c::_test_explicit_decrypt`).

mod common;

use common::*;
use libmongocrypt::bson::{doc, rawdoc, Binary, Bson, RawDocumentBuf};
use libmongocrypt::{Algorithm, Crypt, State};

const DET: &str = "fle1-explicit-local/FLE1DeterministicEncryptedValue.json";
const RANDOM: &str = "fle1-explicit-local/FLE1RandomEncryptedValue.json";
const PLACEHOLDER: &str = "fle1-explicit-local/FLE1EncryptionPlaceholder.json";
const KEY: &str = "fle1-explicit-local/key-ABCDEFAB-local.json";
const WRONG_KEY: &str = "fle1-explicit-local/key-12345678-local.json";

fn key_vault() -> Mock {
    Mock { keys: vec![load_raw(KEY)], ..Mock::default() }
}

/// The filter MANIFEST gives for a lookup of ABCDEFAB by id.
fn expected_key_filter() -> RawDocumentBuf {
    raw(&doc! { "$or": [ { "_id": { "$in": [uuid_bson(&key_abcdefab())] } }, { "keyAltNames": { "$in": [] } } ] })
}

fn decrypt(crypt: &Crypt, input: &RawDocumentBuf, mock: &Mock) -> Trace {
    let mut ctx = crypt.ctx().explicit_decrypt(input).expect("explicit_decrypt_init");
    drive(&mut ctx, mock)
}

fn encrypt_det_foo(crypt: &Crypt) -> Trace {
    let mut ctx = crypt
        .ctx()
        .key_id(&key_abcdefab())
        .and_then(|b| b.algorithm(&Algorithm::Deterministic))
        .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": "foo" }))
        .expect("explicit_encrypt_init");
    drive(&mut ctx, &key_vault())
}

fn encrypt_random_foo(crypt: &Crypt) -> RawDocumentBuf {
    let mut ctx = crypt
        .ctx()
        .key_id(&key_abcdefab())
        .and_then(|b| b.algorithm(&Algorithm::Random))
        .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": "foo" }))
        .expect("explicit_encrypt_init");
    drive(&mut ctx, &key_vault()).output().to_owned()
}

#[test]
fn decrypt_deterministic_value() {
    let t = decrypt(&crypt(), &load_raw(DET), &key_vault());
    assert_eq!(t.states, [State::NeedMongoKeys, State::Ready, State::Done]);
    assert_bson_eq(t.op(State::NeedMongoKeys), &expected_key_filter());
    assert_eq!(t.fed_keys.len(), 1);
    assert_bson_eq(t.output(), &rawdoc! { "v": "foo" });
}

#[test]
fn decrypt_random_value() {
    let t = decrypt(&crypt(), &load_raw(RANDOM), &key_vault());
    assert_eq!(t.states, [State::NeedMongoKeys, State::Ready, State::Done]);
    assert_bson_eq(t.op(State::NeedMongoKeys), &expected_key_filter());
    assert_bson_eq(t.output(), &rawdoc! { "v": "foo" });
}

#[test]
fn deterministic_known_answer_is_byte_identical() {
    let t = encrypt_det_foo(&crypt());
    assert_eq!(t.states, [State::NeedMongoKeys, State::Ready, State::Done]);
    assert_bson_eq(t.op(State::NeedMongoKeys), &expected_key_filter());
    assert_bson_eq(t.output(), &load_raw(DET));
}

#[test]
fn deterministic_is_deterministic_across_crypts() {
    let a = encrypt_det_foo(&crypt());
    let b = encrypt_det_foo(&crypt());
    assert_eq!(a.output().as_bytes(), b.output().as_bytes());
}

#[test]
fn random_round_trip() {
    let crypt = crypt();
    let first = encrypt_random_foo(&crypt);
    let second = encrypt_random_foo(&crypt);
    let ciphertext = |d: &RawDocumentBuf| -> Vec<u8> {
        let b = d.get_binary("v").expect("v is a binary");
        assert_eq!(u8::from(b.subtype), 6, "ciphertext subtype");
        b.bytes.to_vec()
    };
    let (c1, c2) = (ciphertext(&first), ciphertext(&second));
    assert_ne!(c1, c2, "two Random encryptions are equal");
    // base64 "AqvN76sSNJh2EjQSNFZ4kBIC" is exactly these 18 bytes: type 2 (Random), key id ABCDEFAB, BSON type 2.
    let prefix = b64("AqvN76sSNJh2EjQSNFZ4kBIC");
    assert_eq!(prefix.len(), 18);
    for c in [&c1, &c2] {
        assert_eq!(&c[..18], &prefix[..], "Random ciphertext prefix");
    }
    // Same layout as the fixture's Random value, but a different IV.
    let fixture_bytes = match load_doc(RANDOM).get("v") {
        Some(Bson::Binary(Binary { bytes, .. })) => bytes.clone(),
        other => panic!("fixture v: {other:?}"),
    };
    assert_eq!(fixture_bytes.len(), c1.len(), "same plaintext, same ciphertext length");
    assert_ne!(fixture_bytes, c1);

    for d in [&first, &second] {
        let t = decrypt(&crypt, d, &Mock::default());
        assert_eq!(t.states, [State::Ready, State::Done], "the key is cached by the encryptions");
        assert_bson_eq(t.output(), &rawdoc! { "v": "foo" });
    }
}

#[test]
fn second_decrypt_uses_the_key_cache() {
    let crypt = crypt();
    let first = decrypt(&crypt, &load_raw(DET), &key_vault());
    assert_eq!(first.states, [State::NeedMongoKeys, State::Ready, State::Done]);
    // No key vault this time: a NEED_MONGO_KEYS state would fail the drive.
    let second = decrypt(&crypt, &load_raw(DET), &Mock::default());
    assert_eq!(second.states, [State::Ready, State::Done]);
    assert_bson_eq(second.output(), &rawdoc! { "v": "foo" });
    // The Random value uses the same key.
    let third = decrypt(&crypt, &load_raw(RANDOM), &Mock::default());
    assert_eq!(third.states, [State::Ready, State::Done]);
    assert_bson_eq(third.output(), &rawdoc! { "v": "foo" });
}

#[test]
fn key_cache_is_per_crypt() {
    let a = crypt();
    decrypt(&a, &load_raw(DET), &key_vault()).output();
    let t = decrypt(&crypt(), &load_raw(DET), &key_vault());
    assert_eq!(t.states, [State::NeedMongoKeys, State::Ready, State::Done]);
}

#[test]
fn feeding_an_unrequested_key_is_an_error() {
    // MANIFEST: "feeding an unrequested key may error". It does: libmongocrypt checks each fed key against its
    // requests.
    let crypt = crypt();
    let mut ctx = crypt.ctx().explicit_decrypt(&load_raw(DET)).unwrap();
    assert_eq!(ctx.state(), State::NeedMongoKeys);
    let wrong = load_raw(WRONG_KEY);
    assert!(!KeyFilter::parse(ctx.mongo_op().unwrap()).matches(&wrong), "the filter does not ask for 12345678");
    let message = err_message(ctx.mongo_feed(&wrong));
    assert!(message.contains("unexpected key returned"), "{message}");
    assert_eq!(ctx.state(), State::Error);
    assert_eq!(ctx.status().unwrap_err().message(), message);
    assert!(ctx.finalize().is_err(), "finalize after an error");
}

#[test]
fn wrong_key_is_an_error() {
    // MANIFEST: only the wrong key available. The hand driver feeds only keys matching the filter, so nothing is fed.
    let t = decrypt(&crypt(), &load_raw(DET), &Mock { keys: vec![load_raw(WRONG_KEY)], ..Mock::default() });
    assert_eq!(t.states, [State::NeedMongoKeys, State::Error]);
    assert!(t.fed_keys.is_empty());
    assert!(t.error_message().contains("not all keys requested were satisfied"), "{}", t.error_message());
}

#[test]
fn deterministic_double_is_rejected() {
    let crypt = crypt();
    let result = crypt
        .ctx()
        .key_id(&key_abcdefab())
        .and_then(|b| b.algorithm(&Algorithm::Deterministic))
        .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": 1.5 }));
    let message = err_message(result.map(|c| c.state()));
    assert!(message.contains("BSON type invalid for deterministic encryption"), "{message}");
    // The same double under Random is fine.
    let mut ctx = crypt
        .ctx()
        .key_id(&key_abcdefab())
        .and_then(|b| b.algorithm(&Algorithm::Random))
        .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": 1.5 }))
        .unwrap();
    let t = drive(&mut ctx, &key_vault());
    let mut ctx = crypt.ctx().explicit_decrypt(t.output()).unwrap();
    assert_bson_eq(drive(&mut ctx, &Mock::default()).output(), &rawdoc! { "v": 1.5 });
}

#[test]
fn placeholder_decrypt_depends_on_version() {
    let input = load_raw(PLACEHOLDER);
    let crypt = crypt();
    let result = crypt.ctx().explicit_decrypt(&input);
    // Version-dependent (MANIFEST section 1): 1.7.2 passes a marking (FLE blob subtype 0) through unchanged; 1.21.0
    // rejects it at init (newer libraries check the blob subtype of what they decrypt). 1.10.1, 1.13.1 and 1.17.0
    // still pass it through, so the check is taken to come with 1.21.0 (1.18 to 1.20 are not tested).
    let old = |result: libmongocrypt::Result<libmongocrypt::Ctx>| {
        let mut ctx = result.expect("1.7.2 accepts a placeholder");
        let t = drive(&mut ctx, &Mock::default());
        assert_eq!(t.states, [State::Ready, State::Done]);
        assert_bson_eq(t.output(), &input);
    };
    let new = |result: libmongocrypt::Result<libmongocrypt::Ctx>| {
        let message = err_message(result.map(|c| c.state()));
        assert!(message.contains("unsupported FLE blob subtype: 0"), "{message}");
    };
    if linked_at_least("1.21.0") {
        new(result);
    } else {
        old(result);
    }
}
