//! Automatic encryption and decryption through the runner, with the mocked replies of libmongocrypt's example
//! (`tests/data/open/csfle-auto-aws-example`): exact mongo operations, exact KMS request shape, exact output bytes.

use crate::runner_common;

use libmongocrypt::bson::{rawdoc, Bson, RawDocumentBuf};
use libmongocrypt::state_machine::{run, run_concurrent, StateMachineIo};
use libmongocrypt::{Crypt, Error, ErrorKind};
use runner_common::*;

const DIR: &str = "csfle-auto-aws-example";

fn example_io() -> MockIo {
    MockIo::new()
        .collinfo(load_raw(&format!("{DIR}/collection-info.json")))
        .markings(load_raw(&format!("{DIR}/mongocryptd-reply.json")))
        .key(load_raw(&format!("{DIR}/key-document.json")))
        .kms_reply(http_reply(&format!("{DIR}/kms-decrypt-reply.txt")))
}

/// The key filter libmongocrypt builds for the example key, `_id` UUID("aaaa...").
fn example_key_filter() -> RawDocumentBuf {
    extjson_raw(
        r#"{"$or": [{"_id": {"$in": [{"$binary": {"base64": "YWFhYWFhYWFhYWFhYWFhYQ==", "subType": "04"}}]}},
                    {"keyAltNames": {"$in": []}}]}"#,
    )
}

/// The one KMS request of the example: an AWS Decrypt of the key's material.
fn assert_example_kms_call(call: &Call) {
    let Call::Kms { provider, endpoint, message, .. } = call else { panic!("not a KMS call: {call:?}") };
    assert_eq!(provider, "aws");
    assert_eq!(endpoint, "kms.us-east-1.amazonaws.com:443");
    let message = String::from_utf8(message.clone()).unwrap();
    assert!(message.starts_with("POST / HTTP/1.1\r\n"), "{message}");
    assert!(message.contains("\r\nX-Amz-Target:TrentService.Decrypt\r\n"), "{message}");
    assert!(message.contains("Credential=example/"), "{message}");
    let key = load_raw(&format!("{DIR}/key-document.json"));
    let material = Bson::Binary(key.get_binary("keyMaterial").unwrap().to_binary()).into_relaxed_extjson();
    let blob = material["$binary"]["base64"].as_str().unwrap();
    assert!(message.ends_with(&format!("\r\n\r\n{{\"CiphertextBlob\": \"{blob}\"}}")), "{message}");
}

#[test]
fn auto_encrypt_gives_the_expected_command_exactly() {
    let crypt = crypt();
    let io = example_io();
    let mut ctx = crypt.ctx().encrypt("test", &load_raw(&format!("{DIR}/cmd.json"))).unwrap();
    let encrypted = run(&mut ctx, &io).unwrap().expect("an encrypted command");

    assert_eq!(encrypted.as_bytes(), load_raw(&format!("{DIR}/expected-encrypted-cmd.json")).as_bytes());
    assert_eq!(ctx.state(), libmongocrypt::State::Done);

    let calls = io.calls();
    assert_eq!(io.trace(), ["list_collections", "mark_command", "find_keys", "kms_request"]);
    assert_eq!(calls[0], Call::ListCollections(None, rawdoc! { "name": "test" }));
    // The command for mongocryptd: the command, the collection's $jsonSchema, isRemoteSchema.
    let info = load_raw(&format!("{DIR}/collection-info.json"));
    let schema = info.get_document("options").unwrap().get_document("validator").unwrap();
    let schema = schema.get_document("$jsonSchema").unwrap().to_owned();
    let expected_markings_cmd = rawdoc! {
        "find": "test",
        "filter": { "ssn": "457-55-5462" },
        "jsonSchema": schema,
        "isRemoteSchema": true,
    };
    assert_eq!(calls[1], Call::MarkCommand(expected_markings_cmd));
    assert_eq!(calls[2], Call::FindKeys(example_key_filter()));
    assert_example_kms_call(&calls[3]);
}

#[test]
fn auto_decrypt_gives_the_plaintext_command_exactly() {
    let crypt = crypt();
    let io = example_io();
    let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{DIR}/expected-encrypted-cmd.json"))).unwrap();
    let decrypted = run(&mut ctx, &io).unwrap().expect("a decrypted document");

    assert_eq!(decrypted, rawdoc! { "filter": { "ssn": "457-55-5462" }, "find": "test" });
    assert_eq!(io.trace(), ["find_keys", "kms_request"]);
    assert_eq!(io.calls()[0], Call::FindKeys(example_key_filter()));
    assert_example_kms_call(&io.calls()[1]);

    // The key is cached in the Crypt now: a second decrypt does no I/O at all.
    let no_io = MockIo::new();
    let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{DIR}/expected-encrypted-cmd.json"))).unwrap();
    assert_eq!(run(&mut ctx, &no_io).unwrap(), Some(decrypted));
    assert!(no_io.calls().is_empty());
}

#[test]
fn encrypt_then_decrypt_round_trips_through_run_concurrent() {
    let crypt = crypt();
    let io = example_io();
    let cmd = load_raw(&format!("{DIR}/cmd.json"));
    let mut ctx = crypt.ctx().encrypt("test", &cmd).unwrap();
    let encrypted = run_concurrent(&mut ctx, &io).unwrap().unwrap();
    let mut ctx = crypt.ctx().decrypt(&encrypted).unwrap();
    let decrypted = run_concurrent(&mut ctx, &io).unwrap().unwrap();
    assert_eq!(decrypted, rawdoc! { "filter": { "ssn": "457-55-5462" }, "find": "test" });
    // One KMS request: served on the calling thread, as `run` would.
    let kms_threads: Vec<_> = io
        .calls()
        .into_iter()
        .filter_map(|c| if let Call::Kms { thread, .. } = c { Some(thread) } else { None })
        .collect();
    assert_eq!(kms_threads, [std::thread::current().id()]);
}

#[test]
fn a_collection_without_schema_leaves_the_command_unchanged() {
    let crypt = crypt();
    let cmd = rawdoc! { "find": "plain", "filter": { "a": 1 } };
    // listCollections finds nothing; mongocryptd sees an empty schema and marks nothing.
    let io = MockIo::new().markings(rawdoc! {
        "ok": 1, "result": cmd.clone(), "hasEncryptedPlaceholders": false, "schemaRequiresEncryption": false,
    });
    let mut ctx = crypt.ctx().encrypt("db", &cmd).unwrap();
    assert_eq!(run(&mut ctx, &io).unwrap(), Some(cmd.clone()));
    let calls = io.calls();
    assert_eq!(calls[0], Call::ListCollections(None, rawdoc! { "name": "plain" }));
    assert_eq!(
        calls[1],
        Call::MarkCommand(rawdoc! { "find": "plain", "filter": { "a": 1 }, "jsonSchema": {}, "isRemoteSchema": true })
    );
    assert_eq!(calls.len(), 2);
}

#[test]
fn io_can_be_a_trait_object() {
    let crypt = crypt();
    let io = example_io();
    let dyn_io: &dyn StateMachineIo = &io;
    let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{DIR}/expected-encrypted-cmd.json"))).unwrap();
    assert!(run(&mut ctx, dyn_io).unwrap().is_some());
    // And a reference to an implementation is one.
    let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{DIR}/expected-encrypted-cmd.json"))).unwrap();
    assert!(run(&mut ctx, &&io).unwrap().is_some());
}

/// NEED_MONGO_COLLINFO_WITH_DB: libmongocrypt ≥ 1.10 names the database for listCollections when it encrypts a
/// `bulkWrite`, which runs on `admin` but writes to other databases. The opt-in setter and the state were added in
/// 1.10.0 (its library is the first to export them), so older libraries can only refuse the option.
#[test]
fn collinfo_with_db_lists_collections_on_the_named_database() {
    let builder = Crypt::builder().kms_providers(&providers()).unwrap().use_need_mongo_collinfo_with_db_state();
    if libmongocrypt::sys::MONGOCRYPT_SYS_VERSION_NUMBER < 0x010a0000 {
        let err = builder.err().expect("the option needs libmongocrypt 1.10");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(
            matches!(
                err,
                Error::Unsupported { feature: "mongocrypt_setopt_use_need_mongo_collinfo_with_db_state", .. }
            ),
            "{err:?}"
        );
        return;
    }
    let crypt = builder.unwrap().build().unwrap();
    let cmd = rawdoc! {
        "bulkWrite": 1,
        "ops": [{ "insert": 0, "document": { "ssn": "457-55-5462" } }],
        "nsInfo": [{ "ns": "test.test" }],
    };
    // No collection info: nothing to encrypt; mongocryptd returns the command as is.
    let io = MockIo::new().markings(rawdoc! {
        "ok": 1, "result": cmd.clone(), "hasEncryptedPlaceholders": false, "schemaRequiresEncryption": false,
    });
    let mut ctx = crypt.ctx().encrypt("admin", &cmd).unwrap();
    assert_eq!(run(&mut ctx, &io).unwrap(), Some(cmd.clone()));
    let calls = io.calls();
    assert_eq!(calls[0], Call::ListCollections(Some("test".into()), rawdoc! { "name": "test" }));
    let Call::MarkCommand(marking_cmd) = &calls[1] else { panic!("{calls:?}") };
    assert_eq!(marking_cmd.get_i32("bulkWrite").unwrap(), 1);
    assert_eq!(calls.len(), 2);
}
