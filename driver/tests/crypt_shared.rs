//! crypt_shared's rules (`CryptSharedOpts`) against a stand-in library that libmongocrypt really loads:
//! `tests/crypt_shared/mongo_crypt_v1_standin.c`, built here with `cc -shared -fPIC` into `mongo_crypt_v1.so`,
//! reports a version compiled into it and answers every query analysis with a fixed marked command.
//!
//! libmongocrypt keeps the loaded crypt_shared process-wide while a handle uses it, and refuses a handle that wants
//! another: every test that builds a handle holds [`one_crypt_shared`], so that no other test's library is loaded
//! meanwhile, and drops its handles before it returns. The `$SYSTEM` search needs the loader's search path set at
//! process start, so that case runs in a child process.
//!
//! Linux only: the stand-in is built with the system C compiler for the ELF loader.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};

use libmongocrypt::bson::spec::BinarySubtype;
use libmongocrypt::bson::{doc, rawdoc, Binary, Bson, Document};
use libmongocrypt::{Crypt, CryptBuilder, KmsProviders, State, Version};
use libmongocrypt_driver::{
    CryptSharedError, CryptSharedOpts, CryptSharedSearch, CryptSharedSource, CryptSharedStatus, CRYPT_SHARED_FILE_NAME,
    SYSTEM_SEARCH_PATH,
};

/// The key the stand-in's marking names: it can only reach the key vault filter through the stand-in's reply.
const STANDIN_KEY_ID: [u8; 16] = [0x5a; 16];

/// One stand-in library build.
struct Standin {
    /// The directory name under the tests' temporary directory.
    name: &'static str,
    /// `mongo_crypt_v1_get_version`.
    version: u64,
    /// `mongo_crypt_v1_get_version_str`.
    version_str: &'static str,
    /// If set, `lib_create` fails with this explanation.
    fail_lib_create: Option<&'static str>,
}

const STANDIN_7: Standin = Standin {
    name: "standin-7.0.1",
    version: 0x0007_0000_0001_0000,
    version_str: "mongo_crypt_v1-standin-7.0.1",
    fail_lib_create: None,
};
const STANDIN_6: Standin = Standin {
    name: "standin-6.0.5",
    version: 0x0006_0000_0005_0000,
    version_str: "mongo_crypt_v1-standin-6.0.5",
    fail_lib_create: None,
};
const STANDIN_FAILING: Standin = Standin {
    name: "standin-failing",
    version: 0x0007_0000_0000_0000,
    version_str: "mongo_crypt_v1-standin-failing",
    fail_lib_create: Some("stand-in refuses to start"),
};

/// The tests' own temporary directory for stand-ins.
fn tmp_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("crypt_shared")
}

/// An empty directory: a search path with no crypt_shared in it.
fn empty_dir() -> PathBuf {
    let dir = tmp_dir().join("empty");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(!dir.join(CRYPT_SHARED_FILE_NAME).exists());
    dir
}

/// What every stand-in's analyze_query returns: the command of [`find_ssn`] with `ssn` marked for deterministic
/// encryption with [`STANDIN_KEY_ID`], as mongocryptd would reply.
fn marked_reply() -> Vec<u8> {
    let marking = doc! {
        "a": 1,
        "ki": Binary { subtype: BinarySubtype::Uuid, bytes: STANDIN_KEY_ID.to_vec() },
        "v": "457-55-5462",
    };
    let mut placeholder = vec![0u8]; // FLE1 intent-to-encrypt marking
    marking.to_writer(&mut placeholder).unwrap();
    let reply = doc! {
        "ok": 1,
        "schemaRequiresEncryption": true,
        "hasEncryptedPlaceholders": true,
        "result": {
            "find": "coll",
            "filter": { "ssn": Binary { subtype: BinarySubtype::Encrypted, bytes: placeholder } },
        },
    };
    let mut bytes = Vec::new();
    reply.to_writer(&mut bytes).unwrap();
    bytes
}

/// Builds `standin` (once per process) and returns the library's path. It is compiled beside the final path and
/// renamed into place, so that a child process may load an earlier build meanwhile.
fn build(standin: &'static Standin) -> PathBuf {
    static BUILT: Mutex<Vec<(&str, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, path)) = built.iter().find(|(name, _)| *name == standin.name) {
        return path.clone();
    }
    let dir = tmp_dir().join(standin.name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(CRYPT_SHARED_FILE_NAME);
    let partial = dir.join(format!("{CRYPT_SHARED_FILE_NAME}.{}.partial", std::process::id()));
    let reply: Vec<String> = marked_reply().iter().map(|b| format!("{b:#04x}")).collect();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crypt_shared/mongo_crypt_v1_standin.c");
    let mut cc = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()));
    cc.args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-fvisibility=hidden"])
        .arg(format!("-DSTANDIN_VERSION={:#018x}ULL", standin.version))
        .arg(format!("-DSTANDIN_VERSION_STR=\"{}\"", standin.version_str))
        .arg(format!("-DSTANDIN_REPLY={}", reply.join(",")));
    if let Some(explanation) = standin.fail_lib_create {
        cc.arg(format!("-DSTANDIN_FAIL_LIB_CREATE=\"{explanation}\""));
    }
    let out = cc.arg("-o").arg(&partial).arg(&source).output().expect("run the C compiler (cc, or $CC)");
    assert!(out.status.success(), "building the stand-in failed: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::rename(&partial, &path).unwrap();
    built.push((standin.name, path.clone()));
    path
}

/// Held while a test has handles that may load crypt_shared: libmongocrypt allows one library per process.
fn one_crypt_shared() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A handle with a local KMS provider and a CSFLE schema for `db.coll` (so auto encryption asks for markings at
/// once, without listCollections).
fn builder() -> CryptBuilder {
    let schema = doc! {
        "bsonType": "object",
        "properties": { "ssn": { "encrypt": {
            "bsonType": "string",
            "algorithm": "AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic",
            "keyId": [Binary { subtype: BinarySubtype::Uuid, bytes: STANDIN_KEY_ID.to_vec() }],
        } } },
    };
    Crypt::builder()
        .kms_providers(&KmsProviders::new().local("local", &[1u8; 96]))
        .and_then(|b| b.schema_map(&doc! { "db.coll": schema }))
        .unwrap()
}

fn opts(lib_path: Option<&Path>, search: CryptSharedSearch, required: bool) -> CryptSharedOpts {
    CryptSharedOpts { lib_path: lib_path.map(Path::to_path_buf), required, search, ..CryptSharedOpts::default() }
}

/// The state auto encryption of a find on `db.coll` reaches first, with the key vault filter if it is keys.
fn encrypt_find(crypt: &Crypt) -> (State, Option<Document>) {
    let ctx = crypt.ctx().encrypt("db", &rawdoc! { "find": "coll", "filter": { "ssn": "457-55-5462" } }).unwrap();
    let filter = (ctx.state() == State::NeedMongoKeys).then(|| ctx.mongo_op().unwrap().try_into().unwrap());
    (ctx.state(), filter)
}

/// The key vault filter for [`STANDIN_KEY_ID`].
fn standin_key_filter() -> Document {
    let id = Binary { subtype: BinarySubtype::Uuid, bytes: STANDIN_KEY_ID.to_vec() };
    doc! { "$or": [ { "_id": { "$in": [id] } }, { "keyAltNames": { "$in": [] } } ] }
}

fn assert_loaded(status: &CryptSharedStatus, standin: &Standin, source: CryptSharedSource) {
    assert!(status.is_loaded(), "{status:?}");
    let version = status.version().unwrap();
    assert_eq!(version.number(), standin.version);
    assert_eq!(version.as_str(), standin.version_str);
    assert_eq!(version.to_string(), standin.version_str);
    assert_eq!(status.source(), &source);
}

#[test]
fn override_path_loads_the_library_and_it_marks_the_commands() {
    let path = build(&STANDIN_7);
    let _one = one_crypt_shared();
    let (crypt, status) = opts(Some(&path), CryptSharedSearch::Disabled, true).build(builder()).unwrap();
    assert_loaded(&status, &STANDIN_7, CryptSharedSource::Override(path.clone()));
    let version = status.version().unwrap();
    assert_eq!((version.major(), version.minor(), version.revision()), (7, 0, 1));

    // crypt_shared marked the command (no NEED_MONGO_MARKINGS for mongocryptd): the keys asked for are the one
    // only the stand-in's reply names.
    assert_eq!(encrypt_find(&crypt), (State::NeedMongoKeys, Some(standin_key_filter())));

    // The same command without crypt_shared is mongocryptd's to mark.
    let (without, status) = opts(None, CryptSharedSearch::Disabled, false).build(builder()).unwrap();
    assert!(!status.is_loaded());
    assert_eq!(status.source(), &CryptSharedSource::NotSearched);
    assert_eq!(encrypt_find(&without).0, State::NeedMongoMarkings);
}

#[test]
fn a_bad_override_path_is_an_error_naming_it() {
    let missing = empty_dir().join(CRYPT_SHARED_FILE_NAME);
    let dir_of_a_library = build(&STANDIN_7).parent().unwrap().to_path_buf();
    let _one = one_crypt_shared();
    // Required or not: libmongocrypt searches nowhere else and refuses to start.
    for (path, required) in [(&missing, true), (&missing, false), (&dir_of_a_library, true)] {
        let err = opts(Some(path), CryptSharedSearch::System, required).build(builder()).unwrap_err();
        let CryptSharedError::OverrideNotLoaded { path: named, source } = &err else { panic!("{err:?}") };
        assert_eq!(named, path);
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("not its directory"), "{message}");
        let cause = source.to_string();
        assert!(cause.contains(&path.display().to_string()), "{cause}");
        // libmongocrypt adds the loader's reason from 1.8 (1.7.2 says only that it failed).
        let reason = if path == &missing { "No such file or directory" } else { "cannot read file data" };
        assert_eq!(cause.contains(reason), *Version::linked() >= Version::new(1, 8, 0), "{cause}");
    }
}

#[test]
fn required_and_nothing_found_names_what_was_searched() {
    let empty = empty_dir();
    let _one = one_crypt_shared();
    let err = opts(None, CryptSharedSearch::dirs([&empty]), true).build(builder()).unwrap_err();
    let CryptSharedError::Required { searched } = &err else { panic!("{err:?}") };
    assert_eq!(searched, &CryptSharedSource::Search(vec![empty.clone()]));
    let message = err.to_string();
    let tried = empty.join(CRYPT_SHARED_FILE_NAME).display().to_string();
    assert!(message.contains(&format!("no crypt_shared library was loaded: searched {tried}; ")), "{message}");
    assert!(message.contains("put the library file (mongo_crypt_v1.so, from MongoDB Enterprise's"), "{message}");

    // bypassAutoEncryption leaves out $SYSTEM: nothing is searched.
    let no_search = CryptSharedOpts { required: true, bypass_auto_encryption: true, ..CryptSharedOpts::default() };
    let err = no_search.build(builder()).unwrap_err();
    assert!(matches!(&err, CryptSharedError::Required { searched: CryptSharedSource::NotSearched }), "{err:?}");
    assert!(err.to_string().contains("(bypassAutoEncryption, or search disabled); set cryptSharedLibPath to"), "{err}");
}

#[test]
fn the_system_search_is_described() {
    let source = CryptSharedSource::Search(vec![SYSTEM_SEARCH_PATH.into(), "/opt/crypt".into()]);
    assert_eq!(
        source.to_string(),
        "searched $SYSTEM (the operating system's dynamic-library search for mongo_crypt_v1.so: LD_LIBRARY_PATH, \
         the ld.so cache, then /lib and /usr/lib), then /opt/crypt/mongo_crypt_v1.so"
    );
    // The user-facing default is $SYSTEM alone, and nothing under bypassAutoEncryption.
    assert_eq!(CryptSharedOpts::default().source(), CryptSharedSource::Search(vec![SYSTEM_SEARCH_PATH.into()]));
    let bypass = CryptSharedOpts { bypass_auto_encryption: true, ..CryptSharedOpts::default() };
    assert_eq!(bypass.source(), CryptSharedSource::NotSearched);
    let with_override = CryptSharedOpts { lib_path: Some("/x/lib.so".into()), ..bypass };
    assert_eq!(with_override.source(), CryptSharedSource::Override("/x/lib.so".into()));
}

#[test]
fn not_required_and_nothing_found_leaves_marking_to_mongocryptd() {
    let empty = empty_dir();
    let _one = one_crypt_shared();
    let (crypt, status) = opts(None, CryptSharedSearch::dirs([&empty]), false).build(builder()).unwrap();
    assert!(!status.is_loaded());
    assert_eq!(status.version(), None);
    assert_eq!(status.source(), &CryptSharedSource::Search(vec![empty]));
    assert_eq!(encrypt_find(&crypt).0, State::NeedMongoMarkings);
}

#[test]
fn bypass_query_analysis_loads_nothing() {
    let path = build(&STANDIN_7);
    let _one = one_crypt_shared();
    let bypass = CryptSharedOpts { bypass_query_analysis: true, ..opts(Some(&path), CryptSharedSearch::System, false) };
    let (crypt, status) = bypass.build(builder()).unwrap();
    assert!(!status.is_loaded());
    assert_eq!(status.source(), &CryptSharedSource::BypassQueryAnalysis);
    assert_eq!(crypt.crypt_shared_lib_version(), None);

    let required = CryptSharedOpts { required: true, ..bypass };
    let err = required.build(builder()).unwrap_err();
    assert!(matches!(&err, CryptSharedError::Required { searched: CryptSharedSource::BypassQueryAnalysis }));
    assert!(err.to_string().ends_with("unset bypassQueryAnalysis or cryptSharedLibRequired"), "{err}");
}

/// The spec's "Loading crypt_shared Multiple Times", step by step in one process.
#[test]
fn one_crypt_shared_per_process() {
    let (path_7, path_6) = (build(&STANDIN_7), build(&STANDIN_6));
    let empty = empty_dir();
    let _one = one_crypt_shared();
    let (first, status) = opts(Some(&path_7), CryptSharedSearch::System, false).build(builder()).unwrap();
    assert_loaded(&status, &STANDIN_7, CryptSharedSource::Override(path_7.clone()));

    // The same path again shares the loaded library (the stand-in refuses a second lib_create meanwhile), and so
    // does a search that finds that same file.
    let (same, status) = opts(Some(&path_7), CryptSharedSearch::System, true).build(builder()).unwrap();
    assert_loaded(&status, &STANDIN_7, CryptSharedSource::Override(path_7.clone()));
    let dir_7 = path_7.parent().unwrap();
    let (searched, status) = opts(None, CryptSharedSearch::dirs([&empty, dir_7]), true).build(builder()).unwrap();
    assert_loaded(&status, &STANDIN_7, CryptSharedSource::Search(vec![empty.clone(), dir_7.to_path_buf()]));
    assert_eq!(encrypt_find(&same), (State::NeedMongoKeys, Some(standin_key_filter())));

    // Another file while it is loaded: refused.
    let err = opts(Some(&path_6), CryptSharedSearch::System, false).build(builder()).unwrap_err();
    let CryptSharedError::AnotherLoaded { loaded, attempted, .. } = &err else { panic!("{err:?}") };
    assert_eq!((loaded, attempted.as_ref()), (&path_7, Some(&path_6)));
    let message = err.to_string();
    assert!(message.contains("give every client the same cryptSharedLibPath"), "{message}");
    // A handle that wants crypt_shared but finds none is refused too, required or not...
    let err = opts(None, CryptSharedSearch::dirs([&empty]), false).build(builder()).unwrap_err();
    let CryptSharedError::AnotherLoaded { loaded, attempted: None, .. } = &err else { panic!("{err:?}") };
    assert_eq!(loaded, &path_7);
    // ...but one that searches nowhere does not take part.
    let (unrelated, status) = opts(None, CryptSharedSearch::Disabled, false).build(builder()).unwrap();
    assert!(!status.is_loaded());

    // Once every handle that uses it is gone, another may be loaded.
    drop((first, same, searched, unrelated));
    let (other, status) = opts(Some(&path_6), CryptSharedSearch::System, true).build(builder()).unwrap();
    assert_loaded(&status, &STANDIN_6, CryptSharedSource::Override(path_6.clone()));
    assert_eq!(encrypt_find(&other), (State::NeedMongoKeys, Some(standin_key_filter())));
}

#[test]
fn a_library_that_fails_to_start_is_a_crypt_shared_error() {
    let path = build(&STANDIN_FAILING);
    let _one = one_crypt_shared();
    let err = opts(Some(&path), CryptSharedSearch::System, false).build(builder()).unwrap_err();
    let CryptSharedError::Mongocrypt(libmongocrypt::Error::CryptShared { message, .. }) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("lib_create() failed: stand-in refuses to start [Error 1, code 42]"), "{message}");
}

/// Set in the child process of [`system_search_finds_the_library_on_the_loader_path`].
const SYSTEM_CHILD: &str = "MONGOCRYPT_RS_CRYPT_SHARED_SYSTEM_CHILD";

#[test]
fn system_search_finds_the_library_on_the_loader_path() {
    if std::env::var_os(SYSTEM_CHILD).is_some() {
        // The user-facing default: only $SYSTEM, which the loader resolves through LD_LIBRARY_PATH.
        let _one = one_crypt_shared();
        let required = CryptSharedOpts { required: true, ..CryptSharedOpts::default() };
        let (crypt, status) = required.build(builder()).unwrap();
        assert_loaded(&status, &STANDIN_7, CryptSharedSource::Search(vec![SYSTEM_SEARCH_PATH.into()]));
        assert_eq!(encrypt_find(&crypt), (State::NeedMongoKeys, Some(standin_key_filter())));
        return;
    }
    let dir = build(&STANDIN_7).parent().unwrap().to_path_buf();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["system_search_finds_the_library_on_the_loader_path", "--exact", "--nocapture", "--test-threads=1"])
        .env(SYSTEM_CHILD, "1")
        .env("LD_LIBRARY_PATH", &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("test result: ok. 1 passed"), "{stdout}");
}

#[test]
fn extra_options_document() {
    let extra = doc! {
        "cryptSharedLibPath": "$ORIGIN/mongo_crypt_v1.so",
        "cryptSharedLibRequired": true,
        "mongocryptdBypassSpawn": true,
    };
    let opts = CryptSharedOpts::from_extra_options(&extra).unwrap();
    assert_eq!(
        opts,
        CryptSharedOpts { lib_path: Some("$ORIGIN/mongo_crypt_v1.so".into()), required: true, ..Default::default() }
    );
    assert_eq!(CryptSharedOpts::from_extra_options(&doc! {}).unwrap(), CryptSharedOpts::default());

    let err = CryptSharedOpts::from_extra_options(&doc! { "cryptSharedLibRequired": 1 }).unwrap_err();
    assert_eq!(err.to_string(), "extraOptions.cryptSharedLibRequired must be a boolean, not Int32");
    let err = CryptSharedOpts::from_extra_options(&doc! { "cryptSharedLibPath": Bson::Null }).unwrap_err();
    assert_eq!(err.to_string(), "extraOptions.cryptSharedLibPath must be a string, not Null");

    // Paths go to libmongocrypt unchanged; one it cannot take is refused before the handle is built.
    let nul = CryptSharedOpts { lib_path: Some("a\0b".into()), ..CryptSharedOpts::default() };
    let err = nul.build(builder()).unwrap_err();
    assert!(matches!(&err, CryptSharedError::Mongocrypt(libmongocrypt::Error::InvalidArgument(_))), "{err:?}");
}
