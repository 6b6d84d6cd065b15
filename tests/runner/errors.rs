//! Error paths of the runner: libmongocrypt's ERROR state and its message, garbage fed at every state (BSON that
//! does not parse, HTTP that does not parse), failing I/O in every state. Each gives a typed error, none a crash.

use crate::runner_common;

use libmongocrypt::bson::{rawdoc, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{feed_kms_reply, run, IoResult, RunError, StateMachineIo};
use libmongocrypt::{Ctx, Error, ErrorKind, KmsCtx, State};
use runner_common::*;

const AUTO: &str = "csfle-auto-aws-example";
const FLE1: &str = "fle1-explicit-local";

fn example_io() -> MockIo {
    MockIo::new()
        .collinfo(load_raw(&format!("{AUTO}/collection-info.json")))
        .markings(load_raw(&format!("{AUTO}/mongocryptd-reply.json")))
        .key(load_raw(&format!("{AUTO}/key-document.json")))
}

fn encrypt_ctx(crypt: &libmongocrypt::Crypt) -> Ctx {
    crypt.ctx().encrypt("test", &load_raw(&format!("{AUTO}/cmd.json"))).unwrap()
}

/// A libmongocrypt client error with `message` in it.
fn assert_client_error(err: &RunError, message: &str) {
    let Some(e) = err.as_mongocrypt() else { panic!("not a libmongocrypt error: {err:?}") };
    assert_eq!(e.kind(), ErrorKind::Client, "{e:?}");
    assert!(e.message().contains(message), "{message:?} not in {e:?}");
}

#[test]
fn a_missing_key_ends_in_the_error_state_with_libmongocrypt_message() {
    let crypt = crypt();
    // The key vault only has another key: the find returns nothing.
    let io = MockIo::new().key(load_raw(&format!("{FLE1}/key-12345678-local.json")));
    let mut ctx =
        crypt.ctx().explicit_decrypt(&load_raw(&format!("{FLE1}/FLE1DeterministicEncryptedValue.json"))).unwrap();
    let err = run(&mut ctx, &io).unwrap_err();
    assert_client_error(&err, "not all keys requested were satisfied");
    assert_eq!(ctx.state(), State::Error);
    assert_eq!(io.trace(), ["find_keys"]);
    // Display is libmongocrypt's own.
    assert!(
        err.to_string().starts_with("libmongocrypt client error 1: not all keys requested were satisfied"),
        "{err}"
    );
}

#[test]
fn a_wrong_key_fed_is_rejected() {
    let crypt = crypt();
    // A key vault that ignores the filter and returns a key nobody asked for.
    let io = MockIo::new().key(load_raw(&format!("{FLE1}/key-12345678-local.json"))).unfiltered();
    let mut ctx =
        crypt.ctx().explicit_decrypt(&load_raw(&format!("{FLE1}/FLE1DeterministicEncryptedValue.json"))).unwrap();
    let err = run(&mut ctx, &io).unwrap_err();
    assert_client_error(&err, "unexpected key returned, does not match any requests");
    assert_eq!(ctx.state(), State::Error);
}

/// Drives the example's encryption by hand up to `state`.
fn encrypt_ctx_at(crypt: &libmongocrypt::Crypt, state: State) -> Ctx {
    let mut ctx = encrypt_ctx(crypt);
    // A Crypt caches the schema: its later ctxs skip NEED_MONGO_COLLINFO.
    while ctx.state() != state {
        let reply = match ctx.state() {
            State::NeedMongoCollinfo => load_raw(&format!("{AUTO}/collection-info.json")),
            State::NeedMongoMarkings => load_raw(&format!("{AUTO}/mongocryptd-reply.json")),
            other => panic!("{other:?} before {state:?}"),
        };
        ctx.mongo_feed(&reply).unwrap();
        ctx.mongo_done().unwrap();
    }
    ctx
}

#[test]
fn non_bson_bytes_at_each_mongo_state_give_a_typed_error_and_the_runner_reports_it() {
    let cases = [
        (State::NeedMongoCollinfo, "BSON malformed"),
        (State::NeedMongoMarkings, "malformed BSON"),
        (State::NeedMongoKeys, "malformed BSON for key document"),
    ];
    for (state, message) in cases {
        // An empty buffer never reaches libmongocrypt (libbson aborts on it in some calls): the ctx is untouched.
        let fresh = crypt();
        let mut ctx = encrypt_ctx_at(&fresh, state);
        assert!(matches!(ctx.mongo_feed(&[][..]), Err(Error::InvalidArgument(_))), "{state:?}");
        assert_eq!(ctx.state(), state);
        for garbage in [&b"garbage!"[..], &[0xff; 64][..], &[5, 0, 0, 0][..]] {
            let crypt = crypt();
            let mut ctx = encrypt_ctx_at(&crypt, state);
            let err = ctx.mongo_feed(garbage).unwrap_err();
            assert_eq!(err, Error::Client { code: 1, message: message.into() }, "{state:?} {garbage:?}");
            assert_eq!(ctx.state(), State::Error);
            // The runner surfaces the ERROR state as the same typed error, without any I/O.
            let io = MockIo::new();
            let run_err = run(&mut ctx, &io).unwrap_err();
            assert_eq!(run_err.as_mongocrypt(), Some(&err));
            assert!(io.calls().is_empty());
        }
    }
}

/// The binding's own error for a document whose elements are malformed inside a valid frame.
fn assert_malformed(err: &RunError) {
    match err.as_mongocrypt() {
        Some(Error::InvalidArgument(message)) => assert!(message.starts_with("malformed BSON"), "{message}"),
        other => panic!("expected InvalidArgument(malformed BSON), got {other:?}"),
    }
}

/// Framed like a document (length, terminating NUL) but its one element has type 0x7f with a truncated value.
fn framed_garbage() -> RawDocumentBuf {
    RawDocumentBuf::from_bytes(vec![10, 0, 0, 0, 0x7f, b'A', 0, 1, 2, 0]).unwrap()
}

#[test]
fn a_broken_mongocryptd_reply_through_the_runner() {
    let crypt = crypt();
    let io = example_io().markings(framed_garbage());
    let err = run(&mut encrypt_ctx(&crypt), &io).unwrap_err();
    assert_malformed(&err);
    assert_eq!(io.trace(), ["list_collections", "mark_command"]);
}

#[test]
fn a_broken_key_document_through_the_runner() {
    let crypt = crypt();
    let mut io = example_io();
    io.keys = vec![framed_garbage()];
    let err = run(&mut encrypt_ctx(&crypt), &io).unwrap_err();
    assert_client_error(&err, "not all keys requested were satisfied");
    assert_eq!(io.trace(), ["list_collections", "mark_command", "find_keys"]);
}

#[test]
fn a_broken_collection_info_through_the_runner() {
    let crypt = crypt();
    let mut io = example_io();
    io.collinfo = vec![framed_garbage()];
    // libmongocrypt 1.7 skips such a document and 1.21 rejects it for its missing name; the binding checks the
    // elements of every document it passes, so it never gets that far on any version.
    let err = run(&mut encrypt_ctx(&crypt), &io).unwrap_err();
    assert_malformed(&err);
    assert_eq!(io.trace(), ["list_collections"]);
}

fn kms_error(reply: &[u8]) -> RunError {
    let crypt = crypt();
    let reply = reply.to_vec();
    let io = example_io().kms_with(move |kms| Ok(feed_kms_reply(kms, &reply)?));
    let err = run(&mut encrypt_ctx(&crypt), &io).unwrap_err();
    assert_eq!(io.trace(), ["list_collections", "mark_command", "find_keys", "kms_request"]);
    err
}

#[test]
fn garbage_http_from_kms_gives_a_typed_error() {
    assert_client_error(&kms_error(b"garbage\r\n\r\n"), "KMS response parser error");
    // No line end ever comes: the parser waits for more.
    assert_client_error(&kms_error(&[0xff; 2000]), "KMS response unfinished");
}

#[test]
fn an_http_error_from_kms_gives_libmongocrypt_message() {
    assert_client_error(&kms_error(b"HTTP/1.1 418 I'm a teapot\r\n\r\n"), "Error in KMS response. HTTP status=418");
    let body = r#"{"__type": "NotFoundException", "message": "Invalid keyId"}"#;
    let reply = format!("HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    assert_client_error(&kms_error(reply.as_bytes()), "Invalid keyId");
}

#[test]
fn a_short_kms_reply_is_unfinished() {
    let mut reply = http_reply(&format!("{AUTO}/kms-decrypt-reply.txt"));
    reply.truncate(reply.len() - 10);
    assert_client_error(&kms_error(&reply), "KMS response unfinished");
    assert_client_error(&kms_error(b""), "KMS response unfinished");
}

#[test]
fn a_long_kms_reply_is_rejected() {
    let mut reply = http_reply(&format!("{AUTO}/kms-decrypt-reply.txt"));
    reply.extend_from_slice(b"trailing bytes");
    // feed_kms_reply feeds the bytes past Content-Length too, so that libmongocrypt sees them.
    assert_client_error(&kms_error(&reply), "exceeded content length");
}

/// Fails every method with `method failed`.
struct Failing;

impl StateMachineIo for Failing {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("list_collections failed".into())
    }
    fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err("mark_command failed".into())
    }
    fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("find_keys failed".into())
    }
    fn kms_request(&self, _: &mut KmsCtx<'_>) -> IoResult<()> {
        Err("kms_request failed".into())
    }
    fn kms_credentials(&self) -> IoResult<RawDocumentBuf> {
        Err("kms_credentials failed".into())
    }
}

#[test]
fn failing_io_is_reported_with_its_state() {
    let crypt = crypt();
    let cases = [
        (encrypt_ctx_at(&crypt, State::NeedMongoCollinfo), State::NeedMongoCollinfo, "list_collections failed"),
        (encrypt_ctx_at(&crypt, State::NeedMongoMarkings), State::NeedMongoMarkings, "mark_command failed"),
        (encrypt_ctx_at(&crypt, State::NeedMongoKeys), State::NeedMongoKeys, "find_keys failed"),
    ];
    for (mut ctx, state, message) in cases {
        let err = run(&mut ctx, &Failing).unwrap_err();
        let RunError::Io { state: failed_in, source } = &err else { panic!("{err:?}") };
        assert_eq!((*failed_in, source.to_string().as_str()), (state, message));
        assert_eq!(err.to_string(), format!("driver I/O failed in state {state:?}: {message}"));
        assert!(err.as_mongocrypt().is_none());
        // The ctx stays where it was: the driver may retry the operation or drop it.
        assert_eq!(ctx.state(), state);
    }

    let mut ctx = encrypt_ctx_at(&crypt, State::NeedMongoKeys);
    ctx.mongo_feed(&load_raw(&format!("{AUTO}/key-document.json"))).unwrap();
    ctx.mongo_done().unwrap();
    assert_eq!(ctx.state(), State::NeedKms);
    assert_eq!(run(&mut ctx, &Failing).unwrap_err().io_state(), Some(State::NeedKms));
}

/// Returns this crate's own error from `find_keys`.
struct ReturnsMongocryptError;

impl StateMachineIo for ReturnsMongocryptError {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        unreachable!()
    }
    fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        unreachable!()
    }
    fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(Error::InvalidArgument("no key vault".into()).into())
    }
    fn kms_request(&self, _: &mut KmsCtx<'_>) -> IoResult<()> {
        unreachable!()
    }
}

#[test]
fn a_mongocrypt_error_from_io_comes_back_typed() {
    let crypt = crypt();
    let mut ctx =
        crypt.ctx().explicit_decrypt(&load_raw(&format!("{FLE1}/FLE1DeterministicEncryptedValue.json"))).unwrap();
    let err = run(&mut ctx, &ReturnsMongocryptError).unwrap_err();
    assert!(matches!(&err, RunError::Mongocrypt(Error::InvalidArgument(m)) if m == "no key vault"), "{err:?}");
}

#[test]
fn a_finished_ctx_runs_to_none_without_io() {
    let crypt = crypt();
    let io = MockIo::new().key(load_raw(&format!("{FLE1}/key-ABCDEFAB-local.json")));
    let mut ctx =
        crypt.ctx().explicit_decrypt(&load_raw(&format!("{FLE1}/FLE1DeterministicEncryptedValue.json"))).unwrap();
    assert_eq!(run(&mut ctx, &io).unwrap(), Some(rawdoc! { "v": "foo" }));
    assert_eq!(ctx.state(), State::Done);
    // The result was taken in READY; running a DONE ctx again is a no-op.
    assert_eq!(run(&mut ctx, &io).unwrap(), None);
    assert_eq!(io.trace(), ["find_keys"]);
}
