//! The blocking face of the mongocryptd client: std's TCP, each step under its deadline.

use std::future::{ready, Future};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
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
/// The host name is resolved with the system's resolver, which has no deadline of its own (`localhost`, the
/// default, comes from the hosts file).
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

impl Transport for Blocking {
    type Stream = TcpStream;

    fn resolve(
        &self,
        address: &Address,
        deadline: Instant,
    ) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send {
        ready(remaining(deadline).and_then(|_| Ok((address.host.as_str(), address.port).to_socket_addrs()?.collect())))
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
