//! The key vault collection as the driver serves it: [`KeyVault`] (blocking) and [`AsyncKeyVault`] (async), the
//! handful of CRUD operations [`ClientEncryption`](crate::ClientEncryption) issues on it.

use std::future::Future;

use libmongocrypt::bson::Document;
use libmongocrypt::state_machine::IoResult;

/// The update of [`KeyVault::find_one_and_update`]: an update document (`{"$addToSet": ...}`) or an aggregation
/// pipeline (`[{"$set": ...}]`), as the server's findAndModify takes either.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// An update document of update operators.
    Document(Document),
    /// An aggregation pipeline.
    Pipeline(Vec<Document>),
}

/// One `updateOne` of [`KeyVault::bulk_update`]: the first document matching `filter` gets the update document
/// `update`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateOne {
    /// Which document to update.
    pub filter: Document,
    /// The update document (update operators, no pipeline).
    pub update: Document,
}

/// The counts of a bulk write of `updateOne` operations: what the CRUD spec's `BulkWriteResult` says of updates
/// (its insert, delete and upsert counts are 0, as no such operation is issued).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkWriteResult {
    /// How many documents the updates matched.
    pub matched_count: u64,
    /// How many of those were changed.
    pub modified_count: u64,
}

/// The key vault collection (`keyVaultNamespace` on the `keyVaultClient`), as a driver implements it over its
/// client. Reads use read concern majority and writes write concern majority, as the spec requires; sessions are not
/// used.
///
/// A unique index on `keyAltNames` (partial, where it exists) is assumed, as the spec says: a write that breaks it
/// fails with the server's duplicate key error, which [`ClientEncryption`](crate::ClientEncryption) returns as is.
///
/// ```
/// use libmongocrypt::bson::Document;
/// use libmongocrypt::state_machine::IoResult;
/// use libmongocrypt::{Crypt, KmsProvider, KmsProviders};
/// use libmongocrypt_driver::{
///     BulkWriteResult, ClientEncryption, DataKeyOpts, InMemoryKeyVault, KeyVault, NoKms, Update, UpdateOne,
/// };
///
/// /// A driver's key vault collection. The driver's calls are in the comments; an InMemoryKeyVault stands in.
/// struct KeyVaultCollection(InMemoryKeyVault);
///
/// impl KeyVault for KeyVaultCollection {
///     fn find(&self, filter: &Document) -> IoResult<Vec<Document>> {
///         // collection.find(filter).read_concern(majority) collected
///         KeyVault::find(&self.0, filter)
///     }
///     fn insert_one(&self, document: &Document) -> IoResult<()> {
///         // collection.insert_one(document).write_concern(majority)
///         KeyVault::insert_one(&self.0, document)
///     }
///     fn delete_one(&self, filter: &Document) -> IoResult<u64> {
///         // collection.delete_one(filter).write_concern(majority), its deleted count
///         KeyVault::delete_one(&self.0, filter)
///     }
///     fn find_one_and_update(&self, filter: &Document, update: &Update) -> IoResult<Option<Document>> {
///         // collection.find_one_and_update(filter, update document or pipeline), returning the document before
///         KeyVault::find_one_and_update(&self.0, filter, update)
///     }
///     fn bulk_update(&self, updates: &[UpdateOne]) -> IoResult<BulkWriteResult> {
///         // one ordered bulk write of updateOne models, its matched and modified counts
///         KeyVault::bulk_update(&self.0, updates)
///     }
/// }
///
/// let crypt = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[3u8; 96]))?.build()?;
/// let client_encryption = ClientEncryption::new(crypt, KeyVaultCollection(InMemoryKeyVault::new()), NoKms);
/// let id = client_encryption.create_data_key(&KmsProvider::local(), &DataKeyOpts::default())?;
/// assert_eq!(client_encryption.delete_key(&id)?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait KeyVault {
    /// A find with `filter`: every matching key document.
    fn find(&self, filter: &Document) -> IoResult<Vec<Document>>;

    /// Inserts one key document.
    fn insert_one(&self, document: &Document) -> IoResult<()>;

    /// Deletes the first document matching `filter`; returns how many were deleted (0 or 1).
    fn delete_one(&self, filter: &Document) -> IoResult<u64>;

    /// findAndModify: applies `update` to the first document matching `filter` and returns that document as it was
    /// before the update (`None` when nothing matched). No upsert.
    fn find_one_and_update(&self, filter: &Document, update: &Update) -> IoResult<Option<Document>>;

    /// One ordered bulk write of `updates` (no upserts).
    fn bulk_update(&self, updates: &[UpdateOne]) -> IoResult<BulkWriteResult>;
}

impl<T: KeyVault + ?Sized> KeyVault for &T {
    fn find(&self, filter: &Document) -> IoResult<Vec<Document>> {
        (**self).find(filter)
    }

    fn insert_one(&self, document: &Document) -> IoResult<()> {
        (**self).insert_one(document)
    }

    fn delete_one(&self, filter: &Document) -> IoResult<u64> {
        (**self).delete_one(filter)
    }

    fn find_one_and_update(&self, filter: &Document, update: &Update) -> IoResult<Option<Document>> {
        (**self).find_one_and_update(filter, update)
    }

    fn bulk_update(&self, updates: &[UpdateOne]) -> IoResult<BulkWriteResult> {
        (**self).bulk_update(updates)
    }
}

/// The async form of [`KeyVault`], for [`AsyncClientEncryption`](crate::AsyncClientEncryption): the same
/// operations, each returning a `Send` future. Implement them with `async fn`.
pub trait AsyncKeyVault {
    /// As [`KeyVault::find`].
    fn find(&self, filter: &Document) -> impl Future<Output = IoResult<Vec<Document>>> + Send;

    /// As [`KeyVault::insert_one`].
    fn insert_one(&self, document: &Document) -> impl Future<Output = IoResult<()>> + Send;

    /// As [`KeyVault::delete_one`].
    fn delete_one(&self, filter: &Document) -> impl Future<Output = IoResult<u64>> + Send;

    /// As [`KeyVault::find_one_and_update`].
    fn find_one_and_update(
        &self,
        filter: &Document,
        update: &Update,
    ) -> impl Future<Output = IoResult<Option<Document>>> + Send;

    /// As [`KeyVault::bulk_update`].
    fn bulk_update(&self, updates: &[UpdateOne]) -> impl Future<Output = IoResult<BulkWriteResult>> + Send;
}
