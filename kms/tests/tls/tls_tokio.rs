//! The async KMS transport (`TokioKmsTransport`) through `run_tokio`, against the loopback TLS servers of
//! `kms/tests/support/server.rs`: a whole data key, retries (libmongocrypt ≥ 1.12 with `feed_with_retry`, see
//! `support::retries`), retries exhausted, timeouts and certificate failures.
#![cfg(feature = "tokio")]

use crate::support;

use std::time::{Duration, Instant};

use bson::{Document, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{run_tokio, AsyncStateMachineIo, IoResult, RunError};
use libmongocrypt::{Crypt, Ctx, KeyEncryptionKey, KmsCtx};
use libmongocrypt_kms::tls::{enable_retries, KmsIoError, KmsIoErrorKind, TokioKmsTransport};

use support::pki::Pki;
use support::server::{self, Reply};
use support::*;

const AWS_ENDPOINT: &str = "kms.us-east-1.amazonaws.com:443";

/// A data key's I/O: only KMS, through the async transport.
struct KmsOnly {
    kms: TokioKmsTransport,
}

impl AsyncStateMachineIo for KmsOnly {
    async fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("a data key lists no collections".into())
    }
    async fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err("a data key needs no mongocryptd".into())
    }
    async fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("a data key finds no keys".into())
    }
    async fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.kms.kms_request(kms).await
    }
}

fn crypt(retry: bool) -> Crypt {
    let builder = Crypt::builder().kms_providers(&providers()).unwrap();
    let builder = if retry { enable_retries(builder).unwrap() } else { builder };
    builder.build().unwrap()
}

fn aws_datakey(crypt: &Crypt) -> Ctx {
    crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", AWS_KEY_ARN)).unwrap().datakey().unwrap()
}

fn io(pki: &Pki, addr: std::net::SocketAddr) -> KmsOnly {
    KmsOnly { kms: TokioKmsTransport::new(transport_to(pki, addr).build().unwrap()) }
}

/// Runs a data key on a fresh `tokio::spawn`ed task (so the future must be `Send`).
async fn datakey(crypt: &Crypt, io: KmsOnly) -> Result<Document, RunError> {
    let mut ctx = aws_datakey(crypt);
    let key = tokio::spawn(async move { run_tokio(&mut ctx, &io).await }).await.unwrap()?;
    Ok(Document::try_from(key.expect("a key document").as_ref()).unwrap())
}

fn assert_aws_key(key: &Document) {
    let reply = String::from_utf8(encrypt_reply()).unwrap();
    let blob = reply.split("\"CiphertextBlob\": \"").nth(1).unwrap().split('"').next().unwrap();
    let material = libmongocrypt::bson::Binary::from_base64(blob, None).unwrap().bytes;
    assert_eq!(key.get_binary_generic("keyMaterial").unwrap(), &material);
    assert_eq!(key.get_document("masterKey").unwrap().get_str("key").unwrap(), AWS_KEY_ARN);
}

fn kms_error(err: &RunError) -> &KmsIoError {
    let RunError::Io { source, .. } = err else { panic!("not an I/O error: {err}") };
    source.downcast_ref::<KmsIoError>().unwrap_or_else(|| panic!("not a KmsIoError: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datakey_over_tls() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    assert_aws_key(&datakey(&crypt(false), io(&pki, kms.addr())).await.unwrap());
    let requests = kms.stop();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].request_line().starts_with("POST / HTTP/1.1"), "{}", requests[0].head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_a_network_error_and_a_retryable_status() {
    for (name, first) in
        [("cut off", Reply::CutOff(encrypt_reply(), 10)), ("503", Reply::Bytes(server::http(503, "{}")))]
    {
        let pki = Pki::new("mock CA");
        let kms = tls_kms(&pki, false, 0, move |r| if r.conn == 0 { first.clone() } else { aws_replies(r) });
        let result = datakey(&crypt(true), io(&pki, kms.addr())).await;
        if retries() {
            assert_aws_key(&result.unwrap());
            assert_eq!(kms.stop().len(), 2, "{name}");
        } else {
            // One attempt before 1.12 (and without feed_with_retry for the status).
            assert!(result.is_err(), "{name}");
            assert_eq!(kms.stop().len(), 1, "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_give_the_last_error_with_attempts() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, |_| Reply::CutOff(encrypt_reply(), 20));
    let err = datakey(&crypt(true), io(&pki, kms.addr())).await.unwrap_err();
    let attempts = if retries() { 4 } else { 1 };
    let kms_err = kms_error(&err);
    assert_eq!((kms_err.endpoint(), kms_err.provider(), kms_err.attempts()), (AWS_ENDPOINT, "aws", attempts));
    let text = err.to_string();
    assert!(text.contains("closed the connection before sending a complete reply (20 bytes received)"), "{text}");
    assert!(!text.contains("close_notify"), "{text}");
    assert_eq!(kms.stop().len(), attempts as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_times_out() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, |_| Reply::Stall(Duration::from_secs(20)));
    let transport = transport_to(&pki, kms.addr()).request_timeout(Some(Duration::from_millis(300))).build().unwrap();
    let started = Instant::now();
    let err = datakey(&crypt(false), KmsOnly { kms: transport.into() }).await.unwrap_err();
    assert!(kms_error(&err).is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_tls_error() {
    let pki = Pki::new("mock CA");
    let other = Pki::new("another CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let err = datakey(&crypt(false), io(&other, kms.addr())).await.unwrap_err();
    assert!(matches!(kms_error(&err).kind(), KmsIoErrorKind::Tls(_)), "{err}");
    assert!(err.to_string().contains(AWS_ENDPOINT), "{err}");
}

/// A provider with a blocking connector only: the async face refuses its request rather than go around the
/// connector (a proxy), and says what to configure; the connector is not called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_connector_alone_is_refused_clearly() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let connector = move |_: &str, _: u16, _: Instant| -> std::io::Result<Box<dyn libmongocrypt_kms::tls::KmsStream>> {
        counted.fetch_add(1, Ordering::SeqCst);
        Err(std::io::Error::other("never called"))
    };
    let transport = TokioKmsTransport::new(transport_to(&pki, kms.addr()).connector(connector).build().unwrap());
    let crypt = crypt(false);
    let mut ctx = aws_datakey(&crypt);
    let mut scope = ctx.kms_scope().unwrap();
    let mut kms_ctx = scope.next_kms_ctx().unwrap();
    let err = transport.exchange(&mut kms_ctx).await.unwrap_err();
    assert!(matches!(err.kind(), KmsIoErrorKind::Connector(_)), "{err}");
    assert!(err.to_string().contains("only a blocking connector is configured for this provider"), "{err}");
    assert!(err.to_string().contains("KmsTransportBuilder::async_connector"), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    drop(kms_ctx);
    drop(scope);
    assert!(kms.stop().is_empty());
}
