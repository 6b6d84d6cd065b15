//! Every `mongocrypt_ctx_setopt_*` of [`CtxBuilder`], plus `explicit_encrypt_expression`, `rewrap_many_datakey` and
//! `provide_kms_providers`, each observed through what libmongocrypt does with it: the requests it makes, the
//! payloads it produces, or the error it gives for a value it rejects.
//!
//! Queryable Encryption payloads are `Binary(6, type ‖ BSON)`. Types seen: 4/11 insert (V1/V2; V2 from 1.8),
//! 5/12 equality find, 6/16 unindexed, 10/13 range find, 18 text find. Fields checked: `u` index key id, `cm`
//! contention factor, range `sp`/`tf`/`mn`/`mx`/`pn`, text `cf`/`df`/`ps`.

use crate::common;

use common::*;
use libmongocrypt::bson::{doc, rawdoc, Bson, Document, RawDocumentBuf};
use libmongocrypt::{
    AffixOptions, Algorithm, Crypt, CtxBuilder, KeyEncryptionKey, KmsProviders, QueryType, RangeOptions, State,
    SubstringOptions, TextOptions,
};

const DET: &str = "fle1-explicit-local/FLE1DeterministicEncryptedValue.json";
const KEY: &str = "fle1-explicit-local/key-ABCDEFAB-local.json";

/// A 2048-bit RSA test key (PKCS#8 DER, base64) for the GCP provider, made with `openssl genpkey` for these tests;
/// it protects nothing.
const GCP_PRIVATE_KEY: &str = include_str!("../keys/rsa-2048.pkcs8.b64");

/// A new local data key: (`_id` bytes, key document).
fn new_key(crypt: &Crypt) -> (Vec<u8>, RawDocumentBuf) {
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    let key = ctx.finalize_owned().unwrap();
    (key.get_binary("_id").unwrap().bytes.to_vec(), key)
}

/// Runs an explicit operation against `keys`; the trace.
fn run(
    crypt: &Crypt,
    keys: &[RawDocumentBuf],
    f: impl FnOnce(CtxBuilder) -> libmongocrypt::Result<libmongocrypt::Ctx>,
) -> Trace {
    let mut ctx = f(crypt.ctx()).unwrap_or_else(|e| panic!("init failed: {e}"));
    drive(&mut ctx, &Mock { keys: keys.to_vec(), ..Mock::default() })
}

/// The init error of an explicit operation.
fn init_error(crypt: &Crypt, f: impl FnOnce(CtxBuilder) -> libmongocrypt::Result<libmongocrypt::Ctx>) -> String {
    err_message(f(crypt.ctx()).map(|c| c.state()))
}

/// `(payload type, payload document)` of a QE value `{v: Binary(6, ...)}`.
fn payload(output: &libmongocrypt::bson::RawDocument) -> (u8, Document) {
    let v = output.get_binary("v").expect("v is a binary");
    assert_eq!(u8::from(v.subtype), 6);
    (v.bytes[0], to_doc(libmongocrypt::bson::RawDocument::from_bytes(&v.bytes[1..]).expect("payload is BSON")))
}

fn qe_v2() -> bool {
    // QE protocol V2 payloads (types 11, 12, 16) replaced V1 (4, 5, 6) in libmongocrypt 1.8.0.
    linked_at_least("1.8.0")
}

// --- key_id, key_alt_name, key_material ----------------------------------------------------------------------------

#[test]
fn key_id_is_requested_from_the_key_vault() {
    let crypt = crypt();
    let id = b"0123456789abcdef".to_vec();
    let t = run(&crypt, &[], |b| b.key_id(&id)?.algorithm(&Algorithm::Random)?.explicit_encrypt(&rawdoc! { "v": 1 }));
    assert_bson_eq(
        t.op(State::NeedMongoKeys),
        &raw(&doc! { "$or": [ { "_id": { "$in": [uuid_bson(&id)] } }, { "keyAltNames": { "$in": [] } } ] }),
    );
    assert!(t.error_message().contains("not all keys requested were satisfied"));
}

#[test]
fn key_id_must_be_16_bytes() {
    let message = err_message(crypt().ctx().key_id(&[1, 2, 3]).map(|_| ()));
    assert!(message.contains("16 byte UUID"), "{message}");
}

#[test]
fn key_alt_name_is_requested_and_single_for_encryption() {
    let crypt = crypt();
    let t = run(&crypt, &[], |b| {
        b.key_alt_name("altname")?.algorithm(&Algorithm::Random)?.explicit_encrypt(&rawdoc! { "v": 1 })
    });
    assert_bson_eq(
        t.op(State::NeedMongoKeys),
        &raw(&doc! { "$or": [ { "_id": { "$in": [] } }, { "keyAltNames": { "$in": ["altname"] } } ] }),
    );
    let message = init_error(&crypt, |b| {
        b.key_alt_name("a")?.key_alt_name("b")?.algorithm(&Algorithm::Random)?.explicit_encrypt(&rawdoc! { "v": 1 })
    });
    assert!(message.contains("must not specify multiple key alt names"), "{message}");
}

#[test]
fn key_alt_names_of_a_data_key() {
    let crypt = crypt();
    let t = run(&crypt, &[], |b| {
        b.key_encryption_key(&KeyEncryptionKey::local("local"))?.key_alt_name("one")?.key_alt_name("two")?.datakey()
    });
    let names: Vec<String> =
        to_doc(t.output()).get_array("keyAltNames").unwrap().iter().map(|n| n.as_str().unwrap().to_owned()).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"one".to_owned()) && names.contains(&"two".to_owned()), "{names:?}");
}

#[test]
fn key_material_must_be_96_bytes() {
    let message = err_message(crypt().ctx().key_material(&[0u8; 64]).map(|_| ()));
    assert!(message.contains("96") && message.contains("64"), "{message}");
}

// --- algorithm -----------------------------------------------------------------------------------------------------

#[test]
fn algorithm_deterministic_and_random() {
    let crypt = crypt();
    let keys = [load_raw(KEY)];
    let det = run(&crypt, &keys, |b| {
        b.key_id(&key_abcdefab())?.algorithm(&Algorithm::Deterministic)?.explicit_encrypt(&rawdoc! { "v": "foo" })
    });
    assert_bson_eq(det.output(), &load_raw(DET));
    let random = run(&crypt, &keys, |b| {
        b.key_id(&key_abcdefab())?.algorithm(&Algorithm::Random)?.explicit_encrypt(&rawdoc! { "v": "foo" })
    });
    assert_eq!(random.output().get_binary("v").unwrap().bytes[0], 2, "FLE1 Random blob");
    assert_eq!(det.output().get_binary("v").unwrap().bytes[0], 1, "FLE1 Deterministic blob");
}

#[test]
fn algorithm_indexed_and_unindexed() {
    let crypt = crypt();
    let (id, key) = new_key(&crypt);
    let keys = [key];
    let t = run(&crypt, &keys, |b| {
        b.key_id(&id)?.algorithm(&Algorithm::Indexed)?.contention_factor(0)?.explicit_encrypt(&rawdoc! { "v": "abc" })
    });
    let (kind, p) = payload(t.output());
    assert_eq!(kind, if qe_v2() { 11 } else { 4 }, "FLE2InsertUpdatePayload");
    assert_eq!(p.get("u"), Some(&uuid_bson(&id)));
    assert_eq!(p.get_i32("t").unwrap(), 2, "original BSON type: string");

    let t = run(&crypt, &keys, |b| {
        b.key_id(&id)?.algorithm(&Algorithm::Unindexed)?.explicit_encrypt(&rawdoc! { "v": "abc" })
    });
    let v = t.output().get_binary("v").unwrap();
    assert_eq!(v.bytes[0], if qe_v2() { 16 } else { 6 }, "FLE2UnindexedEncryptedValue");
    assert_eq!(&v.bytes[1..17], id.as_slice());
    let back = run(&crypt, &keys, |b| b.explicit_decrypt(t.output()));
    assert_bson_eq(back.output(), &rawdoc! { "v": "abc" });
}

#[test]
fn algorithm_names_reach_libmongocrypt() {
    let crypt = crypt();
    let message = init_error(&crypt, |b| {
        b.key_id(&key_abcdefab())?.algorithm(&Algorithm::Other("Bogus".into()))?.explicit_encrypt(&rawdoc! { "v": 1 })
    });
    assert!(message.contains("unsupported algorithm string \"Bogus\""), "{message}");

    // "Range" is known from libmongocrypt 1.10.0 (stable in 1.11.0), the string algorithm from 1.15.0 as
    // "TextPreview" and from 1.21.0 as "string" (see text_names); older libraries name the string they did not
    // recognise, which proves it was passed through unchanged.
    let preview = Algorithm::Other("TextPreview".into());
    if linked_at_least("1.15.0") && !linked_at_least("1.21.0") {
        let message = init_error(&crypt, |b| {
            b.key_id(&key_abcdefab())?.algorithm(&preview)?.contention_factor(0)?.explicit_encrypt(&rawdoc! { "v": 1 })
        });
        assert!(message.contains("opts are required"), "TextPreview: {message}");
    }
    for (algorithm, since) in [(Algorithm::Range, "1.10.0"), (Algorithm::String, "1.21.0")] {
        let message = init_error(&crypt, |b| {
            b.key_id(&key_abcdefab())?
                .algorithm(&algorithm)?
                .contention_factor(0)?
                .explicit_encrypt(&rawdoc! { "v": 1 })
        });
        if linked_at_least(since) {
            // Known, but incomplete without its options.
            assert!(message.contains("opts are required"), "{algorithm:?}: {message}");
        } else {
            assert!(message.contains(&format!("unsupported algorithm string \"{}\"", algorithm.as_str())), "{message}");
        }
    }
}

// --- legacy master key setters -------------------------------------------------------------------------------------

#[test]
fn masterkey_aws_and_endpoint() {
    let crypt = crypt();
    let mut ctx = crypt
        .ctx()
        .masterkey_aws("eu-west-1", "arn:legacy")
        .and_then(|b| b.masterkey_aws_endpoint("kms.example.com:444"))
        .and_then(|b| b.datakey())
        .unwrap();
    let t = drive(
        &mut ctx,
        &Mock { kms: vec![http_reply("datakey-local-aws/kms-aws-encrypt-response.txt")], ..Mock::default() },
    );
    assert_eq!(t.states, [State::NeedKms, State::Ready, State::Done], "{:?}", t.error);
    assert_eq!(t.kms[0].provider, "aws");
    assert_eq!(t.kms[0].endpoint, "kms.example.com:444");
    let message = t.kms[0].message_str();
    assert!(message.contains("Host:kms.example.com\r\n"), "{message}");
    assert!(message.contains("/eu-west-1/kms/aws4_request"), "{message}");
    assert!(message.contains("\"KeyId\": \"arn:legacy\""), "{message}");
    let master = to_doc(t.output()).get_document("masterKey").unwrap().clone();
    assert_eq!(master.get_str("provider").unwrap(), "aws");
    assert_eq!(master.get_str("region").unwrap(), "eu-west-1");
    assert_eq!(master.get_str("key").unwrap(), "arn:legacy");
    assert_eq!(master.get_str("endpoint").unwrap(), "kms.example.com:444");
}

#[test]
fn masterkey_aws_default_endpoint() {
    let crypt = crypt();
    let mut ctx = crypt.ctx().masterkey_aws("ap-south-1", "arn:x").and_then(|b| b.datakey()).unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    assert_eq!(scope.next_kms_ctx().unwrap().endpoint().unwrap(), "kms.ap-south-1.amazonaws.com:443");
}

#[test]
fn masterkey_local_legacy() {
    let crypt = crypt();
    let t = run(&crypt, &[], |b| b.masterkey_local()?.datakey());
    assert_eq!(t.states, [State::Ready, State::Done]);
    assert_eq!(to_doc(t.output()).get_document("masterKey").unwrap(), &doc! { "provider": "local" });
    // An endpoint makes no sense for a local key; the builder refuses it before libmongocrypt sees it.
    let result = crypt.ctx().masterkey_local().and_then(|b| b.masterkey_aws_endpoint("x")).map(|_| ());
    assert!(
        matches!(result, Err(libmongocrypt::Error::InvalidArgument(ref m)) if m.contains("needs an AWS master key"))
    );
}

#[test]
fn masterkey_aws_endpoint_alone() {
    // libmongocrypt 1.21.0 dereferences NULL in datakey_init after an endpoint without a key (1.7.2 reports the
    // missing region), so the builder refuses the endpoint itself, on every version.
    let result = crypt().ctx().masterkey_aws_endpoint("kms.example.com").map(|_| ());
    assert!(
        matches!(result, Err(libmongocrypt::Error::InvalidArgument(ref m)) if m.contains("set masterkey_aws first"))
    );
}

#[test]
fn legacy_and_new_master_key_setters_conflict() {
    let crypt = crypt();
    let message = err_message(
        crypt
            .ctx()
            .masterkey_aws("us-east-1", "arn")
            .and_then(|b| b.key_encryption_key(&KeyEncryptionKey::local("local")))
            .map(|_| ()),
    );
    assert!(message.contains("already set"), "{message}");
}

// --- key_encryption_key, per provider ------------------------------------------------------------------------------

fn all_providers() -> KmsProviders {
    let gcp_key = b64(GCP_PRIVATE_KEY);
    KmsProviders::new()
        .local("local", &LOCAL_KEY)
        .aws("aws", "example", "example", None)
        .azure("azure", "tenant", "client", "secret")
        .gcp("gcp", "test@example.com", &gcp_key)
        .kmip("kmip", "kmip.example.com")
}

/// The first KMS request of a datakey ctx with `kek`.
fn first_request(crypt: &Crypt, kek: &KeyEncryptionKey) -> KmsRequest {
    let mut ctx =
        crypt.ctx().key_encryption_key(kek).and_then(|b| b.datakey()).unwrap_or_else(|e| panic!("{kek:?}: {e}"));
    assert_eq!(ctx.state(), State::NeedKms, "{kek:?}");
    let mut scope = ctx.kms_scope().unwrap();
    let kms = scope.next_kms_ctx().unwrap();
    KmsRequest {
        provider: kms.kms_provider().to_string(),
        endpoint: kms.endpoint().unwrap().to_owned(),
        message: kms.message().unwrap().to_vec(),
    }
}

/// The request that follows an OAuth token reply (Azure, GCP).
fn request_after_oauth(crypt: &Crypt, kek: &KeyEncryptionKey) -> KmsRequest {
    let mut ctx = crypt.ctx().key_encryption_key(kek).and_then(|b| b.datakey()).unwrap();
    let body = r#"{"access_token": "TESTTOKEN", "expires_in": 3600}"#;
    let reply =
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let mut scope = ctx.kms_scope().unwrap();
    let mut kms = scope.next_kms_ctx().unwrap();
    kms.feed(reply.as_bytes()).unwrap();
    assert_eq!(kms.bytes_needed(), 0);
    scope.done().unwrap();
    assert_eq!(ctx.state(), State::NeedKms, "second round: the KMS itself");
    let mut scope = ctx.kms_scope().unwrap();
    let kms = scope.next_kms_ctx().unwrap();
    KmsRequest {
        provider: kms.kms_provider().to_string(),
        endpoint: kms.endpoint().unwrap().to_owned(),
        message: kms.message().unwrap().to_vec(),
    }
}

#[test]
fn key_encryption_key_local() {
    let crypt = Crypt::builder().kms_providers(&all_providers()).unwrap().build().unwrap();
    let t = run(&crypt, &[], |b| b.key_encryption_key(&KeyEncryptionKey::local("local"))?.datakey());
    assert_eq!(t.states, [State::Ready, State::Done], "no KMS round trip for a local key");
}

#[test]
fn key_encryption_key_aws_with_endpoint() {
    let crypt = Crypt::builder().kms_providers(&all_providers()).unwrap().build().unwrap();
    let r = first_request(&crypt, &KeyEncryptionKey::aws("aws", "us-west-2", "arn:k").endpoint("aws.example.com:1234"));
    assert_eq!((r.provider.as_str(), r.endpoint.as_str()), ("aws", "aws.example.com:1234"));
    assert!(r.message_str().contains("X-Amz-Target:TrentService.Encrypt"));
    assert!(r.message_str().contains("/us-west-2/kms/aws4_request"));
}

#[test]
fn key_encryption_key_azure() {
    let crypt = Crypt::builder().kms_providers(&all_providers()).unwrap().build().unwrap();
    let kek = KeyEncryptionKey::azure("azure", "vault.example.com", "mykey").with("keyVersion", "v1");
    let r = first_request(&crypt, &kek);
    assert_eq!((r.provider.as_str(), r.endpoint.as_str()), ("azure", "login.microsoftonline.com:443"));
    assert!(r.message_str().starts_with("POST /tenant/oauth2/v2.0/token HTTP/1.1\r\n"), "{}", r.message_str());
    let r = request_after_oauth(&crypt, &kek);
    assert_eq!((r.provider.as_str(), r.endpoint.as_str()), ("azure", "vault.example.com:443"));
    let message = r.message_str();
    assert!(message.starts_with("POST /keys/mykey/v1/wrapkey?api-version="), "{message}");
    assert!(message.contains("Authorization:Bearer TESTTOKEN\r\n"), "{message}");
}

/// base64url without padding, decoded.
fn b64url(s: &str) -> Vec<u8> {
    let mut t = s.replace('-', "+").replace('_', "/");
    while !t.len().is_multiple_of(4) {
        t.push('=');
    }
    b64(&t)
}

#[test]
fn key_encryption_key_gcp_signs_a_valid_jwt() {
    use ring::signature::KeyPair;
    let crypt = Crypt::builder().kms_providers(&all_providers()).unwrap().build().unwrap();
    let kek = KeyEncryptionKey::gcp("gcp", "proj", "global", "ring", "name").endpoint("gcpkms.example.com");
    let r = first_request(&crypt, &kek);
    assert_eq!((r.provider.as_str(), r.endpoint.as_str()), ("gcp", "oauth2.googleapis.com:443"));
    let message = r.message_str();
    let body = message.split_once("\r\n\r\n").unwrap().1;
    let assertion = body.split('&').find_map(|p| p.strip_prefix("assertion=")).expect("JWT assertion");
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims: serde_json::Value = serde_json::from_slice(&b64url(parts[1])).unwrap();
    assert_eq!(claims["iss"], "test@example.com");
    // The RS256 signature (the sign_rsaes_pkcs1_v1_5 hook with RustCrypto, or native crypto) verifies.
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&b64(GCP_PRIVATE_KEY)).unwrap();
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        pair.public_key().as_ref(),
    );
    public.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &b64url(parts[2])).expect("JWT signature verifies");

    let r = request_after_oauth(&crypt, &kek);
    assert_eq!((r.provider.as_str(), r.endpoint.as_str()), ("gcp", "gcpkms.example.com:443"));
    let message = r.message_str();
    assert!(
        message
            .starts_with("POST /v1/projects/proj/locations/global/keyRings/ring/cryptoKeys/name:encrypt HTTP/1.1\r\n"),
        "{message}"
    );
    assert!(message.contains("Authorization:Bearer TESTTOKEN\r\n"), "{message}");
}

#[test]
fn key_encryption_key_kmip() {
    let crypt = Crypt::builder().kms_providers(&all_providers()).unwrap().build().unwrap();
    let r = first_request(&crypt, &KeyEncryptionKey::kmip("kmip"));
    assert_eq!((r.provider.as_str(), r.endpoint.as_str()), ("kmip", "kmip.example.com:5696"));
    assert_eq!(&r.message[..3], &[0x42, 0x00, 0x78], "a KMIP RequestMessage (tag 0x420078)");
    let r = first_request(&crypt, &KeyEncryptionKey::kmip("kmip").endpoint("other.example.com:1234"));
    assert_eq!(r.endpoint, "other.example.com:1234");
}

#[test]
fn key_encryption_key_without_credentials() {
    // The MANIFEST providers have no gcp or kmip.
    let crypt = crypt();
    for kek in [KeyEncryptionKey::gcp("gcp", "p", "l", "r", "n"), KeyEncryptionKey::kmip("kmip")] {
        let message = err_message(crypt.ctx().key_encryption_key(&kek).and_then(|b| b.datakey()));
        assert!(message.contains("requested kms provider not configured"), "{kek:?}: {message}");
    }
    let message = err_message(crypt.ctx().key_encryption_key(&doc! { "provider": "nope" }).map(|_| ()));
    assert!(message.contains("nope"), "{message}");
    let message = err_message(crypt.ctx().datakey());
    assert!(message.contains("master key required"), "{message}");
}

// --- contention_factor, index_key_id, query_type --------------------------------------------------------------------

#[test]
fn contention_factor_reaches_the_find_payload() {
    let crypt = crypt();
    let (id, key) = new_key(&crypt);
    let t = run(&crypt, &[key], |b| {
        b.key_id(&id)?
            .algorithm(&Algorithm::Indexed)?
            .contention_factor(7)?
            .query_type(&QueryType::Equality)?
            .explicit_encrypt(&rawdoc! { "v": "abc" })
    });
    let (kind, p) = payload(t.output());
    assert_eq!(kind, if qe_v2() { 12 } else { 5 }, "FLE2FindEqualityPayload");
    assert_eq!(p.get_i64("cm").unwrap(), 7);
}

#[test]
fn contention_factor_is_validated() {
    let crypt = crypt();
    let (id, _) = new_key(&crypt);
    let message =
        init_error(&crypt, |b| b.key_id(&id)?.algorithm(&Algorithm::Indexed)?.explicit_encrypt(&rawdoc! { "v": "a" }));
    assert!(message.contains("contention factor is required"), "{message}");
    let message = init_error(&crypt, |b| {
        b.key_id(&id)?.algorithm(&Algorithm::Indexed)?.contention_factor(-1)?.explicit_encrypt(&rawdoc! { "v": "a" })
    });
    assert!(message.contains("contention must be non-negative"), "{message}");
    let message = init_error(&crypt, |b| {
        b.key_id(&id)?
            .algorithm(&Algorithm::Deterministic)?
            .contention_factor(1)?
            .explicit_encrypt(&rawdoc! { "v": "a" })
    });
    assert!(message.contains("cannot set both algorithm and contention factor"), "{message}");
}

#[test]
fn index_key_id_is_fetched_and_used() {
    let crypt = crypt();
    let (id, key) = new_key(&crypt);
    let (index_id, index_key) = new_key(&crypt);
    let t = run(&crypt, &[key, index_key], |b| {
        b.key_id(&id)?
            .index_key_id(&index_id)?
            .algorithm(&Algorithm::Indexed)?
            .contention_factor(0)?
            .explicit_encrypt(&rawdoc! { "v": "abc" })
    });
    let filter = KeyFilter::parse(t.op(State::NeedMongoKeys));
    assert!(filter.ids.contains(&id) && filter.ids.contains(&index_id), "{filter:?}");
    assert_eq!(t.fed_keys.len(), 2);
    let (_, p) = payload(t.output());
    assert_eq!(p.get("u"), Some(&uuid_bson(&index_id)), "the payload names the index key");

    let message = init_error(&crypt, |b| {
        b.key_id(&id)?
            .index_key_id(&index_id)?
            .algorithm(&Algorithm::Deterministic)?
            .explicit_encrypt(&rawdoc! { "v": "a" })
    });
    assert!(message.contains("cannot set both algorithm and index key id"), "{message}");
    let message = err_message(crypt.ctx().index_key_id(&[0u8; 3]).map(|_| ()));
    assert!(!message.is_empty());
}

/// Options applied to a builder.
type Setup = dyn Fn(CtxBuilder) -> libmongocrypt::Result<CtxBuilder>;

#[test]
fn query_type_is_validated() {
    let crypt = crypt();
    let (id, _) = new_key(&crypt);
    let cases: [(Box<Setup>, &str); 4] = [
        (
            Box::new(|b| b.algorithm(&Algorithm::Deterministic)?.query_type(&QueryType::Equality)),
            "cannot set both algorithm and query type",
        ),
        (
            Box::new(|b| b.algorithm(&Algorithm::Unindexed)?.query_type(&QueryType::Equality)),
            "cannot set query type with no index type",
        ),
        (Box::new(|b| b.query_type(&QueryType::Equality)), "algorithm or index type required"),
        (
            Box::new(|b| b.algorithm(&Algorithm::Indexed)?.query_type(&QueryType::Other("bogus".into()))),
            "Unsupported query_type \"bogus\"",
        ),
    ];
    for (setup, expected) in cases {
        let message = err_message(
            setup(crypt.ctx().key_id(&id).unwrap()).and_then(|b| b.explicit_encrypt(&rawdoc! { "v": "a" })),
        );
        assert!(message.contains(expected), "{expected}: {message}");
    }
}

// --- algorithm_range and explicit_encrypt_expression -----------------------------------------------------------------

fn range_opts() -> RangeOptions {
    RangeOptions {
        min: Some(Bson::Int32(0)),
        max: Some(Bson::Int32(200)),
        sparsity: Some(2),
        precision: None,
        trim_factor: Some(3),
    }
}

#[test]
fn algorithm_range_insert() {
    // "Range" (range V2) is stable from libmongocrypt 1.11.0; 1.7.2 has only the "RangePreview" protocol.
    let crypt = crypt();
    let (id, key) = new_key(&crypt);
    if !linked_at_least("1.11.0") {
        let message = init_error(&crypt, |b| {
            b.key_id(&id)?
                .algorithm(&Algorithm::Range)?
                .contention_factor(0)?
                .algorithm_range(&range_opts())?
                .explicit_encrypt(&rawdoc! { "v": 42 })
        });
        // Version-dependent: 1.7.2 does not know the string "Range"; 1.10 does, but its default protocol is still
        // range V1 (V2 needs use_range_v2), whose parser refuses the V2 option trimFactor.
        if linked_at_least("1.10.0") {
            assert!(message.contains("'trimFactor' is not supported for QE range v1"), "{message}");
        } else {
            assert!(message.contains("unsupported algorithm string \"Range\""), "{message}");
        }
        // The range options still reach the library through the preview algorithm.
        let preview = Algorithm::Other("RangePreview".into());
        let opts = doc! { "min": 0, "max": 200, "sparsity": 1i64 };
        let t = run(&crypt, &[key], |b| {
            b.key_id(&id)?
                .algorithm(&preview)?
                .contention_factor(0)?
                .algorithm_range(&opts)?
                .explicit_encrypt(&rawdoc! { "v": 42 })
        });
        let (kind, p) = payload(t.output());
        // Version-dependent: Queryable Encryption protocol v2, the default from 1.8.0, writes the preview's payload
        // as FLE2InsertUpdatePayloadV2 (11; seen on 1.10.1), v1 (1.7.2) as FLE2InsertUpdatePayload (4).
        let expected = if linked_at_least("1.8.0") { 11 } else { 4 };
        assert_eq!(kind, expected, "FLE2InsertUpdatePayload(V2)");
        assert!(p.get_array("g").is_ok(), "range edges: {p}");
        return;
    }
    let t = run(&crypt, &[key], |b| {
        b.key_id(&id)?
            .algorithm(&Algorithm::Range)?
            .contention_factor(0)?
            .algorithm_range(&range_opts())?
            .explicit_encrypt(&rawdoc! { "v": 42 })
    });
    let (kind, p) = payload(t.output());
    assert_eq!(kind, 11, "FLE2InsertUpdatePayloadV2");
    assert_eq!(p.get_i32("t").unwrap(), 16, "int32");
    assert_eq!(p.get_i64("sp").unwrap(), 2);
    assert_eq!(p.get_i32("tf").unwrap(), 3);
    assert_eq!(p.get("mn"), Some(&Bson::Int32(0)));
    assert_eq!(p.get("mx"), Some(&Bson::Int32(200)));
    assert!(!p.get_array("g").unwrap().is_empty(), "edge tokens");
}

#[test]
fn algorithm_range_double_with_precision() {
    if !linked_at_least("1.11.0") {
        skip("algorithm_range_double_with_precision", "\"Range\" needs 1.11.0 (the preview is checked above)");
        return;
    }
    let crypt = crypt();
    let (id, key) = new_key(&crypt);
    let opts = RangeOptions {
        min: Some(Bson::Double(0.0)),
        max: Some(Bson::Double(10.0)),
        sparsity: Some(1),
        precision: Some(2),
        trim_factor: Some(1),
    };
    let t = run(&crypt, &[key], |b| {
        b.key_id(&id)?
            .algorithm(&Algorithm::Range)?
            .contention_factor(0)?
            .algorithm_range(&opts)?
            .explicit_encrypt(&rawdoc! { "v": 1.25 })
    });
    let (_, p) = payload(t.output());
    assert_eq!(p.get_i32("pn").unwrap(), 2);
    assert_eq!(p.get_i32("t").unwrap(), 1, "double");
}

#[test]
fn algorithm_range_invalid_options() {
    let crypt = crypt();
    let (id, key) = new_key(&crypt);
    // Range options with a non-range algorithm are refused on every version.
    let without_trim_factor = RangeOptions { trim_factor: None, ..range_opts() };
    let message = init_error(&crypt, |b| {
        b.key_id(&id)?
            .algorithm(&Algorithm::Deterministic)?
            .algorithm_range(&without_trim_factor)?
            .explicit_encrypt(&rawdoc! { "v": 1 })
    });
    assert!(message.contains("cannot set both algorithm and range opts"), "{message}");
    if !linked_at_least("1.10.0") {
        // trimFactor came with range V2 (1.10.0); the preview parser rejects it at setopt, naming the field.
        let message = err_message(crypt.ctx().algorithm_range(&range_opts()).map(|_| ()));
        assert!(message.contains("Unrecognized field: 'trimFactor'"), "{message}");
    }
    if !linked_at_least("1.11.0") {
        skip("algorithm_range_invalid_options (Range cases)", "\"Range\" needs 1.11.0");
        return;
    }
    let message = init_error(&crypt, |b| {
        b.key_id(&id)?.algorithm(&Algorithm::Range)?.contention_factor(0)?.explicit_encrypt(&rawdoc! { "v": 1 })
    });
    assert!(message.contains("range opts are required"), "{message}");
    let message = init_error(&crypt, |b| {
        b.key_id(&id)?
            .algorithm(&Algorithm::Range)?
            .contention_factor(0)?
            .algorithm_range(&RangeOptions { precision: Some(2), ..range_opts() })?
            .explicit_encrypt(&rawdoc! { "v": 1 })
    });
    assert!(message.contains("precision"), "{message}");
    // Some options are checked when the payload is built, so the ctx fails on the way to READY.
    let bad: [(RangeOptions, Bson, &str); 3] = [
        (
            RangeOptions { min: Some(Bson::Int32(100)), max: Some(Bson::Int32(0)), ..range_opts() },
            Bson::Int32(42),
            "minimum value must be less than the maximum",
        ),
        (range_opts(), Bson::Int32(500), "less than or equal to the maximum value"),
        (RangeOptions { trim_factor: Some(100), ..range_opts() }, Bson::Int32(42), "Trim factor (100)"),
    ];
    for (opts, value, expected) in bad {
        let t = run(&crypt, std::slice::from_ref(&key), |b| {
            b.key_id(&id)?
                .algorithm(&Algorithm::Range)?
                .contention_factor(0)?
                .algorithm_range(&opts)?
                .explicit_encrypt(&doc! { "v": value.clone() })
        });
        assert_eq!(t.states.last(), Some(&State::Error));
        assert!(t.error_message().contains(expected), "{expected}: {}", t.error_message());
    }
}

fn range_expression() -> RawDocumentBuf {
    rawdoc! { "v": { "$and": [ { "v": { "$gte": 1 } }, { "v": { "$lte": 10 } } ] } }
}

#[test]
fn explicit_encrypt_expression_range() {
    let crypt = crypt();
    let (id, key) = new_key(&crypt);
    let (algorithm, query_type, find_type, opts) = if linked_at_least("1.11.0") {
        (Algorithm::Range, QueryType::Range, 13u8, raw(&range_opts().to_document()))
    } else {
        // Before range V2 is the default: the preview algorithm and query type (verified on 1.7.2 and 1.10.1). The
        // find payload is FLE2FindRangePayload (10) under QE protocol v1 (1.7), FLE2FindRangePayloadV2 (13) under
        // v2, the default from 1.8.0.
        (
            Algorithm::Other("RangePreview".into()),
            QueryType::Other("rangePreview".into()),
            if linked_at_least("1.8.0") { 13u8 } else { 10u8 },
            raw(&doc! { "min": 0, "max": 200, "sparsity": 1i64 }),
        )
    };
    let t = run(&crypt, &[key], |b| {
        b.key_id(&id)?
            .algorithm(&algorithm)?
            .query_type(&query_type)?
            .contention_factor(4)?
            .algorithm_range(&opts)?
            .explicit_encrypt_expression(&range_expression())
    });
    assert!(t.error.is_none(), "{:?}", t.error);
    let out = to_doc(t.output());
    let and = out.get_document("v").unwrap().get_array("$and").unwrap();
    assert_eq!(and.len(), 2);
    let operand = |i: usize, op: &str| match and[i].as_document().unwrap().get_document("v").unwrap().get(op) {
        Some(Bson::Binary(b)) => b.clone(),
        other => panic!("{op}: {other:?}"),
    };
    let (gte, lte) = (operand(0, "$gte"), operand(1, "$lte"));
    assert_eq!((gte.bytes[0], lte.bytes[0]), (find_type, find_type), "FLE2FindRangePayload");
    let full = to_doc(libmongocrypt::bson::RawDocument::from_bytes(&gte.bytes[1..]).unwrap());
    let edges = full.get_document("payload").expect("the first operand carries the edges");
    assert_eq!(edges.get_i64("cm").unwrap(), 4, "contention factor");
    assert!(!edges.get_array("g").unwrap().is_empty(), "edge tokens");
    // Operators: $gte is 2, $lte is 4.
    assert_eq!(full.get_i32("firstOperator").unwrap(), 2);
    assert_eq!(full.get_i32("secondOperator").unwrap(), 4);
    if linked_at_least("1.11.0") {
        assert_eq!(full.get_i32("tf").unwrap(), 3);
        assert_eq!(full.get_i64("sp").unwrap(), 2);
        assert_eq!((full.get("mn"), full.get("mx")), (Some(&Bson::Int32(0)), Some(&Bson::Int32(200))));
    }
}

#[test]
fn explicit_encrypt_expression_requires_a_range_query() {
    if !linked_at_least("1.11.0") {
        skip("explicit_encrypt_expression_requires_a_range_query", "\"Range\" needs 1.11.0");
        return;
    }
    let crypt = crypt();
    let (id, _) = new_key(&crypt);
    let message = init_error(&crypt, |b| {
        b.key_id(&id)?
            .algorithm(&Algorithm::Range)?
            .contention_factor(0)?
            .algorithm_range(&range_opts())?
            .explicit_encrypt_expression(&range_expression())
    });
    assert!(message.contains("only be used for range queries"), "{message}");
}

// --- algorithm_text ------------------------------------------------------------------------------------------------

fn text_opts() -> TextOptions {
    TextOptions {
        case_sensitive: true,
        diacritic_sensitive: false,
        prefix: Some(AffixOptions { str_max_query_length: 10, str_min_query_length: 2 }),
        suffix: Some(AffixOptions { str_max_query_length: 9, str_min_query_length: 3 }),
        substring: None,
    }
}

/// The names of the string algorithm and of its prefix and substring query types on the linked library.
/// Version-dependent: 1.21.0 calls them "string", "prefix" and "substring" (Algorithm::String, QueryType::Prefix,
/// QueryType::Substring); 1.15 to 1.17 (seen on 1.17.0, whose library knows only "TextPreview", "prefixPreview",
/// "suffixPreview" and "substringPreview") call them by their preview names, passed through Other. The releases in
/// between are not tested here; the rename is taken to be in 1.21.0.
fn text_names() -> (Algorithm, QueryType, QueryType) {
    if linked_at_least("1.21.0") {
        (Algorithm::String, QueryType::Prefix, QueryType::Substring)
    } else {
        (
            Algorithm::Other("TextPreview".into()),
            QueryType::Other("prefixPreview".into()),
            QueryType::Other("substringPreview".into()),
        )
    }
}

#[test]
fn algorithm_text() {
    let crypt = crypt();
    let (id, key) = new_key(&crypt);
    let result = crypt.ctx().algorithm_text(&text_opts());
    // mongocrypt_ctx_setopt_algorithm_text was added in libmongocrypt 1.15.0.
    if !linked_at_least("1.15.0") {
        assert_unsupported(&result.map(|_| ()).unwrap_err(), "mongocrypt_ctx_setopt_algorithm_text", "1.15.0");
        return;
    }
    drop(result);
    let (string, prefix, substring_query) = text_names();
    let keys = [key];
    let t = run(&crypt, &keys, |b| {
        b.key_id(&id)?
            .algorithm(&string)?
            .contention_factor(0)?
            .algorithm_text(&text_opts())?
            .explicit_encrypt(&rawdoc! { "v": "abcdef" })
    });
    let (kind, p) = payload(t.output());
    assert_eq!(kind, 11, "insert payload");
    let b = p.get_document("b").expect("text search tokens");
    assert!(!b.get_array("p").unwrap().is_empty(), "prefix tokens");
    assert!(!b.get_array("u").unwrap().is_empty(), "suffix tokens");
    assert!(b.get_array("s").unwrap().is_empty(), "no substring index");

    let t = run(&crypt, &keys, |b| {
        b.key_id(&id)?
            .algorithm(&string)?
            .query_type(&prefix)?
            .contention_factor(0)?
            .algorithm_text(&text_opts())?
            .explicit_encrypt(&rawdoc! { "v": "abc" })
    });
    let (kind, p) = payload(t.output());
    assert_eq!(kind, 18, "text find payload");
    // Version-dependent: 1.21.0 sends folds (cf = !caseSensitive, df = !diacriticSensitive); the preview protocol
    // of 1.15 to 1.17 sends the two flags as given (seen on 1.17.0: cf true, df false for these options).
    let folds = linked_at_least("1.21.0");
    assert_eq!(p.get_bool("cf").unwrap(), !folds, "cf, caseSensitive = true: {p}");
    assert_eq!(p.get_bool("df").unwrap(), folds, "df, diacriticSensitive = false: {p}");
    assert_eq!(p.get_document("ps").unwrap(), &doc! { "ub": 10, "lb": 2 });

    // Substring options.
    let substring = TextOptions {
        substring: Some(SubstringOptions { str_max_length: 20, str_max_query_length: 8, str_min_query_length: 2 }),
        prefix: None,
        suffix: None,
        ..text_opts()
    };
    let t = run(&crypt, &keys, |b| {
        b.key_id(&id)?
            .algorithm(&string)?
            .query_type(&substring_query)?
            .contention_factor(0)?
            .algorithm_text(&substring)?
            .explicit_encrypt(&rawdoc! { "v": "bcd" })
    });
    let (_, p) = payload(t.output());
    assert_eq!(p.get_document("ss").unwrap(), &doc! { "mlen": 20, "ub": 8, "lb": 2 });

    // Validation by libmongocrypt.
    let message = init_error(&crypt, |b| {
        b.key_id(&id)?.algorithm(&string)?.contention_factor(0)?.explicit_encrypt(&rawdoc! { "v": "x" })
    });
    // Version-dependent: "string opts are required" on 1.21.0, "text opts are required for textPreview algorithm"
    // on 1.17.0.
    let expected = if linked_at_least("1.21.0") { "string opts are required" } else { "text opts are required" };
    assert!(message.contains(expected), "{message}");
    let t = run(&crypt, &keys, |b| {
        b.key_id(&id)?
            .algorithm(&string)?
            .query_type(&prefix)?
            .contention_factor(0)?
            .algorithm_text(&text_opts())?
            .explicit_encrypt(&rawdoc! { "v": "a" })
    });
    assert!(t.error_message().contains("shorter than the minimum query length"), "{}", t.error_message());
}

// --- rewrap_many_datakey, provide_kms_providers ----------------------------------------------------------------------

#[test]
fn rewrap_many_datakey_local_to_local() {
    let crypt = crypt();
    let filter = rawdoc! { "keyAltNames": { "$exists": false } };
    let original = load_doc(KEY);
    let t = run(&crypt, &[load_raw(KEY)], |b| {
        b.key_encryption_key(&KeyEncryptionKey::local("local"))?.rewrap_many_datakey(&filter)
    });
    assert_eq!(t.states, [State::NeedMongoKeys, State::Ready, State::Done]);
    assert_bson_eq(t.op(State::NeedMongoKeys), &filter);
    let out = to_doc(t.output());
    let rewrapped = out.get_array("v").unwrap();
    assert_eq!(rewrapped.len(), 1);
    let rewrapped = rewrapped[0].as_document().unwrap();
    assert_eq!(rewrapped.get("_id"), original.get("_id"));
    assert_eq!(rewrapped.get_document("masterKey").unwrap(), &doc! { "provider": "local" });
    let material = rewrapped.get_binary_generic("keyMaterial").unwrap();
    assert_ne!(material, original.get_binary_generic("keyMaterial").unwrap(), "wrapped again with a new IV");

    // The rewrapped key still decrypts the fixture.
    let mut key = original.clone();
    key.insert(
        "keyMaterial",
        libmongocrypt::bson::Binary {
            subtype: libmongocrypt::bson::spec::BinarySubtype::Generic,
            bytes: material.clone(),
        },
    );
    let fresh = common::crypt();
    let t = run(&fresh, &[raw(&key)], |b| b.explicit_decrypt(&load_raw(DET)));
    assert_bson_eq(t.output(), &rawdoc! { "v": "foo" });
}

#[test]
fn rewrap_many_datakey_to_aws_sends_the_dek() {
    let crypt = crypt();
    let mut ctx = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn:new"))
        .unwrap()
        .rewrap_many_datakey(&rawdoc! {})
        .unwrap();
    let t = drive(
        &mut ctx,
        &Mock {
            keys: vec![load_raw(KEY)],
            kms: vec![http_reply("datakey-local-aws/kms-aws-encrypt-response.txt")],
            ..Mock::default()
        },
    );
    assert_eq!(t.states, [State::NeedMongoKeys, State::NeedKms, State::Ready, State::Done], "{:?}", t.error);
    let message = t.kms[0].message_str();
    assert!(message.contains("X-Amz-Target:TrentService.Encrypt"), "{message}");
    let body: serde_json::Value = serde_json::from_str(message.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["KeyId"], "arn:new");
    let dek = hex(&read_open("fle1-explicit-local/key-ABCDEFAB-material.hex.txt"));
    assert_eq!(b64(body["Plaintext"].as_str().unwrap()), dek, "the unwrapped DEK of ABCDEFAB is sent to AWS");
    let out = to_doc(t.output());
    let key = out.get_array("v").unwrap()[0].as_document().unwrap();
    assert_eq!(key.get_document("masterKey").unwrap().get_str("key").unwrap(), "arn:new");
}

#[test]
fn rewrap_many_datakey_without_matches() {
    let crypt = crypt();
    let t = run(&crypt, &[], |b| b.rewrap_many_datakey(&rawdoc! { "keyAltNames": "nothing" }));
    assert_eq!(t.states, [State::NeedMongoKeys, State::Done], "nothing to rewrap: DONE without READY");
    assert!(t.output.is_none());
}

#[test]
fn provide_kms_providers_only_in_its_state() {
    let crypt = crypt();
    let mut ctx = crypt.ctx().explicit_decrypt(&load_raw(DET)).unwrap();
    assert_eq!(ctx.state(), State::NeedMongoKeys);
    let err = ctx.provide_kms_providers(&KmsProviders::new().local("local", &LOCAL_KEY)).unwrap_err();
    assert_eq!(
        err,
        libmongocrypt::Error::WrongState {
            operation: "provide_kms_providers",
            expected: &[State::NeedKmsCredentials],
            state: State::NeedMongoKeys
        }
    );
    assert_eq!(ctx.state(), State::NeedMongoKeys, "the ctx is left as it was");
}
