//! On-demand KMS credentials (NEED_KMS_CREDENTIALS) against mock metadata endpoints on loopback: AWS from an
//! environment lookup, GCP and Azure from plain-HTTP token endpoints, then the KMS request over TLS with those
//! credentials. Every server listens on 127.0.0.1 only, is bounded, and stops by itself.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Document, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{run, IoKind, IoResult, RunError, Runner, StateMachineIo};
use libmongocrypt::{Crypt, KeyEncryptionKey, KmsCtx, KmsProviders, State};
use libmongocrypt_kms::credentials::{on_demand_providers, CredentialsErrorKind, CredentialsFetcher};
use libmongocrypt_kms::tls::KmsTransport;

use support::pki::Pki;
use support::server::{self, MockServer, Options, Reply, Request};
use support::*;

const GCP_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
const AZURE_PATH: &str = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net";

fn metadata_server(responder: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> MockServer {
    MockServer::start(Options::default(), responder)
}

fn token_reply(token: &str, expires_in: &str) -> Reply {
    Reply::Bytes(server::http(
        200,
        &format!("{{\"access_token\": \"{token}\", \"expires_in\": {expires_in}, \"token_type\": \"Bearer\"}}"),
    ))
}

fn aws_env(name: &str) -> Option<String> {
    match name {
        "AWS_ACCESS_KEY_ID" => Some("envAccessKey".into()),
        "AWS_SECRET_ACCESS_KEY" => Some("envSecret".into()),
        "AWS_SESSION_TOKEN" => Some("envSessionToken".into()),
        _ => None,
    }
}

#[test]
fn credentials_gcp_from_metadata_server() {
    let metadata = metadata_server(|_| token_reply("gcp-token", "3599"));
    let fetcher = CredentialsFetcher::new(["gcp"]).gcp_endpoint(format!("http://{}{GCP_PATH}", metadata.addr()));
    assert_eq!(fetcher.fetch().unwrap(), doc! { "gcp": { "accessToken": "gcp-token" } });
    // Not cached: each fetch asks again.
    fetcher.fetch().unwrap();
    let requests = metadata.stop();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].request_line(), format!("GET {GCP_PATH} HTTP/1.1"));
    assert_eq!(requests[0].header("Metadata-Flavor"), Some("Google"));
}

#[test]
fn credentials_azure_token_cached_until_expiry() {
    let served = Arc::new(AtomicUsize::new(0));
    let metadata = {
        let served = served.clone();
        metadata_server(move |_| {
            let n = served.fetch_add(1, Ordering::SeqCst);
            // Azure sends expires_in as a string; the first token lives one second.
            token_reply(&format!("azure-token-{n}"), if n == 0 { "\"1\"" } else { "\"3600\"" })
        })
    };
    let fetcher = CredentialsFetcher::new(["azure"])
        .azure_endpoint(format!("http://{}{AZURE_PATH}", metadata.addr()))
        .azure_refresh_margin(Duration::ZERO);
    let token = |f: &CredentialsFetcher| {
        f.fetch().unwrap().get_document("azure").unwrap().get_str("accessToken").unwrap().to_owned()
    };

    assert_eq!(token(&fetcher), "azure-token-0");
    assert_eq!(token(&fetcher), "azure-token-0", "cached while valid");
    assert_eq!(served.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(token(&fetcher), "azure-token-1", "fetched anew after expires_in");
    assert_eq!(token(&fetcher), "azure-token-1");
    fetcher.clear_cache();
    assert_eq!(token(&fetcher), "azure-token-2", "fetched anew after clear_cache");

    // With the default margin of one minute, a token that expires within the minute is never reused.
    let short = CredentialsFetcher::new(["azure"]).azure_endpoint(format!("http://{}{AZURE_PATH}", metadata.addr()));
    served.store(0, Ordering::SeqCst); // the next token lives 1 s
    token(&short);
    token(&short);
    let requests = metadata.stop();
    assert_eq!(requests.len(), 5);
    for request in &requests {
        assert_eq!(request.request_line(), format!("GET {AZURE_PATH} HTTP/1.1"));
        assert_eq!(request.header("Metadata"), Some("true"));
    }
}

#[test]
fn credentials_aws_from_environment_lookup() {
    let fetcher = CredentialsFetcher::new(["aws"]).env(aws_env);
    assert_eq!(
        fetcher.fetch().unwrap(),
        doc! { "aws": { "accessKeyId": "envAccessKey", "secretAccessKey": "envSecret", "sessionToken": "envSessionToken" } }
    );
    // A partial environment is skipped (and named), and the chain goes on to EC2: here, nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = CredentialsFetcher::new(["aws"])
        .env(|name| (name == "AWS_ACCESS_KEY_ID").then(|| "id".to_owned()))
        .aws_imds_endpoint(format!("http://{closed}"))
        .fetch()
        .unwrap_err();
    assert!(matches!(err.kind(), CredentialsErrorKind::NoAwsCredentials { .. }), "{err}");
    assert!(err.to_string().contains("environment: AWS_SECRET_ACCESS_KEY is not set; "), "{err}");
    assert_eq!(err.provider(), "aws");
}

#[test]
fn credentials_only_for_providers_configured_empty() {
    let providers = KmsProviders::new().aws("aws", "id", "secret", None).on_demand("gcp").local("local", &[0; 96]);
    assert_eq!(on_demand_providers(&providers), ["gcp"]);
    let metadata = metadata_server(|_| token_reply("only-gcp", "3599"));
    let fetcher = CredentialsFetcher::for_kms_providers(&providers)
        .gcp_endpoint(format!("http://{}{GCP_PATH}", metadata.addr()))
        .env(|_| panic!("AWS credentials are configured: the environment must not be read"));
    assert_eq!(fetcher.providers(), ["gcp"]);
    assert_eq!(fetcher.fetch().unwrap(), doc! { "gcp": { "accessToken": "only-gcp" } });
    assert_eq!(metadata.stop().len(), 1);
}

#[test]
fn credentials_errors_name_provider_and_url() {
    // An error status, with the body.
    let metadata = metadata_server(|_| Reply::Bytes(server::http(500, "{\"error\": \"no identity\"}")));
    let url = format!("http://{}{AZURE_PATH}", metadata.addr());
    let err = CredentialsFetcher::new(["azure"]).azure_endpoint(&url).fetch().unwrap_err();
    assert!(matches!(err.kind(), CredentialsErrorKind::Http { status: 500, .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("azure") && text.contains(&url) && text.contains("no identity"), "{text}");
    drop(metadata);

    // Not JSON, and no token.
    let metadata = metadata_server(|r| {
        Reply::Bytes(server::http(200, if r.conn == 0 { "<html>" } else { "{\"token_type\": \"Bearer\"}" }))
    });
    let fetcher = CredentialsFetcher::new(["gcp"]).gcp_endpoint(format!("http://{}{GCP_PATH}", metadata.addr()));
    let err = fetcher.fetch().unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");
    let err = fetcher.fetch().unwrap_err();
    assert!(err.to_string().contains("no access_token"), "{err}");
    drop(metadata);

    // A reply cut off in its body.
    let metadata =
        metadata_server(|_| Reply::CutOff(server::http(200, "{\"access_token\": \"tok\", \"expires_in\": 3599}"), 80));
    let err = CredentialsFetcher::new(["gcp"])
        .gcp_endpoint(format!("http://{}{GCP_PATH}", metadata.addr()))
        .fetch()
        .unwrap_err();
    assert!(
        matches!(err.kind(), CredentialsErrorKind::Io { .. } | CredentialsErrorKind::Reply { .. }),
        "a reply cut off in its body: {err}"
    );
    drop(metadata);

    // Nothing listening.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = CredentialsFetcher::new(["gcp"]).gcp_endpoint(format!("http://{addr}/token")).fetch().unwrap_err();
    assert!(matches!(err.kind(), CredentialsErrorKind::Connect { .. }), "{err}");

    // Not a URL, not a provider with on-demand credentials.
    let err = CredentialsFetcher::new(["gcp"]).gcp_endpoint("not a url").fetch().unwrap_err();
    assert!(matches!(err.kind(), CredentialsErrorKind::Url(_)), "{err}");
    let err = CredentialsFetcher::new(["local"]).fetch().unwrap_err();
    assert!(matches!(err.kind(), CredentialsErrorKind::Unsupported), "{err}");
}

#[test]
fn credentials_timeout_stalled_metadata_server() {
    let metadata = metadata_server(|_| Reply::Stall(Duration::from_secs(20)));
    let timeout = Duration::from_millis(300);
    let fetcher =
        CredentialsFetcher::new(["gcp"]).gcp_endpoint(format!("http://{}{GCP_PATH}", metadata.addr())).timeout(timeout);
    let started = Instant::now();
    let err = fetcher.fetch().unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err.kind(), CredentialsErrorKind::Timeout { .. }), "{err}");
    assert!(elapsed >= timeout && elapsed < timeout + Duration::from_secs(2), "took {elapsed:?}");
}

/// The same on the async face: the timeout is tokio's, and the error the same kind.
#[cfg(feature = "tokio")]
#[tokio::test]
async fn credentials_timeout_stalled_metadata_server_async() {
    let metadata = metadata_server(|_| Reply::Stall(Duration::from_secs(20)));
    let timeout = Duration::from_millis(300);
    let fetcher =
        CredentialsFetcher::new(["gcp"]).gcp_endpoint(format!("http://{}{GCP_PATH}", metadata.addr())).timeout(timeout);
    let started = Instant::now();
    let err = fetcher.fetch_async().await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err.kind(), CredentialsErrorKind::Timeout { .. }), "{err}");
    assert!(elapsed >= timeout && elapsed < timeout + Duration::from_secs(2), "took {elapsed:?}");
}

/// Inside a run, the fetch ends by the operation's deadline (300 ms) rather than the fetcher's timeout (20 s): the
/// run fails with its timeout in NEED_KMS_CREDENTIALS, and the ctx is left in ERROR.
#[test]
fn credentials_fetch_ends_by_the_operation_deadline() {
    let metadata = metadata_server(|_| Reply::Stall(Duration::from_secs(20)));
    let providers = KmsProviders::new().on_demand("gcp");
    let io = OnDemandIo {
        kms: KmsTransport::builder().build().unwrap(),
        credentials: CredentialsFetcher::for_kms_providers(&providers)
            .gcp_endpoint(format!("http://{}{GCP_PATH}", metadata.addr()))
            .timeout(Duration::from_secs(20)),
    };
    let crypt = on_demand_crypt(&providers);
    let kek = KeyEncryptionKey::gcp("gcp", "p", "l", "r", "k");
    let mut ctx = crypt.ctx().key_encryption_key(&kek).unwrap().datakey().unwrap();
    let started = Instant::now();
    let err = Runner::new().timeout(Duration::from_millis(300)).run(&mut ctx, &io).unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, RunError::Timeout { state: State::NeedKmsCredentials, io: IoKind::KmsCredentials, .. }),
        "{err}"
    );
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(ctx.state(), State::Error);
}

// ---------------------------------------------------------------------------------------------------------------
// NEED_KMS_CREDENTIALS, end to end: credentials fetched on demand, then the KMS request over TLS.

/// A driver for data keys: no mongod; KMS over TLS; credentials on demand.
struct OnDemandIo {
    kms: KmsTransport,
    credentials: CredentialsFetcher,
}

impl StateMachineIo for OnDemandIo {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("no mongod in this test".into())
    }

    fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err("no mongocryptd in this test".into())
    }

    fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("no key vault in this test".into())
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.kms.kms_request(kms)
    }

    fn kms_credentials(&self) -> IoResult<RawDocumentBuf> {
        self.credentials.kms_credentials()
    }
}

fn on_demand_crypt(providers: &KmsProviders) -> Crypt {
    Crypt::builder().kms_providers(providers).unwrap().use_need_kms_credentials_state().build().unwrap()
}

#[test]
fn credentials_aws_on_demand_datakey_over_tls() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let providers = KmsProviders::new().on_demand("aws");
    let crypt = on_demand_crypt(&providers);
    let credentials = CredentialsFetcher::for_kms_providers(&providers).env(aws_env);
    let transport = transport_to(&pki, kms.addr()).build().unwrap();
    let kek = KeyEncryptionKey::aws("aws", "us-east-1", AWS_KEY_ARN);

    // By hand.
    let mut ctx = crypt.ctx().key_encryption_key(&kek).unwrap().datakey().unwrap();
    assert_eq!(ctx.state(), State::NeedKmsCredentials);
    credentials.provide(&mut ctx).unwrap();
    assert_eq!(ctx.state(), State::NeedKms);
    transport.serve_and_done(ctx.kms_scope().unwrap()).unwrap();
    assert_eq!(ctx.state(), State::Ready);
    let key = Document::try_from(ctx.finalize_owned().unwrap().as_ref()).unwrap();
    assert_eq!(key.get_document("masterKey").unwrap().get_str("provider").unwrap(), "aws");

    // Through the runner.
    let io = OnDemandIo { kms: transport, credentials };
    let mut ctx = crypt.ctx().key_encryption_key(&kek).unwrap().datakey().unwrap();
    run(&mut ctx, &io).unwrap().expect("a key document");

    let requests = kms.stop();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert!(request.header("Authorization").unwrap().contains("Credential=envAccessKey/"), "{request:?}");
        assert_eq!(request.header("X-Amz-Security-Token"), Some("envSessionToken"));
    }
}

#[test]
fn credentials_gcp_and_azure_on_demand_datakeys_over_tls() {
    // 96 bytes of "wrapped" key material, as the mock KMS returns it.
    let wrapped = vec![7u8; 96];
    let standard = base64_standard(&wrapped);
    let url_safe = standard.replace('+', "-").replace('/', "_").trim_end_matches('=').to_owned();

    let pki = Pki::new("mock CA");
    let (gcp_reply, azure_reply) = (
        format!("{{\"name\": \"projects/p/locations/l/keyRings/r/cryptoKeys/k\", \"ciphertext\": \"{standard}\"}}"),
        format!("{{\"kid\": \"https://mock.vault.azure.net/keys/k/1\", \"value\": \"{url_safe}\"}}"),
    );
    let kms = tls_kms(&pki, false, 0, move |r: &Request| {
        if r.header("Host").is_some_and(|h| h.starts_with("cloudkms.googleapis.com")) {
            Reply::Bytes(server::http(200, &gcp_reply))
        } else {
            Reply::Bytes(server::http(200, &azure_reply))
        }
    });
    let metadata = metadata_server(|r| {
        if r.request_line().contains("computeMetadata") {
            token_reply("gcp-on-demand", "3599")
        } else {
            token_reply("azure-on-demand", "\"3600\"")
        }
    });
    let providers = KmsProviders::new().on_demand("gcp").on_demand("azure");
    let crypt = on_demand_crypt(&providers);
    let io = OnDemandIo {
        kms: transport_to(&pki, kms.addr()).build().unwrap(),
        credentials: CredentialsFetcher::for_kms_providers(&providers)
            .gcp_endpoint(format!("http://{}{GCP_PATH}", metadata.addr()))
            .azure_endpoint(format!("http://{}{AZURE_PATH}", metadata.addr())),
    };
    let keks = [
        KeyEncryptionKey::gcp("gcp", "p", "l", "r", "k"),
        KeyEncryptionKey::azure("azure", "mock.vault.azure.net", "k"),
    ];
    for kek in &keks {
        let mut ctx = crypt.ctx().key_encryption_key(kek).unwrap().datakey().unwrap();
        match run(&mut ctx, &io) {
            Ok(key) => {
                let key = Document::try_from(key.unwrap().as_ref()).unwrap();
                assert_eq!(key.get_binary_generic("keyMaterial").unwrap(), &wrapped, "{kek:?}");
            }
            Err(RunError::Mongocrypt(e)) => panic!("{kek:?}: {e}"),
            Err(e) => panic!("{kek:?}: {e}"),
        }
    }
    let requests = kms.stop();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("Authorization"), Some("Bearer gcp-on-demand"));
    assert_eq!(requests[1].header("Authorization"), Some("Bearer azure-on-demand"));
    // Both credentials are fetched for each NEED_KMS_CREDENTIALS (libmongocrypt asks for all on-demand providers);
    // the Azure token comes from the cache the second time.
    let metadata_requests = metadata.stop();
    let gcp = metadata_requests.iter().filter(|r| r.request_line().contains("computeMetadata")).count();
    let azure = metadata_requests.len() - gcp;
    assert_eq!((gcp, azure), (2, 1), "{metadata_requests:?}");
}

fn base64_standard(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
