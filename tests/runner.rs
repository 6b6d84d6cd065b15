//! The state-machine runner: every kind of operation through the blocking, threaded and async runners, its errors,
//! the KMS failure contract, and the patterns an async driver uses.
//!
//! One test binary per area (each binary is linked once per CI build): each file under
//! `tests/runner/` is a module.

#[cfg(feature = "tokio")]
#[path = "runner/async_driver.rs"]
mod async_driver;
#[path = "runner/auto.rs"]
mod auto;
mod common;
#[path = "runner/datakey.rs"]
mod datakey;
#[path = "runner/deadline.rs"]
mod deadline;
#[path = "runner/errors.rs"]
mod errors;
#[path = "runner/explicit.rs"]
mod explicit;
#[path = "runner/kms.rs"]
mod kms;
#[path = "runner/runner_common.rs"]
mod runner_common;
