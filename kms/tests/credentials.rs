//! On-demand KMS credentials (`libmongocrypt_kms::credentials`) against mock metadata servers on loopback: the
//! fetcher with the runner, the AWS chain's steps, GCP's service-account keys. The tests that change the process
//! environment have binaries of their own (`credentials_env`, `credentials_aws_sdk`).

mod support;

#[path = "credentials/aws.rs"]
mod aws;
#[path = "credentials/fetcher.rs"]
mod fetcher;
#[path = "credentials/gcp_keys.rs"]
mod gcp_keys;
#[path = "credentials/hostile.rs"]
mod hostile;
