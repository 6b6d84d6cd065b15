//! One `Crypt` shared by many threads: 8 threads × 200 operations of mixed explicit encryption and decryption
//! (Deterministic and Random, two data keys, strings, integers and documents), every result checked. Run once with
//! libmongocrypt's native crypto and once with the Rust crypto provider, whose hooks are then called concurrently.
//!
//! `MONGOCRYPT_STRESS_OPS` overrides the operations per thread (valgrind runs use fewer).

use std::sync::Barrier;

use libmongocrypt::bson::{doc, rawdoc, Bson, Document, RawDocument, RawDocumentBuf};
use libmongocrypt::{Algorithm, Crypt, Ctx, KeyEncryptionKey, KmsProviders, State};

const THREADS: usize = 8;
const KEK: [u8; 96] = [0x5a; 96];
const SHARED: &str = "the same value on every thread";

fn ops_per_thread() -> usize {
    std::env::var("MONGOCRYPT_STRESS_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

/// A small xorshift generator, seeded per thread, so that every run does the same operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Drives a ctx to DONE, feeding whichever of `keys` it asks for (matched by `_id` against the filter).
fn drive(ctx: &mut Ctx, keys: &[RawDocumentBuf]) -> RawDocumentBuf {
    let mut out = None;
    loop {
        match ctx.state() {
            State::NeedMongoKeys => {
                let filter = Document::try_from(ctx.mongo_op().unwrap()).unwrap().to_string();
                for key in keys {
                    let id = Document::try_from(key.as_ref()).unwrap().get("_id").unwrap().to_string();
                    if filter.contains(&id) {
                        ctx.mongo_feed(key).unwrap();
                    }
                }
                ctx.mongo_done().unwrap();
            }
            State::Ready => out = Some(ctx.finalize_owned().unwrap()),
            State::Done => return out.expect("finalized"),
            other => panic!("unexpected state {other:?}: {:?}", ctx.status()),
        }
    }
}

fn encrypt(
    crypt: &Crypt,
    keys: &[RawDocumentBuf],
    key: usize,
    algorithm: &Algorithm,
    value: &RawDocument,
) -> RawDocumentBuf {
    let key_id = keys[key].get_binary("_id").unwrap().bytes.to_vec();
    let mut ctx = crypt.ctx().key_id(&key_id).unwrap().algorithm(algorithm).unwrap().explicit_encrypt(value).unwrap();
    drive(&mut ctx, keys)
}

fn decrypt(crypt: &Crypt, keys: &[RawDocumentBuf], ciphertext: &RawDocument) -> RawDocumentBuf {
    let mut ctx = crypt.ctx().explicit_decrypt(ciphertext).unwrap();
    drive(&mut ctx, keys)
}

fn stress(crypt: Crypt) {
    let ops = ops_per_thread();
    let keys: Vec<RawDocumentBuf> = (0..2)
        .map(|_| {
            let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
            drive(&mut ctx, &[])
        })
        .collect();
    // What every thread must get for the shared value: Deterministic encryption is a function of key and value.
    let shared_value = rawdoc! { "v": SHARED };
    let shared_ciphertext = encrypt(&crypt, &keys, 0, &Algorithm::Deterministic, &shared_value);
    // Ciphertexts made before the threads start, which they decrypt at random.
    let pool: Vec<(RawDocumentBuf, RawDocumentBuf)> = (0..16)
        .map(|i| {
            let value = rawdoc! { "v": format!("pooled value {i}") };
            let algorithm = if i % 2 == 0 { Algorithm::Random } else { Algorithm::Deterministic };
            (encrypt(&crypt, &keys, i % 2, &algorithm, &value), value)
        })
        .collect();

    let barrier = Barrier::new(THREADS);
    let done: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (crypt, keys, pool, barrier) = (&crypt, &keys, &pool, &barrier);
                let (shared_value, shared_ciphertext) = (&shared_value, &shared_ciphertext);
                s.spawn(move || {
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
                    let mut checked = 0;
                    barrier.wait();
                    for i in 0..ops {
                        match rng.below(5) {
                            // Round trip of a value of this thread and operation.
                            0..=2 => {
                                let value: Bson = match rng.below(3) {
                                    0 => Bson::String(format!("thread {t} op {i} {}", rng.next())),
                                    1 => Bson::Int64(rng.next() as i64),
                                    _ => Bson::Document(doc! { "t": t as i32, "i": i as i32, "x": [1, "two", 3.5] }),
                                };
                                // Documents cannot be encrypted deterministically.
                                let deterministic = !matches!(value, Bson::Document(_)) && rng.below(2) == 0;
                                let algorithm =
                                    if deterministic { Algorithm::Deterministic } else { Algorithm::Random };
                                let value = RawDocumentBuf::try_from(&doc! { "v": value }).unwrap();
                                let ciphertext = encrypt(crypt, keys, rng.below(2), &algorithm, &value);
                                assert_ne!(ciphertext.as_bytes(), value.as_bytes());
                                let plaintext = decrypt(crypt, keys, &ciphertext);
                                assert_eq!(plaintext.as_bytes(), value.as_bytes(), "thread {t} op {i}: round trip");
                            }
                            // The shared value: the same ciphertext on every thread.
                            3 => {
                                let ciphertext = encrypt(crypt, keys, 0, &Algorithm::Deterministic, shared_value);
                                assert_eq!(ciphertext.as_bytes(), shared_ciphertext.as_bytes(), "thread {t} op {i}");
                            }
                            // A ciphertext made on another thread.
                            _ => {
                                let (ciphertext, value) = &pool[rng.below(pool.len())];
                                let plaintext = decrypt(crypt, keys, ciphertext);
                                assert_eq!(plaintext.as_bytes(), value.as_bytes(), "thread {t} op {i}: pooled");
                            }
                        }
                        checked += 1;
                    }
                    checked
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a stress thread failed")).sum()
    });
    assert_eq!(done, THREADS * ops);
}

fn builder() -> libmongocrypt::CryptBuilder {
    Crypt::builder().kms_providers(&KmsProviders::new().local("local", &KEK)).unwrap()
}

#[test]
fn many_threads_share_one_crypt() {
    stress(builder().build().unwrap());
}

#[test]
fn many_threads_share_one_crypt_with_rust_crypto() {
    let crypt = builder().rust_crypto().build().unwrap();
    assert!(crypt.uses_crypto_hooks());
    stress(crypt);
}
