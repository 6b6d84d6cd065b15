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
        Error::InvalidArgument(message.into())
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
