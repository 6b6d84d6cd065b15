//! Turns what libmongocrypt-sys found (its `DEP_MONGOCRYPT_*` metadata) into `cfg`s, as openssl's build script does
//! with `DEP_OPENSSL_VERSION_NUMBER`: a method whose C function the linked library lacks compiles to a typed
//! `Error::Unsupported` instead of failing at link time.
use std::env;

fn main() {
    // Every function added after 1.7 gets a known cfg name, whether or not the linked header declares it.
    let optional =
        env::var("DEP_MONGOCRYPT_OPTIONAL_FUNCTIONS").expect("libmongocrypt-sys publishes its optional functions");
    for function in optional.split(',') {
        println!("cargo::rustc-check-cfg=cfg(mongocrypt_has_{})", function.trim_start_matches("mongocrypt_"));
    }
    let declared = env::var("DEP_MONGOCRYPT_FUNCTIONS").expect("libmongocrypt-sys publishes the functions it declares");
    for function in declared.split(',').filter(|f| !f.is_empty()) {
        println!("cargo:rustc-cfg=mongocrypt_has_{}", function.trim_start_matches("mongocrypt_"));
    }
    // rustc-link-arg from libmongocrypt-sys reaches only its own targets: give this crate's tests, examples and
    // benches the run-time path to a libmongocrypt outside the loader's default paths.
    let rpath = env::var_os("DEP_MONGOCRYPT_RPATH").unwrap_or_default();
    for dir in env::split_paths(&rpath).filter(|d| !d.as_os_str().is_empty()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
