//! `mongocrypt_binary_t`: libmongocrypt's non-owning (pointer, length) view, used for every buffer and document
//! that crosses the boundary.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use crate::bson::spec::BinarySubtype;
use crate::bson::{Bson, Document, RawDocument, RawDocumentBuf};
use libmongocrypt_sys as sys;
use zeroize::Zeroize;

use crate::error::{Error, Result};

/// A `mongocrypt_binary_t` that views Rust memory for `'a` ("data must outlive the binary object"). Inputs are
/// always copied by libmongocrypt before the call returns, so a view never outlives the call it is passed to.
pub(crate) struct BinaryView<'a> {
    raw: NonNull<sys::mongocrypt_binary_t>,
    _data: PhantomData<&'a [u8]>,
}

impl<'a> BinaryView<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Result<BinaryView<'a>> {
        let len = u32::try_from(data.len()).map_err(|_| Error::invalid("buffer larger than 4 GiB"))?;
        // SAFETY: mongocrypt_binary_new_from_data does not copy and never writes through the pointer for the
        // inputs we pass it; the PhantomData ties the view to `data` so the data outlives the binary object.
        let raw = unsafe { sys::mongocrypt_binary_new_from_data(data.as_ptr().cast_mut(), len) };
        Ok(BinaryView {
            raw: NonNull::new(raw).expect("mongocrypt_binary_new_from_data returned NULL"),
            _data: PhantomData,
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::mongocrypt_binary_t {
        self.raw.as_ptr()
    }
}

impl Drop for BinaryView<'_> {
    fn drop(&mut self) {
        // SAFETY: created by mongocrypt_binary_new_from_data and destroyed once; "This does not free the viewed
        // data", which stays owned by Rust.
        unsafe { sys::mongocrypt_binary_destroy(self.raw.as_ptr()) }
    }
}

/// An empty `mongocrypt_binary_t` for out-parameters; libmongocrypt points it at memory it owns.
pub(crate) struct BinaryOut(NonNull<sys::mongocrypt_binary_t>);

impl BinaryOut {
    pub(crate) fn new() -> BinaryOut {
        // SAFETY: mongocrypt_binary_new has no preconditions ("Use this to create a mongocrypt_binary_t used for
        // output parameters").
        let raw = unsafe { sys::mongocrypt_binary_new() };
        BinaryOut(NonNull::new(raw).expect("mongocrypt_binary_new returned NULL"))
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::mongocrypt_binary_t {
        self.0.as_ptr()
    }

    /// The viewed bytes.
    ///
    /// # Safety
    /// The memory libmongocrypt pointed this binary at must be live for `'a`; each caller names the rule of
    /// mongocrypt.h that guarantees it.
    pub(crate) unsafe fn bytes<'a>(&self) -> &'a [u8] {
        // SAFETY: mongocrypt_binary_data/len read the view's two fields.
        let (data, len) =
            unsafe { (sys::mongocrypt_binary_data(self.as_ptr()), sys::mongocrypt_binary_len(self.as_ptr())) };
        if data.is_null() || len == 0 {
            return &[];
        }
        // SAFETY: libmongocrypt set (data, len) to a live buffer; the caller guarantees it lives for 'a.
        unsafe { std::slice::from_raw_parts(data, len as usize) }
    }

    /// The viewed bytes as a BSON document.
    ///
    /// # Safety
    /// As for [`BinaryOut::bytes`].
    pub(crate) unsafe fn document<'a>(&self) -> Result<&'a RawDocument> {
        // SAFETY: forwarded to the caller.
        let bytes: &'a [u8] = unsafe { self.bytes() };
        RawDocument::from_bytes(bytes).map_err(Error::from)
    }
}

impl Drop for BinaryOut {
    fn drop(&mut self) {
        // SAFETY: created by mongocrypt_binary_new and destroyed once; the viewed data belongs to libmongocrypt and
        // "This does not free the viewed data".
        unsafe { sys::mongocrypt_binary_destroy(self.0.as_ptr()) }
    }
}

/// A view of memory libmongocrypt handed to a callback; `zeroed_output` for out-parameters it preallocated.
pub(crate) struct CallbackBinary(*mut sys::mongocrypt_binary_t);

impl CallbackBinary {
    /// # Safety
    /// `raw` must be a binary libmongocrypt passed to a hook, valid for the duration of that call.
    pub(crate) unsafe fn new(raw: *mut sys::mongocrypt_binary_t) -> CallbackBinary {
        CallbackBinary(raw)
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        if self.0.is_null() {
            return &[];
        }
        // SAFETY: `new`'s contract: libmongocrypt's binary is live for the call and views `len` bytes at `data`.
        unsafe {
            let (data, len) = (sys::mongocrypt_binary_data(self.0), sys::mongocrypt_binary_len(self.0));
            if data.is_null() {
                &[]
            } else {
                std::slice::from_raw_parts(data, len as usize)
            }
        }
    }

    /// The out-parameter's bytes, zeroed: what libmongocrypt preallocated is uninitialised memory (a fresh
    /// `bson_malloc`, or a reused block holding stale heap bytes), which safe code must never see.
    pub(crate) fn zeroed_output(&mut self) -> &mut [u8] {
        crate::hooks::zeroed(self.uninit_output())
    }

    /// The out-parameter's bytes as they are, possibly uninitialised: to be written, never read before.
    pub(crate) fn uninit_output(&mut self) -> &mut [MaybeUninit<u8>] {
        if self.0.is_null() {
            return &mut [];
        }
        // SAFETY: `new`'s contract: out-parameters of hooks are "a preallocated byte array for the output" (see
        // mongocrypt_binary_data), `len` writable bytes at `data` that libmongocrypt does not touch during the call,
        // so this is the only reference to them. They may be uninitialised, which `MaybeUninit` allows.
        unsafe {
            let (data, len) = (sys::mongocrypt_binary_data(self.0), sys::mongocrypt_binary_len(self.0));
            if data.is_null() {
                return &mut [];
            }
            std::slice::from_raw_parts_mut(data.cast::<MaybeUninit<u8>>(), len as usize)
        }
    }
}

/// The BSON bytes of one argument, for the duration of one call. A serialized copy is wiped when dropped: arguments
/// such as KMS providers carry credentials.
pub(crate) struct BsonArg<'a>(Cow<'a, [u8]>);

impl<'a> BsonArg<'a> {
    pub(crate) fn new(input: &'a (impl BsonInput + ?Sized)) -> Result<BsonArg<'a>> {
        BsonArg::visiting(input, &mut |_, _| Ok(()))
    }

    /// As [`new`](Self::new), and `visit` sees the subtype and bytes of every binary value, at every level, in the
    /// same walk that checks the document: the binding's checks of what libmongocrypt would abort on (markings,
    /// short Queryable Encryption values) cost no second pass.
    pub(crate) fn visiting(input: &'a (impl BsonInput + ?Sized), visit: &mut impl Visit) -> Result<BsonArg<'a>> {
        let bytes = input.bson_bytes()?;
        // libmongocrypt reports malformed BSON itself, except an empty buffer, on which libbson aborts the process
        // (seen in encrypt, decrypt and schema map inits of 1.7.2 and 1.21).
        if bytes.is_empty() {
            return Err(Error::invalid("an empty buffer is not a BSON document"));
        }
        // libmongocrypt checks a document's frame and reports it, but trusts what is inside: an encrypt command
        // that is malformed within a valid frame aborts it. So the elements are checked here, frame errors left to
        // libmongocrypt's own message.
        // The walk's errors stay a `&'static str` (small results on the hot path); a refusal's Error waits here.
        let mut refused = None;
        let mut keep = |subtype, value: &[u8]| {
            visit(subtype, value).map_err(|error| {
                refused = Some(error);
                "refused"
            })
        };
        match check_document(&bytes, 0, &mut keep) {
            Ok(()) | Err(BAD_FRAME) => {}
            Err(what) => return Err(refused.unwrap_or_else(|| Error::invalid(format!("malformed BSON: {what}")))),
        }
        Ok(BsonArg(bytes))
    }

    pub(crate) fn view(&self) -> Result<BinaryView<'_>> {
        BinaryView::new(&self.0)
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for BsonArg<'_> {
    fn drop(&mut self) {
        if let Cow::Owned(bytes) = &mut self.0 {
            bytes.zeroize();
        }
    }
}

/// Whether `bytes` is one well-formed BSON document all the way down (see [`check_document`]).
#[cfg(test)]
pub(crate) fn well_formed(bytes: &[u8]) -> std::result::Result<(), &'static str> {
    check_document(bytes, 0, &mut |_, _| Ok(()))
}

/// [`check_document`], and the first top-level element of a type without a value (null, undefined, MinKey,
/// MaxKey), as its type and name, in the same pass.
pub(crate) fn well_formed_first_valueless(bytes: &[u8]) -> std::result::Result<Option<(u8, &[u8])>, &'static str> {
    let len = read_len(bytes, 0)?;
    if len < 5 || len != bytes.len() || bytes[len - 1] != 0 {
        return Err("bad document length or terminator");
    }
    let end = len - 1;
    let mut pos = 4;
    let mut found = None;
    while pos < end {
        let kind = bytes[pos];
        let value_at = skip_cstring(bytes, pos + 1, end)?;
        pos = match kind {
            0x06 | 0x0A | 0x7F | 0xFF => {
                found = found.or(Some((kind, &bytes[pos + 1..value_at - 1])));
                value_at
            }
            _ => skip_value(bytes, kind, value_at, end, 0, &mut |_, _| Ok(()))?,
        };
    }
    Ok(found)
}

/// [`check_document`]'s error for a top-level document whose frame (length prefix, terminator) is wrong: left to
/// libmongocrypt, which reports it with its own message.
const BAD_FRAME: &str = "bad frame";

/// How deep documents may nest; MongoDB itself stops at 100. Bounds the recursion of [`check_document`].
const MAX_DEPTH: usize = 200;

/// Checks that `bytes` is one well-formed BSON document all the way down: lengths, terminators and element types,
/// nested documents included. Strings are not checked for UTF-8: libbson does not rely on it, and it would cost time
/// per byte where the rest costs time per element.
fn check_document(bytes: &[u8], depth: usize, visit: &mut impl Walker) -> std::result::Result<(), &'static str> {
    let frame_error = if depth == 0 { BAD_FRAME } else { "bad document length or terminator" };
    let len = read_len(bytes, 0).map_err(|_| frame_error)?;
    if len < 5 || len != bytes.len() || bytes[len - 1] != 0 {
        return Err(frame_error);
    }
    if depth > MAX_DEPTH {
        return Err("documents nested too deeply");
    }
    let end = len - 1;
    let mut pos = 4;
    while pos < end {
        let kind = bytes[pos];
        pos = skip_cstring(bytes, pos + 1, end)?;
        pos = skip_value(bytes, kind, pos, end, depth, visit)?;
    }
    Ok(())
}

/// What [`BsonArg::visiting`] calls with the subtype and bytes of each binary value; an `Err` refuses the document.
pub(crate) trait Visit: FnMut(u8, &[u8]) -> Result<()> {}

impl<F: FnMut(u8, &[u8]) -> Result<()>> Visit for F {}

/// What [`check_document`] calls with each binary value: [`Visit`] behind [`BsonArg::visiting`]'s adapter.
trait Walker: FnMut(u8, &[u8]) -> std::result::Result<(), &'static str> {}

impl<F: FnMut(u8, &[u8]) -> std::result::Result<(), &'static str>> Walker for F {}

/// The position after the value of type `kind` at `pos`, which must end by `end`.
#[inline(always)]
fn skip_value(
    b: &[u8],
    kind: u8,
    pos: usize,
    end: usize,
    depth: usize,
    visit: &mut impl Walker,
) -> std::result::Result<usize, &'static str> {
    let past = |from: usize, n: usize| from.checked_add(n).filter(|&p| p <= end).ok_or("value runs past its document");
    Ok(match kind {
        0x06 | 0x0A | 0x7F | 0xFF => pos,
        0x08 => past(pos, 1)?,
        0x10 => past(pos, 4)?,
        0x01 | 0x09 | 0x11 | 0x12 => past(pos, 8)?,
        0x07 => past(pos, 12)?,
        0x13 => past(pos, 16)?,
        0x02 | 0x0D | 0x0E => skip_string(b, pos, end)?,
        0x03 | 0x04 => {
            let next = past(pos, read_len(b, pos)?)?;
            check_document(&b[pos..next], depth + 1, visit)?;
            next
        }
        0x05 => {
            let next = past(pos, 5 + read_len(b, pos)?)?;
            visit(b[pos + 4], &b[pos + 5..next])?;
            next
        }
        0x0B => skip_cstring(b, skip_cstring(b, pos, end)?, end)?,
        0x0C => past(skip_string(b, pos, end)?, 12)?,
        0x0F => {
            let next = past(pos, read_len(b, pos)?)?;
            let scope = skip_string(b, pos + 4, next)?;
            check_document(&b[scope..next], depth + 1, visit)?;
            next
        }
        _ => return Err("unknown element type"),
    })
}

/// A non-negative little-endian int32 length at `pos`.
#[inline(always)]
fn read_len(b: &[u8], pos: usize) -> std::result::Result<usize, &'static str> {
    let bytes = b.get(pos..pos + 4).ok_or("truncated length")?;
    usize::try_from(i32::from_le_bytes(bytes.try_into().unwrap())).map_err(|_| "negative length")
}

/// The position after the NUL-terminated string at `pos`, which must end by `end`.
#[inline(always)]
fn skip_cstring(b: &[u8], pos: usize, end: usize) -> std::result::Result<usize, &'static str> {
    let nul = b.get(pos..end).and_then(|rest| rest.iter().position(|&c| c == 0)).ok_or("unterminated name")?;
    Ok(pos + nul + 1)
}

/// The position after the length-prefixed, NUL-terminated string at `pos`, which must end by `end`.
#[inline(always)]
fn skip_string(b: &[u8], pos: usize, end: usize) -> std::result::Result<usize, &'static str> {
    let len = read_len(b, pos)?;
    let next = (pos + 4).checked_add(len).filter(|&p| len > 0 && p <= end).ok_or("bad string length")?;
    if b[next - 1] != 0 {
        return Err("unterminated string");
    }
    Ok(next)
}

/// A BSON document argument: raw documents and byte slices pass through without a copy; a [`Document`] or a typed
/// option is serialized first. Bytes are not checked here: libmongocrypt validates them and reports malformed
/// BSON as an [`Error::Client`].
pub trait BsonInput {
    /// The BSON bytes to hand to libmongocrypt.
    fn bson_bytes(&self) -> Result<Cow<'_, [u8]>>;
}

impl BsonInput for RawDocument {
    fn bson_bytes(&self) -> Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(self.as_bytes()))
    }
}

impl BsonInput for RawDocumentBuf {
    fn bson_bytes(&self) -> Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(self.as_bytes()))
    }
}

impl BsonInput for [u8] {
    fn bson_bytes(&self) -> Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(self))
    }
}

impl BsonInput for Vec<u8> {
    fn bson_bytes(&self) -> Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(self))
    }
}

impl BsonInput for Document {
    fn bson_bytes(&self) -> Result<Cow<'_, [u8]>> {
        Ok(Cow::Owned(serialize_document(self)?))
    }
}

/// `doc` as BSON bytes, written into one buffer allocated at its final size.
///
/// bson's own serializer (`RawDocumentBuf::try_from`) writes into a `Vec` that grows as it goes, and every
/// reallocation frees a copy of what was written so far, unwiped. Documents carry credentials (KMS providers' keys,
/// secrets and tokens), and [`BsonArg`] can wipe only the buffer it holds, so that buffer must be the only one.
pub(crate) fn serialize_document(doc: &Document) -> Result<Vec<u8>> {
    let len = document_len(doc)?;
    if len > i32::MAX as usize {
        return Err(Error::invalid("document larger than 2 GiB"));
    }
    let mut out = Vec::with_capacity(len);
    write_document(&mut out, doc);
    debug_assert_eq!((out.len(), out.capacity()), (len, len), "the buffer was sized exactly and never grew");
    Ok(out)
}

/// The length of `doc` as BSON; checks that no key holds a NUL byte, which a BSON key cannot.
fn document_len(doc: &Document) -> Result<usize> {
    let mut len = 4 + 1;
    for (key, value) in doc {
        if key.as_bytes().contains(&0) {
            return Err(Error::invalid(format!("BSON: document key {key:?} contains a NUL byte")));
        }
        len += 1 + key.len() + 1 + value_len(value)?;
    }
    Ok(len)
}

/// The length of `value` as a BSON element's value.
fn value_len(value: &Bson) -> Result<usize> {
    let string = |s: &str| 4 + s.len() + 1;
    Ok(match value {
        Bson::Double(_) | Bson::Int64(_) | Bson::Timestamp(_) | Bson::DateTime(_) => 8,
        Bson::String(s) | Bson::JavaScriptCode(s) | Bson::Symbol(s) => string(s),
        Bson::Document(d) => document_len(d)?,
        Bson::Array(items) => array_len(items)?,
        Bson::Binary(b) => 4 + 1 + if b.subtype == BinarySubtype::BinaryOld { 4 } else { 0 } + b.bytes.len(),
        Bson::Boolean(_) => 1,
        Bson::Null | Bson::Undefined | Bson::MinKey | Bson::MaxKey => 0,
        Bson::RegularExpression(re) => re.pattern.as_str().len() + 1 + re.options.as_str().len() + 1,
        Bson::JavaScriptCodeWithScope(cws) => 4 + string(&cws.code) + document_len(&cws.scope)?,
        Bson::Int32(_) => 4,
        Bson::ObjectId(_) => 12,
        Bson::Decimal128(_) => 16,
        Bson::DbPointer(_) => db_pointer_bytes(value)?.len(),
    })
}

fn array_len(items: &[Bson]) -> Result<usize> {
    let mut len = 4 + 1;
    for (index, value) in items.iter().enumerate() {
        len += 1 + decimal_len(index) + 1 + value_len(value)?;
    }
    Ok(len)
}

/// The number of decimal digits of `n`: the length of an array index key.
fn decimal_len(mut n: usize) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// Appends `doc`, whose keys [`document_len`] checked, to `out`.
fn write_document(out: &mut Vec<u8>, doc: &Document) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    for (key, value) in doc {
        write_element(out, key, value);
    }
    out.push(0);
    finish_length(out, start);
}

fn write_array(out: &mut Vec<u8>, items: &[Bson]) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    for (index, value) in items.iter().enumerate() {
        write_element(out, &index.to_string(), value);
    }
    out.push(0);
    finish_length(out, start);
}

/// Writes the length of what `out` holds from `start` into the four bytes at `start`.
fn finish_length(out: &mut [u8], start: usize) {
    // Within i32: serialize_document checked the whole document's length before writing anything.
    let len = (out.len() - start) as i32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

fn write_element(out: &mut Vec<u8>, key: &str, value: &Bson) {
    out.push(value.element_type() as u8);
    out.extend_from_slice(key.as_bytes());
    out.push(0);
    write_value(out, value);
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    // Within i32 as above.
    out.extend_from_slice(&((s.len() + 1) as i32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn write_value(out: &mut Vec<u8>, value: &Bson) {
    match value {
        Bson::Double(v) => out.extend_from_slice(&v.to_le_bytes()),
        Bson::String(s) | Bson::JavaScriptCode(s) | Bson::Symbol(s) => write_string(out, s),
        Bson::Document(d) => write_document(out, d),
        Bson::Array(items) => write_array(out, items),
        Bson::Binary(b) => {
            let old = b.subtype == BinarySubtype::BinaryOld;
            // The old binary subtype repeats the length inside the value, and counts those 4 bytes.
            let len = (b.bytes.len() + if old { 4 } else { 0 }) as i32;
            out.extend_from_slice(&len.to_le_bytes());
            out.push(b.subtype.into());
            if old {
                out.extend_from_slice(&(b.bytes.len() as i32).to_le_bytes());
            }
            out.extend_from_slice(&b.bytes);
        }
        Bson::Boolean(b) => out.push(u8::from(*b)),
        Bson::Null | Bson::Undefined | Bson::MinKey | Bson::MaxKey => {}
        Bson::RegularExpression(re) => {
            for part in [re.pattern.as_str(), re.options.as_str()] {
                out.extend_from_slice(part.as_bytes());
                out.push(0);
            }
        }
        Bson::JavaScriptCodeWithScope(cws) => {
            let start = out.len();
            out.extend_from_slice(&[0; 4]);
            write_string(out, &cws.code);
            write_document(out, &cws.scope);
            finish_length(out, start);
        }
        Bson::Int32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Bson::Timestamp(ts) => {
            out.extend_from_slice(&ts.increment.to_le_bytes());
            out.extend_from_slice(&ts.time.to_le_bytes());
        }
        Bson::Int64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Bson::ObjectId(oid) => out.extend_from_slice(&oid.bytes()),
        Bson::DateTime(dt) => out.extend_from_slice(&dt.timestamp_millis().to_le_bytes()),
        Bson::Decimal128(d) => out.extend_from_slice(&d.bytes()),
        // value_len serialized it once already, so this cannot fail.
        Bson::DbPointer(_) => out.extend_from_slice(&db_pointer_bytes(value).unwrap_or_default()),
    }
}

/// The value bytes of a DBPointer (deprecated; its fields are private to bson), through bson's serializer: a
/// namespace and an ObjectId, never a secret.
fn db_pointer_bytes(value: &Bson) -> Result<Vec<u8>> {
    let mut wrapped = Document::new();
    wrapped.insert("", value.clone());
    let bytes = RawDocumentBuf::try_from(&wrapped)?.into_bytes();
    // {len:4}{type:1}{key "":1}{value}{terminator:1}
    Ok(bytes[6..bytes.len() - 1].to_vec())
}

impl<T: BsonInput + ?Sized> BsonInput for &T {
    fn bson_bytes(&self) -> Result<Cow<'_, [u8]>> {
        (**self).bson_bytes()
    }
}

#[cfg(test)]
mod tests {
    use crate::bson::spec::BinarySubtype;
    use crate::bson::{doc, Binary, Bson, DateTime, Decimal128, JavaScriptCodeWithScope, Regex, Timestamp};

    use super::*;

    fn bytes(d: &Document) -> Vec<u8> {
        RawDocumentBuf::try_from(d).unwrap().into_bytes()
    }

    #[allow(clippy::unnecessary_fallible_conversions, reason = "bson 3's Regex fields are CStrings, bson 2's Strings")]
    fn all_types() -> Document {
        doc! {
            "double": 1.5, "string": "s", "doc": { "a": [1, { "b": null }] }, "array": [], "empty": {},
            "binary": Binary { subtype: BinarySubtype::Uuid, bytes: vec![7; 16] }, "undefined": Bson::Undefined,
            "oid": crate::bson::oid::ObjectId::new(), "bool": true, "date": DateTime::from_millis(0), "null": Bson::Null,
            "regex": Regex { pattern: "a.*".try_into().unwrap(), options: "i".try_into().unwrap() }, "code": Bson::JavaScriptCode("f()".into()),
            "symbol": Bson::Symbol("sym".into()),
            "scope": JavaScriptCodeWithScope { code: "g()".into(), scope: doc! { "x": 1 } },
            "int32": 1, "timestamp": Timestamp { time: 1, increment: 2 }, "int64": 2_i64,
            "decimal": Decimal128::from_bytes([0; 16]), "min": Bson::MinKey, "max": Bson::MaxKey,
        }
    }

    #[test]
    fn every_element_type_passes() {
        assert_eq!(well_formed(&bytes(&all_types())), Ok(()));
    }

    #[test]
    fn serialize_document_writes_what_bson_writes_into_one_exact_buffer() {
        // A DBPointer can only be read, not built: namespace "db.c", ObjectId 0x01 * 12.
        let mut db_pointer = vec![0u8; 4];
        db_pointer.extend_from_slice(b"\x0cp\0\x05\0\0\0db.c\0");
        db_pointer.extend_from_slice(&[1; 12]);
        db_pointer.push(0);
        let n = db_pointer.len() as i32;
        db_pointer[..4].copy_from_slice(&n.to_le_bytes());
        let db_pointer = Document::from_reader(&db_pointer[..]).unwrap();
        let nested = doc! {
            "d": { "a": [1, { "b": null }, [], "x".repeat(300)] }, "empty": {}, "": "empty key",
            "old": Binary { subtype: BinarySubtype::BinaryOld, bytes: vec![1, 2, 3] },
            "array": (0..12).map(Bson::Int32).collect::<Vec<_>>(), "unicode": "\u{e9}\u{1f600}", "nul": "a\0b",
            "user": Binary { subtype: BinarySubtype::UserDefined(0x80), bytes: vec![9; 200] },
            "p": db_pointer.get("p").unwrap().clone(),
        };
        for d in [all_types(), nested, Document::new()] {
            let ours = serialize_document(&d).unwrap();
            assert_eq!(ours, bytes(&d), "{d}");
            assert_eq!(ours.capacity(), ours.len());
        }
        let bad = doc! { "a": { "b\0c": 1 } };
        assert!(matches!(serialize_document(&bad), Err(Error::InvalidArgument(m)) if m.contains("NUL")));
        assert!(bad.bson_bytes().is_err());
    }

    #[test]
    fn malformed_content_inside_a_valid_frame_is_found() {
        let good = bytes(&doc! { "find": "c", "filter": { "x": 5 } });
        // The inner document's terminator replaced: the outer frame is still valid.
        let mut no_terminator = good.clone();
        let inner_end = good.len() - 2;
        no_terminator[inner_end] = 1;
        assert!(RawDocument::from_bytes(&no_terminator).is_ok());
        assert_eq!(well_formed(&no_terminator), Err("bad document length or terminator"));
        // An element type that does not exist.
        let mut bad_type = good.clone();
        bad_type[4] = 0x42;
        assert_eq!(well_formed(&bad_type), Err("unknown element type"));
        // A string length past the document.
        let mut long_string = good.clone();
        long_string[10] = 0x7f;
        assert_eq!(well_formed(&long_string), Err("bad string length"));
        assert_eq!(well_formed(&good), Ok(()));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut d = doc! {};
        for _ in 0..MAX_DEPTH + 1 {
            d = doc! { "d": d };
        }
        assert_eq!(well_formed(&bytes(&d)), Err("documents nested too deeply"));
        let mut d = doc! {};
        for _ in 0..MAX_DEPTH {
            d = doc! { "d": d };
        }
        assert_eq!(well_formed(&bytes(&d)), Ok(()));
    }

    #[test]
    fn bson_args_refuse_empty_and_malformed_documents() {
        assert!(matches!(BsonArg::new(&[][..]), Err(Error::InvalidArgument(_))));
        let mut inner = bytes(&doc! { "a": { "b": 1 } });
        let n = inner.len();
        inner[n - 2] = 9;
        assert!(matches!(BsonArg::new(&inner), Err(Error::InvalidArgument(m)) if m.starts_with("malformed BSON")));
        // A bad frame is left to libmongocrypt, which reports it in its own words.
        assert!(BsonArg::new(&[6u8, 0, 0, 0, 0][..]).is_ok());
    }

    #[test]
    fn binaries_are_found_at_every_level() {
        use crate::bson::{doc, Binary};
        let bin = |b: u8| Binary { subtype: crate::bson::spec::BinarySubtype::Encrypted, bytes: vec![b, 1, 2] };
        let d = doc! { "a": bin(1), "b": { "c": [1, bin(2), { "d": bin(3) }] }, "e": "x" };
        let bytes = crate::bson::RawDocumentBuf::try_from(&d).unwrap().into_bytes();
        let mut seen = vec![];
        BsonArg::visiting(&bytes, &mut |subtype, b: &[u8]| {
            seen.push((subtype, b[0]));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [(6, 1), (6, 2), (6, 3)]);
        let refused = BsonArg::visiting(&bytes, &mut |_, b: &[u8]| match b[0] {
            2 => Err(Error::invalid("two")),
            _ => Ok(()),
        });
        assert_eq!(refused.err(), Some(Error::invalid("two")));
    }
}
