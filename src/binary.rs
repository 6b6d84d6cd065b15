//! `mongocrypt_binary_t`: libmongocrypt's non-owning (pointer, length) view, used for every buffer and document
//! that crosses the boundary.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::bson::spec::BinarySubtype;
use crate::bson::{Bson, Document, RawDocument, RawDocumentBuf};
use libmongocrypt_sys as sys;
use zeroize::Zeroize;

use crate::error::{Error, Result};
use crate::guard;
use crate::guard::bson::Visit;

/// A `mongocrypt_binary_t` that views Rust memory for `'a` ("data must outlive the binary object"). Inputs are
/// always copied by libmongocrypt before the call returns, so a view never outlives the call it is passed to.
pub(crate) struct BinaryView<'a> {
    raw: NonNull<sys::mongocrypt_binary_t>,
    _data: PhantomData<&'a [u8]>,
}

impl<'a> BinaryView<'a> {
    #[inline]
    pub(crate) fn new(data: &'a [u8]) -> Result<BinaryView<'a>> {
        let len = u32::try_from(data.len()).map_err(|_| too_large())?;
        // SAFETY: mongocrypt_binary_new_from_data does not copy and never writes through the pointer for the
        // inputs we pass it; the PhantomData ties the view to `data` so the data outlives the binary object.
        let raw = unsafe { sys::mongocrypt_binary_new_from_data(data.as_ptr().cast_mut(), len) };
        Ok(BinaryView {
            raw: NonNull::new(raw).expect("mongocrypt_binary_new_from_data returned NULL"),
            _data: PhantomData,
        })
    }

    #[inline]
    pub(crate) fn as_ptr(&self) -> *mut sys::mongocrypt_binary_t {
        self.raw.as_ptr()
    }
}

#[cold]
fn too_large() -> Error {
    Error::invalid("buffer larger than 4 GiB")
}

impl Drop for BinaryView<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: created by mongocrypt_binary_new_from_data and destroyed once; "This does not free the viewed
        // data", which stays owned by Rust.
        unsafe { sys::mongocrypt_binary_destroy(self.raw.as_ptr()) }
    }
}

/// An empty `mongocrypt_binary_t` for out-parameters; libmongocrypt points it at memory it owns.
pub(crate) struct BinaryOut(NonNull<sys::mongocrypt_binary_t>);

impl BinaryOut {
    #[inline]
    pub(crate) fn new() -> BinaryOut {
        // SAFETY: mongocrypt_binary_new has no preconditions ("Use this to create a mongocrypt_binary_t used for
        // output parameters").
        let raw = unsafe { sys::mongocrypt_binary_new() };
        BinaryOut(NonNull::new(raw).expect("mongocrypt_binary_new returned NULL"))
    }

    #[inline]
    pub(crate) fn as_ptr(&self) -> *mut sys::mongocrypt_binary_t {
        self.0.as_ptr()
    }

    /// The viewed bytes.
    ///
    /// # Safety
    /// The memory libmongocrypt pointed this binary at must be live for `'a`; each caller names the rule of
    /// mongocrypt.h that guarantees it.
    #[inline]
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
    #[inline]
    pub(crate) unsafe fn document<'a>(&self) -> Result<&'a RawDocument> {
        // SAFETY: forwarded to the caller.
        let bytes: &'a [u8] = unsafe { self.bytes() };
        RawDocument::from_bytes(bytes).map_err(Error::from)
    }
}

impl Drop for BinaryOut {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: created by mongocrypt_binary_new and destroyed once; the viewed data belongs to libmongocrypt and
        // "This does not free the viewed data".
        unsafe { sys::mongocrypt_binary_destroy(self.0.as_ptr()) }
    }
}

/// The BSON bytes of one argument, for the duration of one call. A serialized copy is wiped when dropped: arguments
/// such as KMS providers carry credentials.
pub(crate) struct BsonArg<'a>(Cow<'a, [u8]>);

impl<'a> BsonArg<'a> {
    #[inline]
    pub(crate) fn new(input: &'a (impl BsonInput + ?Sized)) -> Result<BsonArg<'a>> {
        BsonArg::visiting(input, &mut |_, _| Ok(()))
    }

    /// As [`new`](Self::new), and `visit` sees the subtype and bytes of every binary value, at every level, in the
    /// same walk that checks the document: the binding's checks of what libmongocrypt would abort on (markings,
    /// short Queryable Encryption values) cost no second pass.
    #[inline]
    pub(crate) fn visiting(input: &'a (impl BsonInput + ?Sized), visit: &mut impl Visit) -> Result<BsonArg<'a>> {
        // Held before it is checked, so that a refused copy is wiped too.
        let arg = BsonArg(input.bson_bytes()?);
        guard::bson::check_argument(&arg.0, visit)?;
        Ok(arg)
    }

    #[inline]
    pub(crate) fn view(&self) -> Result<BinaryView<'_>> {
        BinaryView::new(&self.0)
    }

    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for BsonArg<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Cow::Owned(bytes) = &mut self.0 {
            bytes.zeroize();
        }
    }
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
