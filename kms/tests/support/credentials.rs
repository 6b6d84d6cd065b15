//! The driver of the on-demand credentials tests: data keys whose KMS requests go over TLS to a loopback KMS and
//! whose credentials come from a [`CredentialsFetcher`], blocking and (feature `tokio`) async, and an ECS-style
//! credentials endpoint on loopback.

use std::time::{Duration, SystemTime};

use bson::{RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{IoResult, StateMachineIo};
use libmongocrypt::KmsCtx;
use libmongocrypt_kms::credentials::CredentialsFetcher;
use libmongocrypt_kms::tls::KmsTransport;

use super::server::{self, MockServer, Options, Reply};

/// An ECS credentials endpoint on loopback, serving `access_key_id` with a secret, a session token
/// (`ecsSessionToken`) and an expiration an hour away.
pub fn ecs_server(access_key_id: &str) -> MockServer {
    let expiration = libmongocrypt::bson::DateTime::from_system_time(SystemTime::now() + Duration::from_secs(3600));
    let body = format!(
        r#"{{"AccessKeyId": "{access_key_id}", "SecretAccessKey": "ecsSecret", "Token": "ecsSessionToken", "Expiration": "{}"}}"#,
        expiration.try_to_rfc3339_string().unwrap()
    );
    MockServer::start(Options::default(), move |_| Reply::Bytes(server::http(200, &body)))
}

/// A data-key driver: KMS over TLS, credentials from the fetcher.
pub struct CredentialsIo {
    pub kms: KmsTransport,
    pub credentials: CredentialsFetcher,
}

impl StateMachineIo for CredentialsIo {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("no mongod".into())
    }

    fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err("no mongocryptd".into())
    }

    fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("no key vault".into())
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.kms.kms_request(kms)
    }

    fn kms_credentials(&self) -> IoResult<RawDocumentBuf> {
        self.credentials.kms_credentials()
    }
}

/// The same, with the async credentials fetch (the blocking KMS transport is enough for these tests).
#[cfg(feature = "tokio")]
impl libmongocrypt::state_machine::AsyncStateMachineIo for CredentialsIo {
    async fn list_collections(&self, db: Option<&str>, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        StateMachineIo::list_collections(self, db, filter)
    }

    async fn mark_command(&self, command: &RawDocument) -> IoResult<RawDocumentBuf> {
        StateMachineIo::mark_command(self, command)
    }

    async fn find_keys(&self, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        StateMachineIo::find_keys(self, filter)
    }

    async fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        StateMachineIo::kms_request(self, kms)
    }

    async fn kms_credentials(&self) -> IoResult<RawDocumentBuf> {
        self.credentials.kms_credentials_async().await
    }
}
