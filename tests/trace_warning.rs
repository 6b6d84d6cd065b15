//! With `MONGOCRYPT_TRACE` set, a libmongocrypt built with its trace log traces the arguments of its setopts to the
//! log handler, secrets included (1.7.2 writes `kms_provider_aws`'s secret access key in plain text). `CryptBuilder::build` warns about it
//! through `log::warn!`, once per process.
//!
//! The variable is process-wide, so this binary holds this one test, which sets it itself.

use std::sync::{Arc, Mutex};

use libmongocrypt::{Crypt, CryptBuilder, LogLevel};

/// A `log` logger that keeps every record.
struct Recorder(Mutex<Vec<(log::Level, String, String)>>);

impl log::Log for Recorder {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let entry = (record.level(), record.target().to_owned(), record.args().to_string());
        self.0.lock().unwrap().push(entry);
    }

    fn flush(&self) {}
}

static RECORDER: Recorder = Recorder(Mutex::new(Vec::new()));

const SECRET: &str = "mongocrypt-rs-trace-warning-secret";

/// The warnings about tracing logged so far.
fn trace_warnings() -> Vec<String> {
    let records = RECORDER.0.lock().unwrap();
    records
        .iter()
        .filter(|(level, target, message)| {
            *level == log::Level::Warn && target.starts_with("libmongocrypt::") && message.contains("MONGOCRYPT_TRACE")
        })
        .map(|(_, _, message)| message.clone())
        .collect()
}

/// A builder with a local KMS provider (libmongocrypt 1.7.2 needs one).
fn local() -> CryptBuilder {
    Crypt::builder().kms_provider_local(&[0; 96]).unwrap()
}

#[test]
fn tracing_is_warned_about_once() {
    log::set_logger(&RECORDER).unwrap();
    log::set_max_level(log::LevelFilter::Trace);

    // Not set: no warning.
    std::env::remove_var("MONGOCRYPT_TRACE");
    drop(local().build().unwrap());
    assert_eq!(trace_warnings(), Vec::<String>::new());

    std::env::set_var("MONGOCRYPT_TRACE", "ON");
    let traced = Arc::new(Mutex::new(Vec::new()));
    let sink = traced.clone();
    let crypt = Crypt::builder()
        .log_handler(move |level, message| sink.lock().unwrap().push((level, message.to_owned())))
        .unwrap()
        .kms_provider_aws("AKIAEXAMPLE", SECRET)
        .unwrap()
        .build()
        .unwrap();
    let warnings = trace_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("exposes secrets"), "{}", warnings[0]);
    assert!(warnings[0].contains("AWS secret access key"), "{}", warnings[0]);

    // Once per process: later builds, with the log bridge or a handler, say nothing more.
    drop(local().build().unwrap());
    drop(local().log_handler(|_, _| {}).unwrap().build().unwrap());
    assert_eq!(trace_warnings().len(), 1);

    // What the warning is about: where libmongocrypt was built with its trace log (cmake ENABLE_TRACE; Debian's
    // 1.7.2 and the vendored 1.21.0 are not, and log no trace at all), the secret reaches the log handler.
    let traced = traced.lock().unwrap();
    let tracing = traced.iter().any(|(level, _)| *level == LogLevel::Trace);
    let leaked = traced.iter().any(|(level, message)| *level == LogLevel::Trace && message.contains(SECRET));
    if tracing && libmongocrypt::version().starts_with("1.7.") {
        assert!(leaked, "libmongocrypt {} traced, but not the secret: {traced:?}", libmongocrypt::version());
    }
    println!("libmongocrypt {}: trace log compiled in: {tracing}; secret traced: {leaked}", libmongocrypt::version());
    drop(crypt);
    std::env::remove_var("MONGOCRYPT_TRACE");
}
