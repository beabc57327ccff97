//! The liveness sweep: one timer per shard that ticks every connection once per
//! `--ping-interval` (pinging the silent, closing the dead and the stalled), in slices
//! so that a shard's idle connections are never all pinged in the same instant.

use std::rc::Rc;
use std::time::Duration;

use super::Shard;
use crate::ws::{Conn, Liveness};

/// Sweep period when `--ping-interval` is off (the outbound-queue check still runs).
const SWEEP_WITHOUT_PINGS: Duration = Duration::from_secs(30);

/// The sweep visits the table in this many slices per interval, so that 125k idle
/// connections of a shard are not all pinged in the same instant.
const SWEEP_SLICES: usize = 10;

/// One liveness tick for every connection of the shard per interval: O(1) per
/// connection per interval, one timer per shard (no timer per socket). Each
/// `interval / SWEEP_SLICES` it ticks the connections of one slice of the table.
pub async fn sweep(shard: Rc<Shard>) {
    let ping = shard.config.limits.ping_interval;
    let interval = ping.unwrap_or(SWEEP_WITHOUT_PINGS);
    let (mut timed_out, mut stalled) = (0u64, 0u64);
    for step in 0usize.. {
        glommio::timer::sleep(interval / SWEEP_SLICES as u32).await;
        if shard.draining() {
            return;
        }
        let part = step % SWEEP_SLICES;
        let conns: Vec<Rc<Conn>> = shard
            .table
            .borrow()
            .slice(part, SWEEP_SLICES)
            .map(|(_, entry)| entry.conn.clone())
            .collect();
        for conn in conns {
            match conn.liveness_tick(ping.is_some()) {
                Liveness::TimedOut => timed_out += 1,
                Liveness::Stalled => stalled += 1,
                Liveness::Alive | Liveness::Pinged => {}
            }
        }
        if part == SWEEP_SLICES - 1 && timed_out + stalled > 0 {
            log::info!(
                "shard {}: closed {timed_out} connections silent for two ping intervals, {stalled} not reading their queue",
                shard.id
            );
            (timed_out, stalled) = (0, 0);
        }
    }
}
