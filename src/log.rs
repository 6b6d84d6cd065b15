//! libmongocrypt's log handler (`mongocrypt_setopt_log_handler`), bridged to the `log` crate or to a closure.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use libmongocrypt_sys as sys;

use crate::ffi::drop_panic_payload;

/// Severity of a libmongocrypt log message (`mongocrypt_log_level_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// `MONGOCRYPT_LOG_LEVEL_FATAL`.
    Fatal,
    /// `MONGOCRYPT_LOG_LEVEL_ERROR`.
    Error,
    /// `MONGOCRYPT_LOG_LEVEL_WARNING`.
    Warning,
    /// `MONGOCRYPT_LOG_LEVEL_INFO`.
    Info,
    /// `MONGOCRYPT_LOG_LEVEL_TRACE`, and any level a newer library adds.
    Trace,
}

impl LogLevel {
    fn from_raw(level: sys::mongocrypt_log_level_t) -> LogLevel {
        match level {
            sys::MONGOCRYPT_LOG_LEVEL_FATAL => LogLevel::Fatal,
            sys::MONGOCRYPT_LOG_LEVEL_ERROR => LogLevel::Error,
            sys::MONGOCRYPT_LOG_LEVEL_WARNING => LogLevel::Warning,
            sys::MONGOCRYPT_LOG_LEVEL_INFO => LogLevel::Info,
            _ => LogLevel::Trace,
        }
    }

    /// The `log` crate level messages of this severity are emitted at.
    pub fn to_log_level(self) -> log::Level {
        match self {
            LogLevel::Fatal | LogLevel::Error => log::Level::Error,
            LogLevel::Warning => log::Level::Warn,
            LogLevel::Info => log::Level::Info,
            LogLevel::Trace => log::Level::Trace,
        }
    }
}

/// A user log handler. libmongocrypt may call it from any thread that uses the `Crypt`.
pub(crate) type LogHandler = Box<dyn Fn(LogLevel, &str) + Send + Sync + 'static>;

/// The handler installed when the user sets none: messages go to the `log` crate under target `libmongocrypt`.
pub(crate) fn log_crate_handler() -> LogHandler {
    Box::new(|level, message| log::log!(target: "libmongocrypt", level.to_log_level(), "{message}"))
}

/// The C callback. `ctx` is the `LogHandler` the `Crypt` owns.
pub(crate) unsafe extern "C" fn log_trampoline(
    level: sys::mongocrypt_log_level_t,
    message: *const c_char,
    message_len: u32,
    ctx: *mut c_void,
) {
    // A panicking handler must not unwind into C; the message is dropped instead (logging has no error channel), and
    // so is the panic's payload, where a panic in its Drop cannot escape either.
    let caught = catch_unwind(AssertUnwindSafe(|| {
        if ctx.is_null() || message.is_null() {
            return;
        }
        // SAFETY: `ctx` is the `*const LogHandler` passed to mongocrypt_setopt_log_handler ("A context passed as an
        // argument to the log callback every invocation"); the Crypt keeps it alive until mongocrypt_destroy.
        let handler = unsafe { &*(ctx as *const LogHandler) };
        // SAFETY: "message: A NULL terminated message" of `message_len` bytes, valid for this call.
        let bytes = unsafe { std::slice::from_raw_parts(message.cast::<u8>(), message_len as usize) };
        handler(LogLevel::from_raw(level), &String::from_utf8_lossy(bytes));
    }));
    if let Err(payload) = caught {
        drop_panic_payload(payload);
    }
}
