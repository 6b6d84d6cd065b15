//! Test support for the `kms-tls` tests: certificates made at test time ([`pki`]), scripted loopback servers, plain
//! or TLS ([`server`]), and fixture helpers on top of the shared `tests/common`.
//!
//! Network rule: every server listens on loopback only, is bounded in connections and lifetime, and stops by
//! itself; transports reach it through a resolver that maps the KMS host names to it.
#![allow(dead_code)]

#[path = "../../../tests/common/mod.rs"]
pub mod common;
pub mod credentials;
pub mod drip;
pub mod pki;
#[cfg(feature = "openssl")]
pub mod pykmip;
pub mod server;

use std::net::SocketAddr;
use std::time::Duration;

use bson::{Document, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{IoResult, StateMachineIo};
use libmongocrypt::{KmsCtx, KmsProviders};
use libmongocrypt_kms::tls::{KmsTransport, KmsTransportBuilder, TlsOptions};

use self::pki::Pki;
use self::server::{MockServer, Options, Reply, Request};

/// The AWS key of the fixtures.
pub const AWS_KEY_ARN: &str = "arn:aws:kms:us-east-1:579766882180:key/89fcc2c4-08b0-4bd9-9f25-e30687b580d0";

/// Whether the linked libmongocrypt retries KMS requests through the transport: it needs the retry functions of 1.12
/// and `mongocrypt_kms_ctx_feed_with_retry`, first in 1.17.0.
pub fn retries() -> bool {
    libmongocrypt::sys::MONGOCRYPT_SYS_VERSION_NUMBER >= 0x0111_0000
}

pub use self::common::{data_path, raw};

/// An extended-JSON fixture under `tests/data/`.
pub fn doc(rel: &str) -> Document {
    common::to_doc(&common::example::read_json(&data_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")))
}

/// An HTTP reply under `tests/data/`, with `\r\n` line ends.
fn reply(rel: &str) -> Vec<u8> {
    common::example::read_http(&data_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The AWS decrypt reply of `tests/data/example`.
pub fn decrypt_reply() -> Vec<u8> {
    reply("example/kms-decrypt-reply.txt")
}

/// The AWS encrypt reply of `tests/data/open/datakey-local-aws`.
pub fn encrypt_reply() -> Vec<u8> {
    reply("open/datakey-local-aws/kms-aws-encrypt-response.txt")
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

/// The Encrypt fixture reply without its `Connection: close` line (a keep-alive server's).
pub fn encrypt_reply_kept_alive() -> Vec<u8> {
    let reply = String::from_utf8(encrypt_reply()).unwrap();
    assert!(reply.contains("\r\nConnection: close\r\n"), "the fixture says close");
    reply.replace("\r\nConnection: close\r\n", "\r\n").into_bytes()
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

/// [`ExampleIo`] on the async face (feature `tokio`): the same fixtures, KMS through a `TokioKmsTransport`.
#[cfg(feature = "tokio")]
pub struct AsyncExampleIo {
    pub kms: libmongocrypt_kms::tls::TokioKmsTransport,
    pub keys: Vec<RawDocumentBuf>,
}

#[cfg(feature = "tokio")]
impl libmongocrypt::state_machine::AsyncStateMachineIo for AsyncExampleIo {
    async fn list_collections(&self, _db: Option<&str>, _filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Ok(vec![raw(&doc("example/collection-info.json"))])
    }

    async fn mark_command(&self, _command: &RawDocument) -> IoResult<RawDocumentBuf> {
        Ok(raw(&doc("example/mongocryptd-reply.json")))
    }

    async fn find_keys(&self, _filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Ok(self.keys.clone())
    }

    async fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.kms.kms_request(kms).await
    }
}
