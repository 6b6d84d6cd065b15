//! Shared by the driver crate's test binaries: the prose tests' local master key, ClientEncryption constructors,
//! and a key vault that records what ClientEncryption asks of it.

#![allow(dead_code, reason = "each test binary uses its own part")]

use std::sync::Mutex;

use base64::Engine;
use libmongocrypt::bson::spec::BinarySubtype;
use libmongocrypt::bson::{Binary, Document, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{feed_kms_reply, IoResult, StateMachineIo};
use libmongocrypt::{Crypt, KmsCtx, KmsProviders, Version};
use libmongocrypt_driver::{BulkWriteResult, InMemoryKeyVault, KeyVault, Update, UpdateOne};

/// The core crate's example: its extended JSON reader and its HTTP reply loader, for the files of
/// `tests/data/example` (an AWS key document and the mocked KMS reply that unwraps it).
#[path = "../../../examples/state_machine.rs"]
pub mod example;

/// The workspace's `tests/data/example` (the example's `data_dir` is relative to its own package).
fn example_data() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/example")
}

/// An AWS key document of `tests/data/example`, `_id` sixteen `a`s, and the KMS I/O that unwraps it with the
/// file's mocked reply (counting requests).
pub fn example_aws_key() -> Document {
    let raw = example::read_json(&example_data().join("key-document.json")).expect("the example key document");
    Document::try_from(raw.as_ref()).expect("a document")
}

/// Serves every KMS request with `kms-decrypt-reply.txt` after checking it goes to AWS in us-east-1.
#[derive(Default)]
pub struct MockAwsKms {
    pub requests: Mutex<u32>,
}

impl StateMachineIo for MockAwsKms {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("not a KMS request".into())
    }

    fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err("not a KMS request".into())
    }

    fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("not a KMS request".into())
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        *self.requests.lock().unwrap() += 1;
        if kms.kms_provider() != "aws" || kms.endpoint()? != "kms.us-east-1.amazonaws.com:443" {
            return Err(format!("unexpected KMS request to {} ({})", kms.endpoint()?, kms.kms_provider()).into());
        }
        let reply = example::read_http(&example_data().join("kms-decrypt-reply.txt"))?;
        Ok(feed_kms_reply(kms, &reply)?)
    }
}

/// The prose tests' LOCAL_MASTERKEY, base64 of 96 bytes.
pub const LOCAL_MASTERKEY: &str = "Mng0NCt4ZHVUYUJCa1kxNkVyNUR1QURhZ2h2UzR2d2RrZzh0cFBwM3R6NmdWMDFBMUN3YkQ5aXRRMkhGRGdQV09wOGVNYUMxT2k3NjZKelhaQmRCZGJkTXVyZG9uSjFk";

pub fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(text).expect("test base64")
}

pub fn local_master_key() -> Vec<u8> {
    b64(LOCAL_MASTERKEY)
}

/// A Crypt with the local provider `local` (LOCAL_MASTERKEY).
pub fn local_crypt() -> Crypt {
    crypt(&KmsProviders::new().local("local", &local_master_key()))
}

pub fn crypt(providers: &KmsProviders) -> Crypt {
    Crypt::builder().kms_providers(providers).expect("KMS providers").build().expect("a Crypt")
}

pub fn uuid(bytes: &[u8]) -> Binary {
    Binary { subtype: BinarySubtype::Uuid, bytes: bytes.to_vec() }
}

/// Whether the linked libmongocrypt is at least `major.minor.0`.
pub fn linked_at_least(major: u32, minor: u32) -> bool {
    *Version::linked() >= Version::new(major, minor, 0)
}

/// One call ClientEncryption made on its key vault.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Find(Document),
    InsertOne(Document),
    DeleteOne(Document),
    FindOneAndUpdate(Document, Update),
    BulkUpdate(Vec<UpdateOne>),
}

/// An [`InMemoryKeyVault`] that records every call, and fails inserts after `inserts_allowed` of them.
#[derive(Default)]
pub struct RecordingKeyVault {
    pub vault: InMemoryKeyVault,
    pub calls: Mutex<Vec<Call>>,
    pub inserts_allowed: Option<usize>,
}

impl RecordingKeyVault {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }
}

impl KeyVault for RecordingKeyVault {
    fn find(&self, filter: &Document) -> IoResult<Vec<Document>> {
        self.record(Call::Find(filter.clone()));
        KeyVault::find(&self.vault, filter)
    }

    fn insert_one(&self, document: &Document) -> IoResult<()> {
        let inserts = self.calls().iter().filter(|call| matches!(call, Call::InsertOne(_))).count();
        self.record(Call::InsertOne(document.clone()));
        if self.inserts_allowed.is_some_and(|allowed| inserts >= allowed) {
            return Err("insert refused by the test".into());
        }
        KeyVault::insert_one(&self.vault, document)
    }

    fn delete_one(&self, filter: &Document) -> IoResult<u64> {
        self.record(Call::DeleteOne(filter.clone()));
        KeyVault::delete_one(&self.vault, filter)
    }

    fn find_one_and_update(&self, filter: &Document, update: &Update) -> IoResult<Option<Document>> {
        self.record(Call::FindOneAndUpdate(filter.clone(), update.clone()));
        KeyVault::find_one_and_update(&self.vault, filter, update)
    }

    fn bulk_update(&self, updates: &[UpdateOne]) -> IoResult<BulkWriteResult> {
        self.record(Call::BulkUpdate(updates.to_vec()));
        KeyVault::bulk_update(&self.vault, updates)
    }
}

/// Whether this test runs under valgrind (scripts/valgrind.sh preloads its `vgpreload_*.so`), where the program
/// runs many times slower: tests that bound how long a step takes give it more time there. (The core crate's
/// tests/common has the same check; the two test trees share no module.)
pub fn under_valgrind() -> bool {
    std::env::var("LD_PRELOAD").is_ok_and(|v| v.contains("vgpreload"))
}
