//! Feature `serde`: the option types a driver exposes (de)serialize as the client-side encryption spec writes
//! them, so that a driver's own options (a map keyed by KMS provider, an algorithm, a query type, range and text
//! options) can derive Deserialize over them.

use std::collections::BTreeMap;

use libmongocrypt::bson::Bson;
use libmongocrypt::{AffixOptions, Algorithm, KmsProvider, QueryType, RangeOptions, TextOptions};
use serde::Deserialize;

/// A driver-style options struct, as a driver would declare it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptOptions {
    kms_providers: BTreeMap<KmsProvider, serde_json::Value>,
    algorithm: Algorithm,
    query_type: Option<QueryType>,
    range_options: Option<RangeOptions>,
}

#[test]
fn a_driver_options_struct_deserializes_over_them() {
    let options: EncryptOptions = serde_json::from_str(
        r#"{
            "kmsProviders": { "aws": {}, "local:key1": { "key": "AA==" } },
            "algorithm": "Range",
            "queryType": "range",
            "rangeOptions": { "min": 0, "max": 200, "sparsity": 1, "trimFactor": 2 }
        }"#,
    )
    .unwrap();
    let providers: Vec<String> = options.kms_providers.keys().map(ToString::to_string).collect();
    assert_eq!(providers, ["aws", "local:key1"]);
    assert_eq!(options.kms_providers.keys().nth(1).unwrap().name(), Some("key1"));
    assert_eq!(options.algorithm, Algorithm::Range);
    assert_eq!(options.query_type, Some(QueryType::Range));
    assert_eq!(
        options.range_options,
        Some(RangeOptions {
            min: Some(Bson::Int32(0)),
            max: Some(Bson::Int32(200)),
            sparsity: Some(1),
            precision: None,
            trim_factor: Some(2),
        })
    );
}

#[test]
fn the_strings_round_trip() {
    for name in ["AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic", "AEAD_AES_256_CBC_HMAC_SHA_512-Random", "Indexed"] {
        let algorithm: Algorithm = serde_json::from_value(name.into()).unwrap();
        assert_eq!(algorithm.as_str(), name);
        assert_eq!(serde_json::to_value(&algorithm).unwrap(), name);
    }
    assert_eq!(serde_json::from_value::<Algorithm>("Unindexed".into()).unwrap(), Algorithm::Unindexed);
    assert_eq!(serde_json::from_value::<Algorithm>("string".into()).unwrap(), Algorithm::String);
    assert_eq!(serde_json::to_value(QueryType::Equality).unwrap(), "equality");
    assert_eq!(
        serde_json::from_value::<QueryType>("prefixPreview".into()).unwrap(),
        QueryType::Other("prefixPreview".into())
    );
    assert_eq!(serde_json::to_value(KmsProvider::kmip().named("k_1").unwrap()).unwrap(), "kmip:k_1");
    assert_eq!(serde_json::from_value::<KmsProvider>("gcp".into()).unwrap(), KmsProvider::gcp());
}

#[test]
fn bad_strings_are_deserialize_errors() {
    let err = serde_json::from_value::<KmsProvider>("aws:".into()).unwrap_err();
    assert_eq!(err.to_string(), r#"invalid argument: not a KMS provider (kind or kind:name): "aws:""#);
    let err = serde_json::from_value::<Algorithm>("".into()).unwrap_err();
    assert_eq!(err.to_string(), r#"invalid argument: not an algorithm name: """#);
    assert!(serde_json::from_value::<QueryType>(7.into()).is_err(), "a number is no query type");
}

#[test]
fn text_options_use_the_spec_field_names() {
    let opts = TextOptions {
        case_sensitive: true,
        diacritic_sensitive: false,
        prefix: Some(AffixOptions { str_max_query_length: 10, str_min_query_length: 2 }),
        suffix: None,
        substring: None,
    };
    let json = serde_json::to_value(&opts).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "caseSensitive": true,
            "diacriticSensitive": false,
            "prefix": { "strMaxQueryLength": 10, "strMinQueryLength": 2 },
        })
    );
    assert_eq!(serde_json::from_value::<TextOptions>(json).unwrap(), opts);
    let range = RangeOptions { sparsity: Some(3), ..RangeOptions::default() };
    assert_eq!(serde_json::to_value(&range).unwrap(), serde_json::json!({ "sparsity": 3 }));
}
