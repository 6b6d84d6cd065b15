//! `mongocrypt_ctx_t`: one operation's state machine. [`CtxBuilder`] sets its options and initialises it as one
//! of the six kinds; [`Ctx`] is then driven state by state until it is done.

use std::cell::Cell;
use std::ptr::NonNull;

use crate::bson::{doc, RawDocument, RawDocumentBuf};
use libmongocrypt_sys as sys;
use zeroize::Zeroizing;

use crate::binary::{BinaryOut, BinaryView, BsonArg, BsonInput};
use crate::crypt::{str_arg, Crypt};
use crate::error::{requires, Error, Result};
use crate::ffi::Status;
use crate::guard::payload;
use crate::kms::KmsScope;
use crate::options::{Algorithm, QueryType};
// Also the path through which the runner (state_machine.rs) names it.
pub(crate) use crate::state::State;
use crate::version::Version;

/// A ctx whose options are being set. "@pre ctx has not been initialized" holds for every setopt because the
/// init methods consume the builder and return the [`Ctx`]. Like the ctx, it holds a clone of its [`Crypt`].
pub struct CtxBuilder {
    ctx: Ctx,
    /// Whether an AWS master key was set: libmongocrypt 1.21 dereferences NULL when an AWS endpoint comes without.
    aws_master_key: bool,
}

impl CtxBuilder {
    pub(crate) fn new(crypt: &Crypt) -> CtxBuilder {
        // SAFETY: `crypt` is initialised; the ctx must not outlive it, and it does not: the Ctx holds a clone of the
        // handle, dropped only after mongocrypt_ctx_destroy.
        let raw = unsafe { sys::mongocrypt_ctx_new(crypt.as_raw()) };
        let ctx = Ctx::new(NonNull::new(raw).expect("mongocrypt_ctx_new returned NULL"), crypt);
        CtxBuilder { ctx, aws_master_key: false }
    }

    #[inline]
    fn check(self, ok: bool) -> Result<CtxBuilder> {
        if ok {
            Ok(self)
        } else {
            Err(self.ctx.status_error())
        }
    }

    #[inline]
    fn with_view(self, bin: &BinaryView<'_>, setopt: SetoptBinary) -> Result<CtxBuilder> {
        // SAFETY: before init (the builder exists); every binary setopt says "The viewed data is copied", so the
        // view may end after the call.
        let ok = unsafe { setopt(self.ctx.ptr(), bin.as_ptr()) };
        self.check(ok)
    }

    #[inline]
    fn with_bytes(self, bytes: &[u8], setopt: SetoptBinary) -> Result<CtxBuilder> {
        self.with_view(&BinaryView::new(bytes)?, setopt)
    }

    #[inline]
    fn with_document(self, doc: &(impl BsonInput + ?Sized), setopt: SetoptBinary) -> Result<CtxBuilder> {
        let arg = BsonArg::new(doc)?;
        let bin = arg.view()?;
        self.with_view(&bin, setopt)
    }

    /// The data key to encrypt with, by `_id`: the 16 bytes of its UUID.
    #[inline]
    pub fn key_id(self, key_id: &[u8]) -> Result<CtxBuilder> {
        self.with_bytes(key_id, sys::mongocrypt_ctx_setopt_key_id)
    }

    /// The data key to encrypt with, by alternate name; for a new data key, call once per name.
    pub fn key_alt_name(self, name: &str) -> Result<CtxBuilder> {
        self.with_document(&doc! { "keyAltName": name }, sys::mongocrypt_ctx_setopt_key_alt_name)
    }

    /// The 96 bytes of a new data key, instead of random ones.
    pub fn key_material(self, key_material: &[u8]) -> Result<CtxBuilder> {
        let document = key_material_document(key_material)?;
        self.with_bytes(&document, sys::mongocrypt_ctx_setopt_key_material)
    }

    /// The explicit encryption algorithm.
    #[inline]
    pub fn algorithm(self, algorithm: &Algorithm) -> Result<CtxBuilder> {
        let copy;
        let (name, len) = match algorithm.c_name() {
            // Static and NUL-terminated (bson_strndup reads one byte past `len`); a few dozen bytes, within i32.
            Some(name) => (name.as_ptr(), name.to_bytes().len() as i32),
            None => {
                copy = str_arg(algorithm.as_str())?;
                (copy.0.as_ptr(), copy.1)
            }
        };
        // SAFETY: before init; the string is read for `len` bytes and copied ("@param[in] len The length of the
        // algorithm string"), and lives until the call returns.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_algorithm(self.ctx.ptr(), name, len) };
        self.check(ok)
    }

    /// The legacy AWS master key setter; prefer [`key_encryption_key`](Self::key_encryption_key).
    pub fn masterkey_aws(mut self, region: &str, cmk: &str) -> Result<CtxBuilder> {
        self.aws_master_key = true;
        let (region, region_len) = str_arg(region)?;
        let (cmk, cmk_len) = str_arg(cmk)?;
        // SAFETY: before init; both strings are read for their lengths and copied.
        let ok = unsafe {
            sys::mongocrypt_ctx_setopt_masterkey_aws(self.ctx.ptr(), region.as_ptr(), region_len, cmk.as_ptr(), cmk_len)
        };
        self.check(ok)
    }

    /// The legacy AWS endpoint setter; prefer [`KeyEncryptionKey::endpoint`](crate::KeyEncryptionKey::endpoint).
    /// Fails unless an AWS master key was set first.
    pub fn masterkey_aws_endpoint(self, endpoint: &str) -> Result<CtxBuilder> {
        if !self.aws_master_key {
            return Err(Error::invalid("masterkey_aws_endpoint needs an AWS master key: set masterkey_aws first"));
        }
        let (endpoint, len) = str_arg(endpoint)?;
        // SAFETY: before init; the string is read for `len` bytes and copied.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_masterkey_aws_endpoint(self.ctx.ptr(), endpoint.as_ptr(), len) };
        self.check(ok)
    }

    /// The legacy local master key setter; prefer [`key_encryption_key`](Self::key_encryption_key).
    pub fn masterkey_local(self) -> Result<CtxBuilder> {
        // SAFETY: before init; no arguments besides the ctx.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_masterkey_local(self.ctx.ptr()) };
        self.check(ok)
    }

    /// The key encryption key of a new data key, or the new one for rewrap: a
    /// [`KeyEncryptionKey`](crate::KeyEncryptionKey) or a raw `{provider, ...}` document.
    pub fn key_encryption_key(mut self, kek: &(impl BsonInput + ?Sized)) -> Result<CtxBuilder> {
        let arg = BsonArg::new(kek)?;
        let provider = RawDocument::from_bytes(arg.bytes()).ok().and_then(|d| d.get_str("provider").ok());
        self.aws_master_key |= provider.is_some_and(|p| p == "aws" || p.starts_with("aws:"));
        let bin = arg.view()?;
        self.with_view(&bin, sys::mongocrypt_ctx_setopt_key_encryption_key)
    }

    /// The contention factor of indexed Queryable Encryption.
    #[inline]
    pub fn contention_factor(self, contention_factor: i64) -> Result<CtxBuilder> {
        // SAFETY: before init; a plain integer.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_contention_factor(self.ctx.ptr(), contention_factor) };
        self.check(ok)
    }

    /// The index key of explicit Queryable Encryption, by `_id` UUID bytes (default: the [`key_id`](Self::key_id)).
    pub fn index_key_id(self, key_id: &[u8]) -> Result<CtxBuilder> {
        self.with_bytes(key_id, sys::mongocrypt_ctx_setopt_index_key_id)
    }

    /// The query type of explicit Queryable Encryption.
    #[inline]
    pub fn query_type(self, query_type: &QueryType) -> Result<CtxBuilder> {
        let copy;
        let (name, len) = match query_type.c_name() {
            // Static and NUL-terminated, as for `algorithm`.
            Some(name) => (name.as_ptr(), name.to_bytes().len() as i32),
            None => {
                copy = str_arg(query_type.as_str())?;
                (copy.0.as_ptr(), copy.1)
            }
        };
        // SAFETY: before init; the string is read for `len` bytes and copied, and lives until the call returns.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_query_type(self.ctx.ptr(), name, len) };
        self.check(ok)
    }

    /// Options of the range algorithm: [`RangeOptions`](crate::RangeOptions) or a raw document.
    pub fn algorithm_range(self, opts: &(impl BsonInput + ?Sized)) -> Result<CtxBuilder> {
        self.with_document(opts, sys::mongocrypt_ctx_setopt_algorithm_range)
    }

    /// Options of the string algorithm: [`TextOptions`](crate::TextOptions) or a raw document. libmongocrypt ≥ 1.15.
    pub fn algorithm_text(self, opts: &(impl BsonInput + ?Sized)) -> Result<CtxBuilder> {
        requires!(
            mongocrypt_has_ctx_setopt_algorithm_text,
            "mongocrypt_ctx_setopt_algorithm_text",
            "1.15.0",
            { self.with_document(opts, sys::mongocrypt_ctx_setopt_algorithm_text) },
            unused(opts)
        )
    }

    fn init(self, ok: bool) -> Result<Ctx> {
        if ok {
            Ok(self.ctx)
        } else {
            Err(self.ctx.status_error())
        }
    }

    fn init_with(self, doc: &(impl BsonInput + ?Sized), init: SetoptBinary) -> Result<Ctx> {
        self.init_with_checked(&BsonArg::new(doc)?, init)
    }

    /// [`init_with`](Self::init_with) for an argument already checked (by [`BsonArg::visiting`]): one walk per
    /// document.
    fn init_with_checked(self, arg: &BsonArg<'_>, init: SetoptBinary) -> Result<Ctx> {
        let bin = arg.view()?;
        // SAFETY: the ctx is not yet initialised (the builder is consumed here, so init runs once); every init that
        // takes a binary copies it ("The viewed data is copied").
        let ok = unsafe { init(self.ctx.ptr(), bin.as_ptr()) };
        self.init(ok)
    }

    /// A new data key, wrapped by the [`key_encryption_key`](Self::key_encryption_key).
    pub fn datakey(self) -> Result<Ctx> {
        // SAFETY: not yet initialised; no arguments besides the ctx.
        let ok = unsafe { sys::mongocrypt_ctx_datakey_init(self.ctx.ptr()) };
        self.init(ok)
    }

    /// Automatic encryption of command `cmd` run on database `db`.
    pub fn encrypt(self, db: &str, cmd: &(impl BsonInput + ?Sized)) -> Result<Ctx> {
        let (db, db_len) = str_arg(db)?;
        let arg = BsonArg::new(cmd)?;
        let bin = arg.view()?;
        // SAFETY: not yet initialised; db is read for `db_len` bytes and copied, and so is cmd.
        let ok = unsafe { sys::mongocrypt_ctx_encrypt_init(self.ctx.ptr(), db.as_ptr(), db_len, bin.as_ptr()) };
        self.init(ok)
    }

    /// Explicit encryption of the value `v` of `{"v": value}`.
    pub fn explicit_encrypt(self, value: &(impl BsonInput + ?Sized)) -> Result<Ctx> {
        self.init_with(value, sys::mongocrypt_ctx_explicit_encrypt_init)
    }

    /// Explicit encryption of a range query expression `{"v": {"$and": [...]}}`.
    pub fn explicit_encrypt_expression(self, expression: &(impl BsonInput + ?Sized)) -> Result<Ctx> {
        self.init_with(expression, sys::mongocrypt_ctx_explicit_encrypt_expression_init)
    }

    /// Automatic decryption of a server reply.
    pub fn decrypt(self, doc: &(impl BsonInput + ?Sized)) -> Result<Ctx> {
        let linked = Version::linked();
        let arg = BsonArg::visiting(doc, &mut |subtype, bytes: &[u8]| {
            payload::refuse_aborting_value(linked, subtype, bytes)
        })?;
        self.init_with_checked(&arg, sys::mongocrypt_ctx_decrypt_init)
    }

    /// Explicit decryption of `{"v": ciphertext}`.
    pub fn explicit_decrypt(self, value: &(impl BsonInput + ?Sized)) -> Result<Ctx> {
        let linked = Version::linked();
        let arg = BsonArg::visiting(value, &mut |subtype, bytes: &[u8]| {
            payload::refuse_aborting_value(linked, subtype, bytes)
        })?;
        self.init_with_checked(&arg, sys::mongocrypt_ctx_explicit_decrypt_init)
    }

    /// Rewrapping of the data keys matching `filter` under the [`key_encryption_key`](Self::key_encryption_key)
    /// (or each key's current one when none is set).
    pub fn rewrap_many_datakey(self, filter: &(impl BsonInput + ?Sized)) -> Result<Ctx> {
        self.init_with(filter, sys::mongocrypt_ctx_rewrap_many_datakey_init)
    }
}

/// `{"keyMaterial": BinData(0, key_material)}`, written by hand into one buffer of its final size: the document
/// holds the plaintext data key, and a buffer that grew while it was written would leave copies in freed memory.
/// The only copy is wiped when dropped.
fn key_material_document(key_material: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    const NAME: &[u8] = b"keyMaterial\0";
    // i32 length, type byte, name, i32 binary length, subtype, bytes, trailing NUL.
    let len = 4 + 1 + NAME.len() + 4 + 1 + key_material.len() + 1;
    let (Ok(doc_len), Ok(bin_len)) = (i32::try_from(len), i32::try_from(key_material.len())) else {
        return Err(Error::invalid("key material too long"));
    };
    let mut doc = Zeroizing::new(Vec::with_capacity(len));
    doc.extend_from_slice(&doc_len.to_le_bytes());
    doc.push(0x05); // binary
    doc.extend_from_slice(NAME);
    doc.extend_from_slice(&bin_len.to_le_bytes());
    doc.push(0x00); // generic subtype
    doc.extend_from_slice(key_material);
    doc.push(0x00);
    debug_assert_eq!(doc.capacity(), len, "the buffer never grew");
    Ok(doc)
}

/// The states `mongocrypt_ctx_mongo_op`, `_mongo_feed` and `_mongo_done` accept.
const NEED_MONGO: &[State] =
    &[State::NeedMongoCollinfo, State::NeedMongoCollinfoWithDb, State::NeedMongoMarkings, State::NeedMongoKeys];

type SetoptBinary = unsafe extern "C" fn(*mut sys::mongocrypt_ctx_t, *mut sys::mongocrypt_binary_t) -> bool;

/// One initialised operation: `Send + 'static`, so it can be built in one task or thread and driven or finalized
/// in another.
///
/// It holds a clone of its [`Crypt`], so the `mongocrypt_t` lives at least as long as the ctx, even when every
/// other handle to it is dropped. Not `Sync`: "functions on derived handles (e.g. mongocrypt_ctx_t) are not [thread
/// safe] and must be owned by a single thread". Methods that change the state take `&mut self`, so the views that
/// [`mongo_op`](Ctx::mongo_op), [`mongo_db`](Ctx::mongo_db) and [`finalize`](Ctx::finalize) return cannot be used
/// after the next such call.
pub struct Ctx {
    raw: NonNull<sys::mongocrypt_ctx_t>,
    /// The view the last `mongocrypt_ctx_mongo_op` of this state returned (pointer, length), so libmongocrypt's
    /// mongo_op runs once per state: in NEED_MONGO_COLLINFO each call re-encodes the filter over the previous one
    /// without freeing it (a leak per call, 1.7.2 to 1.21.0). The data is "valid until ctx is destroyed"; every
    /// `&mut self` call that can change the state clears it ([`Ctx::state_may_change`]).
    mongo_op_view: Cell<Option<NonNull<RawDocument>>>,
    /// Whether the mongocryptd reply of this NEED_MONGO_MARKINGS state was fed: a second one is refused, as
    /// libmongocrypt (1.21.0 at least; found by the fuzz under LeakSanitizer) leaks the first when fed another.
    markings_fed: bool,
    /// Set when a runner gave up on the ctx mid-state (its deadline passed, see [`Ctx::abandon`]): libmongocrypt
    /// cannot be failed from outside in a NEED_MONGO_* state, so from then on the ctx reports [`State::Error`] and
    /// this error itself, and every call refuses to run, as in libmongocrypt's ERROR state.
    abandoned: Option<Box<Error>>,
    /// Dropped after the ctx is destroyed (Drop runs before the fields are dropped).
    _crypt: Crypt,
}

// SAFETY: the ctx is used by one thread at a time (it is not Sync, and every call takes &self or &mut self), the
// Crypt it holds is Send + Sync, and the cached mongo_op view points into the ctx's own data, which moves with it.
unsafe impl Send for Ctx {}

impl Ctx {
    fn new(raw: NonNull<sys::mongocrypt_ctx_t>, crypt: &Crypt) -> Ctx {
        Ctx { raw, mongo_op_view: Cell::new(None), markings_fed: false, abandoned: None, _crypt: crypt.clone() }
    }

    #[inline]
    pub(crate) fn ptr(&self) -> *mut sys::mongocrypt_ctx_t {
        self.raw.as_ptr()
    }

    /// Forgets the cached [`mongo_op`](Ctx::mongo_op) view; called by every `&mut self` method before it calls
    /// into libmongocrypt in a way that can change the state (the borrow checker has already ended every view).
    #[inline]
    pub(crate) fn state_may_change(&mut self) {
        self.mongo_op_view.set(None);
        self.markings_fed = false;
    }

    /// The ctx's error status as an [`Error`], after a call that reported failure.
    #[cold]
    pub(crate) fn status_error(&self) -> Error {
        self.error().unwrap_or_else(|| Error::Client { code: 0, message: "unknown error".into() })
    }

    #[inline]
    pub(crate) fn check(&self, ok: bool) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.status_error())
        }
    }

    /// The current state, when it is one of `expected`. Otherwise libmongocrypt is not called, as it would answer
    /// a bare "wrong state" and move the ctx to ERROR: in ERROR this returns the ctx's own error (what libmongocrypt
    /// returns there, unchanged), in any other state [`Error::WrongState`], and the ctx is left as it was.
    #[inline]
    fn expect_state(&self, operation: &'static str, expected: &'static [State]) -> Result<State> {
        let state = self.state();
        if expected.contains(&state) {
            return Ok(state);
        }
        Err(self.wrong_state(operation, expected, state))
    }

    /// [`expect_state`](Self::expect_state)'s error, out of the line of every call that passes.
    #[cold]
    #[inline(never)]
    fn wrong_state(&self, operation: &'static str, expected: &'static [State], state: State) -> Error {
        match state {
            State::Error => self.status_error(),
            state => Error::WrongState { operation, expected, state },
        }
    }

    /// The error of a ctx that failed (in [`State::Error`], or after a call returned `Err`), with libmongocrypt's
    /// message; `None` while the ctx is healthy.
    pub fn error(&self) -> Option<Error> {
        self.status().err()
    }

    /// The ctx's status (`mongocrypt_ctx_status`): `Err` once the ctx has failed.
    pub fn status(&self) -> Result<()> {
        if let Some(error) = &self.abandoned {
            return Err(Error::clone(error));
        }
        let status = Status::new();
        // SAFETY: the ctx is live; its status is copied into ours.
        unsafe { sys::mongocrypt_ctx_status(self.ptr(), status.as_ptr()) };
        status.to_result()
    }

    /// The current state.
    pub fn state(&self) -> State {
        if self.abandoned.is_some() {
            return State::Error;
        }
        // SAFETY: the ctx is live; reading the state has no preconditions.
        State::from_raw(unsafe { sys::mongocrypt_ctx_state(self.ptr()) })
    }

    /// Leaves the ctx in [`State::Error`] with `error`, whatever state libmongocrypt is in: what the runner does when
    /// the operation's deadline passes, so that a ctx is never left half-fed. Every later call then fails as in
    /// libmongocrypt's ERROR state, with `error`.
    pub(crate) fn abandon(&mut self, error: Error) {
        self.state_may_change();
        self.abandoned = Some(Box::new(error));
    }

    /// The document for the current NEED_MONGO_* state: a listCollections filter, a mongocryptd command, or a key
    /// vault find filter.
    ///
    /// libmongocrypt's `mongocrypt_ctx_mongo_op` runs once per state: later calls in the same state return the same
    /// view (in NEED_MONGO_COLLINFO, libmongocrypt would otherwise re-encode the filter and leak the previous one).
    /// Outside the four NEED_MONGO_* states, [`Error::WrongState`].
    pub fn mongo_op(&self) -> Result<&RawDocument> {
        self.expect_state("mongo_op", NEED_MONGO)?;
        if let Some(doc) = self.mongo_op_view.get() {
            // SAFETY: the document came from a successful mongocrypt_ctx_mongo_op in this state (the cache is
            // cleared by every call that can change it), whose data is "valid until ctx is destroyed"; the ctx
            // outlives the &self borrow.
            return Ok(unsafe { doc.as_ref() });
        }
        let out = BinaryOut::new();
        // SAFETY: the ctx is live; on success `out` views data "valid until ctx is destroyed", so borrowing it for
        // as long as &self (and no state change, which needs &mut self) is sound.
        let ok = unsafe { sys::mongocrypt_ctx_mongo_op(self.ptr(), out.as_ptr()) };
        self.check(ok)?;
        // SAFETY: as above.
        let doc = unsafe { out.document() }?;
        self.mongo_op_view.set(Some(NonNull::from(doc)));
        Ok(doc)
    }

    /// The database to run listCollections on, in NEED_MONGO_COLLINFO_WITH_DB (in another state,
    /// [`Error::WrongState`]). libmongocrypt ≥ 1.10.
    pub fn mongo_db(&self) -> Result<&str> {
        requires!(mongocrypt_has_ctx_mongo_db, "mongocrypt_ctx_mongo_db", "1.10.0", {
            self.expect_state("mongo_db", &[State::NeedMongoCollinfoWithDb])?;
            // SAFETY: the ctx is live; the string "is valid until mongocrypt_ctx_destroy is called", or NULL with an
            // error status set.
            let ptr = unsafe { sys::mongocrypt_ctx_mongo_db(self.ptr()) };
            if ptr.is_null() {
                return Err(self.status_error());
            }
            // SAFETY: a NUL-terminated string owned by the ctx, borrowed for &self.
            unsafe { std::ffi::CStr::from_ptr(ptr) }.to_str().map_err(|_| Error::invalid("database name is not UTF-8"))
        })
    }

    /// Feeds one reply document: a listCollections result, the mongocryptd reply, or a key document. Outside the
    /// four NEED_MONGO_* states, [`Error::WrongState`].
    pub fn mongo_feed(&mut self, reply: &(impl BsonInput + ?Sized)) -> Result<()> {
        let state = self.expect_state("mongo_feed", NEED_MONGO)?;
        let arg = match state {
            State::NeedMongoMarkings => BsonArg::visiting(reply, &mut payload::refuse_bad_marking)?,
            _ => BsonArg::new(reply)?,
        };
        match state {
            State::NeedMongoMarkings if self.markings_fed => {
                return Err(Error::invalid(
                    "the mongocryptd reply of this NEED_MONGO_MARKINGS state was already fed: call mongo_done",
                ))
            }
            State::NeedMongoKeys if *Version::linked() < Version::new(1, 21, 0) => {
                payload::check_key_material(arg.bytes())?
            }
            _ => {}
        }
        let bin = arg.view()?;
        // SAFETY: the ctx is live and exclusively borrowed; "The viewed data is copied".
        let ok = unsafe { sys::mongocrypt_ctx_mongo_feed(self.ptr(), bin.as_ptr()) };
        if !ok {
            // A failed feed moves the ctx to the error state; a successful one keeps the state (and its op).
            self.state_may_change();
        } else if state == State::NeedMongoMarkings {
            self.markings_fed = true;
        }
        self.check(ok)
    }

    /// Ends the current NEED_MONGO_* state; in another state, [`Error::WrongState`].
    pub fn mongo_done(&mut self) -> Result<()> {
        self.expect_state("mongo_done", NEED_MONGO)?;
        self.state_may_change();
        // SAFETY: the ctx is live and exclusively borrowed.
        let ok = unsafe { sys::mongocrypt_ctx_mongo_done(self.ptr()) };
        self.check(ok)
    }

    /// The KMS requests of the NEED_KMS state. The [`KmsCtx`](crate::KmsCtx)s it hands out cannot outlive it;
    /// [`KmsScope::done`] (`mongocrypt_ctx_kms_done`) consumes it and returns its error, and dropping it ends the
    /// state too, leaving the error in the ctx's [`status`](Ctx::status).
    ///
    /// In any other state this is [`Error::WrongState`] (in ERROR, the ctx's error) and the ctx is left as it was.
    pub fn kms_scope(&mut self) -> Result<KmsScope<'_>> {
        self.expect_state("kms_scope", &[State::NeedKms])?;
        self.state_may_change();
        Ok(KmsScope::new(self))
    }

    /// Supplies KMS credentials in NEED_KMS_CREDENTIALS: a [`KmsProviders`](crate::KmsProviders) or raw document;
    /// providers it leaves out keep the `Crypt`'s settings. In another state, [`Error::WrongState`].
    pub fn provide_kms_providers(&mut self, providers: &(impl BsonInput + ?Sized)) -> Result<()> {
        self.expect_state("provide_kms_providers", &[State::NeedKmsCredentials])?;
        self.state_may_change();
        let arg = BsonArg::new(providers)?;
        let bin = arg.view()?;
        // SAFETY: the ctx is live and exclusively borrowed; the document is copied.
        let ok = unsafe { sys::mongocrypt_ctx_provide_kms_providers(self.ptr(), bin.as_ptr()) };
        self.check(ok)
    }

    /// Finishes the operation in READY and returns its result, borrowed from the ctx. In another state (a second
    /// call, in DONE, included), [`Error::WrongState`].
    #[inline]
    pub fn finalize(&mut self) -> Result<&RawDocument> {
        RawDocument::from_bytes(self.finalize_bytes()?).map_err(Error::from)
    }

    /// Finishes the operation and copies the result out, ending the borrow of the ctx.
    #[inline]
    pub fn finalize_owned(&mut self) -> Result<RawDocumentBuf> {
        // Checked once, by from_bytes: `finalize` then `to_owned` would check the same frame twice.
        RawDocumentBuf::from_bytes(self.finalize_bytes()?.to_vec()).map_err(Error::from)
    }

    /// `mongocrypt_ctx_finalize`'s result, not yet checked as BSON.
    #[inline]
    fn finalize_bytes(&mut self) -> Result<&[u8]> {
        self.expect_state("finalize", &[State::Ready])?;
        self.state_may_change();
        let out = BinaryOut::new();
        // SAFETY: the ctx is live and exclusively borrowed; "The data viewed by out is guaranteed to be valid until
        // ctx is destroyed", and the returned borrow keeps the ctx alive and unchanged.
        let ok = unsafe { sys::mongocrypt_ctx_finalize(self.ptr(), out.as_ptr()) };
        self.check(ok)?;
        // SAFETY: as above.
        Ok(unsafe { out.bytes() })
    }

    /// The raw ctx, for other FFI layers. It stays owned by this `Ctx`. [`mongo_op`](Ctx::mongo_op) caches its
    /// view until one of this `Ctx`'s state-changing methods runs, so it does not see a state changed through this
    /// pointer.
    pub fn as_raw(&self) -> *mut sys::mongocrypt_ctx_t {
        self.ptr()
    }

    /// Takes ownership of a ctx another FFI layer created on `crypt`; it is destroyed when the `Ctx` drops, and
    /// holds a clone of `crypt` until then.
    ///
    /// # Safety
    /// `raw` must come from `mongocrypt_ctx_new(crypt.as_raw())`, be owned by no one else, and not be used through
    /// any other pointer afterwards.
    pub unsafe fn from_raw(crypt: &Crypt, raw: *mut sys::mongocrypt_ctx_t) -> Ctx {
        Ctx::new(NonNull::new(raw).expect("Ctx::from_raw: NULL ctx"), crypt)
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: destroyed once; no view of it survives (they all borrow self), and its mongocrypt_t is still
        // alive: the `_crypt` field is dropped after this.
        unsafe { sys::mongocrypt_ctx_destroy(self.ptr()) }
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("state", &self.state()).finish()
    }
}
