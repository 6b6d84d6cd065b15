//! The AWS credential chain step by step, against in-process loopback servers playing STS, ECS and EC2 instance
//! metadata (no real one is reachable here). The environment is an injected lookup
//! ([`CredentialsFetcher::env`]), never the process's, so these tests run in parallel.

use crate::support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bson::doc;
use libmongocrypt::KmsProviders;
use libmongocrypt_kms::credentials::{AwsCredentials, AwsStep, CredentialsErrorKind, CredentialsFetcher};

use support::server::{self, MockServer, Options, Reply, Request};

fn serve(responder: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> MockServer {
    MockServer::start(Options::default(), responder)
}

fn ok(body: &str) -> Reply {
    Reply::Bytes(server::http(200, body))
}

/// An environment of these variables only.
fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| vars.get(name).cloned()
}

/// A loopback address where nothing listens.
fn closed_url() -> String {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    format!("http://{addr}")
}

/// A fetcher whose every endpoint is `closed_url()` unless overridden: no test reaches a link-local address.
fn chain(vars: &[(&str, &str)]) -> CredentialsFetcher {
    CredentialsFetcher::new(["aws"])
        .env(env(vars))
        .aws_sts_endpoint(closed_url())
        .aws_ecs_endpoint(closed_url())
        .aws_imds_endpoint(closed_url())
        .timeout(Duration::from_secs(5))
}

fn rfc3339(at: SystemTime) -> String {
    libmongocrypt::bson::DateTime::from_system_time(at).try_to_rfc3339_string().unwrap()
}

fn credentials_json(id: &str, expiration: SystemTime) -> String {
    format!(
        r#"{{"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "{id}", "SecretAccessKey": "secret-{id}", "Token": "token-{id}", "Expiration": "{}"}}"#,
        rfc3339(expiration)
    )
}

fn in_an_hour() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

fn key_id(fetcher: &CredentialsFetcher) -> String {
    fetcher.fetch().unwrap().get_document("aws").unwrap().get_str("accessKeyId").unwrap().to_owned()
}

/// IMDSv2: a session token by PUT, then the role name, then its credentials; every GET must carry the token.
fn imds(role_status: u16) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    move |r: &Request| {
        let line = r.request_line();
        if line.starts_with("PUT /latest/api/token ") {
            assert_eq!(r.header("X-aws-ec2-metadata-token-ttl-seconds"), Some("30"));
            return ok("imds-session-token");
        }
        if r.header("X-aws-ec2-metadata-token") != Some("imds-session-token") {
            return Reply::Bytes(server::http(401, ""));
        }
        match line {
            "GET /latest/meta-data/iam/security-credentials/ HTTP/1.1" => ok("ec2-role\n"),
            "GET /latest/meta-data/iam/security-credentials/ec2-role HTTP/1.1" if role_status == 200 => {
                ok(&credentials_json("ASIAEC2", in_an_hour()))
            }
            _ => Reply::Bytes(server::http(role_status, "")),
        }
    }
}

#[test]
fn aws_environment_only() {
    let metadata = serve(|_| ok(&credentials_json("ASIAECS", in_an_hour())));
    let url = format!("http://{}/creds", metadata.addr());
    let fetcher = chain(&[
        ("AWS_ACCESS_KEY_ID", "AKIAENV"),
        ("AWS_SECRET_ACCESS_KEY", "envSecret"),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
    ])
    .aws_imds_endpoint(format!("http://{}", metadata.addr()));
    assert_eq!(fetcher.fetch().unwrap(), doc! { "aws": { "accessKeyId": "AKIAENV", "secretAccessKey": "envSecret" } });
    assert!(metadata.stop().is_empty(), "the environment comes first: no metadata request");
}

#[test]
fn aws_web_identity_against_mock_sts() {
    let dir = std::env::temp_dir().join(format!("mongocrypt-web-identity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "eyJ.web-identity.token/+\n").unwrap();
    let expiration = SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_800); // 2100
    let sts = serve(move |_| {
        ok(&format!(
            r#"{{"AssumeRoleWithWebIdentityResponse": {{"AssumeRoleWithWebIdentityResult": {{"Credentials": {{"AccessKeyId": "ASIASTS", "SecretAccessKey": "stsSecret", "SessionToken": "stsToken", "Expiration": {}}}}}}}}}"#,
            expiration.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
        ))
    });
    let closed = closed_url();
    let vars = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/web"),
        ("AWS_ROLE_SESSION_NAME", "session-1"),
        // ECS is configured too, but web identity comes first.
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", closed.as_str()),
    ];
    let web = chain(&vars).aws_sts_endpoint(format!("http://{}/", sts.addr()));
    assert_eq!(
        web.fetch().unwrap(),
        doc! { "aws": { "accessKeyId": "ASIASTS", "secretAccessKey": "stsSecret", "sessionToken": "stsToken" } }
    );
    assert_eq!(key_id(&web), "ASIASTS", "cached until its expiration");
    let requests = sts.stop();
    assert_eq!(requests.len(), 1, "the second fetch came from the cache");
    assert_eq!(requests[0].request_line(), "POST / HTTP/1.1");
    assert_eq!(requests[0].header("Accept"), Some("application/json"));
    let body = String::from_utf8(requests[0].body.clone()).unwrap();
    for part in [
        "Action=AssumeRoleWithWebIdentity",
        "Version=2011-06-15",
        "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fweb",
        "RoleSessionName=session-1",
        "WebIdentityToken=eyJ.web-identity.token%2F%2B",
    ] {
        assert!(body.contains(part), "{part} not in {body}");
    }

    // STS refusing: the step and STS's answer, cut short.
    let long = format!("{{\"Error\": {{\"Code\": \"AccessDenied\", \"Message\": \"{}\"}}}}", "x".repeat(2000));
    let sts = serve(move |_| Reply::Bytes(server::http(403, &long)));
    // A new fetcher: the first one's cache would answer.
    let err = chain(&vars).aws_sts_endpoint(format!("http://{}/", sts.addr())).fetch().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err.kind(), CredentialsErrorKind::NoAwsCredentials { step: AwsStep::WebIdentity, .. }), "{text}");
    assert!(text.contains("environment not set; web identity: ") && text.contains("HTTP status 403"), "{text}");
    assert!(text.contains("AccessDenied") && text.len() < 600, "{text}");

    // A token file that does not exist.
    let err =
        chain(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token"), ("AWS_ROLE_ARN", "arn")]).fetch().unwrap_err();
    assert!(err.to_string().contains("web identity: cannot read /nonexistent/token"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn aws_ecs_full_uri_on_loopback() {
    let ecs = serve(|_| ok(&credentials_json("ASIAECS", in_an_hour())));
    let url = format!("http://{}/v2/credentials/full", ecs.addr());
    let fetcher =
        chain(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url), ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth")]);
    assert_eq!(
        fetcher.fetch().unwrap(),
        doc! { "aws": { "accessKeyId": "ASIAECS", "secretAccessKey": "secret-ASIAECS", "sessionToken": "token-ASIAECS" } }
    );
    // `localhost` resolves to both loopback addresses; the server listens on 127.0.0.1 only.
    let url = format!("http://localhost:{}/v2/credentials/full", ecs.addr().port());
    assert_eq!(key_id(&chain(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url)])), "ASIAECS");
    let requests = ecs.stop();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].request_line(), "GET /v2/credentials/full HTTP/1.1");
    assert_eq!(requests[1].header("Authorization"), None);
    assert_eq!(requests[0].header("Authorization"), Some("ecs-auth"));
}

#[test]
fn aws_ecs_relative_uri_and_token_file() {
    let ecs = serve(|_| ok(&credentials_json("ASIAREL", in_an_hour())));
    let token_file = std::env::temp_dir().join(format!("mongocrypt-ecs-token-{}", std::process::id()));
    std::fs::write(&token_file, "from-file\n").unwrap();
    let fetcher = chain(&[
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc"),
        // RELATIVE_URI wins over FULL_URI; the token file over the token.
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &closed_url()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file.to_str().unwrap()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "from-variable"),
    ])
    .aws_ecs_endpoint(format!("http://{}", ecs.addr()));
    assert_eq!(key_id(&fetcher), "ASIAREL");
    let requests = ecs.stop();
    assert_eq!(requests[0].request_line(), "GET /v2/credentials/abc HTTP/1.1");
    assert_eq!(requests[0].header("Authorization"), Some("from-file"));
    std::fs::remove_file(token_file).unwrap();

    // ECS configured and failing ends the chain: EC2 is not tried.
    let ecs = serve(|_| Reply::Bytes(server::http(500, "")));
    let imds_server = serve(imds(200));
    let err = chain(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &format!("http://{}/c", ecs.addr()))])
        .aws_imds_endpoint(format!("http://{}", imds_server.addr()))
        .fetch()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("environment not set; web identity not configured; ECS: "), "{text}");
    assert!(text.ends_with("answered HTTP status 500: (empty body)"), "{text}");
    assert!(imds_server.stop().is_empty());
}

#[test]
fn aws_imds_v2_token_role_credentials() {
    let imds_server = serve(imds(200));
    let fetcher = chain(&[]).aws_imds_endpoint(format!("http://{}", imds_server.addr()));
    assert_eq!(
        fetcher.fetch().unwrap(),
        doc! { "aws": { "accessKeyId": "ASIAEC2", "secretAccessKey": "secret-ASIAEC2", "sessionToken": "token-ASIAEC2" } }
    );
    let lines: Vec<_> = imds_server.stop().iter().map(|r| r.request_line().to_owned()).collect();
    assert_eq!(
        lines,
        [
            "PUT /latest/api/token HTTP/1.1",
            "GET /latest/meta-data/iam/security-credentials/ HTTP/1.1",
            "GET /latest/meta-data/iam/security-credentials/ec2-role HTTP/1.1",
        ]
    );
}

#[test]
fn aws_imds_failures_name_the_step() {
    // No session token (IMDSv2 refused): the PUT's error, and the empty body says so.
    let imds_server = serve(|_| Reply::Bytes(server::http(403, "")));
    let base = format!("http://{}", imds_server.addr());
    let err = chain(&[]).aws_imds_endpoint(&base).fetch().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "on-demand aws KMS credentials: no AWS credentials: environment not set; web identity not configured; \
             ECS not configured; EC2 instance metadata: {base}/latest/api/token answered HTTP status 403: (empty body)"
        )
    );
    let CredentialsErrorKind::NoAwsCredentials { skipped, step, .. } = err.kind() else { panic!("{err}") };
    assert_eq!(*step, AwsStep::Ec2);
    assert_eq!(
        skipped.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [AwsStep::Environment, AwsStep::WebIdentity, AwsStep::Ecs]
    );
    drop(imds_server);

    // An empty token.
    let imds_server = serve(|_| ok(""));
    let err = chain(&[]).aws_imds_endpoint(format!("http://{}", imds_server.addr())).fetch().unwrap_err();
    assert!(err.to_string().ends_with("/latest/api/token: empty session token"), "{err}");
    drop(imds_server);

    // A 404 role.
    let imds_server = serve(imds(404));
    let base = format!("http://{}", imds_server.addr());
    let err = chain(&[]).aws_imds_endpoint(&base).fetch().unwrap_err();
    assert!(
        err.to_string().ends_with(&format!(
            "EC2 instance metadata: {base}/latest/meta-data/iam/security-credentials/ec2-role answered HTTP status 404: (empty body)"
        )),
        "{err}"
    );
    drop(imds_server);

    // Unreachable.
    let base = closed_url();
    let err = chain(&[]).aws_imds_endpoint(&base).fetch().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("ECS not configured; EC2 instance metadata: cannot connect to {base}/latest/api/token")),
        "{text}"
    );

    // A partial environment is named, and the chain goes on.
    let err = chain(&[("AWS_ACCESS_KEY_ID", "AKIA")]).aws_imds_endpoint(&base).fetch().unwrap_err();
    assert!(err.to_string().contains("no AWS credentials: environment: AWS_SECRET_ACCESS_KEY is not set; "), "{err}");
}

#[test]
fn aws_expiry_and_refresh() {
    let served = Arc::new(AtomicUsize::new(0));
    let ecs = {
        let served = served.clone();
        serve(move |_| {
            let n = served.fetch_add(1, Ordering::SeqCst);
            // The first credentials expire in two seconds, the next in an hour.
            let expires = if n == 0 { Duration::from_secs(2) } else { Duration::from_secs(3600) };
            ok(&credentials_json(&format!("ASIA{n}"), SystemTime::now() + expires))
        })
    };
    let url = format!("http://{}/c", ecs.addr());
    let fetcher = chain(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url)]).aws_refresh_margin(Duration::ZERO);
    assert_eq!(key_id(&fetcher), "ASIA0");
    assert_eq!(key_id(&fetcher), "ASIA0", "cached while valid");
    assert_eq!(served.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(key_id(&fetcher), "ASIA1", "fetched anew after Expiration");
    assert_eq!(key_id(&fetcher), "ASIA1");
    fetcher.clear_cache();
    assert_eq!(key_id(&fetcher), "ASIA2", "fetched anew after clear_cache");

    // The default margin is five minutes: credentials expiring sooner are never reused.
    served.store(0, Ordering::SeqCst);
    let fetcher = fetcher_for(&url);
    assert_eq!(key_id(&fetcher), "ASIA0");
    assert_eq!(key_id(&fetcher), "ASIA1", "inside the default margin: fetched again");
    assert_eq!(key_id(&fetcher), "ASIA1", "an hour left: cached");
    assert_eq!(ecs.stop().len(), 5);
}

fn fetcher_for(full_uri: &str) -> CredentialsFetcher {
    chain(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", full_uri)])
}

#[test]
fn aws_custom_provider_replaces_the_chain() {
    let metadata = serve(|_| ok(&credentials_json("ASIAECS", in_an_hour())));
    let calls = Arc::new(AtomicUsize::new(0));
    let fetcher = {
        let calls = calls.clone();
        chain(&[
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "envSecret"),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &format!("http://{}/c", metadata.addr())),
        ])
        .aws_imds_endpoint(format!("http://{}", metadata.addr()))
        .aws_credential_provider(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(AwsCredentials::new("AKIACUSTOM", "customSecret")
                .with_session_token("customToken")
                .with_expiration(in_an_hour()))
        })
    };
    assert_eq!(
        fetcher.fetch().unwrap(),
        doc! { "aws": { "accessKeyId": "AKIACUSTOM", "secretAccessKey": "customSecret", "sessionToken": "customToken" } }
    );
    fetcher.fetch().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "a custom provider's credentials are not cached");
    assert!(metadata.stop().is_empty(), "neither the environment nor ECS nor EC2 was asked");

    let err =
        CredentialsFetcher::new(["aws"]).aws_credential_provider(|| Err("vault sealed".into())).fetch().unwrap_err();
    assert!(matches!(err.kind(), CredentialsErrorKind::AwsProvider(_)), "{err}");
    assert!(err.to_string().ends_with("the custom AWS credential provider failed: vault sealed"), "{err}");
}

#[test]
fn named_providers_are_refused_on_demand() {
    let providers = KmsProviders::new().on_demand("aws:acct");
    let fetcher = CredentialsFetcher::for_kms_providers(&providers).env(env(&[]));
    let err = fetcher.fetch().unwrap_err();
    assert!(matches!(err.kind(), CredentialsErrorKind::Unsupported), "{err}");
    assert_eq!(err.provider(), "aws:acct");
    assert!(err.to_string().contains("never a named provider"), "{err}");
    for name in ["gcp:x", "azure:y", "kmip", "local"] {
        let err = CredentialsFetcher::new([name]).fetch().unwrap_err();
        assert!(matches!(err.kind(), CredentialsErrorKind::Unsupported), "{name}: {err}");
    }
}

#[cfg(feature = "tokio")]
mod async_fetch {
    use super::*;
    use libmongocrypt::state_machine::IoError;
    use libmongocrypt_kms::credentials::{AwsCredentialProvider, AwsCredentialsFuture};

    #[tokio::test]
    async fn aws_imds_async_on_a_current_thread_runtime() {
        let imds_server = serve(imds(200));
        let fetcher = chain(&[]).aws_imds_endpoint(format!("http://{}", imds_server.addr()));
        let document = fetcher.fetch_async().await.unwrap();
        assert_eq!(document.get_document("aws").unwrap().get_str("accessKeyId").unwrap(), "ASIAEC2");
        // The same cache as the blocking face.
        assert_eq!(key_id(&fetcher), "ASIAEC2");
        assert_eq!(imds_server.stop().len(), 3);
    }

    #[tokio::test]
    async fn aws_failure_async_is_the_same_error() {
        let imds_server = serve(imds(404));
        let fetcher = chain(&[]).aws_imds_endpoint(format!("http://{}", imds_server.addr()));
        let blocking = fetcher.fetch().unwrap_err().to_string();
        let async_error = fetcher.fetch_async().await.unwrap_err().to_string();
        assert_eq!(blocking, async_error);
        assert!(async_error.contains("404: (empty body)"), "{async_error}");
    }

    /// Outside any tokio runtime (here polled by hand, as another executor would), the async fetch still works.
    #[test]
    fn aws_imds_async_without_a_tokio_runtime() {
        let imds_server = serve(imds(200));
        let fetcher = chain(&[]).aws_imds_endpoint(format!("http://{}", imds_server.addr()));
        let mut future = std::pin::pin!(fetcher.fetch_async());
        let waker = std::task::Waker::noop();
        let document = loop {
            if let std::task::Poll::Ready(result) =
                std::future::Future::poll(future.as_mut(), &mut std::task::Context::from_waker(waker))
            {
                break result.unwrap();
            }
        };
        assert_eq!(document.get_document("aws").unwrap().get_str("accessKeyId").unwrap(), "ASIAEC2");
        assert_eq!(imds_server.stop().len(), 3);
    }

    /// The async fetch does not wait on tokio's blocking pool: on a current-thread runtime whose one blocking
    /// thread is held until the fetch has ended, the three IMDSv2 requests still complete (a fetch that sent them
    /// with `spawn_blocking` would queue behind the held thread and time out here).
    #[test]
    fn aws_imds_async_does_not_use_the_blocking_pool() {
        let imds_server = serve(imds(200));
        let fetcher = chain(&[]).aws_imds_endpoint(format!("http://{}", imds_server.addr()));
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(1).build().unwrap();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, has_started) = std::sync::mpsc::channel::<()>();
        let document = runtime.block_on(async {
            let blocker = tokio::task::spawn_blocking(move || {
                started.send(()).unwrap();
                held.recv_timeout(Duration::from_secs(30))
            });
            has_started.recv_timeout(Duration::from_secs(10)).expect("the blocking pool's thread started");
            let fetched = tokio::time::timeout(Duration::from_secs(10), fetcher.fetch_async()).await;
            release.send(()).unwrap();
            // The blocking thread was held for the whole fetch: released by us, not by its own timeout.
            assert_eq!(blocker.await.unwrap(), Ok(()));
            fetched.expect("the async fetch waited on the blocking pool").unwrap()
        });
        assert_eq!(document.get_document("aws").unwrap().get_str("accessKeyId").unwrap(), "ASIAEC2");
        assert_eq!(imds_server.stop().len(), 3);
    }

    /// The async face's requests run on the thread that polls the fetch: no thread of tokio's blocking pool.
    #[test]
    fn aws_imds_async_runs_on_the_polling_thread() {
        let imds_server = serve(imds(200));
        let fetcher = chain(&[]).aws_imds_endpoint(format!("http://{}", imds_server.addr()));
        let threads = Arc::new(AtomicUsize::new(0));
        let counter = threads.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_start(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .unwrap();
        let document = runtime.block_on(fetcher.fetch_async()).unwrap();
        assert_eq!(document.get_document("aws").unwrap().get_str("accessKeyId").unwrap(), "ASIAEC2");
        assert_eq!(threads.load(Ordering::SeqCst), 0, "the runtime started a thread for the fetch");
        assert_eq!(imds_server.stop().len(), 3);
    }

    struct AsyncProvider;

    impl AwsCredentialProvider for AsyncProvider {
        fn credentials(&self) -> Result<AwsCredentials, IoError> {
            Ok(AwsCredentials::new("AKIABLOCKING", "s"))
        }

        fn credentials_async(&self) -> AwsCredentialsFuture<'_> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(AwsCredentials::new("AKIAASYNC", "s"))
            })
        }
    }

    #[tokio::test]
    async fn aws_custom_provider_async() {
        let fetcher = chain(&[]).aws_credential_provider(AsyncProvider);
        let document = fetcher.fetch_async().await.unwrap();
        assert_eq!(document.get_document("aws").unwrap().get_str("accessKeyId").unwrap(), "AKIAASYNC");
        assert_eq!(key_id(&fetcher), "AKIABLOCKING");
        let raw = fetcher.kms_credentials_async().await.unwrap();
        assert_eq!(raw.get_document("aws").unwrap().get_str("accessKeyId").unwrap(), "AKIAASYNC");
    }
}
