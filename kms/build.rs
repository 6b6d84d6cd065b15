//! The `mongocrypt_has_*` cfgs of the functions the linked libmongocrypt has, as the `libmongocrypt` crate's build
//! script makes them (KMS retries need functions added after 1.7), and the run-time path to that library for this
//! crate's tests. Both come from libmongocrypt-sys's `DEP_MONGOCRYPT_*` metadata, which only its direct dependents
//! see.
use std::env;

fn main() {
    let optional =
        env::var("DEP_MONGOCRYPT_OPTIONAL_FUNCTIONS").expect("libmongocrypt-sys publishes its optional functions");
    for function in optional.split(',') {
        println!("cargo::rustc-check-cfg=cfg(mongocrypt_has_{})", function.trim_start_matches("mongocrypt_"));
    }
    let declared = env::var("DEP_MONGOCRYPT_FUNCTIONS").expect("libmongocrypt-sys publishes the functions it declares");
    for function in declared.split(',').filter(|f| !f.is_empty()) {
        println!("cargo:rustc-cfg=mongocrypt_has_{}", function.trim_start_matches("mongocrypt_"));
    }
    // rustc-link-arg from libmongocrypt-sys reaches only its own targets: give this crate's tests the run-time path
    // to a libmongocrypt outside the loader's default paths.
    let rpath = env::var_os("DEP_MONGOCRYPT_RPATH").unwrap_or_default();
    for dir in env::split_paths(&rpath).filter(|d| !d.as_os_str().is_empty()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
