//! ws2api: a WebSocket-to-HTTP gateway on a thread-per-core design.
//!
//! Every WebSocket event becomes a plain HTTP request to the API server (Connect:
//! `GET`, Message: `POST`, Disconnect: `DELETE`), and the API server pushes to any
//! client with one `POST` to the control listener. See `SPEC.md`-level docs in the
//! README.
//!
//! # Layout
//!
//! - `main.rs`: thin: flags → validated [`config::Config`] → [`server::Gateway`].
//! - [`cli`], [`config`]: clap flags, then a typed and validated configuration, grouped
//!   by who takes it (`limits`, `api`, `control`, `observability`); `config/parse.rs`
//!   holds the value parsers, `config/api_url.rs` the API URL. `config` imports `cli`,
//!   never the other way.
//! - [`client_id`]: the ClientId newtype (validation).
//! - [`http`]: sans-IO request heads and responses of the public and control ports.
//! - [`api`]: the client of the API server: `request.rs` (encoding), `answer.rs`
//!   (the sans-IO answer decoder), `pool.rs` (the per-shard keep-alive pool).
//! - [`ws`]: a client socket after 101: `codec.rs` (frames), `connection.rs` (the
//!   per-connection loop).
//! - [`shard`]: per-core state, accept loops, control routes, the one message
//!   type that crosses shards ([`shard::ShardMsg`]).
//! - [`stats`]: `counters.rs` (per-shard counters and histograms, folded only when
//!   asked), `prometheus.rs` (the reference text and the Prometheus exposition).
//! - [`error`]: errors that know which side failed, mapped to a status in one place.
//! - [`server`]: binding, starting and stopping the shards.
//! - [`demo`]: the built-in demo API of `--demo`.
//! - [`profile`]: the [`profile::Profiler`] of `--cpuprofile` (`cpu.rs`, pprof-rs) and
//!   `--memprofile` (`heap.rs`, the sampling global allocator).
//! - [`logger`]: the stderr logger (RFC 3339 UTC stamps), `--log-level`, and per-shard
//!   rate limits on repeated log lines.
//!
//! The substrate (executors, shard function, mesh, connection table, hand-off) is
//! the `ws2api-shards` crate, which knows nothing of HTTP or WebSocket. The load tools
//! (`ws2api-load`, `ws2api-bench-api`) are the `ws2api-load` crate in `load/`.
//!
//! Dependencies point one way: `server → shard → (http, api, ws, stats) → (client_id, error)`;
//! `tests/layering.rs` fails if `http`, `api` or `ws` imports `shard`, or if `ws2api-shards`
//! names HTTP or WebSocket.

pub mod api;
pub mod cli;
pub mod client_id;
pub mod config;
pub mod demo;
pub mod error;
pub mod http;
pub mod logger;
pub mod profile;
pub mod server;
pub mod shard;
pub mod side;
pub mod stats;
pub mod ws;
