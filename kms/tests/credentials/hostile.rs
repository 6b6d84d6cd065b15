//! Metadata servers that lie: absurd expiries (`expires_in`, `Expiration` past what a `SystemTime` holds) and
//! `Duration::MAX` options, on both faces; token files that never end (a device, a FIFO, a huge file); replies
//! that drip or announce more than they send. Nothing may panic; an expiry past the representable range means "no
//! limit" (Azure: cached; AWS: used, not cached, as without `Expiration`). Loopback servers only.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libmongocrypt_kms::credentials::{CredentialsErrorKind, CredentialsFetcher, MAX_TOKEN_FILE};

use support::drip::Dripper;
use support::server::{self, MockServer, Options, Reply};

const AZURE_PATH: &str = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net";

/// A metadata server that answers every request with `body` (status 200) and counts them.
fn lying_server(body: String) -> (MockServer, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let server = MockServer::start(Options::default(), move |_| {
        count.fetch_add(1, Ordering::SeqCst);
        Reply::Bytes(server::http(200, &body))
    });
    (server, served)
}

fn azure(expires_in: &str) -> (MockServer, Arc<AtomicUsize>, CredentialsFetcher) {
    let (server, served) = lying_server(format!(
        r#"{{"access_token": "azure-token", "expires_in": {expires_in}, "token_type": "Bearer"}}"#
    ));
    let fetcher = CredentialsFetcher::new(["azure"]).azure_endpoint(format!("http://{}{AZURE_PATH}", server.addr()));
    (server, served, fetcher)
}

/// An ECS endpoint whose credentials expire at `expiration` (a JSON value), and a fetcher that finds it.
fn ecs(expiration: &str) -> (MockServer, Arc<AtomicUsize>, CredentialsFetcher) {
    let (server, served) = lying_server(format!(
        r#"{{"AccessKeyId": "ecsKey", "SecretAccessKey": "ecsSecret", "Token": "t", "Expiration": {expiration}}}"#
    ));
    let fetcher = CredentialsFetcher::new(["aws"])
        .env(|name| (name == "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").then(|| "/creds".to_owned()))
        .aws_ecs_endpoint(format!("http://{}", server.addr()));
    (server, served, fetcher)
}

/// Azure's `expires_in` at u64::MAX (as a number and as Azure's string): the token is fetched, and kept for good
/// (no expiry that can be represented), whatever the refresh margin.
#[test]
fn azure_expires_in_past_the_end_of_time_is_no_limit() {
    for expires_in in ["18446744073709551615", "\"18446744073709551615\""] {
        let (server, served, fetcher) = azure(expires_in);
        let fetcher = fetcher.azure_refresh_margin(Duration::MAX);
        for _ in 0..2 {
            let doc = fetcher.fetch().unwrap();
            assert_eq!(doc.get_document("azure").unwrap().get_str("accessToken").unwrap(), "azure-token");
        }
        assert_eq!(served.load(Ordering::SeqCst), 1, "{expires_in}: cached");
        drop(server);
    }
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_expires_in_past_the_end_of_time_is_no_limit_async() {
    let (_server, served, fetcher) = azure("18446744073709551615");
    for _ in 0..2 {
        let doc = fetcher.fetch_async().await.unwrap();
        assert_eq!(doc.get_document("azure").unwrap().get_str("accessToken").unwrap(), "azure-token");
    }
    assert_eq!(served.load(Ordering::SeqCst), 1, "cached");
}

/// ECS (the IMDS and STS replies share its parser) with numeric expirations past what Duration or SystemTime
/// holds: credentials used, not cached; a negative one refused, typed. The refresh margin at its maximum once
/// something is cached: no panic, fetched anew.
#[test]
fn aws_expirations_past_the_end_of_time_never_panic() {
    for expiration in ["1e300", "1.9e19", "9.3e18"] {
        let (_server, served, fetcher) = ecs(expiration);
        for _ in 0..2 {
            let doc = fetcher.fetch().unwrap();
            assert_eq!(doc.get_document("aws").unwrap().get_str("accessKeyId").unwrap(), "ecsKey", "{expiration}");
        }
        assert_eq!(served.load(Ordering::SeqCst), 2, "{expiration}: not cached");
    }
    let (_server, _, fetcher) = ecs("-1");
    let err = fetcher.fetch().unwrap_err();
    assert!(err.to_string().contains("bad Expiration -1"), "{err}");

    let (_server, served, fetcher) = ecs("4102444800"); // 2100-01-01: cached
    let fetcher = fetcher.aws_refresh_margin(Duration::MAX);
    fetcher.fetch().unwrap();
    fetcher.fetch().unwrap();
    assert_eq!(served.load(Ordering::SeqCst), 2, "a margin past the end of time refetches");
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_expirations_past_the_end_of_time_never_panic_async() {
    for expiration in ["1e300", "1.9e19", "9.3e18"] {
        let (_server, served, fetcher) = ecs(expiration);
        fetcher.fetch_async().await.unwrap();
        fetcher.fetch_async().await.unwrap();
        assert_eq!(served.load(Ordering::SeqCst), 2, "{expiration}: not cached");
    }
    let (_server, served, fetcher) = ecs("4102444800");
    let fetcher = fetcher.aws_refresh_margin(Duration::MAX).timeout(Duration::MAX);
    fetcher.fetch_async().await.unwrap();
    fetcher.fetch_async().await.unwrap();
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

/// `timeout(Duration::MAX)`: no limit, on the blocking face (ureq) as on the async one.
#[test]
fn a_timeout_past_the_end_of_time_is_no_limit() {
    let (_server, _, fetcher) = azure("3600");
    let doc = fetcher.timeout(Duration::MAX).fetch().unwrap();
    assert_eq!(doc.get_document("azure").unwrap().get_str("accessToken").unwrap(), "azure-token");
}

/// A scratch directory with a FIFO (no writer: opening it for reading would wait forever) and an oversized file.
struct HostileFiles(std::path::PathBuf);

impl HostileFiles {
    fn new(tag: &str) -> HostileFiles {
        let dir = std::env::temp_dir().join(format!("mongocrypt-hostile-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success(), "mkfifo");
        std::fs::write(dir.join("large"), vec![b'a'; MAX_TOKEN_FILE as usize + 1]).unwrap();
        std::fs::write(dir.join("limit"), vec![b'a'; MAX_TOKEN_FILE as usize]).unwrap();
        HostileFiles(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for HostileFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The web-identity and ECS token files: a device, a FIFO and a file past [`MAX_TOKEN_FILE`] are refused at once,
/// with errors that say why; a file of exactly the limit is read.
#[test]
fn token_files_are_bounded() {
    let files = HostileFiles::new("tokens");
    let fetch = |var: &'static str, path: String| {
        let vars = move |name: &str| match name {
            "AWS_ROLE_ARN" => Some("arn:aws:iam::1:role/r".to_owned()),
            "AWS_CONTAINER_CREDENTIALS_FULL_URI" => Some("http://127.0.0.1:9/creds".to_owned()),
            name if name == var => Some(path.clone()),
            _ => None,
        };
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let started = std::time::Instant::now();
        let err = CredentialsFetcher::new(["aws"])
            .env(vars)
            .aws_sts_endpoint(format!("http://{closed}/"))
            .aws_imds_endpoint(format!("http://{closed}"))
            .timeout(Duration::from_secs(2))
            .fetch()
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "{var}: took {:?}", started.elapsed());
        err.to_string()
    };
    for var in ["AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] {
        let text = fetch(var, "/dev/zero".into());
        assert!(text.contains("/dev/zero: not a regular file"), "{var}: {text}");
        let text = fetch(var, files.path("fifo"));
        assert!(text.contains("fifo: not a regular file"), "{var}: {text}");
        let text = fetch(var, files.path("large"));
        assert!(text.contains(&format!("large: longer than {MAX_TOKEN_FILE} bytes")), "{var}: {text}");
        // Read, then the request fails (nothing listens): the file was not the problem.
        let text = fetch(var, files.path("limit"));
        assert!(!text.contains("cannot read"), "{var}: {text}");
    }
}

/// Metadata servers that drip a reply that never ends, or announce a body they never send: the fetch ends by its
/// timeout, on both faces, with a timeout error; a Content-Length past the reply limit is refused at once.
#[test]
fn dripping_and_lying_metadata_servers_end_by_the_timeout() {
    for head in [&b"HTTP/1.1 200 OK\r\nX-Drip: "[..], b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"] {
        let server = Dripper::start(head, b'a', Duration::from_millis(50), Duration::from_secs(30));
        let fetcher = CredentialsFetcher::new(["azure"])
            .azure_endpoint(format!("http://{}{AZURE_PATH}", server.addr()))
            .timeout(Duration::from_secs(1));
        let started = Instant::now();
        let err = fetcher.fetch().unwrap_err();
        let elapsed = started.elapsed();
        let head = String::from_utf8_lossy(head);
        assert!(matches!(err.kind(), CredentialsErrorKind::Timeout { .. }), "{head:?} after {elapsed:?}: {err:?}");
        assert!(elapsed < Duration::from_secs(4), "{head:?}: took {elapsed:?}");
    }
    let huge = Dripper::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999\r\n\r\n",
        b'a',
        Duration::from_millis(50),
        Duration::from_secs(30),
    );
    let started = Instant::now();
    let err = CredentialsFetcher::new(["azure"])
        .azure_endpoint(format!("http://{}{AZURE_PATH}", huge.addr()))
        .timeout(Duration::from_secs(10))
        .fetch()
        .unwrap_err();
    assert!(!matches!(err.kind(), CredentialsErrorKind::Timeout { .. }), "refused, not waited for: {err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripping_and_lying_metadata_servers_end_by_the_timeout_async() {
    for head in [&b"HTTP/1.1 200 OK\r\nX-Drip: "[..], b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"] {
        let server = Dripper::start(head, b'a', Duration::from_millis(50), Duration::from_secs(30));
        let fetcher = CredentialsFetcher::new(["azure"])
            .azure_endpoint(format!("http://{}{AZURE_PATH}", server.addr()))
            .timeout(Duration::from_secs(1));
        let started = Instant::now();
        let err = fetcher.fetch_async().await.unwrap_err();
        let elapsed = started.elapsed();
        let head = String::from_utf8_lossy(head);
        assert!(matches!(err.kind(), CredentialsErrorKind::Timeout { .. }), "{head:?} after {elapsed:?}: {err:?}");
        assert!(elapsed < Duration::from_secs(4), "{head:?}: took {elapsed:?}");
    }
    let huge = Dripper::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999\r\n\r\n",
        b'a',
        Duration::from_millis(50),
        Duration::from_secs(30),
    );
    let started = Instant::now();
    let err = CredentialsFetcher::new(["azure"])
        .azure_endpoint(format!("http://{}{AZURE_PATH}", huge.addr()))
        .timeout(Duration::from_secs(10))
        .fetch_async()
        .await
        .unwrap_err();
    assert!(!matches!(err.kind(), CredentialsErrorKind::Timeout { .. }), "refused, not waited for: {err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}
