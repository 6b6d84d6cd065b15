//! The checks that refuse inputs on which libmongocrypt aborts the process instead of failing the call, in one
//! place: [`bson`] (every document argument, walked once), [`payload`] (markings, Queryable Encryption values, key
//! documents, seen by that walk) and [`kms_reply`] (KMS replies, as they are fed).
//!
//! They are pure: bytes (and, where the fault depends on it, the linked library's version) in, a `Result` out. None
//! calls libmongocrypt, so their unit tests run alone, under Miri too (`scripts/miri.sh`).

pub(crate) mod bson;
pub(crate) mod kms_reply;
pub(crate) mod payload;
