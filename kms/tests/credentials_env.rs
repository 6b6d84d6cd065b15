//! On-demand AWS credentials from the real process environment, with the default [`CredentialsFetcher`]. Alone in
//! their test binary, and serialized by [`ENV`], so that setting the variables races with no other test.

mod support;

use std::sync::{Mutex, MutexGuard};

#[cfg(not(feature = "aws-sdk"))]
use bson::doc;
use bson::{Document, RawDocumentBuf};
use libmongocrypt::state_machine::run;
use libmongocrypt::{Crypt, KeyEncryptionKey, KmsProviders};
#[cfg(not(feature = "aws-sdk"))]
use libmongocrypt_kms::credentials::CredentialsErrorKind;
use libmongocrypt_kms::credentials::CredentialsFetcher;

use support::credentials::{ecs_server, CredentialsIo};
use support::pki::Pki;
use support::server::Request;
use support::*;

/// Every variable the AWS chain reads.
const AWS_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

static ENV: Mutex<()> = Mutex::new(());

/// Holds the environment for one test, with no AWS variable set.
fn clean_env() -> MutexGuard<'static, ()> {
    let guard = ENV.lock().unwrap_or_else(|e| e.into_inner());
    for name in AWS_VARS {
        std::env::remove_var(name);
    }
    guard
}

// With `aws-sdk`, aws-config's chain replaces the built-in one, and its errors read differently:
// kms/tests/credentials_aws_sdk.rs covers that chain.
#[cfg(not(feature = "aws-sdk"))]
#[test]
fn credentials_aws_from_process_environment() {
    let _env = clean_env();
    std::env::set_var("AWS_ACCESS_KEY_ID", "processAccessKey");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "processSecret");
    let fetcher = CredentialsFetcher::new(["aws"]);
    assert_eq!(
        fetcher.fetch().unwrap(),
        doc! { "aws": { "accessKeyId": "processAccessKey", "secretAccessKey": "processSecret" } }
    );

    std::env::set_var("AWS_SESSION_TOKEN", "processToken");
    assert_eq!(fetcher.fetch().unwrap().get_document("aws").unwrap().get_str("sessionToken").unwrap(), "processToken");

    // An empty variable counts as unset: the chain goes on, here to ECS, whose failure ends it.
    std::env::set_var("AWS_ACCESS_KEY_ID", "");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    std::env::set_var("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("http://{closed}/creds"));
    let err = fetcher.fetch().unwrap_err();
    assert!(matches!(err.kind(), CredentialsErrorKind::NoAwsCredentials { .. }), "{err}");
    assert!(err.to_string().contains("environment: AWS_ACCESS_KEY_ID is not set; web identity not configured; ECS: "));
}

fn assert_signed_with_ecs_credentials(requests: &[Request]) {
    assert_eq!(requests.len(), 1, "{requests:?}");
    let authorization = requests[0].header("Authorization").unwrap();
    assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=ASIAECSFULLURI/"), "{authorization}");
    assert_eq!(requests[0].header("X-Amz-Security-Token"), Some("ecsSessionToken"));
}

fn assert_aws_key(key: Option<RawDocumentBuf>) {
    let key = Document::try_from(key.expect("a key document").as_ref()).unwrap();
    assert_eq!(key.get_document("masterKey").unwrap().get_str("provider").unwrap(), "aws");
}

/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` on loopback and no other AWS variable: the default fetcher of an on-demand
/// `aws` provider gets the ECS credentials, and the KMS request libmongocrypt signs names their access key id.
#[test]
fn credentials_ecs_full_uri_sign_the_kms_request() {
    let _env = clean_env();
    let ecs = ecs_server("ASIAECSFULLURI");
    std::env::set_var("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("http://{}/v2/credentials", ecs.addr()));

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
    assert_aws_key(run(&mut ctx, &io).unwrap());
    assert_signed_with_ecs_credentials(&kms.stop());
    let requests = ecs.stop();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].request_line(), "GET /v2/credentials HTTP/1.1");
}

#[cfg(feature = "tokio")]
mod async_run {
    use super::*;
    use libmongocrypt::state_machine::run_async;

    /// The same as [`credentials_ecs_full_uri_sign_the_kms_request`], through `run_async` and the async fetch. A
    /// plain test that builds its runtime: the environment lock is held by the test, not across an await.
    #[test]
    fn credentials_ecs_full_uri_sign_the_kms_request_async() {
        let _env = clean_env();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(ecs_full_uri_async());
    }

    async fn ecs_full_uri_async() {
        let ecs = ecs_server("ASIAECSFULLURI");
        std::env::set_var("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("http://{}/v2/credentials", ecs.addr()));

        let pki = Pki::new("mock CA");
        let kms = tls_kms(&pki, false, 0, aws_replies);
        let providers = KmsProviders::new().on_demand("aws");
        let crypt =
            Crypt::builder().kms_providers(&providers).unwrap().use_need_kms_credentials_state().build().unwrap();
        let io = CredentialsIo {
            kms: transport_to(&pki, kms.addr()).build().unwrap(),
            credentials: CredentialsFetcher::for_kms_providers(&providers),
        };
        let kek = KeyEncryptionKey::aws("aws", "us-east-1", AWS_KEY_ARN);
        let mut ctx = crypt.ctx().key_encryption_key(&kek).unwrap().datakey().unwrap();
        // Spawned: the run's future is Send.
        let (key, _ctx, io) = tokio::spawn(async move {
            let key = run_async(&mut ctx, &io, tokio::time::sleep).await;
            (key, ctx, io)
        })
        .await
        .unwrap();
        assert_aws_key(key.unwrap());
        drop(io);
        assert_signed_with_ecs_credentials(&kms.stop());
        assert_eq!(ecs.stop().len(), 1);
    }
}
