//! The spawned stand-in for mongocryptd (`stand_in.rs`, compiled here with rustc) and the directory it works in.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The stand-in executable, compiled once per test run (std only: a second or so).
pub fn stand_in() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mongocryptd/stand_in.rs");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mongocryptd-stand-in");
        std::fs::create_dir_all(&dir).expect("the stand-in's build directory");
        let exe = dir.join(format!("mongocryptd{}", std::env::consts::EXE_SUFFIX));
        // Built under a name of this process, then renamed into place: another test run may be running the
        // previous build.
        let built = dir.join(format!("mongocryptd-{}{}", std::process::id(), std::env::consts::EXE_SUFFIX));
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let output = Command::new(rustc)
            .args(["--edition", "2021", "--crate-name", "mongocryptd_stand_in", "-o"])
            .arg(&built)
            .arg(&source)
            .output()
            .expect("rustc runs");
        assert!(output.status.success(), "rustc {}: {}", source.display(), String::from_utf8_lossy(&output.stderr));
        std::fs::rename(&built, &exe).expect("the stand-in in place");
        exe
    })
}

/// A directory of its own for one stand-in (its pid file, logs and reply); removed when dropped, which also makes
/// a stand-in still running there exit.
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    pub fn new() -> WorkDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("mongocryptd-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a work directory");
        WorkDir(dir)
    }

    /// The `--pidfilepath` argument that names this directory.
    pub fn pid_file_arg(&self) -> String {
        format!("--pidfilepath={}", self.0.join("mongocryptd.pid").display())
    }

    /// One line per start of the stand-in: its arguments.
    pub fn spawns(&self) -> Vec<Vec<String>> {
        lines(&self.0.join("spawns.log")).into_iter().map(|l| l.split('\t').map(str::to_owned).collect()).collect()
    }

    /// The name of each command the stand-in received.
    pub fn commands(&self) -> Vec<String> {
        lines(&self.0.join("commands.log"))
    }

    /// Waits (at most 10 s) until the stand-in was started `count` times, then returns every start's arguments.
    pub fn await_spawns(&self, count: usize) -> Vec<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.spawns().len() < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.spawns()
    }

    /// Waits (at most 10 s) until a stand-in listens: it writes its pid file once it does.
    pub fn await_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.0.join("mongocryptd.pid").exists() {
            assert!(Instant::now() < deadline, "no stand-in listens within 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lines(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Waits (at most 10 s) until nothing accepts connections on `port` any more.
pub fn await_closed(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "port {port} still accepts connections");
        std::thread::sleep(Duration::from_millis(20));
    }
}
