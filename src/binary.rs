//! `mongocrypt_binary_t`: libmongocrypt's non-owning (pointer, length) view, used for every buffer and document
//! that crosses the boundary.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ptr::NonNull;

use bson::{Document, RawBsonRef, RawDocument, RawDocumentBuf};
use mongocrypt_sys as sys;
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

/// A view of memory libmongocrypt handed to a callback; `as_mut_slice` for out-parameters it preallocated.
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

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.0.is_null() {
            return &mut [];
        }
        // SAFETY: out-parameters of hooks are "a preallocated byte array for the output"; libmongocrypt does not
        // touch it during the call, so this is the only reference to it.
        unsafe {
            let (data, len) = (sys::mongocrypt_binary_data(self.0), sys::mongocrypt_binary_len(self.0));
            if data.is_null() {
                &mut []
            } else {
                std::slice::from_raw_parts_mut(data, len as usize)
            }
        }
    }
}

/// The BSON bytes of one argument, for the duration of one call. A serialized copy is wiped when dropped: arguments
/// such as KMS providers carry credentials.
pub(crate) struct BsonArg<'a>(Cow<'a, [u8]>);

impl<'a> BsonArg<'a> {
    pub(crate) fn new(input: &'a (impl BsonInput + ?Sized)) -> Result<BsonArg<'a>> {
        let bytes = input.bson_bytes()?;
        // libmongocrypt reports malformed BSON itself, except an empty buffer, on which libbson aborts the process
        // (seen in encrypt, decrypt and schema map inits of 1.7.2 and 1.21).
        if bytes.is_empty() {
            return Err(Error::invalid("an empty buffer is not a BSON document"));
        }
        // libmongocrypt checks a document's frame and reports it, but trusts what is inside: an encrypt command
        // that is malformed within a valid frame aborts it. So the elements are checked here, frame errors left to
        // libmongocrypt's own message.
        if let Ok(doc) = RawDocument::from_bytes(&bytes) {
            check_elements(doc)?;
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

/// Walks every element of `doc`, nested documents and arrays included, so that malformed content is an error.
fn check_elements(doc: &RawDocument) -> Result<()> {
    for element in doc {
        let (_, value) = element.map_err(|e| Error::invalid(format!("malformed BSON: {e}")))?;
        check_value(value)?;
    }
    Ok(())
}

fn check_value(value: RawBsonRef<'_>) -> Result<()> {
    match value {
        RawBsonRef::Document(doc) => check_elements(doc),
        RawBsonRef::Array(array) => {
            for item in array {
                check_value(item.map_err(|e| Error::invalid(format!("malformed BSON: {e}")))?)?;
            }
            Ok(())
        }
        RawBsonRef::JavaScriptCodeWithScope(code) => check_elements(code.scope),
        _ => Ok(()),
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
        Ok(Cow::Owned(RawDocumentBuf::try_from(self)?.into_bytes()))
    }
}

impl<T: BsonInput + ?Sized> BsonInput for &T {
    fn bson_bytes(&self) -> Result<Cow<'_, [u8]>> {
        (**self).bson_bytes()
    }
}
