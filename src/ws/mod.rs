//! A client socket after 101: the sans-IO frame codec and the per-connection loop.

pub mod codec;
pub mod connection;
pub mod outbox;

pub use codec::{WsDecoder, WsError, WsEvent};
pub use connection::{Conn, Ended, InFlight, Liveness, Message, PushError};
