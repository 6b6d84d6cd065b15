//! Shared helpers of the fixture, option and runner tests (the runner tests through `runner_common`; the KMS I/O
//! crate's tests through `kms/tests/support`): fixture
//! loading with the example's extended-JSON reader (key order preserved), HTTP replies, version gates, the MANIFEST's
//! common KMS providers, key vault filters, and a hand driver that records the trace of a ctx.
//!
//! Each test crate uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use libmongocrypt::bson::spec::BinarySubtype;
use libmongocrypt::bson::{Binary, Bson, Document, RawBsonRef, RawDocument, RawDocumentBuf};
use libmongocrypt::{Crypt, CryptBuilder, Ctx, Error, KmsCtx, KmsProviders, LogLevel, State};

/// The example: its extended JSON reader (the repository's one) and libbson-style printer, its HTTP reply loader.
#[path = "../../examples/state_machine.rs"]
pub mod example;

#[allow(unused_imports)] // Not every test crate uses it.
pub use example::crlf;

/// Whether this test runs under valgrind (scripts/valgrind.sh), which preloads its `vgpreload_*.so` into the
/// program: tests that depend on the allocator or on how fast the program runs adapt to it.
pub fn under_valgrind() -> bool {
    std::env::var("LD_PRELOAD").is_ok_and(|v| v.contains("vgpreload"))
}

// ---------------------------------------------------------------------------------------------------------------
// Files

/// A path under the workspace's `tests/data/`, from the tests of the `libmongocrypt` package (its root) or of a
/// package in a folder of it (`kms/`), which share this module.
pub fn data_path(rel: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.ancestors().map(|dir| dir.join("tests/data")).find(|data| data.is_dir());
    data.unwrap_or_else(|| root.join("tests/data")).join(rel)
}

/// A file under `tests/data/open/`, as text.
pub fn read_open(rel: &str) -> String {
    let path = data_path("open").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// An extended-JSON file under `tests/data/open/`, as BSON bytes (key order of the file kept).
pub fn load_raw(rel: &str) -> RawDocumentBuf {
    example::read_json(&data_path("open").join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// An extended-JSON file under `tests/data/open/`, as a document (key order of the file kept).
pub fn load_doc(rel: &str) -> Document {
    to_doc(&load_raw(rel))
}

/// An HTTP reply file under `tests/data/open/`, with its bare `\n` line ends turned into `\r\n` (MANIFEST: the
/// Content-Length counts only the body, which has no line end).
pub fn http_reply(rel: &str) -> Vec<u8> {
    example::read_http(&data_path("open").join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Extended-JSON text as a document.
pub fn extjson_doc(text: &str) -> Document {
    example::extjson::parse_to_document(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Extended-JSON text as BSON bytes.
pub fn extjson_raw(text: &str) -> RawDocumentBuf {
    example::extjson::parse_document(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A document as BSON bytes.
pub fn raw(doc: &Document) -> RawDocumentBuf {
    RawDocumentBuf::try_from(doc).expect("document serializes")
}

/// BSON bytes as a document.
pub fn to_doc(raw: &RawDocument) -> Document {
    Document::try_from(raw).expect("valid BSON")
}

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory named after this process and `name`.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mongocrypt-rs-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// The path as `&str` (temp paths are UTF-8 on the test machines).
    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Standard base64 decoding.
pub fn b64(s: &str) -> Vec<u8> {
    Binary::from_base64(s, None).unwrap_or_else(|e| panic!("bad base64 {s:?}: {e}")).bytes
}

/// Hex decoding (whitespace ignored).
pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let pairs = s.as_bytes().chunks_exact(2);
    assert!(pairs.remainder().is_empty(), "odd hex length");
    pairs
        .map(|pair| std::str::from_utf8(pair).ok().and_then(|h| u8::from_str_radix(h, 16).ok()).expect("hex digit"))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Versions

/// `MAJOR.MINOR.PATCH[-suffix]` as `MAJOR << 24 | MINOR << 16 | PATCH << 8`.
pub fn version_number(version: &str) -> u32 {
    let core = version.split(['-', '+']).next().unwrap();
    let parts: Vec<u32> =
        core.split('.').map(|p| p.parse().unwrap_or_else(|_| panic!("bad version {version:?}"))).collect();
    (parts[0] << 24) | (parts[1] << 16) | (parts.get(2).copied().unwrap_or(0) << 8)
}

/// The version of the libmongocrypt that runs, as a number; checked against the build-time one.
pub fn linked_version() -> u32 {
    let runtime = version_number(libmongocrypt::version());
    assert_eq!(
        runtime,
        libmongocrypt::sys::MONGOCRYPT_SYS_VERSION_NUMBER,
        "runtime libmongocrypt {} is not the one the build found",
        libmongocrypt::version()
    );
    runtime
}

/// Whether the linked libmongocrypt is `version` or newer.
pub fn linked_at_least(version: &str) -> bool {
    linked_version() >= version_number(version)
}

/// Prints why a version-gated case did not run (visible with `--nocapture`).
pub fn skip(case: &str, why: &str) {
    println!("SKIP {case}: {why} (linked libmongocrypt {})", libmongocrypt::version());
}

/// Asserts `err` is [`Error::Unsupported`] for the C function `feature`, added in `since`, naming the linked version.
pub fn assert_unsupported(err: &Error, feature: &str, since: &str) {
    match err {
        Error::Unsupported { feature: f, required, linked } => {
            assert_eq!(*f, feature);
            assert_eq!(*required, since);
            assert_eq!(*linked, libmongocrypt::version(), "the release the library reports");
            assert_eq!(*linked, libmongocrypt::sys::MONGOCRYPT_SYS_VERSION, "the release the build found");
        }
        other => panic!("expected Unsupported({feature}), got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(feature) && text.contains(since) && text.contains(libmongocrypt::version()), "{text}");
}

// ---------------------------------------------------------------------------------------------------------------
// MANIFEST conventions

/// The local master key of every fixture set: 96 zero bytes.
pub const LOCAL_KEY: [u8; 96] = [0u8; 96];

/// UUID ABCDEFAB-1234-9876-1234-123456789012.
pub fn key_abcdefab() -> Vec<u8> {
    b64("q83vqxI0mHYSNBI0VniQEg==")
}

/// UUID 12345678-1234-9876-1234-123456789012 (the "wrong key").
pub fn key_12345678() -> Vec<u8> {
    b64("EjRWeBI0mHYSNBI0VniQEg==")
}

/// UUID "aaaaaaaaaaaaaaaa" of the AWS example key.
pub fn key_aaaa() -> Vec<u8> {
    b"aaaaaaaaaaaaaaaa".to_vec()
}

/// A UUID binary value.
pub fn uuid_bson(bytes: &[u8]) -> Bson {
    Bson::Binary(Binary { subtype: BinarySubtype::Uuid, bytes: bytes.to_vec() })
}

/// The MANIFEST's KMS providers: local (zeros), aws (example/example), azure (empty strings).
pub fn providers() -> KmsProviders {
    KmsProviders::new().local("local", &LOCAL_KEY).aws("aws", "example", "example", None).azure("azure", "", "", "")
}

/// A builder with the MANIFEST's KMS providers.
pub fn builder() -> CryptBuilder {
    Crypt::builder().kms_providers(&providers()).expect("kms providers accepted")
}

/// A `Crypt` with the MANIFEST's KMS providers.
pub fn crypt() -> Crypt {
    builder().build().expect("crypt builds")
}

/// A `Crypt` whose only KMS provider, `provider`, is configured empty, so that its credentials are asked for in
/// NEED_KMS_CREDENTIALS.
pub fn on_demand_crypt(provider: &str) -> Crypt {
    Crypt::builder()
        .kms_providers(&KmsProviders::new().on_demand(provider))
        .and_then(|b| b.use_need_kms_credentials_state().build())
        .expect("crypt builds")
}

/// The error message of a result that must have failed.
#[track_caller]
pub fn err_message<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.message(),
    }
}

/// Asserts two documents are the same BSON bytes, printing both as documents otherwise.
#[track_caller]
pub fn assert_bson_eq(actual: &RawDocument, expected: &RawDocument) {
    if actual.as_bytes() != expected.as_bytes() {
        panic!("BSON differs\n  actual:   {}\n  expected: {}", to_doc(actual), to_doc(expected));
    }
}

/// Collects what a log handler receives.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<(LogLevel, String)>>>);

impl LogCapture {
    /// A handler for [`CryptBuilder::log_handler`] that records into this capture.
    pub fn handler(&self) -> impl Fn(LogLevel, &str) + Send + Sync + 'static {
        let sink = Arc::clone(&self.0);
        move |level, message| sink.lock().unwrap().push((level, message.to_owned()))
    }

    /// Everything recorded so far.
    pub fn messages(&self) -> Vec<(LogLevel, String)> {
        self.0.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Key filters

/// The `_id`s and `keyAltNames` a NEED_MONGO_KEYS filter asks for:
/// `{$or: [{_id: {$in: [...]}}, {keyAltNames: {$in: [...]}}]}`.
#[derive(Debug, Default, PartialEq)]
pub struct KeyFilter {
    /// The key ids (UUID bytes).
    pub ids: Vec<Vec<u8>>,
    /// The key alt names.
    pub names: Vec<String>,
}

impl KeyFilter {
    /// The ids and names of `filter`; panics if it is not such a filter.
    pub fn parse(filter: &RawDocument) -> KeyFilter {
        Self::try_parse(filter).unwrap_or_else(|| panic!("key filter without $or: {}", to_doc(filter)))
    }

    /// As [`KeyFilter::parse`]; `None` for a filter of another form (rewrap_many_datakey's own filter).
    pub fn try_parse(filter: &RawDocument) -> Option<KeyFilter> {
        let filter = to_doc(filter);
        let mut out = KeyFilter::default();
        let or = filter.get_array("$or").ok()?;
        for clause in or {
            let clause = clause.as_document().unwrap_or_else(|| panic!("bad $or clause in {filter}"));
            for (field, cond) in clause {
                let values = cond
                    .as_document()
                    .and_then(|c| c.get_array("$in").ok())
                    .unwrap_or_else(|| panic!("clause {field} without $in in {filter}"));
                for v in values {
                    match (field.as_str(), v) {
                        ("_id", Bson::Binary(b)) => out.ids.push(b.bytes.clone()),
                        ("keyAltNames", Bson::String(s)) => out.names.push(s.clone()),
                        _ => panic!("unexpected {field}: {v:?} in key filter {filter}"),
                    }
                }
            }
        }
        Some(out)
    }

    /// Whether key document `key` matches this filter (by `_id` or one of its `keyAltNames`). Read in place, so a
    /// malformed key document matches nothing instead of failing.
    pub fn matches(&self, key: &RawDocument) -> bool {
        let id_match = key.get_binary("_id").is_ok_and(|id| self.ids.iter().any(|want| want == id.bytes));
        let wanted_name = |name: Result<RawBsonRef<'_>, _>| {
            name.ok().and_then(|n| n.as_str()).is_some_and(|n| self.names.iter().any(|want| want == n))
        };
        let name_match = key.get_array("keyAltNames").is_ok_and(|names| names.into_iter().any(wanted_name));
        id_match || name_match
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Hand driver

/// The replies a driven ctx gets.
#[derive(Default)]
pub struct Mock {
    /// listCollections results, fed in NEED_MONGO_COLLINFO(_WITH_DB).
    pub collinfo: Vec<RawDocumentBuf>,
    /// The mongocryptd reply, fed in NEED_MONGO_MARKINGS.
    pub markings: Option<RawDocumentBuf>,
    /// The key vault; only documents matching the filter are fed.
    pub keys: Vec<RawDocumentBuf>,
    /// KMS replies, one per request, in order.
    pub kms: Vec<Vec<u8>>,
    /// Credentials for NEED_KMS_CREDENTIALS.
    pub kms_credentials: Option<Document>,
}

/// One KMS request as the driver saw it.
#[derive(Debug, Clone)]
pub struct KmsRequest {
    /// `KmsCtx::kms_provider`, as a string.
    pub provider: String,
    /// `KmsCtx::endpoint`.
    pub endpoint: String,
    /// The HTTP request.
    pub message: Vec<u8>,
}

impl KmsRequest {
    /// The request as text.
    pub fn message_str(&self) -> String {
        String::from_utf8_lossy(&self.message).into_owned()
    }
}

/// What happened while driving a ctx.
#[derive(Debug, Default)]
pub struct Trace {
    /// Every state observed, in order, ending with DONE or ERROR.
    pub states: Vec<State>,
    /// `(state, mongo_op)` of each NEED_MONGO_* state.
    pub ops: Vec<(State, RawDocumentBuf)>,
    /// The database of each NEED_MONGO_COLLINFO_WITH_DB state.
    pub dbs: Vec<String>,
    /// The key documents fed.
    pub fed_keys: Vec<RawDocumentBuf>,
    /// Every KMS request served.
    pub kms: Vec<KmsRequest>,
    /// The finalized document.
    pub output: Option<RawDocumentBuf>,
    /// The first error returned by a call (the ctx is then in ERROR).
    pub error: Option<Error>,
}

impl Trace {
    /// The output, or a panic naming the error.
    #[track_caller]
    pub fn output(&self) -> &RawDocument {
        match (&self.output, &self.error) {
            (Some(o), _) => o,
            (None, Some(e)) => panic!("no output: {e:?} (trace {:?})", self.states),
            (None, None) => panic!("no output (trace {:?})", self.states),
        }
    }

    /// The mongo op of the first occurrence of `state`.
    #[track_caller]
    pub fn op(&self, state: State) -> &RawDocument {
        self.ops
            .iter()
            .find(|(s, _)| *s == state)
            .map(|(_, d)| d.as_ref())
            .unwrap_or_else(|| panic!("no {state:?} in trace {:?}", self.states))
    }

    /// The error message, or a panic if the drive succeeded.
    #[track_caller]
    pub fn error_message(&self) -> String {
        self.error.as_ref().unwrap_or_else(|| panic!("no error (trace {:?})", self.states)).message()
    }
}

/// Feeds `reply` [`KmsCtx::bytes_needed`] bytes at a time until `kms` needs no more, asserting that the reply does
/// not end first; returns the bytes left over.
pub fn feed_needed<'r>(kms: &mut KmsCtx<'_>, mut reply: &'r [u8]) -> Result<&'r [u8], Error> {
    while kms.bytes_needed() > 0 {
        assert!(!reply.is_empty(), "KMS reply too short: {} more bytes needed", kms.bytes_needed());
        let n = reply.len().min(kms.bytes_needed() as usize);
        kms.feed(&reply[..n])?;
        reply = &reply[n..];
    }
    Ok(reply)
}

/// Drives `ctx` to DONE or ERROR with the replies of `mock`, recording the trace. Keys are fed only when they
/// match the NEED_MONGO_KEYS filter (every key when the filter is not the key broker's `$or` form, as for
/// rewrap_many_datakey, whose filter is the caller's); KMS replies are fed `bytes_needed` bytes at a time.
pub fn drive(ctx: &mut Ctx, mock: &Mock) -> Trace {
    let mut trace = Trace::default();
    let mut kms_replies = mock.kms.iter();
    for _ in 0..64 {
        let state = ctx.state();
        trace.states.push(state);
        let step = match state {
            State::Done => return trace,
            State::Error => {
                if trace.error.is_none() {
                    trace.error = ctx.status().err();
                    assert!(trace.error.is_some(), "ERROR state with an ok status");
                }
                return trace;
            }
            State::NeedMongoCollinfo | State::NeedMongoCollinfoWithDb => (|| {
                trace.ops.push((state, ctx.mongo_op()?.to_owned()));
                if state == State::NeedMongoCollinfoWithDb {
                    trace.dbs.push(ctx.mongo_db()?.to_owned());
                }
                for info in &mock.collinfo {
                    ctx.mongo_feed(info)?;
                }
                ctx.mongo_done()
            })(),
            State::NeedMongoMarkings => (|| {
                trace.ops.push((state, ctx.mongo_op()?.to_owned()));
                let reply = mock.markings.as_ref().expect("NEED_MONGO_MARKINGS without a mock mongocryptd reply");
                ctx.mongo_feed(reply)?;
                ctx.mongo_done()
            })(),
            State::NeedMongoKeys => (|| {
                let filter = ctx.mongo_op()?.to_owned();
                let wanted = KeyFilter::try_parse(&filter);
                trace.ops.push((state, filter));
                for key in mock.keys.iter().filter(|k| wanted.as_ref().is_none_or(|w| w.matches(k))) {
                    trace.fed_keys.push(key.clone());
                    ctx.mongo_feed(key)?;
                }
                ctx.mongo_done()
            })(),
            State::NeedKmsCredentials => {
                let creds = mock.kms_credentials.as_ref().expect("NEED_KMS_CREDENTIALS without mock credentials");
                ctx.provide_kms_providers(creds)
            }
            State::NeedKms => (|| {
                let mut scope = ctx.kms_scope().unwrap();
                for mut kms in scope.kms_ctxs() {
                    let request = KmsRequest {
                        provider: kms.kms_provider().to_string(),
                        endpoint: kms.endpoint()?.to_owned(),
                        message: kms.message()?.to_vec(),
                    };
                    trace.kms.push(request);
                    feed_needed(&mut kms, kms_replies.next().expect("more KMS requests than mock replies"))?;
                }
                scope.done()
            })(),
            State::Ready => ctx.finalize_owned().map(|out| trace.output = Some(out)),
            other => panic!("unexpected state {other:?}"),
        };
        if let Err(e) = step {
            trace.error = Some(e);
            trace.states.push(ctx.state());
            return trace;
        }
    }
    panic!("ctx did not finish in 64 steps: {:?}", trace.states);
}
