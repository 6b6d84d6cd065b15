//! Every method of the safe API whose C function libmongocrypt added after 1.7, in one place, on the linked build:
//! where the library has the function the method reaches libmongocrypt and works; where it does not, the method is
//! `Error::Unsupported` naming the function, the release that added it and the linked release. The builds of
//! `scripts/test.sh` put every gate on both sides: 1.7.2 has none of these functions; 1.10.1 has use_range_v2,
//! mongo_db and the collinfo-with-db opt-in; 1.13.1 adds the KMS retry functions but feed_with_retry, key expiration
//! and multiple collinfo; 1.17.0 and 1.21.0 have all. The 1.10.1, 1.13.1 and 1.17.0 builds use the 1.21.1 header,
//! so there the header declares functions that the library lacks, and those must be `Unsupported` too (and the
//! test binary must link at all).
//!
//! `mongocrypt_is_crypto_available` is the eleventh function; `libmongocrypt::is_crypto_available()` returns a bool,
//! and the sys tests check it against the library.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use libmongocrypt::bson::{rawdoc, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{feed_kms_reply, run, IoResult, StateMachineIo};
use libmongocrypt::{AffixOptions, Error, KeyEncryptionKey, KmsCtx, State, TextOptions};

const DATAKEY_REPLY: &str = "datakey-local-aws/kms-aws-encrypt-response.txt";

/// What one gated method returned, reduced to whether the C function ran.
struct Outcome {
    function: &'static str,
    since: &'static str,
    result: Result<(), Error>,
}

/// Records `result` of the method behind `function`, added in `since`.
fn outcome<T>(function: &'static str, since: &'static str, result: Result<T, Error>) -> Outcome {
    Outcome { function, since, result: result.map(|_| ()) }
}

/// A KMS driver that calls the three KmsCtx methods gated on the library on the request it serves, records what
/// they returned, and answers with the fixture's AWS encrypt reply (through feed_with_retry where it works).
struct KmsProbe {
    reply: Vec<u8>,
    call_fail: bool,
    seen: Mutex<Vec<Outcome>>,
}

impl StateMachineIo for KmsProbe {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("not used".into())
    }

    fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err("not used".into())
    }

    fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("not used".into())
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        let mut seen = self.seen.lock().unwrap();
        let sleep = kms.sleep_duration();
        if let Ok(d) = &sleep {
            assert_eq!(*d, Duration::ZERO, "a first attempt has no back-off");
        }
        seen.push(outcome("mongocrypt_kms_ctx_usleep", "1.12.0", sleep));
        if self.call_fail {
            // Retries are off: fail() reports the network error and says no retry is allowed.
            let failed = kms.fail();
            if let Ok(retry) = &failed {
                assert!(!retry, "no retry without retry_kms");
            }
            seen.push(outcome("mongocrypt_kms_ctx_fail", "1.12.0", failed));
            return Err("network error reported with fail()".into());
        }
        let fed = kms.feed_with_retry(&self.reply);
        match &fed {
            Ok(should_retry) => assert!(!should_retry, "a 200 reply is final"),
            Err(_) => feed_kms_reply(kms, &self.reply)?,
        }
        seen.push(outcome("mongocrypt_kms_ctx_feed_with_retry", "1.17.0", fed));
        Ok(())
    }
}

fn kms_outcomes(call_fail: bool) -> Vec<Outcome> {
    let crypt = crypt();
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn:aws:kms:us-east-1:1:key/k"))
        .and_then(|b| b.datakey())
        .expect("aws datakey_init");
    assert_eq!(ctx.state(), State::NeedKms);
    let probe = KmsProbe { reply: http_reply(DATAKEY_REPLY), call_fail, seen: Mutex::new(Vec::new()) };
    let result = run(&mut ctx, &probe);
    if call_fail {
        assert!(result.is_err(), "the request failed and may not be retried");
    } else {
        let key = result.expect("the data key is made").expect("datakey has a result");
        assert!(key.get_binary("keyMaterial").is_ok(), "a data key document");
    }
    probe.seen.into_inner().unwrap()
}

fn text_options() -> TextOptions {
    TextOptions {
        case_sensitive: true,
        diacritic_sensitive: false,
        prefix: Some(AffixOptions { str_max_query_length: 10, str_min_query_length: 2 }),
        suffix: None,
        substring: None,
    }
}

/// Calls every gated method once, in a way that succeeds where the library has its C function.
fn all_outcomes() -> Vec<Outcome> {
    let mut out = vec![
        outcome("mongocrypt_setopt_use_range_v2", "1.10.0", builder().use_range_v2().and_then(|b| b.build())),
        outcome("mongocrypt_setopt_retry_kms", "1.12.0", builder().retry_kms(true).and_then(|b| b.build())),
        outcome(
            "mongocrypt_setopt_key_expiration",
            "1.13.0",
            builder().key_expiration(Duration::from_secs(5)).and_then(|b| b.build()),
        ),
        outcome(
            "mongocrypt_setopt_enable_multiple_collinfo",
            "1.13.0",
            builder().enable_multiple_collinfo().and_then(|b| b.build()),
        ),
    ];

    // The database of a bulkWrite's collection, in NEED_MONGO_COLLINFO_WITH_DB, behind the opt-in of the same release.
    let with_db = builder().use_need_mongo_collinfo_with_db_state().and_then(|b| b.build());
    match with_db {
        Ok(crypt) => {
            out.push(outcome("mongocrypt_setopt_use_need_mongo_collinfo_with_db_state", "1.10.0", Ok(())));
            let bulk_write = rawdoc! {
                "bulkWrite": 1,
                "ops": [ { "insert": 0, "document": { "a": 1 } } ],
                "nsInfo": [ { "ns": "db1.coll" } ],
            };
            let ctx = crypt.ctx().encrypt("admin", &bulk_write).expect("bulkWrite encrypt_init");
            assert_eq!(ctx.state(), State::NeedMongoCollinfoWithDb);
            let db = ctx.mongo_db().map(str::to_owned);
            if let Ok(db) = &db {
                assert_eq!(db, "db1");
            }
            out.push(outcome("mongocrypt_ctx_mongo_db", "1.10.0", db));
        }
        Err(e) => {
            out.push(outcome("mongocrypt_setopt_use_need_mongo_collinfo_with_db_state", "1.10.0", Err::<(), _>(e)));
            let crypt = crypt();
            let ctx =
                crypt.ctx().explicit_decrypt(&load_raw("fle1-explicit-local/FLE1DeterministicEncryptedValue.json"));
            let ctx = ctx.expect("explicit_decrypt_init");
            out.push(outcome("mongocrypt_ctx_mongo_db", "1.10.0", ctx.mongo_db().map(str::to_owned)));
        }
    }

    let crypt = crypt();
    out.push(outcome("mongocrypt_ctx_setopt_algorithm_text", "1.15.0", crypt.ctx().algorithm_text(&text_options())));

    out.extend(kms_outcomes(false));
    out.extend(kms_outcomes(true));
    out
}

#[test]
fn every_gated_method_works_or_is_unsupported() {
    let outcomes = all_outcomes();
    let mut unsupported = BTreeSet::new();
    for Outcome { function, since, result } in &outcomes {
        if linked_at_least(since) {
            if let Err(e) = result {
                panic!("{function} (added in {since}) must work on libmongocrypt {}: {e:?}", libmongocrypt::version());
            }
            println!("{function}: works (libmongocrypt {} >= {since})", libmongocrypt::version());
        } else {
            assert_unsupported(result.as_ref().expect_err(function), function, since);
            println!("{function}: Unsupported (needs {since})");
            unsupported.insert(*function);
        }
    }
    let checked: BTreeSet<&str> = outcomes.iter().map(|o| o.function).collect();
    assert_eq!(checked.len(), 10, "ten gated methods (all but is_crypto_available): {checked:?}");

    // What the build decided agrees with what the methods did: a function is Unsupported exactly when the bindings
    // do not declare it, and every function that the header declares but the library lacks is among those.
    let declared = |f: &str| libmongocrypt::sys::MONGOCRYPT_SYS_FUNCTIONS.contains(&f);
    let undeclared: BTreeSet<&str> = checked.iter().copied().filter(|f| !declared(f)).collect();
    assert_eq!(unsupported, undeclared, "Unsupported methods vs functions missing from the bindings");
    for missing in libmongocrypt::sys::MONGOCRYPT_SYS_MISSING_FUNCTIONS {
        assert!(
            unsupported.contains(missing),
            "{missing}: declared by the header, absent from the library, yet not Unsupported"
        );
    }
}
