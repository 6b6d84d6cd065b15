//! The pure parts of every [`ClientEncryption`](crate::ClientEncryption) method, shared by the blocking and the
//! async face: option checks, the ctx each operation runs, the key vault filters and updates, and reading
//! libmongocrypt's results. Only the I/O differs between the faces.

use libmongocrypt::bson::spec::BinarySubtype;
use libmongocrypt::bson::{doc, Binary, Bson, Document, RawDocumentBuf};
use libmongocrypt::{Algorithm, Crypt, Ctx, KmsProvider};

use crate::error::{ClientEncryptionError, EncryptOptsError, Result};
use crate::key_vault::{Update, UpdateOne};
use crate::options::{DataKeyOpts, EncryptKey, EncryptOpts, RewrapManyDataKeyOpts};

/// The key encryption key document libmongocrypt takes: `{provider, ...master_key}`.
fn key_encryption_key(provider: &KmsProvider, master_key: Option<&Document>) -> Result<Document> {
    let mut kek = doc! { "provider": provider.as_str() };
    for (field, value) in master_key.into_iter().flatten() {
        if field == "provider" {
            if value.as_str() != Some(provider.as_str()) {
                return Err(ClientEncryptionError::MasterKeyProvider {
                    provider: provider.to_string(),
                    master_key_provider: value.as_str().map_or_else(|| value.to_string(), str::to_owned),
                });
            }
            continue;
        }
        kek.insert(field.clone(), value.clone());
    }
    Ok(kek)
}

/// The ctx of createDataKey.
pub(crate) fn data_key_ctx(crypt: &Crypt, provider: &KmsProvider, opts: &DataKeyOpts) -> Result<Ctx> {
    let mut builder = crypt.ctx().key_encryption_key(&key_encryption_key(provider, opts.master_key.as_ref())?)?;
    for name in &opts.key_alt_names {
        builder = builder.key_alt_name(name)?;
    }
    if let Some(material) = &opts.key_material {
        builder = builder.key_material(material)?;
    }
    Ok(builder.datakey()?)
}

/// The result of a ctx that must have one, as a document.
pub(crate) fn result_document(operation: &'static str, result: Option<RawDocumentBuf>) -> Result<Document> {
    let raw = result.ok_or_else(|| ClientEncryptionError::unexpected(operation, "no result document"))?;
    Document::try_from(raw.as_ref()).map_err(|e| ClientEncryptionError::unexpected(operation, e.to_string()))
}

/// The new key document of createDataKey, and its `_id`.
pub(crate) fn data_key_document(result: Option<RawDocumentBuf>) -> Result<(Document, Binary)> {
    let key = result_document("createDataKey", result)?;
    let id = match key.get("_id") {
        Some(Bson::Binary(id)) if id.subtype == BinarySubtype::Uuid => id.clone(),
        other => {
            return Err(ClientEncryptionError::unexpected("createDataKey", format!("key _id is {other:?}, not a UUID")))
        }
    };
    Ok((key, id))
}

/// Checks the rules of the spec's EncryptOpts that libmongocrypt leaves to drivers or reports less clearly.
/// Algorithms this crate does not name (`Algorithm::Other`, such as a preview's) are left to libmongocrypt.
fn check_encrypt_opts(opts: &EncryptOpts) -> std::result::Result<(), EncryptOptsError> {
    if let EncryptKey::Id(id) = &opts.key {
        if id.subtype != BinarySubtype::Uuid {
            return Err(EncryptOptsError::KeyIdNotUuid { subtype: u8::from(id.subtype) });
        }
    }
    let algorithm = &opts.algorithm;
    if matches!(algorithm, Algorithm::Other(_)) {
        return Ok(());
    }
    let queryable = matches!(algorithm, Algorithm::Indexed | Algorithm::Range | Algorithm::String);
    let error = if opts.contention_factor.is_some() && !queryable {
        EncryptOptsError::ContentionFactorNotApplicable { algorithm: algorithm.clone() }
    } else if opts.query_type.is_some() && !queryable {
        EncryptOptsError::QueryTypeNotApplicable { algorithm: algorithm.clone() }
    } else if opts.range_opts.is_some() && *algorithm != Algorithm::Range {
        EncryptOptsError::RangeOptsNotApplicable { algorithm: algorithm.clone() }
    } else if opts.text_opts.is_some() && *algorithm != Algorithm::String {
        EncryptOptsError::TextOptsNotApplicable { algorithm: algorithm.clone() }
    } else {
        return Ok(());
    };
    Err(error)
}

/// What explicit encryption encrypts.
pub(crate) enum Plaintext<'v> {
    /// A value (encrypt).
    Value(&'v Bson),
    /// A range query expression (encryptExpression).
    Expression(&'v Document),
}

/// The ctx of encrypt and encryptExpression, once the options pass [`check_encrypt_opts`].
pub(crate) fn encrypt_ctx(crypt: &Crypt, plaintext: Plaintext<'_>, opts: &EncryptOpts) -> Result<Ctx> {
    check_encrypt_opts(opts)?;
    let mut builder = match &opts.key {
        EncryptKey::Id(id) => crypt.ctx().key_id(&id.bytes)?,
        EncryptKey::AltName(name) => crypt.ctx().key_alt_name(name)?,
    };
    builder = builder.algorithm(&opts.algorithm)?;
    if let Some(contention_factor) = opts.contention_factor {
        builder = builder.contention_factor(contention_factor)?;
    }
    if let Some(query_type) = &opts.query_type {
        builder = builder.query_type(query_type)?;
    }
    if let Some(range_opts) = &opts.range_opts {
        builder = builder.algorithm_range(range_opts)?;
    }
    if let Some(text_opts) = &opts.text_opts {
        builder = builder.algorithm_text(text_opts)?;
    }
    Ok(match plaintext {
        Plaintext::Value(value) => builder.explicit_encrypt(&doc! { "v": value.clone() })?,
        Plaintext::Expression(expression) => builder.explicit_encrypt_expression(&doc! { "v": expression.clone() })?,
    })
}

/// The ctx of decrypt.
pub(crate) fn decrypt_ctx(crypt: &Crypt, value: &Binary) -> Result<Ctx> {
    Ok(crypt.ctx().explicit_decrypt(&doc! { "v": value.clone() })?)
}

/// The `v` of an explicit encryption or decryption result (`{"v": value}`).
pub(crate) fn result_value(operation: &'static str, result: Option<RawDocumentBuf>) -> Result<Bson> {
    let mut result = result_document(operation, result)?;
    result.remove("v").ok_or_else(|| ClientEncryptionError::unexpected(operation, "no v in the result"))
}

/// The ciphertext of encrypt: BSON binary subtype 6.
pub(crate) fn ciphertext(result: Option<RawDocumentBuf>) -> Result<Binary> {
    match result_value("encrypt", result)? {
        Bson::Binary(binary) if binary.subtype == BinarySubtype::Encrypted => Ok(binary),
        other => Err(ClientEncryptionError::unexpected("encrypt", format!("{other:?} is not a ciphertext"))),
    }
}

/// The encrypted expression of encryptExpression: a document.
pub(crate) fn encrypted_expression(result: Option<RawDocumentBuf>) -> Result<Document> {
    match result_value("encryptExpression", result)? {
        Bson::Document(expression) => Ok(expression),
        other => Err(ClientEncryptionError::unexpected("encryptExpression", format!("{other:?} is not a document"))),
    }
}

/// The ctx of rewrapManyDataKey.
pub(crate) fn rewrap_ctx(crypt: &Crypt, filter: &Document, opts: Option<&RewrapManyDataKeyOpts>) -> Result<Ctx> {
    let mut builder = crypt.ctx();
    if let Some(opts) = opts {
        builder = builder.key_encryption_key(&key_encryption_key(&opts.provider, opts.master_key.as_ref())?)?;
    }
    Ok(builder.rewrap_many_datakey(filter)?)
}

/// The updateOne of each rewrapped key (libmongocrypt's result `{"v": [key documents]}`): its new `masterKey` and
/// `keyMaterial`, and `updateDate` set to the server's time. Empty when the filter matched no key (no result).
pub(crate) fn rewrap_updates(result: Option<RawDocumentBuf>) -> Result<Vec<UpdateOne>> {
    const OPERATION: &str = "rewrapManyDataKey";
    if result.is_none() {
        return Ok(Vec::new());
    }
    let keys = match result_value(OPERATION, result)? {
        Bson::Array(keys) => keys,
        other => return Err(ClientEncryptionError::unexpected(OPERATION, format!("v is {other:?}, not an array"))),
    };
    keys.into_iter()
        .map(|key| {
            let Bson::Document(mut key) = key else {
                return Err(ClientEncryptionError::unexpected(OPERATION, format!("{key:?} is not a key document")));
            };
            let mut take = |field| {
                key.remove(field)
                    .ok_or_else(|| ClientEncryptionError::unexpected(OPERATION, format!("a key without {field}")))
            };
            let (id, master_key, key_material) = (take("_id")?, take("masterKey")?, take("keyMaterial")?);
            Ok(UpdateOne {
                filter: doc! { "_id": id },
                update: doc! {
                    "$set": { "masterKey": master_key, "keyMaterial": key_material },
                    "$currentDate": { "updateDate": true },
                },
            })
        })
        .collect()
}

/// The filter of getKey, deleteKey, addKeyAltName and removeKeyAltName.
pub(crate) fn id_filter(id: &Binary) -> Document {
    doc! { "_id": id.clone() }
}

/// The filter of getKeyByAltName.
pub(crate) fn alt_name_filter(key_alt_name: &str) -> Document {
    doc! { "keyAltNames": key_alt_name }
}

/// The update of addKeyAltName: the name joins the set (adding one already there is no error).
pub(crate) fn add_alt_name_update(key_alt_name: &str) -> Update {
    Update::Document(doc! { "$addToSet": { "keyAltNames": key_alt_name } })
}

/// The update of removeKeyAltName: a pipeline, so that the field goes away with its last name rather than stay
/// as an empty array (which the unique index on `keyAltNames` would count as a value).
pub(crate) fn remove_alt_name_update(key_alt_name: &str) -> Update {
    Update::Pipeline(vec![doc! {
        "$set": {
            "keyAltNames": {
                "$cond": [
                    { "$eq": ["$keyAltNames", [key_alt_name]] },
                    "$$REMOVE",
                    { "$filter": { "input": "$keyAltNames", "cond": { "$ne": ["$$this", key_alt_name] } } },
                ],
            },
        },
    }])
}

/// The indexes in `encryptedFields.fields` of the fields whose `keyId` is null: the ones that need a data key.
/// Anything else (no `fields`, a field that is not a document, another `keyId`) is left for the server to judge.
pub(crate) fn fields_needing_keys(encrypted_fields: &Document) -> Vec<usize> {
    let Ok(fields) = encrypted_fields.get_array("fields") else { return Vec::new() };
    fields
        .iter()
        .enumerate()
        .filter(|(_, field)| matches!(field, Bson::Document(field) if matches!(field.get("keyId"), Some(Bson::Null))))
        .map(|(index, _)| index)
        .collect()
}

/// Sets `encryptedFields.fields[index].keyId`, an index [`fields_needing_keys`] returned.
pub(crate) fn set_field_key_id(encrypted_fields: &mut Document, index: usize, key_id: Binary) {
    if let Ok(fields) = encrypted_fields.get_array_mut("fields") {
        if let Some(Bson::Document(field)) = fields.get_mut(index) {
            field.insert("keyId", key_id);
        }
    }
}

/// The error of createEncryptedCollection when the data key of `fields[index]` failed.
pub(crate) fn encrypted_fields_error(
    encrypted_fields: Document,
    index: usize,
    source: ClientEncryptionError,
) -> ClientEncryptionError {
    let path = encrypted_fields
        .get_array("fields")
        .ok()
        .and_then(|fields| fields.get(index))
        .and_then(Bson::as_document)
        .and_then(|field| field.get_str("path").ok())
        .map(str::to_owned);
    ClientEncryptionError::EncryptedFields {
        index,
        path,
        encrypted_fields: Box::new(encrypted_fields),
        source: Box::new(source),
    }
}
