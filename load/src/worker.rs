//! One worker process: a glommio executor that ramps up its slice of the connections,
//! drives each one (open or closed loop), pushes through the control listener, checks
//! the broadcasts its clients get (worker 0 also posts them), and prints one report line
//! per second on stdout for the parent to fold.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future::or;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::sleep;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;

use crate::frame::{self, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use crate::report::{new_histogram, Second};
use crate::stream::Stream;
use crate::tls::TlsStream;
use crate::Plan;

/// Error kinds, counted separately and named in the summary.
#[derive(Clone, Copy)]
enum Err {
    Connect = 0,
    Handshake,
    BadAnswer,
    Closed,
    Timeout,
    PushFailed,
    PushMissing,
    /// A broadcast POST that failed or was not answered `200`, or never sent.
    BcastFailed,
    /// A member got broadcast n + 2K before n + K: one per skipped broadcast.
    BcastGap,
    /// A member got a broadcast older than one it already had (reorder or duplicate).
    BcastOrder,
    /// A member still waited for broadcasts at the end of the drain: one per broadcast.
    BcastMissing,
    /// A broadcast frame with the wrong size, content or group.
    BcastBad,
}
const KINDS: usize = 12;
const ERR_NAMES: [&str; KINDS] = [
    "connect",
    "handshake",
    "bad_answer",
    "closed",
    "timeout",
    "push_failed",
    "push_missing",
    "bcast_failed",
    "bcast_gap",
    "bcast_order",
    "bcast_missing",
    "bcast_bad",
];

/// Largest server frame accepted; answers are tiny.
const MAX_FRAME: usize = 64 * 1024;
/// Errors described on stderr per worker; the rest are only counted.
const LOGGED_ERRORS: u64 = 10;

/// Worker-wide state shared by the connection tasks of this executor (one thread).
struct State {
    plan: Plan,
    index: usize,
    t0: Instant,
    connections: Cell<u64>,
    sent: Cell<u64>,
    received: Cell<u64>,
    pushes_ok: Cell<u64>,
    pushes_received: Cell<u64>,
    errors: [Cell<u64>; KINDS],
    rtt: RefCell<Histogram<u64>>,
    push_rtt: RefCell<Histogram<u64>>,
    /// Broadcasts accepted by the control listener (worker 0 only) and frames received.
    broadcasts_ok: Cell<u64>,
    deliveries: Cell<u64>,
    /// Broadcast n → (deliveries to this worker's clients, first and last arrival, µs).
    arrivals: RefCell<Vec<(u64, u64, u64)>>,
    /// POST time → first byte of the frame at the client, per delivery.
    delivery_rtt: RefCell<Histogram<u64>>,
    /// Worker 0: each broadcast as posted (n, sent µs, status, queued, full).
    posts: RefCell<Vec<[u64; 5]>>,
    /// Local connection slot → connected now (for pushes).
    connected: RefCell<Vec<bool>>,
    live_tasks: Cell<u64>,
    pushers_live: Cell<u64>,
    /// Set once every pending answer and push has arrived (or the drain ran out).
    close_now: Cell<bool>,
}

impl State {
    fn error(&self, kind: Err, what: &dyn std::fmt::Display) {
        let c = &self.errors[kind as usize];
        c.set(c.get() + 1);
        let total: u64 = self.errors.iter().map(Cell::get).sum();
        if total <= LOGGED_ERRORS {
            eprintln!(
                "ws2api-load[{}]: {}: {what}",
                self.index, ERR_NAMES[kind as usize]
            );
        }
    }
    fn errors(&self) -> u64 {
        self.errors.iter().map(Cell::get).sum()
    }
    fn micros(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }
    fn bump(c: &Cell<u64>) {
        c.set(c.get() + 1);
    }
}

async fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        sleep(t - now).await;
    }
}

/// Runs worker `index` of the plan to the end; returns the process exit code.
pub fn run(plan: Plan, index: usize, t0: Instant) -> i32 {
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .name("ws2api-load")
        .ring_depth(4096)
        .io_memory(1 << 20)
        .make();
    let ex = match ex {
        Ok(ex) => ex,
        Err(e) => {
            eprintln!("ws2api-load[{index}]: cannot start an executor: {e}");
            return 1;
        }
    };
    ex.run(async move { main(plan, index, t0).await })
}

/// Global connection numbers of this worker: `index`, `index + W`, `index + 2W`, …
fn my_connections(plan: &Plan, index: usize) -> Vec<usize> {
    (index..plan.connections).step_by(plan.workers).collect()
}

async fn main(plan: Plan, index: usize, t0: Instant) -> i32 {
    let mine = my_connections(&plan, index);
    let state = Rc::new(State {
        index,
        t0,
        connections: Cell::new(0),
        sent: Cell::new(0),
        received: Cell::new(0),
        pushes_ok: Cell::new(0),
        pushes_received: Cell::new(0),
        errors: Default::default(),
        rtt: RefCell::new(new_histogram()),
        push_rtt: RefCell::new(new_histogram()),
        broadcasts_ok: Cell::new(0),
        deliveries: Cell::new(0),
        arrivals: RefCell::new(vec![(0, u64::MAX, 0); plan.broadcasts_total() as usize]),
        delivery_rtt: RefCell::new(new_histogram()),
        posts: RefCell::new(Vec::new()),
        connected: RefCell::new(vec![false; mine.len()]),
        live_tasks: Cell::new(0),
        pushers_live: Cell::new(0),
        close_now: Cell::new(false),
        plan,
    });
    let plan = &state.plan;
    let ramp_end = t0 + plan.ramp_time();
    let stop = ramp_end + plan.duration;
    let drain_end = stop + plan.drain;

    glommio::spawn_local(reporter(state.clone())).detach();

    if plan.pushes > 0 && !mine.is_empty() {
        let per_task = plan.pushes as f64 / (plan.workers * plan.push_conns) as f64;
        for p in 0..plan.push_conns {
            state.pushers_live.set(state.pushers_live.get() + 1);
            let st = state.clone();
            let ids: Vec<String> = mine.iter().map(|&g| st.plan.client_id(g)).collect();
            glommio::spawn_local(async move {
                pusher(&st, ids, p, per_task, ramp_end, stop).await;
                st.pushers_live.set(st.pushers_live.get() - 1);
            })
            .detach();
        }
    }

    if plan.broadcasts > 0.0 && index == 0 {
        state.pushers_live.set(state.pushers_live.get() + 1);
        let st = state.clone();
        glommio::spawn_local(async move {
            broadcaster(&st, drain_end).await;
            st.pushers_live.set(st.pushers_live.get() - 1);
        })
        .detach();
    }

    // Ramp: global connection g starts at t0 + g / rate.
    for (slot, &g) in mine.iter().enumerate() {
        let at = t0 + Duration::from_secs_f64(g as f64 / plan.ramp as f64);
        if at > Instant::now() + Duration::from_millis(2) {
            sleep_until(at).await;
        }
        if Instant::now() >= stop {
            break;
        }
        state.live_tasks.set(state.live_tasks.get() + 1);
        let st = state.clone();
        glommio::spawn_local(async move {
            connection(&st, slot, g, stop, drain_end).await;
            st.live_tasks.set(st.live_tasks.get() - 1);
        })
        .detach();
    }

    // Drain: wait for the last answers and pushes, then tell every connection to close.
    sleep_until(stop).await;
    loop {
        let pending_pushes = state.pushes_ok.get() > state.pushes_received.get();
        if Instant::now() >= drain_end || (state.pushers_live.get() == 0 && !pending_pushes) {
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }
    state.close_now.set(true);
    let hard_end = drain_end + Duration::from_secs(5);
    while state.live_tasks.get() > 0 || state.pushers_live.get() > 0 {
        if Instant::now() >= hard_end {
            state.error(
                Err::Timeout,
                &format!(
                    "{} connections did not close in time",
                    state.live_tasks.get()
                ),
            );
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }
    let missing = state
        .pushes_ok
        .get()
        .saturating_sub(state.pushes_received.get());
    for _ in 0..missing {
        state.error(
            Err::PushMissing,
            &"a pushed message never reached its client",
        );
    }
    finish(&state);
    if state.errors() > 0 {
        1
    } else {
        0
    }
}

/// Counters already reported, so each line carries the deltas of its second.
#[derive(Default)]
struct Reported {
    sent: u64,
    received: u64,
    pushes: u64,
    errors: u64,
    broadcasts: u64,
    deliveries: u64,
}

thread_local! {
    static REPORTED: RefCell<Reported> = RefCell::new(Reported::default());
    static NEXT_SECOND: Cell<u64> = const { Cell::new(1) };
}

fn emit(state: &State, second: u64) {
    REPORTED.with(|r| {
        let mut r = r.borrow_mut();
        let mut s = Second::empty(second);
        s.connections = state.connections.get();
        s.sent = state.sent.get() - r.sent;
        s.received = state.received.get() - r.received;
        s.pushes = state.pushes_ok.get() - r.pushes;
        s.errors = state.errors() - r.errors;
        s.broadcasts = state.broadcasts_ok.get() - r.broadcasts;
        s.deliveries = state.deliveries.get() - r.deliveries;
        s.rtt_us = std::mem::replace(&mut *state.rtt.borrow_mut(), new_histogram());
        *r = Reported {
            sent: state.sent.get(),
            received: state.received.get(),
            pushes: state.pushes_ok.get(),
            errors: state.errors(),
            broadcasts: state.broadcasts_ok.get(),
            deliveries: state.deliveries.get(),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", s.to_line());
        let _ = out.flush();
    });
}

/// One line per elapsed second, none skipped, until the worker finishes.
async fn reporter(state: Rc<State>) {
    loop {
        let next = NEXT_SECOND.with(Cell::get);
        sleep_until(state.t0 + Duration::from_secs(next)).await;
        if state.close_now.get() && state.live_tasks.get() == 0 {
            return;
        }
        while state.t0 + Duration::from_secs(NEXT_SECOND.with(Cell::get)) <= Instant::now() {
            let s = NEXT_SECOND.with(|n| n.replace(n.get() + 1));
            emit(&state, s);
        }
    }
}

/// `value:count,...` of a histogram, `-` if empty (the format of the `S` line).
fn pairs(h: &Histogram<u64>) -> String {
    let pairs: Vec<String> = h
        .iter_recorded()
        .map(|v| format!("{}:{}", v.value_iterated_to(), v.count_at_value()))
        .collect();
    if pairs.is_empty() {
        "-".into()
    } else {
        pairs.join(",")
    }
}

/// The last (partial) second, the broadcasts' arrivals and posts, and the error totals.
fn finish(state: &State) {
    let s = NEXT_SECOND.with(|n| n.replace(n.get() + 1));
    emit(state, s);
    {
        let mut out = std::io::stdout().lock();
        for (n, &(count, first, last)) in state.arrivals.borrow().iter().enumerate() {
            if count > 0 {
                let _ = writeln!(out, "B {n} {count} {first} {last}");
            }
        }
        for [n, sent, status, queued, full] in state.posts.borrow().iter() {
            let _ = writeln!(out, "P {n} {sent} {status} {queued} {full}");
        }
    }
    let mut line = String::from("E");
    for (name, c) in ERR_NAMES.iter().zip(&state.errors) {
        line.push_str(&format!(" {name}={}", c.get()));
    }
    line.push_str(&format!(
        " pushes_received={} push_hist={} delivery_hist={}",
        state.pushes_received.get(),
        pairs(&state.push_rtt.borrow()),
        pairs(&state.delivery_rtt.borrow())
    ));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A non-blocking socket bound to this connection's source address, connect started.
fn start_connect(plan: &Plan, g: usize) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    // Let connect() pick the port per 4-tuple, so one source address serves ~64k
    // connections per destination instead of sharing one port space across all.
    let one: nix::libc::c_int = 1;
    // SAFETY: a valid fd and a c_int option value of the right size.
    unsafe {
        nix::libc::setsockopt(
            socket.as_raw_fd(),
            nix::libc::IPPROTO_IP,
            nix::libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const _ as *const nix::libc::c_void,
            std::mem::size_of::<nix::libc::c_int>() as nix::libc::socklen_t,
        );
    }
    let src = plan.source_addr(g);
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())?;
    match socket.connect(&plan.target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    // SAFETY: the fd is a connecting TCP socket that the stream now owns alone.
    Ok(unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) })
}

/// Connect, upgrade, and hand back the stream plus any frame bytes that followed the head.
/// Over TLS the handshake runs inside this exchange: the request waits in rustls until
/// the session is up, a failed connect shows at the ClientHello's write (`Connect`), a
/// refused certificate at the reads (`Handshake`).
async fn handshake(
    plan: &Plan,
    g: usize,
    buf: &mut [u8],
) -> Result<(Stream, usize), (Err, String)> {
    let connect_error = |e: std::io::Error| (Err::Connect, format!("{}: {e}", plan.source_addr(g)));
    let tcp = start_connect(plan, g).map_err(connect_error)?;
    let mut stream = match &plan.tls {
        None => Stream::Plain(tcp),
        Some(tls) => Stream::Tls(Box::new(
            TlsStream::new(tcp, tls).map_err(|e| (Err::Handshake, e.to_string()))?,
        )),
    };
    let mut req = Vec::with_capacity(256);
    frame::upgrade_request(&mut req, &plan.host, &plan.client_id(g));
    stream.write_all(&req).await.map_err(connect_error)?;
    let mut len = 0;
    loop {
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|e| (Err::Handshake, e.to_string()))?;
        if n == 0 {
            return Err((Err::Handshake, "EOF before the upgrade answer".into()));
        }
        len += n;
        match frame::parse_upgrade_answer(&buf[..len]) {
            Ok(None) if len == buf.len() => {
                return Err((Err::Handshake, "upgrade answer too long".into()))
            }
            Ok(None) => continue,
            Ok(Some(head)) => {
                buf.copy_within(head..len, 0);
                return Ok((stream, len - head));
            }
            Err(e) => return Err((Err::Handshake, e)),
        }
    }
}

/// The text of message `seq` sent at `ts` µs after t0: an OCPP CALL.
fn message(out: &mut Vec<u8>, seq: u64, ts: u64) {
    let _ = write!(out, "[2,\"{seq}\",\"hello\",\"hello world {seq} {ts}\"]");
}

/// Checks an echo answer `{"echo":<message>}`; returns (seq, ts).
fn check_answer(payload: &[u8], scratch: &mut Vec<u8>) -> Option<(u64, u64)> {
    let inner = payload.strip_prefix(b"{\"echo\":")?.strip_suffix(b"}")?;
    let rest = inner.strip_prefix(b"[2,\"")?;
    let q = rest.iter().position(|&b| b == b'"')?;
    let seq: u64 = std::str::from_utf8(&rest[..q]).ok()?.parse().ok()?;
    let tail = inner.strip_suffix(b"\"]")?;
    let sp = tail.iter().rposition(|&b| b == b' ')?;
    let ts: u64 = std::str::from_utf8(&tail[sp + 1..]).ok()?.parse().ok()?;
    scratch.clear();
    message(scratch, seq, ts);
    (scratch.as_slice() == inner).then_some((seq, ts))
}

/// The payload of broadcast `n` sent at `ts` µs after t0: `B <n> <ts> ` padded with `x`
/// to `size` bytes.
fn broadcast_payload(out: &mut Vec<u8>, n: u64, ts: u64, size: usize) {
    let _ = write!(out, "B {n} {ts} ");
    out.resize(size, b'x');
}

/// Checks a broadcast of `size` bytes byte for byte; returns (n, ts).
fn check_broadcast(payload: &[u8], size: usize) -> Option<(u64, u64)> {
    if payload.len() != size {
        return None;
    }
    let mut fields = payload.strip_prefix(b"B ")?.splitn(3, |&b| b == b' ');
    let mut number = || -> Option<u64> { std::str::from_utf8(fields.next()?).ok()?.parse().ok() };
    let (n, ts) = (number()?, number()?);
    let pad = fields.next()?;
    pad.iter().all(|&b| b == b'x').then_some((n, ts))
}

/// Checks a push `[5,"p<n>","push","<slot> <ts>"]`; returns (slot, ts).
fn check_push(payload: &[u8]) -> Option<(usize, u64)> {
    let s = std::str::from_utf8(payload).ok()?;
    let body = s.strip_prefix("[5,\"p")?.strip_suffix("\"]")?;
    let (_, args) = body.split_once("\",\"push\",\"")?;
    let (slot, ts) = args.split_once(' ')?;
    Some((slot.parse().ok()?, ts.parse().ok()?))
}

enum Ev {
    Read(std::io::Result<usize>),
    Tick,
}

/// Connection `g` (local `slot`): handshake, then messages until `stop`, answers until
/// every one is in or `drain_end`, then a clean close.
async fn connection(state: &State, slot: usize, g: usize, stop: Instant, drain_end: Instant) {
    let plan = &state.plan;
    let mut buf = vec![0u8; 2048.max(2 * (plan.broadcast_size + 16))];
    let hs = or(async { Some(handshake(plan, g, &mut buf).await) }, async {
        sleep(plan.connect_timeout).await;
        None
    })
    .await;
    let (mut stream, mut len) = match hs {
        Some(Ok(ok)) => ok,
        Some(Err((kind, what))) => {
            return state.error(kind, &format!("{}: {what}", plan.client_id(g)))
        }
        None => {
            return state.error(
                Err::Handshake,
                &format!("{}: no 101 within the connect timeout", plan.client_id(g)),
            )
        }
    };
    state.connections.set(state.connections.get() + 1);
    state.connected.borrow_mut()[slot] = true;

    let mut out: Vec<u8> = Vec::with_capacity(128);
    let mut scratch: Vec<u8> = Vec::with_capacity(96);
    let mut next_seq: u64 = 0;
    let mut expected: u64 = 0;
    let interval = plan.interval;
    let sending = plan.closed_loop || !interval.is_zero();
    // Open loop: the first send at a spread offset within one interval.
    let mut next_send = if plan.closed_loop {
        Instant::now()
    } else {
        let spread = (g as u64).wrapping_mul(2_654_435_761) % 1000;
        Instant::now() + interval.mul_f64(spread as f64 / 1000.0)
    };
    let mut failed = false;
    // Broadcasts: this client's group gets n = group, group + K, …; the next one due.
    let (groups, total) = (plan.groups, plan.broadcasts_total());
    let group = plan.group_of(g as u64);
    let mut next_b = group;

    'run: loop {
        let now = Instant::now();
        // Send what is due.
        if sending && now < stop && (!plan.closed_loop || next_seq == expected) && now >= next_send
        {
            out.clear();
            let mut msg = std::mem::take(&mut scratch);
            msg.clear();
            message(&mut msg, next_seq, state.micros());
            frame::encode(&mut out, OP_TEXT, &msg, (g as u32) ^ (next_seq as u32));
            scratch = msg;
            if let Err(e) = stream.write_all(&out).await {
                state.error(Err::Closed, &format!("{}: write: {e}", plan.client_id(g)));
                failed = true;
                break 'run;
            }
            next_seq += 1;
            State::bump(&state.sent);
            if !plan.closed_loop {
                next_send += interval;
                if next_send < now {
                    next_send = now + interval;
                }
            }
            continue;
        }
        let outstanding = next_seq - expected;
        let broadcasts_done = next_b >= total;
        if now >= stop && outstanding == 0 && broadcasts_done && state.close_now.get() {
            break 'run;
        }
        if now >= drain_end {
            for _ in 0..total.saturating_sub(next_b).div_ceil(groups) {
                state.error(
                    Err::BcastMissing,
                    &format!(
                        "{}: broadcast #{next_b} and later never came",
                        plan.client_id(g)
                    ),
                );
            }
            if outstanding > 0 {
                for _ in 0..outstanding {
                    state.error(
                        Err::Timeout,
                        &format!("{}: no answer by the end of the drain", plan.client_id(g)),
                    );
                }
            }
            break 'run;
        }
        let wake = if !sending || now >= stop || plan.closed_loop {
            // Nothing to send on a timer: look again at the drain steps.
            if now >= stop {
                (now + Duration::from_millis(50)).min(drain_end)
            } else {
                stop
            }
        } else {
            next_send.min(stop)
        };
        let ev = or(
            async { Ev::Read(stream.read(&mut buf[len..]).await) },
            async {
                sleep_until(wake).await;
                Ev::Tick
            },
        )
        .await;
        let n = match ev {
            Ev::Tick => continue,
            Ev::Read(Ok(0)) => {
                state.error(
                    Err::Closed,
                    &format!("{}: EOF from the gateway", plan.client_id(g)),
                );
                failed = true;
                break 'run;
            }
            Ev::Read(Ok(n)) => n,
            Ev::Read(Err(e)) => {
                state.error(Err::Closed, &format!("{}: read: {e}", plan.client_id(g)));
                failed = true;
                break 'run;
            }
        };
        len += n;
        // Every complete frame in the buffer.
        let mut at = 0;
        loop {
            let (used, opcode, fin, payload) = match frame::parse(&buf[at..len], MAX_FRAME) {
                Ok(Some((used, f))) => (used, f.opcode, f.fin, f.payload),
                Ok(None) => break,
                Err(e) => {
                    state.error(Err::BadAnswer, &format!("{}: {e}", plan.client_id(g)));
                    failed = true;
                    break 'run;
                }
            };
            if !fin {
                state.error(
                    Err::BadAnswer,
                    &format!("{}: fragmented answer", plan.client_id(g)),
                );
                failed = true;
                break 'run;
            }
            match opcode {
                OP_TEXT if payload.starts_with(b"B ") => {
                    match check_broadcast(payload, plan.broadcast_size) {
                        Some((n, ts)) if n < total && n % groups == group => {
                            let at = state.micros();
                            State::bump(&state.deliveries);
                            let _ = state
                                .delivery_rtt
                                .borrow_mut()
                                .record(at.saturating_sub(ts).max(1));
                            let a = &mut state.arrivals.borrow_mut()[n as usize];
                            *a = (a.0 + 1, a.1.min(at), a.2.max(at));
                            if n < next_b {
                                state.error(
                                    Err::BcastOrder,
                                    &format!(
                                        "{}: broadcast #{n} after #{}",
                                        plan.client_id(g),
                                        next_b - groups
                                    ),
                                );
                            } else {
                                for missing in (next_b..n).step_by(groups as usize) {
                                    state.error(
                                        Err::BcastGap,
                                        &format!(
                                            "{}: no broadcast #{missing}, got #{n}",
                                            plan.client_id(g)
                                        ),
                                    );
                                }
                                next_b = n + groups;
                            }
                        }
                        _ => {
                            let head = &payload[..payload.len().min(48)];
                            state.error(
                                Err::BcastBad,
                                &format!(
                                    "{}: bad broadcast of {} bytes {:?}…",
                                    plan.client_id(g),
                                    payload.len(),
                                    String::from_utf8_lossy(head)
                                ),
                            );
                        }
                    }
                }
                OP_TEXT | OP_BINARY if payload.starts_with(b"[5,") => match check_push(payload) {
                    Some((s, ts)) if s == slot => {
                        State::bump(&state.pushes_received);
                        let _ = state
                            .push_rtt
                            .borrow_mut()
                            .record(state.micros().saturating_sub(ts).max(1));
                    }
                    _ => {
                        let what = String::from_utf8_lossy(payload).into_owned();
                        state.error(
                            Err::BadAnswer,
                            &format!("{}: wrong push {what:?}", plan.client_id(g)),
                        );
                    }
                },
                OP_TEXT => match check_answer(payload, &mut scratch) {
                    Some((seq, ts)) if seq > expected && seq < next_seq => {
                        // Answers to #expected..#seq never came: count each once, resync.
                        for missing in expected..seq {
                            state.error(
                                Err::BadAnswer,
                                &format!(
                                    "{}: no answer to #{missing}, got #{seq}",
                                    plan.client_id(g)
                                ),
                            );
                        }
                        expected = seq + 1;
                        State::bump(&state.received);
                        let _ = state
                            .rtt
                            .borrow_mut()
                            .record(state.micros().saturating_sub(ts).max(1));
                    }
                    Some((seq, ts)) if seq == expected => {
                        expected += 1;
                        State::bump(&state.received);
                        let _ = state
                            .rtt
                            .borrow_mut()
                            .record(state.micros().saturating_sub(ts).max(1));
                    }
                    _ => {
                        let what = String::from_utf8_lossy(payload).into_owned();
                        state.error(
                            Err::BadAnswer,
                            &format!(
                                "{}: expected echo of #{expected}, got {what:?}",
                                plan.client_id(g)
                            ),
                        );
                    }
                },
                OP_PING => {
                    out.clear();
                    frame::encode(&mut out, OP_PONG, payload, g as u32);
                    if stream.write_all(&out).await.is_err() {
                        failed = true;
                        break 'run;
                    }
                }
                OP_PONG => {}
                OP_CLOSE => {
                    state.error(
                        Err::Closed,
                        &format!(
                            "{}: closed by the gateway ({:?})",
                            plan.client_id(g),
                            String::from_utf8_lossy(payload)
                        ),
                    );
                    failed = true;
                    break 'run;
                }
                op => {
                    state.error(
                        Err::BadAnswer,
                        &format!("{}: opcode {op}", plan.client_id(g)),
                    );
                }
            }
            at += used;
        }
        buf.copy_within(at..len, 0);
        len -= at;
        if len == buf.len() {
            state.error(
                Err::BadAnswer,
                &format!("{}: frame larger than the read buffer", plan.client_id(g)),
            );
            failed = true;
            break 'run;
        }
    }
    state.connected.borrow_mut()[slot] = false;
    state.connections.set(state.connections.get() - 1);
    if failed {
        return;
    }
    // Clean close: our close frame, then the gateway's close (or EOF), bounded.
    out.clear();
    frame::encode(&mut out, OP_CLOSE, &1000u16.to_be_bytes(), g as u32);
    if stream.write_all(&out).await.is_err() {
        return;
    }
    let _ = or(
        async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if buf[0] & 0x0f == OP_CLOSE {
                            break;
                        }
                    }
                }
            }
            let _ = stream.close().await;
        },
        sleep(Duration::from_secs(2)),
    )
    .await;
}

/// Pushes through the control listener at `rate` per second, to connected clients of
/// this worker in turn, over one keep-alive connection.
async fn pusher(
    state: &State,
    ids: Vec<String>,
    task: usize,
    rate: f64,
    start: Instant,
    stop: Instant,
) {
    let plan = &state.plan;
    sleep_until(start).await;
    let mut stream = match TcpStream::connect(plan.control).await {
        Ok(s) => s,
        Err(e) => return state.error(Err::PushFailed, &format!("control {}: {e}", plan.control)),
    };
    let _ = stream.set_nodelay(true);
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut next = start + period.mul_f64(task as f64 / plan.push_conns as f64);
    let mut cursor = task * 7919 % ids.len();
    let mut n: u64 = 0;
    let mut req: Vec<u8> = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    while next < stop {
        sleep_until(next).await;
        next += period;
        // The next connected client of this worker.
        let slot = {
            let connected = state.connected.borrow();
            let mut found = None;
            for _ in 0..connected.len() {
                cursor = (cursor + 1) % connected.len();
                if connected[cursor] {
                    found = Some(cursor);
                    break;
                }
            }
            found
        };
        let Some(slot) = slot else { continue };
        n += 1;
        let body = format!("[5,\"p{task}.{n}\",\"push\",\"{slot} {}\"]", state.micros());
        req.clear();
        let _ = write!(
            req,
            "POST {}{} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            plan.control_path,
            ids[slot],
            plan.control,
            body.len()
        );
        if let Err(e) = stream.write_all(&req).await {
            return state.error(Err::PushFailed, &format!("control write: {e}"));
        }
        let status = match read_answer(&mut stream, &mut buf).await {
            Ok((status, _)) => status,
            Err(e) => return state.error(Err::PushFailed, &e),
        };
        if status == 200 {
            State::bump(&state.pushes_ok);
        } else {
            state.error(
                Err::PushFailed,
                &format!("POST {} answered {status}", ids[slot]),
            );
        }
    }
}

/// Reads one HTTP answer (head, then Content-Length bytes) into `buf`, within 10 s;
/// returns its status and body.
async fn read_answer<'b>(
    stream: &mut TcpStream,
    buf: &'b mut [u8],
) -> Result<(u16, &'b [u8]), String> {
    let mut len = 0;
    loop {
        let r = or(async { Some(stream.read(&mut buf[len..]).await) }, async {
            sleep(Duration::from_secs(10)).await;
            None
        })
        .await;
        match r {
            Some(Ok(0)) | None => return Err("control closed or timed out".into()),
            Some(Err(e)) => return Err(format!("control read: {e}")),
            Some(Ok(k)) => len += k,
        }
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(head)) => {
                let cl = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    })
                    .unwrap_or(0);
                if len >= head + cl {
                    let status = resp.code.unwrap_or(0);
                    return Ok((status, &buf[head..head + cl]));
                }
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(format!("control answer: {e}")),
        }
        if len == buf.len() {
            return Err("control answer too long".into());
        }
    }
}

/// `N` of `"name":N` in a small JSON answer such as `{"queued":9500,"full":0}`.
fn json_count(body: &[u8], name: &str) -> u64 {
    let key = format!("\"{name}\":");
    let Some(at) = body.windows(key.len()).position(|w| w == key.as_bytes()) else {
        return 0;
    };
    let value = &body[at + key.len()..];
    let value = &value[value.iter().take_while(|b| **b == b' ').count()..];
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&value[..digits])
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

/// Worker 0: posts the plan's broadcasts on schedule, one after another on one
/// keep-alive control connection (the next only after the previous one's answer, so
/// that they are ordered), to ws2api's `POST /groups/<g>` or Pushpin's `POST /publish/`.
/// Pushpin's publish listener closes the connection after each answer, so there every
/// broadcast gets a connection of its own (`Connection: close`), opened before its send
/// time is taken.
async fn broadcaster(state: &State, drain_end: Instant) {
    let plan = &state.plan;
    let total = plan.broadcasts_total();
    sleep_until(state.t0 + plan.ramp_time()).await;
    let mut stream = match TcpStream::connect(plan.control).await {
        Ok(s) => s,
        Err(e) => {
            for _ in 0..total {
                state.error(Err::BcastFailed, &format!("control {}: {e}", plan.control));
            }
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut payload: Vec<u8> = Vec::with_capacity(plan.broadcast_size);
    let mut req: Vec<u8> = Vec::with_capacity(plan.broadcast_size + 256);
    let mut buf = vec![0u8; 4096];
    for n in 0..total {
        sleep_until(state.t0 + plan.broadcast_at(n)).await;
        if Instant::now() >= drain_end {
            for _ in n..total {
                state.error(
                    Err::BcastFailed,
                    &"broadcast not sent by the end of the drain",
                );
            }
            return;
        }
        let group = plan.group_name(plan.group_of(n));
        if plan.publish_pushpin && n > 0 {
            stream = match TcpStream::connect(plan.control).await {
                Ok(s) => s,
                Err(e) => {
                    for _ in n..total {
                        state.error(Err::BcastFailed, &format!("control {}: {e}", plan.control));
                    }
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
        }
        let sent = state.micros();
        payload.clear();
        broadcast_payload(&mut payload, n, sent, plan.broadcast_size);
        let payload = std::str::from_utf8(&payload).expect("ASCII");
        req.clear();
        if plan.publish_pushpin {
            // The payload is digits, spaces and `x`: nothing to escape in JSON.
            let body = format!(
                "{{\"items\":[{{\"channel\":\"{group}\",\"formats\":{{\"ws-message\":{{\"content\":\"{payload}\"}}}}}}]}}"
            );
            let _ = write!(
                req,
                "POST {}publish/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                plan.control_path,
                plan.control,
                body.len()
            );
        } else {
            let _ = write!(
                req,
                "POST {}groups/{group} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{payload}",
                plan.control_path,
                plan.control,
                payload.len()
            );
        }
        let answer = match stream.write_all(&req).await {
            Ok(()) => read_answer(&mut stream, &mut buf).await,
            Err(e) => Err(format!("control write: {e}")),
        };
        let (status, queued, full) = match answer {
            Ok((status, body)) => (status, json_count(body, "queued"), json_count(body, "full")),
            Err(e) => {
                for _ in n..total {
                    state.error(Err::BcastFailed, &format!("broadcast #{n}: {e}"));
                }
                return;
            }
        };
        state
            .posts
            .borrow_mut()
            .push([n, sent, u64::from(status), queued, full]);
        if status == 200 {
            State::bump(&state.broadcasts_ok);
        } else {
            state.error(
                Err::BcastFailed,
                &format!("broadcast #{n} to {group} answered {status}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_pushes_are_checked_byte_for_byte() {
        let mut m = Vec::new();
        message(&mut m, 7, 1234);
        assert_eq!(m, b"[2,\"7\",\"hello\",\"hello world 7 1234\"]");
        let mut answer = b"{\"echo\":".to_vec();
        answer.extend_from_slice(&m);
        answer.push(b'}');
        let mut scratch = Vec::new();
        assert_eq!(check_answer(&answer, &mut scratch), Some((7, 1234)));
        answer[20] = b'X';
        assert_eq!(check_answer(&answer, &mut scratch), None);
        assert_eq!(
            check_push(b"[5,\"p0.3\",\"push\",\"12 99\"]"),
            Some((12, 99))
        );
    }

    #[test]
    fn broadcasts_are_checked_byte_for_byte() {
        let mut b = Vec::new();
        broadcast_payload(&mut b, 42, 123456, 64);
        assert_eq!(b.len(), 64);
        assert!(b.starts_with(b"B 42 123456 xxx"));
        assert_eq!(check_broadcast(&b, 64), Some((42, 123456)));
        assert_eq!(check_broadcast(&b, 65), None);
        b[40] = b'y';
        assert_eq!(check_broadcast(&b, 64), None);
        assert_eq!(json_count(b"{\"queued\":9500,\"full\":3}", "queued"), 9500);
        assert_eq!(json_count(b"{\"queued\":9500,\"full\":3}", "full"), 3);
        assert_eq!(json_count(b"{\"queued\": 12, \"full\": 0}\n", "queued"), 12);
        assert_eq!(json_count(b"Published\n", "queued"), 0);
    }
}
