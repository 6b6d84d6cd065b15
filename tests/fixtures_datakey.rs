//! MANIFEST section 3, `datakey-local-aws/`: data key creation with local and AWS key encryption keys
//! (libmongocrypt's `test-mongocrypt-datakey.c`).

mod common;

use common::*;
use libmongocrypt::bson::{doc, rawdoc, Bson, Document, RawDocumentBuf};
use libmongocrypt::{Algorithm, KeyEncryptionKey, State};

const AWS_REPLY: &str = "datakey-local-aws/kms-aws-encrypt-response.txt";
const AWS_KEY_ARN: &str = "arn:aws:kms:us-east-1:579766882180:key/89fcc2c4-08b0-4bd9-9f25-e30687b580d0";

fn aws_kek() -> KeyEncryptionKey {
    KeyEncryptionKey::aws("aws", "us-east-1", AWS_KEY_ARN)
}

/// The `CiphertextBlob` of the mocked AWS encrypt reply, decoded.
fn reply_ciphertext_blob() -> Vec<u8> {
    let reply = read_open(AWS_REPLY);
    let body = &reply[reply.find("\n\n").expect("header/body separator") + 2..];
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    b64(json["CiphertextBlob"].as_str().unwrap())
}

/// The JSON body of a KMS request.
fn request_body(message: &str) -> serde_json::Value {
    let body = &message[message.find("\r\n\r\n").expect("end of headers") + 4..];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("KMS request body {body:?}: {e}"))
}

fn assert_common_key_fields(key: &Document) {
    match key.get("_id") {
        Some(Bson::Binary(b)) => {
            assert_eq!(u8::from(b.subtype), 4, "_id is a UUID");
            assert_eq!(b.bytes.len(), 16);
        }
        other => panic!("_id: {other:?}"),
    }
    assert_eq!(key.get_i32("status").unwrap(), 0);
    let created = key.get_datetime("creationDate").unwrap();
    let updated = key.get_datetime("updateDate").unwrap();
    let now = libmongocrypt::bson::DateTime::now().timestamp_millis();
    for date in [created, updated] {
        assert!((now - date.timestamp_millis()).abs() < 600_000, "date {date} is not about now");
    }
}

#[test]
fn local_datakey_with_key_alt_names() {
    let crypt = crypt();
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::local("local"))
        .and_then(|b| b.key_alt_name("first"))
        .and_then(|b| b.key_alt_name("second"))
        .and_then(|b| b.datakey())
        .expect("datakey_init");
    let t = drive(&mut ctx, &Mock::default());
    assert_eq!(t.states, [State::Ready, State::Done]);
    let key = to_doc(t.output());
    assert_common_key_fields(&key);
    assert_eq!(key.get_binary_generic("keyMaterial").unwrap().len(), 160, "96-byte DEK wrapped by the local KEK");
    assert_eq!(key.get_document("masterKey").unwrap(), &doc! { "provider": "local" });
    let names: Vec<&str> = key.get_array("keyAltNames").unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["first", "second"], "both names, observed order {names:?}");

    // The key works, looked up by either name.
    let crypt2 = common::crypt();
    for name in ["first", "second"] {
        let mut ctx = crypt2
            .ctx()
            .key_alt_name(name)
            .and_then(|b| b.algorithm(&Algorithm::Random))
            .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": "secret" }))
            .unwrap();
        let t = drive(&mut ctx, &Mock { keys: vec![t.output().to_owned()], ..Mock::default() });
        assert!(t.error.is_none(), "{:?}", t.error);
        let mut ctx = crypt2.ctx().explicit_decrypt(t.output()).unwrap();
        assert_bson_eq(drive(&mut ctx, &Mock::default()).output(), &rawdoc! { "v": "secret" });
    }
}

#[test]
fn two_local_datakeys_differ() {
    let crypt = crypt();
    let make = || {
        let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
        to_doc(drive(&mut ctx, &Mock::default()).output())
    };
    let (a, b) = (make(), make());
    assert_ne!(a.get("_id"), b.get("_id"));
    assert_ne!(a.get("keyMaterial"), b.get("keyMaterial"));
}

/// A data key made from ABCDEFAB's DEK, with `_id` replaced by ABCDEFAB's UUID.
fn abcdefab_from_material() -> RawDocumentBuf {
    let material = hex(&read_open("fle1-explicit-local/key-ABCDEFAB-material.hex.txt"));
    assert_eq!(material.len(), 96);
    let crypt = crypt();
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::local("local"))
        .and_then(|b| b.key_material(&material))
        .and_then(|b| b.datakey())
        .unwrap();
    let t = drive(&mut ctx, &Mock::default());
    assert_eq!(t.states, [State::Ready, State::Done]);
    let mut key = to_doc(t.output());
    assert_common_key_fields(&key);
    key.insert("_id", uuid_bson(&key_abcdefab()));
    raw(&key)
}

#[test]
fn custom_key_material_decrypts_the_fle1_fixture() {
    let key = abcdefab_from_material();
    let crypt = crypt();
    let mut ctx =
        crypt.ctx().explicit_decrypt(&load_raw("fle1-explicit-local/FLE1DeterministicEncryptedValue.json")).unwrap();
    let t = drive(&mut ctx, &Mock { keys: vec![key.clone()], ..Mock::default() });
    assert_eq!(t.states, [State::NeedMongoKeys, State::Ready, State::Done], "{:?}", t.error);
    assert_bson_eq(t.output(), &rawdoc! { "v": "foo" });

    // And it re-creates the known-answer ciphertext.
    let crypt = common::crypt();
    let mut ctx = crypt
        .ctx()
        .key_id(&key_abcdefab())
        .and_then(|b| b.algorithm(&Algorithm::Deterministic))
        .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": "foo" }))
        .unwrap();
    let t = drive(&mut ctx, &Mock { keys: vec![key], ..Mock::default() });
    assert_bson_eq(t.output(), &load_raw("fle1-explicit-local/FLE1DeterministicEncryptedValue.json"));
}

#[test]
fn key_material_of_wrong_length_is_rejected() {
    let crypt = crypt();
    let result = crypt.ctx().key_material(&[0u8; 95]);
    let message = err_message(result.map(|_| ()));
    assert!(message.contains("keyMaterial") && message.contains("96"), "{message}");
}

#[test]
fn aws_datakey_with_mocked_kms_reply() {
    let crypt = crypt();
    let mut ctx = crypt.ctx().key_encryption_key(&aws_kek()).and_then(|b| b.datakey()).expect("datakey_init");
    let t = drive(&mut ctx, &Mock { kms: vec![http_reply(AWS_REPLY)], ..Mock::default() });
    assert_eq!(t.states, [State::NeedKms, State::Ready, State::Done], "{:?}", t.error);
    assert_eq!(t.kms.len(), 1);
    let kms = &t.kms[0];
    assert_eq!(kms.provider, "aws");
    assert_eq!(kms.endpoint, "kms.us-east-1.amazonaws.com:443");
    let message = kms.message_str();
    assert!(message.starts_with("POST / HTTP/1.1\r\n"), "{message}");
    assert!(message.contains("X-Amz-Target:TrentService.Encrypt\r\n"), "{message}");
    assert!(message.contains("Host:kms.us-east-1.amazonaws.com\r\n"), "{message}");
    assert!(message.contains("Credential=example/"), "{message}");
    let body = request_body(&message);
    assert_eq!(body["KeyId"], AWS_KEY_ARN);
    assert_eq!(b64(body["Plaintext"].as_str().unwrap()).len(), 96, "the new DEK is sent to be wrapped");

    let key = to_doc(t.output());
    assert_common_key_fields(&key);
    assert_eq!(key.get_binary_generic("keyMaterial").unwrap(), &reply_ciphertext_blob());
    assert_eq!(
        key.get_document("masterKey").unwrap(),
        &doc! { "provider": "aws", "region": "us-east-1", "key": AWS_KEY_ARN }
    );
}

#[test]
fn aws_datakey_sends_the_custom_key_material() {
    let material: Vec<u8> = (0..96).collect();
    let crypt = crypt();
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&aws_kek())
        .and_then(|b| b.key_material(&material))
        .and_then(|b| b.datakey())
        .unwrap();
    let t = drive(&mut ctx, &Mock { kms: vec![http_reply(AWS_REPLY)], ..Mock::default() });
    assert_eq!(b64(request_body(&t.kms[0].message_str())["Plaintext"].as_str().unwrap()), material);
}

#[test]
fn aws_datakey_with_custom_endpoint() {
    let crypt = crypt();
    let mut ctx = crypt.ctx().key_encryption_key(&aws_kek().endpoint("example.com")).unwrap().datakey().unwrap();
    let t = drive(&mut ctx, &Mock { kms: vec![http_reply(AWS_REPLY)], ..Mock::default() });
    assert_eq!(t.states, [State::NeedKms, State::Ready, State::Done], "{:?}", t.error);
    assert_eq!(t.kms[0].endpoint, "example.com:443");
    assert!(t.kms[0].message_str().contains("Host:example.com\r\n"), "{}", t.kms[0].message_str());
    let key = to_doc(t.output());
    assert_eq!(key.get_document("masterKey").unwrap().get_str("endpoint").unwrap(), "example.com");
    assert_eq!(key.get_binary_generic("keyMaterial").unwrap(), &reply_ciphertext_blob());
}

#[test]
fn aws_datakey_with_explicit_port() {
    let crypt = crypt();
    let mut ctx = crypt.ctx().key_encryption_key(&aws_kek().endpoint("example.com:8443")).unwrap().datakey().unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    let kms = scope.next_kms_ctx().expect("one KMS request");
    assert_eq!(kms.endpoint().unwrap(), "example.com:8443");
    assert!(scope.next_kms_ctx().is_none(), "only one request");
}
