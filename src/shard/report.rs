//! What the shards report about themselves without being asked over HTTP:
//!
//! - `--stats-interval`: shard 0 folds every shard's counters once per interval and
//!   writes one CSV line, `seconds,connections,rps,total,p50_ms,p99_ms`, as the
//!   reference implementation logged (messages per second from clients, their total),
//!   then the API server's message latency over that interval;
//! - `SIGUSR1`: shard 0 prints a table with one row per shard and a total row.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::Shard;
use crate::stats::ShardStats;

/// The header of the CSV.
pub const HEADER: &str = "seconds,connections,rps,total,p50_ms,p99_ms";

fn per_second(now: u64, before: u64, elapsed: Duration) -> f64 {
    now.saturating_sub(before) as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// One CSV line from two folded snapshots `elapsed` apart.
pub fn line(seconds: u64, now: &ShardStats, before: &ShardStats, elapsed: Duration) -> String {
    let latency = now.latency.message.since(&before.latency.message);
    format!(
        "{seconds},{},{:.0},{},{:.3},{:.3}",
        now.active(),
        per_second(now.messages_in, before.messages_in, elapsed),
        now.messages_in,
        ms(latency.quantile_us(0.5)),
        ms(latency.quantile_us(0.99)),
    )
}

/// The SIGUSR1 table: one row per shard and a total, rates over `elapsed`.
pub fn table(now: &[ShardStats], before: &[ShardStats], elapsed: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6} {:>11} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "shard",
        "connections",
        "in/s",
        "out/s",
        "inflight",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "forwards"
    );
    let total_now: ShardStats = ws2api_shards::stats::fold_all(now);
    let total_before: ShardStats = ws2api_shards::stats::fold_all(before);
    let empty = ShardStats::default();
    let rows = now
        .iter()
        .enumerate()
        .map(|(i, s)| (i.to_string(), s, before.get(i).unwrap_or(&empty)))
        .chain(std::iter::once((
            "total".to_string(),
            &total_now,
            &total_before,
        )));
    for (name, s, b) in rows {
        let latency = &s.latency.message;
        let _ = writeln!(
            out,
            "{:>6} {:>11} {:>10.0} {:>10.0} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9}",
            name,
            s.active(),
            per_second(s.messages_in, b.messages_in, elapsed),
            per_second(s.messages_out, b.messages_out, elapsed),
            s.requests_in_flight,
            ms(latency.quantile_us(0.5)),
            ms(latency.quantile_us(0.99)),
            ms(latency.quantile_us(0.999)),
            s.forwards,
        );
    }
    out
}

/// Prints the SIGUSR1 table to stderr; `last` keeps the previous dump for rates.
pub async fn dump(shard: Rc<Shard>, last: Rc<std::cell::RefCell<(Instant, Vec<ShardStats>)>>) {
    let now = shard.gather_stats().await;
    let at = Instant::now();
    let (then, before) = last.replace((at, now.clone()));
    eprint!("{}", table(&now, &before, at - then));
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

/// Writes the `--stats-interval` lines; runs on shard 0 until the shard stops.
pub async fn run(shard: Rc<Shard>, interval: Duration) {
    let mut out = open(shard.config.observability.stats_file.as_deref());
    let _ = writeln!(out, "{HEADER}");
    let _ = out.flush();
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

    fn stats(opened: u64, closed: u64, messages_in: u64, latencies_ms: &[u64]) -> ShardStats {
        let mut s = ShardStats {
            connections_opened: opened,
            connections_closed: closed,
            messages_in,
            messages_out: messages_in,
            ..Default::default()
        };
        for ms in latencies_ms {
            s.latency.message.record(Duration::from_millis(*ms));
        }
        s
    }

    #[test]
    fn a_line_has_seconds_connections_rate_total_and_interval_latency() {
        let before = stats(0, 0, 100, &[100, 100]);
        let now = stats(12, 2, 300, &[100, 100, 2, 2, 2, 4]);
        let line = line(20, &now, &before, Duration::from_secs(10));
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), HEADER.split(',').count());
        assert_eq!(&fields[..4], ["20", "10", "20", "300"]);
        // Only the four observations of this interval count: p50 2 ms, p99 4 ms
        // (within the histogram's 1% precision).
        assert_close(fields[4], 2.0);
        assert_close(fields[5], 4.0);
    }

    #[test]
    fn the_table_has_a_row_per_shard_and_a_total() {
        let before = vec![stats(0, 0, 0, &[]), stats(0, 0, 0, &[])];
        let now = vec![stats(5, 1, 40, &[1]), stats(3, 0, 20, &[3])];
        let text = table(&now, &before, Duration::from_secs(2));
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0][0], "shard");
        assert_eq!(&rows[1][..4], ["0", "4", "20", "20"]);
        assert_eq!(&rows[2][..4], ["1", "3", "10", "10"]);
        assert_eq!(&rows[3][..4], ["total", "7", "30", "30"]);
        assert_close(rows[3][5], 1.0);
    }

    fn assert_close(field: &str, want: f64) {
        let got: f64 = field.parse().unwrap();
        assert!(
            (got - want).abs() <= want * 0.01,
            "{got} is not {want} within 1%"
        );
    }
}
