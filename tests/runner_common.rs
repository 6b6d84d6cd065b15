//! Shared by the `runner_*` tests (each includes it with `mod runner_common;`): the fixture loaders and a mock
//! [`StateMachineIo`] that serves canned replies and records every call. Compiled on its own too, as a test target
//! without tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::ThreadId;

use bson::spec::BinarySubtype;
use bson::{Binary, RawBsonRef, RawDocument, RawDocumentBuf};
use mongocrypt::state_machine::{feed_kms_reply, IoResult, StateMachineIo};
use mongocrypt::{Crypt, KmsCtx, KmsProviders};

/// The example's extended JSON reader and libbson-style printer.
#[path = "../examples/state_machine.rs"]
#[allow(dead_code)]
pub mod example;

/// `tests/data/<rel>`.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

/// An extended JSON fixture as BSON, in file order.
pub fn json(rel: &str) -> RawDocumentBuf {
    example::read_json(&data(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// An HTTP reply fixture with `\r\n` line ends.
pub fn http(rel: &str) -> Vec<u8> {
    example::read_http(&data(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A document as libbson prints it, for readable assertions.
pub fn show(doc: &RawDocument) -> String {
    example::extjson::to_libbson_json(doc).expect("valid BSON")
}

/// Extended JSON text to BSON.
pub fn ext(text: &str) -> RawDocumentBuf {
    example::extjson::parse_document(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The MANIFEST's common KMS providers: local = 96 zero bytes, aws = example/example.
pub fn providers() -> KmsProviders {
    KmsProviders::new().local("local", &[0u8; 96]).aws("aws", "example", "example", None)
}

/// A `Crypt` with [`providers`].
pub fn crypt() -> Crypt {
    Crypt::builder().kms_providers(&providers()).unwrap().build().unwrap()
}

/// A UUID binary.
pub fn uuid(bytes: &[u8]) -> Binary {
    Binary { subtype: BinarySubtype::Uuid, bytes: bytes.to_vec() }
}

/// One call the mock received.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `list_collections(db, filter)`.
    ListCollections(Option<String>, RawDocumentBuf),
    /// `mark_command(command)`.
    MarkCommand(RawDocumentBuf),
    /// `find_keys(filter)`.
    FindKeys(RawDocumentBuf),
    /// `kms_request`: provider, endpoint, message, and the thread that served it.
    Kms { provider: String, endpoint: String, message: Vec<u8>, thread: ThreadId },
    /// `kms_credentials()`.
    KmsCredentials,
}

impl Call {
    /// The method's name, for traces.
    pub fn name(&self) -> &'static str {
        match self {
            Call::ListCollections(..) => "list_collections",
            Call::MarkCommand(_) => "mark_command",
            Call::FindKeys(_) => "find_keys",
            Call::Kms { .. } => "kms_request",
            Call::KmsCredentials => "kms_credentials",
        }
    }
}

type KmsHandler = Box<dyn Fn(&mut KmsCtx<'_>) -> IoResult<()> + Send + Sync>;

/// Canned replies: every collection info, the mongocryptd reply, a key vault that filters like a server would
/// (by the `_id` and `keyAltNames` of libmongocrypt's `$or` filter; any other filter matches every key), a KMS
/// handler, credentials. An unset reply is an I/O error. `Sync`, so it also serves `run_concurrent`.
#[derive(Default)]
pub struct MockIo {
    pub collinfo: Vec<RawDocumentBuf>,
    pub markings: Option<RawDocumentBuf>,
    pub keys: Vec<RawDocumentBuf>,
    pub kms: Option<KmsHandler>,
    pub credentials: Option<RawDocumentBuf>,
    /// Return every key, whatever the filter.
    pub unfiltered: bool,
    pub calls: Mutex<Vec<Call>>,
}

impl MockIo {
    pub fn new() -> MockIo {
        MockIo::default()
    }

    pub fn collinfo(mut self, doc: RawDocumentBuf) -> MockIo {
        self.collinfo.push(doc);
        self
    }

    pub fn markings(mut self, doc: RawDocumentBuf) -> MockIo {
        self.markings = Some(doc);
        self
    }

    pub fn key(mut self, doc: RawDocumentBuf) -> MockIo {
        self.keys.push(doc);
        self
    }

    /// Every KMS request gets `reply`, fed with [`feed_kms_reply`].
    pub fn kms_reply(self, reply: Vec<u8>) -> MockIo {
        self.kms_with(move |kms| Ok(feed_kms_reply(kms, &reply)?))
    }

    pub fn kms_with(mut self, handler: impl Fn(&mut KmsCtx<'_>) -> IoResult<()> + Send + Sync + 'static) -> MockIo {
        self.kms = Some(Box::new(handler));
        self
    }

    /// The key vault returns every key, requested or not.
    pub fn unfiltered(mut self) -> MockIo {
        self.unfiltered = true;
        self
    }

    pub fn credentials(mut self, doc: RawDocumentBuf) -> MockIo {
        self.credentials = Some(doc);
        self
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The names of the calls so far.
    pub fn trace(&self) -> Vec<&'static str> {
        self.calls().iter().map(Call::name).collect()
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }
}

/// Whether a key document matches a key vault filter.
pub fn key_matches(filter: &RawDocument, key: &RawDocument) -> bool {
    let Ok(clauses) = filter.get_array("$or") else { return true };
    fn wanted<'a>(clause: &'a RawDocument, field: &str) -> Vec<RawBsonRef<'a>> {
        match clause.get_document(field).and_then(|d| d.get_array("$in")) {
            Ok(values) => values.into_iter().filter_map(Result::ok).collect(),
            Err(_) => Vec::new(),
        }
    }
    clauses.into_iter().filter_map(|c| c.ok().and_then(|c| c.as_document())).any(|clause| {
        let id_match = key.get("_id").ok().flatten().is_some_and(|id| wanted(clause, "_id").contains(&id));
        let names: Vec<RawBsonRef<'_>> = match key.get_array("keyAltNames") {
            Ok(names) => names.into_iter().filter_map(Result::ok).collect(),
            Err(_) => Vec::new(),
        };
        id_match || wanted(clause, "keyAltNames").iter().any(|n| names.contains(n))
    })
}

impl StateMachineIo for MockIo {
    fn list_collections(&self, db: Option<&str>, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        self.record(Call::ListCollections(db.map(str::to_owned), filter.to_owned()));
        Ok(self.collinfo.clone())
    }

    fn mark_command(&self, command: &RawDocument) -> IoResult<RawDocumentBuf> {
        self.record(Call::MarkCommand(command.to_owned()));
        self.markings.clone().ok_or_else(|| "no mongocryptd reply configured".into())
    }

    fn find_keys(&self, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        self.record(Call::FindKeys(filter.to_owned()));
        Ok(self.keys.iter().filter(|k| self.unfiltered || key_matches(filter, k)).cloned().collect())
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.record(Call::Kms {
            provider: kms.kms_provider().to_owned(),
            endpoint: kms.endpoint()?.to_owned(),
            message: kms.message()?.to_vec(),
            thread: std::thread::current().id(),
        });
        match &self.kms {
            Some(handler) => handler(kms),
            None => Err("no KMS reply configured".into()),
        }
    }

    fn kms_credentials(&self) -> IoResult<RawDocumentBuf> {
        self.record(Call::KmsCredentials);
        self.credentials.clone().ok_or_else(|| "no credentials configured".into())
    }
}
