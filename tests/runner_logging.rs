//! The runner's log: every state entered and every I/O asked for at debug level under target
//! `libmongocrypt::state_machine`, documents (which can hold key material and credentials) only at trace level. One
//! test in its own binary, since a `log` logger is process-wide.

mod common;
#[path = "runner/runner_common.rs"]
mod runner_common;

use std::sync::Mutex;

use libmongocrypt::state_machine::run;
use log::{Level, LevelFilter, Log, Metadata, Record};
use runner_common::*;

/// Keeps the runner's records; everything else (libmongocrypt's own log, target `libmongocrypt`) is dropped.
struct Capture(Mutex<Vec<(Level, String)>>);

impl Log for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "libmongocrypt::state_machine"
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.lock().unwrap().push((record.level(), record.args().to_string()));
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

#[test]
fn states_and_requests_at_debug_documents_only_at_trace() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(LevelFilter::Trace);
    let io = MockIo::new()
        .collinfo(load_raw(&format!("{AUTO_AWS}/collection-info.json")))
        .markings(load_raw(&format!("{AUTO_AWS}/mongocryptd-reply.json")))
        .key(load_raw(&format!("{AUTO_AWS}/key-document.json")))
        .kms_reply(http_reply(&format!("{AUTO_AWS}/kms-decrypt-reply.txt")));
    let crypt = crypt();
    let mut ctx = crypt.ctx().encrypt("test", &load_raw(&format!("{AUTO_AWS}/cmd.json"))).unwrap();
    run(&mut ctx, &io).unwrap().unwrap();

    let records = CAPTURE.0.lock().unwrap().clone();
    let at = |level: Level| -> Vec<String> {
        records.iter().filter(|(l, _)| *l == level).map(|(_, message)| message.clone()).collect()
    };
    assert_eq!(
        at(Level::Debug),
        [
            "state NeedMongoCollinfo",
            "listCollections on database None",
            "state NeedMongoMarkings",
            "mongocryptd command",
            "state NeedMongoKeys",
            "key vault find",
            "state NeedKms",
            "1 KMS request(s)",
            "KMS request to kms.us-east-1.amazonaws.com:443 (aws)",
            "state Ready",
            "state Done",
        ]
    );
    let trace = at(Level::Trace);
    assert_eq!(trace.len(), 4, "{trace:#?}");
    assert!(trace[0].starts_with("listCollections filter: ") && trace[0].contains("\"test\""), "{}", trace[0]);
    assert!(trace[1].starts_with("mongocryptd command: ") && trace[1].contains("\"jsonSchema\": {"), "{}", trace[1]);
    assert!(trace[2].starts_with("key vault filter: ") && trace[2].contains("$or"), "{}", trace[2]);
    assert!(
        trace[3].starts_with("KMS message: POST / HTTP/1.1") && trace[3].contains("CiphertextBlob"),
        "{}",
        trace[3]
    );
    // The signed request (its credential scope) and the command's values never reach the debug level.
    assert!(at(Level::Debug).iter().all(|m| !m.contains("Credential=") && !m.contains("457-55-5462")));
}
