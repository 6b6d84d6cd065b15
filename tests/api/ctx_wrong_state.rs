//! Every ctx call made in a state libmongocrypt refuses it in ("wrong state") is refused by the binding first, as
//! `Error::WrongState { operation, expected, state }`, and the ctx is left as it was: the tests make every wrong
//! call in every state of whole operations, then finish each operation and check its result.

use crate::common;

use common::*;
use libmongocrypt::bson::{doc, rawdoc, RawDocumentBuf};
use libmongocrypt::{Ctx, Error, KeyEncryptionKey, KmsProviders, State};

const AUTO: &str = "csfle-auto-aws-example";

const NEED_MONGO: &[State] =
    &[State::NeedMongoCollinfo, State::NeedMongoCollinfoWithDb, State::NeedMongoMarkings, State::NeedMongoKeys];

/// The calls that check their state, with the states each is accepted in.
const CALLS: [(&str, &[State]); 7] = [
    ("mongo_op", NEED_MONGO),
    ("mongo_db", &[State::NeedMongoCollinfoWithDb]),
    ("mongo_feed", NEED_MONGO),
    ("mongo_done", NEED_MONGO),
    ("kms_scope", &[State::NeedKms]),
    ("provide_kms_providers", &[State::NeedKmsCredentials]),
    ("finalize", &[State::Ready]),
];

/// Makes call `operation` on `ctx`, keeping only whether it succeeded.
fn call(ctx: &mut Ctx, operation: &str) -> Result<(), Error> {
    match operation {
        "mongo_op" => ctx.mongo_op().map(|_| ()),
        "mongo_db" => ctx.mongo_db().map(|_| ()),
        "mongo_feed" => ctx.mongo_feed(&rawdoc! { "name": "test" }),
        "mongo_done" => ctx.mongo_done(),
        "kms_scope" => ctx.kms_scope().map(|_| ()),
        "provide_kms_providers" => ctx.provide_kms_providers(&KmsProviders::new().local("local", &LOCAL_KEY)),
        "finalize" => ctx.finalize().map(|_| ()),
        other => unreachable!("no call {other}"),
    }
}

/// Makes every call that `state` does not accept, asserting each is `Error::WrongState` naming it and leaves the
/// ctx in `state` with no error. Returns how many calls were refused.
#[track_caller]
fn refuse_wrong_calls(ctx: &mut Ctx) -> usize {
    let state = ctx.state();
    let mut refused = 0;
    for (operation, expected) in CALLS {
        if expected.contains(&state) {
            continue;
        }
        let result = call(ctx, operation);
        if operation == "mongo_db" && !linked_at_least("1.10.0") {
            assert_unsupported(&result.unwrap_err(), "mongocrypt_ctx_mongo_db", "1.10.0");
        } else {
            let err = result.unwrap_err();
            assert_eq!(err, Error::WrongState { operation, expected, state }, "{operation} in {state:?}");
            assert_eq!(err.kind(), libmongocrypt::ErrorKind::WrongState);
            refused += 1;
        }
        assert_eq!(ctx.state(), state, "{operation} left the ctx in {state:?}");
        assert_eq!(ctx.error(), None, "{operation} in {state:?} left no error in the ctx");
    }
    refused
}

/// Drives `ctx` with the csfle-auto-aws-example replies, making every wrong call in every state first. Returns the
/// states seen and the result.
fn drive_refusing(ctx: &mut Ctx) -> (Vec<State>, RawDocumentBuf) {
    let mut states = vec![];
    loop {
        let state = ctx.state();
        states.push(state);
        // Of the seven calls, a NEED_MONGO_* state accepts three (four WITH_DB), any other state one. mongo_db is
        // Unsupported before 1.10, so it is not counted as refused there.
        let mongo_db = usize::from(linked_at_least("1.10.0"));
        let wrong = match state {
            State::NeedMongoCollinfoWithDb => 3,
            s if NEED_MONGO.contains(&s) => 3 + mongo_db,
            _ => 5 + mongo_db,
        };
        assert_eq!(refuse_wrong_calls(ctx), wrong, "calls refused in {state:?}");
        match state {
            State::NeedMongoCollinfo | State::NeedMongoCollinfoWithDb => {
                if state == State::NeedMongoCollinfoWithDb {
                    assert_eq!(ctx.mongo_db().unwrap(), "test");
                }
                assert_eq!(ctx.mongo_op().unwrap().to_owned(), rawdoc! { "name": "test" });
                ctx.mongo_feed(&load_raw(&format!("{AUTO}/collection-info.json"))).unwrap();
                ctx.mongo_done().unwrap();
            }
            State::NeedMongoMarkings => {
                ctx.mongo_op().unwrap();
                ctx.mongo_feed(&load_raw(&format!("{AUTO}/mongocryptd-reply.json"))).unwrap();
                ctx.mongo_done().unwrap();
            }
            State::NeedMongoKeys => {
                ctx.mongo_op().unwrap();
                ctx.mongo_feed(&load_raw(&format!("{AUTO}/key-document.json"))).unwrap();
                ctx.mongo_done().unwrap();
            }
            State::NeedKmsCredentials => ctx
                .provide_kms_providers(&doc! { "aws": { "accessKeyId": "example", "secretAccessKey": "example" } })
                .unwrap(),
            State::NeedKms => {
                let reply = http_reply(&format!("{AUTO}/kms-decrypt-reply.txt"));
                let mut scope = ctx.kms_scope().unwrap();
                let mut kms = scope.next_kms_ctx().expect("one KMS request");
                let left = feed_needed(&mut kms, &reply).unwrap();
                assert!(left.is_empty());
                drop(kms);
                assert!(scope.next_kms_ctx().is_none());
                scope.done().unwrap();
            }
            State::Ready => {
                let out = ctx.finalize_owned().unwrap();
                assert_eq!(ctx.state(), State::Done);
                states.push(State::Done);
                // DONE accepts none of them: a second finalize included.
                assert_eq!(refuse_wrong_calls(ctx), 6 + usize::from(linked_at_least("1.10.0")));
                assert_eq!(ctx.state(), State::Done);
                return (states, out);
            }
            other => panic!("unexpected state {other:?}: {:?}", ctx.error()),
        }
    }
}

#[test]
fn auto_encrypt_refuses_wrong_calls_in_every_state_and_completes() {
    let crypt = crypt();
    let mut ctx = crypt.ctx().encrypt("test", &load_raw(&format!("{AUTO}/cmd.json"))).unwrap();
    let (states, out) = drive_refusing(&mut ctx);
    assert_eq!(
        states,
        [
            State::NeedMongoCollinfo,
            State::NeedMongoMarkings,
            State::NeedMongoKeys,
            State::NeedKms,
            State::Ready,
            State::Done
        ]
    );
    assert_bson_eq(&out, &load_raw(&format!("{AUTO}/expected-encrypted-cmd.json")));
}

#[test]
fn need_mongo_collinfo_with_db_refuses_wrong_calls_and_completes() {
    if !linked_at_least("1.10.0") {
        return skip("NEED_MONGO_COLLINFO_WITH_DB", "libmongocrypt 1.10");
    }
    let crypt = builder().use_need_mongo_collinfo_with_db_state().unwrap().build().unwrap();
    // bulkWrite runs on "admin" and names a collection of db1: the state that names the database.
    let bulk_write = rawdoc! { "bulkWrite": 1, "ops": [ { "insert": 0, "document": { "a": 1 } } ], "nsInfo": [ { "ns": "db1.coll" } ] };
    let mut ctx = crypt.ctx().encrypt("admin", &bulk_write).unwrap();
    assert_eq!(ctx.state(), State::NeedMongoCollinfoWithDb);
    assert_eq!(refuse_wrong_calls(&mut ctx), 3, "kms_scope, provide_kms_providers, finalize");
    assert_eq!(ctx.mongo_db().unwrap(), "db1");
    assert_eq!(ctx.mongo_op().unwrap().to_owned(), rawdoc! { "name": "coll" });
    ctx.mongo_feed(&rawdoc! { "name": "coll", "type": "collection", "options": {} }).unwrap();
    ctx.mongo_done().unwrap();
    assert_eq!(ctx.state(), State::NeedMongoMarkings);
    assert_eq!(refuse_wrong_calls(&mut ctx), 4, "and mongo_db");
    assert_eq!(ctx.mongo_op().unwrap().get_i32("bulkWrite").unwrap(), 1, "the command to mark");
}

#[test]
fn decrypt_with_on_demand_credentials_refuses_wrong_calls_in_every_state_and_completes() {
    let crypt = on_demand_crypt("aws");
    let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{AUTO}/expected-encrypted-cmd.json"))).unwrap();
    let (states, out) = drive_refusing(&mut ctx);
    assert_eq!(states, [State::NeedKmsCredentials, State::NeedMongoKeys, State::NeedKms, State::Ready, State::Done]);
    assert_bson_eq(&out, &rawdoc! { "filter": { "ssn": "457-55-5462" }, "find": "test" });
}

#[test]
fn datakey_refuses_wrong_calls_in_ready() {
    let crypt = crypt();
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    assert_eq!(ctx.state(), State::Ready);
    assert_eq!(refuse_wrong_calls(&mut ctx), 5 + usize::from(linked_at_least("1.10.0")));
    let key = ctx.finalize_owned().unwrap();
    assert_eq!(key.get_binary("_id").unwrap().bytes.len(), 16);
    assert_eq!(key.get_document("masterKey").unwrap().to_owned(), rawdoc! { "provider": "local" });
}

#[test]
fn a_failed_ctx_answers_its_own_error_without_calling_libmongocrypt() {
    let crypt = crypt();
    let mut ctx =
        crypt.ctx().explicit_decrypt(&load_raw("fle1-explicit-local/FLE1DeterministicEncryptedValue.json")).unwrap();
    assert_eq!(ctx.state(), State::NeedMongoKeys);
    // A key document without a key: libmongocrypt fails the ctx.
    let failed = ctx.mongo_feed(&rawdoc! { "_id": 1 }).unwrap_err();
    assert_eq!(ctx.state(), State::Error);
    for (operation, _) in CALLS {
        let err = call(&mut ctx, operation).unwrap_err();
        if operation == "mongo_db" && !linked_at_least("1.10.0") {
            assert_unsupported(&err, "mongocrypt_ctx_mongo_db", "1.10.0");
            continue;
        }
        assert_eq!(err, failed, "{operation} in ERROR returns the ctx's error");
        assert_eq!(ctx.status(), Err(failed.clone()), "{operation} kept the ctx's error");
    }
}

#[test]
fn the_message_lists_the_states() {
    let crypt = crypt();
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    assert_eq!(
        ctx.mongo_done().unwrap_err().to_string(),
        "mongo_done needs a ctx in state NeedMongoCollinfo, NeedMongoCollinfoWithDb, NeedMongoMarkings or \
         NeedMongoKeys, but the ctx is in state Ready"
    );
    assert_eq!(
        ctx.provide_kms_providers(&rawdoc! {}).unwrap_err().to_string(),
        "provide_kms_providers needs a ctx in state NeedKmsCredentials, but the ctx is in state Ready"
    );
}
