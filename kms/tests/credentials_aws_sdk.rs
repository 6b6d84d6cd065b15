//! Feature `aws-sdk`: the AWS step of on-demand credentials is `aws-config`'s default chain. From the real process
//! environment (the SDK reads it itself), so alone in its test binary and serialized by [`ENV`]. Run with
//! `cargo test -p libmongocrypt-kms --features aws-sdk --test credentials_aws_sdk`.
#![cfg(feature = "aws-sdk")]

mod support;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bson::{Document, RawDocumentBuf};
use libmongocrypt::state_machine::{run, run_async};
use libmongocrypt::{Crypt, KeyEncryptionKey, KmsProviders};
use libmongocrypt_kms::credentials::{AwsCredentials, CredentialsFetcher};

use support::credentials::{ecs_server, CredentialsIo};
use support::pki::Pki;
use support::server::Request;
use support::*;

static ENV: Mutex<()> = Mutex::new(());

/// Holds the environment for one test: no AWS credentials anywhere, no profile files, no instance metadata, a
/// region (so that the SDK does not ask IMDS for one).
fn clean_env() -> MutexGuard<'static, ()> {
    let guard = ENV.lock().unwrap_or_else(|e| e.into_inner());
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            std::env::remove_var(name);
        }
    }
    let none = std::env::temp_dir().join("mongocrypt-aws-sdk-test-no-such-file");
    std::env::set_var("AWS_CONFIG_FILE", &none);
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &none);
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("AWS_REGION", "us-east-1");
    guard
}

fn assert_signed_by(requests: &[Request], access_key_id: &str, token: Option<&str>) {
    assert_eq!(requests.len(), 1, "{requests:?}");
    let authorization = requests[0].header("Authorization").unwrap();
    assert!(authorization.starts_with(&format!("AWS4-HMAC-SHA256 Credential={access_key_id}/")), "{authorization}");
    assert_eq!(requests[0].header("X-Amz-Security-Token"), token);
}

fn assert_aws_key(key: Option<RawDocumentBuf>) {
    let key = Document::try_from(key.expect("a key document").as_ref()).unwrap();
    assert_eq!(key.get_document("masterKey").unwrap().get_str("provider").unwrap(), "aws");
}

/// A data key with an on-demand `aws` provider and the default fetcher, blocking or async; returns the KMS server's
/// requests.
fn datakey(is_async: bool) -> Vec<Request> {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let providers = KmsProviders::new().on_demand("aws");
    let crypt = Crypt::builder().kms_providers(&providers).unwrap().use_need_kms_credentials_state().build().unwrap();
    let io = CredentialsIo {
        kms: transport_to(&pki, kms.addr()).build().unwrap(),
        credentials: CredentialsFetcher::for_kms_providers(&providers),
    };
    let kek = KeyEncryptionKey::aws("aws", "us-east-1", AWS_KEY_ARN);
    let mut ctx = crypt.ctx().key_encryption_key(&kek).unwrap().datakey().unwrap();
    let key = if is_async {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run_async(&mut ctx, &io, tokio::time::sleep))
    } else {
        run(&mut ctx, &io)
    };
    assert_aws_key(key.unwrap());
    kms.stop()
}

/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` on loopback and no other AWS credentials: aws-config's ECS provider
/// fetches them, blocking and async, and the KMS request libmongocrypt signs names their access key id.
#[test]
fn sdk_ecs_full_uri_signs_the_kms_request() {
    let _env = clean_env();
    for is_async in [false, true] {
        let ecs = ecs_server("ASIASDKECS");
        std::env::set_var("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("http://{}/v2/credentials", ecs.addr()));
        assert_signed_by(&datakey(is_async), "ASIASDKECS", Some("ecsSessionToken"));
        let requests = ecs.stop();
        assert_eq!(requests.len(), 1, "async: {is_async}");
        assert_eq!(requests[0].request_line(), "GET /v2/credentials HTTP/1.1");
    }
}

/// Credentials in a shared credentials file, which only the SDK's chain reads: proof that the SDK's chain is the
/// one that ran, blocking and async.
#[test]
fn sdk_profile_file_credentials() {
    let _env = clean_env();
    let file = std::env::temp_dir().join(format!("mongocrypt-aws-sdk-test-credentials-{}", std::process::id()));
    std::fs::write(&file, "[default]\naws_access_key_id = AKIASDKPROFILE\naws_secret_access_key = profileSecret\n")
        .unwrap();
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &file);
    for is_async in [false, true] {
        assert_signed_by(&datakey(is_async), "AKIASDKPROFILE", None);
    }
    let fetched = CredentialsFetcher::new(["aws"]).fetch().unwrap();
    assert_eq!(fetched.get_document("aws").unwrap().get_str("accessKeyId").unwrap(), "AKIASDKPROFILE");
    std::fs::remove_file(&file).unwrap();
}

/// The custom provider still replaces the SDK's chain.
#[test]
fn sdk_custom_provider_replaces_the_chain() {
    let _env = clean_env();
    let fetcher =
        CredentialsFetcher::new(["aws"]).aws_credential_provider(|| Ok(AwsCredentials::new("AKIACUSTOM", "s")));
    assert_eq!(fetcher.fetch().unwrap().get_document("aws").unwrap().get_str("accessKeyId").unwrap(), "AKIACUSTOM");
}

/// With nothing configured, the SDK's failure is the error.
#[test]
fn sdk_chain_failure_is_an_aws_sdk_error() {
    let _env = clean_env();
    let err = CredentialsFetcher::new(["aws"]).timeout(Duration::from_secs(20)).fetch().unwrap_err();
    assert!(matches!(err.kind(), libmongocrypt_kms::credentials::CredentialsErrorKind::AwsSdk(_)), "{err}");
    assert!(err.to_string().contains("AWS SDK"), "{err}");
}
