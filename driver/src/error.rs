//! What [`ClientEncryption`](crate::ClientEncryption) and [`AsyncClientEncryption`](crate::AsyncClientEncryption)
//! fail with.

use libmongocrypt::bson::Document;
use libmongocrypt::state_machine::IoError;
use libmongocrypt::{Algorithm, RunError};

/// The result of a [`ClientEncryption`](crate::ClientEncryption) method.
pub type Result<T> = std::result::Result<T, ClientEncryptionError>;

/// Why a [`ClientEncryption`](crate::ClientEncryption) (or async) method failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientEncryptionError {
    /// libmongocrypt refused an option or an input before the operation started.
    #[error(transparent)]
    Mongocrypt(#[from] libmongocrypt::Error),
    /// The operation's state machine failed: libmongocrypt's error, or the key vault or KMS I/O it asked for.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A key vault operation of [`KeyVault`](crate::KeyVault) failed (its error is the source, as the driver
    /// returned it: a server's duplicate key error, a network error, ...).
    #[error("key vault {operation} failed: {source}")]
    KeyVault {
        /// The operation: `find`, `insert_one`, `delete_one`, `find_one_and_update` or `bulk_update`.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: IoError,
    },
    /// The [`EncryptOpts`](crate::EncryptOpts) break a rule of the spec; nothing was encrypted.
    #[error("invalid EncryptOpts: {0}")]
    InvalidEncryptOpts(#[from] EncryptOptsError),
    /// A master key document names a provider other than the KMS provider it is given with.
    #[error("the master key names provider {master_key_provider:?}, but the KMS provider is {provider:?}")]
    MasterKeyProvider {
        /// The KMS provider argument.
        provider: String,
        /// The master key's `provider` field.
        master_key_provider: String,
    },
    /// libmongocrypt's result does not have the shape its operation documents (a missing `v`, a key document
    /// without a UUID `_id`, ...): a libmongocrypt this crate does not know.
    #[error("{operation}: unexpected result from libmongocrypt: {what}")]
    UnexpectedResult {
        /// The operation.
        operation: &'static str,
        /// What was wrong.
        what: String,
    },
    /// [`ClientEncryption::create_encrypted_collection`](crate::ClientEncryption::create_encrypted_collection)
    /// failed to make the data key of `encryptedFields.fields[index]`. `encrypted_fields` is the partly filled
    /// document: the fields before `index` hold the data keys already created (and inserted in the key vault).
    #[error("creating the data key of encryptedFields.fields[{index}] (path {path:?}) failed: {source}")]
    EncryptedFields {
        /// The index in `encryptedFields.fields` of the field whose key failed.
        index: usize,
        /// That field's `path`, if it has a string one.
        path: Option<String>,
        /// The encryptedFields as far as they were filled (boxed: it keeps every error of this crate small).
        encrypted_fields: Box<Document>,
        /// Why the data key failed.
        #[source]
        source: Box<ClientEncryptionError>,
    },
}

/// A rule of the spec's `EncryptOpts` that some options break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptOptsError {
    /// `keyId` must be a UUID: BSON binary subtype 4.
    #[error("keyId must be a UUID (binary subtype 4), not binary subtype {subtype:#04x}")]
    KeyIdNotUuid {
        /// The subtype given.
        subtype: u8,
    },
    /// `contentionFactor` applies only to the Indexed, Range and String algorithms.
    #[error("contentionFactor applies only to the Indexed, Range and String algorithms, not {algorithm}")]
    ContentionFactorNotApplicable {
        /// The algorithm given.
        algorithm: Algorithm,
    },
    /// `queryType` applies only to the Indexed, Range and String algorithms.
    #[error("queryType applies only to the Indexed, Range and String algorithms, not {algorithm}")]
    QueryTypeNotApplicable {
        /// The algorithm given.
        algorithm: Algorithm,
    },
    /// `rangeOpts` applies only to the Range algorithm.
    #[error("rangeOpts applies only to the Range algorithm, not {algorithm}")]
    RangeOptsNotApplicable {
        /// The algorithm given.
        algorithm: Algorithm,
    },
    /// `textOpts` (the spec's `stringOpts`) applies only to the String algorithm.
    #[error("textOpts applies only to the String algorithm, not {algorithm}")]
    TextOptsNotApplicable {
        /// The algorithm given.
        algorithm: Algorithm,
    },
}

impl ClientEncryptionError {
    pub(crate) fn key_vault(operation: &'static str) -> impl FnOnce(IoError) -> ClientEncryptionError {
        move |source| ClientEncryptionError::KeyVault { operation, source }
    }

    pub(crate) fn unexpected(operation: &'static str, what: impl Into<String>) -> ClientEncryptionError {
        ClientEncryptionError::UnexpectedResult { operation, what: what.into() }
    }
}
