//! Bad input and calls in the wrong state: malformed BSON bytes (`&[u8]` passes through unchecked) to every init,
//! setopt and feed that takes a document, and state-machine calls out of order. Each must come back as a typed
//! error carrying libmongocrypt's own message.
//!
//! Two inputs that crash libmongocrypt itself are refused by the safe API before C sees them: an empty document
//! (libbson aborts) and `masterkey_aws_endpoint` without `masterkey_aws` (1.21.0 dereferences NULL). Their tests run
//! each case in a child process, so that a regression shows as a failed case instead of a dead test binary.

use crate::common;

use std::process::Command;

use common::*;
use libmongocrypt::bson::{doc, rawdoc};
use libmongocrypt::{Algorithm, Crypt, Error, KeyEncryptionKey, QueryType, RangeOptions, State};

const DET: &str = "fle1-explicit-local/FLE1DeterministicEncryptedValue.json";

/// Malformed documents: a wrong terminator, a length prefix past the end, and a too-short buffer.
const MALFORMED: [(&str, &[u8]); 3] =
    [("bad terminator", &[5, 0, 0, 0, 1]), ("truncated", &[0x10, 0, 0, 0, 2, b'a', 0]), ("four bytes", &[4, 0, 0, 0])];

/// Asserts a libmongocrypt client error whose message contains `expected`.
#[track_caller]
fn assert_client_error<T: std::fmt::Debug>(what: &str, result: libmongocrypt::Result<T>, expected: &str) {
    match result {
        Err(Error::Client { code, message }) => {
            assert_ne!(code, 0, "{what}: a libmongocrypt code");
            assert!(message.contains(expected), "{what}: expected {expected:?} in {message:?}");
        }
        other => panic!("{what}: expected Error::Client({expected:?}), got {other:?}"),
    }
}

/// Everything that takes a document at init or setopt time, with libmongocrypt's message for malformed BSON.
#[test]
fn malformed_bson_at_init_and_setopt() {
    let crypt = crypt();
    for (name, bytes) in MALFORMED {
        let what = |call: &str| format!("{call} ({name})");
        assert_client_error(
            &what("encrypt"),
            crypt.ctx().encrypt("db", bytes),
            "unable to convert command buffer to BSON",
        );
        assert_client_error(
            &what("explicit_encrypt"),
            crypt.ctx().key_id(&key_abcdefab()).unwrap().algorithm(&Algorithm::Random).unwrap().explicit_encrypt(bytes),
            "msg must be bson",
        );
        assert_client_error(&what("decrypt"), crypt.ctx().decrypt(bytes), "malformed bson");
        assert_client_error(&what("explicit_decrypt"), crypt.ctx().explicit_decrypt(bytes), "malformed bson");
        assert_client_error(
            &what("key_encryption_key"),
            crypt.ctx().key_encryption_key(bytes).map(|_| ()),
            "invalid BSON",
        );
        assert_client_error(&what("algorithm_range"), crypt.ctx().algorithm_range(bytes).map(|_| ()), "invalid BSON");
        assert_client_error(&what("kms_providers"), Crypt::builder().kms_providers(bytes).map(|_| ()), "invalid BSON");
        assert_client_error(&what("schema_map"), builder().schema_map(bytes).and_then(|b| b.build()), "invalid bson");
        assert_client_error(
            &what("encrypted_field_config_map"),
            builder().encrypted_field_config_map(bytes).and_then(|b| b.build()),
            "invalid bson",
        );
        let text = crypt.ctx().algorithm_text(bytes).map(|_| ());
        // mongocrypt_ctx_setopt_algorithm_text was added in libmongocrypt 1.15.0.
        if linked_at_least("1.15.0") {
            assert_client_error(&what("algorithm_text"), text, "invalid BSON");
        } else {
            assert_unsupported(&text.unwrap_err(), "mongocrypt_ctx_setopt_algorithm_text", "1.15.0");
        }
    }
}

#[test]
fn malformed_bson_to_explicit_encrypt_expression() {
    let crypt = crypt();
    // A fully configured range query, so that only the expression is wrong.
    let builder = || {
        let b = crypt.ctx().key_id(&key_abcdefab()).unwrap();
        if linked_at_least("1.11.0") {
            let opts =
                RangeOptions { min: Some(0.into()), max: Some(10.into()), sparsity: Some(1), ..Default::default() };
            b.algorithm(&Algorithm::Range)?.query_type(&QueryType::Range)?.contention_factor(0)?.algorithm_range(&opts)
        } else {
            // Before range V2 is the default (verified on 1.7.2 and 1.10.1).
            b.algorithm(&Algorithm::Other("RangePreview".into()))?
                .query_type(&QueryType::Other("rangePreview".into()))?
                .contention_factor(0)?
                .algorithm_range(&doc! { "min": 0, "max": 10, "sparsity": 1i64 })
        }
    };
    for (name, bytes) in MALFORMED {
        assert_client_error(name, builder().unwrap().explicit_encrypt_expression(bytes), "msg must be bson");
    }
}

#[test]
fn malformed_rewrap_filter_is_an_error_before_use() {
    // libmongocrypt does not parse the rewrap filter: today init succeeds and the bytes come back as the key vault
    // filter, where mongo_op reports them as InvalidArgument (the bson crate's check). A binding that validates
    // document bytes at init (see the report) fails earlier; either way the malformed filter never reaches a driver.
    let crypt = crypt();
    for (name, bytes) in MALFORMED {
        match crypt.ctx().rewrap_many_datakey(bytes) {
            Ok(ctx) => {
                assert_eq!(ctx.state(), State::NeedMongoKeys);
                match ctx.mongo_op() {
                    Err(Error::InvalidArgument(message)) => assert!(message.contains("BSON"), "{name}: {message}"),
                    other => panic!("{name}: {other:?}"),
                }
            }
            Err(e) => assert!(matches!(e, Error::InvalidArgument(_) | Error::Client { .. }), "{name}: {e:?}"),
        }
    }
}

#[test]
fn malformed_bson_to_mongo_feed() {
    for (name, bytes) in MALFORMED {
        // A fresh Crypt each time: collection infos are cached per Crypt.
        let crypt = crypt();
        // A key document.
        let mut ctx = crypt.ctx().explicit_decrypt(&load_raw(DET)).unwrap();
        assert_client_error(name, ctx.mongo_feed(bytes), "malformed BSON for key document");
        assert_eq!(ctx.state(), State::Error);

        // A listCollections result.
        let mut ctx = crypt.ctx().encrypt("test", &load_raw("csfle-auto-aws-example/cmd.json")).unwrap();
        assert_eq!(ctx.state(), State::NeedMongoCollinfo);
        assert_client_error(name, ctx.mongo_feed(bytes), "BSON malformed");
        assert_eq!(ctx.state(), State::Error);

        // A mongocryptd reply.
        let mut ctx = crypt.ctx().encrypt("test", &load_raw("csfle-auto-aws-example/cmd.json")).unwrap();
        ctx.mongo_feed(&load_raw("csfle-auto-aws-example/collection-info.json")).unwrap();
        ctx.mongo_done().unwrap();
        assert_eq!(ctx.state(), State::NeedMongoMarkings);
        let result = ctx.mongo_feed(bytes);
        match &result {
            Err(Error::Client { message, .. }) => assert!(message.to_lowercase().contains("bson"), "{name}: {message}"),
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(ctx.state(), State::Error);
    }
}

#[test]
fn malformed_bson_to_provide_kms_providers() {
    let crypt = on_demand_crypt("aws");
    for (name, bytes) in MALFORMED {
        let mut ctx = crypt
            .ctx()
            .key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn"))
            .and_then(|b| b.datakey())
            .unwrap();
        assert_eq!(ctx.state(), State::NeedKmsCredentials);
        assert_client_error(name, ctx.provide_kms_providers(bytes), "invalid BSON");
        assert_eq!(ctx.state(), State::Error);
    }
}

#[test]
fn bad_binary_arguments() {
    let crypt = crypt();
    assert_client_error("key_id", crypt.ctx().key_id(&[1; 15]).map(|_| ()), "16 byte UUID");
    assert_client_error("key_material", crypt.ctx().key_material(&[1; 97]).map(|_| ()), "97");
    assert_client_error("kms_provider_local", Crypt::builder().kms_provider_local(&[1; 97]).map(|_| ()), "96 bytes");
}

// --- wrong states --------------------------------------------------------------------------------------------------

fn ready_datakey(crypt: &Crypt) -> libmongocrypt::Ctx {
    let ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    assert_eq!(ctx.state(), State::Ready);
    ctx
}

/// Asserts `Error::WrongState` for `operation` in `state`, which accepts it in `expected`.
#[track_caller]
fn assert_wrong_state<T: std::fmt::Debug>(
    result: libmongocrypt::Result<T>,
    operation: &'static str,
    expected: &'static [State],
    state: State,
) {
    assert_eq!(result.unwrap_err(), Error::WrongState { operation, expected, state });
}

const NEED_MONGO: &[State] =
    &[State::NeedMongoCollinfo, State::NeedMongoCollinfoWithDb, State::NeedMongoMarkings, State::NeedMongoKeys];

#[test]
fn mongo_calls_in_ready() {
    let crypt = crypt();
    let mut ctx = ready_datakey(&crypt);
    // Before the binding checked, libmongocrypt answered "wrong state" and failed the ctx.
    assert_wrong_state(ctx.mongo_feed(&rawdoc! {}), "mongo_feed", NEED_MONGO, State::Ready);
    assert_eq!(ctx.state(), State::Ready, "a wrong-state call leaves the ctx as it was");
    assert_wrong_state(ctx.mongo_done(), "mongo_done", NEED_MONGO, State::Ready);
    assert_wrong_state(ctx.mongo_op().map(|_| ()), "mongo_op", NEED_MONGO, State::Ready);
    assert_wrong_state(
        ctx.provide_kms_providers(&rawdoc! {}),
        "provide_kms_providers",
        &[State::NeedKmsCredentials],
        State::Ready,
    );
    assert_eq!(ctx.state(), State::Ready);
    assert!(ctx.finalize_owned().unwrap().get_binary("_id").is_ok(), "the ctx still finishes");
}

#[test]
fn finalize_in_need_mongo_keys() {
    let crypt = crypt();
    let mut ctx = crypt.ctx().explicit_decrypt(&load_raw(DET)).unwrap();
    assert_eq!(ctx.state(), State::NeedMongoKeys);
    assert_wrong_state(ctx.finalize().map(|_| ()), "finalize", &[State::Ready], State::NeedMongoKeys);
    assert_eq!(ctx.state(), State::NeedMongoKeys);
    assert_eq!(ctx.status(), Ok(()));
    ctx.mongo_feed(&load_raw("fle1-explicit-local/key-ABCDEFAB-local.json")).unwrap();
    ctx.mongo_done().unwrap();
    assert_eq!(ctx.finalize().unwrap().get_str("v").unwrap(), "foo", "the ctx still finishes");
}

#[test]
fn finalize_twice() {
    let crypt = crypt();
    let mut ctx = ready_datakey(&crypt);
    ctx.finalize_owned().unwrap();
    assert_eq!(ctx.state(), State::Done);
    assert_wrong_state(ctx.finalize().map(|_| ()), "finalize", &[State::Ready], State::Done);
    assert_eq!(ctx.state(), State::Done);
}

#[test]
fn kms_calls_outside_need_kms() {
    let crypt = crypt();
    let mut ctx = ready_datakey(&crypt);
    // Before the binding checked, this handed out no request and put the ctx into ERROR ("wrong state").
    let err = ctx.kms_scope().map(|_| ()).unwrap_err();
    assert_eq!(
        err,
        libmongocrypt::Error::WrongState { operation: "kms_scope", expected: &[State::NeedKms], state: State::Ready }
    );
    assert_eq!(err.kind(), libmongocrypt::ErrorKind::WrongState);
    assert_eq!(err.to_string(), "kms_scope needs a ctx in state NeedKms, but the ctx is in state Ready");
    assert_eq!(ctx.state(), State::Ready, "the ctx is left as it was");
    assert!(ctx.error().is_none());
    assert!(ctx.finalize_owned().unwrap().get_binary("_id").is_ok());
}

#[test]
fn kms_scope_dropped_without_done_ends_need_kms() {
    let crypt = crypt();
    let kek = KeyEncryptionKey::aws("aws", "us-east-1", "arn");
    let mut ctx = crypt.ctx().key_encryption_key(&kek).and_then(|b| b.datakey()).unwrap();
    drop(ctx.kms_scope().unwrap());
    // kms_done ran in Drop: the unserved request leaves the ctx failed, not stuck in NEED_KMS.
    assert_eq!(ctx.state(), State::Error);
    let error = ctx.error().expect("the ctx holds kms_done's error");
    assert!(error.message().contains("KMS response unfinished"), "{error}");
    assert_eq!(ctx.status().unwrap_err(), error);
}

#[test]
fn mongo_calls_in_need_kms() {
    let crypt = crypt();
    let kek = KeyEncryptionKey::aws("aws", "us-east-1", "arn");
    let mut ctx = crypt.ctx().key_encryption_key(&kek).and_then(|b| b.datakey()).unwrap();
    assert_eq!(ctx.state(), State::NeedKms);
    assert_wrong_state(ctx.mongo_feed(&rawdoc! {}), "mongo_feed", NEED_MONGO, State::NeedKms);
    assert_wrong_state(ctx.finalize().map(|_| ()), "finalize", &[State::Ready], State::NeedKms);
    assert_eq!(ctx.state(), State::NeedKms);
    assert_eq!(ctx.kms_scope().unwrap().next_kms_ctx().unwrap().kms_provider().to_string(), "aws");
}

#[test]
fn kms_done_before_the_reply() {
    let crypt = crypt();
    let kek = KeyEncryptionKey::aws("aws", "us-east-1", "arn");
    let mut ctx = crypt.ctx().key_encryption_key(&kek).and_then(|b| b.datakey()).unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    let kms = scope.next_kms_ctx().unwrap();
    assert!(kms.bytes_needed() > 0);
    assert_client_error("kms_done without a reply", scope.done(), "KMS response unfinished");
}

#[test]
fn kms_feed_too_much() {
    let crypt = crypt();
    let kek = KeyEncryptionKey::aws("aws", "us-east-1", "arn");
    let mut ctx = crypt.ctx().key_encryption_key(&kek).and_then(|b| b.datakey()).unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    let mut kms = scope.next_kms_ctx().unwrap();
    let needed = kms.bytes_needed() as usize;
    let result = kms.feed(&vec![b'x'; needed + 1]);
    let message = err_message(result);
    assert!(message.contains("KMS response fed too much data"), "{message}");
    assert_eq!(kms.status().unwrap_err().message(), message);
}

// --- defects pinned in child processes -----------------------------------------------------------------------------

const CHILD_CASE: &str = "MONGOCRYPT_RS_ISOLATED_CASE";

/// Runs `test` of this binary in a child process with `case` set; returns the failures (status and output).
fn run_cases_isolated(test: &str, cases: &[&str]) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    // libtest names a test by its module path without the crate: this module's, then the function.
    let module = module_path!().split_once("::").map_or("", |(_, path)| path);
    let test = format!("{module}::{test}");
    let mut failures = Vec::new();
    for case in cases {
        let out = Command::new(&exe)
            .args([test.as_str(), "--exact", "--include-ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_CASE, case)
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{case}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).lines().rfind(|l| !l.trim().is_empty()).unwrap_or("")
            ));
        }
    }
    failures
}

/// Inputs that take `&[u8]`/`BsonInput` documents, called with an empty slice.
fn empty_input_case(case: &str) -> libmongocrypt::Result<()> {
    let crypt = crypt();
    let empty: &[u8] = &[];
    match case {
        "encrypt" => crypt.ctx().encrypt("db", empty).map(drop),
        "explicit_encrypt" => {
            crypt.ctx().key_id(&key_abcdefab())?.algorithm(&Algorithm::Random)?.explicit_encrypt(empty).map(drop)
        }
        "decrypt" => crypt.ctx().decrypt(empty).map(drop),
        "explicit_decrypt" => crypt.ctx().explicit_decrypt(empty).map(drop),
        "rewrap_many_datakey" => crypt.ctx().rewrap_many_datakey(empty).and_then(|c| c.mongo_op().map(drop)),
        "schema_map" => builder().schema_map(empty)?.build().map(drop),
        "encrypted_field_config_map" => builder().encrypted_field_config_map(empty)?.build().map(drop),
        "kms_providers" => Crypt::builder().kms_providers(empty).map(drop),
        "key_encryption_key" => crypt.ctx().key_encryption_key(empty).map(drop),
        "mongo_feed" => crypt.ctx().explicit_decrypt(&load_raw(DET))?.mongo_feed(empty),
        other => panic!("unknown case {other}"),
    }
}

const EMPTY_CASES: [&str; 10] = [
    "encrypt",
    "explicit_encrypt",
    "decrypt",
    "explicit_decrypt",
    "rewrap_many_datakey",
    "schema_map",
    "encrypted_field_config_map",
    "kms_providers",
    "key_encryption_key",
    "mongo_feed",
];

#[test]
fn empty_bson_input_is_an_error_not_an_abort() {
    if let Ok(case) = std::env::var(CHILD_CASE) {
        let result = empty_input_case(&case);
        assert!(result.is_err(), "{case}: empty input accepted");
        return;
    }
    let failures = run_cases_isolated("empty_bson_input_is_an_error_not_an_abort", &EMPTY_CASES);
    assert!(
        failures.is_empty(),
        "{} of {} cases crashed or passed:\n{}",
        failures.len(),
        EMPTY_CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn masterkey_aws_endpoint_alone_is_an_error_not_a_crash() {
    if let Ok(case) = std::env::var(CHILD_CASE) {
        let crypt = crypt();
        let builder = crypt.ctx().masterkey_aws_endpoint("kms.example.com");
        let result = match case.as_str() {
            "datakey" => builder.and_then(|b| b.datakey()).map(drop),
            "rewrap_many_datakey" => builder.and_then(|b| b.rewrap_many_datakey(&rawdoc! {})).map(drop),
            other => panic!("unknown case {other}"),
        };
        assert!(result.is_err(), "{case}: an endpoint without a key was accepted");
        return;
    }
    let failures =
        run_cases_isolated("masterkey_aws_endpoint_alone_is_an_error_not_a_crash", &["datakey", "rewrap_many_datakey"]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn isolation_helper_reports_child_failures() {
    // The child-process runner must see a failing child as a failure, or the ignored tests above prove nothing.
    if let Ok(case) = std::env::var(CHILD_CASE) {
        assert_eq!(case, "pass", "child asked to fail");
        return;
    }
    let failures = run_cases_isolated("isolation_helper_reports_child_failures", &["pass", "fail"]);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].starts_with("fail: "), "{failures:?}");
}
