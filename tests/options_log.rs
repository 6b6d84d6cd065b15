//! `mongocrypt_setopt_log_handler`: a closure, a panicking closure, and the default bridge to the `log` crate.
//!
//! libmongocrypt logs little outside trace mode (enabled only by the `MONGOCRYPT_TRACE` environment variable, which
//! a test must not set for its whole process). One path logs reliably at WARNING: when a directory on the
//! crypt_shared search path holds a `mongo_crypt_v1.so` that cannot be loaded, `mongocrypt_init` logs
//! "Error while opening candidate for ... dynamic library [path]: reason". These tests use that path.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use common::*;
use libmongocrypt::bson::rawdoc;
use libmongocrypt::{KeyEncryptionKey, LogLevel, State};

/// A search directory holding a file named like crypt_shared that is not a library.
fn bogus_crypt_shared_dir(name: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(&format!("log-{name}"));
    let candidate = dir.path().join("mongo_crypt_v1.so");
    std::fs::write(&candidate, b"not a shared library").unwrap();
    (dir, candidate)
}

#[test]
fn log_handler_receives_the_crypt_shared_warning() {
    let (dir, candidate) = bogus_crypt_shared_dir("closure");
    let logs = LogCapture::default();
    let crypt = builder()
        .log_handler(logs.handler())
        .unwrap()
        .append_crypt_shared_lib_search_path(dir.as_str())
        .unwrap()
        .build()
        .unwrap();
    let messages = logs.messages();
    let warning = messages
        .iter()
        .find(|(_, m)| m.contains(candidate.to_str().unwrap()))
        .unwrap_or_else(|| panic!("no message about {}: {messages:?}", candidate.display()));
    assert_eq!(warning.0, LogLevel::Warning);
    assert!(warning.1.starts_with("Error while opening candidate for "), "{}", warning.1);
    // The Crypt works without crypt_shared.
    assert_eq!(crypt.crypt_shared_lib_version(), None);
    let ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    assert_eq!(ctx.state(), State::Ready);
}

#[test]
fn log_handler_is_not_called_without_a_reason_to_log() {
    // The counterpart of the test above: an ordinary explicit round trip logs nothing at default settings, so the
    // handler's invocation above is caused by the bogus library.
    let logs = LogCapture::default();
    let crypt = builder().log_handler(logs.handler()).unwrap().build().unwrap();
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    let key = ctx.finalize_owned().unwrap();
    let mut ctx = crypt
        .ctx()
        .key_id(key.get_binary("_id").unwrap().bytes)
        .and_then(|b| b.algorithm(&libmongocrypt::Algorithm::Random))
        .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": "x" }))
        .unwrap();
    drive(&mut ctx, &Mock { keys: vec![key], ..Mock::default() }).output();
    let messages = logs.messages();
    assert!(messages.iter().all(|(l, _)| *l == LogLevel::Trace), "{messages:?}");
}

#[test]
fn log_handler_panic_does_not_abort() {
    let (dir, _) = bogus_crypt_shared_dir("panic");
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let crypt = builder()
        .log_handler(|_, message| {
            CALLS.fetch_add(1, Ordering::SeqCst);
            panic!("log handler exploded on {message:?}")
        })
        .unwrap()
        .append_crypt_shared_lib_search_path(dir.as_str())
        .unwrap()
        .build()
        .expect("a panicking log handler does not fail init");
    assert!(CALLS.load(Ordering::SeqCst) >= 1, "the handler ran (and panicked)");
    // The process and the Crypt are fine.
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    assert!(ctx.finalize().is_ok());
}

/// A `log` logger that keeps the records of target `libmongocrypt`.
struct Recorder(Mutex<Vec<(log::Level, String)>>);

impl log::Log for Recorder {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.target() == "libmongocrypt" {
            self.0.lock().unwrap().push((record.level(), record.args().to_string()));
        }
    }

    fn flush(&self) {}
}

static RECORDER: Recorder = Recorder(Mutex::new(Vec::new()));

#[test]
fn default_handler_forwards_to_the_log_crate() {
    // The only test of this binary that installs a `log` logger.
    log::set_logger(&RECORDER).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let (dir, candidate) = bogus_crypt_shared_dir("log-crate");
    let _crypt = builder().append_crypt_shared_lib_search_path(dir.as_str()).unwrap().build().unwrap();
    let records = RECORDER.0.lock().unwrap().clone();
    assert!(
        records.iter().any(|(level, m)| *level == log::Level::Warn && m.contains(candidate.to_str().unwrap())),
        "{records:?}"
    );
}

#[test]
fn log_levels_map_to_the_log_crate() {
    assert_eq!(LogLevel::Fatal.to_log_level(), log::Level::Error);
    assert_eq!(LogLevel::Error.to_log_level(), log::Level::Error);
    assert_eq!(LogLevel::Warning.to_log_level(), log::Level::Warn);
    assert_eq!(LogLevel::Info.to_log_level(), log::Level::Info);
    assert_eq!(LogLevel::Trace.to_log_level(), log::Level::Trace);
}
