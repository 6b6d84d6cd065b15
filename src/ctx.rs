//! `mongocrypt_ctx_t`: one operation's state machine. [`CtxBuilder`] sets its options and initialises it as one
//! of the six kinds; [`Ctx`] is then driven state by state until it is done.

use std::cell::Cell;
use std::ptr::NonNull;

use crate::bson::{doc, RawBsonRef, RawDocument, RawDocumentBuf};
use libmongocrypt_sys as sys;
use zeroize::Zeroizing;

use crate::binary::{BinaryOut, BinaryView, BsonArg, BsonInput};
use crate::crypt::{str_arg, Crypt};
use crate::error::{requires, Error, Result, Status};
use crate::kms::KmsScope;
use crate::options::{Algorithm, QueryType};
use crate::version::Version;

/// The state of a [`Ctx`] (`mongocrypt_ctx_state_t`): what the driver must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// The operation failed; [`Ctx::status`] holds the error.
    Error,
    /// Run listCollections with [`Ctx::mongo_op`] as filter, feed each result, then `mongo_done`.
    NeedMongoCollinfo,
    /// As `NeedMongoCollinfo`, on the database [`Ctx::mongo_db`] names.
    NeedMongoCollinfoWithDb,
    /// Send [`Ctx::mongo_op`] to mongocryptd (or crypt_shared did it), feed the reply, then `mongo_done`.
    NeedMongoMarkings,
    /// Find [`Ctx::mongo_op`] in the key vault, feed each key document, then `mongo_done`.
    NeedMongoKeys,
    /// Serve the KMS requests of [`Ctx::kms_scope`].
    NeedKms,
    /// Supply on-demand KMS credentials with [`Ctx::provide_kms_providers`].
    NeedKmsCredentials,
    /// Call [`Ctx::finalize`].
    Ready,
    /// Finished.
    Done,
    /// A state this binding does not know (a newer library's); treat it as unsupported.
    Unknown(u32),
}

impl State {
    fn from_raw(state: sys::mongocrypt_ctx_state_t) -> State {
        match state {
            sys::MONGOCRYPT_CTX_ERROR => State::Error,
            sys::MONGOCRYPT_CTX_NEED_MONGO_COLLINFO => State::NeedMongoCollinfo,
            // Headers before 1.10 lack the constant; their libraries never enter the state.
            #[cfg(mongocrypt_has_ctx_mongo_db)]
            sys::MONGOCRYPT_CTX_NEED_MONGO_COLLINFO_WITH_DB => State::NeedMongoCollinfoWithDb,
            sys::MONGOCRYPT_CTX_NEED_MONGO_MARKINGS => State::NeedMongoMarkings,
            sys::MONGOCRYPT_CTX_NEED_MONGO_KEYS => State::NeedMongoKeys,
            sys::MONGOCRYPT_CTX_NEED_KMS => State::NeedKms,
            sys::MONGOCRYPT_CTX_NEED_KMS_CREDENTIALS => State::NeedKmsCredentials,
            sys::MONGOCRYPT_CTX_READY => State::Ready,
            sys::MONGOCRYPT_CTX_DONE => State::Done,
            other => State::Unknown(other),
        }
    }
}

/// A ctx whose options are being set. "@pre ctx has not been initialized" holds for every setopt because the
/// init methods consume the builder and return the [`Ctx`]. Like the ctx, it holds a clone of its [`Crypt`].
pub struct CtxBuilder {
    ctx: Ctx,
    /// Whether an AWS master key was set: libmongocrypt 1.21 dereferences NULL when an AWS endpoint comes without.
    aws_master_key: bool,
}

impl CtxBuilder {
    pub(crate) fn new(crypt: &Crypt) -> CtxBuilder {
        // SAFETY: `crypt` is initialised; the ctx must not outlive it, and it does not: the Ctx holds a clone of the
        // handle, dropped only after mongocrypt_ctx_destroy.
        let raw = unsafe { sys::mongocrypt_ctx_new(crypt.as_raw()) };
        let ctx = Ctx::new(NonNull::new(raw).expect("mongocrypt_ctx_new returned NULL"), crypt);
        CtxBuilder { ctx, aws_master_key: false }
    }

    fn check(self, ok: bool) -> Result<CtxBuilder> {
        if ok {
            Ok(self)
        } else {
            Err(self.ctx.status_error())
        }
    }

    fn with_view(self, bin: &BinaryView<'_>, setopt: SetoptBinary) -> Result<CtxBuilder> {
        // SAFETY: before init (the builder exists); every binary setopt says "The viewed data is copied", so the
        // view may end after the call.
        let ok = unsafe { setopt(self.ctx.ptr(), bin.as_ptr()) };
        self.check(ok)
    }

    fn with_bytes(self, bytes: &[u8], setopt: SetoptBinary) -> Result<CtxBuilder> {
        self.with_view(&BinaryView::new(bytes)?, setopt)
    }

    fn with_document(self, doc: &(impl BsonInput + ?Sized), setopt: SetoptBinary) -> Result<CtxBuilder> {
        let arg = BsonArg::new(doc)?;
        let bin = arg.view()?;
        self.with_view(&bin, setopt)
    }

    /// The data key to encrypt with, by `_id`: the 16 bytes of its UUID.
    pub fn key_id(self, key_id: &[u8]) -> Result<CtxBuilder> {
        self.with_bytes(key_id, sys::mongocrypt_ctx_setopt_key_id)
    }

    /// The data key to encrypt with, by alternate name; for a new data key, call once per name.
    pub fn key_alt_name(self, name: &str) -> Result<CtxBuilder> {
        self.with_document(&doc! { "keyAltName": name }, sys::mongocrypt_ctx_setopt_key_alt_name)
    }

    /// The 96 bytes of a new data key, instead of random ones.
    pub fn key_material(self, key_material: &[u8]) -> Result<CtxBuilder> {
        let document = key_material_document(key_material)?;
        self.with_bytes(&document, sys::mongocrypt_ctx_setopt_key_material)
    }

    /// The explicit encryption algorithm.
    pub fn algorithm(self, algorithm: &Algorithm) -> Result<CtxBuilder> {
        let (name, len) = str_arg(algorithm.as_str())?;
        // SAFETY: before init; the string is read for `len` bytes and copied.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_algorithm(self.ctx.ptr(), name.as_ptr(), len) };
        self.check(ok)
    }

    /// The legacy AWS master key setter; prefer [`key_encryption_key`](Self::key_encryption_key).
    pub fn masterkey_aws(mut self, region: &str, cmk: &str) -> Result<CtxBuilder> {
        self.aws_master_key = true;
        let (region, region_len) = str_arg(region)?;
        let (cmk, cmk_len) = str_arg(cmk)?;
        // SAFETY: before init; both strings are read for their lengths and copied.
        let ok = unsafe {
            sys::mongocrypt_ctx_setopt_masterkey_aws(self.ctx.ptr(), region.as_ptr(), region_len, cmk.as_ptr(), cmk_len)
        };
        self.check(ok)
    }

    /// The legacy AWS endpoint setter; prefer [`KeyEncryptionKey::endpoint`](crate::KeyEncryptionKey::endpoint).
    /// Fails unless an AWS master key was set first.
    pub fn masterkey_aws_endpoint(self, endpoint: &str) -> Result<CtxBuilder> {
        if !self.aws_master_key {
            return Err(Error::invalid("masterkey_aws_endpoint needs an AWS master key: set masterkey_aws first"));
        }
        let (endpoint, len) = str_arg(endpoint)?;
        // SAFETY: before init; the string is read for `len` bytes and copied.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_masterkey_aws_endpoint(self.ctx.ptr(), endpoint.as_ptr(), len) };
        self.check(ok)
    }

    /// The legacy local master key setter; prefer [`key_encryption_key`](Self::key_encryption_key).
    pub fn masterkey_local(self) -> Result<CtxBuilder> {
        // SAFETY: before init; no arguments besides the ctx.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_masterkey_local(self.ctx.ptr()) };
        self.check(ok)
    }

    /// The key encryption key of a new data key, or the new one for rewrap: a
    /// [`KeyEncryptionKey`](crate::KeyEncryptionKey) or a raw `{provider, ...}` document.
    pub fn key_encryption_key(mut self, kek: &(impl BsonInput + ?Sized)) -> Result<CtxBuilder> {
        let arg = BsonArg::new(kek)?;
        let provider = RawDocument::from_bytes(arg.bytes()).ok().and_then(|d| d.get_str("provider").ok());
        self.aws_master_key |= provider.is_some_and(|p| p == "aws" || p.starts_with("aws:"));
        let bin = arg.view()?;
        self.with_view(&bin, sys::mongocrypt_ctx_setopt_key_encryption_key)
    }

    /// The contention factor of indexed Queryable Encryption.
    pub fn contention_factor(self, contention_factor: i64) -> Result<CtxBuilder> {
        // SAFETY: before init; a plain integer.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_contention_factor(self.ctx.ptr(), contention_factor) };
        self.check(ok)
    }

    /// The index key of explicit Queryable Encryption, by `_id` UUID bytes (default: the [`key_id`](Self::key_id)).
    pub fn index_key_id(self, key_id: &[u8]) -> Result<CtxBuilder> {
        self.with_bytes(key_id, sys::mongocrypt_ctx_setopt_index_key_id)
    }

    /// The query type of explicit Queryable Encryption.
    pub fn query_type(self, query_type: &QueryType) -> Result<CtxBuilder> {
        let (name, len) = str_arg(query_type.as_str())?;
        // SAFETY: before init; the string is read for `len` bytes and copied.
        let ok = unsafe { sys::mongocrypt_ctx_setopt_query_type(self.ctx.ptr(), name.as_ptr(), len) };
        self.check(ok)
    }

    /// Options of the range algorithm: [`RangeOptions`](crate::RangeOptions) or a raw document.
    pub fn algorithm_range(self, opts: &(impl BsonInput + ?Sized)) -> Result<CtxBuilder> {
        self.with_document(opts, sys::mongocrypt_ctx_setopt_algorithm_range)
    }

    /// Options of the string algorithm: [`TextOptions`](crate::TextOptions) or a raw document. libmongocrypt ≥ 1.15.
    pub fn algorithm_text(self, opts: &(impl BsonInput + ?Sized)) -> Result<CtxBuilder> {
        requires!(
            mongocrypt_has_ctx_setopt_algorithm_text,
            "mongocrypt_ctx_setopt_algorithm_text",
            "1.15.0",
            { self.with_document(opts, sys::mongocrypt_ctx_setopt_algorithm_text) },
            unused(opts)
        )
    }

    fn init(self, ok: bool) -> Result<Ctx> {
        if ok {
            Ok(self.ctx)
        } else {
            Err(self.ctx.status_error())
        }
    }

    fn init_with(self, doc: &(impl BsonInput + ?Sized), init: SetoptBinary) -> Result<Ctx> {
        let arg = BsonArg::new(doc)?;
        let bin = arg.view()?;
        // SAFETY: the ctx is not yet initialised (the builder is consumed here, so init runs once); every init that
        // takes a binary copies it ("The viewed data is copied").
        let ok = unsafe { init(self.ctx.ptr(), bin.as_ptr()) };
        self.init(ok)
    }

    /// A new data key, wrapped by the [`key_encryption_key`](Self::key_encryption_key).
    pub fn datakey(self) -> Result<Ctx> {
        // SAFETY: not yet initialised; no arguments besides the ctx.
        let ok = unsafe { sys::mongocrypt_ctx_datakey_init(self.ctx.ptr()) };
        self.init(ok)
    }

    /// Automatic encryption of command `cmd` run on database `db`.
    pub fn encrypt(self, db: &str, cmd: &(impl BsonInput + ?Sized)) -> Result<Ctx> {
        let (db, db_len) = str_arg(db)?;
        let arg = BsonArg::new(cmd)?;
        let bin = arg.view()?;
        // SAFETY: not yet initialised; db is read for `db_len` bytes and copied, and so is cmd.
        let ok = unsafe { sys::mongocrypt_ctx_encrypt_init(self.ctx.ptr(), db.as_ptr(), db_len, bin.as_ptr()) };
        self.init(ok)
    }

    /// Explicit encryption of the value `v` of `{"v": value}`.
    pub fn explicit_encrypt(self, value: &(impl BsonInput + ?Sized)) -> Result<Ctx> {
        self.init_with(value, sys::mongocrypt_ctx_explicit_encrypt_init)
    }

    /// Explicit encryption of a range query expression `{"v": {"$and": [...]}}`.
    pub fn explicit_encrypt_expression(self, expression: &(impl BsonInput + ?Sized)) -> Result<Ctx> {
        self.init_with(expression, sys::mongocrypt_ctx_explicit_encrypt_expression_init)
    }

    /// Automatic decryption of a server reply.
    pub fn decrypt(self, doc: &(impl BsonInput + ?Sized)) -> Result<Ctx> {
        let arg = BsonArg::visiting(doc, &mut refuse_aborting_value)?;
        self.init_with(arg.bytes(), sys::mongocrypt_ctx_decrypt_init)
    }

    /// Explicit decryption of `{"v": ciphertext}`.
    pub fn explicit_decrypt(self, value: &(impl BsonInput + ?Sized)) -> Result<Ctx> {
        let arg = BsonArg::visiting(value, &mut refuse_aborting_value)?;
        self.init_with(arg.bytes(), sys::mongocrypt_ctx_explicit_decrypt_init)
    }

    /// Rewrapping of the data keys matching `filter` under the [`key_encryption_key`](Self::key_encryption_key)
    /// (or each key's current one when none is set).
    pub fn rewrap_many_datakey(self, filter: &(impl BsonInput + ?Sized)) -> Result<Ctx> {
        self.init_with(filter, sys::mongocrypt_ctx_rewrap_many_datakey_init)
    }
}

/// `{"keyMaterial": BinData(0, key_material)}`, written by hand into one buffer of its final size: the document
/// holds the plaintext data key, and a buffer that grew while it was written would leave copies in freed memory.
/// The only copy is wiped when dropped.
fn key_material_document(key_material: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    const NAME: &[u8] = b"keyMaterial\0";
    // i32 length, type byte, name, i32 binary length, subtype, bytes, trailing NUL.
    let len = 4 + 1 + NAME.len() + 4 + 1 + key_material.len() + 1;
    let (Ok(doc_len), Ok(bin_len)) = (i32::try_from(len), i32::try_from(key_material.len())) else {
        return Err(Error::invalid("key material too long"));
    };
    let mut doc = Zeroizing::new(Vec::with_capacity(len));
    doc.extend_from_slice(&doc_len.to_le_bytes());
    doc.push(0x05); // binary
    doc.extend_from_slice(NAME);
    doc.extend_from_slice(&bin_len.to_le_bytes());
    doc.push(0x00); // generic subtype
    doc.extend_from_slice(key_material);
    doc.push(0x00);
    debug_assert_eq!(doc.capacity(), len, "the buffer never grew");
    Ok(doc)
}

/// Refuses a mongocryptd reply holding a marking (a binary of subtype 6 whose first byte is 0, then BSON) that
/// libmongocrypt aborts on while it copies the marked value out (`_mongocrypt_buffer_from_iter` `BSON_ASSERT`s):
/// - a top-level value of zero length: null, undefined, MinKey or MaxKey (1.7.2 and 1.21.0; explicit encryption
///   rejects these types, markings are not checked);
/// - BSON inside the marking that is malformed (1.7.2: "wrapper.len >= offset + NULL_BYTE_LEN"). 1.21.0 did not abort
///   on these in 1,000,000 fuzz cases, but cannot use such a marking either, so they are refused on every version.
///
/// A [`BsonArg::visiting`] visitor: markings are looked for at every level, in the walk that checks the reply.
fn refuse_bad_marking(subtype: u8, bytes: &[u8]) -> Result<()> {
    match bytes.split_first() {
        Some((0, marking)) if subtype == 6 => check_marking(marking),
        _ => Ok(()),
    }
}

fn check_marking(marking: &[u8]) -> Result<()> {
    let refuse = |why: &str| Err(Error::invalid(format!("mongocryptd marking refused by the binding: {why}")));
    // null, undefined, MaxKey, MinKey: the values of zero length.
    match crate::binary::well_formed_first_valueless(marking) {
        Err(why) => refuse(&format!("malformed BSON inside it ({why})")),
        Ok(Some((kind, name))) => {
            let name = String::from_utf8_lossy(name);
            let kind =
                crate::bson::spec::ElementType::from(kind).map_or_else(|| format!("{kind:#x}"), |t| format!("{t:?}"));
            refuse(&format!("its {name:?} is {kind}, which libmongocrypt cannot encrypt"))
        }
        Ok(None) => Ok(()),
    }
}

/// Refuses the Queryable Encryption values (binary subtype 6) that libmongocrypt aborts on while it decrypts them,
/// on the versions seen to abort (one such value in a server reply aborts the client). A [`BsonArg::visiting`]
/// visitor: it runs on every binary of every document to decrypt, so anything but subtype 6 with blob type 4, 7, 9,
/// 11, 14, 15 or 17 returns at the first comparison.
///
/// - v1 indexed values (blob type 7 or 9) shorter than 64 bytes, before 1.21: with its data key cached,
///   libmongocrypt 1.7.2 resizes a buffer to 0 bytes in `mc_FLE2IndexedEncryptedValue_add_S_Key` and
///   `_mongocrypt_buffer_resize` `BSON_ASSERT`s (found by the fuzz). 1.21.0 fails it instead; the versions between
///   are not known to be fixed. A real one is longer (key id, type, then an encrypted block with its IV and HMAC).
/// - v2 indexed values (blob type 14, 15 or 17) that are malformed ([`check_indexed_value_v2`]), from 1.11 to
///   before 1.17: seen to abort on 1.13.1 (found by the fuzz: a 109-byte type-14 value). Not on 1.7.2 (which
///   returns these blob types undecrypted), 1.10.1, 1.17.0 or 1.21.0, which fail such values themselves. 1.11, 1.12
///   and 1.14 to 1.16 are untested: refused as on 1.13.
/// - insert payloads (blob type 4, and 11 for v2 from 1.8) that libmongocrypt's parser fails, before 1.13, or
///   whose value is too short to decrypt, before 1.21 ([`check_insert_payload`]).
#[inline]
fn refuse_aborting_value(subtype: u8, bytes: &[u8]) -> Result<()> {
    match bytes.first() {
        Some(7 | 9) if subtype == 6 && bytes.len() < 64 && *Version::linked() < Version::new(1, 21, 0) => {
            Err(Error::invalid(format!(
                "Queryable Encryption indexed value of {} bytes refused by the binding (libmongocrypt before 1.21 \
                 aborts on one shorter than 64)",
                bytes.len()
            )))
        }
        Some(&blob_type @ (4 | 11)) if subtype == 6 => {
            let linked = Version::linked();
            if *linked >= Version::new(1, 21, 0) || (blob_type == 11 && *linked < Version::new(1, 8, 0)) {
                return Ok(());
            }
            let refuse = |what: String, why: &str| {
                Err(Error::invalid(format!(
                    "Queryable Encryption insert payload of {} bytes (blob type {blob_type}) {what}, refused by the \
                     binding (libmongocrypt {why})",
                    bytes.len()
                )))
            };
            match check_insert_payload(blob_type, bytes) {
                Ok(()) => Ok(()),
                Err(PayloadFault::Malformed(what)) if *linked < Version::new(1, 13, 0) => {
                    refuse(what, "before 1.13 frees twice what it parsed of a payload it then fails")
                }
                // Failed by libmongocrypt's parser, without an abort.
                Err(PayloadFault::Malformed(_)) => Ok(()),
                Err(PayloadFault::ShortValue { len, min }) => refuse(
                    format!("with a value of {len} bytes"),
                    &format!("before 1.21 aborts decrypting one shorter than {min}"),
                ),
            }
        }
        Some(&blob_type @ (14 | 15 | 17)) if subtype == 6 => {
            let linked = Version::linked();
            if *linked < Version::new(1, 11, 0) || *linked >= Version::new(1, 17, 0) {
                return Ok(());
            }
            check_indexed_value_v2(blob_type, bytes).map_err(|why| {
                Error::invalid(format!(
                    "Queryable Encryption v2 indexed value of {} bytes (blob type {blob_type}), {why}, refused by the \
                     binding (libmongocrypt 1.13 aborts on malformed ones)",
                    bytes.len()
                ))
            })
        }
        _ => Ok(()),
    }
}

/// Metadata block of a v2 indexed value (`FLE2TagAndEncryptedMetadataBlock`): encrypted count, tag, encrypted
/// zeros, 32 bytes each.
const METADATA_BLOCK_LEN: u64 = 96;
/// Shortest ServerEncryptedValue the parser takes: a 16-byte IV and at least one encrypted byte.
const MIN_SERVER_ENCRYPTED_VALUE_LEN: u64 = 17;

/// Whether a v2 indexed value (blob type 14 equality, 15 range, 17 text; `bytes` starts with that byte) has the
/// layout `mc_FLE2IndexedEncryptedValueV2_parse` takes; the reason if not:
///
/// ```text
/// blob type (1) | S_KeyId (16) | original BSON type (1) | counts | ServerEncryptedValue (>= 17) | 96 * edges
/// counts: equality none (1 edge); range u8 edges; text u32 LE edges, substring tags, suffix tags
/// ```
///
/// libmongocrypt 1.13.1 sets the edge count (1 for equality) as soon as it has read it, and returns on a later
/// failure before it allocates the metadata blocks; `mc_FLE2IndexedEncryptedValueV2_destroy` then cleans up block
/// 0 at NULL and `mc_FLE2TagAndEncryptedMetadataBlock_cleanup`'s `BSON_ASSERT_PARAM` aborts. Those later failures
/// are the conditions here:
/// - a text value ends inside its tag counts;
/// - a text value's tag counts leave no block for its exact match (`edges < substr + suffix + 1`);
/// - the value is shorter than its counts say: a ServerEncryptedValue of 17 bytes or more, then `96 * edges`.
///
/// The sums are 64-bit: the parser's 32-bit `96 * edges` wraps, so that a huge text edge count passes its length
/// check and it allocates gigabytes of blocks. A value that ends before its edge count, or a range edge count of 0,
/// fails before the count is set (no abort), and is refused as well: no well-formed value has it. The original
/// BSON type byte is not checked: the parser takes any (one it cannot decode fails after decryption, with the
/// blocks allocated).
fn check_indexed_value_v2(blob_type: u8, bytes: &[u8]) -> std::result::Result<(), &'static str> {
    const PREFIX: usize = 1 + 16 + 1; // blob type, S_KeyId, original BSON type
    let header = match blob_type {
        14 => PREFIX,
        15 => PREFIX + 1,
        _ => PREFIX + 12,
    };
    let Some(counts) = bytes.get(PREFIX..header) else { return Err("shorter than its header") };
    // Text: edge, substring and suffix tag counts; range: the edge count; equality: one edge.
    let mut text = counts.chunks_exact(4).map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
    let (edges, tags) = match counts {
        [] => (1, 0),
        [edges] => (u64::from(*edges), 0),
        _ => (text.next().unwrap_or(0), text.sum()),
    };
    if edges == 0 {
        return Err("with an edge count of 0");
    }
    if edges < tags + 1 {
        return Err("with more substring and suffix tags than its edge count leaves room for");
    }
    if ((bytes.len() - header) as u64) < MIN_SERVER_ENCRYPTED_VALUE_LEN + METADATA_BLOCK_LEN * edges {
        return Err("shorter than its encrypted value and metadata blocks");
    }
    Ok(())
}

/// What is wrong with an insert payload.
enum PayloadFault {
    /// `mc_FLE2InsertUpdatePayload_parse` (`..V2_parse`) fails it.
    Malformed(String),
    /// It parses, and its value is shorter than the shortest that decrypts.
    ShortValue { len: usize, min: usize },
}

/// Whether an insert payload (blob type 4, or 11 for v2; `bytes` starts with that byte) is one that libmongocrypt's
/// parser takes and that it can decrypt:
///
/// ```text
/// blob type (1) | BSON document
/// v1: d, s, c, p, e binary (subtype 0); u binary (UUID); t int32 in 0..=255; v binary (subtype 0)
/// v2: d, s, p, e, l binary (subtype 0); u binary (UUID); t int32 in 0..=255; k int64 >= 0; v binary (subtype 0)
/// each once; other fields are not looked at; v: the user key id (16 bytes), then the ciphertext
/// ```
///
/// Probed in child processes through this API (a payload of each kind below, for every field): 1.7.2 and 1.10.1
/// (1.10.1 for v2 too; 1.7.2 returns v2 payloads undecrypted) fail a payload their parser rejects after its first
/// field and free what they parsed of it twice, in the parser and again in the caller (`double free detected in
/// tcache 2`; the CI fuzz found `[4, 5, 0, 0, 0, 0]`, an empty document); 1.13.1, 1.17.0 and 1.21.0 fail it
/// without an abort. 1.7.2 to 1.17.0 decrypt a value of 16 to 64 bytes (v1) or 16 to 79 (v2) and
/// `_mongocrypt_buffer_resize` `BSON_ASSERT`s on the empty plaintext; 1.21.0 says the ciphertext is too small. A
/// document that is not BSON, or one the `bson` crate cannot walk, is malformed here: libmongocrypt fails the
/// former before it parses anything (no abort), and no payload libmongocrypt writes is the latter.
fn check_insert_payload(blob_type: u8, bytes: &[u8]) -> std::result::Result<(), PayloadFault> {
    use crate::bson::spec::BinarySubtype;
    let malformed = |what: &str| PayloadFault::Malformed(what.to_owned());
    let (fields, min): (&[&str], usize) = match blob_type {
        4 => (&["d", "s", "c", "p", "u", "t", "v", "e"], 16 + 49),
        _ => (&["d", "s", "p", "u", "t", "v", "e", "l", "k"], 16 + 64),
    };
    let doc = RawDocument::from_bytes(&bytes[1..]).map_err(|_| malformed("that is not a BSON document"))?;
    let mut seen = [false; 9];
    let mut len = 0;
    for element in doc.iter_elements() {
        let element = element.map_err(|_| malformed("that is malformed BSON"))?;
        let name = crate::bson_compat::key_str(element.key());
        let Some(i) = fields.iter().position(|f| *f == name) else { continue };
        if std::mem::replace(&mut seen[i], true) {
            return Err(PayloadFault::Malformed(format!("with field {name:?} twice")));
        }
        let value = element.value().map_err(|_| malformed("that is malformed BSON"))?;
        let fits = match (name, value) {
            ("u", RawBsonRef::Binary(b)) => b.subtype == BinarySubtype::Uuid,
            ("t", RawBsonRef::Int32(t)) => (0..=255).contains(&t),
            ("k", RawBsonRef::Int64(k)) => k >= 0,
            ("u" | "t" | "k", _) => false,
            (_, RawBsonRef::Binary(b)) if b.subtype == BinarySubtype::Generic => {
                if name == "v" {
                    len = b.bytes.len();
                }
                name != "v" || len >= 16
            }
            _ => false,
        };
        if !fits {
            return Err(PayloadFault::Malformed(format!("whose field {name:?} is not what the parser takes")));
        }
    }
    if let Some((missing, _)) = fields.iter().zip(seen).find(|(_, seen)| !seen) {
        return Err(PayloadFault::Malformed(format!("without field {missing:?}")));
    }
    if len < min {
        return Err(PayloadFault::ShortValue { len, min });
    }
    Ok(())
}

/// Refuses, before libmongocrypt 1.21, a key document whose `keyMaterial` is not a binary of at least 64 bytes:
/// libmongocrypt 1.7.2 resizes a buffer to 0 bytes in `_mongocrypt_unwrap_key` for a short one and
/// `_mongocrypt_buffer_resize` `BSON_ASSERT`s (one bad document in the key vault aborts every client that fetches
/// it). 1.21.0 fails the key instead; the versions between are not known to be fixed. A real `keyMaterial` is 160
/// bytes or more.
fn check_key_material(key: &[u8]) -> Result<()> {
    let Ok(doc) = RawDocument::from_bytes(key) else { return Ok(()) };
    for element in doc {
        let Ok((name, value)) = element else { return Ok(()) };
        if name != "keyMaterial" {
            continue;
        }
        match value {
            RawBsonRef::Binary(b) if b.bytes.len() >= 64 => {}
            RawBsonRef::Binary(b) => {
                return Err(Error::invalid(format!(
                    "key document refused by the binding: keyMaterial of {} bytes (libmongocrypt before 1.21 aborts on \
                     one shorter than 64)",
                    b.bytes.len()
                )))
            }
            other => {
                return Err(Error::invalid(format!(
                    "key document refused by the binding: keyMaterial is {:?}, not binary",
                    other.element_type()
                )))
            }
        }
    }
    Ok(())
}

/// The states `mongocrypt_ctx_mongo_op`, `_mongo_feed` and `_mongo_done` accept.
const NEED_MONGO: &[State] =
    &[State::NeedMongoCollinfo, State::NeedMongoCollinfoWithDb, State::NeedMongoMarkings, State::NeedMongoKeys];

type SetoptBinary = unsafe extern "C" fn(*mut sys::mongocrypt_ctx_t, *mut sys::mongocrypt_binary_t) -> bool;

/// One initialised operation: `Send + 'static`, so it can be built in one task or thread and driven or finalized
/// in another.
///
/// It holds a clone of its [`Crypt`], so the `mongocrypt_t` lives at least as long as the ctx, even when every
/// other handle to it is dropped. Not `Sync`: "functions on derived handles (e.g. mongocrypt_ctx_t) are not [thread
/// safe] and must be owned by a single thread". Methods that change the state take `&mut self`, so the views that
/// [`mongo_op`](Ctx::mongo_op), [`mongo_db`](Ctx::mongo_db) and [`finalize`](Ctx::finalize) return cannot be used
/// after the next such call.
pub struct Ctx {
    raw: NonNull<sys::mongocrypt_ctx_t>,
    /// The view the last `mongocrypt_ctx_mongo_op` of this state returned (pointer, length), so libmongocrypt's
    /// mongo_op runs once per state: in NEED_MONGO_COLLINFO each call re-encodes the filter over the previous one
    /// without freeing it (a leak per call, 1.7.2 to 1.21.0). The data is "valid until ctx is destroyed"; every
    /// `&mut self` call that can change the state clears it ([`Ctx::state_may_change`]).
    mongo_op_view: Cell<Option<NonNull<RawDocument>>>,
    /// Whether the mongocryptd reply of this NEED_MONGO_MARKINGS state was fed: a second one is refused, as
    /// libmongocrypt (1.21.0 at least; found by the fuzz under LeakSanitizer) leaks the first when fed another.
    markings_fed: bool,
    /// Dropped after the ctx is destroyed (Drop runs before the fields are dropped).
    _crypt: Crypt,
}

// SAFETY: the ctx is used by one thread at a time (it is not Sync, and every call takes &self or &mut self), the
// Crypt it holds is Send + Sync, and the cached mongo_op view points into the ctx's own data, which moves with it.
unsafe impl Send for Ctx {}

impl Ctx {
    fn new(raw: NonNull<sys::mongocrypt_ctx_t>, crypt: &Crypt) -> Ctx {
        Ctx { raw, mongo_op_view: Cell::new(None), markings_fed: false, _crypt: crypt.clone() }
    }

    pub(crate) fn ptr(&self) -> *mut sys::mongocrypt_ctx_t {
        self.raw.as_ptr()
    }

    /// Forgets the cached [`mongo_op`](Ctx::mongo_op) view; called by every `&mut self` method before it calls
    /// into libmongocrypt in a way that can change the state (the borrow checker has already ended every view).
    pub(crate) fn state_may_change(&mut self) {
        self.mongo_op_view.set(None);
        self.markings_fed = false;
    }

    /// The ctx's error status as an [`Error`], after a call that reported failure.
    pub(crate) fn status_error(&self) -> Error {
        self.error().unwrap_or_else(|| Error::Client { code: 0, message: "unknown error".into() })
    }

    pub(crate) fn check(&self, ok: bool) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.status_error())
        }
    }

    /// The current state, when it is one of `expected`. Otherwise libmongocrypt is not called, as it would answer
    /// a bare "wrong state" and move the ctx to ERROR: in ERROR this returns the ctx's own error (what libmongocrypt
    /// returns there, unchanged), in any other state [`Error::WrongState`], and the ctx is left as it was.
    fn expect_state(&self, operation: &'static str, expected: &'static [State]) -> Result<State> {
        match self.state() {
            state if expected.contains(&state) => Ok(state),
            State::Error => Err(self.status_error()),
            state => Err(Error::WrongState { operation, expected, state }),
        }
    }

    /// The error of a ctx that failed (in [`State::Error`], or after a call returned `Err`), with libmongocrypt's
    /// message; `None` while the ctx is healthy.
    pub fn error(&self) -> Option<Error> {
        self.status().err()
    }

    /// The ctx's status (`mongocrypt_ctx_status`): `Err` once the ctx has failed.
    pub fn status(&self) -> Result<()> {
        let status = Status::new();
        // SAFETY: the ctx is live; its status is copied into ours.
        unsafe { sys::mongocrypt_ctx_status(self.ptr(), status.as_ptr()) };
        status.to_result()
    }

    /// The current state.
    pub fn state(&self) -> State {
        // SAFETY: the ctx is live; reading the state has no preconditions.
        State::from_raw(unsafe { sys::mongocrypt_ctx_state(self.ptr()) })
    }

    /// The document for the current NEED_MONGO_* state: a listCollections filter, a mongocryptd command, or a key
    /// vault find filter.
    ///
    /// libmongocrypt's `mongocrypt_ctx_mongo_op` runs once per state: later calls in the same state return the same
    /// view (in NEED_MONGO_COLLINFO, libmongocrypt would otherwise re-encode the filter and leak the previous one).
    /// Outside the four NEED_MONGO_* states, [`Error::WrongState`].
    pub fn mongo_op(&self) -> Result<&RawDocument> {
        self.expect_state("mongo_op", NEED_MONGO)?;
        if let Some(doc) = self.mongo_op_view.get() {
            // SAFETY: the document came from a successful mongocrypt_ctx_mongo_op in this state (the cache is
            // cleared by every call that can change it), whose data is "valid until ctx is destroyed"; the ctx
            // outlives the &self borrow.
            return Ok(unsafe { doc.as_ref() });
        }
        let out = BinaryOut::new();
        // SAFETY: the ctx is live; on success `out` views data "valid until ctx is destroyed", so borrowing it for
        // as long as &self (and no state change, which needs &mut self) is sound.
        let ok = unsafe { sys::mongocrypt_ctx_mongo_op(self.ptr(), out.as_ptr()) };
        self.check(ok)?;
        // SAFETY: as above.
        let doc = unsafe { out.document() }?;
        self.mongo_op_view.set(Some(NonNull::from(doc)));
        Ok(doc)
    }

    /// The database to run listCollections on, in NEED_MONGO_COLLINFO_WITH_DB (in another state,
    /// [`Error::WrongState`]). libmongocrypt ≥ 1.10.
    pub fn mongo_db(&self) -> Result<&str> {
        requires!(mongocrypt_has_ctx_mongo_db, "mongocrypt_ctx_mongo_db", "1.10.0", {
            self.expect_state("mongo_db", &[State::NeedMongoCollinfoWithDb])?;
            // SAFETY: the ctx is live; the string "is valid until mongocrypt_ctx_destroy is called", or NULL with an
            // error status set.
            let ptr = unsafe { sys::mongocrypt_ctx_mongo_db(self.ptr()) };
            if ptr.is_null() {
                return Err(self.status_error());
            }
            // SAFETY: a NUL-terminated string owned by the ctx, borrowed for &self.
            unsafe { std::ffi::CStr::from_ptr(ptr) }.to_str().map_err(|_| Error::invalid("database name is not UTF-8"))
        })
    }

    /// Feeds one reply document: a listCollections result, the mongocryptd reply, or a key document. Outside the
    /// four NEED_MONGO_* states, [`Error::WrongState`].
    pub fn mongo_feed(&mut self, reply: &(impl BsonInput + ?Sized)) -> Result<()> {
        let state = self.expect_state("mongo_feed", NEED_MONGO)?;
        let arg = match state {
            State::NeedMongoMarkings => BsonArg::visiting(reply, &mut refuse_bad_marking)?,
            _ => BsonArg::new(reply)?,
        };
        match state {
            State::NeedMongoMarkings if self.markings_fed => {
                return Err(Error::invalid(
                    "the mongocryptd reply of this NEED_MONGO_MARKINGS state was already fed: call mongo_done",
                ))
            }
            State::NeedMongoKeys if *Version::linked() < Version::new(1, 21, 0) => check_key_material(arg.bytes())?,
            _ => {}
        }
        let bin = arg.view()?;
        // SAFETY: the ctx is live and exclusively borrowed; "The viewed data is copied".
        let ok = unsafe { sys::mongocrypt_ctx_mongo_feed(self.ptr(), bin.as_ptr()) };
        if !ok {
            // A failed feed moves the ctx to the error state; a successful one keeps the state (and its op).
            self.state_may_change();
        } else if state == State::NeedMongoMarkings {
            self.markings_fed = true;
        }
        self.check(ok)
    }

    /// Ends the current NEED_MONGO_* state; in another state, [`Error::WrongState`].
    pub fn mongo_done(&mut self) -> Result<()> {
        self.expect_state("mongo_done", NEED_MONGO)?;
        self.state_may_change();
        // SAFETY: the ctx is live and exclusively borrowed.
        let ok = unsafe { sys::mongocrypt_ctx_mongo_done(self.ptr()) };
        self.check(ok)
    }

    /// The KMS requests of the NEED_KMS state. The [`KmsCtx`](crate::KmsCtx)s it hands out cannot outlive it;
    /// [`KmsScope::done`] (`mongocrypt_ctx_kms_done`) consumes it and returns its error, and dropping it ends the
    /// state too, leaving the error in the ctx's [`status`](Ctx::status).
    ///
    /// In any other state this is [`Error::WrongState`] (in ERROR, the ctx's error) and the ctx is left as it was.
    pub fn kms_scope(&mut self) -> Result<KmsScope<'_>> {
        self.expect_state("kms_scope", &[State::NeedKms])?;
        self.state_may_change();
        Ok(KmsScope::new(self))
    }

    /// Supplies KMS credentials in NEED_KMS_CREDENTIALS: a [`KmsProviders`](crate::KmsProviders) or raw document;
    /// providers it leaves out keep the `Crypt`'s settings. In another state, [`Error::WrongState`].
    pub fn provide_kms_providers(&mut self, providers: &(impl BsonInput + ?Sized)) -> Result<()> {
        self.expect_state("provide_kms_providers", &[State::NeedKmsCredentials])?;
        self.state_may_change();
        let arg = BsonArg::new(providers)?;
        let bin = arg.view()?;
        // SAFETY: the ctx is live and exclusively borrowed; the document is copied.
        let ok = unsafe { sys::mongocrypt_ctx_provide_kms_providers(self.ptr(), bin.as_ptr()) };
        self.check(ok)
    }

    /// Finishes the operation in READY and returns its result, borrowed from the ctx. In another state (a second
    /// call, in DONE, included), [`Error::WrongState`].
    pub fn finalize(&mut self) -> Result<&RawDocument> {
        self.expect_state("finalize", &[State::Ready])?;
        self.state_may_change();
        let out = BinaryOut::new();
        // SAFETY: the ctx is live and exclusively borrowed; "The data viewed by out is guaranteed to be valid until
        // ctx is destroyed", and the returned borrow keeps the ctx alive and unchanged.
        let ok = unsafe { sys::mongocrypt_ctx_finalize(self.ptr(), out.as_ptr()) };
        self.check(ok)?;
        // SAFETY: as above.
        unsafe { out.document() }
    }

    /// Finishes the operation and copies the result out, ending the borrow of the ctx.
    pub fn finalize_owned(&mut self) -> Result<RawDocumentBuf> {
        self.finalize().map(ToOwned::to_owned)
    }

    /// The raw ctx, for other FFI layers. It stays owned by this `Ctx`. [`mongo_op`](Ctx::mongo_op) caches its
    /// view until one of this `Ctx`'s state-changing methods runs, so it does not see a state changed through this
    /// pointer.
    pub fn as_raw(&self) -> *mut sys::mongocrypt_ctx_t {
        self.ptr()
    }

    /// Takes ownership of a ctx another FFI layer created on `crypt`; it is destroyed when the `Ctx` drops, and
    /// holds a clone of `crypt` until then.
    ///
    /// # Safety
    /// `raw` must come from `mongocrypt_ctx_new(crypt.as_raw())`, be owned by no one else, and not be used through
    /// any other pointer afterwards.
    pub unsafe fn from_raw(crypt: &Crypt, raw: *mut sys::mongocrypt_ctx_t) -> Ctx {
        Ctx::new(NonNull::new(raw).expect("Ctx::from_raw: NULL ctx"), crypt)
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: destroyed once; no view of it survives (they all borrow self), and its mongocrypt_t is still
        // alive: the `_crypt` field is dropped after this.
        unsafe { sys::mongocrypt_ctx_destroy(self.ptr()) }
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("state", &self.state()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::check_indexed_value_v2;

    /// Blob type, S_KeyId and BSON type, then `counts`, then `rest` bytes.
    fn value(blob_type: u8, counts: &[u8], rest: usize) -> Vec<u8> {
        let mut v = vec![blob_type];
        v.extend_from_slice(&[0x11; 16]);
        v.push(0x02);
        v.extend_from_slice(counts);
        v.resize(v.len() + rest, 0xab);
        v
    }

    fn text_counts(edges: u32, substr: u32, suffix: u32) -> Vec<u8> {
        [edges, substr, suffix].iter().flat_map(|c| c.to_le_bytes()).collect()
    }

    #[test]
    fn v2_indexed_value_layout() {
        // The shortest well-formed value of each kind is taken, one byte less is not.
        for (blob_type, counts, edges) in [
            (14, vec![], 1),
            (15, vec![1], 1),
            (15, vec![255], 255),
            (17, text_counts(1, 0, 0), 1),
            (17, text_counts(4, 1, 2), 4),
        ] {
            let rest = 17 + 96 * edges;
            assert_eq!(check_indexed_value_v2(blob_type, &value(blob_type, &counts, rest)), Ok(()));
            assert_eq!(check_indexed_value_v2(blob_type, &value(blob_type, &counts, rest + 500)), Ok(()));
            let short = value(blob_type, &counts, rest - 1);
            assert!(check_indexed_value_v2(blob_type, &short).is_err(), "{blob_type} {counts:?}");
            // Every truncation is refused.
            for len in 1..short.len() {
                assert!(check_indexed_value_v2(blob_type, &short[..len]).is_err(), "{blob_type} {counts:?} {len}");
            }
        }
        assert_eq!(check_indexed_value_v2(15, &value(15, &[0], 1000)), Err("with an edge count of 0"));
        for (e, s, x) in [(0, 0, 0), (1, 1, 0), (2, 0, 2), (2, u32::MAX, 0), (u32::MAX, u32::MAX, u32::MAX)] {
            assert!(check_indexed_value_v2(17, &value(17, &text_counts(e, s, x), 1000)).is_err(), "{e} {s} {x}");
        }
        // 96 * 0x02aaaaab wraps to 32 in 32 bits; here it does not.
        assert!(check_indexed_value_v2(17, &value(17, &text_counts(0x02aa_aaab, 0, 0), 49)).is_err());
    }
}
