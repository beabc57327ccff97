//! The life of one WebSocket connection after its 101: read frames, hand messages
//! on, write what others queued, and end with the reason the API server will hear.
//!
//! A [`Conn`] is the part others may touch (the shard's table holds an `Rc` of it):
//! they queue frames (answers, pushes) or ask it to close, and wake its task. The
//! task ([`run`]) owns the socket. It reads into the shard's read buffer, borrowed
//! only inside one `poll` (glommio reads are a plain `recv`, so the kernel never holds
//! the buffer), so an idle connection keeps no read buffer of its own; the decoder
//! keeps only an incomplete frame. While `max_inflight` messages wait for the API
//! server, the socket is not read at all: TCP backpressure reaches the client.
//!
//! A frame queued on an empty queue is written at once by whoever queues it (a
//! broadcast's fan-out, a push, an answer): one non-blocking `send` on the task's
//! socket, so that a delivery the kernel takes whole costs no wakeup of the task and
//! keeps nothing queued. Only what the socket does not take now waits in the queue for
//! the task, which writes it in order when the socket has room.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use nix::sys::socket::MsgFlags;

use super::budget::Budget;
use super::codec::{self, WsDecoder, WsError, WsEvent};
use super::outbox::Outbox;
use crate::client_id::ClientId;
use crate::edge::{Bucket, Rate};
use crate::tls::TlsLink;

/// Room a TLS read needs behind a record the client has begun.
const MIN_TLS_READ: usize = 16 * 1024;

/// Sealed bytes of direct writes over TLS are made here, one buffer per thread;
/// one larger than this after a big message is given back.
const SEALED_KEEP: usize = 64 * 1024;

thread_local! {
    static SEALED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// How long a closing connection waits for the peer's close frame or EOF.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A complete message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(Vec<u8>),
    /// A binary message.
    Binary(Vec<u8>),
}

/// How a connection ended: the code and reason the API server's Disconnect carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The close code (the client's, ours, or 1006 when the socket just went away).
    pub code: u16,
    /// The client's close reason, or the cause (`EOF`, `replaced`, `shutdown`, ...).
    pub reason: String,
}

impl Ended {
    fn new(code: u16, reason: impl Into<String>) -> Ended {
        Ended {
            code,
            reason: reason.into(),
        }
    }
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The connection is closing or gone.
    Closed,
    /// The outbound queue is over its bound.
    Full,
    /// The shard's share of `--max-outbound-total` has no room for it.
    OverBudget,
}

/// The shared part of a connection: what the shard and its tasks may touch.
#[derive(Debug)]
pub struct Conn {
    /// The client's name.
    pub client_id: ClientId,
    /// Unique per accepted connection; sent as `X-Connection-Id`.
    pub conn_id: Box<str>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The client came over TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
    /// When the 101 was sent.
    pub connected_at: SystemTime,
    out: RefCell<Outbox>,
    /// The socket while [`run`] owns it and the connection is not closing: what a frame
    /// queued on an empty queue is written to at once ([`Conn::write_now`]).
    fd: Cell<Option<RawFd>>,
    /// The TLS session when the gateway terminates TLS: every frame is sealed through
    /// it on its way to the socket, and every read opened.
    link: Option<Box<RefCell<TlsLink>>>,
    waker: RefCell<Option<Waker>>,
    close: RefCell<Option<Ended>>,
    closing: Cell<bool>,
    inflight: Cell<usize>,
    idle_ticks: Cell<u8>,
    /// A frame was refused for a full queue, and the queue has not emptied since.
    refused: Cell<bool>,
    /// Bytes written to the socket so far (wrapping), to tell a slow reader from none.
    written: Cell<u64>,
    /// `written` at the previous tick while `refused`; the next tick checks for progress.
    stall_mark: Cell<Option<u64>>,
    messages_in: Cell<u64>,
    messages_out: Cell<u64>,
    finished: Cell<bool>,
    finish_waiters: RefCell<Vec<Waker>>,
}

impl Conn {
    /// A new connection from `(peer, tls)` whose first outbound bytes are `first` (the
    /// 101 answer); what it queues counts in `budget`.
    pub fn new(
        client_id: ClientId,
        conn_id: Box<str>,
        (peer, tls): (SocketAddr, bool),
        first: Vec<u8>,
        budget: Rc<Budget>,
    ) -> Conn {
        Conn {
            client_id,
            conn_id,
            peer,
            tls,
            connected_at: SystemTime::now(),
            out: RefCell::new(Outbox::new(first, budget)),
            fd: Cell::new(None),
            link: None,
            waker: RefCell::new(None),
            close: RefCell::new(None),
            closing: Cell::new(false),
            inflight: Cell::new(0),
            idle_ticks: Cell::new(0),
            refused: Cell::new(false),
            written: Cell::new(0),
            stall_mark: Cell::new(None),
            messages_in: Cell::new(0),
            messages_out: Cell::new(0),
            finished: Cell::new(false),
            finish_waiters: RefCell::new(Vec::new()),
        }
    }

    /// The same connection, speaking TLS through `link` (its handshake complete).
    pub fn with_tls(self, link: Box<RefCell<TlsLink>>) -> Conn {
        Conn {
            link: Some(link),
            ..self
        }
    }

    /// Queues one message (text or binary frame) to the client, unless the bytes
    /// already queued plus this one would pass `limit` (`--max-outbound-bytes`); an
    /// empty queue takes any one message. An answer to the client's own message: the
    /// outbound budget does not refuse it (`max_inflight` bounds those already).
    pub fn send(&self, payload: &[u8], binary: bool, limit: usize) -> Result<(), PushError> {
        self.queue_message(payload, binary, limit, false)
    }

    /// [`Conn::send`] for a push: also refused while the shard's outbound budget has
    /// no room for it (a message the socket takes at once is never queued, so it
    /// needs none).
    pub fn push(&self, payload: &[u8], binary: bool, limit: usize) -> Result<(), PushError> {
        self.queue_message(payload, binary, limit, true)
    }

    fn queue_message(
        &self,
        payload: &[u8],
        binary: bool,
        limit: usize,
        budgeted: bool,
    ) -> Result<(), PushError> {
        if self.closing.get() {
            return Err(PushError::Closed);
        }
        let frame_len = codec::frame_len(payload.len());
        let was_empty = {
            let mut out = self.out.borrow_mut();
            let was_empty = out.is_empty();
            // An empty queue takes any one message (its size is bounded elsewhere).
            if !was_empty && out.len().saturating_add(frame_len) > limit {
                self.refused.set(true);
                return Err(PushError::Full);
            }
            if budgeted && !out.budget().has_room(frame_len) {
                if !was_empty {
                    return Err(PushError::OverBudget);
                }
                // Nothing queued: it may still go out at once, needing no budget.
                let mut frame = Vec::with_capacity(frame_len);
                encode_message(&mut frame, payload, binary);
                let at = self.fd.get().map_or(0, |fd| self.write_some(fd, &frame));
                if at < frame.len() {
                    // Part of a frame cannot be taken back: what the socket took stays
                    // taken, and the rest must follow it.
                    if at == 0 {
                        return Err(PushError::OverBudget);
                    }
                    out.push_own(|buf| buf.extend_from_slice(&frame[at..]));
                }
                drop(out);
                self.messages_out.set(self.messages_out.get() + 1);
                if at < frame.len() || !self.sent_all() {
                    self.wake();
                }
                return Ok(());
            }
            out.push_own(|frame| encode_message(frame, payload, binary));
            was_empty
        };
        self.messages_out.set(self.messages_out.get() + 1);
        self.queued(was_empty);
        Ok(())
    }

    /// Queues a frame already encoded and shared with other connections (a broadcast),
    /// under the same bound as [`Conn::send`]: the frame's length counts against `limit`.
    pub fn send_shared(&self, frame: &Rc<[u8]>, limit: usize) -> Result<(), PushError> {
        if self.closing.get() {
            return Err(PushError::Closed);
        }
        {
            let mut out = self.out.borrow_mut();
            if out.is_empty() {
                // Straight from the shared frame: no queue entry, no reference taken,
                // when the socket takes it whole (the common case of a broadcast).
                let at = self.fd.get().map_or(0, |fd| self.write_some(fd, frame));
                if at == 0 && !out.budget().has_room(frame.len()) {
                    return Err(PushError::OverBudget);
                }
                self.messages_out.set(self.messages_out.get() + 1);
                if at == frame.len() {
                    drop(out);
                    if !self.sent_all() {
                        self.wake();
                    }
                    return Ok(());
                }
                // The rest of a frame begun must follow, budget or not.
                out.push_shared_from(frame.clone(), at);
            } else {
                if out.len().saturating_add(frame.len()) > limit {
                    self.refused.set(true);
                    return Err(PushError::Full);
                }
                if !out.budget().has_room(frame.len()) {
                    return Err(PushError::OverBudget);
                }
                out.push_shared(frame.clone());
                self.messages_out.set(self.messages_out.get() + 1);
            }
        }
        self.wake();
        Ok(())
    }

    /// A frame was queued: written now if it is the only thing queued and the socket
    /// takes it whole, else left to the task, which is woken. Frames queued behind
    /// others always wait for the task, so nothing overtakes what is queued.
    fn queued(&self, was_empty: bool) {
        if !(was_empty && self.write_now()) {
            self.wake();
        }
    }

    /// Writes what is queued with non-blocking `send`s on the task's socket, until the
    /// queue is empty or the socket takes no more; true if the queue is empty. An error
    /// leaves the bytes queued: the task's own write meets it and ends the connection.
    fn write_now(&self) -> bool {
        let Some(fd) = self.fd.get() else {
            return false;
        };
        let mut out = self.out.borrow_mut();
        while !out.is_empty() {
            let front = out.front();
            let n = self.write_some(fd, front);
            let all = n == front.len();
            out.consume(n);
            if !all {
                break;
            }
        }
        out.is_empty() && self.sent_all()
    }

    /// One non-blocking write of `bytes` on `fd`; how many it took (0 on any error).
    /// Over TLS it takes all or nothing: `bytes` are sealed whole once what was sealed
    /// before has gone, and what of their records the socket does not take waits in
    /// the link ([`Conn::sent_all`] is false then).
    fn write_some(&self, fd: RawFd, bytes: &[u8]) -> usize {
        let Some(link) = &self.link else {
            return self.send_raw(fd, bytes);
        };
        let mut link = link.borrow_mut();
        if !link.unsent.is_empty() {
            let n = self.send_raw(fd, &link.unsent);
            link.unsent.drain(..n);
            if !link.unsent.is_empty() {
                return 0;
            }
        }
        SEALED.with(|sealed| {
            let mut sealed = sealed.borrow_mut();
            sealed.clear();
            if link.seal(bytes, &mut sealed).is_err() {
                // Left queued: the task's own write meets the error and ends the connection.
                return 0;
            }
            let n = self.send_raw(fd, &sealed);
            link.unsent.extend_from_slice(&sealed[n..]);
            if sealed.capacity() > SEALED_KEEP {
                *sealed = Vec::new();
            }
            bytes.len()
        })
    }

    /// One non-blocking `send` on `fd`; how many bytes it took (0 on any error).
    fn send_raw(&self, fd: RawFd, bytes: &[u8]) -> usize {
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        let n = nix::sys::socket::send(fd, bytes, flags).unwrap_or(0);
        self.written.set(self.written.get().wrapping_add(n as u64));
        n
    }

    /// False while sealed records wait in the TLS link for the socket.
    fn sent_all(&self) -> bool {
        self.link
            .as_ref()
            .is_none_or(|link| link.borrow().unsent.is_empty())
    }

    /// Everything still to go to the client, as the bytes for the socket: the queue,
    /// sealed over TLS behind what was sealed before, and then `close_notify`.
    fn take_for_close(&self) -> Vec<u8> {
        let queued = self.out.borrow_mut().take_all();
        let Some(link) = &self.link else {
            return queued;
        };
        let mut link = link.borrow_mut();
        let mut bytes = std::mem::take(&mut link.unsent);
        if !queued.is_empty() {
            let _ = link.seal(&queued, &mut bytes);
        }
        link.close_notify(&mut bytes);
        bytes
    }

    /// Answers a ping. A client whose queue is already at `limit` gets no pong for
    /// this ping (RFC 6455 5.5.3 lets a pong answer only the latest ping) and counts as
    /// refused, so a client that pings but never reads cannot grow its queue with
    /// pongs, and the stall check closes it.
    fn pong(&self, payload: &[u8], limit: usize) {
        let mut out = self.out.borrow_mut();
        if out.len() >= limit {
            self.refused.set(true);
        } else {
            out.push_own(|buf| codec::encode_pong(buf, payload));
        }
    }

    /// Asks the connection to close with `code` and `reason` (sent to the client and
    /// to the API server). The first request wins.
    pub fn close(&self, code: u16, reason: &str) {
        if self.closing.replace(true) {
            return;
        }
        self.fd.set(None);
        *self.close.borrow_mut() = Some(Ended::new(code, reason));
        self.wake();
    }

    /// `X-Forwarded-Proto` for this connection's requests.
    pub fn proto(&self) -> &'static str {
        crate::transport::proto(self.tls)
    }

    /// True once a close was asked for or the connection is gone.
    pub fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// Bytes queued for the client and not yet written.
    /// Over TLS this includes records sealed and not yet taken by the socket.
    pub fn queued_bytes(&self) -> usize {
        let sealed = self
            .link
            .as_ref()
            .map_or(0, |link| link.borrow().unsent.len());
        self.out.borrow().len() + sealed
    }

    /// Messages received from the client.
    pub fn messages_in(&self) -> u64 {
        self.messages_in.get()
    }

    /// Messages sent to the client.
    pub fn messages_out(&self) -> u64 {
        self.messages_out.get()
    }

    /// A message handed on by [`run`] has been dealt with (its [`InFlight`] dropped):
    /// the connection may read again.
    fn message_done(&self) {
        self.inflight.set(self.inflight.get().saturating_sub(1));
        self.wake();
    }

    /// One liveness tick (the shard's sweep calls it every `--ping-interval`, or every
    /// 30 s without pings). With `ping`, a connection that sent nothing for a whole
    /// interval gets a ping, and one that then stays silent for another interval is
    /// closed with cause `timeout` (a connection that speaks is never pinged); a connection waiting on the API server is not read, so it counts as
    /// alive. Once a frame was refused for a full queue, every tick checks that the
    /// client took some of its queue since the previous tick; one that took nothing
    /// for a whole interval reads nothing, and is closed with 1008.
    pub fn liveness_tick(&self, ping: bool) -> Liveness {
        if self.closing.get() {
            return Liveness::Alive;
        }
        if self.out.borrow().is_empty() && self.sent_all() {
            // Everything went out: whatever was refused before is forgiven.
            self.refused.set(false);
            self.stall_mark.set(None);
        } else if self.refused.get() {
            let written = self.written.get();
            if self.stall_mark.replace(Some(written)) == Some(written) {
                self.close(1008, "send queue full");
                return Liveness::Stalled;
            }
        }
        if !ping {
            return Liveness::Alive;
        }
        if self.inflight.get() > 0 {
            self.idle_ticks.set(0);
            return Liveness::Alive;
        }
        // `idle_ticks` counts the ticks since the peer was last heard from (a read
        // resets it): 0 → it spoke during the last interval; 1 → silent for a whole
        // interval, so ping it; 2 → silent through the ping's interval too.
        let ticks = self.idle_ticks.get().saturating_add(1);
        self.idle_ticks.set(ticks);
        match ticks {
            1 => Liveness::Alive,
            2 => {
                self.out
                    .borrow_mut()
                    .push_own(|buf| codec::encode_ping(buf, b""));
                self.wake();
                Liveness::Pinged
            }
            _ => {
                self.close(1006, "timeout");
                Liveness::TimedOut
            }
        }
    }

    /// Marks the connection finished (its Disconnect sent) and wakes whoever waits in
    /// [`Conn::finished`].
    pub fn finish(&self) {
        self.closing.set(true);
        self.finished.set(true);
        for waker in self.finish_waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Resolves once [`Conn::finish`] was called.
    pub fn finished(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.finished.get() {
                Poll::Ready(())
            } else {
                self.finish_waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    fn wake(&self) {
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    fn park(&self, cx: &Context<'_>) {
        let mut slot = self.waker.borrow_mut();
        match slot.as_ref() {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
    }
}

/// One message handed on by [`run`] and not yet dealt with. The connection reads at
/// most `max_inflight` messages ahead of these; dropping one (the API server answered,
/// the request failed, or the task carrying it is gone) lets it read again, so the count
/// cannot be forgotten.
pub struct InFlight {
    conn: Rc<Conn>,
}

impl InFlight {
    fn new(conn: &Rc<Conn>) -> InFlight {
        conn.inflight.set(conn.inflight.get() + 1);
        InFlight { conn: conn.clone() }
    }

    /// The connection the message came from.
    pub fn conn(&self) -> &Rc<Conn> {
        &self.conn
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn.message_done();
    }
}

/// What a liveness tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The peer was heard from (or is waiting on the API server).
    Alive,
    /// Silent for one interval: pinged.
    Pinged,
    /// Silent for two intervals: closing with cause `timeout`.
    TimedOut,
    /// Its outbound queue stayed full: closing with 1008.
    Stalled,
}

/// What one wakeup of the connection produced.
enum Step {
    /// Bytes were decoded into events (possibly none).
    Events,
    /// The decoder rejected the input; events decoded before the error are kept.
    Violation(WsError),
    /// The peer closed the TCP stream.
    Eof,
    /// The socket failed.
    Failed(io::Error),
    /// Someone asked this connection to close.
    CloseRequested(Ended),
}

/// Limits of the loop.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages handed on whose [`InFlight`] is not dropped yet before reading stops.
    pub max_inflight: usize,
    /// `--max-outbound-bytes`: also bounds the pongs a client's pings queue.
    pub max_outbound: usize,
    /// `--max-message-rate`: messages handed on per second (burst as many); beyond
    /// it the loop neither hands on nor reads until the rate allows.
    pub message_rate: Option<Rate>,
}

/// What every connection loop of a shard shares (one per shard, so that no loop
/// keeps a copy): the read buffer, borrowed only inside one poll; the limits; and
/// the count of messages that waited for the rate.
#[derive(Debug)]
pub struct Shared {
    /// The read buffer every connection of the shard reads into.
    pub read_buf: RefCell<Vec<u8>>,
    /// The loop's limits.
    pub limits: Limits,
    /// Times a message had to wait for `limits.message_rate`.
    pub throttled: Cell<u64>,
}

/// Runs the connection until it ends; returns how it ended. The closing steps are
/// boxed so that their state is not part of every idle connection's future. `initial` are bytes read
/// before the 101 (the client may send frames right behind its request). Every
/// complete message is passed to `on_message`, in order, at most
/// `limits.max_inflight` at a time.
pub async fn run(
    stream: &mut TcpStream,
    conn: &Rc<Conn>,
    mut decoder: WsDecoder,
    initial: &[u8],
    shared: &Shared,
    on_message: &dyn Fn(InFlight, Message),
) -> Ended {
    let limits = &shared.limits;
    conn.fd.set(Some(stream.as_raw_fd()));
    let _detach = Detach(conn);
    let mut events = Vec::new();
    let mut queue: VecDeque<Message> = VecDeque::new();
    // The rate's bucket, and while a message waits for it, the timer that ends the wait.
    let mut bucket = limits.message_rate.map(|_| Bucket::new(Instant::now()));
    let mut throttle: Option<Timer> = None;
    let mut violation = if initial.is_empty() {
        None
    } else {
        decoder.decode(initial, &mut events).err()
    };
    loop {
        for event in events.drain(..) {
            match event {
                WsEvent::Text(body) => queue.push_back(Message::Text(body)),
                WsEvent::Binary(body) => queue.push_back(Message::Binary(body)),
                WsEvent::Ping(payload) => conn.pong(&payload, limits.max_outbound),
                WsEvent::Pong(_) => {}
                WsEvent::Close(frame) => {
                    conn.closing.set(true);
                    let ended = match frame {
                        Some((code, reason)) => {
                            conn.out
                                .borrow_mut()
                                .push_own(|buf| codec::encode_close(buf, code, &reason));
                            Ended::new(code, reason)
                        }
                        None => {
                            // No status in the client's close: echo an empty close frame.
                            conn.out
                                .borrow_mut()
                                .push_own(|buf| buf.extend_from_slice(&[0x88, 0x00]));
                            Ended::new(1005, "")
                        }
                    };
                    Box::pin(finish_close(stream, conn, false)).await;
                    return ended;
                }
            }
        }
        while conn.inflight.get() < limits.max_inflight && throttle.is_none() {
            if queue.is_empty() {
                break;
            }
            if let (Some(rate), Some(bucket)) = (limits.message_rate, bucket.as_mut()) {
                if let Err(wait) = bucket.take(rate, Instant::now()) {
                    shared.throttled.set(shared.throttled.get() + 1);
                    throttle = Some(Timer::new(wait));
                    break;
                }
            }
            let Some(message) = queue.pop_front() else {
                break;
            };
            conn.messages_in.set(conn.messages_in.get() + 1);
            on_message(InFlight::new(conn), message);
        }
        if let Some(error) = violation.take() {
            return Box::pin(close_with(
                stream,
                conn,
                error.close_code(),
                &error.to_string(),
            ))
            .await;
        }
        let queued = queue.len();
        let step = poll_fn(|cx| {
            poll_step(
                cx,
                stream,
                conn,
                &mut decoder,
                &shared.read_buf,
                &mut events,
                Waiting {
                    queued,
                    max_inflight: limits.max_inflight,
                    throttle: &mut throttle,
                },
            )
        })
        .await;
        match step {
            Step::Events => {}
            Step::Violation(error) => violation = Some(error),
            Step::Eof => {
                conn.closing.set(true);
                return Ended::new(1006, "EOF");
            }
            Step::Failed(error) => {
                conn.closing.set(true);
                return Ended::new(1006, format!("error: {error}"));
            }
            Step::CloseRequested(ended) => {
                return Box::pin(close_with(stream, conn, ended.code, &ended.reason)).await;
            }
        }
    }
}

fn encode_message(frame: &mut Vec<u8>, payload: &[u8], binary: bool) {
    if binary {
        codec::encode_binary(frame, payload);
    } else {
        codec::encode_text(frame, payload);
    }
}

/// Forgets the socket's descriptor when [`run`] returns (before its caller closes it).
struct Detach<'a>(&'a Conn);

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        self.0.fd.set(None);
    }
}

/// What waits to be handed on, for [`poll_step`].
struct Waiting<'a> {
    /// Messages decoded and not handed on yet.
    queued: usize,
    /// The bound on messages in flight.
    max_inflight: usize,
    /// While the message rate makes the next message wait: the end of the wait.
    throttle: &'a mut Option<Timer>,
}

/// One wakeup: write what is queued, notice a close request, hand on a queued
/// message once an earlier one is done and the rate allows (the throttle's timer
/// running out), or read when nothing waits.
fn poll_step(
    cx: &mut Context<'_>,
    stream: &mut TcpStream,
    conn: &Conn,
    decoder: &mut WsDecoder,
    read_buf: &RefCell<Vec<u8>>,
    events: &mut Vec<WsEvent>,
    waiting: Waiting<'_>,
) -> Poll<Step> {
    let Waiting {
        queued,
        max_inflight,
        throttle,
    } = waiting;
    if let Some(link) = &conn.link {
        if let Err(e) = poll_write_sealed(cx, stream, conn, &mut link.borrow_mut()) {
            return Poll::Ready(Step::Failed(e));
        }
    } else {
        let mut out = conn.out.borrow_mut();
        while !out.is_empty() {
            match Pin::new(&mut *stream).poll_write(cx, out.front()) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Step::Failed(io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => {
                    out.consume(n);
                    conn.written.set(conn.written.get().wrapping_add(n as u64));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Step::Failed(e)),
                Poll::Pending => break,
            }
        }
    }
    if let Some(ended) = conn.close.borrow_mut().take() {
        return Poll::Ready(Step::CloseRequested(ended));
    }
    if let Some(timer) = throttle.as_mut() {
        if Pin::new(timer).poll(cx).is_ready() {
            *throttle = None;
            return Poll::Ready(Step::Events);
        }
    }
    let room = conn.inflight.get() < max_inflight && throttle.is_none();
    if room && queued > 0 {
        return Poll::Ready(Step::Events);
    }
    if let (true, Some(link)) = (room, &conn.link) {
        let mut link = link.borrow_mut();
        if let Poll::Ready(step) =
            poll_read_sealed(cx, stream, conn, &mut link, decoder, read_buf, events)
        {
            return Poll::Ready(step);
        }
    } else if room {
        let mut buf = read_buf.borrow_mut();
        match Pin::new(&mut *stream).poll_read(cx, &mut buf[..]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Step::Eof),
            Poll::Ready(Ok(n)) => {
                conn.idle_ticks.set(0);
                return Poll::Ready(match decoder.decode(&buf[..n], events) {
                    Ok(()) => Step::Events,
                    Err(error) => Step::Violation(error),
                });
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Step::Failed(e)),
            Poll::Pending => {}
        }
    }
    conn.park(cx);
    Poll::Pending
}

/// [`poll_step`]'s writing over TLS: what was sealed first, then each queued frame
/// sealed and written, until the queue is empty or the socket takes no more (the
/// task is then woken when it has room). An error is the socket's or the session's.
fn poll_write_sealed(
    cx: &mut Context<'_>,
    stream: &mut TcpStream,
    conn: &Conn,
    link: &mut TlsLink,
) -> io::Result<()> {
    loop {
        while !link.unsent.is_empty() {
            match Pin::new(&mut *stream).poll_write(cx, &link.unsent) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    link.unsent.drain(..n);
                    conn.written.set(conn.written.get().wrapping_add(n as u64));
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
        }
        let mut out = conn.out.borrow_mut();
        if out.is_empty() {
            link.shrink();
            return Ok(());
        }
        let front = out.front();
        let taken = front.len();
        let mut sealed = std::mem::take(&mut link.unsent);
        let result = link.seal(front, &mut sealed);
        link.unsent = sealed;
        result.map_err(io::Error::other)?;
        out.consume(taken);
    }
}

/// [`poll_step`]'s reading over TLS: the record the client had begun goes to the
/// front of the shard's read buffer, the socket's bytes behind it; complete records
/// are opened and their plaintext decoded, and the start of an incomplete one is kept
/// in the link. Pending if the socket has nothing.
#[allow(clippy::too_many_arguments)]
fn poll_read_sealed(
    cx: &mut Context<'_>,
    stream: &mut TcpStream,
    conn: &Conn,
    link: &mut TlsLink,
    decoder: &mut WsDecoder,
    read_buf: &RefCell<Vec<u8>>,
    events: &mut Vec<WsEvent>,
) -> Poll<Step> {
    if link.peer_closed() {
        return Poll::Ready(Step::Eof);
    }
    let mut buf = read_buf.borrow_mut();
    let begun = link.partial.len();
    if begun + MIN_TLS_READ > buf.len() {
        let error = io::Error::other("TLS: a record or message too large to hold");
        return Poll::Ready(Step::Failed(error));
    }
    buf[..begun].copy_from_slice(&link.partial);
    let n = match Pin::new(&mut *stream).poll_read(cx, &mut buf[begun..]) {
        Poll::Pending => return Poll::Pending,
        Poll::Ready(Err(e)) => return Poll::Ready(Step::Failed(e)),
        Poll::Ready(Ok(0)) => return Poll::Ready(Step::Eof),
        Poll::Ready(Ok(n)) => n,
    };
    conn.idle_ticks.set(0);
    let end = begun + n;
    let mut violation = None;
    let opened = link.open(&mut buf[..end], &mut |plain| {
        if violation.is_none() {
            violation = decoder.decode(plain, events).err();
        }
    });
    let opened = match opened {
        Ok(opened) => opened,
        Err(e) => return Poll::Ready(Step::Failed(io::Error::other(e))),
    };
    link.partial.clear();
    link.partial.extend_from_slice(&buf[opened.used..end]);
    link.shrink();
    Poll::Ready(match violation {
        Some(error) => Step::Violation(error),
        None => Step::Events,
    })
}

/// Sends a close frame with `code` and `reason`, waits (bounded) for the peer to
/// finish, and reports the connection as ended with them.
/// Codes 1005, 1006 and 1015 only report a close to the API server; they are never
/// sent (RFC 6455 7.4.1): such a close (e.g. a peer silent past its pings) just ends
/// the TCP connection.
async fn close_with(stream: &mut TcpStream, conn: &Conn, code: u16, reason: &str) -> Ended {
    conn.closing.set(true);
    if matches!(code, 1005 | 1006 | 1015) {
        conn.out.borrow_mut().clear();
        let _ = stream.shutdown(std::net::Shutdown::Both).await;
    } else {
        {
            let mut out = conn.out.borrow_mut();
            if code == 1008 && conn.refused.get() {
                // Closed for a full queue: the queue is what the client would not read,
                // so drop it and send only the close. (A 1008 the API asked for with
                // X-Close-Code still sends its answer first.)
                out.clear();
            }
            out.push_own(|buf| codec::encode_close(buf, code, reason));
        }
        Box::pin(finish_close(stream, conn, true)).await;
    }
    Ended::new(code, reason)
}

/// Writes what is queued (the close frame last), then half-closes and, if we started
/// the close, drains the peer's remaining bytes until EOF so that our close frame is
/// not lost to a reset. Bounded by [`CLOSE_GRACE`].
async fn finish_close(stream: &mut TcpStream, conn: &Conn, drain: bool) {
    let out = conn.take_for_close();
    let work = async {
        stream.write_all(&out).await?;
        stream.flush().await?;
        stream.shutdown(std::net::Shutdown::Write).await?;
        if drain {
            let mut sink = [0u8; 512];
            while stream.read(&mut sink).await? > 0 {}
        }
        Ok::<(), io::Error>(())
    };
    let _ = glommio::timer::timeout(CLOSE_GRACE, async { Ok(work.await) }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        Conn::new(
            ClientId::parse(b"alice").unwrap(),
            "c1".into(),
            ("127.0.0.1:1".parse().unwrap(), false),
            Vec::new(),
            Budget::unlimited(),
        )
    }

    #[test]
    fn an_in_flight_message_counts_until_dropped() {
        let c = Rc::new(conn());
        let a = InFlight::new(&c);
        let b = InFlight::new(&c);
        assert_eq!(c.inflight.get(), 2);
        assert!(Rc::ptr_eq(a.conn(), &c));
        drop(a);
        assert_eq!(c.inflight.get(), 1);
        drop(b);
        assert_eq!(c.inflight.get(), 0);
    }

    #[test]
    fn send_queues_a_frame_and_counts_it() {
        let c = conn();
        c.send(b"hi", false, usize::MAX).unwrap();
        assert_eq!(c.queued_bytes(), 4);
        assert_eq!(c.out.borrow().to_vec(), b"\x81\x02hi");
        c.send(b"\x01", true, usize::MAX).unwrap();
        assert_eq!(&c.out.borrow().to_vec()[4..], b"\x82\x01\x01");
        assert_eq!(c.messages_out(), 2);
    }

    #[test]
    fn a_shared_frame_is_queued_by_reference_under_the_same_bound() {
        let c = conn();
        let frame: Rc<[u8]> = Rc::from(&b"\x81\x03all"[..]);
        c.send(b"hi", false, 16).unwrap();
        c.send_shared(&frame, 16).unwrap();
        c.send(b"yo", false, 16).unwrap();
        assert_eq!(c.out.borrow().to_vec(), b"\x81\x02hi\x81\x03all\x81\x02yo");
        assert_eq!(Rc::strong_count(&frame), 2);
        assert_eq!(c.messages_out(), 3);
        // 13 queued + 5 > 16: refused, and counted as a refusal for the stall check.
        assert_eq!(c.send_shared(&frame, 16), Err(PushError::Full));
        assert!(c.refused.get());
        c.close(1000, "bye");
        assert_eq!(c.send_shared(&frame, 16), Err(PushError::Closed));
    }

    /// A connection whose socket (as [`run`] would attach it) is one end of a pair.
    fn attached() -> (
        Conn,
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    ) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs.set_nonblocking(true).unwrap();
        let c = conn();
        c.fd.set(Some(ours.as_raw_fd()));
        (c, ours, theirs)
    }

    fn drain(peer: &mut std::os::unix::net::UnixStream) -> Vec<u8> {
        use std::io::Read;
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = peer.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    #[test]
    fn a_frame_on_an_empty_queue_is_written_at_once() {
        let (c, _ours, mut theirs) = attached();
        let frame: Rc<[u8]> = Rc::from(&b"\x81\x03all"[..]);
        c.send_shared(&frame, 16).unwrap();
        c.send(b"hi", false, 16).unwrap();
        assert_eq!(c.queued_bytes(), 0, "the socket took both: nothing queued");
        assert_eq!(Rc::strong_count(&frame), 1, "nor kept");
        assert_eq!(c.written.get(), 9);
        assert_eq!(c.messages_out(), 2);
        assert_eq!(drain(&mut theirs), b"\x81\x03all\x81\x02hi");
    }

    /// The client's plaintext from what the socket pair carried.
    fn decrypt(client: &mut rustls::ClientConnection, wire: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut reader = wire;
        let mut plain = Vec::new();
        while !reader.is_empty() {
            client.read_tls(&mut reader).unwrap();
            client.process_new_packets().unwrap();
            let _ = client.reader().read_to_end(&mut plain);
        }
        plain
    }

    #[test]
    fn over_tls_frames_are_sealed_on_their_way_and_what_waits_is_sealed_in_order() {
        let (_pki, link, mut client) = crate::tls::testing::connected("conn-direct");
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs.set_nonblocking(true).unwrap();
        let c = conn().with_tls(Box::new(RefCell::new(link)));
        c.fd.set(Some(ours.as_raw_fd()));
        let frame: Rc<[u8]> = Rc::from(&b"\x81\x03all"[..]);
        c.send_shared(&frame, 16).unwrap();
        c.send(b"hi", false, 16).unwrap();
        assert_eq!(c.queued_bytes(), 0, "sealed and taken at once");
        assert_eq!(Rc::strong_count(&frame), 1);
        let wire = drain(&mut theirs);
        assert!(
            !wire.windows(3).any(|w| w == b"all"),
            "no plaintext on the wire"
        );
        assert_eq!(decrypt(&mut client, &wire), b"\x81\x03all\x81\x02hi");

        // Fill the pair until sealed records wait; later frames queue behind them.
        let big = vec![b'x'; 64 * 1024];
        let mut sent = 0usize;
        while c.sent_all() {
            c.send(&big, true, usize::MAX).unwrap();
            sent += 1;
            assert!(sent < 10_000, "the socket never filled");
        }
        assert!(c.queued_bytes() > 0, "sealed bytes waiting count as queued");
        c.send_shared(&frame, usize::MAX).unwrap();
        assert_eq!(
            Rc::strong_count(&frame),
            2,
            "queued behind the sealed records"
        );
        let mut wire = drain(&mut theirs);
        while !c.write_now() {
            wire.extend(drain(&mut theirs));
        }
        wire.extend(drain(&mut theirs));
        let plain = decrypt(&mut client, &wire);
        let big_frame_len = codec::frame_len(big.len());
        assert_eq!(plain.len(), sent * big_frame_len + 5);
        assert!(
            plain.ends_with(b"\x81\x03all"),
            "the shared frame last, in order"
        );
        assert_eq!(c.queued_bytes(), 0);
    }

    #[test]
    fn what_the_socket_does_not_take_waits_in_order_for_the_task() {
        let (c, _ours, mut theirs) = attached();
        let big = vec![b'x'; 64 * 1024];
        // Fill the pair's buffers until a frame no longer goes out whole.
        let mut sent = 0usize;
        while c.queued_bytes() == 0 {
            c.send(&big, true, usize::MAX).unwrap();
            sent += 1;
            assert!(sent < 10_000, "the socket never filled");
        }
        let frame: Rc<[u8]> = Rc::from(&b"\x81\x04tail"[..]);
        c.send_shared(&frame, usize::MAX).unwrap();
        assert_eq!(
            Rc::strong_count(&frame),
            2,
            "queued behind the rest, not written"
        );
        // The peer reads; the task (here: write_now) writes the rest, in order.
        let mut got = drain(&mut theirs);
        while !c.write_now() {
            got.extend(drain(&mut theirs));
        }
        got.extend(drain(&mut theirs));
        let mut expected = Vec::new();
        for _ in 0..sent {
            codec::encode_binary(&mut expected, &big);
        }
        expected.extend_from_slice(b"\x81\x04tail");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes out of order");
    }

    #[test]
    fn a_closing_connection_writes_nothing_more() {
        let (c, _ours, mut theirs) = attached();
        c.close(1000, "bye");
        assert_eq!(c.send(b"late", false, usize::MAX), Err(PushError::Closed));
        assert!(c.fd.get().is_none());
        assert_eq!(drain(&mut theirs), b"");
    }

    #[test]
    fn the_bounds_count_whole_frames() {
        // 10 + 2 queued; a 2-byte payload is a 4-byte frame: 16 fits, 17 does not.
        let c = conn();
        c.send(&[b'x'; 10], false, 16).unwrap();
        c.send(b"ab", false, 16).unwrap();
        assert_eq!(c.queued_bytes(), 16);
        assert_eq!(c.send(b"a", false, 16), Err(PushError::Full));
        // The budget: 16 used of 19; a 2-byte push (4-byte frame) does not fit.
        let budget = Budget::new(19);
        let d = Conn::new(
            ClientId::parse(b"bob").unwrap(),
            "c2".into(),
            ("127.0.0.1:1".parse().unwrap(), false),
            Vec::new(),
            budget.clone(),
        );
        d.push(&[b'x'; 14], false, usize::MAX).unwrap();
        assert_eq!(budget.used(), 16);
        assert_eq!(d.push(b"ab", false, usize::MAX), Err(PushError::OverBudget));
        d.push(b"a", false, usize::MAX).unwrap();
        assert_eq!(budget.used(), 19);
        // An answer is not held to the budget.
        d.send(b"ab", false, usize::MAX).unwrap();
        assert_eq!(budget.used(), 23);
        drop(d);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn send_respects_the_outbound_bound() {
        let c = conn();
        c.send(&[b'x'; 10], false, 16).unwrap();
        assert_eq!(c.send(&[b'x'; 10], false, 16), Err(PushError::Full));
        assert_eq!(c.queued_bytes(), 12);
    }

    #[test]
    fn a_peer_that_speaks_every_interval_is_never_pinged() {
        let c = conn();
        for _ in 0..5 {
            assert_eq!(c.liveness_tick(true), Liveness::Alive);
            c.idle_ticks.set(0); // what a read does
        }
        assert_eq!(c.queued_bytes(), 0);
    }

    #[test]
    fn a_silent_peer_is_pinged_then_timed_out() {
        let c = conn();
        assert_eq!(c.liveness_tick(true), Liveness::Alive);
        assert_eq!(c.liveness_tick(true), Liveness::Pinged);
        assert_eq!(c.out.borrow().to_vec(), b"\x89\x00");
        assert_eq!(c.liveness_tick(true), Liveness::TimedOut);
        assert_eq!(*c.close.borrow(), Some(Ended::new(1006, "timeout")));
    }

    #[test]
    fn a_peer_waiting_on_the_api_is_alive() {
        let c = Rc::new(conn());
        let waiting = InFlight::new(&c);
        assert_eq!(c.liveness_tick(true), Liveness::Alive);
        assert_eq!(c.liveness_tick(true), Liveness::Alive);
        drop(waiting);
        assert_eq!(c.liveness_tick(true), Liveness::Alive);
        assert_eq!(c.liveness_tick(true), Liveness::Pinged);
    }

    #[test]
    fn without_pings_a_silent_peer_stays() {
        let c = conn();
        for _ in 0..5 {
            assert_eq!(c.liveness_tick(false), Liveness::Alive);
        }
        assert_eq!(c.queued_bytes(), 0);
    }

    #[test]
    fn a_refused_frame_and_no_progress_for_a_tick_closes_with_1008() {
        let c = conn();
        c.send(&[b'x'; 40], false, 64).unwrap();
        assert_eq!(c.send(&[b'y'; 40], false, 64), Err(PushError::Full));
        // The tick after the refusal marks; the next one finds nothing written.
        assert_eq!(c.liveness_tick(false), Liveness::Alive);
        assert_eq!(c.liveness_tick(false), Liveness::Stalled);
        assert_eq!(*c.close.borrow(), Some(Ended::new(1008, "send queue full")));
    }

    #[test]
    fn a_slow_reader_that_makes_progress_is_not_stalled() {
        let c = conn();
        c.send(&[b'x'; 40], false, 64).unwrap();
        assert_eq!(c.send(&[b'y'; 40], false, 64), Err(PushError::Full));
        assert_eq!(c.liveness_tick(false), Liveness::Alive);
        // Some bytes go out between every two ticks.
        for _ in 0..3 {
            c.out.borrow_mut().consume(10);
            c.written.set(c.written.get() + 10);
            assert_eq!(c.liveness_tick(false), Liveness::Alive);
        }
        assert!(!c.is_closing());
        // Then none: closed at the next tick.
        assert_eq!(c.liveness_tick(false), Liveness::Stalled);
    }

    #[test]
    fn pings_cannot_grow_a_full_queue_and_count_as_refused() {
        let c = conn();
        c.send(&[b'x'; 100], false, 64).unwrap();
        let queued = c.queued_bytes();
        c.pong(b"p", 64);
        assert_eq!(c.queued_bytes(), queued, "no pong past the bound");
        assert_eq!(c.liveness_tick(false), Liveness::Alive);
        assert_eq!(c.liveness_tick(false), Liveness::Stalled);
        let d = conn();
        d.pong(b"p", 64);
        assert_eq!(d.out.borrow().to_vec(), b"\x8a\x01p");
    }

    #[test]
    fn a_full_queue_without_a_refusal_is_not_stalled() {
        let c = conn();
        c.send(&[b'x'; 200], false, 64).unwrap();
        for _ in 0..3 {
            assert_eq!(c.liveness_tick(false), Liveness::Alive);
        }
    }

    #[test]
    fn nothing_is_queued_once_closing_and_the_first_close_wins() {
        let c = conn();
        c.close(4000, "replaced");
        c.close(1001, "shutdown");
        assert_eq!(c.send(b"late", false, usize::MAX), Err(PushError::Closed));
        assert_eq!(*c.close.borrow(), Some(Ended::new(4000, "replaced")));
    }
}
