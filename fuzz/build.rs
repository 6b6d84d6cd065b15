//! The run-time path to a libmongocrypt outside the loader's default paths (as the main crate's build script does
//! for its tests).
fn main() {
    let rpath = std::env::var_os("DEP_MONGOCRYPT_RPATH").unwrap_or_default();
    for dir in std::env::split_paths(&rpath).filter(|d| !d.as_os_str().is_empty()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
