//! A stand-in for mongocryptd, which `driver/tests/mongocryptd.rs` compiles with rustc (std only) and spawns
//! through the crate's manager. It takes mongocryptd's own options:
//!
//! - `--pidfilepath=DIR/NAME`: DIR is its work directory. It appends its arguments (tab-separated, one line per
//!   start) to `DIR/spawns.log` first thing, then writes its pid to the pid file once it listens;
//! - `--port=N` (or `--port N`): it serves OP_MSG on 127.0.0.1:N; if the port is taken (another instance
//!   runs), it exits, as mongocryptd does;
//! - `--idleShutdownTimeoutSecs=S` (or two arguments): it exits after S seconds without a connection.
//!
//! It also exits when `DIR/stop` exists or DIR is gone, so that no test leaves it running. It answers the
//! handshake (`isMaster`, `ismaster` or `hello`) with `{ok: 1, ismaster: true, iscryptd: true, maxWireVersion: 21}`
//! and any other command with the BSON bytes of `DIR/reply.bson`, appending each command's name to
//! `DIR/commands.log`.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::exit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The value of `--name=value` or `--name value`.
fn option<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == name {
            return args.next().map(String::as_str);
        }
        if let Some(value) = arg.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')) {
            return Some(value);
        }
    }
    None
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn append(path: &Path, line: &str) {
    let mut file = OpenOptions::new().create(true).append(true).open(path).expect("append to the log");
    file.write_all(format!("{line}\n").as_bytes()).expect("write the log");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(pid_file) = option(&args, "--pidfilepath").map(PathBuf::from) else { exit(2) };
    let dir = pid_file.parent().expect("the pid file's directory").to_path_buf();
    append(&dir.join("spawns.log"), &args.join("\t"));
    let port: u16 = option(&args, "--port").and_then(|p| p.parse().ok()).unwrap_or(27020);
    let idle: u64 = option(&args, "--idleShutdownTimeoutSecs").and_then(|s| s.parse().ok()).unwrap_or(60);
    let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) else { exit(3) };
    fs::write(&pid_file, std::process::id().to_string()).expect("write the pid file");
    listener.set_nonblocking(true).expect("non-blocking listener");
    let last_active = Arc::new(AtomicU64::new(now_secs()));
    loop {
        if !dir.is_dir() || dir.join("stop").exists() || now_secs() > last_active.load(Ordering::Relaxed) + idle {
            exit(0);
        }
        match listener.accept() {
            Ok((stream, _)) => {
                last_active.store(now_secs(), Ordering::Relaxed);
                let dir = dir.clone();
                std::thread::spawn(move || serve(stream, &dir));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A BSON document of `(key, type, value bytes)` elements.
fn document(elements: &[(&str, u8, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (key, kind, value) in elements {
        body.push(*kind);
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value);
    }
    body.push(0);
    let mut doc = ((body.len() + 4) as i32).to_le_bytes().to_vec();
    doc.extend_from_slice(&body);
    doc
}

fn hello_reply() -> Vec<u8> {
    document(&[
        ("ok", 0x01, 1.0f64.to_le_bytes().to_vec()),
        ("ismaster", 0x08, vec![1]),
        ("iscryptd", 0x08, vec![1]),
        ("maxWireVersion", 0x10, 21i32.to_le_bytes().to_vec()),
    ])
}

fn serve(mut stream: TcpStream, dir: &Path) {
    stream.set_nonblocking(false).expect("a blocking connection");
    loop {
        let mut header = [0u8; 16];
        if stream.read_exact(&mut header).is_err() {
            return;
        }
        let field = |i: usize| i32::from_le_bytes(header[i..i + 4].try_into().unwrap());
        let (length, request_id) = (field(0), field(4));
        if !(26..=48_000_000).contains(&length) {
            return;
        }
        let mut rest = vec![0u8; length as usize - 16];
        if stream.read_exact(&mut rest).is_err() {
            return;
        }
        // flagBits (4), section kind 0 (1), then the body: its length (4), first element's type (1) and key.
        let key = &rest[10..];
        let command = String::from_utf8_lossy(&key[..key.iter().position(|&b| b == 0).unwrap_or(0)]).into_owned();
        append(&dir.join("commands.log"), &command);
        let reply = match command.as_str() {
            "isMaster" | "ismaster" | "hello" => hello_reply(),
            _ => fs::read(dir.join("reply.bson")).expect("DIR/reply.bson"),
        };
        let mut message = Vec::new();
        for value in [(16 + 4 + 1 + reply.len()) as i32, 1, request_id, 2013, 0] {
            message.extend_from_slice(&value.to_le_bytes());
        }
        message.push(0);
        message.extend_from_slice(&reply);
        if stream.write_all(&message).is_err() {
            return;
        }
    }
}
