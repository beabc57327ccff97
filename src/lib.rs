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
//!   by who takes it (`limits`, `edge`, `api`, `control`, `observability`); `config/parse.rs`
//!   holds the value parsers, `config/api_url.rs` the API URL. `config` imports `cli`,
//!   never the other way.
//! - [`client_id`]: the ClientId newtype (validation).
//! - [`side`]: which side failed (client, API server, the gateway), as every error says.
//! - [`transport`]: how a client reached the gateway (TLS or not, its certificate),
//!   which the API server hears in `X-Forwarded-Proto` and `X-Client-Cert-*`.
//! - [`http`]: sans-IO request heads, the upgrade checked once (`upgrade.rs`), PROXY
//!   headers and responses of the public and control ports; `read.rs` reads a head
//!   within a bound and has its own `ReadError`.
//! - [`api`]: the client of the API server: `contract.rs` (the request of each event
//!   and what its answer means), `request.rs` (encoding), `answer.rs` (the sans-IO
//!   answer decoder), `pool.rs` (the per-shard keep-alive pool, `ApiError`).
//! - [`ws`]: a client socket after 101: `codec.rs` (frames), `connection.rs` (the
//!   per-connection loop and the in-flight guard), `outbox.rs` (its queue, written
//!   straight to the socket when it can be), `budget.rs` (the shard's share of
//!   `--max-outbound-total`).
//! - [`edge`]: sans-IO limits for a public edge: `origin.rs` (`--allowed-origins`),
//!   `rate.rs` (the bucket behind every rate), `addresses.rs` (the per-address table a
//!   shard keeps for the addresses it owns).
//! - [`shard`]: per-core state (`state.rs`), the operations it carries out for others
//!   (`ops.rs`), accept loops, control routes, the liveness sweep, the one message
//!   type that crosses shards ([`shard::ShardMsg`]).
//! - [`stats`]: `counters.rs` (per-shard counters and histograms, folded only when
//!   asked), `prometheus.rs` (the reference text and the Prometheus exposition).
//! - [`error`]: the gateway's error for a handshake or control request, gathering the
//!   layers' errors; every status it answers with is decided in `Error::status`.
//! - [`server`]: binding, starting and stopping the shards.
//! - [`demo`]: the built-in demo API of `--demo`.
//! - [`profile`]: the [`profile::Profiler`] of `--cpuprofile` (`cpu.rs`, pprof-rs) and
//!   `--memprofile` (`heap.rs`, the sampling global allocator).
//! - [`logger`]: the stderr logger (RFC 3339 UTC stamps), `--log-level`, and per-shard
//!   rate limits on repeated log lines.
//!
//! The substrate (executors, shard function, mesh, connection table, hand-off, the gate
//! an orderly stop waits on) is
//! the `ws2api-shards` crate, which knows nothing of HTTP or WebSocket. The load tools
//! (`ws2api-load`, `ws2api-bench-api`) are the `ws2api-load` crate in `load/`.
//!
//! Dependencies point one way: `main → server → shard → (error, stats) → (api → http, ws)
//! → (config → cli, client_id, side, logger) → edge`; `tests/layering.rs` fails if `http`,
//! `api`, `ws` or `edge` imports `shard` or `error`, if `edge` imports anything of the
//! gateway, or if `ws2api-shards` names HTTP or WebSocket.

pub mod api;
pub mod cli;
pub mod client_id;
pub mod config;
pub mod demo;
pub mod edge;
pub mod error;
pub mod group;
pub mod http;
pub mod logger;
pub mod profile;
pub mod server;
pub mod shard;
pub mod side;
pub mod stats;
pub mod tls;
pub mod transport;
pub mod ws;
