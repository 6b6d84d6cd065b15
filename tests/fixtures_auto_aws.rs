//! MANIFEST section 2, `csfle-auto-aws-example/`: automatic encryption and decryption with an AWS-wrapped key, driven
//! by hand as libmongocrypt's `test/example-state-machine.c` does (its normalized output is
//! `tests/data/example/reference-output.normalized.txt`).

mod common;

use common::*;
use libmongocrypt::bson::{doc, rawdoc, Bson, RawDocumentBuf};
use libmongocrypt::{Algorithm, State};

const DIR: &str = "csfle-auto-aws-example";

fn file(name: &str) -> String {
    format!("{DIR}/{name}")
}

fn example_mock() -> Mock {
    Mock {
        collinfo: vec![load_raw(&file("collection-info.json"))],
        markings: Some(load_raw(&file("mongocryptd-reply.json"))),
        keys: vec![load_raw(&file("key-document.json"))],
        kms: vec![http_reply(&file("kms-decrypt-reply.txt"))],
        ..Mock::default()
    }
}

fn expected_key_filter() -> RawDocumentBuf {
    raw(&doc! { "$or": [ { "_id": { "$in": [uuid_bson(&key_aaaa())] } }, { "keyAltNames": { "$in": [] } } ] })
}

/// The ciphertext of "457-55-5462" in the expected command.
fn expected_ciphertext() -> Vec<u8> {
    match load_doc(&file("expected-encrypted-cmd.json")).get_document("filter").unwrap().get("ssn") {
        Some(Bson::Binary(b)) => b.bytes.clone(),
        other => panic!("ssn: {other:?}"),
    }
}

/// The reference's KMS request line, with its escaped `\r\n` made real.
fn reference_kms_message() -> String {
    let reference = std::fs::read_to_string(data_path("example/reference-output.normalized.txt")).unwrap();
    let line = reference
        .lines()
        .skip_while(|l| !l.starts_with("sending the following to kms:"))
        .nth(1)
        .expect("KMS request in the reference output");
    line.replace("\\r\\n", "\r\n")
}

/// Masks the run-dependent parts of an AWS KMS request the way the reference output does, checking their format.
fn normalize_kms_message(message: &str) -> String {
    fn mask(s: &str, marker: &str, len: usize, ok: impl Fn(char) -> bool, replacement: &str) -> String {
        let start = s.find(marker).unwrap_or_else(|| panic!("{marker:?} missing in {s:?}")) + marker.len();
        let value = &s[start..start + len];
        assert!(value.chars().all(&ok), "{marker}{value} has a bad format");
        format!("{}{replacement}{}", &s[..start], &s[start + len..])
    }
    let digit_or_tz = |c: char| c.is_ascii_digit() || c == 'T' || c == 'Z';
    let m = mask(message, "X-Amz-Date:", 16, digit_or_tz, "<AMZDATE>");
    let m = mask(&m, "Credential=example/", 8, |c| c.is_ascii_digit(), "<DATE>");
    mask(&m, "Signature=", 64, |c| c.is_ascii_hexdigit(), "<SIG>")
}

#[test]
fn auto_encrypt_by_hand() {
    let crypt = crypt();
    let mut ctx = crypt.ctx().encrypt("test", &load_raw(&file("cmd.json"))).expect("encrypt_init");
    let t = drive(&mut ctx, &example_mock());
    assert_eq!(
        t.states,
        [
            State::NeedMongoCollinfo,
            State::NeedMongoMarkings,
            State::NeedMongoKeys,
            State::NeedKms,
            State::Ready,
            State::Done
        ],
        "{:?}",
        t.error
    );

    // listCollections filter.
    assert_bson_eq(t.op(State::NeedMongoCollinfo), &rawdoc! { "name": "test" });

    // mongocryptd command: the command, the validator's $jsonSchema, isRemoteSchema.
    let info = load_doc(&file("collection-info.json"));
    let schema = info.get_document("options").unwrap().get_document("validator").unwrap().get_document("$jsonSchema");
    let mut expected_cmd = load_doc(&file("cmd.json"));
    expected_cmd.insert("jsonSchema", schema.unwrap().clone());
    expected_cmd.insert("isRemoteSchema", true);
    assert_bson_eq(t.op(State::NeedMongoMarkings), &raw(&expected_cmd));

    // Key vault filter, and the one key fed.
    assert_bson_eq(t.op(State::NeedMongoKeys), &expected_key_filter());
    assert_eq!(t.fed_keys.len(), 1);

    // One KMS request.
    assert_eq!(t.kms.len(), 1);
    let kms = &t.kms[0];
    assert_eq!(kms.provider, "aws");
    assert_eq!(kms.endpoint, "kms.us-east-1.amazonaws.com:443");
    let message = kms.message_str();
    assert!(message.starts_with("POST / HTTP/1.1\r\n"), "{message}");
    assert!(message.contains("X-Amz-Target:TrentService.Decrypt"), "{message}");
    assert!(message.contains("Credential=example/"), "{message}");
    let key: serde_json::Value = serde_json::from_str(&read_open(&file("key-document.json"))).unwrap();
    let blob_b64 = key["keyMaterial"]["$binary"]["base64"].as_str().unwrap();
    assert!(message.contains(&format!("{{\"CiphertextBlob\": \"{blob_b64}\"}}")), "{message}");
    // The whole request equals the reference's, run-dependent parts masked.
    assert_eq!(normalize_kms_message(&message), reference_kms_message());

    // The encrypted command, exactly.
    assert_bson_eq(t.output(), &load_raw(&file("expected-encrypted-cmd.json")));
}

#[test]
fn auto_decrypt_by_hand() {
    let crypt = crypt();
    let mut ctx = crypt.ctx().decrypt(&load_raw(&file("expected-encrypted-cmd.json"))).expect("decrypt_init");
    let t = drive(&mut ctx, &example_mock());
    assert_eq!(t.states, [State::NeedMongoKeys, State::NeedKms, State::Ready, State::Done], "{:?}", t.error);
    assert_bson_eq(t.op(State::NeedMongoKeys), &expected_key_filter());
    assert_eq!(t.kms.len(), 1);
    assert_eq!(t.kms[0].endpoint, "kms.us-east-1.amazonaws.com:443");
    assert!(t.kms[0].message_str().contains("X-Amz-Target:TrentService.Decrypt"));
    assert_bson_eq(t.output(), &rawdoc! { "filter": { "ssn": "457-55-5462" }, "find": "test" });
}

#[test]
fn explicit_deterministic_by_key_alt_name_matches_auto_encryption() {
    let crypt = crypt();
    let mut ctx = crypt
        .ctx()
        .key_alt_name("keyDocumentName")
        .and_then(|b| b.algorithm(&Algorithm::Deterministic))
        .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": "457-55-5462" }))
        .expect("explicit_encrypt_init");
    let t = drive(&mut ctx, &example_mock());
    assert_eq!(t.states, [State::NeedMongoKeys, State::NeedKms, State::Ready, State::Done], "{:?}", t.error);
    assert_bson_eq(
        t.op(State::NeedMongoKeys),
        &raw(&doc! { "$or": [ { "_id": { "$in": [] } }, { "keyAltNames": { "$in": ["keyDocumentName"] } } ] }),
    );
    let v = t.output().get_binary("v").unwrap();
    assert_eq!(u8::from(v.subtype), 6);
    assert_eq!(v.bytes, expected_ciphertext().as_slice());
}

#[test]
fn explicit_random_round_trip_with_the_aws_key() {
    // The reference's "EXPLICIT ENCRYPTION/DECRYPTION" part: Random "hello" by key id, then decrypted back.
    let crypt = crypt();
    let mut ctx = crypt
        .ctx()
        .key_id(&key_aaaa())
        .and_then(|b| b.algorithm(&Algorithm::Random))
        .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": "hello" }))
        .unwrap();
    let t = drive(&mut ctx, &example_mock());
    assert_eq!(t.states, [State::NeedMongoKeys, State::NeedKms, State::Ready, State::Done]);
    let ciphertext = t.output().get_binary("v").unwrap();
    assert_eq!(ciphertext.bytes[0], 2, "Random blob subtype");
    assert_eq!(&ciphertext.bytes[1..17], key_aaaa().as_slice());
    let mut ctx = crypt.ctx().explicit_decrypt(t.output()).unwrap();
    let t = drive(&mut ctx, &Mock::default());
    assert_eq!(t.states, [State::Ready, State::Done], "the decrypted key is cached");
    assert_bson_eq(t.output(), &rawdoc! { "v": "hello" });
}

#[test]
fn custom_endpoint_key_goes_to_its_endpoint() {
    // tests/data/example/key-document-custom-endpoint.json: the same key with masterKey.endpoint "example.com".
    let key = extjson_doc(&std::fs::read_to_string(data_path("example/key-document-custom-endpoint.json")).unwrap());
    let crypt = crypt();
    let mut ctx = crypt.ctx().decrypt(&load_raw(&file("expected-encrypted-cmd.json"))).unwrap();
    let t = drive(&mut ctx, &Mock { keys: vec![raw(&key)], ..example_mock() });
    assert_eq!(t.kms.len(), 1);
    assert_eq!(t.kms[0].endpoint, "example.com:443");
    assert!(t.kms[0].message_str().contains("Host:example.com\r\n"), "{}", t.kms[0].message_str());
    assert_bson_eq(t.output(), &rawdoc! { "filter": { "ssn": "457-55-5462" }, "find": "test" });
}

#[test]
fn legacy_extended_json_binary_is_parsed() {
    // tests/data/example/encrypted-command.json uses the legacy {"$binary": b64, "$type": "06"} form.
    let text = std::fs::read_to_string(data_path("example/encrypted-command.json")).unwrap();
    let doc = extjson_doc(&text);
    let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
    assert_eq!(keys, ["filter", "find"], "file key order is kept");
    match doc.get_document("filter").unwrap().get("ssn") {
        Some(Bson::Binary(b)) => {
            assert_eq!(u8::from(b.subtype), 6);
            assert_eq!(b.bytes[0], 1, "a Deterministic blob");
            assert_eq!(b.bytes.len(), 98);
        }
        other => panic!("ssn: {other:?}"),
    }
    // Canonical scalar wrappers.
    let d =
        extjson_doc(r#"{"i": {"$numberInt": "7"}, "l": {"$numberLong": "8"}, "d": {"$date": {"$numberLong": "9"}}}"#);
    assert_eq!(d, doc! { "i": 7, "l": 8i64, "d": libmongocrypt::bson::DateTime::from_millis(9) });
    // A query operator named $type is left alone.
    let q = extjson_doc(r#"{"x": {"$type": "string"}}"#);
    assert_eq!(q, doc! { "x": { "$type": "string" } });
}
