//! A client socket after 101: the sans-IO frame codec, the per-connection loop, its
//! outbound queue and the shard's budget for all such queues.

pub mod budget;
pub mod codec;
pub mod connection;
pub mod outbox;

pub use codec::{WsDecoder, WsError, WsEvent};
pub use connection::{Conn, Ended, InFlight, Liveness, Message, PushError};
