//! A Rust port of libmongocrypt's `test/example-state-machine.c`: automatic encryption and decryption of a `find`
//! command, then explicit encryption and decryption, with every mongod, mongocryptd and KMS reply mocked from the
//! files in `tests/data/example`. The output has the layout of the C program's, and matches its reference output
//! (`tests/data/example/reference-output.normalized.txt`) once the parts that change on every run (the AWS
//! signature's date and hash, the random ciphertext) are masked.
//!
//! ```text
//! cargo run --example state_machine
//! ```
//!
//! The loop itself is [`mongocrypt::state_machine::run`]; this file supplies the I/O ([`PrintingIo`]), which prints
//! what a driver would send and replies with the file a driver would have received. `tests/state_machine.rs`
//! includes this file and runs [`run`] against the reference. [`extjson`] is the one extended JSON reader of the
//! repository: the tests include this file (through `tests/common`) to read their data files with it.

use std::cell::RefCell;
use std::error::Error as StdError;
use std::io::Write;
use std::path::{Path, PathBuf};

use bson::{rawdoc, RawDocument, RawDocumentBuf};
use mongocrypt::state_machine::{self as sm, IoResult, StateMachineIo};
use mongocrypt::{Algorithm, Crypt, KmsCtx, KmsProviders};

/// `tests/data/example`, where the mocked replies live.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/example")
}

/// Reads an extended JSON file as BSON, keeping its field order (as libbson's `bson_json_reader` does).
pub fn read_json(path: &Path) -> Result<RawDocumentBuf, Box<dyn StdError + Send + Sync>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("could not open {}: {e}", path.display()))?;
    extjson::parse_document(&text).map_err(|e| format!("could not read json from {}: {e}", path.display()).into())
}

/// Reads an HTTP reply, turning bare `\n` line ends into `\r\n` as the C example's `_read_http` does.
pub fn read_http(path: &Path) -> Result<Vec<u8>, Box<dyn StdError + Send + Sync>> {
    let raw = std::fs::read(path).map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    Ok(crlf(&raw))
}

/// `\n` → `\r\n`, leaving existing `\r\n` alone.
pub fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() * 2);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Bytes as text with CR and LF shown as the two characters `\r` and `\n` (the C example's
/// `_print_binary_as_text`).
pub fn escape_crlf(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\r' => s.push_str("\\r"),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        for _ in chunk.invalid() {
            s.push(char::REPLACEMENT_CHARACTER);
        }
    }
    s
}

/// The I/O of the C example: every request is printed to `out`, every reply comes from a file in
/// [`data_dir`] and is printed too.
pub struct PrintingIo<W: Write> {
    out: RefCell<W>,
    dir: PathBuf,
}

impl<W: Write> PrintingIo<W> {
    /// Prints to `out`, replies from the files in `dir`.
    pub fn new(out: W, dir: PathBuf) -> PrintingIo<W> {
        PrintingIo { out: RefCell::new(out), dir }
    }

    fn print(&self, text: std::fmt::Arguments<'_>) -> std::io::Result<()> {
        self.out.borrow_mut().write_fmt(text)
    }

    /// Prints the request, then the reply read from `file`, and returns the reply.
    fn mongo(&self, heading: &str, op: &RawDocument, file: &str) -> IoResult<RawDocumentBuf> {
        self.print(format_args!("\n{heading}\n{}\n", extjson::to_libbson_json(op)?))?;
        let reply = read_json(&self.dir.join(file))?;
        self.print(format_args!("\nmocking reply from file:\n{}\n", extjson::to_libbson_json(&reply)?))?;
        Ok(reply)
    }
}

impl<W: Write> StateMachineIo for PrintingIo<W> {
    fn list_collections(&self, _db: Option<&str>, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        let info = self.mongo("running listCollections on mongod with this filter:", filter, "collection-info.json")?;
        Ok(vec![info])
    }

    fn mark_command(&self, command: &RawDocument) -> IoResult<RawDocumentBuf> {
        self.mongo("running cmd on mongocryptd with this schema:", command, "mongocryptd-reply.json")
    }

    fn find_keys(&self, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        let key = self.mongo("running a find on the key vault coll with this filter:", filter, "key-document.json")?;
        Ok(vec![key])
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.print(format_args!("\nsending the following to kms:\n{}\n", escape_crlf(kms.message()?)))?;
        let reply = read_http(&self.dir.join("kms-decrypt-reply.txt"))?;
        self.print(format_args!("\nmocking reply from file\n{}\n", escape_crlf(&reply)))?;
        sm::feed_kms_reply(kms, &reply)?;
        Ok(())
    }
}

/// Runs the four operations of the C example, printing to `out` what the C program prints.
pub fn run(out: &mut impl Write) -> Result<(), Box<dyn StdError + Send + Sync>> {
    let dir = data_dir();
    let io = PrintingIo::new(&mut *out, dir.clone());
    // The C example sets only AWS credentials (`mongocrypt_setopt_kms_provider_aws`): the key vault's one key is
    // wrapped by AWS KMS.
    let crypt = Crypt::builder().kms_providers(&KmsProviders::new().aws("aws", "example", "example", None))?.build()?;
    let final_bson = |doc: &RawDocument| -> IoResult<()> {
        io.print(format_args!("\nfinal bson is:\n{}\n", extjson::to_libbson_json(doc)?))?;
        Ok(())
    };

    io.print(format_args!("******* ENCRYPTION *******\n\n"))?;
    let cmd = read_json(&dir.join("cmd.json"))?;
    let mut ctx = crypt.ctx().encrypt("test", &cmd)?;
    let encrypted = sm::run(&mut ctx, &io)?.ok_or("encryption gave no result")?;
    final_bson(&encrypted)?;

    io.print(format_args!("\n******* DECRYPTION *******\n\n"))?;
    // The data key is cached in the Crypt now: no key vault or KMS round.
    let mut ctx = crypt.ctx().decrypt(&encrypted)?;
    let decrypted = sm::run(&mut ctx, &io)?.ok_or("decryption gave no result")?;
    final_bson(&decrypted)?;

    io.print(format_args!("\n******* EXPLICIT ENCRYPTION *******\n"))?;
    // Explicit encryption needs a key: the `_id` of the key document, by UUID.
    let key_doc = read_json(&dir.join("key-document.json"))?;
    let key_id = key_doc.get_binary("_id")?.bytes;
    let mut ctx =
        crypt.ctx().key_id(key_id)?.algorithm(&Algorithm::Random)?.explicit_encrypt(&rawdoc! { "v": "hello" })?;
    let ciphertext = sm::run(&mut ctx, &io)?.ok_or("explicit encryption gave no result")?;
    final_bson(&ciphertext)?;

    io.print(format_args!("\n******* EXPLICIT DECRYPTION *******\n"))?;
    let mut ctx = crypt.ctx().explicit_decrypt(&ciphertext)?;
    let plaintext = sm::run(&mut ctx, &io)?.ok_or("explicit decryption gave no result")?;
    final_bson(&plaintext)?;
    Ok(())
}

fn main() {
    let stdout = std::io::stdout();
    if let Err(e) = run(&mut stdout.lock()) {
        eprintln!("\ngot error: {e}");
        std::process::exit(1);
    }
}

/// Extended JSON in and out: the reader of every extended JSON file in `tests/data` (serde_json, which keeps field
/// order with its `preserve_order` feature, then bson's canonical and relaxed extended JSON conversion, after
/// [`normalize_legacy`]), and a printer in the exact layout of libbson's `bson_as_relaxed_extended_json`
/// (`{ "k" : v }`, `[ 1, 2 ]`), which the C example prints.
pub mod extjson {
    use std::error::Error as StdError;
    use std::fmt::Write as _;

    use bson::{Bson, Document, RawDocument, RawDocumentBuf};
    use serde_json::{json, Value};

    /// Parses one extended JSON document (canonical, relaxed, or with legacy `$binary`) into BSON, in file order.
    pub fn parse_document(text: &str) -> Result<RawDocumentBuf, Box<dyn StdError + Send + Sync>> {
        Ok(RawDocumentBuf::try_from(&parse_to_document(text)?)?)
    }

    /// As [`parse_document`], as a [`Document`].
    pub fn parse_to_document(text: &str) -> Result<Document, Box<dyn StdError + Send + Sync>> {
        let mut value: Value = serde_json::from_str(text)?;
        normalize_legacy(&mut value);
        match value {
            Value::Object(map) => Ok(Document::try_from(map)?),
            other => Err(format!("expected a document, got {other}").into()),
        }
    }

    /// Rewrites the legacy binary form `{"$binary": "<base64>", "$type": "<hex>"}` (libbson reads it,
    /// `encrypted-command.json` uses it, bson's conversion rejects it) to the canonical
    /// `{"$binary": {"base64": ..., "subType": ...}}`, at any depth. An object with `$type` but no `$binary`, such
    /// as the query operator, is left alone.
    pub fn normalize_legacy(value: &mut Value) {
        match value {
            Value::Array(items) => items.iter_mut().for_each(normalize_legacy),
            Value::Object(map) => match (map.len(), map.get("$binary"), map.get("$type")) {
                (2, Some(Value::String(base64)), Some(Value::String(subtype))) => {
                    // libbson takes one or two hex digits; the canonical form wants two.
                    let subtype = u8::from_str_radix(subtype, 16).map_or(subtype.clone(), |t| format!("{t:02x}"));
                    *value = json!({ "$binary": { "base64": base64, "subType": subtype } });
                }
                _ => map.values_mut().for_each(normalize_legacy),
            },
            _ => {}
        }
    }

    /// The date of `days` since 1970-01-01 (Hinnant's `civil_from_days`).
    fn civil_from_days(days: i64) -> (i64, i64, i64) {
        let z = days + 719468;
        let era = z.div_euclid(146097);
        let doe = z - era * 146097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }

    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// Standard base64 with padding.
    pub fn base64(bytes: &[u8]) -> String {
        let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= chunk.len() {
                    s.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }

    /// libbson's `bson_utf8_escape_for_json`, quoted.
    fn quoted(out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    /// C's `printf("%.20g", v)` for a finite `v`: how libbson prints doubles.
    pub fn printf_g20(v: f64) -> String {
        const P: i32 = 20;
        if v == 0.0 {
            return if v.is_sign_negative() { "-0".into() } else { "0".into() };
        }
        let sci = format!("{:.*e}", (P - 1) as usize, v);
        let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
        let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
        let trim = |s: &str| -> String {
            if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_owned()
            } else {
                s.to_owned()
            }
        };
        if !(-4..P).contains(&exp) {
            format!("{}e{}{:02}", trim(mantissa), if exp < 0 { '-' } else { '+' }, exp.abs())
        } else {
            trim(&format!("{:.*}", (P - 1 - exp) as usize, v))
        }
    }

    fn value(out: &mut String, v: &Bson) {
        match v {
            Bson::Double(d) if d.is_finite() => {
                let s = printf_g20(*d);
                let integral = s.bytes().all(|c| c.is_ascii_digit() || c == b'-');
                out.push_str(&s);
                if integral {
                    out.push_str(".0");
                }
            }
            Bson::Double(d) => {
                let s = if d.is_nan() {
                    "NaN"
                } else if *d > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                };
                let _ = write!(out, "{{ \"$numberDouble\" : \"{s}\" }}");
            }
            Bson::String(s) => quoted(out, s),
            Bson::Array(items) => {
                out.push_str("[ ");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    value(out, item);
                }
                out.push_str(" ]");
            }
            Bson::Document(d) => document(out, d),
            Bson::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            Bson::Null => out.push_str("null"),
            Bson::RegularExpression(r) => {
                out.push_str("{ \"$regularExpression\" : { \"pattern\" : ");
                quoted(out, r.pattern.as_str());
                out.push_str(", \"options\" : ");
                quoted(out, r.options.as_str());
                out.push_str(" } }");
            }
            Bson::JavaScriptCode(code) => {
                out.push_str("{ \"$code\" : ");
                quoted(out, code);
                out.push_str(" }");
            }
            Bson::JavaScriptCodeWithScope(cws) => {
                out.push_str("{ \"$code\" : ");
                quoted(out, &cws.code);
                out.push_str(", \"$scope\" : ");
                document(out, &cws.scope);
                out.push_str(" }");
            }
            Bson::Int32(i) => {
                let _ = write!(out, "{i}");
            }
            Bson::Int64(i) => {
                let _ = write!(out, "{i}");
            }
            Bson::Timestamp(t) => {
                let _ = write!(out, "{{ \"$timestamp\" : {{ \"t\" : {}, \"i\" : {} }} }}", t.time, t.increment);
            }
            Bson::Binary(b) => {
                let _ = write!(
                    out,
                    "{{ \"$binary\" : {{ \"base64\" : \"{}\", \"subType\" : \"{:02x}\" }} }}",
                    base64(&b.bytes),
                    u8::from(b.subtype)
                );
            }
            Bson::ObjectId(oid) => {
                let _ = write!(out, "{{ \"$oid\" : \"{}\" }}", oid.to_hex());
            }
            Bson::DateTime(dt) => date(out, dt.timestamp_millis()),
            Bson::Symbol(s) => {
                out.push_str("{ \"$symbol\" : ");
                quoted(out, s);
                out.push_str(" }");
            }
            Bson::Decimal128(d) => {
                let _ = write!(out, "{{ \"$numberDecimal\" : \"{d}\" }}");
            }
            Bson::Undefined => out.push_str("{ \"$undefined\" : true }"),
            Bson::MaxKey => out.push_str("{ \"$maxKey\" : 1 }"),
            Bson::MinKey => out.push_str("{ \"$minKey\" : 1 }"),
            // The bson crate does not expose a DBPointer's fields; none occurs in libmongocrypt's data.
            Bson::DbPointer(_) => out.push_str("{ \"$dbPointer\" : \"<unprintable>\" }"),
        }
    }

    /// Relaxed mode: an ISO-8601 string for dates from 1970 through 9999, `$numberLong` otherwise; milliseconds
    /// only when not zero.
    fn date(out: &mut String, ms: i64) {
        const MAX: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        if !(0..=MAX).contains(&ms) {
            let _ = write!(out, "{{ \"$date\" : {{ \"$numberLong\" : \"{ms}\" }} }}");
            return;
        }
        let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
        let (y, m, d) = civil_from_days(days);
        let (h, mi, s, frac) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
        let _ = write!(out, "{{ \"$date\" : \"{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
        if frac != 0 {
            let _ = write!(out, ".{frac:03}");
        }
        out.push_str("Z\" }");
    }

    fn document(out: &mut String, doc: &Document) {
        out.push_str("{ ");
        for (i, (k, v)) in doc.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            quoted(out, k);
            out.push_str(" : ");
            value(out, v);
        }
        out.push_str(" }");
    }

    /// A document as libbson's `bson_as_relaxed_extended_json` prints it: `{ "k" : v, ... }`, nested empty
    /// documents and arrays as `{  }` and `[  ]`, an empty top-level document as `{ }`.
    pub fn to_libbson_json(doc: &RawDocument) -> Result<String, bson::error::Error> {
        let doc = Document::try_from(doc)?;
        Ok(document_to_libbson_json(&doc))
    }

    /// As [`to_libbson_json`], for a [`Document`].
    pub fn document_to_libbson_json(doc: &Document) -> String {
        if doc.is_empty() {
            return "{ }".into();
        }
        let mut out = String::new();
        document(&mut out, doc);
        out
    }
}
