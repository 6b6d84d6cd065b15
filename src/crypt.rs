//! `mongocrypt_t`: one per client, configured by [`CryptBuilder`], then shared as a [`Crypt`].

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use libmongocrypt_sys as sys;
use zeroize::Zeroize;

use crate::binary::{BinaryView, BsonArg, BsonInput};
use crate::ctx::CtxBuilder;
use crate::error::{requires, Error, Result};
use crate::ffi::Status;
use crate::hooks::{self, CryptoProvider, InstalledHooks, IntoCryptoProvider, RustCrypto};
use crate::log::{self as mlog, LogHandler, LogLevel};
use crate::version::Version;

/// Whether the linked libmongocrypt has native cryptography. When it has none (MongoDB's "nocrypto" builds),
/// [`CryptBuilder::build`] installs [`RustCrypto`] unless a provider was set.
///
/// Libraries before 1.9 cannot say; they are taken to have crypto, as every packaged build of them does.
pub fn is_crypto_available() -> bool {
    #[cfg(mongocrypt_has_is_crypto_available)]
    {
        // SAFETY: mongocrypt_is_crypto_available takes no arguments and only reports a build setting.
        unsafe { sys::mongocrypt_is_crypto_available() }
    }
    #[cfg(not(mongocrypt_has_is_crypto_available))]
    {
        true
    }
}

/// Callbacks that libmongocrypt holds raw pointers to; owned beside the handle and dropped after it.
#[derive(Default)]
struct Callbacks {
    log: Option<Box<LogHandler>>,
    hooks: Option<InstalledHooks>,
}

/// A `mongocrypt_t` being configured: every `mongocrypt_setopt_*` is a method. Options may only be set before
/// `mongocrypt_init`, which [`build`](CryptBuilder::build) calls; the builder is consumed there, so a setopt after
/// init does not compile.
pub struct CryptBuilder {
    raw: NonNull<sys::mongocrypt_t>,
    callbacks: Callbacks,
    provider: Option<Arc<dyn CryptoProvider>>,
    log_set: bool,
}

// SAFETY: an uninitialised mongocrypt_t is owned by this one builder and never shared; moving it to another
// thread is moving ownership ("Multiple mongocrypt_t handles may be created"; none is used from two threads).
unsafe impl Send for CryptBuilder {}

impl CryptBuilder {
    /// A new handle with no options set.
    pub fn new() -> CryptBuilder {
        // SAFETY: mongocrypt_new has no preconditions; the handle is destroyed in Drop or owned by the Crypt.
        let raw = unsafe { sys::mongocrypt_new() };
        CryptBuilder {
            raw: NonNull::new(raw).expect("mongocrypt_new returned NULL (out of memory)"),
            callbacks: Callbacks::default(),
            provider: None,
            log_set: false,
        }
    }

    fn ptr(&self) -> *mut sys::mongocrypt_t {
        self.raw.as_ptr()
    }

    /// The error status of the handle after a setopt returned false.
    fn check(self, ok: bool) -> Result<CryptBuilder> {
        if ok {
            Ok(self)
        } else {
            Err(status_error(self.ptr()))
        }
    }

    /// Sends libmongocrypt's log messages to `handler` instead of the `log` crate (the default, under target
    /// `libmongocrypt`). A panic in the handler is caught and the message dropped.
    pub fn log_handler(mut self, handler: impl Fn(LogLevel, &str) + Send + Sync + 'static) -> Result<CryptBuilder> {
        self.log_set = true;
        self.set_log_handler(Box::new(handler))
    }

    fn set_log_handler(mut self, handler: LogHandler) -> Result<CryptBuilder> {
        let handler = Box::new(handler);
        let ctx = &*handler as *const LogHandler as *mut c_void;
        self.callbacks.log = Some(handler);
        // SAFETY: before init ("@pre mongocrypt_init has not been called"); `ctx` points into a Box owned by
        // self.callbacks, which outlives the handle: Crypt drops it after mongocrypt_destroy.
        let ok = unsafe { sys::mongocrypt_setopt_log_handler(self.ptr(), Some(mlog::log_trampoline), ctx) };
        self.check(ok)
    }

    /// Sets KMS provider credentials: a [`KmsProviders`](crate::KmsProviders) or a raw `{name: {credentials}}`
    /// document (`mongocrypt_setopt_kms_providers`).
    pub fn kms_providers(self, providers: &(impl BsonInput + ?Sized)) -> Result<CryptBuilder> {
        let arg = BsonArg::new(providers)?;
        let bin = arg.view()?;
        // SAFETY: before init; "The viewed data is copied", so the view may end after the call.
        let ok = unsafe { sys::mongocrypt_setopt_kms_providers(self.ptr(), bin.as_ptr()) };
        self.check(ok)
    }

    /// The legacy AWS setter (`mongocrypt_setopt_kms_provider_aws`); prefer [`kms_providers`](Self::kms_providers).
    pub fn kms_provider_aws(self, access_key_id: &str, secret_access_key: &str) -> Result<CryptBuilder> {
        // Both wiped: credentials, and a key id is often pasted where the secret goes.
        let (id, id_len) = secret_arg(access_key_id)?;
        let (secret, secret_len) = secret_arg(secret_access_key)?;
        // SAFETY: before init; both strings are copied by libmongocrypt and live for the call.
        let ok = unsafe {
            sys::mongocrypt_setopt_kms_provider_aws(self.ptr(), id.as_ptr(), id_len, secret.as_ptr(), secret_len)
        };
        self.check(ok)
    }

    /// The legacy local-key setter (`mongocrypt_setopt_kms_provider_local`): a 96-byte master key.
    pub fn kms_provider_local(self, key: &[u8]) -> Result<CryptBuilder> {
        let bin = BinaryView::new(key)?;
        // SAFETY: before init; "The viewed data is copied".
        let ok = unsafe { sys::mongocrypt_setopt_kms_provider_local(self.ptr(), bin.as_ptr()) };
        self.check(ok)
    }

    /// A local JSON schema map, `{"db.coll": schema}`, used instead of listCollections.
    pub fn schema_map(self, schema_map: &(impl BsonInput + ?Sized)) -> Result<CryptBuilder> {
        let arg = BsonArg::new(schema_map)?;
        let bin = arg.view()?;
        // SAFETY: before init; "The viewed data is copied".
        let ok = unsafe { sys::mongocrypt_setopt_schema_map(self.ptr(), bin.as_ptr()) };
        self.check(ok)
    }

    /// A local encrypted field config map for Queryable Encryption, `{"db.coll": encryptedFields}`.
    pub fn encrypted_field_config_map(self, map: &(impl BsonInput + ?Sized)) -> Result<CryptBuilder> {
        let arg = BsonArg::new(map)?;
        let bin = arg.view()?;
        // SAFETY: before init; "The viewed data is copied".
        let ok = unsafe { sys::mongocrypt_setopt_encrypted_field_config_map(self.ptr(), bin.as_ptr()) };
        self.check(ok)
    }

    /// Adds a directory to search for the crypt_shared library; `$SYSTEM` searches the system's default paths.
    /// A `&str` or a `&Path`; on Unix a path need not be UTF-8.
    pub fn append_crypt_shared_lib_search_path(self, path: impl AsRef<Path>) -> Result<CryptBuilder> {
        let path = path_arg(path.as_ref())?;
        // SAFETY: before init; the path is copied.
        unsafe { sys::mongocrypt_setopt_append_crypt_shared_lib_search_path(self.ptr(), path.as_ptr()) };
        Ok(self)
    }

    /// Loads crypt_shared from exactly this path; [`build`](Self::build) fails if it cannot. A `&str` or a
    /// `&Path`; on Unix a path need not be UTF-8.
    pub fn set_crypt_shared_lib_path_override(self, path: impl AsRef<Path>) -> Result<CryptBuilder> {
        let path = path_arg(path.as_ref())?;
        // SAFETY: before init; the path is copied.
        unsafe { sys::mongocrypt_setopt_set_crypt_shared_lib_path_override(self.ptr(), path.as_ptr()) };
        Ok(self)
    }

    /// Opts into the NEED_KMS_CREDENTIALS state for providers configured as empty documents.
    pub fn use_need_kms_credentials_state(self) -> CryptBuilder {
        // SAFETY: before init; no arguments besides the handle.
        unsafe { sys::mongocrypt_setopt_use_need_kms_credentials_state(self.ptr()) };
        self
    }

    /// Opts into the NEED_MONGO_COLLINFO_WITH_DB state, which names the database for listCollections.
    /// libmongocrypt ≥ 1.10.
    pub fn use_need_mongo_collinfo_with_db_state(self) -> Result<CryptBuilder> {
        requires!(
            mongocrypt_has_setopt_use_need_mongo_collinfo_with_db_state,
            "mongocrypt_setopt_use_need_mongo_collinfo_with_db_state",
            "1.10.0",
            {
                // SAFETY: before init; no arguments besides the handle.
                unsafe { sys::mongocrypt_setopt_use_need_mongo_collinfo_with_db_state(self.ptr()) };
                Ok(self)
            }
        )
    }

    /// Lets a NEED_MONGO_COLLINFO state accept several collection infos (for `$lookup`). libmongocrypt ≥ 1.13.
    pub fn enable_multiple_collinfo(self) -> Result<CryptBuilder> {
        requires!(
            mongocrypt_has_setopt_enable_multiple_collinfo,
            "mongocrypt_setopt_enable_multiple_collinfo",
            "1.13.0",
            {
                // SAFETY: before init; no arguments besides the handle.
                let ok = unsafe { sys::mongocrypt_setopt_enable_multiple_collinfo(self.ptr()) };
                self.check(ok)
            }
        )
    }

    /// Enables retries of KMS requests (`usleep`, `fail`, `feed_with_retry`). libmongocrypt ≥ 1.12.
    pub fn retry_kms(self, enable: bool) -> Result<CryptBuilder> {
        requires!(
            mongocrypt_has_setopt_retry_kms,
            "mongocrypt_setopt_retry_kms",
            "1.12.0",
            {
                // SAFETY: before init; a plain flag.
                let ok = unsafe { sys::mongocrypt_setopt_retry_kms(self.ptr(), enable) };
                self.check(ok)
            },
            unused(enable)
        )
    }

    /// How long data keys stay cached; zero never expires them. libmongocrypt ≥ 1.13 (earlier: 60 s, fixed).
    pub fn key_expiration(self, expiration: Duration) -> Result<CryptBuilder> {
        requires!(
            mongocrypt_has_setopt_key_expiration,
            "mongocrypt_setopt_key_expiration",
            "1.13.0",
            {
                let ms =
                    u64::try_from(expiration.as_millis()).map_err(|_| Error::invalid("key expiration too long"))?;
                // SAFETY: before init; a plain integer.
                let ok = unsafe { sys::mongocrypt_setopt_key_expiration(self.ptr(), ms) };
                self.check(ok)
            },
            unused(expiration)
        )
    }

    /// Skips query analysis: no crypt_shared is loaded and no ctx asks for markings.
    pub fn bypass_query_analysis(self) -> CryptBuilder {
        // SAFETY: before init; no arguments besides the handle.
        unsafe { sys::mongocrypt_setopt_bypass_query_analysis(self.ptr()) };
        self
    }

    /// Opts into range V2 payloads (the default from 1.11, where this is a no-op). libmongocrypt ≥ 1.10.
    pub fn use_range_v2(self) -> Result<CryptBuilder> {
        requires!(mongocrypt_has_setopt_use_range_v2, "mongocrypt_setopt_use_range_v2", "1.10.0", {
            // SAFETY: before init; no arguments besides the handle.
            let ok = unsafe { sys::mongocrypt_setopt_use_range_v2(self.ptr()) };
            self.check(ok)
        })
    }

    /// Supplies libmongocrypt's cryptography from `provider` (`mongocrypt_setopt_crypto_hooks` and friends): a
    /// [`CryptoProvider`], or an `Arc<dyn CryptoProvider>` the application keeps too.
    pub fn crypto_provider(mut self, provider: impl IntoCryptoProvider) -> CryptBuilder {
        self.provider = Some(provider.into_crypto_provider());
        self
    }

    /// Uses the built-in pure-Rust provider, [`RustCrypto`], even where the library has native crypto.
    pub fn rust_crypto(self) -> CryptBuilder {
        self.crypto_provider(RustCrypto)
    }

    /// Initialises the handle (`mongocrypt_init`). Installs the `log` bridge unless a handler was set, and
    /// [`RustCrypto`] when the library has no native crypto and no provider was set.
    ///
    /// When the `MONGOCRYPT_TRACE` environment variable is set, the first `build` of the process logs a
    /// `log::warn!`: libmongocrypt's trace log exposes secrets in plain text.
    pub fn build(mut self) -> Result<Crypt> {
        warn_if_tracing();
        if !self.log_set {
            self = self.set_log_handler(mlog::log_crate_handler())?;
        }
        let provider = match self.provider.take() {
            Some(p) => Some(p),
            None if !is_crypto_available() => Some(Arc::new(RustCrypto) as Arc<dyn CryptoProvider>),
            None => None,
        };
        if let Some(provider) = provider {
            // SAFETY: before init, as install requires.
            self.callbacks.hooks = Some(unsafe { hooks::install(self.ptr(), provider)? });
        }
        let initialised = {
            let _lock = lifecycle_lock();
            // SAFETY: options are set; init is called once, and the builder is consumed so no setopt can follow.
            unsafe { sys::mongocrypt_init(self.ptr()) }
        };
        if !initialised {
            return Err(status_error(self.ptr()));
        }
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the handle and callbacks move into the Crypt exactly once.
        let callbacks = unsafe { std::ptr::read(&this.callbacks) };
        Ok(Crypt { handle: Arc::new(Handle { raw: this.raw, callbacks }) })
    }
}

impl Default for CryptBuilder {
    fn default() -> CryptBuilder {
        CryptBuilder::new()
    }
}

impl Drop for CryptBuilder {
    fn drop(&mut self) {
        let _lock = lifecycle_lock();
        // SAFETY: the handle was never initialised or shared; destroyed once, before the callbacks it points to.
        unsafe { sys::mongocrypt_destroy(self.ptr()) }
    }
}

/// Serializes `mongocrypt_init` and `mongocrypt_destroy` process-wide on libmongocrypt before 1.8, where loading
/// and unloading crypt_shared from two threads at once races (MONGOCRYPT-526). Later releases need no lock.
fn lifecycle_lock() -> Option<MutexGuard<'static, ()>> {
    static LOCK: Mutex<()> = Mutex::new(());
    (*Version::linked() < Version::new(1, 8, 0)).then(|| LOCK.lock().unwrap_or_else(PoisonError::into_inner))
}

/// An initialised `mongocrypt_t`: one per client, shared by every operation.
///
/// A `Crypt` is a handle: cloning it is cheap (a reference count) and every clone is the same `mongocrypt_t`.
/// `Send + Sync`: "mongocrypt_t is thread-safe" once initialised. Each operation is its own
/// [`Ctx`](crate::Ctx), which holds a clone, so the C rule that a ctx must not outlive its `mongocrypt_t` holds
/// by construction: the handle is destroyed when the last `Crypt` and the last `Ctx` made from it are dropped.
///
/// ```
/// use libmongocrypt::{Crypt, KeyEncryptionKey, KmsProviders};
/// let crypt = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 96]))?.build()?;
/// let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local"))?.datakey()?;
/// drop(crypt); // The ctx keeps the handle alive...
/// let key = std::thread::spawn(move || ctx.finalize_owned()).join().unwrap()?; // ...wherever it goes.
/// assert!(key.get_binary("_id").is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Crypt {
    handle: Arc<Handle>,
}

/// The `mongocrypt_t` and the callbacks it points to, owned once however many [`Crypt`]s and ctxs share it.
struct Handle {
    raw: NonNull<sys::mongocrypt_t>,
    callbacks: Callbacks,
}

// SAFETY: after mongocrypt_init the handle is thread-safe ("Functions on a mongocrypt_t are thread safe"), and
// every callback it holds is Send + Sync.
unsafe impl Send for Handle {}
// SAFETY: as for Send: all &self methods are calls libmongocrypt allows concurrently on an initialised handle.
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        let _lock = lifecycle_lock();
        // SAFETY: this is the last reference: every Crypt and every Ctx holds an Arc of the handle, so no ctx of
        // it is alive ("a ctx must not outlive its mongocrypt_t"). Destroyed once; the callbacks it points to are
        // dropped only afterwards, with the struct's fields.
        unsafe { sys::mongocrypt_destroy(self.raw.as_ptr()) }
    }
}

impl Crypt {
    /// Starts configuring a new handle.
    pub fn builder() -> CryptBuilder {
        CryptBuilder::new()
    }

    /// Starts a new operation (`mongocrypt_ctx_new`): set its options, then initialise it as one of the six kinds.
    /// The ctx holds a clone of this handle.
    pub fn ctx(&self) -> CtxBuilder {
        CtxBuilder::new(self)
    }

    /// The version string of the loaded crypt_shared library, if one was loaded.
    pub fn crypt_shared_lib_version_string(&self) -> Option<&str> {
        // SAFETY: after init; "If no crypt_shared was successfully loaded, this function returns NULL", otherwise a
        // string owned by the handle, which lives as long as &self.
        unsafe {
            let ptr = sys::mongocrypt_crypt_shared_lib_version_string(self.handle.raw.as_ptr(), std::ptr::null_mut());
            (!ptr.is_null()).then(|| CStr::from_ptr(ptr).to_str().ok()).flatten()
        }
    }

    /// The loaded crypt_shared version as `0xMMMMmmmmpppprrrr`-style number, if one was loaded.
    pub fn crypt_shared_lib_version(&self) -> Option<u64> {
        // SAFETY: after init; returns 0 when no crypt_shared was loaded.
        let v = unsafe { sys::mongocrypt_crypt_shared_lib_version(self.handle.raw.as_ptr()) };
        (v != 0).then_some(v)
    }

    /// Whether a crypto provider (user-supplied or [`RustCrypto`]) does this handle's cryptography.
    pub fn uses_crypto_hooks(&self) -> bool {
        self.handle.callbacks.hooks.is_some()
    }

    /// The raw handle, for other FFI layers. It stays owned by this `Crypt`: do not destroy it, and do not use it
    /// after the last clone of the `Crypt` (and every ctx made from it) is dropped.
    pub fn as_raw(&self) -> *mut sys::mongocrypt_t {
        self.handle.raw.as_ptr()
    }

    /// Takes ownership of an initialised handle created elsewhere.
    ///
    /// # Safety
    /// `raw` must come from `mongocrypt_new`, have been initialised with `mongocrypt_init`, be owned by no one else,
    /// and hold no callbacks whose context may be freed before the returned `Crypt` is dropped.
    pub unsafe fn from_raw(raw: *mut sys::mongocrypt_t) -> Crypt {
        let raw = NonNull::new(raw).expect("Crypt::from_raw: NULL handle");
        Crypt { handle: Arc::new(Handle { raw, callbacks: Callbacks::default() }) }
    }
}

impl std::fmt::Debug for Crypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypt").field("raw", &self.handle.raw).field("crypto_hooks", &self.uses_crypto_hooks()).finish()
    }
}

/// The environment variable that turns on libmongocrypt's trace log.
const TRACE_VARIABLE: &str = "MONGOCRYPT_TRACE";

/// Warns, once per process, when libmongocrypt's trace log is on: it logs the arguments of setopts, secrets among
/// them (1.7.2 writes `kms_provider_aws`'s secret access key in plain text), to the log handler. Only builds made
/// with the trace log (cmake `ENABLE_TRACE`) have it, which the binding cannot tell, so it warns whenever the
/// variable is set.
fn warn_if_tracing() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if std::env::var_os(TRACE_VARIABLE).is_some() && !WARNED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "{TRACE_VARIABLE} is set: libmongocrypt's trace log (in builds that have it) exposes secrets, such as the \
             AWS secret access key, in plain text to the log handler; do not set it where real credentials are used"
        );
    }
}

fn status_error(raw: *mut sys::mongocrypt_t) -> Error {
    let status = Status::new();
    // SAFETY: `raw` is a live handle; mongocrypt_status copies its status into ours.
    unsafe { sys::mongocrypt_status(raw, status.as_ptr()) };
    status.to_result().err().unwrap_or_else(|| Error::Client { code: 0, message: "unknown error".into() })
}

/// A path as libmongocrypt's crypt_shared setopts read it, "a null-terminated sequence of bytes [...] On some
/// filesystems, this may be arbitrary bytes. On other filesystems, this may be required to be a valid UTF-8 code
/// unit sequence": the OS's bytes on Unix, UTF-8 elsewhere.
fn path_arg(path: &Path) -> Result<CString> {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    #[cfg(not(unix))]
    let bytes = path.to_str().ok_or_else(|| Error::invalid("path is not UTF-8"))?.as_bytes();
    CString::new(bytes).map_err(|_| Error::invalid("path contains a NUL byte"))
}

/// A string argument for the setopts and inits that take `(const char *, int32_t len)`: a name (database,
/// algorithm, region, endpoint), never a secret (see [`secret_arg`]). It is NUL-terminated although the length is
/// passed: several of them copy with `bson_strndup`, which reads one byte past `len`. A string with a NUL byte is
/// refused.
#[inline]
pub(crate) fn str_arg(s: &str) -> Result<(StrArg, i32)> {
    let len = c_len(s)?;
    let copy = if s.len() < INLINE {
        let mut bytes = [0; INLINE];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        StrArg::Inline(bytes)
    } else {
        StrArg::Heap(nul_terminated(s))
    };
    Ok((copy, len))
}

/// [`str_arg`] for a secret (`kms_provider_aws`'s credentials): always on the heap, where a move cannot leave
/// a copy behind, and wiped when dropped, whether libmongocrypt took it or refused it.
pub(crate) fn secret_arg(s: &str) -> Result<(SecretArg, i32)> {
    let len = c_len(s)?;
    Ok((SecretArg(nul_terminated(s)), len))
}

#[inline]
fn c_len(s: &str) -> Result<i32> {
    let len = i32::try_from(s.len()).map_err(|_| bad_str("string longer than 2 GiB"))?;
    if s.as_bytes().contains(&0) {
        return Err(bad_str("string contains a NUL byte"));
    }
    Ok(len)
}

/// Sized up front: one allocation, never grown, so no unwiped copy is left behind by a reallocation.
fn nul_terminated(s: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(s.len() + 1);
    bytes.extend_from_slice(s.as_bytes());
    bytes.push(0);
    bytes
}

#[cold]
fn bad_str(why: &'static str) -> Error {
    Error::invalid(why)
}

/// The longest name, plus its NUL, that [`str_arg`] copies onto the stack: a database name (MongoDB's limit is 64
/// bytes), an algorithm or a region. A heap copy costs an allocation and a free on every automatic encryption,
/// about 90 instructions per operation (issue 21, BENCHMARKS.md).
const INLINE: usize = 64;

/// The NUL-terminated copy [`str_arg`] makes.
pub(crate) enum StrArg {
    /// A name shorter than [`INLINE`], then zeros.
    Inline([u8; INLINE]),
    Heap(Vec<u8>),
}

impl StrArg {
    /// The C string, valid while `self` lives.
    #[inline]
    pub(crate) fn as_ptr(&self) -> *const c_char {
        match self {
            StrArg::Inline(bytes) => bytes.as_ptr().cast(),
            StrArg::Heap(bytes) => bytes.as_ptr().cast(),
        }
    }
}

/// The NUL-terminated copy [`secret_arg`] makes, wiped (its whole allocation) when dropped.
pub(crate) struct SecretArg(Vec<u8>);

impl SecretArg {
    /// The C string, valid while `self` lives.
    pub(crate) fn as_ptr(&self) -> *const c_char {
        self.0.as_ptr().cast()
    }
}

impl Drop for SecretArg {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c_string(arg: &StrArg) -> &CStr {
        // SAFETY: str_arg's copies are NUL-terminated and live as long as `arg`.
        unsafe { CStr::from_ptr(arg.as_ptr()) }
    }

    #[test]
    fn names_go_nul_terminated_on_the_stack_or_the_heap() {
        for name in ["", "db", &"d".repeat(INLINE - 1), &"d".repeat(INLINE), &"d".repeat(1000)] {
            let (arg, len) = str_arg(name).unwrap();
            assert_eq!(len as usize, name.len());
            assert_eq!(c_string(&arg).to_bytes(), name.as_bytes());
            assert_eq!(matches!(arg, StrArg::Inline(_)), name.len() < INLINE, "{}", name.len());
        }
        let (secret, len) = secret_arg("s3cret").unwrap();
        assert_eq!((secret.0.as_slice(), len), (&b"s3cret\0"[..], 6));
    }

    #[test]
    fn a_nul_byte_is_refused() {
        for s in ["a\0b", "\0", &format!("{}\0", "x".repeat(100))] {
            assert!(matches!(str_arg(s).err(), Some(Error::InvalidArgument(m)) if m.contains("NUL")), "{s:?}");
            assert!(matches!(secret_arg(s).err(), Some(Error::InvalidArgument(m)) if m.contains("NUL")), "{s:?}");
        }
    }
}
