//! Limits for a public edge (SPEC "Limits for a public edge"), as sans-IO pieces the
//! shards apply: which browser origins may open a socket ([`origin`]), the token
//! bucket behind every rate ([`rate`]), and the per-address table of connections and
//! connect rates that lives with the shard owning the address ([`addresses`]).
//! The process-wide outbound budget is `ws::budget`, beside the queues it bounds.

pub mod addresses;
pub mod origin;
pub mod rate;

pub use addresses::{Addresses, Refusal};
pub use origin::{AllowedOrigins, OriginError};
pub use rate::{Bucket, Rate};
