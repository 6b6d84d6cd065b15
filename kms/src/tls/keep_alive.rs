//! Keep-alive ([`KmsTransportBuilder::keep_alive`](super::KmsTransportBuilder::keep_alive)), once for both
//! faces: which requests may go over a kept connection (and the `Connection: close` line they are written
//! without), which replies leave their connection reusable, and the pool of idle connections.
//!
//! libmongocrypt writes `Connection: close` into every HTTP request, so by default each request is a new TCP
//! connection and TLS handshake. The header is not among the ones an AWS signature covers (the check below makes
//! sure), and Azure's and GCP's requests carry bearer tokens, so leaving the line out changes nothing the server
//! verifies; KMIP requests are not HTTP and are never kept.
//!
//! Hand-written rather than an HTTP client's pool (hyper-util's): libmongocrypt writes each request and parses
//! each reply itself, so a client would parse both a second time, and there is a blocking face too. What is kept
//! here is only a list of idle connections per endpoint and the two header checks (on `httparse`).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::io;
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustls::ClientConnection;

use super::bounded::BlockingTls;

/// The most idle connections kept per endpoint; more are closed when returned.
const MAX_IDLE_PER_ENDPOINT: usize = 128;

/// The most headers a request may have to be kept alive (libmongocrypt's have at most 8).
const MAX_HEADERS: usize = 32;

/// The bytes of libmongocrypt's message to leave out on a kept connection: its `Connection: close` line (an
/// empty range when it has no `Connection` header). `None` when the message must go out as it is and its
/// connection be closed: not HTTP/1.1, a `Connection` header signed by an AWS signature, or more than one.
pub(crate) fn request_cut(message: &[u8]) -> Option<Range<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(message), Ok(httparse::Status::Complete(_))) || request.version != Some(1) {
        return None;
    }
    let mut cut = None;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("authorization") && signs_connection(header.value) {
            return None;
        }
        if !header.name.eq_ignore_ascii_case("connection") {
            continue;
        }
        if cut.is_some() {
            return None;
        }
        if !has_token(header.value, "close") {
            cut = Some(0..0);
            continue;
        }
        // The line's bounds, from where httparse's slices point into the message.
        let start = header.name.as_ptr() as usize - message.as_ptr() as usize;
        let value_end = header.value.as_ptr() as usize - message.as_ptr() as usize + header.value.len();
        // Only blanks may follow the value on its line (a bare LF would make the cut take the next header).
        let blanks = message[value_end..].iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        if !message[value_end + blanks..].starts_with(b"\r\n") || start < 2 || &message[start - 2..start] != b"\r\n" {
            return None;
        }
        let end = value_end + blanks + 2;
        cut = Some(start..end);
    }
    Some(cut.unwrap_or(0..0))
}

/// Whether an `Authorization` value is an AWS signature that covers the `Connection` header.
fn signs_connection(value: &[u8]) -> bool {
    let value = String::from_utf8_lossy(value);
    let Some((_, signed)) = value.split_once("SignedHeaders=") else { return false };
    signed.split([',', ' ']).next().unwrap_or("").split(';').any(|h| h.eq_ignore_ascii_case("connection"))
}

/// Whether a comma-separated header value holds `token` (case-insensitively).
fn has_token(value: &[u8], token: &str) -> bool {
    String::from_utf8_lossy(value).split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether a complete reply's head (status line and headers, through the blank line) leaves the connection
/// reusable: HTTP/1.1, a length or chunked framing (so the reply ended where libmongocrypt stopped reading), and
/// no `Connection: close`.
pub(crate) fn reply_keeps_alive(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut reply = httparse::Response::new(&mut headers);
    if !matches!(reply.parse(head), Ok(httparse::Status::Complete(_))) || reply.version != Some(1) {
        return false;
    }
    let mut framed = false;
    for header in reply.headers.iter() {
        if header.name.eq_ignore_ascii_case("connection") && has_token(header.value, "close") {
            return false;
        }
        framed |= header.name.eq_ignore_ascii_case("content-length")
            || (header.name.eq_ignore_ascii_case("transfer-encoding") && has_token(header.value, "chunked"));
    }
    framed
}

/// Whether a TLS connection whose reply was read in full has nothing left in it: no plaintext past the reply
/// (which would be taken for the next reply) and no close from the server yet.
pub(super) fn nothing_pending(conn: &mut ClientConnection) -> bool {
    match conn.process_new_packets() {
        Ok(state) => state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed(),
        Err(_) => false,
    }
}

/// Whether a kept connection of the blocking face can carry another request: nothing arrived on it while it was
/// idle (no bytes, which would be read as the next reply; no close). Checked without waiting, through
/// [`KmsStream::set_nonblocking`](super::KmsStream::set_nonblocking): a stream that refuses it is not reused.
pub(super) fn still_idle(tls: &mut BlockingTls) -> bool {
    let sock = tls.sock.raw();
    if sock.set_nonblocking(true).is_err() {
        return false;
    }
    let idle = loop {
        match tls.conn.read_tls(sock) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break nothing_pending(&mut tls.conn),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Records that carry no data (a session ticket) leave it idle; anything else does not.
            Ok(n) if n > 0 && nothing_pending(&mut tls.conn) => {}
            Ok(_) | Err(_) => break false,
        }
    };
    sock.set_nonblocking(false).is_ok() && idle
}

/// Idle connections since when they were returned, most recently returned last.
type Idle<C> = Vec<(Instant, C)>;

/// Idle kept-alive connections, per scope and endpoint.
pub(super) struct Pool<C, K> {
    idle: Mutex<HashMap<K, Idle<C>>>,
}

impl<C, K> Default for Pool<C, K> {
    fn default() -> Self {
        Pool { idle: Mutex::new(HashMap::new()) }
    }
}

impl<C, K> fmt::Debug for Pool<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let idle = self.idle.lock().map(|idle| idle.values().map(Vec::len).sum::<usize>()).unwrap_or(0);
        f.debug_struct("Pool").field("idle", &idle).finish()
    }
}

impl<C, K: Hash + Eq> Pool<C, K> {
    /// The most recently returned connection under `key` (an endpoint in a scope); connections idle longer than
    /// `max_idle`, to any endpoint, are closed first.
    pub(super) fn take(&self, key: K, max_idle: Duration) -> Option<C> {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        expire(&mut idle, max_idle);
        let conns = idle.get_mut(&key)?;
        let conn = conns.pop().map(|(_, c)| c);
        if conns.is_empty() {
            idle.remove(&key);
        }
        conn
    }

    /// Keeps `conn` for the next request under `key` (or closes it, when enough are kept);
    /// connections idle longer than `max_idle` are closed.
    pub(super) fn put(&self, key: K, conn: C, max_idle: Duration) {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        expire(&mut idle, max_idle);
        let conns = idle.entry(key).or_default();
        if conns.len() < MAX_IDLE_PER_ENDPOINT {
            conns.push((Instant::now(), conn));
        }
    }

    /// Closes every idle connection under `key` (one of them failed: the others likely will).
    pub(super) fn clear(&self, key: &K) {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        idle.remove(key);
    }
}

/// Closes the connections idle longer than `max_idle`.
fn expire<K, C>(idle: &mut HashMap<K, Idle<C>>, max_idle: Duration) {
    let now = Instant::now();
    idle.retain(|_, conns| {
        conns.retain(|(since, _)| now.duration_since(*since) <= max_idle);
        !conns.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNED: &str =
        "POST / HTTP/1.1\r\nConnection:close\r\nContent-Length:2\r\nHost:kms.us-east-1.amazonaws.com\r\n\
        Authorization: AWS4-HMAC-SHA256 Credential=example/20260101/us-east-1/kms/aws4_request, \
        SignedHeaders=content-length;host, Signature=00\r\n\r\n{}";

    fn without(message: &str, cut: Range<usize>) -> String {
        format!("{}{}", &message[..cut.start], &message[cut.end..])
    }

    #[test]
    fn the_connection_line_is_cut_from_requests() {
        let cut = request_cut(SIGNED.as_bytes()).expect("kept alive");
        assert_eq!(without(SIGNED, cut), SIGNED.replace("Connection:close\r\n", ""));
        let spaced = "GET /token HTTP/1.1\r\nHost: x\r\nconnection:  Close \r\n\r\n";
        let cut = request_cut(spaced.as_bytes()).expect("kept alive");
        assert_eq!(without(spaced, cut), "GET /token HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(request_cut(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Some(0..0));
        assert_eq!(request_cut(b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"), Some(0..0));
    }

    #[test]
    fn requests_that_must_close_are_left_alone() {
        let bare_lf = b"GET / HTTP/1.1\r\nConnection: close\nHost: x\r\n\r\n";
        assert_eq!(request_cut(bare_lf), None, "the cut would take the Host line");
        let signed = SIGNED.replace("SignedHeaders=content-length;host", "SignedHeaders=connection;host");
        assert_eq!(request_cut(signed.as_bytes()), None);
        assert_eq!(request_cut(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"), None);
        assert_eq!(request_cut(b"GET / HTTP/1.1\r\nConnection: close\r\nConnection: close\r\n\r\n"), None);
        assert_eq!(request_cut(b"GET / HTTP/1.1\r\nHost: x\r\n"), None, "incomplete head");
        // A KMIP request: binary TTLV.
        assert_eq!(request_cut(&[0x42, 0x00, 0x78, 0x01, 0x00, 0x00, 0x00, 0x20]), None);
    }

    #[test]
    fn replies_keep_alive_only_when_framed_and_not_closing() {
        assert!(reply_keeps_alive(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"));
        assert!(reply_keeps_alive(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(!reply_keeps_alive(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"));
        assert!(!reply_keeps_alive(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"), "read to the end");
        assert!(!reply_keeps_alive(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n"));
        assert!(!reply_keeps_alive(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"), "incomplete head");
    }
}
