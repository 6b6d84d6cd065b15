//! Explicit encryption and decryption through the runner: the known-answer ciphertexts of
//! `tests/data/open/fle1-explicit-local` (local KEK) and the AWS key of the auto-encryption example.

use crate::runner_common;

use libmongocrypt::bson::{rawdoc, Binary, RawDocumentBuf};
use libmongocrypt::state_machine::run;
use libmongocrypt::Algorithm;
use runner_common::*;

const DIR: &str = "fle1-explicit-local";
/// UUID ABCDEFAB-1234-9876-1234-123456789012.
const KEY_ID: [u8; 16] =
    [0xAB, 0xCD, 0xEF, 0xAB, 0x12, 0x34, 0x98, 0x76, 0x12, 0x34, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12];

fn local_io() -> MockIo {
    MockIo::new()
        .key(load_raw(&format!("{DIR}/key-ABCDEFAB-local.json")))
        .key(load_raw(&format!("{DIR}/key-12345678-local.json")))
}

fn key_filter() -> RawDocumentBuf {
    extjson_raw(
        r#"{"$or": [{"_id": {"$in": [{"$binary": {"base64": "q83vqxI0mHYSNBI0VniQEg==", "subType": "04"}}]}},
                    {"keyAltNames": {"$in": []}}]}"#,
    )
}

#[test]
fn deterministic_encryption_is_the_known_answer() {
    let crypt = crypt();
    let io = local_io();
    let mut ctx = crypt
        .ctx()
        .key_id(&KEY_ID)
        .unwrap()
        .algorithm(&Algorithm::Deterministic)
        .unwrap()
        .explicit_encrypt(&rawdoc! { "v": "foo" })
        .unwrap();
    let ciphertext = run(&mut ctx, &io).unwrap().expect("{v: ciphertext}");
    assert_eq!(ciphertext.as_bytes(), load_raw(&format!("{DIR}/FLE1DeterministicEncryptedValue.json")).as_bytes());
    // Only the requested key was fetched; a local KEK needs no KMS round.
    assert_eq!(io.calls(), [Call::FindKeys(key_filter())]);
}

#[test]
fn explicit_decrypt_of_both_algorithms() {
    let crypt = crypt();
    for file in ["FLE1DeterministicEncryptedValue.json", "FLE1RandomEncryptedValue.json"] {
        let io = local_io();
        let mut ctx = crypt.ctx().explicit_decrypt(&load_raw(&format!("{DIR}/{file}"))).unwrap();
        assert_eq!(run(&mut ctx, &io).unwrap(), Some(rawdoc! { "v": "foo" }), "{file}");
        if file.starts_with("FLE1Deterministic") {
            assert_eq!(io.calls(), [Call::FindKeys(key_filter())]);
        } else {
            // Same Crypt: the key is cached, no I/O.
            assert!(io.calls().is_empty(), "{:?}", io.calls());
        }
    }
}

#[test]
fn random_encryption_differs_each_time_and_decrypts() {
    let crypt = crypt();
    let io = local_io();
    let encrypt = || {
        let mut ctx = crypt
            .ctx()
            .key_id(&KEY_ID)
            .unwrap()
            .algorithm(&Algorithm::Random)
            .unwrap()
            .explicit_encrypt(&rawdoc! { "v": "foo" })
            .unwrap();
        run(&mut ctx, &io).unwrap().unwrap()
    };
    let (first, second) = (encrypt(), encrypt());
    assert_ne!(first, second);
    // Blob subtype 2 (Random), the key id, original type 2 (string).
    let prefix = Binary::from_base64("AqvN76sSNJh2EjQSNFZ4kBIC", None).unwrap();
    for ciphertext in [first, second] {
        let bytes = ciphertext.get_binary("v").unwrap().bytes;
        assert!(bytes.starts_with(&prefix.bytes), "{bytes:02x?}");
        let mut ctx = crypt.ctx().explicit_decrypt(&ciphertext).unwrap();
        assert_eq!(run(&mut ctx, &io).unwrap(), Some(rawdoc! { "v": "foo" }));
    }
    assert_eq!(io.trace(), ["find_keys"], "the key is fetched once, then cached");
}

#[test]
fn explicit_encryption_by_alt_name_with_an_aws_key() {
    // Deterministic encryption by keyAltName gives the ciphertext of the auto-encryption example.
    let dir = "csfle-auto-aws-example";
    let crypt = crypt();
    let io = MockIo::new()
        .key(load_raw(&format!("{dir}/key-document.json")))
        .kms_reply(http_reply(&format!("{dir}/kms-decrypt-reply.txt")));
    let mut ctx = crypt
        .ctx()
        .key_alt_name("keyDocumentName")
        .unwrap()
        .algorithm(&Algorithm::Deterministic)
        .unwrap()
        .explicit_encrypt(&rawdoc! { "v": "457-55-5462" })
        .unwrap();
    let ciphertext = run(&mut ctx, &io).unwrap().unwrap();

    let expected = load_raw(&format!("{dir}/expected-encrypted-cmd.json"));
    let expected_ssn = expected.get_document("filter").unwrap().get_binary("ssn").unwrap();
    assert_eq!(ciphertext.get_binary("v").unwrap(), expected_ssn);
    assert_eq!(io.trace(), ["find_keys", "kms_request"]);
    assert_eq!(
        io.calls()[0],
        Call::FindKeys(extjson_raw(
            r#"{"$or": [{"_id": {"$in": []}}, {"keyAltNames": {"$in": ["keyDocumentName"]}}]}"#
        ))
    );

    let mut ctx = crypt.ctx().explicit_decrypt(&ciphertext).unwrap();
    assert_eq!(run(&mut ctx, &io).unwrap(), Some(rawdoc! { "v": "457-55-5462" }));
}
