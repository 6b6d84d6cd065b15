//! On-demand AWS credentials from the real process environment. Alone in its test binary, so that setting the
//! variables races with no other test.
#![cfg(feature = "kms-tls")]

use bson::doc;
use mongocrypt::kms_credentials::{CredentialsErrorKind, CredentialsFetcher};

#[test]
fn credentials_aws_from_process_environment() {
    std::env::set_var("AWS_ACCESS_KEY_ID", "processAccessKey");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "processSecret");
    std::env::remove_var("AWS_SESSION_TOKEN");
    let fetcher = CredentialsFetcher::new(["aws"]);
    assert_eq!(
        fetcher.fetch().unwrap(),
        doc! { "aws": { "accessKeyId": "processAccessKey", "secretAccessKey": "processSecret" } }
    );

    std::env::set_var("AWS_SESSION_TOKEN", "processToken");
    assert_eq!(fetcher.fetch().unwrap().get_document("aws").unwrap().get_str("sessionToken").unwrap(), "processToken");

    // An empty variable counts as unset.
    std::env::set_var("AWS_ACCESS_KEY_ID", "");
    let err = fetcher.fetch().unwrap_err();
    assert!(matches!(err.kind(), CredentialsErrorKind::MissingEnvironment("AWS_ACCESS_KEY_ID")), "{err}");

    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        std::env::remove_var(name);
    }
}
