//! The differences between bson 2 and bson 3 that this crate meets, in one place, so that the rest of the code
//! names `crate::bson` alone and compiles with either feature (`bson-2`, `bson-3`).
//!
//! - Errors: bson 3 has one error type, `bson::error::Error`; bson 2 reports raw-document errors as
//!   `bson::raw::Error` (the only bson errors this crate converts: parsing bytes, serializing a `Document`).
//! - Keys: bson 3's raw API names keys with its own `CStr`, bson 2's with `str`; both implement `AsRef<str>`,
//!   which is what the code reads them through (`key_str`).

use crate::error::Error;

#[cfg(feature = "bson-3")]
impl From<crate::bson::error::Error> for Error {
    fn from(e: crate::bson::error::Error) -> Error {
        Error::InvalidArgument(format!("BSON: {e}"))
    }
}

#[cfg(not(feature = "bson-3"))]
impl From<crate::bson::raw::Error> for Error {
    fn from(e: crate::bson::raw::Error) -> Error {
        Error::InvalidArgument(format!("BSON: {e}"))
    }
}

/// A raw element's key as `&str`: bson 3's `CStr` and bson 2's `str` alike.
pub(crate) fn key_str<K: AsRef<str> + ?Sized>(key: &K) -> &str {
    key.as_ref()
}
