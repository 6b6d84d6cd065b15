//! crypt_shared, as the spec's "Enabling Command Marking with the crypt_shared Library" says: where libmongocrypt
//! looks for it, `cryptSharedLibRequired`, detection through the loaded version, and one library per process.
//!
//! libmongocrypt loads crypt_shared itself, in `mongocrypt_init`; the driver only tells it where to look and then
//! asks what it loaded. [`CryptSharedOpts::build`] does both and enforces the spec's rules on the result.

use std::fmt;
use std::path::{Path, PathBuf};

use libmongocrypt::bson::{Bson, Document};
use libmongocrypt::{Crypt, CryptBuilder};

/// The file name libmongocrypt looks for in each search path: `mongo_crypt_v1` with the platform's suffix.
pub const CRYPT_SHARED_FILE_NAME: &str = if cfg!(windows) {
    "mongo_crypt_v1.dll"
} else if cfg!(target_os = "macos") {
    "mongo_crypt_v1.dylib"
} else {
    "mongo_crypt_v1.so"
};

/// The search path that makes libmongocrypt ask the operating system's own dynamic-library search for
/// [`CRYPT_SHARED_FILE_NAME`] instead of looking in a directory.
pub const SYSTEM_SEARCH_PATH: &str = "$SYSTEM";

/// Where libmongocrypt searches for crypt_shared when no `cryptSharedLibPath` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CryptSharedSearch {
    /// The spec's user-facing behaviour: [`SYSTEM_SEARCH_PATH`], unless
    /// [`bypass_auto_encryption`](CryptSharedOpts::bypass_auto_encryption) is set (then no search).
    #[default]
    System,
    /// For tests ("Search Paths for Testing"): these directories, in order, instead of `$SYSTEM`. A relative one is
    /// resolved from the process's working directory, a leading `$ORIGIN` is the directory of libmongocrypt, and
    /// `$SYSTEM` keeps its meaning. An empty list is [`Disabled`](Self::Disabled).
    Dirs(Vec<PathBuf>),
    /// For tests ("Disabling crypt_shared"): no search, so that mongocryptd is used even where crypt_shared is
    /// installed. Only `cryptSharedLibPath` can then load it.
    Disabled,
}

impl CryptSharedSearch {
    /// [`Dirs`](Self::Dirs) of these directories, in order.
    pub fn dirs<P: AsRef<Path>>(dirs: impl IntoIterator<Item = P>) -> CryptSharedSearch {
        CryptSharedSearch::Dirs(dirs.into_iter().map(|dir| dir.as_ref().to_path_buf()).collect())
    }
}

/// The crypt_shared options of the spec's `AutoEncryptionOpts`: the two of its `extraOptions`, and the two flags
/// that decide whether libmongocrypt loads crypt_shared at all.
///
/// All `MongoClient` objects in the same process should use the same setting for `cryptSharedLibPath`, as it is an
/// error to load more than one crypt_shared dynamic library simultaneously in a single operating system process
/// ([`CryptSharedError::AnotherLoaded`]). Once every handle that uses one is dropped, another may be loaded.
///
/// A `ClientEncryption` (explicit encryption only) searches for no crypt_shared: build its [`Crypt`] without these.
///
/// ```
/// use libmongocrypt::bson::doc;
/// use libmongocrypt::{Crypt, KmsProviders};
/// use libmongocrypt_driver::{CryptSharedError, CryptSharedOpts};
///
/// let builder = || Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[1u8; 96]));
///
/// // The user-facing default: `$SYSTEM` is searched; without a crypt_shared, mongocryptd marks the commands.
/// let opts = CryptSharedOpts::from_extra_options(&doc! { "mongocryptdBypassSpawn": false })?;
/// let (crypt, crypt_shared) = opts.build(builder()?)?;
/// if let Some(version) = crypt_shared.version() {
///     println!("crypt_shared {version} marks commands; mongocryptd is not needed");
/// }
///
/// // cryptSharedLibPath names the library file; libmongocrypt refuses to start when it cannot load it.
/// let opts = CryptSharedOpts::from_extra_options(
///     &doc! { "cryptSharedLibPath": "/nonexistent/mongo_crypt_v1.so", "cryptSharedLibRequired": true },
/// )?;
/// match opts.build(builder()?) {
///     Err(CryptSharedError::OverrideNotLoaded { path, .. }) => {
///         assert_eq!(path.to_str(), Some("/nonexistent/mongo_crypt_v1.so"))
///     }
///     other => panic!("{other:?}"),
/// }
/// # drop(crypt);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CryptSharedOpts {
    /// `extraOptions.cryptSharedLibPath`: the crypt_shared library file itself (not its directory), passed to
    /// libmongocrypt unchanged. A relative path is resolved from the process's working directory; a leading
    /// `$ORIGIN` component is the directory of the libmongocrypt library. When set, nothing else is searched and
    /// a library that does not load fails [`build`](Self::build).
    pub lib_path: Option<PathBuf>,
    /// `extraOptions.cryptSharedLibRequired`: fail [`build`](Self::build) unless crypt_shared loaded (and then
    /// neither spawn nor connect to mongocryptd).
    pub required: bool,
    /// Where to search when [`lib_path`](Self::lib_path) is not set.
    pub search: CryptSharedSearch,
    /// `AutoEncryptionOpts.bypassAutoEncryption`: auto decryption only, so `$SYSTEM` is not searched.
    pub bypass_auto_encryption: bool,
    /// `AutoEncryptionOpts.bypassQueryAnalysis`: [`build`](Self::build) sets it on the builder, and libmongocrypt
    /// then loads no crypt_shared whatever the paths.
    pub bypass_query_analysis: bool,
}

impl CryptSharedOpts {
    /// The crypt_shared options of an `extraOptions` document: `cryptSharedLibPath` (a string) and
    /// `cryptSharedLibRequired` (a boolean). Other fields (mongocryptd's) are left to their readers; the flags and
    /// the search are the defaults.
    pub fn from_extra_options(extra_options: &Document) -> Result<CryptSharedOpts, CryptSharedError> {
        let lib_path = match extra_options.get("cryptSharedLibPath") {
            None => None,
            Some(Bson::String(path)) => Some(PathBuf::from(path)),
            Some(other) => return Err(invalid_extra_option("cryptSharedLibPath", "a string", other)),
        };
        let required = match extra_options.get("cryptSharedLibRequired") {
            None => false,
            Some(Bson::Boolean(required)) => *required,
            Some(other) => return Err(invalid_extra_option("cryptSharedLibRequired", "a boolean", other)),
        };
        Ok(CryptSharedOpts { lib_path, required, ..CryptSharedOpts::default() })
    }

    /// Where libmongocrypt will look for crypt_shared with these options, as `mongocrypt_init` decides it.
    pub fn source(&self) -> CryptSharedSource {
        if self.bypass_query_analysis {
            return CryptSharedSource::BypassQueryAnalysis;
        }
        if let Some(path) = &self.lib_path {
            return CryptSharedSource::Override(path.clone());
        }
        let paths = self.search_paths();
        if paths.is_empty() {
            CryptSharedSource::NotSearched
        } else {
            CryptSharedSource::Search(paths)
        }
    }

    /// The search paths appended to the handle (libmongocrypt ignores them when an override is set).
    fn search_paths(&self) -> Vec<PathBuf> {
        match &self.search {
            CryptSharedSearch::System if self.bypass_auto_encryption => Vec::new(),
            CryptSharedSearch::System => vec![PathBuf::from(SYSTEM_SEARCH_PATH)],
            CryptSharedSearch::Dirs(dirs) => dirs.clone(),
            CryptSharedSearch::Disabled => Vec::new(),
        }
    }

    /// Sets these options on `builder`, unchanged as the spec requires: the search paths, the override path and
    /// `bypassQueryAnalysis`.
    fn apply(&self, mut builder: CryptBuilder) -> Result<CryptBuilder, CryptSharedError> {
        for path in self.search_paths() {
            builder = builder.append_crypt_shared_lib_search_path(path)?;
        }
        if let Some(path) = &self.lib_path {
            builder = builder.set_crypt_shared_lib_path_override(path)?;
        }
        if self.bypass_query_analysis {
            builder = builder.bypass_query_analysis();
        }
        Ok(builder)
    }

    /// Builds the handle with these options and enforces the spec's rules on what libmongocrypt loaded:
    ///
    /// - a `cryptSharedLibPath` that does not load: [`CryptSharedError::OverrideNotLoaded`];
    /// - another crypt_shared already loaded in this process, by a live handle, and this handle wants one but
    ///   found another file or none: [`CryptSharedError::AnotherLoaded`];
    /// - `cryptSharedLibRequired` and nothing loaded: [`CryptSharedError::Required`], naming what was searched;
    /// - any other failure of `mongocrypt_init`: [`CryptSharedError::Mongocrypt`].
    ///
    /// Otherwise the handle and what it loaded: when [`CryptSharedStatus::is_loaded`], crypt_shared marks the
    /// commands and mongocryptd must be neither spawned nor connected to.
    pub fn build(&self, builder: CryptBuilder) -> Result<(Crypt, CryptSharedStatus), CryptSharedError> {
        let crypt = self.apply(builder)?.build().map_err(|error| self.init_error(error))?;
        let status = self.check(&crypt)?;
        Ok((crypt, status))
    }

    /// What `crypt`, built with [`apply`](Self::apply), loaded; [`CryptSharedError::Required`] when
    /// `cryptSharedLibRequired` is set and it loaded nothing (the spec: the handle is then invalid).
    fn check(&self, crypt: &Crypt) -> Result<CryptSharedStatus, CryptSharedError> {
        let status = CryptSharedStatus { version: CryptSharedVersion::loaded_in(crypt), source: self.source() };
        if self.required && !status.is_loaded() {
            return Err(CryptSharedError::Required { searched: status.source });
        }
        Ok(status)
    }

    /// Which rule of crypt_shared's loading a failed `mongocrypt_init` broke, from libmongocrypt's message (the
    /// same through 1.13 but for "CSFLE" where later releases say "crypt_shared").
    fn init_error(&self, error: libmongocrypt::Error) -> CryptSharedError {
        if let libmongocrypt::Error::Client { message, .. } = &error {
            if let Some((loaded, attempted)) = parse_another_loaded(message) {
                return CryptSharedError::AnotherLoaded { loaded, attempted, source: error };
            }
            if let Some(path) = self.lib_path.as_ref().filter(|_| message.contains("override path was specified")) {
                return CryptSharedError::OverrideNotLoaded { path: path.clone(), source: error };
            }
        }
        CryptSharedError::Mongocrypt(error)
    }
}

fn invalid_extra_option(name: &'static str, expected: &'static str, found: &Bson) -> CryptSharedError {
    CryptSharedError::InvalidExtraOption { name, expected, found: format!("{:?}", found.element_type()) }
}

/// The paths of libmongocrypt's "An existing crypt_shared library is loaded by the application at [A], but the
/// current call to mongocrypt_init() failed to find that same library" and "... attempted to load a second
/// crypt_shared library from [B]. This is not allowed."
fn parse_another_loaded(message: &str) -> Option<(PathBuf, Option<PathBuf>)> {
    const LOADED: &str = "library is loaded by the application at [";
    const LOADED_END: &str = "], but the current call to mongocrypt_init() ";
    const SECOND: &str = "library from [";
    const SECOND_END: &str = "]. This is not allowed.";
    let (_, rest) = message.split_once(LOADED)?;
    let (loaded, rest) = rest.split_once(LOADED_END)?;
    let attempted = match rest.split_once(SECOND) {
        Some((_, second)) => Some(PathBuf::from(second.rsplit_once(SECOND_END)?.0)),
        None => None,
    };
    Some((PathBuf::from(loaded), attempted))
}

/// Where libmongocrypt looked for crypt_shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptSharedSource {
    /// `cryptSharedLibPath`: this file and nothing else.
    Override(PathBuf),
    /// These search paths, in order: [`CRYPT_SHARED_FILE_NAME`] in each directory, or through the operating
    /// system's library search for [`SYSTEM_SEARCH_PATH`]. The first that loads is used.
    Search(Vec<PathBuf>),
    /// Nowhere: `bypassQueryAnalysis` is set, so libmongocrypt loads no crypt_shared.
    BypassQueryAnalysis,
    /// Nowhere: no override and no search path (`bypassAutoEncryption`, or [`CryptSharedSearch::Disabled`]).
    NotSearched,
}

impl fmt::Display for CryptSharedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptSharedSource::Override(path) => write!(f, "cryptSharedLibPath {}", path.display()),
            CryptSharedSource::Search(paths) if paths.is_empty() => f.write_str("no search path"),
            CryptSharedSource::Search(paths) => {
                for (i, path) in paths.iter().enumerate() {
                    f.write_str(if i == 0 { "searched " } else { ", then " })?;
                    if path.as_os_str() == SYSTEM_SEARCH_PATH {
                        write!(f, "{SYSTEM_SEARCH_PATH} (the operating system's dynamic-library search for ")?;
                        write!(f, "{CRYPT_SHARED_FILE_NAME}{})", system_search_note())?;
                    } else {
                        write!(f, "{}", path.join(CRYPT_SHARED_FILE_NAME).display())?;
                    }
                }
                Ok(())
            }
            CryptSharedSource::BypassQueryAnalysis => f.write_str("bypassQueryAnalysis is set: no crypt_shared loads"),
            CryptSharedSource::NotSearched => {
                f.write_str("no cryptSharedLibPath and no search path (bypassAutoEncryption, or search disabled)")
            }
        }
    }
}

/// Where the operating system's library search looks, for error messages.
fn system_search_note() -> &'static str {
    if cfg!(windows) {
        ": the application's directory, the system directories, then PATH"
    } else if cfg!(target_os = "macos") {
        ": DYLD_LIBRARY_PATH, then /usr/local/lib and /usr/lib"
    } else {
        ": LD_LIBRARY_PATH, the ld.so cache, then /lib and /usr/lib"
    }
}

/// What a handle loaded, as [`CryptSharedOpts::build`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptSharedStatus {
    version: Option<CryptSharedVersion>,
    source: CryptSharedSource,
}

impl CryptSharedStatus {
    /// Whether crypt_shared is loaded: it marks the commands, so mongocryptd is neither spawned nor connected to.
    pub fn is_loaded(&self) -> bool {
        self.version.is_some()
    }

    /// The loaded crypt_shared's version, if one is loaded.
    pub fn version(&self) -> Option<&CryptSharedVersion> {
        self.version.as_ref()
    }

    /// Where libmongocrypt looked: the override path, the search paths, or nowhere and why.
    pub fn source(&self) -> &CryptSharedSource {
        &self.source
    }
}

/// A loaded crypt_shared's version, as the library reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptSharedVersion {
    number: u64,
    string: String,
}

impl CryptSharedVersion {
    /// The version of the crypt_shared `crypt` loaded, if it loaded one: the spec's detection, which is only
    /// reliable after `mongocrypt_init` (that is, on a built [`Crypt`]).
    pub fn loaded_in(crypt: &Crypt) -> Option<CryptSharedVersion> {
        let string = crypt.crypt_shared_lib_version_string();
        let number = crypt.crypt_shared_lib_version();
        // The string is the spec's test; a library may report 0 as its number (and the string may not be UTF-8).
        (string.is_some() || number.is_some())
            .then(|| CryptSharedVersion { number: number.unwrap_or(0), string: string.unwrap_or_default().into() })
    }

    /// The number (`mongo_crypt_v1_get_version`): four 16-bit words, major, minor, revision and reserved, from the
    /// highest.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The major version (6 for 6.2.1).
    pub fn major(&self) -> u16 {
        (self.number >> 48) as u16
    }

    /// The minor version (2 for 6.2.1).
    pub fn minor(&self) -> u16 {
        (self.number >> 32) as u16
    }

    /// The revision (1 for 6.2.1).
    pub fn revision(&self) -> u16 {
        (self.number >> 16) as u16
    }

    /// The string (`mongo_crypt_v1_get_version_str`), such as `mongo_crypt_v1-rhel80-6.2.1`.
    pub fn as_str(&self) -> &str {
        &self.string
    }
}

impl fmt::Display for CryptSharedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.string)
    }
}

/// Why [`CryptSharedOpts`] could not give a handle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptSharedError {
    /// An `extraOptions` field has the wrong BSON type.
    #[error("extraOptions.{name} must be {expected}, not {found}")]
    InvalidExtraOption {
        /// The field.
        name: &'static str,
        /// The type it must have.
        expected: &'static str,
        /// The BSON type it has.
        found: String,
    },
    /// libmongocrypt could not load crypt_shared from `cryptSharedLibPath` (a hard error: it searches nowhere
    /// else). `source` is libmongocrypt's message, with the loader's reason from libmongocrypt 1.8.
    #[error(
        "crypt_shared could not be loaded from cryptSharedLibPath {}: set it to the crypt_shared library file \
         itself ({CRYPT_SHARED_FILE_NAME}, from MongoDB Enterprise's crypt_shared package), not its directory, or \
         unset it to search {SYSTEM_SEARCH_PATH}",
        path.display()
    )]
    OverrideNotLoaded {
        /// The path, as given.
        path: PathBuf,
        /// libmongocrypt's error.
        #[source]
        source: libmongocrypt::Error,
    },
    /// `cryptSharedLibRequired` is set and no crypt_shared loaded.
    #[error(
        "cryptSharedLibRequired is set, but no crypt_shared library was loaded: {searched}; {}",
        required_hint(searched)
    )]
    Required {
        /// Where libmongocrypt looked.
        searched: CryptSharedSource,
    },
    /// A live handle of this process has crypt_shared loaded from `loaded`, and this one wants crypt_shared but
    /// found another file (`attempted`) or none: a process may have one crypt_shared at a time.
    #[error("{}", another_loaded_message(loaded, attempted.as_deref()))]
    AnotherLoaded {
        /// The library loaded in the process.
        loaded: PathBuf,
        /// The other library this handle found, if it found one.
        attempted: Option<PathBuf>,
        /// libmongocrypt's error.
        #[source]
        source: libmongocrypt::Error,
    },
    /// libmongocrypt refused an option or failed to initialise for another reason (for a crypt_shared whose
    /// `lib_create` fails, an [`Error::CryptShared`](libmongocrypt::Error::CryptShared)).
    #[error(transparent)]
    Mongocrypt(#[from] libmongocrypt::Error),
}

/// [`CryptSharedError::AnotherLoaded`]'s message.
fn another_loaded_message(loaded: &Path, attempted: Option<&Path>) -> String {
    let this_handle = match attempted {
        Some(path) => format!("this handle found another at {}", path.display()),
        None => "this handle did not find it".to_owned(),
    };
    format!(
        "crypt_shared is already loaded in this process from {loaded} and {this_handle}: only one crypt_shared \
         library can be loaded at a time, so give every client the same cryptSharedLibPath, or drop every handle \
         that uses {loaded} first",
        loaded = loaded.display()
    )
}

/// How to get a crypt_shared loaded, after [`CryptSharedError::Required`]'s `searched`.
fn required_hint(searched: &CryptSharedSource) -> String {
    let library =
        format!("the library file ({CRYPT_SHARED_FILE_NAME}, from MongoDB Enterprise's crypt_shared package)");
    let unless = "or unset cryptSharedLibRequired to use mongocryptd";
    match searched {
        CryptSharedSource::BypassQueryAnalysis => "unset bypassQueryAnalysis or cryptSharedLibRequired".to_owned(),
        CryptSharedSource::Search(_) => {
            format!("put {library} where the search finds it, or set cryptSharedLibPath to it, {unless}")
        }
        CryptSharedSource::Override(_) | CryptSharedSource::NotSearched => {
            format!("set cryptSharedLibPath to {library}, {unless}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_messages_of_the_one_library_rule() {
        let second = "An existing crypt_shared library is loaded by the application at [/a/mongo_crypt_v1.so], but \
                      the current call to mongocrypt_init() attempted to load a second crypt_shared library from \
                      [/b/mongo_crypt_v1.so]. This is not allowed.";
        assert_eq!(
            parse_another_loaded(second),
            Some((PathBuf::from("/a/mongo_crypt_v1.so"), Some(PathBuf::from("/b/mongo_crypt_v1.so"))))
        );
        // Through 1.13 the library is called CSFLE.
        let none = "An existing CSFLE library is loaded by the application at [/a/x].so], but the current call to \
                    mongocrypt_init() failed to find that same library.";
        assert_eq!(parse_another_loaded(none), Some((PathBuf::from("/a/x].so"), None)));
        assert_eq!(parse_another_loaded("A crypt_shared override path was specified [/a]"), None);
    }

    #[test]
    fn version_words() {
        let version = CryptSharedVersion { number: 0x0006_0002_0001_0000, string: "v".into() };
        assert_eq!((version.major(), version.minor(), version.revision()), (6, 2, 1));
    }
}
