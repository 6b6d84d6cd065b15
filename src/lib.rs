//! Safe Rust bindings to libmongocrypt, MongoDB's library for client-side field level encryption (CSFLE) and
//! Queryable Encryption.
//!
//! The types mirror libmongocrypt's handles and the ownership rules of `mongocrypt.h`:
//!
//! - [`Crypt`] (`mongocrypt_t`): one per client, configured with [`CryptBuilder`], `Send + Sync`.
//! - [`Ctx`] (`mongocrypt_ctx_t`): one operation's state machine. It borrows its `Crypt`, so it cannot outlive it.
//! - [`KmsCtx`] (`mongocrypt_kms_ctx_t`): one KMS request, alive only inside a [`KmsScope`] of the NEED_KMS state.
//!
//! Every public function of libmongocrypt 1.21 is reachable. The crate compiles against any libmongocrypt from
//! 1.7 on: a method whose C function the linked library lacks returns [`Error::Unsupported`], decided at build time.
//!
//! # Explicit encryption, driven by hand
//! ```
//! use bson::{doc, rawdoc, spec::BinarySubtype, Binary};
//! use mongocrypt::{Algorithm, Crypt, KeyEncryptionKey, KmsProviders, State};
//!
//! let crypt = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 96]))?.build()?;
//!
//! // A data key, wrapped by the local master key. Its document would be inserted into the key vault.
//! let mut datakey = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local"))?.datakey()?;
//! assert_eq!(datakey.state(), State::Ready);
//! let key_doc = datakey.finalize_owned()?;
//! let key_id = key_doc.get_binary("_id").unwrap().bytes.to_vec();
//!
//! // Encrypt: the ctx asks for the key document, then is ready.
//! let mut ctx = crypt.ctx().key_id(&key_id)?.algorithm(&Algorithm::Deterministic)?.explicit_encrypt(&rawdoc! { "v": "457-55-5462" })?;
//! assert_eq!(ctx.state(), State::NeedMongoKeys);
//! ctx.mongo_feed(&key_doc)?;
//! ctx.mongo_done()?;
//! let ciphertext = ctx.finalize_owned()?;
//!
//! // Decrypt: the key is cached in the Crypt now.
//! let mut ctx = crypt.ctx().explicit_decrypt(&ciphertext)?;
//! assert_eq!(ctx.state(), State::Ready);
//! assert_eq!(ctx.finalize()?.get_str("v").unwrap(), "457-55-5462");
//! # Ok::<(), mongocrypt::Error>(())
//! ```
#![warn(missing_docs)]

mod binary;
mod crypt;
mod ctx;
mod error;
pub mod hooks;
mod kms;
mod log;
mod options;
pub mod state_machine;

pub use binary::BsonInput;
pub use crypt::{is_crypto_available, version, Crypt, CryptBuilder};
pub use ctx::{Ctx, CtxBuilder, State};
pub use error::{Error, ErrorKind, Result};
pub use hooks::{CryptoError, CryptoProvider, RustCrypto};
pub use kms::{KmsCtx, KmsScope};
pub use log::LogLevel;
pub use options::{
    AffixOptions, Algorithm, KeyEncryptionKey, KmsProviders, QueryType, RangeOptions, SubstringOptions, TextOptions,
};
pub use state_machine::{RunError, StateMachineIo};

/// The raw bindings, for other FFI layers that need to go below this crate.
pub use mongocrypt_sys as sys;
