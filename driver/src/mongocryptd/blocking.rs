//! The blocking face of the mongocryptd client: std's TCP, each step under its deadline.

use std::future::{ready, Future};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use libmongocrypt::bson::{RawDocument, RawDocumentBuf};

use super::connection::{remaining, Connector, Transport};
use super::error::MongocryptdError;
use super::handshake::DriverInfo;
use super::wire::Address;
use super::MongocryptdClientSettings;

/// A minimal client of mongocryptd, for a caller with no MongoDB client of its own: OP_MSG over TCP, the
/// handshake spec's hello with its `client` metadata, and the markings command. It serves
/// [`StateMachineIo::mark_command`](libmongocrypt::StateMachineIo::mark_command); with a [`Mongocryptd`](super::Mongocryptd)
/// manager, [`Mongocryptd::mark_command`](super::Mongocryptd::mark_command) adds the spec's respawn.
///
/// It connects when first used, and keeps one idle connection. Connecting is server selection: attempts (TCP
/// connect and handshake, each within `connectTimeoutMS`) repeated until `serverSelectionTimeoutMS`; the
/// command then has [`command_timeout`](Self::with_command_timeout) for its reply. A command sent on the kept
/// connection that finds it closed (mongocryptd exits after idling) is sent once more on a new connection.
/// Replies are read bounded (at most `maxMessageSizeBytes`, 48 MB) and checked (their `responseTo`, their
/// framing, their BSON). It is `Sync`: concurrent commands each use a connection of their own.
///
/// Called by the runner (from [`StateMachineIo::mark_command`](libmongocrypt::StateMachineIo::mark_command)), every
/// step also ends by the operation's deadline ([`Runner::timeout`](libmongocrypt::Runner::timeout), read through
/// [`io_deadline`](libmongocrypt::state_machine::io_deadline)).
///
/// The host name is resolved with the system's resolver on a helper thread, waited for until the deadline: the
/// resolver has no deadline of its own.
pub struct MongocryptdClient {
    connector: Connector<Blocking>,
}

impl MongocryptdClient {
    /// A client of the mongocryptd at `settings.uri`, whose handshake appends `driver_info` (a wrapping library's
    /// name, version and platform) to this crate's. No I/O happens here.
    ///
    /// Fails if the URI is not `mongodb://host[:port]` (its options are not read: the spec fixes the client's
    /// settings), or if `driver_info` contains `|` or leaves no room within the handshake's 512 bytes.
    pub fn new(
        settings: MongocryptdClientSettings,
        driver_info: Option<&DriverInfo>,
    ) -> Result<MongocryptdClient, MongocryptdError> {
        Ok(MongocryptdClient { connector: Connector::new(Blocking, settings, driver_info)? })
    }

    /// Sets the time a command has, from sending it to the end of its reply (10 s unless set).
    pub fn with_command_timeout(mut self, timeout: Duration) -> MongocryptdClient {
        self.connector.set_command_timeout(timeout);
        self
    }

    /// Runs `command` (what the ctx gives in NEED_MONGO_MARKINGS) on database `db` (the database of the command
    /// being encrypted) with `$db` added, and returns mongocryptd's reply, to feed to the ctx.
    ///
    /// An `ok: 0` reply is [`MongocryptdError::Command`]; no connection within `serverSelectionTimeoutMS` is
    /// [`MongocryptdError::ServerSelection`].
    pub fn mark_command(&self, db: &str, command: &RawDocument) -> Result<RawDocumentBuf, MongocryptdError> {
        finish(self.connector.run_command(db, command))
    }

    /// The `client` document the handshake sends.
    pub fn client_metadata(&self) -> &RawDocument {
        self.connector.client_metadata()
    }

    /// The settings this client was made with.
    pub fn settings(&self) -> &MongocryptdClientSettings {
        self.connector.settings()
    }
}

impl std::fmt::Debug for MongocryptdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongocryptdClient").field("settings", self.settings()).finish_non_exhaustive()
    }
}

/// Runs a future of the blocking face, which is ready at its first poll: every future [`Blocking`] returns is
/// `std::future::ready`, so nothing in the connector ever waits.
fn finish<F: Future>(future: F) -> F::Output {
    future.now_or_never().expect("the blocking transport's futures are all ready at once")
}

/// std's blocking sockets, with the socket timeout set to what remains of the deadline before each call.
struct Blocking;

/// A socket timeout is reported as `WouldBlock` on Unix and `TimedOut` on Windows: both are the deadline.
fn deadline_error(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut.into(),
        _ => e,
    }
}

/// The most lookups left running without an answer: while that many are, the resolver is taken to be down and a
/// new lookup fails at once, so that a resolver that never answers cannot pile up threads.
const MAX_LEFT_RUNNING: usize = 8;

static LEFT_RUNNING: AtomicUsize = AtomicUsize::new(0);

const RUNNING: u8 = 0;
const ABANDONED: u8 = 1;
const ANSWERED: u8 = 2;

/// The waiter's end of a lookup: dropped before the answer came, it counts the lookup as left running.
struct Waiting(Arc<AtomicU8>);

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.0.compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            LEFT_RUNNING.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The lookup's end, dropped once it has answered: a lookup left running is then no longer counted.
struct Running(Arc<AtomicU8>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.swap(ANSWERED, Ordering::AcqRel) == ABANDONED {
            LEFT_RUNNING.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The addresses of `host` by the system's resolver, or a timeout at `deadline`.
fn lookup_by(host: &str, port: u16, deadline: Instant) -> io::Result<Vec<SocketAddr>> {
    lookup_with(|host: &str, port| Ok((host, port).to_socket_addrs()?.collect()), host, port, deadline)
}

/// The addresses of `host` by `resolve`, or a timeout at `deadline`. std's resolver (`getaddrinfo`) has no
/// timeout, so it runs on a helper thread, whose answer is dropped if it comes too late. (The KMS crate bounds its
/// lookups the same way; the two crates share no code, and the driver has no network dependency to take it from.)
fn lookup_with(
    resolve: fn(&str, u16) -> io::Result<Vec<SocketAddr>>,
    host: &str,
    port: u16,
    deadline: Instant,
) -> io::Result<Vec<SocketAddr>> {
    let wait = remaining(deadline)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if LEFT_RUNNING.load(Ordering::Acquire) >= MAX_LEFT_RUNNING {
        return Err(io::Error::other(format!(
            "{MAX_LEFT_RUNNING} name lookups of mongocryptd's host were left running without an answer: the \
             resolver is not answering"
        )));
    }
    let state = Arc::new(AtomicU8::new(RUNNING));
    let (_waiting, running) = (Waiting(state.clone()), Running(state));
    let (answer, answered) = mpsc::sync_channel(1);
    let host = host.to_owned();
    std::thread::Builder::new().name("mongocryptd-name-lookup".into()).spawn(move || {
        let addrs = resolve(&host, port);
        // Answered before it is sent: a waiter that takes the answer never counts the lookup as left running.
        drop(running);
        // Nobody may be waiting any more: the answer is then dropped.
        let _ = answer.send(addrs);
    })?;
    match answered.recv_timeout(wait) {
        Ok(addrs) => addrs,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(io::ErrorKind::TimedOut.into()),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(io::Error::other("the name lookup ended without an answer")),
    }
}

impl Transport for Blocking {
    type Stream = TcpStream;

    fn resolve(
        &self,
        address: &Address,
        deadline: Instant,
    ) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send {
        ready(lookup_by(&address.host, address.port, deadline))
    }

    fn connect(&self, address: SocketAddr, deadline: Instant) -> impl Future<Output = io::Result<TcpStream>> + Send {
        ready((|| {
            let stream = TcpStream::connect_timeout(&address, remaining(deadline)?).map_err(deadline_error)?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })())
    }

    fn write_all(
        &self,
        stream: &mut TcpStream,
        mut bytes: &[u8],
        deadline: Instant,
    ) -> impl Future<Output = io::Result<()>> + Send {
        ready((|| {
            while !bytes.is_empty() {
                stream.set_write_timeout(Some(remaining(deadline)?))?;
                match stream.write(bytes) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => bytes = &bytes[n..],
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(deadline_error(e)),
                }
            }
            Ok(())
        })())
    }

    fn read(
        &self,
        stream: &mut TcpStream,
        buf: &mut [u8],
        deadline: Instant,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        ready((|| loop {
            stream.set_read_timeout(Some(remaining(deadline)?))?;
            match stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result.map_err(deadline_error),
            }
        })())
    }

    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_lookup_ends_by_the_deadline() {
        let in_a_second = || Instant::now() + Duration::from_secs(1);
        // A resolver that does not answer in time (a name server that is down): the timeout comes at the deadline.
        let stuck = |_: &str, _| {
            std::thread::sleep(Duration::from_secs(10));
            Ok(vec![])
        };
        let started = Instant::now();
        let err = lookup_with(stuck, "mongocryptd.internal", 27020, Instant::now() + Duration::from_millis(100));
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        // Left running, and counted until it ends (no other test of this binary looks names up).
        assert_eq!(LEFT_RUNNING.load(Ordering::Acquire), 1);
        // An address needs no lookup; a name gets the resolver's answer.
        let never = |_: &str, _| -> io::Result<Vec<SocketAddr>> { unreachable!("an address is not looked up") };
        assert_eq!(lookup_with(never, "::1", 27020, in_a_second()).unwrap(), vec!["[::1]:27020".parse().unwrap()]);
        let answers = |_: &str, port| Ok(vec![SocketAddr::new([127, 0, 0, 2].into(), port)]);
        assert_eq!(lookup_with(answers, "md", 27020, in_a_second()).unwrap(), vec!["127.0.0.2:27020".parse().unwrap()]);
        // A deadline already passed starts no lookup.
        let past = Instant::now();
        assert_eq!(lookup_with(never, "md", 27020, past).unwrap_err().kind(), io::ErrorKind::TimedOut);
    }
}
