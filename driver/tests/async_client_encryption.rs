//! AsyncClientEncryption against InMemoryKeyVault, each operation inside `tokio::spawn` (so its future is `Send`):
//! the same operations and outcomes as the blocking face's tests, through the async I/O.

mod common;

use std::sync::Arc;

use common::{b64, local_crypt, uuid};
use libmongocrypt::bson::spec::BinarySubtype;
use libmongocrypt::bson::{doc, Binary, Bson};
use libmongocrypt::{Algorithm, KmsProvider};
use libmongocrypt_driver::{
    AsyncClientEncryption, ClientEncryptionError, DataKeyOpts, EncryptKey, EncryptOpts, EncryptOptsError,
    InMemoryKeyVault, NoKms, RewrapManyDataKeyOpts,
};

type Shared = Arc<AsyncClientEncryption<InMemoryKeyVault>>;

fn client_encryption() -> Shared {
    Arc::new(AsyncClientEncryption::new(local_crypt(), InMemoryKeyVault::new(), NoKms, tokio::time::sleep))
}

/// Prose test 1 through the async face: the spec's deterministic ciphertext, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_key_material_gives_the_spec_ciphertext() {
    let ce = client_encryption();
    let task = ce.clone();
    let ciphertext = tokio::spawn(async move {
        let key_material = b64("xPTAjBRG5JiPm+d3fj6XLi2q5DMXUS/f1f+SMAlhhwkhDRL0kr8r9GDLIGTAGlvC+HVjSIgdL+RKwZCvpXSyxTICWSXTUYsWYPyu3IoHbuBZdmw2faM3WhcRIgbMReU5");
        let opts = DataKeyOpts { key_material: Some(key_material), ..DataKeyOpts::default() };
        let id = task.create_data_key(&KmsProvider::local(), &opts).await.unwrap();
        let mut key = task.get_key(&id).await.unwrap().unwrap();
        assert_eq!(task.delete_key(&id).await.unwrap(), 1);
        key.insert("_id", uuid(&[0; 16]));
        let moved = AsyncClientEncryption::new(
            local_crypt(),
            InMemoryKeyVault::with_documents(vec![key]),
            NoKms,
            tokio::time::sleep,
        );
        let opts = EncryptOpts::new(EncryptKey::Id(uuid(&[0; 16])), Algorithm::Deterministic);
        moved.encrypt(&Bson::from("test"), &opts).await.unwrap()
    })
    .await
    .unwrap();
    let expected = b64(
        "AQAAAAAAAAAAAAAAAAAAAAACz0ZOLuuhEYi807ZXTdhbqhLaS2/t9wLifJnnNYwiw79d75QYIZ6M/aYC1h9nCzCjZ7pGUpAuNnkUhnIXM3PjrA==",
    );
    assert_eq!(ciphertext, Binary { subtype: BinarySubtype::Encrypted, bytes: expected });
    assert_eq!(ce.get_keys().await.unwrap(), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_rewrap_and_key_management() {
    let ce = client_encryption();
    let task = ce.clone();
    tokio::spawn(async move {
        let opts = DataKeyOpts { key_alt_names: vec!["name".into()], ..DataKeyOpts::default() };
        let id = task.create_data_key(&KmsProvider::local(), &opts).await.unwrap();
        let original = task.get_key(&id).await.unwrap().unwrap();
        assert_eq!(task.get_key_by_alt_name("name").await.unwrap().as_ref(), Some(&original));

        let by_id = EncryptOpts::new(EncryptKey::Id(id.clone()), Algorithm::Deterministic);
        let by_name = EncryptOpts::new(EncryptKey::AltName("name".into()), Algorithm::Deterministic);
        let ciphertext = task.encrypt(&Bson::Int32(42), &by_id).await.unwrap();
        assert_eq!(task.encrypt(&Bson::Int32(42), &by_name).await.unwrap(), ciphertext);
        assert_eq!(task.decrypt(&ciphertext).await.unwrap(), Bson::Int32(42));

        let rewrap = RewrapManyDataKeyOpts { provider: KmsProvider::local(), master_key: None };
        let result = task.rewrap_many_data_key(&doc! { "keyAltNames": "name" }, Some(&rewrap)).await.unwrap();
        assert_eq!(result.bulk_write_result.map(|r| (r.matched_count, r.modified_count)), Some((1, 1)));
        let result = task.rewrap_many_data_key(&doc! { "keyAltNames": "none" }, None).await.unwrap();
        assert_eq!(result.bulk_write_result, None);
        let rewrapped = task.get_key(&id).await.unwrap().unwrap();
        assert_ne!(rewrapped.get("keyMaterial"), original.get("keyMaterial"));
        assert_eq!(task.decrypt(&ciphertext).await.unwrap(), Bson::Int32(42));

        assert_eq!(task.add_key_alt_name(&id, "second").await.unwrap().as_ref(), Some(&rewrapped));
        let both = task.remove_key_alt_name(&id, "name").await.unwrap().unwrap();
        assert_eq!(both.get_array("keyAltNames").unwrap(), &vec![Bson::from("name"), Bson::from("second")]);
        task.remove_key_alt_name(&id, "second").await.unwrap();
        let mut without_names = rewrapped.clone();
        without_names.remove("keyAltNames");
        assert_eq!(task.get_key(&id).await.unwrap(), Some(without_names));
        assert_eq!(task.delete_key(&id).await.unwrap(), 1);
        assert_eq!(task.get_keys().await.unwrap(), []);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_fields_and_option_checks() {
    let ce = client_encryption();
    let task = ce.clone();
    tokio::spawn(async move {
        let encrypted_fields = doc! { "fields": [{ "path": "ssn", "bsonType": "string", "keyId": Bson::Null }] };
        let filled = task.create_encrypted_collection(&encrypted_fields, &KmsProvider::local(), None).await.unwrap();
        let keys = task.get_keys().await.unwrap();
        assert_eq!(keys.len(), 1);
        let expected =
            doc! { "fields": [{ "path": "ssn", "bsonType": "string", "keyId": keys[0].get("_id").unwrap().clone() }] };
        assert_eq!(filled, expected);

        let Some(Bson::Binary(id)) = keys[0].get("_id").cloned() else { panic!("{keys:?}") };
        let opts =
            EncryptOpts { contention_factor: Some(2), ..EncryptOpts::new(EncryptKey::Id(id), Algorithm::Random) };
        let error = task.encrypt(&Bson::Int32(1), &opts).await.unwrap_err();
        assert!(
            matches!(
                error,
                ClientEncryptionError::InvalidEncryptOpts(EncryptOptsError::ContentionFactorNotApplicable {
                    algorithm: Algorithm::Random
                })
            ),
            "{error:?}"
        );
    })
    .await
    .unwrap();
}

/// `with_tokio` (feature `tokio`): the same ClientEncryption, on tokio's timer.
#[cfg(feature = "tokio")]
#[tokio::test]
async fn with_tokio_builds_a_working_client_encryption() {
    let ce = AsyncClientEncryption::with_tokio(local_crypt(), InMemoryKeyVault::new(), NoKms);
    let id = ce.create_data_key(&KmsProvider::local(), &DataKeyOpts::default()).await.unwrap();
    let opts = EncryptOpts::new(EncryptKey::Id(id), Algorithm::Random);
    let ciphertext = ce.encrypt(&Bson::from("x"), &opts).await.unwrap();
    assert_eq!(ce.decrypt(&ciphertext).await.unwrap(), Bson::from("x"));
}
