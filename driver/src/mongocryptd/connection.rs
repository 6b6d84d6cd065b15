//! The mongocryptd client, written once over a [`Transport`]: server selection (connect and handshake, retried
//! until `serverSelectionTimeoutMS`), one request and its reply under a deadline, and an idle connection kept for
//! the next command. The blocking face's transport returns futures that are ready at once.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libmongocrypt::bson::{RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::io_deadline;

use super::error::{MongocryptdError, Step};
use super::handshake::{client_metadata, hello_body, DriverInfo};
use super::wire::{self, Address, ReplyReader};
use super::MongocryptdClientSettings;

/// How long server selection waits between two failed attempts. mongocryptd is a local process that has just
/// been spawned, or is not there: a refused connect costs nothing, and a short wait finds it listening sooner.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// The time a markings command has for its reply when none is set.
pub(crate) const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The I/O of one face. Each method ends with [`io::ErrorKind::TimedOut`] once `deadline` passes.
pub(crate) trait Transport {
    type Stream: Send;
    fn resolve(&self, address: &Address, deadline: Instant)
        -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send;
    fn connect(&self, address: SocketAddr, deadline: Instant) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    fn write_all(
        &self,
        stream: &mut Self::Stream,
        bytes: &[u8],
        deadline: Instant,
    ) -> impl Future<Output = io::Result<()>> + Send;
    /// Reads at least one byte into `buf` (which is not empty), or 0 at the end of the stream.
    fn read(
        &self,
        stream: &mut Self::Stream,
        buf: &mut [u8],
        deadline: Instant,
    ) -> impl Future<Output = io::Result<usize>> + Send;
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send;
}

/// `now + timeout`, or sooner: the operation's deadline when a runner calls (`io_deadline`, set while the runner's
/// I/O call runs or its future is polled), so that a markings command inside a run with `timeoutMS` ends with it.
/// An error for a timeout past the end of time.
pub(crate) fn deadline_after(timeout: Duration) -> Result<Instant, MongocryptdError> {
    let own = Instant::now().checked_add(timeout).ok_or_else(|| {
        MongocryptdError::InvalidSettings(format!("a timeout of {timeout:?} ends past the end of the clock"))
    })?;
    Ok(io_deadline().map_or(own, |operation| own.min(operation)))
}

/// What remains until `deadline`, or [`io::ErrorKind::TimedOut`].
pub(crate) fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(left)
    }
}

/// The client of one face: where mongocryptd is, what the handshake sends, and the idle connection.
pub(crate) struct Connector<T: Transport> {
    transport: T,
    address: Address,
    settings: MongocryptdClientSettings,
    client_metadata: RawDocumentBuf,
    hello: Vec<u8>,
    command_timeout: Duration,
    idle: Mutex<Option<T::Stream>>,
}

impl<T: Transport> Connector<T> {
    pub(crate) fn new(
        transport: T,
        settings: MongocryptdClientSettings,
        driver_info: Option<&DriverInfo>,
    ) -> Result<Self, MongocryptdError> {
        let address = wire::parse_uri(&settings.uri)?;
        let client_metadata = client_metadata(driver_info)?;
        let hello = hello_body(&client_metadata)?;
        Ok(Connector {
            transport,
            address,
            settings,
            client_metadata,
            hello,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            idle: Mutex::new(None),
        })
    }

    pub(crate) fn set_command_timeout(&mut self, timeout: Duration) {
        self.command_timeout = timeout;
    }

    pub(crate) fn client_metadata(&self) -> &RawDocument {
        &self.client_metadata
    }

    pub(crate) fn settings(&self) -> &MongocryptdClientSettings {
        &self.settings
    }

    /// Runs `command` on database `db` and returns the reply if it says `ok`.
    ///
    /// The idle connection is used if there is one; if it turns out closed (mongocryptd shuts down after idling),
    /// the command goes once more on a new connection, which is safe: marking a command changes nothing.
    pub(crate) async fn run_command(
        &self,
        db: &str,
        command: &RawDocument,
    ) -> Result<RawDocumentBuf, MongocryptdError> {
        let body = wire::with_db(command, db)?;
        let name = wire::command_name(command);
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(mut stream) = idle {
            let deadline = deadline_after(self.command_timeout)?;
            match self.exchange(&mut stream, &body, Step::Command, deadline, self.command_timeout).await {
                Ok(reply) => {
                    self.keep(stream);
                    return wire::command_reply(&name, reply);
                }
                Err(e) if e.is_connection_lost() => {}
                Err(e) => return Err(e),
            }
        }
        let mut stream = self.select_server().await?;
        let deadline = deadline_after(self.command_timeout)?;
        let reply = self.exchange(&mut stream, &body, Step::Command, deadline, self.command_timeout).await?;
        self.keep(stream);
        wire::command_reply(&name, reply)
    }

    /// Keeps `stream`, which has just been read to the end of a reply, for the next command (unless another
    /// connection already waits).
    fn keep(&self, stream: T::Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.is_none() {
            *idle = Some(stream);
        }
    }

    /// A new connection, handshake done: attempts until one succeeds or `serverSelectionTimeoutMS` passes (one
    /// attempt if `serverSelectionTryOnce`). A server that answers but is not mongocryptd ends it at once.
    async fn select_server(&self) -> Result<T::Stream, MongocryptdError> {
        let timeout = self.settings.server_selection_timeout;
        let deadline = deadline_after(timeout)?;
        loop {
            let attempt_deadline = deadline.min(deadline_after(self.settings.connect_timeout)?);
            let last_error = match self.connect(attempt_deadline).await {
                Ok(stream) => return Ok(stream),
                Err(e) if e.is_definitive() => return Err(e),
                Err(e) => e,
            };
            // The next attempt, if it can start before the deadline.
            let next = Instant::now().checked_add(RETRY_INTERVAL).filter(|next| *next < deadline);
            match next {
                Some(next) if !self.settings.server_selection_try_once => self.transport.sleep_until(next).await,
                _ => {
                    let address = self.address.to_string();
                    let last_error = Box::new(last_error);
                    return Err(MongocryptdError::ServerSelection { address, timeout, last_error });
                }
            }
        }
    }

    /// One attempt within `deadline`: each address of the host in turn, then the handshake on the first that
    /// accepts.
    async fn connect(&self, deadline: Instant) -> Result<T::Stream, MongocryptdError> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let connect_error = |source: io::Error| match source.kind() {
            io::ErrorKind::TimedOut => MongocryptdError::Timeout { step: Step::Connect, timeout },
            _ => MongocryptdError::Io { step: Step::Connect, source },
        };
        let addresses = self.transport.resolve(&self.address, deadline).await.map_err(connect_error)?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{} resolves to no address", self.address));
        for address in addresses {
            match self.transport.connect(address, deadline).await {
                Ok(mut stream) => {
                    let reply = self.exchange(&mut stream, &self.hello, Step::Handshake, deadline, timeout).await?;
                    wire::check_hello_reply(reply, &self.address.to_string())?;
                    return Ok(stream);
                }
                Err(e) => last = e,
            }
        }
        Err(connect_error(last))
    }

    /// Sends `body` as one OP_MSG and reads its reply, all by `deadline`; `timeout` is the limit a timeout error
    /// reports (the command timeout, or the attempt's whole time for a handshake that shares it with the connect).
    async fn exchange(
        &self,
        stream: &mut T::Stream,
        body: &[u8],
        step: Step,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<RawDocumentBuf, MongocryptdError> {
        let io_error = |source: io::Error| match source.kind() {
            io::ErrorKind::TimedOut => MongocryptdError::Timeout { step, timeout },
            _ => MongocryptdError::Io { step, source },
        };
        let request_id = wire::next_request_id();
        let message = wire::op_msg(request_id, body)?;
        self.transport.write_all(stream, &message, deadline).await.map_err(io_error)?;
        let mut reader = ReplyReader::new(request_id);
        loop {
            let n = self.transport.read(stream, reader.unfilled(), deadline).await.map_err(io_error)?;
            if let Some(reply) = reader.advance(n).map_err(|source| MongocryptdError::Wire { step, source })? {
                return Ok(reply);
            }
        }
    }
}
