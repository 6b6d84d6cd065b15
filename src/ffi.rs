//! The FFI helpers every layer above shares: the owned `mongocrypt_status_t`, views of the binaries libmongocrypt
//! hands to callbacks, uninitialised output made safe, and the disposal of caught panics. It sits at the bottom
//! (it needs only [`crate::error`]), so the layers above never import each other for these.

use std::any::Any;
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use libmongocrypt_sys as sys;

use crate::error::{cut_message, Error, Result, MAX_ERROR_MESSAGE_LEN};

/// An owned `mongocrypt_status_t`.
pub(crate) struct Status(NonNull<sys::mongocrypt_status_t>);

impl Status {
    pub(crate) fn new() -> Status {
        // SAFETY: mongocrypt_status_new has no preconditions; it returns a fresh status that we destroy in Drop
        // ("When done, destroy it with mongocrypt_status_destroy").
        let raw = unsafe { sys::mongocrypt_status_new() };
        Status(NonNull::new(raw).expect("mongocrypt_status_new returned NULL (out of memory)"))
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::mongocrypt_status_t {
        self.0.as_ptr()
    }

    /// The error this status holds, or `Ok` if it is an ok status.
    pub(crate) fn to_result(&self) -> Result<()> {
        let raw = self.as_ptr();
        // SAFETY: `raw` is a live status owned by self; status_ok/type/code only read it.
        let (ok, kind, code) = unsafe {
            (sys::mongocrypt_status_ok(raw), sys::mongocrypt_status_type(raw), sys::mongocrypt_status_code(raw))
        };
        if ok {
            return Ok(());
        }
        let message = message_of(raw);
        Err(match kind {
            sys::MONGOCRYPT_STATUS_ERROR_KMS => Error::Kms { code, message },
            sys::MONGOCRYPT_STATUS_ERROR_CRYPT_SHARED => Error::CryptShared { code, message },
            _ => Error::Client { code, message },
        })
    }

    /// Sets a client error on a status libmongocrypt handed to a callback.
    ///
    /// # Safety
    /// `raw` must be a live status or NULL (hooks receive "an optional status").
    pub(crate) unsafe fn set_client_error(raw: *mut sys::mongocrypt_status_t, message: &str) {
        if raw.is_null() {
            return;
        }
        let mut bytes = message.replace('\0', " ").into_bytes();
        bytes.push(0);
        let Ok(len) = i32::try_from(bytes.len()) else { return };
        // SAFETY: the caller guarantees `raw` is live; mongocrypt_status_set copies the message. Its length is
        // "1 + the string length of message", which is `bytes.len()` with the NUL we appended.
        unsafe { sys::mongocrypt_status_set(raw, sys::MONGOCRYPT_STATUS_ERROR_CLIENT, 1, bytes.as_ptr().cast(), len) };
    }
}

/// The message of the error status `raw`, cut to [`MAX_ERROR_MESSAGE_LEN`]: libmongocrypt quotes peers' bytes in its
/// messages (a whole unparsable KMS reply body, megabytes of it), so only the kept start is read and copied, and the
/// full length is taken from `mongocrypt_status_message`'s `len`.
fn message_of(raw: *mut sys::mongocrypt_status_t) -> String {
    let mut len = 0u32;
    // SAFETY: `raw` is a live status (the caller's); mongocrypt_status_message only reads it and returns "a NULL
    // terminated error message or NULL", owned by the status, with `len` "the length of the returned string
    // (excluding the trailing NULL byte)".
    let ptr = unsafe { sys::mongocrypt_status_message(raw, &mut len) };
    if ptr.is_null() {
        return String::new();
    }
    // One byte more than is kept tells a longer message from one that fills the bound exactly.
    let mut kept = Vec::with_capacity(MAX_ERROR_MESSAGE_LEN + 1);
    while kept.len() <= MAX_ERROR_MESSAGE_LEN {
        // SAFETY: the string is NUL-terminated (mongocrypt_status_message's rule above), and reading stops at the
        // NUL: every byte read is inside it. The status does not change while we read (we hold it).
        let byte = unsafe { ptr.cast::<u8>().add(kept.len()).read() };
        if byte == 0 {
            break;
        }
        kept.push(byte);
    }
    let total = if kept.len() <= MAX_ERROR_MESSAGE_LEN {
        kept.len()
    } else {
        // The reported length; a `len` that disagrees with the bytes read (it cannot be shorter) is not trusted.
        (len as usize).max(kept.len())
    };
    cut_message(&String::from_utf8_lossy(&kept), total, kept.len() == total)
}

impl Drop for Status {
    fn drop(&mut self) {
        // SAFETY: the status was created by mongocrypt_status_new and is destroyed exactly once, here.
        unsafe { sys::mongocrypt_status_destroy(self.as_ptr()) }
    }
}

/// A view of memory libmongocrypt handed to a callback; `zeroed_output` for out-parameters it preallocated.
pub(crate) struct CallbackBinary(*mut sys::mongocrypt_binary_t);

impl CallbackBinary {
    /// # Safety
    /// `raw` must be a binary libmongocrypt passed to a hook, valid for the duration of that call.
    pub(crate) unsafe fn new(raw: *mut sys::mongocrypt_binary_t) -> CallbackBinary {
        CallbackBinary(raw)
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        if self.0.is_null() {
            return &[];
        }
        // SAFETY: `new`'s contract: libmongocrypt's binary is live for the call and views `len` bytes at `data`.
        unsafe {
            let (data, len) = (sys::mongocrypt_binary_data(self.0), sys::mongocrypt_binary_len(self.0));
            if data.is_null() {
                &[]
            } else {
                std::slice::from_raw_parts(data, len as usize)
            }
        }
    }

    /// The out-parameter's bytes, zeroed: what libmongocrypt preallocated is uninitialised memory (a fresh
    /// `bson_malloc`, or a reused block holding stale heap bytes), which safe code must never see.
    pub(crate) fn zeroed_output(&mut self) -> &mut [u8] {
        zeroed(self.uninit_output())
    }

    /// The out-parameter's bytes as they are, possibly uninitialised: to be written, never read before.
    pub(crate) fn uninit_output(&mut self) -> &mut [MaybeUninit<u8>] {
        if self.0.is_null() {
            return &mut [];
        }
        // SAFETY: `new`'s contract: out-parameters of hooks are "a preallocated byte array for the output" (see
        // mongocrypt_binary_data), `len` writable bytes at `data` that libmongocrypt does not touch during the call,
        // so this is the only reference to them. They may be uninitialised, which `MaybeUninit` allows.
        unsafe {
            let (data, len) = (sys::mongocrypt_binary_data(self.0), sys::mongocrypt_binary_len(self.0));
            if data.is_null() {
                return &mut [];
            }
            std::slice::from_raw_parts_mut(data.cast::<MaybeUninit<u8>>(), len as usize)
        }
    }
}

/// `output`, zeroed: what a provider method taking `&mut [u8]` gets of libmongocrypt's uninitialised buffer.
pub(crate) fn zeroed(output: &mut [MaybeUninit<u8>]) -> &mut [u8] {
    output.fill(MaybeUninit::new(0));
    // SAFETY: not a mongocrypt.h rule: every byte was initialised just above, and `MaybeUninit<u8>` has the layout
    // of `u8`.
    unsafe { &mut *(output as *mut [MaybeUninit<u8>] as *mut [u8]) }
}

/// Drops the payload of a caught panic where no panic may escape: inside an `extern "C"` function, a panic in the
/// payload's own `Drop` would abort the process ("panic in a function that cannot unwind"). That second panic is
/// caught too and its payload dropped the same way, and so on a few times (a `panic!` message, the usual payload,
/// drops without panicking); a payload still panicking after that is leaked rather than dropped.
pub(crate) fn drop_panic_payload(mut payload: Box<dyn Any + Send>) {
    for _ in 0..4 {
        match catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(next) => payload = next,
        }
    }
    std::mem::forget(payload);
}

/// The message of a caught panic: its `&str` or `String` payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    match payload.downcast_ref::<&str>() {
        Some(message) => message,
        None => payload.downcast_ref::<String>().map_or("non-string panic payload", String::as_str),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status holding `message` as a client error.
    fn status_with(message: &str) -> Status {
        let status = Status::new();
        // SAFETY: the status is live; set_client_error's contract.
        unsafe { Status::set_client_error(status.as_ptr(), message) };
        status
    }

    #[test]
    fn long_messages_from_c_are_cut() {
        for (len, cut) in [(0, false), (100, false), (MAX_ERROR_MESSAGE_LEN, false), (MAX_ERROR_MESSAGE_LEN + 1, true)]
            .into_iter()
            .chain([(1 << 20, true)])
        {
            let message = "m".repeat(len);
            let got = status_with(&message).to_result().unwrap_err().message();
            assert!(got.len() <= MAX_ERROR_MESSAGE_LEN, "{len}: {}", got.len());
            if cut {
                assert!(got.starts_with("mmm") && got.ends_with(&format!("(message cut: {len} bytes in all)")));
            } else {
                assert_eq!(got, message);
            }
        }
    }
}
