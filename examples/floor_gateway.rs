//! `floor_gateway`: the reference floor for ws2api's "gateway CPU per message".
//!
//! The least CPU a WebSocket-to-HTTP gateway can spend per message on this machine,
//! written as a plain epoll loop with no framework, so that ws2api's figure under
//! scripts/loadtest.sh has something to be compared against. `--shards N` threads, each
//! with its own SO_REUSEPORT listener, its own epoll instance (edge-triggered: every
//! socket is registered once, for in and out, and never modified) and its own pool of
//! keep-alive connections to the API server. In the steady state a message costs one
//! `recv` from the client, one `send` to the API, one `recv` of the answer and one
//! `send` to the client, plus a share of an `epoll_wait`: no other syscalls, no
//! allocation once the buffers have grown.
//!
//! It takes the flags scripts/loadtest.sh gives ws2api (`LOAD_GATEWAY_BIN=...`):
//!
//! ```text
//! cargo run --release --example floor_gateway -- --listen 127.0.0.1:7001 \
//!     --control-listen 127.0.0.1:7002 --api-url http://127.0.0.1:8000/ --shards 2
//! ```
//!
//! What it does: the upgrade (path `/<ClientId>`, `Sec-WebSocket-Accept`); then every
//! text or binary frame becomes `POST <api path><ClientId>` with only `Host` and
//! `Content-Length`; a non-empty 2xx answer body goes back verbatim as one text frame.
//! Ping → pong, close → close. As with ws2api's default `--max-inflight-per-client 1`,
//! a client's next frame waits for the answer to its previous one (answers keep their
//! order, and the socket is not read meanwhile: TCP backpressure). At most
//! `--api-max-conns` API connections per shard; a message that finds none free waits in
//! line.
//!
//! Left out on purpose, since the floor measures the steady message path only: the
//! connect `GET` and the Disconnect `DELETE` to the API; ClientId validation, duplicate
//! ClientIds, a cross-shard client table; the `Content-Type`, `X-Connection-Id` and
//! `X-Forwarded-For` headers; UTF-8 checks (answers always go out as text frames);
//! fragmented messages (the connection is closed with 1003); liveness pings, idle and
//! API timeouts, a retry on a stale API connection; pushes to one client; group
//! membership; stats, logs, graceful shutdown (SIGTERM ends it). API answers must carry
//! `Content-Length` (no chunked bodies).
//!
//! Broadcast, the floor of ws2api's "gateway CPU per delivery": `POST /groups/<any>` on
//! the control listener sends its body as one text frame to every upgraded client of
//! every shard (every client is in every group, so run the harness with `--groups 1`)
//! and answers `{"queued":N,"full":0}` once every shard has sent it. A thread of its own
//! serves the control listener, one connection at a time, keep-alive; it hands the
//! frame (encoded once, shared) to each shard over a channel and wakes the shard through
//! a socket pair registered in its epoll. Each shard `send`s the frame to each client
//! whose write buffer is empty and appends it to the others' (their next EPOLLOUT edge
//! flushes it): one `send` per delivery, nothing else. Every other control request is
//! answered 404.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};

use clap::Parser;
use nix::errno::Errno;
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage,
};

#[derive(Parser, Debug)]
#[command(about = "Reference floor: a minimal epoll WebSocket-to-HTTP gateway")]
struct Cli {
    /// WebSocket listener.
    #[arg(long, default_value = "0.0.0.0:7001")]
    listen: SocketAddr,
    /// Control listener: `POST /groups/<any>` broadcasts to every client; all else 404.
    #[arg(long, default_value = "127.0.0.1:7002")]
    control_listen: SocketAddr,
    /// The API server; the ClientId is appended to its path.
    #[arg(long, default_value = "http://127.0.0.1:8000/")]
    api_url: String,
    /// Threads, each with its own listener, epoll instance and API pool.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Connections to the API server, per shard; a message that finds none free waits
    /// (its client is not read meanwhile), as with ws2api's flag of the same name.
    #[arg(long, default_value_t = 256)]
    api_max_conns: usize,
    /// Accepted for ws2api's command line; ignored.
    #[arg(long, default_value = "info")]
    log_level: String,
}

/// The three epoll calls. nix has them (`nix::sys::epoll`) only behind its `event`
/// feature, which this crate does not enable, and libc is not a direct dependency, so
/// they are declared here; std already links libc. The only unsafe code in this file.
mod epoll {
    use std::io;
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};

    pub const IN: u32 = 0x001;
    pub const OUT: u32 = 0x004;
    pub const ERR: u32 = 0x008;
    pub const HUP: u32 = 0x010;
    pub const RDHUP: u32 = 0x2000;
    pub const ET: u32 = 1 << 31;
    const CTL_ADD: i32 = 1;
    const CLOEXEC: i32 = 0o2_000_000;

    /// `struct epoll_event`; the kernel's uapi header packs it on x86_64 only.
    #[cfg_attr(target_arch = "x86_64", repr(C, packed))]
    #[cfg_attr(not(target_arch = "x86_64"), repr(C))]
    #[derive(Clone, Copy, Default)]
    pub struct Event {
        pub events: u32,
        pub data: u64,
    }

    extern "C" {
        fn epoll_create1(flags: i32) -> i32;
        fn epoll_ctl(epfd: i32, op: i32, fd: i32, event: *mut Event) -> i32;
        fn epoll_wait(epfd: i32, events: *mut Event, maxevents: i32, timeout: i32) -> i32;
    }

    pub struct Epoll(OwnedFd);

    impl Epoll {
        pub fn new() -> io::Result<Self> {
            // SAFETY: no pointers; a non-negative result is a new fd that we own.
            let fd = unsafe { epoll_create1(CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just returned by epoll_create1 and nothing else owns it.
            Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
        }

        pub fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
            let mut ev = Event {
                events,
                data: token,
            };
            // SAFETY: `ev` is a valid epoll_event for the duration of the call.
            let r = unsafe {
                epoll_ctl(
                    std::os::fd::AsRawFd::as_raw_fd(&self.0),
                    CTL_ADD,
                    fd,
                    &mut ev,
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Waits without a timeout; EINTR reads as no events.
        pub fn wait(&self, events: &mut [Event]) -> io::Result<usize> {
            let max = events.len().min(i32::MAX as usize) as i32;
            // SAFETY: the kernel writes at most `max` events into `events`.
            let n = unsafe {
                epoll_wait(
                    std::os::fd::AsRawFd::as_raw_fd(&self.0),
                    events.as_mut_ptr(),
                    max,
                    -1,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::Interrupted {
                    Ok(0)
                } else {
                    Err(e)
                };
            }
            Ok(n as usize)
        }
    }
}

use epoll::{Epoll, ERR, ET, HUP, IN, OUT, RDHUP};

/// Tokens: slot in the low 32 bits, a generation in bits 32..62 (a stale event for a
/// reused slot is ignored), bit 62 for API connections; the listeners have bit 63.
const API: u64 = 1 << 62;
const LISTENER: u64 = u64::MAX;
const FANOUT: u64 = u64::MAX - 1;
/// Per-thread read buffer; a read that fills it may leave more in the socket.
const READ_CHUNK: usize = 64 * 1024;
/// Largest client frame and API answer body accepted.
const MAX_MESSAGE: usize = 1 << 20;
/// Largest upgrade request or API answer head.
const MAX_HEAD: usize = 16 * 1024;

/// A Vec of slots with a free list: indices stay put, growth is bounded by the peak.
struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
    fn next_slot(&self) -> usize {
        self.free.last().copied().unwrap_or(self.items.len())
    }
    fn insert(&mut self, v: T) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.items[i] = Some(v);
                i
            }
            None => {
                self.items.push(Some(v));
                self.items.len() - 1
            }
        }
    }
    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.items.get_mut(i)?.as_mut()
    }
    fn remove(&mut self, i: usize) -> Option<T> {
        let v = self.items.get_mut(i)?.take();
        if v.is_some() {
            self.free.push(i);
        }
        v
    }
}

struct Client {
    stream: TcpStream,
    token: u64,
    /// The ClientId, once the upgrade is done.
    id: Option<String>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// A message of this client is at the API: read and parse nothing more until it is answered.
    busy: bool,
    /// The socket may hold bytes not read yet (edge-triggered: no new event for them).
    unread: bool,
}

struct Api {
    stream: TcpStream,
    token: u64,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Token of the client whose message this connection carries.
    waiting: Option<u64>,
}

/// A shard's end of the control thread's broadcasts.
struct Fanout {
    /// Readable when `frames` has something (one byte per frame).
    wake: UnixStream,
    frames: mpsc::Receiver<Arc<[u8]>>,
    /// How many clients each frame went to.
    done: mpsc::Sender<u64>,
}

/// One thread: its listener, epoll instance, clients and API pool.
struct Shard {
    ep: Epoll,
    listener: TcpListener,
    fanout: Fanout,
    api_addr: SocketAddr,
    /// `POST <path>` and ` HTTP/1.1\r\nHost: <host>\r\nContent-Length: `.
    req_start: Vec<u8>,
    req_mid: Vec<u8>,
    clients: Slab<Client>,
    apis: Slab<Api>,
    idle: Vec<usize>,
    /// Open API connections and their cap.
    api_open: usize,
    api_max: usize,
    /// Clients with a message waiting for an API connection, in arrival order.
    queued: std::collections::VecDeque<u64>,
    next_gen: u64,
    accept_errors: u64,
    scratch: Vec<u8>,
    lost: u64,
}

enum Step {
    Again,
    NeedMore,
    Gone,
}

impl Shard {
    fn run(mut self) -> io::Result<()> {
        self.ep.add(self.listener.as_raw_fd(), IN, LISTENER)?;
        self.ep.add(self.fanout.wake.as_raw_fd(), IN | ET, FANOUT)?;
        let mut events = vec![epoll::Event::default(); 1024];
        loop {
            let n = self.ep.wait(&mut events)?;
            for ev in &events[..n] {
                let (flags, token) = (ev.events, ev.data); // copies: the struct may be packed
                match token {
                    LISTENER => self.accept(),
                    FANOUT => self.fan_out(),
                    t if t & API != 0 => self.api_event(t, flags),
                    t => self.client_event(t, flags),
                }
            }
        }
    }

    fn token(&mut self, kind: u64, slot: usize) -> u64 {
        self.next_gen = self.next_gen.wrapping_add(1);
        kind | (self.next_gen & 0x3fff_ffff) << 32 | slot as u64
    }

    /// A message got no answer (API connection failed): counted, the first few told.
    fn lose(&mut self, why: &dyn std::fmt::Display) {
        self.lost += 1;
        if self.lost <= 10 || self.lost.is_multiple_of(10_000) {
            eprintln!("floor_gateway: message lost ({} so far): {why}", self.lost);
        }
    }

    /// The listener is level-triggered: accept what is queued; EMFILE and the like come back.
    fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    self.accept_errors += 1;
                    if self.accept_errors <= 10 {
                        eprintln!("floor_gateway: accept: {e}");
                    }
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
                continue;
            }
            let token = self.token(0, self.clients.next_slot());
            let fd = stream.as_raw_fd();
            let slot = self.clients.insert(Client {
                stream,
                token,
                id: None,
                rbuf: Vec::new(),
                wbuf: Vec::new(),
                busy: false,
                unread: false,
            });
            if let Err(e) = self.ep.add(fd, IN | OUT | RDHUP | ET, token) {
                eprintln!("floor_gateway: epoll add: {e}");
                self.clients.remove(slot);
            }
        }
    }

    /// Sends every frame the control thread handed over to every upgraded client.
    fn fan_out(&mut self) {
        let mut sink = [0u8; 64];
        while matches!((&self.fanout.wake).read(&mut sink), Ok(n) if n > 0) {}
        while let Ok(frame) = self.fanout.frames.try_recv() {
            let mut sent = 0;
            let mut failed = Vec::new();
            for (slot, c) in self.clients.items.iter_mut().enumerate() {
                let Some(c) = c.as_mut().filter(|c| c.id.is_some()) else {
                    continue;
                };
                sent += 1;
                if !c.wbuf.is_empty() {
                    c.wbuf.extend_from_slice(&frame);
                    continue;
                }
                match (&c.stream).write(&frame) {
                    Ok(n) if n == frame.len() => {}
                    Ok(n) => c.wbuf.extend_from_slice(&frame[n..]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        c.wbuf.extend_from_slice(&frame)
                    }
                    Err(_) => failed.push(slot),
                }
            }
            for slot in failed {
                self.clients.remove(slot);
            }
            let _ = self.fanout.done.send(sent);
        }
    }

    fn client_event(&mut self, token: u64, flags: u32) {
        let slot = token as u32 as usize;
        let Some(c) = self.clients.get_mut(slot).filter(|c| c.token == token) else {
            return;
        };
        if flags & OUT != 0 && !c.wbuf.is_empty() && flush(&c.stream, &mut c.wbuf).is_err() {
            self.clients.remove(slot);
            return;
        }
        if flags & (IN | RDHUP | HUP | ERR) != 0 {
            c.unread = true;
            self.pump(slot);
        }
    }

    /// Works through what client `slot` sent, reading more while the socket may hold
    /// some and none of its messages is at the API.
    fn pump(&mut self, slot: usize) {
        loop {
            let Some(c) = self.clients.get_mut(slot) else {
                return;
            };
            if c.busy {
                return;
            }
            let step = if c.id.is_none() {
                self.upgrade(slot)
            } else {
                self.frame(slot)
            };
            match step {
                Step::Again => continue,
                Step::Gone => return,
                Step::NeedMore => {}
            }
            let Some(c) = self.clients.get_mut(slot) else {
                return;
            };
            if !c.unread {
                return;
            }
            match read_some(&c.stream, &mut self.scratch) {
                Ok(Some(0)) | Err(_) => {
                    self.clients.remove(slot);
                    return;
                }
                Ok(Some(n)) => {
                    // A short read drained the socket; new bytes bring a new edge.
                    c.unread = n == self.scratch.len();
                    c.rbuf.extend_from_slice(&self.scratch[..n]);
                }
                Ok(None) => c.unread = false,
            }
        }
    }

    /// The HTTP upgrade request, possibly in pieces.
    fn upgrade(&mut self, slot: usize) -> Step {
        let Some(c) = self.clients.get_mut(slot) else {
            return Step::Gone;
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let parsed = match req.parse(&c.rbuf) {
            Ok(httparse::Status::Partial) if c.rbuf.len() <= MAX_HEAD => return Step::NeedMore,
            Ok(httparse::Status::Complete(n)) => {
                let key = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"));
                let id = req
                    .path
                    .and_then(|p| p.strip_prefix('/'))
                    .map(|p| p.split('?').next().unwrap_or(""));
                match (id, key) {
                    (Some(id), Some(key)) if !id.is_empty() => Some((
                        n,
                        id.to_string(),
                        tungstenite::handshake::derive_accept_key(key.value),
                    )),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some((n, id, accept)) = parsed else {
            c.wbuf.extend_from_slice(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            let _ = flush(&c.stream, &mut c.wbuf);
            self.clients.remove(slot);
            return Step::Gone;
        };
        c.rbuf.drain(..n);
        c.id = Some(id);
        c.wbuf.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
        );
        c.wbuf.extend_from_slice(accept.as_bytes());
        c.wbuf.extend_from_slice(b"\r\n\r\n");
        if flush(&c.stream, &mut c.wbuf).is_err() {
            self.clients.remove(slot);
            return Step::Gone;
        }
        Step::Again
    }

    /// One client frame from the read buffer.
    fn frame(&mut self, slot: usize) -> Step {
        let Some(c) = self.clients.get_mut(slot) else {
            return Step::Gone;
        };
        let f = match parse_frame(&c.rbuf) {
            Ok(Some(f)) => f,
            Ok(None) => return Step::NeedMore,
            Err(code) => return self.close(slot, code),
        };
        let end = f.start + f.len;
        match f.opcode {
            OP_TEXT | OP_BINARY if f.fin => {}
            OP_TEXT | OP_BINARY | OP_CONT => return self.close(slot, 1003),
            OP_PING | OP_PONG | OP_CLOSE if f.len > 125 || !f.fin => return self.close(slot, 1002),
            OP_PING => {
                // Pong with the same payload, unmasked in place.
                unmask(&mut c.rbuf[f.start..end], f.mask);
                c.wbuf.extend_from_slice(&[0x80 | OP_PONG, f.len as u8]);
                c.wbuf.extend_from_slice(&c.rbuf[f.start..end]);
                c.rbuf.drain(..end);
                if flush(&c.stream, &mut c.wbuf).is_err() {
                    self.clients.remove(slot);
                    return Step::Gone;
                }
                return Step::Again;
            }
            OP_PONG => {
                c.rbuf.drain(..end);
                return Step::Again;
            }
            OP_CLOSE => {
                // Echo the status code (if any), then close.
                unmask(&mut c.rbuf[f.start..end], f.mask);
                let code = f.len.min(2);
                c.wbuf.extend_from_slice(&[0x80 | OP_CLOSE, code as u8]);
                c.wbuf.extend_from_slice(&c.rbuf[f.start..f.start + code]);
                let _ = flush(&c.stream, &mut c.wbuf);
                self.clients.remove(slot);
                return Step::Gone;
            }
            _ => return self.close(slot, 1002),
        }
        // A message: one POST on an idle (or new) API connection; with none free, the
        // client waits in line, its frame still in its read buffer.
        let client_token = c.token;
        if self.idle.is_empty() && self.api_open >= self.api_max {
            c.busy = true;
            self.queued.push_back(client_token);
            return Step::Gone;
        }
        let api = self.api_conn();
        let Some(c) = self.clients.get_mut(slot) else {
            return Step::Gone;
        };
        let Some(a) = api else {
            c.rbuf.drain(..end);
            self.lose(&"cannot connect to the API");
            return Step::Again;
        };
        let Some(api) = self.apis.get_mut(a) else {
            return Step::Again;
        };
        let w = &mut api.wbuf;
        w.extend_from_slice(&self.req_start);
        w.extend_from_slice(c.id.as_deref().unwrap_or("").as_bytes());
        w.extend_from_slice(&self.req_mid);
        push_decimal(w, f.len);
        w.extend_from_slice(b"\r\n\r\n");
        let body = w.len();
        w.extend_from_slice(&c.rbuf[f.start..end]);
        unmask(&mut w[body..], f.mask);
        c.rbuf.drain(..end);
        match flush(&api.stream, &mut api.wbuf) {
            Ok(()) => {
                api.waiting = Some(client_token);
                c.busy = true;
            }
            Err(e) => {
                self.apis.remove(a);
                self.api_open -= 1;
                self.lose(&format_args!("API send: {e}"));
            }
        }
        Step::Again
    }

    /// Sends a close frame with `code` and closes the client.
    fn close(&mut self, slot: usize, code: u16) -> Step {
        if let Some(c) = self.clients.get_mut(slot) {
            let code = code.to_be_bytes();
            c.wbuf
                .extend_from_slice(&[0x80 | OP_CLOSE, 2, code[0], code[1]]);
            let _ = flush(&c.stream, &mut c.wbuf);
            self.clients.remove(slot);
        }
        Step::Gone
    }

    /// An idle API connection, or a new one (non-blocking connect: the request waits
    /// in its write buffer until the socket is writable).
    fn api_conn(&mut self) -> Option<usize> {
        if let Some(a) = self.idle.pop() {
            return Some(a);
        }
        let stream = match connect(self.api_addr) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("floor_gateway: connect {}: {e}", self.api_addr);
                return None;
            }
        };
        let token = self.token(API, self.apis.next_slot());
        let fd = stream.as_raw_fd();
        self.api_open += 1;
        let a = self.apis.insert(Api {
            stream,
            token,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            waiting: None,
        });
        if let Err(e) = self.ep.add(fd, IN | OUT | RDHUP | ET, token) {
            eprintln!("floor_gateway: epoll add: {e}");
            self.apis.remove(a);
            self.api_open -= 1;
            return None;
        }
        Some(a)
    }

    fn api_event(&mut self, token: u64, flags: u32) {
        let a = token as u32 as usize;
        let Some(api) = self.apis.get_mut(a).filter(|x| x.token == token) else {
            return;
        };
        if flags & OUT != 0 && !api.wbuf.is_empty() && flush(&api.stream, &mut api.wbuf).is_err() {
            return self.api_failed(a, "send");
        }
        if flags & (IN | RDHUP | HUP | ERR) == 0 {
            return;
        }
        loop {
            match read_some(&api.stream, &mut self.scratch) {
                Ok(Some(0)) | Err(_) => return self.api_failed(a, "closed"),
                Ok(Some(n)) => {
                    api.rbuf.extend_from_slice(&self.scratch[..n]);
                    if n < self.scratch.len() {
                        break;
                    }
                }
                Ok(None) => break,
            }
        }
        self.api_answer(a, flags & (RDHUP | HUP | ERR) != 0);
    }

    /// A complete answer in the read buffer goes to its client; the connection goes
    /// back to the idle pool (or is closed if the server said so).
    fn api_answer(&mut self, a: usize, peer_closed: bool) {
        let Some(api) = self.apis.get_mut(a) else {
            return;
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let (head, status, len, close) = match resp.parse(&api.rbuf) {
            Ok(httparse::Status::Complete(head)) => {
                let mut len = None;
                let mut close = resp.version == Some(0);
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        len = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok());
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = h.value.eq_ignore_ascii_case(b"close");
                    }
                }
                let status = resp.code.unwrap_or(0);
                let len = len.or(if status == 204 || status == 304 {
                    Some(0)
                } else {
                    None
                });
                match len {
                    Some(len) if len <= MAX_MESSAGE => (head, status, len, close),
                    _ => return self.api_failed(a, "answer without a usable Content-Length"),
                }
            }
            Ok(httparse::Status::Partial) if api.rbuf.len() <= MAX_HEAD && !peer_closed => return,
            _ => return self.api_failed(a, "bad or truncated answer head"),
        };
        if api.rbuf.len() < head + len {
            if peer_closed {
                self.api_failed(a, "truncated answer");
            }
            return;
        }
        let waiting = api.waiting.take();
        let close = close || peer_closed || api.rbuf.len() > head + len;
        if let Some(ct) = waiting {
            let slot = ct as u32 as usize;
            if let Some(c) = self.clients.get_mut(slot).filter(|c| c.token == ct) {
                if status / 100 == 2 && len > 0 {
                    push_text_frame(&mut c.wbuf, &api.rbuf[head..head + len]);
                    if flush(&c.stream, &mut c.wbuf).is_err() {
                        self.clients.remove(slot);
                    }
                }
            }
        }
        api.rbuf.clear();
        if close {
            self.apis.remove(a);
            self.api_open -= 1;
        } else {
            self.idle.push(a);
        }
        if let Some(ct) = waiting {
            self.message_done(ct);
        }
        self.next_in_line();
    }

    /// A connection is free (or may be opened): the first client in line that is still
    /// there sends its message.
    fn next_in_line(&mut self) {
        while self.api_open < self.api_max || !self.idle.is_empty() {
            let Some(ct) = self.queued.pop_front() else {
                return;
            };
            let alive = self
                .clients
                .get_mut(ct as u32 as usize)
                .filter(|c| c.token == ct);
            if alive.is_some() {
                self.message_done(ct);
            }
        }
    }

    fn api_failed(&mut self, a: usize, why: &str) {
        let Some(api) = self.apis.remove(a) else {
            return;
        };
        self.api_open -= 1;
        if let Some(i) = self.idle.iter().position(|&x| x == a) {
            self.idle.swap_remove(i);
        }
        if let Some(ct) = api.waiting {
            self.lose(&format_args!("API connection: {why}"));
            self.message_done(ct);
        }
        self.next_in_line();
    }

    /// The client's message is answered (or lost): go on with what it sent since.
    fn message_done(&mut self, client_token: u64) {
        let slot = client_token as u32 as usize;
        if let Some(c) = self
            .clients
            .get_mut(slot)
            .filter(|c| c.token == client_token)
        {
            c.busy = false;
            self.pump(slot);
        }
    }
}

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// One client frame: payload at `start..start + len` of the buffer, still masked.
struct Frame {
    fin: bool,
    opcode: u8,
    start: usize,
    len: usize,
    mask: [u8; 4],
}

/// Parses the frame at the start of `buf`: `Ok(None)` = incomplete, `Err` = the close
/// code to fail the connection with (unmasked frame, reserved bits, too large).
fn parse_frame(buf: &[u8]) -> Result<Option<Frame>, u16> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 || b1 & 0x80 == 0 {
        return Err(1002);
    }
    let (len, at) = match b1 & 0x7f {
        126 if buf.len() < 4 => return Ok(None),
        126 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() < 10 => return Ok(None),
        127 => (
            u64::from_be_bytes([
                buf[2], buf[3], buf[4], buf[5], buf[6], buf[7], buf[8], buf[9],
            ]),
            10,
        ),
        n => (n as u64, 2),
    };
    if len > MAX_MESSAGE as u64 {
        return Err(1009);
    }
    let (start, len) = (at + 4, len as usize);
    if buf.len() < start + len {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        start,
        len,
        mask: [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]],
    }))
}

fn unmask(data: &mut [u8], mask: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// An unmasked, final server text frame.
fn push_text_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = payload.len();
    out.push(0x80 | OP_TEXT);
    if len < 126 {
        out.push(len as u8);
    } else if len <= 0xffff {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// One `recv`: `Ok(None)` if it would block.
fn read_some(stream: &TcpStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match (&*stream).read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Sends what the socket takes now and keeps the rest in `wbuf` for the next EPOLLOUT
/// edge (std's send uses MSG_NOSIGNAL: no SIGPIPE).
fn flush(stream: &TcpStream, wbuf: &mut Vec<u8>) -> io::Result<()> {
    let mut at = 0;
    while at < wbuf.len() {
        match (&*stream).write(&wbuf[at..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if at == wbuf.len() {
        wbuf.clear();
    } else {
        wbuf.drain(..at);
    }
    Ok(())
}

/// The control thread: one connection at a time, keep-alive, blocking. `POST
/// /groups/<any>` goes to every shard as one shared text frame; the answer waits for
/// every shard's count. Anything else is answered 404.
fn serve_control(
    listener: TcpListener,
    shards: Vec<(UnixStream, mpsc::Sender<Arc<[u8]>>)>,
    done: mpsc::Receiver<u64>,
) {
    // The listener was bound non-blocking like the public ones; this thread blocks in
    // accept (a non-blocking accept here would spin a core while no one connects).
    if let Err(e) = listener.set_nonblocking(false) {
        eprintln!("floor_gateway: control listener: {e}");
        return;
    }
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        'requests: loop {
            // One request: its head, then Content-Length bytes of body.
            let (head_len, is_broadcast, body_len) = loop {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(&buf) {
                    Ok(httparse::Status::Complete(n)) => {
                        let len = req
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                            .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                            .unwrap_or(0usize);
                        let groups = req.method == Some("POST")
                            && req.path.is_some_and(|p| p.starts_with("/groups/"));
                        break (n, groups, len);
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                    _ => break 'requests,
                }
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break 'requests,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            if body_len > MAX_MESSAGE {
                break;
            }
            while buf.len() < head_len + body_len {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break 'requests,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let answer = if is_broadcast {
                let mut frame = Vec::with_capacity(body_len + 10);
                push_text_frame(&mut frame, &buf[head_len..head_len + body_len]);
                let frame: Arc<[u8]> = frame.into();
                for (wake, frames) in &shards {
                    let _ = frames.send(frame.clone());
                    let _ = (&*wake).write(&[1]);
                }
                let queued: u64 = (0..shards.len()).filter_map(|_| done.recv().ok()).sum();
                let body = format!("{{\"queued\":{queued},\"full\":0}}");
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
            };
            buf.drain(..head_len + body_len);
            if stream.write_all(&answer).is_err() {
                break;
            }
        }
    }
}

fn family(addr: SocketAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn nonblocking_socket(addr: SocketAddr) -> nix::Result<std::os::fd::OwnedFd> {
    socket::socket(
        family(addr),
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
}

/// A non-blocking listener; with `reuse_port`, one of a SO_REUSEPORT group.
fn bind(addr: SocketAddr, reuse_port: bool) -> nix::Result<TcpListener> {
    let fd = nonblocking_socket(addr)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if reuse_port {
        socket::setsockopt(&fd, sockopt::ReusePort, &true)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    socket::listen(&fd, Backlog::MAXCONN)?;
    Ok(TcpListener::from(fd))
}

/// A non-blocking connect with TCP_NODELAY; it completes (or fails) later.
fn connect(addr: SocketAddr) -> nix::Result<TcpStream> {
    let fd = nonblocking_socket(addr)?;
    socket::setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    match socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)) {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(TcpStream::from(fd)),
        Err(e) => Err(e),
    }
}

/// `http://host:port/path/` → (address, Host header, path ending in `/`).
fn parse_api_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("must start with http://")?;
    let (authority, path) = rest
        .find('/')
        .map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    let target = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = target
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut base = path.to_string();
    if !base.ends_with('/') {
        base.push('/');
    }
    Ok((addr, authority.to_string(), base))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ignored = &cli.log_level;
    let (api_addr, host, base) = match parse_api_url(&cli.api_url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("floor_gateway: error: --api-url {}: {e}", cli.api_url);
            return ExitCode::from(2);
        }
    };
    let shards = cli.shards.max(1);
    let api_max_conns = cli.api_max_conns.max(1);
    // Everything is bound before any thread starts, so errors come out here.
    let mut listeners = Vec::new();
    for _ in 0..shards {
        match bind(cli.listen, true) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("floor_gateway: error: --listen {}: {e}", cli.listen);
                return ExitCode::from(2);
            }
        }
    }
    let control = match bind(cli.control_listen, false) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "floor_gateway: error: --control-listen {}: {e}",
                cli.control_listen
            );
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "floor_gateway: ws://{}/ -> http://{host}{base} ({api_addr}), {shards} shards; control {} broadcasts",
        cli.listen, cli.control_listen
    );
    let (done_tx, done_rx) = mpsc::channel();
    let mut to_shards = Vec::new();
    let mut threads = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let (wake_tx, wake) = match UnixStream::pair() {
            Ok(pair) if pair.1.set_nonblocking(true).is_ok() => pair,
            _ => {
                eprintln!("floor_gateway: error: cannot make a socket pair");
                return ExitCode::from(1);
            }
        };
        let (frames_tx, frames) = mpsc::channel();
        to_shards.push((wake_tx, frames_tx));
        let fanout = Fanout {
            wake,
            frames,
            done: done_tx.clone(),
        };
        let req_start = format!("POST {base}").into_bytes();
        let req_mid = format!(" HTTP/1.1\r\nHost: {host}\r\nContent-Length: ").into_bytes();
        let spawned = std::thread::Builder::new()
            .name(format!("floor-{i}"))
            .spawn(move || {
                let shard = Shard {
                    ep: Epoll::new()?,
                    listener,
                    fanout,
                    api_addr,
                    req_start,
                    req_mid,
                    clients: Slab::new(),
                    apis: Slab::new(),
                    idle: Vec::new(),
                    api_open: 0,
                    api_max: api_max_conns,
                    queued: std::collections::VecDeque::new(),
                    next_gen: 0,
                    accept_errors: 0,
                    scratch: vec![0; READ_CHUNK],
                    lost: 0,
                };
                shard.run()
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                eprintln!("floor_gateway: error: cannot start a thread: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let spawned = std::thread::Builder::new()
        .name("floor-control".into())
        .spawn(move || serve_control(control, to_shards, done_rx));
    if let Err(e) = spawned {
        eprintln!("floor_gateway: error: cannot start a thread: {e}");
        return ExitCode::from(1);
    }
    for t in threads {
        if let Ok(Err(e)) = t.join() {
            eprintln!("floor_gateway: error: {e}");
            return ExitCode::from(1);
        }
    }
    ExitCode::from(1)
}
