//! Compiles overhead.c, the plain-C side of the overhead bench, against the `mongocrypt.h` that libmongocrypt-sys
//! found (`DEP_MONGOCRYPT_INCLUDE`), so that C and the binding run on the very same libmongocrypt.
fn main() {
    let include = std::env::var("DEP_MONGOCRYPT_INCLUDE").expect("libmongocrypt-sys publishes DEP_MONGOCRYPT_INCLUDE");
    let mut build = cc::Build::new();
    // Optimised like the Rust side of `cargo bench` (the C compiler's -O2 also in debug builds: C is the baseline).
    build.file("overhead.c").include(&include).opt_level(2).warnings_into_errors(true);
    if std::env::var("DEP_MONGOCRYPT_LINKAGE").as_deref() == Ok("static") {
        build.define("MONGOCRYPT_STATIC_DEFINE", None);
    }
    build.compile("mongocrypt_bench_c");
    println!("cargo:rerun-if-changed=overhead.c");
    // A libmongocrypt outside the loader's paths (vendor/provision builds) must be found when the bench runs.
    let rpath = std::env::var_os("DEP_MONGOCRYPT_RPATH").unwrap_or_default();
    for dir in std::env::split_paths(&rpath).filter(|d| !d.as_os_str().is_empty()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
