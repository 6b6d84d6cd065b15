//! Feature `aws-sdk`: the AWS step of the chain is `aws-config`'s default credential chain (environment, profile
//! files, web identity, ECS, IMDS, as the AWS SDKs order them). It does its own I/O, so both faces only run its
//! future: the async face awaits it on the current tokio runtime, the blocking face on a small current-thread
//! runtime of its own. Its HTTPS client is `aws-smithy-http-client` on rustls with ring (no aws-lc-sys).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use zeroize::Zeroizing;

use super::{AwsCredentials, CredentialsErrorKind};

/// The SDK's chain, bounded by `timeout`; needs a tokio runtime with I/O and time.
pub(crate) async fn credentials(timeout: Duration) -> Result<AwsCredentials, CredentialsErrorKind> {
    let timeout = super::within_operation(timeout);
    let sdk = async {
        let http_client =
            aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
        let config = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client).load().await;
        let provider = config
            .credentials_provider()
            .ok_or_else(|| sdk_error("the SDK configured no credentials provider".into()))?;
        let credentials = provider.provide_credentials().await.map_err(|e| sdk_error(with_sources(&e)))?;
        Ok(AwsCredentials::from_parts(
            Zeroizing::new(credentials.access_key_id().to_owned()),
            Zeroizing::new(credentials.secret_access_key().to_owned()),
            credentials.session_token().map(|token| Zeroizing::new(token.to_owned())),
            credentials.expiry(),
        ))
    };
    match tokio::time::timeout(timeout, sdk).await {
        Ok(result) => result,
        Err(_) => Err(CredentialsErrorKind::Timeout { url: "the AWS SDK's credential chain".into(), after: timeout }),
    }
}

/// [`credentials`] for the blocking face: on a current-thread runtime of its own, on a scoped thread when the
/// caller is itself inside a tokio runtime (where a runtime cannot be blocked on).
pub(crate) fn credentials_blocking(timeout: Duration) -> Result<AwsCredentials, CredentialsErrorKind> {
    let run = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| sdk_error(format!("cannot start a runtime for the AWS SDK: {e}")))?
            .block_on(credentials(timeout))
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|scope| match std::thread::Builder::new().spawn_scoped(scope, run) {
            Ok(thread) => thread.join().unwrap_or_else(|_| Err(sdk_error("the AWS SDK's thread panicked".into()))),
            Err(e) => Err(sdk_error(format!("cannot start a thread for the AWS SDK: {e}"))),
        })
    } else {
        run()
    }
}

fn sdk_error(message: String) -> CredentialsErrorKind {
    CredentialsErrorKind::AwsSdk(message)
}

/// An error and its sources, as one line: the SDK's errors say little at the top.
fn with_sources(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
