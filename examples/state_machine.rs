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
//! includes this file and runs [`run`] against the reference; the runner tests reuse [`extjson`] to read the data
//! files.

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

/// Extended JSON in and out: a parser that keeps field order (serde_json's `Value` sorts keys unless its
/// `preserve_order` feature is on) and a printer in the exact layout of libbson's `bson_as_relaxed_extended_json`
/// (`{ "k" : v }`, `[ 1, 2 ]`), which the C example prints.
pub mod extjson {
    use std::fmt::Write as _;

    use bson::spec::BinarySubtype;
    use bson::{Binary, Bson, DateTime, Decimal128, Document, JavaScriptCodeWithScope, RawDocument, RawDocumentBuf};

    type Res<T> = Result<T, String>;

    /// A JSON value, objects in file order; numbers keep their text.
    #[derive(Debug, Clone, PartialEq)]
    enum Json {
        Null,
        Bool(bool),
        Number(String),
        String(String),
        Array(Vec<Json>),
        Object(Vec<(String, Json)>),
    }

    /// Parses one extended JSON document (canonical, relaxed or legacy wrappers) into BSON.
    pub fn parse_document(text: &str) -> Res<RawDocumentBuf> {
        let doc = parse_to_document(text)?;
        RawDocumentBuf::try_from(&doc).map_err(|e| e.to_string())
    }

    /// As [`parse_document`], as a [`Document`].
    pub fn parse_to_document(text: &str) -> Res<Document> {
        let mut p = Parser { s: text.as_bytes(), i: 0 };
        let value = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at offset {}", p.i));
        }
        match to_bson(value)? {
            Bson::Document(d) => Ok(d),
            other => Err(format!("expected a document, got {other:?}")),
        }
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            }
        }

        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }

        fn expect(&mut self, c: u8) -> Res<()> {
            self.ws();
            if self.peek() == Some(c) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected '{}' at offset {}", c as char, self.i))
            }
        }

        fn literal(&mut self, word: &str, value: Json) -> Res<Json> {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                Ok(value)
            } else {
                Err(format!("unexpected token at offset {}", self.i))
            }
        }

        fn value(&mut self) -> Res<Json> {
            self.ws();
            match self.peek().ok_or("unexpected end of JSON")? {
                b'{' => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        return Ok(Json::Object(fields));
                    }
                    loop {
                        self.ws();
                        let key = self.string()?;
                        self.expect(b':')?;
                        fields.push((key, self.value()?));
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Json::Object(fields));
                            }
                            _ => return Err(format!("expected ',' or '}}' at offset {}", self.i)),
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        return Ok(Json::Array(items));
                    }
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Json::Array(items));
                            }
                            _ => return Err(format!("expected ',' or ']' at offset {}", self.i)),
                        }
                    }
                }
                b'"' => Ok(Json::String(self.string()?)),
                b't' => self.literal("true", Json::Bool(true)),
                b'f' => self.literal("false", Json::Bool(false)),
                b'n' => self.literal("null", Json::Null),
                b'-' | b'0'..=b'9' => {
                    let start = self.i;
                    while self.i < self.s.len()
                        && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    {
                        self.i += 1;
                    }
                    let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
                    text.parse::<f64>().map_err(|_| format!("bad number {text:?} at offset {start}"))?;
                    Ok(Json::Number(text.to_owned()))
                }
                c => Err(format!("unexpected '{}' at offset {}", c as char, self.i)),
            }
        }

        fn hex4(&mut self) -> Res<u32> {
            let digits = self.s.get(self.i..self.i + 4).ok_or("truncated \\u escape")?;
            let digits = std::str::from_utf8(digits).map_err(|e| e.to_string())?;
            let v = u32::from_str_radix(digits, 16).map_err(|_| format!("bad \\u escape at offset {}", self.i))?;
            self.i += 4;
            Ok(v)
        }

        fn string(&mut self) -> Res<String> {
            if self.peek() != Some(b'"') {
                return Err(format!("expected a string at offset {}", self.i));
            }
            self.i += 1;
            let mut out = Vec::new();
            loop {
                let c = self.peek().ok_or("unterminated string")?;
                self.i += 1;
                match c {
                    b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                    b'\\' => {
                        let e = self.peek().ok_or("unterminated escape")?;
                        self.i += 1;
                        let ch = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hi = self.hex4()?;
                                let code = if (0xD800..0xDC00).contains(&hi) && self.s[self.i..].starts_with(b"\\u") {
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                                } else {
                                    hi
                                };
                                char::from_u32(code).ok_or("invalid \\u escape")?
                            }
                            other => return Err(format!("bad escape '\\{}'", other as char)),
                        };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    c => out.push(c),
                }
            }
        }
    }

    fn keys(fields: &[(String, Json)]) -> Vec<&str> {
        let mut k: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        k.sort_unstable();
        k
    }

    fn field<'a>(fields: &'a [(String, Json)], key: &str) -> Option<&'a Json> {
        fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn str_field<'a>(fields: &'a [(String, Json)], key: &str) -> Res<&'a str> {
        match field(fields, key) {
            Some(Json::String(s)) => Ok(s),
            _ => Err(format!("{key} must be a string")),
        }
    }

    fn subtype(hex: &str) -> Res<BinarySubtype> {
        u8::from_str_radix(hex, 16).map(BinarySubtype::from).map_err(|_| format!("bad binary subtype {hex:?}"))
    }

    fn binary(base64: &str, sub: &str) -> Res<Bson> {
        Binary::from_base64(base64, subtype(sub)?).map(Bson::Binary).map_err(|e| e.to_string())
    }

    fn int(text: &str) -> Res<i64> {
        text.parse().map_err(|_| format!("bad integer {text:?}"))
    }

    fn u32_field(fields: &[(String, Json)], key: &str) -> Res<u32> {
        match field(fields, key) {
            Some(Json::Number(n)) => n.parse().map_err(|_| format!("bad {key}")),
            _ => Err(format!("{key} must be a number")),
        }
    }

    /// The extended JSON wrapper `fields` stands for, or `None` for a plain document.
    fn wrapper(fields: &[(String, Json)]) -> Res<Option<Bson>> {
        let bson = match (keys(fields).as_slice(), fields.first().map(|f| &f.1)) {
            (["$numberInt"], Some(Json::String(s))) => {
                Bson::Int32(s.parse().map_err(|_| format!("bad $numberInt {s:?}"))?)
            }
            (["$numberLong"], Some(Json::String(s))) => Bson::Int64(int(s)?),
            (["$numberDouble"], Some(Json::String(s))) => Bson::Double(match s.as_str() {
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                s => s.parse().map_err(|_| format!("bad $numberDouble {s:?}"))?,
            }),
            (["$numberDecimal"], Some(Json::String(s))) => {
                Bson::Decimal128(s.parse::<Decimal128>().map_err(|e| e.to_string())?)
            }
            (["$binary"], Some(Json::Object(b))) => binary(str_field(b, "base64")?, str_field(b, "subType")?)?,
            // The legacy form, as in `encrypted-command.json`.
            (["$binary", "$type"], _) => binary(str_field(fields, "$binary")?, str_field(fields, "$type")?)?,
            (["$uuid"], Some(Json::String(s))) => {
                let hex: String = s.chars().filter(|c| *c != '-').collect();
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                    .collect::<Option<Vec<u8>>>()
                    .filter(|b| b.len() == 16)
                    .ok_or(format!("bad $uuid {s:?}"))?;
                Bson::Binary(Binary { subtype: BinarySubtype::Uuid, bytes })
            }
            (["$oid"], Some(Json::String(s))) => Bson::ObjectId(s.parse().map_err(|_| format!("bad $oid {s:?}"))?),
            (["$date"], Some(date)) => Bson::DateTime(DateTime::from_millis(match date {
                Json::Object(d) if keys(d) == ["$numberLong"] => int(str_field(d, "$numberLong")?)?,
                Json::Number(n) => int(n)?,
                Json::String(iso) => parse_iso8601(iso)?,
                _ => return Err("bad $date".into()),
            })),
            (["$timestamp"], Some(Json::Object(t))) => {
                Bson::Timestamp(bson::Timestamp { time: u32_field(t, "t")?, increment: u32_field(t, "i")? })
            }
            (["$regularExpression"], Some(Json::Object(r))) => {
                let cstring = |s: &str| bson::raw::CString::try_from(s.to_owned()).map_err(|e| e.to_string());
                Bson::RegularExpression(bson::Regex {
                    pattern: cstring(str_field(r, "pattern")?)?,
                    options: cstring(str_field(r, "options")?)?,
                })
            }
            (["$minKey"], _) => Bson::MinKey,
            (["$maxKey"], _) => Bson::MaxKey,
            (["$undefined"], _) => Bson::Undefined,
            (["$symbol"], Some(Json::String(s))) => Bson::Symbol(s.clone()),
            (["$code"], Some(Json::String(s))) => Bson::JavaScriptCode(s.clone()),
            (["$code", "$scope"], _) => {
                let scope = match field(fields, "$scope").cloned().map(to_bson).transpose()? {
                    Some(Bson::Document(d)) => d,
                    _ => return Err("$scope must be a document".into()),
                };
                Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope {
                    code: str_field(fields, "$code")?.to_owned(),
                    scope,
                })
            }
            _ => return Ok(None),
        };
        Ok(Some(bson))
    }

    fn to_bson(value: Json) -> Res<Bson> {
        Ok(match value {
            Json::Null => Bson::Null,
            Json::Bool(b) => Bson::Boolean(b),
            // As libbson: integers are int32 when they fit, int64 otherwise; anything else is a double.
            Json::Number(n) => match n.parse::<i64>() {
                Ok(i) => i32::try_from(i).map(Bson::Int32).unwrap_or(Bson::Int64(i)),
                Err(_) => Bson::Double(n.parse().map_err(|_| format!("bad number {n:?}"))?),
            },
            Json::String(s) => Bson::String(s),
            Json::Array(items) => Bson::Array(items.into_iter().map(to_bson).collect::<Res<_>>()?),
            Json::Object(fields) => match wrapper(&fields)? {
                Some(b) => b,
                None => {
                    let mut doc = Document::new();
                    for (k, v) in fields {
                        doc.insert(k, to_bson(v)?);
                    }
                    Bson::Document(doc)
                }
            },
        })
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146097 + doe - 719468
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

    /// `YYYY-MM-DDTHH:MM:SS[.fff]Z` to milliseconds since the epoch.
    fn parse_iso8601(s: &str) -> Res<i64> {
        let bad = || format!("bad $date {s:?}");
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<i64>().ok()).ok_or_else(bad);
        let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
        let rest = &s[19..];
        let rest = rest.strip_suffix('Z').ok_or_else(bad)?;
        let millis = match rest.strip_prefix('.') {
            Some(frac) if !frac.is_empty() && frac.bytes().all(|c| c.is_ascii_digit()) => {
                let frac = format!("{frac:0<3}");
                frac[..3].parse::<i64>().map_err(|_| bad())?
            }
            None if rest.is_empty() => 0,
            _ => return Err(bad()),
        };
        Ok(((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + millis)
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
