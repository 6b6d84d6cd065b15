//! Crypto hooks: let Rust supply libmongocrypt's cryptography, required by builds without native crypto.
//!
//! A [`CryptoProvider`] implements the primitives libmongocrypt asks for; [`RustCrypto`] is one built on the
//! RustCrypto crates, `getrandom` and `ring`. The crate registers a provider on a `mongocrypt_t` through
//! `extern "C"` trampolines that turn errors and panics into a failed status, so nothing unwinds into C.
//!
//! Three files, one concern each, layered: `provider` (the API: the trait and [`RustCrypto`]) over `rust_crypto`
//! (the primitives, from ring and the RustCrypto crates) over `types` (what a provider reports and writes into);
//! `trampolines` (the `extern "C"` side) sits above `provider`.

mod provider;
mod rust_crypto;
#[cfg(test)]
mod tests;
mod trampolines;
mod types;

pub use provider::{CryptoProvider, IntoCryptoProvider, RustCrypto};
pub(crate) use trampolines::{install, InstalledHooks};
pub use types::{CipherOutput, CryptoError};
