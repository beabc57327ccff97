//! One shard's state: the connections it owns, its API pool and counters, its end of
//! the mesh. It lives in an `Rc` on its executor and never crosses threads.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use ws2api_shards::{shard_of, Calls, Gate, Key, MeshSender, Table};

use super::groups::{AtCap, Groups, Memberships};
use super::{Membership, OpReply, ShardMsg, READ_BUFFER};
use crate::api::contract::GroupChanges;
use crate::api::{Answer, ApiError, ApiMethod, ApiPool, ApiRequest};
use crate::client_id::ClientId;
use crate::config::Config;
use crate::edge::{Addresses, Rate};
use crate::group::GroupName;
use crate::logger::RateLimited;
use crate::stats::ShardStats;
use crate::tls::ShardCerts;
use crate::ws::budget::Budget;
use crate::ws::{connection, Conn};

/// A connection's entry in its shard's table.
pub struct Client {
    /// The connection (its task holds another `Rc`).
    pub conn: Rc<Conn>,
    /// The ids of its groups in [`Shard::groups`].
    pub groups: Memberships,
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
    pub table: RefCell<Table<ClientId, Client>>,
    /// Which of this shard's connections are in which group.
    pub groups: RefCell<Groups>,
    /// This shard's counters.
    pub stats: RefCell<ShardStats>,
    /// The sending half of the mesh (the receiving half runs in `Mesh::serve`, which
    /// hands each message to [`Shard::on_mesh`]).
    pub mesh: MeshSender<ShardMsg>,
    /// Calls this shard sent to others and is waiting on.
    pub calls: Calls<OpReply>,
    /// What every connection loop of this shard shares: the read buffer, the limits,
    /// the throttle count.
    pub conns: connection::Shared,
    /// Handshakes and connections alive, for the orderly stop.
    pub gate: Gate,
    /// Bounds the log lines about failed requests to the API server.
    pub upstream_log: RateLimited,
    /// Bounds the log lines about group names skipped in API answers.
    pub group_log: RateLimited,
    /// This shard's share of `--max-outbound-total`, which every queue of its
    /// connections counts in.
    pub budget: Rc<Budget>,
    /// The client addresses this shard owns (by hash of the address), for the
    /// per-address limits; empty while they are off.
    pub addresses: RefCell<Addresses>,

    /// The TLS configuration new handshakes use, with `--tls-cert`.
    pub tls: Option<ShardCerts>,

    draining: Cell<bool>,
    /// Closed when the shard starts draining: accept loops wait on it to stop.
    stopping: Semaphore,
    conn_seq: Cell<u64>,
    boot: u64,
}

impl Shard {
    /// Shard `id` of the gateway, with its end of the mesh; `boot` names the process.
    pub fn new(id: usize, config: Arc<Config>, mesh: MeshSender<ShardMsg>, boot: u64) -> Shard {
        let conns = connection::Shared {
            read_buf: RefCell::new(vec![0; READ_BUFFER]),
            limits: connection::Limits {
                max_inflight: config.limits.max_inflight_per_client,
                max_outbound: config.limits.max_outbound_bytes,
                message_rate: Rate::per_second(config.edge.max_message_rate),
            },
            throttled: Cell::new(0),
        };
        let edge = &config.edge;
        let budget = Budget::new(edge.max_outbound_total / mesh.shards());
        let addresses = Addresses::new(
            edge.max_tracked_ips / mesh.shards(),
            edge.max_connections_per_ip,
            Rate::per_second(edge.connect_rate_per_ip),
        );
        Shard {
            id,
            count: mesh.shards(),
            api: ApiPool::for_client(&config.api),
            config,
            table: RefCell::new(Table::new()),
            groups: RefCell::new(Groups::default()),
            stats: RefCell::new(ShardStats::default()),
            mesh,
            calls: Calls::default(),
            conns,
            gate: Gate::default(),
            upstream_log: RateLimited::new(10, Duration::from_secs(1)),
            group_log: RateLimited::new(10, Duration::from_secs(1)),
            budget,
            addresses: RefCell::new(addresses),
            tls: None,
            draining: Cell::new(false),
            stopping: Semaphore::new(0),
            conn_seq: Cell::new(0),
            boot,
        }
    }

    /// Sends one request to the API server and counts it: started, in flight, its
    /// time by event (the method tells Connect, Message and Disconnect apart), then
    /// succeeded (2xx) or failed, by kind.
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
            Ok(a) if crate::api::contract::is_success(a.status) => None,
            Ok(_) => Some("status"),
            Err(e) => Some(e.kind()),
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

    /// The shard whose per-address table counts `ip`.
    pub fn owner_of_address(&self, ip: IpAddr) -> usize {
        match Addresses::key(ip) {
            IpAddr::V4(v4) => shard_of(&v4.octets(), self.count),
            IpAddr::V6(v6) => shard_of(&v6.octets(), self.count),
        }
    }

    /// Counts a failed TLS handshake under its `reason` label.
    pub fn count_tls_failure(&self, reason: &'static str) {
        *self
            .stats
            .borrow_mut()
            .tls_failures
            .entry(reason)
            .or_default() += 1;
    }

    /// Counts a refusal by an edge limit under its `reason` label.
    pub fn count_refusal(&self, reason: &'static str) {
        *self.stats.borrow_mut().refused.entry(reason).or_default() += 1;
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

    /// True while the shard holds its share of `--max-connections`.
    pub fn full(&self) -> bool {
        self.table.borrow().len() >= self.connection_limit()
    }

    /// A fresh `X-Connection-Id`: `<process>-<shard>-<sequence>`, where `<process>` is
    /// 48 random bits drawn at start, so ids differ across shards, restarts and
    /// gateways started together behind one load balancer.
    pub fn next_conn_id(&self) -> Box<str> {
        let seq = self.conn_seq.get() + 1;
        self.conn_seq.set(seq);
        format!("{:012x}-{}-{}", self.boot, self.id, seq).into_boxed_str()
    }

    /// The connection `client` has on this shard, if any.
    pub fn conn(&self, client: &ClientId) -> Option<Rc<Conn>> {
        self.table
            .borrow()
            .get_by_name(client)
            .map(|(_, c)| c.conn.clone())
    }

    /// Takes `conn` into the table under `client`; returns its key and the key of the
    /// connection it replaces, if any. It starts in no group.
    pub fn admit(&self, client: ClientId, conn: Rc<Conn>) -> (Key, Option<Key>) {
        let entry = Client {
            conn,
            groups: Memberships::new(),
        };
        self.table.borrow_mut().insert(client, entry)
    }

    /// Takes the connection at `key` out of the table and out of every group.
    pub fn remove(&self, key: Key) {
        if let Some(entry) = self.table.borrow_mut().remove(key) {
            self.groups.borrow_mut().leave_all(key, &entry.groups);
        }
    }

    /// Adds the connection at `key` to `group`.
    pub fn join(&self, key: Key, group: &GroupName) -> Membership {
        let mut table = self.table.borrow_mut();
        let Some(entry) = table.get_mut(key) else {
            return Membership::NotFound;
        };
        let cap = self.config.limits.max_groups_per_client;
        match self
            .groups
            .borrow_mut()
            .join(group, key, &mut entry.groups, cap)
        {
            Ok(_) => Membership::Done,
            Err(AtCap) => Membership::AtCap,
        }
    }

    /// Removes the connection at `key` from `group`.
    pub fn leave(&self, key: Key, group: &GroupName) -> Membership {
        let mut table = self.table.borrow_mut();
        let Some(entry) = table.get_mut(key) else {
            return Membership::NotFound;
        };
        self.groups
            .borrow_mut()
            .leave(group, key, &mut entry.groups);
        Membership::Done
    }

    /// Applies the `X-Group-Join` / `X-Group-Leave` of an API answer to the connection
    /// at `key`, joins first. A bad name, `*`, or a join beyond `--max-groups-per-client`
    /// is skipped, logged (rate-limited) and counted; the rest still applies.
    pub fn apply_group_changes(&self, key: Key, changes: &GroupChanges<'_>) {
        let mut skipped = 0u64;
        let mut skip = |raw: &[u8], why: &dyn std::fmt::Display| {
            skipped += 1;
            crate::log_limited!(
                self.group_log,
                log::Level::Warn,
                "shard {}: API answer group {:?} skipped: {why}",
                self.id,
                String::from_utf8_lossy(raw)
            );
        };
        for (raw, join) in changes
            .joins
            .iter()
            .map(|raw| (raw, true))
            .chain(changes.leaves.iter().map(|raw| (raw, false)))
        {
            let group = match GroupName::parse(raw) {
                Ok(group) => group,
                Err(e) => {
                    skip(raw, &e);
                    continue;
                }
            };
            let outcome = match join {
                true => self.join(key, &group),
                false => self.leave(key, &group),
            };
            if outcome == Membership::AtCap {
                skip(raw, &"over --max-groups-per-client");
            }
        }
        self.stats.borrow_mut().group_names_skipped += skipped;
    }

    /// Begins the orderly stop: accept loops end, every client is asked to close with 1001.
    pub fn begin_drain(&self) {
        if self.draining.replace(true) {
            return;
        }
        self.stopping.close();
        let conns: Vec<Rc<Conn>> = self
            .table
            .borrow()
            .iter()
            .map(|(_, _, entry)| entry.conn.clone())
            .collect();
        for conn in conns {
            conn.close(1001, "shutdown");
        }
    }
}
