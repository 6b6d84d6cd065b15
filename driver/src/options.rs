//! The options and results of [`ClientEncryption`](crate::ClientEncryption)'s methods, as the spec names them.

use libmongocrypt::bson::{Binary, Document};
use libmongocrypt::{Algorithm, KmsProvider, QueryType, RangeOptions, TextOptions};

use crate::key_vault::BulkWriteResult;

/// The options of [`ClientEncryption::create_data_key`](crate::ClientEncryption::create_data_key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataKeyOpts {
    /// The KMS key that wraps the new data key, without its `provider` (the KMS provider argument gives it; a
    /// `provider` field, if present, must name the same one). Required for every provider but local:
    ///
    /// - aws: `region`, `key` (the KMS key's ARN), optional `endpoint` (host with optional port);
    /// - azure: `keyVaultEndpoint` (host with optional port), `keyName`, optional `keyVersion`;
    /// - gcp: `projectId`, `location`, `keyRing`, `keyName`, optional `keyVersion` and `endpoint`;
    /// - kmip: optional `keyId` (a KMIP Secret Data object of 96 bytes; created when absent), optional `endpoint`,
    ///   optional `delegated` (the KMIP server does the wrapping);
    /// - local: none; leave it `None`.
    pub master_key: Option<Document>,
    /// Alternate names of the new key, to encrypt with ([`EncryptKey::AltName`]) instead of its `_id`.
    pub key_alt_names: Vec<String>,
    /// 96 bytes of key material for the new key instead of random ones.
    pub key_material: Option<Vec<u8>>,
}

/// The data key [`EncryptOpts`] encrypt with: by `_id` or by alternate name, exactly one, as the spec requires.
#[derive(Debug, Clone, PartialEq)]
pub enum EncryptKey {
    /// The key's `_id`, a UUID (binary subtype 4).
    Id(Binary),
    /// One of the key's `keyAltNames`.
    AltName(String),
}

/// The options of [`ClientEncryption::encrypt`](crate::ClientEncryption::encrypt) and
/// [`encrypt_expression`](crate::ClientEncryption::encrypt_expression).
///
/// The result of the Indexed, Range and String algorithms is for the server to process: to insert or query with
/// it, use a client configured for automatic encryption (bypassQueryAnalysis may be true, bypassAutoEncryption must
/// be false). The prefix, suffix and substring query types are in preview: for experimental workloads only, their
/// security is not guaranteed until they are generally available, and that version may not be compatible.
#[derive(Debug, Clone, PartialEq)]
pub struct EncryptOpts {
    /// The data key.
    pub key: EncryptKey,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Tunes Queryable Encryption; only with the Indexed, Range and String algorithms.
    pub contention_factor: Option<i64>,
    /// The query the payload is for; only with the Indexed, Range and String algorithms.
    pub query_type: Option<QueryType>,
    /// The range index's options, as in the collection's encryptedFields; only with the Range algorithm.
    pub range_opts: Option<RangeOptions>,
    /// The string index's options (the spec's `stringOpts`); only with the String algorithm.
    pub text_opts: Option<TextOptions>,
}

impl EncryptOpts {
    /// Encryption with `key` and `algorithm`, and no Queryable Encryption option.
    pub fn new(key: EncryptKey, algorithm: Algorithm) -> EncryptOpts {
        EncryptOpts { key, algorithm, contention_factor: None, query_type: None, range_opts: None, text_opts: None }
    }
}

/// The options of [`ClientEncryption::rewrap_many_data_key`](crate::ClientEncryption::rewrap_many_data_key): the
/// KMS provider and master key to wrap the keys with. Without them, each key is rewrapped with its current one.
/// The provider is not optional here, so a master key without one (the spec's prose test 16, case 2) cannot be
/// written.
#[derive(Debug, Clone, PartialEq)]
pub struct RewrapManyDataKeyOpts {
    /// The KMS provider of the new master key.
    pub provider: KmsProvider,
    /// The new master key, as [`DataKeyOpts::master_key`]; `None` for a local provider.
    pub master_key: Option<Document>,
}

/// What [`ClientEncryption::rewrap_many_data_key`](crate::ClientEncryption::rewrap_many_data_key) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewrapManyDataKeyResult {
    /// The result of the one bulk write that updated the rewrapped keys; `None` when the filter matched no key,
    /// and nothing was written.
    pub bulk_write_result: Option<BulkWriteResult>,
}
