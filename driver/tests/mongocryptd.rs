//! mongocryptd management and the minimal mongocryptd client.
//!
//! Spawning is tested with a stand-in executable built by the test (`mongocryptd/stand_in.rs`): it records its
//! arguments and serves OP_MSG on the loopback port they give it. The client is tested against a loopback server
//! in this process (`mongocryptd/server.rs`) that records each request: the handshake is checked against the
//! handshake spec, the markings reply is libmongocrypt's example fixture and is fed to a real ctx, and hostile
//! replies end in typed errors.

mod common;
#[path = "mongocryptd/server.rs"]
mod server;
#[path = "mongocryptd/spawned.rs"]
mod spawned;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libmongocrypt::bson::{Bson, Document, RawBsonRef, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{run, IoKind, IoResult, RunError, Runner, StateMachineIo};
use libmongocrypt::{Crypt, KmsCtx, KmsProviders, State};
use libmongocrypt_driver::mongocryptd::{
    DriverInfo, Mongocryptd, MongocryptdClient, MongocryptdClientSettings, MongocryptdError, MongocryptdOptions,
    MongocryptdUse, NotUsedReason, Step, WireError,
};
use server::{as_mongocryptd, op_msg_reply, After, Answer, Request, Server};
use spawned::{await_closed, free_port, stand_in, WorkDir};

// ---------------------------------------------------------------------------------------------------------------
// The auto-encryption fixture: libmongocrypt's example (tests/data/open/csfle-auto-aws-example).

fn fixture(name: &str) -> RawDocumentBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/open/csfle-auto-aws-example").join(name);
    common::example::read_json(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn aws_crypt() -> Crypt {
    common::crypt(&KmsProviders::new().aws("aws", "example", "example", None))
}

/// The command the example's ctx gives in NEED_MONGO_MARKINGS: the find, the collection's `$jsonSchema`,
/// `isRemoteSchema`; with `$db` as it must go over OP_MSG.
fn expected_markings_body() -> Document {
    let info = Document::try_from(fixture("collection-info.json").as_ref()).unwrap();
    let schema = info.get_document("options").unwrap().get_document("validator").unwrap();
    let mut command = Document::try_from(fixture("cmd.json").as_ref()).unwrap();
    command.insert("jsonSchema", schema.get_document("$jsonSchema").unwrap().clone());
    command.insert("isRemoteSchema", true);
    command.insert("$db", "test");
    command
}

/// Encrypts the example's find on database `test` through `io` and checks the result is the example's, byte for byte.
fn assert_example_encrypts(crypt: &Crypt, io: &impl StateMachineIo) {
    let mut ctx = crypt.ctx().encrypt("test", &fixture("cmd.json")).unwrap();
    let encrypted = run(&mut ctx, io).expect("the run finishes").expect("an encrypted command");
    assert_eq!(encrypted.as_bytes(), fixture("expected-encrypted-cmd.json").as_bytes());
}

/// The example's I/O, with the markings from `mark`.
struct ExampleIo<F> {
    mark: F,
    kms: common::MockAwsKms,
}

impl<F: Fn(&RawDocument) -> IoResult<RawDocumentBuf>> StateMachineIo for ExampleIo<F> {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Ok(vec![fixture("collection-info.json")])
    }

    fn mark_command(&self, command: &RawDocument) -> IoResult<RawDocumentBuf> {
        (self.mark)(command)
    }

    fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Ok(vec![fixture("key-document.json")])
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.kms.kms_request(kms)
    }
}

fn example_io<F: Fn(&RawDocument) -> IoResult<RawDocumentBuf>>(mark: F) -> ExampleIo<F> {
    ExampleIo { mark, kms: common::MockAwsKms::default() }
}

// ---------------------------------------------------------------------------------------------------------------
// Spawning

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Options that spawn the stand-in in `dir` on `port`, with `extra` arguments.
fn stand_in_options(dir: &WorkDir, port: u16, extra: &[&str]) -> MongocryptdOptions {
    let mut spawn_args = vec![dir.pid_file_arg(), format!("--port={port}")];
    spawn_args.extend(strings(extra));
    MongocryptdOptions {
        uri: Some(format!("mongodb://127.0.0.1:{port}")),
        spawn_path: Some(stand_in().to_path_buf()),
        spawn_args,
        ..MongocryptdOptions::default()
    }
}

#[test]
fn spawning_passes_the_arguments_and_adds_the_idle_shutdown_unless_set() {
    let cases: [(&[&str], &[&str]); 3] = [
        (&[], &["--idleShutdownTimeoutSecs=60"]),
        (&["--idleShutdownTimeoutSecs=5"], &[]),
        (&["--idleShutdownTimeoutSecs", "5"], &[]),
    ];
    for (user_args, added) in cases {
        let dir = WorkDir::new();
        let port = free_port();
        let options = stand_in_options(&dir, port, user_args);
        let mut expected = options.spawn_args.clone();
        expected.extend(strings(added));

        let mongocryptd = Mongocryptd::start_with(false, options).unwrap();
        assert_eq!(mongocryptd.usage(), MongocryptdUse::SpawnAndConnect);
        assert_eq!(mongocryptd.spawn_command(), Some((stand_in(), expected.as_slice())));
        assert_eq!(dir.await_spawns(1), [expected], "{user_args:?}");
        let settings = mongocryptd.client_settings().unwrap();
        assert_eq!(settings.uri, format!("mongodb://127.0.0.1:{port}"));
        assert_eq!(settings.server_selection_timeout, Duration::from_secs(10));
    }
}

#[test]
fn the_default_settings_are_the_specs() {
    let crypt = aws_crypt();
    let options = MongocryptdOptions { bypass_spawn: true, ..MongocryptdOptions::default() };
    let mongocryptd = Mongocryptd::start(&crypt, options).unwrap();
    assert_eq!(mongocryptd.usage(), MongocryptdUse::ConnectOnly);
    assert_eq!(mongocryptd.spawn_command(), None);
    let settings = mongocryptd.client_settings().unwrap();
    assert_eq!(settings, &MongocryptdClientSettings::default());
    assert_eq!(settings.uri, "mongodb://localhost:27020");
    assert_eq!(settings.server_selection_timeout, Duration::from_millis(10_000));
    assert!(!settings.server_selection_try_once);
    assert_eq!(settings.connect_timeout, Duration::from_millis(10_000));
}

/// A markings call's error in these tests: server selection or not, or the manager's own.
#[derive(Debug)]
enum CallError {
    ServerSelection(u32),
    Other,
    Mongocryptd(MongocryptdError),
}

impl From<MongocryptdError> for CallError {
    fn from(e: MongocryptdError) -> CallError {
        CallError::Mongocryptd(e)
    }
}

fn is_server_selection(e: &CallError) -> bool {
    matches!(e, CallError::ServerSelection(_))
}

#[test]
fn nothing_is_spawned_when_bypassed_or_crypt_shared_is_loaded() {
    let dir = WorkDir::new();
    let port = free_port();
    let options = || stand_in_options(&dir, port, &[]);
    let crypt = aws_crypt();
    assert_eq!(crypt.crypt_shared_lib_version(), None, "these tests need crypt_shared not loaded");
    let cases = [
        (
            Mongocryptd::start(&crypt, MongocryptdOptions { bypass_spawn: true, ..options() }),
            MongocryptdUse::ConnectOnly,
        ),
        (
            Mongocryptd::start(&crypt, MongocryptdOptions { bypass_auto_encryption: true, ..options() }),
            MongocryptdUse::NotUsed(NotUsedReason::BypassAutoEncryption),
        ),
        (
            Mongocryptd::start(&crypt, MongocryptdOptions { bypass_query_analysis: true, ..options() }),
            MongocryptdUse::NotUsed(NotUsedReason::BypassQueryAnalysis),
        ),
        (
            Mongocryptd::start(&crypt, MongocryptdOptions { crypt_shared_lib_required: true, ..options() }),
            MongocryptdUse::NotUsed(NotUsedReason::CryptSharedLibRequired),
        ),
        (Mongocryptd::start_with(true, options()), MongocryptdUse::NotUsed(NotUsedReason::CryptSharedLoaded)),
    ];
    for (mongocryptd, usage) in cases {
        let mongocryptd = mongocryptd.unwrap();
        assert_eq!(mongocryptd.usage(), usage);
        assert_eq!(mongocryptd.spawn_command(), None);
        assert_eq!(mongocryptd.client_settings().is_some(), usage == MongocryptdUse::ConnectOnly);
        // A server-selection failure is returned as it is: no respawn, no second call.
        let calls = Cell::new(0);
        let result: Result<(), CallError> = mongocryptd.mark_with_respawn(is_server_selection, || {
            calls.set(calls.get() + 1);
            Err(CallError::ServerSelection(calls.get()))
        });
        assert!(matches!(result, Err(CallError::ServerSelection(1))), "{result:?}");
        assert_eq!(calls.get(), 1);
    }
    // The stand-in writes its arguments within milliseconds of a spawn (the spawning test waits for them).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dir.spawns(), Vec::<Vec<String>>::new());
    assert!(!dir.0.join("spawns.log").exists());
}

#[test]
fn a_server_selection_error_respawns_once_and_retries_once() {
    // The retry succeeds.
    let dir = WorkDir::new();
    let mongocryptd = Mongocryptd::start_with(false, stand_in_options(&dir, free_port(), &[])).unwrap();
    assert_eq!(dir.await_spawns(1).len(), 1);
    let calls = Cell::new(0);
    let result = mongocryptd.mark_with_respawn(is_server_selection, || {
        calls.set(calls.get() + 1);
        if calls.get() == 1 {
            Err(CallError::ServerSelection(1))
        } else {
            Ok("markings")
        }
    });
    assert!(matches!(result, Ok("markings")), "{result:?}");
    assert_eq!(calls.get(), 2);
    assert_eq!(dir.await_spawns(2).len(), 2);

    // The retry fails too: its error is returned, with no third call and no third spawn.
    let dir = WorkDir::new();
    let mongocryptd = Mongocryptd::start_with(false, stand_in_options(&dir, free_port(), &[])).unwrap();
    let calls = Cell::new(0);
    let result: Result<(), _> = mongocryptd.mark_with_respawn(is_server_selection, || {
        calls.set(calls.get() + 1);
        Err(CallError::ServerSelection(calls.get()))
    });
    assert!(matches!(result, Err(CallError::ServerSelection(2))), "{result:?}");
    assert_eq!(calls.get(), 2);
    assert_eq!(dir.await_spawns(2).len(), 2);

    // Another error: no respawn, no retry.
    let calls = Cell::new(0);
    let result: Result<(), _> = mongocryptd.mark_with_respawn(is_server_selection, || {
        calls.set(calls.get() + 1);
        Err(CallError::Other)
    });
    assert!(matches!(result, Err(CallError::Other)), "{result:?}");
    assert_eq!(calls.get(), 1);

    // The program has gone since the first spawn: the respawn's failure is the error, and there is no retry.
    let dir = WorkDir::new();
    let copy = dir.0.join(format!("copy-of-mongocryptd{}", std::env::consts::EXE_SUFFIX));
    std::fs::copy(stand_in(), &copy).unwrap();
    let options = MongocryptdOptions { spawn_path: Some(copy.clone()), ..stand_in_options(&dir, free_port(), &[]) };
    let mongocryptd = Mongocryptd::start_with(false, options).unwrap();
    dir.await_spawns(1);
    std::fs::remove_file(&copy).unwrap();
    let calls = Cell::new(0);
    let result: Result<(), _> = mongocryptd.mark_with_respawn(is_server_selection, || {
        calls.set(calls.get() + 1);
        Err(CallError::ServerSelection(calls.get()))
    });
    assert!(
        matches!(&result, Err(CallError::Mongocryptd(MongocryptdError::Spawn { path, .. })) if path == &copy),
        "{result:?}"
    );
    assert_eq!(calls.get(), 1);
}

#[test]
fn a_spawn_failure_names_the_path_and_the_ways_out() {
    let dir = WorkDir::new();
    let missing = dir.0.join("no-such-mongocryptd");
    let options = MongocryptdOptions { spawn_path: Some(missing.clone()), ..MongocryptdOptions::default() };
    let err = Mongocryptd::start_with(false, options).unwrap_err();
    let MongocryptdError::Spawn { path, source } = &err else { panic!("not a spawn error: {err:?}") };
    assert_eq!(path, &missing);
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    let message = err.to_string();
    for part in [
        &format!("`{}`", missing.display()),
        "Install mongocryptd",
        "mongocryptdSpawnPath",
        "crypt_shared",
        "mongocryptdBypassSpawn",
    ] {
        assert!(message.contains(part), "{part:?} not in: {message}");
    }
    // The default program is looked for on the PATH, and the message says so.
    let on_path =
        MongocryptdError::Spawn { path: PathBuf::from("mongocryptd"), source: std::io::ErrorKind::NotFound.into() };
    assert!(on_path.to_string().starts_with("could not spawn mongocryptd from `mongocryptd` (searched on the PATH)"));
}

/// Short server selection, so that a test waits a moment for mongocryptd to be missing; but long enough for a
/// connection and its handshake, which under valgrind can take more than half a second.
fn selection_timeout() -> Duration {
    if common::under_valgrind() {
        Duration::from_secs(5)
    } else {
        Duration::from_millis(500)
    }
}

/// An upper bound on how long a call whose command has `command_timeout` may take: the connection (which a server
/// that answers makes quick), the command, and two seconds for the scheduler.
fn ends_within(command_timeout: Duration) -> Duration {
    selection_timeout() + command_timeout + Duration::from_secs(2)
}

fn quick_settings(uri: String) -> MongocryptdClientSettings {
    MongocryptdClientSettings { server_selection_timeout: selection_timeout(), ..MongocryptdClientSettings::new(uri) }
}

/// Ten seconds of server selection, for a server that answers the handshake: a handshake slowed by a loaded
/// machine must not turn a test of the command into one of server selection.
fn patient_settings(server: &Server) -> MongocryptdClientSettings {
    MongocryptdClientSettings { server_selection_timeout: Duration::from_secs(10), ..quick_settings(server.uri()) }
}

#[test]
fn a_respawned_stand_in_serves_the_markings_that_finish_the_run() {
    let dir = WorkDir::new();
    std::fs::write(dir.0.join("reply.bson"), fixture("mongocryptd-reply.json").as_bytes()).unwrap();
    let port = free_port();
    let mongocryptd = Mongocryptd::start_with(false, stand_in_options(&dir, port, &[])).unwrap();
    // It listens before it is stopped: a stop seen before its bind would let it start serving after the stop.
    dir.await_listening();
    // mongocryptd goes away (as after its idle shutdown).
    std::fs::write(dir.0.join("stop"), "").unwrap();
    await_closed(port);
    std::fs::remove_file(dir.0.join("stop")).unwrap();

    // Two seconds of server selection (twice the quick one under valgrind): the first fails after it, and the
    // respawned stand-in listens well within it.
    let settings = MongocryptdClientSettings {
        server_selection_timeout: Duration::from_secs(2).max(2 * selection_timeout()),
        ..mongocryptd.client_settings().unwrap().clone()
    };
    let client = MongocryptdClient::new(settings, None).unwrap();
    let io = example_io(|command: &RawDocument| Ok(mongocryptd.mark_command(&client, "test", command)?));
    assert_example_encrypts(&aws_crypt(), &io);

    assert_eq!(dir.spawns().len(), 2, "the start, and one respawn");
    assert_eq!(dir.commands(), ["isMaster", "find"]);
}

// ---------------------------------------------------------------------------------------------------------------
// The client, against a loopback server

/// Checks a handshake request against the MongoDB Handshake spec: OP_MSG, legacy hello with `helloOk: true` on
/// `admin`, and a `client` document with the required fields, of the right types, within 512 bytes.
fn assert_handshake_follows_the_spec(request: &Request, wrapper: &DriverInfo) {
    assert_eq!((request.op_code, request.response_to, request.flags, request.section_kind), (2013, 0, 0, 0));
    let body = Document::try_from(request.body.as_ref()).unwrap();
    assert_eq!(body.keys().collect::<Vec<_>>(), ["isMaster", "helloOk", "client", "$db"]);
    assert_eq!(body.get("isMaster"), Some(&Bson::Int32(1)));
    assert_eq!(body.get("helloOk"), Some(&Bson::Boolean(true)));
    assert_eq!(body.get_str("$db").unwrap(), "admin");

    let client_bytes = match request.body.get("client").unwrap() {
        Some(RawBsonRef::Document(client)) => client.as_bytes().len(),
        other => panic!("client is {other:?}"),
    };
    assert!(client_bytes <= 512, "the client document is {client_bytes} bytes");
    let client = body.get_document("client").unwrap();
    for key in client.keys() {
        assert!(["application", "driver", "os", "platform", "env"].contains(&key.as_str()), "unexpected {key}");
    }
    assert!(!client.contains_key("application"), "no appname was given: the spec forbids a default");
    let driver = client.get_document("driver").unwrap();
    assert_eq!(driver.keys().collect::<Vec<_>>(), ["name", "version"]);
    assert_eq!(driver.get_str("name").unwrap(), format!("libmongocrypt-driver|{}", wrapper.name));
    let version = driver.get_str("version").unwrap();
    assert_eq!(version, format!("{}|{}", env!("CARGO_PKG_VERSION"), wrapper.version.as_deref().unwrap()));
    let os = client.get_document("os").unwrap();
    assert!(!os.get_str("type").unwrap().is_empty());
    for (key, value) in os {
        assert!(["type", "name", "architecture", "version"].contains(&key.as_str()), "unexpected os.{key}");
        assert!(matches!(value, Bson::String(s) if !s.is_empty()), "os.{key} is {value:?}");
    }
    let platform = client.get_str("platform").unwrap();
    assert!(platform.ends_with(&format!("|{}", wrapper.platform.as_deref().unwrap())), "{platform}");
}

fn wrapper() -> DriverInfo {
    DriverInfo { name: "wrapper".into(), version: Some("9.9".into()), platform: Some("test".into()) }
}

/// A server that answers as mongocryptd, with the example's markings.
fn example_server() -> Server {
    Server::start(as_mongocryptd(|request| Answer::reply(request, &fixture("mongocryptd-reply.json"))))
}

#[test]
fn the_handshake_follows_the_spec_and_the_markings_finish_the_run() {
    let server = example_server();
    let client = MongocryptdClient::new(MongocryptdClientSettings::new(server.uri()), Some(&wrapper())).unwrap();
    let crypt = aws_crypt();
    let io = example_io(|command: &RawDocument| Ok(client.mark_command("test", command)?));
    assert_example_encrypts(&crypt, &io);
    // The schema is cached now: a second encryption asks only for markings, on the same connection.
    assert_example_encrypts(&crypt, &io);

    let requests = server.requests();
    assert_eq!(server.commands(), ["isMaster", "find", "find"]);
    assert_eq!(server.connections(), 1);
    assert_handshake_follows_the_spec(&requests[0], &wrapper());
    assert_eq!(requests[0].body.get_document("client").unwrap().as_bytes(), client.client_metadata().as_bytes());
    for markings in &requests[1..] {
        assert_eq!((markings.op_code, markings.response_to, markings.flags, markings.section_kind), (2013, 0, 0, 0));
        assert_eq!(Document::try_from(markings.body.as_ref()).unwrap(), expected_markings_body());
    }
    let ids: std::collections::HashSet<_> = requests.iter().map(|r| r.request_id).collect();
    assert_eq!(ids.len(), 3, "request IDs are distinct");
}

/// A client of `server` whose commands have `timeout`.
fn client_of(server: &Server, timeout: Duration) -> MongocryptdClient {
    MongocryptdClient::new(patient_settings(server), None).unwrap().with_command_timeout(timeout)
}

fn markings_command() -> RawDocumentBuf {
    fixture("cmd.json")
}

#[test]
fn hostile_replies_end_in_typed_errors_without_waiting() {
    let reply = |request: &Request| op_msg_reply(request.request_id, &fixture("mongocryptd-reply.json"));
    type Answerer = Box<dyn Fn(&Request) -> Answer + Send + Sync>;
    type Check = fn(&MongocryptdError) -> bool;
    let cases: Vec<(&str, Answerer, Check)> = vec![
        ("truncated", Box::new(move |r| Answer(reply(r)[..30].to_vec(), After::Close)), |e| {
            matches!(e, MongocryptdError::Wire { step: Step::Command, source: WireError::Truncated { expected, received: 30 } }
                    if *expected == 21 + fixture("mongocryptd-reply.json").as_bytes().len())
        }),
        (
            "oversized",
            Box::new(move |r| {
                let mut bytes = reply(r);
                bytes[..4].copy_from_slice(&48_000_001i32.to_le_bytes());
                Answer(bytes, After::Hold)
            }),
            |e| {
                matches!(
                    e,
                    MongocryptdError::Wire { step: Step::Command, source: WireError::MessageLength(48_000_001) }
                )
            },
        ),
        (
            "wrong responseTo",
            Box::new(move |r| Answer(op_msg_reply(r.request_id + 1, &fixture("mongocryptd-reply.json")), After::Hold)),
            |e| matches!(e, MongocryptdError::Wire { step: Step::Command, source: WireError::ResponseTo { expected, actual } } if *actual == expected + 1),
        ),
        ("closed", Box::new(|_| Answer(Vec::new(), After::Close)), |e| {
            matches!(e, MongocryptdError::Wire { step: Step::Command, source: WireError::Closed })
        }),
        (
            "ok: 0",
            Box::new(|r| {
                let failure = libmongocrypt::bson::rawdoc! { "ok": 0.0, "errmsg": "no such field", "code": 2, "codeName": "BadValue" };
                Answer::reply(r, &failure)
            }),
            |e| {
                matches!(e, MongocryptdError::Command { command, code: Some(2), code_name: Some(name), message }
                    if command == "find" && name == "BadValue" && message == "no such field")
            },
        ),
    ];
    for (name, answer, check) in cases {
        let server = Server::start(as_mongocryptd(answer));
        // Long enough that an error which waited for the deadline would be a Timeout instead.
        let client = client_of(&server, Duration::from_secs(20));
        let err = client.mark_command("test", &markings_command()).unwrap_err();
        assert!(check(&err), "{name}: {err:?}");
        assert!(!err.is_server_selection(), "{name}");
    }
}

#[test]
fn a_silent_server_times_out_at_the_deadline() {
    let server = Server::start(as_mongocryptd(|_| Answer(Vec::new(), After::Hold)));
    let client = client_of(&server, Duration::from_millis(200));
    let start = Instant::now();
    let err = client.mark_command("test", &markings_command()).unwrap_err();
    let elapsed = start.elapsed();
    assert!(
        matches!(err, MongocryptdError::Timeout { step: Step::Command, timeout } if timeout == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(elapsed >= Duration::from_millis(200) && elapsed < ends_within(Duration::from_millis(200)), "{elapsed:?}");
}

#[test]
fn inside_a_run_the_operation_deadline_bounds_the_markings_command() {
    // The client's own command timeout is 20 s; the run's is 300 ms (3 s under valgrind, time enough for the
    // handshake before it), and ends the silent command.
    let timeout = if common::under_valgrind() { Duration::from_secs(3) } else { Duration::from_millis(300) };
    let server = Server::start(as_mongocryptd(|_| Answer(Vec::new(), After::Hold)));
    let client = client_of(&server, Duration::from_secs(20));
    let io = example_io(|command| Ok(client.mark_command("test", command)?));
    let crypt = aws_crypt();
    let mut ctx = crypt.ctx().encrypt("test", &fixture("cmd.json")).unwrap();
    let start = Instant::now();
    let err = Runner::new().timeout(timeout).run(&mut ctx, &io).unwrap_err();
    let elapsed = start.elapsed();
    assert!(matches!(err, RunError::Timeout { state: State::NeedMongoMarkings, io: IoKind::Markings, .. }), "{err:?}");
    assert!(elapsed >= timeout && elapsed < timeout + Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(ctx.state(), State::Error);
    assert_eq!(server.commands(), ["isMaster", "find"]);
}

#[test]
fn failed_connections_and_handshakes_are_server_selection_errors() {
    // Nothing listens.
    let client = MongocryptdClient::new(quick_settings(format!("mongodb://127.0.0.1:{}", free_port())), None).unwrap();
    let start = Instant::now();
    let err = client.mark_command("test", &markings_command()).unwrap_err();
    assert!(start.elapsed() < ends_within(Duration::ZERO), "{:?}", start.elapsed());
    assert!(err.is_server_selection(), "{err:?}");
    let MongocryptdError::ServerSelection { timeout, last_error, .. } = &err else { unreachable!() };
    assert_eq!(*timeout, selection_timeout());
    assert!(matches!(**last_error, MongocryptdError::Io { step: Step::Connect, .. }), "{last_error:?}");

    // The server closes every connection at the handshake: attempts repeat until the timeout.
    let server = Server::start(|_| Answer(Vec::new(), After::Close));
    let client = MongocryptdClient::new(quick_settings(server.uri()), None).unwrap();
    let err = client.mark_command("test", &markings_command()).unwrap_err();
    let MongocryptdError::ServerSelection { last_error, .. } = &err else { panic!("{err:?}") };
    assert!(
        matches!(**last_error, MongocryptdError::Wire { step: Step::Handshake, source: WireError::Closed }),
        "{last_error:?}"
    );
    assert!(server.connections() > 1, "attempts were repeated within server selection");

    // A server that never answers the handshake: the error names the attempt's whole time, which the connect and
    // the handshake share, not what the connect left of it.
    let server = Server::start(|_| Answer(Vec::new(), After::Hold));
    let connect_timeout = selection_timeout() / 2;
    let settings =
        MongocryptdClientSettings { connect_timeout, server_selection_try_once: true, ..quick_settings(server.uri()) };
    let err = MongocryptdClient::new(settings, None).unwrap().mark_command("test", &markings_command()).unwrap_err();
    let MongocryptdError::ServerSelection { last_error, .. } = &err else { panic!("{err:?}") };
    let MongocryptdError::Timeout { step: Step::Handshake, timeout } = **last_error else { panic!("{last_error:?}") };
    assert!(timeout <= connect_timeout && timeout > connect_timeout * 3 / 4, "{timeout:?}");
    assert_eq!(server.connections(), 1);

    // A server that is not mongocryptd ends it at once: respawning mongocryptd would not help.
    let server = Server::start(|r| Answer::reply(r, &libmongocrypt::bson::rawdoc! { "ismaster": true, "ok": 1 }));
    let err = client_of(&server, Duration::from_secs(5)).mark_command("test", &markings_command()).unwrap_err();
    assert!(
        matches!(&err, MongocryptdError::NotMongocryptd { address } if address == &format!("127.0.0.1:{}", server.port)),
        "{err:?}"
    );
    assert_eq!(server.connections(), 1);
}

#[test]
fn a_connection_closed_while_idle_is_replaced() {
    let server = Server::start(as_mongocryptd(|request| {
        Answer(op_msg_reply(request.request_id, &fixture("mongocryptd-reply.json")), After::Close)
    }));
    let client = client_of(&server, Duration::from_secs(5));
    for _ in 0..2 {
        let reply = client.mark_command("test", &markings_command()).unwrap();
        assert_eq!(reply, fixture("mongocryptd-reply.json"));
    }
    assert_eq!(server.commands(), ["isMaster", "find", "isMaster", "find"]);
    let connections: Vec<_> = server.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections, [0, 0, 1, 1]);
}

#[test]
fn unusable_commands_and_timeouts_are_refused() {
    let server = example_server();
    let client = client_of(&server, Duration::from_secs(5));
    let named = libmongocrypt::bson::rawdoc! { "find": "test", "$db": "other" };
    let err = client.mark_command("test", &named).unwrap_err();
    assert!(matches!(err, MongocryptdError::InvalidCommand(_)), "{err:?}");
    assert_eq!(server.connections(), 0, "nothing was sent");

    // Timeouts past the end of the clock are errors, not panics.
    let settings =
        MongocryptdClientSettings { server_selection_timeout: Duration::MAX, ..quick_settings(server.uri()) };
    let err = MongocryptdClient::new(settings, None).unwrap().mark_command("test", &markings_command()).unwrap_err();
    assert!(matches!(err, MongocryptdError::InvalidSettings(_)), "{err:?}");
    let err = client_of(&server, Duration::MAX).mark_command("test", &markings_command()).unwrap_err();
    assert!(matches!(err, MongocryptdError::InvalidSettings(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// The async face

#[cfg(feature = "tokio")]
mod async_face {
    use super::*;
    use libmongocrypt::state_machine::{feed_kms_reply, run_tokio, AsyncStateMachineIo};
    use libmongocrypt_driver::mongocryptd::AsyncMongocryptdClient;

    struct AsyncExampleIo {
        mongocryptd: Mongocryptd,
        client: AsyncMongocryptdClient,
    }

    impl AsyncStateMachineIo for AsyncExampleIo {
        async fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
            Ok(vec![fixture("collection-info.json")])
        }

        async fn mark_command(&self, command: &RawDocument) -> IoResult<RawDocumentBuf> {
            Ok(self.mongocryptd.mark_command_async(&self.client, "test", command).await?)
        }

        async fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
            Ok(vec![fixture("key-document.json")])
        }

        async fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/data/open/csfle-auto-aws-example/kms-decrypt-reply.txt");
            Ok(feed_kms_reply(kms, &common::example::read_http(&path)?)?)
        }
    }

    #[tokio::test]
    async fn the_async_client_serves_the_markings_of_a_run() {
        let server = example_server();
        let options =
            MongocryptdOptions { uri: Some(server.uri()), bypass_spawn: true, ..MongocryptdOptions::default() };
        let mongocryptd = Mongocryptd::start(&aws_crypt(), options).unwrap();
        let settings = mongocryptd.client_settings().unwrap().clone();
        let client = AsyncMongocryptdClient::new(settings, Some(&wrapper())).unwrap();
        let io = AsyncExampleIo { mongocryptd, client };
        let crypt = aws_crypt();
        let mut ctx = crypt.ctx().encrypt("test", &fixture("cmd.json")).unwrap();
        // The run's future is Send: it can be spawned.
        let encrypted = tokio::spawn(async move { run_tokio(&mut ctx, &io).await.map(|r| (r, io)) }).await.unwrap();
        let (encrypted, _io) = encrypted.expect("the run finishes");
        assert_eq!(encrypted.unwrap().as_bytes(), fixture("expected-encrypted-cmd.json").as_bytes());

        let requests = server.requests();
        assert_eq!(server.commands(), ["isMaster", "find"]);
        assert_handshake_follows_the_spec(&requests[0], &wrapper());
        assert_eq!(Document::try_from(requests[1].body.as_ref()).unwrap(), expected_markings_body());
    }

    #[tokio::test]
    async fn async_hostile_replies_end_in_typed_errors() {
        let server = Server::start(as_mongocryptd(|_| Answer(Vec::new(), After::Hold)));
        let client = AsyncMongocryptdClient::new(patient_settings(&server), None)
            .unwrap()
            .with_command_timeout(Duration::from_millis(200));
        let start = Instant::now();
        let err = client.mark_command("test", &markings_command()).await.unwrap_err();
        assert!(matches!(err, MongocryptdError::Timeout { step: Step::Command, .. }), "{err:?}");
        assert!(start.elapsed() < ends_within(Duration::from_millis(200)), "{:?}", start.elapsed());

        let server = Server::start(as_mongocryptd(|r| {
            let mut bytes = op_msg_reply(r.request_id, &fixture("mongocryptd-reply.json"));
            bytes[..4].copy_from_slice(&20i32.to_le_bytes());
            Answer(bytes, After::Hold)
        }));
        let client = AsyncMongocryptdClient::new(patient_settings(&server), None).unwrap();
        let err = client.mark_command("test", &markings_command()).await.unwrap_err();
        assert!(matches!(err, MongocryptdError::Wire { source: WireError::MessageLength(20), .. }), "{err:?}");

        // Nothing listens: a server-selection error, after which a spawning manager would respawn.
        let client =
            AsyncMongocryptdClient::new(quick_settings(format!("mongodb://127.0.0.1:{}", free_port())), None).unwrap();
        let err = client.mark_command("test", &markings_command()).await.unwrap_err();
        assert!(err.is_server_selection(), "{err:?}");
    }
}
