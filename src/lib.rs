//! Safe Rust bindings to libmongocrypt, MongoDB's library for client-side field level encryption (CSFLE) and
//! Queryable Encryption.
//!
//! The types mirror libmongocrypt's handles and the ownership rules of `mongocrypt.h`:
//!
//! - [`Crypt`] (`mongocrypt_t`): one per client, configured with [`CryptBuilder`], `Send + Sync`.
//! - [`Ctx`] (`mongocrypt_ctx_t`): one operation's state machine, `Send + 'static`. It holds a clone of its
//!   `Crypt` (a cheap handle), so the `mongocrypt_t` outlives every ctx made from it by construction.
//! - [`KmsCtx`] (`mongocrypt_kms_ctx_t`): one KMS request, alive only inside a [`KmsScope`] of the NEED_KMS state.
//!
//! Every public function of libmongocrypt 1.21 is reachable. The crate compiles against any libmongocrypt from
//! 1.7 on: a method whose C function the linked library lacks returns [`Error::Unsupported`], decided at build time.
//!
//! # Explicit encryption, driven by hand
//! ```
//! use libmongocrypt::bson::{doc, rawdoc, spec::BinarySubtype, Binary};
//! use libmongocrypt::{Algorithm, Crypt, KeyEncryptionKey, KmsProviders, State};
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
//! # Ok::<(), libmongocrypt::Error>(())
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
//! use libmongocrypt::bson::{rawdoc, RawDocument, RawDocumentBuf};
//! use libmongocrypt::state_machine::{run, IoResult, StateMachineIo};
//! use libmongocrypt::{Algorithm, Crypt, KeyEncryptionKey, KmsCtx, KmsProviders};
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
//! # Using it from async code
//!
//! Nothing here blocks an async runtime unless the driver makes it:
//!
//! - A [`Ctx`] is `Send + 'static`: build it in one task, move it into `tokio::spawn`, keep it in a struct beside
//!   the [`Crypt`] (`Crypt` is `Clone + Send + Sync`), or hand a READY ctx to `spawn_blocking` so that
//!   [`Ctx::finalize`]'s cryptography runs off the async workers. The views a ctx returns borrow it, as before.
//! - [`state_machine::run_async`] drives a ctx with an [`AsyncStateMachineIo`], whose methods are `async fn`s
//!   returning `Send` futures. It serves a round's KMS requests as concurrent futures (at most
//!   [`Runner::max_concurrent_kms`]) and waits out each retry's back-off with the sleep it is given. It depends on no
//!   executor; with the `tokio` feature, [`state_machine::run_tokio`] passes `tokio::time::sleep`.
//! - [`KmsCtx`] is `Sync`, so a future may hold `&KmsCtx` (its message, its endpoint) across an `.await`.
//! - A [`KmsScope`] dropped early (by `?`, or by cancelling the future that owned it) still ends NEED_KMS; its
//!   error stays in the ctx. A cancelled operation's ctx is dropped, never stuck.
//!
//! ```
//! use std::sync::Arc;
//!
//! use libmongocrypt::bson::{rawdoc, RawDocument, RawDocumentBuf};
//! use libmongocrypt::state_machine::{run_async, AsyncStateMachineIo, IoResult};
//! use libmongocrypt::{Algorithm, Crypt, KeyEncryptionKey, KmsCtx, KmsProviders};
//!
//! /// The driver's I/O; here a key vault in memory.
//! struct KeyVault(Vec<RawDocumentBuf>);
//!
//! impl AsyncStateMachineIo for KeyVault {
//!     async fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
//!         Ok(vec![])
//!     }
//!     async fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
//!         Err("no mongocryptd".into())
//!     }
//!     async fn find_keys(&self, _filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
//!         Ok(self.0.clone()) // key_vault.find(filter).await
//!     }
//!     async fn kms_request(&self, _: &mut KmsCtx<'_>) -> IoResult<()> {
//!         Err("no KMS".into())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let crypt = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 96]))?.build()?;
//!
//! // A READY data key, finalized on the blocking pool.
//! let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local"))?.datakey()?;
//! let key = tokio::task::spawn_blocking(move || ctx.finalize_owned()).await??;
//! let key_id = key.get_binary("_id")?.bytes.to_vec();
//! let vault = Arc::new(KeyVault(vec![key]));
//!
//! // A ctx built here and driven in a spawned task, which may outlive this handle.
//! let mut ctx = crypt.ctx().key_id(&key_id)?.algorithm(&Algorithm::Random)?.explicit_encrypt(&rawdoc! { "v": 42 })?;
//! drop(crypt);
//! let io = vault.clone();
//! let task = tokio::spawn(async move { run_async(&mut ctx, &*io, tokio::time::sleep).await });
//! let ciphertext = task.await??.expect("{v: ciphertext}");
//! assert_eq!(ciphertext.get_binary("v")?.bytes[0], 2, "a Random FLE1 ciphertext");
//! # Ok(())
//! # }
//! ```
//!
//! # KMS I/O and on-demand credentials
//!
//! This crate does no network I/O: the driver's [`StateMachineIo`] does it, with whatever TLS and HTTP stack the
//! driver has. The `libmongocrypt-kms` crate has ready-made I/O for the KMS states: `libmongocrypt_kms::tls` serves
//! NEED_KMS over TLS (rustls, optionally OpenSSL) with per-provider TLS options and retries, and
//! `libmongocrypt_kms::credentials` fetches on-demand credentials for NEED_KMS_CREDENTIALS (the AWS chain: a custom
//! provider, environment, web identity, ECS, EC2 IMDSv2; the GCP and Azure metadata servers). Both plug into the
//! runners of [`state_machine`], blocking and async; any other transport does through the same contract
//! ([`state_machine::KmsFailure`]).
//!
//! # bson 2 or bson 3, serde, and the MongoDB driver
//!
//! The API's documents are one bson crate's types, re-exported as [`bson`]: bson 3 with the default feature
//! `bson-3`, bson 2 with `bson-2` (`default-features = false, features = ["bson-2"]`; the MongoDB Rust driver 3.x
//! builds with bson 2 by default). Exactly one is chosen: a build with neither or both stops with a
//! `compile_error!` naming the features. Feature `serde` gives [`KmsProvider`], [`Algorithm`], [`QueryType`],
//! [`RangeOptions`] and [`TextOptions`] `Serialize` and `Deserialize` in the spec's spelling (`"local:key1"`,
//! `"Indexed"`, `"equality"`, `trimFactor`), and [`Algorithm`] and [`QueryType`] parse with `FromStr`.
//!
//! A program has one libmongocrypt binding: use this crate *instead of* the driver's `in-use-encryption` feature,
//! not beside it. Both this crate's `libmongocrypt-sys` and MongoDB's `mongocrypt-sys` declare
//! `links = "mongocrypt"`, and Cargo refuses the build:
//!
//! ```text
//! package `mongocrypt-sys` links to the native library `mongocrypt`, but it conflicts with a previous package which links to `mongocrypt` as well:
//! package `libmongocrypt-sys v0.1.0`
//! ```
//!
//! `docs/MIGRATING.md` in the repository maps every call the driver makes into MongoDB's `mongocrypt` crate onto
//! this crate, with a port of the driver's state loop.
#![warn(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly): badges naming the feature each item needs; `doc_cfg` also derives them from
// `#[cfg]`s since doc_auto_cfg was merged into it.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(all(feature = "bson-2", feature = "bson-3"))]
compile_error!(
    "libmongocrypt: features `bson-2` and `bson-3` are both enabled; choose one. The API's documents are one bson \
     crate's types: `bson-3` is the default; for bson 2 (the MongoDB driver 3.x's default) depend on libmongocrypt \
     with `default-features = false, features = [\"bson-2\"]`, everywhere in the dependency graph."
);
#[cfg(not(any(feature = "bson-2", feature = "bson-3")))]
compile_error!(
    "libmongocrypt: no bson crate chosen; enable feature `bson-3` (the default) or `bson-2` (bson 2, the MongoDB \
     driver 3.x's default). With `default-features = false`, add `features = [\"bson-3\"]` or `[\"bson-2\"]`."
);

mod binary;
mod bson_compat;
mod crypt;
mod ctx;
mod error;
mod ffi;
mod guard;
pub mod hooks;
mod kms;
mod log;
mod options;
mod state;
pub mod state_machine;
mod version;

pub use binary::BsonInput;
pub use crypt::{is_crypto_available, Crypt, CryptBuilder};
pub use ctx::{Ctx, CtxBuilder};
pub use error::{Error, ErrorKind, Result, MAX_ERROR_MESSAGE_LEN};
pub use hooks::{CipherOutput, CryptoError, CryptoProvider, IntoCryptoProvider, RustCrypto};
pub use kms::{KmsCtx, KmsScope, KMS_RETRIES_SUPPORTED};
pub use log::LogLevel;
pub use options::{
    AffixOptions, Algorithm, KeyEncryptionKey, KmsProvider, KmsProviderKind, KmsProviders, QueryType, RangeOptions,
    SubstringOptions, TextOptions,
};
pub use state::State;
pub use state_machine::{AsyncStateMachineIo, RunError, Runner, StateMachineIo};
pub use version::{version, Version};

/// The bson crate whose types this crate's API takes and returns (`RawDocument`, `RawDocumentBuf`, `Document`,
/// `Bson`, ...): bson 3 with the default feature `bson-3`, bson 2 with `bson-2`. Name documents through this path
/// (`libmongocrypt::bson::rawdoc!`, ...) and code compiles with either.
#[cfg(feature = "bson-3")]
pub use ::bson;
/// The bson crate whose types this crate's API takes and returns (`RawDocument`, `RawDocumentBuf`, `Document`,
/// `Bson`, ...): bson 3 with the default feature `bson-3`, bson 2 with `bson-2`. Name documents through this path
/// (`libmongocrypt::bson::rawdoc!`, ...) and code compiles with either.
#[cfg(all(feature = "bson-2", not(feature = "bson-3")))]
pub use bson2 as bson;
/// docs/MIGRATING.md, whose snippets run as doctests so that the guide keeps to the API.
#[cfg(doctest)]
#[doc = include_str!("../docs/MIGRATING.md")]
pub struct MigratingGuide;

/// The raw bindings, for other FFI layers that need to go below this crate.
pub use libmongocrypt_sys as sys;
