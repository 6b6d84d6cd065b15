//! Errors: what every fallible call returns (read from a `mongocrypt_status_t` by [`crate::ffi::Status`]).

use crate::state::State;

/// The result type of every fallible call in this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong, with libmongocrypt's own message wherever libmongocrypt reported it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// libmongocrypt rejected a call: bad option, bad BSON, call in the wrong state, missing key, ... Through 1.21,
    /// libmongocrypt also reports unparsable or failed KMS replies (HTTP status, bad JSON) as client errors.
    #[error("libmongocrypt client error {code}: {message}")]
    Client {
        /// libmongocrypt's error code (often 1).
        code: u32,
        /// libmongocrypt's message.
        message: String,
    },
    /// An error libmongocrypt tags as KMS (`MONGOCRYPT_STATUS_ERROR_KMS`).
    #[error("libmongocrypt KMS error {code}: {message}")]
    Kms {
        /// libmongocrypt's error code.
        code: u32,
        /// libmongocrypt's message.
        message: String,
    },
    /// The crypt_shared library failed.
    #[error("libmongocrypt crypt_shared error {code}: {message}")]
    CryptShared {
        /// libmongocrypt's error code.
        code: u32,
        /// libmongocrypt's message.
        message: String,
    },
    /// The linked libmongocrypt is too old for this call. Decided at build time from what libmongocrypt-sys found.
    #[error("{feature} requires libmongocrypt {required} or later, but {linked} is linked")]
    Unsupported {
        /// The C function this call needs.
        feature: &'static str,
        /// The first libmongocrypt release that has it.
        required: &'static str,
        /// The linked libmongocrypt release, as the library reports it (`mongocrypt_version`).
        linked: &'static str,
    },
    /// An argument cannot be passed to C: a string with a NUL byte, a buffer over 4 GiB, a document that does not
    /// serialize, or bytes that are not BSON where BSON is required.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A ctx call was made in a state libmongocrypt refuses it in ("wrong state"). The binding refuses it before
    /// libmongocrypt sees it, so the ctx is left as it was and can go on (libmongocrypt would move it to ERROR).
    #[error("{operation} needs a ctx in state {}, but the ctx is in state {state:?}", states_list(expected))]
    WrongState {
        /// The method called, as this crate names it (`finalize`, `mongo_feed`, ...).
        operation: &'static str,
        /// The states it is accepted in.
        expected: &'static [State],
        /// The state the ctx is in.
        state: State,
    },
    /// The operation's deadline passed ([`RunError::Timeout`](crate::RunError::Timeout), whose message this is):
    /// the runner left the ctx in ERROR with this error.
    #[error("{0}")]
    Timeout(String),
}

/// `A`, `A or B`, `A, B or C`: the states of [`Error::WrongState`]'s message.
fn states_list(states: &[State]) -> String {
    let names: Vec<String> = states.iter().map(|state| format!("{state:?}")).collect();
    match names.split_last() {
        None => "(none)".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Which family an [`Error`] belongs to, mirroring `mongocrypt_status_type_t` plus this crate's own kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::Client`].
    Client,
    /// [`Error::Kms`].
    Kms,
    /// [`Error::CryptShared`].
    CryptShared,
    /// [`Error::Unsupported`].
    Unsupported,
    /// [`Error::InvalidArgument`].
    InvalidArgument,
    /// [`Error::WrongState`].
    WrongState,
    /// [`Error::Timeout`].
    Timeout,
}

impl Error {
    /// The family of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Client { .. } => ErrorKind::Client,
            Error::Kms { .. } => ErrorKind::Kms,
            Error::CryptShared { .. } => ErrorKind::CryptShared,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::WrongState { .. } => ErrorKind::WrongState,
            Error::Timeout(_) => ErrorKind::Timeout,
        }
    }

    /// libmongocrypt's error code, for errors libmongocrypt reported.
    pub fn code(&self) -> Option<u32> {
        match self {
            Error::Client { code, .. } | Error::Kms { code, .. } | Error::CryptShared { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The message alone, without the kind and code that `Display` adds.
    pub fn message(&self) -> String {
        match self {
            Error::Client { message, .. } | Error::Kms { message, .. } | Error::CryptShared { message, .. } => {
                message.clone()
            }
            other => other.to_string(),
        }
    }

    #[allow(dead_code, reason = "unused when the linked library has every function")]
    pub(crate) fn unsupported(feature: &'static str, required: &'static str) -> Error {
        // The release the library itself reports: with a header newer than its library and no packaging that says
        // the library's version, MONGOCRYPT_SYS_VERSION is the header's.
        Error::Unsupported { feature, required, linked: crate::version() }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        // Some quote a peer's bytes (a field name in a server reply, ...): bounded as libmongocrypt's are.
        let message = message.into();
        Error::InvalidArgument(if message.len() > MAX_ERROR_MESSAGE_LEN {
            cut_message(&message, message.len(), true)
        } else {
            message
        })
    }
}

/// Calls `$body` when the linked header declares the C function behind `cfg($has)`, and otherwise returns
/// [`Error::Unsupported`] naming it and the release that added it. `unused(args)` names the arguments only the
/// body reads.
macro_rules! requires {
    ($has:ident, $function:literal, $since:literal, $body:block $(, unused($($arg:ident),*))?) => {{
        #[cfg($has)]
        $body
        #[cfg(not($has))]
        {
            $($(let _ = &$arg;)*)?
            Err($crate::error::Error::unsupported($function, $since))
        }
    }};
}
pub(crate) use requires;

/// The longest message, in bytes, that an [`Error`] carries ([`Error::message`]; `Display` adds the kind and code):
/// libmongocrypt's messages quote peers' bytes (a KMS reply body it cannot parse, whole), as some of the binding's
/// own refusals do, so a longer one is cut at a UTF-8 boundary and ends with `… (message cut: N bytes in all)`, N
/// being the full length in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 4096;

/// A message of at most [`MAX_ERROR_MESSAGE_LEN`] bytes from `kept`, the start (`whole`: all) of one of `total`
/// bytes; a cut one says so and states `total`.
#[cold]
pub(crate) fn cut_message(kept: &str, total: usize, whole: bool) -> String {
    if whole && kept.len() <= MAX_ERROR_MESSAGE_LEN {
        return kept.to_owned();
    }
    let note = format!("\u{2026} (message cut: {total} bytes in all)");
    let mut end = MAX_ERROR_MESSAGE_LEN.saturating_sub(note.len() + 1).min(kept.len());
    while !kept.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} {note}", &kept[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_at_the_bound_and_a_char_boundary() {
        assert_eq!(cut_message("short", 5, true), "short");
        let fits = "a".repeat(MAX_ERROR_MESSAGE_LEN);
        assert_eq!(cut_message(&fits, fits.len(), true), fits);
        // Two-byte characters: the cut lands on a boundary whatever the note's length.
        for total in [MAX_ERROR_MESSAGE_LEN + 1, 10 << 20, usize::MAX] {
            let kept = "é".repeat(MAX_ERROR_MESSAGE_LEN);
            let cut = cut_message(&kept, total, false);
            assert!(cut.len() <= MAX_ERROR_MESSAGE_LEN, "{}", cut.len());
            assert!(cut.len() > MAX_ERROR_MESSAGE_LEN - 64, "{}", cut.len());
            assert!(cut.starts_with("éé") && cut.ends_with(&format!("… (message cut: {total} bytes in all)")));
        }
        // A start shorter than the bound but not the whole message still says it was cut.
        assert_eq!(cut_message("abc", 9000, false), "abc … (message cut: 9000 bytes in all)");
        let long = "z".repeat(3 * MAX_ERROR_MESSAGE_LEN);
        assert!(matches!(Error::invalid(long), Error::InvalidArgument(m) if m.len() <= MAX_ERROR_MESSAGE_LEN
            && m.ends_with(&format!("(message cut: {} bytes in all)", 3 * MAX_ERROR_MESSAGE_LEN))));
    }
}
