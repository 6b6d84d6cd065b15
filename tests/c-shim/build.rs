//! Compiles shim.c against the header libmongocrypt-sys found, as a C or Python/Node extension layer would.
fn main() {
    let include = std::env::var("DEP_MONGOCRYPT_INCLUDE").expect("libmongocrypt-sys publishes DEP_MONGOCRYPT_INCLUDE");
    let mut build = cc::Build::new();
    build.file("shim.c").include(&include).warnings_into_errors(true);
    if std::env::var("DEP_MONGOCRYPT_LINKAGE").as_deref() == Ok("static") {
        build.define("MONGOCRYPT_STATIC_DEFINE", None);
    }
    build.compile("mongocrypt_c_shim");
    // The release of the header the C code is compiled against, for the test that compares it with shim.c's view.
    let header = std::env::var("DEP_MONGOCRYPT_HEADER_VERSION").unwrap_or_default();
    println!("cargo:rustc-env=MONGOCRYPT_C_SHIM_HEADER_VERSION={header}");
    println!("cargo:rerun-if-changed=shim.c");
    // Like any crate linking a libmongocrypt outside the loader's paths, record where it is for this crate's tests.
    let rpath = std::env::var_os("DEP_MONGOCRYPT_RPATH").unwrap_or_default();
    for dir in std::env::split_paths(&rpath).filter(|d| !d.as_os_str().is_empty()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
