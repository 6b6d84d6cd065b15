//! Raw FFI checks that hold on every libmongocrypt the build script can find: the version it reports, the
//! functions the generated bindings declare, and the status and binary helpers.

use std::ffi::{CStr, CString};
use std::ptr;

use libmongocrypt_sys::*;

/// The bindings this crate was compiled with. Integration tests of a package with a build script see its `OUT_DIR`.
const BINDINGS: &str = include_str!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// Functions that libmongocrypt added after 1.7, with the first release that exports each (read from the
/// libraries' dynamic symbol tables: 1.10.0 has use_range_v2, mongo_db and collinfo_with_db_state, 1.11.0 nothing
/// more, 1.13.1 the retry functions but feed_with_retry, key_expiration and multiple_collinfo, 1.15.0
/// algorithm_text, 1.15.1 not feed_with_retry, 1.17.0 all). A 1.21 header declares all of them, a 1.7 header none.
const ADDED_AFTER_1_7: &[(&str, &str)] = &[
    ("mongocrypt_is_crypto_available", "1.9.0"),
    ("mongocrypt_setopt_use_range_v2", "1.10.0"),
    ("mongocrypt_setopt_retry_kms", "1.12.0"),
    ("mongocrypt_kms_ctx_usleep", "1.12.0"),
    ("mongocrypt_kms_ctx_fail", "1.12.0"),
    ("mongocrypt_kms_ctx_feed_with_retry", "1.17.0"),
    ("mongocrypt_setopt_key_expiration", "1.13.0"),
    ("mongocrypt_setopt_enable_multiple_collinfo", "1.13.0"),
    ("mongocrypt_setopt_use_need_mongo_collinfo_with_db_state", "1.10.0"),
    ("mongocrypt_ctx_mongo_db", "1.10.0"),
    ("mongocrypt_ctx_setopt_algorithm_text", "1.15.0"),
];

/// Every `mongocrypt_*` function bindgen declared, read from the generated code itself, sorted.
fn functions_in_bindings() -> Vec<&'static str> {
    let mut names: Vec<&str> = BINDINGS
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("pub fn "))
        .filter_map(|rest| rest.split('(').next())
        .filter(|name| name.starts_with("mongocrypt_"))
        .collect();
    let before = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), before, "a function is declared twice in the bindings");
    names
}

/// `MAJOR.MINOR.PATCH[-suffix]` as `MAJOR << 24 | MINOR << 16 | PATCH << 8`, the encoding of
/// `MONGOCRYPT_SYS_VERSION_NUMBER`.
fn version_number(version: &str) -> u32 {
    let core = version.split(['-', '+']).next().unwrap();
    let parts: Vec<u32> =
        core.split('.').map(|p| p.parse().unwrap_or_else(|_| panic!("bad version {version:?}"))).collect();
    assert!((2..=3).contains(&parts.len()), "bad version {version:?}");
    (parts[0] << 24) | (parts[1] << 16) | (parts.get(2).copied().unwrap_or(0) << 8)
}

#[test]
fn runtime_version_is_the_discovered_version() {
    let mut len = 0u32;
    // SAFETY: mongocrypt_version takes an optional `len` out-parameter and returns a static string.
    let version = unsafe { mongocrypt_version(&mut len) };
    assert!(!version.is_null());
    // SAFETY: "A NULL terminated string" (checked non-NULL above), static.
    let version = unsafe { CStr::from_ptr(version) }.to_str().expect("the version is UTF-8");
    assert_eq!(len as usize, version.len(), "mongocrypt_version's len excludes the NUL");
    // A NULL len is allowed.
    // SAFETY: `len` is optional ("An optional length of the returned string. May be NULL").
    let again = unsafe { CStr::from_ptr(mongocrypt_version(ptr::null_mut())) };
    assert_eq!(again.to_str().unwrap(), version);

    println!("linked libmongocrypt {version} ({})", if MONGOCRYPT_SYS_STATIC { "static" } else { "dynamic" });
    assert_eq!(version, MONGOCRYPT_SYS_VERSION, "the library that runs is not the one the build script found");
    assert_eq!(
        MONGOCRYPT_SYS_VERSION_NUMBER,
        version_number(MONGOCRYPT_SYS_VERSION),
        "MONGOCRYPT_SYS_VERSION_NUMBER {MONGOCRYPT_SYS_VERSION_NUMBER:#x} does not encode {MONGOCRYPT_SYS_VERSION}"
    );
}

#[test]
fn version_number_encoding() {
    assert_eq!(version_number("1.7.2"), 0x0107_0200);
    assert_eq!(version_number("1.21.0"), 0x0115_0000);
    assert_eq!(version_number("1.21.0-pre1"), 0x0115_0000);
}

#[test]
fn declared_functions_match_the_version() {
    let functions = MONGOCRYPT_SYS_FUNCTIONS;
    let count = functions.len();
    // The exported list is the generated code's.
    let mut sorted = functions.to_vec();
    sorted.sort_unstable();
    assert_eq!(sorted, functions_in_bindings(), "MONGOCRYPT_SYS_FUNCTIONS disagrees with the generated declarations");
    println!("libmongocrypt {MONGOCRYPT_SYS_VERSION}: the bindings declare {count} functions");
    let added: Vec<&str> = ADDED_AFTER_1_7.iter().map(|(f, _)| *f).filter(|f| functions.contains(f)).collect();
    let v = MONGOCRYPT_SYS_VERSION_NUMBER;
    if v >> 16 == 0x0107 {
        assert_eq!(count, 69, "a 1.7 library has 69 functions: {functions:?}");
        assert!(added.is_empty(), "1.7 does not have {added:?}");
    } else if v >= 0x0115_0000 {
        assert_eq!(count, 80, "a 1.21 library has 80 functions: {functions:?}");
        let all: Vec<&str> = ADDED_AFTER_1_7.iter().map(|(f, _)| *f).collect();
        assert_eq!(added, all, "1.21 has every function added after 1.7");
    } else {
        // 1.8 to 1.20: the 69 of 1.7 plus those added since (counted by the next test).
        assert_eq!(count, 69 + added.len(), "{count} functions: {functions:?}");
    }
    // The handful every version has, as Rust items (this fails to compile, not at run time, if one is missing).
    let _: [*const (); 6] = [
        mongocrypt_version as *const (),
        mongocrypt_new as *const (),
        mongocrypt_init as *const (),
        mongocrypt_ctx_new as *const (),
        mongocrypt_ctx_finalize as *const (),
        mongocrypt_setopt_crypto_hooks as *const (),
    ];
    for name in ["mongocrypt_version", "mongocrypt_ctx_finalize", "mongocrypt_setopt_crypto_hooks"] {
        assert!(functions.contains(&name), "{name} is missing from the parsed list");
    }
}

#[test]
fn status_round_trip() {
    // SAFETY: a status from mongocrypt_status_new, read while live and destroyed once ("When done, destroy it with
    // mongocrypt_status_destroy").
    unsafe {
        let status = mongocrypt_status_new();
        assert!(!status.is_null());
        // A new status is OK, code 0.
        assert!(mongocrypt_status_ok(status));
        assert_eq!(mongocrypt_status_type(status), MONGOCRYPT_STATUS_OK);
        assert_eq!(mongocrypt_status_code(status), 0);

        // message_len is 1 + strlen(message), for historical reasons.
        let message = CString::new("the KMS said no").unwrap();
        let message_len = i32::try_from(message.as_bytes().len() + 1).unwrap();
        mongocrypt_status_set(status, MONGOCRYPT_STATUS_ERROR_KMS, 42, message.as_ptr(), message_len);
        assert!(!mongocrypt_status_ok(status));
        assert_eq!(mongocrypt_status_type(status), MONGOCRYPT_STATUS_ERROR_KMS);
        assert_eq!(mongocrypt_status_code(status), 42);
        let mut len = 0u32;
        let read = mongocrypt_status_message(status, &mut len);
        assert!(!read.is_null());
        assert_eq!(CStr::from_ptr(read).to_str().unwrap(), "the KMS said no");
        assert_eq!(len as usize, "the KMS said no".len(), "the length read back excludes the NUL");
        // The status holds its own copy.
        drop(message);
        assert_eq!(
            CStr::from_ptr(mongocrypt_status_message(status, ptr::null_mut())).to_str().unwrap(),
            "the KMS said no"
        );

        // -1: the message is NUL-terminated and its length is found with strlen.
        let other = CString::new("client error").unwrap();
        mongocrypt_status_set(status, MONGOCRYPT_STATUS_ERROR_CLIENT, 7, other.as_ptr(), -1);
        assert_eq!(mongocrypt_status_type(status), MONGOCRYPT_STATUS_ERROR_CLIENT);
        assert_eq!(mongocrypt_status_code(status), 7);
        let read = mongocrypt_status_message(status, &mut len);
        assert_eq!(CStr::from_ptr(read).to_str().unwrap(), "client error");
        assert_eq!(len, 12);

        mongocrypt_status_destroy(status);
    }
}

#[test]
fn binary_views_the_caller_buffer() {
    // SAFETY: mongocrypt_binary_new_from_data views `buffer` without copying ("data must outlive the binary
    // object"): the binary is destroyed before `buffer`, and the slice is read while both live.
    unsafe {
        let mut buffer: Vec<u8> = (0u8..=200).collect();
        let binary = mongocrypt_binary_new_from_data(buffer.as_mut_ptr(), buffer.len() as u32);
        assert!(!binary.is_null());
        // Not a copy: the same pointer and length.
        assert_eq!(mongocrypt_binary_data(binary), buffer.as_mut_ptr());
        assert_eq!(mongocrypt_binary_len(binary) as usize, buffer.len());
        let viewed = std::slice::from_raw_parts(mongocrypt_binary_data(binary), mongocrypt_binary_len(binary) as usize);
        assert_eq!(viewed, &buffer[..]);
        // Destroying the view leaves the data alone.
        mongocrypt_binary_destroy(binary);
        assert_eq!(buffer[200], 200);
    }
}

#[test]
fn new_binary_is_empty() {
    // SAFETY: a binary from mongocrypt_binary_new, read while live and destroyed once.
    unsafe {
        let binary = mongocrypt_binary_new();
        assert!(!binary.is_null());
        assert!(mongocrypt_binary_data(binary).is_null());
        assert_eq!(mongocrypt_binary_len(binary), 0);
        mongocrypt_binary_destroy(binary);
    }
}

#[test]
fn static_constant_matches_the_build() {
    // The build script links statically exactly when asked to by MONGOCRYPT_STATIC (or the `static` feature); the
    // variable is read at compile time of this test as well, so the two agree unless the feature was used.
    let asked = option_env!("MONGOCRYPT_STATIC").is_some_and(|v| v != "0");
    let linked_static = MONGOCRYPT_SYS_STATIC;
    assert!(!asked || linked_static, "MONGOCRYPT_STATIC was set, but the bindings say the library is dynamic");
    // Stated either way, for the log.
    println!("MONGOCRYPT_SYS_STATIC = {MONGOCRYPT_SYS_STATIC}");
}

/// `scripts/test.sh` says which build each run must have found (`MONGOCRYPT_TEST_EXPECT_VERSION`,
/// `MONGOCRYPT_TEST_EXPECT_LINKAGE`), so that a discovery that silently picked another library fails the run.
#[test]
fn found_the_build_the_test_script_expects() {
    if let Ok(version) = std::env::var("MONGOCRYPT_TEST_EXPECT_VERSION") {
        assert_eq!(MONGOCRYPT_SYS_VERSION, version, "the build script found another libmongocrypt than expected");
    }
    if let Ok(linkage) = std::env::var("MONGOCRYPT_TEST_EXPECT_LINKAGE") {
        let found = if MONGOCRYPT_SYS_STATIC { "static" } else { "dynamic" };
        assert_eq!(found, linkage, "the build script linked libmongocrypt {found}, expected {linkage}");
    }
}

/// The bindings declare an optional function exactly when the header declares it and the library has it: on the
/// pinned builds, whose headers (1.7.2, 1.21.1) are never older than their libraries, that is exactly when the linked
/// release is at least the one that added it. The functions the header declares but the library lacks (a 1.21.1
/// header with a 1.10.1, 1.13.1 or 1.17.0 library) are listed in MONGOCRYPT_SYS_MISSING_FUNCTIONS and nowhere in
/// the bindings, so nothing can reference a symbol the library lacks.
#[test]
fn optional_functions_follow_the_library() {
    let v = MONGOCRYPT_SYS_VERSION_NUMBER;
    let header_is_1_21 = MONGOCRYPT_SYS_FUNCTIONS.len() + MONGOCRYPT_SYS_MISSING_FUNCTIONS.len() == 80;
    let mut expected_missing = Vec::new();
    for (function, since) in ADDED_AFTER_1_7 {
        let declared = MONGOCRYPT_SYS_FUNCTIONS.contains(function);
        let missing = MONGOCRYPT_SYS_MISSING_FUNCTIONS.contains(function);
        assert!(!(declared && missing), "{function} is both declared and missing");
        let in_library = v >= version_number(since);
        if header_is_1_21 {
            assert_eq!(
                declared, in_library,
                "{function} (added in {since}) with libmongocrypt {MONGOCRYPT_SYS_VERSION}: declared = {declared}"
            );
            if !in_library {
                expected_missing.push(*function);
            }
        } else {
            assert!(!declared && !missing, "a 1.7 header does not declare {function}");
        }
        let cfg = match *function {
            "mongocrypt_is_crypto_available" => cfg!(mongocrypt_has_is_crypto_available),
            "mongocrypt_setopt_use_range_v2" => cfg!(mongocrypt_has_setopt_use_range_v2),
            "mongocrypt_setopt_retry_kms" => cfg!(mongocrypt_has_setopt_retry_kms),
            "mongocrypt_kms_ctx_usleep" => cfg!(mongocrypt_has_kms_ctx_usleep),
            "mongocrypt_kms_ctx_fail" => cfg!(mongocrypt_has_kms_ctx_fail),
            "mongocrypt_kms_ctx_feed_with_retry" => cfg!(mongocrypt_has_kms_ctx_feed_with_retry),
            "mongocrypt_setopt_key_expiration" => cfg!(mongocrypt_has_setopt_key_expiration),
            "mongocrypt_setopt_enable_multiple_collinfo" => cfg!(mongocrypt_has_setopt_enable_multiple_collinfo),
            "mongocrypt_setopt_use_need_mongo_collinfo_with_db_state" => {
                cfg!(mongocrypt_has_setopt_use_need_mongo_collinfo_with_db_state)
            }
            "mongocrypt_ctx_mongo_db" => cfg!(mongocrypt_has_ctx_mongo_db),
            "mongocrypt_ctx_setopt_algorithm_text" => cfg!(mongocrypt_has_ctx_setopt_algorithm_text),
            other => panic!("no cfg for {other}"),
        };
        assert_eq!(cfg, declared, "cfg(mongocrypt_has_...) for {function} disagrees with the bindings");
    }
    let mut missing = MONGOCRYPT_SYS_MISSING_FUNCTIONS.to_vec();
    missing.sort_unstable();
    expected_missing.sort_unstable();
    assert_eq!(missing, expected_missing, "libmongocrypt {MONGOCRYPT_SYS_VERSION}: functions left out");
    println!("libmongocrypt {MONGOCRYPT_SYS_VERSION}: header functions the library lacks: {MONGOCRYPT_SYS_MISSING_FUNCTIONS:?}");
}
