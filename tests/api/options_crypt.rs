//! Every `mongocrypt_setopt_*` of [`CryptBuilder`], each observed through an effect on the real library. Options the
//! linked libmongocrypt lacks are checked to return `Error::Unsupported` naming the C function, the release that
//! added it, and the linked release.

use crate::common;

use std::time::Duration;

use common::*;
use libmongocrypt::bson::{doc, rawdoc, Document, RawDocumentBuf};
use libmongocrypt::{Crypt, Error, KeyEncryptionKey, KmsProviders, State};

const DET: &str = "fle1-explicit-local/FLE1DeterministicEncryptedValue.json";
const KEY: &str = "fle1-explicit-local/key-ABCDEFAB-local.json";

fn fixture_vault() -> Mock {
    Mock { keys: vec![load_raw(KEY)], ..Mock::default() }
}

/// The first KMS request of an AWS datakey ctx: (provider, endpoint, message).
fn aws_datakey_request(crypt: &Crypt) -> KmsRequest {
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn:aws:kms:us-east-1:1:key/k"))
        .and_then(|b| b.datakey())
        .expect("aws datakey_init");
    assert_eq!(ctx.state(), State::NeedKms);
    let mut scope = ctx.kms_scope().unwrap();
    let kms = scope.next_kms_ctx().expect("a KMS request");
    KmsRequest {
        provider: kms.kms_provider().to_string(),
        endpoint: kms.endpoint().unwrap().to_owned(),
        message: kms.message().unwrap().to_vec(),
    }
}

fn schema() -> Document {
    let info = load_doc("csfle-auto-aws-example/collection-info.json");
    info.get_document("options")
        .unwrap()
        .get_document("validator")
        .unwrap()
        .get_document("$jsonSchema")
        .unwrap()
        .clone()
}

// --- kms_providers and the legacy setters ------------------------------------------------------------------------

#[test]
fn kms_providers_typed_credentials_reach_the_requests() {
    let providers = KmsProviders::new()
        .local("local", &LOCAL_KEY)
        .aws("aws", "AKIDTYPED", "SECRET", Some("SESSIONTOKEN"))
        .azure("azure", "TENANTX", "CLIENTX", "SECRETX")
        .kmip("kmip", "kmip.example.com");
    let crypt = Crypt::builder().kms_providers(&providers).unwrap().build().unwrap();

    let aws = aws_datakey_request(&crypt);
    let message = aws.message_str();
    assert!(message.contains("Credential=AKIDTYPED/"), "{message}");
    assert!(message.contains("X-Amz-Security-Token:SESSIONTOKEN\r\n"), "{message}");

    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::azure("azure", "vault.example.com", "k"))
        .and_then(|b| b.datakey())
        .unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    let kms = scope.next_kms_ctx().unwrap();
    let message = String::from_utf8_lossy(kms.message().unwrap()).into_owned();
    assert!(message.starts_with("POST /TENANTX/oauth2/v2.0/token HTTP/1.1\r\n"), "{message}");
    assert!(message.contains("client_id=CLIENTX"), "{message}");
    assert!(message.contains("client_secret=SECRETX"), "{message}");

    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::kmip("kmip")).and_then(|b| b.datakey()).unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    assert_eq!(scope.next_kms_ctx().unwrap().endpoint().unwrap(), "kmip.example.com:5696", "default KMIP port");

    // The local key: the fixture key (wrapped by 96 zero bytes) decrypts.
    let mut ctx = crypt.ctx().explicit_decrypt(&load_raw(DET)).unwrap();
    assert_bson_eq(drive(&mut ctx, &fixture_vault()).output(), &rawdoc! { "v": "foo" });
}

#[test]
fn kms_providers_local_key_is_used() {
    // Another local master key cannot unwrap the fixture's key.
    let crypt =
        Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[1u8; 96])).unwrap().build().unwrap();
    let mut ctx = crypt.ctx().explicit_decrypt(&load_raw(DET)).unwrap();
    let t = drive(&mut ctx, &fixture_vault());
    assert_eq!(t.states.last(), Some(&State::Error), "{:?}", t.states);
    assert!(!t.error_message().is_empty());
}

#[test]
fn kms_providers_rejects_a_short_local_key() {
    let result = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 10]));
    let message = err_message(result.map(|_| ()));
    assert!(message.contains("96"), "{message}");
}

#[test]
fn kms_providers_named_local() {
    let providers = KmsProviders::new().local("local:a", &[1u8; 96]).local("local:b", &[2u8; 96]);
    let result = Crypt::builder().kms_providers(&providers);
    // Named KMS providers ("type:name") were added in libmongocrypt 1.9.0; 1.7.2 rejects the name at setopt.
    if !linked_at_least("1.9.0") {
        let message = err_message(result.map(|_| ()));
        assert!(message.contains("local:a"), "{message}");
        return;
    }
    let crypt = result.unwrap().build().unwrap();
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local:a")).unwrap().datakey().unwrap();
    let key_a = drive(&mut ctx, &Mock::default()).output().to_owned();
    assert_eq!(to_doc(&key_a).get_document("masterKey").unwrap(), &doc! { "provider": "local:a" });

    // The key works through local:a ...
    let mut ctx = crypt
        .ctx()
        .key_id(key_a.get_binary("_id").unwrap().bytes)
        .and_then(|b| b.algorithm(&libmongocrypt::Algorithm::Random))
        .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": 1 }))
        .unwrap();
    let t = drive(&mut ctx, &Mock { keys: vec![key_a.clone()], ..Mock::default() });
    assert!(t.error.is_none(), "{:?}", t.error);

    // ... and not when local:a is another key.
    let other =
        Crypt::builder().kms_providers(&KmsProviders::new().local("local:a", &[2u8; 96])).unwrap().build().unwrap();
    let mut ctx = other.ctx().explicit_decrypt(t.output()).unwrap();
    let t = drive(&mut ctx, &Mock { keys: vec![key_a], ..Mock::default() });
    assert_eq!(t.states.last(), Some(&State::Error));

    // An unconfigured name is reported.
    let message =
        err_message(crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local:c")).and_then(|b| b.datakey()));
    assert!(message.contains("not configured"), "{message}");
}

#[test]
fn kms_provider_aws_legacy_setter() {
    let crypt = Crypt::builder().kms_provider_aws("LEGACYID", "LEGACYSECRET").unwrap().build().unwrap();
    let request = aws_datakey_request(&crypt);
    assert_eq!(request.provider, "aws");
    assert!(request.message_str().contains("Credential=LEGACYID/"), "{}", request.message_str());
    assert!(!request.message_str().contains("X-Amz-Security-Token"), "no session token was set");
}

#[test]
fn kms_provider_local_legacy_setter() {
    let crypt = Crypt::builder().kms_provider_local(&LOCAL_KEY).unwrap().build().unwrap();
    let mut ctx = crypt.ctx().explicit_decrypt(&load_raw(DET)).unwrap();
    assert_bson_eq(drive(&mut ctx, &fixture_vault()).output(), &rawdoc! { "v": "foo" });

    let crypt = Crypt::builder().kms_provider_local(&[7u8; 96]).unwrap().build().unwrap();
    let mut ctx = crypt.ctx().explicit_decrypt(&load_raw(DET)).unwrap();
    assert_eq!(drive(&mut ctx, &fixture_vault()).states.last(), Some(&State::Error), "wrong local key");

    let message = err_message(Crypt::builder().kms_provider_local(&[0u8; 95]).map(|_| ()));
    assert!(message.contains("96"), "{message}");
}

#[test]
fn build_without_any_kms_provider_fails() {
    let message = err_message(Crypt::builder().build());
    assert!(message.contains("no kms provider set"), "{message}");
}

// --- schema_map, encrypted_field_config_map, bypass_query_analysis -----------------------------------------------

#[test]
fn schema_map_skips_list_collections() {
    let crypt = builder().schema_map(&doc! { "test.test": schema() }).unwrap().build().unwrap();
    let mut ctx = crypt.ctx().encrypt("test", &load_raw("csfle-auto-aws-example/cmd.json")).unwrap();
    let t = drive(
        &mut ctx,
        &Mock {
            markings: Some(load_raw("csfle-auto-aws-example/mongocryptd-reply.json")),
            keys: vec![load_raw("csfle-auto-aws-example/key-document.json")],
            kms: vec![http_reply("csfle-auto-aws-example/kms-decrypt-reply.txt")],
            ..Mock::default()
        },
    );
    assert_eq!(t.states, [State::NeedMongoMarkings, State::NeedMongoKeys, State::NeedKms, State::Ready, State::Done]);
    // The local schema is sent to mongocryptd, marked as not remote.
    let mut expected = load_doc("csfle-auto-aws-example/cmd.json");
    expected.insert("jsonSchema", schema());
    expected.insert("isRemoteSchema", false);
    assert_bson_eq(t.op(State::NeedMongoMarkings), &raw(&expected));
    assert_bson_eq(t.output(), &load_raw("csfle-auto-aws-example/expected-encrypted-cmd.json"));

    // A collection outside the map still needs listCollections.
    let ctx = crypt.ctx().encrypt("test", &rawdoc! { "find": "other", "filter": {} }).unwrap();
    assert_eq!(ctx.state(), State::NeedMongoCollinfo);
}

#[test]
fn bypass_query_analysis_skips_markings() {
    let cmd = load_raw("csfle-auto-aws-example/cmd.json");
    let crypt = builder().schema_map(&doc! { "test.test": schema() }).unwrap().bypass_query_analysis().build().unwrap();
    let mut ctx = crypt.ctx().encrypt("test", &cmd).unwrap();
    let t = drive(&mut ctx, &Mock::default());
    assert_eq!(t.states, [State::Ready, State::Done], "no NEED_MONGO_MARKINGS");
    assert_bson_eq(t.output(), &cmd);

    // Without the option, the same Crypt configuration asks mongocryptd.
    let crypt = builder().schema_map(&doc! { "test.test": schema() }).unwrap().build().unwrap();
    assert_eq!(crypt.ctx().encrypt("test", &cmd).unwrap().state(), State::NeedMongoMarkings);
}

fn encrypted_fields() -> Document {
    doc! {
        "escCollection": "esc",
        "ecocCollection": "ecoc",
        "fields": [{
            "path": "ssn",
            "bsonType": "string",
            "keyId": uuid_bson(&key_abcdefab()),
            "queries": { "queryType": "equality", "contention": 0i64 },
        }],
    }
}

#[test]
fn encrypted_field_config_map_skips_list_collections() {
    let crypt =
        builder().encrypted_field_config_map(&doc! { "test.coll": encrypted_fields() }).unwrap().build().unwrap();
    let ctx = crypt.ctx().encrypt("test", &rawdoc! { "find": "coll", "filter": { "ssn": "x" } }).unwrap();
    assert_eq!(ctx.state(), State::NeedMongoMarkings, "no NEED_MONGO_COLLINFO for a mapped collection");
    let op = to_doc(ctx.mongo_op().unwrap());
    assert_eq!(op.get_str("find").unwrap(), "coll");
    let info = op.get_document("encryptionInformation").expect("QE markings command");
    assert_eq!(info.get_i32("type").unwrap(), 1);
    let sent = info.get_document("schema").unwrap().get_document("test.coll").unwrap();
    assert_eq!(sent.get_array("fields").unwrap(), encrypted_fields().get_array("fields").unwrap());
    assert_eq!(sent.get_str("escCollection").unwrap(), "esc");

    let ctx = crypt.ctx().encrypt("test", &rawdoc! { "find": "other", "filter": {} }).unwrap();
    assert_eq!(ctx.state(), State::NeedMongoCollinfo, "an unmapped collection");
}

// --- crypt_shared ------------------------------------------------------------------------------------------------

#[test]
fn crypt_shared_override_to_a_missing_path_fails_build() {
    let path = "/nonexistent/mongocrypt-rs-test/mongo_crypt_v1.so";
    let message = err_message(builder().set_crypt_shared_lib_path_override(path).unwrap().build());
    assert!(message.contains(path), "{message}");
    assert!(message.contains("override"), "{message}");
}

#[test]
fn crypt_shared_search_path_without_a_library() {
    let dir = TempDir::new("empty-search");
    let crypt = builder().append_crypt_shared_lib_search_path(dir.as_str()).unwrap().build().unwrap();
    assert_eq!(crypt.crypt_shared_lib_version(), None);
    assert_eq!(crypt.crypt_shared_lib_version_string(), None);
    // No crypt_shared: auto encryption asks mongocryptd for markings.
    let ctx = crypt.ctx().encrypt("test", &load_raw("csfle-auto-aws-example/cmd.json")).unwrap();
    assert_eq!(ctx.state(), State::NeedMongoCollinfo);
}

#[test]
fn crypt_shared_search_path_is_searched() {
    // A file that is not a library where crypt_shared is looked for: libmongocrypt tries to open it (and logs why it
    // failed), which proves the directory was searched; the build still succeeds without crypt_shared.
    let dir = TempDir::new("bogus-search");
    let candidate = dir.path().join("mongo_crypt_v1.so");
    std::fs::write(&candidate, b"not a shared library").unwrap();
    let logs = LogCapture::default();
    let crypt = builder()
        .log_handler(logs.handler())
        .unwrap()
        .append_crypt_shared_lib_search_path(dir.as_str())
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(crypt.crypt_shared_lib_version(), None);
    let messages = logs.messages();
    assert!(
        messages
            .iter()
            .any(|(_, m)| m.contains("Error while opening candidate") && m.contains(candidate.to_str().unwrap())),
        "{messages:?}"
    );
}

#[cfg(unix)]
#[test]
fn crypt_shared_paths_are_os_paths() {
    use std::os::unix::ffi::OsStrExt;
    // Not UTF-8: passed as its bytes, and libmongocrypt names the same bytes (lossily printed) in its error.
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(b"/nonexistent/mongocrypt-rs-\xff/mongo_crypt_v1.so"));
    let message = err_message(builder().set_crypt_shared_lib_path_override(path).unwrap().build());
    assert!(message.contains("/nonexistent/mongocrypt-rs-"), "{message}");
    assert!(message.contains("override"), "{message}");
    let dir = TempDir::new("path-search");
    let crypt = builder().append_crypt_shared_lib_search_path(dir.path()).unwrap().build().unwrap();
    assert_eq!(crypt.crypt_shared_lib_version(), None);
    let crypt = builder().append_crypt_shared_lib_search_path(path.parent().unwrap()).unwrap().build().unwrap();
    assert_eq!(crypt.crypt_shared_lib_version(), None);
}

#[test]
fn crypt_shared_path_with_nul_is_invalid() {
    let err = builder().set_crypt_shared_lib_path_override("a\0b").map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = builder().append_crypt_shared_lib_search_path("a\0b").map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

// --- NEED_KMS_CREDENTIALS ----------------------------------------------------------------------------------------

#[test]
fn need_kms_credentials_state_with_on_demand_aws() {
    let providers = KmsProviders::new().local("local", &LOCAL_KEY).on_demand("aws");
    let crypt = Crypt::builder().kms_providers(&providers).unwrap().use_need_kms_credentials_state().build().unwrap();
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn"))
        .and_then(|b| b.datakey())
        .unwrap();
    assert_eq!(ctx.state(), State::NeedKmsCredentials);
    ctx.provide_kms_providers(&KmsProviders::new().aws("aws", "ONDEMANDID", "s", None)).unwrap();
    assert_eq!(ctx.state(), State::NeedKms);
    let mut scope = ctx.kms_scope().unwrap();
    let kms = scope.next_kms_ctx().unwrap();
    let message = String::from_utf8_lossy(kms.message().unwrap()).into_owned();
    assert!(message.contains("Credential=ONDEMANDID/"), "{message}");

    // A local datakey does not need the on-demand provider.
    let ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    assert_eq!(ctx.state(), State::Ready);
}

#[test]
fn need_kms_credentials_with_the_full_driver() {
    let providers = KmsProviders::new().on_demand("aws");
    let crypt = Crypt::builder().kms_providers(&providers).unwrap().use_need_kms_credentials_state().build().unwrap();
    let mut ctx = crypt.ctx().decrypt(&load_raw("csfle-auto-aws-example/expected-encrypted-cmd.json")).unwrap();
    let t = drive(
        &mut ctx,
        &Mock {
            keys: vec![load_raw("csfle-auto-aws-example/key-document.json")],
            kms: vec![http_reply("csfle-auto-aws-example/kms-decrypt-reply.txt")],
            kms_credentials: Some(doc! { "aws": { "accessKeyId": "example", "secretAccessKey": "example" } }),
            ..Mock::default()
        },
    );
    // Credentials are asked for first, as soon as the ctx is initialised (an on-demand provider is configured).
    assert_eq!(
        t.states,
        [State::NeedKmsCredentials, State::NeedMongoKeys, State::NeedKms, State::Ready, State::Done],
        "{:?}",
        t.error
    );
    assert_bson_eq(t.output(), &rawdoc! { "filter": { "ssn": "457-55-5462" }, "find": "test" });
}

#[test]
fn on_demand_provider_requires_the_opt_in() {
    let message = err_message(Crypt::builder().kms_providers(&KmsProviders::new().on_demand("aws")).unwrap().build());
    assert!(message.contains("on-demand credentials not enabled"), "{message}");
}

#[test]
fn provide_kms_providers_rejects_empty_credentials() {
    let crypt = on_demand_crypt("aws");
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn"))
        .and_then(|b| b.datakey())
        .unwrap();
    assert_eq!(ctx.state(), State::NeedKmsCredentials);
    let message = err_message(ctx.provide_kms_providers(&doc! { "aws": {} }));
    assert!(!message.is_empty());
    assert_eq!(ctx.state(), State::Error);
}

// --- NEED_MONGO_COLLINFO_WITH_DB and multiple collinfo -----------------------------------------------------------

fn bulk_write() -> RawDocumentBuf {
    rawdoc! { "bulkWrite": 1, "ops": [ { "insert": 0, "document": { "a": 1 } } ], "nsInfo": [ { "ns": "db1.coll" } ] }
}

#[test]
fn use_need_mongo_collinfo_with_db_state() {
    let result = builder().use_need_mongo_collinfo_with_db_state();
    // mongocrypt_setopt_use_need_mongo_collinfo_with_db_state and mongocrypt_ctx_mongo_db were added in libmongocrypt
    // 1.10.0 (1.10.0's library exports them; 1.7.2's does not).
    if !linked_at_least("1.10.0") {
        assert_unsupported(
            &result.map(|_| ()).unwrap_err(),
            "mongocrypt_setopt_use_need_mongo_collinfo_with_db_state",
            "1.10.0",
        );
        let crypt = crypt();
        let ctx = crypt.ctx().decrypt(&load_raw(DET)).unwrap();
        assert_unsupported(&ctx.mongo_db().unwrap_err(), "mongocrypt_ctx_mongo_db", "1.10.0");
        return;
    }
    let crypt = result.unwrap().build().unwrap();
    // bulkWrite runs on "admin" but names collections of other databases.
    let mut ctx = crypt.ctx().encrypt("admin", &bulk_write()).unwrap();
    assert_eq!(ctx.state(), State::NeedMongoCollinfoWithDb);
    assert_eq!(ctx.mongo_db().unwrap(), "db1");
    assert_bson_eq(ctx.mongo_op().unwrap(), &rawdoc! { "name": "coll" });
    ctx.mongo_feed(&rawdoc! { "name": "coll", "type": "collection", "options": {} }).unwrap();
    ctx.mongo_done().unwrap();
    assert_eq!(ctx.state(), State::NeedMongoMarkings);

    // mongo_db outside that state is an error (refused by the binding, before libmongocrypt).
    let ctx = crypt.ctx().decrypt(&load_raw(DET)).unwrap();
    assert!(matches!(ctx.mongo_db(), Err(Error::WrongState { operation: "mongo_db", .. })));
}

#[test]
fn bulk_write_without_collinfo_with_db_state_is_rejected() {
    let crypt = crypt();
    let message = err_message(crypt.ctx().encrypt("admin", &bulk_write()));
    // 1.7.2 does not know bulkWrite; from 1.10.0 (which has the opt-in) libraries need it to ask for another database.
    if linked_at_least("1.10.0") {
        assert!(message.contains("separate databases"), "{message}");
    } else {
        assert!(message.contains("bulkWrite"), "{message}");
    }
}

fn lookup() -> RawDocumentBuf {
    rawdoc! {
        "aggregate": "c1",
        "pipeline": [ { "$lookup": { "from": "c2", "localField": "a", "foreignField": "b", "as": "x" } } ],
        "cursor": {},
    }
}

#[test]
fn enable_multiple_collinfo() {
    let result = builder().enable_multiple_collinfo();
    // mongocrypt_setopt_enable_multiple_collinfo was added in libmongocrypt 1.13.0.
    if !linked_at_least("1.13.0") {
        assert_unsupported(&result.map(|_| ()).unwrap_err(), "mongocrypt_setopt_enable_multiple_collinfo", "1.13.0");
        return;
    }
    // Without it, a $lookup (two collections) is refused at init.
    let message = err_message(crypt().ctx().encrypt("db", &lookup()));
    assert!(message.contains("$lookup"), "{message}");

    let crypt = result.unwrap().build().unwrap();
    let mut ctx = crypt.ctx().encrypt("db", &lookup()).unwrap();
    // libmongocrypt first asks mongocryptd whether it supports $lookup (wire version).
    if ctx.state() == State::NeedMongoMarkings {
        assert_bson_eq(ctx.mongo_op().unwrap(), &rawdoc! { "isMaster": 1 });
        ctx.mongo_feed(&rawdoc! { "ok": 1, "maxWireVersion": 26 }).unwrap();
        ctx.mongo_done().unwrap();
    }
    assert_eq!(ctx.state(), State::NeedMongoCollinfo);
    let filter = to_doc(ctx.mongo_op().unwrap());
    let names = filter.get_document("name").and_then(|n| n.get_array("$in")).expect("{name: {$in: [...]}}");
    let mut names: Vec<&str> = names.iter().map(|n| n.as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["c1", "c2"]);
    for name in ["c1", "c2"] {
        ctx.mongo_feed(&rawdoc! { "name": name, "type": "collection", "options": {} }).unwrap();
    }
    ctx.mongo_done().unwrap();
    assert_eq!(ctx.state(), State::NeedMongoMarkings, "both collection infos accepted");
}

#[test]
fn duplicate_collinfo_depends_on_version() {
    let info = load_raw("csfle-auto-aws-example/collection-info.json");
    let crypt = crypt();
    let mut ctx = crypt.ctx().encrypt("test", &load_raw("csfle-auto-aws-example/cmd.json")).unwrap();
    ctx.mongo_feed(&info).unwrap();
    let second = ctx.mongo_feed(&info);
    // Version-dependent: 1.7.2 ignores a second listCollections result; 1.21.0 (multiple-collinfo support, 1.13.0)
    // rejects a duplicate for the same collection.
    if linked_at_least("1.13.0") {
        let message = err_message(second);
        assert!(message.contains("duplicate collinfo"), "{message}");
        assert_eq!(ctx.state(), State::Error);
    } else {
        second.unwrap();
        ctx.mongo_done().unwrap();
        assert_eq!(ctx.state(), State::NeedMongoMarkings);
    }
}

// --- retry_kms ---------------------------------------------------------------------------------------------------

const DATAKEY_REPLY: &str = "datakey-local-aws/kms-aws-encrypt-response.txt";

#[test]
fn retry_kms_retries_a_503() {
    let result = builder().retry_kms(true);
    // mongocrypt_setopt_retry_kms and the kms_ctx retry functions were added in libmongocrypt 1.12.0.
    if !linked_at_least("1.12.0") {
        assert_unsupported(&result.map(|_| ()).unwrap_err(), "mongocrypt_setopt_retry_kms", "1.12.0");
        let crypt = crypt();
        let mut ctx = crypt
            .ctx()
            .key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn"))
            .and_then(|b| b.datakey())
            .unwrap();
        let mut scope = ctx.kms_scope().unwrap();
        let mut kms = scope.next_kms_ctx().unwrap();
        assert_unsupported(
            &kms.feed_with_retry(b"HTTP/1.1 503").unwrap_err(),
            "mongocrypt_kms_ctx_feed_with_retry",
            "1.17.0",
        );
        assert_unsupported(&kms.fail().unwrap_err(), "mongocrypt_kms_ctx_fail", "1.12.0");
        assert_unsupported(&kms.sleep_duration().unwrap_err(), "mongocrypt_kms_ctx_usleep", "1.12.0");
        return;
    }
    let crypt = result.unwrap().build().unwrap();
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn"))
        .and_then(|b| b.datakey())
        .unwrap();
    // Version-dependent: 1.12 to 1.16 have retry_kms, fail and usleep, but mongocrypt_kms_ctx_feed_with_retry first
    // appears in 1.17.0 (1.13.1's and 1.15.1's libraries lack it): there, only a network error can ask for a retry.
    if !linked_at_least("1.17.0") {
        {
            let mut scope = ctx.kms_scope().unwrap();
            let mut kms = scope.next_kms_ctx().unwrap();
            assert_unsupported(
                &kms.feed_with_retry(b"HTTP/1.1 503").unwrap_err(),
                "mongocrypt_kms_ctx_feed_with_retry",
                "1.17.0",
            );
            assert_eq!(kms.sleep_duration().unwrap(), Duration::ZERO, "first attempt: no back-off");
            assert!(kms.fail().unwrap(), "retry allowed after a network error");
            let mut again = scope.next_kms_ctx().expect("retried after fail()");
            assert!(again.sleep_duration().unwrap() > Duration::ZERO, "back-off before the retry");
            let reply = http_reply(DATAKEY_REPLY);
            assert!(feed_needed(&mut again, &reply).unwrap().is_empty(), "the whole reply is read");
            assert!(scope.next_kms_ctx().is_none());
            scope.done().unwrap();
        }
        assert_eq!(ctx.state(), State::Ready);
        return;
    }
    {
        let mut scope = ctx.kms_scope().unwrap();
        let mut kms = scope.next_kms_ctx().unwrap();
        assert_eq!(kms.sleep_duration().unwrap(), Duration::ZERO, "first attempt: no back-off");
        let should_retry =
            kms.feed_with_retry(&crlf(b"HTTP/1.1 503 Service Unavailable\nContent-Length: 0\n\n")).unwrap();
        assert!(should_retry, "a 503 is retryable");
        assert!(kms.status().is_ok(), "a retry is not an error");
        // The same request is handed out again, after a back-off.
        let mut again = scope.next_kms_ctx().expect("the request is retried");
        assert!(again.sleep_duration().unwrap() > Duration::ZERO, "back-off before the retry");
        // A network error: fail() allows another retry, with a back-off.
        assert!(again.fail().unwrap(), "retry allowed after a network error");
        assert!(again.sleep_duration().unwrap() > Duration::ZERO);
        let mut third = scope.next_kms_ctx().expect("retried after fail()");
        let reply = http_reply(DATAKEY_REPLY);
        assert!(!third.feed_with_retry(&reply).unwrap(), "a 200 is final");
        assert_eq!(third.bytes_needed(), 0);
        assert!(scope.next_kms_ctx().is_none());
        scope.done().unwrap();
    }
    assert_eq!(ctx.state(), State::Ready);
    let reply = read_open(DATAKEY_REPLY);
    let body: serde_json::Value = serde_json::from_str(&reply[reply.find("\n\n").unwrap() + 2..]).unwrap();
    let blob = b64(body["CiphertextBlob"].as_str().unwrap());
    assert_eq!(ctx.finalize().unwrap().get_binary("keyMaterial").unwrap().bytes, blob.as_slice());
}

#[test]
fn retry_kms_retries_a_429() {
    // Version-dependent: an HTTP status can ask for a retry only through mongocrypt_kms_ctx_feed_with_retry, which
    // first appears in 1.17.0 (retry_kms_retries_a_503 checks it is Unsupported before).
    if !linked_at_least("1.17.0") {
        skip(
            "retry_kms_retries_a_429",
            "mongocrypt_kms_ctx_feed_with_retry requires 1.17.0 (checked as Unsupported above)",
        );
        return;
    }
    let crypt = builder().retry_kms(true).unwrap().build().unwrap();
    let mut ctx = crypt.ctx().decrypt(&load_raw("csfle-auto-aws-example/expected-encrypted-cmd.json")).unwrap();
    ctx.mongo_feed(&load_raw("csfle-auto-aws-example/key-document.json")).unwrap();
    ctx.mongo_done().unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    let mut kms = scope.next_kms_ctx().unwrap();
    assert!(kms.feed_with_retry(&crlf(b"HTTP/1.1 429 Too Many Requests\nContent-Length: 0\n\n")).unwrap());
    let kms = scope.next_kms_ctx().expect("retried");
    assert!(kms.sleep_duration().unwrap() > Duration::ZERO);
}

#[test]
fn without_retry_kms_a_503_is_an_error() {
    let crypt = crypt();
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn"))
        .and_then(|b| b.datakey())
        .unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    let mut kms = scope.next_kms_ctx().unwrap();
    let reply = crlf(b"HTTP/1.1 503 Service Unavailable\nContent-Length: 0\n\n");
    let message = err_message(kms.feed(&reply));
    assert!(message.contains("HTTP status=503"), "{message}");
    if linked_at_least("1.12.0") {
        assert!(!kms.fail().unwrap(), "no retry when retry_kms is off");
    }
}

// --- key_expiration ----------------------------------------------------------------------------------------------

fn decrypt_twice_with_pause(crypt: &Crypt) -> (Vec<State>, Vec<State>) {
    let mut ctx = crypt.ctx().explicit_decrypt(&load_raw(DET)).unwrap();
    let first = drive(&mut ctx, &fixture_vault());
    std::thread::sleep(Duration::from_millis(30));
    let mut ctx = crypt.ctx().explicit_decrypt(&load_raw(DET)).unwrap();
    let second = drive(&mut ctx, &fixture_vault());
    assert_bson_eq(second.output(), &rawdoc! { "v": "foo" });
    (first.states, second.states)
}

#[test]
fn key_expiration() {
    let result = builder().key_expiration(Duration::ZERO);
    // mongocrypt_setopt_key_expiration was added in libmongocrypt 1.13.0 (before: a fixed 60 s cache).
    if !linked_at_least("1.13.0") {
        assert_unsupported(&result.map(|_| ()).unwrap_err(), "mongocrypt_setopt_key_expiration", "1.13.0");
        return;
    }
    let never = result.unwrap().build().unwrap();
    let (first, second) = decrypt_twice_with_pause(&never);
    assert_eq!(first, [State::NeedMongoKeys, State::Ready, State::Done]);
    assert_eq!(second, [State::Ready, State::Done], "0 = never expires");

    let short = builder().key_expiration(Duration::from_millis(1)).unwrap().build().unwrap();
    let (first, second) = decrypt_twice_with_pause(&short);
    assert_eq!(first, [State::NeedMongoKeys, State::Ready, State::Done]);
    assert_eq!(second, [State::NeedMongoKeys, State::Ready, State::Done], "1 ms: the key expired");
}

// --- use_range_v2 ------------------------------------------------------------------------------------------------

#[test]
fn use_range_v2() {
    let result = builder().use_range_v2();
    // mongocrypt_setopt_use_range_v2 was added in libmongocrypt 1.10.0; from 1.11.0 range V2 is the default and the
    // call changes nothing, so the effect checked is that Range payloads are V2 (blob subtype 11, with trimFactor).
    if !linked_at_least("1.10.0") {
        assert_unsupported(&result.map(|_| ()).unwrap_err(), "mongocrypt_setopt_use_range_v2", "1.10.0");
        return;
    }
    let crypt = result.unwrap().build().unwrap();
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    let key = ctx.finalize_owned().unwrap();
    let mut ctx = crypt
        .ctx()
        .key_id(key.get_binary("_id").unwrap().bytes)
        .and_then(|b| b.algorithm(&libmongocrypt::Algorithm::Range))
        .and_then(|b| b.contention_factor(0))
        .and_then(|b| {
            b.algorithm_range(&libmongocrypt::RangeOptions {
                min: Some(0.into()),
                max: Some(100.into()),
                sparsity: Some(1),
                trim_factor: Some(2),
                precision: None,
            })
        })
        .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": 5 }))
        .unwrap();
    let t = drive(&mut ctx, &Mock { keys: vec![key.clone()], ..Mock::default() });
    let v = t.output().get_binary("v").unwrap();
    assert_eq!(v.bytes[0], 11, "FLE2InsertUpdatePayloadV2");
    let payload = to_doc(libmongocrypt::bson::RawDocument::from_bytes(&v.bytes[1..]).unwrap());
    // Version-dependent: on 1.10, where range V1 is still the default, the opt-in is what lets trimFactor through
    // (without it the same options are refused), and its V2 payload does not repeat the range options (no "tf";
    // seen on 1.10.1). From 1.11.0 the payload carries them.
    if !linked_at_least("1.11.0") {
        assert!(payload.get_array("g").is_ok(), "range edges: {payload}");
        // The same configuration as `builder()`, without use_range_v2.
        let without = common::crypt();
        let message = err_message(
            without
                .ctx()
                .key_id(key.get_binary("_id").unwrap().bytes)
                .and_then(|b| b.algorithm(&libmongocrypt::Algorithm::Range))
                .and_then(|b| b.contention_factor(0))
                .and_then(|b| {
                    b.algorithm_range(&libmongocrypt::RangeOptions {
                        min: Some(0.into()),
                        max: Some(100.into()),
                        sparsity: Some(1),
                        trim_factor: Some(2),
                        precision: None,
                    })
                })
                .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": 5 })),
        );
        assert!(message.contains("'trimFactor' is not supported for QE range v1"), "{message}");
        return;
    }
    assert_eq!(payload.get_i32("tf").unwrap_or_else(|e| panic!("{e}: {payload}")), 2, "trimFactor is a range V2 field");
}
