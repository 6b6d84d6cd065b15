//! Raw FFI bindings to [libmongocrypt](https://github.com/mongodb/libmongocrypt).
//!
//! The bindings ship pre-generated (by bindgen, from the 1.21.1 `mongocrypt.h`), so building needs no libclang;
//! feature `bindgen` generates them at build time from the `mongocrypt.h` that the build script found instead. Either
//! way the build script keeps only the functions that the found header declares and the found library exports (read
//! from its symbol table with the `object` crate; a header newer than its library is reported in a build warning and
//! in [`MONGOCRYPT_SYS_MISSING_FUNCTIONS`]), so they declare exactly the functions of the library being linked: 69 on
//! libmongocrypt 1.7, 80 on 1.21. Discovery order: `MONGOCRYPT_LIB_DIR` (+ `MONGOCRYPT_INCLUDE_DIR`), then
//! pkg-config (`libmongocrypt`, or `libmongocrypt-static` with `MONGOCRYPT_STATIC=1` or the `static` feature), then
//! a build provisioned by `vendor/provision` in a checkout of the repository. A cross build whose linker finds the
//! library itself sets `MONGOCRYPT_FUNCTIONS` (`all`, or the functions the library exports, comma-separated); a
//! docs.rs build (`DOCS_RS`) links nothing and declares every function.
//!
//! The constants from `mongocrypt-config.h` (`MONGOCRYPT_VERSION`, `MONGOCRYPT_ENABLE_*`) are those of the header
//! the bindings were generated from: the 1.21.1 one unless feature `bindgen` is on. The release that was found is
//! [`MONGOCRYPT_SYS_VERSION`].
//!
//! C enums are integer type aliases with constants (`mongocrypt_ctx_state_t` and `MONGOCRYPT_CTX_READY`, ...), so
//! a value that a newer library returns and this header did not know is still a valid integer.
//!
//! # Metadata for dependent build scripts
//! The crate sets `links = "mongocrypt"`, so a crate that depends on it directly reads, in its build script:
//!
//! | variable | value |
//! |---|---|
//! | `DEP_MONGOCRYPT_INCLUDE` | the directory holding `mongocrypt.h`, for C code compiled against the same header |
//! | `DEP_MONGOCRYPT_VERSION` | the library release, e.g. `1.7.2` |
//! | `DEP_MONGOCRYPT_VERSION_NUMBER` | the same as hex `MAJOR << 24 \| MINOR << 16 \| PATCH << 8` |
//! | `DEP_MONGOCRYPT_LINKAGE` | `dynamic` or `static` |
//! | `DEP_MONGOCRYPT_LIB_DIRS` | the library directories, joined like `PATH` |
//! | `DEP_MONGOCRYPT_RPATH` | the directories a dependent should add as `-Wl,-rpath` (a dynamic library outside the loader's default paths), joined like `PATH`; empty otherwise |
//! | `DEP_MONGOCRYPT_FUNCTIONS` | the functions added after 1.7 that are available (the header declares them and the library exports them), comma-separated |
//! | `DEP_MONGOCRYPT_OPTIONAL_FUNCTIONS` | every function added after 1.7, available or not, comma-separated |
//! | `DEP_MONGOCRYPT_MISSING_FUNCTIONS` | the functions the header declares that the library does not export, comma-separated; empty when header and library match |
//! | `DEP_MONGOCRYPT_LIBRARY` | the library file whose symbols were read; empty when it could not be located or read (the header alone then decides) |
//! | `DEP_MONGOCRYPT_HEADER_VERSION` | the header's own `MONGOCRYPT_VERSION` |
//!
//! Everything here is `unsafe` and follows the rules written in `mongocrypt.h`; the `libmongocrypt` crate is the
//! safe interface.
#![no_std]
// docs.rs (`--cfg docsrs`, nightly): feature badges, derived from `#[cfg]`s.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals)]
// The comments are mongocrypt.h's Doxygen text: `[in]`, `@ref` and bare URLs are not rustdoc syntax.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::bare_urls, rustdoc::invalid_html_tags)]
#![allow(rustdoc::invalid_rust_codeblocks)]
// Generated: bindgen carries mongocrypt.h's comments over, and the header leaves its enum constants and opaque
// structs undocumented; the header is the documentation.
#![allow(missing_docs, reason = "bindgen output of an undocumented part of mongocrypt.h")]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
