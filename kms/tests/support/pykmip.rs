//! A real KMIP server for the `openssl` tests: PyKMIP (`pykmip-server`, from PyPI; scripts/test.sh installs a
//! pinned copy into `target/pykmip-venv`), started on a free loopback port with a generated configuration, RSA
//! certificates made here (a test CA, the server's, a client's for mutual TLS), and PyKMIP's default TLS 1.2
//! cipher suites (`AES128-SHA256`, `AES256-SHA256`, ... with RSA key exchange). It is stopped, with the helper
//! processes it forks (its process group, by the group's id), when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// A date: year, month, day.
pub type Ymd = (i32, u8, u8);

/// An RSA CA with an RSA server certificate (`localhost`, `127.0.0.1`) and an RSA client certificate.
pub struct RsaPki {
    pub ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
    pub client_pem: String,
    pub client_key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn rsa_key() -> KeyPair {
    // ring cannot generate RSA keys; OpenSSL makes one, rcgen signs with it.
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let pem = String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap()
}

impl RsaPki {
    pub fn new() -> RsaPki {
        let ca_key = rsa_key();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "KMIP test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let mut pki = RsaPki {
            ca_pem: ca.pem(),
            server_pem: String::new(),
            server_key_pem: String::new(),
            client_pem: String::new(),
            client_key_pem: String::new(),
            issuer,
        };
        (pki.server_pem, pki.server_key_pem) = pki.leaf(&["localhost", "127.0.0.1"], false, None);
        (pki.client_pem, pki.client_key_pem) = pki.leaf(&["client"], true, None);
        pki
    }

    /// A leaf certificate and its key (PEM), for the server or a client, valid from and to `validity` when given.
    pub fn leaf(&self, names: &[&str], client: bool, validity: Option<(Ymd, Ymd)>) -> (String, String) {
        let key = rsa_key();
        let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        // PyKMIP takes the client's identity from its common name.
        params.distinguished_name.push(DnType::CommonName, if client { "kmip-client" } else { "localhost" });
        params.extended_key_usages =
            vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
        if let Some(((y0, m0, d0), (y1, m1, d1))) = validity {
            params.not_before = rcgen::date_time_ymd(y0, m0, d0);
            params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Client certificate then key, as a `tlsCertificateKeyFile` holds them.
    pub fn client_cert_key_pem(&self) -> String {
        format!("{}{}", self.client_pem, self.client_key_pem)
    }
}

/// The `pykmip-server` to run: `$MONGOCRYPT_TEST_PYKMIP_SERVER`, or scripts/test.sh's virtual environment.
fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MONGOCRYPT_TEST_PYKMIP_SERVER") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pykmip-venv/bin/pykmip-server");
    assert!(
        venv.exists(),
        "PyKMIP is not installed: {} is missing (scripts/test.sh's provision step installs it; or set \
         MONGOCRYPT_TEST_PYKMIP_SERVER)",
        venv.display()
    );
    venv
}

/// A PyKMIP server child process on loopback, with the helper processes it forks, all killed when dropped.
pub struct PyKmip {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl PyKmip {
    /// Serves with `server_pem`/`server_key_pem`, requires client certificates signed by `ca_pem`.
    pub fn start(tag: &str, ca_pem: &str, server_pem: &str, server_key_pem: &str) -> PyKmip {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("mongocrypt-pykmip-{tag}-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        let file = |name: &str, contents: &str| {
            let path = dir.join(name);
            std::fs::write(&path, contents).unwrap();
            path.display().to_string()
        };
        let ca = file("ca.pem", ca_pem);
        let cert = file("server.pem", server_pem);
        let key = file("server.key", server_key_pem);
        // auth_suite TLS1.2: PyKMIP's "Basic" suite is TLS 1.0, which neither rustls nor OpenSSL 3 (at its default
        // security level) speaks; no tls_cipher_suites: the TLS1.2 suite's default ciphers.
        let conf = file(
            "server.conf",
            &format!(
                "[server]\nhostname=127.0.0.1\nport={port}\ncertificate_path={cert}\nkey_path={key}\nca_path={ca}\n\
                 auth_suite=TLS1.2\nenable_tls_client_auth=True\npolicy_path={}\nlogging_level=INFO\n\
                 database_path={}\n",
                dir.join("policies").display(),
                dir.join("pykmip.db").display()
            ),
        );
        let child = Command::new(server_binary())
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(dir.join("server.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.txt")).unwrap())
            .env("PYTHONWARNINGS", "ignore")
            // Its own process group: pykmip-server forks helpers (a multiprocessing manager, the policy directory
            // monitor) that outlive it if only it is killed; Drop kills the group, by its id.
            .process_group(0)
            .spawn()
            .expect("start pykmip-server");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut server = PyKmip { child, addr, dir };
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("pykmip-server exited: {status}; {}", server.logs());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "pykmip-server did not listen on {addr}: {}",
                server.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The server's log and standard error, for failure messages.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("server.log:\n{}\nstderr:\n{}", read("server.log"), read("stderr.txt"))
    }
}

impl Drop for PyKmip {
    fn drop(&mut self) {
        // The server's process group (its id is the server's): the server and the helpers it forked.
        let _ =
            Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
