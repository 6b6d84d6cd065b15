//! Explicit encryption through the raw FFI with a local KMS key: create a data key, encrypt `{"v": "hello"}` with
//! it, decrypt the result. Runs where the library has native crypto (Debian's 1.7.2 uses OpenSSL); a "nocrypto"
//! build (the pinned 1.21.0) is checked for what it can do without crypto hooks instead.
//!
//! BSON is built and read by hand: libmongocrypt-sys has no BSON dependency, and byte-exact documents make the
//! assertions exact.

use std::ffi::CStr;
use std::ptr;

use libmongocrypt_sys::*;

/// The bindings this crate was compiled with (integration tests see the package's `OUT_DIR`).
const BINDINGS: &str = include_str!(concat!(env!("OUT_DIR"), "/bindings.rs"));

// ---------------------------------------------------------------------------------------------------------------
// A tiny BSON writer and reader.

enum Value<'a> {
    Str(&'a str),
    Binary(u8, &'a [u8]),
    Doc(Vec<u8>),
}

/// Encodes a document from its elements, in order.
fn doc(elements: &[(&str, Value)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (key, value) in elements {
        let tag: u8 = match value {
            Value::Str(_) => 0x02,
            Value::Doc(_) => 0x03,
            Value::Binary(..) => 0x05,
        };
        body.push(tag);
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        match value {
            Value::Str(s) => {
                body.extend_from_slice(&(s.len() as i32 + 1).to_le_bytes());
                body.extend_from_slice(s.as_bytes());
                body.push(0);
            }
            Value::Doc(d) => body.extend_from_slice(d),
            Value::Binary(subtype, bytes) => {
                body.extend_from_slice(&(bytes.len() as i32).to_le_bytes());
                body.push(*subtype);
                body.extend_from_slice(bytes);
            }
        }
    }
    let mut out = ((body.len() + 5) as i32).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out.push(0);
    out
}

/// One top-level element: its key, BSON type tag and value bytes.
#[derive(Debug)]
struct Element<'a> {
    key: &'a str,
    tag: u8,
    value: &'a [u8],
}

fn read_i32(bytes: &[u8]) -> usize {
    i32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize
}

/// The top-level elements of a document; panics on malformed input or on a type these tests never meet.
fn elements(doc: &[u8]) -> Vec<Element<'_>> {
    assert!(doc.len() >= 5 && read_i32(doc) == doc.len() && doc[doc.len() - 1] == 0, "not one BSON document: {doc:?}");
    let mut out = Vec::new();
    let mut at = 4;
    while doc[at] != 0 {
        let tag = doc[at];
        let key_end = at + 1 + doc[at + 1..].iter().position(|&b| b == 0).unwrap();
        let key = std::str::from_utf8(&doc[at + 1..key_end]).unwrap();
        let start = key_end + 1;
        let len = match tag {
            0x01 | 0x09 | 0x11 | 0x12 => 8,         // double, datetime, timestamp, int64
            0x02 => 4 + read_i32(&doc[start..]),    // string
            0x03 | 0x04 => read_i32(&doc[start..]), // document, array
            0x05 => 5 + read_i32(&doc[start..]),    // binary
            0x07 => 12,                             // ObjectId
            0x08 => 1,                              // bool
            0x0A => 0,                              // null
            0x10 => 4,                              // int32
            0x13 => 16,                             // decimal128
            other => panic!("BSON type {other:#04x} of {key:?} is not handled by this test's reader"),
        };
        out.push(Element { key, tag, value: &doc[start..start + len] });
        at = start + len;
    }
    assert_eq!(at + 1, doc.len(), "trailing bytes after the document's elements");
    out
}

fn field<'a>(doc: &'a [u8], key: &str) -> Element<'a> {
    elements(doc).into_iter().find(|e| e.key == key).unwrap_or_else(|| panic!("no {key:?} in {:?}", elements(doc)))
}

/// The subtype and bytes of a binary element.
fn binary(element: &Element<'_>) -> (u8, Vec<u8>) {
    assert_eq!(element.tag, 0x05, "{:?} is not binary", element.key);
    (element.value[4], element.value[5..].to_vec())
}

#[test]
fn bson_helper_round_trips() {
    let bytes = doc(&[("v", Value::Str("hello"))]);
    // {"v": "hello"} as any BSON library writes it.
    assert_eq!(bytes, b"\x12\x00\x00\x00\x02v\x00\x06\x00\x00\x00hello\x00\x00");
    let nested = doc(&[("a", Value::Doc(bytes.clone())), ("b", Value::Binary(4, &[1; 16]))]);
    let fields = elements(&nested);
    assert_eq!(fields.len(), 2);
    assert_eq!(fields[0].value, &bytes[..]);
    assert_eq!(binary(&fields[1]), (4, vec![1; 16]));
}

// ---------------------------------------------------------------------------------------------------------------
// RAII over the C handles, so that a failed assertion does not leak into the next test.

/// A `mongocrypt_binary_t` viewing a buffer that it keeps alive.
struct Bin {
    raw: *mut mongocrypt_binary_t,
    _data: Vec<u8>,
}

impl Bin {
    fn new(mut data: Vec<u8>) -> Bin {
        // SAFETY: mongocrypt_binary_new_from_data views `data` without copying ("data must outlive the binary
        // object"): the heap buffer does not move with the Vec, and Bin destroys the binary before its `_data` is
        // dropped.
        let raw = unsafe { mongocrypt_binary_new_from_data(data.as_mut_ptr(), data.len() as u32) };
        assert!(!raw.is_null());
        Bin { raw, _data: data }
    }

    /// An empty binary for output parameters.
    fn out() -> Bin {
        // SAFETY: mongocrypt_binary_new has no preconditions ("used for output parameters").
        Bin { raw: unsafe { mongocrypt_binary_new() }, _data: Vec::new() }
    }

    /// A copy of the bytes viewed.
    fn to_vec(&self) -> Vec<u8> {
        // SAFETY: the binary is live and views memory libmongocrypt keeps valid until its ctx is destroyed; it is
        // copied out here.
        unsafe {
            let data = mongocrypt_binary_data(self.raw);
            let len = mongocrypt_binary_len(self.raw) as usize;
            assert!(!data.is_null() && len > 0, "empty output");
            std::slice::from_raw_parts(data, len).to_vec()
        }
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        // SAFETY: created by mongocrypt_binary_new(_from_data) and destroyed once; "This does not free the viewed
        // data".
        unsafe { mongocrypt_binary_destroy(self.raw) }
    }
}

struct Status(*mut mongocrypt_status_t);

impl Status {
    fn new() -> Status {
        // SAFETY: mongocrypt_status_new has no preconditions.
        Status(unsafe { mongocrypt_status_new() })
    }

    fn describe(&self) -> String {
        // SAFETY: the status is live; its message is NUL-terminated and owned by it (or NULL), copied out before it
        // changes.
        unsafe {
            let message = mongocrypt_status_message(self.0, ptr::null_mut());
            let message =
                if message.is_null() { "(no message)".into() } else { CStr::from_ptr(message).to_string_lossy() };
            format!("type {} code {}: {message}", mongocrypt_status_type(self.0), mongocrypt_status_code(self.0))
        }
    }
}

impl Drop for Status {
    fn drop(&mut self) {
        // SAFETY: created by mongocrypt_status_new and destroyed once ("When done, destroy it with
        // mongocrypt_status_destroy").
        unsafe { mongocrypt_status_destroy(self.0) }
    }
}

struct Crypt(*mut mongocrypt_t);

impl Crypt {
    /// A handle configured with `{"local": {"key": Binary(0, 96 zero bytes)}}`, not yet initialised.
    fn with_local_key() -> Crypt {
        // SAFETY: mongocrypt_new has no preconditions.
        let crypt = Crypt(unsafe { mongocrypt_new() });
        assert!(!crypt.0.is_null());
        let key = [0u8; 96];
        let providers = Bin::new(doc(&[("local", Value::Doc(doc(&[("key", Value::Binary(0, &key))])))]));
        // SAFETY: the handle is live and not initialised ("@pre mongocrypt_init has not been called"); the document is
        // copied.
        let ok = unsafe { mongocrypt_setopt_kms_providers(crypt.0, providers.raw) };
        assert!(ok, "mongocrypt_setopt_kms_providers: {}", crypt.status());
        crypt
    }

    fn init(&self) -> Result<(), String> {
        // SAFETY: the handle is live and every test initialises it once.
        if unsafe { mongocrypt_init(self.0) } {
            Ok(())
        } else {
            Err(self.status())
        }
    }

    fn status(&self) -> String {
        let status = Status::new();
        // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop;
        // mongocrypt_status copies the handle's status into ours.
        unsafe { mongocrypt_status(self.0, status.0) };
        status.describe()
    }

    fn ctx(&self) -> Ctx {
        // SAFETY: the handle is live and outlives the ctx (each test declares its ctx after its Crypt, so drops it
        // first).
        let ctx = unsafe { mongocrypt_ctx_new(self.0) };
        assert!(!ctx.is_null(), "mongocrypt_ctx_new: {}", self.status());
        Ctx(ctx)
    }
}

impl Drop for Crypt {
    fn drop(&mut self) {
        // SAFETY: destroyed once, after every ctx made from it (declared after it, dropped before it).
        unsafe { mongocrypt_destroy(self.0) }
    }
}

struct Ctx(*mut mongocrypt_ctx_t);

impl Ctx {
    fn status(&self) -> String {
        let status = Status::new();
        // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop;
        // mongocrypt_ctx_status copies the ctx's status into ours.
        unsafe { mongocrypt_ctx_status(self.0, status.0) };
        status.describe()
    }

    /// Panics with the context's status unless `ok`.
    fn check(&self, ok: bool, what: &str) {
        assert!(ok, "{what}: {}", self.status());
    }

    fn state(&self) -> mongocrypt_ctx_state_t {
        // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop.
        unsafe { mongocrypt_ctx_state(self.0) }
    }

    fn finalize(&self) -> Vec<u8> {
        assert_eq!(self.state(), MONGOCRYPT_CTX_READY, "finalize outside READY: {}", self.status());
        let out = Bin::out();
        // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop, and the ctx
        // is READY (asserted); `out` views memory valid until the ctx is destroyed.
        self.check(unsafe { mongocrypt_ctx_finalize(self.0, out.raw) }, "mongocrypt_ctx_finalize");
        assert_eq!(self.state(), MONGOCRYPT_CTX_DONE);
        out.to_vec()
    }

    /// Answers NEED_MONGO_KEYS with `key_doc` (the key vault holds only it); returns whether it was asked.
    fn feed_key_if_asked(&self, key_doc: &[u8], key_id: &[u8]) -> bool {
        if self.state() != MONGOCRYPT_CTX_NEED_MONGO_KEYS {
            return false;
        }
        let filter = Bin::out();
        // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop, in
        // NEED_MONGO_KEYS (checked); `filter` views memory valid until the ctx is destroyed.
        self.check(unsafe { mongocrypt_ctx_mongo_op(self.0, filter.raw) }, "mongocrypt_ctx_mongo_op");
        let filter = filter.to_vec();
        assert!(
            filter.windows(key_id.len()).any(|w| w == key_id),
            "the key vault filter does not name the key: {filter:?}"
        );
        let reply = Bin::new(key_doc.to_vec());
        // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop; "The viewed
        // data is copied".
        self.check(unsafe { mongocrypt_ctx_mongo_feed(self.0, reply.raw) }, "mongocrypt_ctx_mongo_feed");
        // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop.
        self.check(unsafe { mongocrypt_ctx_mongo_done(self.0) }, "mongocrypt_ctx_mongo_done");
        true
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: created by mongocrypt_ctx_new and destroyed once, before its mongocrypt_t.
        unsafe { mongocrypt_ctx_destroy(self.0) }
    }
}

// ---------------------------------------------------------------------------------------------------------------

/// Whether the bindings declare `name` (i.e. the linked header has it).
fn declares(name: &str) -> bool {
    BINDINGS.lines().any(|l| l.trim_start().starts_with(&format!("pub fn {name}(")))
}

/// Whether the library can encrypt without crypto hooks. `mongocrypt_is_crypto_available` exists from 1.9 on; the
/// build script sets `cfg(mongocrypt_has_is_crypto_available)` when the header declares it and the library exports
/// it. Older releases are taken to have native crypto, as every distribution build of them does; scripts/test.sh
/// checks that from the library's NEEDED entries (libcrypto), and `explicit_encrypt_decrypt_round_trip` then
/// encrypts without crypto hooks, which fails on a library without crypto.
fn native_crypto() -> bool {
    assert_eq!(
        cfg!(mongocrypt_has_is_crypto_available),
        declares("mongocrypt_is_crypto_available"),
        "mongocrypt-sys/build.rs must emit cargo:rustc-cfg=mongocrypt_has_is_crypto_available exactly when the header \
         declares mongocrypt_is_crypto_available"
    );
    #[cfg(mongocrypt_has_is_crypto_available)]
    {
        // SAFETY: mongocrypt_is_crypto_available has no preconditions.
        unsafe { mongocrypt_is_crypto_available() }
    }
    #[cfg(not(mongocrypt_has_is_crypto_available))]
    {
        true
    }
}

#[test]
fn crypto_availability_matches_the_build() {
    let available = native_crypto();
    println!("libmongocrypt {MONGOCRYPT_SYS_VERSION}: native crypto available = {available}");
    if MONGOCRYPT_SYS_VERSION_NUMBER >= 0x0109_0000 {
        assert!(declares("mongocrypt_is_crypto_available"), "1.9 and later declare mongocrypt_is_crypto_available");
    }
    // scripts/test.sh passes what vendor/provision read from the library file itself (mongocrypt_is_crypto_available
    // called through Python's ctypes), an independent reading of the same fact: "native" or "none".
    match std::env::var("MONGOCRYPT_TEST_EXPECT_CRYPTO").as_deref() {
        Ok("native") => assert!(available, "vendor/provision found native crypto in this library"),
        Ok("none") => assert!(!available, "vendor/provision found this library built without native crypto"),
        // "unknown": a library before 1.9, which cannot say; nothing to compare.
        Ok("unknown") | Err(_) => {}
        Ok(other) => panic!("MONGOCRYPT_TEST_EXPECT_CRYPTO={other:?}: expected native, none or unknown"),
    }
}

#[test]
fn init_with_local_key_succeeds() {
    // Needs no crypto: a nocrypto library accepts the configuration and initialises, crypto is needed only once a
    // context encrypts or decrypts.
    let crypt = Crypt::with_local_key();
    crypt.init().expect("mongocrypt_init with a local KMS key");
}

#[test]
fn explicit_encrypt_decrypt_round_trip() {
    if !native_crypto() {
        println!(
            "skipped: libmongocrypt {MONGOCRYPT_SYS_VERSION} was built without native crypto \
             (mongocrypt_is_crypto_available() is false); encrypting needs crypto hooks"
        );
        return;
    }
    let crypt = Crypt::with_local_key();
    crypt.init().expect("mongocrypt_init");

    // 1. A data key encrypted with the local master key.
    let key_doc = {
        let ctx = crypt.ctx();
        let kek = Bin::new(doc(&[("provider", Value::Str("local"))]));
        // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop; the ctx is
        // not initialised yet, and the document is copied.
        ctx.check(unsafe { mongocrypt_ctx_setopt_key_encryption_key(ctx.0, kek.raw) }, "setopt_key_encryption_key");
        // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop; initialised
        // once, after its options.
        ctx.check(unsafe { mongocrypt_ctx_datakey_init(ctx.0) }, "mongocrypt_ctx_datakey_init");
        assert_eq!(ctx.state(), MONGOCRYPT_CTX_READY, "a local data key needs no KMS round trip: {}", ctx.status());
        ctx.finalize()
    };
    let (subtype, key_id) = binary(&field(&key_doc, "_id"));
    assert_eq!((subtype, key_id.len()), (4, 16), "the data key's _id is a UUID");
    let (_, key_material) = binary(&field(&key_doc, "keyMaterial"));
    assert!(!key_material.is_empty());
    let master_key = field(&key_doc, "masterKey");
    assert_eq!(master_key.tag, 0x03);
    assert_eq!(field(master_key.value, "provider").value, b"\x06\x00\x00\x00local\x00");

    let plaintext = doc(&[("v", Value::Str("hello"))]);
    let encrypt = |feed_expected: bool| -> Vec<u8> {
        let ctx = crypt.ctx();
        let id = Bin::new(key_id.clone());
        // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop; the ctx is
        // not initialised yet, and the key id is copied.
        ctx.check(unsafe { mongocrypt_ctx_setopt_key_id(ctx.0, id.raw) }, "mongocrypt_ctx_setopt_key_id");
        let algorithm = c"AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic";
        // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop; a NUL-
        // terminated static string, with -1 for "algorithm must be NULL terminated".
        ctx.check(unsafe { mongocrypt_ctx_setopt_algorithm(ctx.0, algorithm.as_ptr(), -1) }, "setopt_algorithm");
        let msg = Bin::new(plaintext.clone());
        // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop; initialised
        // once, after its options; the document is copied.
        ctx.check(unsafe { mongocrypt_ctx_explicit_encrypt_init(ctx.0, msg.raw) }, "explicit_encrypt_init");
        let fed = ctx.feed_key_if_asked(&key_doc, &key_id);
        if feed_expected {
            assert!(fed, "the first encryption with a new key asks the key vault for it");
        }
        ctx.finalize()
    };

    // 2. Encrypt {"v": "hello"}: the result is {"v": Binary(6, ciphertext)}.
    let encrypted = encrypt(true);
    let v = field(&encrypted, "v");
    let (subtype, ciphertext) = binary(&v);
    assert_eq!(subtype, 6, "an encrypted value is BSON binary subtype 6");
    assert_eq!(elements(&encrypted).len(), 1);
    assert!(!ciphertext.windows(5).any(|w| w == b"hello"), "the plaintext shows through");
    // Blob subtype 1 is deterministic FLE 1, and it names the key.
    assert_eq!(ciphertext[0], 1);
    assert_eq!(&ciphertext[1..17], &key_id[..]);
    // Deterministic: the same value under the same key encrypts the same (the key now comes from the cache).
    assert_eq!(encrypt(false), encrypted);

    // 3. Decrypt it back to exactly {"v": "hello"}.
    let decrypted = {
        let ctx = crypt.ctx();
        let msg = Bin::new(encrypted.clone());
        // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop; initialised
        // once; the document is copied.
        ctx.check(unsafe { mongocrypt_ctx_explicit_decrypt_init(ctx.0, msg.raw) }, "explicit_decrypt_init");
        ctx.feed_key_if_asked(&key_doc, &key_id);
        ctx.finalize()
    };
    assert_eq!(decrypted, plaintext, "decrypt(encrypt({{\"v\": \"hello\"}}))");
}

#[test]
fn explicit_encrypt_with_unknown_key_fails_cleanly() {
    if !native_crypto() {
        println!("skipped: libmongocrypt {MONGOCRYPT_SYS_VERSION} has no native crypto");
        return;
    }
    let crypt = Crypt::with_local_key();
    crypt.init().expect("mongocrypt_init");
    let ctx = crypt.ctx();
    let id = Bin::new(vec![7u8; 16]);
    // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop; the ctx is not
    // initialised yet, and the key id is copied.
    ctx.check(unsafe { mongocrypt_ctx_setopt_key_id(ctx.0, id.raw) }, "mongocrypt_ctx_setopt_key_id");
    let algorithm = c"AEAD_AES_256_CBC_HMAC_SHA_512-Random";
    // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop; a NUL-
    // terminated static string, with -1 for "algorithm must be NULL terminated".
    ctx.check(unsafe { mongocrypt_ctx_setopt_algorithm(ctx.0, algorithm.as_ptr(), -1) }, "setopt_algorithm");
    let msg = Bin::new(doc(&[("v", Value::Str("hello"))]));
    // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop; initialised
    // once, after its options; the document is copied.
    ctx.check(unsafe { mongocrypt_ctx_explicit_encrypt_init(ctx.0, msg.raw) }, "explicit_encrypt_init");
    assert_eq!(ctx.state(), MONGOCRYPT_CTX_NEED_MONGO_KEYS);
    // The key vault has nothing: no feed, just done.
    // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop.
    unsafe { mongocrypt_ctx_mongo_done(ctx.0) };
    assert_eq!(ctx.state(), MONGOCRYPT_CTX_ERROR);
    let status = Status::new();
    // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop;
    // mongocrypt_ctx_status copies the ctx's status into ours.
    unsafe { mongocrypt_ctx_status(ctx.0, status.0) };
    // SAFETY: the status is live.
    assert!(!unsafe { mongocrypt_status_ok(status.0) });
    // SAFETY: the status is live.
    assert_eq!(unsafe { mongocrypt_status_type(status.0) }, MONGOCRYPT_STATUS_ERROR_CLIENT, "{}", status.describe());
    println!("expected error: {}", status.describe());
}

#[test]
fn nocrypto_without_hooks_fails_with_a_status() {
    if native_crypto() {
        println!("skipped: libmongocrypt {MONGOCRYPT_SYS_VERSION} has native crypto");
        return;
    }
    // Without native crypto or hooks, creating a data key (which needs random bytes) is an error status on the
    // context, not a crash.
    let crypt = Crypt::with_local_key();
    crypt.init().expect("mongocrypt_init");
    let ctx = crypt.ctx();
    let kek = Bin::new(doc(&[("provider", Value::Str("local"))]));
    // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop; the ctx is not
    // initialised yet, and the document is copied.
    ctx.check(unsafe { mongocrypt_ctx_setopt_key_encryption_key(ctx.0, kek.raw) }, "setopt_key_encryption_key");
    // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop; initialised
    // once, after its options.
    assert!(!unsafe { mongocrypt_ctx_datakey_init(ctx.0) }, "a nocrypto library created a data key without hooks");
    assert_eq!(ctx.state(), MONGOCRYPT_CTX_ERROR);
    let status = Status::new();
    // SAFETY: the handles are live: owned by the RAII wrappers above and destroyed only in their Drop;
    // mongocrypt_ctx_status copies the ctx's status into ours.
    unsafe { mongocrypt_ctx_status(ctx.0, status.0) };
    // SAFETY: the status is live.
    assert_eq!(unsafe { mongocrypt_status_type(status.0) }, MONGOCRYPT_STATUS_ERROR_CLIENT, "{}", status.describe());
    assert!(status.describe().contains("hook"), "{}", status.describe());
    println!("expected error: {}", status.describe());
}
