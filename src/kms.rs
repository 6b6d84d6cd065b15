//! `mongocrypt_kms_ctx_t`: one KMS HTTP request and its reply, handed out during NEED_KMS.

use std::ffi::CStr;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use libmongocrypt_sys as sys;

use crate::binary::{BinaryOut, BinaryView};
use crate::ctx::Ctx;
use crate::error::{requires, Error, Result};
use crate::ffi::Status;
use crate::guard::kms_reply::{Provider, ReplyCheck};
use crate::options::KmsProvider;
use crate::version::Version;

/// The KMS requests of one NEED_KMS state, from [`Ctx::kms_scope`]. It holds the ctx exclusively, so the ctx
/// cannot move on while any [`KmsCtx`] is alive. Requests are handed out in batches
/// ([`kms_ctxs`](KmsScope::kms_ctxs)) that borrow the scope mutably, so one request is never held twice.
///
/// [`done`](KmsScope::done) (`mongocrypt_ctx_kms_done`) consumes the scope, so it runs at most once and only after
/// every `KmsCtx` is gone, and returns its error. A scope dropped without `done` (an early return, a `?`, a
/// cancelled future) calls `mongocrypt_ctx_kms_done` itself: the ctx never stays in NEED_KMS, and an error (say,
/// "KMS response unfinished" for a request that was never fed) stays in its [`status`](Ctx::status).
pub struct KmsScope<'a> {
    ctx: &'a mut Ctx,
    /// The reply check of each request handed out so far, by kms ctx address: a request handed out again (a retry)
    /// is the same kms ctx, and keeps its check (reset when libmongocrypt discards what was fed).
    checks: Mutex<Vec<(usize, Arc<Mutex<ReplyCheck>>)>>,
}

impl<'a> KmsScope<'a> {
    /// The ctx must be in NEED_KMS ([`Ctx::kms_scope`] checks).
    pub(crate) fn new(ctx: &'a mut Ctx) -> KmsScope<'a> {
        KmsScope { ctx, checks: Mutex::new(Vec::new()) }
    }

    /// The next request to serve, or `None` when all were handed out.
    ///
    /// Takes `&mut self`: from 1.12, a request that asked for a retry (`fail`, `feed_with_retry`) is handed out
    /// again by the next call, and two live `KmsCtx` for one request would let two threads feed it at once.
    pub fn next_kms_ctx(&mut self) -> Option<KmsCtx<'_>> {
        self.fetch()
    }

    /// Every request not yet handed out, to serve concurrently: "Feeding multiple KMS requests is thread-safe".
    /// Requests to retry come back in the next batch, once this one is dropped.
    pub fn kms_ctxs(&mut self) -> Vec<KmsCtx<'_>> {
        std::iter::from_fn(|| self.fetch()).collect()
    }

    fn fetch<'s>(&'s self) -> Option<KmsCtx<'s>> {
        // SAFETY: the ctx is live and this scope holds it exclusively; the public callers take &mut self, so no
        // KmsCtx of an earlier batch is alive while libmongocrypt walks (and, for retries, resets) its requests.
        // "The returned KMS handle does not outlive ctx": KmsCtx borrows the scope.
        let raw = unsafe { sys::mongocrypt_ctx_next_kms_ctx(self.ctx.ptr()) };
        let raw = NonNull::new(raw)?;
        let mut checks = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        let key = raw.as_ptr() as usize;
        let check = match checks.iter().find(|(k, _)| *k == key) {
            Some((_, check)) => check.clone(),
            None => {
                let provider = Provider::from_id(kms_provider(raw).as_str());
                let check = Arc::new(Mutex::new(ReplyCheck::new(provider, Version::linked())));
                checks.push((key, check.clone()));
                check
            }
        };
        Some(KmsCtx { raw, check, deadline: None, fed: 0, _scope: PhantomData })
    }

    /// Leaves the ctx in ERROR with `error` ([`Ctx::abandon`]), for [`Runner::serve_kms`](crate::Runner::serve_kms)
    /// when the deadline passes.
    pub(crate) fn abandon(&mut self, error: Error) {
        self.ctx.abandon(error);
    }

    /// Ends the NEED_KMS state (`mongocrypt_ctx_kms_done`), after every request was fed its reply.
    pub fn done(self) -> Result<()> {
        let mut this = ManuallyDrop::new(self);
        // ManuallyDrop skips Drop (which would call kms_done again) and the fields' drops too: free the checks here.
        drop(std::mem::take(this.checks.get_mut().unwrap_or_else(PoisonError::into_inner)));
        let ok = kms_done(this.ctx);
        this.ctx.check(ok)
    }
}

impl Drop for KmsScope<'_> {
    /// Ends the NEED_KMS state as [`done`](KmsScope::done) does; the error stays in the ctx's status.
    fn drop(&mut self) {
        kms_done(self.ctx);
    }
}

/// `mongocrypt_ctx_kms_done`, run once per scope: by `done`, or by `Drop` when `done` was not called.
fn kms_done(ctx: &mut Ctx) -> bool {
    // SAFETY: the ctx is live and in NEED_KMS (checked when the scope was made); no KmsCtx is alive (they borrow
    // the scope, which is being consumed or dropped), so ending their lifetime ("valid until
    // mongocrypt_ctx_kms_done") cannot leave a dangling view.
    unsafe { sys::mongocrypt_ctx_kms_done(ctx.ptr()) }
}

/// The KMS provider of a live kms ctx.
fn kms_provider(raw: NonNull<sys::mongocrypt_kms_ctx_t>) -> KmsProvider {
    let mut len = 0u32;
    // SAFETY: the kms ctx is live (its scope is); returns "One of the NULL terminated static strings" (from 1.9 the
    // provider's name, owned by the kms ctx), copied out below.
    let ptr = unsafe { sys::mongocrypt_kms_ctx_get_kms_provider(raw.as_ptr(), &mut len) };
    let id = if ptr.is_null() {
        ""
    } else {
        // SAFETY: a NUL-terminated string, valid for this call at least.
        unsafe { CStr::from_ptr(ptr) }.to_str().unwrap_or("")
    };
    KmsProvider::from_id(id)
}

/// Whether the linked libmongocrypt has the whole KMS retry protocol: [`CryptBuilder::retry_kms`],
/// [`KmsCtx::fail`] and [`KmsCtx::sleep_duration`] (1.12) and [`KmsCtx::feed_with_retry`] (1.17). Before 1.12 all
/// of them return [`Error::Unsupported`](crate::Error::Unsupported); from 1.12 to 1.16, `feed_with_retry` does. A
/// transport that retries checks this once instead of matching on those errors.
///
/// [`CryptBuilder::retry_kms`]: crate::CryptBuilder::retry_kms
pub const KMS_RETRIES_SUPPORTED: bool = cfg!(all(
    mongocrypt_has_kms_ctx_fail,
    mongocrypt_has_kms_ctx_usleep,
    mongocrypt_has_kms_ctx_feed_with_retry,
    mongocrypt_has_setopt_retry_kms
));

/// One KMS request: connect to [`endpoint`](KmsCtx::endpoint), send [`message`](KmsCtx::message), and
/// [`feed`](KmsCtx::feed) the reply until [`bytes_needed`](KmsCtx::bytes_needed) is 0.
///
/// `Send` (requests of one round may be served concurrently) and `Sync` (its `&self` methods only read), so a
/// future holding `&KmsCtx` (its message, say) across an `.await` is `Send`. Views borrow `&self` and end at the
/// next `&mut self` call.
pub struct KmsCtx<'s> {
    raw: NonNull<sys::mongocrypt_kms_ctx_t>,
    /// This request's reply check ([`ReplyCheck`]), shared with the scope so a retried request keeps it.
    check: Arc<Mutex<ReplyCheck>>,
    /// When the operation must be over ([`KmsCtx::deadline`]), set by the runner.
    deadline: Option<Instant>,
    /// Reply bytes handed to libmongocrypt since this request was handed out: one attempt's.
    fed: usize,
    _scope: PhantomData<&'s ()>,
}

// SAFETY: "Feeding multiple KMS requests is thread-safe": each kms ctx may be used from another thread than its
// parent ctx; feeding and failing take &mut self, so one thread at a time.
unsafe impl Send for KmsCtx<'_> {}
// SAFETY: every &self method only reads the kms ctx: mongocrypt_kms_ctx_status copies its status out,
// mongocrypt_kms_ctx_message and mongocrypt_kms_ctx_endpoint point at data it owns ("valid until ...
// mongocrypt_ctx_kms_done"), mongocrypt_kms_ctx_bytes_needed asks its parser how much it wants,
// mongocrypt_kms_ctx_get_kms_provider returns its provider's name and mongocrypt_kms_ctx_usleep its back-off.
// Nothing mutates a kms ctx except feed, feed_with_retry and fail, which take &mut self, so shared references on
// several threads only ever read concurrently.
unsafe impl Sync for KmsCtx<'_> {}

impl KmsCtx<'_> {
    fn ptr(&self) -> *mut sys::mongocrypt_kms_ctx_t {
        self.raw.as_ptr()
    }

    /// This request's error status (`mongocrypt_kms_ctx_status`).
    pub fn status(&self) -> Result<()> {
        let status = Status::new();
        // SAFETY: the kms ctx is live (its scope is); the status is copied into ours.
        unsafe { sys::mongocrypt_kms_ctx_status(self.ptr(), status.as_ptr()) };
        status.to_result()
    }

    fn check(&self, ok: bool) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.status().err().unwrap_or_else(|| Error::Kms { code: 0, message: "unknown KMS error".into() }))
        }
    }

    /// The HTTP (or KMIP) request to send.
    pub fn message(&self) -> Result<&[u8]> {
        let out = BinaryOut::new();
        // SAFETY: the kms ctx is live; the message is "valid until the call of mongocrypt_ctx_kms_done", which
        // cannot happen while &self is borrowed.
        let ok = unsafe { sys::mongocrypt_kms_ctx_message(self.ptr(), out.as_ptr()) };
        self.check(ok)?;
        // SAFETY: as above.
        Ok(unsafe { out.bytes() })
    }

    /// `host:port` to connect to over TLS. "A port is always present."
    pub fn endpoint(&self) -> Result<&str> {
        let mut ptr = std::ptr::null();
        // SAFETY: the kms ctx is live; the string "is valid until calling mongocrypt_ctx_kms_done".
        let ok = unsafe { sys::mongocrypt_kms_ctx_endpoint(self.ptr(), &mut ptr) };
        self.check(ok)?;
        if ptr.is_null() {
            return Err(Error::Kms { code: 0, message: "KMS endpoint missing".into() });
        }
        // SAFETY: a NUL-terminated string owned by the kms ctx, borrowed for &self.
        unsafe { CStr::from_ptr(ptr) }.to_str().map_err(|_| Error::invalid("KMS endpoint is not UTF-8"))
    }

    /// How many more reply bytes to feed; 0 when the reply is complete.
    pub fn bytes_needed(&self) -> u32 {
        // SAFETY: the kms ctx is live; a read-only query.
        unsafe { sys::mongocrypt_kms_ctx_bytes_needed(self.ptr()) }
    }

    /// The KMS provider of this request: `aws`, `azure`, `gcp` or `kmip`, with its name for a named provider
    /// (`aws:name`, libmongocrypt ≥ 1.9). It compares equal to its string form: `kms.kms_provider() == "aws"`.
    pub fn kms_provider(&self) -> KmsProvider {
        kms_provider(self.raw)
    }

    /// How long to wait before sending this request (a retry back-off). libmongocrypt ≥ 1.12.
    pub fn sleep_duration(&self) -> Result<Duration> {
        requires!(mongocrypt_has_kms_ctx_usleep, "mongocrypt_kms_ctx_usleep", "1.12.0", {
            // SAFETY: the kms ctx is live; a read-only query returning microseconds.
            let us = unsafe { sys::mongocrypt_kms_ctx_usleep(self.ptr()) };
            Ok(Duration::from_micros(us.max(0) as u64))
        })
    }

    /// When the operation this request belongs to must be over: set by a [`Runner`](crate::Runner) with a deadline
    /// ([`Runner::deadline`](crate::Runner::deadline), [`Runner::timeout`](crate::Runner::timeout)), `None`
    /// otherwise. A transport bounds its connect, writes and reads by it as well as by its own timeouts (the
    /// `libmongocrypt-kms` transport does): the runner cannot interrupt a blocking call, and fails the run with
    /// [`RunError::Timeout`](crate::RunError::Timeout) once it returns past the deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Reply bytes handed to libmongocrypt since this request was handed out (one attempt's), for the runner's
    /// events.
    pub(crate) fn bytes_fed(&self) -> usize {
        self.fed
    }

    /// Checks the next reply bytes before libmongocrypt sees them; see [`feed`](Self::feed).
    fn check_reply(&self, bytes: &[u8]) -> Result<()> {
        self.check.lock().unwrap_or_else(PoisonError::into_inner).check(bytes)
    }

    /// Forgets the reply fed so far, as libmongocrypt does on a retry.
    #[cfg_attr(not(any(mongocrypt_has_kms_ctx_fail, mongocrypt_has_kms_ctx_feed_with_retry)), allow(dead_code))]
    fn reset_reply(&self) {
        self.check.lock().unwrap_or_else(PoisonError::into_inner).reset();
    }

    /// Feeds reply bytes; feeding more than [`bytes_needed`](Self::bytes_needed) is an error.
    ///
    /// Replies on which libmongocrypt would abort the process are refused first with an [`Error::Kms`] ("malformed
    /// KMS reply, refused by the binding"), and the bytes are not fed; every later feed of the request is refused
    /// too. The binding follows the HTTP framing of each reply (chunk sizes and the CRLF after each chunk), checks
    /// the base64 fields of GCP and Azure replies before the byte that completes them is fed, and, before 1.21, the
    /// length of KMIP replies.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<()> {
        self.check_reply(bytes)?;
        let bin = BinaryView::new(bytes)?;
        self.fed += bytes.len();
        // SAFETY: the kms ctx is live and exclusively borrowed; "The viewed data is copied".
        let ok = unsafe { sys::mongocrypt_kms_ctx_feed(self.ptr(), bin.as_ptr()) };
        self.check(ok)
    }

    /// Feeds reply bytes and says whether the request should be retried in place (a retryable HTTP error, with
    /// retries enabled). libmongocrypt ≥ 1.17 (1.12 to 1.15 have the other retry functions, not this one).
    pub fn feed_with_retry(&mut self, bytes: &[u8]) -> Result<bool> {
        requires!(
            mongocrypt_has_kms_ctx_feed_with_retry,
            "mongocrypt_kms_ctx_feed_with_retry",
            "1.17.0",
            {
                self.check_reply(bytes)?;
                let bin = BinaryView::new(bytes)?;
                self.fed += bytes.len();
                let mut should_retry = false;
                // SAFETY: the kms ctx is live and exclusively borrowed; the bytes are copied.
                let ok =
                    unsafe { sys::mongocrypt_kms_ctx_feed_with_retry(self.ptr(), bin.as_ptr(), &mut should_retry) };
                if should_retry {
                    // libmongocrypt discarded the reply to send the request again.
                    self.reset_reply();
                }
                self.check(ok).map(|()| should_retry)
            },
            unused(bytes)
        )
    }

    /// Reports a network error and discards what was fed; returns whether the request may be retried (then send
    /// it again after [`sleep_duration`](Self::sleep_duration)). libmongocrypt ≥ 1.12.
    pub fn fail(&mut self) -> Result<bool> {
        requires!(mongocrypt_has_kms_ctx_fail, "mongocrypt_kms_ctx_fail", "1.12.0", {
            // SAFETY: the kms ctx is live and exclusively borrowed.
            let retry = unsafe { sys::mongocrypt_kms_ctx_fail(self.ptr()) };
            // "discards what was fed": so does the reply check.
            self.reset_reply();
            Ok(retry)
        })
    }

    /// The raw kms ctx, for other FFI layers; valid while this value is.
    pub fn as_raw(&self) -> *mut sys::mongocrypt_kms_ctx_t {
        self.ptr()
    }
}

impl std::fmt::Debug for KmsCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsCtx")
            .field("provider", &self.kms_provider())
            .field("endpoint", &self.endpoint().ok())
            .finish()
    }
}
