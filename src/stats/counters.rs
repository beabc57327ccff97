//! What one shard counts: [`ShardStats`] (plain numbers, one writer) and its latency
//! histograms ([`Latency`], [`Latencies`]), folded across shards by addition ([`Fold`]).

use std::time::Duration;

use hdrhistogram::Histogram;
use ws2api_shards::Fold;

/// Highest latency a histogram tells apart (longer ones are recorded as this).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// One latency distribution, in microseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
    sum_us: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_US, 2)
                .expect("static histogram bounds are valid"),
            sum_us: 0,
        }
    }
}

impl PartialEq for Latency {
    fn eq(&self, other: &Self) -> bool {
        self.sum_us == other.sum_us && self.histogram == other.histogram
    }
}

impl Eq for Latency {}

impl Latency {
    /// Records one observation.
    pub fn record(&mut self, elapsed: Duration) {
        let us = (elapsed.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.histogram.saturating_record(us);
        self.sum_us += us;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The value at quantile `q` (0..=1), in microseconds; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.histogram.is_empty() {
            0
        } else {
            self.histogram.value_at_quantile(q)
        }
    }

    /// Sum of every observation, in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    /// The observations made since `before` (an earlier snapshot of this one).
    pub fn since(&self, before: &Latency) -> Latency {
        let mut delta = self.clone();
        if delta.histogram.subtract(&before.histogram).is_err() {
            return self.clone();
        }
        delta.sum_us = self.sum_us.saturating_sub(before.sum_us);
        delta
    }

    fn fold(&mut self, other: &Latency) {
        // Same bounds on both sides: addition cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.sum_us += other.sum_us;
    }
}

/// The latency distributions one shard keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latencies {
    /// API server requests for Connect (GET).
    pub connect: Latency,
    /// API server requests for Message (POST).
    pub message: Latency,
    /// API server requests for Disconnect (DELETE), each attempt.
    pub disconnect: Latency,
    /// A push, from its control request arriving to its frame queued on the owner.
    pub push: Latency,
    /// One hop over the mesh, from send to the receiving shard's handler.
    pub hop: Latency,
}

impl Latencies {
    fn fold(&mut self, o: &Latencies) {
        self.connect.fold(&o.connect);
        self.message.fold(&o.message);
        self.disconnect.fold(&o.disconnect);
        self.push.fold(&o.push);
        self.hop.fold(&o.hop);
    }
}

/// One shard's counters. Plain numbers: the shard that owns them is the only writer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Connections accepted (101 sent).
    pub connections_opened: u64,
    /// Accepted connections that ended.
    pub connections_closed: u64,
    /// Requests sent to the API server.
    pub requests_started: u64,
    /// Requests to the API server that failed (error, non-2xx, timeout).
    pub requests_failed: u64,
    /// Requests to the API server answered 2xx.
    pub requests_succeeded: u64,
    /// WebSocket messages received from clients.
    pub messages_in: u64,
    /// WebSocket messages sent to clients (answers and pushes).
    pub messages_out: u64,
    /// Pushes queued to a client.
    pub pushes_ok: u64,
    /// Pushes for a client that is not connected.
    pub pushes_not_found: u64,
    /// Pushes refused because the client's queue was full.
    pub pushes_full: u64,
    /// Upgrades accepted here and handed to their owning shard.
    pub handoffs: u64,
    /// Control requests forwarded to their owning shard.
    pub forwards: u64,
    /// Disconnect requests that failed after every retry.
    pub disconnects_failed: u64,
    /// Upgrades refused (any status but 101).
    pub upgrades_refused: u64,
    /// Bytes of WebSocket messages received from clients.
    pub bytes_in: u64,
    /// Bytes of WebSocket messages queued to clients.
    pub bytes_out: u64,
    /// Closes by code (close code → count), reported to the API server.
    pub closes: std::collections::BTreeMap<u16, u64>,
    /// Failed requests to the API server by kind (`connect`, `broken`, `timeout`,
    /// `bad_answer`, `status`, `stopping`).
    pub api_errors: std::collections::BTreeMap<&'static str, u64>,
    /// Requests to the API server in flight now (gauge).
    pub requests_in_flight: u64,
    /// Connections to the API server open now (gauge, filled in when a snapshot is taken).
    pub api_connections: u64,
    /// Groups with a member on this shard (gauge, filled in when a snapshot is taken).
    pub groups: u64,
    /// (client, group) memberships on this shard (gauge, filled in when a snapshot is taken).
    pub group_memberships: u64,
    /// Broadcasts this shard carried out for its members.
    pub broadcasts: u64,
    /// Broadcast frames queued to a member.
    pub broadcast_queued: u64,
    /// Broadcast members skipped because their queue was full.
    pub broadcast_full: u64,
    /// Group names in `X-Group-Join` / `X-Group-Leave` skipped: bad, `*`, or beyond
    /// `--max-groups-per-client`.
    pub group_names_skipped: u64,
    /// Upgrades and pushes refused by an edge limit, by reason (`origin`,
    /// `ip_connections`, `ip_rate`, `ip_table_full`, `outbound_budget`).
    pub refused: std::collections::BTreeMap<&'static str, u64>,
    /// TLS handshakes completed (`--tls-cert`).
    pub tls_handshakes: u64,
    /// TLS handshakes that failed, by reason (`protocol`, `certificate`, `closed`,
    /// `timeout`).
    pub tls_failures: std::collections::BTreeMap<&'static str, u64>,
    /// Times a client's next message waited for `--max-message-rate`.
    pub throttled: u64,
    /// Client addresses in this shard's per-address table (gauge).
    pub tracked_addresses: u64,
    /// Bytes queued to this shard's clients (gauge).
    pub outbound_queued_bytes: u64,
    /// This shard's share of `--max-outbound-total` (gauge).
    pub outbound_budget_bytes: u64,
    /// Latency distributions.
    pub latency: Latencies,
}

impl ShardStats {
    /// Connections open now.
    pub fn active(&self) -> u64 {
        self.connections_opened
            .saturating_sub(self.connections_closed)
    }
}

impl Fold for ShardStats {
    fn fold(&mut self, o: &Self) {
        self.connections_opened += o.connections_opened;
        self.connections_closed += o.connections_closed;
        self.requests_started += o.requests_started;
        self.requests_failed += o.requests_failed;
        self.requests_succeeded += o.requests_succeeded;
        self.messages_in += o.messages_in;
        self.messages_out += o.messages_out;
        self.pushes_ok += o.pushes_ok;
        self.pushes_not_found += o.pushes_not_found;
        self.pushes_full += o.pushes_full;
        self.handoffs += o.handoffs;
        self.forwards += o.forwards;
        self.disconnects_failed += o.disconnects_failed;
        self.upgrades_refused += o.upgrades_refused;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        for (code, count) in &o.closes {
            *self.closes.entry(*code).or_default() += count;
        }
        for (kind, count) in &o.api_errors {
            *self.api_errors.entry(kind).or_default() += count;
        }
        self.requests_in_flight += o.requests_in_flight;
        self.api_connections += o.api_connections;
        self.groups += o.groups;
        self.group_memberships += o.group_memberships;
        self.broadcasts += o.broadcasts;
        self.broadcast_queued += o.broadcast_queued;
        self.broadcast_full += o.broadcast_full;
        self.tls_handshakes += o.tls_handshakes;
        for (reason, n) in &o.tls_failures {
            *self.tls_failures.entry(reason).or_default() += n;
        }
        for (reason, n) in &o.refused {
            *self.refused.entry(reason).or_default() += n;
        }
        self.throttled += o.throttled;
        self.tracked_addresses += o.tracked_addresses;
        self.outbound_queued_bytes += o.outbound_queued_bytes;
        self.outbound_budget_bytes += o.outbound_budget_bytes;
        self.group_names_skipped += o.group_names_skipped;
        self.latency.fold(&o.latency);
    }
}
