//! A C file compiled with `cc` against `DEP_MONGOCRYPT_INCLUDE` receives a `mongocrypt_t*` created in Rust and
//! drives a ctx on it; Rust then uses the data key C made.
use std::ffi::{CStr, CString};

use bson::{rawdoc, RawDocumentBuf};
use libmongocrypt::{Algorithm, Crypt, KmsProviders, State};
use libmongocrypt_c_shim_test::{shim_create_local_datakey, shim_header_version};

#[test]
fn c_code_drives_a_ctx_on_a_crypt_made_in_rust() {
    let crypt =
        Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[7u8; 96])).unwrap().build().unwrap();

    let mut out = vec![0u8; 4096];
    let name = CString::new("made-in-c").unwrap();
    // SAFETY: `crypt.as_raw()` is an initialised handle that outlives the call; shim.c writes at most `out.len()`
    // bytes into `out`.
    let len = unsafe { shim_create_local_datakey(crypt.as_raw(), name.as_ptr(), out.as_mut_ptr(), out.len() as u32) };
    assert!(len > 0, "shim failed: {}", CStr::from_bytes_until_nul(&out).unwrap().to_string_lossy());
    let key_doc = RawDocumentBuf::from_bytes(out[..len as usize].to_vec()).unwrap();
    assert_eq!(key_doc.get_document("masterKey").unwrap().get_str("provider").unwrap(), "local");
    let alt_names: Vec<_> = key_doc
        .get_array("keyAltNames")
        .unwrap()
        .into_iter()
        .map(|v| v.unwrap().as_str().unwrap().to_owned())
        .collect();
    assert_eq!(alt_names, ["made-in-c"]);

    // The key C created is usable from Rust on the same handle: encrypt by alt name, decrypt back.
    let mut ctx = crypt
        .ctx()
        .key_alt_name("made-in-c")
        .unwrap()
        .algorithm(&Algorithm::Deterministic)
        .unwrap()
        .explicit_encrypt(&rawdoc! { "v": "across the boundary" })
        .unwrap();
    assert_eq!(ctx.state(), State::NeedMongoKeys);
    ctx.mongo_feed(&key_doc).unwrap();
    ctx.mongo_done().unwrap();
    let ciphertext = ctx.finalize_owned().unwrap();
    let mut ctx = crypt.ctx().explicit_decrypt(&ciphertext).unwrap();
    assert_eq!(ctx.finalize().unwrap().get_str("v").unwrap(), "across the boundary");
}

#[test]
fn c_header_is_the_one_rust_was_bound_to() {
    // SAFETY: returns a string literal from the header.
    let header = unsafe { CStr::from_ptr(shim_header_version()) }.to_str().unwrap();
    // The header's own release, as libmongocrypt-sys read it (DEP_MONGOCRYPT_HEADER_VERSION): the same file.
    assert_eq!(header, env!("MONGOCRYPT_C_SHIM_HEADER_VERSION"));
    // The pinned wheel builds pair the 1.21.1 headers with older libraries (1.10.1 to 1.21.0); a header is never
    // older than its library here.
    let number = |v: &str| -> Vec<u32> { v.split(['.', '-']).take(3).map(|p| p.parse().unwrap()).collect() };
    assert!(
        number(header) >= number(libmongocrypt_sys::MONGOCRYPT_SYS_VERSION),
        "header {header} is older than the library {}",
        libmongocrypt_sys::MONGOCRYPT_SYS_VERSION
    );
}

#[test]
fn c_errors_come_back_as_messages() {
    // A crypt without a local provider: C gets libmongocrypt's error through mongocrypt_ctx_status.
    let crypt = Crypt::builder()
        .kms_providers(&KmsProviders::new().aws("aws", "example", "example", None))
        .unwrap()
        .build()
        .unwrap();
    let mut out = vec![0u8; 512];
    let name = CString::new("x").unwrap();
    // SAFETY: as above.
    let len = unsafe { shim_create_local_datakey(crypt.as_raw(), name.as_ptr(), out.as_mut_ptr(), out.len() as u32) };
    assert_eq!(len, -1);
    let message = CStr::from_bytes_until_nul(&out).unwrap().to_string_lossy().into_owned();
    assert!(message.contains("kms provider not configured"), "{message}");
}

#[test]
fn a_ctx_made_in_c_can_be_adopted_by_rust() {
    let crypt =
        Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[7u8; 96])).unwrap().build().unwrap();
    // SAFETY: mongocrypt_ctx_new on an initialised handle; ownership passes to the Ctx, which borrows `crypt`.
    let mut ctx = unsafe {
        let raw = libmongocrypt_sys::mongocrypt_ctx_new(crypt.as_raw());
        libmongocrypt::Ctx::from_raw(&crypt, raw)
    };
    ctx.status().unwrap();
    assert!(ctx.finalize().is_err(), "an uninitialised ctx cannot be finalized");
}
