//! Per-shard counters, kept by each shard alone and added up only when asked.
//!
//! The five reference counters keep the names of the reference implementation, so
//! dashboards built for it keep working; the rest are per-shard gauges and counters.

use std::fmt::Write;

use ws2api_shards::Fold;

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
    }
}

/// The reference counters, one `name value` per line (control `GET /`).
pub fn render_reference(total: &ShardStats) -> String {
    format!(
        "connections_opened {}\nconnections_closed {}\nrequests_started {}\nrequests_failed {}\nrequests_succeeded {}\n",
        total.connections_opened,
        total.connections_closed,
        total.requests_started,
        total.requests_failed,
        total.requests_succeeded
    )
}

/// Prometheus text exposition of every shard's counters (control `GET /metrics`).
/// The reference counters appear as process totals under their own names, then per
/// shard with a `shard` label under `ws2api_` names.
pub fn render_prometheus(shards: &[ShardStats]) -> String {
    let total: ShardStats = ws2api_shards::stats::fold_all(shards);
    let mut out = String::with_capacity(4096);
    let reference: [(&str, &str, u64); 5] = [
        (
            "connections_opened",
            "WebSocket connections accepted.",
            total.connections_opened,
        ),
        (
            "connections_closed",
            "Accepted WebSocket connections that ended.",
            total.connections_closed,
        ),
        (
            "requests_started",
            "Requests sent to the API server.",
            total.requests_started,
        ),
        (
            "requests_failed",
            "Requests to the API server that failed.",
            total.requests_failed,
        ),
        (
            "requests_succeeded",
            "Requests to the API server answered 2xx.",
            total.requests_succeeded,
        ),
    ];
    for (name, help, value) in reference {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    type Getter = fn(&ShardStats) -> u64;
    let per_shard: [(&str, &str, &str, Getter); 9] = [
        (
            "ws2api_connections_active",
            "gauge",
            "WebSocket connections open now.",
            ShardStats::active,
        ),
        (
            "ws2api_messages_in_total",
            "counter",
            "Messages received from clients.",
            |s| s.messages_in,
        ),
        (
            "ws2api_messages_out_total",
            "counter",
            "Messages sent to clients.",
            |s| s.messages_out,
        ),
        (
            "ws2api_pushes_ok_total",
            "counter",
            "Pushes queued to a client.",
            |s| s.pushes_ok,
        ),
        (
            "ws2api_pushes_not_found_total",
            "counter",
            "Pushes to a client not connected.",
            |s| s.pushes_not_found,
        ),
        (
            "ws2api_pushes_queue_full_total",
            "counter",
            "Pushes refused because the client's queue was full.",
            |s| s.pushes_full,
        ),
        (
            "ws2api_handoffs_total",
            "counter",
            "Upgrades handed to their owning shard.",
            |s| s.handoffs,
        ),
        (
            "ws2api_forwards_total",
            "counter",
            "Control requests forwarded to their owning shard.",
            |s| s.forwards,
        ),
        (
            "ws2api_disconnects_failed_total",
            "counter",
            "Disconnect requests that failed after every retry.",
            |s| s.disconnects_failed,
        ),
    ];
    for (name, kind, help, get) in per_shard {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (shard, stats) in shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", get(stats));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_counters_keep_their_names_and_order() {
        let stats = ShardStats {
            connections_opened: 3,
            connections_closed: 1,
            requests_started: 9,
            requests_failed: 2,
            requests_succeeded: 7,
            ..Default::default()
        };
        assert_eq!(
            render_reference(&stats),
            "connections_opened 3\nconnections_closed 1\nrequests_started 9\nrequests_failed 2\nrequests_succeeded 7\n"
        );
    }

    #[test]
    fn prometheus_text_totals_and_labels_each_shard() {
        let a = ShardStats {
            connections_opened: 2,
            messages_in: 5,
            ..Default::default()
        };
        let b = ShardStats {
            connections_opened: 1,
            connections_closed: 1,
            ..Default::default()
        };
        let text = render_prometheus(&[a, b]);
        assert!(text.contains("# TYPE connections_opened counter\nconnections_opened 3\n"));
        assert!(text.contains("ws2api_connections_active{shard=\"0\"} 2\n"));
        assert!(text.contains("ws2api_connections_active{shard=\"1\"} 0\n"));
        assert!(text.contains("ws2api_messages_in_total{shard=\"0\"} 5\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
