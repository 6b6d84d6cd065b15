//! The operation deadline through the transport: a KMS server on loopback that accepts the connection and never
//! answers stalls the TLS handshake; the runner's deadline ([`Runner::timeout`]) reaches the transport through
//! `KmsCtx::deadline`, which bounds it far below its own timeouts (30 s by default), on both faces.

use crate::support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use libmongocrypt::state_machine::{IoKind, RunError, Runner};
use libmongocrypt::{Crypt, Ctx, ErrorKind, State};
use libmongocrypt_kms::tls::{KmsTransport, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT};

use support::*;

const AWS_ENDPOINT: &str = "kms.us-east-1.amazonaws.com:443";
const DEADLINE: Duration = Duration::from_millis(300);
/// A generous bound on when a run given [`DEADLINE`] ends, well below the transport's own timeouts.
const ENDED_WITHIN: Duration = Duration::from_secs(5);

/// A loopback server that never answers: the kernel completes each TCP connection into the listener's backlog, and
/// nothing ever reads the ClientHello or replies to it. Its address.
fn silent_kms() -> (TcpListener, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A transport with its default timeouts, every host sent to `addr`.
fn transport(addr: std::net::SocketAddr) -> KmsTransport {
    assert!(DEFAULT_CONNECT_TIMEOUT >= ENDED_WITHIN && DEFAULT_IO_TIMEOUT >= ENDED_WITHIN);
    KmsTransport::builder().resolver(move |_, _| Ok(vec![addr])).build().unwrap()
}

/// The example's auto encryption, with its key: its KMS request goes to the silent server.
fn auto_encrypt() -> Ctx {
    let crypt = Crypt::builder().kms_providers(&providers()).unwrap().build().unwrap();
    crypt.ctx().encrypt("test", &raw(&doc("example/cmd.json"))).unwrap()
}

fn assert_timed_out_at_kms(result: Result<Option<bson::RawDocumentBuf>, RunError>, ctx: &Ctx, started: Instant) {
    let took = started.elapsed();
    assert!(took < ENDED_WITHIN, "ended after {took:?}");
    let err = result.expect_err("the silent KMS times out");
    let RunError::Timeout { state, io, endpoint, .. } = &err else { panic!("not the run's timeout: {err}") };
    assert_eq!((*state, *io, endpoint.as_deref()), (State::NeedKms, IoKind::KmsRequest, Some(AWS_ENDPOINT)));
    assert_eq!(ctx.state(), State::Error);
    assert_eq!(ctx.error().map(|e| e.kind()), Some(ErrorKind::Timeout));
}

/// The example's auto encryption run under [`DEADLINE`] through `io`: it must time out at the KMS step, in time.
fn assert_blocking_run_times_out(io: &ExampleIo) {
    let mut ctx = auto_encrypt();
    let started = Instant::now();
    let result = Runner::new().timeout(DEADLINE).run(&mut ctx, io);
    assert_timed_out_at_kms(result, &ctx, started);
}

/// The async example I/O over `transport`.
#[cfg(feature = "tokio")]
fn async_io(transport: KmsTransport) -> AsyncExampleIo {
    use libmongocrypt_kms::tls::TokioKmsTransport;
    AsyncExampleIo { kms: TokioKmsTransport::new(transport), keys: vec![raw(&doc("example/key-document.json"))] }
}

/// [`assert_blocking_run_times_out`] on the async face, with a timer that never fires: only the transport's own
/// bound by `KmsCtx::deadline` can end the request.
#[cfg(feature = "tokio")]
async fn assert_async_run_times_out_without_a_timer(io: &AsyncExampleIo) {
    let mut ctx = auto_encrypt();
    let started = Instant::now();
    let never = |_| std::future::pending::<()>();
    let result = Runner::new().timeout(DEADLINE).run_async(&mut ctx, io, never).await;
    assert_timed_out_at_kms(result, &ctx, started);
}

#[test]
fn the_deadline_bounds_a_blocking_kms_request() {
    let (_listener, addr) = silent_kms();
    // The runner cannot interrupt the blocking transport: only the transport's bound by KmsCtx::deadline ends it.
    assert_blocking_run_times_out(&ExampleIo::new(transport(addr)));
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_bounds_an_async_kms_request() {
    let (_listener, addr) = silent_kms();
    let io = async_io(transport(addr));
    // Through the runner's race with tokio's timer.
    let mut ctx = auto_encrypt();
    let started = Instant::now();
    let result = Runner::new().timeout(DEADLINE).run_async(&mut ctx, &io, tokio::time::sleep).await;
    assert_timed_out_at_kms(result, &ctx, started);

    assert_async_run_times_out_without_a_timer(&io).await;
}

/// A resolver that answers only once `release` is dropped, at the end of the test: a name server that does not
/// answer (a system resolver can wait many seconds per server before it gives up).
fn stuck_resolver() -> (
    impl Fn(&str, u16) -> std::io::Result<Vec<std::net::SocketAddr>> + Send + Sync + 'static,
    std::sync::mpsc::Sender<()>,
) {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Mutex::new(wait);
    let resolve = move |_: &str, _: u16| {
        let _ = wait.lock().unwrap().recv();
        Ok(vec![])
    };
    (resolve, release)
}

#[test]
fn the_deadline_bounds_a_blocking_name_lookup() {
    let (resolve, _release) = stuck_resolver();
    assert_blocking_run_times_out(&ExampleIo::new(KmsTransport::builder().resolver(resolve).build().unwrap()));
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_bounds_an_async_name_lookup() {
    let (resolve, _release) = stuck_resolver();
    // The lookup blocks no worker while it waits.
    assert_async_run_times_out_without_a_timer(&async_io(KmsTransport::builder().resolver(resolve).build().unwrap()))
        .await;
}
