//! KMS requests through a real HTTP CONNECT proxy: Debian's tinyproxy, started here on a free loopback port with a
//! generated configuration (scripts/test.sh installs the package), in front of the loopback TLS KMS of
//! `kms/tests/support/server.rs`. TLS runs through the tunnel with the KMS host. Both faces: `HttpProxy` is a
//! blocking `Connector` and an `AsyncConnector`.

use crate::support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bson::Document;
use libmongocrypt::state_machine::{run_concurrent, RunError};
use libmongocrypt::{Crypt, Ctx, KeyEncryptionKey, State};
use libmongocrypt_kms::tls::{enable_retries, HttpProxy, KmsIoErrorKind, KmsTransport, TlsOptions};

use support::pki::Pki;
use support::server::Reply;
use support::*;

/// A tinyproxy child process on loopback, stopped (by its own id) when dropped.
struct Tinyproxy {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    dir: PathBuf,
}

impl Tinyproxy {
    /// Allows CONNECT to `allowed_port` only.
    fn start(allowed_port: u16) -> Tinyproxy {
        let bin = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("tinyproxy is not installed (Debian package tinyproxy; scripts/test.sh installs it)");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("mongocrypt-tinyproxy-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("tinyproxy.log");
        let conf = dir.join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 10\nMaxClients 16\nAllow 127.0.0.1\nConnectPort {allowed_port}\n\
                 LogLevel Connect\nLogFile \"{}\"\n",
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tinyproxy");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut proxy = Tinyproxy { child, addr, log, dir };
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("tinyproxy exited: {status}; log: {}", proxy.log_text());
            }
            assert!(started.elapsed() < Duration::from_secs(10), "tinyproxy did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The CONNECT requests the proxy logged (`Request (file descriptor N): CONNECT host:port HTTP/1.1`).
    fn connects(&self) -> usize {
        self.log_text().lines().filter(|line| line.contains("]: Request (") && line.contains("): CONNECT ")).count()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn crypt(retry: bool) -> Crypt {
    let builder = Crypt::builder().kms_providers(&providers()).unwrap();
    let builder = if retry { enable_retries(builder).unwrap() } else { builder };
    builder.build().unwrap()
}

fn aws_datakey(crypt: &Crypt) -> Ctx {
    crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", AWS_KEY_ARN)).unwrap().datakey().unwrap()
}

/// A transport trusting `pki` that tunnels every request through `proxy` to `kms` (the KMS host names resolve
/// nowhere here, so the proxy is asked for the mock's address; TLS still names the KMS host).
fn through(pki: &Pki, proxy: SocketAddr, kms: SocketAddr) -> KmsTransport {
    KmsTransport::builder()
        .default_tls_options(TlsOptions::new().ca_pem(pki.ca_pem.as_bytes()).unwrap())
        .connector(HttpProxy::new(proxy.to_string()).target(move |_host, _port| kms.to_string()))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn datakey(ctx: &mut Ctx, transport: &KmsTransport) -> Result<Document, libmongocrypt_kms::tls::KmsIoError> {
    loop {
        match ctx.state() {
            State::NeedKms => transport.serve_and_done(ctx.kms_scope().unwrap())?,
            State::Ready => return Ok(Document::try_from(ctx.finalize_owned().unwrap().as_ref()).unwrap()),
            other => panic!("unexpected state {other:?}"),
        }
    }
}

#[test]
fn a_data_key_through_tinyproxy() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let proxy = Tinyproxy::start(kms.addr().port());
    let transport = through(&pki, proxy.addr, kms.addr());
    let crypt = crypt(false);
    let key = datakey(&mut aws_datakey(&crypt), &transport).unwrap();
    assert_eq!(key.get_document("masterKey").unwrap().get_str("key").unwrap(), AWS_KEY_ARN);

    // The runner too; the KMS saw the requests of both, each through its own tunnel.
    let io = ExampleIo::new(transport);
    run_concurrent(&mut aws_datakey(&crypt), &io).unwrap().expect("a key document");
    let kms_addr = kms.addr();
    let requests = kms.stop();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.header("Host") == Some("kms.us-east-1.amazonaws.com")), "{requests:?}");
    assert_eq!(proxy.connects(), 2, "{}", proxy.log_text());
    assert!(proxy.log_text().contains(&format!("CONNECT {kms_addr} HTTP/1.1")), "{}", proxy.log_text());
}

#[test]
fn a_wrong_kms_certificate_fails_through_the_tunnel() {
    // TLS is end to end: the proxy is no TLS peer, and a KMS certificate from another CA is refused.
    let pki = Pki::new("mock CA");
    let other = Pki::new("another CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let proxy = Tinyproxy::start(kms.addr().port());
    let err = datakey(&mut aws_datakey(&crypt(false)), &through(&other, proxy.addr, kms.addr())).unwrap_err();
    assert!(matches!(err.kind(), KmsIoErrorKind::Tls(_)), "{err}");
}

#[test]
fn the_connector_is_called_again_for_each_retry() {
    let pki = Pki::new("mock CA");
    let kms =
        tls_kms(&pki, false, 0, |r| if r.conn == 0 { Reply::CutOff(encrypt_reply(), 10) } else { aws_replies(r) });
    let proxy = Tinyproxy::start(kms.addr().port());
    let result = datakey(&mut aws_datakey(&crypt(true)), &through(&pki, proxy.addr, kms.addr()));
    if retries() {
        result.unwrap();
        assert_eq!((kms.stop().len(), proxy.connects()), (2, 2), "{}", proxy.log_text());
    } else {
        let err = result.unwrap_err();
        assert!(err.to_string().contains("closed the connection before sending a complete reply"), "{err}");
        assert_eq!(kms.stop().len(), 1);
    }
}

#[test]
fn a_refused_connect_is_a_clear_error() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    // Only another port may be tunnelled to.
    let proxy = Tinyproxy::start(kms.addr().port().wrapping_add(1));
    let transport = through(&pki, proxy.addr, kms.addr());
    let err = datakey(&mut aws_datakey(&crypt(false)), &transport).unwrap_err();
    assert!(matches!(err.kind(), KmsIoErrorKind::Connector(_)) && err.is_network(), "{err}");
    let text = err.to_string();
    assert!(text.contains("refused CONNECT") && text.contains("HTTP status 403"), "{text}");

    // Through the runner: an I/O error keeping the KmsIoError.
    let err = run_concurrent(&mut aws_datakey(&crypt(false)), &ExampleIo::new(transport)).unwrap_err();
    assert!(matches!(err, RunError::Io { .. }) && err.to_string().contains("refused CONNECT"), "{err}");
    assert!(kms.stop().is_empty());
}

/// The async face through the same proxy (`HttpProxy` as an `AsyncConnector`, the future on a spawned task, so
/// `Send`): the same key as the blocking face's, each request through its own tunnel.
#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_key_through_tinyproxy_async() {
    use libmongocrypt::state_machine::run_tokio;
    use libmongocrypt_kms::tls::TokioKmsTransport;

    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let proxy = Tinyproxy::start(kms.addr().port());
    let kms_addr = kms.addr();
    let tunnel = HttpProxy::new(proxy.addr.to_string()).target(move |_host, _port| kms_addr.to_string());
    let transport = KmsTransport::builder()
        .default_tls_options(TlsOptions::new().ca_pem(pki.ca_pem.as_bytes()).unwrap())
        .async_connector(tunnel)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let io = AsyncExampleIo { kms: TokioKmsTransport::new(transport), keys: Vec::new() };
    let crypt = crypt(false);
    let mut ctx = aws_datakey(&crypt);
    let key = tokio::spawn(async move { run_tokio(&mut ctx, &io).await }).await.unwrap().unwrap();
    let key = Document::try_from(key.expect("a key document").as_ref()).unwrap();

    // The blocking face through the same proxy: the same key material (the mock KMS's ciphertext) and master key.
    let blocking = tokio::task::spawn_blocking(move || {
        let crypt = crypt;
        datakey(&mut aws_datakey(&crypt), &through(&pki, proxy.addr, kms_addr)).map(|key| (key, proxy))
    });
    let (expected, proxy) = blocking.await.unwrap().unwrap();
    assert_eq!(key.get_binary_generic("keyMaterial").unwrap(), expected.get_binary_generic("keyMaterial").unwrap());
    assert_eq!(key.get_document("masterKey").unwrap(), expected.get_document("masterKey").unwrap());
    assert_eq!(key.get_document("masterKey").unwrap().get_str("key").unwrap(), AWS_KEY_ARN);

    let requests = kms.stop();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.header("Host") == Some("kms.us-east-1.amazonaws.com")), "{requests:?}");
    assert_eq!(proxy.connects(), 2, "{}", proxy.log_text());
    assert!(proxy.log_text().contains(&format!("CONNECT {kms_addr} HTTP/1.1")), "{}", proxy.log_text());
}

/// A refused CONNECT on the async face: the same clear error as on the blocking face, parsed by the same code.
#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_is_a_clear_error_async() {
    use libmongocrypt_kms::tls::TokioKmsTransport;

    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let proxy = Tinyproxy::start(kms.addr().port().wrapping_add(1));
    let kms_addr = kms.addr();
    let transport = KmsTransport::builder()
        .default_tls_options(TlsOptions::new().ca_pem(pki.ca_pem.as_bytes()).unwrap())
        .async_connector(HttpProxy::new(proxy.addr.to_string()).target(move |_host, _port| kms_addr.to_string()))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let crypt = crypt(false);
    let mut ctx = aws_datakey(&crypt);
    let mut scope = ctx.kms_scope().unwrap();
    let mut kms_ctx = scope.next_kms_ctx().unwrap();
    let err = TokioKmsTransport::new(transport).exchange(&mut kms_ctx).await.unwrap_err();
    assert!(matches!(err.kind(), KmsIoErrorKind::Connector(_)) && err.is_network(), "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("refused CONNECT {kms_addr}")) && text.contains("HTTP status 403"), "{text}");
    drop(kms_ctx);
    drop(scope);
    assert!(kms.stop().is_empty());
}

/// Keep-alive through the proxy on the async face: an async connector's stream is polled, so its connection is
/// kept; the data keys one after the other go through one tunnel, one TCP connection to the KMS.
#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_through_tinyproxy_async() {
    use libmongocrypt::state_machine::run_tokio;
    use libmongocrypt_kms::tls::TokioKmsTransport;
    use support::server::{self, MockServer, Options};

    let pki = Pki::new("mock CA");
    let tls = server::tls_config(vec![pki.server.cert.clone()], pki.server.key(), None);
    let kms = MockServer::start(Options { tls: Some(tls), keep_alive: true, ..Options::default() }, |_| {
        Reply::Bytes(encrypt_reply_kept_alive())
    });
    let proxy = Tinyproxy::start(kms.addr().port());
    let kms_addr = kms.addr();
    let transport = KmsTransport::builder()
        .default_tls_options(TlsOptions::new().ca_pem(pki.ca_pem.as_bytes()).unwrap())
        .async_connector(HttpProxy::new(proxy.addr.to_string()).target(move |_host, _port| kms_addr.to_string()))
        .keep_alive(Some(Duration::from_secs(5)))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let transport = TokioKmsTransport::new(transport);
    let crypt = crypt(false);
    for _ in 0..3 {
        let io = AsyncExampleIo { kms: transport.clone(), keys: Vec::new() };
        let mut ctx = aws_datakey(&crypt);
        let key = tokio::spawn(async move { run_tokio(&mut ctx, &io).await }).await.unwrap().unwrap();
        let key = Document::try_from(key.expect("a key document").as_ref()).unwrap();
        assert_eq!(key.get_document("masterKey").unwrap().get_str("key").unwrap(), AWS_KEY_ARN);
    }
    let requests = kms.stop();
    assert_eq!(requests.iter().map(|r| r.conn).collect::<Vec<_>>(), [0, 0, 0], "{requests:?}");
    assert!(requests.iter().all(|r| r.header("Connection").is_none()), "{requests:?}");
    assert_eq!(proxy.connects(), 1, "{}", proxy.log_text());
}
