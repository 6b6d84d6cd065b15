//! The run-time path to the linked libmongocrypt for this crate's tests, from libmongocrypt-sys's
//! `DEP_MONGOCRYPT_RPATH` (which only its direct dependents see): its own `rustc-link-arg` reaches only its own
//! targets. Which C functions the library has is the `libmongocrypt` crate's to say
//! ([`libmongocrypt::KMS_RETRIES_SUPPORTED`]).
use std::env;

fn main() {
    let rpath = env::var_os("DEP_MONGOCRYPT_RPATH").unwrap_or_default();
    for dir in env::split_paths(&rpath).filter(|d| !d.as_os_str().is_empty()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
