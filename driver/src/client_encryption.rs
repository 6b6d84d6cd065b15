//! [`ClientEncryption`] (blocking) and [`AsyncClientEncryption`]: the spec's ClientEncryption over a
//! [`KeyVault`] and the driver's KMS I/O. Each method is a ctx from [`crate::operations`], run by
//! `libmongocrypt`'s runner with the key vault serving NEED_MONGO_KEYS, then key vault writes; only the I/O differs
//! between the two types.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use libmongocrypt::bson::{Binary, Bson, Document, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{AsyncStateMachineIo, IoResult, StateMachineIo};
use libmongocrypt::{Crypt, Ctx, KmsCtx, KmsProvider, Runner};

use crate::error::{ClientEncryptionError, Result};
use crate::key_vault::{AsyncKeyVault, KeyVault, Update};
use crate::operations::{self as ops, Plaintext};
use crate::options::{DataKeyOpts, EncryptOpts, RewrapManyDataKeyOpts, RewrapManyDataKeyResult};

/// Why [`KeyVaultIo`] refuses the states a ClientEncryption operation never enters.
const NOT_CLIENT_ENCRYPTION: &str = "ClientEncryption's operations need no listCollections and no mongocryptd";

/// The KMS I/O of a ClientEncryption that only uses local master keys: it refuses every KMS request, so that a
/// key under a remote KMS fails with a clear error instead of a silent hang.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKms;

/// What [`NoKms`] fails with.
const NO_KMS: &str = "this ClientEncryption has no KMS I/O (NoKms): only local master keys can be used";

impl StateMachineIo for NoKms {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(NO_KMS.into())
    }

    fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err(NO_KMS.into())
    }

    fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(NO_KMS.into())
    }

    fn kms_request(&self, _: &mut KmsCtx<'_>) -> IoResult<()> {
        Err(NO_KMS.into())
    }
}

impl AsyncStateMachineIo for NoKms {
    async fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(NO_KMS.into())
    }

    async fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err(NO_KMS.into())
    }

    async fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(NO_KMS.into())
    }

    async fn kms_request(&self, _: &mut KmsCtx<'_>) -> IoResult<()> {
        Err(NO_KMS.into())
    }
}

/// The runner's I/O for a ClientEncryption operation: key documents from the key vault, KMS from the driver's I/O.
struct KeyVaultIo<'a, V, K> {
    key_vault: &'a V,
    kms: &'a K,
}

fn raw_documents(documents: Vec<Document>) -> IoResult<Vec<RawDocumentBuf>> {
    documents.iter().map(|document| Ok(RawDocumentBuf::try_from(document)?)).collect()
}

impl<V: KeyVault, K: StateMachineIo> StateMachineIo for KeyVaultIo<'_, V, K> {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(NOT_CLIENT_ENCRYPTION.into())
    }

    fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err(NOT_CLIENT_ENCRYPTION.into())
    }

    fn find_keys(&self, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        raw_documents(self.key_vault.find(&Document::try_from(filter)?)?)
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.kms.kms_request(kms)
    }

    fn kms_credentials(&self) -> IoResult<RawDocumentBuf> {
        self.kms.kms_credentials()
    }
}

impl<V, K> AsyncStateMachineIo for KeyVaultIo<'_, V, K>
where
    V: AsyncKeyVault + Sync,
    K: AsyncStateMachineIo + Sync,
{
    async fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err(NOT_CLIENT_ENCRYPTION.into())
    }

    async fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err(NOT_CLIENT_ENCRYPTION.into())
    }

    async fn find_keys(&self, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        let filter = Document::try_from(filter)?;
        raw_documents(self.key_vault.find(&filter).await?)
    }

    async fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.kms.kms_request(kms).await
    }

    async fn kms_credentials(&self) -> IoResult<RawDocumentBuf> {
        self.kms.kms_credentials().await
    }
}

/// The spec's ClientEncryption, blocking: data keys, explicit encryption and decryption, rewrap, key management and
/// the encryptedFields of a new Queryable Encryption collection, over the driver's [`KeyVault`] and KMS I/O.
///
/// `crypt` carries the KMS providers (and their credentials); `kms` serves the KMS requests and on-demand
/// credentials of its [`StateMachineIo`] (its other methods are not called), and is [`NoKms`] when only local master
/// keys are used. Key management assumes nobody else writes the key vault meanwhile, as the spec does.
///
/// ```
/// use libmongocrypt::bson::Bson;
/// use libmongocrypt::{Algorithm, Crypt, KmsProvider, KmsProviders};
/// use libmongocrypt_driver::{ClientEncryption, DataKeyOpts, EncryptKey, EncryptOpts, InMemoryKeyVault, NoKms};
///
/// let crypt = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[7u8; 96]))?.build()?;
/// let client_encryption = ClientEncryption::new(crypt, InMemoryKeyVault::new(), NoKms);
///
/// let key_id = client_encryption.create_data_key(&KmsProvider::local(), &DataKeyOpts::default())?;
/// let opts = EncryptOpts::new(EncryptKey::Id(key_id), Algorithm::Deterministic);
/// let ciphertext = client_encryption.encrypt(&Bson::from("457-55-5462"), &opts)?;
/// assert_eq!(client_encryption.decrypt(&ciphertext)?, Bson::from("457-55-5462"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ClientEncryption<V, K = NoKms> {
    crypt: Crypt,
    key_vault: V,
    kms: K,
    runner: Runner,
}

impl<V: KeyVault, K: StateMachineIo> ClientEncryption<V, K> {
    /// A ClientEncryption over `key_vault`, with the KMS providers of `crypt` and the KMS I/O of `kms`.
    pub fn new(crypt: Crypt, key_vault: V, kms: K) -> ClientEncryption<V, K> {
        ClientEncryption { crypt, key_vault, kms, runner: Runner::new() }
    }

    /// Runs operations with `runner` (KMS concurrency and attempts, a state callback) instead of the default.
    pub fn with_runner(mut self, runner: Runner) -> ClientEncryption<V, K> {
        self.runner = runner;
        self
    }

    /// The key vault.
    pub fn key_vault(&self) -> &V {
        &self.key_vault
    }

    fn run(&self, mut ctx: Ctx) -> Result<Option<RawDocumentBuf>> {
        let io = KeyVaultIo { key_vault: &self.key_vault, kms: &self.kms };
        Ok(self.runner.run(&mut ctx, &io)?)
    }

    /// Creates a data key wrapped by `provider`'s master key ([`DataKeyOpts::master_key`]), inserts its document
    /// into the key vault, and returns its `_id` (a UUID, binary subtype 4).
    pub fn create_data_key(&self, provider: &KmsProvider, opts: &DataKeyOpts) -> Result<Binary> {
        let (key, id) = ops::data_key_document(self.run(ops::data_key_ctx(&self.crypt, provider, opts)?)?)?;
        self.key_vault.insert_one(&key).map_err(ClientEncryptionError::key_vault("insert_one"))?;
        Ok(id)
    }

    /// Encrypts `value` (BSON binary subtype 6). The options are checked as the spec says
    /// ([`EncryptOptsError`](crate::EncryptOptsError)) before anything is encrypted.
    pub fn encrypt(&self, value: &Bson, opts: &EncryptOpts) -> Result<Binary> {
        ops::ciphertext(self.run(ops::encrypt_ctx(&self.crypt, Plaintext::Value(value), opts)?)?)
    }

    /// Encrypts a range query expression: `{"$and": [{field: {"$gt": low}}, {field: {"$lt": high}}]}` (a match
    /// expression) or `{"$and": [{"$gt": ["$field", low]}, {"$lt": ["$field", high]}]}` (an aggregate one), `$gte`
    /// and `$lte` allowed; with the Range algorithm and the range query type.
    pub fn encrypt_expression(&self, expression: &Document, opts: &EncryptOpts) -> Result<Document> {
        ops::encrypted_expression(self.run(ops::encrypt_ctx(&self.crypt, Plaintext::Expression(expression), opts)?)?)
    }

    /// Decrypts a ciphertext (BSON binary subtype 6) into its value.
    pub fn decrypt(&self, value: &Binary) -> Result<Bson> {
        ops::result_value("decrypt", self.run(ops::decrypt_ctx(&self.crypt, value)?)?)
    }

    /// Rewraps the keys matching `filter` with the new master key of `opts` (or each with its current one), and
    /// writes their new `masterKey` and `keyMaterial` (and `updateDate`) in one bulk write of updateOne
    /// operations. No bulk write is made when no key matches. (libmongocrypt 1.5.0 and 1.5.1, whose rewrap
    /// MONGOCRYPT-464 breaks, are older than any this crate links.)
    pub fn rewrap_many_data_key(
        &self,
        filter: &Document,
        opts: Option<&RewrapManyDataKeyOpts>,
    ) -> Result<RewrapManyDataKeyResult> {
        let updates = ops::rewrap_updates(self.run(ops::rewrap_ctx(&self.crypt, filter, opts)?)?)?;
        if updates.is_empty() {
            return Ok(RewrapManyDataKeyResult { bulk_write_result: None });
        }
        let result = self.key_vault.bulk_update(&updates).map_err(ClientEncryptionError::key_vault("bulk_update"))?;
        Ok(RewrapManyDataKeyResult { bulk_write_result: Some(result) })
    }

    /// The spec's createEncryptedCollection without the driver's own `create`: gives every field of
    /// `encryptedFields.fields` whose `keyId` is null a new data key under `provider`'s `master_key`, and returns
    /// the encryptedFields to create the collection with. Everything else is passed on unchanged, for the server
    /// to validate.
    ///
    /// If a data key fails, the error ([`ClientEncryptionError::EncryptedFields`]) names the field and carries the
    /// encryptedFields filled so far, whose keys exist in the key vault. This does not change the auto encryption
    /// settings of clients already configured: configure auto encryption after creating the collection.
    pub fn create_encrypted_collection(
        &self,
        encrypted_fields: &Document,
        provider: &KmsProvider,
        master_key: Option<&Document>,
    ) -> Result<Document> {
        let opts = DataKeyOpts { master_key: master_key.cloned(), ..DataKeyOpts::default() };
        let mut filled = encrypted_fields.clone();
        for index in ops::fields_needing_keys(encrypted_fields) {
            match self.create_data_key(provider, &opts) {
                Ok(key_id) => ops::set_field_key_id(&mut filled, index, key_id),
                Err(error) => return Err(ops::encrypted_fields_error(filled, index, error)),
            }
        }
        Ok(filled)
    }

    /// The key document with `_id` `id`, if any.
    pub fn get_key(&self, id: &Binary) -> Result<Option<Document>> {
        Ok(self.find(&ops::id_filter(id))?.into_iter().next())
    }

    /// Every key document of the key vault.
    pub fn get_keys(&self) -> Result<Vec<Document>> {
        self.find(&Document::new())
    }

    /// Deletes the key document with `_id` `id`; returns the number deleted (0 or 1).
    pub fn delete_key(&self, id: &Binary) -> Result<u64> {
        self.key_vault.delete_one(&ops::id_filter(id)).map_err(ClientEncryptionError::key_vault("delete_one"))
    }

    /// Adds `key_alt_name` to the `keyAltNames` of the key with `_id` `id` (adding one it has is no error); returns
    /// the key document as it was before, or `None` if there is no such key.
    pub fn add_key_alt_name(&self, id: &Binary, key_alt_name: &str) -> Result<Option<Document>> {
        self.find_one_and_update(&ops::id_filter(id), &ops::add_alt_name_update(key_alt_name))
    }

    /// Removes `key_alt_name` from the `keyAltNames` of the key with `_id` `id`, removing the field with its last
    /// name; returns the key document as it was before, or `None` if there is no such key.
    pub fn remove_key_alt_name(&self, id: &Binary, key_alt_name: &str) -> Result<Option<Document>> {
        self.find_one_and_update(&ops::id_filter(id), &ops::remove_alt_name_update(key_alt_name))
    }

    /// The key document with `key_alt_name` among its `keyAltNames`, if any.
    pub fn get_key_by_alt_name(&self, key_alt_name: &str) -> Result<Option<Document>> {
        Ok(self.find(&ops::alt_name_filter(key_alt_name))?.into_iter().next())
    }

    fn find(&self, filter: &Document) -> Result<Vec<Document>> {
        self.key_vault.find(filter).map_err(ClientEncryptionError::key_vault("find"))
    }

    fn find_one_and_update(&self, filter: &Document, update: &Update) -> Result<Option<Document>> {
        self.key_vault
            .find_one_and_update(filter, update)
            .map_err(ClientEncryptionError::key_vault("find_one_and_update"))
    }
}

/// The timer of [`AsyncClientEncryption`]'s KMS back-offs.
type Sleep = Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// [`ClientEncryption`] for async drivers: the same methods, over an [`AsyncKeyVault`] and an
/// [`AsyncStateMachineIo`] for KMS, on any executor (the KMS back-offs wait on the timer it is given). The futures
/// are `Send` when the key vault and KMS I/O are `Sync`.
///
/// ```
/// use libmongocrypt::bson::Bson;
/// use libmongocrypt::{Algorithm, Crypt, KmsProvider, KmsProviders};
/// use libmongocrypt_driver::{AsyncClientEncryption, DataKeyOpts, EncryptKey, EncryptOpts, InMemoryKeyVault, NoKms};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let crypt = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[7u8; 96]))?.build()?;
/// let client_encryption = AsyncClientEncryption::new(crypt, InMemoryKeyVault::new(), NoKms, tokio::time::sleep);
///
/// let opts = DataKeyOpts { key_alt_names: vec!["ssn".into()], ..DataKeyOpts::default() };
/// client_encryption.create_data_key(&KmsProvider::local(), &opts).await?;
/// let opts = EncryptOpts::new(EncryptKey::AltName("ssn".into()), Algorithm::Random);
/// let ciphertext = client_encryption.encrypt(&Bson::Int32(42), &opts).await?;
/// assert_eq!(client_encryption.decrypt(&ciphertext).await?, Bson::Int32(42));
/// # Ok(())
/// # }
/// ```
pub struct AsyncClientEncryption<V, K = NoKms> {
    crypt: Crypt,
    key_vault: V,
    kms: K,
    runner: Runner,
    sleep: Sleep,
}

impl<V, K> AsyncClientEncryption<V, K>
where
    V: AsyncKeyVault + Sync,
    K: AsyncStateMachineIo + Sync,
{
    /// An AsyncClientEncryption over `key_vault`, with the KMS providers of `crypt`, the KMS I/O of `kms`, and
    /// `sleep` (the runtime's timer, such as `tokio::time::sleep`) for the KMS back-offs.
    pub fn new<S, F>(crypt: Crypt, key_vault: V, kms: K, sleep: S) -> AsyncClientEncryption<V, K>
    where
        S: Fn(Duration) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let sleep: Sleep = Arc::new(move |delay| Box::pin(sleep(delay)));
        AsyncClientEncryption { crypt, key_vault, kms, runner: Runner::new(), sleep }
    }

    /// [`new`](Self::new) with tokio's timer (feature `tokio`).
    #[cfg(feature = "tokio")]
    pub fn with_tokio(crypt: Crypt, key_vault: V, kms: K) -> AsyncClientEncryption<V, K> {
        AsyncClientEncryption::new(crypt, key_vault, kms, tokio::time::sleep)
    }

    /// Runs operations with `runner` instead of the default.
    pub fn with_runner(mut self, runner: Runner) -> AsyncClientEncryption<V, K> {
        self.runner = runner;
        self
    }

    /// The key vault.
    pub fn key_vault(&self) -> &V {
        &self.key_vault
    }

    async fn run(&self, mut ctx: Ctx) -> Result<Option<RawDocumentBuf>> {
        let io = KeyVaultIo { key_vault: &self.key_vault, kms: &self.kms };
        let sleep = &self.sleep;
        Ok(self.runner.run_async(&mut ctx, &io, |delay| sleep(delay)).await?)
    }

    /// As [`ClientEncryption::create_data_key`].
    pub async fn create_data_key(&self, provider: &KmsProvider, opts: &DataKeyOpts) -> Result<Binary> {
        let (key, id) = ops::data_key_document(self.run(ops::data_key_ctx(&self.crypt, provider, opts)?).await?)?;
        self.key_vault.insert_one(&key).await.map_err(ClientEncryptionError::key_vault("insert_one"))?;
        Ok(id)
    }

    /// As [`ClientEncryption::encrypt`].
    pub async fn encrypt(&self, value: &Bson, opts: &EncryptOpts) -> Result<Binary> {
        ops::ciphertext(self.run(ops::encrypt_ctx(&self.crypt, Plaintext::Value(value), opts)?).await?)
    }

    /// As [`ClientEncryption::encrypt_expression`].
    pub async fn encrypt_expression(&self, expression: &Document, opts: &EncryptOpts) -> Result<Document> {
        let ctx = ops::encrypt_ctx(&self.crypt, Plaintext::Expression(expression), opts)?;
        ops::encrypted_expression(self.run(ctx).await?)
    }

    /// As [`ClientEncryption::decrypt`].
    pub async fn decrypt(&self, value: &Binary) -> Result<Bson> {
        ops::result_value("decrypt", self.run(ops::decrypt_ctx(&self.crypt, value)?).await?)
    }

    /// As [`ClientEncryption::rewrap_many_data_key`].
    pub async fn rewrap_many_data_key(
        &self,
        filter: &Document,
        opts: Option<&RewrapManyDataKeyOpts>,
    ) -> Result<RewrapManyDataKeyResult> {
        let updates = ops::rewrap_updates(self.run(ops::rewrap_ctx(&self.crypt, filter, opts)?).await?)?;
        if updates.is_empty() {
            return Ok(RewrapManyDataKeyResult { bulk_write_result: None });
        }
        let result =
            self.key_vault.bulk_update(&updates).await.map_err(ClientEncryptionError::key_vault("bulk_update"))?;
        Ok(RewrapManyDataKeyResult { bulk_write_result: Some(result) })
    }

    /// As [`ClientEncryption::create_encrypted_collection`].
    pub async fn create_encrypted_collection(
        &self,
        encrypted_fields: &Document,
        provider: &KmsProvider,
        master_key: Option<&Document>,
    ) -> Result<Document> {
        let opts = DataKeyOpts { master_key: master_key.cloned(), ..DataKeyOpts::default() };
        let mut filled = encrypted_fields.clone();
        for index in ops::fields_needing_keys(encrypted_fields) {
            match self.create_data_key(provider, &opts).await {
                Ok(key_id) => ops::set_field_key_id(&mut filled, index, key_id),
                Err(error) => return Err(ops::encrypted_fields_error(filled, index, error)),
            }
        }
        Ok(filled)
    }

    /// As [`ClientEncryption::get_key`].
    pub async fn get_key(&self, id: &Binary) -> Result<Option<Document>> {
        Ok(self.find(&ops::id_filter(id)).await?.into_iter().next())
    }

    /// As [`ClientEncryption::get_keys`].
    pub async fn get_keys(&self) -> Result<Vec<Document>> {
        self.find(&Document::new()).await
    }

    /// As [`ClientEncryption::delete_key`].
    pub async fn delete_key(&self, id: &Binary) -> Result<u64> {
        self.key_vault.delete_one(&ops::id_filter(id)).await.map_err(ClientEncryptionError::key_vault("delete_one"))
    }

    /// As [`ClientEncryption::add_key_alt_name`].
    pub async fn add_key_alt_name(&self, id: &Binary, key_alt_name: &str) -> Result<Option<Document>> {
        self.find_one_and_update(&ops::id_filter(id), &ops::add_alt_name_update(key_alt_name)).await
    }

    /// As [`ClientEncryption::remove_key_alt_name`].
    pub async fn remove_key_alt_name(&self, id: &Binary, key_alt_name: &str) -> Result<Option<Document>> {
        self.find_one_and_update(&ops::id_filter(id), &ops::remove_alt_name_update(key_alt_name)).await
    }

    /// As [`ClientEncryption::get_key_by_alt_name`].
    pub async fn get_key_by_alt_name(&self, key_alt_name: &str) -> Result<Option<Document>> {
        Ok(self.find(&ops::alt_name_filter(key_alt_name)).await?.into_iter().next())
    }

    async fn find(&self, filter: &Document) -> Result<Vec<Document>> {
        self.key_vault.find(filter).await.map_err(ClientEncryptionError::key_vault("find"))
    }

    async fn find_one_and_update(&self, filter: &Document, update: &Update) -> Result<Option<Document>> {
        self.key_vault
            .find_one_and_update(filter, update)
            .await
            .map_err(ClientEncryptionError::key_vault("find_one_and_update"))
    }
}

impl<V: std::fmt::Debug, K: std::fmt::Debug> std::fmt::Debug for AsyncClientEncryption<V, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncClientEncryption")
            .field("crypt", &self.crypt)
            .field("key_vault", &self.key_vault)
            .field("kms", &self.kms)
            .field("runner", &self.runner)
            .finish_non_exhaustive()
    }
}
