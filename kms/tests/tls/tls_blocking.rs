//! The rustls KMS transport against mock KMS servers on loopback, with certificates made at test time.
//!
//! Every server listens on 127.0.0.1 (or ::1), is bounded in connections and lifetime, and stops by itself; the
//! transport reaches it through a resolver that maps the KMS host names to it. Tests whose outcome depends on KMS
//! retries (libmongocrypt ≥ 1.12) check the retry behaviour there and the single-attempt behaviour before.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::spec::BinarySubtype;
use bson::{doc, Binary, Document};
use libmongocrypt::state_machine::{run, run_concurrent, RunError};
use libmongocrypt::{Crypt, Ctx, KeyEncryptionKey, State};
use libmongocrypt_kms::tls::{
    enable_retries, KmsIoError, KmsIoErrorKind, KmsTransport, TlsConfigError, TlsOptions, RETRIES_SUPPORTED,
};

use support::pki::{Pki, Prf};
use support::server::{self, MockServer, Reply};
use support::*;

const AWS_ENDPOINT: &str = "kms.us-east-1.amazonaws.com:443";

fn crypt(retry: bool) -> Crypt {
    let builder = Crypt::builder().kms_providers(&providers()).unwrap();
    let builder = if retry { enable_retries(builder).unwrap() } else { builder };
    builder.build().unwrap()
}

fn aws_datakey(crypt: &Crypt) -> Ctx {
    crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", AWS_KEY_ARN)).unwrap().datakey().unwrap()
}

/// Drives a data-key ctx by hand, serving NEED_KMS with `transport`; returns the key document.
fn drive_datakey(ctx: &mut Ctx, transport: &KmsTransport) -> Result<Document, KmsIoError> {
    loop {
        match ctx.state() {
            State::NeedKms => transport.serve_and_done(ctx.kms_scope().unwrap())?,
            State::Ready => {
                let key = ctx.finalize_owned().unwrap();
                assert_eq!(ctx.state(), State::Done);
                return Ok(Document::try_from(key.as_ref()).unwrap());
            }
            other => panic!("unexpected state {other:?}: {:?}", ctx.status()),
        }
    }
}

fn expected_key_material() -> Vec<u8> {
    let reply = String::from_utf8(encrypt_reply()).unwrap();
    let blob = reply.split("\"CiphertextBlob\": \"").nth(1).unwrap().split('"').next().unwrap();
    Binary::from_base64(blob, None).unwrap().bytes
}

fn assert_aws_key(key: &Document) {
    assert_eq!(key.get_binary_generic("keyMaterial").unwrap(), &expected_key_material());
    let master = key.get_document("masterKey").unwrap();
    assert!(master.get_str("provider").unwrap().starts_with("aws"), "{master}");
    assert_eq!(master.get_str("key").unwrap(), AWS_KEY_ARN);
}

/// A status reply with a small JSON body, as AWS sends for throttling and outages.
fn status(code: u16) -> Reply {
    Reply::Bytes(server::http(code, "{\"__type\": \"mock\", \"message\": \"mock error\"}"))
}

// ---------------------------------------------------------------------------------------------------------------
// Whole operations over TLS

#[test]
fn tls_auto_encrypt_example_through_runner() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let transport = transport_to(&pki, kms.addr()).build().unwrap();
    let io = ExampleIo::new(transport);

    let crypt = crypt(false);
    let mut ctx = crypt.ctx().encrypt("test", &raw(&doc("example/cmd.json"))).unwrap();
    let encrypted = run(&mut ctx, &io).expect("auto encryption").expect("an encrypted command");
    assert_eq!(
        Document::try_from(encrypted.as_ref()).unwrap(),
        doc("open/csfle-auto-aws-example/expected-encrypted-cmd.json")
    );

    // Decryption with a fresh Crypt (no cached key): a second KMS exchange.
    let crypt = self::crypt(false);
    let mut ctx = crypt.ctx().decrypt(&encrypted).unwrap();
    let decrypted = run(&mut ctx, &io).expect("auto decryption").expect("a document");
    assert_eq!(
        Document::try_from(decrypted.as_ref()).unwrap(),
        doc! { "filter": { "ssn": "457-55-5462" }, "find": "test" }
    );

    let requests = kms.stop();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.request_line(), "POST / HTTP/1.1");
        assert_eq!(request.header("X-Amz-Target"), Some("TrentService.Decrypt"));
        assert_eq!(request.header("Host"), Some("kms.us-east-1.amazonaws.com"));
        assert!(request.header("Authorization").unwrap().contains("Credential=example/"));
    }
}

#[test]
fn tls_auto_encrypt_example_by_hand() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let transport = transport_to(&pki, kms.addr()).build().unwrap();

    let crypt = crypt(false);
    let mut ctx = crypt.ctx().encrypt("test", &raw(&doc("example/cmd.json"))).unwrap();
    let mut trace = vec![];
    let encrypted = loop {
        let state = ctx.state();
        trace.push(state);
        match state {
            State::NeedMongoCollinfo => {
                ctx.mongo_feed(&raw(&doc("example/collection-info.json"))).unwrap();
                ctx.mongo_done().unwrap();
            }
            State::NeedMongoMarkings => {
                ctx.mongo_feed(&raw(&doc("example/mongocryptd-reply.json"))).unwrap();
                ctx.mongo_done().unwrap();
            }
            State::NeedMongoKeys => {
                ctx.mongo_feed(&raw(&doc("example/key-document.json"))).unwrap();
                ctx.mongo_done().unwrap();
            }
            State::NeedKms => {
                let mut scope = ctx.kms_scope().unwrap();
                {
                    let kms_ctxs = scope.kms_ctxs();
                    assert_eq!(kms_ctxs.len(), 1);
                    assert_eq!(kms_ctxs[0].endpoint().unwrap(), AWS_ENDPOINT);
                    assert_eq!(kms_ctxs[0].kms_provider(), "aws");
                    // Hand-served: one exchange on this kms ctx.
                    let mut kms_ctx = kms_ctxs.into_iter().next().unwrap();
                    transport.exchange(&mut kms_ctx).unwrap();
                    assert_eq!(kms_ctx.bytes_needed(), 0);
                }
                scope.done().unwrap();
            }
            State::Ready => break ctx.finalize_owned().unwrap(),
            other => panic!("unexpected state {other:?}: {:?}", ctx.status()),
        }
    };
    assert_eq!(
        trace,
        [State::NeedMongoCollinfo, State::NeedMongoMarkings, State::NeedMongoKeys, State::NeedKms, State::Ready]
    );
    assert_eq!(
        Document::try_from(encrypted.as_ref()).unwrap(),
        doc("open/csfle-auto-aws-example/expected-encrypted-cmd.json")
    );
}

#[test]
fn tls_aws_datakey_creation() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let transport = transport_to(&pki, kms.addr()).build().unwrap();

    let crypt = crypt(false);
    let key = drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap();
    assert_aws_key(&key);

    // The same through the runner.
    let io = ExampleIo::new(transport);
    let key = run(&mut aws_datakey(&crypt), &io).unwrap().unwrap();
    assert_aws_key(&Document::try_from(key.as_ref()).unwrap());

    let requests = kms.stop();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.header("X-Amz-Target") == Some("TrentService.Encrypt")));
}

#[test]
fn tls_custom_endpoint_reaches_the_resolver_and_server_name() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let addr = kms.addr();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let transport = {
        let asked = asked.clone();
        transport_to(&pki, addr)
            .resolver(move |host, port| {
                asked.lock().unwrap().push(format!("{host}:{port}"));
                Ok(vec![addr])
            })
            .build()
            .unwrap()
    };
    let crypt = crypt(false);
    let kek = KeyEncryptionKey::aws("aws", "us-east-1", AWS_KEY_ARN).endpoint("example.com");
    let mut ctx = crypt.ctx().key_encryption_key(&kek).unwrap().datakey().unwrap();
    let key = drive_datakey(&mut ctx, &transport).unwrap();
    assert_eq!(key.get_document("masterKey").unwrap().get_str("endpoint").unwrap(), "example.com");
    assert_eq!(*asked.lock().unwrap(), ["example.com:443"]);
    assert_eq!(kms.stop()[0].header("Host"), Some("example.com"));
}

#[test]
fn tls_parallel_requests_are_served_concurrently() {
    // Two AWS keys to rewrap under the local key: one round of two KMS decrypt requests. The server holds every
    // reply until both connections sent their request (for at most 5 s), so a serial transport would be answered
    // only after that wait, with `barrier_met` false.
    let second_key = {
        let mut key = doc("example/key-document.json");
        key.insert("_id", Binary { subtype: BinarySubtype::Uuid, bytes: b"bbbbbbbbbbbbbbbb".to_vec() });
        key.insert("keyAltNames", vec!["secondKey"]);
        key
    };
    let keys = [raw(&doc("example/key-document.json")), raw(&second_key)];
    let pki = Pki::new("mock CA");

    for runner in [false, true] {
        let kms = tls_kms(&pki, false, 2, aws_replies);
        let transport = transport_to(&pki, kms.addr()).build().unwrap();
        let crypt = crypt(false);
        let mut ctx = crypt
            .ctx()
            .key_encryption_key(&KeyEncryptionKey::local("local"))
            .unwrap()
            .rewrap_many_datakey(&doc! {})
            .unwrap();
        let started = Instant::now();
        let result = if runner {
            let mut io = ExampleIo::new(transport);
            io.keys = keys.to_vec();
            run_concurrent(&mut ctx, &io).unwrap().unwrap()
        } else {
            assert_eq!(ctx.state(), State::NeedMongoKeys);
            for key in &keys {
                ctx.mongo_feed(key).unwrap();
            }
            ctx.mongo_done().unwrap();
            assert_eq!(ctx.state(), State::NeedKms);
            let mut scope = ctx.kms_scope().unwrap();
            transport.serve(&mut scope).unwrap();
            scope.done().unwrap();
            ctx.finalize_owned().unwrap()
        };
        let elapsed = started.elapsed();
        let result = Document::try_from(result.as_ref()).unwrap();
        assert_eq!(result.get_array("v").unwrap().len(), 2, "{result}");
        let requests = kms.stop();
        assert_eq!(requests.len(), 2, "runner={runner}");
        assert!(requests.iter().all(|r| r.barrier_met), "runner={runner}: requests were not in flight together");
        assert!(elapsed < Duration::from_secs(4), "runner={runner}: took {elapsed:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Retries

#[test]
fn retry_429_then_200_succeeds() {
    for runner in [false, true] {
        let pki = Pki::new("mock CA");
        let kms = tls_kms(&pki, false, 0, |r| if r.conn == 0 { status(429) } else { aws_replies(r) });
        let transport = transport_to(&pki, kms.addr()).build().unwrap();
        let crypt = crypt(true);
        let mut ctx = aws_datakey(&crypt);
        if runner {
            let result = run(&mut ctx, &ExampleIo::new(transport));
            if retries() {
                assert_aws_key(&Document::try_from(result.unwrap().unwrap().as_ref()).unwrap());
            } else {
                // libmongocrypt < 1.12 has no retries: the 429 is libmongocrypt's error, with the endpoint added.
                let err = result.unwrap_err();
                let message = err.as_mongocrypt().expect("a libmongocrypt error").message();
                assert!(message.contains("HTTP status=429") && message.contains(AWS_ENDPOINT), "{message}");
            }
        } else {
            let result = drive_datakey(&mut ctx, &transport);
            if retries() {
                assert_aws_key(&result.unwrap());
            } else {
                let err = result.unwrap_err();
                assert_eq!((err.http_status(), err.attempts(), err.endpoint()), (Some(429), 1, AWS_ENDPOINT));
            }
        }
        assert_eq!(kms.stop().len(), if retries() { 2 } else { 1 }, "runner={runner}");
    }
}

#[test]
fn retry_repeated_503_gives_an_error_naming_endpoint_and_status() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, |_| status(503));
    let transport = transport_to(&pki, kms.addr()).build().unwrap();
    let crypt = crypt(true);
    let started = Instant::now();
    let err = drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap_err();
    let attempts = if retries() { 4 } else { 1 };
    assert_eq!((err.endpoint(), err.http_status(), err.attempts()), (AWS_ENDPOINT, Some(503), attempts), "{err}");
    let text = err.to_string();
    assert!(text.contains(AWS_ENDPOINT) && text.contains("HTTP status 503"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(kms.stop().len(), attempts as usize);

    // Through the runner: libmongocrypt's error, with the endpoint added.
    let kms = tls_kms(&pki, false, 0, |_| status(503));
    let io = ExampleIo::new(transport_to(&pki, kms.addr()).build().unwrap());
    let err = run(&mut aws_datakey(&crypt), &io).unwrap_err();
    let message = err.as_mongocrypt().unwrap_or_else(|| panic!("not a libmongocrypt error: {err}")).message();
    assert!(message.contains("HTTP status=503") && message.contains(AWS_ENDPOINT), "{message}");
    assert_eq!(kms.stop().len(), attempts as usize);
}

#[test]
fn retry_after_network_errors_then_success() {
    // The first connection's reply is cut off, the second's is complete.
    let pki = Pki::new("mock CA");
    let kms =
        tls_kms(&pki, false, 0, |r| if r.conn == 0 { Reply::CutOff(encrypt_reply(), 60) } else { aws_replies(r) });
    let transport = transport_to(&pki, kms.addr()).build().unwrap();
    let crypt = crypt(true);
    let result = drive_datakey(&mut aws_datakey(&crypt), &transport);
    if retries() {
        assert_aws_key(&result.unwrap());
        assert_eq!(kms.stop().len(), 2);
    } else {
        // No retry before libmongocrypt 1.12: the network error is returned.
        let err = result.unwrap_err();
        assert!(err.is_network(), "{err}");
        assert_eq!(kms.stop().len(), 1);
    }
}

#[test]
fn retry_helpers_match_the_linked_library() {
    assert_eq!(RETRIES_SUPPORTED, retries());
    let builder = enable_retries(Crypt::builder()).expect("enable_retries never fails on a fresh builder");
    drop(builder);
    // mongocrypt_setopt_retry_kms is in 1.12 and later, also where the transport cannot retry (1.12 to 1.16 lack
    // mongocrypt_kms_ctx_feed_with_retry).
    let at_least_1_12 = libmongocrypt::sys::MONGOCRYPT_SYS_VERSION_NUMBER >= 0x010c_0000;
    assert_eq!(Crypt::builder().retry_kms(true).is_ok(), at_least_1_12, "retry_kms exists from 1.12 on");
}

// ---------------------------------------------------------------------------------------------------------------
// TLS and certificates

#[test]
fn tls_untrusted_server_cert_gives_tls_error_naming_endpoint() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let addr = kms.addr();
    // Mozilla's roots (the default), and another CA.
    let other = Pki::new("other CA");
    let transports = [
        KmsTransport::builder().resolver(move |_, _| Ok(vec![addr])).build().unwrap(),
        transport_to(&other, addr).build().unwrap(),
    ];
    let crypt = crypt(false);
    for transport in &transports {
        let err = drive_datakey(&mut aws_datakey(&crypt), transport).unwrap_err();
        assert!(matches!(err.kind(), KmsIoErrorKind::Tls(_)), "{err}");
        assert_eq!(err.endpoint(), AWS_ENDPOINT);
        let text = err.to_string();
        assert!(text.contains(AWS_ENDPOINT) && text.contains("certificate"), "{text}");
    }
    assert_eq!(kms.stop().len(), 0, "no request may reach an untrusted server");
}

#[test]
fn tls_server_name_mismatch_is_a_tls_error() {
    // The certificate is valid for kms.us-east-1.amazonaws.com, not for this region's host.
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let transport = transport_to(&pki, kms.addr()).build().unwrap();
    let crypt = crypt(false);
    let kek = KeyEncryptionKey::aws("aws", "eu-west-3", AWS_KEY_ARN);
    let mut ctx = crypt.ctx().key_encryption_key(&kek).unwrap().datakey().unwrap();
    let err = drive_datakey(&mut ctx, &transport).unwrap_err();
    assert!(matches!(err.kind(), KmsIoErrorKind::Tls(_)), "{err}");
    assert_eq!(err.endpoint(), "kms.eu-west-3.amazonaws.com:443");
}

#[test]
fn tls_client_cert_required_is_served_with_cert() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, true, 0, aws_replies);
    // Per-provider options: the client certificate for `aws` only; the default trusts the CA but has none.
    let options = TlsOptions::new()
        .ca_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .certificate_key_pem(pki.client.cert_key_pem().as_bytes(), None)
        .unwrap();
    let transport = transport_to(&pki, kms.addr()).tls_options("aws", options).build().unwrap();
    let crypt = crypt(false);
    assert_aws_key(&drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap());

    // In-memory equivalents.
    let options =
        TlsOptions::new().ca_certs([pki.ca.clone()]).client_auth(vec![pki.client.cert.clone()], pki.client.key());
    let transport = transport_to(&pki, kms.addr()).tls_options("aws", options).build().unwrap();
    assert_aws_key(&drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap());
    assert_eq!(kms.stop().len(), 2);
}

#[test]
fn tls_client_cert_required_fails_without_cert() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, true, 0, aws_replies);
    let crypt = crypt(false);
    // No client certificate at all; then one the server's CA did not sign.
    let stranger = Pki::new("stranger CA");
    let transports = [
        transport_to(&pki, kms.addr()).build().unwrap(),
        transport_to(&pki, kms.addr())
            .tls_options(
                "aws",
                TlsOptions::new()
                    .ca_pem(pki.ca_pem.as_bytes())
                    .unwrap()
                    .client_auth(vec![stranger.client.cert.clone()], stranger.client.key()),
            )
            .build()
            .unwrap(),
    ];
    for transport in &transports {
        let err = drive_datakey(&mut aws_datakey(&crypt), transport).unwrap_err();
        assert!(matches!(err.kind(), KmsIoErrorKind::Tls(_)), "{err}");
        assert_eq!(err.endpoint(), AWS_ENDPOINT);
    }
    // The server sees the refusal after the client finished its side of the handshake; wait for it (bounded).
    let until = Instant::now() + Duration::from_secs(5);
    while kms.handshake_errors().len() < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let errors = kms.handshake_errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.to_lowercase().contains("certificate")), "{errors:?}");
    assert_eq!(kms.stop().len(), 0, "no request may be read without a valid client certificate");
}

/// A scratch directory under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mongocrypt-kms-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn tls_cert_options_from_spec_document_files() {
    let pki = Pki::new("mock CA");
    let dir = TempDir::new("files");
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let client = dir.write("client.pem", &pki.client.cert_key_pem());
    let kms = tls_kms(&pki, true, 0, aws_replies);
    let addr = kms.addr();
    let transport = KmsTransport::builder()
        .tls_options_document(&doc! { "aws": { "tlsCAFile": &ca, "tlsCertificateKeyFile": &client } })
        .unwrap()
        .resolver(move |_, _| Ok(vec![addr]))
        .build()
        .unwrap();
    let crypt = crypt(false);
    assert_aws_key(&drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap());
    assert_eq!(kms.stop().len(), 1);

    // The password of an unencrypted key is ignored.
    let doc = doc! { "aws": { "tlsCertificateKeyFile": &client, "tlsCertificateKeyFilePassword": "unused" } };
    KmsTransport::builder().tls_options_document(&doc).unwrap().build().unwrap();
}

const KEY_PASSWORD: &str = "correct horse battery staple";

/// A mutual-TLS KMS accepts the client whose key is an `ENCRYPTED PRIVATE KEY` file, decrypted with
/// `tlsCertificateKeyFilePassword`.
#[test]
fn tls_cert_encrypted_key_from_spec_document_is_served() {
    let pki = Pki::new("mock CA");
    let dir = TempDir::new("encrypted-key");
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let client = dir.write("client-encrypted.pem", &pki.client.cert_encrypted_key_pem(KEY_PASSWORD));
    let text = std::fs::read_to_string(&client).unwrap();
    assert!(text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") && !text.contains("-----BEGIN PRIVATE KEY-----"));
    let kms = tls_kms(&pki, true, 0, aws_replies);
    let crypt = crypt(false);

    // One provider's entry of the spec's tlsOptions. The transport's default options have no client certificate,
    // which this server refuses: the request goes through only with the decrypted key.
    let options = TlsOptions::from_document(&doc! {
        "tlsCAFile": &ca,
        "tlsCertificateKeyFile": &client,
        "tlsCertificateKeyFilePassword": KEY_PASSWORD,
    })
    .expect("the encrypted key is decrypted");
    let transport = transport_to(&pki, kms.addr()).tls_options("aws", options).build().unwrap();
    assert_aws_key(&drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap());

    // The whole tlsOptions document; then in memory, with a key whose PBKDF2 uses hmacWithSHA1 (OpenSSL 1.0).
    let document = doc! { "aws": {
        "tlsCAFile": &ca,
        "tlsCertificateKeyFile": &client,
        "tlsCertificateKeyFilePassword": KEY_PASSWORD,
    } };
    let addr = kms.addr();
    let transport = KmsTransport::builder()
        .tls_options_document(&document)
        .unwrap()
        .resolver(move |_, _| Ok(vec![addr]))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert_aws_key(&drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap());
    let sha1_pem =
        format!("{}{}", pki.client.cert_pem, pki.client.encrypted_key_pem_with(KEY_PASSWORD, Prf::HmacWithSha1));
    let options = TlsOptions::new()
        .ca_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .certificate_key_pem(sha1_pem.as_bytes(), Some(KEY_PASSWORD))
        .unwrap();
    let transport = transport_to(&pki, kms.addr()).tls_options("aws", options).build().unwrap();
    assert_aws_key(&drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap());

    assert!(kms.handshake_errors().is_empty(), "{:?}", kms.handshake_errors());
    assert_eq!(kms.stop().len(), 3);
}

#[test]
fn tls_cert_encrypted_key_wrong_password_is_clear() {
    let pki = Pki::new("mock CA");
    let dir = TempDir::new("wrong-password");
    let client = dir.write("client-encrypted.pem", &pki.client.cert_encrypted_key_pem(KEY_PASSWORD));
    for wrong in ["correct horse battery stapler", "", "CORRECT HORSE BATTERY STAPLE"] {
        let err = TlsOptions::from_document(&doc! {
            "tlsCertificateKeyFile": &client,
            "tlsCertificateKeyFilePassword": wrong,
        })
        .unwrap_err();
        assert!(matches!(err, TlsConfigError::WrongKeyPassword { .. }), "{wrong:?}: {err}");
        let text = err.to_string();
        assert!(text.contains("client-encrypted.pem") && text.contains("wrong password"), "{text}");
        assert!(text.contains("tlsCertificateKeyFilePassword"), "{text}");
        assert!(wrong.is_empty() || !text.contains(wrong), "the password must not be in the message: {text}");
    }
    // Through the transport builder's document too.
    let document = doc! { "kmip": { "tlsCertificateKeyFile": &client, "tlsCertificateKeyFilePassword": "nope" } };
    let err = KmsTransport::builder().tls_options_document(&document).unwrap_err();
    assert!(matches!(err, TlsConfigError::WrongKeyPassword { .. }), "{err}");
}

#[test]
fn tls_cert_encrypted_key_without_password_is_clear() {
    let pki = Pki::new("mock CA");
    let dir = TempDir::new("no-password");
    let client = dir.write("client-encrypted.pem", &pki.client.cert_encrypted_key_pem(KEY_PASSWORD));
    let err = TlsOptions::from_document(&doc! { "tlsCertificateKeyFile": &client }).unwrap_err();
    assert!(matches!(err, TlsConfigError::KeyPasswordRequired { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("client-encrypted.pem")
            && text.contains("encrypted")
            && text.contains("tlsCertificateKeyFilePassword"),
        "{text}"
    );
    let err = TlsOptions::new().certificate_key_file(&client, None).unwrap_err();
    assert!(matches!(err, TlsConfigError::KeyPasswordRequired { .. }), "{err}");
}

#[test]
fn tls_cert_option_errors_are_clear() {
    let pki = Pki::new("mock CA");
    let dir = TempDir::new("errors");
    // OpenSSL's traditional encryption stays unsupported, with the reason and the way out.
    let traditional = dir.write(
        "traditional.pem",
        &format!(
            "{}-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,\
             00112233445566778899AABBCCDDEEFF\n\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n",
            pki.client.cert_pem
        ),
    );
    let err = TlsOptions::new().certificate_key_file(&traditional, Some("password")).unwrap_err();
    assert!(matches!(err, TlsConfigError::EncryptedKey { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("traditional.pem") && text.contains("Proc-Type: 4,ENCRYPTED"), "{text}");
    assert!(text.contains("not supported") && text.contains("openssl pkcs8 -topk8"), "{text}");

    let missing = dir.0.join("missing.pem");
    let err = TlsOptions::new().ca_file(&missing).unwrap_err();
    assert!(matches!(err, TlsConfigError::File { .. }) && err.to_string().contains("missing.pem"), "{err}");

    let cert_only = dir.write("cert-only.pem", &pki.client.cert_pem);
    let err = TlsOptions::new().certificate_key_file(&cert_only, None).unwrap_err();
    assert!(err.to_string().contains("no PRIVATE KEY"), "{err}");

    let err = TlsOptions::new().ca_pem(b"not PEM").unwrap_err();
    assert!(err.to_string().contains("no CERTIFICATE"), "{err}");

    let err = KmsTransport::builder().tls_options_document(&doc! { "kmip": { "tlsInsecure": true } }).unwrap_err();
    assert!(err.to_string().contains("tlsInsecure"), "{err}");
    assert!(err.to_string().contains("Insecure TLS options prohibited"), "{err}");
    let err = KmsTransport::builder().tls_options_document(&doc! { "aws": { "tls": false } }).unwrap_err();
    assert!(err.to_string().contains("TLS is required"), "{err}");
    // The spec: no error for tlsDisableOCSPEndpointCheck; the other options keep working beside it.
    let ca = dir.write("ca-ocsp.pem", &pki.ca_pem);
    let doc = doc! { "kmip": { "tlsCAFile": ca, "tlsDisableOCSPEndpointCheck": true } };
    KmsTransport::builder().tls_options_document(&doc).unwrap().build().unwrap();

    // A key that does not belong to the certificate is refused when the configuration is built.
    let mismatched = TlsOptions::new().client_auth(vec![pki.client.cert.clone()], pki.server.key());
    let err = KmsTransport::builder().tls_options("kmip", mismatched).build().unwrap_err();
    assert!(matches!(err, TlsConfigError::Rustls(_)), "{err}");
}

// ---------------------------------------------------------------------------------------------------------------
// Network failures

#[test]
fn connection_refused_names_endpoint() {
    // A port that was just free: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let pki = Pki::new("mock CA");
    let transport = transport_to(&pki, addr).build().unwrap();
    let crypt = crypt(true);
    let started = Instant::now();
    let err = drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap_err();
    assert!(matches!(err.kind(), KmsIoErrorKind::Connect { .. }), "{err}");
    assert_eq!(err.attempts(), if retries() { 4 } else { 1 });
    assert!(err.to_string().contains(AWS_ENDPOINT) && err.to_string().contains(&addr.to_string()), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Through the runner: an I/O error (after libmongocrypt refused more retries).
    let io = ExampleIo::new(transport);
    let err = run(&mut aws_datakey(&crypt), &io).unwrap_err();
    assert!(matches!(err, RunError::Io { state: State::NeedKms, .. }), "{err}");
    assert!(err.to_string().contains(AWS_ENDPOINT), "{err}");
}

#[test]
fn timeout_stalled_server_errors_within_timeout_and_margin() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, |_| Reply::Stall(Duration::from_secs(20)));
    let timeout = Duration::from_millis(300);
    let transport = transport_to(&pki, kms.addr()).io_timeout(timeout).request_timeout(None).build().unwrap();
    let crypt = crypt(false);
    let started = Instant::now();
    let err = drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err.kind(), KmsIoErrorKind::Timeout { during: "reading the reply", after } if *after == timeout),
        "{err}"
    );
    assert!(err.is_timeout() && err.to_string().contains(AWS_ENDPOINT), "{err}");
    assert!(elapsed >= timeout && elapsed < timeout + Duration::from_secs(2), "took {elapsed:?}");
    drop(kms); // ends the stall
}

#[test]
fn timeout_whole_request_bounds_a_trickling_server() {
    // The request timeout caps the whole attempt, whatever the (longer) per-read timeout.
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, |_| Reply::Stall(Duration::from_secs(20)));
    let transport = transport_to(&pki, kms.addr())
        .io_timeout(Duration::from_secs(10))
        .request_timeout(Some(Duration::from_millis(400)))
        .build()
        .unwrap();
    let crypt = crypt(false);
    let started = Instant::now();
    let err = drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_millis(400) + Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn reply_cut_off_mid_body_is_a_network_error() {
    let pki = Pki::new("mock CA");
    let reply = encrypt_reply();
    let cut = reply.len() - 100;
    let kms = tls_kms(&pki, false, 0, move |_| Reply::CutOff(encrypt_reply(), cut));
    let transport = transport_to(&pki, kms.addr()).build().unwrap();
    let crypt = crypt(false);
    let err = drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap_err();
    let KmsIoErrorKind::Io(io) = err.kind() else { panic!("not an I/O error: {err}") };
    assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    assert!(err.is_network() && err.to_string().contains(AWS_ENDPOINT), "{err}");
    let text = err.to_string();
    let expected = format!("closed the connection before sending a complete reply ({cut} bytes received)");
    assert!(text.contains(&expected) && text.contains("(aws)") && !text.contains("close_notify"), "{text}");
}

#[test]
fn peer_closing_early_is_explained_through_the_runner_with_attempts() {
    // A server that closes every connection after part of the reply, with retries where the library has them.
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, |_| Reply::CutOff(encrypt_reply(), 20));
    let transport = transport_to(&pki, kms.addr()).build().unwrap();
    let crypt = crypt(true);
    let err = run(&mut aws_datakey(&crypt), &ExampleIo::new(transport)).unwrap_err();
    let attempts = if retries() { 4 } else { 1 };
    let RunError::Io { source, .. } = &err else { panic!("not an I/O error: {err}") };
    let kms_error = source.downcast_ref::<KmsIoError>().expect("the runner keeps the KmsIoError as its source");
    assert_eq!((kms_error.endpoint(), kms_error.provider(), kms_error.attempts()), (AWS_ENDPOINT, "aws", attempts));
    let text = err.to_string();
    assert!(text.contains("closed the connection before sending a complete reply (20 bytes received)"), "{text}");
    assert!(text.contains(AWS_ENDPOINT) && text.contains("(aws)") && !text.contains("close_notify"), "{text}");
    if retries() {
        assert!(text.contains("failed after 4 attempts"), "{text}");
    }
    assert_eq!(kms.stop().len(), attempts as usize);
}

#[test]
fn tls_ipv6_loopback_endpoint() {
    // Skipped where ::1 cannot be bound.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let pki = Pki::new("mock CA");
    let config = server::tls_config(vec![pki.server.cert.clone()], pki.server.key(), None);
    let kms =
        MockServer::start(server::Options { tls: Some(config), ipv6: true, ..server::Options::default() }, aws_replies);
    let addr = kms.addr();
    let crypt = crypt(false);
    // A host name mapped to [::1]:port by the resolver.
    let transport = transport_to(&pki, addr).build().unwrap();
    assert_aws_key(&drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap());
    // (An endpoint written as "[::1]:port" is refused by libmongocrypt 1.7.2 and 1.21 alike: "expected dot
    // separator in host"; the transport itself accepts it, see the unit tests of split_endpoint.)
    assert_eq!(kms.stop().len(), 1);
}

#[test]
fn tls_named_provider_options() {
    // Named KMS providers (`aws:name`) exist from libmongocrypt 1.9; the TLS options of `aws:named` apply to its
    // requests only, those of plain `aws` (none here) to the others.
    let pki = Pki::new("mock CA");
    let providers = providers().aws("aws:named", "example", "example", None);
    let crypt = match Crypt::builder().kms_providers(&providers).and_then(|b| b.build()) {
        Ok(crypt) => crypt,
        Err(e) => {
            eprintln!("skipped: libmongocrypt {} has no named KMS providers: {e}", libmongocrypt::version());
            return;
        }
    };
    let kms = tls_kms(&pki, true, 0, aws_replies);
    let client =
        TlsOptions::new().ca_certs([pki.ca.clone()]).client_auth(vec![pki.client.cert.clone()], pki.client.key());
    let transport = transport_to(&pki, kms.addr()).tls_options("aws:named", client).build().unwrap();

    let named = KeyEncryptionKey::aws("aws:named", "us-east-1", AWS_KEY_ARN);
    let mut ctx = crypt.ctx().key_encryption_key(&named).unwrap().datakey().unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    let mut batch = scope.kms_ctxs();
    assert_eq!(batch[0].kms_provider(), "aws:named", "the full name is what selects the TLS options");
    transport.exchange(&mut batch[0]).unwrap();
    drop(batch);
    scope.done().unwrap();
    assert_aws_key(&Document::try_from(ctx.finalize_owned().unwrap().as_ref()).unwrap());
    let err = drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap_err();
    assert!(matches!(err.kind(), KmsIoErrorKind::Tls(_)), "{err}");
    assert_eq!(kms.stop().len(), 1);
}

#[test]
fn retry_max_attempts_caps_the_transport() {
    // libmongocrypt (≥ 1.12) would allow 4 attempts; the transport stops after 2.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let pki = Pki::new("mock CA");
    let transport = transport_to(&pki, addr).max_attempts(2).build().unwrap();
    let crypt = crypt(true);
    let err = drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap_err();
    if retries() {
        // The last attempt's error, as when libmongocrypt itself gives up.
        assert_eq!(err.attempts(), 2, "{err}");
        assert!(matches!(err.kind(), KmsIoErrorKind::Connect { .. }), "{err}");
        assert!(err.to_string().contains("failed after 2 attempts"), "{err}");

        // The same for a retryable HTTP status: the last status.
        let kms = tls_kms(&pki, false, 0, |_| status(503));
        let transport = transport_to(&pki, kms.addr()).max_attempts(2).build().unwrap();
        let err = drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap_err();
        assert_eq!((err.http_status(), err.attempts()), (Some(503), 2), "{err}");
        assert_eq!(kms.stop().len(), 2);
    } else {
        // One attempt only before 1.12.
        assert!(matches!(err.kind(), KmsIoErrorKind::Connect { .. }) && err.attempts() == 1, "{err}");
    }
}

#[test]
fn http_error_bodies_are_cut_and_keep_their_status() {
    let page = format!("<html><body>{}</body></html>", "<p>Service error</p>".repeat(400));
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, move |_| Reply::Bytes(server::http(400, &page)));
    let transport = transport_to(&pki, kms.addr()).build().unwrap();
    let crypt = crypt(false);
    let err = drive_datakey(&mut aws_datakey(&crypt), &transport).unwrap_err();
    assert_eq!(err.http_status(), Some(400), "{err}");
    let text = err.to_string();
    // The 8 KB body is over MAX_ERROR_MESSAGE_LEN: cut as it left C, the note stating its full length kept.
    assert!(text.len() < 800 && text.contains("HTTP status 400") && text.contains("bytes in all)"), "{text}");

    // Through the runner: libmongocrypt's error, cut too, with the endpoint.
    let err = run(&mut aws_datakey(&crypt), &ExampleIo::new(transport)).unwrap_err();
    let message = err.as_mongocrypt().expect("a libmongocrypt error").message().to_owned();
    assert!(message.len() < 800 && message.contains("HTTP status=400") && message.contains(AWS_ENDPOINT), "{message}");
    assert_eq!(kms.stop().len(), 2);
}

#[test]
fn a_ready_client_config_is_used_per_provider_and_for_all() {
    let pki = Pki::new("mock CA");
    let kms = tls_kms(&pki, false, 0, aws_replies);
    let addr = kms.addr();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    // TLS 1.3 only, and the mock's CA: the caller's own choices.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    // The TLS options trust another CA: only the given configuration reaches the mock.
    let other = Pki::new("another CA");
    let base = || {
        KmsTransport::builder()
            .default_tls_options(TlsOptions::new().ca_pem(other.ca_pem.as_bytes()).unwrap())
            .resolver(move |_, _| Ok(vec![addr]))
            .timeout(Duration::from_secs(5))
    };
    let crypt = crypt(false);
    let per_provider = base().client_config("aws", config.clone()).build().unwrap();
    assert_aws_key(&drive_datakey(&mut aws_datakey(&crypt), &per_provider).unwrap());
    let for_all = base().default_client_config(config.clone()).build().unwrap();
    assert_aws_key(&drive_datakey(&mut aws_datakey(&crypt), &for_all).unwrap());
    let elsewhere = base().client_config("azure", config).build().unwrap();
    let err = drive_datakey(&mut aws_datakey(&crypt), &elsewhere).unwrap_err();
    assert!(matches!(err.kind(), KmsIoErrorKind::Tls(_)), "{err}");
    assert_eq!(kms.stop().len(), 2);
}

#[test]
fn an_expired_server_certificate_shows_its_dates() {
    use libmongocrypt_kms::tls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    // A CA, and a server certificate for the AWS host that expired at the end of 2021.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["kms.us-east-1.amazonaws.com".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 12, 31);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let server_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = server::tls_config(vec![cert.der().clone()], server_key, None);
    let kms = MockServer::start(server::Options { tls: Some(config), ..server::Options::default() }, aws_replies);
    let addr = kms.addr();
    let transport = KmsTransport::builder()
        .default_tls_options(TlsOptions::new().ca_pem(ca.pem().as_bytes()).unwrap())
        .resolver(move |_, _| Ok(vec![addr]))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let err = drive_datakey(&mut aws_datakey(&crypt(false)), &transport).unwrap_err();
    assert!(matches!(err.kind(), KmsIoErrorKind::Tls(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("expired: not valid after 2021-12-31 00:00:00 UTC"), "{text}");
    assert!(text.contains(" UTC now") && !text.contains("(UNIX)"), "{text}");
    assert!(kms.stop().is_empty());
}
