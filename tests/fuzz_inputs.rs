//! Bounded, deterministic fuzzing of every input the binding passes to libmongocrypt: arbitrary bytes (random, and
//! mutations of valid documents: truncated, bytes flipped, bad lengths, fields removed, retyped or added) fed to
//!
//! - every setopt and init that takes BSON: KMS providers, schema map, encrypted field config map, key encryption
//!   key, range options, key material, key id, key alt name, algorithm, explicit encrypt/decrypt, auto
//!   encrypt/decrypt, rewrap filter, on-demand KMS credentials;
//! - `mongo_feed` in each state: listCollections results, mongocryptd replies (placeholders mutated inside their
//!   binary too), key documents;
//! - `KmsCtx::feed`: garbage, truncated and mutated HTTP replies (Content-Length, status line, chunked encoding, JSON
//!   body) for AWS, Azure and GCP requests, and bytes for KMIP;
//! - explicit and automatic decryption of mutated ciphertexts.
//!
//! Every call must return `Ok` or a typed [`Error`]; a panic or a crash fails the run. Two kinds of input must be
//! refused by the binding itself, as [`Error::InvalidArgument`], before libmongocrypt sees them: a string argument
//! with a NUL byte in it, and a document argument that is empty or whose frame is valid but whose content is
//! malformed (see [`expect_checked`]). Each target is a test; case
//! `i` of a target always makes the same choices (a xorshift generator seeded by target and case); only the bytes
//! of the data key and ciphertexts made once at start-up differ between runs.
//!
//! - `MONGOCRYPT_FUZZ_CASES`: total cases, split evenly over the targets (default: 1000 per target, 7000 in all).
//! - `MONGOCRYPT_FUZZ_START`: the first case of each target (default 0). To replay case N of every target:
//!   `MONGOCRYPT_FUZZ_START=N MONGOCRYPT_FUZZ_CASES=<number of targets>`.
//! - `MONGOCRYPT_FUZZ_TRACE=1`: write each case's target and number to stderr (uncaptured) before running it, so
//!   that the last line names the input of a crash.
//!
//! Inputs that crash libmongocrypt itself are refused by the binding (a chunked KMS reply with a bad chunk, a GCP
//! reply with bad base64, mongocryptd markings with null-like values or malformed BSON, huge KMIP lengths and short
//! `keyMaterial` before 1.21, short Queryable Encryption v1 indexed values before 1.21 and malformed v2 ones on
//! 1.13, v2 text values whose edge count wraps libmongocrypt's 32-bit length check from 1.17 to before 1.21,
//! malformed insert payloads before 1.13 and ones with a short value before 1.21; the `refused_*` tests below
//! feed each and expect `Err`). No input is filtered out of the fuzz.

use std::io::Write;
use std::sync::OnceLock;

use libmongocrypt::bson::spec::BinarySubtype;
use libmongocrypt::bson::{doc, rawdoc, Binary, Bson, Decimal128, Document, RawDocument, RawDocumentBuf, Timestamp};
use libmongocrypt::{Algorithm, Crypt, CryptBuilder, Ctx, CtxBuilder, Error, KeyEncryptionKey, QueryType, State};

// ---------------------------------------------------------------------------------------------------------------
// Cases

/// The fuzz targets; each is one `#[test]`.
#[derive(Clone, Copy, Debug)]
enum Target {
    CryptOptions = 1,
    CtxOptions,
    FeedCollinfo,
    FeedMarkings,
    FeedKeys,
    KmsFeed,
    Decrypt,
}

const TARGETS: u64 = 7;
const DEFAULT_CASES_PER_TARGET: u64 = 1000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().replace('_', "").parse().ok())
}

/// How far the cases of the running target got: states visited, and ctxs finished.
#[derive(Default)]
struct Reached {
    collinfo: u64,
    markings: u64,
    keys: u64,
    kms: u64,
    ready: u64,
    done: u64,
    /// Calls the binding refused itself (see [`expect_checked`]).
    refused: u64,
}

thread_local! {
    static REACHED: std::cell::RefCell<Reached> = std::cell::RefCell::new(Reached::default());
}

fn reached(state: State) {
    REACHED.with(|r| {
        let mut r = r.borrow_mut();
        match state {
            State::NeedMongoCollinfo | State::NeedMongoCollinfoWithDb => r.collinfo += 1,
            State::NeedMongoMarkings => r.markings += 1,
            State::NeedMongoKeys => r.keys += 1,
            State::NeedKms => r.kms += 1,
            State::Ready => r.ready += 1,
            State::Done => r.done += 1,
            _ => {}
        }
    });
}

/// Runs `case` for each case number of `target`, with that case's generator, then prints how far the cases got
/// (shown with `--nocapture`).
fn for_each_case(target: Target, mut case: impl FnMut(&mut Rng, u64)) {
    let per_target = env_u64("MONGOCRYPT_FUZZ_CASES").map_or(DEFAULT_CASES_PER_TARGET, |n| n.div_ceil(TARGETS));
    let start = env_u64("MONGOCRYPT_FUZZ_START").unwrap_or(0);
    let trace = std::env::var_os("MONGOCRYPT_FUZZ_TRACE").is_some();
    for i in start..start + per_target {
        if trace {
            let _ = writeln!(std::io::stderr(), "fuzz {target:?} case {i}");
        }
        let _guard = CaseGuard(target, i);
        case(&mut Rng::new((target as u64) << 48 ^ i), i);
    }
    REACHED.with(|r| {
        let r = r.borrow();
        println!(
            "{target:?}: {per_target} cases from {start}; states reached: collinfo {}, markings {}, keys {}, kms {}, \
             ready {}, done {}; refused by the binding {}",
            r.collinfo, r.markings, r.keys, r.kms, r.ready, r.done, r.refused
        );
    });
}

/// Names the failing case when a case panics.
struct CaseGuard(Target, u64);

impl Drop for CaseGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "fuzz case failed: target {:?} case {} (replay: MONGOCRYPT_FUZZ_START={} MONGOCRYPT_FUZZ_CASES={TARGETS})",
                self.0,
                self.1,
                self.1
            );
        }
    }
}

/// A result that must be `Ok` or a typed error: the value, or `None` for an error.
fn ok<T>(result: Result<T, Error>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            // Every error formats, and libmongocrypt's carry its status.
            let _ = (e.kind(), e.code(), e.to_string(), e.message());
            None
        }
    }
}

/// Whether `bytes` have a valid document frame (length prefix, trailing NUL) but malformed content somewhere inside,
/// nested documents and arrays included: the bson crate reads the frame but not all the elements.
fn malformed_inside(bytes: &[u8]) -> bool {
    RawDocument::from_bytes(bytes).is_ok_and(|d| Document::try_from(d).is_err())
}

/// The result of a call that takes the string arguments `strings` and the document arguments `docs`: `ok`, and the
/// call must have been refused by the binding (`Error::InvalidArgument`), before libmongocrypt saw it, if
///
/// - a string has a NUL byte: strings now go to C NUL-terminated. (Fixed binding bug: they went as (pointer,
///   length), and libmongocrypt copies `kms_provider_aws`, `masterkey_aws`, `masterkey_aws_endpoint` and `encrypt`'s
///   database with `bson_strndup`, which reads `len + 1` bytes: one past every such string, and through a dangling
///   pointer for an empty one. The fuzz passes plain strings, empty ones included.)
/// - a document is empty (fixed binding bug: libbson aborts on an empty buffer).
///
/// A document whose frame is valid but whose content is malformed is refused too when the damage is structural
/// (fixed binding bug: libmongocrypt checks the frame and trusts the rest; an `encrypt` command malformed inside
/// aborted it in `bson_copy_to_excluding_noinit` at `mongo_op`): the binding walks the lengths, terminators and
/// types of every element of every document argument, nested ones included. A frame error is left to
/// libmongocrypt, which reports it. Bytes inside a binary value (a mongocryptd marking, a ciphertext) are not BSON
/// to the binding and are not checked.
///
/// Any `InvalidArgument` passes (the binding may refuse the call for another reason first, e.g. the legacy AWS
/// endpoint without an AWS key), and so does `Unsupported`: a call that the linked library lacks is refused before
/// its arguments are looked at.
///
/// Documents the bson crate rejects only for invalid UTF-8 pass the binding's structural check and reach
/// libmongocrypt, which does not rely on UTF-8: for those any typed outcome passes (`src/binary.rs` tests the
/// structural check itself).
fn expect_checked<T>(strings: &[&str], docs: &[&[u8]], result: Result<T, Error>) -> Option<T> {
    let nul = strings.iter().any(|s| s.contains('\0'));
    let empty = docs.iter().any(|d| d.is_empty());
    if docs.iter().any(|d| malformed_inside(d)) && matches!(result, Err(Error::InvalidArgument(_))) {
        REACHED.with(|r| r.borrow_mut().refused += 1);
    }
    if nul || empty {
        REACHED.with(|r| r.borrow_mut().refused += 1);
        match &result {
            Err(Error::InvalidArgument(_) | Error::Unsupported { .. }) => {}
            other => panic!(
                "not refused by the binding: {:?}; strings {strings:?}, documents {docs:?}",
                other.as_ref().map(drop)
            ),
        }
    }
    ok(result)
}

// ---------------------------------------------------------------------------------------------------------------
// Generator and mutators

/// xorshift64*, seeded through splitmix64.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True `percent` percent of the time.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Up to `max - 1` random bytes.
    fn bytes_below(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max);
        self.bytes(len)
    }

    /// Random bytes, as many as one of `lens`.
    fn bytes_of(&mut self, lens: &[usize]) -> Vec<u8> {
        let len = self.pick(lens);
        self.bytes(len)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    /// A short string: printable, any UTF-8, with a NUL, or one of `known`.
    fn string(&mut self, known: &[&str]) -> String {
        match self.below(6) {
            0 | 1 if !known.is_empty() => self.pick(known).to_string(),
            2 => String::new(),
            3 => "\u{0}\u{ffff}é\u{10ffff}".chars().take(1 + self.below(4)).collect(),
            4 => {
                let len = self.below(40);
                (0..len).map(|_| char::from_u32(self.below(0x800) as u32).unwrap_or('x')).collect()
            }
            _ => {
                let len = self.below(24);
                (0..len).map(|_| (b' ' + self.below(95) as u8) as char).collect()
            }
        }
    }

    /// A string argument: [`string`](Self::string), and one time in ten a NUL byte inserted somewhere (which the
    /// binding must refuse).
    fn string_arg(&mut self, known: &[&str]) -> String {
        let mut s = self.string(known);
        if self.chance(10) {
            let at = s.char_indices().map(|(i, _)| i).nth(self.below(s.chars().count() + 1)).unwrap_or(s.len());
            s.insert(at, '\0');
        }
        s
    }

    fn interesting_i32(&mut self) -> i32 {
        self.pick(&[0, 1, -1, 2, 4, 5, 16, 0x7f, 0x80, 0xff, 0x7fff, 0x10000, 0x7fff_ffff, i32::MIN, -5])
    }

    fn interesting_i64(&mut self) -> i64 {
        match self.below(3) {
            0 => i64::from(self.interesting_i32()),
            1 => self.pick(&[i64::MAX, i64::MIN, 1 << 53, -(1 << 53), 1 << 32]),
            _ => self.next() as i64,
        }
    }
}

/// Field names libmongocrypt looks for, so that structural mutations reach its parsers.
const KNOWN_KEYS: &[&str] = &[
    "v",
    "a",
    "ki",
    "ka",
    "s",
    "_id",
    "keyMaterial",
    "masterKey",
    "provider",
    "region",
    "key",
    "endpoint",
    "status",
    "keyAltNames",
    "creationDate",
    "updateDate",
    "result",
    "ok",
    "schemaRequiresEncryption",
    "hasEncryptedPlaceholders",
    "options",
    "validator",
    "$jsonSchema",
    "properties",
    "encrypt",
    "keyId",
    "algorithm",
    "bsonType",
    "encryptMetadata",
    "name",
    "type",
    "find",
    "filter",
    "insert",
    "documents",
    "local",
    "aws",
    "azure",
    "gcp",
    "kmip",
    "accessKeyId",
    "secretAccessKey",
    "sessionToken",
    "tenantId",
    "clientId",
    "clientSecret",
    "email",
    "privateKey",
    "accessToken",
    "keyVaultEndpoint",
    "keyName",
    "projectId",
    "location",
    "keyRing",
    "keyVersion",
    "keyId",
    "min",
    "max",
    "sparsity",
    "precision",
    "trimFactor",
    "fields",
    "path",
    "queries",
    "queryType",
    "contention",
    "escCollection",
    "ecocCollection",
    "$and",
    "$gt",
    "$lt",
    "$gte",
    "$in",
    "$or",
    "encryptionInformation",
    "schema",
    "delegated",
    "identityPlatformEndpoint",
];

fn random_binary(rng: &mut Rng) -> Binary {
    let any = rng.next() as u8;
    let subtype = rng.pick(&[0u8, 4, 6, 3, 5, 0x80, any]);
    let mut bytes = rng.bytes_below(64);
    if subtype == 6 && !bytes.is_empty() && rng.chance(50) {
        bytes[0] = rng.below(18) as u8;
    }
    Binary { subtype: BinarySubtype::from(subtype), bytes }
}

/// Any BSON value, nested up to `depth`.
fn random_bson(rng: &mut Rng, depth: usize) -> Bson {
    match rng.below(if depth == 0 { 16 } else { 18 }) {
        0 => Bson::Double(f64::from_bits(rng.next())),
        1 => Bson::Double(rng.pick(&[0.0, -0.0, f64::NAN, f64::INFINITY, 1.5, 1e308])),
        2 | 3 => Bson::String(rng.string(&["457-55-5462", "local", "aws", "Indexed", "range", "equality"])),
        4 => Bson::Boolean(rng.chance(50)),
        5 => Bson::Null,
        6 => Bson::Int32(rng.interesting_i32()),
        7 => Bson::Int64(rng.interesting_i64()),
        8 | 9 => Bson::Binary(random_binary(rng)),
        10 => Bson::DateTime(libmongocrypt::bson::DateTime::from_millis(rng.interesting_i64())),
        11 => Bson::Timestamp(Timestamp { time: rng.next() as u32, increment: rng.next() as u32 }),
        12 => Bson::Decimal128(Decimal128::from_bytes(rng.bytes(16).try_into().unwrap())),
        13 => Bson::ObjectId(libmongocrypt::bson::oid::ObjectId::from_bytes(rng.bytes(12).try_into().unwrap())),
        14 => rng.pick(&[Bson::MinKey, Bson::MaxKey, Bson::Undefined]),
        15 => Bson::JavaScriptCode(rng.string(&[])),
        16 => Bson::Document(random_doc(rng, depth - 1)),
        _ => Bson::Array((0..rng.below(4)).map(|_| random_bson(rng, depth - 1)).collect()),
    }
}

fn random_doc(rng: &mut Rng, depth: usize) -> Document {
    let mut d = Document::new();
    for _ in 0..rng.below(5) {
        let key = rng.string(KNOWN_KEYS);
        d.insert(key, random_bson(rng, depth));
    }
    d
}

/// A structural mutation: the result is valid BSON whose meaning is off (field gone, retyped, added, renamed).
fn mutate_doc(rng: &mut Rng, doc: &mut Document, depth: usize) {
    let keys: Vec<String> = doc.keys().cloned().collect();
    let op = rng.below(if keys.is_empty() { 1 } else { 6 });
    match op {
        0 => {
            let key = rng.string(KNOWN_KEYS);
            doc.insert(key, random_bson(rng, 2));
        }
        1 => {
            doc.remove(rng.pick(&keys));
        }
        2 => {
            let key = rng.pick(&keys);
            doc.insert(key, random_bson(rng, 2));
        }
        3 => {
            let key = rng.pick(&keys);
            let value = doc.remove(&key).unwrap();
            doc.insert(rng.string(KNOWN_KEYS), value);
        }
        _ => {
            // Recurse into a sub-document or an array element.
            let key = rng.pick(&keys);
            match doc.get_mut(&key) {
                Some(Bson::Document(sub)) if depth > 0 => mutate_doc(rng, sub, depth - 1),
                Some(Bson::Array(items)) if depth > 0 && !items.is_empty() => {
                    let i = rng.below(items.len());
                    match &mut items[i] {
                        Bson::Document(sub) => mutate_doc(rng, sub, depth - 1),
                        other => *other = random_bson(rng, 1),
                    }
                }
                Some(Bson::Binary(b)) => mutate_bytes_in_place(rng, &mut b.bytes),
                Some(Bson::String(s)) => {
                    let mut bytes = std::mem::take(s).into_bytes();
                    mutate_bytes_in_place(rng, &mut bytes);
                    *s = String::from_utf8_lossy(&bytes).into_owned();
                }
                Some(other) => *other = random_bson(rng, 1),
                None => {}
            }
        }
    }
}

/// One byte-level mutation: truncation, flips, overwritten integers, inserted, deleted or duplicated ranges.
fn mutate_bytes_in_place(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let len = bytes.len();
    match rng.below(10) {
        0 if len > 0 => bytes.truncate(rng.below(len)),
        1 if len > 0 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(len);
                bytes[i] ^= 1 << rng.below(8);
            }
        }
        2 if len > 0 => {
            let i = rng.below(len);
            let any = rng.next() as u8;
            bytes[i] = rng.pick(&[0, 1, 2, 3, 4, 5, 0x10, 0x12, 0x7f, 0x80, 0xff, any]);
        }
        3 if len >= 4 => {
            let i = rng.below(len - 3);
            let v = rng.pick(&[0, 1, -1, len as i32, len as i32 + 1, len as i32 - 1, 0x7fff_ffff, i32::MIN, 5]);
            bytes[i..i + 4].copy_from_slice(&v.to_le_bytes());
        }
        4 => {
            let at = rng.below(len + 1);
            let extra_len = 1 + rng.below(16);
            let extra = rng.bytes(extra_len);
            bytes.splice(at..at, extra);
        }
        5 if len > 0 => {
            let at = rng.below(len);
            let end = (at + 1 + rng.below(16)).min(len);
            bytes.drain(at..end);
        }
        6 if len > 0 => {
            let at = rng.below(len);
            let end = (at + 1 + rng.below(32)).min(len);
            let copy = bytes[at..end].to_vec();
            let to = rng.below(len + 1);
            bytes.splice(to..to, copy);
        }
        7 => bytes.extend(rng.bytes_below(8)),
        _ if len > 0 => {
            let i = rng.below(len);
            bytes[i] = rng.next() as u8;
        }
        _ => bytes.push(rng.next() as u8),
    }
}

/// Sets a BSON document's length prefix to its real length (so that only the inside is broken).
fn fix_length(bytes: &mut [u8]) {
    if bytes.len() >= 4 {
        let len = bytes.len() as i32;
        bytes[..4].copy_from_slice(&len.to_le_bytes());
    }
}

/// A fuzzed document from `seeds`: random bytes, a random document, a structural or byte-level mutation of a
/// seed, or a seed unchanged (so that later states are reached too).
fn fuzz_bson(rng: &mut Rng, seeds: &[RawDocumentBuf]) -> Vec<u8> {
    let pick = |rng: &mut Rng| seeds[rng.below(seeds.len())].clone();
    match rng.below(20) {
        0 => rng.bytes_below(48),
        1 => {
            // Random inside a well-formed frame: length prefix and trailing NUL are right.
            let len = 5 + rng.below(40);
            let mut b = rng.bytes(len);
            fix_length(&mut b);
            *b.last_mut().unwrap() = 0;
            b
        }
        2 => raw(&random_doc(rng, 2)),
        3..=5 => pick(rng).into_bytes(),
        6..=11 => {
            let mut d = Document::try_from(pick(rng).as_ref()).unwrap();
            for _ in 0..1 + rng.below(3) {
                mutate_doc(rng, &mut d, 3);
            }
            raw(&d)
        }
        _ => {
            let mut b = pick(rng).into_bytes();
            for _ in 0..1 + rng.below(3) {
                mutate_bytes_in_place(rng, &mut b);
            }
            if rng.chance(50) {
                fix_length(&mut b);
            }
            b
        }
    }
}

/// A document as BSON bytes; one the bson crate refuses to write (e.g. a key with a NUL) becomes `{}`.
fn raw(d: &Document) -> Vec<u8> {
    RawDocumentBuf::try_from(d).map(RawDocumentBuf::into_bytes).unwrap_or_else(|_| rawdoc! {}.into_bytes())
}

fn rawbuf(d: Document) -> RawDocumentBuf {
    RawDocumentBuf::try_from(&d).unwrap()
}

// ---------------------------------------------------------------------------------------------------------------
// Seeds: valid inputs, made once

const LOCAL_KEK: [u8; 96] = [0u8; 96];
const SSN: &str = "457-55-5462";
/// Key material of the AWS example key (`tests/data/example/key-document.json`), decrypted by
/// `tests/data/example/kms-decrypt-reply.txt`.
const AWS_KEY_MATERIAL: &str = concat!(
    "AQICAHhQNmWG2CzOm1dq3kWLM+iDUZhEqnhJwH9wZVpuZ94A8gEqnsxXlR51T5EbEVezUqqKAAAAwjCBvwYJKoZIhvcNAQcGoIGxMIGuAgEAMI",
    "GoBgkqhkiG9w0BBwEwHgYJYIZIAWUDBAEuMBEEDHa4jo6yp0Z18KgbUgIBEIB74sKxWtV8/YHje5lv5THTl0HIbhSwM6EqRlmBiFFatmEWaeMk4t",
    "O4xBX65eq670I5TWPSLMzpp8ncGHMmvHqRajNBnmFtbYxN3E3/WjxmdbOOe+OXpnGJPcGsftc7cB2shRfA4lICPnE26+oVNXT6p0Lo20nY5XC7jyCO",
);
const AWS_ARN: &str = "arn:aws:kms:us-east-1:579766882180:key/89fcc2c4-08b0-4bd9-9f25-e30687b580d0";

struct Corpus {
    local_key: RawDocumentBuf,
    local_key_id: Vec<u8>,
    aws_key: RawDocumentBuf,
    kms_providers: Vec<RawDocumentBuf>,
    schema_maps: Vec<RawDocumentBuf>,
    efc_maps: Vec<RawDocumentBuf>,
    keks: Vec<RawDocumentBuf>,
    range_opts: Vec<RawDocumentBuf>,
    text_opts: Vec<RawDocumentBuf>,
    values: Vec<RawDocumentBuf>,
    expressions: Vec<RawDocumentBuf>,
    ciphertexts: Vec<RawDocumentBuf>,
    commands: Vec<RawDocumentBuf>,
    encrypted_commands: Vec<RawDocumentBuf>,
    collinfos: Vec<RawDocumentBuf>,
    markings: Vec<RawDocumentBuf>,
    placeholders: Vec<RawDocumentBuf>,
    filters: Vec<RawDocumentBuf>,
    /// HTTP replies by kind.
    aws_encrypt_reply: Vec<u8>,
    aws_decrypt_reply: Vec<u8>,
    oauth_reply: Vec<u8>,
    azure_wrap_reply: Vec<u8>,
    gcp_encrypt_reply: Vec<u8>,
    /// Replies of libmongocrypt's KMS reply tests (`kms-tests-aws.json`), errors mostly.
    kms_test_replies: Vec<Vec<u8>>,
}

fn data(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An HTTP reply file with `\n` line ends turned into `\r\n`.
fn http_file(rel: &str) -> Vec<u8> {
    data(rel).replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

fn http_json(status: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .into_bytes()
}

fn uuid(bytes: &[u8]) -> Binary {
    Binary { subtype: BinarySubtype::Uuid, bytes: bytes.to_vec() }
}

fn generic(bytes: &[u8]) -> Binary {
    Binary { subtype: BinarySubtype::Generic, bytes: bytes.to_vec() }
}

fn b64(s: &str) -> Vec<u8> {
    Binary::from_base64(s, None).unwrap().bytes
}

/// A mongocryptd marking: subtype 6, a 0 byte, then `{a, ki, v}`.
fn placeholder_binary(inner: &[u8], first: u8) -> Binary {
    let mut bytes = vec![first];
    bytes.extend_from_slice(inner);
    Binary { subtype: BinarySubtype::Encrypted, bytes }
}

fn all_providers() -> Document {
    doc! {
        "local": { "key": generic(&LOCAL_KEK) },
        "aws": { "accessKeyId": "example", "secretAccessKey": "example" },
        "azure": { "tenantId": "tenant", "clientId": "client", "clientSecret": "secret" },
        "gcp": { "email": "test@example.com", "privateKey": generic(&b64(GCP_PRIVATE_KEY)) },
        "kmip": { "endpoint": "localhost:5696" },
    }
}

/// A 2048-bit RSA test key (PKCS#8 DER, base64) for the GCP provider, made with `openssl genpkey` for these tests;
/// it protects nothing.
const GCP_PRIVATE_KEY: &str = include_str!("keys/rsa-2048.pkcs8.b64");

fn valid_crypt() -> Crypt {
    Crypt::builder().kms_providers(&all_providers()).unwrap().build().unwrap()
}

/// Drives a ctx with valid inputs only (for building seeds).
fn drive_valid(ctx: &mut Ctx, corpus_keys: &[&RawDocument], markings: Option<&RawDocument>) -> RawDocumentBuf {
    let mut out = None;
    for _ in 0..16 {
        match ctx.state() {
            State::NeedMongoCollinfo => ctx.mongo_done().unwrap(),
            State::NeedMongoMarkings => {
                ctx.mongo_feed(markings.unwrap()).unwrap();
                ctx.mongo_done().unwrap();
            }
            State::NeedMongoKeys => {
                for key in corpus_keys {
                    ctx.mongo_feed(*key).unwrap();
                }
                ctx.mongo_done().unwrap();
            }
            State::Ready => out = Some(ctx.finalize_owned().unwrap()),
            State::Done => return out.unwrap(),
            other => panic!("seed ctx in {other:?}: {:?}", ctx.status()),
        }
    }
    panic!("seed ctx did not finish");
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(build_corpus)
}

fn build_corpus() -> Corpus {
    let crypt = valid_crypt();
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    let local_key = drive_valid(&mut ctx, &[], None);
    drop(ctx);
    let local_key_id = local_key.get_binary("_id").unwrap().bytes.to_vec();
    let aws_key = rawbuf(doc! {
        "_id": uuid(b"aaaaaaaaaaaaaaaa"),
        "keyMaterial": generic(&b64(AWS_KEY_MATERIAL)),
        "creationDate": libmongocrypt::bson::DateTime::from_millis(1557827033449),
        "updateDate": libmongocrypt::bson::DateTime::from_millis(1557827033449),
        "status": 1,
        "masterKey": { "region": "us-east-1", "key": AWS_ARN, "provider": "aws" },
        "keyAltNames": ["keyDocumentName"],
    });

    let encrypt = |algorithm: Algorithm, value: &RawDocument| {
        let mut b = crypt.ctx().key_id(&local_key_id).unwrap().algorithm(&algorithm).unwrap();
        if algorithm == Algorithm::Indexed {
            b = b.contention_factor(0).unwrap();
        }
        let mut ctx = b.explicit_encrypt(value).unwrap();
        drive_valid(&mut ctx, &[&local_key], None)
    };
    let values = vec![
        rawdoc! { "v": SSN },
        rawdoc! { "v": 42 },
        rawdoc! { "v": 42_i64 },
        rawdoc! { "v": { "nested": [1, 2, 3] } },
        rawdoc! { "v": 1.5 },
        rawdoc! { "v": true },
    ];
    let mut ciphertexts = vec![
        encrypt(Algorithm::Deterministic, &values[0]),
        encrypt(Algorithm::Random, &values[3]),
        encrypt(Algorithm::Random, &values[4]),
        encrypt(Algorithm::Unindexed, &values[0]),
    ];
    ciphertexts.push(rawbuf(doc! { "v": Binary { subtype: BinarySubtype::Encrypted, bytes: vec![1; 40] } }));

    let schema = |key_id: &[u8]| {
        doc! {
            "bsonType": "object",
            "properties": {
                "ssn": { "encrypt": { "keyId": [uuid(key_id)], "bsonType": "string",
                    "algorithm": "AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic" } },
                "secret": { "encrypt": { "keyId": [uuid(key_id)], "bsonType": "object",
                    "algorithm": "AEAD_AES_256_CBC_HMAC_SHA_512-Random" } },
            },
        }
    };
    let collinfo = rawbuf(doc! {
        "type": "collection", "name": "test",
        "idIndex": { "ns": "test.test", "name": "_id_", "key": { "_id": 1 }, "v": 2 },
        "options": { "validator": { "$jsonSchema": schema(&local_key_id) } },
    });
    let marking = |first: u8, algorithm: i32, value: Bson| {
        let inner = rawbuf(doc! { "a": algorithm, "ki": uuid(&local_key_id), "v": value });
        placeholder_binary(inner.as_bytes(), first)
    };
    let placeholders = vec![
        rawbuf(doc! { "a": 1, "ki": uuid(&local_key_id), "v": SSN }),
        rawbuf(doc! { "a": 2, "ka": "altname", "v": { "x": 1 } }),
        rawbuf(doc! { "a": 1, "ki": uuid(b"aaaaaaaaaaaaaaaa"), "v": 7 }),
    ];
    let cmd = rawbuf(doc! { "find": "test", "filter": { "ssn": SSN } });
    let markings = vec![
        rawbuf(doc! {
            "schemaRequiresEncryption": true, "ok": 1,
            "result": { "find": "test", "filter": { "ssn": marking(0, 1, Bson::String(SSN.into())) } },
            "hasEncryptedPlaceholders": true,
        }),
        rawbuf(doc! {
            "schemaRequiresEncryption": true, "ok": 1,
            "result": { "insert": "test", "documents": [ {
                "ssn": marking(0, 1, Bson::String(SSN.into())),
                "secret": marking(0, 2, Bson::Document(doc! { "a": [1, 2] })),
            } ] },
            "hasEncryptedPlaceholders": true,
        }),
        rawbuf(doc! { "schemaRequiresEncryption": false, "ok": 1, "result": { "find": "test" },
        "hasEncryptedPlaceholders": false }),
    ];
    let mut ctx = crypt.ctx().encrypt("test", &cmd).unwrap();
    let collinfo_ref = collinfo.clone();
    // Auto encryption of the seed command, to get a real encrypted command for auto decryption.
    let encrypted = {
        let mut out = None;
        for _ in 0..16 {
            match ctx.state() {
                State::NeedMongoCollinfo => {
                    ctx.mongo_feed(&collinfo_ref).unwrap();
                    ctx.mongo_done().unwrap();
                }
                State::NeedMongoMarkings => {
                    ctx.mongo_feed(&markings[0]).unwrap();
                    ctx.mongo_done().unwrap();
                }
                State::NeedMongoKeys => {
                    ctx.mongo_feed(&local_key).unwrap();
                    ctx.mongo_done().unwrap();
                }
                State::Ready => out = Some(ctx.finalize_owned().unwrap()),
                State::Done => break,
                other => panic!("seed auto encryption in {other:?}: {:?}", ctx.status()),
            }
        }
        out.unwrap()
    };
    drop(ctx);

    let kms_tests: serde_json::Value =
        serde_json::from_str(&data("open/kms-reply-parsing/kms-tests-aws.json")).unwrap();
    let kms_test_replies = kms_tests
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let chunks = case["http_reply"].as_array().unwrap();
            chunks.iter().map(|c| c.as_str().unwrap()).collect::<String>().into_bytes()
        })
        .collect();

    Corpus {
        aws_key,
        kms_providers: vec![
            rawbuf(all_providers()),
            rawbuf(doc! { "local": { "key": generic(&LOCAL_KEK) } }),
            rawbuf(doc! { "aws": { "accessKeyId": "a", "secretAccessKey": "b", "sessionToken": "c" } }),
            rawbuf(doc! { "aws": {}, "azure": { "accessToken": "t" }, "gcp": { "accessToken": "t" } }),
            rawbuf(doc! { "azure": { "tenantId": "t", "clientId": "c", "clientSecret": "s",
            "identityPlatformEndpoint": "example.com:443" } }),
            rawbuf(doc! { "local:named": { "key": generic(&LOCAL_KEK) }, "aws:other": { "accessKeyId": "a",
            "secretAccessKey": "b" } }),
        ],
        schema_maps: vec![
            rawbuf(doc! { "test.test": schema(&local_key_id) }),
            rawbuf(doc! { "db.coll": { "bsonType": "object", "encryptMetadata": { "keyId": [uuid(&local_key_id)] },
            "properties": { "x": { "encrypt": { "bsonType": "int",
                "algorithm": "AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic" } } } } }),
        ],
        efc_maps: vec![rawbuf(doc! { "db.coll": {
            "escCollection": "enxcol_.coll.esc", "ecocCollection": "enxcol_.coll.ecoc",
            "fields": [
                { "keyId": uuid(&local_key_id), "path": "ssn", "bsonType": "string",
                  "queries": { "queryType": "equality", "contention": 0 } },
                { "keyId": uuid(b"aaaaaaaaaaaaaaaa"), "path": "age", "bsonType": "int",
                  "queries": { "queryType": "range", "min": 0, "max": 200, "sparsity": 1, "trimFactor": 1 } },
            ],
        } })],
        keks: vec![
            rawbuf(doc! { "provider": "local" }),
            rawbuf(doc! { "provider": "aws", "region": "us-east-1", "key": AWS_ARN }),
            rawbuf(doc! { "provider": "aws", "region": "us-east-1", "key": AWS_ARN, "endpoint": "example.com:443" }),
            rawbuf(doc! { "provider": "azure", "keyVaultEndpoint": "example.vault.azure.net", "keyName": "k" }),
            rawbuf(doc! { "provider": "gcp", "projectId": "p", "location": "global", "keyRing": "r",
            "keyName": "k" }),
            rawbuf(doc! { "provider": "kmip", "keyId": "1" }),
        ],
        range_opts: vec![
            rawbuf(doc! { "min": 0, "max": 200, "sparsity": 1_i64 }),
            rawbuf(doc! { "min": 0.0, "max": 1.0, "precision": 2, "sparsity": 1_i64, "trimFactor": 1 }),
            rawbuf(doc! { "sparsity": 1_i64 }),
        ],
        text_opts: vec![rawbuf(doc! { "caseSensitive": true, "diacriticSensitive": false,
        "prefix": { "strMaxQueryLength": 10, "strMinQueryLength": 2 } })],
        values,
        expressions: vec![
            rawbuf(doc! { "v": { "$and": [ { "age": { "$gte": 5 } }, { "age": { "$lt": 50 } } ] } }),
            rawbuf(doc! { "v": { "$and": [ { "age": { "$gt": 5.5 } } ] } }),
        ],
        ciphertexts,
        commands: vec![
            cmd.clone(),
            rawbuf(doc! { "insert": "test", "documents": [ { "ssn": SSN, "secret": { "a": [1, 2] } } ] }),
            rawbuf(doc! { "aggregate": "test", "pipeline": [ { "$match": { "ssn": SSN } } ], "cursor": {} }),
            rawbuf(doc! { "find": "coll", "filter": { "x": 5 } }),
        ],
        encrypted_commands: vec![
            encrypted,
            rawbuf(doc! { "a": { "b": [ Bson::Binary(Binary {
            subtype: BinarySubtype::Encrypted, bytes: vec![1; 70] }) ] } }),
        ],
        collinfos: vec![
            collinfo,
            rawbuf(doc! { "type": "collection", "name": "test", "options": {} }),
            rawbuf(doc! { "type": "view", "name": "test", "options": { "viewOn": "other", "pipeline": [] } }),
        ],
        markings,
        placeholders,
        filters: vec![
            rawbuf(doc! {}),
            rawbuf(doc! { "_id": uuid(&local_key_id) }),
            rawbuf(doc! { "keyAltNames": "keyDocumentName" }),
        ],
        aws_encrypt_reply: http_file("open/datakey-local-aws/kms-aws-encrypt-response.txt"),
        aws_decrypt_reply: http_file("example/kms-decrypt-reply.txt"),
        oauth_reply: http_json("200 OK", r#"{"token_type":"Bearer","expires_in":3599,"access_token":"eyJ0eXAi"}"#),
        azure_wrap_reply: http_json(
            "200 OK",
            r#"{"kid":"https://example.vault.azure.net/keys/k/1","value":"c2VjcmV0IGtleSBtYXRlcmlhbCBvZiA5NiBieXRlcywgcGFkZGVkIG91dCB0byB0aGUgcmlnaHQgbGVuZ3RoLi4uLi4uLi4uLi4uLi4uLi4uLi4uLi4uLi4uLi4u"}"#,
        ),
        gcp_encrypt_reply: http_json(
            "200 OK",
            r#"{"name":"projects/p/locations/global/keyRings/r/cryptoKeys/k","ciphertext":"c2VjcmV0IGtleSBtYXRlcmlhbA=="}"#,
        ),
        kms_test_replies,
        local_key,
        local_key_id,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Library versions

/// Before 1.21.0, the first release after 1.7 this suite ran against, for the bugs that 1.21.0 no longer has.
fn old_library() -> bool {
    !mongocrypt_at_least(1, 21)
}

fn mongocrypt_at_least(major: u32, minor: u32) -> bool {
    let mut parts = libmongocrypt::version().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

/// A fuzzed HTTP reply from a valid `seed`.
fn fuzz_http(rng: &mut Rng, seed: &[u8], corpus: &Corpus) -> Vec<u8> {
    let text = String::from_utf8_lossy(seed).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").map_or((text.clone(), String::new()), |(h, b)| (h.into(), b.into()));
    let reply = match rng.below(14) {
        0 => rng.bytes_below(200),
        1 => corpus.kms_test_replies[rng.below(corpus.kms_test_replies.len())].clone(),
        2 | 3 => seed.to_vec(),
        4 => {
            // Another Content-Length.
            let value = rng.pick(&["-1", "0", "1", "2147483647", "2147483648", "99999999999", "abc", "", " 5", "-0"]);
            let value =
                if rng.chance(30) { (body.len() as i64 + rng.below(5) as i64 - 2).to_string() } else { value.into() };
            let mut lines: Vec<String> =
                head.split("\r\n").filter(|l| !l.starts_with("Content-Length")).map(String::from).collect();
            lines.insert(1 + rng.below(lines.len()), format!("Content-Length: {value}"));
            format!("{}\r\n\r\n{body}", lines.join("\r\n")).into_bytes()
        }
        5 => {
            // Another status line.
            let status = rng.pick(&[
                "200 OK",
                "400 Bad",
                "401 x",
                "404 Not Found",
                "500 x",
                "503 x",
                "100 Continue",
                "abc OK",
                "-1 x",
                "99999999999999999999 x",
                "",
                "200",
            ]);
            let version = rng.pick(&["HTTP/1.1", "HTTP/1.0", "HTTP/2", "http/1.1", ""]);
            let rest = head.split_once("\r\n").map_or("", |(_, r)| r);
            format!("{version} {status}\r\n{rest}\r\n\r\n{body}").into_bytes()
        }
        6 | 7 => {
            // Chunked transfer encoding, with right or wrong chunk lengths.
            let lines: Vec<&str> = head.split("\r\n").filter(|l| !l.starts_with("Content-Length")).collect();
            let mut out = format!("{}\r\nTransfer-Encoding: chunked\r\n\r\n", lines.join("\r\n"));
            let mut rest = body.as_bytes();
            while !rest.is_empty() {
                let n = (1 + rng.below(64)).min(rest.len());
                let declared = if rng.chance(85) {
                    format!("{n:x}")
                } else {
                    rng.pick(&[
                        "0",
                        "ffffffff",
                        "80000000",
                        "7ffffffd",
                        "7ffffffe",
                        "7fffffff",
                        "100000000",
                        "-1",
                        "zz",
                        "",
                        "00000010",
                        "FFFF",
                    ])
                    .to_string()
                };
                out += &format!("{declared}\r\n");
                out += &String::from_utf8_lossy(&rest[..n]);
                out += "\r\n";
                rest = &rest[n..];
            }
            if rng.chance(80) {
                out += "0\r\n\r\n";
            }
            out.into_bytes()
        }
        8 => {
            // Another JSON body, with the right length.
            let body = rng.pick(&[
                "{}",
                "[]",
                "null",
                "{\"Plaintext\": 5}",
                "{\"Plaintext\": \"!!!\"}",
                "{\"CiphertextBlob\": \"\"}",
                "{\"access_token\": 1, \"expires_in\": \"x\"}",
                "{\"access_token\": \"t\", \"expires_in\": -1}",
                "{\"value\": \"%%%\"}",
                "{\"ciphertext\": \"YQ==\"}",
                "{\"Plaintext\": \"YWFh\"}",
                "{\"a\":",
                "{\"x\": [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}",
                "\u{0}\u{1}",
            ]);
            let lines: Vec<&str> = head.split("\r\n").filter(|l| !l.starts_with("Content-Length")).collect();
            format!("{}\r\nContent-Length: {}\r\n\r\n{body}", lines.join("\r\n"), body.len()).into_bytes()
        }
        _ => {
            let mut b = seed.to_vec();
            for _ in 0..1 + rng.below(4) {
                mutate_bytes_in_place(rng, &mut b);
            }
            b
        }
    };
    reply
}

/// Serves every request of a NEED_KMS state with a fuzzed reply (or the valid one), fed in random pieces.
fn serve_kms(ctx: &mut Ctx, rng: &mut Rng, corpus: &Corpus, fuzz_percent: usize) -> Option<()> {
    let mut scope = ctx.kms_scope().unwrap();
    while let Some(mut kms) = scope.next_kms_ctx() {
        let message = ok(kms.message().map(|m| String::from_utf8_lossy(m).into_owned()))?;
        ok(kms.endpoint())?;
        let provider = kms.kms_provider().to_string();
        let seed = match provider.as_str() {
            "aws" if message.contains("TrentService.Decrypt") => corpus.aws_decrypt_reply.clone(),
            "aws" => corpus.aws_encrypt_reply.clone(),
            "azure" | "gcp" if message.contains("oauth") => corpus.oauth_reply.clone(),
            "azure" => corpus.azure_wrap_reply.clone(),
            "gcp" => corpus.gcp_encrypt_reply.clone(),
            _ => rng.bytes_below(64),
        };
        let reply = if rng.chance(fuzz_percent) { fuzz_http(rng, &seed, corpus) } else { seed };
        if std::env::var_os("MONGOCRYPT_FUZZ_TRACE").is_some() {
            let _ = writeln!(std::io::stderr(), "KMS reply ({provider}): {:?}", String::from_utf8_lossy(&reply));
        }
        let mut rest = &reply[..];
        for _ in 0..64 {
            let needed = kms.bytes_needed() as usize;
            if needed == 0 || rest.is_empty() {
                break;
            }
            // Usually at most what is needed, in pieces; sometimes all at once, even too much.
            let n = if rng.chance(95) { (1 + rng.below(needed.min(512))).min(rest.len()) } else { rest.len() };
            if std::env::var_os("MONGOCRYPT_FUZZ_TRACE").is_some() {
                let _ = writeln!(std::io::stderr(), "feed {n} of {needed} needed");
            }
            ok(kms.feed(&rest[..n]))?;
            rest = &rest[n..];
        }
        if rng.chance(2) {
            ok(kms.feed(&[]))?;
        }
        let _ = ok(kms.status());
    }
    ok(scope.done())
}

// ---------------------------------------------------------------------------------------------------------------
// Driving a ctx with fuzzed replies

/// How much of each state's input is fuzzed, in percent; the rest is valid.
#[derive(Clone, Copy)]
struct Fuzz {
    collinfo: usize,
    markings: usize,
    keys: usize,
    kms: usize,
}

const MOSTLY_VALID: Fuzz = Fuzz { collinfo: 10, markings: 10, keys: 10, kms: 10 };

/// Drives `ctx` for a bounded number of steps, answering each state with valid or fuzzed input.
fn drive_fuzzy(ctx: &mut Ctx, rng: &mut Rng, corpus: &Corpus, fuzz: Fuzz) {
    for _ in 0..12 {
        reached(ctx.state());
        let step = match ctx.state() {
            State::Done | State::Error => return,
            State::NeedMongoCollinfo | State::NeedMongoCollinfoWithDb => feed_collinfo(ctx, rng, corpus, fuzz.collinfo),
            State::NeedMongoMarkings => feed_markings(ctx, rng, corpus, fuzz.markings),
            State::NeedMongoKeys => feed_keys(ctx, rng, corpus, fuzz.keys, None),
            State::NeedKms => serve_kms(ctx, rng, corpus, fuzz.kms),
            State::NeedKmsCredentials => {
                let creds = if rng.chance(50) { fuzz_bson(rng, &corpus.kms_providers) } else { raw(&all_providers()) };
                expect_checked(&[], &[&creds], ctx.provide_kms_providers(&creds))
            }
            State::Ready => ok(ctx.finalize().map(|d| d.to_owned())).map(drop),
            State::Unknown(_) => return,
            other => panic!("unexpected state {other:?}"),
        };
        if step.is_none() && rng.chance(10) {
            // Keep calling after an error: it must stay an error, not a crash.
            let _ = ok(ctx.mongo_done());
            let _ = ok(ctx.finalize().map(drop));
            return;
        }
    }
}

fn feed_collinfo(ctx: &mut Ctx, rng: &mut Rng, corpus: &Corpus, fuzz_percent: usize) -> Option<()> {
    ok(ctx.mongo_op().map(drop))?;
    for _ in 0..rng.pick(&[0, 1, 1, 1, 2]) {
        let info = if rng.chance(fuzz_percent) {
            fuzz_bson(rng, &corpus.collinfos)
        } else {
            corpus.collinfos[0].clone().into_bytes()
        };
        expect_checked(&[], &[&info], ctx.mongo_feed(&info))?;
    }
    ok(ctx.mongo_done())
}

fn feed_markings(ctx: &mut Ctx, rng: &mut Rng, corpus: &Corpus, fuzz_percent: usize) -> Option<()> {
    ok(ctx.mongo_op().map(drop))?;
    let reply = if !rng.chance(fuzz_percent) {
        corpus.markings[rng.below(2)].clone().into_bytes()
    } else if rng.chance(40) {
        // A well-formed reply whose placeholder is fuzzed inside its binary.
        let inner = fuzz_bson(rng, &corpus.placeholders);
        let first = rng.pick(&[0, 0, 0, 1, 2, 3, 4, 6, 7, 9, 0xff]);
        raw(&doc! {
            "schemaRequiresEncryption": true, "ok": 1, "hasEncryptedPlaceholders": true,
            "result": { "find": "test", "filter": { "ssn": placeholder_binary(&inner, first) } },
        })
    } else {
        fuzz_bson(rng, &corpus.markings)
    };
    if std::env::var_os("MONGOCRYPT_FUZZ_TRACE").is_some() {
        let _ = writeln!(std::io::stderr(), "markings: {reply:?}");
    }
    expect_checked(&[], &[&reply], ctx.mongo_feed(&reply))?;
    ok(ctx.mongo_done())
}

/// Feeds key documents: the valid ones, or fuzzed ones whose `_id` is `wanted` (so that they are accepted as the
/// requested key and parsed all the way).
fn feed_keys(ctx: &mut Ctx, rng: &mut Rng, corpus: &Corpus, fuzz_percent: usize, wanted: Option<&[u8]>) -> Option<()> {
    ok(ctx.mongo_op().map(drop))?;
    for _ in 0..rng.pick(&[0, 1, 1, 1, 2]) {
        let seed = if rng.chance(70) { &corpus.local_key } else { &corpus.aws_key };
        let key = if rng.chance(fuzz_percent) {
            let mut d = Document::try_from(seed.as_ref()).unwrap();
            if let Some(id) = wanted {
                d.insert("_id", uuid(id));
            }
            fuzz_bson(rng, &[rawbuf(d)])
        } else {
            seed.clone().into_bytes()
        };
        expect_checked(&[], &[&key], ctx.mongo_feed(&key))?;
    }
    ok(ctx.mongo_done())
}

// ---------------------------------------------------------------------------------------------------------------
// Targets

/// A handle that is replaced every `every` uses, so that caches (keys, collection infos, OAuth tokens) neither
/// grow without bound nor keep later cases from reaching the states they fuzz.
struct Rotating {
    crypt: Option<Crypt>,
    uses: usize,
    every: usize,
    make: fn() -> Crypt,
}

impl Rotating {
    fn new(every: usize, make: fn() -> Crypt) -> Rotating {
        Rotating { crypt: None, uses: 0, every, make }
    }

    fn get(&mut self) -> &Crypt {
        if self.crypt.is_none() || self.uses >= self.every {
            self.crypt = Some((self.make)());
            self.uses = 0;
        }
        self.uses += 1;
        self.crypt.as_ref().unwrap()
    }

    /// The next `get` makes a new handle.
    fn renew(&mut self) {
        self.crypt = None;
    }
}

/// After a target's cases, its handle must still do a valid round trip.
fn assert_still_works(crypt: &Crypt) {
    let c = corpus();
    let mut ctx = crypt
        .ctx()
        .key_id(&c.local_key_id)
        .and_then(|b| b.algorithm(&Algorithm::Deterministic))
        .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": SSN }))
        .expect("a valid encryption after fuzzing");
    let ciphertext = drive_valid(&mut ctx, &[&c.local_key], None);
    drop(ctx);
    let mut ctx = crypt.ctx().explicit_decrypt(&ciphertext).unwrap();
    assert_eq!(drive_valid(&mut ctx, &[&c.local_key], None).get_str("v").unwrap(), SSN);
}

/// One option of a `CryptBuilder`, fuzzed; `None` if it failed (with a typed error).
fn builder_step(builder: CryptBuilder, rng: &mut Rng, c: &Corpus) -> Option<CryptBuilder> {
    match rng.below(9) {
        0..=2 => {
            let providers = fuzz_bson(rng, &c.kms_providers);
            expect_checked(&[], &[&providers], builder.kms_providers(&providers))
        }
        3 => {
            let map = fuzz_bson(rng, &c.schema_maps);
            expect_checked(&[], &[&map], builder.schema_map(&map))
        }
        4 => {
            let map = fuzz_bson(rng, &c.efc_maps);
            expect_checked(&[], &[&map], builder.encrypted_field_config_map(&map))
        }
        5 => {
            let len = rng.pick(&[0, 1, 32, 95, 96, 97, 200]);
            ok(builder.kms_provider_local(&rng.bytes(len)))
        }
        6 => {
            let (id, secret) = (rng.string_arg(&["example"]), rng.string_arg(&["example"]));
            expect_checked(&[&id, &secret], &[], builder.kms_provider_aws(&id, &secret))
        }
        7 => Some(builder.use_need_kms_credentials_state()),
        _ => Some(if rng.chance(50) { builder.rust_crypto() } else { builder.bypass_query_analysis() }),
    }
}

#[test]
fn fuzz_crypt_options() {
    let c = corpus();
    for_each_case(Target::CryptOptions, |rng, _| {
        let mut builder = Crypt::builder();
        if rng.chance(50) {
            builder = builder.kms_providers(&all_providers()).unwrap();
        }
        for _ in 0..1 + rng.below(3) {
            let Some(b) = builder_step(builder, rng, c) else { return };
            builder = b;
        }
        let Some(crypt) = ok(builder.build()) else { return };
        // Use it: a data key under a fuzzed KEK, and an explicit encryption.
        let kek = fuzz_bson(rng, &c.keks);
        if let Some(mut ctx) =
            expect_checked(&[], &[&kek], crypt.ctx().key_encryption_key(&kek)).and_then(|b| ok(b.datakey()))
        {
            drive_fuzzy(&mut ctx, rng, c, MOSTLY_VALID);
        }
        let ctx = crypt.ctx().key_id(&c.local_key_id).and_then(|b| b.algorithm(&Algorithm::Deterministic));
        if let Some(mut ctx) = ok(ctx.and_then(|b| b.explicit_encrypt(&c.values[0]))) {
            drive_fuzzy(&mut ctx, rng, c, MOSTLY_VALID);
        };
    });
}

/// One option of a `CtxBuilder`, fuzzed; `None` if it failed (with a typed error).
fn ctx_step(b: CtxBuilder, rng: &mut Rng, c: &Corpus) -> Option<CtxBuilder> {
    match rng.below(14) {
        0 | 1 => {
            let id = match rng.below(3) {
                0 => c.local_key_id.clone(),
                1 => b"aaaaaaaaaaaaaaaa".to_vec(),
                _ => rng.bytes_of(&[0, 1, 15, 16, 17, 32]),
            };
            ok(b.key_id(&id))
        }
        2 => ok(b.key_alt_name(&rng.string(&["keyDocumentName", "altname"]))),
        3 => ok(b.key_material(&rng.bytes_of(&[0, 32, 95, 96, 97]))),
        4 | 5 => {
            let algorithm = match rng.below(8) {
                0 => Algorithm::Deterministic,
                1 => Algorithm::Random,
                2 => Algorithm::Indexed,
                3 => Algorithm::Unindexed,
                4 => Algorithm::Range,
                5 => Algorithm::String,
                _ => Algorithm::Other(rng.string_arg(&[
                    "RangePreview",
                    "rangePreview",
                    "AEAD_AES_256_CBC_HMAC_SHA_512-",
                ])),
            };
            expect_checked(&[algorithm.as_str()], &[], b.algorithm(&algorithm))
        }
        6 => {
            let (region, cmk) = (rng.string_arg(&["us-east-1"]), rng.string_arg(&[AWS_ARN]));
            expect_checked(&[&region, &cmk], &[], b.masterkey_aws(&region, &cmk))
        }
        7 => {
            let endpoint = rng.string_arg(&["example.com", "example.com:443"]);
            expect_checked(&[&endpoint], &[], b.masterkey_aws_endpoint(&endpoint))
        }
        8 => ok(b.masterkey_local()),
        9 => {
            let kek = fuzz_bson(rng, &c.keks);
            expect_checked(&[], &[&kek], b.key_encryption_key(&kek))
        }
        10 => ok(b.contention_factor(rng.interesting_i64())),
        11 => {
            let q = rng.pick(&[QueryType::Equality, QueryType::Range, QueryType::Prefix, QueryType::Substring]);
            let q = if rng.chance(20) { QueryType::Other(rng.string_arg(&["rangePreview"])) } else { q };
            expect_checked(&[q.as_str()], &[], b.query_type(&q))
        }
        12 => {
            let opts = fuzz_bson(rng, &c.range_opts);
            expect_checked(&[], &[&opts], b.algorithm_range(&opts))
        }
        _ => {
            if rng.chance(50) {
                ok(b.index_key_id(&rng.bytes_of(&[0, 16])))
            } else {
                let opts = fuzz_bson(rng, &c.text_opts);
                expect_checked(&[], &[&opts], b.algorithm_text(&opts))
            }
        }
    }
}

/// An init of a ctx, fuzzed; `None` if it failed (with a typed error).
fn ctx_init(b: CtxBuilder, rng: &mut Rng, c: &Corpus) -> Option<Ctx> {
    let input;
    let result = match rng.below(8) {
        0 => return ok(b.datakey()),
        1 => {
            // Commands malformed inside a valid frame used to be kept away from here (libmongocrypt aborts on them
            // in bson_copy_to_excluding_noinit at mongo_op): the binding now refuses them.
            let db = rng.string_arg(&["test", "db", "admin"]);
            let cmd = fuzz_bson(rng, &c.commands);
            let result = b.encrypt(&db, &cmd);
            return expect_checked(&[&db], &[&cmd], result);
        }
        2 | 3 => {
            input = fuzz_bson(rng, &c.values);
            b.explicit_encrypt(&input)
        }
        4 => {
            input = fuzz_bson(rng, &c.expressions);
            b.explicit_encrypt_expression(&input)
        }
        5 => {
            input = fuzz_bson(rng, &c.encrypted_commands);
            b.decrypt(&input)
        }
        6 => {
            input = fuzz_bson(rng, &c.ciphertexts);
            b.explicit_decrypt(&input)
        }
        _ => {
            input = fuzz_bson(rng, &c.filters);
            b.rewrap_many_datakey(&input)
        }
    };
    expect_checked(&[], &[&input], result)
}

#[test]
fn fuzz_ctx_options_and_inits() {
    let c = corpus();
    let mut crypts = Rotating::new(500, valid_crypt);
    for_each_case(Target::CtxOptions, |rng, _| {
        let crypt = crypts.get();
        let mut b = crypt.ctx();
        for _ in 0..rng.below(4) {
            let Some(next) = ctx_step(b, rng, c) else { return };
            b = next;
        }
        if let Some(mut ctx) = ctx_init(b, rng, c) {
            drive_fuzzy(&mut ctx, rng, c, MOSTLY_VALID);
        }
    });
    assert_still_works(crypts.get());
}

#[test]
fn fuzz_mongo_feed_collinfo() {
    let c = corpus();
    // No schema map: every encryption asks for the collection info first. The collection info is cached per
    // namespace, so each case uses a collection of its own.
    let mut crypts = Rotating::new(300, valid_crypt);
    for_each_case(Target::FeedCollinfo, |rng, case| {
        let crypt = crypts.get();
        let coll = format!("c{case}");
        let cmd = raw(&doc! { "find": &coll, "filter": { "ssn": SSN } });
        let Some(mut ctx) = ok(crypt.ctx().encrypt("test", &cmd)) else { return };
        assert_eq!(ctx.state(), State::NeedMongoCollinfo);
        let _ = feed_collinfo(&mut ctx, rng, c, 90);
        drive_fuzzy(&mut ctx, rng, c, MOSTLY_VALID);
    });
    assert_still_works(crypts.get());
}

#[test]
fn fuzz_mongo_feed_markings() {
    let c = corpus();
    fn crypt_with_schema() -> Crypt {
        let c = corpus();
        Crypt::builder()
            .kms_providers(&all_providers())
            .unwrap()
            .schema_map(&c.schema_maps[0])
            .unwrap()
            .build()
            .unwrap()
    }
    let mut crypts = Rotating::new(1000, crypt_with_schema);
    for_each_case(Target::FeedMarkings, |rng, _| {
        let crypt = crypts.get();
        let cmd = c.commands[rng.below(2)].clone();
        let Some(mut ctx) = ok(crypt.ctx().encrypt("test", &cmd)) else { return };
        assert_eq!(ctx.state(), State::NeedMongoMarkings);
        let _ = feed_markings(&mut ctx, rng, c, 90);
        drive_fuzzy(&mut ctx, rng, c, MOSTLY_VALID);
    });
    assert_still_works(crypts.get());
}

#[test]
fn fuzz_mongo_feed_keys() {
    let c = corpus();
    let mut crypts = Rotating::new(300, valid_crypt);
    for_each_case(Target::FeedKeys, |rng, _| {
        let crypt = crypts.get();
        // A key id no case asked for before, so that the ctx asks for it (fuzzed documents get it as `_id`).
        let id = rng.bytes(16);
        let b = if rng.chance(80) { crypt.ctx().key_id(&id) } else { crypt.ctx().key_alt_name(&format!("{id:x?}")) };
        let Some(b) = ok(b.and_then(|b| b.algorithm(&Algorithm::Deterministic))) else { return };
        let Some(mut ctx) = ok(b.explicit_encrypt(&c.values[0])) else { return };
        assert_eq!(ctx.state(), State::NeedMongoKeys);
        let _ = feed_keys(&mut ctx, rng, c, 90, Some(&id));
        drive_fuzzy(&mut ctx, rng, c, MOSTLY_VALID);
    });
    assert_still_works(crypts.get());
}

#[test]
fn fuzz_kms_feed() {
    let c = corpus();
    let mut crypts = Rotating::new(40, valid_crypt);
    for_each_case(Target::KmsFeed, |rng, _| {
        let scenario = rng.below(6);
        if scenario == 5 {
            // Decryption with the AWS key: the key is cached after a good reply, so a new handle each time.
            crypts.renew();
        }
        let crypt = crypts.get();
        let ctx = match scenario {
            0 | 1 => crypt.ctx().key_encryption_key(&c.keks[1]).and_then(CtxBuilder::datakey),
            2 => crypt.ctx().key_encryption_key(&c.keks[3]).and_then(CtxBuilder::datakey),
            3 => crypt.ctx().key_encryption_key(&c.keks[4]).and_then(CtxBuilder::datakey),
            4 => crypt.ctx().key_encryption_key(&c.keks[5]).and_then(CtxBuilder::datakey),
            _ => crypt
                .ctx()
                .key_alt_name("keyDocumentName")
                .and_then(|b| b.algorithm(&Algorithm::Deterministic))
                .and_then(|b| b.explicit_encrypt(&c.values[0])),
        };
        let Some(mut ctx) = ok(ctx) else { return };
        if ctx.state() == State::NeedMongoKeys {
            let aws_key = c.aws_key.clone();
            let _ = ok(ctx.mongo_feed(&aws_key)).and_then(|()| ok(ctx.mongo_done()));
        }
        drive_fuzzy(&mut ctx, rng, c, Fuzz { kms: 90, ..MOSTLY_VALID });
    });
    assert_still_works(crypts.get());
}

#[test]
fn fuzz_decrypt() {
    let c = corpus();
    let mut crypts = Rotating::new(2000, valid_crypt);
    for_each_case(Target::Decrypt, |rng, _| {
        let crypt = crypts.get();
        let ctx = if rng.chance(70) {
            // {v: ciphertext}, the ciphertext bytes mutated, often keeping the key id of the local key.
            let input = if rng.chance(70) {
                let seed = &c.ciphertexts[rng.below(c.ciphertexts.len())];
                let mut bytes = seed.get_binary("v").map(|b| b.bytes.to_vec()).unwrap_or_default();
                for _ in 0..1 + rng.below(3) {
                    mutate_bytes_in_place(rng, &mut bytes);
                }
                if bytes.len() >= 17 && rng.chance(50) {
                    bytes[1..17].copy_from_slice(&c.local_key_id);
                }
                if !bytes.is_empty() && rng.chance(30) {
                    bytes[0] = rng.below(18) as u8;
                }
                let subtype =
                    if rng.chance(90) { BinarySubtype::Encrypted } else { BinarySubtype::from(rng.next() as u8) };
                raw(&doc! { "v": Binary { subtype, bytes } })
            } else {
                fuzz_bson(rng, &c.ciphertexts)
            };
            expect_checked(&[], &[&input], crypt.ctx().explicit_decrypt(&input))
        } else {
            let input = fuzz_bson(rng, &c.encrypted_commands);
            expect_checked(&[], &[&input], crypt.ctx().decrypt(&input))
        };
        if let Some(mut ctx) = ctx {
            drive_fuzzy(&mut ctx, rng, c, MOSTLY_VALID);
        }
    });
    assert_still_works(crypts.get());
}

/// String arguments need no NUL after them, and may be empty: the binding passes NUL-terminated copies. (Fixed
/// binding bug: they went to C as (pointer, length), and libmongocrypt's `bson_strndup` read one byte past each, or
/// through the dangling pointer of an empty one: SIGSEGV.) Each string is a heap allocation of exactly its length,
/// so that memcheck (scripts/valgrind.sh) would see a read past it. Every call is `Ok` or libmongocrypt's own error
/// about the value (the same on 1.7.2 and 1.21.0); a string with a NUL byte in it is refused by the binding.
#[test]
fn string_arguments_need_no_nul_after_them() {
    let exact = |s: &str| -> Box<str> { s.into() };
    let (empty, region, arn, endpoint, db) =
        (exact(""), exact("us-east-1"), exact(AWS_ARN), exact("example.com:443"), exact("test"));
    let crypt = valid_crypt();
    let cmd = rawdoc! { "find": "c" };
    let client_error = |what: &str, result: Result<(), Error>, expected: &str| match result {
        Err(Error::Client { message, .. }) => assert!(message.contains(expected), "{what}: {message}"),
        other => panic!("{what}: expected libmongocrypt's error \"{expected}\", got {other:?}"),
    };
    let aws_key = || crypt.ctx().masterkey_aws(&region, &arn);

    // Valid strings, each without a NUL after it.
    Crypt::builder().kms_provider_aws(&region, &arn).and_then(CryptBuilder::build).unwrap();
    aws_key().and_then(CtxBuilder::datakey).unwrap();
    aws_key().and_then(|b| b.masterkey_aws_endpoint(&endpoint)).and_then(CtxBuilder::datakey).unwrap();
    crypt.ctx().encrypt(&db, &cmd).unwrap();

    // Empty strings: a pointer to a NUL, never a dangling one.
    Crypt::builder().kms_provider_aws(&empty, &empty).unwrap();
    client_error("masterkey_aws", crypt.ctx().masterkey_aws(&empty, &empty).map(drop), "invalid region");
    let result = aws_key().and_then(|b| b.masterkey_aws_endpoint(&empty)).map(drop);
    client_error("masterkey_aws_endpoint", result, "Invalid endpoint");
    client_error("encrypt", crypt.ctx().encrypt(&empty, &cmd).map(drop), "invalid db");
    let result = crypt.ctx().algorithm(&Algorithm::Other(String::new())).map(drop);
    client_error("algorithm", result, "unsupported algorithm");
    let result = crypt.ctx().query_type(&QueryType::Other(String::new())).map(drop);
    client_error("query_type", result, "Unsupported query_type");

    // A NUL byte inside: refused before libmongocrypt sees it.
    let nul = |what: &str, result: Result<(), Error>| {
        assert!(matches!(&result, Err(Error::InvalidArgument(m)) if m.contains("NUL")), "{what}: {result:?}");
    };
    nul("kms_provider_aws", Crypt::builder().kms_provider_aws("exa\0mple", "example").map(drop));
    nul("masterkey_aws", crypt.ctx().masterkey_aws("us-east-1", "arn\0").map(drop));
    nul("masterkey_aws_endpoint", aws_key().and_then(|b| b.masterkey_aws_endpoint("\0example.com")).map(drop));
    nul("encrypt", crypt.ctx().encrypt("te\0st", &cmd).map(drop));
    nul("algorithm", crypt.ctx().algorithm(&Algorithm::Other("Indexed\0".into())).map(drop));
    nul("query_type", crypt.ctx().query_type(&QueryType::Other("equ\0ality".into())).map(drop));

    // The legacy endpoint setter without an AWS master key (crashes 1.21.0): refused by the binding.
    let result = crypt.ctx().masterkey_aws_endpoint(&endpoint).map(drop);
    assert!(matches!(&result, Err(Error::InvalidArgument(m)) if m.contains("masterkey_aws")), "{result:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Inputs that abort libmongocrypt: refused by the binding with a typed error (these were filters of the fuzz)

/// A ctx in NEED_KMS for a new data key under `kek`, on a crypt with every provider.
fn datakey_in_need_kms(crypt: &Crypt, kek: &Document) -> Ctx {
    let ctx = crypt.ctx().key_encryption_key(kek).unwrap().datakey().unwrap();
    assert_eq!(ctx.state(), State::NeedKms, "{kek}");
    ctx
}

fn assert_refused_kms(result: Result<(), Error>, what: &str) {
    match result {
        Err(Error::Kms { message, .. }) if message.contains("refused by the binding") => {}
        other => panic!("{what}: expected the binding's refusal, got {other:?}"),
    }
}

/// Feeds `reply` to the first request that is not an OAuth one (those, for GCP and Azure, get the valid token
/// reply first, in a NEED_KMS round of their own), in one piece or byte by byte; the first error (the refusal), or
/// the end of the round (an error or not, never an abort).
fn feed_reply(kek: &Document, reply: &[u8], bytewise: bool) -> Result<(), Error> {
    let crypt = valid_crypt();
    let mut ctx = datakey_in_need_kms(&crypt, kek);
    let c = corpus();
    for _ in 0..3 {
        if ctx.state() != State::NeedKms {
            break;
        }
        let mut scope = ctx.kms_scope().unwrap();
        let mut result = Ok(());
        let mut fed_reply = false;
        while let Some(mut kms) = scope.next_kms_ctx() {
            let oauth = String::from_utf8_lossy(kms.message().unwrap()).contains("oauth");
            let bytes = if oauth { &c.oauth_reply[..] } else { reply };
            fed_reply |= !oauth;
            result = if bytewise {
                bytes.iter().try_for_each(|b| kms.feed(std::slice::from_ref(b)))
            } else {
                kms.feed(bytes)
            };
            if result.is_err() {
                // Every later feed of this request is refused too.
                assert!(kms.feed(b"\r\n").is_err());
                break;
            }
        }
        let done = scope.done();
        if fed_reply || result.is_err() {
            return result.and(done);
        }
        done?;
    }
    panic!("{kek}: no request to feed the reply to");
}

/// kms-message (1.7.2 and 1.21.0) takes the two bytes after a chunk for its CRLF without a check: a chunk longer
/// than declared (`1\r\nXY\r\n`) or an early CRLF then gives the next chunk-size line length -1 and
/// `KMS_ASSERT (len >= 0)` aborts. A chunk size of 0x7ffffffe or more overflowed before 1.19 (MONGOCRYPT-910,
/// SIGSEGV). These were filtered out of the fuzz; the binding now refuses them in `KmsCtx::feed`.
#[test]
fn refused_chunked_kms_replies() {
    let kek = doc! { "provider": "aws", "region": "us-east-1", "key": AWS_ARN };
    let chunked = |body: &str| format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}").into_bytes();
    for bad in ["1\r\nXY\r\n", "1\r\nXY\r\n0\r\n\r\n", "2\r\nabc\r\n0\r\n\r\n", "3\r\nab\r\n\r\n0\r\n\r\n"]
        .into_iter()
        // Sizes that overflow before 1.19 (MONGOCRYPT-910); 1.19 reports them itself ("Failed to parse hex chunk length",
        // tests/fixtures_kms_replies.rs case #13).
        .chain(if mongocrypt_at_least(1, 19) {
            vec![]
        } else {
            vec!["7fffffff\r\nX", "7ffffffe\r\nX", "07FFFFFFF\r\nX", "1\r\nX\r\n17ffffffe\r\nX"]
        })
    {
        for bytewise in [false, true] {
            assert_refused_kms(feed_reply(&kek, &chunked(bad), bytewise), &format!("{bad:?} bytewise={bytewise}"));
        }
    }
    if mongocrypt_at_least(1, 19) {
        for huge in ["7fffffff\r\nX", "7ffffffe\r\nX", "1\r\nX\r\n17ffffffe\r\nX"] {
            assert!(feed_reply(&kek, &chunked(huge), false).is_err(), "{huge:?}: libmongocrypt's own error");
        }
    }
    // A well-framed chunked reply still goes through to libmongocrypt (which fails it on its content: not JSON).
    let good = feed_reply(&kek, &chunked("3\r\nabc\r\n0\r\n\r\n"), false);
    assert!(
        !matches!(&good, Err(Error::Kms { message, .. }) if message.contains("refused by the binding")),
        "{good:?}"
    );
}

/// GCP: `_ctx_done_gcp` asserts `outlen <= UINT32_MAX` on the -1 that `kms_message_b64_pton` returns for a
/// `ciphertext` that is not base64 (even `"AA"`, unpadded) or is empty (1.7.2 and 1.21.0). Azure's `value` is
/// checked the same way (libmongocrypt reports those itself). Filtered out of the fuzz before; refused now, before
/// the byte that completes the reply is fed.
#[test]
fn refused_gcp_and_azure_base64() {
    let gcp = doc! { "provider": "gcp", "projectId": "p", "location": "global", "keyRing": "r", "keyName": "k" };
    let azure = doc! { "provider": "azure", "keyVaultEndpoint": "example.vault.azure.net", "keyName": "k" };
    for (kek, body) in [
        (&gcp, r#"{"ciphertext":"AA"}"#),
        (&gcp, r#"{"ciphertext":""}"#),
        (&gcp, r#"{"ciphertext":"AB=="}"#),
        (&gcp, r#"{"name":"k","ciphertext":"not base64!"}"#),
        (&gcp, r#"{"ciphertext":"c2VjcmV0IGtleSBtYXRlcmlhbA==","ciphertext":"AA"}"#),
        (&gcp, r#"{"ciphertext":"AA""#),
        (&azure, r#"{"kid":"k","value":"A"}"#),
        (&azure, r#"{"kid":"k","value":"*"}"#),
    ] {
        let reply = http_json("200 OK", body);
        for bytewise in [false, true] {
            assert_refused_kms(feed_reply(kek, &reply, bytewise), &format!("{kek} {body} bytewise={bytewise}"));
        }
        let chunked =
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
        assert_refused_kms(feed_reply(kek, chunked.as_bytes(), false), &format!("chunked {body}"));
    }
    // Valid replies are not refused (libmongocrypt may still fail them: the corpus's wrapped key is not 96 bytes).
    for (kek, reply) in [(&gcp, &corpus().gcp_encrypt_reply), (&azure, &corpus().azure_wrap_reply)] {
        let result = feed_reply(kek, reply, false);
        assert!(
            !matches!(&result, Err(Error::Kms { message, .. }) if message.contains("refused by the binding")),
            "{kek}: {result:?}"
        );
    }
}

/// KMIP: before 1.21 kms-message takes the length at bytes 4..8 on trust and `KMS_ASSERT`s
/// (`want_bytes_pending <= INT32_MAX`) once it exceeds about 2 GiB. Filtered out of the fuzz before 1.21; refused
/// there now. 1.21.0 fails such a request itself (any typed outcome, no abort).
#[test]
fn refused_huge_kmip_lengths() {
    let kek = doc! { "provider": "kmip", "keyId": "1" };
    for len in [0x7fff_0000_u32, 0x7fff_ffff, 0xffff_ffff] {
        let mut reply = vec![0x42, 0x00, 0x7b, 0x01];
        reply.extend_from_slice(&len.to_be_bytes());
        reply.extend_from_slice(&[0; 8]);
        for bytewise in [false, true] {
            let result = feed_reply(&kek, &reply, bytewise);
            if old_library() {
                assert_refused_kms(result, &format!("KMIP length {len:#x}"));
            } else {
                // 1.21.0 does not abort on these (checked by its fuzz without the filter); any typed result.
                let _ = ok(result);
            }
        }
    }
}

/// A crypt whose schema map makes `find` on test.test ask mongocryptd for markings.
fn markings_ctx() -> (Crypt, Ctx) {
    let c = corpus();
    let crypt = Crypt::builder()
        .kms_providers(&all_providers())
        .unwrap()
        .schema_map(&c.schema_maps[0])
        .unwrap()
        .build()
        .unwrap();
    let ctx = crypt.ctx().encrypt("test", &c.commands[0]).unwrap();
    assert_eq!(ctx.state(), State::NeedMongoMarkings);
    (crypt, ctx)
}

/// `_mongocrypt_buffer_from_iter` `BSON_ASSERT`s on a marking whose value has zero length (null, undefined, MinKey,
/// MaxKey; 1.7.2 and 1.21.0) or whose BSON is malformed inside (1.7.2). Filtered out of the fuzz before; refused by
/// `mongo_feed` in NEED_MONGO_MARKINGS now, and the ctx keeps its state.
#[test]
fn refused_markings() {
    let key_id = &corpus().local_key_id;
    let reply = |marking: Binary| {
        rawbuf(doc! {
            "schemaRequiresEncryption": true, "ok": 1, "hasEncryptedPlaceholders": true,
            "result": { "find": "test", "filter": { "ssn": marking } },
        })
    };
    let mut bad = vec![];
    for v in [Bson::Null, Bson::Undefined, Bson::MinKey, Bson::MaxKey] {
        let inner = rawbuf(doc! { "a": 1, "ki": uuid(key_id), "v": v });
        bad.push(reply(placeholder_binary(inner.as_bytes(), 0)));
    }
    // A nested value in an array, and malformed BSON inside the marking (a sub-document without its NUL).
    let inner = rawbuf(doc! { "a": 1, "ki": uuid(key_id), "v": Bson::MaxKey });
    bad.push(rawbuf(doc! { "ok": 1, "result": { "insert": "test", "documents": [ { "x": [ placeholder_binary(inner.as_bytes(), 0) ] } ] } }));
    let mut malformed = rawbuf(doc! { "a": 1, "ki": uuid(key_id), "v": { "x": 1 } }).into_bytes();
    let n = malformed.len();
    malformed[n - 2] = 1; // the sub-document's NUL
    bad.push(reply(placeholder_binary(&malformed, 0)));
    bad.push(reply(placeholder_binary(&[5, 0, 0], 0)));
    for reply in &bad {
        let (_crypt, mut ctx) = markings_ctx();
        match ctx.mongo_feed(reply) {
            Err(Error::InvalidArgument(m)) if m.contains("marking refused by the binding") => {}
            other => panic!("{reply:?}: expected the binding's refusal, got {other:?}"),
        }
        assert_eq!(ctx.state(), State::NeedMongoMarkings);
    }
    // The valid markings still go through.
    let (_crypt, mut ctx) = markings_ctx();
    ctx.mongo_feed(&corpus().markings[0]).unwrap();
}

/// Before 1.21, a key document whose `keyMaterial` is shorter than 64 bytes makes `_mongocrypt_unwrap_key` resize a
/// buffer to 0 and `_mongocrypt_buffer_resize` `BSON_ASSERT`s (1.7.2). Filtered out of the fuzz there before;
/// refused by `mongo_feed` in NEED_MONGO_KEYS now. 1.21.0 fails the key itself.
#[test]
fn refused_short_key_material() {
    let c = corpus();
    let crypt = valid_crypt();
    for material in [Bson::Binary(generic(&[1; 63])), Bson::Binary(generic(&[])), Bson::String("short".into())] {
        let mut key = Document::try_from(c.local_key.as_ref()).unwrap();
        key.insert("keyMaterial", material.clone());
        let key = rawbuf(key);
        let mut ctx = crypt
            .ctx()
            .key_id(&c.local_key_id)
            .unwrap()
            .algorithm(&Algorithm::Deterministic)
            .unwrap()
            .explicit_encrypt(&rawdoc! { "v": SSN })
            .unwrap();
        assert_eq!(ctx.state(), State::NeedMongoKeys);
        let fed = ctx.mongo_feed(&key);
        if old_library() {
            match fed {
                Err(Error::InvalidArgument(m)) if m.contains("key document refused by the binding") => {}
                other => panic!("{material}: expected the binding's refusal, got {other:?}"),
            }
        } else {
            // 1.21.0 reports the bad key itself, at the feed or when the key is used: an error, no abort.
            let rest = fed.and_then(|()| ctx.mongo_done()).and_then(|()| ctx.finalize().map(drop));
            assert!(rest.is_err(), "{material}: a key with a bad keyMaterial was used");
        }
    }
}

/// A Queryable Encryption v2 indexed value: blob type, the corpus's local key id as S_KeyId, BSON type 2 (string),
/// `counts`, then `rest` bytes of a ciphertext's (repeated).
fn v2_indexed_value(blob_type: u8, counts: &[u8], rest: usize) -> Vec<u8> {
    let c = corpus();
    let mut v = vec![blob_type];
    v.extend_from_slice(&c.local_key_id);
    v.push(0x02);
    v.extend_from_slice(counts);
    let filler = c.ciphertexts[3].get_binary("v").unwrap().bytes;
    v.extend(filler.iter().cycle().take(rest));
    v
}

fn text_counts(edges: u32, substr: u32, suffix: u32) -> Vec<u8> {
    [edges, substr, suffix].iter().flat_map(|c| c.to_le_bytes()).collect()
}

/// Decrypts `{"v": value}`, automatically (as a server reply) or explicitly, on a new crypt, feeding the local key
/// once when asked (a second ask, for the garbage K_KeyId a decrypted value names, is answered with no key); with
/// `cached`, the crypt decrypted a corpus ciphertext under that key first. The first error, if any.
fn decrypt_v2_indexed(value: &[u8], explicit: bool, cached: bool) -> Result<(), Error> {
    let c = corpus();
    let crypt = valid_crypt();
    if cached {
        let mut ctx = crypt.ctx().explicit_decrypt(&c.ciphertexts[0]).unwrap();
        drive_valid(&mut ctx, &[&c.local_key], None);
    }
    let doc = rawbuf(doc! { "v": Binary { subtype: BinarySubtype::Encrypted, bytes: value.to_vec() } });
    let mut ctx = if explicit { crypt.ctx().explicit_decrypt(&doc)? } else { crypt.ctx().decrypt(&doc)? };
    let mut fed = false;
    for _ in 0..8 {
        match ctx.state() {
            State::NeedMongoKeys => {
                if !fed {
                    ctx.mongo_feed(&c.local_key)?;
                    fed = true;
                }
                ctx.mongo_done()?;
            }
            State::Ready => drop(ctx.finalize()?),
            State::Done => return Ok(()),
            State::Error => return ctx.status(),
            other => panic!("decrypting a v2 indexed value: {other:?}"),
        }
    }
    panic!("decrypting a v2 indexed value did not finish")
}

/// The versions on which the binding refuses malformed v2 indexed values (src/ctx.rs): 1.11 to before 1.17.
fn refuses_malformed_v2_indexed_values() -> bool {
    mongocrypt_at_least(1, 11) && !mongocrypt_at_least(1, 17)
}

fn is_v2_refusal(result: &Result<(), Error>) -> bool {
    matches!(result, Err(Error::InvalidArgument(m))
        if m.contains("Queryable Encryption v2 indexed value") && m.contains("refused by the binding"))
}

/// libmongocrypt 1.13.1 aborts decrypting a malformed v2 indexed value (blob type 14, 15, 17) that its parser
/// fails after it has set the edge count: `BSON_ASSERT_PARAM` in `mc_FLE2TagAndEncryptedMetadataBlock_cleanup` on
/// the metadata block it never allocated (found by Decrypt case 85, a 109-byte type-14 value; it was filtered out
/// of the fuzz before 1.21). Seen, in child processes, for every truncation from 18 bytes (equality), 19 (range,
/// edge count 1 or more) and 22 (text, edge count 1 or more) up to the length the counts need, and for text tag
/// counts that exceed the edge count; automatic and explicit decryption, key cached or fed, alike. 1.7.2 (returns
/// them undecrypted), 1.10.1, 1.17.0 and 1.21.0 fail them without an abort: any typed outcome there.
#[test]
fn refused_malformed_v2_indexed_values() {
    let mut bad = vec![("the 109-byte type-14 value of Decrypt case 85".to_string(), v2_indexed_value(14, &[], 91))];
    let mut truncations = |name: &str, blob_type: u8, counts: &[u8], edges: usize| {
        let full = v2_indexed_value(blob_type, counts, 17 + 96 * edges);
        for len in [1, 17, 18, 19, 21, 22, 29, 30, 60, 100, full.len() - 96, full.len() - 1] {
            bad.push((format!("{name} cut to {len} bytes"), full[..len].to_vec()));
        }
    };
    truncations("equality", 14, &[], 1);
    truncations("range, 1 edge", 15, &[1], 1);
    truncations("range, 3 edges", 15, &[3], 3);
    truncations("text, 1 edge", 17, &text_counts(1, 0, 0), 1);
    truncations("text, 4 edges", 17, &text_counts(4, 1, 2), 4);
    bad.push(("range, 255 edges".into(), v2_indexed_value(15, &[255], 300)));
    bad.push(("range, 0 edges".into(), v2_indexed_value(15, &[0], 300)));
    for (e, s, x) in [(1, 1, 0), (1, 0, 1), (3, 2, 1), (2, u32::MAX, 0), (2, 0, u32::MAX), (u32::MAX, 0, 0)] {
        bad.push((format!("text, counts {e} {s} {x}"), v2_indexed_value(17, &text_counts(e, s, x), 300)));
    }
    if refuses_malformed_v2_indexed_values() {
        // 96 * 0x02aaaaab wraps to 32 in 1.13.1's 32-bit length check: it then allocates 3 GB of metadata blocks.
        bad.push(("text, wrapping edge count".into(), v2_indexed_value(17, &text_counts(0x02aa_aaab, 0, 0), 100)));
    }
    for (name, value) in &bad {
        for (explicit, cached) in [(false, false), (true, false), (false, true), (true, true)] {
            let result = decrypt_v2_indexed(value, explicit, cached);
            let what = format!("{name} (explicit {explicit}, key cached {cached})");
            if refuses_malformed_v2_indexed_values() {
                assert!(is_v2_refusal(&result), "{what}: expected the binding's refusal, got {result:?}");
            } else {
                // libmongocrypt's own outcome, never an abort (1.7.2 returns these blob types undecrypted).
                assert!(!is_v2_refusal(&result), "{what}: refused on a version that does not abort: {result:?}");
            }
        }
    }
}

/// Well-formed v2 indexed values (the shortest the layout allows, and longer) reach libmongocrypt on every version:
/// it asks for their key and fails them only once it decrypts (their ciphertext is not one), with its own error.
#[test]
fn well_formed_v2_indexed_values_are_not_refused() {
    let values = [
        v2_indexed_value(14, &[], 17 + 96),
        v2_indexed_value(14, &[], 64 + 96),
        v2_indexed_value(15, &[1], 17 + 96),
        v2_indexed_value(15, &[3], 64 + 3 * 96),
        v2_indexed_value(17, &text_counts(1, 0, 0), 64 + 96),
        v2_indexed_value(17, &text_counts(4, 1, 2), 64 + 4 * 96),
    ];
    for value in &values {
        for (explicit, cached) in [(false, false), (true, false), (false, true)] {
            let result = decrypt_v2_indexed(value, explicit, cached);
            assert!(!is_v2_refusal(&result), "{value:x?} (explicit {explicit}): refused: {result:?}");
            if let Err(e) = &result {
                assert!(matches!(e, Error::Client { .. }), "{value:x?}: not libmongocrypt's error: {e:?}");
            }
        }
    }
}

/// The versions on which the binding refuses v2 text values whose edge count needs over 4 GiB of metadata blocks
/// (src/guard/payload.rs): 1.17 to before 1.21. 1.11 to 1.16 refuse them as malformed.
fn refuses_wrapping_text_edge_counts() -> bool {
    mongocrypt_at_least(1, 17) && !mongocrypt_at_least(1, 21)
}

fn is_text_edge_count_refusal(result: &Result<(), Error>) -> bool {
    matches!(result, Err(Error::InvalidArgument(m))
        if m.contains("v2 text value") && m.contains("edge count") && m.contains("refused by the binding"))
}

/// libmongocrypt 1.17.0 checks a v2 text value's length against `17 + 96 * edges` in 32 bits: an edge count of
/// 0x02aaaaab (or 0x05555556, 0x80000000, ...) wraps it below the value's length, and it `bson_malloc0`s the
/// metadata blocks before failing the value: 5 GB of address space for 0x02aaaaab, an abort ("Failure to allocate
/// memory in bson_malloc0()") for 0x80000000 on a 23 GB machine, and an abort for any of them under a few GB of
/// RLIMIT_AS (seen in child processes, automatic and explicit decryption, key cached or not; 1.13.1 alike, where
/// the malformed-value check refuses them). The binding refuses them from 1.17 to before 1.21. 1.21.0 fails them
/// itself without allocating; 1.7.2 and 1.10.1 return blob type 17 undecrypted.
#[test]
fn refused_text_values_with_wrapping_edge_counts() {
    for edges in [0x02aa_aaab, 0x0555_5556, 0x8000_0000] {
        for (substr, suffix) in [(0, 0), (1, 2)] {
            let value = v2_indexed_value(17, &text_counts(edges, substr, suffix), 100);
            for (explicit, cached) in [(false, false), (true, false), (false, true), (true, true)] {
                let result = decrypt_v2_indexed(&value, explicit, cached);
                let what =
                    format!("edge count {edges:#x}, tags {substr} {suffix} (explicit {explicit}, cached {cached})");
                if refuses_wrapping_text_edge_counts() {
                    assert!(is_text_edge_count_refusal(&result), "{what}: expected the binding's refusal: {result:?}");
                } else if refuses_malformed_v2_indexed_values() {
                    assert!(is_v2_refusal(&result), "{what}: expected the binding's refusal: {result:?}");
                } else if mongocrypt_at_least(1, 21) {
                    // libmongocrypt's own 64-bit length check.
                    assert!(
                        matches!(&result, Err(Error::Client { message, .. }) if message.contains("payload size")),
                        "{what}: {result:?}"
                    );
                } else {
                    assert_eq!(result, Ok(()), "{what}: blob type 17 is returned undecrypted before 1.11");
                }
            }
        }
    }
}

/// A Queryable Encryption insert payload (blob type 4, or 11 for v2) with every field libmongocrypt's parser needs,
/// each the right type, and a value `v` of the corpus's local key id then `value_len - 16` ciphertext bytes; `edit`
/// changes the document first.
fn insert_payload(blob_type: u8, value_len: usize, edit: impl FnOnce(&mut Document)) -> Vec<u8> {
    let c = corpus();
    let generic = |n: usize, b: u8| Binary { subtype: BinarySubtype::Generic, bytes: vec![b; n] };
    let mut value = c.local_key_id.clone();
    value.extend(c.ciphertexts[3].get_binary("v").unwrap().bytes.iter().cycle().take(value_len.saturating_sub(16)));
    value.truncate(value_len);
    let mut d = doc! { "d": generic(32, 1), "s": generic(32, 2) };
    if blob_type == 4 {
        d.insert("c", generic(32, 3));
    }
    d.insert("p", generic(48, 4));
    d.insert("u", Binary { subtype: BinarySubtype::Uuid, bytes: c.local_key_id.clone() });
    d.insert("t", 2i32);
    d.insert("v", Binary { subtype: BinarySubtype::Generic, bytes: value });
    d.insert("e", generic(32, 5));
    if blob_type == 11 {
        d.insert("l", generic(32, 6));
        d.insert("k", 0i64);
    }
    edit(&mut d);
    [vec![blob_type], libmongocrypt::bson::RawDocumentBuf::try_from(&d).unwrap().into_bytes()].concat()
}

fn is_payload_refusal(result: &Result<(), Error>) -> bool {
    matches!(result, Err(Error::InvalidArgument(m))
        if m.contains("Queryable Encryption insert payload") && m.contains("refused by the binding"))
}

/// Whether the linked libmongocrypt knows insert payloads of `blob_type` (v2 came in 1.8; 1.7.2 returns them
/// undecrypted).
fn knows_payload(blob_type: u8) -> bool {
    blob_type == 4 || mongocrypt_at_least(1, 8)
}

/// libmongocrypt 1.7.2 and 1.10.1 fail an insert payload their parser rejects once it has parsed a field, and free
/// what they parsed twice (`free(): double free detected in tcache 2`; the CI fuzz found `[4, 5, 0, 0, 0, 0]`, an
/// empty document, on 1.7.2), for v1 (blob type 4) and, on 1.10.1, v2 (11) payloads alike: seen in child processes
/// for every missing field, every field of a wrong type, `t` out of range, a negative `k`, a duplicate and a value
/// shorter than its 16-byte key id; automatic and explicit decryption alike. 1.13.1, 1.17.0 and 1.21.0 fail them
/// without an abort: libmongocrypt's own error there. The binding refuses them before 1.13 (1.11 and 1.12
/// untested).
#[test]
fn refused_malformed_insert_payloads() {
    for blob_type in [4u8, 11] {
        let fields: &[&str] = if blob_type == 4 {
            &["d", "s", "c", "p", "u", "t", "v", "e"]
        } else {
            &["d", "s", "p", "u", "t", "v", "e", "l", "k"]
        };
        let mut bad = vec![
            ("the CI fuzz's empty document".to_string(), vec![blob_type, 5, 0, 0, 0, 0]),
            ("t 300".into(), insert_payload(blob_type, 80, |d| drop(d.insert("t", 300i32)))),
            ("t a string".into(), insert_payload(blob_type, 80, |d| drop(d.insert("t", "2")))),
            (
                "d of subtype 4".into(),
                insert_payload(blob_type, 80, |d| {
                    drop(d.insert("d", Binary { subtype: BinarySubtype::Uuid, bytes: vec![1; 16] }))
                }),
            ),
            (
                "u of subtype 0".into(),
                insert_payload(blob_type, 80, |d| {
                    drop(d.insert("u", Binary { subtype: BinarySubtype::Generic, bytes: vec![1; 16] }))
                }),
            ),
            ("v of 15 bytes".into(), insert_payload(blob_type, 15, |_| {})),
            ("v of 0 bytes".into(), insert_payload(blob_type, 0, |_| {})),
            ("v an int".into(), insert_payload(blob_type, 80, |d| drop(d.insert("v", 1i32)))),
        ];
        if blob_type == 11 {
            bad.push(("k -1".into(), insert_payload(11, 80, |d| drop(d.insert("k", -1i64)))));
            bad.push(("k an int32".into(), insert_payload(11, 80, |d| drop(d.insert("k", 0i32)))));
        }
        for field in fields {
            bad.push((format!("no {field}"), insert_payload(blob_type, 80, |d| drop(d.remove(field)))));
        }
        // A duplicate "d": the document's bytes with its first element appended again before the terminator.
        let mut dup = insert_payload(blob_type, 80, |_| {});
        let d = libmongocrypt::bson::RawDocumentBuf::try_from(
            &doc! { "d": Binary { subtype: BinarySubtype::Generic, bytes: vec![1; 32] } },
        )
        .unwrap()
        .into_bytes();
        dup.pop();
        dup.extend_from_slice(&d[4..d.len() - 1]);
        dup.push(0);
        let len = (dup.len() - 1) as i32;
        dup[1..5].copy_from_slice(&len.to_le_bytes());
        bad.push(("d twice".into(), dup));
        for (name, value) in &bad {
            for explicit in [false, true] {
                let result = decrypt_v2_indexed(value, explicit, false);
                let what = format!("blob type {blob_type}, {name} (explicit {explicit})");
                if knows_payload(blob_type) && !mongocrypt_at_least(1, 13) {
                    assert!(is_payload_refusal(&result), "{what}: expected the binding's refusal, got {result:?}");
                } else if knows_payload(blob_type) {
                    assert!(
                        matches!(result, Err(Error::Client { .. })),
                        "{what}: not libmongocrypt's error: {result:?}"
                    );
                } else {
                    assert!(result.is_ok(), "{what}: 1.7.2 returns v2 payloads undecrypted: {result:?}");
                }
            }
        }
    }
}

/// libmongocrypt 1.7.2 to 1.17.0 decrypt an insert payload whose value is 16 to 64 bytes (v1; 16 to 79 for v2)
/// and `_mongocrypt_buffer_resize` `BSON_ASSERT`s on the empty plaintext (seen in child processes on 1.7.2, 1.10.1,
/// 1.13.1 and 1.17.0); 1.21.0 fails them ("input ciphertext too small"). The binding refuses them before 1.21. A
/// value of 65 (v1) or 80 (v2) bytes reaches libmongocrypt, which fails its ciphertext (not a real one) itself.
#[test]
fn refused_short_insert_payload_values() {
    for (blob_type, shortest) in [(4u8, 65), (11, 80)] {
        for len in [16, 17, 48, 63, 64, shortest - 1, shortest, shortest + 1, 200] {
            let value = insert_payload(blob_type, len, |_| {});
            for (explicit, cached) in [(false, false), (true, false), (true, true)] {
                let result = decrypt_v2_indexed(&value, explicit, cached);
                let what =
                    format!("blob type {blob_type}, value of {len} bytes (explicit {explicit}, cached {cached})");
                if !knows_payload(blob_type) {
                    assert!(result.is_ok(), "{what}: 1.7.2 returns v2 payloads undecrypted: {result:?}");
                } else if len < shortest && !mongocrypt_at_least(1, 21) {
                    assert!(is_payload_refusal(&result), "{what}: expected the binding's refusal, got {result:?}");
                } else {
                    // libmongocrypt's own error: a too-small ciphertext (1.21) or a failed HMAC or decryption.
                    assert!(
                        matches!(result, Err(Error::Client { .. })),
                        "{what}: not libmongocrypt's error: {result:?}"
                    );
                }
            }
        }
    }
}

/// Payloads that libmongocrypt's parser takes are not refused, with fields it does not look at as well.
#[test]
fn well_formed_insert_payloads_are_not_refused() {
    for blob_type in [4u8, 11] {
        let values = [
            insert_payload(blob_type, 120, |_| {}),
            insert_payload(blob_type, 120, |d| drop(d.insert("x", "an extra field"))),
            insert_payload(blob_type, 120, |d| drop(d.insert("g", Bson::Array(vec![])))),
            insert_payload(blob_type, 120, |d| drop(d.insert("t", 255i32))),
        ];
        for value in &values {
            let result = decrypt_v2_indexed(value, true, false);
            assert!(!is_payload_refusal(&result), "blob type {blob_type}: refused: {result:?}");
            if knows_payload(blob_type) {
                assert!(matches!(result, Err(Error::Client { .. })), "blob type {blob_type}: {result:?}");
            }
        }
    }
}
