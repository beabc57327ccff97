//! How the counters are shown on the control port: the reference counters as
//! `name value` lines (`GET /`) and the Prometheus text exposition (`GET /metrics`).

use std::fmt::Write;

use super::counters::{Latencies, Latency, ShardStats};

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

/// Quantiles every latency summary reports.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// The `reason` labels of `ws2api_tls_handshake_failures_total`, each shown even at 0.
pub const TLS_FAILURE_REASONS: [&str; 4] = ["protocol", "certificate", "closed", "timeout"];

/// The `reason` labels of `ws2api_refused_total`, each shown even at 0.
pub const REFUSAL_REASONS: [&str; 5] = [
    "origin",
    "ip_connections",
    "ip_rate",
    "ip_table_full",
    "outbound_budget",
];

/// Prometheus text exposition of every shard's counters (control `GET /metrics`).
/// The reference counters appear as process totals under their own names; the rest
/// per shard with a `shard` label under `ws2api_` names.
pub fn render_prometheus(shards: &[ShardStats]) -> String {
    let total: ShardStats = ws2api_shards::stats::fold_all(shards);
    let mut out = String::with_capacity(8192);
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
    // Names kept from the reference implementation so that existing dashboards keep
    // working. They are counters, but typed `untyped`: Prometheus wants counter names
    // to end in `_total`, and the per-shard `ws2api_*_total` counters below are the
    // same numbers under such names.
    for (name, help, value) in reference {
        let _ = writeln!(
            out,
            "# HELP {name} {help} (a counter; name kept from the reference implementation)\n# TYPE {name} untyped\n{name} {value}"
        );
    }
    type Getter = fn(&ShardStats) -> u64;
    let per_shard: [(&str, &str, &str, Getter); 25] = [
        (
            "ws2api_connections_opened_total",
            "counter",
            "WebSocket connections accepted.",
            |s| s.connections_opened,
        ),
        (
            "ws2api_connections_closed_total",
            "counter",
            "Accepted WebSocket connections that ended.",
            |s| s.connections_closed,
        ),
        (
            "ws2api_api_requests_started_total",
            "counter",
            "Requests sent to the API server.",
            |s| s.requests_started,
        ),
        (
            "ws2api_api_requests_failed_total",
            "counter",
            "Requests to the API server that failed.",
            |s| s.requests_failed,
        ),
        (
            "ws2api_api_requests_succeeded_total",
            "counter",
            "Requests to the API server answered 2xx.",
            |s| s.requests_succeeded,
        ),
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
            "Messages sent to clients (answers and pushes).",
            |s| s.messages_out,
        ),
        (
            "ws2api_bytes_in_total",
            "counter",
            "Bytes of messages received from clients.",
            |s| s.bytes_in,
        ),
        (
            "ws2api_bytes_out_total",
            "counter",
            "Bytes of messages queued to clients.",
            |s| s.bytes_out,
        ),
        (
            "ws2api_api_requests_in_flight",
            "gauge",
            "Requests to the API server waiting for an answer.",
            |s| s.requests_in_flight,
        ),
        (
            "ws2api_api_connections",
            "gauge",
            "Connections to the API server open now.",
            |s| s.api_connections,
        ),
        (
            "ws2api_handoffs_total",
            "counter",
            "Upgrades accepted here and handed to their owning shard.",
            |s| s.handoffs,
        ),
        (
            "ws2api_forwards_total",
            "counter",
            "Requests forwarded to the owning shard.",
            |s| s.forwards,
        ),
        (
            "ws2api_tls_handshakes_total",
            "counter",
            "TLS handshakes completed on the public listener.",
            |s| s.tls_handshakes,
        ),
        (
            "ws2api_upgrades_refused_total",
            "counter",
            "Upgrade requests answered with an error status.",
            |s| s.upgrades_refused,
        ),
        (
            "ws2api_disconnects_failed_total",
            "counter",
            "Disconnect requests that failed after every retry.",
            |s| s.disconnects_failed,
        ),
        (
            "ws2api_groups",
            "gauge",
            "Groups with a member on this shard.",
            |s| s.groups,
        ),
        (
            "ws2api_group_memberships",
            "gauge",
            "(client, group) memberships of this shard's clients.",
            |s| s.group_memberships,
        ),
        (
            "ws2api_broadcasts_total",
            "counter",
            "Broadcasts this shard carried out for its members.",
            |s| s.broadcasts,
        ),
        (
            "ws2api_group_names_skipped_total",
            "counter",
            "Names in X-Group-Join / X-Group-Leave answers skipped (bad, '*', or beyond --max-groups-per-client).",
            |s| s.group_names_skipped,
        ),
        (
            "ws2api_throttled_total",
            "counter",
            "Times a client's next message waited for --max-message-rate (its socket not read meanwhile).",
            |s| s.throttled,
        ),
        (
            "ws2api_tracked_addresses",
            "gauge",
            "Client addresses in this shard's per-address table (--max-connections-per-ip, --connect-rate-per-ip).",
            |s| s.tracked_addresses,
        ),
        (
            "ws2api_outbound_queued_bytes",
            "gauge",
            "Bytes queued to this shard's clients, counted against --max-outbound-total.",
            |s| s.outbound_queued_bytes,
        ),
        (
            "ws2api_outbound_budget_bytes",
            "gauge",
            "This shard's share of --max-outbound-total.",
            |s| s.outbound_budget_bytes,
        ),
    ];
    for (name, kind, help, get) in per_shard {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (shard, stats) in shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", get(stats));
        }
    }
    let name = "ws2api_pushes_total";
    let _ = writeln!(
        out,
        "# HELP {name} Pushes through the control listener, by outcome.\n# TYPE {name} counter"
    );
    for (shard, stats) in shards.iter().enumerate() {
        for (outcome, value) in [
            ("ok", stats.pushes_ok),
            ("not_found", stats.pushes_not_found),
            ("queue_full", stats.pushes_full),
        ] {
            let _ = writeln!(
                out,
                "{name}{{shard=\"{shard}\",outcome=\"{outcome}\"}} {value}"
            );
        }
    }
    let name = "ws2api_broadcast_deliveries_total";
    let _ = writeln!(
        out,
        "# HELP {name} Broadcast frames for this shard's members, by outcome.\n# TYPE {name} counter"
    );
    for (shard, stats) in shards.iter().enumerate() {
        for (outcome, value) in [
            ("queued", stats.broadcast_queued),
            ("full", stats.broadcast_full),
        ] {
            let _ = writeln!(
                out,
                "{name}{{shard=\"{shard}\",outcome=\"{outcome}\"}} {value}"
            );
        }
    }
    let name = "ws2api_refused_total";
    let _ = writeln!(
        out,
        "# HELP {name} Upgrades and pushes refused by an edge limit, by reason.\n# TYPE {name} counter"
    );
    for (shard, stats) in shards.iter().enumerate() {
        for reason in REFUSAL_REASONS {
            let value = stats.refused.get(reason).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{name}{{shard=\"{shard}\",reason=\"{reason}\"}} {value}"
            );
        }
    }
    let name = "ws2api_tls_handshake_failures_total";
    let _ = writeln!(
        out,
        "# HELP {name} TLS handshakes that failed before any API request, by reason.\n# TYPE {name} counter"
    );
    for (shard, stats) in shards.iter().enumerate() {
        for reason in TLS_FAILURE_REASONS {
            let value = stats.tls_failures.get(reason).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{name}{{shard=\"{shard}\",reason=\"{reason}\"}} {value}"
            );
        }
    }
    let name = "ws2api_closes_total";
    let _ = writeln!(out, "# HELP {name} Ended connections, by the close code reported to the API server.\n# TYPE {name} counter");
    for (shard, stats) in shards.iter().enumerate() {
        for (code, value) in &stats.closes {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\",code=\"{code}\"}} {value}");
        }
    }
    let name = "ws2api_api_errors_total";
    let _ = writeln!(
        out,
        "# HELP {name} Failed requests to the API server, by kind.\n# TYPE {name} counter"
    );
    for (shard, stats) in shards.iter().enumerate() {
        for (kind, value) in &stats.api_errors {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\",kind=\"{kind}\"}} {value}");
        }
    }
    let name = "ws2api_api_request_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time of requests to the API server, by event.\n# TYPE {name} summary"
    );
    for (shard, stats) in shards.iter().enumerate() {
        let l = &stats.latency;
        for (event, latency) in [
            ("connect", &l.connect),
            ("message", &l.message),
            ("disconnect", &l.disconnect),
        ] {
            summary(
                &mut out,
                name,
                &format!("shard=\"{shard}\",event=\"{event}\""),
                latency,
            );
        }
    }
    type Pick = fn(&Latencies) -> &Latency;
    let summaries: [(&str, &str, Pick); 2] = [
        (
            "ws2api_push_delivery_seconds",
            "Time from a push request arriving to its frame queued on the owning shard.",
            |l| &l.push,
        ),
        (
            "ws2api_mesh_hop_seconds",
            "Time of one message between shards.",
            |l| &l.hop,
        ),
    ];
    for (name, help, get) in summaries {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
        for (shard, stats) in shards.iter().enumerate() {
            summary(
                &mut out,
                name,
                &format!("shard=\"{shard}\""),
                get(&stats.latency),
            );
        }
    }
    out
}

fn summary(out: &mut String, name: &str, labels: &str, latency: &Latency) {
    for q in QUANTILES {
        let seconds = latency.quantile_us(q) as f64 / 1e6;
        let _ = writeln!(out, "{name}{{{labels},quantile=\"{q}\"}} {seconds}");
    }
    let _ = writeln!(
        out,
        "{name}_sum{{{labels}}} {}",
        latency.sum_us() as f64 / 1e6
    );
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", latency.count());
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
        assert!(text.contains("# TYPE connections_opened untyped\nconnections_opened 3\n"));
        assert!(text.contains("ws2api_connections_opened_total{shard=\"1\"} 1\n"));
        assert!(text.contains("ws2api_connections_active{shard=\"0\"} 2\n"));
        assert!(text.contains("ws2api_connections_active{shard=\"1\"} 0\n"));
        assert!(text.contains("ws2api_messages_in_total{shard=\"0\"} 5\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn every_metric_the_grafana_dashboard_uses_is_exposed() {
        let dashboard = include_str!("../../docs/grafana-dashboard.json");
        let mut stats = ShardStats::default();
        stats.closes.insert(1000, 1);
        let text = render_prometheus(&[stats.clone(), stats]);
        let exposed: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(['{', ' ']).next().unwrap())
            .collect();
        let mut used = 0;
        for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let known = word.starts_with("ws2api_")
                || word.starts_with("requests_")
                || word.starts_with("connections_");
            if known && word != "ws2api" {
                used += 1;
                assert!(
                    exposed.contains(word),
                    "the dashboard uses {word}, which /metrics does not expose"
                );
            }
        }
        assert!(
            used > 10,
            "the dashboard should chart the gateway's metrics"
        );
    }
}
