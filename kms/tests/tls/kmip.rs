//! KMIP over TLS against a real KMIP server: PyKMIP (kms/tests/support/pykmip.rs starts it on loopback, with its
//! default TLS 1.2 cipher suites, RSA certificates and mutual TLS). Those suites (`AES128-SHA256`,
//! `AES256-SHA256`, ... with RSA key exchange) are not in rustls: the `openssl` backend serves these requests
//! (`KmsTransportBuilder::openssl_for`), through the one retry core of the runner.
#![cfg(feature = "openssl")]

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bson::{rawdoc, Document, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{run, IoResult, StateMachineIo};
use libmongocrypt::{Algorithm, Crypt, KeyEncryptionKey, KmsCtx, KmsProviders, State};
use libmongocrypt_kms::tls::{KmsIoError, KmsIoErrorKind, KmsTransport, KmsTransportBuilder, TlsOptions};

use support::common::linked_version;
use support::pykmip::{PyKmip, RsaPki};

/// The I/O of a data-key or explicit-encryption run: the key vault holds `keys`; KMS goes through `kms`.
struct KmipIo {
    kms: KmsTransport,
    keys: Vec<RawDocumentBuf>,
    kms_requests: AtomicUsize,
}

impl KmipIo {
    fn new(kms: KmsTransport) -> KmipIo {
        KmipIo { kms, keys: Vec::new(), kms_requests: AtomicUsize::new(0) }
    }
}

impl StateMachineIo for KmipIo {
    fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Err("no collections in an explicit run".into())
    }

    fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
        Err("no mongocryptd in an explicit run".into())
    }

    fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        Ok(self.keys.clone())
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.kms_requests.fetch_add(1, Ordering::SeqCst);
        self.kms.kms_request(kms)
    }
}

/// Files of the client's TLS options, removed when dropped.
struct Files(std::path::PathBuf);

impl Files {
    fn new(tag: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("mongocrypt-kmip-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files(dir)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The spec's `tlsOptions` of a KMIP provider: the test CA, and the client certificate when `client`.
fn tls_document(files: &Files, pki: &RsaPki, client: bool) -> Document {
    let mut options = libmongocrypt::bson::doc! { "tlsCAFile": files.write("ca.pem", &pki.ca_pem) };
    if client {
        options.insert("tlsCertificateKeyFile", files.write("client.pem", &pki.client_cert_key_pem()));
    }
    options
}

/// A transport to `server` for every host, with short timeouts.
fn builder_to(server: &PyKmip) -> KmsTransportBuilder {
    let addr = server.addr;
    KmsTransport::builder().resolver(move |_, _| Ok(vec![addr])).timeout(Duration::from_secs(10))
}

/// A PyKMIP server with mutual TLS, and a transport that reaches provider `kmip` on it through OpenSSL with the
/// client's certificate: the setup of the blocking and async faces' main tests.
struct MutualTlsKmip {
    pki: RsaPki,
    server: PyKmip,
    files: Files,
    /// `localhost:<port>`.
    endpoint: String,
    providers: KmsProviders,
    /// The `kmip` TLS options (CA and client certificate files).
    tls: Document,
    transport: KmsTransport,
}

impl MutualTlsKmip {
    fn start(tag: &str) -> MutualTlsKmip {
        let pki = RsaPki::new();
        let server = PyKmip::start(tag, &pki.ca_pem, &pki.server_pem, &pki.server_key_pem);
        let files = Files::new(tag);
        let endpoint = format!("localhost:{}", server.addr.port());
        let providers = KmsProviders::new().kmip("kmip", &endpoint);
        let tls = tls_document(&files, &pki, true);
        let transport = builder_to(&server)
            .tls_options_document(&libmongocrypt::bson::doc! { "kmip": tls.clone() })
            .unwrap()
            .openssl_for("kmip")
            .build()
            .unwrap();
        MutualTlsKmip { pki, server, files, endpoint, providers, tls, transport }
    }
}

/// A data key of `kek` through the runner; returns the key document.
fn create_key(crypt: &Crypt, kek: &KeyEncryptionKey, io: &KmipIo) -> RawDocumentBuf {
    let mut ctx = crypt.ctx().key_encryption_key(kek).unwrap().datakey().unwrap();
    run(&mut ctx, io).unwrap_or_else(|e| panic!("data key of {kek:?}: {e}")).expect("a key document")
}

/// Encrypts (explicit, Deterministic) with the key `key`, then decrypts with a new `Crypt` (no cached key: the
/// KMS is asked again); both through the runner. Returns the encrypted document.
fn round_trip(providers: &KmsProviders, key: &RawDocumentBuf, transport: &KmsTransport) -> RawDocumentBuf {
    let key_id = key.get_binary("_id").unwrap().bytes.to_vec();
    let value = rawdoc! { "v": "a KMIP secret" };
    let io = KmipIo { keys: vec![key.clone()], ..KmipIo::new(transport.clone()) };

    let crypt = Crypt::builder().kms_providers(providers).unwrap().build().unwrap();
    let mut ctx = crypt
        .ctx()
        .key_id(&key_id)
        .unwrap()
        .algorithm(&Algorithm::Deterministic)
        .unwrap()
        .explicit_encrypt(&value)
        .unwrap();
    let encrypted = run(&mut ctx, &io).unwrap().expect("{v: ciphertext}");
    let ciphertext = encrypted.get_binary("v").unwrap();
    assert_eq!(ciphertext.subtype, libmongocrypt::bson::spec::BinarySubtype::Encrypted);
    assert_eq!(ciphertext.bytes[0], 1, "blob subtype 1: deterministic");
    assert_eq!(&ciphertext.bytes[1..17], key_id.as_slice());
    assert_eq!(io.kms_requests.load(Ordering::SeqCst), 1, "the key's material came from the KMIP server");

    let crypt = Crypt::builder().kms_providers(providers).unwrap().build().unwrap();
    let mut ctx = crypt.ctx().explicit_decrypt(&encrypted).unwrap();
    assert_eq!(run(&mut ctx, &io).unwrap(), Some(value));
    assert_eq!(io.kms_requests.load(Ordering::SeqCst), 2);
    encrypted
}

/// A data key of `kek` by hand, serving NEED_KMS with `transport`: the transport's own error.
fn datakey_error(crypt: &Crypt, kek: &KeyEncryptionKey, transport: &KmsTransport) -> KmsIoError {
    let mut ctx = crypt.ctx().key_encryption_key(kek).unwrap().datakey().unwrap();
    assert_eq!(ctx.state(), State::NeedKms);
    transport.serve_and_done(ctx.kms_scope().unwrap()).expect_err("the KMS request must fail")
}

fn master_key(key: &RawDocumentBuf) -> Document {
    Document::try_from(key.get_document("masterKey").unwrap()).unwrap()
}

#[test]
fn pykmip_keys_encrypt_and_decrypt_and_failures_are_clear() {
    let MutualTlsKmip { pki, server, files, endpoint, providers, tls, transport } = MutualTlsKmip::start("main");

    // A KMIP data key (libmongocrypt registers 96 bytes of secret data and gets them back), then explicit
    // Deterministic encryption and decryption with it.
    let crypt = Crypt::builder().kms_providers(&providers).unwrap().build().unwrap();
    let io = KmipIo::new(transport.clone());
    let key = create_key(&crypt, &KeyEncryptionKey::kmip("kmip"), &io);
    let master = master_key(&key);
    assert_eq!(master.get_str("provider").unwrap(), "kmip", "{master}");
    assert!(!master.get_str("keyId").unwrap().is_empty(), "{master}");
    assert!(io.kms_requests.load(Ordering::SeqCst) >= 2, "register (and activate) and get");
    round_trip(&providers, &key, &transport);

    // A password-protected client key (tlsCertificateKeyFilePassword), as `openssl pkcs8 -topk8 -v2 aes-256-cbc`
    // writes it: decrypted by the TLS options, handed to OpenSSL.
    let key_pem = openssl::pkey::PKey::private_key_from_pem(pki.client_key_pem.as_bytes()).unwrap();
    let encrypted =
        key_pem.private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), b"kmip password").unwrap();
    let client =
        files.write("client-encrypted.pem", &(pki.client_pem.clone() + std::str::from_utf8(&encrypted).unwrap()));
    let protected = libmongocrypt::bson::doc! {
        "kmip": {
            "tlsCAFile": tls.get_str("tlsCAFile").unwrap(),
            "tlsCertificateKeyFile": client,
            "tlsCertificateKeyFilePassword": "kmip password",
        }
    };
    let with_password =
        builder_to(&server).tls_options_document(&protected).unwrap().openssl_for("kmip").build().unwrap();
    let key = create_key(&crypt, &KeyEncryptionKey::kmip("kmip"), &KmipIo::new(with_password.clone()));
    round_trip(&providers, &key, &with_password);

    // OpenSSL for every provider, from the default TLS options.
    let for_all = builder_to(&server)
        .default_tls_options(
            TlsOptions::new()
                .ca_pem(pki.ca_pem.as_bytes())
                .unwrap()
                .certificate_key_pem(pki.client_cert_key_pem().as_bytes(), None)
                .unwrap(),
        )
        .openssl_for_all()
        .build()
        .unwrap();
    assert!(format!("{for_all:?}").contains("openssl_for_all: true"), "{for_all:?}");
    let key = create_key(&crypt, &KeyEncryptionKey::kmip("kmip"), &KmipIo::new(for_all.clone()));
    round_trip(&providers, &key, &for_all);

    // `delegated: true` (libmongocrypt ≥ 1.10): the KMIP server creates an AES key and encrypts the data key
    // with it; decryption asks it again.
    if linked_version() >= 0x010a_0000 {
        let kek = KeyEncryptionKey::kmip("kmip").with("delegated", true);
        let key = create_key(&crypt, &kek, &KmipIo::new(transport.clone()));
        let master = master_key(&key);
        assert!(master.get_bool("delegated").unwrap(), "{master}");
        round_trip(&providers, &key, &transport);
    } else {
        eprintln!("skipped delegated: libmongocrypt {} predates delegated KMIP keys (1.10)", libmongocrypt::version());
    }

    // A named KMIP provider (libmongocrypt ≥ 1.9): OpenSSL chosen for `kmip:named` only; plain `kmip` stays on
    // rustls, which PyKMIP's cipher suites refuse.
    if linked_version() >= 0x0109_0000 {
        let providers = KmsProviders::new().kmip("kmip", &endpoint).kmip("kmip:named", &endpoint);
        let transport = builder_to(&server)
            .tls_options_document(&libmongocrypt::bson::doc! { "kmip": tls.clone(), "kmip:named": tls.clone() })
            .unwrap()
            .openssl_for("kmip:named")
            .build()
            .unwrap();
        let crypt = Crypt::builder().kms_providers(&providers).unwrap().build().unwrap();
        let key = create_key(&crypt, &KeyEncryptionKey::kmip("kmip:named"), &KmipIo::new(transport.clone()));
        assert_eq!(master_key(&key).get_str("provider").unwrap(), "kmip:named");
        round_trip(&providers, &key, &transport);

        let err = datakey_error(&crypt, &KeyEncryptionKey::kmip("kmip"), &transport);
        assert!(matches!(err.kind(), KmsIoErrorKind::Tls(_)), "rustls for plain kmip: {err}");
        let text = err.to_string();
        assert!(text.contains("HandshakeFailure") && text.contains("client certificate"), "{text}");
        assert!(text.contains("cipher suites") && text.contains("no CBC"), "{text}");
    } else {
        eprintln!("skipped named KMIP providers: libmongocrypt {} predates them (1.9)", libmongocrypt::version());
    }

    // No client certificate: the server refuses the handshake; the error says what was offered and why it may
    // have been refused.
    let no_client = builder_to(&server)
        .tls_options_document(&libmongocrypt::bson::doc! { "kmip": tls_document(&files, &pki, false) })
        .unwrap()
        .openssl_for("kmip")
        .build()
        .unwrap();
    let err = datakey_error(&crypt, &KeyEncryptionKey::kmip("kmip"), &no_client);
    eprintln!("no client certificate: {err}");
    assert!(matches!(err.kind(), KmsIoErrorKind::OpenSsl(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains(&endpoint) && text.contains("(kmip)"), "{text}");
    assert!(text.contains("handshake failure"), "OpenSSL's alert: {text}");
    assert!(text.contains("may want a client certificate (tlsCertificateKeyFile)"), "{text}");
    assert!(text.contains("other cipher suites"), "{text}");
    assert!(text.contains("offered TLS 1.2 and TLS 1.3") && text.contains("AES128-SHA256"), "{text}");

    // With retries on (where the linked library has them, RETRIES_SUPPORTED): the TLS failure is a network error,
    // reported to libmongocrypt by the one retry core with `mongocrypt_kms_ctx_fail`; libmongocrypt does not
    // retry KMIP requests (its retries are for the HTTP providers; seen on 1.17 and 1.21), so the same clear error
    // comes back after one attempt, at once.
    if libmongocrypt_kms::tls::RETRIES_SUPPORTED {
        let retrying = libmongocrypt_kms::tls::enable_retries(Crypt::builder().kms_providers(&providers).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let err = datakey_error(&retrying, &KeyEncryptionKey::kmip("kmip"), &no_client);
        eprintln!("with retries, after {:?}: {err}", started.elapsed());
        assert!(matches!(err.kind(), KmsIoErrorKind::OpenSsl(_)), "{err}");
        assert_eq!(err.attempts(), 1, "{err}");
        assert!(err.to_string().contains("may want a client certificate"), "{err}");
    }

    // A wrong host: the endpoint's name is not in the server certificate.
    let wrong = KeyEncryptionKey::kmip("kmip").endpoint(&format!("kmip.wrong.example:{}", server.addr.port()));
    let err = datakey_error(&crypt, &wrong, &transport);
    eprintln!("wrong host: {err}");
    assert!(matches!(err.kind(), KmsIoErrorKind::OpenSsl(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("kmip.wrong.example") && text.contains("hostname mismatch"), "{text}");
    drop(server);
}

#[test]
fn pykmip_expired_server_certificate_is_clear() {
    let pki = RsaPki::new();
    let (expired, expired_key) = pki.leaf(&["localhost", "127.0.0.1"], false, Some(((2020, 1, 1), (2021, 12, 31))));
    let server = PyKmip::start("expired", &pki.ca_pem, &expired, &expired_key);
    let files = Files::new("expired");
    let providers = KmsProviders::new().kmip("kmip", &format!("localhost:{}", server.addr.port()));
    let transport = builder_to(&server)
        .tls_options_document(&libmongocrypt::bson::doc! { "kmip": tls_document(&files, &pki, true) })
        .unwrap()
        .openssl_for("kmip")
        .build()
        .unwrap();
    let crypt = Crypt::builder().kms_providers(&providers).unwrap().build().unwrap();
    let err = datakey_error(&crypt, &KeyEncryptionKey::kmip("kmip"), &transport);
    eprintln!("expired server certificate: {err}");
    assert!(matches!(err.kind(), KmsIoErrorKind::OpenSsl(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("certificate has expired"), "{text}");
    assert!(text.contains("Dec 31 00:00:00 2021 GMT"), "the validity, as dates: {text}");
}

/// A named KMIP provider with TLS options of its own (`kmip:with_tls`: the CA and a client certificate) next to
/// `kmip` without any (Mozilla's roots: PyKMIP's certificate is refused): whichever way OpenSSL is chosen (by kind,
/// by full name, for all), `kmip:with_tls` uses its own options, looked up by full name first as on the rustls
/// path (prose test 11.6, "named KMIP: kmip:with_tls → success").
#[test]
fn pykmip_named_providers_use_their_own_tls_options_on_openssl() {
    if linked_version() < 0x0109_0000 {
        eprintln!("skipped: libmongocrypt {} predates named KMIP providers (1.9)", libmongocrypt::version());
        return;
    }
    let pki = RsaPki::new();
    let server = PyKmip::start("named", &pki.ca_pem, &pki.server_pem, &pki.server_key_pem);
    let files = Files::new("named");
    let endpoint = format!("localhost:{}", server.addr.port());
    let providers = KmsProviders::new().kmip("kmip", &endpoint).kmip("kmip:with_tls", &endpoint);
    let crypt = Crypt::builder().kms_providers(&providers).unwrap().build().unwrap();
    let tls = libmongocrypt::bson::doc! { "kmip:with_tls": tls_document(&files, &pki, true) };
    for choose in ["kmip", "kmip:with_tls", "all"] {
        let builder = builder_to(&server).tls_options_document(&tls).unwrap();
        let builder = if choose == "all" { builder.openssl_for_all() } else { builder.openssl_for(choose) };
        let transport = builder.build().unwrap();
        let key = create_key(&crypt, &KeyEncryptionKey::kmip("kmip:with_tls"), &KmipIo::new(transport.clone()));
        assert_eq!(master_key(&key).get_str("provider").unwrap(), "kmip:with_tls", "{choose}");
        round_trip(&providers, &key, &transport);
        if choose != "kmip:with_tls" {
            // Plain kmip on OpenSSL too, with the defaults: the system's roots do not know the test CA.
            let err = datakey_error(&crypt, &KeyEncryptionKey::kmip("kmip"), &transport);
            assert!(matches!(err.kind(), KmsIoErrorKind::OpenSsl(_)), "{choose}: {err}");
            assert!(err.to_string().contains("failed verification"), "{choose}: {err}");
        }
    }
    drop(server);
}

/// The async face (`TokioKmsTransport`) with OpenSSL (tokio-openssl) against PyKMIP: the connectors the blocking face
/// builds, found the same way (by full name, then kind).
#[cfg(feature = "tokio")]
mod on_tokio {
    use super::*;
    use libmongocrypt::state_machine::{run_tokio, AsyncStateMachineIo};
    use libmongocrypt_kms::tls::TokioKmsTransport;

    /// [`KmipIo`] on the async face.
    struct AsyncKmipIo {
        kms: TokioKmsTransport,
        keys: Vec<RawDocumentBuf>,
    }

    impl AsyncStateMachineIo for AsyncKmipIo {
        async fn list_collections(&self, _: Option<&str>, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
            Err("no collections in an explicit run".into())
        }
        async fn mark_command(&self, _: &RawDocument) -> IoResult<RawDocumentBuf> {
            Err("no mongocryptd in an explicit run".into())
        }
        async fn find_keys(&self, _: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
            Ok(self.keys.clone())
        }
        async fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
            self.kms.kms_request(kms).await
        }
    }

    /// A data key of `kek` through `run_tokio`, on a spawned task (its future must be `Send`).
    async fn create_key_async(crypt: &Crypt, kek: &KeyEncryptionKey, kms: &TokioKmsTransport) -> RawDocumentBuf {
        let mut ctx = crypt.ctx().key_encryption_key(kek).unwrap().datakey().unwrap();
        let io = AsyncKmipIo { kms: kms.clone(), keys: Vec::new() };
        let key = tokio::spawn(async move { run_tokio(&mut ctx, &io).await }).await.unwrap();
        key.unwrap_or_else(|e| panic!("data key of {kek:?}: {e}")).expect("a key document")
    }

    /// Encrypts (Deterministic) and decrypts with `key` through `run_tokio`, each with a new `Crypt` (the key's
    /// material comes from the KMIP server each time); returns the encrypted document.
    async fn round_trip_async(
        providers: &KmsProviders,
        key: &RawDocumentBuf,
        kms: &TokioKmsTransport,
    ) -> RawDocumentBuf {
        let io = AsyncKmipIo { kms: kms.clone(), keys: vec![key.clone()] };
        let value = rawdoc! { "v": "a KMIP secret" };
        let crypt = Crypt::builder().kms_providers(providers).unwrap().build().unwrap();
        let key_id = key.get_binary("_id").unwrap().bytes.to_vec();
        let mut ctx = crypt
            .ctx()
            .key_id(&key_id)
            .unwrap()
            .algorithm(&Algorithm::Deterministic)
            .unwrap()
            .explicit_encrypt(&value)
            .unwrap();
        let encrypted = run_tokio(&mut ctx, &io).await.unwrap().expect("{v: ciphertext}");
        let crypt = Crypt::builder().kms_providers(providers).unwrap().build().unwrap();
        let mut ctx = crypt.ctx().explicit_decrypt(&encrypted).unwrap();
        assert_eq!(run_tokio(&mut ctx, &io).await.unwrap(), Some(value));
        encrypted
    }

    #[test]
    fn pykmip_keys_on_the_async_face_with_openssl() {
        let MutualTlsKmip { pki, server, files, providers, transport, .. } = MutualTlsKmip::start("tokio");
        let kms = TokioKmsTransport::new(transport.clone());
        let crypt = Crypt::builder().kms_providers(&providers).unwrap().build().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

        // A data key made on the async face: the blocking face encrypts and decrypts with it; the async face
        // encrypts to the same bytes (Deterministic) and decrypts.
        let key = runtime.block_on(create_key_async(&crypt, &KeyEncryptionKey::kmip("kmip"), &kms));
        let master = master_key(&key);
        assert_eq!(master.get_str("provider").unwrap(), "kmip", "{master}");
        assert!(!master.get_str("keyId").unwrap().is_empty(), "{master}");
        let blocking = round_trip(&providers, &key, &transport);
        assert_eq!(runtime.block_on(round_trip_async(&providers, &key, &kms)), blocking);

        // A key made on the blocking face, used on the async one.
        let key = create_key(&crypt, &KeyEncryptionKey::kmip("kmip"), &KmipIo::new(transport.clone()));
        let blocking = round_trip(&providers, &key, &transport);
        assert_eq!(runtime.block_on(round_trip_async(&providers, &key, &kms)), blocking);

        // No client certificate: OpenSSL's handshake error, the same as the blocking face's.
        let no_client = builder_to(&server)
            .tls_options_document(&libmongocrypt::bson::doc! { "kmip": tls_document(&files, &pki, false) })
            .unwrap()
            .openssl_for("kmip")
            .build()
            .unwrap();
        let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::kmip("kmip")).unwrap().datakey().unwrap();
        let mut scope = ctx.kms_scope().unwrap();
        let mut kms_ctx = scope.next_kms_ctx().unwrap();
        let err = runtime.block_on(TokioKmsTransport::new(no_client).exchange(&mut kms_ctx)).unwrap_err();
        assert!(matches!(err.kind(), KmsIoErrorKind::OpenSsl(_)), "{err}");
        let text = err.to_string();
        assert!(text.contains("may want a client certificate (tlsCertificateKeyFile)"), "{text}");
        assert!(text.contains("offered TLS 1.2 and TLS 1.3") && text.contains("AES128-SHA256"), "{text}");
        drop(kms_ctx);
        drop(scope);

        // A wrong host: hostname verification names the KMS host, as on the blocking face.
        let wrong = KeyEncryptionKey::kmip("kmip").endpoint(&format!("kmip.wrong.example:{}", server.addr.port()));
        let mut ctx = crypt.ctx().key_encryption_key(&wrong).unwrap().datakey().unwrap();
        let mut scope = ctx.kms_scope().unwrap();
        let mut kms_ctx = scope.next_kms_ctx().unwrap();
        let err = runtime.block_on(kms.exchange(&mut kms_ctx)).unwrap_err();
        assert!(matches!(err.kind(), KmsIoErrorKind::OpenSsl(_)), "{err}");
        assert!(err.to_string().contains("hostname mismatch"), "{err}");
        drop(kms_ctx);
        drop(scope);
        drop(server);
    }

    /// `kmip:with_tls` with TLS options of its own next to `kmip` without any, on the async face: whichever way
    /// OpenSSL is chosen, `kmip:with_tls` uses its own options (full name first, then kind), and plain `kmip`
    /// OpenSSL's defaults (the system's roots refuse PyKMIP's certificate).
    #[test]
    fn pykmip_named_providers_use_their_own_tls_options_on_the_async_face() {
        if linked_version() < 0x0109_0000 {
            eprintln!("skipped: libmongocrypt {} predates named KMIP providers (1.9)", libmongocrypt::version());
            return;
        }
        let pki = RsaPki::new();
        let server = PyKmip::start("tokio-named", &pki.ca_pem, &pki.server_pem, &pki.server_key_pem);
        let files = Files::new("tokio-named");
        let endpoint = format!("localhost:{}", server.addr.port());
        let providers = KmsProviders::new().kmip("kmip", &endpoint).kmip("kmip:with_tls", &endpoint);
        let crypt = Crypt::builder().kms_providers(&providers).unwrap().build().unwrap();
        let tls = libmongocrypt::bson::doc! { "kmip:with_tls": tls_document(&files, &pki, true) };
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        for choose in ["kmip", "kmip:with_tls", "all"] {
            let builder = builder_to(&server).tls_options_document(&tls).unwrap();
            let builder = if choose == "all" { builder.openssl_for_all() } else { builder.openssl_for(choose) };
            let transport = builder.build().unwrap();
            let kms = TokioKmsTransport::new(transport.clone());
            let key = runtime.block_on(create_key_async(&crypt, &KeyEncryptionKey::kmip("kmip:with_tls"), &kms));
            assert_eq!(master_key(&key).get_str("provider").unwrap(), "kmip:with_tls", "{choose}");
            let blocking = round_trip(&providers, &key, &transport);
            assert_eq!(runtime.block_on(round_trip_async(&providers, &key, &kms)), blocking, "{choose}");
            if choose != "kmip:with_tls" {
                let mut ctx =
                    crypt.ctx().key_encryption_key(&KeyEncryptionKey::kmip("kmip")).unwrap().datakey().unwrap();
                let mut scope = ctx.kms_scope().unwrap();
                let mut kms_ctx = scope.next_kms_ctx().unwrap();
                let err = runtime.block_on(kms.exchange(&mut kms_ctx)).unwrap_err();
                assert!(matches!(err.kind(), KmsIoErrorKind::OpenSsl(_)), "{choose}: {err}");
                assert!(err.to_string().contains("failed verification"), "{choose}: {err}");
            }
        }
        drop(server);
    }
}
