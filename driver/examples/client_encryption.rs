//! ClientEncryption on a key vault in memory and local master keys, so that it runs without a server or a KMS:
//! a data key, explicit encryption and decryption, a rewrap to another master key, key alternate names, and the
//! encryptedFields of a Queryable Encryption collection filled in with new data keys. Last, the mock KMS: an AWS
//! data key (the key document of the core crate's `tests/data/example`) is unwrapped through KMS I/O that replies
//! with that folder's recorded AWS KMS reply, used, and rewrapped under the local master key.
//!
//! ```text
//! cargo run -p libmongocrypt-driver --example client_encryption
//! ```
//!
//! A driver replaces [`InMemoryKeyVault`] with its [`KeyVault`](libmongocrypt_driver::KeyVault) over the key vault
//! collection, and [`NoKms`] with its KMS I/O (such as `libmongocrypt-kms`'s transport) to use remote KMS providers.

use std::error::Error;
use std::path::{Path, PathBuf};

use libmongocrypt::bson::{doc, Bson, Document, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{feed_kms_reply, IoResult, StateMachineIo};
use libmongocrypt::{Algorithm, Crypt, KmsCtx, KmsProvider, KmsProviders, Version};
use libmongocrypt_driver::{
    ClientEncryption, DataKeyOpts, EncryptKey, EncryptOpts, InMemoryKeyVault, NoKms, RewrapManyDataKeyOpts,
};

/// The core crate's example, for its extended JSON reader and HTTP reply loader.
#[allow(dead_code, reason = "only the readers are used")]
#[path = "../../examples/state_machine.rs"]
mod state_machine;

/// The core crate's `tests/data/example`: an AWS key document and the AWS KMS reply that unwraps it.
fn example_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/example")
}

/// KMS I/O that answers every request with the recorded reply, as a KMS transport would after its HTTPS exchange
/// with the request's endpoint. Only its KMS methods are used by ClientEncryption.
struct MockKms;

impl StateMachineIo for MockKms {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("KMS only".into())
    }

    fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err("KMS only".into())
    }

    fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("KMS only".into())
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        println!("mock KMS: {} request to {}", kms.kms_provider(), kms.endpoint()?);
        let reply = state_machine::read_http(&example_data().join("kms-decrypt-reply.txt"))?;
        Ok(feed_kms_reply(kms, &reply)?)
    }
}

/// The AWS key of `tests/data/example`, used through the mock KMS, then rewrapped under the local master key.
fn aws_key_through_the_mock_kms() -> Result<(), Box<dyn Error>> {
    let key = state_machine::read_json(&example_data().join("key-document.json")).map_err(|e| e.to_string())?;
    let vault = InMemoryKeyVault::with_documents(vec![Document::try_from(key.as_ref())?]);
    let providers = KmsProviders::new().aws("aws", "example", "example", None).local("local", &[0x11; 96]);
    let crypt = Crypt::builder().kms_providers(&providers)?.build()?;
    let client_encryption = ClientEncryption::new(crypt, &vault, MockKms);

    let opts = EncryptOpts::new(EncryptKey::AltName("keyDocumentName".into()), Algorithm::Deterministic);
    let ciphertext = client_encryption.encrypt(&Bson::from("secret"), &opts)?;
    println!("encrypted with the AWS key, decrypted: {}", client_encryption.decrypt(&ciphertext)?);

    let rewrap = RewrapManyDataKeyOpts { provider: KmsProvider::local(), master_key: None };
    let result = client_encryption.rewrap_many_data_key(&doc! { "keyAltNames": "keyDocumentName" }, Some(&rewrap))?;
    println!("rewrapped the AWS key to local: {:?}", result.bulk_write_result);
    let local_only = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0x11; 96]))?.build()?;
    let local_only = ClientEncryption::new(local_only, &vault, NoKms);
    println!("decrypted without AWS: {}", local_only.decrypt(&ciphertext)?);
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let linked = Version::linked();
    println!("libmongocrypt {}", libmongocrypt::version());
    // Named KMS providers ("local:rotated") came with libmongocrypt 1.9; before, the rewrap stays with `local`.
    let named_providers = *linked >= Version::new(1, 9, 0);

    let mut providers = KmsProviders::new().local("local", &[0x11; 96]);
    if named_providers {
        providers = providers.local("local:rotated", &[0x22; 96]);
    }
    let crypt = Crypt::builder().kms_providers(&providers)?.build()?;
    let client_encryption = ClientEncryption::new(crypt, InMemoryKeyVault::new(), NoKms);

    // A data key under the local master key, with an alternate name.
    let opts = DataKeyOpts { key_alt_names: vec!["demo".into()], ..DataKeyOpts::default() };
    let key_id = client_encryption.create_data_key(&KmsProvider::local(), &opts)?;
    println!("data key {}", Bson::Binary(key_id.clone()));

    // Explicit encryption: deterministic by name, random by id.
    let ssn = Bson::from("457-55-5462");
    let deterministic = EncryptOpts::new(EncryptKey::AltName("demo".into()), Algorithm::Deterministic);
    let ciphertext = client_encryption.encrypt(&ssn, &deterministic)?;
    println!("deterministic ciphertext: {} bytes", ciphertext.bytes.len());
    let random = EncryptOpts::new(EncryptKey::Id(key_id.clone()), Algorithm::Random);
    let random_ciphertext = client_encryption.encrypt(&ssn, &random)?;
    println!(
        "decrypted: {}, {}",
        client_encryption.decrypt(&ciphertext)?,
        client_encryption.decrypt(&random_ciphertext)?
    );

    // Rewrap every key under another master key, in one bulk write.
    let (provider, why) = if named_providers {
        (KmsProvider::local().named("rotated")?, "to local:rotated")
    } else {
        (KmsProvider::local(), "to local again (named KMS providers need libmongocrypt 1.9)")
    };
    let rewrap = RewrapManyDataKeyOpts { provider, master_key: None };
    let result = client_encryption.rewrap_many_data_key(&doc! {}, Some(&rewrap))?;
    println!("rewrapped {why}: {:?}", result.bulk_write_result);
    let key = client_encryption.get_key(&key_id)?.ok_or("the data key is gone")?;
    println!("masterKey now {}", key.get_document("masterKey")?);
    println!("decrypted after the rewrap: {}", client_encryption.decrypt(&ciphertext)?);

    // Key alternate names.
    client_encryption.add_key_alt_name(&key_id, "demo-2")?;
    let by_name = client_encryption.get_key_by_alt_name("demo-2")?.ok_or("no key named demo-2")?;
    println!("keyAltNames: {}", by_name.get_array("keyAltNames").map(|names| Bson::Array(names.clone()))?);
    client_encryption.remove_key_alt_name(&key_id, "demo-2")?;

    // A Queryable Encryption collection's encryptedFields: every null keyId gets a new data key; the driver then
    // creates the collection with the result.
    let encrypted_fields = doc! {
        "fields": [
            { "path": "ssn", "bsonType": "string", "keyId": Bson::Null, "queries": { "queryType": "equality" } },
            { "path": "salary", "bsonType": "int", "keyId": Bson::Null },
        ],
    };
    let filled = client_encryption.create_encrypted_collection(&encrypted_fields, &KmsProvider::local(), None)?;
    println!("encryptedFields: {filled}");
    println!("{} data keys in the key vault", client_encryption.get_keys()?.len());

    // An Indexed payload for the ssn field (QE protocol v2: libmongocrypt 1.8, what servers since 7.0 accept).
    if *linked >= Version::new(1, 8, 0) {
        let ssn_field = &filled.get_array("fields")?[0];
        let Some(Bson::Binary(ssn_key)) = ssn_field.as_document().and_then(|field| field.get("keyId")).cloned() else {
            return Err("no keyId for ssn".into());
        };
        let indexed =
            EncryptOpts { contention_factor: Some(0), ..EncryptOpts::new(EncryptKey::Id(ssn_key), Algorithm::Indexed) };
        let payload = client_encryption.encrypt(&ssn, &indexed)?;
        println!(
            "Indexed insert payload: {} bytes, for a client with automatic encryption to insert",
            payload.bytes.len()
        );
    } else {
        println!("no Indexed payload: QE protocol v2 needs libmongocrypt 1.8, {} is linked", libmongocrypt::version());
    }

    aws_key_through_the_mock_kms()
}
