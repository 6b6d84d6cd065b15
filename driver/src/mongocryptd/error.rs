//! The errors of mongocryptd management and of the minimal mongocryptd client.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong with mongocryptd: spawning it, reaching it, or the markings command. The spec asks that errors
/// from mongocryptd be told apart from the driver's other errors; this type is that distinction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MongocryptdError {
    /// mongocryptd could not be started.
    #[error(
        "could not spawn mongocryptd from {}: {source}. Install mongocryptd (MongoDB Enterprise) on the PATH or set \
         mongocryptdSpawnPath to it; or load the crypt_shared library instead; or set mongocryptdBypassSpawn if \
         mongocryptd is started some other way (bypassAutoEncryption or bypassQueryAnalysis if automatic \
         encryption is not needed)",
        spawn_path_shown(path)
    )]
    Spawn {
        /// The program tried: `mongocryptdSpawnPath`, or `mongocryptd` (searched on the PATH).
        path: PathBuf,
        /// Why the operating system refused it.
        #[source]
        source: std::io::Error,
    },
    /// `mongocryptdURI` is not one this client can connect to.
    #[error("mongocryptd URI {uri:?}: {reason}")]
    InvalidUri {
        /// The URI given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The wrapping library's driver information cannot go into the handshake's `client` document.
    #[error("client metadata: {0}")]
    InvalidDriverInfo(String),
    /// The command given to send cannot be sent.
    #[error("mongocryptd command: {0}")]
    InvalidCommand(String),
    /// A timeout of the client's settings cannot be used (it ends past the end of the clock).
    #[error("mongocryptd client settings: {0}")]
    InvalidSettings(String),
    /// No connection to mongocryptd (with its handshake) succeeded within `serverSelectionTimeoutMS`: what the spec
    /// respawns mongocryptd after ([`is_server_selection`](Self::is_server_selection)).
    #[error("server selection: no connection to mongocryptd at {address} within {timeout:?}; the last attempt: {last_error}")]
    ServerSelection {
        /// The `host:port` tried.
        address: String,
        /// `serverSelectionTimeoutMS`.
        timeout: Duration,
        /// Why the last attempt failed.
        #[source]
        last_error: Box<MongocryptdError>,
    },
    /// Reading or writing the connection failed.
    #[error("mongocryptd {step}: {source}")]
    Io {
        /// What was being done.
        step: Step,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The step's deadline passed before mongocryptd answered.
    #[error("mongocryptd {step}: not done within its {timeout:?}")]
    Timeout {
        /// What was being done.
        step: Step,
        /// The time the step had: the command timeout, or for the connect and the handshake, the attempt's
        /// (`connectTimeoutMS`, cut to what was left of `serverSelectionTimeoutMS`).
        timeout: Duration,
    },
    /// mongocryptd's reply is not a well-formed OP_MSG reply to the request.
    #[error("mongocryptd {step}: {source}")]
    Wire {
        /// What was being done.
        step: Step,
        /// What is wrong with the reply.
        #[source]
        source: WireError,
    },
    /// The server answered the handshake but is not mongocryptd (its reply lacks `iscryptd: true`).
    #[error("the server at {address} is not mongocryptd: its hello reply lacks iscryptd: true")]
    NotMongocryptd {
        /// The `host:port` connected to.
        address: String,
    },
    /// mongocryptd answered `ok: 0`.
    #[error("mongocryptd {command} failed: {message}{}", code_shown(*code, code_name.as_deref()))]
    Command {
        /// The command's name (its first key).
        command: String,
        /// The reply's `code`, if any.
        code: Option<i32>,
        /// The reply's `codeName`, if any.
        code_name: Option<String>,
        /// The reply's `errmsg`.
        message: String,
    },
}

impl MongocryptdError {
    /// Whether this is a server-selection failure: the error after which the spec respawns mongocryptd (see
    /// [`Mongocryptd::mark_with_respawn`](super::Mongocryptd::mark_with_respawn)).
    pub fn is_server_selection(&self) -> bool {
        matches!(self, MongocryptdError::ServerSelection { .. })
    }

    /// Whether the connection was lost before a reply began: what a connection that mongocryptd closed while idle
    /// (it shuts itself down after `--idleShutdownTimeoutSecs`) gives.
    pub(crate) fn is_connection_lost(&self) -> bool {
        match self {
            MongocryptdError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ),
            MongocryptdError::Wire { source: WireError::Closed, .. } => true,
            _ => false,
        }
    }

    /// Whether a failed connection attempt is worth repeating within server selection: not when the server that
    /// answered is the wrong one or refused the handshake.
    pub(crate) fn is_definitive(&self) -> bool {
        matches!(self, MongocryptdError::NotMongocryptd { .. } | MongocryptdError::Command { .. })
    }
}

fn code_shown(code: Option<i32>, code_name: Option<&str>) -> String {
    match (code, code_name) {
        (Some(code), Some(name)) => format!(" (code {code}, {name})"),
        (Some(code), None) => format!(" (code {code})"),
        (None, Some(name)) => format!(" ({name})"),
        (None, None) => String::new(),
    }
}

fn spawn_path_shown(path: &std::path::Path) -> String {
    if path.components().count() == 1 {
        format!("`{}` (searched on the PATH)", path.display())
    } else {
        format!("`{}`", path.display())
    }
}

/// What a connection to mongocryptd was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Opening the TCP connection.
    Connect,
    /// The initial handshake (legacy hello with the client metadata).
    Handshake,
    /// The markings command.
    Command,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Connect => "connect",
            Step::Handshake => "handshake",
            Step::Command => "command",
        })
    }
}

/// A reply that breaks the OP_MSG framing or does not answer the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The connection closed before any byte of the reply.
    #[error("the connection closed before the reply")]
    Closed,
    /// The connection closed inside the reply.
    #[error("the reply was cut off after {received} of {expected} bytes")]
    Truncated {
        /// The bytes the reply needed (its header, then its `messageLength`).
        expected: usize,
        /// The bytes received.
        received: usize,
    },
    /// `messageLength` is below the smallest OP_MSG or above `maxMessageSizeBytes` (48,000,000).
    #[error("messageLength {0} is outside 26..=48000000")]
    MessageLength(i32),
    /// `responseTo` is not the request's `requestID`.
    #[error("responseTo {actual} does not answer requestID {expected}")]
    ResponseTo {
        /// The request's `requestID`.
        expected: i32,
        /// The reply's `responseTo`.
        actual: i32,
    },
    /// The `opCode` is not OP_MSG (2013).
    #[error("opCode {0} is not OP_MSG (2013)")]
    OpCode(i32),
    /// `flagBits` sets `moreToCome` (never asked for) or a required bit this client does not know.
    #[error("flagBits {0:#010x} are not supported")]
    Flags(u32),
    /// The sections are not one kind-0 body and nothing else.
    #[error("sections: {0}")]
    Sections(String),
    /// The body is not valid BSON.
    #[error("the reply body is not valid BSON: {0}")]
    Bson(String),
    /// The body has no `ok` field.
    #[error("the reply has no ok field")]
    MissingOk,
}
