//! The `extern "C"` side: [`install`] registers a provider's methods as libmongocrypt's crypto hooks through
//! trampolines that check every length, and turn errors and panics into a failed status, so nothing unwinds into C.

use std::ffi::c_void;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use libmongocrypt_sys as sys;

use super::provider::CryptoProvider;
use super::types::{
    fixed, output_prefix, CipherOutput, CryptoError, AES_256_KEY_LEN, AES_BLOCK_LEN, HMAC_SHA_512_LEN, SHA_256_LEN,
};
use crate::error::{self, Error};
use crate::ffi::{drop_panic_payload, panic_message, CallbackBinary, Status};

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
    use super::*;
    use crate::binary::BinaryOut;
    use crate::hooks::tests::{hex, run_cipher, NIST_KEY, NIST_PLAINTEXT};
    use crate::hooks::RustCrypto;

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
