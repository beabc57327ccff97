//! The periodic stats line of `--stats-interval`: shard 0 folds every shard's counters
//! once per interval and writes one CSV line, `seconds,connections,rps,total`, as the
//! reference implementation logged (messages per second from clients, and their total).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::Shard;
use crate::stats::ShardStats;

/// The header of the CSV.
pub const HEADER: &str = "seconds,connections,rps,total";

/// One CSV line from two folded snapshots `elapsed` apart.
pub fn line(seconds: u64, now: &ShardStats, before: &ShardStats, elapsed: Duration) -> String {
    let delta = now.messages_in.saturating_sub(before.messages_in);
    let rps = delta as f64 / elapsed.as_secs_f64().max(1e-9);
    format!("{seconds},{},{rps:.0},{}", now.active(), now.messages_in)
}

fn open(path: Option<&Path>) -> Box<dyn Write> {
    match path {
        None => Box::new(std::io::stderr()),
        Some(path) => match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => Box::new(file),
            Err(e) => {
                log::error!(
                    "--stats-file {}: {e}; writing stats to stderr",
                    path.display()
                );
                Box::new(std::io::stderr())
            }
        },
    }
}

/// Runs on shard 0 until the shard stops.
pub async fn run(shard: Rc<Shard>, interval: Duration) {
    let mut out = open(shard.config.stats_file.as_deref());
    let _ = writeln!(out, "{HEADER}");
    let start = Instant::now();
    let mut before = ShardStats::default();
    let mut last = start;
    loop {
        glommio::timer::sleep(interval).await;
        let all = shard.gather_stats().await;
        let now: ShardStats = ws2api_shards::stats::fold_all(&all);
        let at = Instant::now();
        let _ = writeln!(
            out,
            "{}",
            line(start.elapsed().as_secs(), &now, &before, at - last)
        );
        let _ = out.flush();
        before = now;
        last = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_seconds_connections_rate_and_total() {
        let before = ShardStats {
            messages_in: 100,
            ..Default::default()
        };
        let now = ShardStats {
            connections_opened: 12,
            connections_closed: 2,
            messages_in: 300,
            ..Default::default()
        };
        assert_eq!(
            line(20, &now, &before, Duration::from_secs(10)),
            "20,10,20,300"
        );
        assert_eq!(
            HEADER.split(',').count(),
            line(0, &now, &now, Duration::ZERO).split(',').count()
        );
    }
}
