//! `mongocrypt_ctx_t`: one operation's state machine. [`CtxBuilder`] sets its options and initialises it as one
//! of the six kinds; [`Ctx`] is then driven state by state until it is done.

use std::marker::PhantomData;
use std::ptr::NonNull;

use bson::raw::RawBinaryRef;
use bson::spec::BinarySubtype;
use bson::{doc, RawDocument, RawDocumentBuf};
use mongocrypt_sys as sys;
use zeroize::Zeroize;

use crate::binary::{BinaryOut, BinaryView, BsonArg, BsonInput};
use crate::crypt::{str_arg, Crypt};
use crate::error::{requires, Error, Result, Status};
use crate::kms::KmsScope;
use crate::options::{Algorithm, QueryType};

/// The state of a [`Ctx`] (`mongocrypt_ctx_state_t`): what the driver must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// The operation failed; [`Ctx::status`] holds the error.
    Error,
    /// Run listCollections with [`Ctx::mongo_op`] as filter, feed each result, then `mongo_done`.
    NeedMongoCollinfo,
    /// As `NeedMongoCollinfo`, on the database [`Ctx::mongo_db`] names.
    NeedMongoCollinfoWithDb,
    /// Send [`Ctx::mongo_op`] to mongocryptd (or crypt_shared did it), feed the reply, then `mongo_done`.
    NeedMongoMarkings,
    /// Find [`Ctx::mongo_op`] in the key vault, feed each key document, then `mongo_done`.
    NeedMongoKeys,
    /// Serve the KMS requests of [`Ctx::kms_scope`].
    NeedKms,
    /// Supply on-demand KMS credentials with [`Ctx::provide_kms_providers`].
    NeedKmsCredentials,
    /// Call [`Ctx::finalize`].
    Ready,
    /// Finished.
    Done,
    /// A state this binding does not know (a newer library's); treat it as unsupported.
    Unknown(u32),
}

impl State {
    fn from_raw(state: sys::mongocrypt_ctx_state_t) -> State {
        match state {
            sys::MONGOCRYPT_CTX_ERROR => State::Error,
            sys::MONGOCRYPT_CTX_NEED_MONGO_COLLINFO => State::NeedMongoCollinfo,
            // Headers before 1.10 lack the constant; their libraries never enter the state.
            #[cfg(mongocrypt_has_ctx_mongo_db)]
            sys::MONGOCRYPT_CTX_NEED_MONGO_COLLINFO_WITH_DB => State::NeedMongoCollinfoWithDb,
            sys::MONGOCRYPT_CTX_NEED_MONGO_MARKINGS => State::NeedMongoMarkings,
            sys::MONGOCRYPT_CTX_NEED_MONGO_KEYS => State::NeedMongoKeys,
            sys::MONGOCRYPT_CTX_NEED_KMS => State::NeedKms,
            sys::MONGOCRYPT_CTX_NEED_KMS_CREDENTIALS => State::NeedKmsCredentials,
            sys::MONGOCRYPT_CTX_READY => State::Ready,
            sys::MONGOCRYPT_CTX_DONE => State::Done,
            other => State::Unknown(other),
        }
    }
}

/// A ctx whose options are being set. "@pre ctx has not been initialized" holds for every setopt because the
/// init methods consume the builder and return the [`Ctx`].
pub struct CtxBuilder<'c> {
    ctx: Ctx<'c>,
    /// Whether an AWS master key was set: libmongocrypt 1.21 dereferences NULL when an AWS endpoint comes without.
    aws_master_key: bool,
}

impl<'c> CtxBuilder<'c> {
    pub(crate) fn new(crypt: &'c Crypt) -> CtxBuilder<'c> {
        // SAFETY: `crypt` is initialised; "mongocrypt_ctx_new" returns a ctx that must not outlive it, which the
        // 'c borrow enforces.
        let raw = unsafe { sys::mongocrypt_ctx_new(crypt.as_raw()) };
        let ctx = Ctx { raw: NonNull::new(raw).expect("mongocrypt_ctx_new returned NULL"), _crypt: PhantomData };
        CtxBuilder { ctx, aws_master_key: false }
    }

    fn check(self, ok: bool) -> Result<CtxBuilder<'c>> {
        if ok {
            Ok(self)
        } else {
            Err(self.ctx.error())
        }
    }

    fn with_view(self, bin: &BinaryView<'_>, setopt: SetoptBinary) -> Result<CtxBuilder<'c>> {
        // SAFETY: before init (the builder exists); every binary setopt says "The viewed data is copied", so the
        // view may end after the call.
        let ok = unsafe { setopt(self.ctx.ptr(), bin.as_ptr()) };
        self.check(ok)
    }

    fn with_bytes(self, bytes: &[u8], setopt: SetoptBinary) -> Result<CtxBuilder<'c>> {
        self.with_view(&BinaryView::new(bytes)?, setopt)
    }

    fn with_document(self, doc: &(impl BsonInput + ?Sized), setopt: SetoptBinary) -> Result<CtxBuilder<'c>> {
        let arg = BsonArg::new(doc)?;
        let bin = arg.view()?;
        self.with_view(&bin, setopt)
    }

    /// The data key to encrypt with, by `_id`: the 16 bytes of its UUID.
    pub fn key_id(self, key_id: &[u8]) -> Result<CtxBuilder<'c>> {
        self.with_bytes(key_id, sys::mongocrypt_ctx_setopt_key_id)
    }

    /// The data key to encrypt with, by alternate name; for a new data key, call once per name.
    pub fn key_alt_name(self, name: &str) -> Result<CtxBuilder<'c>> {
        self.with_document(&doc! { "keyAltName": name }, sys::mongocrypt_ctx_setopt_key_alt_name)
    }

    /// The 96 bytes of a new data key, instead of random ones.
    pub fn key_material(self, key_material: &[u8]) -> Result<CtxBuilder<'c>> {
        let mut doc = RawDocumentBuf::new();
        doc.append(bson::cstr!("keyMaterial"), RawBinaryRef { subtype: BinarySubtype::Generic, bytes: key_material });
        let result = self.with_bytes(doc.as_bytes(), sys::mongocrypt_ctx_setopt_key_material);
        // The copy holds the plaintext data key.
        doc.into_bytes().zeroize();
        result
    }

    /// The explicit encryption algorithm.
    pub fn algorithm(self, algorithm: &Algorithm) -> Result<CtxBuilder<'c>> {
        let (name, len) = str_arg(algorithm.as_str())?;
        // SAFETY: before init; the string is read for `len` bytes and copied.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_algorithm(self.ctx.ptr(), name.as_ptr(), len) };
        self.check(ok)
    }

    /// The legacy AWS master key setter; prefer [`key_encryption_key`](Self::key_encryption_key).
    pub fn masterkey_aws(mut self, region: &str, cmk: &str) -> Result<CtxBuilder<'c>> {
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
    pub fn masterkey_aws_endpoint(self, endpoint: &str) -> Result<CtxBuilder<'c>> {
        if !self.aws_master_key {
            return Err(Error::invalid("masterkey_aws_endpoint needs an AWS master key: set masterkey_aws first"));
        }
        let (endpoint, len) = str_arg(endpoint)?;
        // SAFETY: before init; the string is read for `len` bytes and copied.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_masterkey_aws_endpoint(self.ctx.ptr(), endpoint.as_ptr(), len) };
        self.check(ok)
    }

    /// The legacy local master key setter; prefer [`key_encryption_key`](Self::key_encryption_key).
    pub fn masterkey_local(self) -> Result<CtxBuilder<'c>> {
        // SAFETY: before init; no arguments besides the ctx.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_masterkey_local(self.ctx.ptr()) };
        self.check(ok)
    }

    /// The key encryption key of a new data key, or the new one for rewrap: a
    /// [`KeyEncryptionKey`](crate::KeyEncryptionKey) or a raw `{provider, ...}` document.
    pub fn key_encryption_key(mut self, kek: &(impl BsonInput + ?Sized)) -> Result<CtxBuilder<'c>> {
        let arg = BsonArg::new(kek)?;
        let provider = RawDocument::from_bytes(arg.bytes()).ok().and_then(|d| d.get_str("provider").ok());
        self.aws_master_key |= provider.is_some_and(|p| p == "aws" || p.starts_with("aws:"));
        let bin = arg.view()?;
        self.with_view(&bin, sys::mongocrypt_ctx_setopt_key_encryption_key)
    }

    /// The contention factor of indexed Queryable Encryption.
    pub fn contention_factor(self, contention_factor: i64) -> Result<CtxBuilder<'c>> {
        // SAFETY: before init; a plain integer.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_contention_factor(self.ctx.ptr(), contention_factor) };
        self.check(ok)
    }

    /// The index key of explicit Queryable Encryption, by `_id` UUID bytes (default: the [`key_id`](Self::key_id)).
    pub fn index_key_id(self, key_id: &[u8]) -> Result<CtxBuilder<'c>> {
        self.with_bytes(key_id, sys::mongocrypt_ctx_setopt_index_key_id)
    }

    /// The query type of explicit Queryable Encryption.
    pub fn query_type(self, query_type: &QueryType) -> Result<CtxBuilder<'c>> {
        let (name, len) = str_arg(query_type.as_str())?;
        // SAFETY: before init; the string is read for `len` bytes and copied.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_query_type(self.ctx.ptr(), name.as_ptr(), len) };
        self.check(ok)
    }

    /// Options of the range algorithm: [`RangeOptions`](crate::RangeOptions) or a raw document.
    pub fn algorithm_range(self, opts: &(impl BsonInput + ?Sized)) -> Result<CtxBuilder<'c>> {
        self.with_document(opts, sys::mongocrypt_ctx_setopt_algorithm_range)
    }

    /// Options of the string algorithm: [`TextOptions`](crate::TextOptions) or a raw document. libmongocrypt ≥ 1.15.
    pub fn algorithm_text(self, opts: &(impl BsonInput + ?Sized)) -> Result<CtxBuilder<'c>> {
        requires!(
            mongocrypt_has_ctx_setopt_algorithm_text,
            "mongocrypt_ctx_setopt_algorithm_text",
            "1.15.0",
            { self.with_document(opts, sys::mongocrypt_ctx_setopt_algorithm_text) },
            unused(opts)
        )
    }

    fn init(self, ok: bool) -> Result<Ctx<'c>> {
        if ok {
            Ok(self.ctx)
        } else {
            Err(self.ctx.error())
        }
    }

    fn init_with(self, doc: &(impl BsonInput + ?Sized), init: SetoptBinary) -> Result<Ctx<'c>> {
        let arg = BsonArg::new(doc)?;
        let bin = arg.view()?;
        // SAFETY: the ctx is not yet initialised (the builder is consumed here, so init runs once); every init that
        // takes a binary copies it ("The viewed data is copied").
        let ok = unsafe { init(self.ctx.ptr(), bin.as_ptr()) };
        self.init(ok)
    }

    /// A new data key, wrapped by the [`key_encryption_key`](Self::key_encryption_key).
    pub fn datakey(self) -> Result<Ctx<'c>> {
        // SAFETY: not yet initialised; no arguments besides the ctx.
        let ok = unsafe { sys::mongocrypt_ctx_datakey_init(self.ctx.ptr()) };
        self.init(ok)
    }

    /// Automatic encryption of command `cmd` run on database `db`.
    pub fn encrypt(self, db: &str, cmd: &(impl BsonInput + ?Sized)) -> Result<Ctx<'c>> {
        let (db, db_len) = str_arg(db)?;
        let arg = BsonArg::new(cmd)?;
        let bin = arg.view()?;
        // SAFETY: not yet initialised; db is read for `db_len` bytes and copied, and so is cmd.
        let ok = unsafe { sys::mongocrypt_ctx_encrypt_init(self.ctx.ptr(), db.as_ptr(), db_len, bin.as_ptr()) };
        self.init(ok)
    }

    /// Explicit encryption of the value `v` of `{"v": value}`.
    pub fn explicit_encrypt(self, value: &(impl BsonInput + ?Sized)) -> Result<Ctx<'c>> {
        self.init_with(value, sys::mongocrypt_ctx_explicit_encrypt_init)
    }

    /// Explicit encryption of a range query expression `{"v": {"$and": [...]}}`.
    pub fn explicit_encrypt_expression(self, expression: &(impl BsonInput + ?Sized)) -> Result<Ctx<'c>> {
        self.init_with(expression, sys::mongocrypt_ctx_explicit_encrypt_expression_init)
    }

    /// Automatic decryption of a server reply.
    pub fn decrypt(self, doc: &(impl BsonInput + ?Sized)) -> Result<Ctx<'c>> {
        self.init_with(doc, sys::mongocrypt_ctx_decrypt_init)
    }

    /// Explicit decryption of `{"v": ciphertext}`.
    pub fn explicit_decrypt(self, value: &(impl BsonInput + ?Sized)) -> Result<Ctx<'c>> {
        self.init_with(value, sys::mongocrypt_ctx_explicit_decrypt_init)
    }

    /// Rewrapping of the data keys matching `filter` under the [`key_encryption_key`](Self::key_encryption_key)
    /// (or each key's current one when none is set).
    pub fn rewrap_many_datakey(self, filter: &(impl BsonInput + ?Sized)) -> Result<Ctx<'c>> {
        self.init_with(filter, sys::mongocrypt_ctx_rewrap_many_datakey_init)
    }
}

type SetoptBinary = unsafe extern "C" fn(*mut sys::mongocrypt_ctx_t, *mut sys::mongocrypt_binary_t) -> bool;

/// One initialised operation. It borrows its [`Crypt`] (`'c`), so it cannot outlive it.
///
/// `Send` but not `Sync`: a ctx may move between threads, but "a mongocrypt_ctx_t is not thread-safe". Methods
/// that change the state take `&mut self`, so the views that [`mongo_op`](Ctx::mongo_op),
/// [`mongo_db`](Ctx::mongo_db) and [`finalize`](Ctx::finalize) return cannot be used after the next such call.
pub struct Ctx<'c> {
    raw: NonNull<sys::mongocrypt_ctx_t>,
    _crypt: PhantomData<&'c Crypt>,
}

// SAFETY: the ctx is used by one thread at a time (it is not Sync, and every call takes &self or &mut self), and
// the Crypt it borrows is Sync.
unsafe impl Send for Ctx<'_> {}

impl<'c> Ctx<'c> {
    pub(crate) fn ptr(&self) -> *mut sys::mongocrypt_ctx_t {
        self.raw.as_ptr()
    }

    /// The ctx's error status as an [`Error`].
    pub(crate) fn error(&self) -> Error {
        self.status().err().unwrap_or_else(|| Error::Client { code: 0, message: "unknown error".into() })
    }

    fn check(&self, ok: bool) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    /// The ctx's status (`mongocrypt_ctx_status`): `Err` once the ctx has failed.
    pub fn status(&self) -> Result<()> {
        let status = Status::new();
        // SAFETY: the ctx is live; its status is copied into ours.
        unsafe { sys::mongocrypt_ctx_status(self.ptr(), status.as_ptr()) };
        status.to_result()
    }

    /// The current state.
    pub fn state(&self) -> State {
        // SAFETY: the ctx is live; reading the state has no preconditions.
        State::from_raw(unsafe { sys::mongocrypt_ctx_state(self.ptr()) })
    }

    /// The document for the current NEED_MONGO_* state: a listCollections filter, a mongocryptd command, or a key
    /// vault find filter.
    ///
    /// Call it once per state and keep the view: libmongocrypt re-encodes the document on every call, and in
    /// NEED_MONGO_COLLINFO it does not free the previous encoding.
    pub fn mongo_op(&self) -> Result<&RawDocument> {
        let out = BinaryOut::new();
        // SAFETY: the ctx is live; on success `out` views data "valid until ctx is destroyed", so borrowing it for
        // as long as &self (and no state change, which needs &mut self) is sound.
        let ok = unsafe { sys::mongocrypt_ctx_mongo_op(self.ptr(), out.as_ptr()) };
        self.check(ok)?;
        // SAFETY: as above.
        unsafe { out.document() }
    }

    /// The database to run listCollections on, in NEED_MONGO_COLLINFO_WITH_DB. libmongocrypt ≥ 1.10.
    pub fn mongo_db(&self) -> Result<&str> {
        requires!(mongocrypt_has_ctx_mongo_db, "mongocrypt_ctx_mongo_db", "1.10.0", {
            // SAFETY: the ctx is live; the string "is valid until mongocrypt_ctx_destroy is called", or NULL with an
            // error status set.
            let ptr = unsafe { sys::mongocrypt_ctx_mongo_db(self.ptr()) };
            if ptr.is_null() {
                return Err(self.error());
            }
            // SAFETY: a NUL-terminated string owned by the ctx, borrowed for &self.
            unsafe { std::ffi::CStr::from_ptr(ptr) }.to_str().map_err(|_| Error::invalid("database name is not UTF-8"))
        })
    }

    /// Feeds one reply document: a listCollections result, the mongocryptd reply, or a key document.
    pub fn mongo_feed(&mut self, reply: &(impl BsonInput + ?Sized)) -> Result<()> {
        let arg = BsonArg::new(reply)?;
        let bin = arg.view()?;
        // SAFETY: the ctx is live and exclusively borrowed; "The viewed data is copied".
        let ok = unsafe { sys::mongocrypt_ctx_mongo_feed(self.ptr(), bin.as_ptr()) };
        self.check(ok)
    }

    /// Ends the current NEED_MONGO_* state.
    pub fn mongo_done(&mut self) -> Result<()> {
        // SAFETY: the ctx is live and exclusively borrowed.
        let ok = unsafe { sys::mongocrypt_ctx_mongo_done(self.ptr()) };
        self.check(ok)
    }

    /// The KMS requests of the NEED_KMS state. The [`KmsCtx`](crate::KmsCtx)s it hands out cannot outlive it, and
    /// [`KmsScope::done`] (`mongocrypt_ctx_kms_done`) consumes it and returns its error.
    pub fn kms_scope(&mut self) -> KmsScope<'_, 'c> {
        KmsScope::new(self)
    }

    /// Supplies KMS credentials in NEED_KMS_CREDENTIALS: a [`KmsProviders`](crate::KmsProviders) or raw document;
    /// providers it leaves out keep the `Crypt`'s settings.
    pub fn provide_kms_providers(&mut self, providers: &(impl BsonInput + ?Sized)) -> Result<()> {
        let arg = BsonArg::new(providers)?;
        let bin = arg.view()?;
        // SAFETY: the ctx is live and exclusively borrowed; the document is copied.
        let ok = unsafe { sys::mongocrypt_ctx_provide_kms_providers(self.ptr(), bin.as_ptr()) };
        self.check(ok)
    }

    /// Finishes the operation in READY and returns its result, borrowed from the ctx.
    pub fn finalize(&mut self) -> Result<&RawDocument> {
        let out = BinaryOut::new();
        // SAFETY: the ctx is live and exclusively borrowed; "The data viewed by out is guaranteed to be valid until
        // ctx is destroyed", and the returned borrow keeps the ctx alive and unchanged.
        let ok = unsafe { sys::mongocrypt_ctx_finalize(self.ptr(), out.as_ptr()) };
        self.check(ok)?;
        // SAFETY: as above.
        unsafe { out.document() }
    }

    /// Finishes the operation and copies the result out, ending the borrow of the ctx.
    pub fn finalize_owned(&mut self) -> Result<RawDocumentBuf> {
        self.finalize().map(ToOwned::to_owned)
    }

    /// The raw ctx, for other FFI layers. It stays owned by this `Ctx`.
    pub fn as_raw(&self) -> *mut sys::mongocrypt_ctx_t {
        self.ptr()
    }

    /// Takes ownership of a ctx another FFI layer created on `crypt`; it is destroyed when the `Ctx` drops.
    ///
    /// # Safety
    /// `raw` must come from `mongocrypt_ctx_new(crypt.as_raw())`, be owned by no one else, and not be used through
    /// any other pointer afterwards.
    pub unsafe fn from_raw(crypt: &'c Crypt, raw: *mut sys::mongocrypt_ctx_t) -> Ctx<'c> {
        let _ = crypt;
        Ctx { raw: NonNull::new(raw).expect("Ctx::from_raw: NULL ctx"), _crypt: PhantomData }
    }
}

impl Drop for Ctx<'_> {
    fn drop(&mut self) {
        // SAFETY: destroyed once; no view of it survives (they all borrow self), and its Crypt is still alive.
        unsafe { sys::mongocrypt_ctx_destroy(self.ptr()) }
    }
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("state", &self.state()).finish()
    }
}
