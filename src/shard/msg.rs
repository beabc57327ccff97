//! The one message type that crosses shards.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use ws2api_shards::Handoff;

use crate::client_id::ClientId;
use crate::edge::Refusal;
use crate::group::{Audience, GroupName};
use crate::http::upgrade::Upgrade;
use crate::stats::ShardStats;
use crate::tls::TlsLink;
use crate::transport::Transport;

/// Everything one shard may ask of another. Plain data (`Send`): no `Rc`, no stream.
#[derive(Debug)]
pub enum ShardMsg {
    /// An upgrade request whose ClientId this shard owns, checked by the shard that read
    /// it, with its socket and the bytes the client sent behind the request head.
    Adopt {
        /// The socket, with the bytes behind the head.
        socket: Handoff,
        /// The request, parsed once (boxed: the other messages stay small).
        upgrade: Box<Upgrade>,
        /// The client address counted for it in the per-address table, whose count
        /// the adopting shard now holds.
        address: Option<IpAddr>,
        /// TLS or not, and the client's certificate.
        transport: Transport,
        /// The TLS session, with `--tls-cert`, boxed as the connection will keep it.
        link: Option<Box<RefCell<TlsLink>>>,
    },
    /// A connection counted for `ip` (on the receiving shard, which owns the address)
    /// ended. No reply.
    Release {
        /// The client address.
        ip: IpAddr,
    },
    /// A request for the owner of a client (or for any shard's stats); answer with `Reply`.
    Call {
        /// The asking shard, where the reply goes.
        from: usize,
        /// The number the asker gave this call.
        call: u64,
        /// What to do.
        op: Op,
        /// When it was sent (for the hop latency).
        sent: Instant,
    },
    /// The answer to a `Call`.
    Reply {
        /// The number of the call answered.
        call: u64,
        /// The answer.
        reply: OpReply,
        /// When it was sent (for the hop latency).
        sent: Instant,
    },
}

/// An operation the owning shard carries out.
#[derive(Debug)]
pub enum Op {
    /// Queue `payload` to `client` (binary frame if `binary`).
    Push {
        /// The receiving client.
        client: ClientId,
        /// The message.
        payload: Vec<u8>,
        /// Binary frame instead of text.
        binary: bool,
        /// When the push request arrived (for the delivery latency).
        received: Instant,
    },
    /// Close `client` with `code`.
    Close {
        /// The client to close.
        client: ClientId,
        /// The close code.
        code: u16,
    },
    /// Describe `client`.
    Info {
        /// The client to describe.
        client: ClientId,
    },
    /// This shard's counters.
    Stats,
    /// Add `client` to `group`.
    Join {
        /// The client (owned by the receiving shard).
        client: ClientId,
        /// The group.
        group: GroupName,
    },
    /// Remove `client` from `group`.
    Leave {
        /// The client (owned by the receiving shard).
        client: ClientId,
        /// The group.
        group: GroupName,
    },
    /// Queue `payload` to every member of `audience` on the receiving shard, but `except`.
    /// One such message goes to each shard; the payload is shared, not copied.
    Broadcast {
        /// The group, or everyone.
        audience: Audience,
        /// The message.
        payload: Arc<[u8]>,
        /// Binary frame instead of text.
        binary: bool,
        /// A client that does not get it.
        except: Option<ClientId>,
    },
    /// How many of the receiving shard's clients are in `audience`.
    Count {
        /// The group, or everyone.
        audience: Audience,
    },
    /// Count a new connection from `ip` (the receiving shard owns the address).
    Admit {
        /// The client address.
        ip: IpAddr,
    },
    /// Whether the receiving shard's outbound budget has room (`/readyz`).
    Ready,
}

/// The outcome of an [`Op`].
#[derive(Debug)]
pub enum OpReply {
    /// Outcome of a push or close.
    Delivery(Delivery),
    /// A client's description as JSON, if connected.
    Info(Option<String>),
    /// A shard's counters.
    Stats(Box<ShardStats>),
    /// Outcome of a join or leave.
    Membership(Membership),
    /// Outcome of a broadcast on one shard: members it was queued for, members skipped
    /// because their queue was full.
    Broadcast {
        /// Queued.
        queued: u64,
        /// Skipped for a full queue.
        full: u64,
    },
    /// Members counted on one shard.
    Count(u64),
    /// Counted, or refused by a per-address limit.
    Admission(Result<(), Refusal>),
    /// The shard's outbound budget has room for one client's full queue.
    Ready(bool),
}

/// What happened to a join or leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Joined or left (also when it was a member already, or was not one).
    Done,
    /// No such client on its owning shard.
    NotFound,
    /// The client is in `--max-groups-per-client` groups already.
    AtCap,
}

/// What happened to a push or close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued (push) or closing (close).
    Done,
    /// No such client on its owning shard.
    NotFound,
    /// The client's outbound queue is full.
    Full,
}
