//! The KMS side of the runner: on-demand credentials (NEED_KMS_CREDENTIALS), concurrent KMS requests with
//! `run_concurrent`, retries of failed requests, and the KMS failure contract (`KmsFailure`, `Runner::serve_kms`).

use crate::runner_common;

use std::sync::atomic::{AtomicUsize, Ordering};

use libmongocrypt::bson::{doc, rawdoc, Binary, Document, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{
    feed_kms_reply, run, run_concurrent, IoError, IoResult, KmsAttemptError, KmsFailure, KmsFailureKind, RunError,
    Runner, StateMachineIo,
};
use libmongocrypt::{Crypt, ErrorKind, KmsCtx, State};
use runner_common::*;

const AUTO: &str = "csfle-auto-aws-example";
const FLE1: &str = "fle1-explicit-local";

fn kms_reply() -> Vec<u8> {
    http_reply(&format!("{AUTO}/kms-decrypt-reply.txt"))
}

#[test]
fn on_demand_local_key_is_asked_for() {
    let crypt = on_demand_crypt("local");
    let mut providers = Document::new();
    providers.insert(
        "local",
        doc! { "key": Binary { subtype: libmongocrypt::bson::spec::BinarySubtype::Generic, bytes: vec![0; 96] } },
    );
    let io = MockIo::new()
        .key(load_raw(&format!("{FLE1}/key-ABCDEFAB-local.json")))
        .credentials(RawDocumentBuf::try_from(&providers).unwrap());
    let mut ctx =
        crypt.ctx().explicit_decrypt(&load_raw(&format!("{FLE1}/FLE1DeterministicEncryptedValue.json"))).unwrap();
    assert_eq!(run(&mut ctx, &io).unwrap(), Some(rawdoc! { "v": "foo" }));
    // libmongocrypt asks for credentials first, as soon as the ctx is initialised.
    assert_eq!(io.trace(), ["kms_credentials", "find_keys"]);
}

#[test]
fn on_demand_aws_credentials_sign_the_kms_request() {
    let crypt = on_demand_crypt("aws");
    let io = MockIo::new()
        .key(load_raw(&format!("{AUTO}/key-document.json")))
        .kms_reply(kms_reply())
        .credentials(rawdoc! { "aws": { "accessKeyId": "fromTheIo", "secretAccessKey": "secret" } });
    let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{AUTO}/expected-encrypted-cmd.json"))).unwrap();
    assert_eq!(run(&mut ctx, &io).unwrap(), Some(rawdoc! { "filter": { "ssn": "457-55-5462" }, "find": "test" }));
    assert_eq!(io.trace(), ["kms_credentials", "find_keys", "kms_request"]);
    let Call::Kms { message, .. } = &io.calls()[2] else { unreachable!() };
    assert!(String::from_utf8_lossy(message).contains("Credential=fromTheIo/"));
}

/// Implements only the required methods: `kms_credentials` keeps its default.
struct NoCredentials;

impl StateMachineIo for NoCredentials {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        unreachable!()
    }
    fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        unreachable!()
    }
    fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Ok(vec![load_raw(&format!("{FLE1}/key-ABCDEFAB-local.json"))])
    }
    fn kms_request(&self, _: &mut KmsCtx<'_>) -> IoResult<()> {
        unreachable!()
    }
}

#[test]
fn the_default_kms_credentials_fails_as_io() {
    let crypt = on_demand_crypt("local");
    let mut ctx =
        crypt.ctx().explicit_decrypt(&load_raw(&format!("{FLE1}/FLE1DeterministicEncryptedValue.json"))).unwrap();
    let err = run(&mut ctx, &NoCredentials).unwrap_err();
    assert_eq!(err.io_state(), Some(State::NeedKmsCredentials));
    assert!(err.to_string().contains("does not supply them"), "{err}");
}

fn kms_threads(io: &MockIo) -> Vec<std::thread::ThreadId> {
    io.calls().into_iter().filter_map(|c| if let Call::Kms { thread, .. } = c { Some(thread) } else { None }).collect()
}

#[test]
fn run_concurrent_serves_a_round_of_kms_requests_on_separate_threads() {
    let encrypted = doc_with_two_keys();
    let expected = rawdoc! { "a": "457-55-5462", "b": "457-55-5462" };
    let io = || {
        MockIo::new().key(load_raw(&format!("{AUTO}/key-document.json"))).key(second_aws_key()).kms_reply(kms_reply())
    };

    let (crypt1, concurrent) = (crypt(), io());
    let mut ctx = crypt1.ctx().decrypt(&encrypted).unwrap();
    assert_eq!(run_concurrent(&mut ctx, &concurrent).unwrap(), Some(expected.clone()));
    assert_eq!(concurrent.trace(), ["find_keys", "kms_request", "kms_request"]);
    let threads = kms_threads(&concurrent);
    assert_ne!(threads[0], threads[1]);
    assert!(!threads.contains(&std::thread::current().id()));

    let (crypt2, sequential) = (crypt(), io());
    let mut ctx = crypt2.ctx().decrypt(&encrypted).unwrap();
    assert_eq!(run(&mut ctx, &sequential).unwrap(), Some(expected));
    assert_eq!(kms_threads(&sequential), [std::thread::current().id(); 2]);
}

#[test]
fn run_concurrent_reports_the_first_failure_in_request_order() {
    let encrypted = doc_with_two_keys();
    let crypt = crypt();
    let served = AtomicUsize::new(0);
    let io =
        MockIo::new().key(load_raw(&format!("{AUTO}/key-document.json"))).key(second_aws_key()).kms_with(move |kms| {
            served.fetch_add(1, Ordering::SeqCst);
            Ok(feed_kms_reply(kms, b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n")?)
        });
    let mut ctx = crypt.ctx().decrypt(&encrypted).unwrap();
    let err = run_concurrent(&mut ctx, &io).unwrap_err();
    let mongocrypt_err = err.as_mongocrypt().expect("libmongocrypt's error, unboxed");
    assert!(mongocrypt_err.message().contains("HTTP status=503"), "{err}");
    assert_eq!(kms_threads(&io).len(), 2, "both requests were served before the error was reported");
}

#[test]
#[should_panic(expected = "the KMS handler panicked")]
fn run_concurrent_propagates_a_panic() {
    let encrypted = doc_with_two_keys();
    let crypt = crypt();
    let io = MockIo::new()
        .key(load_raw(&format!("{AUTO}/key-document.json")))
        .key(second_aws_key())
        .kms_with(|_| panic!("the KMS handler panicked"));
    let mut ctx = crypt.ctx().decrypt(&encrypted).unwrap();
    let _ = run_concurrent(&mut ctx, &io);
}

fn connection_reset() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by KMS")
}

#[test]
fn a_network_error_without_retry_is_returned_as_io() {
    let crypt = crypt();
    let io =
        MockIo::new().key(load_raw(&format!("{AUTO}/key-document.json"))).kms_with(|_| Err(connection_reset().into()));
    let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{AUTO}/expected-encrypted-cmd.json"))).unwrap();
    let err = run(&mut ctx, &io).unwrap_err();
    let RunError::Io { state, source } = &err else { panic!("{err:?}") };
    assert_eq!(*state, State::NeedKms);
    let io_err = source.downcast_ref::<std::io::Error>().expect("the driver's own error, kept");
    assert_eq!(io_err.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(err.to_string(), "driver I/O failed in state NeedKms: connection reset by KMS");
    assert!(std::error::Error::source(&err).is_some());
}

/// Retries need `mongocrypt_setopt_retry_kms` and `mongocrypt_kms_ctx_fail`, added in libmongocrypt 1.12.
fn retrying_crypt() -> Option<Crypt> {
    let builder = Crypt::builder().kms_providers(&providers()).unwrap().retry_kms(true);
    if libmongocrypt::sys::MONGOCRYPT_SYS_VERSION_NUMBER < 0x010c0000 {
        assert_eq!(builder.err().expect("retry_kms needs 1.12").kind(), ErrorKind::Unsupported);
        return None;
    }
    Some(builder.unwrap().build().unwrap())
}

#[test]
fn a_network_error_is_retried_when_libmongocrypt_allows_it() {
    let Some(crypt) = retrying_crypt() else { return };
    let attempts = AtomicUsize::new(0);
    let reply = kms_reply();
    let io = MockIo::new().key(load_raw(&format!("{AUTO}/key-document.json"))).kms_with(move |kms| {
        if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(connection_reset().into());
        }
        Ok(feed_kms_reply(kms, &reply)?)
    });
    let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{AUTO}/expected-encrypted-cmd.json"))).unwrap();
    assert_eq!(run(&mut ctx, &io).unwrap(), Some(rawdoc! { "filter": { "ssn": "457-55-5462" }, "find": "test" }));
    assert_eq!(io.trace(), ["find_keys", "kms_request", "kms_request"]);
}

#[test]
fn a_retryable_http_error_is_retried_when_libmongocrypt_allows_it() {
    let Some(crypt) = retrying_crypt() else { return };
    let attempts = AtomicUsize::new(0);
    let reply = kms_reply();
    let io = MockIo::new().key(load_raw(&format!("{AUTO}/key-document.json"))).kms_with(move |kms| {
        if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            return Ok(feed_kms_reply(kms, b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n")?);
        }
        Ok(feed_kms_reply(kms, &reply)?)
    });
    let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{AUTO}/expected-encrypted-cmd.json"))).unwrap();
    assert_eq!(run(&mut ctx, &io).unwrap(), Some(rawdoc! { "filter": { "ssn": "457-55-5462" }, "find": "test" }));
    assert_eq!(io.trace(), ["find_keys", "kms_request", "kms_request"]);
}

#[test]
fn retries_are_bounded() {
    let Some(crypt) = retrying_crypt() else { return };
    let io =
        MockIo::new().key(load_raw(&format!("{AUTO}/key-document.json"))).kms_with(|_| Err(connection_reset().into()));
    let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{AUTO}/expected-encrypted-cmd.json"))).unwrap();
    let err = run(&mut ctx, &io).unwrap_err();
    assert_eq!(err.io_state(), Some(State::NeedKms), "{err:?}");
    let attempts = io.trace().iter().filter(|c| **c == "kms_request").count();
    assert!((2..=10).contains(&attempts), "{attempts} attempts");
}

/// A transport's error that classifies itself for the runner, as `libmongocrypt_kms`'s `KmsIoError` does.
#[derive(Debug)]
struct Classified {
    kind: KmsFailureKind,
    attempts: u32,
    mongocrypt: Option<libmongocrypt::Error>,
}

impl Classified {
    fn boxed(kind: KmsFailureKind) -> IoError {
        KmsAttemptError::from(Classified { kind, attempts: 0, mongocrypt: None }).into()
    }
}

impl std::fmt::Display for Classified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "classified {:?} failure", self.kind)
    }
}

impl std::error::Error for Classified {}

impl KmsFailure for Classified {
    fn failure_kind(&self) -> KmsFailureKind {
        self.kind
    }

    fn record_attempts(&mut self, attempts: u32) {
        self.attempts = attempts;
    }

    fn mongocrypt_error(&self) -> Option<libmongocrypt::Error> {
        self.mongocrypt.clone()
    }
}

fn kms_calls(io: &MockIo) -> usize {
    io.trace().iter().filter(|c| **c == "kms_request").count()
}

/// The runner's error for a ctx whose only KMS request fails with `failure` every time.
fn failing_kms_run(
    crypt: &Crypt,
    runner: &Runner,
    failure: impl Fn() -> IoError + Send + Sync + 'static,
) -> (RunError, usize) {
    let io = MockIo::new().key(load_raw(&format!("{AUTO}/key-document.json"))).kms_with(move |_| Err(failure()));
    let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{AUTO}/expected-encrypted-cmd.json"))).unwrap();
    let err = runner.run(&mut ctx, &io).unwrap_err();
    (err, kms_calls(&io))
}

fn classified_source(err: &RunError) -> &Classified {
    let RunError::Io { state: State::NeedKms, source } = err else { panic!("not a NEED_KMS I/O error: {err:?}") };
    source.downcast_ref::<Classified>().expect("the runner unwraps the KmsAttemptError to the failure itself")
}

#[test]
fn a_final_kms_failure_is_not_retried_and_records_its_attempt() {
    // Even where libmongocrypt would retry a network error, a final failure ends the run at once.
    let crypt = retrying_crypt().unwrap_or_else(crypt);
    let (err, calls) = failing_kms_run(&crypt, &Runner::new(), || Classified::boxed(KmsFailureKind::Final));
    assert_eq!(calls, 1);
    assert_eq!(classified_source(&err).attempts, 1);
    assert_eq!(err.to_string(), "driver I/O failed in state NeedKms: classified Final failure");
}

#[test]
fn a_final_kms_failure_with_a_libmongocrypt_error_ends_the_run_with_it() {
    let crypt = crypt();
    let failure = || -> IoError {
        let mongocrypt =
            Some(libmongocrypt::Error::Kms { code: 1, message: "HTTP status=400 (KMS endpoint x)".into() });
        KmsAttemptError::from(Classified { kind: KmsFailureKind::Final, attempts: 0, mongocrypt }).into()
    };
    let (err, calls) = failing_kms_run(&crypt, &Runner::new(), failure);
    assert_eq!(calls, 1);
    let e = err.as_mongocrypt().unwrap_or_else(|| panic!("not a libmongocrypt error: {err:?}"));
    assert_eq!(e.message(), "HTTP status=400 (KMS endpoint x)");
}

#[test]
fn a_classified_network_failure_is_retried_and_records_every_attempt() {
    let (crypt, expected) = match retrying_crypt() {
        // libmongocrypt allows three retries.
        Some(crypt) => (crypt, 4),
        None => (crypt(), 1),
    };
    let (err, calls) = failing_kms_run(&crypt, &Runner::new(), || Classified::boxed(KmsFailureKind::Network));
    assert_eq!(calls, expected);
    assert_eq!(classified_source(&err).attempts, expected as u32);
}

#[test]
fn a_retry_libmongocrypt_scheduled_is_sent_again_without_fail_up_to_the_attempt_limit() {
    // libmongocrypt ≥ 1.12 schedules a retry for a 503 when retries are on; the transport says so.
    let Some(crypt) = retrying_crypt() else { return };
    let io = MockIo::new().key(load_raw(&format!("{AUTO}/key-document.json"))).kms_with(|kms| {
        feed_kms_reply(kms, b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n")?;
        Err(Classified::boxed(KmsFailureKind::RetryScheduled))
    });
    let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{AUTO}/expected-encrypted-cmd.json"))).unwrap();
    let err = Runner::new().max_kms_attempts(2).run(&mut ctx, &io).unwrap_err();
    assert_eq!(kms_calls(&io), 2);
    let source = classified_source(&err);
    assert_eq!((source.kind, source.attempts), (KmsFailureKind::RetryScheduled, 2));
}

#[test]
fn serve_kms_runs_the_runners_kms_loop_for_a_scope() {
    let crypt = crypt();
    let need_kms = || {
        let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{AUTO}/expected-encrypted-cmd.json"))).unwrap();
        assert_eq!(ctx.state(), State::NeedMongoKeys);
        ctx.mongo_feed(&load_raw(&format!("{AUTO}/key-document.json"))).unwrap();
        ctx.mongo_done().unwrap();
        assert_eq!(ctx.state(), State::NeedKms);
        ctx
    };

    // A failed attempt comes back as the attempt returned it, with its attempt count.
    let mut ctx = need_kms();
    let mut scope = ctx.kms_scope().unwrap();
    let err = Runner::new().serve_kms(&mut scope, |_| Err(Classified::boxed(KmsFailureKind::Final))).unwrap_err();
    assert_eq!(err.downcast_ref::<Classified>().expect("the failure itself").attempts, 1);
    drop(scope);

    // A served scope is left for the caller to end.
    let mut ctx = need_kms();
    let mut scope = ctx.kms_scope().unwrap();
    let reply = kms_reply();
    Runner::new().serve_kms(&mut scope, |kms| Ok(feed_kms_reply(kms, &reply)?)).unwrap();
    scope.done().unwrap();
    assert_eq!(ctx.state(), State::Ready);
}
