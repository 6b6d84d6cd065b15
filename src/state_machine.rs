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
//! # Deadlines
//!
//! [`Runner::timeout`] (a driver's `timeoutMS`) or [`Runner::deadline`] bounds a whole run. The deadline is checked
//! before each state's I/O, and every I/O gets what remains of it:
//!
//! - [`run_async`] races each I/O future (listCollections, markings, keys, credentials, each KMS request) against
//!   the caller's timer, `sleep(remaining)`, and drops the I/O when the timer wins;
//! - [`run`] and [`run_concurrent`] cannot interrupt a blocking call, so the call is told the deadline:
//!   [`KmsCtx::deadline`] for a KMS request (the `libmongocrypt-kms` transport bounds its connect, handshake,
//!   writes and reads by it), and [`io_deadline`] for every method, read on the thread the runner calls it on (the
//!   trait methods keep their signatures: a driver that ignores the deadline still works, and only overruns).
//!   A call that returns past the deadline ends the run, and its result is not fed;
//! - a KMS retry's back-off that would end past the deadline is not slept: the run ends at once.
//!
//! When the deadline passes, the run fails with [`RunError::Timeout`], naming the state and the I/O in progress
//! ([`IoKind`], and the KMS endpoint). The ctx is then left in [`State::Error`], never half-fed: libmongocrypt has
//! no call to fail a ctx that waits for a reply, so the binding marks it, and from then on [`Ctx::state`] is
//! `Error` and every call fails with [`crate::Error::Timeout`], the timeout's message. States without I/O (READY,
//! DONE) have nothing to wait for and are not checked.
//!
//! # Observing a run
//!
//! Each state the runner enters and each I/O it asks for is logged with the `log` crate, target
//! `libmongocrypt::state_machine`, at debug level; the documents themselves (filters, commands, KMS messages, which can
//! hold key material and credentials) only at trace level. [`Runner::on_state`] also hands every state entered to a
//! callback, so that a driver can test the path an operation took.
//!
//! # Events
//!
//! [`Runner::events`] hands a subscriber ([`EventSubscriber`]) the structured [`Event`]s of a run, the monitoring
//! that the Client-Side Encryption spec leaves to future work: each state entered; each listCollections, markings,
//! key vault or credentials request with its duration, [`Outcome`] and the number of documents it returned; each KMS
//! attempt with its provider, endpoint, attempt number, bytes sent and received, duration and outcome; each retry
//! with its back-off. No event carries a document, a KMS message or reply, or a credential. Without a subscriber
//! the runner builds no event and reads no clock for them.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! use libmongocrypt::bson::{RawDocument, RawDocumentBuf};
//! use libmongocrypt::state_machine::{io_deadline, Event, IoKind, IoResult, RunError, Runner, StateMachineIo};
//! use libmongocrypt::{Crypt, ErrorKind, KeyEncryptionKey, KmsCtx, KmsProviders, State};
//!
//! /// A key vault that answers in 50 ms, or at the deadline if that comes first: it honours the time it is given.
//! struct SlowKeyVault(Vec<RawDocumentBuf>);
//!
//! impl StateMachineIo for SlowKeyVault {
//!     fn find_keys(&self, _filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
//!         let left = io_deadline().map_or(Duration::MAX, |at| at.saturating_duration_since(std::time::Instant::now()));
//!         std::thread::sleep(left.min(Duration::from_millis(50)));
//!         Ok(self.0.clone())
//!     }
//!     # fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> { unreachable!() }
//!     # fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> { unreachable!() }
//!     # fn kms_request(&self, _: &mut KmsCtx<'_>) -> IoResult<()> { unreachable!() }
//!     // list_collections, mark_command, kms_request: the driver's own.
//! }
//!
//! // A Crypt caches the keys it has fetched: each run below gets a new one, so that it asks the key vault.
//! let new_crypt = || Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 96]))?.build();
//! let encrypt_by_name = |crypt: &Crypt| {
//!     let value = libmongocrypt::bson::rawdoc! { "v": "457-55-5462" };
//!     crypt.ctx().key_alt_name("demo")?.algorithm(&libmongocrypt::Algorithm::Deterministic)?.explicit_encrypt(&value)
//! };
//! let crypt = new_crypt()?;
//! let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local"))?.key_alt_name("demo")?.datakey()?;
//! let vault = SlowKeyVault(vec![libmongocrypt::state_machine::run(&mut ctx, &SlowKeyVault(vec![]))?.unwrap()]);
//!
//! let events = Arc::new(Mutex::new(Vec::new()));
//! let seen = events.clone();
//! let runner = Runner::new().events(move |event: &Event<'_>| seen.lock().unwrap().push(format!("{event:?}")));
//!
//! // With time enough, explicit encryption by key name finds its key.
//! let mut ctx = encrypt_by_name(&new_crypt()?)?;
//! assert!(runner.clone().timeout(Duration::from_secs(10)).run(&mut ctx, &vault)?.is_some());
//! let events = events.lock().unwrap().clone();
//! assert!(events[0].starts_with("StateEntered { state: NeedMongoKeys"));
//! assert!(events[1].starts_with("Request { state: NeedMongoKeys, io: FindKeys") && events[1].contains("documents: 1"));
//!
//! // With 10 ms, the run ends at the deadline, and the ctx is left in ERROR.
//! let mut ctx = encrypt_by_name(&new_crypt()?)?;
//! let err = runner.timeout(Duration::from_millis(10)).run(&mut ctx, &vault).unwrap_err();
//! assert!(matches!(err, RunError::Timeout { state: State::NeedMongoKeys, io: IoKind::FindKeys, .. }), "{err}");
//! assert_eq!(ctx.state(), State::Error);
//! assert_eq!(ctx.error().unwrap().kind(), ErrorKind::Timeout);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::future::{poll_fn, Future};
use std::num::NonZeroUsize;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bson::{RawDocument, RawDocumentBuf};
use futures_util::future::{lazy, select, Either};
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;

use crate::ctx::{Ctx, State};
use crate::error::{Error, ErrorKind, Result};
use crate::kms::{KmsCtx, KmsScope};
use crate::options::KmsProvider;

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
///
/// Under a [`Runner`] with a deadline, a method bounds its blocking I/O by [`io_deadline`] (and a KMS request by
/// [`KmsCtx::deadline`], the same): the runner cannot interrupt it. See [Deadlines](self#deadlines).
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
    /// The operation's deadline ([`Runner::deadline`], [`Runner::timeout`]) passed while the runner served
    /// `state`: before `io` started, while it was under way, or by the time it returned (its result was then not
    /// fed). The ctx is left in [`State::Error`], with this error's message as its [`crate::Error::Timeout`].
    #[error(
        "the operation's deadline passed in state {state:?} during {io}{}, {elapsed:?} after the run started",
        .endpoint.as_ref().map(|endpoint| format!(" to {endpoint}")).unwrap_or_default()
    )]
    Timeout {
        /// The state being served.
        state: State,
        /// The I/O in progress, or about to start.
        io: IoKind,
        /// The KMS endpoint, for [`IoKind::KmsRequest`] and [`IoKind::BackOff`].
        endpoint: Option<String>,
        /// How long the run had lasted.
        elapsed: Duration,
    },
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
/// one round at once, and needs the implementation to be `Sync`. Under a [`Runner`] with a deadline, each future is
/// raced against the caller's timer and dropped when the deadline passes.
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

/// How a run is driven, for every runner: how many KMS requests of a round are served at once, its deadline, and who
/// is told of each state and event. [`run`], [`run_concurrent`] and [`run_async`] use the defaults.
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
    limit: Option<Limit>,
    events: Option<Arc<dyn EventSubscriber>>,
}

/// When a run must be over.
#[derive(Clone, Copy, Debug)]
enum Limit {
    /// At this instant, whenever the run starts.
    At(Instant),
    /// This long after each run starts.
    After(Duration),
}

impl Runner {
    /// At most 16 KMS requests at once, no deadline, no state callback and no event subscriber.
    pub fn new() -> Runner {
        Runner {
            max_concurrent_kms: NonZeroUsize::new(16).expect("16 is not zero"),
            max_kms_attempts: None,
            on_state: None,
            limit: None,
            events: None,
        }
    }

    /// Ends every run at `deadline` (a driver's `timeoutMS`, from the start of its operation): see
    /// [Deadlines](self#deadlines). Replaces an earlier [`timeout`](Runner::timeout).
    pub fn deadline(mut self, deadline: Instant) -> Runner {
        self.limit = Some(Limit::At(deadline));
        self
    }

    /// Ends each run `timeout` after it starts: see [Deadlines](self#deadlines). A timeout too long to be added
    /// to the clock (`Duration::MAX`) is no deadline. Replaces an earlier [`deadline`](Runner::deadline).
    pub fn timeout(mut self, timeout: Duration) -> Runner {
        self.limit = Some(Limit::After(timeout));
        self
    }

    /// Hands every [`Event`] of a run to `subscriber`: see [Events](self#events). Without one, the runner reads no
    /// clock and builds no event.
    pub fn events(mut self, subscriber: impl EventSubscriber + 'static) -> Runner {
        self.events = Some(Arc::new(subscriber));
        self
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
            .field("limit", &self.limit)
            .field("events", &self.events.as_ref().map(|_| "EventSubscriber"))
            .finish()
    }
}

/// What every runner returns: the document finalized in READY, if any, or why the run stopped.
pub type RunResult = std::result::Result<Option<RawDocumentBuf>, RunError>;

/// An I/O the runner does or asks its driver for: what [`RunError::Timeout`] and [`Event::Request`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoKind {
    /// listCollections (NEED_MONGO_COLLINFO, NEED_MONGO_COLLINFO_WITH_DB).
    ListCollections,
    /// The mongocryptd command (NEED_MONGO_MARKINGS).
    Markings,
    /// The key vault find (NEED_MONGO_KEYS).
    FindKeys,
    /// On-demand KMS credentials (NEED_KMS_CREDENTIALS).
    KmsCredentials,
    /// One attempt at a KMS request (NEED_KMS).
    KmsRequest,
    /// The back-off before a KMS request is retried (NEED_KMS).
    BackOff,
}

impl fmt::Display for IoKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoKind::ListCollections => "listCollections",
            IoKind::Markings => "markings",
            IoKind::FindKeys => "find keys",
            IoKind::KmsCredentials => "KMS credentials",
            IoKind::KmsRequest => "KMS request",
            IoKind::BackOff => "back-off before a KMS request",
        })
    }
}

/// How an I/O ended, in an [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It failed, with an error of this kind.
    Failed(FailureKind),
    /// The operation's deadline passed first, or as it returned.
    TimedOut,
}

/// The kind of a failed I/O's error, in an [`Outcome`]: never its message, which may quote a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The driver's own error (a network or database error).
    Io,
    /// libmongocrypt's error (a [`crate::Error`]), of this kind.
    Mongocrypt(ErrorKind),
    /// A KMS attempt's failure, as the runner handles it: any error that is not a [`KmsFailure`] or a
    /// [`crate::Error`] is a [`KmsFailureKind::Network`] one.
    Kms(KmsFailureKind),
}

/// What happens in a run, for an [`EventSubscriber`] ([`Runner::events`]). No event carries a document, a KMS
/// message or reply, or a credential: states, kinds, counts, durations, and the KMS provider and endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The ctx entered `state`; the runner serves it next (what [`Runner::on_state`] is called with).
    #[non_exhaustive]
    StateEntered {
        /// The state.
        state: State,
    },
    /// A request to the driver ended: listCollections, markings, the key vault find or KMS credentials.
    #[non_exhaustive]
    Request {
        /// The state it served.
        state: State,
        /// Which request.
        io: IoKind,
        /// From the call to its end (the call's return, or the deadline).
        duration: Duration,
        /// How it ended.
        outcome: Outcome,
        /// The number of documents it returned ([`Outcome::Ok`]; 0 otherwise): collection infos, keys, or 1 for
        /// the markings reply and the credentials.
        documents: usize,
    },
    /// An attempt at a KMS request ended (NEED_KMS).
    #[non_exhaustive]
    KmsRequest {
        /// [`KmsCtx::kms_provider`].
        provider: &'a KmsProvider,
        /// [`KmsCtx::endpoint`].
        endpoint: &'a str,
        /// The attempt's number, from 1.
        attempt: u32,
        /// The length of [`KmsCtx::message`], the request.
        bytes_sent: usize,
        /// The reply bytes fed to libmongocrypt in this attempt.
        bytes_received: usize,
        /// From the call to its end (the call's return, or the deadline).
        duration: Duration,
        /// How it ended; a failed attempt that libmongocrypt retries is followed by a [`Event::KmsRetry`].
        outcome: Outcome,
    },
    /// A KMS request is sent again: attempt `attempt` starts after `back_off` ([`KmsCtx::sleep_duration`]).
    #[non_exhaustive]
    KmsRetry {
        /// [`KmsCtx::kms_provider`].
        provider: &'a KmsProvider,
        /// [`KmsCtx::endpoint`].
        endpoint: &'a str,
        /// The number of the attempt about to start, from 2.
        attempt: u32,
        /// How long the runner waits before it.
        back_off: Duration,
    },
}

/// Receives the [`Event`]s of a run ([`Runner::events`]), on the thread that served each (a round's KMS requests
/// may be served on several threads at once by [`run_concurrent`]). Called synchronously: a subscriber that does
/// more than record should hand events off.
///
/// Any `Fn(&Event<'_>) + Send + Sync` closure is one.
pub trait EventSubscriber: Send + Sync {
    /// Called with each event, in the order they happen on the serving thread.
    fn on_event(&self, event: &Event<'_>);
}

impl<F: Fn(&Event<'_>) + Send + Sync> EventSubscriber for F {
    fn on_event(&self, event: &Event<'_>) {
        self(event)
    }
}

thread_local! {
    /// [`io_deadline`]: the deadline of the I/O running on this thread.
    static IO_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The deadline of the operation whose I/O is running on this thread: `Some` while a runner with a deadline
/// ([`Runner::deadline`], [`Runner::timeout`]) calls a [`StateMachineIo`] method on this thread, or polls an
/// [`AsyncStateMachineIo`] future; `None` otherwise. See [Deadlines](self#deadlines).
///
/// A blocking method bounds its I/O by it (a socket timeout of what remains, a server's `maxTimeMS`): the runner
/// cannot interrupt it. One that hands its work to another thread reads it first and passes it along.
pub fn io_deadline() -> Option<Instant> {
    IO_DEADLINE.get()
}

/// Sets [`io_deadline`] on this thread until dropped, then restores the one before (a run nested in another's
/// I/O).
struct DeadlineScope(Option<Instant>);

impl DeadlineScope {
    fn enter(deadline: Instant) -> DeadlineScope {
        DeadlineScope(IO_DEADLINE.replace(Some(deadline)))
    }
}

impl Drop for DeadlineScope {
    fn drop(&mut self) {
        IO_DEADLINE.set(self.0);
    }
}

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
    /// Runs `io` (a future of one of the methods above) within `deadline`: [`io_deadline`] is set while it runs,
    /// and the async face races it against its timer. `None` when the timer ended it.
    fn within<F: Future>(&self, deadline: Option<Instant>, io: F) -> impl Future<Output = Option<F::Output>>;
    /// Serves one round's requests, each with [`serve_kms`], at most [`Runner::max_concurrent_kms`] at once;
    /// errors in request order.
    fn serve_round(&self, round: &mut [Request<'_>], run: &Run<'_>) -> impl Future<Output = RoundResult>;
}

/// The result of serving one KMS request, or one round of them.
type RoundResult = std::result::Result<(), Stop>;

/// How [`Blocking`] serves a round: [`one_by_one`] or [`on_threads`].
type ServeRound<'i, I> = fn(&Blocking<'i, I>, &mut [Request<'_>], &Run<'_>) -> RoundResult;

/// [`run`] and [`run_concurrent`]: a [`StateMachineIo`] on the calling thread, with a round's KMS requests served
/// one by one ([`one_by_one`]) or on scoped threads ([`on_threads`], which needs `I: Sync`). Its futures call the
/// I/O when first polled, which [`Driver::within`] does at once.
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
        lazy(move |_| self.io.list_collections(db, filter))
    }

    fn mark_command(&self, command: &RawDocument) -> impl Future<Output = IoResult<RawDocumentBuf>> {
        lazy(move |_| self.io.mark_command(command))
    }

    fn find_keys(&self, filter: &RawDocument) -> impl Future<Output = IoResult<Vec<RawDocumentBuf>>> {
        lazy(move |_| self.io.find_keys(filter))
    }

    fn kms_credentials(&self) -> impl Future<Output = IoResult<RawDocumentBuf>> {
        lazy(move |_| self.io.kms_credentials())
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> impl Future<Output = IoResult<()>> {
        lazy(move |_| self.io.kms_request(kms))
    }

    fn sleep(&self, delay: Duration) -> impl Future<Output = ()> {
        std::thread::sleep(delay);
        std::future::ready(())
    }

    /// The call is made here, with [`io_deadline`] set: the runner cannot interrupt it.
    fn within<F: Future>(&self, deadline: Option<Instant>, io: F) -> impl Future<Output = Option<F::Output>> {
        let _scope = deadline.map(DeadlineScope::enter);
        std::future::ready(Some(finish(io)))
    }

    fn serve_round(&self, round: &mut [Request<'_>], run: &Run<'_>) -> impl Future<Output = RoundResult> {
        std::future::ready((self.serve_round)(self, round, run))
    }
}

fn one_by_one<I: StateMachineIo + ?Sized>(
    blocking: &Blocking<'_, I>,
    round: &mut [Request<'_>],
    run: &Run<'_>,
) -> RoundResult {
    round.iter_mut().try_for_each(|kms| finish(serve_kms(blocking, kms, run)))
}

fn on_threads<I: StateMachineIo + Sync + ?Sized>(
    blocking: &Blocking<'_, I>,
    round: &mut [Request<'_>],
    run: &Run<'_>,
) -> RoundResult {
    round.chunks_mut(run.runner.max_concurrent_kms.get()).try_for_each(|chunk| match chunk {
        [kms] => finish(serve_kms(blocking, kms, run)),
        chunk => std::thread::scope(|s| {
            let mut threads = Vec::with_capacity(chunk.len());
            let mut started = Ok(());
            for kms in chunk {
                // A thread that cannot start (the process's limit, its address space) ends the round with an
                // error, after the ones already started; never a panic.
                match std::thread::Builder::new().spawn_scoped(s, move || finish(serve_kms(blocking, kms, run))) {
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

    /// The I/O raced against the caller's timer, with [`io_deadline`] set while it is polled.
    async fn within<G: Future>(&self, deadline: Option<Instant>, io: G) -> Option<G::Output> {
        let Some(at) = deadline else { return Some(io.await) };
        let mut io = pin!(io);
        let io = poll_fn(|cx| {
            let _scope = DeadlineScope::enter(at);
            io.as_mut().poll(cx)
        });
        let timer = (self.sleep)(at.saturating_duration_since(Instant::now()));
        match select(pin!(io), pin!(timer)).await {
            Either::Left((output, _)) => Some(output),
            Either::Right(((), _)) => None,
        }
    }

    async fn serve_round(&self, round: &mut [Request<'_>], run: &Run<'_>) -> RoundResult {
        let limit = run.runner.max_concurrent_kms;
        // `stream::iter(..).map(|kms| serve_kms(..)).buffered(limit)` does the same, but rustc cannot prove a
        // future holding that closure `Send` ("implementation of `FnOnce` is not general enough", rust-lang/rust
        // issue 64552), so the bounded window is filled by hand.
        let mut waiting = round.iter_mut();
        let mut in_flight = FuturesOrdered::new();
        let mut results = Vec::new();
        loop {
            while in_flight.len() < limit.get() {
                let Some(kms) = waiting.next() else { break };
                in_flight.push_back(serve_kms(self, kms, run));
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

/// The state machine: the one loop over the ctx's states, for every face. A ctx whose deadline passed is left in
/// ERROR ([`Ctx::abandon`]): libmongocrypt has no call that fails a ctx waiting for a reply.
async fn drive<D: Driver>(ctx: &mut Ctx, driver: &D, runner: &Runner) -> RunResult {
    let run = Run::start(runner);
    let result = drive_states(ctx, driver, &run).await;
    if let Err(timeout @ RunError::Timeout { .. }) = &result {
        ctx.abandon(Error::Timeout(timeout.to_string()));
    }
    result
}

async fn drive_states<D: Driver>(ctx: &mut Ctx, driver: &D, run: &Run<'_>) -> RunResult {
    let mut result = None;
    loop {
        let state = ctx.state();
        log::debug!(target: LOG_TARGET, "state {state:?}");
        if let Some(on_state) = &run.runner.on_state {
            on_state(state);
        }
        if let Some(events) = run.events() {
            events.on_event(&Event::StateEntered { state });
        }
        match state {
            State::NeedMongoCollinfo | State::NeedMongoCollinfoWithDb => {
                let db = if state == State::NeedMongoCollinfoWithDb { Some(ctx.mongo_db()?) } else { None };
                let filter = ctx.mongo_op()?;
                log::debug!(target: LOG_TARGET, "listCollections on database {db:?}");
                log::trace!(target: LOG_TARGET, "listCollections filter: {}", Shown(filter));
                let infos = run
                    .request(driver, state, IoKind::ListCollections, Vec::len, driver.list_collections(db, filter))
                    .await?;
                feed_all(ctx, &infos)?;
            }
            State::NeedMongoMarkings => {
                let command = ctx.mongo_op()?;
                log::debug!(target: LOG_TARGET, "mongocryptd command");
                log::trace!(target: LOG_TARGET, "mongocryptd command: {}", Shown(command));
                let reply = run.request(driver, state, IoKind::Markings, |_| 1, driver.mark_command(command)).await?;
                feed_all(ctx, std::slice::from_ref(&reply))?;
            }
            State::NeedMongoKeys => {
                let filter = ctx.mongo_op()?;
                log::debug!(target: LOG_TARGET, "key vault find");
                log::trace!(target: LOG_TARGET, "key vault filter: {}", Shown(filter));
                let keys = run.request(driver, state, IoKind::FindKeys, Vec::len, driver.find_keys(filter)).await?;
                feed_all(ctx, &keys)?;
            }
            State::NeedKms => {
                let mut scope = ctx.kms_scope()?;
                serve_scope(&mut scope, driver, run).await.map_err(Stop::into_run_error)?;
                scope.done()?;
            }
            State::NeedKmsCredentials => {
                log::debug!(target: LOG_TARGET, "on-demand KMS credentials");
                let providers =
                    run.request(driver, state, IoKind::KmsCredentials, |_| 1, driver.kms_credentials()).await?;
                ctx.provide_kms_providers(&providers)?;
            }
            State::Ready => result = Some(ctx.finalize_owned()?),
            State::Done => return Ok(result),
            State::Error => return Err(ctx.status_error().into()),
            State::Unknown(raw) => return Err(RunError::UnknownState(raw)),
        }
    }
}

/// How much earlier than its deadline a failed I/O may return and still count as ended by it: socket timeouts
/// count in kernel ticks (4 ms at 250 Hz), so one set to what remains can expire a tick before the deadline.
const DEADLINE_SLACK: Duration = Duration::from_millis(5);

/// One run: its runner, and its deadline, fixed when it starts.
struct Run<'r> {
    runner: &'r Runner,
    /// When the run started and when it must be over; `None` without a deadline, and then no clock is read.
    deadline: Option<(Instant, Instant)>,
}

impl<'r> Run<'r> {
    fn start(runner: &'r Runner) -> Run<'r> {
        let deadline = runner.limit.and_then(|limit| {
            let now = Instant::now();
            match limit {
                Limit::At(at) => Some((now, at)),
                // A timeout past what the clock holds is no deadline.
                Limit::After(timeout) => Some((now, now.checked_add(timeout)?)),
            }
        });
        Run { runner, deadline }
    }

    fn at(&self) -> Option<Instant> {
        self.deadline.map(|(_, at)| at)
    }

    /// Whether the deadline has passed, or will have within `within`.
    fn passes_within(&self, within: Duration) -> bool {
        self.deadline.is_some_and(|(_, at)| Instant::now().checked_add(within).is_none_or(|then| then >= at))
    }

    /// Whether an I/O that returned `ok` or not ended past the deadline, or failed by it.
    fn overran(&self, ok: bool) -> bool {
        self.passes_within(if ok { Duration::ZERO } else { DEADLINE_SLACK })
    }

    fn timeout(&self, state: State, io: IoKind, endpoint: Option<&str>) -> RunError {
        let elapsed = self.deadline.map_or(Duration::ZERO, |(started, _)| started.elapsed());
        RunError::Timeout { state, io, endpoint: endpoint.map(str::to_owned), elapsed }
    }

    /// Fails if the deadline has passed, before `io` starts.
    fn check(&self, state: State, io: IoKind) -> std::result::Result<(), RunError> {
        match self.passes_within(Duration::ZERO) {
            true => Err(self.timeout(state, io, None)),
            false => Ok(()),
        }
    }

    fn events(&self) -> Option<&dyn EventSubscriber> {
        self.runner.events.as_deref()
    }

    /// The start of an I/O, timed only for a subscriber.
    fn clock(&self) -> Option<Instant> {
        self.runner.events.as_ref().map(|_| Instant::now())
    }

    /// One request to the driver (every I/O but KMS requests), within the deadline: checked before, raced or
    /// bounded during, checked after (a result that comes back late is not fed), and reported to the subscriber
    /// with `documents` counting what it returned.
    async fn request<D: Driver, T, F: Future<Output = IoResult<T>>>(
        &self,
        driver: &D,
        state: State,
        io: IoKind,
        documents: fn(&T) -> usize,
        call: F,
    ) -> std::result::Result<T, RunError> {
        self.check(state, io)?;
        let started = self.clock();
        let result = driver.within(self.at(), call).await.filter(|result| !self.overran(result.is_ok()));
        if let (Some(events), Some(started)) = (self.events(), started) {
            let (outcome, documents) = match &result {
                None => (Outcome::TimedOut, 0),
                Some(Ok(value)) => (Outcome::Ok, documents(value)),
                Some(Err(source)) => (Outcome::Failed(failure_kind(source)), 0),
            };
            events.on_event(&Event::Request { state, io, duration: started.elapsed(), outcome, documents });
        }
        match result {
            Some(result) => result.map_err(|source| RunError::from_io(state, source)),
            None => Err(self.timeout(state, io, None)),
        }
    }
}

/// The kind of a driver's error, for an [`Outcome`].
fn failure_kind(source: &IoError) -> FailureKind {
    match source.downcast_ref::<Error>() {
        Some(error) => FailureKind::Mongocrypt(error.kind()),
        None => FailureKind::Io,
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
async fn serve_scope<D: Driver>(scope: &mut KmsScope<'_>, driver: &D, run: &Run<'_>) -> RoundResult {
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
        if let Some(max) = run.runner.max_kms_attempts {
            if let Some(request) = round.iter_mut().find(|request| request.attempt > max) {
                return Err(attempts_exhausted(request, max));
            }
        }
        log::debug!(target: LOG_TARGET, "{} KMS request(s)", round.len());
        driver.serve_round(&mut round, run).await?;
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
    /// The deadline passed: a [`RunError::Timeout`].
    Timeout(RunError),
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
            Stop::Timeout(timeout) => timeout,
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
            Stop::Timeout(timeout) => Box::new(timeout),
        }
    }
}

/// One attempt at one KMS request, for every face: the back-off, the exchange, and the handling of its failure
/// (libmongocrypt's own, a retry libmongocrypt scheduled, a network failure reported with `fail` and retried if
/// libmongocrypt allows, or a final one), within the run's deadline: a back-off that would pass it ends the run at
/// once; the request gets it ([`KmsCtx::deadline`]) and is raced or bounded by it.
async fn serve_kms<D: Driver>(driver: &D, request: &mut Request<'_>, run: &Run<'_>) -> RoundResult {
    let kms = &mut request.kms;
    let attempt = request.attempt;
    let endpoint = |kms: &KmsCtx<'_>| kms.endpoint().unwrap_or("<no endpoint>").to_owned();
    // Back-off before a retry; always zero before libmongocrypt 1.12 (where the call is unsupported).
    let delay = kms.sleep_duration().unwrap_or_default();
    if attempt > 1 {
        if let Some(events) = run.events() {
            let (provider, endpoint) = (kms.kms_provider(), kms.endpoint().unwrap_or("<no endpoint>"));
            events.on_event(&Event::KmsRetry { provider: &provider, endpoint, attempt, back_off: delay });
        }
    }
    if !delay.is_zero() {
        if run.passes_within(delay) {
            return Err(Stop::Timeout(run.timeout(State::NeedKms, IoKind::BackOff, Some(&endpoint(kms)))));
        }
        log::debug!(target: LOG_TARGET, "waiting {delay:?} before retrying a KMS request");
        driver.sleep(delay).await;
    }
    if run.passes_within(Duration::ZERO) {
        return Err(Stop::Timeout(run.timeout(State::NeedKms, IoKind::KmsRequest, Some(&endpoint(kms)))));
    }
    if log::log_enabled!(target: LOG_TARGET, log::Level::Debug) {
        let endpoint = kms.endpoint().unwrap_or("<no endpoint>");
        match attempt {
            1 => log::debug!(target: LOG_TARGET, "KMS request to {endpoint} ({})", kms.kms_provider()),
            n => log::debug!(target: LOG_TARGET, "KMS request to {endpoint} ({}), attempt {n}", kms.kms_provider()),
        }
    }
    if log::log_enabled!(target: LOG_TARGET, log::Level::Trace) {
        let message = kms.message().map(String::from_utf8_lossy).unwrap_or_default();
        log::trace!(target: LOG_TARGET, "KMS message: {message}");
    }
    kms.set_deadline(run.at());
    let started = run.clock();
    let result = driver.within(run.at(), driver.kms_request(kms)).await;
    let report = |kms: &KmsCtx<'_>, outcome: Outcome| {
        if let (Some(events), Some(started)) = (run.events(), started) {
            let (provider, endpoint) = (kms.kms_provider(), kms.endpoint().unwrap_or("<no endpoint>"));
            events.on_event(&Event::KmsRequest {
                provider: &provider,
                endpoint,
                attempt,
                bytes_sent: kms.message().map_or(0, <[u8]>::len),
                bytes_received: kms.bytes_fed(),
                duration: started.elapsed(),
                outcome,
            });
        }
    };
    let failed = match result.filter(|result| !run.overran(result.is_ok())) {
        None => {
            report(kms, Outcome::TimedOut);
            return Err(Stop::Timeout(run.timeout(State::NeedKms, IoKind::KmsRequest, Some(&endpoint(kms)))));
        }
        Some(Ok(())) => {
            report(kms, Outcome::Ok);
            return Ok(());
        }
        Some(Err(source)) => match Failed::classify(source) {
            Err(e) => {
                report(kms, Outcome::Failed(FailureKind::Mongocrypt(e.kind())));
                return Err(e.into());
            }
            Ok(failed) => failed,
        },
    };
    report(kms, Outcome::Failed(FailureKind::Kms(failed.kind())));
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
        Err(Stop::Failed(failed.with_attempts(attempt)))
    }
}

impl Runner {
    /// Serves every request of one NEED_KMS state with `attempt`, without ending it (then call
    /// [`KmsScope::done`]): the runner's KMS loop for a transport that drives a [`KmsScope`] itself. Each round's
    /// requests are served on scoped threads, at most [`max_concurrent_kms`](Runner::max_concurrent_kms) at once,
    /// with the back-off, retries, attempt limit, failure handling, deadline and events of [`run_concurrent`].
    ///
    /// The error is the failed attempt's, as `attempt` returned it (a [`KmsFailure`] unwrapped from its
    /// [`KmsAttemptError`], with the attempts recorded), or a [`crate::Error`] of libmongocrypt, boxed; or, when
    /// the deadline passes, the [`RunError::Timeout`], boxed, and the ctx is left in ERROR. Errors are reported in
    /// request order; a panic in `attempt` is propagated.
    pub fn serve_kms<F>(&self, scope: &mut KmsScope<'_>, attempt: F) -> IoResult<()>
    where
        F: Fn(&mut KmsCtx<'_>) -> IoResult<()> + Sync,
    {
        let blocking = Blocking { io: &KmsOnly(attempt), serve_round: on_threads };
        match finish(serve_scope(scope, &blocking, &Run::start(self))) {
            Err(Stop::Timeout(timeout)) => {
                scope.abandon(Error::Timeout(timeout.to_string()));
                Err(Box::new(timeout))
            }
            result => result.map_err(Stop::into_io),
        }
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
