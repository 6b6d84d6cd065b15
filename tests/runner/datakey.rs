//! Data key creation and rewrapping through the runner: local and AWS key encryption keys (AWS KMS replies from
//! `tests/data/open/datakey-local-aws`), and keys that still decrypt after a rewrap.

use crate::runner_common;

use libmongocrypt::bson::spec::BinarySubtype;
use libmongocrypt::bson::{doc, rawdoc, Binary, Document, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::run;
use libmongocrypt::{Algorithm, KeyEncryptionKey};
use runner_common::*;

const ARN: &str = "arn:aws:kms:us-east-1:579766882180:key/89fcc2c4-08b0-4bd9-9f25-e30687b580d0";
const FLE1: &str = "fle1-explicit-local";

/// The `CiphertextBlob` of the mocked AWS Encrypt reply, decoded.
fn encrypt_reply_blob() -> Vec<u8> {
    let reply = String::from_utf8(http_reply("datakey-local-aws/kms-aws-encrypt-response.txt")).unwrap();
    let body = &reply[reply.find("\r\n\r\n").unwrap() + 4..];
    let start = body.find("\"CiphertextBlob\": \"").unwrap() + "\"CiphertextBlob\": \"".len();
    let blob = &body[start..start + body[start..].find('"').unwrap()];
    Binary::from_base64(blob, None).unwrap().bytes
}

fn aws_io() -> MockIo {
    MockIo::new().kms_reply(http_reply("datakey-local-aws/kms-aws-encrypt-response.txt"))
}

/// A key document with some fields replaced.
fn with_fields(key: &RawDocument, fields: Document) -> RawDocumentBuf {
    let mut key = Document::try_from(key).unwrap();
    for (name, value) in fields {
        key.insert(name, value);
    }
    RawDocumentBuf::try_from(&key).unwrap()
}

/// Decrypts the FLE1 known-answer ciphertext (key ABCDEFAB) with `key` as the only key in the vault.
fn decrypts_known_answer(key: RawDocumentBuf) {
    let crypt = crypt();
    let io = MockIo::new().key(key);
    let mut ctx =
        crypt.ctx().explicit_decrypt(&load_raw(&format!("{FLE1}/FLE1DeterministicEncryptedValue.json"))).unwrap();
    assert_eq!(run(&mut ctx, &io).unwrap(), Some(rawdoc! { "v": "foo" }));
}

#[test]
fn local_data_key_with_alt_names() {
    let crypt = crypt();
    let io = MockIo::new();
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::local("local"))
        .unwrap()
        .key_alt_name("first")
        .unwrap()
        .key_alt_name("second")
        .unwrap()
        .datakey()
        .unwrap();
    let key = run(&mut ctx, &io).unwrap().expect("a key document");
    assert!(io.calls().is_empty(), "a local KEK needs no I/O");

    let id = key.get_binary("_id").unwrap();
    assert_eq!((id.subtype, id.bytes.len()), (BinarySubtype::Uuid, 16));
    let material = key.get_binary("keyMaterial").unwrap();
    assert_eq!((material.subtype, material.bytes.len()), (BinarySubtype::Generic, 160));
    assert_eq!(key.get_document("masterKey").unwrap(), rawdoc! { "provider": "local" }.as_ref());
    assert_eq!(key.get_i32("status").unwrap(), 0);
    assert!(key.get_datetime("creationDate").is_ok() && key.get_datetime("updateDate").is_ok());
    let mut names: Vec<&str> =
        key.get_array("keyAltNames").unwrap().into_iter().map(|n| n.unwrap().as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["first", "second"]);

    // The key works: encrypt by one of its names, decrypt.
    let io = MockIo::new().key(key);
    let mut ctx = crypt
        .ctx()
        .key_alt_name("second")
        .unwrap()
        .algorithm(&Algorithm::Random)
        .unwrap()
        .explicit_encrypt(&rawdoc! { "v": 42 })
        .unwrap();
    let ciphertext = run(&mut ctx, &io).unwrap().unwrap();
    let mut ctx = crypt.ctx().explicit_decrypt(&ciphertext).unwrap();
    assert_eq!(run(&mut ctx, &io).unwrap(), Some(rawdoc! { "v": 42 }));
}

#[test]
fn local_data_key_with_given_material_decrypts_the_known_answer() {
    let material = hex(&read_open(&format!("{FLE1}/key-ABCDEFAB-material.hex.txt")));
    assert_eq!(material.len(), 96);
    let crypt = crypt();
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::local("local"))
        .unwrap()
        .key_material(&material)
        .unwrap()
        .datakey()
        .unwrap();
    let key = run(&mut ctx, &MockIo::new()).unwrap().unwrap();
    // UUID ABCDEFAB-1234-9876-1234-123456789012, the key of the known answer.
    let abcdefab = Binary::from_base64("q83vqxI0mHYSNBI0VniQEg==", BinarySubtype::Uuid).unwrap();
    let key = with_fields(&key, doc! { "_id": abcdefab });
    decrypts_known_answer(key);
}

#[test]
fn aws_data_key_wraps_through_kms() {
    let crypt = crypt();
    let io = aws_io();
    let mut ctx =
        crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", ARN)).unwrap().datakey().unwrap();
    let key = run(&mut ctx, &io).unwrap().unwrap();

    assert_eq!(key.get_binary("keyMaterial").unwrap().bytes, encrypt_reply_blob());
    assert_eq!(
        key.get_document("masterKey").unwrap(),
        rawdoc! { "provider": "aws", "region": "us-east-1", "key": ARN }.as_ref()
    );
    let calls = io.calls();
    let [Call::Kms { provider, endpoint, message, .. }] = calls.as_slice() else { panic!("{calls:?}") };
    assert_eq!((provider.as_str(), endpoint.as_str()), ("aws", "kms.us-east-1.amazonaws.com:443"));
    let message = String::from_utf8_lossy(message);
    assert!(message.contains("\r\nX-Amz-Target:TrentService.Encrypt\r\n"), "{message}");
    assert!(message.contains(&format!("\"KeyId\": \"{ARN}\"")), "{message}");
}

#[test]
fn aws_data_key_with_a_custom_endpoint() {
    let crypt = crypt();
    let io = aws_io();
    let kek = KeyEncryptionKey::aws("aws", "us-east-1", ARN).endpoint("example.com");
    let mut ctx = crypt.ctx().key_encryption_key(&kek).unwrap().datakey().unwrap();
    let key = run(&mut ctx, &io).unwrap().unwrap();
    assert_eq!(key.get_document("masterKey").unwrap().get_str("endpoint").unwrap(), "example.com");
    let calls = io.calls();
    let [Call::Kms { endpoint, .. }] = calls.as_slice() else { panic!("{calls:?}") };
    assert_eq!(endpoint, "example.com:443");
}

#[test]
fn rewrap_local_to_local_keeps_the_keys_usable() {
    let crypt = crypt();
    let originals =
        [load_raw(&format!("{FLE1}/key-ABCDEFAB-local.json")), load_raw(&format!("{FLE1}/key-12345678-local.json"))];
    let io = MockIo::new().key(originals[0].clone()).key(originals[1].clone());
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::local("local"))
        .unwrap()
        .rewrap_many_datakey(&rawdoc! {})
        .unwrap();
    let result = run(&mut ctx, &io).unwrap().expect("{v: [...]}");
    assert_eq!(io.calls(), [Call::FindKeys(rawdoc! {})], "the filter is passed through, no KMS for local keys");

    let updates: Vec<&RawDocument> =
        result.get_array("v").unwrap().into_iter().map(|u| u.unwrap().as_document().unwrap()).collect();
    assert_eq!(updates.len(), 2);
    for (update, original) in updates.iter().zip(&originals) {
        assert_eq!(update.get("_id").unwrap(), original.get("_id").unwrap());
        assert_eq!(update.get_document("masterKey").unwrap(), rawdoc! { "provider": "local" }.as_ref());
        let (new, old) = (update.get_binary("keyMaterial").unwrap(), original.get_binary("keyMaterial").unwrap());
        assert_eq!(new.bytes.len(), old.bytes.len());
        assert_ne!(new.bytes, old.bytes, "re-encrypted under a fresh IV");
    }
    // The rewrapped ABCDEFAB, as the key vault would hold it after the bulk update, still decrypts.
    let update = Document::try_from(updates[0]).unwrap();
    decrypts_known_answer(with_fields(&originals[0], update));
}

#[test]
fn rewrap_local_to_aws_goes_through_kms() {
    let crypt = crypt();
    let original = load_raw(&format!("{FLE1}/key-ABCDEFAB-local.json"));
    let io = aws_io().key(original.clone());
    let kek = KeyEncryptionKey::aws("aws", "us-east-1", ARN);
    let mut ctx = crypt.ctx().key_encryption_key(&kek).unwrap().rewrap_many_datakey(&rawdoc! {}).unwrap();
    let result = run(&mut ctx, &io).unwrap().unwrap();
    assert_eq!(io.trace(), ["find_keys", "kms_request"]);

    let updates = result.get_array("v").unwrap();
    let update = updates.into_iter().next().unwrap().unwrap();
    let update = update.as_document().unwrap();
    assert_eq!(update.get("_id").unwrap(), original.get("_id").unwrap());
    assert_eq!(update.get_binary("keyMaterial").unwrap().bytes, encrypt_reply_blob());
    assert_eq!(update.get_document("masterKey").unwrap().get_str("provider").unwrap(), "aws");
}

#[test]
fn rewrap_of_no_keys_is_done_without_a_result() {
    let crypt = crypt();
    let io = MockIo::new();
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::local("local"))
        .unwrap()
        .rewrap_many_datakey(&rawdoc! { "x": 1 })
        .unwrap();
    assert_eq!(run(&mut ctx, &io).unwrap(), None);
    assert_eq!(ctx.state(), libmongocrypt::State::Done);
    assert_eq!(io.calls(), [Call::FindKeys(rawdoc! { "x": 1 })]);
}
