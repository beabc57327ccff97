//! Test support for the end-to-end tests: a builder-style fake API server over real
//! TCP, a gateway started in-process on port 0, and clients that speak the wire
//! (raw HTTP/1.1 bytes, raw RFC 6455 frames, and tungstenite's sync client).
//!
//! Every wait here is bounded: sockets carry read timeouts, and waiting for the API
//! server to see something is a condition variable with a deadline, never a sleep.
//!
//! The fakes here run on plain threads and share their records through locks (tests only).
#![allow(clippy::disallowed_types)]
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Response;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};
use ws2api::config::Config;
use ws2api::server::{Gateway, Stopper};

/// Longest any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Read timeout put on every client socket, so that no read can hang a test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The handshake vector of RFC 6455 section 1.3: this key...
pub const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// ...must be answered with this accept value.
pub const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// ---------------------------------------------------------------------------
// The fake API server
// ---------------------------------------------------------------------------

/// One request the fake API server received, as it came off the wire.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, `DELETE`.
    pub method: String,
    /// Path including the query, e.g. `/alice?room=1`.
    pub path: String,
    /// Header fields in wire order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (Content-Length framed).
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `X-Connection-Id`, which every gateway request must carry.
    pub fn conn_id(&self) -> &str {
        self.header("x-connection-id")
            .unwrap_or_else(|| panic!("{} {} has no X-Connection-Id", self.method, self.path))
    }

    /// `X-Close-Code` of a Disconnect, as a number.
    pub fn close_code(&self) -> u16 {
        self.header("x-close-code")
            .unwrap_or_else(|| panic!("{} {} has no X-Close-Code", self.method, self.path))
            .parse()
            .expect("X-Close-Code is a number")
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("body is UTF-8")
    }

    /// True if this is `method` on exactly `path`.
    pub fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

/// An answer of the fake API server.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Instead of a proper answer, misbehave this way.
    pub fault: Option<Fault>,
}

/// A way for the fake API server to misbehave instead of answering.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Never answer: keep the connection open, reading, until the gateway closes it
    /// (or [`WAIT`] passes).
    Stall,
    /// Write these bytes as they are, then close the connection (FIN).
    RawThenClose(Vec<u8>),
    /// Write these bytes as they are, then reset the connection (RST: SO_LINGER 0).
    RawThenReset(Vec<u8>),
    /// Write `head`, then `len` body bytes in 64 KiB pieces (never held whole in
    /// memory), then close.
    Stream { head: Vec<u8>, len: usize },
}

impl Reply {
    /// `200` with a text body.
    pub fn ok(body: &str) -> Reply {
        Reply::status(200).body(body.as_bytes())
    }

    /// `status` with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            fault: None,
        }
    }

    /// No answer at all: the connection stays open and silent.
    pub fn stall() -> Reply {
        Reply::fault(Fault::Stall)
    }

    /// `bytes` on the wire (not necessarily HTTP), then FIN.
    pub fn raw_then_close(bytes: &[u8]) -> Reply {
        Reply::fault(Fault::RawThenClose(bytes.to_vec()))
    }

    /// `bytes` on the wire, then RST.
    pub fn raw_then_reset(bytes: &[u8]) -> Reply {
        Reply::fault(Fault::RawThenReset(bytes.to_vec()))
    }

    /// `head` on the wire, then `len` bytes of body streamed, then FIN.
    pub fn stream(head: &[u8], len: usize) -> Reply {
        Reply::fault(Fault::Stream {
            head: head.to_vec(),
            len,
        })
    }

    fn fault(fault: Fault) -> Reply {
        let mut reply = Reply::status(200);
        reply.fault = Some(fault);
        reply
    }

    /// `200` with `body` as `application/octet-stream`.
    pub fn binary(body: &[u8]) -> Reply {
        Reply::status(200)
            .header("Content-Type", "application/octet-stream")
            .body(body)
    }

    /// The same answer with one more header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The same answer with `body`.
    pub fn body(mut self, body: &[u8]) -> Reply {
        self.body = body.to_vec();
        self
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// Builds a [`FakeApi`]: by default Connect answers `ok`, a Message is echoed (same
/// body, same Content-Type) and a Disconnect answers `ok`.
pub struct FakeApiBuilder {
    connect: Handler,
    message: Handler,
    delete: Handler,
    close_after_answer: bool,
    close_silently: bool,
}

impl FakeApiBuilder {
    /// Every Connect (`GET`) gets `reply`.
    pub fn connect(self, reply: Reply) -> Self {
        self.connect_with(move |_| reply.clone())
    }

    /// Every Connect (`GET`) is answered by `f`.
    pub fn connect_with(mut self, f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        self.connect = Arc::new(f);
        self
    }

    /// Every Message (`POST`) gets `reply`.
    pub fn message(self, reply: Reply) -> Self {
        self.message_with(move |_| reply.clone())
    }

    /// Every Message is answered with `prefix` + its body, with its Content-Type.
    pub fn message_echo(self, prefix: &str) -> Self {
        let prefix = prefix.as_bytes().to_vec();
        self.message_with(move |req| {
            let mut body = prefix.clone();
            body.extend_from_slice(&req.body);
            let mut reply = Reply::status(200).body(&body);
            if let Some(t) = req.header("content-type") {
                reply = reply.header("Content-Type", t);
            }
            reply
        })
    }

    /// Every Message (`POST`) is answered by `f`.
    pub fn message_with(mut self, f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        self.message = Arc::new(f);
        self
    }

    /// Every Disconnect (`DELETE`) gets `reply`.
    pub fn delete(self, reply: Reply) -> Self {
        self.delete_with(move |_| reply.clone())
    }

    /// Every Disconnect (`DELETE`) is answered by `f`.
    pub fn delete_with(mut self, f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        self.delete = Arc::new(f);
        self
    }

    /// Closes the TCP connection after every answer (sent with `Connection: close`),
    /// so the gateway's pool must open a new one for each request.
    pub fn close_after_each(mut self) -> Self {
        self.close_after_answer = true;
        self
    }

    /// Closes the TCP connection after every answer without saying so (no
    /// `Connection: close`), as a server whose keep-alive timeout just expired.
    pub fn close_silently_after_each(mut self) -> Self {
        self.close_silently = true;
        self
    }

    /// Binds `127.0.0.1:0` and starts serving, one thread per connection.
    pub fn start(self) -> FakeApi {
        let listener = reusable_listener("127.0.0.1:0".parse().unwrap()).expect("bind fake API");
        let addr = listener.local_addr().expect("fake API address");
        let shared = Arc::new(Shared::default());
        let answers = Arc::new(self);
        let accepting = spawn_accept_loop(listener, shared.clone(), answers.clone());
        FakeApi {
            addr,
            shared,
            answers,
            accepting: Mutex::new(Some(accepting)),
        }
    }
}

/// A listening socket with SO_REUSEADDR, so that a stopped fake API server can bind
/// its port again while connections of its earlier life linger in TIME_WAIT.
pub fn reusable_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

/// One life of the fake API server's listener: its accept thread and its stop flag.
struct Accepting {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

fn spawn_accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    answers: Arc<FakeApiBuilder>,
) -> Accepting {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = thread::Builder::new()
        .name("fake-api".into())
        .spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break; // the listener closes here: connects are refused
                }
                let Ok(stream) = stream else { continue };
                let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
                if let Ok(clone) = stream.try_clone() {
                    shared.conns.lock().unwrap().insert(id, clone);
                }
                let shared = shared.clone();
                let answers = answers.clone();
                thread::spawn(move || {
                    serve_api_conn(stream, &shared, &answers);
                    shared.conns.lock().unwrap().remove(&id);
                });
            }
        })
        .expect("spawn fake API");
    Accepting { stop, thread }
}

#[derive(Default)]
struct Shared {
    log: Mutex<Vec<Recorded>>,
    changed: Condvar,
    /// The connections being served, by a sequence number, so that a stop can cut them.
    conns: Mutex<std::collections::HashMap<u64, TcpStream>>,
    next_conn: std::sync::atomic::AtomicU64,
}

/// A fake API server: records every request and answers as built.
pub struct FakeApi {
    /// Where it listens; give it to [`Config::for_tests`].
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    answers: Arc<FakeApiBuilder>,
    accepting: Mutex<Option<Accepting>>,
}

impl FakeApi {
    /// A builder with the default answers.
    pub fn builder() -> FakeApiBuilder {
        FakeApiBuilder {
            connect: Arc::new(|_| Reply::ok("ok")),
            message: Arc::new(|_| Reply::status(200)),
            delete: Arc::new(|_| Reply::ok("ok")),
            close_after_answer: false,
            close_silently: false,
        }
        .message_echo("")
    }

    /// A fake API server with the default answers.
    pub fn start() -> FakeApi {
        FakeApi::builder().start()
    }

    /// Everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Waits (at most [`WAIT`]) until `done` holds for the requests received so far,
    /// and returns them; panics naming `what` and listing the requests on timeout.
    pub fn wait_for(&self, what: &str, done: impl Fn(&[Recorded]) -> bool) -> Vec<Recorded> {
        let deadline = Instant::now() + WAIT;
        let mut log = self.shared.log.lock().unwrap();
        loop {
            if done(&log) {
                return log.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                let seen = format!("{log:#?}");
                drop(log); // not poisoned: the fake server's threads go on
                panic!("timed out waiting for {what}; the API server saw: {seen}");
            }
            log = self
                .shared
                .changed
                .wait_timeout(log, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Waits for the first `method path` request and returns it.
    pub fn wait_request(&self, method: &str, path: &str) -> Recorded {
        let what = format!("{method} {path}");
        let log = self.wait_for(&what, |reqs| reqs.iter().any(|r| r.is(method, path)));
        log.into_iter().find(|r| r.is(method, path)).unwrap()
    }

    /// The requests with `method` on `path`, in arrival order.
    pub fn matching(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is(method, path))
            .collect()
    }
}

impl FakeApi {
    /// Goes down like a crashed server: the listener is closed (connects are refused)
    /// and every open connection is cut, so nothing more is answered until
    /// [`FakeApi::restart`].
    pub fn stop_listening(&self) {
        if let Some(accepting) = self.accepting.lock().unwrap().take() {
            accepting.stop.store(true, Ordering::SeqCst);
            // Wake the accept loop; it sees the flag and drops the listener.
            let _ = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT);
            accepting.thread.join().expect("fake API accept thread");
        }
        for (_, stream) in self.shared.conns.lock().unwrap().drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same address after [`FakeApi::stop_listening`], with the
    /// same answers and the same request log.
    pub fn restart(&self) {
        let mut accepting = self.accepting.lock().unwrap();
        assert!(accepting.is_none(), "the fake API server is running");
        let listener = reusable_listener(self.addr)
            .unwrap_or_else(|e| panic!("bind {} again: {e}", self.addr));
        *accepting = Some(spawn_accept_loop(
            listener,
            self.shared.clone(),
            self.answers.clone(),
        ));
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        // Wake the accept loop so its thread ends (not joined: a drop never waits).
        if let Some(accepting) = self.accepting.lock().unwrap().take() {
            accepting.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT);
        }
    }
}

/// An address where nothing listens (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn serve_api_conn(mut stream: TcpStream, shared: &Shared, answers: &FakeApiBuilder) {
    // Bounds a large answer to a gateway that stopped reading it.
    let _ = stream.set_write_timeout(Some(WAIT));
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some((request, close)) = read_api_request(&mut stream, &mut buf) else {
            return;
        };
        // Recorded before it is answered: once the gateway acts on an answer, the
        // request is in the log.
        shared.log.lock().unwrap().push(request.clone());
        shared.changed.notify_all();
        let handler = match request.method.as_str() {
            "GET" => &answers.connect,
            "POST" => &answers.message,
            "DELETE" => &answers.delete,
            _ => &answers.delete,
        };
        let reply = handler(&request);
        if let Some(fault) = reply.fault {
            misbehave(stream, fault);
            return;
        }
        let close = close || answers.close_after_answer;
        let mut out = format!("HTTP/1.1 {} Fake\r\n", reply.status);
        for (name, value) in &reply.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&reply.body);
        if stream.write_all(&bytes).is_err() || close || answers.close_silently {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Carries out `fault` on the connection, which ends with it.
fn misbehave(mut stream: TcpStream, fault: Fault) {
    match fault {
        Fault::Stall => {
            // Read (and drop) whatever comes until the gateway gives up on us.
            let _ = stream.set_read_timeout(Some(WAIT));
            let mut sink = [0u8; 4096];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        }
        Fault::RawThenClose(bytes) => {
            let _ = stream.write_all(&bytes);
            let _ = stream.shutdown(Shutdown::Both);
        }
        Fault::RawThenReset(bytes) => {
            let _ = stream.write_all(&bytes);
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            // Dropping a socket with a zero linger time sends RST.
        }
        Fault::Stream { head, mut len } => {
            let piece = vec![b'z'; 64 << 10];
            let mut result = stream.write_all(&head);
            while result.is_ok() && len > 0 {
                let n = len.min(piece.len());
                result = stream.write_all(&piece[..n]);
                len -= n;
            }
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Reads one request (head + Content-Length body); `None` on EOF or error.
/// The flag says the client asked for `Connection: close`.
fn read_api_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(Recorded, bool)> {
    let mut chunk = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head_len) = req.parse(buf).ok()? {
            let method = req.method?.to_string();
            let path = req.path?.to_string();
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let find = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            let len: usize = find("content-length")
                .map(|v| v.trim().parse().expect("Content-Length is a number"))
                .unwrap_or(0);
            let close = find("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
            while buf.len() < head_len + len {
                let n = stream.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[head_len..head_len + len].to_vec();
            buf.drain(..head_len + len);
            let request = Recorded {
                method,
                path,
                headers,
                body,
            };
            return Some((request, close));
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

// ---------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------

/// A gateway running in this process with 2 shards on port 0.
pub struct TestGateway {
    /// Where WebSocket clients connect.
    pub public: SocketAddr,
    /// The control listener.
    pub control: SocketAddr,
    stopper: Stopper,
    gateway: Option<Gateway>,
}

impl TestGateway {
    /// Starts a gateway in front of `api` with [`Config::for_tests`] settings.
    pub fn start(api: SocketAddr) -> TestGateway {
        TestGateway::start_with(api, |_| {})
    }

    /// Starts a gateway in front of `api` after `tune` adjusted the configuration.
    pub fn start_with(api: SocketAddr, tune: impl FnOnce(&mut Config)) -> TestGateway {
        let mut config = Config::for_tests(api);
        tune(&mut config);
        let gateway = Gateway::start(config).expect("gateway starts");
        TestGateway {
            public: gateway.public_addr,
            control: gateway.control_addr,
            stopper: gateway.stopper(),
            gateway: Some(gateway),
        }
    }

    /// The orderly stop; panics if `join` does not return within [`WAIT`].
    pub fn stop(mut self) {
        let gateway = self.gateway.take().expect("running");
        self.stopper.stop();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(gateway.join());
        });
        match rx.recv_timeout(WAIT) {
            Ok(joined) => joined.expect("every shard stopped cleanly"),
            Err(_) => panic!("gateway did not stop within {WAIT:?}"),
        }
    }

    /// `GET` on the control listener; the body as text (status must be 200).
    pub fn control_get(&self, path: &str) -> String {
        let reply = http(
            self.control,
            format!("GET {path} HTTP/1.1\r\nHost: ws2api\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(reply.status, 200, "GET {path}: {reply:?}");
        reply.text()
    }

    /// A push: `POST /<id>` on the control listener with `body` and `content_type`.
    pub fn push(&self, id: &str, content_type: &str, body: &[u8]) -> HttpReply {
        let mut request = format!(
            "POST /{id} HTTP/1.1\r\nHost: ws2api\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        http(self.control, &request)
    }

    /// The sum of a metric over its `shard` labels (or its unlabeled value).
    pub fn metric(&self, name: &str) -> u64 {
        metric(&self.control_get("/metrics"), name, None)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        // A test that failed half-way still stops its gateway, without hanging on it.
        if let Some(gateway) = self.gateway.take() {
            self.stopper.stop();
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                let _ = tx.send(gateway.join());
            });
            let _ = rx.recv_timeout(WAIT);
        }
    }
}

/// The value of `name` in a Prometheus text: for `Some(shard)` the `{shard="N"}` line,
/// for `None` the sum of every line of that name.
pub fn metric(text: &str, name: &str, shard: Option<usize>) -> u64 {
    let mut sum = 0;
    let mut found = false;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let matches = match shard {
            Some(s) => key == format!("{name}{{shard=\"{s}\"}}"),
            None => key == name || key.starts_with(&format!("{name}{{")),
        };
        if matches {
            sum += value.parse::<u64>().expect("integer metric");
            found = true;
        }
    }
    assert!(found, "no metric {name} (shard {shard:?}) in:\n{text}");
    sum
}

/// Ids owned by `shard` of 2, as the gateway computes it.
pub fn ids_owned_by(shard: usize, prefix: &str, count: usize) -> Vec<String> {
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .filter(|id| ws2api_shards::shard_of(id.as_bytes(), 2) == shard)
        .take(count)
        .collect()
}

// ---------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------

/// A parsed HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Opens a client socket with [`IO_TIMEOUT`] on reads and writes.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Writes `request` as is and reads the answer until the server closes (so the
/// request should say `Connection: close`).
pub fn http(addr: SocketAddr, request: &[u8]) -> HttpReply {
    let mut stream = tcp(addr);
    stream.write_all(request).expect("write request");
    let mut bytes = Vec::new();
    if let Err(e) = stream.read_to_end(&mut bytes) {
        // A reset after a complete answer is fine; anything else shows below.
        assert!(!bytes.is_empty(), "reading the answer: {e}");
    }
    parse_reply(&bytes)
}

/// Parses a complete HTTP answer (head, then the rest as body).
pub fn parse_reply(bytes: &[u8]) -> HttpReply {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "not an HTTP answer ({other:?}): {:?}",
            String::from_utf8_lossy(bytes)
        ),
    };
    HttpReply {
        status: response.code.expect("status"),
        headers: response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: bytes[head_len..].to_vec(),
    }
}

/// An RFC 6455 upgrade request for `path` with the RFC's sample key and `extra` header lines.
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\n\
         Host: ws2api.test\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {RFC_KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         {extra}\r\n"
    )
}

/// Sends an upgrade request and reads the answer head (and, for a refusal, the body
/// until the server closes). Returns the socket, positioned after the head.
pub fn raw_upgrade(addr: SocketAddr, path: &str, extra: &str) -> (TcpStream, HttpReply) {
    let mut stream = tcp(addr);
    stream
        .write_all(upgrade_request(path, extra).as_bytes())
        .expect("write upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte so that no frame behind the head is swallowed.
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => break,
            Err(e) => panic!(
                "reading the upgrade answer: {e}; got {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let mut reply = parse_reply(&head);
    if reply.status != 101 {
        let _ = stream.read_to_end(&mut reply.body);
    }
    (stream, reply)
}

/// A raw upgrade that must succeed with the RFC 6455 accept value.
pub fn raw_ws(addr: SocketAddr, path: &str) -> TcpStream {
    let (stream, reply) = raw_upgrade(addr, path, "");
    assert_eq!(reply.status, 101, "{reply:?}");
    assert_eq!(reply.header("sec-websocket-accept"), Some(RFC_ACCEPT));
    stream
}

/// A client frame: FIN + `opcode`, masked with a fixed key, as RFC 6455 5.2 lays it out.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one unmasked server frame: (first byte, payload).
pub fn read_server_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("frame header");
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            stream.read_exact(&mut n).unwrap();
            u16::from_be_bytes(n) as usize
        }
        127 => {
            let mut n = [0u8; 8];
            stream.read_exact(&mut n).unwrap();
            u64::from_be_bytes(n) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).expect("frame payload");
    (head[0], payload)
}

/// Reads server frames until a close frame; returns its code and reason.
pub fn read_close_frame(stream: &mut TcpStream) -> (u16, String) {
    loop {
        let (first, payload) = read_server_frame(stream);
        if first == 0x88 {
            assert!(payload.len() >= 2, "close frame without a code");
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return (code, String::from_utf8(payload[2..].to_vec()).unwrap());
        }
    }
}

// ---------------------------------------------------------------------------
// WebSocket clients (tungstenite)
// ---------------------------------------------------------------------------

/// A client WebSocket over a blocking socket with read timeouts.
pub type Ws = WebSocket<TcpStream>;

/// Connects to `ws://addr{path}` with extra request headers. `Err(status)` if the
/// gateway answered anything but 101.
pub fn try_ws(
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<(Ws, Response), u16> {
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    match tungstenite::client(request, tcp(addr)) {
        Ok(pair) => Ok(pair),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("handshake for {path}: {e}"),
    }
}

/// Connects to `ws://addr/{id}`; panics unless accepted.
pub fn ws(addr: SocketAddr, id: &str) -> Ws {
    match try_ws(addr, &format!("/{id}"), &[]) {
        Ok((ws, _)) => ws,
        Err(status) => panic!("/{id} refused with {status}"),
    }
}

/// The next data message (pings and pongs skipped).
pub fn recv(ws: &mut Ws) -> Message {
    loop {
        match ws.read().expect("read a message") {
            Message::Ping(_) | Message::Pong(_) => continue,
            message => return message,
        }
    }
}

/// The next message, which must be text.
pub fn recv_text(ws: &mut Ws) -> String {
    match recv(ws) {
        Message::Text(text) => text.as_str().to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Sends a text message.
pub fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("send");
}

/// Reads until the server's close frame and then until the socket ends (tungstenite
/// answers the close itself). Returns the code and reason; panics on data.
pub fn expect_close(ws: &mut Ws) -> (u16, String) {
    let frame = loop {
        match ws.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(other) => panic!("expected a close, got {other:?}"),
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    };
    drain_until_closed(ws);
    let frame = frame.expect("close frame carries a code");
    (u16::from(frame.code), frame.reason.as_str().to_string())
}

/// Closes with `code` and `reason` and waits for the server to finish the handshake.
pub fn close(ws: &mut Ws, code: u16, reason: &str) {
    ws.close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
    .expect("send close");
    drain_until_closed(ws);
}

fn drain_until_closed(ws: &mut Ws) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return,
            Err(tungstenite::Error::Io(e)) if e.kind() != io::ErrorKind::WouldBlock => return,
            Err(tungstenite::Error::Io(_)) => panic!("the server did not close the socket"),
            Err(_) => return,
        }
    }
}

/// Reads `ws` on its own thread until the server closes it; the handle yields the
/// close code and reason. Lets the gateway's close handshakes finish promptly.
pub fn close_watcher(mut ws: Ws) -> thread::JoinHandle<(u16, String)> {
    thread::spawn(move || expect_close(&mut ws))
}

// ---------------------------------------------------------------------------
// Waiting, control requests, misbehaving clients
// ---------------------------------------------------------------------------

/// Polls `done` (every 10 ms, at most [`WAIT`]) until it holds; panics naming `what`.
/// For state that announces itself nowhere else, such as the gateway's counters.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// One request on the control listener (`Connection: close`), with extra header lines.
pub fn control_request(
    control: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> HttpReply {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: ws2api\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    http(control, &request)
}

/// The value of the sample `name{labels}` (labels exactly as rendered, e.g.
/// `shard="0",kind="timeout"`) in a Prometheus text; `None` if there is none.
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.parse().expect("a number"))
}

/// The sum of `name` samples over shards whose other labels are `labels`, e.g.
/// `sum_over_shards(text, "ws2api_api_errors_total", "kind=\"timeout\"")`; 0 if none.
pub fn sum_over_shards(text: &str, name: &str, labels: &str) -> f64 {
    (0..64)
        .filter_map(|shard| {
            let all = if labels.is_empty() {
                format!("shard=\"{shard}\"")
            } else {
                format!("shard=\"{shard}\",{labels}")
            };
            sample(text, name, &all)
        })
        .sum()
}

/// The reference counter `name` from control `GET /` (`name value` lines).
pub fn reference_counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .trim()
        .parse()
        .expect("a counter")
}

/// A keep-alive connection to the control listener, for many requests in a row.
pub struct ControlConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl ControlConn {
    pub fn open(control: SocketAddr) -> ControlConn {
        ControlConn {
            stream: tcp(control),
            buf: Vec::new(),
        }
    }

    /// A push over this connection; returns the status.
    pub fn push(&mut self, id: &str, content_type: &str, body: &[u8]) -> u16 {
        let mut request = format!(
            "POST /{id} HTTP/1.1\r\nHost: ws2api\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.stream.write_all(&request).expect("write push");
        self.read_reply().status
    }

    /// Reads one answer framed by Content-Length.
    fn read_reply(&mut self) -> HttpReply {
        let mut chunk = [0u8; 4096];
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) =
                response.parse(&self.buf).expect("an HTTP answer")
            {
                let len: usize = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| {
                        std::str::from_utf8(h.value)
                            .unwrap()
                            .trim()
                            .parse()
                            .unwrap()
                    })
                    .unwrap_or(0);
                if self.buf.len() >= head_len + len {
                    let reply = parse_reply(&self.buf[..head_len + len]);
                    self.buf.drain(..head_len + len);
                    return reply;
                }
            }
            let n = self.stream.read(&mut chunk).expect("read control answer");
            assert!(n > 0, "control listener closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A client socket whose kernel receive buffer is `rcvbuf` bytes (set before the
/// connect, so the window is small from the start), with [`IO_TIMEOUT`].
pub fn tcp_small_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.set_recv_buffer_size(rcvbuf).unwrap();
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads an answer head byte by byte (nothing behind it is consumed); for a
/// refusal also the body until the server closes.
pub fn read_reply_head(stream: &mut TcpStream) -> HttpReply {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => panic!("closed after {:?}", String::from_utf8_lossy(&head)),
            Err(e) => panic!(
                "reading an answer: {e}; got {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let mut reply = parse_reply(&head);
    if reply.status != 101 {
        let _ = stream.read_to_end(&mut reply.body);
    }
    reply
}

/// What a peer sees when the other side ends: `Eof` (FIN), `Reset`, or `Bytes`
/// (the first bytes it sent instead) — read with [`IO_TIMEOUT`].
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    Eof,
    Reset,
    Bytes(Vec<u8>),
}

/// Reads until the peer sends something or ends.
pub fn read_ending(stream: &mut TcpStream) -> Ending {
    let mut buf = [0u8; 1024];
    match stream.read(&mut buf) {
        Ok(0) => Ending::Eof,
        Ok(n) => Ending::Bytes(buf[..n].to_vec()),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ending::Reset,
        Err(e) => panic!("expected the peer to answer or end: {e}"),
    }
}

// ---------------------------------------------------------------------------
// The real binary as a child process
// ---------------------------------------------------------------------------

/// The `ws2api` binary of this build, run as a child with its stderr read line by
/// line on a thread.
pub struct GatewayProcess {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    pub stderr: Vec<String>,
    /// Where WebSocket clients connect, from the startup line.
    pub public: SocketAddr,
    /// The control listener, from the startup line.
    pub control: SocketAddr,
}

/// The path of the `ws2api` binary cargo built for these tests.
pub fn ws2api_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ws2api")
}

impl GatewayProcess {
    /// Starts `ws2api --listen 127.0.0.1:0 --control-listen 127.0.0.1:0 ARGS` and
    /// waits for its startup line (`public ws://ADDR/<ClientId>, control http://ADDR/`).
    pub fn spawn(args: &[&str]) -> GatewayProcess {
        let mut child = std::process::Command::new(ws2api_bin())
            .args(["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start ws2api");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            use std::io::BufRead;
            for line in io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut process = GatewayProcess {
            child,
            lines,
            stderr: Vec::new(),
            public: dead_addr(),
            control: dead_addr(),
        };
        let line = process.wait_line("the startup line", |l| l.contains(" public ws://"));
        let addr_after = |marker: &str| -> SocketAddr {
            let rest = &line[line.find(marker).expect("marker") + marker.len()..];
            rest[..rest.find('/').unwrap()].parse().expect("an address")
        };
        process.public = addr_after("public ws://");
        process.control = addr_after("control http://");
        process
    }

    /// The process id.
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), signal).expect("kill");
    }

    /// The next stderr line (at most [`WAIT`]); `None` once stderr closed.
    pub fn next_line(&mut self) -> Option<String> {
        match self.lines.recv_timeout(WAIT) {
            Ok(line) => {
                self.stderr.push(line.clone());
                Some(line)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "no stderr line within {WAIT:?}; so far:\n{}",
                self.stderr.join("\n")
            ),
        }
    }

    /// Reads stderr lines until one satisfies `pred` (at most [`WAIT`] in all).
    pub fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no stderr line with {what} within {WAIT:?}; so far:\n{}",
                    self.stderr.join("\n")
                ),
            }
        }
    }

    /// Waits (at most [`WAIT`]) for the process to exit; its status. The rest of
    /// stderr is read into [`GatewayProcess::stderr`].
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "ws2api did not exit within {WAIT:?}; stderr:\n{}",
                self.stderr.join("\n")
            );
            thread::sleep(Duration::from_millis(10));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.stderr.push(line);
        }
        status
    }

    /// `VmHWM` (peak resident memory) of the process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .expect("VmHWM")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .expect("a number")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary with `args` to its end (at most [`WAIT`]): exit code and stderr.
pub fn run_ws2api(args: &[&str]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(ws2api_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ws2api");
    let mut stderr = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ws2api {args:?} did not exit within {WAIT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    (status.code(), reader.join().unwrap())
}
