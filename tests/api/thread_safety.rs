//! The threading rules of `mongocrypt.h`, checked in practice: "Functions on a `mongocrypt_t` are thread safe, though
//! functions on derived handles (e.g. `mongocrypt_ctx_t`) are not and must be owned by a single thread", and "Feeding
//! multiple KMS requests is thread-safe". So `Crypt` is `Send + Sync`, `Ctx` is `Send + 'static` but not `Sync`
//! (checked by `tests/compile_fail/`), and `KmsCtx` is `Send + Sync`, since its `&self` methods only read.

use crate::common;

use common::{example, feed_needed, load_doc};
use libmongocrypt::bson::spec::BinarySubtype;
use libmongocrypt::bson::{doc, rawdoc, RawDocumentBuf};
use libmongocrypt::{
    Algorithm, Crypt, CryptBuilder, Ctx, KeyEncryptionKey, KmsCtx, KmsProviders, KmsScope, Result, State,
};

const THREADS: usize = 4;
const ROUNDS: usize = 8;

// Compile-time: the auto traits the types promise.
const _: () = {
    const fn send<T: Send>() {}
    const fn sync<T: Sync>() {}
    const fn owned<T: Send + 'static>() {}
    send::<Crypt>();
    sync::<Crypt>();
    send::<CryptBuilder>();
    owned::<Ctx>();
    owned::<libmongocrypt::CtxBuilder>();
    send::<KmsScope<'static>>();
    send::<KmsCtx>();
    sync::<KmsCtx>();
};

fn local_crypt() -> Crypt {
    Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 96])).unwrap().build().unwrap()
}

/// Drives a ctx whose keys are local (no KMS round) to its result, feeding `key` when it asks for keys.
fn run(mut ctx: Ctx, key: &RawDocumentBuf) -> Result<RawDocumentBuf> {
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

/// A `KmsCtx` handed out on the ctx's thread is fed on another ("Feeding multiple KMS requests is thread-safe"),
/// and the operation completes with libmongocrypt's known ciphertext.
#[test]
fn kms_ctx_fed_on_another_thread() {
    // libmongocrypt's example key (AWS-wrapped, keyAltName `keyDocumentName`), the AWS KMS reply that unwraps it,
    // and the command it encrypted, whose `ssn` is the expected ciphertext.
    let key = example::read_json(&example::data_dir().join("key-document.json")).unwrap();
    let reply = example::read_http(&example::data_dir().join("kms-decrypt-reply.txt")).unwrap();
    let expected = load_doc("csfle-auto-aws-example/expected-encrypted-cmd.json");
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

    let mut scope = ctx.kms_scope().unwrap();
    let requests = scope.kms_ctxs();
    assert_eq!(requests.len(), 1);
    std::thread::scope(|s| {
        for mut kms in requests {
            let reply = &reply;
            s.spawn(move || {
                assert_eq!(kms.kms_provider(), "aws");
                assert_eq!(kms.endpoint().unwrap(), "kms.us-east-1.amazonaws.com:443");
                assert!(kms.message().unwrap().starts_with(b"POST / HTTP/1.1\r\n"));
                let rest = feed_needed(&mut kms, reply).unwrap();
                assert!(rest.is_empty(), "{} reply bytes left over", rest.len());
            });
        }
    });
    scope.done().unwrap();
    assert_eq!(ctx.state(), State::Ready);

    let ciphertext = ctx.finalize_owned().unwrap();
    assert_eq!(ciphertext, RawDocumentBuf::try_from(&doc! { "v": expected }).unwrap());
}

#[test]
fn crypts_are_made_and_destroyed_on_many_threads_at_once() {
    // Before 1.8, mongocrypt_init and mongocrypt_destroy race on crypt_shared's loading (MONGOCRYPT-526): the
    // binding serializes them process-wide there. Each thread makes handles whose last owner is a ctx, so the
    // destroys happen on the threads too, interleaved with the other threads' inits.
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let crypt = local_crypt();
                    let (key, key_id) = new_key(&crypt, &format!("key-{t}-{round}"));
                    let ctx = crypt.ctx().key_id(&key_id).unwrap().algorithm(&Algorithm::Random).unwrap();
                    let ctx = ctx.explicit_encrypt(&rawdoc! { "v": round as i32 }).unwrap();
                    drop(crypt);
                    let ciphertext = run(ctx, &key).unwrap();
                    assert_eq!(&ciphertext.get_binary("v").unwrap().bytes[1..17], &key_id[..]);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}
