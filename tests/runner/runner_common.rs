//! Shared by the runner tests (`crate::runner_common`): everything of `tests/common`
//! (fixture loaders, the MANIFEST's KMS providers, key filters), re-exported, and a mock [`StateMachineIo`] that
//! serves canned replies and records every call.
#![allow(dead_code)]

use std::sync::Mutex;
use std::thread::ThreadId;

use libmongocrypt::bson::{rawdoc, Binary, RawBinaryRef, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{feed_kms_reply, IoResult, StateMachineIo};
use libmongocrypt::{Algorithm, KmsCtx};

use crate::common;

pub use common::*;

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
    Kms {
        /// `KmsCtx::kms_provider`, as a string.
        provider: String,
        /// `KmsCtx::endpoint`.
        endpoint: String,
        /// The HTTP request.
        message: Vec<u8>,
        /// The thread that served it.
        thread: ThreadId,
    },
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
/// (by the `_id` and `keyAltNames` of libmongocrypt's `$or` filter, with [`KeyFilter`]; any other filter matches
/// every key), a KMS handler, credentials. An unset reply is an I/O error. `Sync`, so it also serves
/// `run_concurrent`.
#[derive(Default)]
pub struct MockIo {
    /// listCollections' results.
    pub collinfo: Vec<RawDocumentBuf>,
    /// mongocryptd's reply.
    pub markings: Option<RawDocumentBuf>,
    /// The key vault.
    pub keys: Vec<RawDocumentBuf>,
    /// Serves every KMS request.
    pub kms: Option<KmsHandler>,
    /// On-demand KMS credentials.
    pub credentials: Option<RawDocumentBuf>,
    /// Return every key, whatever the filter.
    pub unfiltered: bool,
    /// Every call, in order.
    pub calls: Mutex<Vec<Call>>,
}

impl MockIo {
    /// No replies: every call is an I/O error.
    pub fn new() -> MockIo {
        MockIo::default()
    }

    /// Adds a listCollections result.
    pub fn collinfo(mut self, doc: RawDocumentBuf) -> MockIo {
        self.collinfo.push(doc);
        self
    }

    /// Sets mongocryptd's reply.
    pub fn markings(mut self, doc: RawDocumentBuf) -> MockIo {
        self.markings = Some(doc);
        self
    }

    /// Adds a key document to the key vault.
    pub fn key(mut self, doc: RawDocumentBuf) -> MockIo {
        self.keys.push(doc);
        self
    }

    /// Every KMS request gets `reply`, fed with [`feed_kms_reply`].
    pub fn kms_reply(self, reply: Vec<u8>) -> MockIo {
        self.kms_with(move |kms| Ok(feed_kms_reply(kms, &reply)?))
    }

    /// Every KMS request goes to `handler`.
    pub fn kms_with(mut self, handler: impl Fn(&mut KmsCtx<'_>) -> IoResult<()> + Send + Sync + 'static) -> MockIo {
        self.kms = Some(Box::new(handler));
        self
    }

    /// The key vault returns every key, requested or not.
    pub fn unfiltered(mut self) -> MockIo {
        self.unfiltered = true;
        self
    }

    /// Sets the on-demand KMS credentials.
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
        let wanted = if self.unfiltered { None } else { KeyFilter::try_parse(filter) };
        Ok(self.keys.iter().filter(|k| wanted.as_ref().is_none_or(|w| w.matches(k))).cloned().collect())
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.record(Call::Kms {
            provider: kms.kms_provider().to_string(),
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

/// libmongocrypt's automatic encryption example with an AWS-wrapped key (`tests/data/open/csfle-auto-aws-example`).
pub const AUTO_AWS: &str = "csfle-auto-aws-example";

/// The example key under a second `_id` ("bbbb..."): same AWS-wrapped material, so the same KMS reply unwraps it.
pub fn second_aws_key() -> RawDocumentBuf {
    let mut key = load_doc(&format!("{AUTO_AWS}/key-document.json"));
    key.insert("_id", uuid_bson(b"bbbbbbbbbbbbbbbb"));
    key.remove("keyAltNames");
    RawDocumentBuf::try_from(&key).unwrap()
}

/// `{a, b}`: the same value encrypted under the example key and under [`second_aws_key`].
pub fn doc_with_two_keys() -> RawDocumentBuf {
    let expected = load_raw(&format!("{AUTO_AWS}/expected-encrypted-cmd.json"));
    let a = expected.get_document("filter").unwrap().get_binary("ssn").unwrap();
    let crypt = crypt();
    let io = MockIo::new().key(second_aws_key()).kms_reply(http_reply(&format!("{AUTO_AWS}/kms-decrypt-reply.txt")));
    let mut ctx = crypt
        .ctx()
        .key_id(b"bbbbbbbbbbbbbbbb")
        .unwrap()
        .algorithm(&Algorithm::Deterministic)
        .unwrap()
        .explicit_encrypt(&rawdoc! { "v": "457-55-5462" })
        .unwrap();
    let b = libmongocrypt::state_machine::run(&mut ctx, &io).unwrap().unwrap();
    let b = b.get_binary("v").unwrap();
    assert_eq!(&b.bytes[1..17], b"bbbbbbbbbbbbbbbb");
    let binary = |b: RawBinaryRef<'_>| Binary { subtype: b.subtype, bytes: b.bytes.to_vec() };
    rawdoc! { "a": binary(a), "b": binary(b) }
}
