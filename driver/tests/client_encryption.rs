//! The blocking ClientEncryption against InMemoryKeyVault: the spec's prose and unified tests that need no server
//! (custom key material, unique keyAltNames, rewrap, key management), explicit encryption round trips, the
//! encryptedFields helper, the exact filters and updates sent to the key vault, and the option checks. Local KMS
//! only, so no network.

mod common;

use common::{
    b64, crypt, example_aws_key, linked_at_least, local_crypt, local_master_key, uuid, Call, MockAwsKms,
    RecordingKeyVault,
};
use libmongocrypt::bson::spec::BinarySubtype;
use libmongocrypt::bson::{doc, Binary, Bson, Document};
use libmongocrypt::{Algorithm, KmsProvider, KmsProviders, QueryType, RangeOptions, RunError, TextOptions};
use libmongocrypt_driver::{
    ClientEncryption, ClientEncryptionError, DataKeyOpts, EncryptKey, EncryptOpts, EncryptOptsError, InMemoryKeyVault,
    InMemoryKeyVaultError, NoKms, RewrapManyDataKeyOpts, Update, UpdateOne,
};

fn local() -> KmsProvider {
    KmsProvider::local()
}

fn deterministic(key: EncryptKey) -> EncryptOpts {
    EncryptOpts::new(key, Algorithm::Deterministic)
}

fn duplicate_key(error: &ClientEncryptionError) -> Option<&InMemoryKeyVaultError> {
    match error {
        ClientEncryptionError::KeyVault { source, .. } => source.downcast_ref::<InMemoryKeyVaultError>(),
        _ => None,
    }
}

/// Prose test 1: a key with custom key material, moved to `_id` 0, encrypts "test" to the spec's ciphertext.
#[test]
fn custom_key_material_gives_the_spec_ciphertext() {
    let client_encryption = ClientEncryption::new(local_crypt(), InMemoryKeyVault::new(), NoKms);
    let key_material = b64(
        "xPTAjBRG5JiPm+d3fj6XLi2q5DMXUS/f1f+SMAlhhwkhDRL0kr8r9GDLIGTAGlvC+HVjSIgdL+RKwZCvpXSyxTICWSXTUYsWYPyu3IoHbuBZdmw2faM3WhcRIgbMReU5",
    );
    let opts = DataKeyOpts { key_material: Some(key_material), ..DataKeyOpts::default() };
    let id = client_encryption.create_data_key(&local(), &opts).unwrap();

    let mut key = client_encryption.get_key(&id).unwrap().expect("the new key");
    assert_eq!(client_encryption.delete_key(&id).unwrap(), 1);
    assert_eq!(client_encryption.get_keys().unwrap(), Vec::<Document>::new());
    let zero_id = uuid(&[0; 16]);
    key.insert("_id", zero_id.clone());
    let vault = InMemoryKeyVault::with_documents(vec![key]);

    let client_encryption = ClientEncryption::new(local_crypt(), vault, NoKms);
    let ciphertext = client_encryption.encrypt(&Bson::from("test"), &deterministic(EncryptKey::Id(zero_id))).unwrap();
    let expected = b64(
        "AQAAAAAAAAAAAAAAAAAAAAACz0ZOLuuhEYi807ZXTdhbqhLaS2/t9wLifJnnNYwiw79d75QYIZ6M/aYC1h9nCzCjZ7pGUpAuNnkUhnIXM3PjrA==",
    );
    assert_eq!(ciphertext, Binary { subtype: BinarySubtype::Encrypted, bytes: expected });
}

#[test]
fn create_data_key_inserts_the_key_document_and_returns_its_uuid() {
    let client_encryption = ClientEncryption::new(local_crypt(), RecordingKeyVault::default(), NoKms);
    let opts = DataKeyOpts { key_alt_names: vec!["a".into(), "b".into()], ..DataKeyOpts::default() };
    let id = client_encryption.create_data_key(&local(), &opts).unwrap();
    assert_eq!((id.subtype, id.bytes.len()), (BinarySubtype::Uuid, 16));

    let calls = client_encryption.key_vault().take_calls();
    let [Call::InsertOne(key)] = calls.as_slice() else { panic!("one insert, got {calls:?}") };
    assert_eq!(key.get("_id"), Some(&Bson::Binary(id.clone())));
    assert_eq!(key.get_document("masterKey").unwrap(), &doc! { "provider": "local" });
    let mut names: Vec<&str> = key.get_array("keyAltNames").unwrap().iter().filter_map(Bson::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(key.get_binary_generic("keyMaterial").unwrap().len(), 160, "96 bytes wrapped: IV, AES-CBC, HMAC");
    assert_eq!(key.get_datetime("creationDate").unwrap(), key.get_datetime("updateDate").unwrap());
    assert_eq!(client_encryption.get_key(&id).unwrap().as_ref(), Some(key));
}

#[test]
fn explicit_encryption_round_trips_by_key_id_and_alt_name() {
    let client_encryption = ClientEncryption::new(local_crypt(), InMemoryKeyVault::new(), NoKms);
    let opts = DataKeyOpts { key_alt_names: vec!["by_name".into()], ..DataKeyOpts::default() };
    let id = client_encryption.create_data_key(&local(), &opts).unwrap();

    for value in [Bson::from("457-55-5462"), Bson::Int32(42), Bson::Int64(1 << 40)] {
        let by_id = client_encryption.encrypt(&value, &deterministic(EncryptKey::Id(id.clone()))).unwrap();
        let by_name = client_encryption.encrypt(&value, &deterministic(EncryptKey::AltName("by_name".into()))).unwrap();
        assert_eq!(by_id, by_name, "deterministic encryption with one key, however named");
        assert_eq!((by_id.subtype, by_id.bytes[0]), (BinarySubtype::Encrypted, 1), "FLE1 deterministic");
        assert_eq!(&by_id.bytes[1..17], id.bytes.as_slice(), "the ciphertext names its key");
        assert_eq!(client_encryption.decrypt(&by_id).unwrap(), value);

        let random = EncryptOpts::new(EncryptKey::AltName("by_name".into()), Algorithm::Random);
        let (first, second) =
            (client_encryption.encrypt(&value, &random).unwrap(), client_encryption.encrypt(&value, &random).unwrap());
        assert_ne!(first, second, "random encryption");
        assert_eq!(first.bytes[0], 2, "FLE1 random");
        assert_eq!(client_encryption.decrypt(&first).unwrap(), value);
        assert_eq!(client_encryption.decrypt(&second).unwrap(), value);
    }
}

#[test]
fn encrypting_with_a_missing_key_fails_in_libmongocrypt() {
    let client_encryption = ClientEncryption::new(local_crypt(), InMemoryKeyVault::new(), NoKms);
    let error = client_encryption.encrypt(&Bson::Int32(1), &deterministic(EncryptKey::AltName("nobody".into())));
    let Err(ClientEncryptionError::Run(RunError::Mongocrypt(error))) = error else { panic!("{error:?}") };
    assert!(error.message().contains("not all keys requested were satisfied"), "{error}");
}

/// The unified addKeyAltName, removeKeyAltName and getKeyByAltName tests: results are the documents before.
#[test]
fn key_alt_names_are_added_removed_and_found() {
    let client_encryption = ClientEncryption::new(local_crypt(), InMemoryKeyVault::new(), NoKms);
    let id = client_encryption.create_data_key(&local(), &DataKeyOpts::default()).unwrap();
    let original = client_encryption.get_key(&id).unwrap().unwrap();
    assert!(!original.contains_key("keyAltNames"));
    let missing_id = uuid(&[9; 16]);

    assert_eq!(client_encryption.add_key_alt_name(&missing_id, "new_key_alt_name").unwrap(), None);
    assert_eq!(client_encryption.get_keys().unwrap(), std::slice::from_ref(&original));

    assert_eq!(client_encryption.add_key_alt_name(&id, "local_key").unwrap().as_ref(), Some(&original));
    let mut with_one = original.clone();
    with_one.insert("keyAltNames", vec![Bson::from("local_key")]);
    assert_eq!(client_encryption.get_key(&id).unwrap().as_ref(), Some(&with_one));
    // Adding a name the key has is no error, and changes nothing.
    assert_eq!(client_encryption.add_key_alt_name(&id, "local_key").unwrap().as_ref(), Some(&with_one));
    assert_eq!(client_encryption.add_key_alt_name(&id, "another_name").unwrap().as_ref(), Some(&with_one));
    let mut with_two = original.clone();
    with_two.insert("keyAltNames", vec![Bson::from("local_key"), Bson::from("another_name")]);
    assert_eq!(client_encryption.get_key(&id).unwrap().as_ref(), Some(&with_two));

    assert_eq!(client_encryption.get_key_by_alt_name("another_name").unwrap().as_ref(), Some(&with_two));
    assert_eq!(client_encryption.get_key_by_alt_name("does_not_exist").unwrap(), None);

    assert_eq!(client_encryption.remove_key_alt_name(&missing_id, "local_key").unwrap(), None);
    assert_eq!(client_encryption.remove_key_alt_name(&id, "does_not_exist").unwrap().as_ref(), Some(&with_two));
    assert_eq!(client_encryption.get_key(&id).unwrap().as_ref(), Some(&with_two));
    assert_eq!(client_encryption.remove_key_alt_name(&id, "local_key").unwrap().as_ref(), Some(&with_two));
    let mut with_other = original.clone();
    with_other.insert("keyAltNames", vec![Bson::from("another_name")]);
    assert_eq!(client_encryption.get_key(&id).unwrap().as_ref(), Some(&with_other));
    // The last name goes with the field.
    assert_eq!(client_encryption.remove_key_alt_name(&id, "another_name").unwrap().as_ref(), Some(&with_other));
    assert_eq!(client_encryption.get_key(&id).unwrap().as_ref(), Some(&original));
    assert_eq!(client_encryption.get_key_by_alt_name("another_name").unwrap(), None);
}

/// Prose test 13: the unique index on keyAltNames, through createDataKey and addKeyAltName.
#[test]
fn key_alt_names_are_unique() {
    let client_encryption = ClientEncryption::new(local_crypt(), InMemoryKeyVault::new(), NoKms);
    let named = |name: &str| DataKeyOpts { key_alt_names: vec![name.into()], ..DataKeyOpts::default() };
    let def_id = client_encryption.create_data_key(&local(), &named("def")).unwrap();

    // Case 1: createDataKey.
    client_encryption.create_data_key(&local(), &named("abc")).unwrap();
    let error = client_encryption.create_data_key(&local(), &named("abc")).unwrap_err();
    assert_eq!(
        duplicate_key(&error),
        Some(&InMemoryKeyVaultError::DuplicateKey { field: "keyAltNames", value: Box::new(Bson::from("abc")) })
    );
    let error = client_encryption.create_data_key(&local(), &named("def")).unwrap_err();
    assert!(matches!(duplicate_key(&error), Some(InMemoryKeyVaultError::DuplicateKey { .. })), "{error}");
    assert_eq!(client_encryption.get_keys().unwrap().len(), 2);

    // Case 2: addKeyAltName.
    let client_encryption = ClientEncryption::new(local_crypt(), InMemoryKeyVault::new(), NoKms);
    let def_id_2 = client_encryption.create_data_key(&local(), &named("def")).unwrap();
    let id = client_encryption.create_data_key(&local(), &DataKeyOpts::default()).unwrap();
    client_encryption.add_key_alt_name(&id, "abc").unwrap();
    let before = client_encryption.add_key_alt_name(&id, "abc").unwrap().unwrap();
    assert_eq!(before.get_array("keyAltNames").unwrap(), &vec![Bson::from("abc")]);
    let error = client_encryption.add_key_alt_name(&id, "def").unwrap_err();
    assert_eq!(
        duplicate_key(&error),
        Some(&InMemoryKeyVaultError::DuplicateKey { field: "keyAltNames", value: Box::new(Bson::from("def")) })
    );
    let before = client_encryption.add_key_alt_name(&def_id_2, "def").unwrap().unwrap();
    assert_eq!(before.get_array("keyAltNames").unwrap(), &vec![Bson::from("def")]);
    assert_ne!(def_id, def_id_2);
}

#[test]
fn delete_key_reports_the_deleted_count() {
    let client_encryption = ClientEncryption::new(local_crypt(), InMemoryKeyVault::new(), NoKms);
    let first = client_encryption.create_data_key(&local(), &DataKeyOpts::default()).unwrap();
    let second = client_encryption.create_data_key(&local(), &DataKeyOpts::default()).unwrap();
    let second_key = client_encryption.get_key(&second).unwrap().unwrap();
    assert_eq!(client_encryption.delete_key(&uuid(&[0; 16])).unwrap(), 0);
    assert_eq!(client_encryption.get_keys().unwrap().len(), 2);
    assert_eq!(client_encryption.delete_key(&first).unwrap(), 1);
    assert_eq!(client_encryption.delete_key(&first).unwrap(), 0);
    assert_eq!(client_encryption.get_key(&first).unwrap(), None);
    assert_eq!(client_encryption.get_keys().unwrap(), [second_key]);
}

/// Prose test 16, case 1, local to local: a second ClientEncryption rewraps every key; both still decrypt.
#[test]
fn rewrap_local_to_local() {
    let vault = InMemoryKeyVault::new();
    let client_encryption_1 = ClientEncryption::new(local_crypt(), &vault, NoKms);
    let id = client_encryption_1.create_data_key(&local(), &DataKeyOpts::default()).unwrap();
    let ciphertext =
        client_encryption_1.encrypt(&Bson::from("test"), &deterministic(EncryptKey::Id(id.clone()))).unwrap();
    let before = client_encryption_1.get_key(&id).unwrap().unwrap();

    let client_encryption_2 = ClientEncryption::new(local_crypt(), &vault, NoKms);
    let opts = RewrapManyDataKeyOpts { provider: local(), master_key: None };
    let result = client_encryption_2.rewrap_many_data_key(&doc! {}, Some(&opts)).unwrap();
    let bulk = result.bulk_write_result.expect("a bulk write");
    assert_eq!((bulk.matched_count, bulk.modified_count), (1, 1));

    let after = client_encryption_2.get_key(&id).unwrap().unwrap();
    assert_ne!(after.get("keyMaterial"), before.get("keyMaterial"), "wrapped again, with a new IV");
    assert_eq!(after.get("masterKey"), before.get("masterKey"));
    assert!(after.get_datetime("updateDate").unwrap() >= before.get_datetime("updateDate").unwrap());
    assert_eq!(after.get("creationDate"), before.get("creationDate"));
    assert_eq!(client_encryption_1.decrypt(&ciphertext).unwrap(), Bson::from("test"));
    assert_eq!(client_encryption_2.decrypt(&ciphertext).unwrap(), Bson::from("test"));

    // A filter that matches nothing: no bulk write at all.
    let recording = ClientEncryption::new(local_crypt(), RecordingKeyVault::default(), NoKms);
    let result = recording.rewrap_many_data_key(&doc! { "keyAltNames": "no_matching_keys" }, Some(&opts)).unwrap();
    assert_eq!(result.bulk_write_result, None);
    assert_eq!(recording.key_vault().calls(), [Call::Find(doc! { "keyAltNames": "no_matching_keys" })]);
}

/// Prose test 16 with named KMS providers (libmongocrypt ≥ 1.9): from `local` to `local:other`, another key.
#[test]
fn rewrap_to_another_named_local_key() {
    if !linked_at_least(1, 9) {
        eprintln!("skipped: named KMS providers need libmongocrypt 1.9, {} is linked", libmongocrypt::version());
        return;
    }
    let other_master_key = [0x5a; 96];
    let both = KmsProviders::new().local("local", &local_master_key()).local("local:other", &other_master_key);
    let vault = InMemoryKeyVault::new();
    let client_encryption = ClientEncryption::new(crypt(&both), &vault, NoKms);
    let id = client_encryption.create_data_key(&local(), &DataKeyOpts::default()).unwrap();
    let ciphertext =
        client_encryption.encrypt(&Bson::from("test"), &deterministic(EncryptKey::Id(id.clone()))).unwrap();

    let other = local().named("other").unwrap();
    let opts = RewrapManyDataKeyOpts { provider: other.clone(), master_key: None };
    let result = client_encryption.rewrap_many_data_key(&doc! {}, Some(&opts)).unwrap();
    assert_eq!(result.bulk_write_result.map(|r| (r.matched_count, r.modified_count)), Some((1, 1)));
    let key = client_encryption.get_key(&id).unwrap().unwrap();
    assert_eq!(key.get_document("masterKey").unwrap(), &doc! { "provider": "local:other" });

    // Only the other master key can unwrap it now.
    let only_other =
        ClientEncryption::new(crypt(&KmsProviders::new().local("local:other", &other_master_key)), &vault, NoKms);
    assert_eq!(only_other.decrypt(&ciphertext).unwrap(), Bson::from("test"));
    let only_first = ClientEncryption::new(local_crypt(), &vault, NoKms);
    assert!(only_first.decrypt(&ciphertext).is_err(), "the first master key no longer unwraps it");
}

/// The filters and updates of the spec's key management functions and rewrap, as the key vault receives them.
#[test]
fn key_vault_receives_the_spec_filters_and_updates() {
    let client_encryption = ClientEncryption::new(local_crypt(), RecordingKeyVault::default(), NoKms);
    let id = client_encryption.create_data_key(&local(), &DataKeyOpts::default()).unwrap();
    let key_vault = client_encryption.key_vault();
    key_vault.take_calls();
    let by_id = doc! { "_id": id.clone() };

    client_encryption.get_key(&id).unwrap();
    client_encryption.get_keys().unwrap();
    client_encryption.get_key_by_alt_name("name").unwrap();
    client_encryption.add_key_alt_name(&id, "name").unwrap();
    client_encryption.remove_key_alt_name(&id, "name").unwrap();
    client_encryption.delete_key(&uuid(&[1; 16])).unwrap();
    assert_eq!(
        key_vault.take_calls(),
        [
            Call::Find(by_id.clone()),
            Call::Find(doc! {}),
            Call::Find(doc! { "keyAltNames": "name" }),
            Call::FindOneAndUpdate(by_id.clone(), Update::Document(doc! { "$addToSet": { "keyAltNames": "name" } })),
            Call::FindOneAndUpdate(
                by_id.clone(),
                Update::Pipeline(vec![doc! {
                    "$set": {
                        "keyAltNames": {
                            "$cond": [
                                { "$eq": ["$keyAltNames", ["name"]] },
                                "$$REMOVE",
                                { "$filter": { "input": "$keyAltNames", "cond": { "$ne": ["$$this", "name"] } } },
                            ],
                        },
                    },
                }])
            ),
            Call::DeleteOne(doc! { "_id": uuid(&[1; 16]) }),
        ]
    );

    let filter = doc! { "keyAltNames": { "$exists": false } };
    client_encryption.rewrap_many_data_key(&filter, None).unwrap();
    let calls = key_vault.take_calls();
    let [Call::Find(found), Call::BulkUpdate(updates)] = calls.as_slice() else { panic!("{calls:?}") };
    assert_eq!(found, &filter, "libmongocrypt passes the rewrap filter to the key vault as is");
    let key = client_encryption.get_key(&id).unwrap().unwrap();
    assert_eq!(
        updates,
        &[UpdateOne {
            filter: by_id,
            update: doc! {
                "$set": { "masterKey": key.get("masterKey").unwrap().clone(), "keyMaterial": key.get("keyMaterial").unwrap().clone() },
                "$currentDate": { "updateDate": true },
            },
        }]
    );
}

#[test]
fn encrypt_opts_are_checked_before_encrypting() {
    let client_encryption = ClientEncryption::new(local_crypt(), RecordingKeyVault::default(), NoKms);
    let id = client_encryption.create_data_key(&local(), &DataKeyOpts::default()).unwrap();
    client_encryption.key_vault().take_calls();
    let key = EncryptKey::Id(id.clone());
    let check = |opts: EncryptOpts| match client_encryption.encrypt(&Bson::Int32(1), &opts) {
        Err(ClientEncryptionError::InvalidEncryptOpts(error)) => error,
        other => panic!("{opts:?}: {other:?}"),
    };

    let opts = EncryptOpts { contention_factor: Some(1), ..deterministic(key.clone()) };
    assert_eq!(check(opts), EncryptOptsError::ContentionFactorNotApplicable { algorithm: Algorithm::Deterministic });
    let opts =
        EncryptOpts { query_type: Some(QueryType::Equality), ..EncryptOpts::new(key.clone(), Algorithm::Random) };
    assert_eq!(check(opts), EncryptOptsError::QueryTypeNotApplicable { algorithm: Algorithm::Random });
    let opts =
        EncryptOpts { range_opts: Some(RangeOptions::default()), ..EncryptOpts::new(key.clone(), Algorithm::Indexed) };
    assert_eq!(check(opts), EncryptOptsError::RangeOptsNotApplicable { algorithm: Algorithm::Indexed });
    let opts =
        EncryptOpts { text_opts: Some(TextOptions::default()), ..EncryptOpts::new(key.clone(), Algorithm::Range) };
    assert_eq!(check(opts), EncryptOptsError::TextOptsNotApplicable { algorithm: Algorithm::Range });
    let generic = Binary { subtype: BinarySubtype::Generic, bytes: id.bytes.clone() };
    assert_eq!(check(deterministic(EncryptKey::Id(generic))), EncryptOptsError::KeyIdNotUuid { subtype: 0 });
    assert_eq!(client_encryption.key_vault().calls(), [], "nothing reached the key vault");
}

#[test]
fn master_keys_and_providers_are_checked() {
    let client_encryption = ClientEncryption::new(local_crypt(), RecordingKeyVault::default(), NoKms);
    let opts = DataKeyOpts { master_key: Some(doc! { "provider": "aws" }), ..DataKeyOpts::default() };
    let error = client_encryption.create_data_key(&local(), &opts).unwrap_err();
    assert!(
        matches!(&error, ClientEncryptionError::MasterKeyProvider { provider, master_key_provider }
            if provider == "local" && master_key_provider == "aws"),
        "{error:?}"
    );
    // A provider the Crypt was not given: libmongocrypt refuses it.
    let opts = DataKeyOpts {
        master_key: Some(doc! { "region": "us-east-1", "key": "arn:aws:kms:us-east-1:0:key/1" }),
        ..DataKeyOpts::default()
    };
    let error = client_encryption.create_data_key(&KmsProvider::aws(), &opts).unwrap_err();
    assert!(matches!(error, ClientEncryptionError::Mongocrypt(_) | ClientEncryptionError::Run(_)), "{error:?}");
    assert_eq!(client_encryption.key_vault().calls(), [], "no key was inserted");
}

#[test]
fn create_encrypted_collection_fills_every_null_key_id() {
    let client_encryption = ClientEncryption::new(local_crypt(), InMemoryKeyVault::new(), NoKms);
    let existing = uuid(&[3; 16]);
    let encrypted_fields = doc! {
        "escCollection": "enxcol_.testing1.esc",
        "fields": [
            { "path": "ssn", "bsonType": "string", "keyId": Bson::Null },
            { "path": "age", "bsonType": "int", "keyId": existing.clone() },
            "not a field",
            { "path": "bad", "bsonType": "string", "keyId": false },
            { "path": "dob", "bsonType": "date", "keyId": Bson::Null, "queries": { "queryType": "equality" } },
        ],
    };
    let filled = client_encryption.create_encrypted_collection(&encrypted_fields, &local(), None).unwrap();

    let keys = client_encryption.get_keys().unwrap();
    assert_eq!(keys.len(), 2);
    let key_id = |index: usize| keys[index].get("_id").unwrap().clone();
    let mut expected = encrypted_fields.clone();
    let fields = expected.get_array_mut("fields").unwrap();
    fields[0].as_document_mut().unwrap().insert("keyId", key_id(0));
    fields[4].as_document_mut().unwrap().insert("keyId", key_id(1));
    assert_eq!(filled, expected);

    // Nothing to fill: unchanged, and no key made.
    let without_fields = doc! { "escCollection": "x" };
    assert_eq!(client_encryption.create_encrypted_collection(&without_fields, &local(), None).unwrap(), without_fields);
    assert_eq!(client_encryption.get_keys().unwrap().len(), 2);
}

#[test]
fn create_encrypted_collection_reports_the_failed_field_and_the_partial_fields() {
    let key_vault = RecordingKeyVault { inserts_allowed: Some(1), ..RecordingKeyVault::default() };
    let client_encryption = ClientEncryption::new(local_crypt(), key_vault, NoKms);
    let encrypted_fields = doc! {
        "fields": [
            { "path": "ssn", "bsonType": "string", "keyId": Bson::Null },
            { "path": "dob", "bsonType": "date", "keyId": Bson::Null },
        ],
    };
    let error = client_encryption.create_encrypted_collection(&encrypted_fields, &local(), None).unwrap_err();
    let ClientEncryptionError::EncryptedFields { index, path, encrypted_fields: partial, source } = error else {
        panic!("{error:?}")
    };
    assert_eq!((index, path.as_deref()), (1, Some("dob")));
    let inserted = client_encryption.key_vault().vault.documents();
    assert_eq!(inserted.len(), 1);
    let mut expected = encrypted_fields.clone();
    expected.get_array_mut("fields").unwrap()[0]
        .as_document_mut()
        .unwrap()
        .insert("keyId", inserted[0].get("_id").unwrap().clone());
    assert_eq!(*partial, expected);
    assert!(
        matches!(*source, ClientEncryptionError::KeyVault { operation: "insert_one", ref source } if source.to_string() == "insert refused by the test"),
        "{source:?}"
    );
}

/// Queryable Encryption payloads (libmongocrypt ≥ 1.8, QE protocol v2; 1.7 makes the v1 payloads that servers
/// since 7.0 refuse): an Indexed insert payload with a contention factor, and a Range query expression.
#[test]
fn queryable_encryption_payloads() {
    if !linked_at_least(1, 12) {
        eprintln!(
            "skipped: QE v2 payloads and the Range algorithm need libmongocrypt 1.12 here, {} is linked",
            libmongocrypt::version()
        );
        return;
    }
    let client_encryption = ClientEncryption::new(local_crypt(), InMemoryKeyVault::new(), NoKms);
    let id = client_encryption.create_data_key(&local(), &DataKeyOpts::default()).unwrap();
    let indexed =
        EncryptOpts { contention_factor: Some(0), ..EncryptOpts::new(EncryptKey::Id(id.clone()), Algorithm::Indexed) };
    let payload = client_encryption.encrypt(&Bson::Int32(7), &indexed).unwrap();
    assert_eq!((payload.subtype, payload.bytes[0]), (BinarySubtype::Encrypted, 11), "FLE2InsertUpdatePayloadV2");

    let range = EncryptOpts {
        contention_factor: Some(0),
        query_type: Some(QueryType::Range),
        range_opts: Some(RangeOptions {
            min: Some(Bson::Int32(0)),
            max: Some(Bson::Int32(200)),
            sparsity: Some(1),
            trim_factor: Some(1),
            precision: None,
        }),
        ..EncryptOpts::new(EncryptKey::Id(id), Algorithm::Range)
    };
    let expression = doc! { "$and": [{ "age": { "$gte": 6 } }, { "age": { "$lte": 200 } }] };
    let encrypted = client_encryption.encrypt_expression(&expression, &range).unwrap();
    let clauses = encrypted.get_array("$and").unwrap();
    assert_eq!(clauses.len(), 2);
    let Some(Bson::Binary(bound)) = clauses[0].as_document().unwrap().get_document("age").unwrap().get("$gte") else {
        panic!("{encrypted}")
    };
    assert_eq!(bound.subtype, BinarySubtype::Encrypted);
}

/// Prose test 16 from aws to local, with the KMS mocked: an AWS key of `tests/data/example` is unwrapped through
/// the KMS I/O (the file's reply), encrypts, and is rewrapped under the local master key, after which a
/// ClientEncryption without AWS decrypts.
#[test]
fn aws_key_through_a_mocked_kms_rewrapped_to_local() {
    let providers = KmsProviders::new().aws("aws", "example", "example", None).local("local", &local_master_key());
    let vault = InMemoryKeyVault::with_documents(vec![example_aws_key()]);
    let kms = MockAwsKms::default();
    let client_encryption = ClientEncryption::new(crypt(&providers), &vault, &kms);
    let key_id = uuid(b"aaaaaaaaaaaaaaaa");

    let by_name = deterministic(EncryptKey::AltName("keyDocumentName".into()));
    let ciphertext = client_encryption.encrypt(&Bson::from("test"), &by_name).unwrap();
    assert_eq!(*kms.requests.lock().unwrap(), 1, "one KMS decrypt");
    assert_eq!(
        client_encryption.encrypt(&Bson::from("test"), &deterministic(EncryptKey::Id(key_id.clone()))).unwrap(),
        ciphertext
    );
    assert_eq!(client_encryption.decrypt(&ciphertext).unwrap(), Bson::from("test"));

    let opts = RewrapManyDataKeyOpts { provider: local(), master_key: None };
    let result =
        client_encryption.rewrap_many_data_key(&doc! { "keyAltNames": "keyDocumentName" }, Some(&opts)).unwrap();
    assert_eq!(result.bulk_write_result.map(|r| (r.matched_count, r.modified_count)), Some((1, 1)));
    let key = client_encryption.get_key(&key_id).unwrap().unwrap();
    assert_eq!(key.get_document("masterKey").unwrap(), &doc! { "provider": "local" });

    let local_only = ClientEncryption::new(local_crypt(), &vault, NoKms);
    assert_eq!(local_only.decrypt(&ciphertext).unwrap(), Bson::from("test"));

    // Without KMS I/O, the AWS key cannot be unwrapped: NoKms's error, in state NEED_KMS.
    let aws_vault = InMemoryKeyVault::with_documents(vec![example_aws_key()]);
    let no_kms = ClientEncryption::new(crypt(&providers), &aws_vault, NoKms);
    let error = no_kms.decrypt(&ciphertext).unwrap_err();
    let ClientEncryptionError::Run(RunError::Io { state, source }) = &error else { panic!("{error:?}") };
    assert_eq!(*state, libmongocrypt::State::NeedKms);
    assert!(source.to_string().contains("NoKms"), "{source}");
}

/// Prose test 23: Range explicit encryption applies libmongocrypt's defaults (sparsity 2, trimFactor 6), and
/// accepts trimFactor 0. Needs MONGOCRYPT-698's defaults: libmongocrypt 1.11.
#[test]
fn range_explicit_encryption_applies_defaults() {
    if !linked_at_least(1, 11) {
        eprintln!(
            "skipped: the range defaults (MONGOCRYPT-698) need libmongocrypt 1.11, {} is linked",
            libmongocrypt::version()
        );
        return;
    }
    let client_encryption = ClientEncryption::new(local_crypt(), InMemoryKeyVault::new(), NoKms);
    let id = client_encryption.create_data_key(&local(), &DataKeyOpts::default()).unwrap();
    let range = |sparsity, trim_factor| EncryptOpts {
        contention_factor: Some(0),
        range_opts: Some(RangeOptions {
            min: Some(Bson::Int32(0)),
            max: Some(Bson::Int32(1000)),
            sparsity,
            trim_factor,
            precision: None,
        }),
        ..EncryptOpts::new(EncryptKey::Id(id.clone()), Algorithm::Range)
    };
    let size = |opts: EncryptOpts| client_encryption.encrypt(&Bson::Int32(123), &opts).unwrap().bytes.len();
    let defaults = size(range(None, None));
    assert_eq!(size(range(Some(2), Some(6))), defaults, "case 1: the defaults are sparsity 2, trimFactor 6");
    assert!(size(range(None, Some(0))) > defaults, "case 2: trimFactor 0 keeps more edges");
}
