//! The patterns of an async driver (the MongoDB Rust driver's encryption executor, on a tokio multi-threaded
//! runtime): a ctx built outside and moved into `tokio::spawn`, `finalize` on `spawn_blocking`, a struct owning a
//! `Crypt` and a pending `Ctx` moved between tasks, a KMS fan-out with `join_all` whose futures hold `&KmsCtx`
//! across awaits, on-demand credentials fetched asynchronously; and `run_async` itself: same results as `run`,
//! bounded fan-out, the caller's timer for back-offs, retries, cancellation.

use crate::runner_common;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use libmongocrypt::bson::{rawdoc, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{
    feed_kms_reply, run, run_async, run_tokio, AsyncStateMachineIo, IoResult, Runner, StateMachineIo,
};
use libmongocrypt::{Algorithm, Crypt, Ctx, ErrorKind, KmsCtx, State};
use runner_common::*;

/// The blocking [`MockIo`] behind async methods, each of which first yields to the runtime as real I/O would.
/// KMS requests hold their `&KmsCtx` across a sleep and count how many are in flight.
struct AsyncMock {
    io: MockIo,
    kms_delay: Duration,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl AsyncMock {
    fn new(io: MockIo) -> AsyncMock {
        AsyncMock { io, kms_delay: Duration::from_millis(20), in_flight: AtomicUsize::new(0), max_in_flight: 0.into() }
    }
}

/// What a driver's KMS transport does with a request before feeding the reply: reads the message and endpoint,
/// then awaits the network with the `&KmsCtx` still borrowed (so the future is `Send` only because `KmsCtx: Sync`).
async fn send_request(kms: &KmsCtx<'_>, delay: Duration) -> IoResult<usize> {
    let message = kms.message()?;
    tokio::time::sleep(delay).await;
    assert!(kms.endpoint()?.ends_with(":443"));
    Ok(message.len())
}

impl AsyncStateMachineIo for AsyncMock {
    async fn list_collections(&self, db: Option<&str>, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        tokio::task::yield_now().await;
        self.io.list_collections(db, filter)
    }

    async fn mark_command(&self, command: &RawDocument) -> IoResult<RawDocumentBuf> {
        tokio::task::yield_now().await;
        self.io.mark_command(command)
    }

    async fn find_keys(&self, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        tokio::task::yield_now().await;
        self.io.find_keys(filter)
    }

    async fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let sent = send_request(kms, self.kms_delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        assert!(sent? > 0);
        self.io.kms_request(kms)
    }

    async fn kms_credentials(&self) -> IoResult<RawDocumentBuf> {
        tokio::time::sleep(Duration::from_millis(5)).await; // An IMDS round trip, say.
        self.io.kms_credentials()
    }
}

fn example_io() -> MockIo {
    MockIo::new()
        .collinfo(load_raw(&format!("{AUTO_AWS}/collection-info.json")))
        .markings(load_raw(&format!("{AUTO_AWS}/mongocryptd-reply.json")))
        .key(load_raw(&format!("{AUTO_AWS}/key-document.json")))
        .kms_reply(http_reply(&format!("{AUTO_AWS}/kms-decrypt-reply.txt")))
}

fn expected_encrypted_cmd() -> RawDocumentBuf {
    load_raw(&format!("{AUTO_AWS}/expected-encrypted-cmd.json"))
}

fn plaintext_cmd() -> RawDocumentBuf {
    rawdoc! { "filter": { "ssn": "457-55-5462" }, "find": "test" }
}

fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> tokio::task::JoinHandle<T> {
    tokio::spawn(future)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ctx_built_outside_runs_inside_tokio_spawn_after_its_crypt_is_dropped() {
    let crypt = crypt();
    let mut ctx = crypt.ctx().encrypt("test", &load_raw(&format!("{AUTO_AWS}/cmd.json"))).unwrap();
    drop(crypt); // The ctx holds the handle.
    let io = Arc::new(AsyncMock::new(example_io()));
    let task_io = io.clone();
    let encrypted = spawn(async move { run_tokio(&mut ctx, &*task_io).await }).await.unwrap().unwrap();
    assert_eq!(encrypted.unwrap().as_bytes(), expected_encrypted_cmd().as_bytes());
    assert_eq!(io.io.trace(), ["list_collections", "mark_command", "find_keys", "kms_request"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_ctx_is_finalized_on_spawn_blocking() {
    let crypt = Crypt::builder().kms_providers(&providers()).unwrap().build().unwrap();
    let ctx = crypt.ctx().key_encryption_key(&libmongocrypt::KeyEncryptionKey::local("local")).unwrap();
    let mut datakey = ctx.datakey().unwrap();
    assert_eq!(datakey.state(), State::Ready);
    let key = tokio::task::spawn_blocking(move || datakey.finalize_owned()).await.unwrap().unwrap();
    let key_id = key.get_binary("_id").unwrap().bytes.to_vec();

    // Keys fed on this task; the READY ctx goes to the blocking pool, as the driver does with crypto work.
    let mut ctx = crypt
        .ctx()
        .key_id(&key_id)
        .unwrap()
        .algorithm(&Algorithm::Deterministic)
        .unwrap()
        .explicit_encrypt(&rawdoc! { "v": "457-55-5462" })
        .unwrap();
    assert_eq!(ctx.state(), State::NeedMongoKeys);
    ctx.mongo_feed(&key).unwrap();
    ctx.mongo_done().unwrap();
    assert_eq!(ctx.state(), State::Ready);
    let ciphertext = tokio::task::spawn_blocking(move || ctx.finalize_owned()).await.unwrap().unwrap();
    let blob = ciphertext.get_binary("v").unwrap();
    assert_eq!((blob.bytes[0], &blob.bytes[1..17]), (1, &key_id[..]), "a Deterministic ciphertext of the key");

    let mut ctx = crypt.ctx().explicit_decrypt(&ciphertext).unwrap();
    let plaintext = tokio::task::spawn_blocking(move || ctx.finalize_owned()).await.unwrap().unwrap();
    assert_eq!(plaintext, rawdoc! { "v": "457-55-5462" });
}

/// What a driver keeps between awaits: its handle and the operation in progress.
struct PendingOperation {
    crypt: Crypt,
    ctx: Ctx,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_struct_owning_a_crypt_and_a_pending_ctx_moves_between_tasks() {
    let pending = spawn(async {
        let crypt = crypt();
        let ctx = crypt.ctx().decrypt(&expected_encrypted_cmd()).unwrap();
        PendingOperation { crypt, ctx }
    })
    .await
    .unwrap();
    assert_eq!(pending.ctx.state(), State::NeedMongoKeys);

    let io = Arc::new(AsyncMock::new(example_io()));
    let task_io = io.clone();
    let (pending, result) = spawn(async move {
        let mut pending = pending;
        let result = run_tokio(&mut pending.ctx, &*task_io).await;
        (pending, result)
    })
    .await
    .unwrap();
    assert_eq!(result.unwrap(), Some(plaintext_cmd()));
    assert_eq!(pending.ctx.state(), State::Done);

    // The handle goes on serving: the data key is cached in it now, so no key vault or KMS round.
    let PendingOperation { crypt, ctx } = pending;
    drop(ctx);
    let mut ctx = crypt.ctx().decrypt(&expected_encrypted_cmd()).unwrap();
    assert_eq!(ctx.state(), State::Ready);
    assert_eq!(spawn(async move { ctx.finalize_owned() }).await.unwrap().unwrap(), plaintext_cmd());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_fan_out_with_join_all_inside_a_spawned_task() {
    let encrypted = doc_with_two_keys();
    let crypt = crypt();
    let keys = [load_raw(&format!("{AUTO_AWS}/key-document.json")), second_aws_key()];
    let reply = http_reply(&format!("{AUTO_AWS}/kms-decrypt-reply.txt"));

    // The driver's own loop, by hand, in a spawned task.
    let decrypted = spawn(async move {
        let mut ctx = crypt.ctx().decrypt(&encrypted)?;
        let mut fanned_out = 0;
        loop {
            match ctx.state() {
                State::NeedMongoKeys => {
                    for key in &keys {
                        ctx.mongo_feed(key)?;
                    }
                    ctx.mongo_done()?;
                }
                State::NeedKms => {
                    let mut scope = ctx.kms_scope()?;
                    let mut round = scope.kms_ctxs();
                    fanned_out = round.len();
                    let served = join_all(round.iter_mut().map(|kms| async {
                        send_request(kms, Duration::from_millis(10)).await?;
                        tokio::task::yield_now().await;
                        Ok::<_, libmongocrypt::state_machine::IoError>(feed_kms_reply(kms, &reply)?)
                    }))
                    .await;
                    served.into_iter().collect::<IoResult<Vec<()>>>()?;
                    drop(round);
                    scope.done()?;
                }
                State::Ready => {
                    return Ok::<_, libmongocrypt::state_machine::IoError>((ctx.finalize_owned()?, fanned_out))
                }
                other => return Err(format!("unexpected state {other:?}").into()),
            }
        }
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(decrypted, (rawdoc! { "a": "457-55-5462", "b": "457-55-5462" }, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_credentials_come_from_an_async_fetch() {
    let crypt = on_demand_crypt("aws");
    let io = Arc::new(AsyncMock::new(
        MockIo::new()
            .key(load_raw(&format!("{AUTO_AWS}/key-document.json")))
            .kms_reply(http_reply(&format!("{AUTO_AWS}/kms-decrypt-reply.txt")))
            .credentials(rawdoc! { "aws": { "accessKeyId": "fromTheFetch", "secretAccessKey": "secret" } }),
    ));
    let mut ctx = crypt.ctx().decrypt(&expected_encrypted_cmd()).unwrap();
    let task_io = io.clone();
    let result = spawn(async move { run_tokio(&mut ctx, &*task_io).await }).await.unwrap();
    assert_eq!(result.unwrap(), Some(plaintext_cmd()));
    assert_eq!(io.io.trace(), ["kms_credentials", "find_keys", "kms_request"]);
    let Call::Kms { message, .. } = &io.io.calls()[2] else { unreachable!() };
    assert!(String::from_utf8_lossy(message).contains("Credential=fromTheFetch/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_async_passes_through_the_states_run_does() {
    let states = |runner: Runner| {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        (runner.on_state(move |state| record.lock().unwrap().push(state)), seen)
    };
    let (blocking, blocking_states) = states(Runner::new());
    let (not_blocking, async_states) = states(Runner::new());

    let cmd = load_raw(&format!("{AUTO_AWS}/cmd.json"));
    let (crypt1, crypt2) = (crypt(), crypt());
    let sync_io = example_io();
    let mut ctx = crypt1.ctx().encrypt("test", &cmd).unwrap();
    let from_run = blocking.run(&mut ctx, &sync_io).unwrap();
    let async_io = AsyncMock::new(example_io());
    let mut ctx = crypt2.ctx().encrypt("test", &cmd).unwrap();
    let from_run_async = not_blocking.run_async(&mut ctx, &async_io, tokio::time::sleep).await.unwrap();

    assert_eq!(from_run_async, from_run);
    assert_eq!(from_run_async.unwrap().as_bytes(), expected_encrypted_cmd().as_bytes());
    let expected = [
        State::NeedMongoCollinfo,
        State::NeedMongoMarkings,
        State::NeedMongoKeys,
        State::NeedKms,
        State::Ready,
        State::Done,
    ];
    assert_eq!(*blocking_states.lock().unwrap(), expected);
    assert_eq!(*async_states.lock().unwrap(), expected);
    assert_eq!(async_io.io.trace(), sync_io.trace());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kms_fan_out_is_bounded_by_the_callers_limit() {
    let encrypted = doc_with_two_keys();
    for (limit, expected_in_flight) in [(1, 1), (2, 2), (16, 2)] {
        let io = AsyncMock::new(
            MockIo::new()
                .key(load_raw(&format!("{AUTO_AWS}/key-document.json")))
                .key(second_aws_key())
                .kms_reply(http_reply(&format!("{AUTO_AWS}/kms-decrypt-reply.txt"))),
        );
        let crypt = crypt();
        let mut ctx = crypt.ctx().decrypt(&encrypted).unwrap();
        let runner = Runner::new().max_concurrent_kms(limit);
        let decrypted = runner.run_async(&mut ctx, &io, tokio::time::sleep).await.unwrap();
        assert_eq!(decrypted, Some(rawdoc! { "a": "457-55-5462", "b": "457-55-5462" }));
        assert_eq!(io.max_in_flight.load(Ordering::SeqCst), expected_in_flight, "limit {limit}");
        assert_eq!(io.io.trace(), ["find_keys", "kms_request", "kms_request"]);
    }
}

/// A network error on the first attempt, then the reply.
fn flaky_kms_io() -> MockIo {
    let attempts = AtomicUsize::new(0);
    let reply = http_reply(&format!("{AUTO_AWS}/kms-decrypt-reply.txt"));
    MockIo::new().key(load_raw(&format!("{AUTO_AWS}/key-document.json"))).kms_with(move |kms| {
        if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset").into());
        }
        Ok(feed_kms_reply(kms, &reply)?)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_request_is_retried_after_a_back_off_through_the_callers_sleep() {
    let builder = Crypt::builder().kms_providers(&providers()).unwrap().retry_kms(true);
    if !linked_at_least("1.12.0") {
        // mongocrypt_setopt_retry_kms and mongocrypt_kms_ctx_fail came in 1.12: without them the error is final.
        assert_eq!(builder.err().expect("retry_kms needs 1.12").kind(), ErrorKind::Unsupported);
        let crypt = crypt();
        let io = AsyncMock::new(flaky_kms_io());
        let mut ctx = crypt.ctx().decrypt(&expected_encrypted_cmd()).unwrap();
        let err = run_async(&mut ctx, &io, tokio::time::sleep).await.unwrap_err();
        assert_eq!(err.io_state(), Some(State::NeedKms), "{err}");
        assert_eq!(io.io.trace(), ["find_keys", "kms_request"]);
        return;
    }
    let crypt = builder.unwrap().build().unwrap();
    let io = AsyncMock::new(flaky_kms_io());
    let slept = Mutex::new(Vec::new());
    let sleep = |delay: Duration| {
        slept.lock().unwrap().push(delay);
        std::future::ready(()) // A timer that returns at once: the test need not wait the back-off out.
    };
    let mut ctx = crypt.ctx().decrypt(&expected_encrypted_cmd()).unwrap();
    assert_eq!(run_async(&mut ctx, &io, sleep).await.unwrap(), Some(plaintext_cmd()));
    assert_eq!(io.io.trace(), ["find_keys", "kms_request", "kms_request"]);
    let slept = slept.into_inner().unwrap();
    assert_eq!(slept.len(), 1, "one back-off, before the retry: {slept:?}");
    assert!(slept[0] > Duration::ZERO && slept[0] <= Duration::from_secs(1), "{slept:?}");
}

/// A KMS request that never gets its reply.
struct HangingKms(AsyncMock);

impl AsyncStateMachineIo for HangingKms {
    async fn list_collections(&self, db: Option<&str>, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        self.0.list_collections(db, filter).await
    }
    async fn mark_command(&self, command: &RawDocument) -> IoResult<RawDocumentBuf> {
        self.0.mark_command(command).await
    }
    async fn find_keys(&self, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        self.0.find_keys(filter).await
    }
    async fn kms_request(&self, _kms: &mut KmsCtx<'_>) -> IoResult<()> {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_leaves_no_ctx_stuck_in_need_kms() {
    let crypt = crypt();
    let io = HangingKms(AsyncMock::new(example_io()));
    let mut ctx = crypt.ctx().decrypt(&expected_encrypted_cmd()).unwrap();
    let timed_out = tokio::time::timeout(Duration::from_millis(100), run_tokio(&mut ctx, &io)).await;
    assert!(timed_out.is_err(), "the KMS request never completes");
    // Dropping the run dropped its KmsScope, which ran kms_done: the ctx failed instead of staying in NEED_KMS.
    assert_eq!(ctx.state(), State::Error);
    assert!(ctx.error().unwrap().message().contains("KMS response unfinished"), "{:?}", ctx.error());
    let err = run(&mut ctx, &example_io()).unwrap_err();
    assert!(err.to_string().contains("KMS response unfinished"), "{err}");
}
