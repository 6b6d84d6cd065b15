//! Test support for the `kms-tls` tests: certificates made at test time ([`pki`]), scripted loopback servers, plain
//! or TLS ([`server`]), an extended-JSON reader ([`extjson`]) and fixture helpers.
//!
//! Network rule: every server listens on loopback only, is bounded in connections and lifetime, and stops by
//! itself; transports reach it through a resolver that maps the KMS host names to it.
#![allow(dead_code)]

pub mod extjson;
pub mod pki;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bson::{Document, RawDocument, RawDocumentBuf};
use mongocrypt::kms_tls::{KmsTransport, KmsTransportBuilder, TlsOptions};
use mongocrypt::state_machine::{IoResult, StateMachineIo};
use mongocrypt::{KmsCtx, KmsProviders};

use self::pki::Pki;
use self::server::{MockServer, Options, Reply, Request};

/// The AWS key of the fixtures.
pub const AWS_KEY_ARN: &str = "arn:aws:kms:us-east-1:579766882180:key/89fcc2c4-08b0-4bd9-9f25-e30687b580d0";

/// Whether the linked libmongocrypt retries KMS requests (≥ 1.12).
pub fn retries() -> bool {
    mongocrypt::kms_tls::RETRIES_SUPPORTED && mongocrypt::sys::MONGOCRYPT_SYS_VERSION_NUMBER >= 0x010c_0000
}

pub fn data_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

pub fn read_data(rel: &str) -> String {
    let path = data_path(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// An extended-JSON fixture under `tests/data/`.
pub fn doc(rel: &str) -> Document {
    extjson::parse_doc(&read_data(rel))
}

pub fn raw(doc: &Document) -> RawDocumentBuf {
    RawDocumentBuf::try_from(doc).expect("document serializes")
}

/// The AWS decrypt reply of `tests/data/example`, with `\r\n` line ends.
pub fn decrypt_reply() -> Vec<u8> {
    server::crlf(&read_data("example/kms-decrypt-reply.txt"))
}

/// The AWS encrypt reply of `tests/data/open/datakey-local-aws`, with `\r\n` line ends.
pub fn encrypt_reply() -> Vec<u8> {
    server::crlf(&read_data("open/datakey-local-aws/kms-aws-encrypt-response.txt"))
}

/// MANIFEST's providers: local (96 zero bytes) and AWS `example`/`example`.
pub fn providers() -> KmsProviders {
    KmsProviders::new().local("local", &[0u8; 96]).aws("aws", "example", "example", None)
}

/// A TLS mock KMS with `pki`'s server certificate (and client-certificate check when `mutual`).
pub fn tls_kms(
    pki: &Pki,
    mutual: bool,
    barrier: usize,
    responder: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> MockServer {
    let config = server::tls_config(vec![pki.server.cert.clone()], pki.server.key(), mutual.then(|| pki.ca.clone()));
    MockServer::start(Options { tls: Some(config), barrier, ..Options::default() }, responder)
}

/// Answers AWS decrypt and encrypt requests with the fixture replies.
pub fn aws_replies(request: &Request) -> Reply {
    match request.header("X-Amz-Target") {
        Some("TrentService.Decrypt") => Reply::Bytes(decrypt_reply()),
        Some("TrentService.Encrypt") => Reply::Bytes(encrypt_reply()),
        other => Reply::Bytes(server::http(400, &format!("{{\"unexpected target\": \"{other:?}\"}}"))),
    }
}

/// A transport builder that trusts `pki`'s CA and sends every host to `addr`; short timeouts.
pub fn transport_to(pki: &Pki, addr: SocketAddr) -> KmsTransportBuilder {
    KmsTransport::builder()
        .default_tls_options(TlsOptions::new().ca_pem(pki.ca_pem.as_bytes()).unwrap())
        .resolver(move |_host, _port| Ok(vec![addr]))
        .timeout(Duration::from_secs(5))
}

/// The I/O of the `tests/data/example` auto-encryption run: listCollections, mongocryptd and the key vault answer
/// with the fixtures; KMS goes over TLS through `kms`.
pub struct ExampleIo {
    pub kms: KmsTransport,
    pub keys: Vec<RawDocumentBuf>,
}

impl ExampleIo {
    pub fn new(kms: KmsTransport) -> ExampleIo {
        ExampleIo { kms, keys: vec![raw(&doc("example/key-document.json"))] }
    }
}

impl StateMachineIo for ExampleIo {
    fn list_collections(&self, _db: Option<&str>, _filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Ok(vec![raw(&doc("example/collection-info.json"))])
    }

    fn mark_command(&self, _command: &RawDocument) -> IoResult<RawDocumentBuf> {
        Ok(raw(&doc("example/mongocryptd-reply.json")))
    }

    fn find_keys(&self, _filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Ok(self.keys.clone())
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.kms.kms_request(kms)
    }
}
