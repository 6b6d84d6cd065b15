//! Crypto hooks: let Rust supply libmongocrypt's cryptography, required by builds without native crypto.
//!
//! A [`CryptoProvider`] implements the primitives libmongocrypt asks for; [`RustCrypto`] is one built on the
//! RustCrypto crates, `getrandom` and `ring`. The crate registers a provider on a `mongocrypt_t` through
//! `extern "C"` trampolines that turn errors and panics into a failed status, so nothing unwinds into C.

use std::ffi::c_void;
use std::fmt;
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use aes::Aes256;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::inout::InOutBuf;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit, StreamCipher};
use libmongocrypt_sys as sys;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use zeroize::Zeroize;

use crate::error::{self, Error};
use crate::ffi::{drop_panic_payload, panic_message, zeroed, CallbackBinary, Status};

/// AES-256 key length.
const AES_256_KEY_LEN: usize = 32;
/// AES block length, which is also the CBC IV and CTR initial counter block length.
const AES_BLOCK_LEN: usize = 16;
/// SHA-256 digest length, which is also the HMAC-SHA-256 length.
const SHA_256_LEN: usize = 32;
/// HMAC-SHA-512 length.
const HMAC_SHA_512_LEN: usize = 64;

/// The cryptography libmongocrypt delegates to the application when crypto hooks are installed.
///
/// libmongocrypt may call a provider from every thread that uses the `mongocrypt_t` it is installed on, hence
/// `Send + Sync`. An `Err` is reported to libmongocrypt as a client error carrying its message, and fails the
/// operation that needed the primitive; a panic is caught and reported the same way.
///
/// Output buffers are preallocated by libmongocrypt and zeroed before the call, so a provider never sees stale
/// memory (the `_uninit` variants of the CBC methods hand them over as a [`CipherOutput`], which counts what is
/// written, for providers that write without reading). Every method writes its result at the start of `output` and must return an error, never panic, when
/// `output` is too small. The sizes are checked after the call: a cipher must report exactly its input's length,
/// and a misreported count fails the operation with a client error rather than reaching libmongocrypt.
///
/// Every method defaults to the built-in [`RustCrypto`], so a provider overrides only what it changes (say, the
/// random source, or signing with a key held elsewhere).
pub trait CryptoProvider: Send + Sync + 'static {
    /// AES-256-CBC encryption without padding: libmongocrypt has already padded `input` to a multiple of 16 bytes.
    ///
    /// `key` is 32 bytes and `iv` 16 bytes (the hook checks both before calling). `output` is at least
    /// `input.len()` bytes. Returns the number of bytes written, `input.len()`.
    fn aes_256_cbc_encrypt(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        RustCrypto.aes_256_cbc_encrypt(key, iv, input, output)
    }

    /// AES-256-CBC decryption without removing padding: libmongocrypt checks and strips it itself.
    ///
    /// `key` is 32 bytes, `iv` 16 bytes, `input` a multiple of 16 bytes, and `output` at least `input.len()`
    /// bytes. Returns the number of bytes written, `input.len()`.
    fn aes_256_cbc_decrypt(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        RustCrypto.aes_256_cbc_decrypt(key, iv, input, output)
    }

    /// [`aes_256_cbc_encrypt`](CryptoProvider::aes_256_cbc_encrypt) into libmongocrypt's output buffer as it is,
    /// uninitialised, which is what the hook calls. The default zeroes it and calls `aes_256_cbc_encrypt`;
    /// [`RustCrypto`] appends its ciphertext without that extra pass over the output (a large value's). The count
    /// returned must be what was written: a count over it fails the operation.
    fn aes_256_cbc_encrypt_uninit(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut CipherOutput<'_>,
    ) -> Result<usize, CryptoError> {
        self.aes_256_cbc_encrypt(key, iv, input, output.zeroed())
    }

    /// [`aes_256_cbc_decrypt`](CryptoProvider::aes_256_cbc_decrypt) into libmongocrypt's uninitialised output
    /// buffer, which is what the hook calls. The default zeroes it and calls `aes_256_cbc_decrypt`.
    fn aes_256_cbc_decrypt_uninit(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut CipherOutput<'_>,
    ) -> Result<usize, CryptoError> {
        self.aes_256_cbc_decrypt(key, iv, input, output.zeroed())
    }

    /// AES-256-CTR encryption, as OpenSSL's `EVP_aes_256_ctr`: `iv` is the 16-byte initial counter block,
    /// incremented as one big-endian 128-bit integer per block.
    ///
    /// `key` is 32 bytes; `input` has any length and `output` is at least `input.len()` bytes. Returns the number
    /// of bytes written, `input.len()`. Used for Queryable Encryption payloads.
    fn aes_256_ctr_encrypt(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        RustCrypto.aes_256_ctr_encrypt(key, iv, input, output)
    }

    /// AES-256-CTR decryption; the same keystream operation as [`CryptoProvider::aes_256_ctr_encrypt`].
    fn aes_256_ctr_decrypt(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        RustCrypto.aes_256_ctr_decrypt(key, iv, input, output)
    }

    /// AES-256-ECB encryption of whole blocks, without padding.
    ///
    /// libmongocrypt only uses it to build CTR mode when no CTR hook is set, one 16-byte counter block at a time,
    /// so it is unused in practice: this crate always sets the CTR hooks too. `key` is 32 bytes, `input` a
    /// multiple of 16 bytes and `output` at least `input.len()` bytes. Returns the number of bytes written,
    /// `input.len()`.
    fn aes_256_ecb_encrypt(&self, key: &[u8], input: &[u8], output: &mut [u8]) -> Result<usize, CryptoError> {
        RustCrypto.aes_256_ecb_encrypt(key, input, output)
    }

    /// HMAC-SHA-512 of `input` under `key` (libmongocrypt passes a 32-byte key), written to the first 64 bytes of
    /// `output`.
    fn hmac_sha_512(&self, key: &[u8], input: &[u8], output: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.hmac_sha_512(key, input, output)
    }

    /// HMAC-SHA-256 of `input` under `key` (libmongocrypt passes a 32-byte key), written to the first 32 bytes of
    /// `output`.
    fn hmac_sha_256(&self, key: &[u8], input: &[u8], output: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.hmac_sha_256(key, input, output)
    }

    /// SHA-256 of `input`, written to the first 32 bytes of `output`.
    fn sha_256(&self, input: &[u8], output: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.sha_256(input, output)
    }

    /// Fills all of `output` with cryptographically secure random bytes; libmongocrypt sizes it to the count it
    /// requests.
    fn random(&self, output: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.random(output)
    }

    /// RSASSA-PKCS1-v1_5 signature with SHA-256 of `input`, used to sign the JWT that requests a Google Cloud
    /// OAuth token.
    ///
    /// `private_key` is the GCP KMS provider's `privateKey`: an RSA key as PKCS#8 or PKCS#1 DER bytes. libmongocrypt
    /// preallocates 256 bytes of `output`, the signature length of a 2048-bit key; the signature is written to the
    /// first modulus-length bytes of `output`.
    fn sign_rsassa_pkcs1_v1_5_sha256(
        &self,
        private_key: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(private_key, input, output)
    }
}

/// What [`CryptBuilder::crypto_provider`](crate::CryptBuilder::crypto_provider) takes: a [`CryptoProvider`], or an
/// `Arc<dyn CryptoProvider>` that the application shares with the `Crypt` (it is used as it is, not wrapped again).
pub trait IntoCryptoProvider {
    /// The provider, shared.
    fn into_crypto_provider(self) -> Arc<dyn CryptoProvider>;
}

impl<P: CryptoProvider> IntoCryptoProvider for P {
    fn into_crypto_provider(self) -> Arc<dyn CryptoProvider> {
        Arc::new(self)
    }
}

impl IntoCryptoProvider for Arc<dyn CryptoProvider> {
    fn into_crypto_provider(self) -> Arc<dyn CryptoProvider> {
        self
    }
}

/// A failure of a [`CryptoProvider`]; libmongocrypt receives its message as a client error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CryptoError {
    message: String,
}

impl CryptoError {
    /// An error carrying `message`.
    pub fn new(message: impl Into<String>) -> CryptoError {
        CryptoError { message: message.into() }
    }
}

/// A [`CryptoProvider`] built on the RustCrypto crates for AES (`aes`, with AES-NI where the CPU has it, `cbc`,
/// `ctr`, `ecb`), `ring` for SHA-256, HMAC-SHA-256, HMAC-SHA-512 and RSA signatures, and `getrandom` for
/// randomness. No primitive is written in this crate.
///
/// AES keys are used in place, never copied; the AES key schedules are wiped when dropped (the `aes` crate's
/// `zeroize` feature); ring's HMAC key states are not (ring offers no way to wipe them).
#[derive(Debug, Clone, Copy, Default)]
pub struct RustCrypto;

impl CryptoProvider for RustCrypto {
    fn aes_256_cbc_encrypt(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let (key, iv) = (fixed::<AES_256_KEY_LEN>("AES-256 key", key)?, fixed::<AES_BLOCK_LEN>("IV", iv)?);
        let output = output_prefix(output, input.len())?;
        cbc::Encryptor::<Aes256>::new(key.into(), iv.into())
            .encrypt_padded_b2b_mut::<NoPadding>(input, output)
            .map_err(|_| not_whole_blocks(input))?;
        Ok(input.len())
    }

    fn aes_256_cbc_decrypt(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let (key, iv) = (fixed::<AES_256_KEY_LEN>("AES-256 key", key)?, fixed::<AES_BLOCK_LEN>("IV", iv)?);
        let output = output_prefix(output, input.len())?;
        cbc::Decryptor::<Aes256>::new(key.into(), iv.into())
            .decrypt_padded_b2b_mut::<NoPadding>(input, output)
            .map_err(|_| not_whole_blocks(input))?;
        Ok(input.len())
    }

    fn aes_256_cbc_encrypt_uninit(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut CipherOutput<'_>,
    ) -> Result<usize, CryptoError> {
        let (key, iv) = (fixed::<AES_256_KEY_LEN>("AES-256 key", key)?, fixed::<AES_BLOCK_LEN>("IV", iv)?);
        let mut cipher = cbc::Encryptor::<Aes256>::new(key.into(), iv.into());
        through_stack_blocks(input, output, |blocks| cipher.encrypt_blocks_inout_mut(blocks))
    }

    fn aes_256_cbc_decrypt_uninit(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut CipherOutput<'_>,
    ) -> Result<usize, CryptoError> {
        let (key, iv) = (fixed::<AES_256_KEY_LEN>("AES-256 key", key)?, fixed::<AES_BLOCK_LEN>("IV", iv)?);
        let mut cipher = cbc::Decryptor::<Aes256>::new(key.into(), iv.into());
        through_stack_blocks(input, output, |blocks| cipher.decrypt_blocks_inout_mut(blocks))
    }

    fn aes_256_ctr_encrypt(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let (key, iv) = (fixed::<AES_256_KEY_LEN>("AES-256 key", key)?, fixed::<AES_BLOCK_LEN>("IV", iv)?);
        let output = output_prefix(output, input.len())?;
        // Ctr128BE increments the whole block as a big-endian 128-bit integer, as OpenSSL and libmongocrypt's own
        // ECB-based CTR do.
        ctr::Ctr128BE::<Aes256>::new(key.into(), iv.into())
            .apply_keystream_b2b(input, output)
            .map_err(|_| CryptoError::new("AES-256-CTR: input exceeds the counter's keystream"))?;
        Ok(input.len())
    }

    fn aes_256_ctr_decrypt(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        self.aes_256_ctr_encrypt(key, iv, input, output)
    }

    fn aes_256_ecb_encrypt(&self, key: &[u8], input: &[u8], output: &mut [u8]) -> Result<usize, CryptoError> {
        let key = fixed::<AES_256_KEY_LEN>("AES-256 key", key)?;
        let output = output_prefix(output, input.len())?;
        ecb::Encryptor::<Aes256>::new(key.into())
            .encrypt_padded_b2b_mut::<NoPadding>(input, output)
            .map_err(|_| not_whole_blocks(input))?;
        Ok(input.len())
    }

    fn hmac_sha_512(&self, key: &[u8], input: &[u8], output: &mut [u8]) -> Result<(), CryptoError> {
        let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA512, key), input);
        output_prefix(output, HMAC_SHA_512_LEN)?.copy_from_slice(tag.as_ref());
        Ok(())
    }

    fn hmac_sha_256(&self, key: &[u8], input: &[u8], output: &mut [u8]) -> Result<(), CryptoError> {
        let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), input);
        output_prefix(output, tag.as_ref().len())?.copy_from_slice(tag.as_ref());
        Ok(())
    }

    fn sha_256(&self, input: &[u8], output: &mut [u8]) -> Result<(), CryptoError> {
        output_prefix(output, SHA_256_LEN)?
            .copy_from_slice(ring::digest::digest(&ring::digest::SHA256, input).as_ref());
        Ok(())
    }

    fn random(&self, output: &mut [u8]) -> Result<(), CryptoError> {
        getrandom::fill(output).map_err(|e| CryptoError::new(format!("operating system random source failed: {e}")))
    }

    fn sign_rsassa_pkcs1_v1_5_sha256(
        &self,
        private_key: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        // PKCS#8 first, then a bare PKCS#1 RSAPrivateKey (ring's `from_der`), as OpenSSL's native crypto accepts both.
        let key_pair = RsaKeyPair::from_pkcs8(private_key).or_else(|pkcs8| {
            RsaKeyPair::from_der(private_key).map_err(|pkcs1| {
                CryptoError::new(format!("invalid PKCS#8 RSA private key: {pkcs8}; as PKCS#1: {pkcs1}"))
            })
        })?;
        let len = key_pair.public().modulus_len();
        // libmongocrypt sends all of `output` as the signature: a shorter one (a smaller key) would go out padded
        // with zeros, so only a key whose signature fills it is accepted.
        if len < output.len() {
            return Err(CryptoError::new(format!(
                "a {}-bit RSA key makes {len}-byte signatures; libmongocrypt expects {} bytes",
                len * 8,
                output.len()
            )));
        }
        let output = output_prefix(output, len)?;
        // The RNG only blinds the private-key operation; PKCS#1 v1.5 signatures themselves are deterministic.
        key_pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input, output)
            .map_err(|_| CryptoError::new("RSA signing failed"))
    }
}

/// `bytes` as an `N`-byte array, or an error naming `what` and the actual length.
fn fixed<'a, const N: usize>(what: &str, bytes: &'a [u8]) -> Result<&'a [u8; N], CryptoError> {
    bytes.try_into().map_err(|_| CryptoError::new(format!("{what} must be {N} bytes, got {}", bytes.len())))
}

/// The first `len` bytes of `output`, or an error if it is shorter.
fn output_prefix<T>(output: &mut [T], len: usize) -> Result<&mut [T], CryptoError> {
    let available = output.len();
    output
        .get_mut(..len)
        .ok_or_else(|| CryptoError::new(format!("output buffer too small: need {len} bytes, have {available}")))
}

/// Runs a block cipher mode over `input` into `output` through a 1 KiB buffer on the stack: the `cbc` crate writes
/// only to initialised blocks, and zeroing all of `output` first would be one more pass over a large value than
/// copying the buffer out. The buffer is wiped afterwards (it held plaintext).
fn through_stack_blocks(
    input: &[u8],
    output: &mut CipherOutput<'_>,
    mut mode: impl FnMut(InOutBuf<'_, '_, cbc::cipher::Block<Aes256>>),
) -> Result<usize, CryptoError> {
    if !input.len().is_multiple_of(AES_BLOCK_LEN) {
        return Err(not_whole_blocks(input));
    }
    if output.capacity() < input.len() {
        return Err(CryptoError::new(format!(
            "output buffer too small: need {} bytes, have {}",
            input.len(),
            output.capacity()
        )));
    }
    let mut buffer = [0u8; 64 * AES_BLOCK_LEN];
    for input in input.chunks(buffer.len()) {
        let out = &mut buffer[..input.len()];
        let (blocks, _) = InOutBuf::new(input, out).expect("equal lengths").into_chunks();
        mode(blocks);
        output.append(out)?;
    }
    let used = input.len().min(buffer.len());
    buffer[..used].zeroize();
    Ok(input.len())
}

/// libmongocrypt's preallocated output buffer of a cipher hook, uninitialised until written, and how much of it has
/// been: a provider [`append`](CipherOutput::append)s its output, or takes it all [`zeroed`](CipherOutput::zeroed).
/// The hook refuses a reported length over what was written, so libmongocrypt never reads a byte nobody wrote.
pub struct CipherOutput<'a> {
    buffer: &'a mut [MaybeUninit<u8>],
    written: usize,
}

impl<'a> CipherOutput<'a> {
    pub(crate) fn new(buffer: &'a mut [MaybeUninit<u8>]) -> CipherOutput<'a> {
        CipherOutput { buffer, written: 0 }
    }

    /// How many bytes it holds.
    pub fn capacity(&self) -> usize {
        self.buffer.len()
    }

    /// The bytes written so far, from the start.
    pub fn written(&self) -> &[u8] {
        // SAFETY: not a mongocrypt.h rule: the first `written` bytes were initialised by `append` or `zeroed`, and
        // `MaybeUninit<u8>` has the layout of `u8`.
        unsafe { &*(&self.buffer[..self.written] as *const [MaybeUninit<u8>] as *const [u8]) }
    }

    /// Writes `bytes` after those written so far; an error if they do not fit.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), CryptoError> {
        let capacity = self.buffer.len();
        let Some(rest) = self.buffer.get_mut(self.written..self.written + bytes.len()) else {
            return Err(CryptoError::new(format!(
                "output buffer too small: need {} bytes, have {capacity}",
                self.written + bytes.len()
            )));
        };
        // SAFETY: not a mongocrypt.h rule: `rest` is `bytes.len()` writable bytes that do not overlap `bytes` (one
        // is borrowed mutably, the other shared).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), rest.as_mut_ptr().cast::<u8>(), bytes.len()) };
        self.written += bytes.len();
        Ok(())
    }

    /// All of it, zeroed, for code that writes into a `&mut [u8]`; all of it then counts as written.
    pub fn zeroed(&mut self) -> &mut [u8] {
        self.written = self.buffer.len();
        zeroed(self.buffer)
    }
}

impl fmt::Debug for CipherOutput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CipherOutput").field("capacity", &self.capacity()).field("written", &self.written).finish()
    }
}

fn not_whole_blocks(input: &[u8]) -> CryptoError {
    CryptoError::new(format!("input length {} is not a multiple of the {AES_BLOCK_LEN}-byte AES block", input.len()))
}

/// Owns the provider that the hooks installed on a `mongocrypt_t` point at. It must be dropped only after that
/// `mongocrypt_t` is destroyed.
pub(crate) struct InstalledHooks(Box<Arc<dyn CryptoProvider>>);

impl InstalledHooks {
    /// The `ctx` pointer handed to libmongocrypt: the address of the boxed `Arc`, which stays put however the
    /// `InstalledHooks` itself moves.
    fn context(&self) -> *mut c_void {
        let provider: &Arc<dyn CryptoProvider> = &self.0;
        std::ptr::from_ref(provider).cast_mut().cast()
    }
}

impl fmt::Debug for InstalledHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstalledHooks").finish_non_exhaustive()
    }
}

/// Installs `provider` as every crypto hook of `crypt`: AES-256-CBC, random, HMAC-SHA-512/256 and SHA-256, then
/// AES-256-CTR, AES-256-ECB and the RSASSA-PKCS1-v1_5 signature.
///
/// # Safety
/// `crypt` must be a live `mongocrypt_t` on which `mongocrypt_init` has not been called, and the returned
/// [`InstalledHooks`] must outlive it (drop it after `mongocrypt_destroy`). On error, `crypt` keeps the error
/// status, so `mongocrypt_init` fails and none of the hooks can be called after the `InstalledHooks` is dropped.
pub(crate) unsafe fn install(
    crypt: *mut sys::mongocrypt_t,
    provider: Arc<dyn CryptoProvider>,
) -> error::Result<InstalledHooks> {
    let hooks = InstalledHooks(Box::new(provider));
    let ctx = hooks.context();
    // SAFETY: the caller guarantees `crypt` is live and not initialized ("@pre mongocrypt_init has not been
    // called"). Every trampoline matches its typedef, and `ctx` stays valid as long as `crypt` because the caller
    // keeps `hooks` alive that long. The CTR and ECB hooks are called with the `ctx` of
    // mongocrypt_setopt_crypto_hooks (1.21 documents their own `ctx` as unused), the same pointer as passed here.
    let installed = unsafe {
        sys::mongocrypt_setopt_crypto_hooks(
            crypt,
            Some(aes_256_cbc_encrypt_hook),
            Some(aes_256_cbc_decrypt_hook),
            Some(random_hook),
            Some(hmac_sha_512_hook),
            Some(hmac_sha_256_hook),
            Some(sha_256_hook),
            ctx,
        ) && sys::mongocrypt_setopt_aes_256_ctr(
            crypt,
            Some(aes_256_ctr_encrypt_hook),
            Some(aes_256_ctr_decrypt_hook),
            ctx,
        ) && sys::mongocrypt_setopt_aes_256_ecb(crypt, Some(aes_256_ecb_encrypt_hook), ctx)
            && sys::mongocrypt_setopt_crypto_hook_sign_rsaes_pkcs1_v1_5(crypt, Some(sign_rsaes_pkcs1_v1_5_hook), ctx)
    };
    if installed {
        return Ok(hooks);
    }
    let status = Status::new();
    // SAFETY: `crypt` is live; "If false, an error status is set. Retrieve it with mongocrypt_status", which copies
    // it into our status.
    unsafe { sys::mongocrypt_status(crypt, status.as_ptr()) };
    status.to_result()?;
    Err(Error::Client { code: 0, message: "setting the crypto hooks failed without an error status".into() })
}

/// The provider behind a hook's `ctx`.
///
/// # Safety
/// `ctx` must be NULL or the pointer [`install`] passed to libmongocrypt, whose [`InstalledHooks`] is alive.
unsafe fn provider_from_ctx<'a>(ctx: *mut c_void) -> Result<&'a dyn CryptoProvider, CryptoError> {
    // SAFETY: per the contract above, a non-NULL `ctx` points at the live boxed Arc of an InstalledHooks.
    let provider = unsafe { ctx.cast::<Arc<dyn CryptoProvider>>().as_ref() };
    provider.map(|provider| &**provider).ok_or_else(|| CryptoError::new("crypto hook called without its context"))
}

/// Runs the body of hook `name` for C. An error or a panic becomes `false` plus a client error on `status`: that is
/// how hooks report failure ("If returning false, set status"), and unwinding into C must never happen.
///
/// # Safety
/// `status` must be NULL or the live status libmongocrypt passed to the hook.
unsafe fn run_hook(
    name: &str,
    status: *mut sys::mongocrypt_status_t,
    body: impl FnOnce() -> Result<(), CryptoError>,
) -> bool {
    let message = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return true,
        Ok(Err(failure)) => format!("{name} failed: {failure}"),
        Err(payload) => {
            let message = format!("{name} panicked: {}", panic_message(&*payload));
            drop_panic_payload(payload);
            message
        }
    };
    // SAFETY: the caller guarantees `status` is NULL or live ("an optional status to pass error messages").
    unsafe { Status::set_client_error(status, &message) };
    false
}

/// The body shared by the `mongocrypt_crypto_fn` hooks. `iv` is `None` for ECB, whose iv argument libmongocrypt
/// leaves NULL; `op` gets an empty iv then.
///
/// # Safety
/// The pointer arguments are those libmongocrypt passed to a `mongocrypt_crypto_fn` hook that [`install`] set.
#[allow(clippy::too_many_arguments)] // mirrors mongocrypt_crypto_fn, plus the hook's name and operation
unsafe fn cipher_hook(
    name: &str,
    op: impl FnOnce(&dyn CryptoProvider, &[u8], &[u8], &[u8], &mut CipherOutput<'_>) -> Result<usize, CryptoError>,
    ctx: *mut c_void,
    key: *mut sys::mongocrypt_binary_t,
    iv: Option<*mut sys::mongocrypt_binary_t>,
    input: *mut sys::mongocrypt_binary_t,
    out: *mut sys::mongocrypt_binary_t,
    bytes_written: *mut u32,
    status: *mut sys::mongocrypt_status_t,
) -> bool {
    let body = || {
        // SAFETY: `ctx` is the pointer given to mongocrypt_setopt_crypto_hooks by `install`; key, iv, in and out are
        // the hook's binaries, live for the call, with "out: a preallocated byte array for the output".
        let (provider, key, iv, input, mut out) = unsafe {
            (
                provider_from_ctx(ctx)?,
                CallbackBinary::new(key),
                iv.map(|iv| CallbackBinary::new(iv)),
                CallbackBinary::new(input),
                CallbackBinary::new(out),
            )
        };
        let key = fixed::<AES_256_KEY_LEN>("AES-256 key", key.as_slice())?;
        let iv = match &iv {
            Some(iv) => fixed::<AES_BLOCK_LEN>("IV", iv.as_slice())?.as_slice(),
            None => &[],
        };
        let input = input.as_slice();
        // Every cipher libmongocrypt asks for (CBC without padding, CTR, ECB) writes exactly as many bytes as it
        // reads, so the provider gets exactly that much output (uninitialised: each trampoline zeroes it unless the
        // method takes a CipherOutput).
        let mut out = CipherOutput::new(output_prefix(out.uninit_output(), input.len())?);
        let written = op(provider, key, iv, input, &mut out)?;
        // libmongocrypt trusts bytes_written: a short count makes it strip padding it never got (and assert), a
        // zero trips BSON_ASSERT (*bytes_written > 0). Any count but the input's length is refused here.
        let written = u32::try_from(written).ok().filter(|&n| n as usize == input.len()).ok_or_else(|| {
            CryptoError::new(format!(
                "provider reported {written} bytes written; the output of this cipher is exactly as long as its \
                 input, {} bytes",
                input.len()
            ))
        })?;
        // And libmongocrypt reads that many bytes: they must all have been written.
        if out.written().len() < written as usize {
            return Err(CryptoError::new(format!(
                "provider reported {written} bytes written but wrote {}",
                out.written().len()
            )));
        }
        if !bytes_written.is_null() {
            // SAFETY: "bytes_written: Set this to the number of bytes written to out"; checked non-NULL.
            unsafe { *bytes_written = written };
        }
        Ok(())
    };
    // SAFETY: libmongocrypt passed `status` to this hook; it is NULL or live for the call.
    unsafe { run_hook(name, status, body) }
}

/// The body shared by the `mongocrypt_hmac_fn` hooks: HMACs and the RSA signature. `out_len` is the output's fixed
/// length, the provider's whole output; `None` (the signature) hands over all of libmongocrypt's buffer, which it
/// sizes to the signature it expects (256 bytes, a 2048-bit key).
///
/// # Safety
/// The pointer arguments are those libmongocrypt passed to a `mongocrypt_hmac_fn` hook that [`install`] set.
#[allow(clippy::too_many_arguments)] // mirrors mongocrypt_hmac_fn, plus the hook's name, length and operation
unsafe fn mac_hook(
    name: &str,
    out_len: Option<usize>,
    op: impl FnOnce(&dyn CryptoProvider, &[u8], &[u8], &mut [u8]) -> Result<(), CryptoError>,
    ctx: *mut c_void,
    key: *mut sys::mongocrypt_binary_t,
    input: *mut sys::mongocrypt_binary_t,
    out: *mut sys::mongocrypt_binary_t,
    status: *mut sys::mongocrypt_status_t,
) -> bool {
    let body = || {
        // SAFETY: `ctx` is the pointer `install` gave to mongocrypt_setopt_crypto_hooks (HMACs) or as the sign_ctx
        // of mongocrypt_setopt_crypto_hook_sign_rsaes_pkcs1_v1_5; key, in and out are the hook's binaries, live for
        // the call, with "out: a preallocated byte array for the output".
        let (provider, key, input, mut out) = unsafe {
            (provider_from_ctx(ctx)?, CallbackBinary::new(key), CallbackBinary::new(input), CallbackBinary::new(out))
        };
        let out = match out_len {
            Some(len) => output_prefix(out.zeroed_output(), len)?,
            None => out.zeroed_output(),
        };
        op(provider, key.as_slice(), input.as_slice(), out)
    };
    // SAFETY: libmongocrypt passed `status` to this hook; it is NULL or live for the call.
    unsafe { run_hook(name, status, body) }
}

/// Defines the `mongocrypt_crypto_fn` trampolines, each calling one [`CryptoProvider`] method through
/// [`cipher_hook`].
macro_rules! cipher_trampolines {
    ($($(#[$doc:meta])* $hook:ident => |$p:ident, $key:ident, $iv:ident, $input:ident, $out:ident| $call:expr, iv: $has_iv:literal;)*) => {$(
        $(#[$doc])*
        unsafe extern "C" fn $hook(
            ctx: *mut c_void,
            key: *mut sys::mongocrypt_binary_t,
            iv: *mut sys::mongocrypt_binary_t,
            input: *mut sys::mongocrypt_binary_t,
            out: *mut sys::mongocrypt_binary_t,
            bytes_written: *mut u32,
            status: *mut sys::mongocrypt_status_t,
        ) -> bool {
            let name = stringify!($hook).trim_end_matches("_hook");
            let iv = $has_iv.then_some(iv);
            // SAFETY: libmongocrypt calls this as the hook `install` set under this name, with its own arguments.
            unsafe {
                cipher_hook(name, |$p, $key, $iv, $input, $out| $call, ctx, key, iv, input, out, bytes_written, status)
            }
        }
    )*};
}

cipher_trampolines! {
    /// `mongocrypt_crypto_fn` for AES-256-CBC encryption.
    aes_256_cbc_encrypt_hook => |p, key, iv, input, out| p.aes_256_cbc_encrypt_uninit(key, iv, input, out), iv: true;
    /// `mongocrypt_crypto_fn` for AES-256-CBC decryption.
    aes_256_cbc_decrypt_hook => |p, key, iv, input, out| p.aes_256_cbc_decrypt_uninit(key, iv, input, out), iv: true;
    /// `mongocrypt_crypto_fn` for AES-256-CTR encryption.
    aes_256_ctr_encrypt_hook => |p, key, iv, input, out| p.aes_256_ctr_encrypt(key, iv, input, out.zeroed()), iv: true;
    /// `mongocrypt_crypto_fn` for AES-256-CTR decryption.
    aes_256_ctr_decrypt_hook => |p, key, iv, input, out| p.aes_256_ctr_decrypt(key, iv, input, out.zeroed()), iv: true;
    /// `mongocrypt_crypto_fn` for AES-256-ECB encryption; libmongocrypt passes a NULL `iv`, which is not read.
    aes_256_ecb_encrypt_hook => |p, key, _iv, input, out| p.aes_256_ecb_encrypt(key, input, out.zeroed()), iv: false;
}

/// Defines the `mongocrypt_hmac_fn` trampolines through [`mac_hook`].
macro_rules! mac_trampolines {
    ($($(#[$doc:meta])* $hook:ident => $method:ident, out_len: $out_len:expr;)*) => {$(
        $(#[$doc])*
        unsafe extern "C" fn $hook(
            ctx: *mut c_void,
            key: *mut sys::mongocrypt_binary_t,
            input: *mut sys::mongocrypt_binary_t,
            out: *mut sys::mongocrypt_binary_t,
            status: *mut sys::mongocrypt_status_t,
        ) -> bool {
            // SAFETY: libmongocrypt calls this as the hook `install` set under this name, with its own arguments.
            unsafe {
                mac_hook(
                    stringify!($method),
                    $out_len,
                    |p, key, input, out| p.$method(key, input, out),
                    ctx,
                    key,
                    input,
                    out,
                    status,
                )
            }
        }
    )*};
}

mac_trampolines! {
    /// `mongocrypt_hmac_fn` for HMAC-SHA-512.
    hmac_sha_512_hook => hmac_sha_512, out_len: Some(HMAC_SHA_512_LEN);
    /// `mongocrypt_hmac_fn` for HMAC-SHA-256.
    hmac_sha_256_hook => hmac_sha_256, out_len: Some(SHA_256_LEN);
    /// `mongocrypt_hmac_fn` for the RSASSA-PKCS1-v1_5 SHA-256 signature (misnamed "rsaes" by libmongocrypt).
    sign_rsaes_pkcs1_v1_5_hook => sign_rsassa_pkcs1_v1_5_sha256, out_len: None;
}

/// `mongocrypt_hash_fn` for SHA-256.
unsafe extern "C" fn sha_256_hook(
    ctx: *mut c_void,
    input: *mut sys::mongocrypt_binary_t,
    out: *mut sys::mongocrypt_binary_t,
    status: *mut sys::mongocrypt_status_t,
) -> bool {
    let body = || {
        // SAFETY: libmongocrypt calls this as the sha_256 hook set by `install`: `ctx` is the pointer given to
        // mongocrypt_setopt_crypto_hooks; in and out are the hook's binaries, live for the call, with "out: a
        // preallocated byte array for the output".
        let (provider, input, mut out) =
            unsafe { (provider_from_ctx(ctx)?, CallbackBinary::new(input), CallbackBinary::new(out)) };
        provider.sha_256(input.as_slice(), output_prefix(out.zeroed_output(), SHA_256_LEN)?)
    };
    // SAFETY: libmongocrypt passed `status` to this hook; it is NULL or live for the call.
    unsafe { run_hook("sha_256", status, body) }
}

/// `mongocrypt_random_fn`: fills the first `count` bytes of `out`.
unsafe extern "C" fn random_hook(
    ctx: *mut c_void,
    out: *mut sys::mongocrypt_binary_t,
    count: u32,
    status: *mut sys::mongocrypt_status_t,
) -> bool {
    let body = || {
        // SAFETY: libmongocrypt calls this as the random hook set by `install`: `ctx` is the pointer given to
        // mongocrypt_setopt_crypto_hooks; out is the hook's binary, live for the call, "a preallocated byte array
        // for the output".
        let (provider, mut out) = unsafe { (provider_from_ctx(ctx)?, CallbackBinary::new(out)) };
        provider.random(output_prefix(out.zeroed_output(), count as usize)?)
    };
    // SAFETY: libmongocrypt passed `status` to this hook; it is NULL or live for the call.
    unsafe { run_hook("random", status, body) }
}

#[cfg(test)]
mod tests {
    use ring::signature::{KeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    use super::*;
    use crate::binary::BinaryOut;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    // NIST SP 800-38A, appendix F: the AES-256 key and the four plaintext blocks shared by F.1.5, F.2.5 and F.5.5.
    const NIST_KEY: &str = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";
    const NIST_PLAINTEXT: &str = concat!(
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51",
        "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
    );

    /// An RSA-2048 key, PKCS#8 DER (`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 | openssl pkcs8
    /// -topk8 -nocrypt -outform DER`). For tests only.
    const RSA_PKCS8: &str = concat!(
    "308204bd020100300d06092a864886f70d0101010500048204a7308204a30201000282010100d723a8b071ce6607bbca32de220acbe0519e",
    "d2182fbfa296ad702f38085ccdcf99bc3fb3514a5b8f89f3817f7c0d52e71a5c37947ad07bce0dcc807ebdc781a65f1e9f4c4b8549836b1e",
    "a4eaac93ed7e4511e06ef82c128ebf891a8fe847c64591c656ec794d13bf99417c79ce77c1444f41005b7bfe4724ba7f08b6302956f535aa",
    "c07d923039739270fbae087678c47db530e029ddfce798adf434eba2f8c0106609514c0c4674d119db3687bda5ea6b476e7aec49dc38f11c",
    "e65f5519867b22d2f1f53df95a6fc620581b730e42c1fdecc76f264730662f714a280151961ceb3547eba5b72e7e0e5b8d11f80e70a72152",
    "2b29d1a68752ccd83c3e701d187b020301000102820100531d0911e55d96083dd1bf3616d3b1f0bec78b25e1e878611aaf00e6f6401818b0",
    "2d4c34b3de74a1eeeafe67e85e635d39cf4f7f92b4d16788e82cea09da35e9b6cca740fbda09ccf608b8309b2c68ef43b2c4d04a1b08ae52",
    "2b9ef1e28c3bfa6b7742e4877631ff6eaf206e14482a877fd0be59197d6231bbc4d0f24587eafa09e3673405456e5563a0b5392f9006dc69",
    "eff45c70438db70342f24cb40a1add17253759e06be9b6a9a0d9c5f1354f1dd92623c1b70acf9a7a9cffb6ac3015019c4b8daaabcd22c415",
    "5a85a3143f2b54375b60c4975f05afab3b03b895a19cb77202d8bdc0dbf812243eeb6523f7c4e7493347d0b4709fe8b8169f7262056d1102",
    "818100f3e663d61f4d0018ece8b494d86dcd97b040771ea04d3b533d1e7f6ce23147bcf8ec4bb4a4f60fe3979dae0209dc2fe0cee7ff1fc5",
    "2b3c6769e7dd5ad0086fd10fdfa5d5da62d983c7551f5edd56e50cb998e19ed225309e64e42272e23f6b7a589ecf717036a0109a70ea3ca7",
    "f3b3b81687ccfee5a3c1e2b0337b21baccbf1102818100e1cfffbcf733f9d7ae90d170d0354133469825a9e41f0d12f1e23da9f0019d71e9",
    "01aa5436a1df5cd47ab0f4b350d669237bcd88792194911cd7c199c3091e73fc7b4eee66914e471c6b252f87aa0dccf0bb893c70e9c3e51f",
    "e5e57a6eb8464c755a77e2866a27de62ef2782f804484a63fd9dc0825da83a7262090c503436cb028180387a7953f41b98922d0a160701b7",
    "2b8c9cbbd0d9beb523afbacf7d22719e87c632be4529a7a9733478bf82b3e6249ed1a81800f4126c58a879d5bf647018040c9d6864b688c3",
    "ab2ae0d5cd55e25b64def57b79839596171416b8dd614d12f2887a4d0c2c7097b5a9229a532388a0de551aa287cddecf74ee516f1a6c4d1d",
    "6c81028180248424510490cd2849bc75820ec96ddfc2dcbbca7b6f6207dc41bfc30962d979203afab65f9751ad8b56c3e2ee547637ce5b28",
    "e396e30d496226a9d219ae11d4a3d1b4f3ec7636f85cea1ebb4eeefb08572d9c85bfa4addf118775d294b10bfd354509fa01ce8cdff393c5",
    "09f2dd8e6b293c4c1463808dc1d5d970a923172e7d02818100a34d47291ef13554540ed95c25f082133e6cf7f9ebce3c804d64b25845fcbe",
    "1352971f6671ab7d8adcdc39fac72e7a48e4ce215d1ca6f60b178849289bc29561f1db3d48ec39f295404b3e78b6445481a4fec1c0cc0b0d",
    "2141d37ec7bb5e79b56f503f23f8ebd5719e01fc2b1583c7bb11990bc9aef16d0248be3c226ffd7490",
    );
    /// `openssl dgst -sha256 -sign` of "abc" with `RSA_PKCS8`.
    const RSA_SIGNATURE_OF_ABC: &str = concat!(
    "a57569aaac79d29423b26ea070e29b648b6dcd6b48b728e7583df5995991188f7d0f7533b2f95693dfc88be7d555ca23a9709f43656737ab",
    "271c89aeeba78b511894676904f81dd3a44f631ca11f1dc8822856193066000f8684c3c67dc1c4a74b6922f10394b2e9dff288e27dfc94a0",
    "d0d37338265ea4f5a6e78b8c643d4d4044085724196504eea0e2bef2daecb7f39ea3d732f58998954346d086ea9bae8f82af8d960ff986ec",
    "a578d8c55ca57fa16796dc4ccc4e3d66741a043cbf1d6406948e74454f090c41ce69a164d52ce4cfa27ff42c1ba3ea996a123808b42745e9",
    "08406381b28e1b608dc5fbbba25bd058a5deb568f16d8e1bce0efd59185132ce",
    );

    type CipherFn = fn(&RustCrypto, &[u8], &[u8], &[u8], &mut [u8]) -> Result<usize, CryptoError>;

    fn run_cipher(op: CipherFn, key: &[u8], iv: &[u8], input: &[u8]) -> Vec<u8> {
        let mut output = vec![0; input.len()];
        assert_eq!(op(&RustCrypto, key, iv, input, &mut output).unwrap(), input.len());
        output
    }

    #[test]
    fn aes_256_cbc_nist_f_2_5() {
        let (key, iv) = (hex(NIST_KEY), hex("000102030405060708090a0b0c0d0e0f"));
        let ciphertext = hex(concat!(
            "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d",
            "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
        ));
        assert_eq!(run_cipher(RustCrypto::aes_256_cbc_encrypt, &key, &iv, &hex(NIST_PLAINTEXT)), ciphertext);
        assert_eq!(run_cipher(RustCrypto::aes_256_cbc_decrypt, &key, &iv, &ciphertext), hex(NIST_PLAINTEXT));
    }

    #[test]
    fn aes_256_ctr_nist_f_5_5() {
        let (key, counter) = (hex(NIST_KEY), hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"));
        let ciphertext = hex(concat!(
            "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5",
            "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6",
        ));
        assert_eq!(run_cipher(RustCrypto::aes_256_ctr_encrypt, &key, &counter, &hex(NIST_PLAINTEXT)), ciphertext);
        assert_eq!(run_cipher(RustCrypto::aes_256_ctr_decrypt, &key, &counter, &ciphertext), hex(NIST_PLAINTEXT));
        // A stream cipher: a partial block works too.
        assert_eq!(
            run_cipher(RustCrypto::aes_256_ctr_encrypt, &key, &counter, &hex(NIST_PLAINTEXT)[..5]),
            ciphertext[..5]
        );
    }

    #[test]
    fn aes_256_ctr_counter_wraps_across_all_128_bits() {
        // Expected from `openssl enc -aes-256-ctr -iv ffff...ff` over 32 zero bytes: after the all-ones block the
        // counter wraps to zero, as libmongocrypt's ECB-based CTR does too.
        let keystream = run_cipher(RustCrypto::aes_256_ctr_encrypt, &hex(NIST_KEY), &[0xff; 16], &[0; 32]);
        assert_eq!(keystream, hex("3b3c2921c85a24de9ac606ce6d1d60cce568f68194cf76d6174d4cc04310a854"));
    }

    #[test]
    fn aes_256_ecb_nist_f_1_5() {
        let ciphertext = hex(concat!(
            "f3eed1bdb5d2a03c064b5a7e3db181f8591ccb10d410ed26dc5ba74a31362870",
            "b6ed21b99ca6f4f9f153e7b1beafed1d23304b7a39f9f3ff067d8d8f9e24ecc7",
        ));
        let mut output = [0; 64];
        assert_eq!(RustCrypto.aes_256_ecb_encrypt(&hex(NIST_KEY), &hex(NIST_PLAINTEXT), &mut output).unwrap(), 64);
        assert_eq!(output.to_vec(), ciphertext);
    }

    #[test]
    fn hmac_rfc_4231_test_case_2() {
        let (key, data) = (b"Jefe", b"what do ya want for nothing?");
        let mut output = [0; 64];
        RustCrypto.hmac_sha_512(key, data, &mut output).unwrap();
        let expected = concat!(
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554",
            "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        );
        assert_eq!(output.to_vec(), hex(expected));
        let mut output = [0; 32];
        RustCrypto.hmac_sha_256(key, data, &mut output).unwrap();
        assert_eq!(output.to_vec(), hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
    }

    /// RFC 4231's test cases 1, 3, 4, 6 and 7 (case 2 is `hmac_rfc_4231_test_case_2`; case 5 is a truncated tag):
    /// the key, the data, and the HMAC-SHA-256 and HMAC-SHA-512 tags.
    #[test]
    fn hmac_rfc_4231_test_cases() {
        let long_key = [0xaa; 131];
        let cases: [(&[u8], Vec<u8>, &str, &str); 5] = [
            (
                &[0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
                 daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            ),
            (
                &[0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
                "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39\
                 bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
            ),
            (
                &hex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
                "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db\
                 a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
            ),
            (
                &long_key,
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
                "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
                 6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
            ),
            (
                &long_key,
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs \
                  to be hashed before being used by the HMAC algorithm."
                    .to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
                "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944\
                 b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
            ),
        ];
        for (i, (key, data, sha_256, sha_512)) in cases.into_iter().enumerate() {
            let (mut tag_256, mut tag_512) = ([0; 32], [0; 64]);
            RustCrypto.hmac_sha_256(key, &data, &mut tag_256).unwrap();
            RustCrypto.hmac_sha_512(key, &data, &mut tag_512).unwrap();
            assert_eq!(tag_256.to_vec(), hex(sha_256), "case {i}");
            assert_eq!(tag_512.to_vec(), hex(&sha_512.replace(' ', "")), "case {i}");
        }
    }

    /// Deterministic bytes (xorshift64).
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// The provider's HMACs and SHA-256 against the `hmac` and `sha2` crates, an implementation independent of
    /// ring's, at every input length around SHA-256's 64-byte and SHA-512's 128-byte blocks and their padding, and
    /// at key lengths on both sides of each block (a longer key is hashed first).
    #[test]
    fn hmacs_and_sha_256_equal_the_hmac_and_sha2_crates() {
        use hmac::{Hmac, Mac};
        use sha2::{Digest, Sha256, Sha512};

        let data = bytes(3 * 128 + 40, 7);
        for key_len in [0, 1, 32, 63, 64, 65, 111, 112, 127, 128, 129, 300] {
            let key = bytes(key_len, 11 + key_len as u64);
            for len in 0..=data.len() {
                let input = &data[..len];
                let (mut tag_512, mut tag_256) = ([0; 64], [0; 32]);
                RustCrypto.hmac_sha_512(&key, input, &mut tag_512).unwrap();
                RustCrypto.hmac_sha_256(&key, input, &mut tag_256).unwrap();
                let mut expected_512 = <Hmac<Sha512> as Mac>::new_from_slice(&key).unwrap();
                expected_512.update(input);
                let mut expected_256 = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
                expected_256.update(input);
                assert_eq!(tag_512[..], expected_512.finalize().into_bytes()[..], "key {key_len}, input {len}");
                assert_eq!(tag_256[..], expected_256.finalize().into_bytes()[..], "key {key_len}, input {len}");
            }
        }
        let large = bytes((1 << 20) + 77, 3);
        let key = bytes(32, 5);
        for len in [1 << 16, (1 << 16) + 1, (1 << 16) + 200, (1 << 20) + 77] {
            let (mut tag, mut digest) = ([0; 64], [0; 32]);
            RustCrypto.hmac_sha_512(&key, &large[..len], &mut tag).unwrap();
            RustCrypto.sha_256(&large[..len], &mut digest).unwrap();
            let mut expected = <Hmac<Sha512> as Mac>::new_from_slice(&key).unwrap();
            expected.update(&large[..len]);
            assert_eq!(tag[..], expected.finalize().into_bytes()[..], "input {len}");
            assert_eq!(digest[..], Sha256::digest(&large[..len])[..], "input {len}");
        }
    }

    type UninitCipherFn = fn(&RustCrypto, &[u8], &[u8], &[u8], &mut CipherOutput<'_>) -> Result<usize, CryptoError>;

    /// Runs one of the `_uninit` CBC methods into a fresh uninitialised buffer of `input`'s length.
    fn run_cbc_uninit(op: UninitCipherFn, key: &[u8], iv: &[u8], input: &[u8]) -> Vec<u8> {
        let mut buffer = vec![MaybeUninit::uninit(); input.len()];
        let mut output = CipherOutput::new(&mut buffer);
        assert_eq!(op(&RustCrypto, key, iv, input, &mut output).unwrap(), input.len());
        output.written().to_vec()
    }

    #[test]
    fn aes_256_cbc_uninit_nist_f_2_5() {
        let (key, iv) = (hex(NIST_KEY), hex("000102030405060708090a0b0c0d0e0f"));
        let ciphertext = hex(concat!(
            "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d",
            "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
        ));
        assert_eq!(run_cbc_uninit(RustCrypto::aes_256_cbc_encrypt_uninit, &key, &iv, &hex(NIST_PLAINTEXT)), ciphertext);
        assert_eq!(run_cbc_uninit(RustCrypto::aes_256_cbc_decrypt_uninit, &key, &iv, &ciphertext), hex(NIST_PLAINTEXT));
    }

    /// CBC over inputs that cross the 1 KiB stack buffer of the `_uninit` path: each ciphertext block is the
    /// NIST-checked ECB encryption of its plaintext block XORed with the previous ciphertext block (SP 800-38A 6.2),
    /// the slice methods agree, and decryption inverts it.
    #[test]
    fn aes_256_cbc_chains_across_the_stack_buffer() {
        let (key, iv) = (bytes(32, 1), bytes(16, 2));
        for blocks in [0, 1, 63, 64, 65, 128, 200] {
            let input = bytes(16 * blocks, 3 + blocks as u64);
            let ciphertext = run_cbc_uninit(RustCrypto::aes_256_cbc_encrypt_uninit, &key, &iv, &input);
            let mut previous = iv.clone();
            for (plain, cipher) in input.chunks(16).zip(ciphertext.chunks(16)) {
                let xored: Vec<u8> = plain.iter().zip(&previous).map(|(p, c)| p ^ c).collect();
                let mut expected = [0; 16];
                RustCrypto.aes_256_ecb_encrypt(&key, &xored, &mut expected).unwrap();
                assert_eq!(cipher, expected, "{blocks} blocks");
                previous = cipher.to_vec();
            }
            assert_eq!(run_cipher(RustCrypto::aes_256_cbc_encrypt, &key, &iv, &input), ciphertext, "{blocks} blocks");
            assert_eq!(run_cbc_uninit(RustCrypto::aes_256_cbc_decrypt_uninit, &key, &iv, &ciphertext), input);
            assert_eq!(run_cipher(RustCrypto::aes_256_cbc_decrypt, &key, &iv, &ciphertext), input);
        }
    }

    #[test]
    fn sha_256_of_abc() {
        let mut output = [0; 32];
        RustCrypto.sha_256(b"abc", &mut output).unwrap();
        assert_eq!(output.to_vec(), hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    }

    #[test]
    fn random_fills_different_bytes_each_call() {
        let (mut first, mut second) = ([0; 32], [0; 32]);
        RustCrypto.random(&mut first).unwrap();
        RustCrypto.random(&mut second).unwrap();
        assert_ne!(first, second);
        assert_ne!(first, [0; 32]);
    }

    #[test]
    fn rsa_signature_verifies_and_matches_openssl() {
        let private_key = hex(RSA_PKCS8);
        let mut signature = [0; 256];
        RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(&private_key, b"abc", &mut signature).unwrap();
        let public_key = RsaKeyPair::from_pkcs8(&private_key).unwrap().public_key().as_ref().to_vec();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key).verify(b"abc", &signature).unwrap();
        assert_eq!(signature.to_vec(), hex(RSA_SIGNATURE_OF_ABC));
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let (key, iv, block) = ([0; 32], [0; 16], [0; 16]);
        let mut output = [0; 32];
        let cases = [
            (RustCrypto.aes_256_cbc_encrypt(&key[..31], &iv, &block, &mut output), "AES-256 key must be 32 bytes"),
            (RustCrypto.aes_256_cbc_decrypt(&key, &iv[..15], &block, &mut output), "IV must be 16 bytes"),
            (RustCrypto.aes_256_ctr_encrypt(&[0; 33], &iv, &block, &mut output), "AES-256 key must be 32 bytes"),
            (RustCrypto.aes_256_ctr_decrypt(&key, &[], &block, &mut output), "IV must be 16 bytes"),
            (RustCrypto.aes_256_ecb_encrypt(&[], &block, &mut output), "AES-256 key must be 32 bytes"),
            (RustCrypto.aes_256_cbc_encrypt(&key, &iv, &block[..15], &mut output), "not a multiple"),
            (RustCrypto.aes_256_ecb_encrypt(&key, &[0; 17], &mut output), "not a multiple"),
        ];
        for (result, message) in cases {
            assert!(result.unwrap_err().to_string().contains(message), "expected {message:?}");
        }
        let error = RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(b"not a key", b"abc", &mut [0; 256]).unwrap_err();
        assert!(error.to_string().contains("invalid PKCS#8 RSA private key"), "{error}");
        // A signature shorter than the buffer libmongocrypt sends whole would go out zero-padded.
        let error = RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(&hex(RSA_PKCS8), b"abc", &mut [0; 300]).unwrap_err();
        let expected = "a 2048-bit RSA key makes 256-byte signatures; libmongocrypt expects 300 bytes";
        assert_eq!(error.to_string(), expected);
    }

    #[test]
    fn too_small_outputs_are_errors() {
        let (key, iv, input) = ([0; 32], [0; 16], [0; 32]);
        let mut output = [0; 31];
        let results = [
            RustCrypto.aes_256_cbc_encrypt(&key, &iv, &input, &mut output).map(drop),
            RustCrypto.aes_256_cbc_decrypt(&key, &iv, &input, &mut output).map(drop),
            RustCrypto.aes_256_ctr_encrypt(&key, &iv, &input, &mut output).map(drop),
            RustCrypto.aes_256_ctr_decrypt(&key, &iv, &input, &mut output).map(drop),
            RustCrypto.aes_256_ecb_encrypt(&key, &input, &mut output).map(drop),
            RustCrypto.hmac_sha_512(&key, &input, &mut [0; 63]),
            RustCrypto.hmac_sha_256(&key, &input, &mut output),
            RustCrypto.sha_256(&input, &mut output),
            RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(&hex(RSA_PKCS8), &input, &mut [0; 255]),
        ];
        for result in results {
            assert!(result.unwrap_err().to_string().contains("output buffer too small"));
        }
    }

    /// A provider whose every method panics, to check that no panic reaches C.
    struct Panicking;

    impl CryptoProvider for Panicking {
        fn aes_256_cbc_encrypt(&self, _: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> Result<usize, CryptoError> {
            panic!("provider exploded")
        }
        fn aes_256_cbc_decrypt(&self, _: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> Result<usize, CryptoError> {
            panic!("provider exploded")
        }
        fn aes_256_ctr_encrypt(&self, _: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> Result<usize, CryptoError> {
            panic!("provider exploded")
        }
        fn aes_256_ctr_decrypt(&self, _: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> Result<usize, CryptoError> {
            panic!("provider exploded")
        }
        fn aes_256_ecb_encrypt(&self, _: &[u8], _: &[u8], _: &mut [u8]) -> Result<usize, CryptoError> {
            panic!("provider exploded")
        }
        fn hmac_sha_512(&self, _: &[u8], _: &[u8], _: &mut [u8]) -> Result<(), CryptoError> {
            panic!("provider exploded")
        }
        fn hmac_sha_256(&self, _: &[u8], _: &[u8], _: &mut [u8]) -> Result<(), CryptoError> {
            panic!("provider exploded")
        }
        fn sha_256(&self, _: &[u8], _: &mut [u8]) -> Result<(), CryptoError> {
            panic!("provider exploded")
        }
        fn random(&self, _: &mut [u8]) -> Result<(), CryptoError> {
            panic!("provider exploded")
        }
        fn sign_rsassa_pkcs1_v1_5_sha256(&self, _: &[u8], _: &[u8], _: &mut [u8]) -> Result<(), CryptoError> {
            panic!("provider exploded")
        }
    }

    /// A `mongocrypt_binary_t` over a test-owned buffer, like those libmongocrypt passes to hooks.
    struct TestBinary {
        data: Vec<u8>,
        raw: *mut sys::mongocrypt_binary_t,
    }

    impl TestBinary {
        fn new(mut data: Vec<u8>) -> TestBinary {
            // SAFETY: mongocrypt_binary_new_from_data views `data` without copying; the heap buffer does not move
            // when the Vec does, and Drop destroys the binary before the Vec frees it.
            let raw = unsafe { sys::mongocrypt_binary_new_from_data(data.as_mut_ptr(), data.len() as u32) };
            TestBinary { data, raw }
        }
    }

    impl Drop for TestBinary {
        fn drop(&mut self) {
            // SAFETY: created by mongocrypt_binary_new_from_data and destroyed once; this does not free the data.
            unsafe { sys::mongocrypt_binary_destroy(self.raw) }
        }
    }

    /// Calls the AES-256-CBC encrypt trampoline as libmongocrypt would, with `provider` installed.
    fn call_cbc_encrypt_hook(provider: Arc<dyn CryptoProvider>, key_len: usize) -> (bool, u32, Vec<u8>, Status) {
        let hooks = InstalledHooks(Box::new(provider));
        let (key, iv) = (TestBinary::new(hex(NIST_KEY)[..key_len].to_vec()), TestBinary::new(vec![0; 16]));
        // Stale bytes in the output, as in libmongocrypt's uninitialised allocations.
        let (input, out) = (TestBinary::new(hex(NIST_PLAINTEXT)), TestBinary::new(vec![0xaa; 64]));
        let (status, mut bytes_written) = (Status::new(), 0);
        // SAFETY: the arguments are live binaries and a status, and `ctx` comes from a live InstalledHooks, as
        // when libmongocrypt calls the hook.
        let ok = unsafe {
            aes_256_cbc_encrypt_hook(
                hooks.context(),
                key.raw,
                iv.raw,
                input.raw,
                out.raw,
                &mut bytes_written,
                status.as_ptr(),
            )
        };
        (ok, bytes_written, out.data.clone(), status)
    }

    #[test]
    fn cipher_trampoline_writes_output_and_bytes_written() {
        let (ok, bytes_written, output, status) = call_cbc_encrypt_hook(Arc::new(RustCrypto), 32);
        assert!(ok);
        status.to_result().unwrap();
        assert_eq!(bytes_written, 64);
        let expected = run_cipher(RustCrypto::aes_256_cbc_encrypt, &hex(NIST_KEY), &[0; 16], &hex(NIST_PLAINTEXT));
        assert_eq!(output, expected);
    }

    #[test]
    fn cipher_trampoline_rejects_a_short_key() {
        let (ok, _, _, status) = call_cbc_encrypt_hook(Arc::new(RustCrypto), 16);
        assert!(!ok);
        let message = status.to_result().unwrap_err().message();
        assert!(message.contains("aes_256_cbc_encrypt failed: AES-256 key must be 32 bytes, got 16"), "{message}");
    }

    #[test]
    fn trampolines_turn_panics_into_error_statuses() {
        let (ok, _, _, status) = call_cbc_encrypt_hook(Arc::new(Panicking), 32);
        assert!(!ok);
        let message = status.to_result().unwrap_err().message();
        assert!(message.contains("aes_256_cbc_encrypt panicked: provider exploded"), "{message}");

        let hooks = InstalledHooks(Box::new(Arc::new(Panicking)));
        let (key, input, out) =
            (TestBinary::new(vec![0; 32]), TestBinary::new(vec![1; 8]), TestBinary::new(vec![0; 64]));
        let statuses = [Status::new(), Status::new(), Status::new()];
        let ctx = hooks.context();
        // SAFETY: live binaries and statuses, and `ctx` from a live InstalledHooks, as when libmongocrypt calls the
        // hooks.
        let results = unsafe {
            [
                hmac_sha_512_hook(ctx, key.raw, input.raw, out.raw, statuses[0].as_ptr()),
                sha_256_hook(ctx, input.raw, out.raw, statuses[1].as_ptr()),
                random_hook(ctx, out.raw, 32, statuses[2].as_ptr()),
            ]
        };
        for ((ok, status), hook) in results.into_iter().zip(&statuses).zip(["hmac_sha_512", "sha_256", "random"]) {
            assert!(!ok);
            let message = status.to_result().unwrap_err().message();
            assert!(message.contains(&format!("{hook} panicked: provider exploded")), "{message}");
        }
    }

    /// [`RustCrypto`], except that every method first fails unless its whole output buffer is zeros, and the ciphers
    /// report `reported` bytes written when it is set.
    struct Peeking {
        reported: Option<usize>,
    }

    fn zeros(output: &[u8]) -> Result<(), CryptoError> {
        match output.iter().position(|&b| b != 0) {
            Some(at) => Err(CryptoError::new(format!("output byte {at} of {} is not zero", output.len()))),
            None => Ok(()),
        }
    }

    impl CryptoProvider for Peeking {
        fn aes_256_cbc_encrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
            zeros(o)?;
            Ok(self.reported.unwrap_or(RustCrypto.aes_256_cbc_encrypt(k, iv, i, o)?))
        }
        fn aes_256_cbc_decrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
            zeros(o)?;
            Ok(self.reported.unwrap_or(RustCrypto.aes_256_cbc_decrypt(k, iv, i, o)?))
        }
        fn aes_256_ctr_encrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
            zeros(o)?;
            Ok(self.reported.unwrap_or(RustCrypto.aes_256_ctr_encrypt(k, iv, i, o)?))
        }
        fn aes_256_ctr_decrypt(&self, k: &[u8], iv: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
            zeros(o)?;
            Ok(self.reported.unwrap_or(RustCrypto.aes_256_ctr_decrypt(k, iv, i, o)?))
        }
        fn aes_256_ecb_encrypt(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<usize, CryptoError> {
            zeros(o)?;
            Ok(self.reported.unwrap_or(RustCrypto.aes_256_ecb_encrypt(k, i, o)?))
        }
        fn hmac_sha_512(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
            zeros(o)?;
            RustCrypto.hmac_sha_512(k, i, o)
        }
        fn hmac_sha_256(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
            zeros(o)?;
            RustCrypto.hmac_sha_256(k, i, o)
        }
        fn sha_256(&self, i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
            zeros(o)?;
            RustCrypto.sha_256(i, o)
        }
        fn random(&self, o: &mut [u8]) -> Result<(), CryptoError> {
            zeros(o)?;
            RustCrypto.random(o)
        }
        fn sign_rsassa_pkcs1_v1_5_sha256(&self, k: &[u8], i: &[u8], o: &mut [u8]) -> Result<(), CryptoError> {
            zeros(o)?;
            RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(k, i, o)
        }
    }

    #[test]
    fn trampolines_zero_the_output_and_hand_over_exactly_its_length() {
        // Output buffers full of stale bytes (0xaa), as libmongocrypt's uninitialised allocations may be.
        let (ok, bytes_written, output, status) = call_cbc_encrypt_hook(Arc::new(Peeking { reported: None }), 32);
        status.to_result().unwrap();
        assert!(ok);
        assert_eq!(bytes_written, 64);
        assert_eq!(output, run_cipher(RustCrypto::aes_256_cbc_encrypt, &hex(NIST_KEY), &[0; 16], &hex(NIST_PLAINTEXT)));

        let hooks = InstalledHooks(Box::new(Arc::new(Peeking { reported: None })));
        let (key, input) = (TestBinary::new(vec![0; 32]), TestBinary::new(b"abc".to_vec()));
        let outs = [0, 1, 2, 3].map(|_| TestBinary::new(vec![0xaa; 80]));
        let statuses = [Status::new(), Status::new(), Status::new(), Status::new()];
        let ctx = hooks.context();
        // SAFETY: live binaries and statuses, and `ctx` from a live InstalledHooks, as when libmongocrypt calls the
        // hooks.
        let results = unsafe {
            [
                hmac_sha_512_hook(ctx, key.raw, input.raw, outs[0].raw, statuses[0].as_ptr()),
                hmac_sha_256_hook(ctx, key.raw, input.raw, outs[1].raw, statuses[1].as_ptr()),
                sha_256_hook(ctx, input.raw, outs[2].raw, statuses[2].as_ptr()),
                random_hook(ctx, outs[3].raw, 48, statuses[3].as_ptr()),
            ]
        };
        for (i, (ok, status)) in results.into_iter().zip(&statuses).enumerate() {
            status.to_result().unwrap_or_else(|e| panic!("hook {i}: {e}"));
            assert!(ok);
        }
        // Each provider wrote exactly its primitive's length; the rest of libmongocrypt's buffer is zeroed too.
        for (out, len) in outs.iter().zip([64, 32, 32, 48]) {
            assert!(out.data[..len].iter().any(|&b| b != 0));
            assert_eq!(out.data[len..], vec![0; 80 - len]);
        }
        assert_eq!(outs[2].data[..32], hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    }

    #[test]
    fn cipher_trampolines_refuse_any_count_but_the_input_length() {
        for reported in [0, 1, 63, 65, u32::MAX as usize + 64] {
            let (ok, bytes_written, _, status) =
                call_cbc_encrypt_hook(Arc::new(Peeking { reported: Some(reported) }), 32);
            assert!(!ok);
            assert_eq!(bytes_written, 0, "no count reaches libmongocrypt");
            let message = status.to_result().unwrap_err().message();
            let expected = format!(
                "aes_256_cbc_encrypt failed: provider reported {reported} bytes written; the output of this cipher is \
                 exactly as long as its input, 64 bytes"
            );
            assert_eq!(message, expected);
        }
    }

    #[test]
    fn hmac_and_hash_trampolines_refuse_short_buffers() {
        let hooks = InstalledHooks(Box::new(Arc::new(RustCrypto)));
        let (key, input) = (TestBinary::new(vec![0; 32]), TestBinary::new(b"abc".to_vec()));
        let (short64, short32) = (TestBinary::new(vec![0; 63]), TestBinary::new(vec![0; 31]));
        let statuses = [Status::new(), Status::new()];
        // SAFETY: live binaries and statuses, and `ctx` from a live InstalledHooks.
        let results = unsafe {
            [
                hmac_sha_512_hook(hooks.context(), key.raw, input.raw, short64.raw, statuses[0].as_ptr()),
                sha_256_hook(hooks.context(), input.raw, short32.raw, statuses[1].as_ptr()),
            ]
        };
        for ((ok, status), needed) in results.into_iter().zip(&statuses).zip([64, 32]) {
            assert!(!ok);
            let message = status.to_result().unwrap_err().message();
            assert!(message.contains(&format!("output buffer too small: need {needed} bytes")), "{message}");
        }
    }

    /// A panic payload whose `Drop` panics.
    struct DropBomb;

    impl Drop for DropBomb {
        fn drop(&mut self) {
            panic!("the payload's Drop exploded");
        }
    }

    /// A panic payload whose `Drop` panics with a [`DropBomb`] payload.
    struct DoubleBomb;

    impl Drop for DoubleBomb {
        fn drop(&mut self) {
            std::panic::panic_any(DropBomb);
        }
    }

    /// A panic payload whose `Drop` panics with another `Endless` payload, every time.
    struct Endless;

    impl Drop for Endless {
        fn drop(&mut self) {
            std::panic::panic_any(Endless);
        }
    }

    #[test]
    fn payloads_whose_drop_panics_are_contained() {
        drop_panic_payload(Box::new(DropBomb));
        // The second panic's payload panics on drop as well, and is dropped in turn.
        drop_panic_payload(Box::new(DoubleBomb));
        // Payloads that never stop panicking: after a few, the last is leaked (a zero-sized one here, so valgrind
        // sees no leak).
        drop_panic_payload(Box::new(Endless));
        let status = Status::new();
        // SAFETY: `status` is live.
        let ok = unsafe { run_hook("random", status.as_ptr(), || std::panic::panic_any(DropBomb)) };
        assert!(!ok);
        assert!(status.to_result().unwrap_err().message().contains("random panicked: non-string panic payload"));
    }

    /// Creates a data key under a local master key on a real `mongocrypt_t` whose crypto hooks are `provider`.
    fn create_local_data_key(provider: Arc<dyn CryptoProvider>) -> error::Result<()> {
        let master_key = TestBinary::new(vec![7; 96]);
        let (out, status) = (BinaryOut::new(), Status::new());
        // SAFETY: the calls follow mongocrypt.h's order (hooks and options before mongocrypt_init, ctx options
        // before datakey_init), and `hooks` is dropped after mongocrypt_destroy.
        unsafe {
            let crypt = sys::mongocrypt_new();
            let hooks = install(crypt, provider)?;
            assert!(sys::mongocrypt_setopt_kms_provider_local(crypt, master_key.raw));
            assert!(sys::mongocrypt_init(crypt));
            let ctx = sys::mongocrypt_ctx_new(crypt);
            assert!(sys::mongocrypt_ctx_setopt_masterkey_local(ctx));
            let created = sys::mongocrypt_ctx_datakey_init(ctx) && sys::mongocrypt_ctx_finalize(ctx, out.as_ptr());
            sys::mongocrypt_ctx_status(ctx, status.as_ptr());
            sys::mongocrypt_ctx_destroy(ctx);
            sys::mongocrypt_destroy(crypt);
            drop(hooks);
            assert_eq!(created, status.to_result().is_ok());
        }
        status.to_result()
    }

    #[test]
    fn libmongocrypt_uses_the_installed_provider() {
        create_local_data_key(Arc::new(RustCrypto)).unwrap();
        let message = create_local_data_key(Arc::new(Panicking)).unwrap_err().message();
        assert!(message.contains("panicked: provider exploded"), "{message}");
    }

    #[test]
    fn install_reports_libmongocrypt_errors() {
        // SAFETY: `crypt` is fresh and never initialized; both InstalledHooks are dropped after mongocrypt_destroy.
        unsafe {
            let crypt = sys::mongocrypt_new();
            let first = install(crypt, Arc::new(RustCrypto)).unwrap();
            // libmongocrypt refuses a second signature hook.
            let second = install(crypt, Arc::new(RustCrypto));
            sys::mongocrypt_destroy(crypt);
            drop(first);
            assert!(second.unwrap_err().message().contains("signature hook already set"));
        }
    }
}
