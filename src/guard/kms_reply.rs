//! Checks of KMS replies before libmongocrypt sees them, for inputs on which libmongocrypt (its kms-message parser
//! or the provider code after it) aborts the process instead of failing the request.
//!
//! [`ReplyCheck`] follows one request's reply across feeds: an incremental scan of the HTTP framing (headers, then
//! a `Content-Length` body or chunks), which keeps no copy of the reply except, for GCP and Azure, the body (a few
//! hundred bytes) whose JSON is checked before the byte that completes the reply is fed. KMIP replies get a check
//! of their length field. A feed the check refuses is not passed on, and the request stays refused.

use crate::error::Error;
use crate::version::Version;

/// Bodies of GCP and Azure replies longer than this are refused (real ones are under 2 KiB): their JSON must be
/// checked whole, so it is kept.
const MAX_JSON_BODY: usize = 1 << 20;
/// Longest header name kept to compare (`transfer-encoding` is 17 bytes).
const NAME_CAP: usize = 24;

/// Which reply the request expects, from its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    Aws,
    Azure,
    Gcp,
    Kmip,
    Other,
}

impl Provider {
    pub(crate) fn from_id(id: &str) -> Provider {
        let kind = id.split(':').next().unwrap_or("");
        match kind {
            "aws" => Provider::Aws,
            "azure" => Provider::Azure,
            "gcp" => Provider::Gcp,
            "kmip" => Provider::Kmip,
            _ => Provider::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The status line and headers, up to the empty line.
    Head,
    /// A chunk-size line: hex digits, then CRLF.
    ChunkSize,
    /// `remaining` bytes of chunk data.
    ChunkData,
    /// The CRLF after a chunk's data (`crlf_seen` bytes of it so far).
    ChunkEnd,
    /// The CRLF after the last (zero-size) chunk.
    LastChunkEnd,
    /// `remaining` bytes of a `Content-Length` body.
    Body,
    /// The reply is complete, or its framing is not one this check follows (then libmongocrypt judges it).
    Done,
}

/// Which header the current head line is, once its name is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    Unknown,
    TransferEncoding,
    ContentLength,
    Other,
}

/// The check of one request's reply; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct ReplyCheck {
    provider: Provider,
    /// Set once a feed was refused: every later feed is refused too.
    refused: Option<String>,
    // HTTP
    phase: Phase,
    /// The previous byte was `\r`.
    cr: bool,
    /// Bytes of the current head line so far (0 at its start).
    line_len: usize,
    name: [u8; NAME_CAP],
    name_len: usize,
    header: Header,
    /// How much of `chunked` the current Transfer-Encoding value has matched.
    chunked_match: usize,
    chunked: bool,
    content_length: Option<u64>,
    content_length_bad: bool,
    /// The current Content-Length header's value, while it is read.
    cl_value: Option<u64>,
    cl_count: u32,
    remaining: u64,
    chunk_digits: u32,
    chunk_size: u64,
    crlf_seen: u8,
    /// The body, for GCP and Azure (decoded from chunks).
    body: Option<Vec<u8>>,
    // KMIP
    kmip_seen: usize,
    kmip_len: [u8; 4],
}

fn at_least_1_19() -> bool {
    *Version::linked() >= Version::new(1, 19, 0)
}

fn refuse(why: impl Into<String>) -> Error {
    Error::Kms {
        code: 0,
        message: format!("malformed KMS reply, refused by the binding before libmongocrypt: {}", why.into()),
    }
}

impl ReplyCheck {
    pub(crate) fn new(provider: Provider) -> ReplyCheck {
        ReplyCheck {
            provider,
            refused: None,
            phase: Phase::Head,
            cr: false,
            line_len: 0,
            name: [0; NAME_CAP],
            name_len: 0,
            header: Header::Unknown,
            chunked_match: 0,
            chunked: false,
            content_length: None,
            content_length_bad: false,
            cl_value: None,
            cl_count: 0,
            remaining: 0,
            chunk_digits: 0,
            chunk_size: 0,
            crlf_seen: 0,
            body: matches!(provider, Provider::Gcp | Provider::Azure).then(Vec::new),
            kmip_seen: 0,
            kmip_len: [0; 4],
        }
    }

    /// Forgets what was fed: libmongocrypt discards it too when a request is retried (`fail`, a retry from
    /// `feed_with_retry`; libmongocrypt ≥ 1.12).
    #[cfg_attr(not(any(mongocrypt_has_kms_ctx_fail, mongocrypt_has_kms_ctx_feed_with_retry)), allow(dead_code))]
    pub(crate) fn reset(&mut self) {
        *self = ReplyCheck::new(self.provider);
    }

    /// Checks `bytes`, the next part of the reply, before it is fed. `Err` means: do not feed it.
    pub(crate) fn check(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if let Some(why) = &self.refused {
            return Err(refuse(format!("an earlier part was refused ({why})")));
        }
        let result = if self.provider == Provider::Kmip { self.kmip(bytes) } else { self.http(bytes) };
        if let Err(why) = result {
            self.refused = Some(why.clone());
            return Err(refuse(why));
        }
        Ok(())
    }

    /// KMIP: kms-message takes the big-endian length at bytes 4..8 on trust, and libmongocrypt 1.7.2 then
    /// `KMS_ASSERT`s (abort) in `mongocrypt_kms_ctx_bytes_needed` once the bytes it wants exceed `INT32_MAX`
    /// (`want_bytes_pending <= INT32_MAX`). 1.21.0 fails the request instead; the versions between are not known to
    /// be fixed, so the check runs before 1.21.
    fn kmip(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.kmip_seen >= 8 {
            return Ok(());
        }
        for &b in bytes.iter().take(8 - self.kmip_seen) {
            if self.kmip_seen >= 4 {
                self.kmip_len[self.kmip_seen - 4] = b;
            }
            self.kmip_seen += 1;
        }
        if self.kmip_seen == 8 && *Version::linked() < Version::new(1, 21, 0) {
            let len = u32::from_be_bytes(self.kmip_len);
            if len >= 0x7fff_0000 {
                return Err(format!("KMIP reply length {len} is over 2 GiB (libmongocrypt before 1.21 aborts)"));
            }
        }
        Ok(())
    }

    /// HTTP framing. kms-message (1.7.2 to 1.21.0, every version tested, so this runs on all) takes the two bytes
    /// after a chunk's data for its CRLF without looking; when the chunk is longer than declared (`1\r\nXY\r\n`) or
    /// a CRLF comes early, the next chunk-size line gets a negative length and `KMS_ASSERT (len >= 0)` aborts.
    /// Before 1.19 a chunk size of 0x7ffffffe or more also overflowed (MONGOCRYPT-910, a SIGSEGV). So chunks must
    /// be exactly: hex size (before 1.19: 1 to 8 digits, under 2 GiB), CRLF, that many bytes, CRLF, ending with a
    /// zero-size chunk and CRLF (no trailers).
    fn http(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut i = 0;
        while i < bytes.len() {
            match self.phase {
                Phase::Head => {
                    self.head_byte(bytes[i])?;
                    i += 1;
                }
                Phase::ChunkSize => {
                    let b = bytes[i];
                    i += 1;
                    if self.cr {
                        if b != b'\n' {
                            return Err("a chunk-size line has a CR without LF".into());
                        }
                        self.cr = false;
                        if self.chunk_digits == 0 {
                            return Err("an empty chunk-size line".into());
                        }
                        if self.chunk_size == 0 {
                            self.phase = Phase::LastChunkEnd;
                        } else {
                            self.remaining = self.chunk_size;
                            self.phase = Phase::ChunkData;
                        }
                        self.crlf_seen = 0;
                    } else if b == b'\r' {
                        self.cr = true;
                    } else if let Some(d) = (b as char).to_digit(16) {
                        self.chunk_digits = self.chunk_digits.saturating_add(1);
                        self.chunk_size = self.chunk_size.saturating_mul(16).saturating_add(u64::from(d));
                        // MONGOCRYPT-910: before 1.19 a size of 0x7ffffffe or more (also reached by wrapping, with
                        // more than 8 digits) overflows and the parser reads out of bounds; 1.19 reports "Failed to
                        // parse hex chunk length" itself, so the binding leaves those to it.
                        if (self.chunk_digits > 8 || self.chunk_size >= 0x7fff_0000) && !at_least_1_19() {
                            return Err("a chunk size over 2 GiB".into());
                        }
                    } else {
                        return Err(format!("a chunk-size line holds {:?}, not a hex digit", b as char));
                    }
                }
                Phase::ChunkData => {
                    let take = (bytes.len() - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    self.keep_body(&bytes[i..i + take])?;
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.phase = Phase::ChunkEnd;
                    }
                }
                Phase::ChunkEnd | Phase::LastChunkEnd => {
                    let want = if self.crlf_seen == 0 { b'\r' } else { b'\n' };
                    if bytes[i] != want {
                        return Err("a chunk is longer than its declared size (no CRLF after its data)".into());
                    }
                    i += 1;
                    self.crlf_seen += 1;
                    if self.crlf_seen == 2 {
                        if self.phase == Phase::LastChunkEnd {
                            self.phase = Phase::Done;
                            self.body_complete()?;
                        } else {
                            self.phase = Phase::ChunkSize;
                            self.chunk_digits = 0;
                            self.chunk_size = 0;
                        }
                    }
                }
                Phase::Body => {
                    let take = (bytes.len() - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    self.keep_body(&bytes[i..i + take])?;
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.phase = Phase::Done;
                        self.body_complete()?;
                    }
                }
                Phase::Done => return Ok(()),
            }
        }
        Ok(())
    }

    fn keep_body(&mut self, data: &[u8]) -> Result<(), String> {
        if let Some(body) = &mut self.body {
            if body.len() + data.len() > MAX_JSON_BODY {
                return Err(format!("a {:?} reply body over {MAX_JSON_BODY} bytes", self.provider));
            }
            body.extend_from_slice(data);
        }
        Ok(())
    }

    /// One byte of the status line or headers.
    fn head_byte(&mut self, b: u8) -> Result<(), String> {
        if self.cr && b == b'\n' {
            // End of a line: "\r\n" right at its start is the empty line that ends the head.
            self.cr = false;
            let empty = self.line_len == 1; // only the CR
            self.end_header_line();
            self.line_len = 0;
            self.name_len = 0;
            self.header = Header::Unknown;
            if empty {
                return self.head_done();
            }
            return Ok(());
        }
        self.cr = b == b'\r';
        self.line_len += 1;
        if self.cr {
            return Ok(());
        }
        match self.header {
            Header::Unknown => {
                if b == b':' {
                    let name = self.name[..self.name_len].trim_ascii();
                    self.header = if name.eq_ignore_ascii_case(b"transfer-encoding") {
                        self.chunked_match = 0;
                        Header::TransferEncoding
                    } else if name.eq_ignore_ascii_case(b"content-length") {
                        self.cl_count += 1;
                        self.cl_value = Some(0);
                        Header::ContentLength
                    } else {
                        Header::Other
                    };
                } else if self.name_len < NAME_CAP {
                    self.name[self.name_len] = b;
                    self.name_len += 1;
                } else {
                    self.header = Header::Other; // a name longer than any this check follows
                }
            }
            Header::TransferEncoding => {
                const CHUNKED: &[u8] = b"chunked";
                if self.chunked_match < CHUNKED.len() {
                    if b.eq_ignore_ascii_case(&CHUNKED[self.chunked_match]) {
                        self.chunked_match += 1;
                        if self.chunked_match == CHUNKED.len() {
                            self.chunked = true;
                        }
                    } else {
                        self.chunked_match = usize::from(b.eq_ignore_ascii_case(&b'c'));
                    }
                }
            }
            Header::ContentLength => match (b, self.cl_value) {
                (b'0'..=b'9', Some(v)) => {
                    self.cl_value = v.checked_mul(10).and_then(|v| v.checked_add(u64::from(b - b'0')));
                    if self.cl_value.is_none() {
                        self.content_length_bad = true;
                    }
                }
                (b' ' | b'\t', _) => {}
                _ => self.content_length_bad = true,
            },
            Header::Other => {}
        }
        Ok(())
    }

    fn end_header_line(&mut self) {
        if self.header == Header::ContentLength {
            match self.cl_value.take() {
                Some(v) => self.content_length = Some(v),
                None => self.content_length_bad = true,
            }
        }
    }

    fn head_done(&mut self) -> Result<(), String> {
        if self.chunked && self.cl_count > 0 {
            return Err("both Transfer-Encoding: chunked and Content-Length".into());
        }
        if self.chunked {
            self.phase = Phase::ChunkSize;
            self.chunk_digits = 0;
            self.chunk_size = 0;
            return Ok(());
        }
        if self.cl_count > 1 {
            return Err("more than one Content-Length".into());
        }
        match (self.content_length, self.content_length_bad) {
            (Some(n), false) if n > 0 => {
                self.remaining = n;
                self.phase = Phase::Body;
                Ok(())
            }
            (Some(_), false) => {
                self.phase = Phase::Done;
                self.body_complete()
            }
            // A bad Content-Length or none: libmongocrypt fails or reads no body; nothing more to follow.
            _ => {
                self.phase = Phase::Done;
                Ok(())
            }
        }
    }

    /// The whole body is known, before the byte that completes the reply is fed.
    fn body_complete(&mut self) -> Result<(), String> {
        let Some(body) = self.body.take() else { return Ok(()) };
        let fields: &[&str] = match self.provider {
            Provider::Gcp => &["ciphertext", "plaintext"],
            Provider::Azure => &["value"],
            _ => return Ok(()),
        };
        check_json_fields(&body, fields, self.provider)
    }
}

/// GCP: libmongocrypt (1.7.2 to 1.21.0) decodes `ciphertext` (encrypt) or `plaintext` (decrypt) with
/// `kms_message_b64_pton` and `_ctx_done_gcp` asserts `outlen <= UINT32_MAX` on its -1 for anything that is not
/// strict base64 (even `"AA"`, unpadded; or an empty string). Azure's `value` (base64url) gets the same check:
/// libmongocrypt fails those with "Failed to base64 decode", so refusing them first changes only the message.
/// The top-level members with these names (every one, as libbson finds the first and a JSON reader the last) must
/// be valid; a body that does not parse as JSON is refused when it could hide such a member.
fn check_json_fields(body: &[u8], fields: &[&str], provider: Provider) -> Result<(), String> {
    let members = match json::top_level_strings(body) {
        Ok(m) => m,
        Err(e) => {
            let suspicious =
                body.contains(&b'\\') || fields.iter().any(|f| body.windows(f.len()).any(|w| w == f.as_bytes()));
            if suspicious {
                return Err(format!("a {provider:?} reply body that is not valid JSON ({e})"));
            }
            return Ok(());
        }
    };
    for (name, value) in members {
        if !fields.contains(&name.as_str()) {
            continue;
        }
        let Some(value) = value else { continue }; // not a string: libmongocrypt reports it
        let ok = match provider {
            Provider::Azure => base64url_ok(value.as_bytes()),
            _ => base64_strict_ok(value.as_bytes()),
        };
        if !ok {
            return Err(format!("{provider:?} reply field {name:?} is not valid base64: {:?}", truncate(&value)));
        }
    }
    Ok(())
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Standard base64, padded, non-empty, with the unused bits of the last group zero (the decoder rejects others).
fn base64_strict_ok(s: &[u8]) -> bool {
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return false;
    }
    let pad = s.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return false;
    }
    let data = &s[..s.len() - pad];
    let Some(values) = data.iter().map(|&c| b64_value(c)).collect::<Option<Vec<u8>>>() else { return false };
    match (pad, values.last()) {
        (0, _) => true,
        (1, Some(v)) => v & 0b11 == 0,
        (2, Some(v)) => v & 0b1111 == 0,
        _ => false,
    }
}

/// base64url as Azure sends it (unpadded; padding and the standard alphabet accepted too): non-empty, a length that
/// is not 1 mod 4, unused bits zero.
fn base64url_ok(s: &[u8]) -> bool {
    let data = s.strip_suffix(b"==").or_else(|| s.strip_suffix(b"=")).unwrap_or(s);
    if data.is_empty() || data.len() % 4 == 1 {
        return false;
    }
    let Some(values) = data
        .iter()
        .map(|&c| match c {
            b'-' => Some(62),
            b'_' => Some(63),
            c => b64_value(c),
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    if s.len() != data.len() && !s.len().is_multiple_of(4) {
        return false; // padded, but not to a whole group
    }
    match (data.len() % 4, values.last()) {
        (2, Some(v)) => v & 0b1111 == 0,
        (3, Some(v)) => v & 0b11 == 0,
        _ => true,
    }
}

/// A small strict JSON reader: the top-level object's members, each with its string value (or `None`).
mod json {
    const MAX_DEPTH: u32 = 64;

    pub(super) type Members = Vec<(String, Option<String>)>;

    pub(super) fn top_level_strings(body: &[u8]) -> Result<Members, String> {
        let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
        let mut p = Parser { s: text.as_bytes(), i: 0 };
        p.ws();
        if p.peek() != Some(b'{') {
            return Err("not an object".into());
        }
        p.i += 1;
        let mut members = Vec::new();
        p.ws();
        if p.peek() == Some(b'}') {
            p.i += 1;
        } else {
            loop {
                p.ws();
                let name = p.string()?;
                p.ws();
                p.expect(b':')?;
                p.ws();
                let value = if p.peek() == Some(b'"') { Some(p.string()?) } else { p.value(1).map(|()| None)? };
                members.push((name, value));
                p.ws();
                match p.next() {
                    Some(b',') => continue,
                    Some(b'}') => break,
                    _ => return Err("expected , or }".into()),
                }
            }
        }
        p.ws();
        if p.i != p.s.len() {
            return Err("trailing data".into());
        }
        Ok(members)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }
        fn next(&mut self) -> Option<u8> {
            let c = self.peek();
            self.i += 1;
            c
        }
        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.i += 1;
            }
        }
        fn expect(&mut self, c: u8) -> Result<(), String> {
            if self.next() == Some(c) {
                Ok(())
            } else {
                Err(format!("expected {:?}", c as char))
            }
        }
        fn string(&mut self) -> Result<String, String> {
            self.expect(b'"')?;
            let mut out = Vec::new();
            loop {
                match self.next().ok_or("unterminated string")? {
                    b'"' => break,
                    b'\\' => match self.next().ok_or("unterminated escape")? {
                        c @ (b'"' | b'\\' | b'/') => out.push(c),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
                            let hex = std::str::from_utf8(hex).map_err(|_| "bad \\u escape")?;
                            let code = u32::from_str_radix(hex, 16).map_err(|_| "bad \\u escape")?;
                            self.i += 4;
                            // Surrogates and NUL stand for themselves as U+FFFD: no field name or base64 has them.
                            let c = char::from_u32(code).filter(|&c| c != '\0').unwrap_or('\u{fffd}');
                            let mut buf = [0; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err("bad escape".into()),
                    },
                    c if c < 0x20 => return Err("control character in string".into()),
                    c => out.push(c),
                }
            }
            String::from_utf8(out).map_err(|_| "not UTF-8".to_string())
        }
        fn value(&mut self, depth: u32) -> Result<(), String> {
            if depth > MAX_DEPTH {
                return Err("nested too deeply".into());
            }
            self.ws();
            match self.peek().ok_or("missing value")? {
                b'"' => self.string().map(drop),
                b'{' | b'[' => {
                    let close = if self.next() == Some(b'{') { b'}' } else { b']' };
                    self.ws();
                    if self.peek() == Some(close) {
                        self.i += 1;
                        return Ok(());
                    }
                    loop {
                        self.ws();
                        if close == b'}' {
                            self.string()?;
                            self.ws();
                            self.expect(b':')?;
                        }
                        self.value(depth + 1)?;
                        self.ws();
                        match self.next() {
                            Some(b',') => continue,
                            Some(c) if c == close => return Ok(()),
                            _ => return Err("expected , or a closing bracket".into()),
                        }
                    }
                }
                b't' => self.word("true"),
                b'f' => self.word("false"),
                b'n' => self.word("null"),
                b'-' | b'0'..=b'9' => {
                    let start = self.i;
                    while matches!(self.peek(), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
                        self.i += 1;
                    }
                    std::str::from_utf8(&self.s[start..self.i])
                        .ok()
                        .and_then(|n| n.parse::<f64>().ok())
                        .map(drop)
                        .ok_or_else(|| "bad number".to_string())
                }
                _ => Err("unexpected character".into()),
            }
        }
        fn word(&mut self, w: &str) -> Result<(), String> {
            if self.s[self.i..].starts_with(w.as_bytes()) {
                self.i += w.len();
                Ok(())
            } else {
                Err("unexpected word".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(provider: Provider, reply: &[u8]) -> Result<(), Error> {
        let mut c = ReplyCheck::new(provider);
        c.check(reply)
    }

    fn feed_bytewise(provider: Provider, reply: &[u8]) -> Result<(), Error> {
        let mut c = ReplyCheck::new(provider);
        reply.iter().try_for_each(|b| c.check(std::slice::from_ref(b)))
    }

    const CHUNKED: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[test]
    fn chunked_framing() {
        for good in ["1\r\nX\r\n0\r\n\r\n", "2\r\nXY\r\n0\r\n\r\n", "A\r\n0123456789\r\n0\r\n\r\n"] {
            let reply = format!("{CHUNKED}{good}");
            assert!(feed_all(Provider::Aws, reply.as_bytes()).is_ok(), "{good:?}");
            assert!(feed_bytewise(Provider::Aws, reply.as_bytes()).is_ok(), "{good:?}");
        }
        let huge: &[&str] = if at_least_1_19() { &[] } else { &["7ffffffe\r\nX", "17ffffffe\r\nX"] };
        for bad in ["1\r\nXY\r\n", "2\r\nX\r\n\r\n", "\r\n", "1;x\r\nX\r\n", "0\r\nX"].iter().chain(huge) {
            let reply = format!("{CHUNKED}{bad}");
            assert!(feed_all(Provider::Aws, reply.as_bytes()).is_err(), "{bad:?}");
            assert!(feed_bytewise(Provider::Aws, reply.as_bytes()).is_err(), "{bad:?}");
        }
        // Not chunked: the body is not looked at.
        assert!(feed_all(Provider::Aws, b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n1\r\nXY\r\n").is_ok());
        // Once refused, stays refused.
        let mut c = ReplyCheck::new(Provider::Aws);
        assert!(c.check(format!("{CHUNKED}1\r\nXY").as_bytes()).is_err());
        assert!(c.check(b"\r\n0\r\n\r\n").is_err());
        c.reset();
        assert!(c.check(format!("{CHUNKED}1\r\nX\r\n0\r\n\r\n").as_bytes()).is_ok());
    }

    #[test]
    fn gcp_and_azure_base64() {
        let reply = |body: &str| format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        for (provider, body, ok) in [
            (Provider::Gcp, r#"{"name": "k", "ciphertext": "AAAA"}"#, true),
            (Provider::Gcp, r#"{"ciphertext": "AA=="}"#, true),
            (Provider::Gcp, r#"{"ciphertext": "AA"}"#, false),
            (Provider::Gcp, r#"{"ciphertext": "AB=="}"#, false),
            (Provider::Gcp, r#"{"ciphertext": ""}"#, false),
            (Provider::Gcp, r#"{"plaintext": "A==="}"#, false),
            (Provider::Gcp, r#"{"ciphertext": "AAAA", "ciphertext": "!"}"#, false),
            (Provider::Gcp, r#"{"\u0063iphertext": "AA"}"#, false),
            (Provider::Gcp, r#"{"ciphertext": "AAAA""#, false),
            (Provider::Gcp, r#"{"access_token": "x", "expires_in": 3599}"#, true),
            (Provider::Gcp, "<html>bad gateway</html>", true),
            (Provider::Azure, r#"{"kid": "k", "value": "AA"}"#, true),
            (Provider::Azure, r#"{"value": "A"}"#, false),
            (Provider::Azure, r#"{"value": "a-_b"}"#, true),
            (Provider::Azure, r#"{"value": "a*b"}"#, false),
            (Provider::Aws, r#"{"CiphertextBlob": "!"}"#, true),
        ] {
            let r = reply(body);
            assert_eq!(feed_all(provider, r.as_bytes()).is_ok(), ok, "{provider:?} {body}");
            assert_eq!(feed_bytewise(provider, r.as_bytes()).is_ok(), ok, "{provider:?} {body}");
            let chunked = format!("{CHUNKED}{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
            assert_eq!(feed_all(provider, chunked.as_bytes()).is_ok(), ok, "chunked {provider:?} {body}");
        }
    }

    #[test]
    fn ambiguous_framing() {
        let both = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(feed_all(Provider::Aws, both.as_bytes()).is_err());
        assert!(feed_all(Provider::Gcp, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n").is_err());
    }
}
