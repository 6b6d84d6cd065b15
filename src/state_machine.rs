//! The state-machine runner: drives any [`Ctx`] to completion through a driver-supplied [`StateMachineIo`] (blocking)
//! or [`AsyncStateMachineIo`] (async).
//!
//! Every operation of libmongocrypt (auto encrypt and decrypt, explicit encrypt and decrypt, data key creation,
//! rewrap) is one [`Ctx`] whose states ask the driver for I/O: listCollections on the encrypted client, a command on
//! mongocryptd, a find on the key vault, HTTP exchanges with KMS providers, on-demand KMS credentials. The I/O traits
//! have one method per kind of I/O; the loop of libmongocrypt's `integrating.md` is written once, and [`run`] (the
//! calling thread), [`run_concurrent`] (a round's KMS requests on threads) and [`run_async`] (any executor) only
//! differ in how they do the I/O:
//!
//! | state | what the runner does |
//! |---|---|
//! | `NEED_MONGO_COLLINFO` | [`list_collections`](StateMachineIo::list_collections)`(None, ..)`, feeds each result, `mongo_done` |
//! | `NEED_MONGO_COLLINFO_WITH_DB` | the same with `Some(`[`Ctx::mongo_db`]`)` |
//! | `NEED_MONGO_MARKINGS` | [`mark_command`](StateMachineIo::mark_command), feeds the reply, `mongo_done` |
//! | `NEED_MONGO_KEYS` | [`find_keys`](StateMachineIo::find_keys), feeds each key document, `mongo_done` |
//! | `NEED_KMS` | [`kms_request`](StateMachineIo::kms_request) for each [`KmsCtx`] (after its back-off), then `kms_done` |
//! | `NEED_KMS_CREDENTIALS` | [`kms_credentials`](StateMachineIo::kms_credentials), then [`Ctx::provide_kms_providers`] |
//! | `READY` | [`Ctx::finalize`]; the document is the result |
//! | `DONE` | returns the result: `Some` if the ctx was READY on the way, `None` otherwise |
//! | `ERROR` | returns the ctx's error as [`RunError::Mongocrypt`] |
//! | unknown | returns [`RunError::UnknownState`] |
//!
//! What the result is depends on the operation: the encrypted command, the decrypted document, `{"v": value}` for
//! explicit encryption and decryption, the new key document for a data key, `{"v": [updates...]}` for a rewrap.
//! A rewrap whose filter matches no key goes straight to DONE: `None`.
//!
//! # Errors
//!
//! I/O methods return [`IoResult`]: any error type boxed, so an implementation can use `?` on its driver's errors
//! and on this crate's own. The runner wraps a failed method in [`RunError::Io`] with the state it was serving,
//! except when the boxed error is a [`crate::Error`] (say, from [`KmsCtx::feed`] inside `kms_request`): that one is
//! unboxed into [`RunError::Mongocrypt`], so libmongocrypt's errors always come out typed, wherever they arose.
//!
//! # KMS failures
//!
//! How a failed `kms_request` is handled is decided once, here, from what the I/O says about it; the runner knows
//! no transport. An I/O returns one of:
//!
//! - a [`crate::Error`]: libmongocrypt's own; the run fails with [`RunError::Mongocrypt`];
//! - a [`KmsAttemptError`] wrapping a [`KmsFailure`], an error type that classifies itself
//!   ([`KmsFailure::failure_kind`]) as a [`KmsFailureKind::Network`] failure, a [`KmsFailureKind::RetryScheduled`]
//!   one (libmongocrypt has already scheduled a retry: a retryable HTTP status fed with
//!   [`KmsCtx::feed_with_retry`]), or a [`KmsFailureKind::Final`] one. The runner records the attempt count in the
//!   failure that ends a run ([`KmsFailure::record_attempts`]) and keeps the failure itself as the source of
//!   [`RunError::Io`], or returns its libmongocrypt error ([`KmsFailure::mongocrypt_error`]) as
//!   [`RunError::Mongocrypt`] for a final one. `libmongocrypt_kms`'s `KmsIoError` is such a type;
//! - any other error: a network failure.
//!
//! A network failure is reported to libmongocrypt with [`KmsCtx::fail`]. If retries are enabled
//! ([`CryptBuilder::retry_kms`](crate::CryptBuilder::retry_kms), libmongocrypt ≥ 1.12) and libmongocrypt allows
//! one, the request is sent again in the next pass over the round's KMS contexts (libmongocrypt's "lazy retry"),
//! after its [`KmsCtx::sleep_duration`], as is a request whose retry libmongocrypt scheduled; otherwise the error is
//! returned. [`Runner::serve_kms`] runs the same loop for a transport that serves a [`KmsScope`] by itself.
//!
//! # Concurrency
//!
//! I/O methods take `&self`. [`run`] serves everything on the calling thread, so the I/O type need not be `Sync`
//! (a mock with a `RefCell` will do). [`run_concurrent`] requires `Sync` and serves the KMS requests of one round
//! on scoped threads when there is more than one ("Feeding multiple KMS requests is thread-safe"); [`run_async`]
//! serves them as concurrent futures. Both serve at most [`Runner::max_concurrent_kms`] at once. Either way, all of
//! a round's KMS contexts are taken before any is fed, as libmongocrypt requires.
//!
//! # Async
//!
//! [`run_async`] takes an [`AsyncStateMachineIo`], whose methods return `Send` futures, and a sleep function for the
//! KMS back-off (the runtime's timer, such as `tokio::time::sleep`). It depends on no executor; with the `tokio`
//! feature, [`run_tokio`] is the one-line form. Its future is `Send` when the I/O type is `Sync`, so it can run
//! inside `tokio::spawn`. Dropping it cancels the operation: the ctx is left in whatever state it had reached (a
//! NEED_KMS state is ended, see [`KmsScope`]), and should be dropped.
//!
//! # Observing a run
//!
//! Each state the runner enters and each I/O it asks for is logged with the `log` crate, target
//! `libmongocrypt::state_machine`, at debug level; the documents themselves (filters, commands, KMS messages, which can
//! hold key material and credentials) only at trace level. [`Runner::on_state`] also hands every state entered to a
//! callback, so that a driver can test the path an operation took.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::bson::{RawDocument, RawDocumentBuf};
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;

use crate::ctx::{Ctx, State};
use crate::error::{Error, Result};
use crate::kms::{KmsCtx, KmsScope};

/// The `log` target of the runner.
const LOG_TARGET: &str = "libmongocrypt::state_machine";

/// What [`StateMachineIo::kms_credentials`] and [`AsyncStateMachineIo::kms_credentials`] fail with by default.
const NO_KMS_CREDENTIALS: &str =
    "on-demand KMS credentials were requested, but this StateMachineIo does not supply them";
/// The error of a [`StateMachineIo`] method: any error, boxed. `?` converts any
/// `std::error::Error + Send + Sync + 'static` into it, and so does `.into()` on a `&str` or `String`.
pub type IoError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of a [`StateMachineIo`] method.
pub type IoResult<T> = std::result::Result<T, IoError>;

/// The I/O a [`Ctx`] asks its driver for, one method per kind. Implement it on your driver (or on a mock) and let
/// [`run`] call it.
///
/// Methods take `&self`, so that [`run_concurrent`] can serve several KMS requests at once; an implementation that
/// records calls uses a `Cell`, `RefCell` or `Mutex`.
pub trait StateMachineIo {
    /// Runs listCollections with `filter` on the encrypted client and returns every collection info document,
    /// possibly none (NEED_MONGO_COLLINFO and NEED_MONGO_COLLINFO_WITH_DB).
    ///
    /// `db` is the database to run on: `None` means the database of the command being encrypted (the one given to
    /// [`CtxBuilder::encrypt`](crate::CtxBuilder::encrypt)); `Some` is [`Ctx::mongo_db`], named by libmongocrypt
    /// in NEED_MONGO_COLLINFO_WITH_DB (libmongocrypt ≥ 1.10, for `bulkWrite`, after
    /// [`CryptBuilder::use_need_mongo_collinfo_with_db_state`](crate::CryptBuilder::use_need_mongo_collinfo_with_db_state)).
    ///
    /// Before libmongocrypt 1.13, or without
    /// [`CryptBuilder::enable_multiple_collinfo`](crate::CryptBuilder::enable_multiple_collinfo), libmongocrypt
    /// accepts at most one document.
    fn list_collections(&self, db: Option<&str>, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>>;

    /// Runs `command` on mongocryptd and returns its reply (NEED_MONGO_MARKINGS). The command goes to the database
    /// of the command being encrypted, which libmongocrypt does not repeat. Not called when crypt_shared is loaded
    /// or query analysis is bypassed.
    fn mark_command(&self, command: &RawDocument) -> IoResult<RawDocumentBuf>;

    /// Runs a find with `filter` on the key vault collection and returns the key documents, possibly none
    /// (NEED_MONGO_KEYS).
    fn find_keys(&self, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>>;

    /// Sends one KMS request and feeds its reply (NEED_KMS): connect over TLS to [`KmsCtx::endpoint`] (provider
    /// [`KmsCtx::kms_provider`]), write [`KmsCtx::message`], then feed the reply until [`KmsCtx::bytes_needed`] is
    /// 0 — [`feed_kms_reply`] does the feeding for a reply read in full. The runner has already waited
    /// [`KmsCtx::sleep_duration`].
    ///
    /// Return a network error as is: the runner calls [`KmsCtx::fail`] and retries if libmongocrypt allows it.
    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()>;

    /// Returns the KMS providers document to pass to [`Ctx::provide_kms_providers`] (NEED_KMS_CREDENTIALS): fresh
    /// credentials for the providers configured as empty documents
    /// ([`KmsProviders::on_demand`](crate::KmsProviders::on_demand)). Providers it leaves out keep the `Crypt`'s
    /// settings.
    ///
    /// Only entered after [`CryptBuilder::use_need_kms_credentials_state`](crate::CryptBuilder::use_need_kms_credentials_state);
    /// the default implementation fails.
    fn kms_credentials(&self) -> IoResult<RawDocumentBuf> {
        Err(NO_KMS_CREDENTIALS.into())
    }
}

impl<T: StateMachineIo + ?Sized> StateMachineIo for &T {
    fn list_collections(&self, db: Option<&str>, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        (**self).list_collections(db, filter)
    }

    fn mark_command(&self, command: &RawDocument) -> IoResult<RawDocumentBuf> {
        (**self).mark_command(command)
    }

    fn find_keys(&self, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        (**self).find_keys(filter)
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        (**self).kms_request(kms)
    }

    fn kms_credentials(&self) -> IoResult<RawDocumentBuf> {
        (**self).kms_credentials()
    }
}

/// Why [`run`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// libmongocrypt failed: the ctx entered the ERROR state, a call was rejected (bad BSON fed, a KMS reply that
    /// does not parse, ...), a [`StateMachineIo`] method returned a [`crate::Error`], or a KMS request failed with a
    /// final [`KmsFailure`] that carries one.
    #[error(transparent)]
    Mongocrypt(#[from] Error),
    /// A [`StateMachineIo`] method failed while serving `state`.
    #[error("driver I/O failed in state {state:?}: {source}")]
    Io {
        /// The state being served.
        state: State,
        /// The method's error.
        #[source]
        source: IoError,
    },
    /// The ctx entered a state this crate does not know (a newer libmongocrypt's).
    #[error("the ctx entered state {0}, which this binding does not know")]
    UnknownState(u32),
}

impl RunError {
    /// The libmongocrypt error, for [`RunError::Mongocrypt`].
    pub fn as_mongocrypt(&self) -> Option<&Error> {
        match self {
            RunError::Mongocrypt(e) => Some(e),
            _ => None,
        }
    }

    /// The state whose I/O failed, for [`RunError::Io`].
    pub fn io_state(&self) -> Option<State> {
        match self {
            RunError::Io { state, .. } => Some(*state),
            _ => None,
        }
    }

    /// The error of a method serving `state`: a boxed [`crate::Error`] is unboxed, anything else is I/O.
    fn from_io(state: State, source: IoError) -> RunError {
        match source.downcast::<Error>() {
            Ok(e) => RunError::Mongocrypt(*e),
            Err(source) => RunError::Io { state, source },
        }
    }
}

/// The async form of [`StateMachineIo`], for [`run_async`]: the same methods, each returning a `Send` future, so
/// that the run can be spawned on a multi-threaded executor. Implement them with `async fn`.
///
/// Methods take `&self`; [`run_async`] runs several [`kms_request`](AsyncStateMachineIo::kms_request) futures of
/// one round at once, and needs the implementation to be `Sync`.
///
/// ```
/// use libmongocrypt::bson::{RawDocument, RawDocumentBuf};
/// use libmongocrypt::state_machine::{feed_kms_reply, AsyncStateMachineIo, IoResult};
/// use libmongocrypt::KmsCtx;
///
/// struct Driver; // A driver's client, key vault collection and TLS connector.
///
/// impl AsyncStateMachineIo for Driver {
///     async fn list_collections(&self, _db: Option<&str>, _filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
///         Ok(vec![]) // client.database(db).list_collections(filter).await
///     }
///     async fn mark_command(&self, _command: &RawDocument) -> IoResult<RawDocumentBuf> {
///         Err("no mongocryptd".into())
///     }
///     async fn find_keys(&self, _filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
///         Ok(vec![]) // key_vault.find(filter).await
///     }
///     async fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
///         let message = kms.message()?; // Borrowed across the awaits: KmsCtx is Sync.
///         let reply = send(kms.endpoint()?, message).await?;
///         Ok(feed_kms_reply(kms, &reply)?)
///     }
/// }
///
/// async fn send(_endpoint: &str, _message: &[u8]) -> IoResult<Vec<u8>> {
///     Err("no network here".into())
/// }
/// ```
pub trait AsyncStateMachineIo {
    /// As [`StateMachineIo::list_collections`].
    fn list_collections(
        &self,
        db: Option<&str>,
        filter: &RawDocument,
    ) -> impl Future<Output = IoResult<Vec<RawDocumentBuf>>> + Send;

    /// As [`StateMachineIo::mark_command`].
    fn mark_command(&self, command: &RawDocument) -> impl Future<Output = IoResult<RawDocumentBuf>> + Send;

    /// As [`StateMachineIo::find_keys`].
    fn find_keys(&self, filter: &RawDocument) -> impl Future<Output = IoResult<Vec<RawDocumentBuf>>> + Send;

    /// As [`StateMachineIo::kms_request`]; the runner has already slept [`KmsCtx::sleep_duration`].
    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> impl Future<Output = IoResult<()>> + Send;

    /// As [`StateMachineIo::kms_credentials`]; the default implementation fails.
    fn kms_credentials(&self) -> impl Future<Output = IoResult<RawDocumentBuf>> + Send {
        std::future::ready(Err(NO_KMS_CREDENTIALS.into()))
    }
}

/// How a run is driven, for every runner: how many KMS requests of a round are served at once, and who is told of
/// each state. [`run`], [`run_concurrent`] and [`run_async`] use the defaults.
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// use libmongocrypt::state_machine::{Runner, StateMachineIo};
/// use libmongocrypt::{Crypt, KeyEncryptionKey, KmsProviders, State};
/// # struct NoIo;
/// # impl StateMachineIo for NoIo {
/// #     fn list_collections(&self, _: Option<&str>, _: &libmongocrypt::bson::RawDocument) -> libmongocrypt::state_machine::IoResult<Vec<libmongocrypt::bson::RawDocumentBuf>> { unreachable!() }
/// #     fn mark_command(&self, _: &libmongocrypt::bson::RawDocument) -> libmongocrypt::state_machine::IoResult<libmongocrypt::bson::RawDocumentBuf> { unreachable!() }
/// #     fn find_keys(&self, _: &libmongocrypt::bson::RawDocument) -> libmongocrypt::state_machine::IoResult<Vec<libmongocrypt::bson::RawDocumentBuf>> { unreachable!() }
/// #     fn kms_request(&self, _: &mut libmongocrypt::KmsCtx<'_>) -> libmongocrypt::state_machine::IoResult<()> { unreachable!() }
/// # }
///
/// let crypt = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 96]))?.build()?;
/// let states = Arc::new(Mutex::new(Vec::new()));
/// let seen = states.clone();
/// let runner = Runner::new().max_concurrent_kms(4).on_state(move |state| seen.lock().unwrap().push(state));
///
/// let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local"))?.datakey()?;
/// runner.run(&mut ctx, &NoIo)?;
/// assert_eq!(*states.lock().unwrap(), [State::Ready, State::Done]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Runner {
    max_concurrent_kms: NonZeroUsize,
    max_kms_attempts: Option<u32>,
    on_state: Option<Arc<dyn Fn(State) + Send + Sync>>,
}

impl Runner {
    /// At most 16 KMS requests at once, and no state callback.
    pub fn new() -> Runner {
        Runner {
            max_concurrent_kms: NonZeroUsize::new(16).expect("16 is not zero"),
            max_kms_attempts: None,
            on_state: None,
        }
    }

    /// Serves at most `limit` KMS requests of a round at once (threads for [`Runner::run_concurrent`], futures
    /// for [`Runner::run_async`]); 0 counts as 1. [`Runner::run`] serves one at a time regardless.
    pub fn max_concurrent_kms(mut self, limit: usize) -> Runner {
        self.max_concurrent_kms = NonZeroUsize::new(limit).unwrap_or(NonZeroUsize::MIN);
        self
    }

    /// Makes at most `attempts` attempts at each KMS request, whatever libmongocrypt allows (default: as many as
    /// libmongocrypt allows, which is 4 with [`CryptBuilder::retry_kms`](crate::CryptBuilder::retry_kms) and 1
    /// otherwise); 0 counts as 1. When a request would be sent once more, the run fails with the error of its last
    /// attempt.
    pub fn max_kms_attempts(mut self, attempts: u32) -> Runner {
        self.max_kms_attempts = Some(attempts.max(1));
        self
    }

    /// Calls `on_state` with every state the ctx enters, in order, before the runner serves it; the last is
    /// `Done` or `Error` (or an unknown state) unless an I/O method failed.
    pub fn on_state(mut self, on_state: impl Fn(State) + Send + Sync + 'static) -> Runner {
        self.on_state = Some(Arc::new(on_state));
        self
    }

    /// [`run`] with these settings.
    pub fn run<I: StateMachineIo + ?Sized>(&self, ctx: &mut Ctx, io: &I) -> RunResult {
        finish(drive(ctx, &Blocking { io, serve_round: one_by_one }, self))
    }

    /// [`run_concurrent`] with these settings.
    pub fn run_concurrent<I: StateMachineIo + Sync + ?Sized>(&self, ctx: &mut Ctx, io: &I) -> RunResult {
        finish(drive(ctx, &Blocking { io, serve_round: on_threads }, self))
    }

    /// [`run_async`] with these settings.
    pub async fn run_async<I, S, F>(&self, ctx: &mut Ctx, io: &I, sleep: S) -> RunResult
    where
        I: AsyncStateMachineIo + Sync + ?Sized,
        S: Fn(Duration) -> F + Sync,
        F: Future<Output = ()> + Send,
    {
        drive(ctx, &Async { io, sleep }, self).await
    }
}

impl Default for Runner {
    fn default() -> Runner {
        Runner::new()
    }
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("max_concurrent_kms", &self.max_concurrent_kms)
            .field("max_kms_attempts", &self.max_kms_attempts)
            .field("on_state", &self.on_state.as_ref().map(|_| "Fn(State)"))
            .finish()
    }
}

/// What every runner returns: the document finalized in READY, if any, or why the run stopped.
pub type RunResult = std::result::Result<Option<RawDocumentBuf>, RunError>;

/// Drives `ctx` to DONE, serving every state through `io` on the calling thread, and returns the document
/// finalized in READY (`None` for a ctx that finishes without one). See the [module documentation](self) for what
/// each state does and what each operation returns.
///
/// ```
/// use libmongocrypt::bson::{rawdoc, RawDocument, RawDocumentBuf};
/// use libmongocrypt::state_machine::{run, IoResult, StateMachineIo};
/// use libmongocrypt::{Algorithm, Crypt, KeyEncryptionKey, KmsCtx, KmsProviders};
///
/// /// A key vault in memory; there is no mongod, mongocryptd or KMS in explicit encryption with a local key.
/// struct KeyVault(Vec<RawDocumentBuf>);
///
/// impl StateMachineIo for KeyVault {
///     fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
///         Err("no mongod here".into())
///     }
///     fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
///         Err("no mongocryptd here".into())
///     }
///     fn find_keys(&self, _filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
///         Ok(self.0.clone()) // A real key vault would run a find with the filter.
///     }
///     fn kms_request(&self, _: &mut KmsCtx<'_>) -> IoResult<()> {
///         Err("no KMS here".into())
///     }
/// }
///
/// let crypt = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 96]))?.build()?;
///
/// // A data key: no I/O at all, the result is the key document to insert into the key vault.
/// let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local"))?.key_alt_name("demo")?.datakey()?;
/// let key = run(&mut ctx, &KeyVault(vec![]))?.expect("a key document");
/// let vault = KeyVault(vec![key]);
///
/// // Explicit encryption by key name: the runner fetches the key from the vault.
/// let mut ctx = crypt
///     .ctx()
///     .key_alt_name("demo")?
///     .algorithm(&Algorithm::Deterministic)?
///     .explicit_encrypt(&rawdoc! { "v": "457-55-5462" })?;
/// let ciphertext = run(&mut ctx, &vault)?.expect("{v: ciphertext}");
///
/// let mut ctx = crypt.ctx().explicit_decrypt(&ciphertext)?;
/// let plaintext = run(&mut ctx, &vault)?.expect("{v: plaintext}");
/// assert_eq!(plaintext, rawdoc! { "v": "457-55-5462" });
///
/// // A failed I/O method comes back with the state it was serving.
/// let mut ctx = crypt.ctx().encrypt("db", &rawdoc! { "find": "coll" })?;
/// let err = run(&mut ctx, &vault).unwrap_err();
/// assert_eq!(err.to_string(), "driver I/O failed in state NeedMongoCollinfo: no mongod here");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run<I: StateMachineIo + ?Sized>(ctx: &mut Ctx, io: &I) -> RunResult {
    Runner::new().run(ctx, io)
}

/// As [`run`], but the KMS requests of one round are served concurrently on scoped threads, at most
/// [`Runner::max_concurrent_kms`] at a time, when there is more than one. Errors are reported in request order; a
/// panic in `io` is propagated.
pub fn run_concurrent<I: StateMachineIo + Sync + ?Sized>(ctx: &mut Ctx, io: &I) -> RunResult {
    Runner::new().run_concurrent(ctx, io)
}

/// As [`run`], with async I/O: the KMS requests of a round are served as concurrent futures (at most
/// [`Runner::max_concurrent_kms`] at once), and each request's back-off is waited out with `sleep`, the runtime's
/// timer (`tokio::time::sleep`, `async_std::task::sleep`, ...). Depends on no executor; see [`run_tokio`] for the
/// one-line tokio form.
///
/// The future is `Send` when `io` is `Sync`, so a driver can spawn it; `ctx` is a `Ctx`, which is `Send + 'static`.
///
/// ```
/// use libmongocrypt::bson::{rawdoc, RawDocument, RawDocumentBuf};
/// use libmongocrypt::state_machine::{run_async, AsyncStateMachineIo, IoResult};
/// use libmongocrypt::{Crypt, KeyEncryptionKey, KmsCtx, KmsProviders};
///
/// struct Driver;
///
/// impl AsyncStateMachineIo for Driver {
///     async fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
///         Ok(vec![])
///     }
///     async fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
///         Err("no mongocryptd".into())
///     }
///     async fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
///         Ok(vec![])
///     }
///     async fn kms_request(&self, _: &mut KmsCtx<'_>) -> IoResult<()> {
///         Err("no KMS".into())
///     }
/// }
///
/// /// A timer for the example; a driver passes its runtime's, such as `tokio::time::sleep`.
/// async fn sleep(_: std::time::Duration) {}
///
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
/// #         std::task::Poll::Ready(v) => v,
/// #         std::task::Poll::Pending => unreachable!(),
/// #     }
/// # }
/// # block_on(async {
/// let crypt = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 96]))?.build()?;
/// let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local"))?.datakey()?;
/// let key = run_async(&mut ctx, &Driver, sleep).await?.expect("the key document");
/// assert!(key.get_binary("_id").is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub async fn run_async<I, S, F>(ctx: &mut Ctx, io: &I, sleep: S) -> RunResult
where
    I: AsyncStateMachineIo + Sync + ?Sized,
    S: Fn(Duration) -> F + Sync,
    F: Future<Output = ()> + Send,
{
    Runner::new().run_async(ctx, io, sleep).await
}

/// [`run_async`] on tokio: back-offs with `tokio::time::sleep`. Needs the `tokio` feature, and a tokio runtime
/// with its timer enabled.
///
/// ```no_run
/// # use libmongocrypt::state_machine::AsyncStateMachineIo;
/// # async fn example(crypt: libmongocrypt::Crypt, cmd: libmongocrypt::bson::RawDocumentBuf, io: std::sync::Arc<impl AsyncStateMachineIo + Send + Sync + 'static>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mut ctx = crypt.ctx().encrypt("db", &cmd)?;
/// let encrypted = tokio::spawn(async move { libmongocrypt::state_machine::run_tokio(&mut ctx, &*io).await }).await??;
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "tokio")]
pub async fn run_tokio<I: AsyncStateMachineIo + Sync + ?Sized>(ctx: &mut Ctx, io: &I) -> RunResult {
    run_async(ctx, io, tokio::time::sleep).await
}

/// Feeds a complete KMS reply, in pieces of at most [`KmsCtx::bytes_needed`] bytes (libmongocrypt rejects more).
///
/// Bytes left over once libmongocrypt needs no more are fed anyway, so that libmongocrypt reports them as an error
/// (its HTTP parser: "exceeded content length") instead of their being dropped silently. A reply shorter than
/// libmongocrypt expects is fed whole and leaves [`KmsCtx::bytes_needed`] above 0;
/// [`KmsScope::done`](crate::KmsScope::done) then fails ("KMS response unfinished").
pub fn feed_kms_reply(kms: &mut KmsCtx<'_>, mut reply: &[u8]) -> Result<()> {
    while !reply.is_empty() {
        let needed = kms.bytes_needed() as usize;
        let n = if needed == 0 { reply.len() } else { needed.min(reply.len()) };
        kms.feed(&reply[..n])?;
        reply = &reply[n..];
    }
    Ok(())
}

/// The I/O of one face of the runner. [`drive`] and [`serve_kms`] are the state machine, written once over this;
/// the faces ([`Blocking`] and [`Async`]) only do the I/O. The blocking face returns futures that are ready at
/// once, so [`finish`] completes its run in one poll.
trait Driver {
    fn list_collections(
        &self,
        db: Option<&str>,
        filter: &RawDocument,
    ) -> impl Future<Output = IoResult<Vec<RawDocumentBuf>>>;
    fn mark_command(&self, command: &RawDocument) -> impl Future<Output = IoResult<RawDocumentBuf>>;
    fn find_keys(&self, filter: &RawDocument) -> impl Future<Output = IoResult<Vec<RawDocumentBuf>>>;
    fn kms_credentials(&self) -> impl Future<Output = IoResult<RawDocumentBuf>>;
    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> impl Future<Output = IoResult<()>>;
    fn sleep(&self, delay: Duration) -> impl Future<Output = ()>;
    /// Serves one round's requests, each with [`serve_kms`], at most `limit` at once; errors in request order.
    fn serve_round(&self, round: &mut [Request<'_>], limit: NonZeroUsize) -> impl Future<Output = RoundResult>;
}

/// The result of serving one KMS request, or one round of them.
type RoundResult = std::result::Result<(), Stop>;

/// How [`Blocking`] serves a round: [`one_by_one`] or [`on_threads`].
type ServeRound<'i, I> = fn(&Blocking<'i, I>, &mut [Request<'_>], NonZeroUsize) -> RoundResult;

/// [`run`] and [`run_concurrent`]: a [`StateMachineIo`] on the calling thread, with a round's KMS requests served
/// one by one ([`one_by_one`]) or on scoped threads ([`on_threads`], which needs `I: Sync`).
struct Blocking<'i, I: ?Sized> {
    io: &'i I,
    serve_round: ServeRound<'i, I>,
}

impl<I: StateMachineIo + ?Sized> Driver for Blocking<'_, I> {
    fn list_collections(
        &self,
        db: Option<&str>,
        filter: &RawDocument,
    ) -> impl Future<Output = IoResult<Vec<RawDocumentBuf>>> {
        std::future::ready(self.io.list_collections(db, filter))
    }

    fn mark_command(&self, command: &RawDocument) -> impl Future<Output = IoResult<RawDocumentBuf>> {
        std::future::ready(self.io.mark_command(command))
    }

    fn find_keys(&self, filter: &RawDocument) -> impl Future<Output = IoResult<Vec<RawDocumentBuf>>> {
        std::future::ready(self.io.find_keys(filter))
    }

    fn kms_credentials(&self) -> impl Future<Output = IoResult<RawDocumentBuf>> {
        std::future::ready(self.io.kms_credentials())
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> impl Future<Output = IoResult<()>> {
        std::future::ready(self.io.kms_request(kms))
    }

    fn sleep(&self, delay: Duration) -> impl Future<Output = ()> {
        std::thread::sleep(delay);
        std::future::ready(())
    }

    fn serve_round(&self, round: &mut [Request<'_>], limit: NonZeroUsize) -> impl Future<Output = RoundResult> {
        std::future::ready((self.serve_round)(self, round, limit))
    }
}

fn one_by_one<I: StateMachineIo + ?Sized>(
    blocking: &Blocking<'_, I>,
    round: &mut [Request<'_>],
    _limit: NonZeroUsize,
) -> RoundResult {
    round.iter_mut().try_for_each(|kms| finish(serve_kms(blocking, kms)))
}

fn on_threads<I: StateMachineIo + Sync + ?Sized>(
    blocking: &Blocking<'_, I>,
    round: &mut [Request<'_>],
    limit: NonZeroUsize,
) -> RoundResult {
    round.chunks_mut(limit.get()).try_for_each(|chunk| match chunk {
        [kms] => finish(serve_kms(blocking, kms)),
        chunk => std::thread::scope(|s| {
            let mut threads = Vec::with_capacity(chunk.len());
            let mut started = Ok(());
            for kms in chunk {
                // A thread that cannot start (the process's limit, its address space) ends the round with an
                // error, after the ones already started; never a panic.
                match std::thread::Builder::new().spawn_scoped(s, move || finish(serve_kms(blocking, kms))) {
                    Ok(thread) => threads.push(thread),
                    Err(e) => {
                        let message = format!("cannot start a thread for a KMS request: {e}");
                        started = Err(Stop::Failed(Failed::Plain(Box::new(std::io::Error::new(e.kind(), message)))));
                        break;
                    }
                }
            }
            let results: Vec<_> = threads
                .into_iter()
                .map(|thread| thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect();
            started.and_then(|()| results.into_iter().collect())
        }),
    })
}

/// [`run_async`]: an [`AsyncStateMachineIo`] and the caller's timer.
struct Async<'i, I: ?Sized, S> {
    io: &'i I,
    sleep: S,
}

impl<I, S, F> Driver for Async<'_, I, S>
where
    I: AsyncStateMachineIo + Sync + ?Sized,
    S: Fn(Duration) -> F + Sync,
    F: Future<Output = ()> + Send,
{
    fn list_collections(
        &self,
        db: Option<&str>,
        filter: &RawDocument,
    ) -> impl Future<Output = IoResult<Vec<RawDocumentBuf>>> {
        self.io.list_collections(db, filter)
    }

    fn mark_command(&self, command: &RawDocument) -> impl Future<Output = IoResult<RawDocumentBuf>> {
        self.io.mark_command(command)
    }

    fn find_keys(&self, filter: &RawDocument) -> impl Future<Output = IoResult<Vec<RawDocumentBuf>>> {
        self.io.find_keys(filter)
    }

    fn kms_credentials(&self) -> impl Future<Output = IoResult<RawDocumentBuf>> {
        self.io.kms_credentials()
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> impl Future<Output = IoResult<()>> {
        self.io.kms_request(kms)
    }

    fn sleep(&self, delay: Duration) -> impl Future<Output = ()> {
        (self.sleep)(delay)
    }

    async fn serve_round(&self, round: &mut [Request<'_>], limit: NonZeroUsize) -> RoundResult {
        // `stream::iter(..).map(|kms| serve_kms(..)).buffered(limit)` does the same, but rustc cannot prove a
        // future holding that closure `Send` ("implementation of `FnOnce` is not general enough", rust-lang/rust
        // issue 64552), so the bounded window is filled by hand.
        let mut waiting = round.iter_mut();
        let mut in_flight = FuturesOrdered::new();
        let mut results = Vec::new();
        loop {
            while in_flight.len() < limit.get() {
                let Some(kms) = waiting.next() else { break };
                in_flight.push_back(serve_kms(self, kms));
            }
            match in_flight.next().await {
                Some(result) => results.push(result),
                None => return results.into_iter().collect(),
            }
        }
    }
}

/// Runs a blocking face's future, which is ready at its first poll: every future a blocking [`Driver`] returns is
/// `std::future::ready`, so nothing in [`drive`] ever waits.
fn finish<F: Future>(future: F) -> F::Output {
    future.now_or_never().expect("a blocking driver's futures are all ready at once")
}

/// The state machine: the one loop over the ctx's states, for every face.
async fn drive<D: Driver>(ctx: &mut Ctx, driver: &D, runner: &Runner) -> RunResult {
    let mut result = None;
    loop {
        let state = ctx.state();
        log::debug!(target: LOG_TARGET, "state {state:?}");
        if let Some(on_state) = &runner.on_state {
            on_state(state);
        }
        let io_error = |source| RunError::from_io(state, source);
        match state {
            State::NeedMongoCollinfo | State::NeedMongoCollinfoWithDb => {
                let db = if state == State::NeedMongoCollinfoWithDb { Some(ctx.mongo_db()?) } else { None };
                let filter = ctx.mongo_op()?;
                log::debug!(target: LOG_TARGET, "listCollections on database {db:?}");
                log::trace!(target: LOG_TARGET, "listCollections filter: {}", Shown(filter));
                let infos = driver.list_collections(db, filter).await.map_err(io_error)?;
                feed_all(ctx, &infos)?;
            }
            State::NeedMongoMarkings => {
                let command = ctx.mongo_op()?;
                log::debug!(target: LOG_TARGET, "mongocryptd command");
                log::trace!(target: LOG_TARGET, "mongocryptd command: {}", Shown(command));
                let reply = driver.mark_command(command).await.map_err(io_error)?;
                feed_all(ctx, std::slice::from_ref(&reply))?;
            }
            State::NeedMongoKeys => {
                let filter = ctx.mongo_op()?;
                log::debug!(target: LOG_TARGET, "key vault find");
                log::trace!(target: LOG_TARGET, "key vault filter: {}", Shown(filter));
                let keys = driver.find_keys(filter).await.map_err(io_error)?;
                feed_all(ctx, &keys)?;
            }
            State::NeedKms => {
                let mut scope = ctx.kms_scope()?;
                serve_scope(&mut scope, driver, runner).await.map_err(Stop::into_run_error)?;
                scope.done()?;
            }
            State::NeedKmsCredentials => {
                log::debug!(target: LOG_TARGET, "on-demand KMS credentials");
                let providers = driver.kms_credentials().await.map_err(io_error)?;
                ctx.provide_kms_providers(&providers)?;
            }
            State::Ready => result = Some(ctx.finalize_owned()?),
            State::Done => return Ok(result),
            State::Error => return Err(ctx.status_error().into()),
            State::Unknown(raw) => return Err(RunError::UnknownState(raw)),
        }
    }
}

/// A document in a trace record, as bson prints a [`crate::bson::Document`] (its `Debug` is hex); formatted only when the
/// record is emitted.
struct Shown<'d>(&'d RawDocument);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::bson::Document::try_from(self.0) {
            Ok(doc) => write!(f, "{doc}"),
            Err(_) => write!(f, "{:?}", self.0),
        }
    }
}

fn feed_all(ctx: &mut Ctx, docs: &[RawDocumentBuf]) -> Result<()> {
    for doc in docs {
        ctx.mongo_feed(doc)?;
    }
    ctx.mongo_done()
}

/// A KMS request of a round, with what is known of its earlier attempts.
struct Request<'k> {
    kms: KmsCtx<'k>,
    /// This attempt's number, from 1.
    attempt: u32,
    /// Why the previous attempt is being retried.
    last_error: Option<Failed>,
}

/// Serves every request of one NEED_KMS state, without ending it: the one loop over KMS rounds, for every face
/// and for [`Runner::serve_kms`]. Every request of a round is handed out before any is served ("It is not safe to
/// iterate KMS contexts while operating on KMS contexts"); requests to retry come back in the next pass, as the
/// same kms ctx, which is how attempts are counted.
async fn serve_scope<D: Driver>(scope: &mut KmsScope<'_>, driver: &D, runner: &Runner) -> RoundResult {
    // Attempts made and the last attempt's error, by kms ctx address (stable while the scope lives).
    let mut history: HashMap<usize, (u32, Option<Failed>)> = HashMap::new();
    loop {
        let mut round: Vec<Request<'_>> = scope
            .kms_ctxs()
            .into_iter()
            .map(|kms| {
                let (made, last_error) = history.remove(&(kms.as_raw() as usize)).unwrap_or_default();
                Request { kms, attempt: made + 1, last_error }
            })
            .collect();
        if round.is_empty() {
            return Ok(());
        }
        if let Some(max) = runner.max_kms_attempts {
            if let Some(request) = round.iter_mut().find(|request| request.attempt > max) {
                return Err(attempts_exhausted(request, max));
            }
        }
        log::debug!(target: LOG_TARGET, "{} KMS request(s)", round.len());
        driver.serve_round(&mut round, runner.max_concurrent_kms).await?;
        for request in round {
            history.insert(request.kms.as_raw() as usize, (request.attempt, request.last_error));
        }
    }
}

/// The error of a request that [`Runner::max_kms_attempts`] stops: its last attempt's.
fn attempts_exhausted(request: &mut Request<'_>, max: u32) -> Stop {
    Stop::Failed(match request.last_error.take() {
        Some(failed) => failed.with_attempts(max),
        None => Failed::Plain(
            format!(
                "KMS request to {} ({}) given up after {max} attempts",
                request.kms.endpoint().unwrap_or("<no endpoint>"),
                request.kms.kms_provider()
            )
            .into(),
        ),
    })
}

/// How the runner handles a failed KMS attempt: the kind of [`KmsFailure`] a `kms_request` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KmsFailureKind {
    /// A network failure (connect, TLS, timeout, a connection closed mid-reply): the runner reports it with
    /// [`KmsCtx::fail`], and the request is sent again if libmongocrypt allows a retry. Any error that is not a
    /// [`KmsFailure`] counts as one.
    Network,
    /// libmongocrypt has already scheduled a retry (a retryable HTTP status fed with
    /// [`KmsCtx::feed_with_retry`]): the request is sent again without [`KmsCtx::fail`], and this error is kept as
    /// the attempt's, for the case that no attempt is left.
    RetryScheduled,
    /// Not worth retrying (an HTTP error status, a reply libmongocrypt rejected, a bad endpoint): the run fails
    /// with it.
    Final,
}

/// A KMS failure that says how the runner should handle it: the contract between a KMS transport and the runner.
///
/// A [`StateMachineIo::kms_request`] (or [`AsyncStateMachineIo::kms_request`], or an attempt of
/// [`Runner::serve_kms`]) returns it wrapped in a [`KmsAttemptError`]; the runner classifies it once, by
/// [`failure_kind`](KmsFailure::failure_kind), and records the number of attempts in it when it ends the run.
pub trait KmsFailure: std::error::Error + Send + Sync + 'static {
    /// How the runner handles this failure.
    fn failure_kind(&self) -> KmsFailureKind;

    /// Records how many attempts were made at the request; called when this failure ends the run. By default,
    /// nothing is recorded.
    fn record_attempts(&mut self, attempts: u32) {
        let _ = attempts;
    }

    /// libmongocrypt's own error, when libmongocrypt raised this failure (an HTTP error status, a reply it
    /// rejected): a [`Final`](KmsFailureKind::Final) failure that has one ends a run as [`RunError::Mongocrypt`]
    /// with it. `None` by default: the run fails with [`RunError::Io`] carrying this failure.
    fn mongocrypt_error(&self) -> Option<Error> {
        None
    }
}

/// The error a `kms_request` returns, boxed, so that the runner handles it as its [`KmsFailure`] says instead of as
/// a network failure: `Err(KmsAttemptError::from(failure).into())`.
///
/// The runner unwraps it: [`RunError::Io`] carries the failure itself as its source, so a caller downcasts that to
/// the transport's error type.
#[derive(Debug)]
pub struct KmsAttemptError(Box<dyn KmsFailure>);

impl KmsAttemptError {
    /// How the runner handles this failure.
    pub fn failure_kind(&self) -> KmsFailureKind {
        self.0.failure_kind()
    }

    /// The failure.
    pub fn into_inner(self) -> Box<dyn KmsFailure> {
        self.0
    }
}

impl<F: KmsFailure> From<F> for KmsAttemptError {
    fn from(failure: F) -> KmsAttemptError {
        KmsAttemptError(Box::new(failure))
    }
}

impl fmt::Display for KmsAttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for KmsAttemptError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A failed attempt, as the runner keeps it.
enum Failed {
    /// A [`KmsFailure`], unwrapped from its [`KmsAttemptError`].
    Classified(Box<dyn KmsFailure>),
    /// Any other error: a network failure.
    Plain(IoError),
}

impl Failed {
    /// The one classification of a `kms_request`'s error (a libmongocrypt error is the run's, and not retried).
    fn classify(source: IoError) -> std::result::Result<Failed, Error> {
        let source = match source.downcast::<Error>() {
            Ok(e) => return Err(*e),
            Err(source) => source,
        };
        Ok(match source.downcast::<KmsAttemptError>() {
            Ok(attempt) => Failed::Classified(attempt.0),
            Err(source) => Failed::Plain(source),
        })
    }

    fn kind(&self) -> KmsFailureKind {
        match self {
            Failed::Classified(failure) => failure.failure_kind(),
            Failed::Plain(_) => KmsFailureKind::Network,
        }
    }

    fn with_attempts(mut self, attempts: u32) -> Failed {
        if let Failed::Classified(failure) = &mut self {
            failure.record_attempts(attempts);
        }
        self
    }

    fn into_io(self) -> IoError {
        match self {
            Failed::Classified(failure) => failure,
            Failed::Plain(source) => source,
        }
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failed::Classified(failure) => failure.fmt(f),
            Failed::Plain(source) => source.fmt(f),
        }
    }
}

/// Why serving a NEED_KMS state stopped.
enum Stop {
    /// libmongocrypt's error (a `kms_request` returned one, or a call on the kms ctx failed).
    Mongocrypt(Error),
    /// The failed attempt that ended it, with the attempts recorded.
    Failed(Failed),
}

impl From<Error> for Stop {
    fn from(error: Error) -> Stop {
        Stop::Mongocrypt(error)
    }
}

impl Stop {
    /// The error of a run: a final failure carrying libmongocrypt's error is that error.
    fn into_run_error(self) -> RunError {
        match self {
            Stop::Mongocrypt(e) => RunError::Mongocrypt(e),
            Stop::Failed(Failed::Classified(failure)) if failure.failure_kind() == KmsFailureKind::Final => {
                match failure.mongocrypt_error() {
                    Some(e) => RunError::Mongocrypt(e),
                    None => RunError::Io { state: State::NeedKms, source: failure },
                }
            }
            Stop::Failed(failed) => RunError::Io { state: State::NeedKms, source: failed.into_io() },
        }
    }

    /// The error of [`Runner::serve_kms`]: the failure as the attempt returned it.
    fn into_io(self) -> IoError {
        match self {
            Stop::Mongocrypt(e) => Box::new(e),
            Stop::Failed(failed) => failed.into_io(),
        }
    }
}

/// One attempt at one KMS request, for every face: the back-off, the exchange, and the handling of its failure
/// (libmongocrypt's own, a retry libmongocrypt scheduled, a network failure reported with `fail` and retried if
/// libmongocrypt allows, or a final one).
async fn serve_kms<D: Driver>(driver: &D, request: &mut Request<'_>) -> RoundResult {
    let kms = &mut request.kms;
    // Back-off before a retry; always zero before libmongocrypt 1.12 (where the call is unsupported).
    let delay = kms.sleep_duration().unwrap_or_default();
    if !delay.is_zero() {
        log::debug!(target: LOG_TARGET, "waiting {delay:?} before retrying a KMS request");
        driver.sleep(delay).await;
    }
    if log::log_enabled!(target: LOG_TARGET, log::Level::Debug) {
        let endpoint = kms.endpoint().unwrap_or("<no endpoint>");
        match request.attempt {
            1 => log::debug!(target: LOG_TARGET, "KMS request to {endpoint} ({})", kms.kms_provider()),
            n => log::debug!(target: LOG_TARGET, "KMS request to {endpoint} ({}), attempt {n}", kms.kms_provider()),
        }
    }
    if log::log_enabled!(target: LOG_TARGET, log::Level::Trace) {
        let message = kms.message().map(String::from_utf8_lossy).unwrap_or_default();
        log::trace!(target: LOG_TARGET, "KMS message: {message}");
    }
    let failed = match driver.kms_request(kms).await {
        Ok(()) => return Ok(()),
        Err(source) => Failed::classify(source)?,
    };
    let retried = match failed.kind() {
        KmsFailureKind::RetryScheduled => true,
        // libmongocrypt hands the request out again if it may be retried; not if retries are disabled or used
        // up, or unsupported (libmongocrypt < 1.12).
        KmsFailureKind::Network => kms.fail().unwrap_or(false),
        KmsFailureKind::Final => false,
    };
    if retried {
        log::debug!(target: LOG_TARGET, "KMS request failed ({failed}); libmongocrypt retries it");
        request.last_error = Some(failed);
        Ok(())
    } else {
        Err(Stop::Failed(failed.with_attempts(request.attempt)))
    }
}

impl Runner {
    /// Serves every request of one NEED_KMS state with `attempt`, without ending it (then call
    /// [`KmsScope::done`]): the runner's KMS loop for a transport that drives a [`KmsScope`] itself. Each round's
    /// requests are served on scoped threads, at most [`max_concurrent_kms`](Runner::max_concurrent_kms) at once,
    /// with the back-off, retries, attempt limit and failure handling of [`run_concurrent`].
    ///
    /// The error is the failed attempt's, as `attempt` returned it (a [`KmsFailure`] unwrapped from its
    /// [`KmsAttemptError`], with the attempts recorded), or a [`crate::Error`] of libmongocrypt, boxed. Errors are
    /// reported in request order; a panic in `attempt` is propagated.
    pub fn serve_kms<F>(&self, scope: &mut KmsScope<'_>, attempt: F) -> IoResult<()>
    where
        F: Fn(&mut KmsCtx<'_>) -> IoResult<()> + Sync,
    {
        let blocking = Blocking { io: &KmsOnly(attempt), serve_round: on_threads };
        finish(serve_scope(scope, &blocking, self)).map_err(Stop::into_io)
    }
}

/// A [`StateMachineIo`] that only serves KMS requests, for [`Runner::serve_kms`].
struct KmsOnly<F>(F);

impl<F: Fn(&mut KmsCtx<'_>) -> IoResult<()>> StateMachineIo for KmsOnly<F> {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("only KMS requests are served here".into())
    }

    fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err("only KMS requests are served here".into())
    }

    fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("only KMS requests are served here".into())
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        (self.0)(kms)
    }
}
