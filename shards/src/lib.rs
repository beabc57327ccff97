//! ws2api-shards: the thread-per-core substrate of ws2api.
//!
//! It knows nothing of HTTP or WebSocket: it runs executors, decides which shard owns a
//! key, carries messages between shards, keeps a shard's connections, moves a socket to
//! its owner and adds up per-shard statistics.
//!
//! # Layout
//!
//! - [`runtime`]: one glommio executor per shard, pinned when cores allow.
//! - [`shard_fn`]: the pure, stable shard function (`fnv1a64 % shards`).
//! - [`mesh`]: the bounded channel from every shard to every other, built once.
//! - [`calls`]: pairing a request sent over the mesh with its reply.
//! - [`handoff`]: a socket and its already-read bytes on their way to the owner.
//! - [`gate`]: counting a shard's live work, so an orderly stop can wait for it.
//! - [`listener`]: one `SO_REUSEPORT` listening socket per shard, bound before start.
//! - [`table`]: the shard-local generational table of connections, indexed by name.
//! - [`wake`]: waking executors from a plain thread (signals).
//! - [`stats`]: folding per-shard statistics by addition, only when asked.

pub mod calls;
pub mod gate;
pub mod handoff;
pub mod listener;
pub mod mesh;
pub mod runtime;
pub mod shard_fn;
pub mod stats;
pub mod table;
pub mod wake;

pub use calls::Calls;
pub use gate::{Gate, Pass};
pub use handoff::Handoff;
pub use listener::ListenerGroup;
pub use mesh::{Mesh, MeshPlan, MeshSender, PeerGone};
pub use runtime::{Runtime, RuntimeSpec};
pub use shard_fn::shard_of;
pub use stats::Fold;
pub use table::{Key, Table};
