//! KMS retries per provider (AWS, Azure, GCP) over TLS, against the loopback KMS of `kms/tests/support/server.rs`: a
//! network error then success, HTTP 429 and 503 then success, and retries exhausted, through
//! `KmsTransport::serve` and the state-machine runner. Retries need libmongocrypt ≥ 1.17 through this transport
//! (`feed_with_retry`; `support::retries`); before, the same cases check that one attempt is made and its error
//! returned. (KMIP requests are not retried by libmongocrypt over HTTP status; a KMIP server is not part of this
//! suite.)

use crate::support;

use bson::{doc, Document};
use libmongocrypt::state_machine::{run, RunError};
use libmongocrypt::{Crypt, Ctx, KeyEncryptionKey, KmsProviders, State};
use libmongocrypt_kms::tls::{enable_retries, KmsIoError, KmsTransport};

use support::pki::Pki;
use support::server::{self, Reply, Request};
use support::*;

/// 96 bytes of 0x42 in base64 (no `+` or `/`, so base64url too), as every mock KMS returns them wrapped: at least
/// as long as the key material, which libmongocrypt checks.
fn wrapped() -> String {
    "QkJC".repeat(32)
}

#[derive(Clone, Copy, Debug)]
enum Provider {
    Aws,
    Azure,
    Gcp,
}

impl Provider {
    /// The providers to test with the linked library. Azure and GCP are configured with access tokens, which the
    /// retry-capable libraries (≥ 1.17, `support::retries`) use as given; older ones (1.7.2) still send an OAuth
    /// request to login.microsoftonline.com or oauth2.googleapis.com first, which these mocks do not serve. AWS,
    /// whose credentials sign the request itself, runs everywhere.
    fn all() -> Vec<Provider> {
        if retries() {
            vec![Provider::Aws, Provider::Azure, Provider::Gcp]
        } else {
            vec![Provider::Aws]
        }
    }

    fn name(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Azure => "azure",
            Provider::Gcp => "gcp",
        }
    }

    fn endpoint(self) -> &'static str {
        match self {
            Provider::Aws => "kms.us-east-1.amazonaws.com:443",
            Provider::Azure => "mock.vault.azure.net:443",
            Provider::Gcp => "cloudkms.googleapis.com:443",
        }
    }

    fn kek(self) -> KeyEncryptionKey {
        match self {
            Provider::Aws => KeyEncryptionKey::aws("aws", "us-east-1", AWS_KEY_ARN),
            Provider::Azure => KeyEncryptionKey::azure("azure", "mock.vault.azure.net", "mock-key"),
            Provider::Gcp => KeyEncryptionKey::gcp("gcp", "mock-project", "global", "mock-ring", "mock-key"),
        }
    }

    /// The provider's successful reply to a key wrap.
    fn success(self) -> Reply {
        let wrapped = wrapped();
        let body = match self {
            Provider::Aws => format!("{{\"CiphertextBlob\": \"{wrapped}\", \"KeyId\": \"{AWS_KEY_ARN}\"}}"),
            Provider::Azure => {
                format!("{{\"kid\": \"https://mock.vault.azure.net/keys/mock-key/1\", \"value\": \"{wrapped}\"}}")
            }
            Provider::Gcp => format!(
                "{{\"name\": \"projects/mock-project/locations/global/keyRings/mock-ring/cryptoKeys/mock-key\", \
                 \"ciphertext\": \"{wrapped}\"}}"
            ),
        };
        Reply::Bytes(server::http(200, &body))
    }
}

/// Azure and GCP with access tokens given: no OAuth request, only the key wrap.
fn crypt() -> Crypt {
    let providers = KmsProviders::new()
        .aws("aws", "example", "example", None)
        .provider("azure", doc! { "accessToken": "mock-azure-token" })
        .provider("gcp", doc! { "accessToken": "mock-gcp-token" });
    enable_retries(Crypt::builder().kms_providers(&providers).unwrap()).unwrap().build().unwrap()
}

fn datakey_ctx(crypt: &Crypt, provider: Provider) -> Ctx {
    crypt.ctx().key_encryption_key(&provider.kek()).unwrap().datakey().unwrap()
}

fn by_hand(ctx: &mut Ctx, transport: &KmsTransport) -> Result<Document, KmsIoError> {
    loop {
        match ctx.state() {
            State::NeedKms => transport.serve_and_done(ctx.kms_scope().unwrap())?,
            State::Ready => return Ok(Document::try_from(ctx.finalize_owned().unwrap().as_ref()).unwrap()),
            other => panic!("unexpected state {other:?}: {:?}", ctx.status()),
        }
    }
}

fn assert_key(key: &Document, provider: Provider) {
    assert_eq!(key.get_binary_generic("keyMaterial").unwrap(), &vec![0x42u8; 96], "{provider:?}");
    assert!(key.get_document("masterKey").unwrap().get_str("provider").unwrap().starts_with(provider.name()));
}

/// Serves `first` on the first connection, then the provider's success; checks the outcome through both faces.
fn first_then_success(what: &str, first: Reply) {
    for provider in Provider::all() {
        for runner in [false, true] {
            let pki = Pki::new("mock CA");
            let first = first.clone();
            let kms = tls_kms(
                &pki,
                false,
                0,
                move |r: &Request| if r.conn == 0 { first.clone() } else { provider.success() },
            );
            let transport = transport_to(&pki, kms.addr()).build().unwrap();
            let crypt = crypt();
            let mut ctx = datakey_ctx(&crypt, provider);
            let context = format!("{what}, {provider:?}, runner={runner}");
            if runner {
                let result = run(&mut ctx, &ExampleIo::new(transport));
                if retries() {
                    assert_key(&Document::try_from(result.unwrap().unwrap().as_ref()).unwrap(), provider);
                } else {
                    let err = result.unwrap_err();
                    assert!(err.to_string().contains(provider.endpoint()), "{context}: {err}");
                }
            } else {
                let result = by_hand(&mut ctx, &transport);
                if retries() {
                    assert_key(&result.unwrap(), provider);
                } else {
                    let err = result.unwrap_err();
                    assert_eq!((err.endpoint(), err.attempts()), (provider.endpoint(), 1), "{context}: {err}");
                }
            }
            let requests = kms.stop();
            assert_eq!(requests.len(), if retries() { 2 } else { 1 }, "{context}");
            // The same request again.
            if retries() {
                assert_eq!(requests[0].request_line(), requests[1].request_line(), "{context}");
            }
        }
    }
}

#[test]
fn a_network_error_then_success() {
    // The connection closes after 10 bytes of the reply.
    let cut = Reply::CutOff(server::http(200, "{\"unfinished\": true}"), 10);
    first_then_success("network error", cut);
}

#[test]
fn http_429_then_success() {
    first_then_success("429", Reply::Bytes(server::http(429, "{\"error\": \"throttled\"}")));
}

#[test]
fn http_503_then_success() {
    first_then_success("503", Reply::Bytes(server::http(503, "{\"error\": \"unavailable\"}")));
}

#[test]
fn retries_exhausted_give_a_clear_error() {
    let attempts = if retries() { 4 } else { 1 };
    for provider in Provider::all() {
        // Network errors, every time.
        let pki = Pki::new("mock CA");
        let kms = tls_kms(&pki, false, 0, |_| Reply::CutOff(server::http(200, "{}"), 12));
        let transport = transport_to(&pki, kms.addr()).build().unwrap();
        let crypt = crypt();
        let err = by_hand(&mut datakey_ctx(&crypt, provider), &transport).unwrap_err();
        assert_eq!((err.endpoint(), err.provider(), err.attempts()), (provider.endpoint(), provider.name(), attempts));
        let text = err.to_string();
        assert!(text.contains("closed the connection before sending a complete reply (12 bytes received)"), "{text}");
        if retries() {
            assert!(text.contains("failed after 4 attempts"), "{text}");
        }
        // Through the runner: the same error as the source of RunError::Io.
        let err = run(&mut datakey_ctx(&crypt, provider), &ExampleIo::new(transport)).unwrap_err();
        let RunError::Io { source, .. } = &err else { panic!("{provider:?}: not an I/O error: {err}") };
        let source = source.downcast_ref::<KmsIoError>().expect("a KmsIoError");
        assert_eq!((source.endpoint(), source.attempts()), (provider.endpoint(), attempts), "{err}");
        assert_eq!(kms.stop().len(), 2 * attempts as usize, "{provider:?}");

        // A retryable status, every time: the last status, with the attempts.
        let kms = tls_kms(&pki, false, 0, |_| Reply::Bytes(server::http(503, "{\"error\": \"unavailable\"}")));
        let transport = transport_to(&pki, kms.addr()).build().unwrap();
        let err = by_hand(&mut datakey_ctx(&crypt, provider), &transport).unwrap_err();
        assert_eq!(
            (err.endpoint(), err.http_status(), err.attempts()),
            (provider.endpoint(), Some(503), attempts),
            "{err}"
        );
        assert!(err.to_string().contains("HTTP status 503"), "{err}");
        assert_eq!(kms.stop().len(), attempts as usize, "{provider:?}");
    }
}
