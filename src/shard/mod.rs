//! Per-core state and its life: one [`Shard`] per executor owns the connections whose
//! ClientId hashes to it, its own API pool and counters, and talks to other shards
//! only through [`ShardMsg`] on the mesh.
//!
//! Stop order (fixed): stop accepting, close every client with 1001, wait (bounded by
//! `--shutdown-timeout`) until every connection has sent its Disconnect, close the
//! API pool, leave the mesh.
//!
//! # Layout
//!
//! - this file: what a shard is given at start, and its life in the fixed stop order;
//! - [`state`]: the [`Shard`] itself;
//! - [`groups`]: which of its connections are in which group;
//! - [`msg`]: the one message type that crosses shards;
//! - [`ops`]: the operations a shard carries out for others, and the mesh handler;
//! - [`public`], [`session`]: the public listener, then one connection's life;
//! - [`admission`]: the edge's checks of a new connection (origin, per-address
//!   limits) and the slot an admitted connection holds;
//! - [`control`]: the control listener, and [`group_control`] its group routes;
//! - [`liveness`]: the per-shard sweep of pings, timeouts and stalls;
//! - [`report`]: `--stats-interval` lines and the `SIGUSR1` table.

pub mod admission;
pub mod control;
pub mod group_control;
pub mod groups;
pub mod liveness;
pub mod msg;
pub mod ops;
pub mod public;
pub mod report;
pub mod session;
pub mod state;
pub mod wire;

use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use ws2api_shards::listener;
use ws2api_shards::wake::Wakeup;
use ws2api_shards::MeshPlan;

use crate::config::Config;
use crate::tls::{Certs, ShardCerts};
pub use msg::{Delivery, Membership, Op, OpReply, ShardMsg};
pub use state::{Client, Shard};

/// Size of the per-shard read buffer every connection of the shard reads into.
pub const READ_BUFFER: usize = 64 * 1024;

/// Messages a mesh channel between two shards holds before a sender waits.
pub const MESH_CAPACITY: usize = 1024;

/// Wakeup bytes sent from the starting thread to every shard.
pub mod wake_byte {
    /// Begin the orderly stop.
    pub const STOP: u8 = b'T';
    /// Print this shard's stats to stderr.
    pub const DUMP: u8 = b'U';
}

/// What one shard is given at start.
pub struct ShardStart {
    /// Shard index.
    pub id: usize,
    /// The configuration.
    pub config: Arc<Config>,
    /// The mesh, to join.
    pub plan: MeshPlan<ShardMsg>,
    /// This shard's public listening socket.
    pub public: OwnedFd,
    /// This shard's control listening socket.
    pub control: OwnedFd,
    /// Where stop and dump requests arrive.
    pub wakeup: Wakeup,
    /// Process start time, part of every connection id.
    pub boot: u64,
    /// The TLS configuration, shared with the `SIGHUP` reload, with `--tls-cert`.
    pub certs: Option<Arc<Certs>>,
}

/// Runs one shard until its orderly stop completes.
pub async fn run(start: ShardStart) {
    let ShardStart {
        id,
        config,
        plan,
        public,
        control,
        wakeup,
        boot,
        certs,
    } = start;
    let mut mesh = plan.join(id).await;
    let mut shard = Shard::new(id, config.clone(), mesh.sender(), boot);
    shard.tls = certs.map(ShardCerts::new);
    let shard = Rc::new(shard);
    {
        let shard = shard.clone();
        mesh.serve(move |from, msg| shard.on_mesh(from, msg));
    }
    let public_task = glommio::spawn_local(public::accept_loop(
        shard.clone(),
        listener::into_listener(public),
    ));
    let control_task = glommio::spawn_local(control::accept_loop(
        shard.clone(),
        listener::into_listener(control),
    ));
    let liveness_task = glommio::spawn_local(liveness::sweep(shard.clone()));
    let forget_task = glommio::spawn_local(admission::forget_idle_addresses(shard.clone()));
    let report_task = match config.observability.stats_interval {
        Some(interval) if id == 0 => {
            Some(glommio::spawn_local(report::run(shard.clone(), interval)))
        }
        _ => None,
    };
    let last_dump = Rc::new(RefCell::new((Instant::now(), Vec::new())));
    let mut wakeups = match wakeup.listen() {
        Ok(w) => Some(w),
        Err(e) => {
            log::error!("shard {id}: cannot listen for stop requests: {e}");
            None
        }
    };
    loop {
        let byte = match wakeups.as_mut() {
            Some(w) => w.next().await,
            None => None,
        };
        match byte {
            Some(wake_byte::DUMP) if id == 0 => {
                glommio::spawn_local(report::dump(shard.clone(), last_dump.clone())).detach();
            }
            Some(wake_byte::DUMP) => {}
            Some(wake_byte::STOP) | None => break,
            Some(_) => {}
        }
    }
    log::debug!("shard {id}: stopping");
    shard.begin_drain();
    public_task.await;
    let drained = glommio::timer::timeout(config.shutdown_timeout, async {
        shard.gate.idle().await;
        Ok(())
    })
    .await;
    if drained.is_err() {
        log::warn!(
            "shard {id}: {} connections still open after --shutdown-timeout {:?}",
            shard.gate.live(),
            config.shutdown_timeout
        );
    }
    drop(control_task);
    drop(liveness_task);
    drop(forget_task);
    drop(report_task);
    shard.api.close();
    shard.calls.abandon_all();
    shard.mesh.close();
}
