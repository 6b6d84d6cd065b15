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
//!
//! # Driving operations with the runner
//!
//! Rather than matching on [`State`] by hand, implement [`StateMachineIo`], one method per kind of I/O a ctx asks
//! for (listCollections, a mongocryptd command, a key vault find, a KMS exchange, on-demand KMS credentials), and
//! let [`state_machine::run`] drive any ctx, of any of the six kinds, to its result. A driver writes the loop of
//! `integrating.md` once; [`state_machine::run_concurrent`] also serves the KMS requests of a round in parallel.
//! Errors come back as [`RunError`]: libmongocrypt's own, typed, or the failed I/O with the state it served.
//!
//! ```
//! use std::sync::Mutex;
//!
//! use bson::{rawdoc, RawDocument, RawDocumentBuf};
//! use mongocrypt::state_machine::{run, IoResult, StateMachineIo};
//! use mongocrypt::{Algorithm, Crypt, KeyEncryptionKey, KmsCtx, KmsProviders};
//!
//! /// The driver's I/O; here a key vault in memory, as a local master key needs no KMS.
//! #[derive(Default)]
//! struct Driver {
//!     key_vault: Mutex<Vec<RawDocumentBuf>>,
//! }
//!
//! impl StateMachineIo for Driver {
//!     fn list_collections(&self, _db: Option<&str>, _filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
//!         Ok(vec![]) // Run listCollections on the encrypted client.
//!     }
//!     fn mark_command(&self, _command: &RawDocument) -> IoResult<RawDocumentBuf> {
//!         Err("no mongocryptd in this example".into())
//!     }
//!     fn find_keys(&self, _filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
//!         Ok(self.key_vault.lock().unwrap().clone()) // Run a find with the filter on the key vault.
//!     }
//!     fn kms_request(&self, _kms: &mut KmsCtx<'_>) -> IoResult<()> {
//!         Err("no KMS in this example".into())
//!     }
//! }
//!
//! let crypt = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 96]))?.build()?;
//! let driver = Driver::default();
//!
//! let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local"))?.datakey()?;
//! let key = run(&mut ctx, &driver)?.expect("the new key document");
//! let key_id = key.get_binary("_id")?.bytes.to_vec();
//! driver.key_vault.lock().unwrap().push(key);
//!
//! let mut ctx = crypt.ctx().key_id(&key_id)?.algorithm(&Algorithm::Random)?.explicit_encrypt(&rawdoc! { "v": 42 })?;
//! let ciphertext = run(&mut ctx, &driver)?.expect("{v: ciphertext}");
//! let mut ctx = crypt.ctx().explicit_decrypt(&ciphertext)?;
//! assert_eq!(run(&mut ctx, &driver)?, Some(rawdoc! { "v": 42 }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `cargo run --example state_machine` replays libmongocrypt's `example-state-machine.c` through the runner.
//!
//! # KMS I/O and on-demand credentials
//!
//! With the `kms-tls` feature, `kms_tls` serves NEED_KMS over TLS (rustls) with per-provider TLS options and
//! retries, and `kms_credentials` fetches on-demand credentials for NEED_KMS_CREDENTIALS (AWS environment, GCP
//! and Azure metadata servers). Both plug into the [`state_machine`] runner.
#![warn(missing_docs)]

mod binary;
mod crypt;
mod ctx;
mod error;
pub mod hooks;
mod kms;
#[cfg(feature = "kms-tls")]
pub mod kms_credentials;
#[cfg(feature = "kms-tls")]
pub mod kms_tls;
mod log;
mod options;
pub mod state_machine;
mod version;

pub use binary::BsonInput;
pub use crypt::{is_crypto_available, Crypt, CryptBuilder};
pub use ctx::{Ctx, CtxBuilder, State};
pub use error::{Error, ErrorKind, Result};
pub use hooks::{CryptoError, CryptoProvider, RustCrypto};
pub use kms::{KmsCtx, KmsScope};
pub use log::LogLevel;
pub use options::{
    AffixOptions, Algorithm, KeyEncryptionKey, KmsProvider, KmsProviderKind, KmsProviders, QueryType, RangeOptions,
    SubstringOptions, TextOptions,
};
pub use state_machine::{AsyncStateMachineIo, RunError, Runner, StateMachineIo};
pub use version::{version, Version};

/// The raw bindings, for other FFI layers that need to go below this crate.
pub use mongocrypt_sys as sys;
