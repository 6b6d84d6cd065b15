//! The state-machine runner: drives any [`Ctx`] to completion through a driver-supplied [`StateMachineIo`].
//!
//! Every operation of libmongocrypt (auto encrypt and decrypt, explicit encrypt and decrypt, data key creation,
//! rewrap) is one [`Ctx`] whose states ask the driver for I/O: listCollections on the encrypted client, a command on
//! mongocryptd, a find on the key vault, HTTP exchanges with KMS providers, on-demand KMS credentials. The
//! [`StateMachineIo`] trait has one method per kind of I/O; [`run`] (or [`run_concurrent`]) is the loop of
//! libmongocrypt's `integrating.md` written once:
//!
//! | state | what [`run`] does |
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
//! A `kms_request` that fails with an I/O error (not a [`crate::Error`]) is reported to libmongocrypt with
//! [`KmsCtx::fail`]. If retries are enabled ([`CryptBuilder::retry_kms`](crate::CryptBuilder::retry_kms),
//! libmongocrypt ≥ 1.12) and libmongocrypt allows one, the request is sent again in the next pass over the round's
//! KMS contexts (libmongocrypt's "lazy retry"); otherwise the I/O error is returned.
//!
//! # Concurrency
//!
//! I/O methods take `&self`. [`run`] serves everything on the calling thread, so the I/O type need not be `Sync`
//! (a mock with a `RefCell` will do). [`run_concurrent`] requires `Sync` and serves the KMS requests of one round
//! on scoped threads, one per request, when there is more than one ("Feeding multiple KMS requests is
//! thread-safe"). Either way, all of a round's KMS contexts are taken before any is fed, as libmongocrypt requires.

use bson::{RawDocument, RawDocumentBuf};

use crate::ctx::{Ctx, State};
use crate::error::{Error, Result};
use crate::kms::KmsCtx;

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
        Err("on-demand KMS credentials were requested, but this StateMachineIo does not supply them".into())
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
    /// does not parse, ...), or a [`StateMachineIo`] method returned a [`crate::Error`].
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

/// Drives `ctx` to DONE, serving every state through `io` on the calling thread, and returns the document
/// finalized in READY (`None` for a ctx that finishes without one). See the [module documentation](self) for what
/// each state does and what each operation returns.
///
/// ```
/// use bson::{rawdoc, RawDocument, RawDocumentBuf};
/// use mongocrypt::state_machine::{run, IoResult, StateMachineIo};
/// use mongocrypt::{Algorithm, Crypt, KeyEncryptionKey, KmsCtx, KmsProviders};
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
pub fn run<I: StateMachineIo + ?Sized>(
    ctx: &mut Ctx<'_>,
    io: &I,
) -> std::result::Result<Option<RawDocumentBuf>, RunError> {
    drive(ctx, io, &|batch| batch.iter_mut().try_for_each(|kms| serve_kms(io, kms)))
}

/// As [`run`], but the KMS requests of one round are served concurrently, each on its own scoped thread, when
/// there is more than one. Errors are reported in request order; a panic in `io` is propagated.
pub fn run_concurrent<I: StateMachineIo + Sync + ?Sized>(
    ctx: &mut Ctx<'_>,
    io: &I,
) -> std::result::Result<Option<RawDocumentBuf>, RunError> {
    drive(ctx, io, &|batch| {
        if batch.len() < 2 {
            return batch.iter_mut().try_for_each(|kms| serve_kms(io, kms));
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = batch.iter_mut().map(|kms| s.spawn(move || serve_kms(io, kms))).collect();
            let results: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect();
            results.into_iter().collect::<std::result::Result<(), RunError>>()
        })
    })
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

/// Serves the KMS requests of one round (already handed out by libmongocrypt).
type ServeBatch<'f> = dyn Fn(&mut [KmsCtx<'_>]) -> std::result::Result<(), RunError> + 'f;

fn drive<I: StateMachineIo + ?Sized>(
    ctx: &mut Ctx<'_>,
    io: &I,
    serve_batch: &ServeBatch<'_>,
) -> std::result::Result<Option<RawDocumentBuf>, RunError> {
    let mut result = None;
    loop {
        let state = ctx.state();
        match state {
            State::NeedMongoCollinfo => {
                let docs = io.list_collections(None, ctx.mongo_op()?).map_err(|e| RunError::from_io(state, e))?;
                feed_all(ctx, &docs)?;
            }
            State::NeedMongoCollinfoWithDb => {
                let docs = io
                    .list_collections(Some(ctx.mongo_db()?), ctx.mongo_op()?)
                    .map_err(|e| RunError::from_io(state, e))?;
                feed_all(ctx, &docs)?;
            }
            State::NeedMongoMarkings => {
                let reply = io.mark_command(ctx.mongo_op()?).map_err(|e| RunError::from_io(state, e))?;
                feed_all(ctx, std::slice::from_ref(&reply))?;
            }
            State::NeedMongoKeys => {
                let docs = io.find_keys(ctx.mongo_op()?).map_err(|e| RunError::from_io(state, e))?;
                feed_all(ctx, &docs)?;
            }
            State::NeedKms => {
                let mut scope = ctx.kms_scope();
                // Hand out every request of the round before serving any ("It is not safe to iterate KMS contexts
                // while operating on KMS contexts"); requests to retry come back in the next pass.
                loop {
                    let mut batch = scope.kms_ctxs();
                    if batch.is_empty() {
                        break;
                    }
                    serve_batch(&mut batch)?;
                }
                scope.done()?;
            }
            State::NeedKmsCredentials => {
                let providers = io.kms_credentials().map_err(|e| RunError::from_io(state, e))?;
                ctx.provide_kms_providers(&providers)?;
            }
            State::Ready => result = Some(ctx.finalize_owned()?),
            State::Done => return Ok(result),
            State::Error => return Err(ctx.error().into()),
            State::Unknown(raw) => return Err(RunError::UnknownState(raw)),
        }
    }
}

fn feed_all(ctx: &mut Ctx<'_>, docs: &[RawDocumentBuf]) -> Result<()> {
    for doc in docs {
        ctx.mongo_feed(doc)?;
    }
    ctx.mongo_done()
}

fn serve_kms<I: StateMachineIo + ?Sized>(io: &I, kms: &mut KmsCtx<'_>) -> std::result::Result<(), RunError> {
    // Back-off before a retry; always zero before libmongocrypt 1.12 (where the call is unsupported).
    if let Ok(delay) = kms.sleep_duration() {
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }
    match io.kms_request(kms) {
        Ok(()) => Ok(()),
        Err(source) => match RunError::from_io(State::NeedKms, source) {
            // A network error: libmongocrypt hands the request out again if it may be retried.
            RunError::Io { state, source } => match kms.fail() {
                Ok(true) => Ok(()),
                _ => Err(RunError::Io { state, source }),
            },
            other => Err(other),
        },
    }
}
