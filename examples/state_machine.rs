//! A Rust port of libmongocrypt's `test/example-state-machine.c`: automatic encryption and decryption of a `find`
//! command, then explicit encryption and decryption, with every mongod, mongocryptd and KMS reply mocked from the
//! files in `tests/data/example`. The output has the layout of the C program's, and matches its reference output
//! (`tests/data/example/reference-output.normalized.txt`) once the parts that change on every run (the AWS
//! signature's date and hash, the random ciphertext) are masked.
//!
//! ```text
//! cargo run --example state_machine
//! ```
//!
//! The loop itself is [`libmongocrypt::state_machine::run`]; this file supplies the I/O ([`PrintingIo`]), which prints
//! what a driver would send and replies with the file a driver would have received. The markings go over the wire,
//! as a driver's do: [`PrintingIo`] sends each command with `libmongocrypt-driver`'s mongocryptd client (OP_MSG, after
//! the handshake spec's hello) to a [`stand_in_mongocryptd`] on a loopback port, which answers with the file. `tests/state_machine.rs`
//! includes this file and runs [`run`] against the reference. [`extjson`] is the one extended JSON reader of the
//! repository: the tests include this file (through `tests/common`) to read their data files with it.
//!
//! It needs the `libmongocrypt` crate, whose I/O is the driver's, and `libmongocrypt-driver` for its mongocryptd
//! client (a driver with a MongoDB client of its own sends the markings command with that instead). A driver that
//! wants ready-made KMS I/O adds `libmongocrypt-kms` too, and its `kms_request` becomes one line:
//! `self.kms.kms_request(kms)` with a `libmongocrypt_kms::tls::KmsTransport` (on-demand credentials:
//! `libmongocrypt_kms::credentials`).

use std::error::Error as StdError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use libmongocrypt::bson::{rawdoc, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{self as sm, IoResult, StateMachineIo};
use libmongocrypt::{Algorithm, Crypt, KmsCtx, KmsProviders};
use libmongocrypt_driver::mongocryptd::{MongocryptdClient, MongocryptdClientSettings};

/// The database of the example's command, where its markings command runs too.
pub const DB: &str = "test";

/// `tests/data/example`, where the mocked replies live.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/example")
}

/// Reads an extended JSON file as BSON, keeping its field order (as libbson's `bson_json_reader` does).
pub fn read_json(path: &Path) -> Result<RawDocumentBuf, Box<dyn StdError + Send + Sync>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("could not open {}: {e}", path.display()))?;
    extjson::parse_document(&text).map_err(|e| format!("could not read json from {}: {e}", path.display()).into())
}

/// Reads an HTTP reply, turning bare `\n` line ends into `\r\n` as the C example's `_read_http` does.
pub fn read_http(path: &Path) -> Result<Vec<u8>, Box<dyn StdError + Send + Sync>> {
    let raw = std::fs::read(path).map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    Ok(crlf(&raw))
}

/// `\n` → `\r\n`, leaving existing `\r\n` alone.
pub fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() * 2);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Bytes as text with CR and LF shown as the two characters `\r` and `\n` (the C example's
/// `_print_binary_as_text`).
pub fn escape_crlf(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\r' => s.push_str("\\r"),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        for _ in chunk.invalid() {
            s.push(char::REPLACEMENT_CHARACTER);
        }
    }
    s
}

/// The I/O of the C example: every request is printed to `out`, every reply comes from a file in
/// [`data_dir`] and is printed too; the mongocryptd reply comes over the wire, from a [`stand_in_mongocryptd`] that
/// serves the file. `Sync` (the output sits behind a mutex), so that the async example can serve its runs too.
pub struct PrintingIo<W: Write> {
    out: Mutex<W>,
    dir: PathBuf,
    mongocryptd: MongocryptdClient,
    /// Serves until the `PrintingIo` is dropped.
    stand_in: stand_in_mongocryptd::StandIn,
}

impl<W: Write> PrintingIo<W> {
    /// Prints to `out`, replies from the files in `dir`; starts the stand-in mongocryptd.
    pub fn new(out: W, dir: PathBuf) -> Result<PrintingIo<W>, Box<dyn StdError + Send + Sync>> {
        let stand_in = stand_in_mongocryptd::StandIn::start(read_json(&dir.join("mongocryptd-reply.json"))?)?;
        let mongocryptd = MongocryptdClient::new(MongocryptdClientSettings::new(stand_in.uri()), None)?;
        Ok(PrintingIo { out: Mutex::new(out), dir, mongocryptd, stand_in })
    }

    /// The stand-in mongocryptd's URI, for the async example's client.
    pub fn mongocryptd_uri(&self) -> String {
        self.stand_in.uri()
    }

    /// Prints `text`.
    pub fn print(&self, text: std::fmt::Arguments<'_>) -> std::io::Result<()> {
        self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner).write_fmt(text)
    }

    /// Prints a request to mongod or mongocryptd under `heading`.
    pub fn print_request(&self, heading: &str, op: &RawDocument) -> IoResult<()> {
        Ok(self.print(format_args!("\n{heading}\n{}\n", extjson::to_libbson_json(op)?))?)
    }

    /// Prints a reply (the C example's wording: its replies all come from files).
    pub fn print_reply(&self, reply: &RawDocument) -> IoResult<()> {
        Ok(self.print(format_args!("\nmocking reply from file:\n{}\n", extjson::to_libbson_json(reply)?))?)
    }

    /// Prints the request, then the reply read from `file`, and returns the reply.
    fn mongo(&self, heading: &str, op: &RawDocument, file: &str) -> IoResult<RawDocumentBuf> {
        self.print_request(heading, op)?;
        let reply = read_json(&self.dir.join(file))?;
        self.print_reply(&reply)?;
        Ok(reply)
    }
}

/// The heading of a markings request, as the C example prints it.
pub const MARKINGS_HEADING: &str = "running cmd on mongocryptd with this schema:";

impl<W: Write> StateMachineIo for PrintingIo<W> {
    fn list_collections(&self, _db: Option<&str>, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        let info = self.mongo("running listCollections on mongod with this filter:", filter, "collection-info.json")?;
        Ok(vec![info])
    }

    fn mark_command(&self, command: &RawDocument) -> IoResult<RawDocumentBuf> {
        self.print_request(MARKINGS_HEADING, command)?;
        let reply = self.mongocryptd.mark_command(DB, command)?;
        self.print_reply(&reply)?;
        Ok(reply)
    }

    fn find_keys(&self, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        let key = self.mongo("running a find on the key vault coll with this filter:", filter, "key-document.json")?;
        Ok(vec![key])
    }

    fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        self.print(format_args!("\nsending the following to kms:\n{}\n", escape_crlf(kms.message()?)))?;
        let reply = read_http(&self.dir.join("kms-decrypt-reply.txt"))?;
        self.print(format_args!("\nmocking reply from file\n{}\n", escape_crlf(&reply)))?;
        sm::feed_kms_reply(kms, &reply)?;
        Ok(())
    }
}

/// Runs the four operations of the C example, printing to `out` what the C program prints.
pub fn run(out: &mut impl Write) -> Result<(), Box<dyn StdError + Send + Sync>> {
    let dir = data_dir();
    let io = PrintingIo::new(&mut *out, dir.clone())?;
    // The C example sets only AWS credentials (`mongocrypt_setopt_kms_provider_aws`): the key vault's one key is
    // wrapped by AWS KMS.
    let crypt = Crypt::builder().kms_providers(&KmsProviders::new().aws("aws", "example", "example", None))?.build()?;
    let final_bson = |doc: &RawDocument| -> IoResult<()> {
        io.print(format_args!("\nfinal bson is:\n{}\n", extjson::to_libbson_json(doc)?))?;
        Ok(())
    };

    io.print(format_args!("******* ENCRYPTION *******\n\n"))?;
    let cmd = read_json(&dir.join("cmd.json"))?;
    let mut ctx = crypt.ctx().encrypt(DB, &cmd)?;
    let encrypted = sm::run(&mut ctx, &io)?.ok_or("encryption gave no result")?;
    final_bson(&encrypted)?;

    io.print(format_args!("\n******* DECRYPTION *******\n\n"))?;
    // The data key is cached in the Crypt now: no key vault or KMS round.
    let mut ctx = crypt.ctx().decrypt(&encrypted)?;
    let decrypted = sm::run(&mut ctx, &io)?.ok_or("decryption gave no result")?;
    final_bson(&decrypted)?;

    io.print(format_args!("\n******* EXPLICIT ENCRYPTION *******\n"))?;
    // Explicit encryption needs a key: the `_id` of the key document, by UUID.
    let key_doc = read_json(&dir.join("key-document.json"))?;
    let key_id = key_doc.get_binary("_id")?.bytes;
    let mut ctx =
        crypt.ctx().key_id(key_id)?.algorithm(&Algorithm::Random)?.explicit_encrypt(&rawdoc! { "v": "hello" })?;
    let ciphertext = sm::run(&mut ctx, &io)?.ok_or("explicit encryption gave no result")?;
    final_bson(&ciphertext)?;

    io.print(format_args!("\n******* EXPLICIT DECRYPTION *******\n"))?;
    let mut ctx = crypt.ctx().explicit_decrypt(&ciphertext)?;
    let plaintext = sm::run(&mut ctx, &io)?.ok_or("explicit decryption gave no result")?;
    final_bson(&plaintext)?;
    Ok(())
}

fn main() {
    let stdout = std::io::stdout();
    if let Err(e) = run(&mut stdout.lock()) {
        eprintln!("\ngot error: {e}");
        std::process::exit(1);
    }
}

/// A stand-in for mongocryptd on a loopback port: what the real one does on the wire, for one reply. It answers the
/// handshake (`hello`, `isMaster`) as mongocryptd does (`iscryptd: true`) and every other command with the reply
/// it was given, in OP_MSG (a 16-byte header: length, request id, the id answered, op code 2013; flag bits; a
/// section of kind 0 holding the body).
pub mod stand_in_mongocryptd {
    use std::io::{self, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread;

    use libmongocrypt::bson::{rawdoc, RawDocument, RawDocumentBuf};

    /// OP_MSG's op code.
    const OP_MSG: i32 = 2013;
    /// The smallest OP_MSG (a header, flag bits, a section kind and an empty document) and mongod's largest.
    const MESSAGE_LENGTHS: std::ops::RangeInclusive<usize> = 26..=48_000_000;

    /// A stand-in serving on its own threads until dropped.
    pub struct StandIn {
        address: SocketAddr,
        stop: Arc<AtomicBool>,
    }

    impl StandIn {
        /// Listens on a port of 127.0.0.1 the system picks, answering every command but the handshake with
        /// `reply`.
        pub fn start(reply: RawDocumentBuf) -> io::Result<StandIn> {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let address = listener.local_addr()?;
            let stop = Arc::new(AtomicBool::new(false));
            let stopped = stop.clone();
            let reply = Arc::new(reply);
            thread::Builder::new().name("stand-in mongocryptd".into()).spawn(move || {
                for stream in listener.incoming() {
                    if stopped.load(Ordering::Acquire) {
                        break;
                    }
                    let reply = reply.clone();
                    // One thread per connection, ending when the client closes it (or sends what is not OP_MSG).
                    if let Ok(stream) = stream {
                        let _ = thread::Builder::new().spawn(move || serve(stream, &reply));
                    }
                }
            })?;
            Ok(StandIn { address, stop })
        }

        /// `mongodb://127.0.0.1:<port>`.
        pub fn uri(&self) -> String {
            format!("mongodb://{}", self.address)
        }
    }

    impl Drop for StandIn {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
            // Wakes the accept loop, which then sees `stop`.
            let _ = TcpStream::connect(self.address);
        }
    }

    /// Answers the requests of one connection until it closes or sends something else than OP_MSG.
    fn serve(mut stream: TcpStream, reply: &RawDocument) -> io::Result<()> {
        let handshake = rawdoc! { "ismaster": true, "iscryptd": true, "maxWireVersion": 21, "ok": 1 };
        loop {
            let mut header = [0u8; 16];
            stream.read_exact(&mut header)?;
            let field = |at: usize| i32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
            let (length, request_id, op_code) = (field(0), field(4), field(12));
            let length = usize::try_from(length).ok().filter(|l| MESSAGE_LENGTHS.contains(l));
            let (Some(length), OP_MSG) = (length, op_code) else { return Ok(()) };
            let mut rest = vec![0u8; length - header.len()];
            stream.read_exact(&mut rest)?;
            // Flag bits (4 bytes), then a section of kind 0: the command.
            let Ok(command) = RawDocument::from_bytes(&rest[5..]) else { return Ok(()) };
            let name = command.into_iter().next().and_then(Result::ok).map(|(key, _)| key.to_string());
            let body = match name.as_deref() {
                Some("hello" | "isMaster" | "ismaster") => &handshake,
                _ => reply,
            };
            stream.write_all(&op_msg(request_id, body))?;
        }
    }

    /// An OP_MSG answering `response_to` with `body`.
    fn op_msg(response_to: i32, body: &RawDocument) -> Vec<u8> {
        let length = 16 + 4 + 1 + body.as_bytes().len();
        let mut message = Vec::with_capacity(length);
        for field in [length as i32, 0, response_to, OP_MSG, 0] {
            message.extend_from_slice(&field.to_le_bytes());
        }
        message.push(0);
        message.extend_from_slice(body.as_bytes());
        message
    }
}

/// Extended JSON in and out: the reader of every extended JSON file in `tests/data` (serde_json, which keeps field
/// order with its `preserve_order` feature, then bson's canonical and relaxed extended JSON conversion, after
/// [`normalize_legacy`]), and a printer of bson's relaxed extended JSON in the layout of libbson's
/// `bson_as_relaxed_extended_json` (`{ "k" : v }`, `[ 1, 2 ]`), which the C example prints.
pub mod extjson {
    use std::error::Error as StdError;
    use std::fmt::Write as _;

    use libmongocrypt::bson::{Bson, Document, RawDocument, RawDocumentBuf};
    use serde_json::{json, Value};

    /// Parses one extended JSON document (canonical, relaxed, or with legacy `$binary`) into BSON, in file order.
    pub fn parse_document(text: &str) -> Result<RawDocumentBuf, Box<dyn StdError + Send + Sync>> {
        Ok(RawDocumentBuf::try_from(&parse_to_document(text)?)?)
    }

    /// As [`parse_document`], as a [`Document`].
    pub fn parse_to_document(text: &str) -> Result<Document, Box<dyn StdError + Send + Sync>> {
        let mut value: Value = serde_json::from_str(text)?;
        normalize_legacy(&mut value);
        match value {
            Value::Object(map) => Ok(Document::try_from(map)?),
            other => Err(format!("expected a document, got {other}").into()),
        }
    }

    /// Rewrites the legacy binary form `{"$binary": "<base64>", "$type": "<hex>"}` (libbson reads it,
    /// `encrypted-command.json` uses it, bson's conversion rejects it) to the canonical
    /// `{"$binary": {"base64": ..., "subType": ...}}`, at any depth. An object with `$type` but no `$binary`, such
    /// as the query operator, is left alone.
    pub fn normalize_legacy(value: &mut Value) {
        match value {
            Value::Array(items) => items.iter_mut().for_each(normalize_legacy),
            Value::Object(map) => match (map.len(), map.get("$binary"), map.get("$type")) {
                (2, Some(Value::String(base64)), Some(Value::String(subtype))) => {
                    // libbson takes one or two hex digits; the canonical form wants two.
                    let subtype = u8::from_str_radix(subtype, 16).map_or(subtype.clone(), |t| format!("{t:02x}"));
                    *value = json!({ "$binary": { "base64": base64, "subType": subtype } });
                }
                _ => map.values_mut().for_each(normalize_legacy),
            },
            _ => {}
        }
    }

    /// A document as libbson's `bson_as_relaxed_extended_json` prints it: bson's relaxed extended JSON in libbson's
    /// layout, `{ "k" : v, ... }` and `[ a, b ]`, nested empty documents and arrays as `{  }` and `[  ]`, an empty
    /// top-level document as `{ }`.
    pub fn to_libbson_json(doc: &RawDocument) -> Result<String, Box<dyn StdError + Send + Sync>> {
        Ok(document_to_libbson_json(&Document::try_from(doc)?))
    }

    /// As [`to_libbson_json`], for a [`Document`].
    pub fn document_to_libbson_json(doc: &Document) -> String {
        if doc.is_empty() {
            return "{ }".into();
        }
        let mut out = String::new();
        layout(&mut out, &Bson::Document(doc.clone()).into_relaxed_extjson());
        out
    }

    /// A relaxed extended JSON value in libbson's layout.
    fn layout(out: &mut String, value: &Value) {
        match value {
            Value::Object(map) => {
                out.push_str("{ ");
                for (i, (key, value)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let _ = write!(out, "{} : ", Value::from(key.as_str()));
                    layout(out, value);
                }
                out.push_str(" }");
            }
            Value::Array(items) => {
                out.push_str("[ ");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    layout(out, item);
                }
                out.push_str(" ]");
            }
            scalar => {
                // bson's form, not libbson's, where they differ (doubles not %.20g, $date ms trimmed): unused here.
                let _ = write!(out, "{scalar}");
            }
        }
    }
}
