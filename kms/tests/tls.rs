//! The TLS transport of KMS requests (`libmongocrypt_kms::tls`) against mock KMS servers on loopback, with
//! certificates made at test time: the blocking and tokio faces, keep-alive, HTTP CONNECT proxies (tinyproxy), KMIP
//! against a real PyKMIP server (feature `openssl`), retries, and the runner's deadline.

mod support;

#[path = "tls/deadline.rs"]
mod deadline;
#[path = "tls/hostile.rs"]
mod hostile;
#[path = "tls/keep_alive.rs"]
mod keep_alive;
#[path = "tls/kmip.rs"]
mod kmip;
#[path = "tls/proxy.rs"]
mod proxy;
#[path = "tls/retries.rs"]
mod retries;
#[path = "tls/tls_blocking.rs"]
mod tls_blocking;
#[path = "tls/tls_tokio.rs"]
mod tls_tokio;
