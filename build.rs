//! Turns what mongocrypt-sys found (its `DEP_MONGOCRYPT_*` metadata) into `cfg`s, as openssl's build script does
//! with `DEP_OPENSSL_VERSION_NUMBER`: a method whose C function the linked library lacks compiles to a typed
//! `Error::Unsupported` instead of failing at link time.
use std::env;

/// The functions added after libmongocrypt 1.7; `cfg(mongocrypt_has_<name without mongocrypt_>)` is set for those
/// the linked header declares.
const OPTIONAL_FUNCTIONS: &[&str] = &[
    "is_crypto_available",
    "setopt_use_range_v2",
    "setopt_retry_kms",
    "kms_ctx_usleep",
    "kms_ctx_fail",
    "kms_ctx_feed_with_retry",
    "setopt_key_expiration",
    "setopt_enable_multiple_collinfo",
    "setopt_use_need_mongo_collinfo_with_db_state",
    "ctx_mongo_db",
    "ctx_setopt_algorithm_text",
];

fn main() {
    for name in OPTIONAL_FUNCTIONS {
        println!("cargo::rustc-check-cfg=cfg(mongocrypt_has_{name})");
    }
    let declared = env::var("DEP_MONGOCRYPT_FUNCTIONS").expect("mongocrypt-sys publishes DEP_MONGOCRYPT_FUNCTIONS");
    for function in declared.split(',').filter(|f| !f.is_empty()) {
        let name = function.strip_prefix("mongocrypt_").unwrap_or(function);
        println!("cargo:rustc-cfg=mongocrypt_has_{name}");
    }
    // rustc-link-arg from mongocrypt-sys reaches only its own targets: give this crate's tests, examples and
    // benches the run-time path to a libmongocrypt outside the loader's default paths.
    let rpath = env::var_os("DEP_MONGOCRYPT_RPATH").unwrap_or_default();
    for dir in env::split_paths(&rpath).filter(|d| !d.as_os_str().is_empty()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
