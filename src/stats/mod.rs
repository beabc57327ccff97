//! Per-shard counters, kept by each shard alone and added up only when asked.
//!
//! The five reference counters keep the names of the reference implementation, so
//! dashboards built for it keep working; the rest are per-shard gauges, counters and
//! latency histograms (hdrhistogram, 2 significant digits, microseconds).
//!
//! `counters.rs` owns what a shard keeps ([`ShardStats`], [`Latency`], their `Fold`);
//! `prometheus.rs` how they are shown (the reference text and the Prometheus exposition).

mod counters;
mod prometheus;

pub use counters::{Latencies, Latency, ShardStats};
pub use prometheus::{render_prometheus, render_reference, QUANTILES};
