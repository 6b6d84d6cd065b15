//! The operation deadline (`Runner::deadline`, `Runner::timeout`) and encryption events (`Runner::events`): a
//! stalled listCollections, mongocryptd, key vault, credentials fetch or KMS request ends the run on time with
//! `RunError::Timeout` on both faces, and leaves the ctx in ERROR; the back-off never outlasts the deadline;
//! extreme timeouts; and one run's events against its states.

use crate::runner_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libmongocrypt::bson::{rawdoc, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{
    feed_kms_reply, io_deadline, AsyncStateMachineIo, Event, FailureKind, IoKind, IoResult, KmsFailureKind, Outcome,
    RunError, Runner, StateMachineIo,
};
use libmongocrypt::{Crypt, Ctx, Error, ErrorKind, KmsCtx, State};
use runner_common::*;

/// The deadline of the stalled runs. It must outlast the I/Os before the stalled one, which five cases run at once:
/// valgrind makes them some fifty times slower (a 300 ms deadline passed there in an earlier state).
fn deadline() -> Duration {
    if under_valgrind() {
        Duration::from_secs(10)
    } else {
        Duration::from_millis(300)
    }
}

/// How late a run may end: a generous bound past its deadline, as CI machines are slow.
fn ended_within() -> Duration {
    deadline() + Duration::from_secs(5)
}

const KMS_ENDPOINT: &str = "kms.us-east-1.amazonaws.com:443";

/// The fixtures of libmongocrypt's AWS example for every I/O, and on-demand credentials.
fn example_io() -> MockIo {
    MockIo::new()
        .collinfo(load_raw(&format!("{AUTO_AWS}/collection-info.json")))
        .markings(load_raw(&format!("{AUTO_AWS}/mongocryptd-reply.json")))
        .key(load_raw(&format!("{AUTO_AWS}/key-document.json")))
        .kms_reply(kms_reply())
        .credentials(rawdoc! { "aws": { "accessKeyId": "example", "secretAccessKey": "example" } })
}

fn kms_reply() -> Vec<u8> {
    http_reply(&format!("{AUTO_AWS}/kms-decrypt-reply.txt"))
}

/// The example's auto encryption: listCollections, markings, keys, one KMS request.
fn auto_encrypt(crypt: &Crypt) -> Ctx {
    crypt.ctx().encrypt("test", &load_raw(&format!("{AUTO_AWS}/cmd.json"))).unwrap()
}

/// A ctx whose first I/O is `stalled`, and the state that asks for it.
fn ctx_stalled_at(stalled: IoKind) -> (Ctx, State) {
    let state = match stalled {
        IoKind::ListCollections => State::NeedMongoCollinfo,
        IoKind::Markings => State::NeedMongoMarkings,
        IoKind::FindKeys => State::NeedMongoKeys,
        IoKind::KmsRequest => State::NeedKms,
        IoKind::KmsCredentials => State::NeedKmsCredentials,
        other => unreachable!("{other:?}"),
    };
    let ctx = match stalled {
        IoKind::KmsCredentials => {
            on_demand_crypt("aws").ctx().decrypt(&load_raw(&format!("{AUTO_AWS}/expected-encrypted-cmd.json"))).unwrap()
        }
        _ => auto_encrypt(&crypt()),
    };
    (ctx, state)
}

const STALLABLE: [IoKind; 5] =
    [IoKind::ListCollections, IoKind::Markings, IoKind::FindKeys, IoKind::KmsRequest, IoKind::KmsCredentials];

/// [`example_io`], except that one I/O stalls. Blocking, it honours the deadline it is given and returns when it
/// passes: a key vault with its result (which comes too late to be fed), the others with an error. Async, its
/// future never completes.
struct Stalling {
    io: MockIo,
    stalled: IoKind,
    /// The deadlines the stalled I/O was given: `io_deadline()`, and `KmsCtx::deadline()` for a KMS request.
    given: Mutex<Vec<Option<Instant>>>,
}

impl Stalling {
    fn new(stalled: IoKind) -> Stalling {
        Stalling { io: example_io(), stalled, given: Mutex::new(Vec::new()) }
    }

    /// Waits out what remains of the deadline it was given, as a blocking driver bounds its socket by it.
    fn stall(&self, io: IoKind, kms_deadline: Option<Option<Instant>>) -> bool {
        if io != self.stalled {
            return false;
        }
        let deadline = io_deadline();
        self.given.lock().unwrap().extend([Some(deadline), kms_deadline].into_iter().flatten());
        let deadline = deadline.expect("the runner sets io_deadline while its I/O runs");
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        true
    }

    fn timed_out() -> IoResult<RawDocumentBuf> {
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the deadline passed").into())
    }
}

impl StateMachineIo for Stalling {
    fn list_collections(&self, db: Option<&str>, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        if self.stall(IoKind::ListCollections, None) {
            return Self::timed_out().map(|doc| vec![doc]);
        }
        self.io.list_collections(db, filter)
    }

    fn mark_command(&self, command: &RawDocument) -> IoResult<RawDocumentBuf> {
        if self.stall(IoKind::Markings, None) {
            return Self::timed_out();
        }
        self.io.mark_command(command)
    }

    fn find_keys(&self, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        self.stall(IoKind::FindKeys, None);
        // The keys come back, past the deadline: the runner must not feed them.
        self.io.find_keys(filter)
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        if self.stall(IoKind::KmsRequest, Some(kms.deadline())) {
            return Self::timed_out().map(drop);
        }
        self.io.kms_request(kms)
    }

    fn kms_credentials(&self) -> IoResult<RawDocumentBuf> {
        if self.stall(IoKind::KmsCredentials, None) {
            return Self::timed_out();
        }
        self.io.kms_credentials()
    }
}

impl AsyncStateMachineIo for Stalling {
    async fn list_collections(&self, db: Option<&str>, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        self.pending(IoKind::ListCollections).await;
        StateMachineIo::list_collections(&self.io, db, filter)
    }

    async fn mark_command(&self, command: &RawDocument) -> IoResult<RawDocumentBuf> {
        self.pending(IoKind::Markings).await;
        StateMachineIo::mark_command(&self.io, command)
    }

    async fn find_keys(&self, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        self.pending(IoKind::FindKeys).await;
        StateMachineIo::find_keys(&self.io, filter)
    }

    async fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        if self.stalled == IoKind::KmsRequest {
            self.given.lock().unwrap().push(kms.deadline());
        }
        self.pending(IoKind::KmsRequest).await;
        StateMachineIo::kms_request(&self.io, kms)
    }

    async fn kms_credentials(&self) -> IoResult<RawDocumentBuf> {
        self.pending(IoKind::KmsCredentials).await;
        StateMachineIo::kms_credentials(&self.io)
    }
}

impl Stalling {
    /// Never completes for the stalled I/O; records the deadline it sees while polled.
    async fn pending(&self, io: IoKind) {
        tokio::task::yield_now().await;
        if io == self.stalled {
            self.given.lock().unwrap().push(io_deadline());
            std::future::pending::<()>().await;
        }
    }
}

/// The run ended on time, with the typed timeout naming the state and I/O, and left its ctx in ERROR.
fn assert_timed_out(
    result: Result<Option<RawDocumentBuf>, RunError>,
    ctx: &mut Ctx,
    io: &Stalling,
    expected: State,
    started: Instant,
) {
    let took = started.elapsed();
    assert!(took < ended_within(), "{:?}: ended after {took:?}", io.stalled);
    let err = result.expect_err("the stalled run times out");
    let RunError::Timeout { state, io: timed_out, endpoint, elapsed } = &err else { panic!("not a timeout: {err}") };
    assert_eq!((*state, *timed_out), (expected, io.stalled), "{err}");
    assert!(*elapsed <= took, "{elapsed:?} > {took:?}");
    let expected_endpoint = (io.stalled == IoKind::KmsRequest).then_some(KMS_ENDPOINT);
    assert_eq!(endpoint.as_deref(), expected_endpoint);
    let to = expected_endpoint.map(|e| format!(" to {e}")).unwrap_or_default();
    assert_eq!(
        err.to_string(),
        format!(
            "the operation's deadline passed in state {expected:?} during {}{to}, {elapsed:?} after the run started",
            io.stalled
        )
    );
    // The stalled I/O was called and given the run's deadline; nothing after it ran.
    let given = io.given.lock().unwrap().clone();
    assert!(!given.is_empty() && given.iter().all(|d| d.is_some() && *d == given[0]), "{given:?}");
    let before = &["list_collections", "mark_command", "find_keys"][..before_count(io.stalled)];
    let stalled = call_name(io.stalled);
    assert_eq!(io.io.trace().into_iter().filter(|call| *call != stalled).collect::<Vec<_>>(), before);

    // The ctx is in ERROR, for good, with the timeout's message: never half-fed.
    assert_eq!(ctx.state(), State::Error);
    let error = ctx.error().expect("the ctx failed");
    assert_eq!(error, Error::Timeout(err.to_string()));
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(ctx.mongo_feed(&rawdoc! {}).unwrap_err(), error);
    assert_eq!(ctx.finalize().unwrap_err(), error);
    let again = libmongocrypt::state_machine::run(ctx, &example_io()).unwrap_err();
    assert_eq!(again.as_mongocrypt(), Some(&error));
}

/// The name of the mock call that serves `io`.
fn call_name(io: IoKind) -> &'static str {
    match io {
        IoKind::ListCollections => "list_collections",
        IoKind::Markings => "mark_command",
        IoKind::FindKeys => "find_keys",
        IoKind::KmsRequest => "kms_request",
        _ => "kms_credentials",
    }
}

#[test]
fn a_stalled_io_ends_a_blocking_run_on_time() {
    // Every case at once, each on its thread: the test lasts one deadline.
    std::thread::scope(|s| {
        for stalled in STALLABLE {
            s.spawn(move || {
                let (mut ctx, state) = ctx_stalled_at(stalled);
                let io = Stalling::new(stalled);
                let started = Instant::now();
                let result = Runner::new().timeout(deadline()).run(&mut ctx, &io);
                assert_timed_out(result, &mut ctx, &io, state, started);
            });
        }
    });
}

#[test]
fn a_stalled_kms_request_ends_a_concurrent_run_on_time() {
    let (mut ctx, state) = ctx_stalled_at(IoKind::KmsRequest);
    let io = Stalling::new(IoKind::KmsRequest);
    let started = Instant::now();
    let result = Runner::new().timeout(deadline()).run_concurrent(&mut ctx, &io);
    assert_timed_out(result, &mut ctx, &io, state, started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_io_ends_an_async_run_on_time_through_the_callers_timer() {
    // Every case at once, each in a task (so the run's future is Send with a deadline): the test lasts one deadline.
    let cases = STALLABLE.map(|stalled| {
        tokio::spawn(async move {
            // The caller's timer, which records what it is asked for: the runner has no timer of its own.
            let timers = Arc::new(Mutex::new(Vec::new()));
            let asked = timers.clone();
            let sleep = move |delay: Duration| {
                asked.lock().unwrap().push(delay);
                tokio::time::sleep(delay)
            };
            let (mut ctx, state) = ctx_stalled_at(stalled);
            let io = Stalling::new(stalled);
            let started = Instant::now();
            let result = Runner::new().timeout(deadline()).run_async(&mut ctx, &io, sleep).await;
            assert_timed_out(result, &mut ctx, &io, state, started);
            // One timer per I/O raced, each for what remained of the deadline.
            let timers = timers.lock().unwrap().clone();
            assert_eq!(timers.len(), before_count(stalled) + 1, "{stalled:?}: {timers:?}");
            assert!(timers.iter().all(|t| *t <= deadline()), "{timers:?}");
        })
    });
    for case in futures_util::future::join_all(cases).await {
        case.unwrap();
    }
}

/// How many I/Os come before the stalled one.
fn before_count(stalled: IoKind) -> usize {
    match stalled {
        IoKind::Markings => 1,
        IoKind::FindKeys => 2,
        IoKind::KmsRequest => 3,
        _ => 0,
    }
}

#[test]
fn the_back_off_never_outlasts_the_deadline() {
    if !linked_at_least("1.12.0") {
        skip("the_back_off_never_outlasts_the_deadline", "KMS retries and their back-off came in 1.12");
        return;
    }
    let crypt = Crypt::builder().kms_providers(&providers()).unwrap().retry_kms(true).unwrap().build().unwrap();
    // libmongocrypt's back-off is random (up to 200 ms before the first retry, doubling): with 60 ms to go, most
    // runs meet one that would pass the deadline, which must end the run at once instead of being slept.
    let deadline = Duration::from_millis(60);
    let mut clamped = 0;
    for _ in 0..20 {
        // When each event came: the first one's bounds the run's start, and so its deadline, from above.
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let runner = Runner::new().timeout(deadline).events(move |event: &Event<'_>| {
            let back_off = if let Event::KmsRetry { back_off, .. } = event { Some(*back_off) } else { None };
            seen.lock().unwrap().push((Instant::now(), back_off));
        });
        let io = MockIo::new()
            .key(load_raw(&format!("{AUTO_AWS}/key-document.json")))
            .kms_with(|_| Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset").into()));
        let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{AUTO_AWS}/expected-encrypted-cmd.json"))).unwrap();
        let err = runner.run(&mut ctx, &io).unwrap_err();
        let ended = Instant::now();
        let events = events.lock().unwrap().clone();
        let latest_deadline = events[0].0 + deadline;
        let retries: Vec<(Instant, Duration)> = events.iter().filter_map(|(at, b)| Some((*at, (*b)?))).collect();
        let (last_at, last_back_off) = *retries.last().expect("the first attempt failed: a retry was scheduled");
        // Every back-off but the last was waited out, and fitted before the deadline.
        for pair in retries.windows(2) {
            assert!(pair[1].0 >= pair[0].0 + pair[0].1, "{retries:?}");
            assert!(pair[0].0 + pair[0].1 < latest_deadline, "{retries:?}");
        }
        match &err {
            RunError::Timeout { state: State::NeedKms, io: IoKind::BackOff, endpoint, .. } => {
                // One that would have passed the deadline was not slept at all.
                assert!(ended + last_back_off > latest_deadline - deadline, "{last_back_off:?}");
                if last_back_off >= Duration::from_millis(20) {
                    assert!(ended - last_at < last_back_off, "slept {:?}", ended - last_at);
                }
                assert_eq!(endpoint.as_deref(), Some(KMS_ENDPOINT));
                assert_eq!(ctx.state(), State::Error);
                clamped += 1;
            }
            // The rarer runs whose back-offs all fitted end at the attempt limit, or at the next attempt.
            RunError::Timeout { io: IoKind::KmsRequest, .. } | RunError::Io { .. } => {
                assert!(last_at + last_back_off < latest_deadline, "{retries:?}");
            }
            other => panic!("{other}"),
        }
        assert!(ended - events[0].0 < ended_within());
    }
    assert!(clamped > 0, "no back-off met the deadline in 20 runs");
}

#[test]
fn extreme_timeouts_and_deadlines() {
    let plaintext = rawdoc! { "filter": { "ssn": "457-55-5462" }, "find": "test" };
    let encrypted = load_raw(&format!("{AUTO_AWS}/expected-encrypted-cmd.json"));
    let deadline_seen = Arc::new(Mutex::new(Vec::new()));
    let io = {
        let seen = deadline_seen.clone();
        MockIo::new().key(load_raw(&format!("{AUTO_AWS}/key-document.json"))).kms_with(move |kms| {
            seen.lock().unwrap().push((io_deadline(), kms.deadline()));
            Ok(feed_kms_reply(kms, &kms_reply())?)
        })
    };

    // A timeout the clock cannot hold is no deadline: no panic, and the I/O is given none.
    for runner in
        [Runner::new(), Runner::new().timeout(Duration::MAX), Runner::new().timeout(Duration::from_secs(u64::MAX))]
    {
        // A new Crypt each time: one that has the key cached asks no KMS.
        let mut ctx = crypt().ctx().decrypt(&encrypted).unwrap();
        assert_eq!(runner.run(&mut ctx, &io).unwrap(), Some(plaintext.clone()));
        assert_eq!(deadline_seen.lock().unwrap().pop(), Some((None, None)));
    }

    // A deadline a century away is one, handed to the I/O as it is.
    let far = Instant::now().checked_add(Duration::from_secs(100 * 365 * 24 * 3600)).expect("a century fits");
    let mut ctx = crypt().ctx().decrypt(&encrypted).unwrap();
    assert_eq!(Runner::new().deadline(far).run(&mut ctx, &io).unwrap(), Some(plaintext.clone()));
    assert_eq!(deadline_seen.lock().unwrap().pop(), Some((Some(far), Some(far))));
    assert_eq!(io_deadline(), None, "set only while the I/O runs");

    // A zero timeout, or a deadline already passed, ends the run before its first I/O.
    let past = Instant::now();
    for runner in [Runner::new().timeout(Duration::ZERO), Runner::new().deadline(past)] {
        let io = MockIo::new();
        let mut ctx = crypt().ctx().decrypt(&encrypted).unwrap();
        let err = runner.run(&mut ctx, &io).unwrap_err();
        assert!(
            matches!(err, RunError::Timeout { state: State::NeedMongoKeys, io: IoKind::FindKeys, endpoint: None, .. }),
            "{err}"
        );
        assert!(io.trace().is_empty(), "no I/O was started: {:?}", io.trace());
        assert_eq!(ctx.state(), State::Error);
    }
    // An operation without I/O has nothing to wait for: a local data key is made whatever the deadline.
    let mut ctx =
        crypt().ctx().key_encryption_key(&libmongocrypt::KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    assert!(Runner::new().timeout(Duration::ZERO).run(&mut ctx, &MockIo::new()).unwrap().is_some());
}

// ---------------------------------------------------------------------------------------------------------------
// Events

/// An event without its durations, which vary: what a run's events are compared by.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    State(State),
    Request { state: State, io: IoKind, outcome: Outcome, documents: usize },
    Kms { provider: String, endpoint: String, attempt: u32, sent: usize, received: usize, outcome: Outcome },
    Retry { provider: String, endpoint: String, attempt: u32 },
}

/// Records every event (and its `Debug` form), and every state `on_state` is called with.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    debug: Mutex<Vec<String>>,
    states: Mutex<Vec<State>>,
}

impl Recorder {
    fn runner(self: &Arc<Self>) -> Runner {
        let (events, states) = (self.clone(), self.clone());
        Runner::new()
            .events(move |event: &Event<'_>| events.record(event))
            .on_state(move |state| states.states.lock().unwrap().push(state))
    }

    fn record(&self, event: &Event<'_>) {
        self.debug.lock().unwrap().push(format!("{event:?}"));
        let seen = match *event {
            Event::StateEntered { state, .. } => Seen::State(state),
            Event::Request { state, io, outcome, documents, duration, .. } => {
                assert!(duration < ended_within());
                Seen::Request { state, io, outcome, documents }
            }
            Event::KmsRequest { provider, endpoint, attempt, bytes_sent, bytes_received, outcome, .. } => Seen::Kms {
                provider: provider.to_string(),
                endpoint: endpoint.to_owned(),
                attempt,
                sent: bytes_sent,
                received: bytes_received,
                outcome,
            },
            Event::KmsRetry { provider, endpoint, attempt, back_off, .. } => {
                assert!(back_off <= Duration::from_secs(1), "{back_off:?}");
                Seen::Retry { provider: provider.to_string(), endpoint: endpoint.to_owned(), attempt }
            }
            ref other => panic!("an event this test does not know: {other:?}"),
        };
        self.seen.lock().unwrap().push(seen);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The events of the example's auto encryption, its one KMS request `kms` (message length, reply length).
fn expected_auto_encrypt_events(kms: &[Seen]) -> Vec<Seen> {
    let request = |state, io, documents| Seen::Request { state, io, outcome: Outcome::Ok, documents };
    let mut expected = vec![
        Seen::State(State::NeedMongoCollinfo),
        request(State::NeedMongoCollinfo, IoKind::ListCollections, 1),
        Seen::State(State::NeedMongoMarkings),
        request(State::NeedMongoMarkings, IoKind::Markings, 1),
        Seen::State(State::NeedMongoKeys),
        request(State::NeedMongoKeys, IoKind::FindKeys, 1),
        Seen::State(State::NeedKms),
    ];
    expected.extend_from_slice(kms);
    expected.extend([Seen::State(State::Ready), Seen::State(State::Done)]);
    expected
}

fn kms_seen(attempt: u32, sent: usize, received: usize, outcome: Outcome) -> Seen {
    Seen::Kms { provider: "aws".into(), endpoint: KMS_ENDPOINT.into(), attempt, sent, received, outcome }
}

/// The events carry no document, message, reply or credential.
fn assert_no_secret(recorder: &Recorder, message: &[u8]) {
    let key = load_raw(&format!("{AUTO_AWS}/key-document.json"));
    let material = key.get_binary("keyMaterial").unwrap().bytes.to_vec();
    let secrets: Vec<String> = vec![
        "457-55-5462".into(),
        "ssn".into(),
        "Credential".into(),
        "example".into(),
        format!("{material:?}"),
        String::from_utf8_lossy(message).into_owned(),
        String::from_utf8_lossy(&kms_reply()).lines().last().unwrap().to_owned(),
    ];
    for debug in recorder.debug.lock().unwrap().iter() {
        for secret in &secrets {
            assert!(!debug.contains(secret.as_str()), "{debug} contains {secret}");
        }
    }
}

/// The states among the events are those `on_state` was called with, in order.
fn assert_states_match(recorder: &Recorder) {
    let states: Vec<State> = recorder
        .seen()
        .iter()
        .filter_map(|seen| if let Seen::State(state) = seen { Some(*state) } else { None })
        .collect();
    assert_eq!(states, *recorder.states.lock().unwrap());
}

fn kms_message(io: &MockIo) -> Vec<u8> {
    io.calls()
        .into_iter()
        .find_map(|call| if let Call::Kms { message, .. } = call { Some(message) } else { None })
        .expect("a KMS request")
}

#[test]
fn the_events_of_an_auto_encryption_follow_its_states() {
    let recorder = Arc::new(Recorder::default());
    let io = example_io();
    let mut ctx = auto_encrypt(&crypt());
    assert!(recorder.runner().run(&mut ctx, &io).unwrap().is_some());
    let message = kms_message(&io);
    let kms = [kms_seen(1, message.len(), kms_reply().len(), Outcome::Ok)];
    assert_eq!(recorder.seen(), expected_auto_encrypt_events(&kms));
    assert_states_match(&recorder);
    assert_no_secret(&recorder, &message);
}

#[tokio::test]
async fn the_events_of_an_async_run_are_the_same() {
    let recorder = Arc::new(Recorder::default());
    let io = Stalling::new(IoKind::BackOff); // Nothing stalls.
    let mut ctx = auto_encrypt(&crypt());
    assert!(recorder
        .runner()
        .timeout(Duration::from_secs(60))
        .run_async(&mut ctx, &io, tokio::time::sleep)
        .await
        .unwrap()
        .is_some());
    let message = kms_message(&io.io);
    let kms = [kms_seen(1, message.len(), kms_reply().len(), Outcome::Ok)];
    assert_eq!(recorder.seen(), expected_auto_encrypt_events(&kms));
    assert_states_match(&recorder);
}

#[test]
fn failures_retries_and_timeouts_are_events() {
    // A failed request (the driver's error, no document), then a timeout.
    let recorder = Arc::new(Recorder::default());
    let mut ctx = auto_encrypt(&crypt());
    let err = recorder.runner().run(&mut ctx, &MockIo::new()).unwrap_err();
    assert_eq!(err.io_state(), Some(State::NeedMongoMarkings));
    let failed = Outcome::Failed(FailureKind::Io);
    assert_eq!(
        recorder.seen(),
        [
            Seen::State(State::NeedMongoCollinfo),
            Seen::Request {
                state: State::NeedMongoCollinfo,
                io: IoKind::ListCollections,
                outcome: Outcome::Ok,
                documents: 0
            },
            Seen::State(State::NeedMongoMarkings),
            Seen::Request { state: State::NeedMongoMarkings, io: IoKind::Markings, outcome: failed, documents: 0 },
        ]
    );

    let recorder = Arc::new(Recorder::default());
    let (mut ctx, _) = ctx_stalled_at(IoKind::FindKeys);
    let io = Stalling::new(IoKind::FindKeys);
    recorder.runner().timeout(Duration::from_millis(50)).run(&mut ctx, &io).unwrap_err();
    assert_eq!(
        recorder.seen().last(),
        Some(&Seen::Request {
            state: State::NeedMongoKeys,
            io: IoKind::FindKeys,
            outcome: Outcome::TimedOut,
            documents: 0
        })
    );
    assert_states_match(&recorder);

    // A network failure, retried after a back-off (libmongocrypt ≥ 1.12).
    if !linked_at_least("1.12.0") {
        skip("failures_retries_and_timeouts_are_events (retry)", "KMS retries came in 1.12");
        return;
    }
    let crypt = Crypt::builder().kms_providers(&providers()).unwrap().retry_kms(true).unwrap().build().unwrap();
    let attempts = AtomicUsize::new(0);
    let reply = kms_reply();
    let io = example_io().kms_with(move |kms| {
        if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            feed_kms_reply(kms, &reply[..10])?; // Part of a reply, then the connection drops.
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset").into());
        }
        Ok(feed_kms_reply(kms, &reply)?)
    });
    let recorder = Arc::new(Recorder::default());
    let mut ctx = auto_encrypt(&crypt);
    assert!(recorder.runner().run(&mut ctx, &io).unwrap().is_some());
    let sent = kms_message(&io).len();
    let kms = [
        kms_seen(1, sent, 10, Outcome::Failed(FailureKind::Kms(KmsFailureKind::Network))),
        Seen::Retry { provider: "aws".into(), endpoint: KMS_ENDPOINT.into(), attempt: 2 },
        kms_seen(2, sent, kms_reply().len(), Outcome::Ok),
    ];
    assert_eq!(recorder.seen(), expected_auto_encrypt_events(&kms));
    assert_states_match(&recorder);
}

#[test]
fn serve_kms_keeps_the_deadline_and_leaves_the_ctx_in_error() {
    let crypt = crypt();
    let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{AUTO_AWS}/expected-encrypted-cmd.json"))).unwrap();
    let key = load_raw(&format!("{AUTO_AWS}/key-document.json"));
    assert_eq!(ctx.state(), State::NeedMongoKeys);
    ctx.mongo_feed(&key).unwrap();
    ctx.mongo_done().unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    let started = Instant::now();
    let err = Runner::new()
        .timeout(deadline())
        .serve_kms(&mut scope, |kms| {
            // A transport that honours the deadline it is given, and finds no reply by then.
            let deadline = kms.deadline().expect("the runner's deadline");
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply").into())
        })
        .unwrap_err();
    assert!(started.elapsed() < ended_within());
    let timeout = err.downcast::<RunError>().expect("the runner's timeout");
    assert!(
        matches!(*timeout, RunError::Timeout { state: State::NeedKms, io: IoKind::KmsRequest, ref endpoint, .. }
            if endpoint.as_deref() == Some(KMS_ENDPOINT)),
        "{timeout}"
    );
    let _ = scope.done();
    assert_eq!(ctx.state(), State::Error);
    assert_eq!(ctx.error(), Some(Error::Timeout(timeout.to_string())));
}
