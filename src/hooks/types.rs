//! What a provider reports and writes into: [`CryptoError`], [`CipherOutput`] over libmongocrypt's uninitialised
//! output, and the length checks shared by the primitives and the trampolines.

use std::fmt;
use std::mem::MaybeUninit;

use crate::ffi::zeroed;

/// AES-256 key length.
pub(super) const AES_256_KEY_LEN: usize = 32;
/// AES block length, which is also the CBC IV and CTR initial counter block length.
pub(super) const AES_BLOCK_LEN: usize = 16;
/// SHA-256 digest length, which is also the HMAC-SHA-256 length.
pub(super) const SHA_256_LEN: usize = 32;
/// HMAC-SHA-512 length.
pub(super) const HMAC_SHA_512_LEN: usize = 64;

/// A failure of a [`CryptoProvider`](super::CryptoProvider); libmongocrypt receives its message as a client error.
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

/// `bytes` as an `N`-byte array, or an error naming `what` and the actual length.
pub(super) fn fixed<'a, const N: usize>(what: &str, bytes: &'a [u8]) -> Result<&'a [u8; N], CryptoError> {
    bytes.try_into().map_err(|_| CryptoError::new(format!("{what} must be {N} bytes, got {}", bytes.len())))
}

/// The first `len` bytes of `output`, or an error if it is shorter.
pub(super) fn output_prefix<T>(output: &mut [T], len: usize) -> Result<&mut [T], CryptoError> {
    let available = output.len();
    output
        .get_mut(..len)
        .ok_or_else(|| CryptoError::new(format!("output buffer too small: need {len} bytes, have {available}")))
}
