//! mongocryptd, as the Client-Side Encryption spec's "Managing mongocryptd" says: whether to use it, spawning
//! and respawning it, the settings of the client that talks to it, and a minimal client for callers with no MongoDB
//! client of their own.
//!
//! Automatic encryption asks for markings (NEED_MONGO_MARKINGS) from mongocryptd unless the crypt_shared library
//! is loaded. [`Mongocryptd::start`], called after the [`Crypt`] is built (only then is crypt_shared's presence
//! known), decides with the spec's rules ([`MongocryptdUse`]):
//!
//! | when | mongocryptd |
//! |---|---|
//! | crypt_shared loaded, `cryptSharedLibRequired`, `bypassAutoEncryption` or `bypassQueryAnalysis` | not used: no client, nothing spawned |
//! | `mongocryptdBypassSpawn` | connected to, never spawned |
//! | otherwise | spawned now, and again after a server-selection failure |
//!
//! Spawning runs `mongocryptdSpawnPath` (default `mongocryptd` on the PATH) with `mongocryptdSpawnArgs`, plus
//! `--idleShutdownTimeoutSecs=60` unless they set it, detached, its output discarded.
//! [`Mongocryptd::client_settings`] is what the driver's client to mongocryptd is configured with
//! (`mongocryptdURI`, default `mongodb://localhost:27020`, and `serverSelectionTimeoutMS=10000`).
//! [`Mongocryptd::mark_with_respawn`] (and its async form) wraps the driver's markings call with the spec's rule:
//! after a server-selection error, spawn once and retry once.
//!
//! A caller without a MongoDB client uses [`MongocryptdClient`] (or, with feature `tokio`,
//! [`AsyncMongocryptdClient`]): OP_MSG, the handshake spec's hello with its `client` metadata, and the markings
//! command. [`Mongocryptd::mark_command`] combines it with the respawn.
//!
//! ```no_run
//! use libmongocrypt::bson::{RawDocument, RawDocumentBuf};
//! use libmongocrypt::state_machine::IoResult;
//! use libmongocrypt::{Crypt, KmsProviders};
//! use libmongocrypt_driver::mongocryptd::{Mongocryptd, MongocryptdClient, MongocryptdOptions};
//!
//! let crypt = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[1u8; 96]))?.build()?;
//! let mongocryptd = Mongocryptd::start(&crypt, MongocryptdOptions::default())?;
//! let settings = mongocryptd.client_settings().expect("no crypt_shared: mongocryptd marks commands").clone();
//! let client = MongocryptdClient::new(settings, None)?;
//!
//! // In the driver's StateMachineIo, NEED_MONGO_MARKINGS for a command on database "db":
//! let mark_command = |command: &RawDocument| -> IoResult<RawDocumentBuf> {
//!     Ok(mongocryptd.mark_command(&client, "db", command)?)
//! };
//! # let _ = mark_command;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod blocking;
mod connection;
mod error;
mod handshake;
mod spawn;
#[cfg(feature = "tokio")]
mod tokio;
mod wire;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use libmongocrypt::bson::{RawDocument, RawDocumentBuf};
use libmongocrypt::Crypt;

pub use blocking::MongocryptdClient;
pub use error::{MongocryptdError, Step, WireError};
pub use handshake::DriverInfo;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use tokio::AsyncMongocryptdClient;

/// `mongocryptdURI`'s default.
pub const DEFAULT_URI: &str = "mongodb://localhost:27020";

/// The options of automatic encryption that decide about mongocryptd: the spec's `extraOptions` for it, and the
/// three that turn it off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MongocryptdOptions {
    /// `extraOptions.mongocryptdURI`; [`DEFAULT_URI`] if unset.
    pub uri: Option<String>,
    /// `extraOptions.mongocryptdBypassSpawn`: connect to a mongocryptd started some other way, never spawn one.
    pub bypass_spawn: bool,
    /// `extraOptions.mongocryptdSpawnPath`: the program to spawn; `mongocryptd` on the PATH if unset or empty.
    pub spawn_path: Option<PathBuf>,
    /// `extraOptions.mongocryptdSpawnArgs`; `--idleShutdownTimeoutSecs=60` is added unless they set it.
    pub spawn_args: Vec<String>,
    /// `extraOptions.cryptSharedLibRequired`: markings come from crypt_shared only; mongocryptd is never used.
    pub crypt_shared_lib_required: bool,
    /// `bypassAutoEncryption`: commands are not encrypted, so nothing is marked.
    pub bypass_auto_encryption: bool,
    /// `bypassQueryAnalysis`: commands are not analysed, so nothing is marked.
    pub bypass_query_analysis: bool,
}

/// What [`Mongocryptd::start`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MongocryptdUse {
    /// mongocryptd is neither spawned nor connected to.
    NotUsed(NotUsedReason),
    /// `mongocryptdBypassSpawn`: connected to, never spawned.
    ConnectOnly,
    /// Spawned, and connected to.
    SpawnAndConnect,
}

/// Why mongocryptd is not used, in the order the rules are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotUsedReason {
    /// `bypassAutoEncryption` is set.
    BypassAutoEncryption,
    /// `bypassQueryAnalysis` is set.
    BypassQueryAnalysis,
    /// The crypt_shared library is loaded: it marks commands.
    CryptSharedLoaded,
    /// `cryptSharedLibRequired` is set (whether crypt_shared loaded is checked where it is configured).
    CryptSharedLibRequired,
}

/// The settings the spec asks for on the driver's client to mongocryptd. A driver applies them over the URI's
/// own options; [`MongocryptdClient`] uses them as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongocryptdClientSettings {
    /// `mongocryptdURI`.
    pub uri: String,
    /// `serverSelectionTimeoutMS`: 10 s.
    pub server_selection_timeout: Duration,
    /// `serverSelectionTryOnce`: `false`, for single-threaded drivers too (with `cooldownMS` bypassed), since
    /// mongocryptd may take a moment to listen after it is spawned.
    pub server_selection_try_once: bool,
    /// `connectTimeoutMS` (single-threaded drivers): 10 s.
    pub connect_timeout: Duration,
}

impl MongocryptdClientSettings {
    /// The spec's settings for a client of the mongocryptd at `uri`.
    pub fn new(uri: impl Into<String>) -> MongocryptdClientSettings {
        MongocryptdClientSettings {
            uri: uri.into(),
            server_selection_timeout: Duration::from_secs(10),
            server_selection_try_once: false,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for MongocryptdClientSettings {
    /// The spec's settings for [`DEFAULT_URI`].
    fn default() -> MongocryptdClientSettings {
        MongocryptdClientSettings::new(DEFAULT_URI)
    }
}

/// mongocryptd's manager: the spec's decision, the client settings, and (when it spawns) the respawn.
///
/// ```no_run
/// use libmongocrypt_driver::mongocryptd::{Mongocryptd, MongocryptdError, MongocryptdOptions, MongocryptdUse};
///
/// # fn driver_markings_call() -> Result<(), MongocryptdError> { Ok(()) }
/// let options = MongocryptdOptions { spawn_args: vec!["--port=27021".into()], ..MongocryptdOptions::default() };
/// // crypt_shared is not loaded here: mongocryptd is spawned at once.
/// let mongocryptd = Mongocryptd::start_with(false, options)?;
/// assert_eq!(mongocryptd.usage(), MongocryptdUse::SpawnAndConnect);
/// mongocryptd.mark_with_respawn(MongocryptdError::is_server_selection, driver_markings_call)?;
/// # Ok::<(), MongocryptdError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Mongocryptd {
    use_: MongocryptdUse,
    settings: MongocryptdClientSettings,
    program: PathBuf,
    args: Vec<String>,
}

impl Mongocryptd {
    /// Decides with the spec's rules, whether crypt_shared is loaded read from `crypt`
    /// ([`Crypt::crypt_shared_lib_version`]), and spawns mongocryptd if the decision is to.
    ///
    /// Fails with [`MongocryptdError::Spawn`] (naming the program and how to do without it) if it cannot be
    /// spawned.
    pub fn start(crypt: &Crypt, options: MongocryptdOptions) -> Result<Mongocryptd, MongocryptdError> {
        Mongocryptd::start_with(crypt.crypt_shared_lib_version().is_some(), options)
    }

    /// [`start`](Self::start), with whether crypt_shared is loaded given.
    pub fn start_with(crypt_shared_loaded: bool, options: MongocryptdOptions) -> Result<Mongocryptd, MongocryptdError> {
        let use_ = if options.bypass_auto_encryption {
            MongocryptdUse::NotUsed(NotUsedReason::BypassAutoEncryption)
        } else if options.bypass_query_analysis {
            MongocryptdUse::NotUsed(NotUsedReason::BypassQueryAnalysis)
        } else if crypt_shared_loaded {
            MongocryptdUse::NotUsed(NotUsedReason::CryptSharedLoaded)
        } else if options.crypt_shared_lib_required {
            MongocryptdUse::NotUsed(NotUsedReason::CryptSharedLibRequired)
        } else if options.bypass_spawn {
            MongocryptdUse::ConnectOnly
        } else {
            MongocryptdUse::SpawnAndConnect
        };
        let mongocryptd = Mongocryptd {
            use_,
            settings: MongocryptdClientSettings::new(options.uri.unwrap_or_else(|| DEFAULT_URI.to_owned())),
            program: spawn::program(options.spawn_path.as_deref()),
            args: spawn::spawn_args(&options.spawn_args),
        };
        mongocryptd.spawn_if_managed()?;
        Ok(mongocryptd)
    }

    /// What was decided.
    pub fn usage(&self) -> MongocryptdUse {
        self.use_
    }

    /// The settings of the driver's client to mongocryptd, or `None` when mongocryptd is not to be used (the
    /// driver then creates no client to it).
    pub fn client_settings(&self) -> Option<&MongocryptdClientSettings> {
        match self.use_ {
            MongocryptdUse::NotUsed(_) => None,
            MongocryptdUse::ConnectOnly | MongocryptdUse::SpawnAndConnect => Some(&self.settings),
        }
    }

    /// The program and arguments spawned (the arguments with `--idleShutdownTimeoutSecs` added if needed), or
    /// `None` when this manager never spawns.
    pub fn spawn_command(&self) -> Option<(&std::path::Path, &[String])> {
        (self.use_ == MongocryptdUse::SpawnAndConnect).then_some((self.program.as_path(), self.args.as_slice()))
    }

    /// Runs `call` (the driver's markings command on its client to mongocryptd) with the spec's rule: if it fails
    /// with an error that `is_server_selection_error` says is a server-selection failure, and this manager
    /// spawns, mongocryptd is spawned again and `call` runs once more; that second result is returned, whatever
    /// it is. A failed respawn is returned as the error ([`MongocryptdError::Spawn`], through `E: From`).
    pub fn mark_with_respawn<T, E: From<MongocryptdError>>(
        &self,
        is_server_selection_error: impl Fn(&E) -> bool,
        mut call: impl FnMut() -> Result<T, E>,
    ) -> Result<T, E> {
        match call() {
            Err(e) if self.respawned_after(is_server_selection_error(&e))? => call(),
            result => result,
        }
    }

    /// [`mark_with_respawn`](Self::mark_with_respawn) for an async `call` (any executor; spawning itself does not
    /// wait).
    pub async fn mark_with_respawn_async<T, E, F>(
        &self,
        is_server_selection_error: impl Fn(&E) -> bool,
        mut call: impl FnMut() -> F,
    ) -> Result<T, E>
    where
        E: From<MongocryptdError>,
        F: Future<Output = Result<T, E>>,
    {
        match call().await {
            Err(e) if self.respawned_after(is_server_selection_error(&e))? => call().await,
            result => result,
        }
    }

    /// `client.mark_command(db, command)` with the respawn of [`mark_with_respawn`](Self::mark_with_respawn):
    /// what a [`StateMachineIo::mark_command`](libmongocrypt::StateMachineIo::mark_command) over
    /// [`MongocryptdClient`] does.
    pub fn mark_command(
        &self,
        client: &MongocryptdClient,
        db: &str,
        command: &RawDocument,
    ) -> Result<RawDocumentBuf, MongocryptdError> {
        self.mark_with_respawn(MongocryptdError::is_server_selection, || client.mark_command(db, command))
    }

    /// [`mark_command`](Self::mark_command) over [`AsyncMongocryptdClient`] (feature `tokio`).
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn mark_command_async(
        &self,
        client: &AsyncMongocryptdClient,
        db: &str,
        command: &RawDocument,
    ) -> Result<RawDocumentBuf, MongocryptdError> {
        self.mark_with_respawn_async(MongocryptdError::is_server_selection, || client.mark_command(db, command)).await
    }

    /// After a failed call: whether to call again, having respawned mongocryptd (only after a server-selection
    /// failure, and only if this manager spawns).
    fn respawned_after(&self, server_selection_failed: bool) -> Result<bool, MongocryptdError> {
        if !server_selection_failed || self.use_ != MongocryptdUse::SpawnAndConnect {
            return Ok(false);
        }
        self.spawn_if_managed()?;
        Ok(true)
    }

    fn spawn_if_managed(&self) -> Result<(), MongocryptdError> {
        match self.spawn_command() {
            Some((program, args)) => spawn::spawn(program, args),
            None => Ok(()),
        }
    }
}
