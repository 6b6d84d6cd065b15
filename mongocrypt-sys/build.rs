//! Finds libmongocrypt, generates bindings from the `mongocrypt.h` it found, and publishes what it found to
//! dependents through `links = "mongocrypt"` metadata (`DEP_MONGOCRYPT_*`).
//!
//! Discovery order, first match wins (the same shape as libsqlite3-sys):
//! 1. `MONGOCRYPT_LIB_DIR` (+ optional `MONGOCRYPT_INCLUDE_DIR`), the variable the official crate reads;
//! 2. pkg-config `libmongocrypt`, or `libmongocrypt-static` when linking statically;
//! 3. a build that `vendor/provision` left in this checkout.

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// Functions that libmongocrypt added after 1.7. Everything else in the 1.21 header is present in every library
/// from 1.7 on. Each is available when the header declares it *and* the library exports it; the safe crate turns
/// the available ones into `cfg`s, so that a call the linked library lacks becomes a typed error rather than a link
/// failure.
const FUNCTIONS_ADDED_AFTER_1_7: &[&str] = &[
    "mongocrypt_is_crypto_available",
    "mongocrypt_setopt_use_range_v2",
    "mongocrypt_setopt_retry_kms",
    "mongocrypt_kms_ctx_usleep",
    "mongocrypt_kms_ctx_fail",
    "mongocrypt_kms_ctx_feed_with_retry",
    "mongocrypt_setopt_key_expiration",
    "mongocrypt_setopt_enable_multiple_collinfo",
    "mongocrypt_setopt_use_need_mongo_collinfo_with_db_state",
    "mongocrypt_ctx_mongo_db",
    "mongocrypt_ctx_setopt_algorithm_text",
];

/// Every environment variable this script reads. pkg-config's own (`PKG_CONFIG_PATH`, ...) are declared by the
/// pkg-config crate.
const ENV_VARS: &[&str] = &[
    "MONGOCRYPT_LIB_DIR",
    "MONGOCRYPT_INCLUDE_DIR",
    "MONGOCRYPT_STATIC",
    "MONGOCRYPT_NO_PKG_CONFIG",
    "MONGOCRYPT_NO_VENDOR",
];

#[derive(Clone, Copy, PartialEq)]
enum Linkage {
    Dynamic,
    Static,
}

impl Linkage {
    fn name(self) -> &'static str {
        match self {
            Linkage::Dynamic => "dynamic",
            Linkage::Static => "static",
        }
    }
}

/// What discovery found: where the header is, how to link, and which release it is.
struct Found {
    /// How it was found, for the metadata and for error messages.
    source: String,
    /// The directory that holds `mongocrypt.h`.
    include_dir: PathBuf,
    /// Directories the library lives in; also used as the run-time search path for dynamic builds.
    lib_dirs: Vec<PathBuf>,
    /// `rustc-link-lib` values, in link order (`static=...` or `dylib=...`).
    link_libs: Vec<String>,
    /// Release of the library, when the source says it (pkg-config's `Version:`); else the header's.
    version: Option<String>,
    linkage: Linkage,
    /// The library file that is linked (`libmongocrypt.so`, `libmongocrypt-static.a`, ...), whose symbols say which
    /// functions it really has; `None` when it could not be located.
    library: Option<PathBuf>,
}

fn main() {
    for var in ENV_VARS {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let linkage =
        if env::var("MONGOCRYPT_STATIC").is_ok_and(|v| v != "0") || env::var_os("CARGO_FEATURE_STATIC").is_some() {
            Linkage::Static
        } else {
            Linkage::Dynamic
        };

    let mut tried = Vec::new();
    let found = from_env(linkage, &mut tried)
        .or_else(|| from_pkg_config(linkage, &mut tried))
        .or_else(|| from_vendor(linkage, &mut tried))
        .unwrap_or_else(|| not_found(linkage, &tried));

    let header = found.include_dir.join("mongocrypt.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let header_version = header_version(&found.include_dir);
    let version = found.version.clone().or(header_version.clone()).unwrap_or_else(|| {
        fail(&format!(
            "found {} but could not read its version (no pkg-config Version and no MONGOCRYPT_VERSION in {})",
            found.source,
            found.include_dir.join("mongocrypt-config.h").display()
        ))
    });
    let version_number = version_number(&version).unwrap_or_else(|| {
        fail(&format!("libmongocrypt version {version:?} from {} is not MAJOR.MINOR.PATCH", found.source))
    });

    for dir in &found.lib_dirs {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    for lib in &found.link_libs {
        println!("cargo:rustc-link-lib={lib}");
    }
    // A shared library outside the loader's default paths must still be found at run time. rustc-link-arg reaches
    // only this package's own tests, so dependents get the directories as DEP_MONGOCRYPT_RPATH to do the same.
    let rpath: Vec<&PathBuf> = match found.linkage {
        Linkage::Dynamic => found.lib_dirs.iter().filter(|d| !is_system_dir(d)).collect(),
        Linkage::Static => Vec::new(),
    };
    for dir in &rpath {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }

    // What the library really exports. A header newer than its library (headers from one package, the library
    // from another) declares functions the library lacks: they are left out of the bindings, so nothing can
    // reference them and the link succeeds, and the safe crate reports them as Error::Unsupported.
    let exported = match &found.library {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", path.display());
            match exported_functions(path) {
                Ok(names) => Some(names),
                Err(why) => {
                    println!(
                        "cargo:warning=libmongocrypt-sys: cannot read the symbols of {} ({why}); the functions available \
                         are taken from the header alone",
                        path.display()
                    );
                    None
                }
            }
        }
        None => {
            println!(
                "cargo:warning=libmongocrypt-sys: cannot locate the library file of {}; the functions available are taken \
                 from the header alone",
                found.source
            );
            None
        }
    };
    let header_functions = generate_bindings(&found, &header, &version, version_number, &[]);
    let missing: Vec<String> = match &exported {
        Some(exported) => header_functions.iter().filter(|f| !exported.contains(*f)).cloned().collect(),
        None => Vec::new(),
    };
    let declared: Vec<String> = if missing.is_empty() {
        header_functions
    } else {
        let version_source = if found.version.is_some() {
            "the library's packaging"
        } else {
            "the header, so probably not the library's: MONGOCRYPT_SYS_VERSION will say the header's release"
        };
        println!(
            "cargo:warning=libmongocrypt-sys: the header {} declares {} function(s) that the library {} (libmongocrypt \
             {version}, version from {version_source}) does not export: {}. They are left out of the bindings, and \
             the mongocrypt crate returns Error::Unsupported for them. Use the header of the same release as the \
             library to silence this.",
            header.display(),
            missing.len(),
            found.library.as_deref().unwrap_or(Path::new("?")).display(),
            missing.join(", ")
        );
        generate_bindings(&found, &header, &version, version_number, &missing)
    };
    let available: Vec<&str> =
        FUNCTIONS_ADDED_AFTER_1_7.iter().copied().filter(|name| declared.iter().any(|d| d == name)).collect();

    // The same cfgs the safe crate sets, for this crate's own tests.
    for name in FUNCTIONS_ADDED_AFTER_1_7 {
        let short = name.strip_prefix("mongocrypt_").unwrap();
        println!("cargo::rustc-check-cfg=cfg(mongocrypt_has_{short})");
        if available.contains(name) {
            println!("cargo:rustc-cfg=mongocrypt_has_{short}");
        }
    }

    // Metadata for dependents: DEP_MONGOCRYPT_<KEY>.
    println!("cargo:include={}", found.include_dir.display());
    println!("cargo:version={version}");
    println!("cargo:version_number={version_number:x}");
    println!("cargo:linkage={}", found.linkage.name());
    println!("cargo:lib_dirs={}", env::join_paths(&found.lib_dirs).unwrap().to_string_lossy());
    println!("cargo:rpath={}", env::join_paths(&rpath).unwrap().to_string_lossy());
    println!("cargo:functions={}", available.join(","));
    println!("cargo:optional_functions={}", FUNCTIONS_ADDED_AFTER_1_7.join(","));
    println!("cargo:header_version={}", header_version.as_deref().unwrap_or_default());
    println!("cargo:missing_functions={}", missing.join(","));
    let read = if exported.is_some() { found.library.as_deref() } else { None };
    println!("cargo:library={}", read.map(|p| p.display().to_string()).unwrap_or_default());
}

fn from_env(linkage: Linkage, tried: &mut Vec<String>) -> Option<Found> {
    let lib_dir = PathBuf::from(env::var_os("MONGOCRYPT_LIB_DIR")?);
    let include_dir = match env::var_os("MONGOCRYPT_INCLUDE_DIR") {
        Some(dir) => header_dir(Path::new(&dir)).unwrap_or_else(|| {
            fail(&format!("MONGOCRYPT_INCLUDE_DIR={} holds no mongocrypt.h (nor mongocrypt/mongocrypt.h)", Path::new(&dir).display()))
        }),
        // The usual prefix layout: PREFIX/lib[64|/<triple>] beside PREFIX/include/mongocrypt.
        None => lib_dir
            .ancestors()
            .skip(1)
            .take(2)
            .find_map(|prefix| header_dir(&prefix.join("include")))
            .unwrap_or_else(|| {
                fail(&format!(
                    "MONGOCRYPT_LIB_DIR={} is set, but no mongocrypt.h was found under its prefix; set MONGOCRYPT_INCLUDE_DIR \
                     to the directory that holds mongocrypt.h",
                    lib_dir.display()
                ))
            }),
    };
    let (file, lib) = match linkage {
        Linkage::Static => ("libmongocrypt-static.a", "static=mongocrypt-static"),
        Linkage::Dynamic => ("libmongocrypt.so", "dylib=mongocrypt"),
    };
    let candidates: &[&str] = match linkage {
        Linkage::Static => &[file],
        Linkage::Dynamic => &[file, "libmongocrypt.dylib", "mongocrypt.lib"],
    };
    let Some(library) = candidates.iter().map(|f| lib_dir.join(f)).find(|p| p.exists()) else {
        tried.push(format!("MONGOCRYPT_LIB_DIR={} has no {file}", lib_dir.display()));
        return None;
    };
    let mut link_libs = vec![lib.to_string()];
    if linkage == Linkage::Static {
        // A static libmongocrypt needs what its shared build links privately; prefer the package's own list.
        link_libs = pc_file_static_libs(&lib_dir).unwrap_or(link_libs);
    }
    Some(Found {
        source: format!("MONGOCRYPT_LIB_DIR={}", lib_dir.display()),
        version: pc_file_version(&lib_dir),
        include_dir,
        lib_dirs: vec![lib_dir],
        link_libs,
        linkage,
        library: Some(library),
    })
}

fn from_pkg_config(linkage: Linkage, tried: &mut Vec<String>) -> Option<Found> {
    if env::var_os("MONGOCRYPT_NO_PKG_CONFIG").is_some() {
        tried.push("pkg-config: skipped because MONGOCRYPT_NO_PKG_CONFIG is set".into());
        return None;
    }
    let name = name_of_pc(linkage);
    let lib = match pkg_config::Config::new()
        .cargo_metadata(false)
        .statik(linkage == Linkage::Static)
        .env_metadata(true)
        .probe(name)
    {
        Ok(lib) => lib,
        Err(e) => {
            tried.push(format!("pkg-config {name}: {}", first_line(&e.to_string())));
            return None;
        }
    };
    let include_dir = lib.include_paths.iter().find_map(|dir| header_dir(dir)).unwrap_or_else(|| {
        fail(&format!(
            "pkg-config {name} names include paths {:?}, none of which holds mongocrypt.h",
            lib.include_paths
        ))
    });
    let mut link_libs = Vec::new();
    // Archives named by full path (Debian's libmongocrypt-static.pc does this) link statically, by file stem.
    let mut lib_dirs = lib.link_paths.clone();
    for file in &lib.link_files {
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let name = stem.strip_prefix("lib").unwrap_or(stem);
        if let Some(dir) = file.parent() {
            if !lib_dirs.iter().any(|d| d == dir) {
                lib_dirs.push(dir.to_path_buf());
            }
        }
        let kind = if file.extension().is_some_and(|e| e == "a") { "static" } else { "dylib" };
        link_libs.push(format!("{kind}={name}"));
    }
    for l in &lib.libs {
        let kind = if linkage == Linkage::Static && l.starts_with("mongocrypt") { "static" } else { "dylib" };
        link_libs.push(format!("{kind}={l}"));
    }
    // Keep libmongocrypt itself first, its dependencies after it, as a static link needs.
    link_libs.sort_by_key(|l| !l.contains("mongocrypt"));
    // The file behind the link: named in full (a static .pc), or found by name in the .pc's directories, which
    // pkg-config leaves out of the flags when they are the system's.
    let library = lib.link_files.iter().find(|f| is_mongocrypt_file(f)).cloned().or_else(|| {
        let name = lib.libs.iter().find(|l| l.starts_with("mongocrypt"))?;
        let libdir = pkg_config::get_variable(name_of_pc(linkage), "libdir").ok().map(PathBuf::from);
        find_library_file(lib.link_paths.iter().cloned().chain(libdir), name, linkage)
    });
    Some(Found {
        source: format!("pkg-config {name}"),
        include_dir,
        lib_dirs,
        link_libs,
        version: Some(lib.version),
        linkage,
        library,
    })
}

fn from_vendor(linkage: Linkage, tried: &mut Vec<String>) -> Option<Found> {
    if env::var_os("MONGOCRYPT_NO_VENDOR").is_some() {
        tried.push("vendor/provision: skipped because MONGOCRYPT_NO_VENDOR is set".into());
        return None;
    }
    // Only a checkout has vendor/ beside this crate; a published crate never does.
    let out = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("../vendor/out");
    println!("cargo:rerun-if-changed={}", out.display());
    let mut flavors: Vec<PathBuf> = fs::read_dir(&out)
        .map(|dir| dir.flatten().map(|e| e.path()).filter(|p| p.join("lib").is_dir()).collect())
        .unwrap_or_default();
    // `latest` first, then the older pinned builds in name order.
    flavors.sort_by_key(|p| (!p.ends_with("latest"), p.clone()));
    let Some(prefix) = flavors.into_iter().next() else {
        tried.push(format!("vendor/provision: nothing provisioned in {}", out.display()));
        return None;
    };
    let lib_dir = prefix.join("lib");
    if linkage == Linkage::Static && !lib_dir.join("libmongocrypt-static.a").exists() {
        tried.push(format!("vendor/provision: {} has no static library", prefix.display()));
        return None;
    }
    let include_dir = header_dir(&prefix.join("include"))?;
    let name = if linkage == Linkage::Static { "mongocrypt-static" } else { "mongocrypt" };
    Some(Found {
        source: format!("vendor/provision ({})", prefix.display()),
        version: pc_file_version(&lib_dir),
        include_dir,
        link_libs: vec![format!("{}={name}", if linkage == Linkage::Static { "static" } else { "dylib" })],
        library: find_library_file([lib_dir.clone()], name, linkage),
        lib_dirs: vec![lib_dir],
        linkage,
    })
}

fn not_found(linkage: Linkage, tried: &[String]) -> ! {
    let what = match linkage {
        Linkage::Static => "a static libmongocrypt (libmongocrypt-static.a)",
        Linkage::Dynamic => "libmongocrypt",
    };
    let mut msg = format!("could not find {what}. Tried, in order:\n");
    for t in tried {
        msg.push_str(&format!("  - {t}\n"));
    }
    msg.push_str(
        "Install it or point the build at it, in one of these ways:\n\
         \x20 - MONGOCRYPT_LIB_DIR=/path/to/lib (with MONGOCRYPT_INCLUDE_DIR=/path/to/dir/holding/mongocrypt.h if the\n\
         \x20   header is not under the same prefix);\n\
         \x20 - pkg-config: put the directory holding libmongocrypt.pc on PKG_CONFIG_PATH;\n\
         \x20 - distro packages: Debian/Ubuntu `apt-get install libmongocrypt-dev pkg-config`, Homebrew\n\
         \x20   `brew install libmongocrypt`;\n\
         \x20 - MongoDB's release tarballs of libmongocrypt (unpack, then set MONGOCRYPT_LIB_DIR);\n\
         \x20 - in a checkout of this repository, `vendor/provision latest` (or `system`).\n\
         Bindings are generated with bindgen, which also needs libclang (Debian: libclang-dev).",
    );
    fail(&msg)
}

/// Stops the build with one readable message instead of a linker error later.
fn fail(msg: &str) -> ! {
    eprintln!("\nerror: libmongocrypt-sys: {msg}\n");
    println!("cargo:warning=libmongocrypt-sys: {}", first_line(msg));
    std::process::exit(1);
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// Directories the dynamic loader searches anyway; no run-time path is recorded for them.
fn is_system_dir(dir: &Path) -> bool {
    ["/usr/lib", "/lib", "/usr/lib64", "/lib64"].iter().any(|sys| dir.starts_with(sys))
}

/// `dir` itself or `dir/mongocrypt`, whichever holds `mongocrypt.h`.
fn header_dir(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("mongocrypt")].into_iter().find(|d| d.join("mongocrypt.h").is_file())
}

/// `MONGOCRYPT_VERSION` from `mongocrypt-config.h`. Used only where the library's packaging says nothing, since a
/// header can come from a later patch release than the library it is paired with.
fn header_version(include_dir: &Path) -> Option<String> {
    let text = fs::read_to_string(include_dir.join("mongocrypt-config.h")).ok()?;
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("#define MONGOCRYPT_VERSION")?;
        Some(rest.trim().trim_matches('"').to_string())
    })
}

/// The `Version:` of `libmongocrypt.pc` beside a library directory, if there is one.
fn pc_file_version(lib_dir: &Path) -> Option<String> {
    let text = fs::read_to_string(lib_dir.join("pkgconfig/libmongocrypt.pc")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("Version:")).map(|v| v.trim().to_string())
}

/// Libraries to link for a static libmongocrypt in `lib_dir`, from its `libmongocrypt-static.pc` if present.
fn pc_file_static_libs(lib_dir: &Path) -> Option<Vec<String>> {
    let text = fs::read_to_string(lib_dir.join("pkgconfig/libmongocrypt-static.pc")).ok()?;
    let libs = text.lines().find_map(|l| l.strip_prefix("Libs:"))?;
    let mut out = Vec::new();
    for word in libs.split_whitespace() {
        if let Some(name) = word.strip_prefix("-l") {
            out.push(format!("dylib={name}"));
        } else if let Some(file) = word.strip_suffix(".a") {
            let stem = Path::new(file).file_name()?.to_str()?;
            out.push(format!("static={}", stem.strip_prefix("lib").unwrap_or(stem)));
        }
    }
    Some(out)
}

/// `1.21.0` as `0x01150000`, `MAJOR << 24 | MINOR << 16 | PATCH << 8`, so that build scripts compare numbers.
fn version_number(version: &str) -> Option<u64> {
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let (major, minor, patch) = (parts.next()??, parts.next()??, parts.next().unwrap_or(Some(0))?);
    Some((major << 24) | (minor << 16) | (patch << 8))
}

fn name_of_pc(linkage: Linkage) -> &'static str {
    match linkage {
        Linkage::Static => "libmongocrypt-static",
        Linkage::Dynamic => "libmongocrypt",
    }
}

/// Whether `file` is a libmongocrypt library (not kms_message, libbson, ...).
fn is_mongocrypt_file(file: &Path) -> bool {
    file.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("libmongocrypt") || n.starts_with("mongocrypt"))
}

/// The file that `-l{name}` links in the first of `dirs` that has one.
fn find_library_file(dirs: impl IntoIterator<Item = PathBuf>, name: &str, linkage: Linkage) -> Option<PathBuf> {
    let files = match linkage {
        Linkage::Static => vec![format!("lib{name}.a"), format!("{name}.lib")],
        Linkage::Dynamic => vec![format!("lib{name}.so"), format!("lib{name}.dylib"), format!("{name}.lib")],
    };
    dirs.into_iter().flat_map(|dir| files.iter().map(move |f| dir.join(f))).find(|p| p.is_file())
}

/// The `mongocrypt_*` functions that the library file at `path` defines, read with the `object` crate: the dynamic
/// symbol table (or export trie) of a shared library, the global definitions of every member of a static archive,
/// the imports an import library names.
fn exported_functions(path: &Path) -> Result<BTreeSet<String>, String> {
    use object::read::archive::ArchiveFile;
    use object::read::coff::ImportFile;
    use object::{Object, ObjectKind, ObjectSymbol};

    let data = fs::read(path).map_err(|e| e.to_string())?;
    let mut names = BTreeSet::new();
    let mut add = |name: &[u8], macho: bool| {
        let name = if macho { name.strip_prefix(b"_").unwrap_or(name) } else { name };
        if let Ok(name) = std::str::from_utf8(name) {
            if name.starts_with("mongocrypt_") {
                names.insert(name.to_string());
            }
        }
    };
    if let Ok(archive) = ArchiveFile::parse(&*data) {
        for member in archive.members() {
            let member = member.map_err(|e| e.to_string())?;
            let bytes = member.data(&*data).map_err(|e| e.to_string())?;
            if let Ok(file) = object::File::parse(bytes) {
                let macho = file.format() == object::BinaryFormat::MachO;
                for symbol in file.symbols().filter(|s| s.is_definition() && s.is_global()) {
                    add(symbol.name_bytes().map_err(|e| e.to_string())?, macho);
                }
            } else if let Ok(import) = ImportFile::parse(bytes) {
                add(import.symbol(), false);
            }
        }
    } else {
        let file = object::File::parse(&*data).map_err(|e| e.to_string())?;
        let macho = file.format() == object::BinaryFormat::MachO;
        if file.format() == object::BinaryFormat::Elf && file.kind() == ObjectKind::Dynamic {
            // What the dynamic linker can resolve: defined, global entries of .dynsym.
            for symbol in file.dynamic_symbols().filter(|s| s.is_definition() && s.is_global()) {
                add(symbol.name_bytes().map_err(|e| e.to_string())?, false);
            }
        } else {
            for export in file.exports().map_err(|e| e.to_string())? {
                if let object::NameOrOrdinal::Name(name) = export.map_err(|e| e.to_string())?.name() {
                    add(name, macho);
                }
            }
        }
    }
    if names.is_empty() {
        return Err("it defines no mongocrypt_* symbol".into());
    }
    Ok(names)
}

/// Generates the bindings into `OUT_DIR/bindings.rs`, without the functions in `leave_out`, and returns the
/// functions they declare.
fn generate_bindings(
    found: &Found,
    header: &Path,
    version: &str,
    version_number: u64,
    leave_out: &[String],
) -> Vec<String> {
    let mut builder = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .clang_arg(format!("-I{}", found.include_dir.display()))
        .allowlist_function("mongocrypt_.*")
        .allowlist_type("mongocrypt_.*")
        .allowlist_var("MONGOCRYPT_.*")
        // A value the header did not know (a newer library's new state) must not be undefined behaviour: C enums
        // become integer type aliases with constants, never Rust enums.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .generate_comments(true)
        .layout_tests(true)
        .use_core()
        .raw_line(format!("/// The libmongocrypt release these bindings were generated for ({}).", found.source))
        .raw_line(format!("pub const MONGOCRYPT_SYS_VERSION: &str = {version:?};"))
        .raw_line("/// [`MONGOCRYPT_SYS_VERSION`] as `MAJOR << 24 | MINOR << 16 | PATCH << 8`.")
        .raw_line(format!("pub const MONGOCRYPT_SYS_VERSION_NUMBER: u32 = {version_number:#x};"))
        .raw_line("/// Whether the library is linked statically.")
        .raw_line(format!("pub const MONGOCRYPT_SYS_STATIC: bool = {};", found.linkage == Linkage::Static));
    if found.linkage == Linkage::Static {
        builder = builder.clang_arg("-DMONGOCRYPT_STATIC_DEFINE");
    }
    for name in leave_out {
        builder = builder.blocklist_function(format!("^{name}$"));
    }
    let bindings = builder.generate().unwrap_or_else(|e| {
        fail(&format!(
            "bindgen could not parse {}: {e}. bindgen needs libclang (Debian: libclang-dev).",
            header.display()
        ))
    });
    // The list of declared functions is read back from the generated code, so it cannot disagree with it.
    let mut code = bindings.to_string();
    let functions: Vec<String> = code
        .split("pub fn ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .filter(|name| name.starts_with("mongocrypt_"))
        .map(str::to_string)
        .collect();
    let list = format!(
        "\n/// Every function the bindings declare, in header order.\npub const MONGOCRYPT_SYS_FUNCTIONS: &[&str] = &{functions:?};\n\
         /// Functions the header declares that the library does not export, left out of the bindings (empty when \
         the header and the library are of one release).\npub const MONGOCRYPT_SYS_MISSING_FUNCTIONS: &[&str] = &{leave_out:?};\n"
    );
    code.push_str(&list);
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    fs::write(&out, code).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", out.display())));
    functions
}
