//! What a crypto provider's output buffer is, and what the binding makes of the counts it returns, on a real
//! `mongocrypt_t` (so on every build: `crypto_provider` installs the hooks even where libmongocrypt has native
//! crypto).
//!
//! - The buffer a provider writes to is libmongocrypt's preallocated, uninitialised memory; the binding zeroes it
//!   first, so a provider that reads it before writing sees zeros, never stale heap bytes (and valgrind sees no
//!   uninitialised read in provider code).
//! - libmongocrypt trusts the count a cipher reports: a short one made 1.7.2 and 1.21 strip padding it never got
//!   and assert (1 byte), or trip `BSON_ASSERT (*bytes_written > 0)` (0 bytes). The binding refuses any count but
//!   the input's length, so the operation fails with a typed error instead of aborting the process.
//! - A provider that writes the CBC output itself (`aes_256_cbc_*_uninit`, into a `CipherOutput`) must have written
//!   every byte it reports: libmongocrypt would read the others, never written, as its output.

use crate::common;

use std::sync::{Arc, Mutex};

use common::*;
use libmongocrypt::bson::{rawdoc, RawDocumentBuf};
use libmongocrypt::{
    Algorithm, CipherOutput, Crypt, CryptoError, CryptoProvider, Error, KeyEncryptionKey, RustCrypto, State,
};

/// What a [`Probe`] saw: per call, the hook and whether its output buffer was all zeros on entry.
#[derive(Default)]
struct Seen(Mutex<Vec<(&'static str, usize, bool)>>);

/// [`RustCrypto`], but every method first reads its whole output buffer and records whether it is all zeros; and
/// AES-256-CBC decryption of `lie.0`-byte inputs reports `lie.1` bytes written.
struct Probe {
    seen: Arc<Seen>,
    lie: Option<(usize, usize)>,
}

impl Probe {
    fn look(&self, hook: &'static str, output: &[u8]) {
        // A branch on every byte: with uninitialised bytes here, memcheck reports "Conditional jump or move depends
        // on uninitialised value(s)".
        let zeros = output.iter().all(|&b| b == 0);
        self.seen.0.lock().unwrap().push((hook, output.len(), zeros));
        // Leave freed blocks full of non-zero bytes behind, of the sizes libmongocrypt allocates output buffers of,
        // so that a buffer it does not clear shows them.
        for len in [output.len(), 16, 32, 64, 128, 256] {
            drop(std::hint::black_box(vec![0xa5u8; len]));
        }
    }
}

impl CryptoProvider for Probe {
    fn aes_256_cbc_encrypt(&self, key: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        self.look("aes_256_cbc_encrypt", o);
        RustCrypto.aes_256_cbc_encrypt(key, iv, i, o)
    }
    fn aes_256_cbc_decrypt(&self, key: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        self.look("aes_256_cbc_decrypt", o);
        let written = RustCrypto.aes_256_cbc_decrypt(key, iv, i, o)?;
        match self.lie {
            Some((len, reported)) if i.len() == len => Ok(reported),
            _ => Ok(written),
        }
    }
    fn aes_256_ctr_encrypt(&self, key: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        self.look("aes_256_ctr_encrypt", o);
        RustCrypto.aes_256_ctr_encrypt(key, iv, i, o)
    }
    fn aes_256_ctr_decrypt(&self, key: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        self.look("aes_256_ctr_decrypt", o);
        RustCrypto.aes_256_ctr_decrypt(key, iv, i, o)
    }
    fn aes_256_ecb_encrypt(&self, key: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
        self.look("aes_256_ecb_encrypt", o);
        RustCrypto.aes_256_ecb_encrypt(key, i, o)
    }
    fn hmac_sha_512(&self, key: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        self.look("hmac_sha_512", o);
        RustCrypto.hmac_sha_512(key, i, o)
    }
    fn hmac_sha_256(&self, key: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        self.look("hmac_sha_256", o);
        RustCrypto.hmac_sha_256(key, i, o)
    }
    fn sha_256(&self, i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        self.look("sha_256", o);
        RustCrypto.sha_256(i, o)
    }
    fn random(&self, o: &mut [u8]) -> Result<(), CryptoError> {
        self.look("random", o);
        RustCrypto.random(o)
    }
    fn sign_rsassa_pkcs1_v1_5_sha256(&self, key: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
        self.look("sign_rsassa_pkcs1_v1_5_sha256", o);
        RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(key, i, o)
    }
}

fn probe_crypt(lie: Option<(usize, usize)>) -> (Crypt, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let crypt = builder().crypto_provider(Probe { seen: seen.clone(), lie }).build().unwrap();
    assert!(crypt.uses_crypto_hooks());
    (crypt, seen)
}

fn local_data_key(crypt: &Crypt) -> RawDocumentBuf {
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    assert_eq!(ctx.state(), State::Ready);
    ctx.finalize_owned().unwrap()
}

fn encrypt(crypt: &Crypt, key: &RawDocumentBuf, algorithm: Algorithm, value: &str) -> Result<RawDocumentBuf, Error> {
    let id = key.get_binary("_id").unwrap().bytes.to_vec();
    let builder = crypt.ctx().key_id(&id)?.algorithm(&algorithm)?;
    let builder = if algorithm == Algorithm::Indexed { builder.contention_factor(0)? } else { builder };
    let mut ctx = builder.explicit_encrypt(&rawdoc! { "v": value })?;
    let trace = drive(&mut ctx, &Mock { keys: vec![key.clone()], ..Mock::default() });
    trace.error.map_or_else(|| Ok(trace.output.expect("an output")), Err)
}

fn decrypt(crypt: &Crypt, key: &RawDocumentBuf, ciphertext: &RawDocumentBuf) -> Result<RawDocumentBuf, Error> {
    let mut ctx = crypt.ctx().explicit_decrypt(ciphertext)?;
    let trace = drive(&mut ctx, &Mock { keys: vec![key.clone()], ..Mock::default() });
    trace.error.map_or_else(|| Ok(trace.output.expect("an output")), Err)
}

#[test]
fn providers_see_zeroed_output_buffers() {
    let (crypt, seen) = probe_crypt(None);
    for round in 0..10 {
        let key = local_data_key(&crypt);
        for algorithm in [Algorithm::Deterministic, Algorithm::Random, Algorithm::Unindexed, Algorithm::Indexed] {
            let value = format!("value {round} of {algorithm:?}");
            let ciphertext = encrypt(&crypt, &key, algorithm.clone(), &value).unwrap();
            if algorithm != Algorithm::Indexed {
                assert_eq!(decrypt(&crypt, &key, &ciphertext).unwrap().get_str("v").unwrap(), value);
            }
        }
        // An AWS data key signs its KMS request (SHA-256, HMAC-SHA-256) when the ctx is made; no KMS is contacted.
        let kek = KeyEncryptionKey::aws("aws", "us-east-1", "arn:aws:kms:us-east-1:579766882180:key/example");
        let ctx = crypt.ctx().key_encryption_key(&kek).unwrap().datakey().unwrap();
        assert_eq!(ctx.state(), State::NeedKms);
    }
    let seen = seen.0.lock().unwrap();
    for hook in ["random", "aes_256_cbc_encrypt", "aes_256_cbc_decrypt", "hmac_sha_512", "hmac_sha_256", "sha_256"] {
        assert!(seen.iter().any(|(h, _, _)| *h == hook), "{hook} was never called: {seen:?}");
    }
    assert!(seen.iter().any(|(h, _, _)| h.starts_with("aes_256_ctr")), "AES-256-CTR was never called");
    let dirty: Vec<_> = seen.iter().filter(|(_, _, zeros)| !zeros).collect();
    assert!(dirty.is_empty(), "{} of {} output buffers were not zeroed: {dirty:?}", dirty.len(), seen.len());
}

#[test]
fn output_buffers_have_the_primitives_lengths() {
    let (crypt, seen) = probe_crypt(None);
    let key = local_data_key(&crypt);
    let ciphertext = encrypt(&crypt, &key, Algorithm::Deterministic, "x").unwrap();
    decrypt(&crypt, &key, &ciphertext).unwrap();
    let seen = seen.0.lock().unwrap();
    for (hook, len, _) in seen.iter() {
        match *hook {
            "hmac_sha_512" => assert_eq!(*len, 64),
            "hmac_sha_256" | "sha_256" => assert_eq!(*len, 32),
            // Ciphers get exactly their input's length: whole blocks for CBC.
            "aes_256_cbc_encrypt" | "aes_256_cbc_decrypt" => assert!(*len > 0 && len % 16 == 0, "{hook}: {len}"),
            _ => {}
        }
    }
}

/// An explicit decryption whose 16-byte AES-256-CBC decrypt reports `reported` bytes: a typed error naming the
/// count, not an abort; and the same crypt still decrypts with a truthful provider's count.
fn assert_misreported_decrypt_fails(reported: usize) {
    let (honest, _) = probe_crypt(None);
    let key = local_data_key(&honest);
    // "x" is a 6-byte BSON string value: one 16-byte block once padded.
    let ciphertext = encrypt(&honest, &key, Algorithm::Deterministic, "x").unwrap();
    assert_eq!(decrypt(&honest, &key, &ciphertext).unwrap().get_str("v").unwrap(), "x");

    let (liar, seen) = probe_crypt(Some((16, reported)));
    let err = decrypt(&liar, &key, &ciphertext).expect_err("a misreported length must fail the decryption");
    assert!(
        seen.0.lock().unwrap().iter().any(|(h, len, _)| *h == "aes_256_cbc_decrypt" && *len == 16),
        "the 16-byte decrypt was never called"
    );
    match &err {
        Error::Client { message, .. } => {
            let expected = format!("aes_256_cbc_decrypt failed: provider reported {reported} bytes written");
            assert!(message.contains(&expected), "{message:?} does not carry {expected:?}");
            assert!(message.contains("exactly as long as its input, 16 bytes"), "{message:?}");
        }
        other => panic!("expected a client error, got {other:?}"),
    }
    // The key itself decrypted truthfully (its input is not 16 bytes), so a Deterministic encryption still works
    // on the lying crypt.
    encrypt(&liar, &key, Algorithm::Deterministic, "longer than one block").unwrap();
}

#[test]
fn cbc_decrypt_reporting_one_byte_is_an_error() {
    assert_misreported_decrypt_fails(1);
}

#[test]
fn cbc_decrypt_reporting_zero_bytes_is_an_error() {
    assert_misreported_decrypt_fails(0);
}

#[test]
fn cbc_decrypt_overstating_its_length_is_an_error() {
    assert_misreported_decrypt_fails(17);
    assert_misreported_decrypt_fails(usize::MAX);
}

/// AES-256-CBC decryption into the uninitialised buffer (`aes_256_cbc_decrypt_uninit`) that writes only `writes`
/// bytes of its 16 and reports all 16.
struct WritesPart {
    writes: usize,
}

impl CryptoProvider for WritesPart {
    fn aes_256_cbc_decrypt_uninit(
        &self,
        _key: &[u8],
        _iv: &[u8],
        input: &[u8],
        output: &mut CipherOutput<'_>,
    ) -> Result<usize, CryptoError> {
        assert_eq!(output.capacity(), input.len());
        if input.len() == 16 {
            output.append(&vec![0x10; self.writes])?;
            assert_eq!(output.written(), &vec![0x10; self.writes][..]);
            return Ok(16);
        }
        RustCrypto.aes_256_cbc_decrypt_uninit(_key, _iv, input, output)
    }
}

#[test]
fn cbc_decrypt_reporting_bytes_it_never_wrote_is_an_error() {
    // libmongocrypt would read the bytes nobody wrote (stale heap memory) as plaintext: refused, for a count the
    // provider did not write, whatever it reports.
    let (honest, _) = probe_crypt(None);
    let key = local_data_key(&honest);
    let ciphertext = encrypt(&honest, &key, Algorithm::Deterministic, "x").unwrap();
    for writes in [0, 8, 15] {
        let liar = builder().crypto_provider(WritesPart { writes }).build().unwrap();
        match decrypt(&liar, &key, &ciphertext).expect_err("unwritten bytes must fail the decryption") {
            Error::Client { message, .. } => {
                let expected =
                    format!("aes_256_cbc_decrypt failed: provider reported 16 bytes written but wrote {writes}");
                assert!(message.contains(&expected), "{message:?} does not carry {expected:?}");
            }
            other => panic!("expected a client error, got {other:?}"),
        }
    }
    // Writing past the buffer is an error of `append`, not a write out of bounds.
    let liar = builder().crypto_provider(WritesPart { writes: 17 }).build().unwrap();
    let err = decrypt(&liar, &key, &ciphertext).expect_err("17 bytes do not fit in 16");
    assert!(err.to_string().contains("output buffer too small: need 17 bytes, have 16"), "{err}");
    // And the whole of them is the truthful case.
    let truthful = builder().crypto_provider(WritesPart { writes: 16 }).build().unwrap();
    assert!(decrypt(&truthful, &key, &ciphertext).is_err(), "sixteen 0x10 bytes are not the plaintext");
}
