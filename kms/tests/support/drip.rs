//! A hostile peer on loopback: accepts connections and, once the client has sent something, drips `head`, then
//! `filler` forever, one byte per `interval`, never finishing; it reads and ignores what it is sent. Bounded: at most 8 connections, a lifetime,
//! and it stops (joining its threads) when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Dripper {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The start of a TLS handshake record of 16 KiB that never ends: a TLS client waits for the rest of it.
pub const ENDLESS_TLS_RECORD: &[u8] = &[0x16, 0x03, 0x03, 0x40, 0x00];

impl Dripper {
    pub fn start(head: &'static [u8], filler: u8, interval: Duration, lifetime: Duration) -> Dripper {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let until = Instant::now() + lifetime;
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut conns: Vec<JoinHandle<()>> = Vec::new();
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    match listener.accept() {
                        Ok((sock, _)) if conns.len() < 8 => {
                            let stop = stop.clone();
                            conns.push(std::thread::spawn(move || drip(sock, head, filler, interval, until, &stop)));
                        }
                        _ => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
                for conn in conns {
                    let _ = conn.join();
                }
            })
        };
        Dripper { addr, stop, thread: Some(thread) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn drip(mut sock: TcpStream, head: &[u8], filler: u8, interval: Duration, until: Instant, stop: &AtomicBool) {
    let _ = sock.set_nonblocking(true);
    let mut sink = [0u8; 4096];
    let mut sent = 0usize;
    let mut spoken = false;
    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        // Whatever the client sends is read and ignored, so that its writes never block.
        while let Ok(n @ 1..) = sock.read(&mut sink) {
            spoken |= n > 0;
        }
        // The client speaks first (ClientHello, CONNECT, an HTTP request): an HTTP client takes bytes that come
        // before its request for a broken connection.
        if !spoken {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let byte = head.get(sent).copied().unwrap_or(filler);
        if sock.write(&[byte]).is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock) {
            return;
        }
        sent += 1;
        std::thread::sleep(interval);
    }
}

impl Drop for Dripper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
