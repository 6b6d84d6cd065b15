//! KMS I/O for the [`libmongocrypt`] crate: what a driver needs to serve the NEED_KMS and NEED_KMS_CREDENTIALS
//! states over the network.
//!
//! `libmongocrypt` is the binding and its state-machine runner, and does no network I/O: a driver that brings its
//! own TLS and HTTP needs only that crate. This one adds ready-made I/O:
//!
//! - [`tls`]: [`KmsTransport`](tls::KmsTransport) talks TLS (rustls, ring provider) to KMS endpoints with
//!   per-provider TLS options (`tlsCAFile`, `tlsCertificateKeyFile`, ...), timeouts, retries, keep-alive, proxies
//!   ([`HttpProxy`](tls::HttpProxy)) and, with the `openssl` feature, an OpenSSL backend for KMIP servers that
//!   offer only TLS 1.2 CBC suites. Its errors implement the runner's
//!   [`KmsFailure`](libmongocrypt::state_machine::KmsFailure) contract.
//! - [`credentials`]: [`CredentialsFetcher`](credentials::CredentialsFetcher) fetches on-demand KMS credentials
//!   (the AWS chain: a custom provider, environment, web identity, ECS, EC2 IMDSv2; the GCP and Azure metadata
//!   servers), blocking or async.
//!
//! Both plug into the runners of [`libmongocrypt::state_machine`]: delegate
//! [`StateMachineIo::kms_request`](libmongocrypt::state_machine::StateMachineIo::kms_request) to
//! [`KmsTransport::kms_request`](tls::KmsTransport::kms_request) and
//! [`StateMachineIo::kms_credentials`](libmongocrypt::state_machine::StateMachineIo::kms_credentials) to
//! [`CredentialsFetcher::kms_credentials`](credentials::CredentialsFetcher::kms_credentials).
//!
//! # Features
//!
//! - `tokio`: the async faces, `tls::TokioKmsTransport` (tokio-rustls; async connectors, `tls::AsyncConnector`)
//!   and the async credentials fetch (hyper's low-level client on tokio's sockets), for
//!   `libmongocrypt::state_machine::run_tokio` (`libmongocrypt`'s own `tokio` feature) or `run_async`.
//! - `openssl`: the OpenSSL TLS backend of the transport (`KmsTransportBuilder::openssl_for`), on both faces
//!   (tokio-openssl on the async one); links the system's OpenSSL.
//! - `aws-sdk`: the AWS step of the credentials chain is `aws-config`'s default chain (implies `tokio`).
//! - `bson-3` (default) or `bson-2`: passed to `libmongocrypt`, whose bson this crate's documents are; with bson 2,
//!   `default-features = false, features = ["bson-2"]` on both crates.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Documents are libmongocrypt's bson (feature bson-2 or bson-3), never a second copy.
use libmongocrypt::bson;

pub mod credentials;
mod file;
#[doc(hidden)]
pub mod fuzzing;
pub mod tls;
