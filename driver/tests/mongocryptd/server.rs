//! A loopback server in the test process that records every OP_MSG request it receives, and answers each as the
//! test says: as mongocryptd would, or with broken, mismatched or no replies.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libmongocrypt::bson::{rawdoc, RawDocument, RawDocumentBuf};

/// One request received.
#[derive(Debug, Clone)]
pub struct Request {
    /// Which connection (0, 1, ...) it came on.
    pub connection: usize,
    pub request_id: i32,
    pub response_to: i32,
    pub op_code: i32,
    pub flags: u32,
    /// The kind byte of the first section.
    pub section_kind: u8,
    pub body: RawDocumentBuf,
}

impl Request {
    /// The command's name: its body's first key.
    pub fn command(&self) -> String {
        first_key(&self.body)
    }
}

pub fn first_key(document: &RawDocument) -> String {
    let (key, _) = document.into_iter().next().expect("a key").expect("valid BSON");
    let key: &str = key.as_ref();
    key.to_owned()
}

/// What the server does after writing an answer's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Reads the next request.
    Serve,
    /// Closes the connection.
    Close,
    /// Keeps the connection open and never answers again.
    Hold,
}

/// The bytes to write in answer to a request, and what then.
pub struct Answer(pub Vec<u8>, pub After);

impl Answer {
    /// A well-formed reply with `body`.
    pub fn reply(request: &Request, body: &RawDocument) -> Answer {
        Answer(op_msg_reply(request.request_id, body), After::Serve)
    }
}

/// An OP_MSG reply to `response_to` with `body`.
pub fn op_msg_reply(response_to: i32, body: &RawDocument) -> Vec<u8> {
    let mut message = Vec::new();
    for value in [(21 + body.as_bytes().len()) as i32, 777, response_to, 2013, 0] {
        message.extend_from_slice(&value.to_le_bytes());
    }
    message.push(0);
    message.extend_from_slice(body.as_bytes());
    message
}

/// mongocryptd's answer to the handshake.
pub fn hello_reply() -> RawDocumentBuf {
    rawdoc! { "ismaster": true, "iscryptd": true, "maxWireVersion": 21, "ok": 1.0 }
}

/// Answers the handshake as mongocryptd, and every other command with `other`.
pub fn as_mongocryptd(
    other: impl Fn(&Request) -> Answer + Send + Sync + 'static,
) -> impl Fn(&Request) -> Answer + Send + Sync + 'static {
    move |request| match request.command().as_str() {
        "isMaster" => Answer::reply(request, &hello_reply()),
        _ => other(request),
    }
}

type Answerer = dyn Fn(&Request) -> Answer + Send + Sync;

pub struct Server {
    pub port: u16,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
}

impl Server {
    pub fn start(answer: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let answer: Arc<Answerer> = Arc::new(answer);
        let (stop2, requests2, connections2) = (stop.clone(), requests.clone(), connections.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let connection = connections2.fetch_add(1, Ordering::Relaxed);
                        let (stop, requests, answer) = (stop2.clone(), requests2.clone(), answer.clone());
                        std::thread::spawn(move || serve(stream, connection, &stop, &requests, &*answer));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server { port, stop, requests, connections }
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn commands(&self) -> Vec<String> {
        self.requests().iter().map(Request::command).collect()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    mut stream: TcpStream,
    connection: usize,
    stop: &AtomicBool,
    requests: &Mutex<Vec<Request>>,
    answer: &Answerer,
) {
    stream.set_nonblocking(false).unwrap();
    loop {
        let mut header = [0u8; 16];
        if stream.read_exact(&mut header).is_err() {
            return;
        }
        let field = |i: usize| i32::from_le_bytes(header[i..i + 4].try_into().unwrap());
        let length = usize::try_from(field(0)).unwrap();
        assert!((26..=48_000_000).contains(&length), "a request of {length} bytes");
        let mut rest = vec![0u8; length - 16];
        stream.read_exact(&mut rest).expect("the request's body");
        let request = Request {
            connection,
            request_id: field(4),
            response_to: field(8),
            op_code: field(12),
            flags: u32::from_le_bytes(rest[..4].try_into().unwrap()),
            section_kind: rest[4],
            body: RawDocumentBuf::from_bytes(rest[5..].to_vec()).expect("a BSON body"),
        };
        requests.lock().unwrap().push(request.clone());
        let Answer(bytes, after) = answer(&request);
        if stream.write_all(&bytes).is_err() {
            return;
        }
        match after {
            After::Serve => {}
            After::Close => return,
            After::Hold => {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return;
            }
        }
    }
}
