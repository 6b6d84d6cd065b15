//! [`InMemoryKeyVault`]: a key vault in a `Mutex<Vec<Document>>`, for tests and examples.

use std::sync::{Mutex, MutexGuard, PoisonError};

use libmongocrypt::bson::{Bson, DateTime, Document};
use libmongocrypt::state_machine::IoResult;

use crate::key_vault::{AsyncKeyVault, BulkWriteResult, KeyVault, Update, UpdateOne};

/// A key vault collection in memory, implementing [`KeyVault`] and [`AsyncKeyVault`]: for tests and examples,
/// where there is no MongoDB server. It is not a MongoDB emulator: it understands exactly what
/// [`ClientEncryption`](crate::ClientEncryption) and libmongocrypt send to a key vault, and refuses anything else
/// with [`InMemoryKeyVaultError::Unsupported`]:
///
/// - filters: field equality (an array field matches any of its elements), `$eq`, `$ne`, `$in`, `$exists`, `$and`,
///   `$or`, on top-level fields;
/// - update documents: `$set`, `$addToSet`, `$currentDate`;
/// - pipelines: `$set` stages whose expressions use field paths, `$$REMOVE`, `$$this`, `$cond`, `$eq`, `$ne` and
///   `$filter`.
///
/// Like the key vault the spec assumes, it has a unique index on `_id` and one on `keyAltNames` (each name at most
/// once among the keys that have the field): a write that would break either fails with
/// [`InMemoryKeyVaultError::DuplicateKey`] and changes nothing.
#[derive(Debug, Default)]
pub struct InMemoryKeyVault {
    documents: Mutex<Vec<Document>>,
}

/// Why an [`InMemoryKeyVault`] operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InMemoryKeyVaultError {
    /// The write would give two documents the same `_id` or the same key alternate name (the server's error
    /// 11000).
    #[error("E11000 duplicate key error: {field} {value}")]
    DuplicateKey {
        /// `_id` or `keyAltNames`.
        field: &'static str,
        /// The duplicated value (boxed, to keep the error small).
        value: Box<Bson>,
    },
    /// A filter, update or expression this key vault does not implement.
    #[error("not supported by InMemoryKeyVault: {0}")]
    Unsupported(String),
}

type Result<T> = std::result::Result<T, InMemoryKeyVaultError>;

fn unsupported<T>(what: impl std::fmt::Display) -> Result<T> {
    Err(InMemoryKeyVaultError::Unsupported(what.to_string()))
}

impl InMemoryKeyVault {
    /// An empty key vault.
    pub fn new() -> InMemoryKeyVault {
        InMemoryKeyVault::default()
    }

    /// A key vault holding `documents`, as they are (their uniqueness is not checked).
    pub fn with_documents(documents: Vec<Document>) -> InMemoryKeyVault {
        InMemoryKeyVault { documents: Mutex::new(documents) }
    }

    /// A copy of every document, in insertion order.
    pub fn documents(&self) -> Vec<Document> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Document>> {
        // A panic elsewhere cannot leave the vector half-changed: every write replaces one whole document.
        self.documents.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn find(&self, filter: &Document) -> Result<Vec<Document>> {
        let documents = self.lock();
        let mut found = Vec::new();
        for document in documents.iter() {
            if matches(document, filter)? {
                found.push(document.clone());
            }
        }
        Ok(found)
    }

    fn insert_one(&self, document: &Document) -> Result<()> {
        let mut documents = self.lock();
        check_unique(&documents, None, document)?;
        documents.push(document.clone());
        Ok(())
    }

    fn delete_one(&self, filter: &Document) -> Result<u64> {
        let mut documents = self.lock();
        match position(&documents, filter)? {
            Some(index) => {
                documents.remove(index);
                Ok(1)
            }
            None => Ok(0),
        }
    }

    /// Updates the first document matching `filter`; returns it as it was, and whether it changed.
    fn update_first(
        documents: &mut [Document],
        filter: &Document,
        update: &Update,
    ) -> Result<Option<(Document, bool)>> {
        let Some(index) = position(documents, filter)? else { return Ok(None) };
        let before = documents[index].clone();
        let after = match update {
            Update::Document(update) => apply_update_document(&before, update)?,
            Update::Pipeline(stages) => apply_pipeline(&before, stages)?,
        };
        if after.get("_id") != before.get("_id") {
            return unsupported("an update that changes _id");
        }
        check_unique(documents, Some(index), &after)?;
        let modified = after != before;
        documents[index] = after;
        Ok(Some((before, modified)))
    }

    fn find_one_and_update(&self, filter: &Document, update: &Update) -> Result<Option<Document>> {
        Ok(InMemoryKeyVault::update_first(&mut self.lock(), filter, update)?.map(|(before, _)| before))
    }

    /// An ordered bulk write: stops at the first failing update, keeping the ones before it.
    fn bulk_update(&self, updates: &[UpdateOne]) -> Result<BulkWriteResult> {
        let mut documents = self.lock();
        let mut result = BulkWriteResult::default();
        for update in updates {
            let update_document = Update::Document(update.update.clone());
            if let Some((_, modified)) =
                InMemoryKeyVault::update_first(&mut documents, &update.filter, &update_document)?
            {
                result.matched_count += 1;
                result.modified_count += u64::from(modified);
            }
        }
        Ok(result)
    }
}

impl KeyVault for InMemoryKeyVault {
    fn find(&self, filter: &Document) -> IoResult<Vec<Document>> {
        Ok(InMemoryKeyVault::find(self, filter)?)
    }

    fn insert_one(&self, document: &Document) -> IoResult<()> {
        Ok(InMemoryKeyVault::insert_one(self, document)?)
    }

    fn delete_one(&self, filter: &Document) -> IoResult<u64> {
        Ok(InMemoryKeyVault::delete_one(self, filter)?)
    }

    fn find_one_and_update(&self, filter: &Document, update: &Update) -> IoResult<Option<Document>> {
        Ok(InMemoryKeyVault::find_one_and_update(self, filter, update)?)
    }

    fn bulk_update(&self, updates: &[UpdateOne]) -> IoResult<BulkWriteResult> {
        Ok(InMemoryKeyVault::bulk_update(self, updates)?)
    }
}

impl AsyncKeyVault for InMemoryKeyVault {
    async fn find(&self, filter: &Document) -> IoResult<Vec<Document>> {
        Ok(InMemoryKeyVault::find(self, filter)?)
    }

    async fn insert_one(&self, document: &Document) -> IoResult<()> {
        Ok(InMemoryKeyVault::insert_one(self, document)?)
    }

    async fn delete_one(&self, filter: &Document) -> IoResult<u64> {
        Ok(InMemoryKeyVault::delete_one(self, filter)?)
    }

    async fn find_one_and_update(&self, filter: &Document, update: &Update) -> IoResult<Option<Document>> {
        Ok(InMemoryKeyVault::find_one_and_update(self, filter, update)?)
    }

    async fn bulk_update(&self, updates: &[UpdateOne]) -> IoResult<BulkWriteResult> {
        Ok(InMemoryKeyVault::bulk_update(self, updates)?)
    }
}

fn position(documents: &[Document], filter: &Document) -> Result<Option<usize>> {
    for (index, document) in documents.iter().enumerate() {
        if matches(document, filter)? {
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// The unique indexes: `_id`, and each name of `keyAltNames` (where the field exists).
fn check_unique(documents: &[Document], replacing: Option<usize>, document: &Document) -> Result<()> {
    let others = documents.iter().enumerate().filter(|(index, _)| Some(*index) != replacing).map(|(_, d)| d);
    for other in others {
        if let (Some(id), Some(other_id)) = (document.get("_id"), other.get("_id")) {
            if id == other_id {
                return Err(InMemoryKeyVaultError::DuplicateKey { field: "_id", value: Box::new(id.clone()) });
            }
        }
        let other_names = alt_name_keys(other);
        if let Some(name) = alt_name_keys(document).into_iter().find(|name| other_names.contains(name)) {
            return Err(InMemoryKeyVaultError::DuplicateKey { field: "keyAltNames", value: Box::new(name.clone()) });
        }
    }
    Ok(())
}

/// The index keys of `keyAltNames`: each element of an array, or the value itself.
fn alt_name_keys(document: &Document) -> Vec<&Bson> {
    match document.get("keyAltNames") {
        Some(Bson::Array(names)) => names.iter().collect(),
        Some(name) => vec![name],
        None => Vec::new(),
    }
}

/// Whether `document` matches the query `filter`.
fn matches(document: &Document, filter: &Document) -> Result<bool> {
    for (key, condition) in filter {
        let matched = match key.as_str() {
            "$and" | "$or" => {
                let Bson::Array(clauses) = condition else { return unsupported(format!("{key} of {condition}")) };
                let mut results = Vec::with_capacity(clauses.len());
                for clause in clauses {
                    let Bson::Document(clause) = clause else { return unsupported(format!("{key} clause {clause}")) };
                    results.push(matches(document, clause)?);
                }
                if key == "$and" {
                    results.iter().all(|&r| r)
                } else {
                    results.iter().any(|&r| r)
                }
            }
            operator if operator.starts_with('$') => return unsupported(format!("query operator {operator}")),
            path if path.contains('.') => return unsupported(format!("dotted path {path}")),
            field => field_matches(document.get(field), condition)?,
        };
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether a field's value (`None`: missing) meets a condition: a value to equal, or a document of operators.
fn field_matches(value: Option<&Bson>, condition: &Bson) -> Result<bool> {
    let operators = match condition {
        Bson::Document(operators) if operators.keys().next().is_some_and(|key| key.starts_with('$')) => operators,
        target => return Ok(equals(value, target)),
    };
    for (operator, operand) in operators {
        let met = match (operator.as_str(), operand) {
            ("$eq", target) => equals(value, target),
            ("$ne", target) => !equals(value, target),
            ("$in", Bson::Array(targets)) => targets.iter().any(|target| equals(value, target)),
            ("$exists", Bson::Boolean(exists)) => value.is_some() == *exists,
            (operator, operand) => return unsupported(format!("{operator} with {operand}")),
        };
        if !met {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Query equality: the value itself, or for an array, any element; a missing field equals null.
fn equals(value: Option<&Bson>, target: &Bson) -> bool {
    match value {
        None => *target == Bson::Null,
        Some(value) if value == target => true,
        Some(Bson::Array(elements)) => elements.contains(target),
        Some(_) => false,
    }
}

fn apply_update_document(document: &Document, update: &Document) -> Result<Document> {
    let mut updated = document.clone();
    for (operator, fields) in update {
        let Bson::Document(fields) = fields else { return unsupported(format!("{operator} of {fields}")) };
        for (field, value) in fields {
            if field.contains('.') {
                return unsupported(format!("dotted path {field}"));
            }
            match operator.as_str() {
                "$set" => {
                    updated.insert(field.clone(), value.clone());
                }
                "$addToSet" => match updated.get_mut(field) {
                    None => {
                        updated.insert(field.clone(), vec![value.clone()]);
                    }
                    Some(Bson::Array(elements)) => {
                        if !elements.contains(value) {
                            elements.push(value.clone());
                        }
                    }
                    Some(other) => return unsupported(format!("$addToSet on the non-array {field}: {other}")),
                },
                "$currentDate" if *value == Bson::Boolean(true) => {
                    updated.insert(field.clone(), DateTime::now());
                }
                operator => return unsupported(format!("update operator {operator} with {value}")),
            }
        }
    }
    Ok(updated)
}

fn apply_pipeline(document: &Document, stages: &[Document]) -> Result<Document> {
    let mut current = document.clone();
    for stage in stages {
        let mut next = current.clone();
        for (name, fields) in stage {
            let ("$set", Bson::Document(fields)) = (name.as_str(), fields) else {
                return unsupported(format!("pipeline stage {name}"));
            };
            for (field, expression) in fields {
                // Every expression of a stage sees the stage's input document.
                match evaluate(&current, None, expression)? {
                    Some(value) => {
                        next.insert(field.clone(), value);
                    }
                    None => {
                        next.remove(field);
                    }
                }
            }
        }
        current = next;
    }
    Ok(current)
}

/// An aggregation expression's value in `document`; `None` is a missing value (a missing field, `$$REMOVE`).
/// `this` is the current element inside `$filter`.
fn evaluate(document: &Document, this: Option<&Bson>, expression: &Bson) -> Result<Option<Bson>> {
    Ok(match expression {
        Bson::String(variable) if variable.starts_with("$$") => match variable.as_str() {
            "$$REMOVE" => None,
            "$$this" => this.cloned(),
            other => return unsupported(format!("variable {other}")),
        },
        Bson::String(path) if path.starts_with('$') => {
            let field = &path[1..];
            if field.contains('.') {
                return unsupported(format!("dotted path {path}"));
            }
            document.get(field).cloned()
        }
        Bson::Array(elements) => {
            let mut values = Vec::with_capacity(elements.len());
            for element in elements {
                values.push(evaluate(document, this, element)?.unwrap_or(Bson::Null));
            }
            Some(Bson::Array(values))
        }
        Bson::Document(object) => match single_operator(object) {
            Some((name, operand)) => evaluate_operator(document, this, name, operand)?,
            None => {
                let mut values = Document::new();
                for (field, value) in object {
                    if let Some(value) = evaluate(document, this, value)? {
                        values.insert(field.clone(), value);
                    }
                }
                Some(Bson::Document(values))
            }
        },
        literal => Some(literal.clone()),
    })
}

/// The operator of an operator expression (`{"$name": operand}`), or `None` for an object literal.
fn single_operator(object: &Document) -> Option<(&str, &Bson)> {
    let mut fields = object.iter();
    match (fields.next(), fields.next()) {
        (Some((name, operand)), None) if name.starts_with('$') => Some((name.as_str(), operand)),
        _ => None,
    }
}

fn evaluate_operator(document: &Document, this: Option<&Bson>, name: &str, operand: &Bson) -> Result<Option<Bson>> {
    let arguments = |count: usize| -> Result<Vec<Option<Bson>>> {
        match operand {
            Bson::Array(arguments) if arguments.len() == count => {
                arguments.iter().map(|argument| evaluate(document, this, argument)).collect()
            }
            _ => unsupported(format!("{name} of {operand}")),
        }
    };
    Ok(match name {
        // Aggregation equality compares whole values (no array matching); a missing value is less than null.
        "$eq" | "$ne" => {
            let values = arguments(2)?;
            let equal = values[0] == values[1];
            Some(Bson::Boolean(if name == "$eq" { equal } else { !equal }))
        }
        "$cond" => {
            let mut values = arguments(3)?.into_iter();
            let (condition, then, otherwise) =
                (values.next().flatten(), values.next().flatten(), values.next().flatten());
            if truthy(condition.as_ref()) {
                then
            } else {
                otherwise
            }
        }
        "$filter" => {
            let Bson::Document(spec) = operand else { return unsupported(format!("$filter of {operand}")) };
            let (Some(input), Some(condition), None) = (spec.get("input"), spec.get("cond"), spec.get("as")) else {
                return unsupported(format!("$filter of {operand}"));
            };
            match evaluate(document, this, input)? {
                // A missing or null input filters to null, as the server's $filter does.
                None | Some(Bson::Null) => Some(Bson::Null),
                Some(Bson::Array(elements)) => {
                    let mut kept = Vec::new();
                    for element in elements {
                        if truthy(evaluate(document, Some(&element), condition)?.as_ref()) {
                            kept.push(element);
                        }
                    }
                    Some(Bson::Array(kept))
                }
                Some(other) => return unsupported(format!("$filter input {other}")),
            }
        }
        other => return unsupported(format!("expression operator {other}")),
    })
}

/// Aggregation truth: everything but false, null, missing, undefined and zero.
fn truthy(value: Option<&Bson>) -> bool {
    match value {
        None | Some(Bson::Null | Bson::Undefined | Bson::Boolean(false)) => false,
        Some(Bson::Int32(n)) => *n != 0,
        Some(Bson::Int64(n)) => *n != 0,
        Some(Bson::Double(n)) => *n != 0.0,
        Some(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use libmongocrypt::bson::doc;
    use libmongocrypt::bson::spec::BinarySubtype;
    use libmongocrypt::bson::Binary;

    use super::*;

    fn id(byte: u8) -> Binary {
        Binary { subtype: BinarySubtype::Uuid, bytes: vec![byte; 16] }
    }

    fn vault() -> InMemoryKeyVault {
        InMemoryKeyVault::with_documents(vec![
            doc! { "_id": id(1), "keyAltNames": ["a", "b"] },
            doc! { "_id": id(2) },
            doc! { "_id": id(3), "keyAltNames": ["c"] },
        ])
    }

    fn ids(documents: Vec<Document>) -> Vec<u8> {
        documents.iter().map(id_byte).collect()
    }

    fn id_byte(document: &Document) -> u8 {
        match document.get("_id") {
            Some(Bson::Binary(binary)) => binary.bytes[0],
            other => panic!("_id {other:?}"),
        }
    }

    #[test]
    fn filters_match_as_the_server_does() {
        let vault = vault();
        // libmongocrypt's key filter.
        let keys = doc! { "$or": [{ "_id": { "$in": [id(2)] } }, { "keyAltNames": { "$in": ["c"] } }] };
        assert_eq!(ids(vault.find(&keys).unwrap()), [2, 3]);
        assert_eq!(ids(vault.find(&doc! { "keyAltNames": "b" }).unwrap()), [1]);
        assert_eq!(ids(vault.find(&doc! { "keyAltNames": { "$ne": "b" } }).unwrap()), [2, 3]);
        assert_eq!(ids(vault.find(&doc! { "keyAltNames": { "$exists": false } }).unwrap()), [2]);
        assert_eq!(ids(vault.find(&doc! { "keyAltNames": Bson::Null }).unwrap()), [2], "missing equals null");
        let both = doc! { "$and": [{ "keyAltNames": "a" }, { "_id": { "$eq": id(1) } }] };
        assert_eq!(ids(vault.find(&both).unwrap()), [1]);
        assert_eq!(ids(vault.find(&doc! {}).unwrap()), [1, 2, 3]);
        for unsupported in [doc! { "$nor": [] }, doc! { "a": { "$gt": 1 } }, doc! { "a.b": 1 }] {
            assert!(matches!(vault.find(&unsupported), Err(InMemoryKeyVaultError::Unsupported(_))), "{unsupported}");
        }
    }

    #[test]
    fn update_documents_apply_set_add_to_set_and_current_date() {
        let vault = vault();
        let update = Update::Document(doc! {
            "$addToSet": { "keyAltNames": "d" },
            "$set": { "status": 1 },
            "$currentDate": { "updateDate": true },
        });
        let before = vault.find_one_and_update(&doc! { "_id": id(2) }, &update).unwrap();
        assert_eq!(before, Some(doc! { "_id": id(2) }));
        let after = vault.find(&doc! { "_id": id(2) }).unwrap().remove(0);
        assert_eq!(after.get_array("keyAltNames").unwrap(), &vec![Bson::from("d")]);
        assert_eq!(after.get_i32("status").unwrap(), 1);
        assert!(after.get_datetime("updateDate").is_ok());
        assert_eq!(vault.find_one_and_update(&doc! { "_id": id(9) }, &update).unwrap(), None);

        let bad = Update::Document(doc! { "$addToSet": { "status": "x" } });
        assert!(matches!(
            vault.find_one_and_update(&doc! { "_id": id(2) }, &bad),
            Err(InMemoryKeyVaultError::Unsupported(_))
        ));
        let moves_id = Update::Document(doc! { "$set": { "_id": id(7) } });
        assert!(matches!(
            vault.find_one_and_update(&doc! { "_id": id(2) }, &moves_id),
            Err(InMemoryKeyVaultError::Unsupported(_))
        ));
    }

    #[test]
    fn pipelines_evaluate_cond_eq_ne_filter_and_remove() {
        let vault = vault();
        let remove = |name: &str| {
            Update::Pipeline(vec![doc! {
                "$set": { "keyAltNames": { "$cond": [
                    { "$eq": ["$keyAltNames", [name]] },
                    "$$REMOVE",
                    { "$filter": { "input": "$keyAltNames", "cond": { "$ne": ["$$this", name] } } },
                ] } },
            }])
        };
        vault.find_one_and_update(&doc! { "_id": id(1) }, &remove("a")).unwrap();
        vault.find_one_and_update(&doc! { "_id": id(3) }, &remove("c")).unwrap();
        // A key without names: the server's $filter of a missing array is null.
        vault.find_one_and_update(&doc! { "_id": id(2) }, &remove("x")).unwrap();
        assert_eq!(
            vault.documents(),
            [
                doc! { "_id": id(1), "keyAltNames": ["b"] },
                doc! { "_id": id(2), "keyAltNames": Bson::Null },
                doc! { "_id": id(3) },
            ]
        );
        let unknown = Update::Pipeline(vec![doc! { "$set": { "n": { "$add": [1, 2] } } }]);
        assert!(matches!(
            vault.find_one_and_update(&doc! { "_id": id(1) }, &unknown),
            Err(InMemoryKeyVaultError::Unsupported(_))
        ));
    }

    #[test]
    fn unique_indexes_refuse_duplicates_and_change_nothing() {
        let vault = vault();
        let duplicate_id = vault.insert_one(&doc! { "_id": id(2) }).unwrap_err();
        assert_eq!(duplicate_id, InMemoryKeyVaultError::DuplicateKey { field: "_id", value: Box::new(id(2).into()) });
        let duplicate_name = vault.insert_one(&doc! { "_id": id(4), "keyAltNames": ["z", "c"] }).unwrap_err();
        assert_eq!(
            duplicate_name,
            InMemoryKeyVaultError::DuplicateKey { field: "keyAltNames", value: Box::new(Bson::from("c")) }
        );
        let update = Update::Document(doc! { "$addToSet": { "keyAltNames": "a" } });
        assert!(vault.find_one_and_update(&doc! { "_id": id(3) }, &update).is_err());
        assert_eq!(vault.documents(), self::vault().documents());
        assert_eq!(vault.delete_one(&doc! { "keyAltNames": "c" }).unwrap(), 1);
        assert_eq!(vault.delete_one(&doc! { "keyAltNames": "c" }).unwrap(), 0);
    }

    #[test]
    fn bulk_updates_count_matched_and_modified() {
        let vault = vault();
        let updates = [
            UpdateOne { filter: doc! { "_id": id(1) }, update: doc! { "$set": { "status": 1 } } },
            // Matches, changes nothing.
            UpdateOne { filter: doc! { "_id": id(3) }, update: doc! { "$set": { "keyAltNames": ["c"] } } },
            UpdateOne { filter: doc! { "_id": id(9) }, update: doc! { "$set": { "status": 1 } } },
        ];
        assert_eq!(vault.bulk_update(&updates).unwrap(), BulkWriteResult { matched_count: 2, modified_count: 1 });
        assert_eq!(vault.find(&doc! { "status": 1 }).unwrap().len(), 1);
    }
}
