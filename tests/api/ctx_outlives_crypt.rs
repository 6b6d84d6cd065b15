//! mongocrypt.h, mongocrypt_ctx_new: a ctx must not outlive the `mongocrypt_t` it was created from. Every `Ctx` (and
//! `CtxBuilder`) holds a clone of its `Crypt`, so the handle is destroyed only after the last of them: these tests
//! drop every user handle while ctxs are alive, then finish the operations, on this thread and on others. They
//! run under valgrind in CI (scripts/valgrind.sh), which reports any use of the handle, or of the log handler and
//! crypto provider it points to, after it was freed.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{example, providers, LOCAL_KEY};
use libmongocrypt::bson::{rawdoc, RawDocumentBuf};
use libmongocrypt::{Algorithm, Crypt, CryptoError, CryptoProvider, Ctx, KeyEncryptionKey, KmsProviders, State};

/// Counts the random bytes it hands out; every other primitive is [`libmongocrypt::RustCrypto`]'s (the defaults).
struct CountingRandom(Arc<AtomicUsize>);

impl CryptoProvider for CountingRandom {
    fn random(&self, output: &mut [u8]) -> Result<(), CryptoError> {
        self.0.fetch_add(output.len(), Ordering::SeqCst);
        libmongocrypt::RustCrypto.random(output)
    }
}

/// A Crypt whose log handler and crypto provider live only as long as the handle.
fn crypt_with_callbacks(random_bytes: &Arc<AtomicUsize>) -> Crypt {
    let logged = Arc::new(AtomicUsize::new(0));
    Crypt::builder()
        .log_handler(move |_, message| {
            logged.fetch_add(message.len(), Ordering::SeqCst);
        })
        .unwrap()
        .kms_providers(&KmsProviders::new().local("local", &LOCAL_KEY))
        .unwrap()
        // Shared with the test, which reads the count: an Arc<dyn CryptoProvider> is a provider too.
        .crypto_provider(Arc::new(CountingRandom(random_bytes.clone())) as Arc<dyn CryptoProvider>)
        .build()
        .unwrap()
}

fn encrypt_ctx(crypt: &Crypt, key_id: &[u8], algorithm: Algorithm) -> Ctx {
    crypt.ctx().key_id(key_id).unwrap().algorithm(&algorithm).unwrap().explicit_encrypt(&rawdoc! { "v": 42 }).unwrap()
}

/// Feeds the key and finalizes: the rest of an explicit encryption.
fn finish(mut ctx: Ctx, key: &RawDocumentBuf) -> RawDocumentBuf {
    assert_eq!(ctx.state(), State::NeedMongoKeys);
    ctx.mongo_feed(key).unwrap();
    ctx.mongo_done().unwrap();
    ctx.finalize_owned().unwrap()
}

#[test]
fn operations_finish_after_every_crypt_handle_is_dropped() {
    let random_bytes = Arc::new(AtomicUsize::new(0));
    let crypt = crypt_with_callbacks(&random_bytes);
    let clone = crypt.clone();
    let datakey = clone.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    // A builder holds the handle too.
    let builder = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap();
    drop((crypt, clone));

    let mut datakey = datakey;
    let key = datakey.finalize_owned().unwrap();
    let key_id = key.get_binary("_id").unwrap().bytes.to_vec();
    drop(datakey);
    let second_key = builder.datakey().unwrap().finalize_owned().unwrap();
    assert_ne!(second_key.get_binary("_id").unwrap().bytes, key_id);
    assert!(random_bytes.load(Ordering::SeqCst) >= 2 * 96, "both data keys came from the installed provider");
}

#[test]
fn a_ctx_moves_to_another_thread_and_finishes_there_after_its_crypt_is_gone() {
    let random_bytes = Arc::new(AtomicUsize::new(0));
    let crypt = crypt_with_callbacks(&random_bytes);
    let key = crypt
        .ctx()
        .key_encryption_key(&KeyEncryptionKey::local("local"))
        .and_then(|b| b.datakey())
        .and_then(|mut ctx| ctx.finalize_owned())
        .unwrap();
    let key_id = key.get_binary("_id").unwrap().bytes.to_vec();
    let deterministic = encrypt_ctx(&crypt, &key_id, Algorithm::Deterministic);
    let random = encrypt_ctx(&crypt, &key_id, Algorithm::Random);
    let before = random_bytes.load(Ordering::SeqCst);
    drop(crypt);

    let (key_for_thread, id_for_thread) = (key.clone(), key_id.clone());
    let handles = [deterministic, random].map(|ctx| {
        let (key, key_id) = (key_for_thread.clone(), id_for_thread.clone());
        std::thread::spawn(move || {
            let ciphertext = finish(ctx, &key);
            let blob = ciphertext.get_binary("v").unwrap().bytes.to_vec();
            assert_eq!(&blob[1..17], &key_id[..]);
            blob
        })
    });
    let [deterministic, random] = handles.map(|h| h.join().unwrap());
    assert_eq!((deterministic[0], random[0]), (1, 2), "Deterministic and Random FLE1 blob subtypes");
    assert!(random_bytes.load(Ordering::SeqCst) > before, "the IVs came from the provider, after the drop");
}

#[test]
fn a_ctx_adopted_from_raw_keeps_its_crypt_alive() {
    let crypt = Crypt::builder().kms_providers(&providers()).unwrap().build().unwrap();
    // SAFETY: a ctx fresh from mongocrypt_ctx_new on this crypt, owned by no one else.
    let ctx = unsafe { Ctx::from_raw(&crypt, libmongocrypt::sys::mongocrypt_ctx_new(crypt.as_raw())) };
    drop(crypt);
    let kek = rawdoc! { "provider": "local" };
    // The raw ctx is set up through the C API, as the FFI layer that made it would.
    // SAFETY: the binary views `kek`, which outlives both calls ("The viewed data is copied").
    unsafe {
        let bin = libmongocrypt::sys::mongocrypt_binary_new_from_data(
            kek.as_bytes().as_ptr().cast_mut(),
            kek.as_bytes().len() as u32,
        );
        assert!(libmongocrypt::sys::mongocrypt_ctx_setopt_key_encryption_key(ctx.as_raw(), bin));
        assert!(libmongocrypt::sys::mongocrypt_ctx_datakey_init(ctx.as_raw()));
        libmongocrypt::sys::mongocrypt_binary_destroy(bin);
    }
    let mut ctx = ctx;
    assert_eq!(ctx.state(), State::Ready);
    let key = ctx.finalize_owned().unwrap();
    assert_eq!(key.get_document("masterKey").unwrap().get_str("provider").unwrap(), "local");
}

#[test]
fn the_example_finishes_on_a_ctx_whose_crypt_was_dropped() {
    // The example's auto encryption, with the ctx made by a Crypt that is gone before the first state is served.
    let dir = example::data_dir();
    let crypt = Crypt::builder().kms_providers(&KmsProviders::new().aws("aws", "example", "example", None)).unwrap();
    let crypt = crypt.build().unwrap();
    let mut ctx = crypt.ctx().encrypt("test", &example::read_json(&dir.join("cmd.json")).unwrap()).unwrap();
    drop(crypt);
    let io = example::PrintingIo::new(Vec::new(), dir).expect("the example's I/O starts its stand-in mongocryptd");
    let encrypted = libmongocrypt::state_machine::run(&mut ctx, &io).unwrap().unwrap();
    assert!(encrypted.get_document("filter").unwrap().get_binary("ssn").is_ok());
}
