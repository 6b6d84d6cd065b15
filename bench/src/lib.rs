//! The plain-C side of the overhead bench (`benches/overhead.rs`): `overhead.c`, compiled by build.rs against the
//! `mongocrypt.h` that libmongocrypt-sys found, and a thin Rust wrapper to call it. The C loops make the same
//! libmongocrypt calls as the binding does for the same operations (see the comment at the top of overhead.c).

use std::ffi::{c_char, c_int, CStr};
use std::ptr::NonNull;

use libmongocrypt::sys::mongocrypt_t;

/// `bench_buf_t`: a malloc'd copy of a result.
#[repr(C)]
struct RawBuf {
    data: *mut u8,
    len: u32,
}

const ERR_LEN: usize = 1024;

extern "C" {
    fn bench_buf_free(buf: *mut RawBuf);
    fn bench_c_crypt_new(
        kms_providers: *const u8,
        kms_len: u32,
        schema_map: *const u8,
        schema_len: u32,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut mongocrypt_t;
    fn bench_c_crypt_destroy(crypt: *mut mongocrypt_t);
    fn bench_c_datakey(
        crypt: *mut mongocrypt_t,
        kek: *const u8,
        kek_len: u32,
        key_doc: *mut RawBuf,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn bench_c_encrypt_loop(
        crypt: *mut mongocrypt_t,
        key_id: *const u8,
        key_id_len: u32,
        key_doc: *const u8,
        key_doc_len: u32,
        value: *const u8,
        value_len: u32,
        n: u64,
        last: *mut RawBuf,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn bench_c_decrypt_loop(
        crypt: *mut mongocrypt_t,
        key_doc: *const u8,
        key_doc_len: u32,
        ciphertext: *const u8,
        ciphertext_len: u32,
        n: u64,
        last: *mut RawBuf,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn bench_c_auto_encrypt_loop(
        crypt: *mut mongocrypt_t,
        db: *const c_char,
        db_len: u32,
        cmd: *const u8,
        cmd_len: u32,
        markings: *const u8,
        markings_len: u32,
        key_doc: *const u8,
        key_doc_len: u32,
        n: u64,
        last: *mut RawBuf,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
}

/// The last result of a C loop: a buffer malloc'd by overhead.c, replaced by each operation and freed on drop.
pub struct Output(RawBuf);

impl Output {
    /// No result yet.
    pub fn new() -> Output {
        Output(RawBuf { data: std::ptr::null_mut(), len: 0 })
    }

    /// The bytes of the last result (empty before the first).
    pub fn as_bytes(&self) -> &[u8] {
        if self.0.data.is_null() {
            return &[];
        }
        // SAFETY: overhead.c set (data, len) to a malloc'd buffer of len bytes that only this Output frees.
        unsafe { std::slice::from_raw_parts(self.0.data, self.0.len as usize) }
    }
}

impl Default for Output {
    fn default() -> Output {
        Output::new()
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // SAFETY: the buffer is NULL or malloc'd by overhead.c; bench_buf_free frees it once and NULLs it.
        unsafe { bench_buf_free(&mut self.0) }
    }
}

fn len32(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).expect("input under 4 GiB")
}

/// Calls `f` with an error buffer and turns a non-zero result into the message C wrote there.
fn with_err(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), String> {
    let mut err = [0 as c_char; ERR_LEN];
    if f(err.as_mut_ptr(), ERR_LEN) == 0 {
        return Ok(());
    }
    // SAFETY: overhead.c always NUL-terminates what it writes into the buffer, which starts zeroed.
    Err(unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned())
}

/// A `mongocrypt_t` created, configured and owned by C: no Rust code touches it besides passing it back to C.
pub struct CCrypt(NonNull<mongocrypt_t>);

// SAFETY: after mongocrypt_init, "Functions on a mongocrypt_t are thread safe"; each C loop makes its own ctxs.
unsafe impl Send for CCrypt {}
// SAFETY: as for Send: the loops only create ctxs on the shared handle, which libmongocrypt allows concurrently.
unsafe impl Sync for CCrypt {}

impl CCrypt {
    /// `mongocrypt_new`, a no-op log handler, `kms_providers` (BSON), the optional `schema_map` (BSON), init.
    pub fn new(kms_providers: &[u8], schema_map: Option<&[u8]>) -> Result<CCrypt, String> {
        let mut err = [0 as c_char; ERR_LEN];
        let (schema, schema_len) = schema_map.map_or((std::ptr::null(), 0), |s| (s.as_ptr(), len32(s)));
        // SAFETY: the inputs are live for the call and only read (libmongocrypt copies them); err has ERR_LEN bytes.
        let raw = unsafe {
            bench_c_crypt_new(
                kms_providers.as_ptr(),
                len32(kms_providers),
                schema,
                schema_len,
                err.as_mut_ptr(),
                ERR_LEN,
            )
        };
        match NonNull::new(raw) {
            Some(raw) => Ok(CCrypt(raw)),
            // SAFETY: NUL-terminated by overhead.c on the error path.
            None => Err(unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned()),
        }
    }

    /// The raw handle, still owned by this value.
    pub fn as_raw(&self) -> *mut mongocrypt_t {
        self.0.as_ptr()
    }

    /// A new data key under the key encryption key `kek` (BSON), as its key document.
    pub fn datakey(&self, kek: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Output::new();
        // SAFETY: live handle and inputs; `out` receives a malloc'd copy that it frees.
        with_err(|err, len| unsafe { bench_c_datakey(self.as_raw(), kek.as_ptr(), len32(kek), &mut out.0, err, len) })?;
        Ok(out.as_bytes().to_vec())
    }

    /// `n` explicit Deterministic encryptions of `value` (`{"v": ...}`) with the key `key_id`, fed `key_doc`
    /// whenever a ctx asks for it. The last ciphertext is left in `last`.
    pub fn encrypt_loop(
        &self,
        key_id: &[u8],
        key_doc: &[u8],
        value: &[u8],
        n: u64,
        last: &mut Output,
    ) -> Result<(), String> {
        // SAFETY: live handle; the inputs outlive the call and are only read; `last` is owned by an Output.
        with_err(|err, len| unsafe {
            bench_c_encrypt_loop(
                self.as_raw(),
                key_id.as_ptr(),
                len32(key_id),
                key_doc.as_ptr(),
                len32(key_doc),
                value.as_ptr(),
                len32(value),
                n,
                &mut last.0,
                err,
                len,
            )
        })
    }

    /// `n` explicit decryptions of `ciphertext` (`{"v": Binary(6, ...)}`). The last plaintext is left in `last`.
    pub fn decrypt_loop(&self, key_doc: &[u8], ciphertext: &[u8], n: u64, last: &mut Output) -> Result<(), String> {
        // SAFETY: as for encrypt_loop.
        with_err(|err, len| unsafe {
            bench_c_decrypt_loop(
                self.as_raw(),
                key_doc.as_ptr(),
                len32(key_doc),
                ciphertext.as_ptr(),
                len32(ciphertext),
                n,
                &mut last.0,
                err,
                len,
            )
        })
    }

    /// `n` automatic encryptions of `cmd` on `db`, answering NEED_MONGO_MARKINGS with the mongocryptd reply
    /// `markings` and NEED_MONGO_KEYS with `key_doc`. The last encrypted command is left in `last`.
    #[allow(clippy::too_many_arguments)]
    pub fn auto_encrypt_loop(
        &self,
        db: &str,
        cmd: &[u8],
        markings: &[u8],
        key_doc: &[u8],
        n: u64,
        last: &mut Output,
    ) -> Result<(), String> {
        // SAFETY: as for encrypt_loop; `db` is passed with its length, as the binding does.
        with_err(|err, len| unsafe {
            bench_c_auto_encrypt_loop(
                self.as_raw(),
                db.as_ptr().cast(),
                len32(db.as_bytes()),
                cmd.as_ptr(),
                len32(cmd),
                markings.as_ptr(),
                len32(markings),
                key_doc.as_ptr(),
                len32(key_doc),
                n,
                &mut last.0,
                err,
                len,
            )
        })
    }
}

impl Drop for CCrypt {
    fn drop(&mut self) {
        // SAFETY: created by bench_c_crypt_new and destroyed once; no loop is running (they borrow self).
        unsafe { bench_c_crypt_destroy(self.as_raw()) }
    }
}

#[cfg(test)]
mod tests {
    use bson::{doc, rawdoc, spec::BinarySubtype, Binary, RawDocumentBuf};
    use libmongocrypt::{Algorithm, Crypt, KmsProviders, State};

    use super::*;

    /// C and the binding agree: each decrypts what the other encrypted with the same key document.
    #[test]
    fn c_and_binding_round_trip_each_other() {
        if !libmongocrypt::is_crypto_available() {
            println!("SKIP: libmongocrypt {} has no native crypto, so the C side cannot run", libmongocrypt::version());
            return;
        }
        let kek = [7u8; 96];
        let providers = doc! { "local": { "key": Binary { subtype: BinarySubtype::Generic, bytes: kek.to_vec() } } };
        let providers = RawDocumentBuf::try_from(&providers).unwrap();
        let c = CCrypt::new(providers.as_bytes(), None).unwrap();
        let key_doc = c.datakey(rawdoc! { "provider": "local" }.as_bytes()).unwrap();
        let key_doc = RawDocumentBuf::from_bytes(key_doc).unwrap();
        let key_id = key_doc.get_binary("_id").unwrap().bytes.to_vec();
        let value = rawdoc! { "v": "457-55-5462" };

        let mut c_ciphertext = Output::new();
        c.encrypt_loop(&key_id, key_doc.as_bytes(), value.as_bytes(), 3, &mut c_ciphertext).unwrap();

        let crypt = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &kek)).unwrap().build().unwrap();
        let mut ctx = crypt.ctx().explicit_decrypt(c_ciphertext.as_bytes()).unwrap();
        assert_eq!(ctx.state(), State::NeedMongoKeys);
        ctx.mongo_feed(&key_doc).unwrap();
        ctx.mongo_done().unwrap();
        assert_eq!(ctx.finalize().unwrap().as_bytes(), value.as_bytes());
        drop(ctx);

        let mut ctx = crypt
            .ctx()
            .key_id(&key_id)
            .unwrap()
            .algorithm(&Algorithm::Deterministic)
            .unwrap()
            .explicit_encrypt(&value)
            .unwrap();
        let rust_ciphertext = ctx.finalize_owned().unwrap();
        assert_eq!(rust_ciphertext.as_bytes(), c_ciphertext.as_bytes(), "Deterministic: same key, same ciphertext");
        let mut plaintext = Output::new();
        c.decrypt_loop(key_doc.as_bytes(), rust_ciphertext.as_bytes(), 2, &mut plaintext).unwrap();
        assert_eq!(plaintext.as_bytes(), value.as_bytes());

        // A KEK the provider does not know is an error carrying libmongocrypt's message.
        let message = c.datakey(rawdoc! { "provider": "aws" }.as_bytes()).unwrap_err();
        assert!(!message.is_empty());
    }
}
