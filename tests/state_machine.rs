//! The `state_machine` example against the reference output of libmongocrypt's `test/example-state-machine.c`
//! (`tests/data/example/reference-output.normalized.txt`): byte for byte, once the run-dependent parts are masked
//! as the reference masks them. Also checks the example's libbson-style printer on its own, and its extended JSON
//! reader (the repository's only one) on every data file.

// The async example includes the blocking one as its `blocking` module.
#[path = "../examples/async_state_machine.rs"]
#[allow(dead_code)]
mod async_example;

use async_example::blocking as example;

use std::path::{Path, PathBuf};

use example::extjson::{document_to_libbson_json, parse_document, parse_to_document, to_libbson_json};
use libmongocrypt::bson::spec::BinarySubtype;
use libmongocrypt::bson::{doc, rawdoc, Binary, Bson, DateTime, Document};

const REFERENCE: &str = include_str!("data/example/reference-output.normalized.txt");

/// Replaces the `len` bytes after each `marker` with `mask`, after checking them with `valid`.
fn mask_after(text: &str, marker: &str, len: usize, valid: impl Fn(&str) -> bool, mask: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let start = at + marker.len();
        let value = rest.get(start..start + len).unwrap_or_else(|| panic!("truncated value after {marker:?}"));
        assert!(valid(value), "unexpected value after {marker:?}: {value:?}");
        out.push_str(&rest[..start]);
        out.push_str(mask);
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

fn digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// The reference's masking: `X-Amz-Date:<AMZDATE>`, `Credential=example/<DATE>/`, `Signature=<SIG>`, and the
/// base64 of the random explicit ciphertext as `<RANDOM-CIPHERTEXT>`. Returns the masked text and the ciphertext.
fn mask(output: &str) -> (String, String) {
    let s = mask_after(
        output,
        "X-Amz-Date:",
        16,
        |v| digits(&v[..8]) && &v[8..9] == "T" && digits(&v[9..15]) && v.ends_with('Z'),
        "<AMZDATE>",
    );
    let s = mask_after(&s, "Credential=example/", 9, |v| digits(&v[..8]) && v.ends_with('/'), "<DATE>/");
    let s = mask_after(&s, "Signature=", 64, |v| v.bytes().all(|b| b.is_ascii_hexdigit()), "<SIG>");

    let section = s.find("******* EXPLICIT ENCRYPTION *******").expect("explicit encryption section");
    let marker = "\"base64\" : \"";
    let start = section + s[section..].find(marker).expect("explicit ciphertext") + marker.len();
    let len = s[start..].find('"').expect("end of the ciphertext");
    let ciphertext = s[start..start + len].to_owned();
    (format!("{}<RANDOM-CIPHERTEXT>{}", &s[..start], &s[start + len..]), ciphertext)
}

fn example_output() -> String {
    let mut out = Vec::new();
    example::run(&mut out).expect("the example runs");
    String::from_utf8(out).expect("UTF-8 output")
}

#[test]
fn output_matches_the_reference_byte_for_byte_after_masking() {
    let (masked, ciphertext) = mask(&example_output());
    if masked != REFERENCE {
        for (i, (got, want)) in masked.lines().zip(REFERENCE.lines()).enumerate() {
            assert_eq!(got, want, "line {} differs", i + 1);
        }
        assert_eq!(masked.lines().count(), REFERENCE.lines().count(), "line counts differ");
    }
    assert_eq!(masked, REFERENCE);

    // The masked ciphertext is a Random FLE1 ciphertext (blob subtype 2) of the example key ("aaaa...").
    let bytes = Binary::from_base64(&ciphertext, None).expect("base64").bytes;
    assert_eq!(bytes[0], 2, "Random blob subtype");
    assert_eq!(&bytes[1..17], b"aaaaaaaaaaaaaaaa", "key id");
    assert_eq!(bytes[17], 2, "original BSON type: string");
}

#[test]
fn the_async_example_prints_what_the_blocking_one_does() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut out = Vec::new();
    runtime.block_on(async_example::run(&mut out)).expect("the async example runs");
    let (async_masked, async_ciphertext) = mask(&String::from_utf8(out).expect("UTF-8 output"));
    let (blocking_masked, blocking_ciphertext) = mask(&example_output());
    assert_eq!(async_masked, blocking_masked);
    assert_eq!(async_masked, REFERENCE);
    assert_ne!(async_ciphertext, blocking_ciphertext, "Random ciphertexts, of the same length");
    assert_eq!(async_ciphertext.len(), blocking_ciphertext.len());
}

#[test]
fn random_ciphertexts_differ_between_runs() {
    let (_, first) = mask(&example_output());
    let (_, second) = mask(&example_output());
    assert_ne!(first, second);
}

#[test]
fn the_credential_scope_has_the_request_date() {
    let output = example_output();
    let at = output.find("X-Amz-Date:").expect("a date header") + "X-Amz-Date:".len();
    let amz_date = &output[at..at + 8];
    let credential = output.find("Credential=example/").expect("a credential") + "Credential=example/".len();
    assert_eq!(&output[credential..credential + 8], amz_date, "the credential scope has the request's date");
}

#[test]
fn printer_matches_libbson_layout() {
    assert_eq!(document_to_libbson_json(&Document::new()), "{ }");
    assert_eq!(to_libbson_json(&rawdoc! { "name": "test" }).unwrap(), r#"{ "name" : "test" }"#);
    assert_eq!(
        document_to_libbson_json(&doc! { "a": [1, 2], "e": [], "d": {}, "n": null, "t": true }),
        r#"{ "a" : [ 1, 2 ], "e" : [  ], "d" : {  }, "n" : null, "t" : true }"#
    );
    assert_eq!(
        document_to_libbson_json(&doc! { "x": [[], {}, { "y": [{}] }], "z": { "e": {} } }),
        r#"{ "x" : [ [  ], {  }, { "y" : [ {  } ] } ], "z" : { "e" : {  } } }"#
    );
    assert_eq!(document_to_libbson_json(&doc! { "s": "q\"b\\n\n\t\u{1}é" }), r#"{ "s" : "q\"b\\n\n\t\u0001é" }"#);
    // Doubles are bson's relaxed form (libbson's would be %.20g); the example prints none.
    assert_eq!(
        document_to_libbson_json(&doc! { "i": 1_i64 << 40, "j": -7_i64, "f": 1.0, "nan": f64::NAN }),
        r#"{ "i" : 1099511627776, "j" : -7, "f" : 1.0, "nan" : { "$numberDouble" : "NaN" } }"#
    );
    assert_eq!(
        document_to_libbson_json(&doc! {
            "d0": DateTime::from_millis(0),
            "d1": DateTime::from_millis(1_557_827_033_449),
            "d2": DateTime::from_millis(-1),
        }),
        r#"{ "d0" : { "$date" : "1970-01-01T00:00:00Z" }, "d1" : { "$date" : "2019-05-14T09:43:53.449Z" }, "d2" : { "$date" : { "$numberLong" : "-1" } } }"#
    );
    let bin = Binary { subtype: BinarySubtype::Uuid, bytes: b"aaaaaaaaaaaaaaaa".to_vec() };
    assert_eq!(
        document_to_libbson_json(&doc! { "b": bin, "m": Bson::MinKey }),
        r#"{ "b" : { "$binary" : { "base64" : "YWFhYWFhYWFhYWFhYWFhYQ==", "subType" : "04" } }, "m" : { "$minKey" : 1 } }"#
    );
}

#[test]
fn reader_normalizes_the_legacy_binary_form() {
    // Legacy `$binary` at any depth, one- or two-digit subtypes, file order kept; a `$type` query operator is left
    // alone, and so is a `$binary` object of another shape (bson's conversion then rejects it).
    let doc = parse_to_document(
        r#"{"z": {"$binary": "YWFh", "$type": "06"}, "a": [{"$type": "4", "$binary": "YWFh"}],
            "q": {"x": {"$type": "string"}}, "c": {"$binary": {"base64": "YWFh", "subType": "00"}}}"#,
    )
    .unwrap();
    let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
    assert_eq!(keys, ["z", "a", "q", "c"]);
    let bin = |subtype, bytes: &[u8]| Bson::Binary(Binary { subtype, bytes: bytes.to_vec() });
    assert_eq!(doc.get("z"), Some(&bin(BinarySubtype::Encrypted, b"aaa")));
    assert_eq!(doc.get_array("a").unwrap()[0], bin(BinarySubtype::Uuid, b"aaa"));
    assert_eq!(doc.get_document("q").unwrap(), &doc! { "x": { "$type": "string" } });
    assert_eq!(doc.get("c"), Some(&bin(BinarySubtype::Generic, b"aaa")));

    for bad in ["", "{", "[1]", r#"{"a": 1} x"#, r#"{"b": {"$binary": "YWFh", "$type": "06", "x": 1}}"#] {
        assert!(parse_document(bad).is_err(), "{bad:?} parsed");
    }
}

/// Every `.json` file under `tests/data`, sorted.
fn data_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            data_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out.sort();
}

#[test]
fn every_data_file_loads_and_round_trips_through_the_printer() {
    let mut files = Vec::new();
    data_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data"), &mut files);
    let mut documents = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        if text.trim_start().starts_with('[') {
            // kms-reply-parsing/kms-tests-aws.json: plain JSON test cases, read with serde_json by their test.
            assert!(matches!(serde_json::from_str(&text), Ok(serde_json::Value::Array(_))), "{}", path.display());
            continue;
        }
        let doc = example::read_json(path).unwrap();
        // What the example prints, read back, is the same BSON: the printer loses nothing the files use.
        let printed = to_libbson_json(&doc).unwrap();
        assert_eq!(parse_document(&printed).unwrap(), doc, "{}", path.display());
        documents += 1;
    }
    assert_eq!(documents, 18, "{files:?}");

    // encrypted-command.json has the legacy {"$binary": "<base64>", "$type": "06"}.
    let doc = example::read_json(&example::data_dir().join("encrypted-command.json")).unwrap();
    let ssn = doc.get_document("filter").unwrap().get_binary("ssn").unwrap();
    assert_eq!(u8::from(ssn.subtype), 6);
    assert_eq!(ssn.bytes.len(), 98);
    assert_eq!(doc.iter().map(|e| e.unwrap().0).collect::<Vec<_>>(), ["filter", "find"], "file order kept");
}

#[test]
fn http_replies_get_crlf_line_ends() {
    assert_eq!(example::crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
    let reply = example::read_http(&example::data_dir().join("kms-decrypt-reply.txt")).unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 200 OK\r\nx-amzn-RequestId: "));
    let body = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(reply.len() - body, 233, "Content-Length counts the body only");
    assert_eq!(example::escape_crlf(b"a\r\nb"), "a\\r\\nb");
}
