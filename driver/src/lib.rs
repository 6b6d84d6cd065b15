//! The driver-facing API of client-side encryption over the [`libmongocrypt`] crate: the spec's
//! `ClientEncryption`, over a key vault and KMS I/O the driver brings.
//!
//! A driver implements [`KeyVault`] (or [`AsyncKeyVault`]) over its MongoDB client: five operations on the key vault
//! collection (find, insertOne, deleteOne, findOneAndUpdate, a bulk write of updateOne). Its KMS I/O is the
//! runner's [`StateMachineIo`](libmongocrypt::StateMachineIo) (or
//! [`AsyncStateMachineIo`](libmongocrypt::AsyncStateMachineIo)), of which [`ClientEncryption`] uses the KMS
//! methods; [`NoKms`] stands in when only local master keys are used. [`ClientEncryption`] (blocking) and
//! [`AsyncClientEncryption`] then give the whole of the spec's ClientEncryption:
//!
//! | spec | method |
//! |---|---|
//! | createDataKey | [`create_data_key`](ClientEncryption::create_data_key) |
//! | encrypt, encryptExpression, decrypt | [`encrypt`](ClientEncryption::encrypt), [`encrypt_expression`](ClientEncryption::encrypt_expression), [`decrypt`](ClientEncryption::decrypt) |
//! | rewrapManyDataKey | [`rewrap_many_data_key`](ClientEncryption::rewrap_many_data_key) |
//! | createEncryptedCollection (the encryptedFields) | [`create_encrypted_collection`](ClientEncryption::create_encrypted_collection) |
//! | getKey, getKeys, deleteKey | [`get_key`](ClientEncryption::get_key), [`get_keys`](ClientEncryption::get_keys), [`delete_key`](ClientEncryption::delete_key) |
//! | addKeyAltName, removeKeyAltName, getKeyByAltName | [`add_key_alt_name`](ClientEncryption::add_key_alt_name), [`remove_key_alt_name`](ClientEncryption::remove_key_alt_name), [`get_key_by_alt_name`](ClientEncryption::get_key_by_alt_name) |
//!
//! [`InMemoryKeyVault`] is a key vault for tests and examples. The driver's client does the key vault's I/O, and
//! its KMS I/O (or `libmongocrypt-kms`'s) the KMS requests.
//!
//! For automatic encryption, the spec's rules around libmongocrypt:
//!
//! - [`mongocryptd`]: whether to use mongocryptd, spawning it (and respawning it once after a server-selection
//!   error), its client's settings, and a minimal client (OP_MSG, the handshake, the markings command; blocking, and
//!   async with feature `tokio`) for callers with no MongoDB client of their own. It is this crate's only I/O;
//! - [`CryptSharedOpts`]: where libmongocrypt looks for crypt_shared (`$SYSTEM`, `cryptSharedLibPath`),
//!   `cryptSharedLibRequired`, the loaded version, and one library per process;
//! - an operation's `timeoutMS` is the runner's deadline: [`ClientEncryption::with_runner`] with
//!   [`Runner::timeout`](libmongocrypt::Runner::timeout).
//!
//! ```
//! use libmongocrypt::bson::{doc, Bson};
//! use libmongocrypt::{Algorithm, Crypt, KmsProvider, KmsProviders};
//! use libmongocrypt_driver::{
//!     ClientEncryption, DataKeyOpts, EncryptKey, EncryptOpts, InMemoryKeyVault, NoKms, RewrapManyDataKeyOpts,
//! };
//!
//! let providers = KmsProviders::new().local("local", &[1u8; 96]);
//! let crypt = Crypt::builder().kms_providers(&providers)?.build()?;
//! let client_encryption = ClientEncryption::new(crypt, InMemoryKeyVault::new(), NoKms);
//!
//! let opts = DataKeyOpts { key_alt_names: vec!["ssn".into()], ..DataKeyOpts::default() };
//! let key_id = client_encryption.create_data_key(&KmsProvider::local(), &opts)?;
//! let ciphertext = client_encryption
//!     .encrypt(&Bson::from("457-55-5462"), &EncryptOpts::new(EncryptKey::AltName("ssn".into()), Algorithm::Random))?;
//!
//! // Rewrap every key (with the same local master key here), in one bulk write.
//! let rewrap = RewrapManyDataKeyOpts { provider: KmsProvider::local(), master_key: None };
//! let result = client_encryption.rewrap_many_data_key(&doc! {}, Some(&rewrap))?;
//! assert_eq!(result.bulk_write_result.map(|r| r.modified_count), Some(1));
//! assert_eq!(client_encryption.decrypt(&ciphertext)?, Bson::from("457-55-5462"));
//!
//! // Key management.
//! let before = client_encryption.remove_key_alt_name(&key_id, "ssn")?.expect("the key");
//! assert_eq!(before.get_array("keyAltNames")?, &vec![Bson::from("ssn")]);
//! assert!(!client_encryption.get_key(&key_id)?.expect("the key").contains_key("keyAltNames"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client_encryption;
mod crypt_shared;
mod error;
mod in_memory;
mod key_vault;
pub mod mongocryptd;
mod operations;
mod options;

pub use client_encryption::{AsyncClientEncryption, ClientEncryption, NoKms};
pub use crypt_shared::{
    CryptSharedError, CryptSharedOpts, CryptSharedSearch, CryptSharedSource, CryptSharedStatus, CryptSharedVersion,
    CRYPT_SHARED_FILE_NAME, SYSTEM_SEARCH_PATH,
};
pub use error::{ClientEncryptionError, EncryptOptsError, Result};
pub use in_memory::{InMemoryKeyVault, InMemoryKeyVaultError};
pub use key_vault::{AsyncKeyVault, BulkWriteResult, KeyVault, Update, UpdateOne};
pub use options::{DataKeyOpts, EncryptKey, EncryptOpts, RewrapManyDataKeyOpts, RewrapManyDataKeyResult};
