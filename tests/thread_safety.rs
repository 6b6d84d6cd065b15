//! The threading rules of `mongocrypt.h`, checked in practice: "Functions on a `mongocrypt_t` are thread safe, though
//! functions on derived handles (e.g. `mongocrypt_ctx_t`) are not and must be owned by a single thread", and "Feeding
//! multiple KMS requests is thread-safe". So `Crypt` is `Send + Sync`, while `Ctx` and `KmsCtx` are `Send` only
//! (their not being `Sync` is checked by `tests/compile_fail/`).

use std::path::Path;

use bson::spec::BinarySubtype;
use bson::{doc, rawdoc, Binary, Bson, DateTime, Document, RawDocumentBuf};
use mongocrypt::{
    Algorithm, Crypt, CryptBuilder, Ctx, KeyEncryptionKey, KmsCtx, KmsProviders, KmsScope, Result, State,
};

const THREADS: usize = 4;
const ROUNDS: usize = 8;

// Compile-time: the auto traits the types promise.
const _: () = {
    const fn send<T: Send>() {}
    const fn sync<T: Sync>() {}
    send::<Crypt>();
    sync::<Crypt>();
    send::<CryptBuilder>();
    send::<Ctx<'static>>();
    send::<KmsScope<'static, 'static>>();
    send::<KmsCtx<'static>>();
};

fn local_crypt() -> Crypt {
    Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 96])).unwrap().build().unwrap()
}

/// Drives a ctx whose keys are local (no KMS round) to its result, feeding `key` when it asks for keys.
fn run(mut ctx: Ctx<'_>, key: &RawDocumentBuf) -> Result<RawDocumentBuf> {
    loop {
        match ctx.state() {
            State::NeedMongoKeys => {
                ctx.mongo_feed(key)?;
                ctx.mongo_done()?;
            }
            State::Ready => return ctx.finalize_owned(),
            State::Error => return Err(ctx.status().unwrap_err()),
            other => panic!("unexpected state {other:?}"),
        }
    }
}

fn new_key(crypt: &Crypt, alt_name: &str) -> (RawDocumentBuf, Vec<u8>) {
    let ctx =
        crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().key_alt_name(alt_name).unwrap();
    let key = ctx.datakey().unwrap().finalize_owned().unwrap();
    let id = key.get_binary("_id").unwrap().bytes.to_vec();
    assert_eq!(id.len(), 16);
    (key, id)
}

fn encrypt(crypt: &Crypt, key: &RawDocumentBuf, key_id: &[u8], algorithm: Algorithm, value: &str) -> RawDocumentBuf {
    let ctx = crypt.ctx().key_id(key_id).unwrap().algorithm(&algorithm).unwrap();
    let ciphertext = run(ctx.explicit_encrypt(&rawdoc! { "v": value }).unwrap(), key).unwrap();
    let binary = ciphertext.get_binary("v").unwrap();
    assert_eq!(binary.subtype, BinarySubtype::Encrypted);
    assert_eq!(&binary.bytes[1..17], key_id, "the ciphertext names its key");
    ciphertext
}

fn decrypt(crypt: &Crypt, key: &RawDocumentBuf, ciphertext: &RawDocumentBuf) -> String {
    let plaintext = run(crypt.ctx().explicit_decrypt(ciphertext).unwrap(), key).unwrap();
    plaintext.get_str("v").unwrap().to_owned()
}

/// One `Crypt` shared by four threads, each creating data keys and encrypting and decrypting with them and with a
/// key shared by all, concurrently. Deterministic ciphertexts must agree across threads, and every ciphertext
/// must decrypt to its plaintext on any thread.
#[test]
fn one_crypt_shared_by_threads() {
    let crypt = local_crypt();
    let (shared_key, shared_id) = new_key(&crypt, "shared");
    let expected = encrypt(&crypt, &shared_key, &shared_id, Algorithm::Deterministic, "same value");

    let results: Vec<Vec<RawDocumentBuf>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (crypt, shared_key, shared_id) = (&crypt, &shared_key, &shared_id);
                s.spawn(move || {
                    let mut deterministic = Vec::new();
                    for round in 0..ROUNDS {
                        let (key, id) = new_key(crypt, &format!("thread-{t}-round-{round}"));
                        let value = format!("thread {t}, round {round}");
                        for algorithm in [Algorithm::Deterministic, Algorithm::Random] {
                            let ciphertext = encrypt(crypt, &key, &id, algorithm, &value);
                            assert_eq!(decrypt(crypt, &key, &ciphertext), value);
                        }
                        let same = encrypt(crypt, shared_key, shared_id, Algorithm::Deterministic, "same value");
                        assert_eq!(decrypt(crypt, shared_key, &same), "same value");
                        deterministic.push(same);
                    }
                    deterministic
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    assert_eq!(results.len(), THREADS);
    for ciphertext in results.iter().flatten() {
        assert_eq!(ciphertext, &expected, "Deterministic ciphertexts of one value under one key differ");
    }
    // A Random ciphertext differs each time, whichever thread made it.
    let random = |crypt: &Crypt| encrypt(crypt, &shared_key, &shared_id, Algorithm::Random, "same value");
    let (a, b) = std::thread::scope(|s| (s.spawn(|| random(&crypt)).join().unwrap(), random(&crypt)));
    assert_ne!(a, b);
    assert_eq!(decrypt(&crypt, &shared_key, &a), "same value");
    assert_eq!(decrypt(&crypt, &shared_key, &b), "same value");
}

/// A `Ctx` created on one thread is driven on another, then finished on a third: it is `Send`.
#[test]
fn ctx_moves_between_threads() {
    let crypt = local_crypt();
    let (key, key_id) = new_key(&crypt, "moved");

    // Created here, fed on a second thread.
    let ctx = crypt
        .ctx()
        .key_id(&key_id)
        .unwrap()
        .algorithm(&Algorithm::Deterministic)
        .unwrap()
        .explicit_encrypt(&rawdoc! { "v": "moved" })
        .unwrap();
    assert_eq!(ctx.state(), State::NeedMongoKeys);
    let ctx = std::thread::scope(|s| {
        s.spawn(|| {
            let mut ctx = ctx;
            let filter = ctx.mongo_op().unwrap().to_owned();
            assert!(filter.get_array("$or").is_ok(), "key vault filter: {filter:?}");
            ctx.mongo_feed(&key).unwrap();
            ctx.mongo_done().unwrap();
            ctx
        })
        .join()
        .unwrap()
    });
    assert_eq!(ctx.state(), State::Ready);

    // Finalized on a third thread.
    let ciphertext = std::thread::scope(|s| {
        s.spawn(|| {
            let mut ctx = ctx;
            ctx.finalize_owned().unwrap()
        })
        .join()
        .unwrap()
    });
    assert_eq!(ciphertext, encrypt(&crypt, &key, &key_id, Algorithm::Deterministic, "moved"));

    // Created on a thread and returned: the Ctx only borrows the Crypt, which outlives the scope.
    let ctx = std::thread::scope(|s| s.spawn(|| crypt.ctx().explicit_decrypt(&ciphertext).unwrap()).join().unwrap());
    assert_eq!(run(ctx, &key).unwrap().get_str("v").unwrap(), "moved");
}

/// A canonical extended JSON fixture from libmongocrypt's test suite (`tests/data`).
fn fixture(path: &str) -> Document {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(path);
    match extended_json(serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()) {
        Bson::Document(doc) => doc,
        other => panic!("{} is not a document: {other:?}", path.display()),
    }
}

/// The canonical extended JSON forms the example key document uses.
fn extended_json(value: serde_json::Value) -> Bson {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(binary)) = map.get("$binary") {
                let subtype = u8::from_str_radix(binary["subType"].as_str().unwrap(), 16).unwrap();
                let base64 = binary["base64"].as_str().unwrap();
                return Bson::Binary(Binary::from_base64(base64, BinarySubtype::from(subtype)).unwrap());
            }
            if let Some(Value::String(int)) = map.get("$numberInt") {
                return Bson::Int32(int.parse().unwrap());
            }
            if let Some(Value::Object(date)) = map.get("$date") {
                return Bson::DateTime(DateTime::from_millis(date["$numberLong"].as_str().unwrap().parse().unwrap()));
            }
            Bson::Document(map.into_iter().map(|(k, v)| (k, extended_json(v))).collect::<Document>())
        }
        Value::Array(items) => Bson::Array(items.into_iter().map(extended_json).collect()),
        Value::String(s) => Bson::String(s),
        other => panic!("unexpected JSON value {other}"),
    }
}

/// A `KmsCtx` handed out on the ctx's thread is fed on another ("Feeding multiple KMS requests is thread-safe"),
/// and the operation completes with libmongocrypt's known ciphertext.
#[test]
fn kms_ctx_fed_on_another_thread() {
    // libmongocrypt's example key (AWS-wrapped, keyAltName `keyDocumentName`), the AWS KMS reply that unwraps it,
    // and the command it encrypted, whose `ssn` is the expected ciphertext.
    let key = RawDocumentBuf::try_from(&fixture("example/key-document.json")).unwrap();
    let reply =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/example/kms-decrypt-reply.txt"))
            .unwrap()
            .replace('\n', "\r\n")
            .into_bytes();
    let expected = fixture("open/csfle-auto-aws-example/expected-encrypted-cmd.json");
    let expected = expected.get_document("filter").unwrap().get("ssn").unwrap().clone();
    let providers = KmsProviders::new().aws("aws", "example", "example", None);
    let crypt = Crypt::builder().kms_providers(&providers).unwrap().build().unwrap();
    let mut ctx = crypt
        .ctx()
        .key_alt_name("keyDocumentName")
        .unwrap()
        .algorithm(&Algorithm::Deterministic)
        .unwrap()
        .explicit_encrypt(&rawdoc! { "v": "457-55-5462" })
        .unwrap();
    assert_eq!(ctx.state(), State::NeedMongoKeys);
    ctx.mongo_feed(&key).unwrap();
    ctx.mongo_done().unwrap();
    assert_eq!(ctx.state(), State::NeedKms);

    let mut scope = ctx.kms_scope();
    let requests = scope.kms_ctxs();
    assert_eq!(requests.len(), 1);
    std::thread::scope(|s| {
        for mut kms in requests {
            let reply = &reply;
            s.spawn(move || {
                assert_eq!(kms.kms_provider(), "aws");
                assert_eq!(kms.endpoint().unwrap(), "kms.us-east-1.amazonaws.com:443");
                assert!(kms.message().unwrap().starts_with(b"POST / HTTP/1.1\r\n"));
                let mut rest = &reply[..];
                while kms.bytes_needed() > 0 {
                    assert!(!rest.is_empty(), "the reply ended, {} bytes still needed", kms.bytes_needed());
                    let n = rest.len().min(kms.bytes_needed() as usize);
                    kms.feed(&rest[..n]).unwrap();
                    rest = &rest[n..];
                }
                assert!(rest.is_empty(), "{} reply bytes left over", rest.len());
            });
        }
    });
    scope.done().unwrap();
    assert_eq!(ctx.state(), State::Ready);

    let ciphertext = ctx.finalize_owned().unwrap();
    assert_eq!(ciphertext, RawDocumentBuf::try_from(&doc! { "v": expected }).unwrap());
}
