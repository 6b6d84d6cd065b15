//! Typed option values for `Crypt` and `Ctx` setopts. Each converts to the string or BSON document that
//! mongocrypt.h documents for its setopt; every setopt that takes a document also has a raw-document form.

use std::ffi::CStr;
use std::fmt;
use std::str::FromStr;

use crate::bson::spec::BinarySubtype;
use crate::bson::{doc, Binary, Bson, Document};
use zeroize::Zeroize;

/// An explicit encryption algorithm (`mongocrypt_ctx_setopt_algorithm`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// CSFLE deterministic encryption: equal plaintexts give equal ciphertexts.
    Deterministic,
    /// CSFLE randomized encryption.
    Random,
    /// Queryable Encryption, equality-indexed.
    Indexed,
    /// Queryable Encryption, not indexed.
    Unindexed,
    /// Queryable Encryption, range-indexed; set [`RangeOptions`] too.
    Range,
    /// Queryable Encryption on strings (prefix, suffix, substring); set [`TextOptions`] too. The name `"string"` is
    /// libmongocrypt 1.21's; 1.15 to 1.17 call the algorithm `"TextPreview"` and its query types `"prefixPreview"`,
    /// `"suffixPreview"` and `"substringPreview"` (pass those through [`Algorithm::Other`] and `QueryType::Other`).
    String,
    /// Any name libmongocrypt accepts that this enum does not list.
    Other(String),
}

impl Algorithm {
    /// The name libmongocrypt expects.
    pub fn as_str(&self) -> &str {
        match self {
            Algorithm::Other(name) => name,
            known => known.c_name().and_then(|name| name.to_str().ok()).unwrap_or_default(),
        }
    }

    /// The name of a listed algorithm as a static C string: passed as it is, with no copy to make and wipe.
    #[inline]
    pub(crate) fn c_name(&self) -> Option<&'static CStr> {
        Some(match self {
            Algorithm::Deterministic => c"AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic",
            Algorithm::Random => c"AEAD_AES_256_CBC_HMAC_SHA_512-Random",
            Algorithm::Indexed => c"Indexed",
            Algorithm::Unindexed => c"Unindexed",
            Algorithm::Range => c"Range",
            Algorithm::String => c"string",
            Algorithm::Other(_) => return None,
        })
    }
}

impl FromStr for Algorithm {
    type Err = crate::Error;

    /// Parses the names of the client-side encryption spec and of libmongocrypt (exact case):
    /// `AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic`, `AEAD_AES_256_CBC_HMAC_SHA_512-Random`, `Indexed`,
    /// `Unindexed`, `Range`, `string`. Any other non-empty name is [`Algorithm::Other`] (`RangePreview`,
    /// `TextPreview`, ...), so that every name round-trips; libmongocrypt judges it at setopt time.
    fn from_str(s: &str) -> crate::Result<Algorithm> {
        Ok(match s {
            "AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic" => Algorithm::Deterministic,
            "AEAD_AES_256_CBC_HMAC_SHA_512-Random" => Algorithm::Random,
            "Indexed" => Algorithm::Indexed,
            "Unindexed" => Algorithm::Unindexed,
            "Range" => Algorithm::Range,
            "string" => Algorithm::String,
            other => Algorithm::Other(option_name("an algorithm", other)?),
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name for an `Other` variant: non-empty and without NUL (which no C string carries).
fn option_name(what: &str, name: &str) -> crate::Result<String> {
    if name.is_empty() || name.contains('\0') {
        return Err(crate::Error::invalid(format!("not {what} name: {name:?}")));
    }
    Ok(name.to_owned())
}

/// A Queryable Encryption query type (`mongocrypt_ctx_setopt_query_type`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueryType {
    /// `equality`.
    Equality,
    /// `range`.
    Range,
    /// `prefix` (string algorithm).
    Prefix,
    /// `suffix` (string algorithm).
    Suffix,
    /// `substring` (string algorithm).
    Substring,
    /// Any name libmongocrypt accepts that this enum does not list.
    Other(String),
}

impl QueryType {
    /// The name libmongocrypt expects.
    pub fn as_str(&self) -> &str {
        match self {
            QueryType::Other(name) => name,
            known => known.c_name().and_then(|name| name.to_str().ok()).unwrap_or_default(),
        }
    }

    /// The name of a listed query type as a static C string: passed as it is, with no copy to make and wipe.
    #[inline]
    pub(crate) fn c_name(&self) -> Option<&'static CStr> {
        Some(match self {
            QueryType::Equality => c"equality",
            QueryType::Range => c"range",
            QueryType::Prefix => c"prefix",
            QueryType::Suffix => c"suffix",
            QueryType::Substring => c"substring",
            QueryType::Other(_) => return None,
        })
    }
}

impl FromStr for QueryType {
    type Err = crate::Error;

    /// Parses `equality`, `range`, `prefix`, `suffix`, `substring` (exact case). Any other non-empty name is
    /// [`QueryType::Other`] (`rangePreview`, `prefixPreview`, ...), so that every name round-trips.
    fn from_str(s: &str) -> crate::Result<QueryType> {
        Ok(match s {
            "equality" => QueryType::Equality,
            "range" => QueryType::Range,
            "prefix" => QueryType::Prefix,
            "suffix" => QueryType::Suffix,
            "substring" => QueryType::Substring,
            other => QueryType::Other(option_name("a query type", other)?),
        })
    }
}

impl fmt::Display for QueryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serde through the string form (`as_str` and `FromStr`), as the client-side encryption spec writes these
/// options: `"aws"`, `"local:name"`, `"Indexed"`, `"equality"`.
#[cfg(feature = "serde")]
macro_rules! serde_as_str {
    ($($ty:ty),* $(,)?) => {$(
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(|e: crate::Error| serde::de::Error::custom(e.message()))
            }
        }
    )*};
}
#[cfg(feature = "serde")]
serde_as_str!(Algorithm, QueryType, KmsProvider);

/// Options of the range algorithm (`mongocrypt_ctx_setopt_algorithm_range`). Unset fields are left out. With the
/// `serde` feature, (de)serialized with the field names of [`to_document`](RangeOptions::to_document).
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase", default))]
pub struct RangeOptions {
    /// Lower bound of the indexed range.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub min: Option<Bson>,
    /// Upper bound of the indexed range.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub max: Option<Bson>,
    /// Sparsity.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub sparsity: Option<i64>,
    /// Precision, for doubles and decimals.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub precision: Option<i32>,
    /// Trim factor.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub trim_factor: Option<i32>,
}

impl RangeOptions {
    /// The document libmongocrypt reads.
    pub fn to_document(&self) -> Document {
        let mut d = Document::new();
        if let Some(min) = &self.min {
            d.insert("min", min.clone());
        }
        if let Some(max) = &self.max {
            d.insert("max", max.clone());
        }
        if let Some(sparsity) = self.sparsity {
            d.insert("sparsity", sparsity);
        }
        if let Some(precision) = self.precision {
            d.insert("precision", precision);
        }
        if let Some(trim_factor) = self.trim_factor {
            d.insert("trimFactor", trim_factor);
        }
        d
    }
}

/// Query length bounds of a prefix or suffix index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "camelCase"))]
pub struct AffixOptions {
    /// `strMaxQueryLength`.
    pub str_max_query_length: i32,
    /// `strMinQueryLength`.
    pub str_min_query_length: i32,
}

/// Bounds of a substring index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "camelCase"))]
pub struct SubstringOptions {
    /// `strMaxLength`.
    pub str_max_length: i32,
    /// `strMaxQueryLength`.
    pub str_max_query_length: i32,
    /// `strMinQueryLength`.
    pub str_min_query_length: i32,
}

/// Options of the string algorithm (`mongocrypt_ctx_setopt_algorithm_text`). With the `serde` feature,
/// (de)serialized with the field names of [`to_document`](TextOptions::to_document).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct TextOptions {
    /// `caseSensitive`.
    pub case_sensitive: bool,
    /// `diacriticSensitive`.
    pub diacritic_sensitive: bool,
    /// `prefix`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub prefix: Option<AffixOptions>,
    /// `suffix`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub suffix: Option<AffixOptions>,
    /// `substring`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub substring: Option<SubstringOptions>,
}

impl TextOptions {
    /// The document libmongocrypt reads.
    pub fn to_document(&self) -> Document {
        let affix = |a: &AffixOptions| {
            doc! { "strMaxQueryLength": a.str_max_query_length, "strMinQueryLength": a.str_min_query_length }
        };
        let mut d = doc! { "caseSensitive": self.case_sensitive, "diacriticSensitive": self.diacritic_sensitive };
        if let Some(prefix) = &self.prefix {
            d.insert("prefix", affix(prefix));
        }
        if let Some(suffix) = &self.suffix {
            d.insert("suffix", affix(suffix));
        }
        if let Some(s) = &self.substring {
            d.insert(
                "substring",
                doc! {
                    "strMaxLength": s.str_max_length,
                    "strMaxQueryLength": s.str_max_query_length,
                    "strMinQueryLength": s.str_min_query_length,
                },
            );
        }
        d
    }
}

/// The kind of a [`KmsProvider`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KmsProviderKind {
    /// AWS KMS, `aws`.
    Aws,
    /// Azure Key Vault, `azure`.
    Azure,
    /// Google Cloud KMS, `gcp`.
    Gcp,
    /// A KMIP server, `kmip`.
    Kmip,
    /// A local master key, `local`.
    Local,
    /// A kind this binding does not know (a newer library's); [`KmsProvider::as_str`] has its text.
    Other,
}

impl KmsProviderKind {
    /// The kind's name, as in `kmsProviders` (`aws`, ...); `None` for [`KmsProviderKind::Other`].
    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            KmsProviderKind::Aws => "aws",
            KmsProviderKind::Azure => "azure",
            KmsProviderKind::Gcp => "gcp",
            KmsProviderKind::Kmip => "kmip",
            KmsProviderKind::Local => "local",
            KmsProviderKind::Other => return None,
        })
    }

    fn from_name(kind: &str) -> KmsProviderKind {
        match kind {
            "aws" => KmsProviderKind::Aws,
            "azure" => KmsProviderKind::Azure,
            "gcp" => KmsProviderKind::Gcp,
            "kmip" => KmsProviderKind::Kmip,
            "local" => KmsProviderKind::Local,
            _ => KmsProviderKind::Other,
        }
    }
}

/// A KMS provider: a kind, and for a named provider (libmongocrypt ≥ 1.9) its name. Its string form is the key
/// of the `kmsProviders` document and the `provider` of a key encryption key: `aws`, `local:name`, ...
///
/// [`KmsCtx::kms_provider`](crate::KmsCtx::kms_provider) returns one, [`KmsProviders`] and [`KeyEncryptionKey`]
/// accept one wherever they take a provider name, and it compares equal to its string.
///
/// ```
/// use libmongocrypt::{KmsProvider, KmsProviderKind};
///
/// let named: KmsProvider = "local:key1".parse()?;
/// assert_eq!((named.kind(), named.name()), (KmsProviderKind::Local, Some("key1")));
/// assert_eq!(named, KmsProvider::local().named("key1")?);
/// assert_eq!(named.to_string(), "local:key1");
/// assert_eq!(KmsProvider::aws(), "aws");
/// assert!("aws:".parse::<KmsProvider>().is_err());
/// # Ok::<(), libmongocrypt::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KmsProvider {
    /// `kind` or `kind:name`.
    id: String,
}

impl KmsProvider {
    /// `aws`.
    pub fn aws() -> KmsProvider {
        KmsProvider { id: "aws".into() }
    }

    /// `azure`.
    pub fn azure() -> KmsProvider {
        KmsProvider { id: "azure".into() }
    }

    /// `gcp`.
    pub fn gcp() -> KmsProvider {
        KmsProvider { id: "gcp".into() }
    }

    /// `kmip`.
    pub fn kmip() -> KmsProvider {
        KmsProvider { id: "kmip".into() }
    }

    /// `local`.
    pub fn local() -> KmsProvider {
        KmsProvider { id: "local".into() }
    }

    /// This kind with a name: `kind:name`. The name must be non-empty and of letters, digits and `_`, as
    /// libmongocrypt requires.
    pub fn named(self, name: &str) -> crate::Result<KmsProvider> {
        format!("{}:{name}", self.kind_str()).parse()
    }

    /// What libmongocrypt returned, taken as it is.
    pub(crate) fn from_id(id: &str) -> KmsProvider {
        KmsProvider { id: id.to_owned() }
    }

    /// The kind.
    pub fn kind(&self) -> KmsProviderKind {
        KmsProviderKind::from_name(self.kind_str())
    }

    fn kind_str(&self) -> &str {
        self.id.split_once(':').map_or(&self.id, |(kind, _)| kind)
    }

    /// The name of a named provider: `key1` of `local:key1`.
    pub fn name(&self) -> Option<&str> {
        self.id.split_once(':').map(|(_, name)| name)
    }

    /// The string form, `kind` or `kind:name`.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl FromStr for KmsProvider {
    type Err = crate::Error;

    /// Parses `kind` or `kind:name`; the kind must be non-empty, and a name non-empty and of ASCII letters, digits
    /// and `_`.
    fn from_str(s: &str) -> crate::Result<KmsProvider> {
        let word = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let valid = match s.split_once(':') {
            Some((kind, name)) => word(kind) && word(name),
            None => word(s),
        };
        if valid {
            Ok(KmsProvider { id: s.to_owned() })
        } else {
            Err(crate::Error::invalid(format!("not a KMS provider (kind or kind:name): {s:?}")))
        }
    }
}

impl fmt::Display for KmsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl AsRef<str> for KmsProvider {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

impl PartialEq<str> for KmsProvider {
    fn eq(&self, other: &str) -> bool {
        self.id == other
    }
}

impl PartialEq<&str> for KmsProvider {
    fn eq(&self, other: &&str) -> bool {
        self.id == *other
    }
}

/// KMS provider credentials (`mongocrypt_setopt_kms_providers`), keyed by provider name. Names may be plain
/// (`aws`) or named instances (`local:name`, libmongocrypt ≥ 1.9). A provider set to an empty document is fetched
/// on demand through the NEED_KMS_CREDENTIALS state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KmsProviders(Document);

impl KmsProviders {
    /// No providers.
    pub fn new() -> KmsProviders {
        KmsProviders::default()
    }

    /// A local master key: 96 bytes.
    pub fn local(self, name: impl AsRef<str>, key: &[u8]) -> KmsProviders {
        self.provider(name, doc! { "key": binary(key) })
    }

    /// AWS credentials; `session_token` for temporary credentials.
    pub fn aws(
        self,
        name: impl AsRef<str>,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
    ) -> Self {
        let mut d = doc! { "accessKeyId": access_key_id, "secretAccessKey": secret_access_key };
        if let Some(token) = session_token {
            d.insert("sessionToken", token);
        }
        self.provider(name, d)
    }

    /// Azure client credentials.
    pub fn azure(self, name: impl AsRef<str>, tenant_id: &str, client_id: &str, client_secret: &str) -> KmsProviders {
        self.provider(name, doc! { "tenantId": tenant_id, "clientId": client_id, "clientSecret": client_secret })
    }

    /// GCP service account: e-mail and PKCS#8 private key (DER bytes).
    pub fn gcp(self, name: impl AsRef<str>, email: &str, private_key: &[u8]) -> KmsProviders {
        self.provider(name, doc! { "email": email, "privateKey": binary(private_key) })
    }

    /// A KMIP server, `host[:port]`.
    pub fn kmip(self, name: impl AsRef<str>, endpoint: &str) -> KmsProviders {
        self.provider(name, doc! { "endpoint": endpoint })
    }

    /// Credentials to be supplied on demand (NEED_KMS_CREDENTIALS): an empty document.
    pub fn on_demand(self, name: impl AsRef<str>) -> KmsProviders {
        self.provider(name, Document::new())
    }

    /// Any provider, with its document as the KMS providers spec defines it. A provider set again under the same
    /// name replaces the earlier one, whose credentials are wiped.
    pub fn provider(mut self, name: impl AsRef<str>, credentials: Document) -> KmsProviders {
        if let Some(mut replaced) = self.0.insert(name.as_ref(), credentials) {
            wipe_value(&mut replaced);
        }
        self
    }

    /// The document libmongocrypt reads.
    pub fn as_document(&self) -> &Document {
        &self.0
    }
}

impl Drop for KmsProviders {
    /// Wipes the credentials: secret keys, passwords and tokens.
    fn drop(&mut self) {
        wipe_document(&mut self.0);
    }
}

fn wipe_document(doc: &mut Document) {
    for (_, value) in doc.iter_mut() {
        wipe_value(value);
    }
}

fn wipe_value(value: &mut Bson) {
    match value {
        Bson::String(s) => s.zeroize(),
        Bson::Binary(b) => b.bytes.zeroize(),
        Bson::Document(d) => wipe_document(d),
        Bson::Array(items) => items.iter_mut().for_each(wipe_value),
        _ => {}
    }
}

/// The key encryption key of a new data key (`mongocrypt_ctx_setopt_key_encryption_key`): `{provider, ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEncryptionKey(Document);

impl KeyEncryptionKey {
    /// A local key; `provider` is `local` or a named one such as `local:name`.
    pub fn local(provider: impl AsRef<str>) -> KeyEncryptionKey {
        KeyEncryptionKey(doc! { "provider": provider.as_ref() })
    }

    /// An AWS KMS key in `region`, by ARN or alias.
    pub fn aws(provider: impl AsRef<str>, region: &str, key: &str) -> KeyEncryptionKey {
        KeyEncryptionKey(doc! { "provider": provider.as_ref(), "region": region, "key": key })
    }

    /// An Azure Key Vault key.
    pub fn azure(provider: impl AsRef<str>, key_vault_endpoint: &str, key_name: &str) -> KeyEncryptionKey {
        KeyEncryptionKey(
            doc! { "provider": provider.as_ref(), "keyVaultEndpoint": key_vault_endpoint, "keyName": key_name },
        )
    }

    /// A GCP Cloud KMS key.
    pub fn gcp(provider: impl AsRef<str>, project_id: &str, location: &str, key_ring: &str, key_name: &str) -> Self {
        KeyEncryptionKey(doc! {
            "provider": provider.as_ref(), "projectId": project_id, "location": location, "keyRing": key_ring, "keyName": key_name,
        })
    }

    /// A KMIP key; the server creates one when no `keyId` is set.
    pub fn kmip(provider: impl AsRef<str>) -> KeyEncryptionKey {
        KeyEncryptionKey(doc! { "provider": provider.as_ref() })
    }

    /// Overrides the KMS endpoint (`endpoint`), for AWS, Azure-less custom hosts, GCP and KMIP.
    pub fn endpoint(self, endpoint: &str) -> KeyEncryptionKey {
        self.with("endpoint", endpoint)
    }

    /// Sets any other field, such as `keyVersion`, `keyId` or `delegated`.
    pub fn with(mut self, field: &str, value: impl Into<Bson>) -> KeyEncryptionKey {
        self.0.insert(field, value.into());
        self
    }

    /// The document libmongocrypt reads.
    pub fn as_document(&self) -> &Document {
        &self.0
    }
}

fn binary(bytes: &[u8]) -> Binary {
    Binary { subtype: BinarySubtype::Generic, bytes: bytes.to_vec() }
}

use crate::binary::BsonInput;

macro_rules! bson_input_via_document {
    ($($ty:ty => $doc:ident),* $(,)?) => {$(
        impl BsonInput for $ty {
            fn bson_bytes(&self) -> crate::Result<std::borrow::Cow<'_, [u8]>> {
                Ok(std::borrow::Cow::Owned(self.$doc().bson_bytes()?.into_owned()))
            }
        }
    )*};
}
bson_input_via_document!(
    KmsProviders => as_document,
    KeyEncryptionKey => as_document,
    RangeOptions => to_document,
    TextOptions => to_document,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_options_leave_out_unset_fields() {
        let opts = RangeOptions { min: Some(Bson::Int32(0)), sparsity: Some(2), ..Default::default() };
        assert_eq!(opts.to_document(), doc! { "min": 0, "sparsity": 2_i64 });
        let all = RangeOptions {
            min: Some(Bson::Int32(0)),
            max: Some(Bson::Int32(9)),
            sparsity: Some(1),
            precision: Some(2),
            trim_factor: Some(3),
        };
        assert_eq!(all.to_document(), doc! { "min": 0, "max": 9, "sparsity": 1_i64, "precision": 2, "trimFactor": 3 });
    }

    #[test]
    fn text_options_match_the_header_layout() {
        let opts = TextOptions {
            case_sensitive: true,
            diacritic_sensitive: false,
            prefix: Some(AffixOptions { str_max_query_length: 10, str_min_query_length: 2 }),
            suffix: None,
            substring: Some(SubstringOptions { str_max_length: 64, str_max_query_length: 8, str_min_query_length: 3 }),
        };
        assert_eq!(
            opts.to_document(),
            doc! {
                "caseSensitive": true,
                "diacriticSensitive": false,
                "prefix": { "strMaxQueryLength": 10, "strMinQueryLength": 2 },
                "substring": { "strMaxLength": 64, "strMaxQueryLength": 8, "strMinQueryLength": 3 },
            }
        );
    }

    #[test]
    fn kms_providers_and_keks_build_the_spec_documents() {
        let providers = KmsProviders::new()
            .local("local:a", &[1, 2])
            .aws("aws", "id", "secret", Some("token"))
            .on_demand("gcp")
            .kmip("kmip", "localhost:5696");
        assert_eq!(
            providers.as_document(),
            &doc! {
                "local:a": { "key": binary(&[1, 2]) },
                "aws": { "accessKeyId": "id", "secretAccessKey": "secret", "sessionToken": "token" },
                "gcp": {},
                "kmip": { "endpoint": "localhost:5696" },
            }
        );
        let kek = KeyEncryptionKey::aws("aws", "us-east-1", "arn").endpoint("example.com").with("keyVersion", "1");
        assert_eq!(
            kek.as_document(),
            &doc! { "provider": "aws", "region": "us-east-1", "key": "arn", "endpoint": "example.com", "keyVersion": "1" }
        );
    }

    #[test]
    fn kms_providers_round_trip_through_their_strings() {
        for (text, kind, name) in [
            ("aws", KmsProviderKind::Aws, None),
            ("azure:east_1", KmsProviderKind::Azure, Some("east_1")),
            ("gcp", KmsProviderKind::Gcp, None),
            ("kmip:k", KmsProviderKind::Kmip, Some("k")),
            ("local:key1", KmsProviderKind::Local, Some("key1")),
            ("vault", KmsProviderKind::Other, None),
        ] {
            let provider: KmsProvider = text.parse().unwrap();
            assert_eq!((provider.kind(), provider.name(), provider.to_string()), (kind, name, text.to_owned()));
            assert_eq!(provider, text);
        }
        for bad in ["", ":", "aws:", ":name", "aws:a:b", "aws:na me", "local:\0"] {
            assert!(bad.parse::<KmsProvider>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(KmsProvider::local().named("k1").unwrap(), "local:k1");
        assert!(KmsProvider::aws().named("").is_err());
        let set: std::collections::HashSet<KmsProvider> =
            ["aws", "aws:a", "aws"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(set.len(), 2);
        let providers =
            KmsProviders::new().local(KmsProvider::local().named("a").unwrap(), &[1]).on_demand(KmsProvider::gcp());
        assert_eq!(providers.as_document(), &doc! { "local:a": { "key": binary(&[1]) }, "gcp": {} });
        assert_eq!(KeyEncryptionKey::local(KmsProvider::local()).as_document(), &doc! { "provider": "local" });
    }

    #[test]
    fn algorithms_and_query_types_parse_the_spec_names() {
        for (text, algorithm) in [
            ("AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic", Algorithm::Deterministic),
            ("AEAD_AES_256_CBC_HMAC_SHA_512-Random", Algorithm::Random),
            ("Indexed", Algorithm::Indexed),
            ("Unindexed", Algorithm::Unindexed),
            ("Range", Algorithm::Range),
            ("string", Algorithm::String),
            ("RangePreview", Algorithm::Other("RangePreview".into())),
            ("TextPreview", Algorithm::Other("TextPreview".into())),
        ] {
            assert_eq!(text.parse::<Algorithm>().unwrap(), algorithm);
            assert_eq!(algorithm.to_string(), text);
        }
        for (text, query_type) in [
            ("equality", QueryType::Equality),
            ("range", QueryType::Range),
            ("prefix", QueryType::Prefix),
            ("suffix", QueryType::Suffix),
            ("substring", QueryType::Substring),
            ("rangePreview", QueryType::Other("rangePreview".into())),
            ("prefixPreview", QueryType::Other("prefixPreview".into())),
        ] {
            assert_eq!(text.parse::<QueryType>().unwrap(), query_type);
            assert_eq!(query_type.to_string(), text);
        }
        for bad in ["", "a\0b"] {
            assert_eq!(bad.parse::<Algorithm>().unwrap_err().kind(), crate::ErrorKind::InvalidArgument, "{bad:?}");
            assert_eq!(bad.parse::<QueryType>().unwrap_err().kind(), crate::ErrorKind::InvalidArgument, "{bad:?}");
        }
        assert_eq!("".parse::<Algorithm>().unwrap_err().message(), "invalid argument: not an algorithm name: \"\"");
    }

    #[test]
    fn wiping_clears_every_secret() {
        let mut d = doc! {
            "local": { "key": binary(&[9; 96]) }, "aws": { "secretAccessKey": "s3cr3t" }, "n": 1, "a": ["t0k3n"],
        };
        wipe_document(&mut d);
        assert_eq!(d, doc! { "local": { "key": binary(&[]) }, "aws": { "secretAccessKey": "" }, "n": 1, "a": [""] });
    }
}
