//! Keep-alive (`KmsTransportBuilder::keep_alive`), on the blocking face (`run` with `KmsTransport`) and the async
//! face (`run_tokio` with `TokioKmsTransport`), against the loopback TLS servers of `kms/tests/support/server.rs` in
//! their keep-alive mode: data keys one after the other, each needing one AWS Encrypt request.
//!
//! What is checked: the bytes each request went out as (libmongocrypt's message exactly, or without its
//! `Connection:close` line when kept alive), how many TCP connections the server accepted and which request came
//! on which, and how many idle connections the transport holds (its `Debug`).
#![cfg(feature = "tokio")]

use crate::support;

use std::sync::Mutex;
use std::time::Duration;

use bson::{Document, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{run, run_tokio, AsyncStateMachineIo, IoResult, RunError, StateMachineIo};
use libmongocrypt::{Crypt, KeyEncryptionKey, KmsCtx};
use libmongocrypt_kms::tls::{KmsTransport, TokioKmsTransport};

use support::pki::Pki;
use support::server::{self, MockServer, Options, Reply, Request};
use support::*;

/// The line libmongocrypt writes into every HTTP request.
const CLOSE_LINE: &str = "Connection:close\r\n";

#[derive(Clone, Copy, Debug)]
enum Face {
    Blocking,
    Tokio,
}

const FACES: [Face; 2] = [Face::Blocking, Face::Tokio];

/// A data key's I/O: only KMS, through `kms`, recording every message libmongocrypt wrote.
struct Recording<T> {
    kms: T,
    messages: Mutex<Vec<Vec<u8>>>,
}

impl<T> Recording<T> {
    fn record(&self, kms: &KmsCtx<'_>) {
        self.messages.lock().unwrap().push(kms.message().unwrap().to_vec());
    }
}

const NOT_HERE: &str = "a data key needs only KMS";

impl StateMachineIo for Recording<KmsTransport> {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(NOT_HERE.into())
    }
    fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err(NOT_HERE.into())
    }
    fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(NOT_HERE.into())
    }
    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.record(kms);
        self.kms.kms_request(kms)
    }
}

impl AsyncStateMachineIo for Recording<TokioKmsTransport> {
    async fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(NOT_HERE.into())
    }
    async fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err(NOT_HERE.into())
    }
    async fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(NOT_HERE.into())
    }
    async fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.record(kms);
        self.kms.kms_request(kms).await
    }
}

fn crypt() -> Crypt {
    Crypt::builder().kms_providers(&providers()).unwrap().build().unwrap()
}

fn assert_aws_key(key: &RawDocumentBuf) {
    let key = Document::try_from(key.as_ref()).unwrap();
    let reply = String::from_utf8(encrypt_reply()).unwrap();
    let blob = reply.split("\"CiphertextBlob\": \"").nth(1).unwrap().split('"').next().unwrap();
    assert_eq!(
        key.get_binary_generic("keyMaterial").unwrap(),
        &libmongocrypt::bson::Binary::from_base64(blob, None).unwrap().bytes
    );
}

/// A keep-alive TLS server answering request `n` (0-based, in arrival order) with `reply(n)`.
fn keep_alive_kms(pki: &Pki, reply: impl Fn(usize) -> Reply + Send + Sync + 'static) -> MockServer {
    let tls = server::tls_config(vec![pki.server.cert.clone()], pki.server.key(), None);
    let answered = std::sync::atomic::AtomicUsize::new(0);
    MockServer::start(Options { tls: Some(tls), keep_alive: true, ..Options::default() }, move |_: &Request| {
        reply(answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
    })
}

/// A client of `face` to `kms` that keeps connections alive for 30 s.
fn kept_alive_client(face: Face, pki: &Pki, kms: &MockServer) -> Client {
    Client::new(face, transport_to(pki, kms.addr()).keep_alive(Some(Duration::from_secs(30))).build().unwrap())
}

/// How many idle connections a transport's `Debug` says it holds (a `TokioKmsTransport` shows its blocking
/// transport's pool, always empty here, and its own).
fn idle(transport_debug: &str) -> usize {
    let pools = transport_debug.split("Pool { idle: ").skip(1);
    pools.map(|rest| rest.split(' ').next().unwrap().parse::<usize>().unwrap()).sum()
}

/// A face's transport over one configuration; `idle()` its idle connections.
struct Client {
    face: Face,
    blocking: KmsTransport,
    tokio: TokioKmsTransport,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    fn new(face: Face, transport: KmsTransport) -> Client {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        Client { face, tokio: TokioKmsTransport::new(transport.clone()), blocking: transport, runtime }
    }

    fn idle(&self) -> usize {
        match self.face {
            Face::Blocking => idle(&format!("{:?}", self.blocking)),
            Face::Tokio => idle(&format!("{:?}", self.tokio)),
        }
    }

    /// One data key through this face: its result, and the messages libmongocrypt wrote.
    fn try_datakey(&self, crypt: &Crypt) -> (Result<Option<RawDocumentBuf>, RunError>, Vec<Vec<u8>>) {
        let kek = KeyEncryptionKey::aws("aws", "us-east-1", AWS_KEY_ARN);
        let mut ctx = crypt.ctx().key_encryption_key(&kek).unwrap().datakey().unwrap();
        match self.face {
            Face::Blocking => {
                let io = Recording { kms: self.blocking.clone(), messages: Mutex::default() };
                let key = run(&mut ctx, &io);
                (key, io.messages.into_inner().unwrap())
            }
            Face::Tokio => {
                let io = Recording { kms: self.tokio.clone(), messages: Mutex::default() };
                let key = self.runtime.block_on(run_tokio(&mut ctx, &io));
                (key, io.messages.into_inner().unwrap())
            }
        }
    }

    /// One data key, checked; the message libmongocrypt wrote for its Encrypt request.
    fn datakey(&self, crypt: &Crypt) -> Vec<u8> {
        let (key, messages) = self.try_datakey(crypt);
        let key = key.unwrap_or_else(|e| panic!("{:?}: {e}", self.face)).expect("a key");
        assert_aws_key(&key);
        assert_eq!(messages.len(), 1, "one Encrypt request");
        messages.into_iter().next().unwrap()
    }
}

/// What the server read of a request: head and body.
fn received(request: &Request) -> Vec<u8> {
    [request.head.as_bytes(), &request.body].concat()
}

/// libmongocrypt's message without its `Connection:close` line (which it must have had).
fn without_close(message: &[u8]) -> Vec<u8> {
    let message = String::from_utf8(message.to_vec()).unwrap();
    assert_eq!(message.matches(CLOSE_LINE).count(), 1, "libmongocrypt wrote {CLOSE_LINE:?}: {message}");
    message.replacen(CLOSE_LINE, "", 1).into_bytes()
}

#[test]
fn kept_alive_requests_share_one_connection() {
    for face in FACES {
        let pki = Pki::new("mock CA");
        let kms = keep_alive_kms(&pki, |_| Reply::Bytes(encrypt_reply_kept_alive()));
        let client = kept_alive_client(face, &pki, &kms);
        let crypt = crypt();
        let mut messages = Vec::new();
        for i in 0..3 {
            messages.push(client.datakey(&crypt));
            assert_eq!(client.idle(), 1, "{face:?}: after request {i}, its connection is kept");
        }
        assert_eq!(kms.connections(), 1, "{face:?}");
        let requests = kms.stop();
        assert_eq!(requests.len(), 3, "{face:?}");
        for (request, message) in requests.iter().zip(&messages) {
            assert_eq!(request.conn, 0, "{face:?}");
            assert_eq!(received(request), without_close(message), "{face:?}: the request as written");
        }
    }
}

#[test]
fn without_keep_alive_every_request_has_its_connection() {
    for face in FACES {
        let pki = Pki::new("mock CA");
        let kms = keep_alive_kms(&pki, |_| Reply::Bytes(encrypt_reply_kept_alive()));
        let client = Client::new(face, transport_to(&pki, kms.addr()).build().unwrap());
        let crypt = crypt();
        let messages: Vec<_> = (0..3).map(|_| client.datakey(&crypt)).collect();
        assert_eq!(client.idle(), 0, "{face:?}");
        // The server keeps a connection open only when the request does not say close: each one did.
        assert_eq!(kms.connections(), 3, "{face:?}");
        let requests = kms.stop();
        for (i, (request, message)) in requests.iter().zip(&messages).enumerate() {
            assert_eq!(request.conn, i, "{face:?}");
            assert_eq!(&received(request), message, "{face:?}: libmongocrypt's message, byte for byte");
        }
    }
}

#[test]
fn a_reply_saying_close_ends_the_connection() {
    for face in FACES {
        let pki = Pki::new("mock CA");
        // The fixture as it is: `Connection: close`.
        let kms = keep_alive_kms(&pki, |_| Reply::Bytes(encrypt_reply()));
        let client = kept_alive_client(face, &pki, &kms);
        let crypt = crypt();
        let messages: Vec<_> = (0..3).map(|_| client.datakey(&crypt)).collect();
        assert_eq!(client.idle(), 0, "{face:?}");
        assert_eq!(kms.connections(), 3, "{face:?}");
        let requests = kms.stop();
        for (i, (request, message)) in requests.iter().zip(&messages).enumerate() {
            assert_eq!(request.conn, i, "{face:?}");
            assert_eq!(received(request), without_close(message), "{face:?}");
        }
    }
}

#[test]
fn a_connection_the_server_closed_while_idle_is_replaced() {
    for face in FACES {
        let pki = Pki::new("mock CA");
        // Keeps nothing alive: answers (without saying close), waits 500 ms, closes.
        let kms = keep_alive_kms(&pki, |_| Reply::ThenClose(encrypt_reply_kept_alive(), Duration::from_millis(500)));
        let client = kept_alive_client(face, &pki, &kms);
        let crypt = crypt();
        client.datakey(&crypt);
        assert_eq!(client.idle(), 1, "{face:?}: kept (the server had not closed it yet)");
        std::thread::sleep(Duration::from_millis(900));
        // The kept connection is closed by now: the transport sees it before writing, and opens a new one.
        client.datakey(&crypt);
        assert_eq!(kms.connections(), 2, "{face:?}");
        let requests = kms.stop();
        assert_eq!(requests.iter().map(|r| r.conn).collect::<Vec<_>>(), [0, 1], "{face:?}");
    }
}

#[test]
fn bytes_sent_on_an_idle_connection_are_not_taken_for_the_next_reply() {
    for face in FACES {
        let pki = Pki::new("mock CA");
        // After the first reply, 100 ms later and unasked, a 408 (as servers send before closing an idle
        // connection): it must not be read as the second request's reply.
        let timeout = server::http(408, "{\"message\": \"idle\"}");
        let kms = keep_alive_kms(&pki, move |n| match n {
            0 => Reply::ThenSend(encrypt_reply_kept_alive(), Duration::from_millis(100), timeout.clone()),
            _ => Reply::Bytes(encrypt_reply_kept_alive()),
        });
        let client = kept_alive_client(face, &pki, &kms);
        let crypt = crypt();
        client.datakey(&crypt);
        std::thread::sleep(Duration::from_millis(400));
        client.datakey(&crypt);
        assert_eq!(kms.connections(), 2, "{face:?}");
        let requests = kms.stop();
        assert_eq!(requests.iter().map(|r| r.conn).collect::<Vec<_>>(), [0, 1], "{face:?}");
    }
}

#[test]
fn a_kept_connection_closed_before_the_reply_is_replaced() {
    for face in FACES {
        let pki = Pki::new("mock CA");
        // The second request, on the kept connection, is read and the connection dropped without a byte of reply:
        // it goes out again on a new connection, in the same attempt (KMS requests are safe to repeat).
        let kms = keep_alive_kms(&pki, move |n| match n {
            1 => Reply::CutOff(encrypt_reply_kept_alive(), 0),
            _ => Reply::Bytes(encrypt_reply_kept_alive()),
        });
        let client = kept_alive_client(face, &pki, &kms);
        let crypt = crypt();
        client.datakey(&crypt);
        let message = client.datakey(&crypt);
        assert_eq!(kms.connections(), 2, "{face:?}");
        let requests = kms.stop();
        assert_eq!(requests.iter().map(|r| r.conn).collect::<Vec<_>>(), [0, 0, 1], "{face:?}");
        assert_eq!(received(&requests[1]), received(&requests[2]), "{face:?}: the same request again");
        assert_eq!(received(&requests[2]), without_close(&message), "{face:?}");
    }
}

#[test]
fn a_reply_cut_short_on_a_kept_connection_is_an_error() {
    for face in FACES {
        let pki = Pki::new("mock CA");
        // The second reply stops after 20 bytes: libmongocrypt has been fed them, so nothing is sent again.
        let kms = keep_alive_kms(&pki, move |n| match n {
            1 => Reply::CutOff(encrypt_reply_kept_alive(), 20),
            _ => Reply::Bytes(encrypt_reply_kept_alive()),
        });
        let client = kept_alive_client(face, &pki, &kms);
        let crypt = crypt();
        client.datakey(&crypt);
        let (failed, _) = client.try_datakey(&crypt);
        let error = failed.expect_err("a reply cut short").to_string();
        assert!(error.contains("(20 bytes received)"), "{face:?}: {error}");
        assert_eq!(client.idle(), 0, "{face:?}");
        let requests = kms.stop();
        assert_eq!(requests.len(), 2, "{face:?}: not sent again");
    }
}

#[test]
fn each_runtime_has_its_own_kept_connections() {
    let pki = Pki::new("mock CA");
    let kms = keep_alive_kms(&pki, |_| Reply::Bytes(encrypt_reply_kept_alive()));
    let transport = transport_to(&pki, kms.addr()).keep_alive(Some(Duration::from_secs(30))).build().unwrap();
    // Two clients, so two runtimes, over one TokioKmsTransport (its clones share the kept connections).
    let first = Client::new(Face::Tokio, transport.clone());
    let mut second = Client::new(Face::Tokio, transport);
    second.tokio = first.tokio.clone();
    let crypt = crypt();
    first.datakey(&crypt);
    // A socket of the first runtime would not be polled by the second one's driver: it opens its own.
    second.datakey(&crypt);
    first.datakey(&crypt);
    second.datakey(&crypt);
    assert_eq!(kms.connections(), 2);
    assert_eq!(first.idle(), 2, "one kept per runtime");
    let requests = kms.stop();
    assert_eq!(requests.iter().map(|r| r.conn).collect::<Vec<_>>(), [0, 1, 0, 1]);
}

#[test]
fn idle_connections_expire() {
    for face in FACES {
        let pki = Pki::new("mock CA");
        let kms = keep_alive_kms(&pki, |_| Reply::Bytes(encrypt_reply_kept_alive()));
        let keep_alive = Some(Duration::from_millis(50));
        let client = Client::new(face, transport_to(&pki, kms.addr()).keep_alive(keep_alive).build().unwrap());
        let crypt = crypt();
        client.datakey(&crypt);
        assert_eq!(client.idle(), 1, "{face:?}");
        std::thread::sleep(Duration::from_millis(200));
        client.datakey(&crypt);
        // The expired connection was closed; the new one is kept.
        assert_eq!(client.idle(), 1, "{face:?}");
        assert_eq!(kms.connections(), 2, "{face:?}");
        let requests = kms.stop();
        assert_eq!(requests.iter().map(|r| r.conn).collect::<Vec<_>>(), [0, 1], "{face:?}");
    }
}

#[test]
fn concurrent_requests_share_the_kept_connections() {
    let pki = Pki::new("mock CA");
    let tls = server::tls_config(vec![pki.server.cert.clone()], pki.server.key(), None);
    let options = Options { tls: Some(tls), keep_alive: true, max_connections: 32, ..Options::default() };
    let kms = MockServer::start(options, |_: &Request| Reply::Bytes(encrypt_reply_kept_alive()));
    let transport = transport_to(&pki, kms.addr()).keep_alive(Some(Duration::from_secs(30))).build().unwrap();
    let client = Client::new(Face::Tokio, transport);
    let crypt = crypt();
    // 8 tasks, 4 data keys each, one after the other.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (crypt, kms) = (crypt.clone(), client.tokio.clone());
            client.runtime.spawn(async move {
                let kek = KeyEncryptionKey::aws("aws", "us-east-1", AWS_KEY_ARN);
                for _ in 0..4 {
                    let mut ctx = crypt.ctx().key_encryption_key(&kek).unwrap().datakey().unwrap();
                    let io = Recording { kms: kms.clone(), messages: Mutex::default() };
                    assert_aws_key(&run_tokio(&mut ctx, &io).await.unwrap().unwrap());
                }
            })
        })
        .collect();
    client.runtime.block_on(async {
        for task in tasks {
            task.await.unwrap();
        }
    });
    // At most one connection per task: without keep-alive there would be 32.
    let connections = kms.connections();
    assert!((1..=8).contains(&connections), "{connections} connections for 32 requests");
    assert_eq!(client.idle(), connections, "every connection kept at the end");
    let requests = kms.stop();
    assert_eq!(requests.len(), 32);
    assert!(requests.iter().all(|r| r.header("Connection").is_none()), "no request said close");
}

#[test]
fn an_error_reply_closes_its_connection() {
    for face in FACES {
        let pki = Pki::new("mock CA");
        // The first request gets HTTP 400 (framed, keep-alive): libmongocrypt fails the operation; the next gets the
        // key.
        let kms = keep_alive_kms(&pki, move |n| match n {
            0 => Reply::Bytes(server::http(400, "{\"__type\": \"mock\", \"message\": \"mock error\"}")),
            _ => Reply::Bytes(encrypt_reply_kept_alive()),
        });
        let client = kept_alive_client(face, &pki, &kms);
        let crypt = crypt();
        let (failed, _) = client.try_datakey(&crypt);
        let error = failed.expect_err("HTTP 400").to_string();
        assert!(error.contains("mock error"), "{face:?}: libmongocrypt's error quotes the body: {error}");
        assert_eq!(client.idle(), 0, "{face:?}: a failed exchange's connection is not kept");
        client.datakey(&crypt);
        assert_eq!(kms.connections(), 2, "{face:?}");
        assert_eq!(client.idle(), 1, "{face:?}");
    }
}
