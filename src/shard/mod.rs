//! Per-core state and its life: one [`Shard`] per executor owns the connections whose
//! ClientId hashes to it, its own API pool and counters, and talks to other shards
//! only through [`ShardMsg`] on the mesh.
//!
//! Stop order (fixed): stop accepting, close every client with 1001, wait (bounded by
//! `--shutdown-timeout`) until every connection has sent its Disconnect, close the
//! API pool, leave the mesh.

pub mod control;
pub mod msg;
pub mod public;
pub mod report;
pub mod session;
mod tracker;

use std::cell::{Cell, RefCell};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use glommio::sync::Semaphore;
use ws2api_shards::wake::Wakeup;
use ws2api_shards::{listener, shard_of, Calls, MeshPlan, MeshSender, Table};

use crate::api::{Answer, ApiError, ApiMethod, ApiPool, ApiRequest, ApiTarget};
use crate::client_id::ClientId;
use crate::config::Config;
use crate::logger::RateLimited;
use crate::stats::ShardStats;
use crate::ws::{Conn, Liveness, PushError};
pub use msg::{Delivery, Op, OpReply, ShardMsg};
pub use tracker::Tracker;

/// Size of the per-shard read buffer every connection of the shard reads into.
pub const READ_BUFFER: usize = 64 * 1024;

/// Messages a mesh channel between two shards holds before a sender waits.
pub const MESH_CAPACITY: usize = 1024;

/// How long a control request waits for the owning shard's reply.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Wakeup bytes sent from the starting thread to every shard.
pub mod wake_byte {
    /// Begin the orderly stop.
    pub const STOP: u8 = b'T';
    /// Print this shard's stats to stderr.
    pub const DUMP: u8 = b'U';
}

/// One shard's state. Lives in an `Rc` on its executor; never crosses threads.
pub struct Shard {
    /// This shard's index.
    pub id: usize,
    /// Number of shards.
    pub count: usize,
    /// The validated configuration.
    pub config: Arc<Config>,
    /// This shard's pool of connections to the API server.
    pub api: ApiPool,
    /// The connections this shard owns, by ClientId.
    pub table: RefCell<Table<ClientId, Rc<Conn>>>,
    /// This shard's counters.
    pub stats: RefCell<ShardStats>,
    /// The sending half of the mesh (the receiving half runs in `Mesh::serve`).
    pub mesh: MeshSender<ShardMsg>,
    /// Calls this shard sent to others and is waiting on.
    pub calls: Calls<OpReply>,
    /// The read buffer shared by every connection of this shard (borrowed only inside one poll).
    pub read_buf: RefCell<Vec<u8>>,
    /// Handshakes and connections alive, for the orderly stop.
    pub tracker: Tracker,
    /// Bounds the log lines about failed requests to the API server.
    pub upstream_log: RateLimited,
    draining: Cell<bool>,
    /// Closed when the shard starts draining: accept loops wait on it to stop.
    stopping: Semaphore,
    conn_seq: Cell<u64>,
    boot: u64,
}

impl Shard {
    fn new(id: usize, config: Arc<Config>, mesh: MeshSender<ShardMsg>, boot: u64) -> Shard {
        let target = ApiTarget {
            addr: config.api.url.addr,
            host: config.api.url.authority(),
            base: config.api.url.path.clone(),
        };
        Shard {
            id,
            count: mesh.shards(),
            api: ApiPool::new(
                target,
                config.api.max_conns,
                config.api.timeout,
                config.api.max_answer_size,
            ),
            config,
            table: RefCell::new(Table::new()),
            stats: RefCell::new(ShardStats::default()),
            mesh,
            calls: Calls::default(),
            read_buf: RefCell::new(vec![0; READ_BUFFER]),
            tracker: Tracker::default(),
            upstream_log: RateLimited::new(10, Duration::from_secs(1)),
            draining: Cell::new(false),
            stopping: Semaphore::new(0),
            conn_seq: Cell::new(0),
            boot,
        }
    }

    /// Sends one request to the API server and counts it: started, in flight, its
    /// time by event (the method tells Connect, Message and Disconnect apart), then
    /// succeeded (2xx) or failed.
    pub async fn api_request(&self, request: &ApiRequest<'_>) -> Result<Answer, ApiError> {
        {
            let mut stats = self.stats.borrow_mut();
            stats.requests_started += 1;
            stats.requests_in_flight += 1;
        }
        let started = Instant::now();
        let answer = self.api.send(request).await;
        let elapsed = started.elapsed();
        let mut stats = self.stats.borrow_mut();
        stats.requests_in_flight -= 1;
        let failure = match &answer {
            Ok(a) if a.status / 100 == 2 => None,
            Ok(_) => Some("status"),
            Err(ApiError::Connect(_)) => Some("connect"),
            Err(ApiError::Io(_)) => Some("broken"),
            Err(ApiError::Timeout(_)) => Some("timeout"),
            Err(ApiError::BadAnswer(_)) => Some("bad_answer"),
            Err(ApiError::Closed) => Some("stopping"),
        };
        match failure {
            None => stats.requests_succeeded += 1,
            Some(kind) => {
                stats.requests_failed += 1;
                *stats.api_errors.entry(kind).or_default() += 1;
            }
        }
        let latency = &mut stats.latency;
        match request.method {
            ApiMethod::Get => latency.connect.record(elapsed),
            ApiMethod::Post => latency.message.record(elapsed),
            ApiMethod::Delete => latency.disconnect.record(elapsed),
        }
        answer
    }

    /// The shard that owns `client`.
    pub fn owner_of(&self, client: &ClientId) -> usize {
        shard_of(client.as_bytes(), self.count)
    }

    /// True once the orderly stop began.
    pub fn draining(&self) -> bool {
        self.draining.get()
    }

    /// Resolves when the orderly stop begins.
    pub async fn stopping(&self) {
        let _ = self.stopping.acquire(1).await;
    }

    /// This shard's share of `--max-connections`.
    pub fn connection_limit(&self) -> usize {
        self.config.limits.max_connections.div_ceil(self.count)
    }

    /// A fresh `X-Connection-Id`: `<process>-<shard>-<sequence>`, where `<process>` is
    /// 48 random bits drawn at start, so ids differ across shards, restarts and
    /// gateways started together behind one load balancer.
    pub fn next_conn_id(&self) -> Box<str> {
        let seq = self.conn_seq.get() + 1;
        self.conn_seq.set(seq);
        format!("{:012x}-{}-{}", self.boot, self.id, seq).into_boxed_str()
    }

    /// Carries out `op` on this shard (it must own the client).
    pub fn execute(&self, op: Op) -> OpReply {
        match op {
            Op::Push {
                client,
                payload,
                binary,
                received,
            } => {
                let conn = self
                    .table
                    .borrow()
                    .get_by_name(&client)
                    .map(|(_, c)| c.clone());
                let delivery = match conn {
                    None => Delivery::NotFound,
                    Some(conn) => {
                        match conn.send(&payload, binary, self.config.limits.max_outbound_bytes) {
                            Ok(()) => Delivery::Done,
                            Err(PushError::Closed) => Delivery::NotFound,
                            Err(PushError::Full) => Delivery::Full,
                        }
                    }
                };
                let mut stats = self.stats.borrow_mut();
                match delivery {
                    Delivery::Done => {
                        stats.pushes_ok += 1;
                        stats.messages_out += 1;
                        stats.bytes_out += payload.len() as u64;
                        stats.latency.push.record(received.elapsed());
                    }
                    Delivery::NotFound => stats.pushes_not_found += 1,
                    Delivery::Full => stats.pushes_full += 1,
                }
                OpReply::Delivery(delivery)
            }
            Op::Close { client, code } => {
                let conn = self
                    .table
                    .borrow()
                    .get_by_name(&client)
                    .map(|(_, c)| c.clone());
                OpReply::Delivery(match conn {
                    Some(conn) if !conn.is_closing() => {
                        conn.close(code, "closed by API");
                        Delivery::Done
                    }
                    _ => Delivery::NotFound,
                })
            }
            Op::Info { client } => {
                let table = self.table.borrow();
                OpReply::Info(
                    table
                        .get_by_name(&client)
                        .map(|(_, conn)| self.describe(conn)),
                )
            }
            Op::Stats => {
                let mut snapshot = self.stats.borrow().clone();
                snapshot.api_connections = self.api.open_connections() as u64;
                OpReply::Stats(Box::new(snapshot))
            }
        }
    }

    fn describe(&self, conn: &Conn) -> String {
        let since = conn
            .connected_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        format!(
            "{{\"client_id\":\"{}\",\"connection_id\":\"{}\",\"shard\":{},\"remote_addr\":\"{}\",\"connected_at\":{:.3},\"messages_in\":{},\"messages_out\":{},\"queued_bytes\":{}}}\n",
            conn.client_id,
            conn.conn_id,
            self.id,
            conn.peer,
            since,
            conn.messages_in(),
            conn.messages_out(),
            conn.queued_bytes()
        )
    }

    /// Carries out `op` on shard `to` (this one or another) and returns its reply.
    /// `None` if the owner could not be reached or did not answer in time.
    pub async fn call(&self, to: usize, op: Op) -> Option<OpReply> {
        if to == self.id {
            return Some(self.execute(op));
        }
        self.stats.borrow_mut().forwards += 1;
        let (call, reply) = self.calls.register();
        let msg = ShardMsg::Call {
            from: self.id,
            call,
            op,
            sent: Instant::now(),
        };
        if self.mesh.send(to, msg).await.is_err() {
            self.calls.forget(call);
            return None;
        }
        match glommio::timer::timeout(CALL_TIMEOUT, async { Ok(reply.wait().await) }).await {
            Ok(reply) => reply,
            Err(_) => {
                self.calls.forget(call);
                None
            }
        }
    }

    /// Every shard's counters, in shard order (the local one read directly).
    pub async fn gather_stats(&self) -> Vec<ShardStats> {
        let mut all = Vec::with_capacity(self.count);
        for shard in 0..self.count {
            match self.call(shard, Op::Stats).await {
                Some(OpReply::Stats(stats)) => all.push(*stats),
                _ => all.push(ShardStats::default()),
            }
        }
        all
    }

    /// Handles one message from the mesh. Never blocks: anything that waits is spawned.
    fn on_mesh(self: &Rc<Self>, _from: usize, msg: ShardMsg) {
        match msg {
            ShardMsg::Adopt(handoff) => {
                let token = self.tracker.token();
                let shard = self.clone();
                glommio::spawn_local(async move {
                    let (stream, peer, bytes) = handoff.into_stream();
                    public::upgrade(shard, stream, peer, bytes, token).await;
                })
                .detach();
            }
            ShardMsg::Call {
                from,
                call,
                op,
                sent,
            } => {
                self.stats.borrow_mut().latency.hop.record(sent.elapsed());
                let reply = self.execute(op);
                let mesh = self.mesh.clone();
                glommio::spawn_local(async move {
                    let reply = ShardMsg::Reply {
                        call,
                        reply,
                        sent: Instant::now(),
                    };
                    let _ = mesh.send(from, reply).await;
                })
                .detach();
            }
            ShardMsg::Reply { call, reply, sent } => {
                self.stats.borrow_mut().latency.hop.record(sent.elapsed());
                self.calls.complete(call, reply);
            }
        }
    }

    /// Begins the orderly stop: accept loops end, every client is asked to close with 1001.
    fn begin_drain(&self) {
        if self.draining.replace(true) {
            return;
        }
        self.stopping.close();
        let conns: Vec<Rc<Conn>> = self
            .table
            .borrow()
            .iter()
            .map(|(_, _, conn)| conn.clone())
            .collect();
        for conn in conns {
            conn.close(1001, "shutdown");
        }
    }
}

/// Sweep period when `--ping-interval` is off (the outbound-queue check still runs).
const SWEEP_WITHOUT_PINGS: Duration = Duration::from_secs(30);

/// The sweep visits the table in this many slices per interval, so that 125k idle
/// connections of a shard are not all pinged in the same instant.
const SWEEP_SLICES: usize = 10;

/// One liveness tick for every connection of the shard per interval: O(1) per
/// connection per interval, one timer per shard (no timer per socket). Each
/// `interval / SWEEP_SLICES` it ticks the connections of one slice of the table.
async fn liveness_sweep(shard: Rc<Shard>) {
    let ping = shard.config.limits.ping_interval;
    let interval = ping.unwrap_or(SWEEP_WITHOUT_PINGS);
    let (mut timed_out, mut stalled) = (0u64, 0u64);
    for step in 0usize.. {
        glommio::timer::sleep(interval / SWEEP_SLICES as u32).await;
        if shard.draining() {
            return;
        }
        let part = step % SWEEP_SLICES;
        let conns: Vec<Rc<Conn>> = shard
            .table
            .borrow()
            .slice(part, SWEEP_SLICES)
            .map(|(_, conn)| conn.clone())
            .collect();
        for conn in conns {
            match conn.liveness_tick(ping.is_some()) {
                Liveness::TimedOut => timed_out += 1,
                Liveness::Stalled => stalled += 1,
                Liveness::Alive | Liveness::Pinged => {}
            }
        }
        if part == SWEEP_SLICES - 1 && timed_out + stalled > 0 {
            log::info!(
                "shard {}: closed {timed_out} connections silent for two ping intervals, {stalled} not reading their queue",
                shard.id
            );
            (timed_out, stalled) = (0, 0);
        }
    }
}

/// What one shard is given at start.
pub struct ShardStart {
    /// Shard index.
    pub id: usize,
    /// The configuration.
    pub config: Arc<Config>,
    /// The mesh, to join.
    pub plan: MeshPlan<ShardMsg>,
    /// This shard's public listening socket.
    pub public: OwnedFd,
    /// This shard's control listening socket.
    pub control: OwnedFd,
    /// Where stop and dump requests arrive.
    pub wakeup: Wakeup,
    /// Process start time, part of every connection id.
    pub boot: u64,
}

/// Runs one shard until its orderly stop completes.
pub async fn run(start: ShardStart) {
    let ShardStart {
        id,
        config,
        plan,
        public,
        control,
        wakeup,
        boot,
    } = start;
    let mut mesh = plan.join(id).await;
    let shard = Rc::new(Shard::new(id, config.clone(), mesh.sender(), boot));
    {
        let shard = shard.clone();
        mesh.serve(move |from, msg| shard.on_mesh(from, msg));
    }
    let public_task = glommio::spawn_local(public::accept_loop(
        shard.clone(),
        listener::into_listener(public),
    ));
    let control_task = glommio::spawn_local(control::accept_loop(
        shard.clone(),
        listener::into_listener(control),
    ));
    let liveness_task = glommio::spawn_local(liveness_sweep(shard.clone()));
    let report_task = match config.observability.stats_interval {
        Some(interval) if id == 0 => {
            Some(glommio::spawn_local(report::run(shard.clone(), interval)))
        }
        _ => None,
    };
    let last_dump = Rc::new(RefCell::new((Instant::now(), Vec::new())));
    let mut wakeups = match wakeup.listen() {
        Ok(w) => Some(w),
        Err(e) => {
            log::error!("shard {id}: cannot listen for stop requests: {e}");
            None
        }
    };
    loop {
        let byte = match wakeups.as_mut() {
            Some(w) => w.next().await,
            None => None,
        };
        match byte {
            Some(wake_byte::DUMP) if id == 0 => {
                glommio::spawn_local(report::dump(shard.clone(), last_dump.clone())).detach();
            }
            Some(wake_byte::DUMP) => {}
            Some(wake_byte::STOP) | None => break,
            Some(_) => {}
        }
    }
    log::debug!("shard {id}: stopping");
    shard.begin_drain();
    public_task.await;
    let drained = glommio::timer::timeout(config.shutdown_timeout, async {
        shard.tracker.idle().await;
        Ok(())
    })
    .await;
    if drained.is_err() {
        log::warn!(
            "shard {id}: {} connections still open after --shutdown-timeout {:?}",
            shard.tracker.live(),
            config.shutdown_timeout
        );
    }
    drop(control_task);
    drop(liveness_task);
    drop(report_task);
    shard.api.close();
    shard.calls.abandon_all();
    shard.mesh.close();
}
