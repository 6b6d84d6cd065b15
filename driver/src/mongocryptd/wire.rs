//! The wire protocol of the mongocryptd client, without I/O: OP_MSG requests, the reading of one reply (bounded and
//! checked against its request), the URI's address, and what a reply means.

use std::sync::atomic::{AtomicI32, Ordering};

use libmongocrypt::bson::{Document, RawBsonRef, RawDocument, RawDocumentBuf};

use super::error::{MongocryptdError, WireError};

/// OP_MSG's header: messageLength, requestID, responseTo, opCode (four little-endian int32).
const HEADER_LEN: usize = 16;
/// OP_MSG's `opCode`.
const OP_MSG: i32 = 2013;
/// The smallest OP_MSG: the header, flagBits, and one kind-0 section holding the empty document (26 bytes, as
/// [`WireError::MessageLength`] says).
pub(crate) const MIN_MESSAGE_LEN: usize = HEADER_LEN + 4 + 1 + 5;
/// The server's default `maxMessageSizeBytes` (as [`WireError::MessageLength`] says).
pub(crate) const MAX_MESSAGE_LEN: usize = 48_000_000;
/// How much more of a reply is buffered at a time, so that a `messageLength` claimed but not sent costs nothing.
const READ_CHUNK: usize = 64 * 1024;

/// flagBits: a CRC-32C follows the sections.
const CHECKSUM_PRESENT: u32 = 1;
/// flagBits 0-15 are "required": a reader that does not know one must refuse the message. Of these only
/// checksumPresent is understood here (moreToCome, bit 1, answers an exhaust request, never sent).
const REQUIRED_BITS: u32 = 0xFFFF;

/// The database the handshake runs on.
pub(crate) const ADMIN_DB: &str = "admin";

/// A request ID unique in this process (wrapping after 2^32 requests, long after any reply to an old one).
pub(crate) fn next_request_id() -> i32 {
    static NEXT: AtomicI32 = AtomicI32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// An OP_MSG request: the header, flagBits 0, and `body` (BSON bytes that include `$db`) as its kind-0 section.
pub(crate) fn op_msg(request_id: i32, body: &[u8]) -> Result<Vec<u8>, MongocryptdError> {
    let length = HEADER_LEN + 4 + 1 + body.len();
    if length > MAX_MESSAGE_LEN {
        return Err(MongocryptdError::InvalidCommand(format!(
            "the message would be {length} bytes, above maxMessageSizeBytes ({MAX_MESSAGE_LEN})"
        )));
    }
    let mut message = Vec::with_capacity(length);
    // Cannot truncate: `length` is at most MAX_MESSAGE_LEN.
    message.extend_from_slice(&(length as i32).to_le_bytes());
    message.extend_from_slice(&request_id.to_le_bytes());
    message.extend_from_slice(&0i32.to_le_bytes());
    message.extend_from_slice(&OP_MSG.to_le_bytes());
    message.extend_from_slice(&0u32.to_le_bytes());
    message.push(0);
    message.extend_from_slice(body);
    Ok(message)
}

/// `command` with `$db: db` appended, as OP_MSG requires (libmongocrypt's markings command has no `$db`). A
/// command that already names `db` is taken as it is; one that names another database is refused.
pub(crate) fn with_db(command: &RawDocument, db: &str) -> Result<Vec<u8>, MongocryptdError> {
    if db.is_empty() || db.contains('\0') {
        return Err(MongocryptdError::InvalidCommand(format!("{db:?} is not a database name")));
    }
    match command.get("$db") {
        Ok(None) => {}
        Ok(Some(RawBsonRef::String(named))) if named == db => return Ok(command.as_bytes().to_vec()),
        Ok(Some(other)) => {
            return Err(MongocryptdError::InvalidCommand(format!("the command's $db is {other:?}, not {db:?}")))
        }
        Err(e) => return Err(MongocryptdError::InvalidCommand(format!("the command is not valid BSON: {e}"))),
    }
    // The document without its final NUL, then the string element `$db` (type 0x02, key, int32 length counting
    // its NUL, the bytes, NUL), then the final NUL; the length prefix is rewritten last.
    let bytes = command.as_bytes();
    let mut body = Vec::with_capacity(bytes.len() + 4 + 5 + db.len() + 1);
    body.extend_from_slice(&bytes[..bytes.len() - 1]);
    body.push(0x02);
    body.extend_from_slice(b"$db\0");
    let value_len = i32::try_from(db.len() + 1)
        .map_err(|_| MongocryptdError::InvalidCommand("the database name is too long".into()))?;
    body.extend_from_slice(&value_len.to_le_bytes());
    body.extend_from_slice(db.as_bytes());
    body.extend_from_slice(&[0, 0]);
    let total =
        i32::try_from(body.len()).map_err(|_| MongocryptdError::InvalidCommand("the command is too large".into()))?;
    body[..4].copy_from_slice(&total.to_le_bytes());
    Ok(body)
}

/// Reads one OP_MSG reply to `request_id`: the I/O fills [`unfilled`](Self::unfilled) and reports each read to
/// [`advance`](Self::advance), which checks the header as soon as it is complete (so an oversized or mismatched
/// reply is refused before its body is read) and the body at the end.
pub(crate) struct ReplyReader {
    request_id: i32,
    /// The bytes received, and room for the next read.
    buf: Vec<u8>,
    filled: usize,
    /// The header's size, then the message's.
    expected: usize,
}

impl ReplyReader {
    pub(crate) fn new(request_id: i32) -> Self {
        ReplyReader { request_id, buf: vec![0; HEADER_LEN], filled: 0, expected: HEADER_LEN }
    }

    /// Where the next read goes: never empty before the reply is complete.
    pub(crate) fn unfilled(&mut self) -> &mut [u8] {
        let end = self.expected.min(self.filled + READ_CHUNK);
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        &mut self.buf[self.filled..end]
    }

    /// Takes `n` more bytes (0: the connection closed) and returns the reply's body once complete.
    pub(crate) fn advance(&mut self, n: usize) -> Result<Option<RawDocumentBuf>, WireError> {
        if n == 0 {
            return Err(if self.filled == 0 {
                WireError::Closed
            } else {
                WireError::Truncated { expected: self.expected, received: self.filled }
            });
        }
        self.filled += n;
        if self.filled < self.expected {
            return Ok(None);
        }
        if self.expected == HEADER_LEN {
            self.expected = self.check_header()?;
            return Ok(None);
        }
        body(&self.buf[HEADER_LEN..self.filled]).map(Some)
    }

    /// The message's length, once its header is known to answer the request with an OP_MSG of a sane size.
    fn check_header(&self) -> Result<usize, WireError> {
        let field = |i: usize| i32::from_le_bytes([self.buf[i], self.buf[i + 1], self.buf[i + 2], self.buf[i + 3]]);
        let (length, response_to, op_code) = (field(0), field(8), field(12));
        let length_ok = usize::try_from(length).ok().filter(|l| (MIN_MESSAGE_LEN..=MAX_MESSAGE_LEN).contains(l));
        let length = length_ok.ok_or(WireError::MessageLength(length))?;
        if response_to != self.request_id {
            return Err(WireError::ResponseTo { expected: self.request_id, actual: response_to });
        }
        if op_code != OP_MSG {
            return Err(WireError::OpCode(op_code));
        }
        Ok(length)
    }
}

/// The body of an OP_MSG after its header: flagBits, then exactly one kind-0 section (mongocryptd sends no
/// document sequences), then the checksum if flagged (not verified: the transport is loopback TCP, itself
/// checksummed).
fn body(message: &[u8]) -> Result<RawDocumentBuf, WireError> {
    let (flags, sections) = message.split_at(4);
    let flags = u32::from_le_bytes([flags[0], flags[1], flags[2], flags[3]]);
    if flags & REQUIRED_BITS & !CHECKSUM_PRESENT != 0 {
        return Err(WireError::Flags(flags));
    }
    let sections = if flags & CHECKSUM_PRESENT != 0 {
        sections
            .get(..sections.len().saturating_sub(4))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| WireError::Sections("no room for the checksum".into()))?
    } else {
        sections
    };
    let (&kind, document) = sections.split_first().ok_or_else(|| WireError::Sections("none".into()))?;
    if kind != 0 {
        return Err(WireError::Sections(format!("a section of kind {kind}, where the body (kind 0) was expected")));
    }
    let declared = document.get(..4).map(|l| i32::from_le_bytes([l[0], l[1], l[2], l[3]]));
    if declared.and_then(|l| usize::try_from(l).ok()) != Some(document.len()) {
        return Err(WireError::Sections(format!(
            "the body's length {declared:?} is not the {} bytes left in the message (one body and nothing else)",
            document.len()
        )));
    }
    let raw = RawDocumentBuf::from_bytes(document.to_vec()).map_err(|e| WireError::Bson(e.to_string()))?;
    // Every element, to the deepest, is read once here, so that what reads the reply later meets no surprise.
    Document::try_from(raw.as_ref()).map_err(|e| WireError::Bson(e.to_string()))?;
    Ok(raw)
}

/// Whether the reply says `ok`: a number (or boolean) that is not zero.
fn is_ok(reply: &RawDocument) -> Result<bool, WireError> {
    match reply.get("ok") {
        Ok(Some(RawBsonRef::Double(ok))) => Ok(ok != 0.0),
        Ok(Some(RawBsonRef::Int32(ok))) => Ok(ok != 0),
        Ok(Some(RawBsonRef::Int64(ok))) => Ok(ok != 0),
        Ok(Some(RawBsonRef::Boolean(ok))) => Ok(ok),
        _ => Err(WireError::MissingOk),
    }
}

/// `reply` if it says `ok`, otherwise the command's error (`errmsg`, `code`, `codeName`).
pub(crate) fn command_reply(command: &str, reply: RawDocumentBuf) -> Result<RawDocumentBuf, MongocryptdError> {
    let ok = is_ok(&reply).map_err(|source| MongocryptdError::Wire { step: command_step(command), source })?;
    if ok {
        return Ok(reply);
    }
    let string = |key| match reply.get(key) {
        Ok(Some(RawBsonRef::String(s))) => Some(s.to_owned()),
        _ => None,
    };
    let code = match reply.get("code") {
        Ok(Some(RawBsonRef::Int32(code))) => Some(code),
        _ => None,
    };
    Err(MongocryptdError::Command {
        command: command.to_owned(),
        code,
        code_name: string("codeName"),
        message: string("errmsg").unwrap_or_else(|| "(no errmsg)".into()),
    })
}

/// The step a command's reply belongs to: the handshake's legacy hello or the markings command.
fn command_step(command: &str) -> super::error::Step {
    if command == HELLO_COMMAND {
        super::error::Step::Handshake
    } else {
        super::error::Step::Command
    }
}

/// The handshake's command: legacy hello, since no server API version is requested (the handshake spec).
pub(crate) const HELLO_COMMAND: &str = "isMaster";

/// Checks the handshake's reply: `ok`, and `iscryptd: true` (the server is mongocryptd, not a mongod that
/// happens to listen on the port).
pub(crate) fn check_hello_reply(reply: RawDocumentBuf, address: &str) -> Result<(), MongocryptdError> {
    let reply = command_reply(HELLO_COMMAND, reply)?;
    match reply.get("iscryptd") {
        Ok(Some(RawBsonRef::Boolean(true))) => Ok(()),
        _ => Err(MongocryptdError::NotMongocryptd { address: address.to_owned() }),
    }
}

/// The name of a command: its first key.
pub(crate) fn command_name(command: &RawDocument) -> String {
    match command.into_iter().next() {
        Some(Ok((key, _))) => key_str(&key).to_owned(),
        _ => "(empty command)".to_owned(),
    }
}

/// A raw element's key as `&str`: bson 3's `CStr` and bson 2's `str` alike.
fn key_str<K: AsRef<str> + ?Sized>(key: &K) -> &str {
    key.as_ref()
}

/// The host and port of a `mongodb://` URI with one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The connection string spec's default port.
const DEFAULT_PORT: u16 = 27017;

/// The address of `uri`: `mongodb://host[:port][/[database]][?options]`, one host, no credentials (mongocryptd
/// has no authentication). The options are not read: the spec fixes the settings of the mongocryptd client.
pub(crate) fn parse_uri(uri: &str) -> Result<Address, MongocryptdError> {
    let invalid = |reason: &str| MongocryptdError::InvalidUri { uri: uri.to_owned(), reason: reason.to_owned() };
    let rest = uri.strip_prefix("mongodb://").ok_or_else(|| invalid("only mongodb:// URIs are supported"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(invalid("mongocryptd takes no credentials"));
    }
    if authority.contains(',') {
        return Err(invalid("mongocryptd is one host"));
    }
    if authority.contains('%') {
        return Err(invalid("Unix domain sockets are not supported by this client"));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(|| invalid("unclosed [ in the host"))?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(|| invalid("junk after the IPv6 address"))?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port.parse().ok().filter(|&p| p != 0).ok_or_else(|| invalid("the port is not 1-65535"))?,
    };
    Ok(Address { host: host.to_owned(), port })
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_message_length_error_names_the_bounds() {
        let message = WireError::MessageLength(1).to_string();
        assert!(message.ends_with(&format!("{MIN_MESSAGE_LEN}..={MAX_MESSAGE_LEN}")), "{message}");
    }

    use super::*;
    use libmongocrypt::bson::{doc, rawdoc};

    fn reply_bytes(length: i32, response_to: i32, op_code: i32, flags: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        for field in [length, 7, response_to, op_code] {
            m.extend_from_slice(&field.to_le_bytes());
        }
        m.extend_from_slice(&flags.to_le_bytes());
        m.push(0);
        m.extend_from_slice(body);
        m
    }

    /// Feeds `bytes` in reads of at most `chunk`; the reply, or the first error.
    fn read(bytes: &[u8], chunk: usize) -> Result<Option<RawDocumentBuf>, WireError> {
        let mut reader = ReplyReader::new(5);
        let mut rest = bytes;
        loop {
            let into = reader.unfilled();
            let n = into.len().min(chunk).min(rest.len());
            into[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            if let Some(reply) = reader.advance(n)? {
                assert!(rest.is_empty(), "bytes left after the reply");
                return Ok(Some(reply));
            }
        }
    }

    #[test]
    fn a_reply_is_read_whole_in_any_chunks_and_checked() {
        let body = rawdoc! { "ok": 1.0, "x": "y" };
        let len = (21 + body.as_bytes().len()) as i32;
        for chunk in [1, 3, 16, 1000] {
            let reply = read(&reply_bytes(len, 5, 2013, 0, body.as_bytes()), chunk).unwrap().unwrap();
            assert_eq!(reply, body);
        }
        // A checksum is skipped.
        let mut with_sum = reply_bytes(len + 4, 5, 2013, CHECKSUM_PRESENT, body.as_bytes());
        with_sum.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(read(&with_sum, 7).unwrap().unwrap(), body);
    }

    #[test]
    fn malformed_replies_are_refused_with_what_is_wrong() {
        let body = rawdoc! { "ok": 1.0 };
        let len = (21 + body.as_bytes().len()) as i32;
        let good = reply_bytes(len, 5, 2013, 0, body.as_bytes());
        assert_eq!(read(&good[..0], 4), Err(WireError::Closed));
        assert_eq!(read(&good[..10], 4), Err(WireError::Truncated { expected: 16, received: 10 }));
        assert_eq!(read(&good[..20], 4), Err(WireError::Truncated { expected: good.len(), received: 20 }));
        for length in [-1, 0, 20, 25, 48_000_001, i32::MAX] {
            assert_eq!(read(&reply_bytes(length, 5, 2013, 0, &[]), 100), Err(WireError::MessageLength(length)));
        }
        assert_eq!(
            read(&reply_bytes(len, 6, 2013, 0, body.as_bytes()), 100),
            Err(WireError::ResponseTo { expected: 5, actual: 6 })
        );
        assert_eq!(read(&reply_bytes(len, 5, 1, 0, body.as_bytes()), 100), Err(WireError::OpCode(1)));
        assert_eq!(read(&reply_bytes(len, 5, 2013, 2, body.as_bytes()), 100), Err(WireError::Flags(2)));
        // Optional bits (16-31, exhaustAllowed among them) are ignored.
        assert_eq!(read(&reply_bytes(len, 5, 2013, 1 << 16, body.as_bytes()), 100).unwrap().unwrap(), body);
        let mut kind1 = reply_bytes(len, 5, 2013, 0, body.as_bytes());
        kind1[20] = 1;
        assert!(matches!(read(&kind1, 100), Err(WireError::Sections(_))));
        // The body's length prefix disagrees with messageLength: one byte of junk after it.
        let mut junk = reply_bytes(len + 1, 5, 2013, 0, body.as_bytes());
        junk.push(0);
        assert!(matches!(read(&junk, 100), Err(WireError::Sections(_))));
        // Invalid BSON inside: an element of type 0x7E.
        let mut bad = body.as_bytes().to_vec();
        bad[4] = 0x7E;
        assert!(matches!(read(&reply_bytes(len, 5, 2013, 0, &bad), 100), Err(WireError::Bson(_))));
    }

    #[test]
    fn a_claimed_length_is_not_allocated_before_it_arrives() {
        let mut reader = ReplyReader::new(5);
        let header = reply_bytes(48_000_000, 5, 2013, 0, &[]);
        reader.unfilled().copy_from_slice(&header[..16]);
        assert_eq!(reader.advance(16), Ok(None));
        assert_eq!(reader.unfilled().len(), READ_CHUNK);
    }

    #[test]
    fn the_database_is_appended_to_the_command() {
        let command = rawdoc! { "find": "test", "filter": { "a": 1 } };
        let body = with_db(&command, "db").unwrap();
        assert_eq!(body, rawdoc! { "find": "test", "filter": { "a": 1 }, "$db": "db" }.as_bytes());
        let named = rawdoc! { "find": "test", "$db": "db" };
        assert_eq!(with_db(&named, "db").unwrap(), named.as_bytes());
        assert!(matches!(with_db(&named, "other"), Err(MongocryptdError::InvalidCommand(_))));
        assert!(matches!(with_db(&command, "a\0b"), Err(MongocryptdError::InvalidCommand(_))));
    }

    #[test]
    fn ok_zero_is_a_command_error_with_its_fields() {
        let reply =
            RawDocumentBuf::try_from(&doc! { "ok": 0, "errmsg": "bad", "code": 9, "codeName": "FailedToParse" })
                .unwrap();
        let err = command_reply("find", reply).unwrap_err();
        assert!(
            matches!(&err, MongocryptdError::Command { command, code: Some(9), code_name: Some(n), message }
                if command == "find" && n == "FailedToParse" && message == "bad"),
            "{err:?}"
        );
        let no_ok = RawDocumentBuf::try_from(&doc! { "x": 1 }).unwrap();
        assert!(matches!(
            command_reply("find", no_ok),
            Err(MongocryptdError::Wire { source: WireError::MissingOk, .. })
        ));
    }

    #[test]
    fn uris_give_one_address() {
        let address = |uri| parse_uri(uri).map(|a| a.to_string());
        assert_eq!(address("mongodb://localhost:27020").unwrap(), "localhost:27020");
        assert_eq!(address("mongodb://localhost:27021/?serverSelectionTimeoutMS=1000").unwrap(), "localhost:27021");
        assert_eq!(address("mongodb://127.0.0.1").unwrap(), "127.0.0.1:27017");
        assert_eq!(address("mongodb://[::1]:27020/db").unwrap(), "[::1]:27020");
        for bad in [
            "mongodb+srv://x",
            "http://localhost",
            "mongodb://a,b",
            "mongodb://u:p@h",
            "mongodb://%2Ftmp%2Fs.sock",
            "mongodb://h:0",
            "mongodb://h:99999",
            "mongodb://",
            "mongodb://[::1",
        ] {
            assert!(matches!(parse_uri(bad), Err(MongocryptdError::InvalidUri { .. })), "{bad}");
        }
    }
}
