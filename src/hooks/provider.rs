//! The provider API: [`CryptoProvider`], whose every method defaults to the built-in primitives, and
//! [`RustCrypto`], the provider that takes them all.

use std::sync::Arc;

use super::rust_crypto;
use super::types::{CipherOutput, CryptoError};

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
        rust_crypto::aes_256_cbc_encrypt(key, iv, input, output)
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
        rust_crypto::aes_256_cbc_decrypt(key, iv, input, output)
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
        rust_crypto::aes_256_ctr_encrypt(key, iv, input, output)
    }

    /// AES-256-CTR decryption; the same keystream operation as [`CryptoProvider::aes_256_ctr_encrypt`].
    fn aes_256_ctr_decrypt(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        rust_crypto::aes_256_ctr_decrypt(key, iv, input, output)
    }

    /// AES-256-ECB encryption of whole blocks, without padding.
    ///
    /// libmongocrypt only uses it to build CTR mode when no CTR hook is set, one 16-byte counter block at a time,
    /// so it is unused in practice: this crate always sets the CTR hooks too. `key` is 32 bytes, `input` a
    /// multiple of 16 bytes and `output` at least `input.len()` bytes. Returns the number of bytes written,
    /// `input.len()`.
    fn aes_256_ecb_encrypt(&self, key: &[u8], input: &[u8], output: &mut [u8]) -> Result<usize, CryptoError> {
        rust_crypto::aes_256_ecb_encrypt(key, input, output)
    }

    /// HMAC-SHA-512 of `input` under `key` (libmongocrypt passes a 32-byte key), written to the first 64 bytes of
    /// `output`.
    fn hmac_sha_512(&self, key: &[u8], input: &[u8], output: &mut [u8]) -> Result<(), CryptoError> {
        rust_crypto::hmac_sha_512(key, input, output)
    }

    /// HMAC-SHA-256 of `input` under `key` (libmongocrypt passes a 32-byte key), written to the first 32 bytes of
    /// `output`.
    fn hmac_sha_256(&self, key: &[u8], input: &[u8], output: &mut [u8]) -> Result<(), CryptoError> {
        rust_crypto::hmac_sha_256(key, input, output)
    }

    /// SHA-256 of `input`, written to the first 32 bytes of `output`.
    fn sha_256(&self, input: &[u8], output: &mut [u8]) -> Result<(), CryptoError> {
        rust_crypto::sha_256(input, output)
    }

    /// Fills all of `output` with cryptographically secure random bytes; libmongocrypt sizes it to the count it
    /// requests.
    fn random(&self, output: &mut [u8]) -> Result<(), CryptoError> {
        rust_crypto::random(output)
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
        rust_crypto::sign_rsassa_pkcs1_v1_5_sha256(private_key, input, output)
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

/// A [`CryptoProvider`] built on the RustCrypto crates for AES (`aes`, with AES-NI where the CPU has it, `cbc`,
/// `ctr`, `ecb`), `ring` for SHA-256, HMAC-SHA-256, HMAC-SHA-512 and RSA signatures, and `getrandom` for
/// randomness. No primitive is written in this crate.
///
/// AES keys are used in place, never copied; the AES key schedules are wiped when dropped (the `aes` crate's
/// `zeroize` feature); ring's HMAC key states are not (ring offers no way to wipe them).
#[derive(Debug, Clone, Copy, Default)]
pub struct RustCrypto;

// Every method but these two is the trait's default, the built-in primitive: these write straight into
// libmongocrypt's uninitialised buffer instead of the default's zeroing first.
impl CryptoProvider for RustCrypto {
    fn aes_256_cbc_encrypt_uninit(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut CipherOutput<'_>,
    ) -> Result<usize, CryptoError> {
        rust_crypto::aes_256_cbc_encrypt_uninit(key, iv, input, output)
    }

    fn aes_256_cbc_decrypt_uninit(
        &self,
        key: &[u8],
        iv: &[u8],
        input: &[u8],
        output: &mut CipherOutput<'_>,
    ) -> Result<usize, CryptoError> {
        rust_crypto::aes_256_cbc_decrypt_uninit(key, iv, input, output)
    }
}
