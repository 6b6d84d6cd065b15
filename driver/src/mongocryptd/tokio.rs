//! The async face of the mongocryptd client: tokio's TCP and timer, each step under its deadline.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libmongocrypt::bson::{RawDocument, RawDocumentBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::connection::{remaining, Connector, Transport};
use super::error::MongocryptdError;
use super::handshake::DriverInfo;
use super::wire::Address;
use super::MongocryptdClientSettings;

/// [`MongocryptdClient`](super::MongocryptdClient) on tokio (feature `tokio`): the same protocol, settings and
/// checks, with futures that are `Send`, so that it serves
/// [`AsyncStateMachineIo::mark_command`](libmongocrypt::AsyncStateMachineIo::mark_command). Dropping a future
/// drops its connection.
pub struct AsyncMongocryptdClient {
    connector: Connector<Tokio>,
}

impl AsyncMongocryptdClient {
    /// As [`MongocryptdClient::new`](super::MongocryptdClient::new).
    pub fn new(
        settings: MongocryptdClientSettings,
        driver_info: Option<&DriverInfo>,
    ) -> Result<AsyncMongocryptdClient, MongocryptdError> {
        Ok(AsyncMongocryptdClient { connector: Connector::new(Tokio, settings, driver_info)? })
    }

    /// As [`MongocryptdClient::with_command_timeout`](super::MongocryptdClient::with_command_timeout).
    pub fn with_command_timeout(mut self, timeout: Duration) -> AsyncMongocryptdClient {
        self.connector.set_command_timeout(timeout);
        self
    }

    /// As [`MongocryptdClient::mark_command`](super::MongocryptdClient::mark_command).
    pub async fn mark_command(&self, db: &str, command: &RawDocument) -> Result<RawDocumentBuf, MongocryptdError> {
        self.connector.run_command(db, command).await
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

impl std::fmt::Debug for AsyncMongocryptdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncMongocryptdClient").field("settings", self.settings()).finish_non_exhaustive()
    }
}

/// tokio's sockets, each call under `tokio::time::timeout_at` of the deadline.
struct Tokio;

/// `future` cut off at `deadline` with [`io::ErrorKind::TimedOut`].
async fn by<T>(deadline: Instant, future: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    remaining(deadline)?;
    tokio::time::timeout_at(deadline.into(), future).await.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

impl Transport for Tokio {
    type Stream = TcpStream;

    fn resolve(
        &self,
        address: &Address,
        deadline: Instant,
    ) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send {
        let target = (address.host.clone(), address.port);
        by(deadline, async move { Ok(tokio::net::lookup_host(target).await?.collect()) })
    }

    fn connect(&self, address: SocketAddr, deadline: Instant) -> impl Future<Output = io::Result<TcpStream>> + Send {
        by(deadline, async move {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    }

    async fn write_all(&self, stream: &mut TcpStream, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        by(deadline, stream.write_all(bytes)).await
    }

    async fn read(&self, stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        by(deadline, stream.read(buf)).await
    }

    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(deadline.into())
    }
}
