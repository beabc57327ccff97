//! What a worker tells the parent, one text line per second on its stdout, and how the
//! parent folds the lines of all workers into one CSV row (counters by `+`, histograms
//! by `add`).
//!
//! `S <second> <connections> <sent> <received> <pushes> <errors> <broadcasts> <deliveries> <value>:<count>,...`
//! `E <name>=<count> ...` (the worker's error totals by kind, sent once at its end)
//! `B <n> <count> <first_us> <last_us>` (broadcast n: deliveries to this worker's clients,
//! first and last arrival in µs after t0; once per broadcast at the worker's end)
//! `P <n> <sent_us> <status> <queued> <full>` (broadcast n as the broadcasting worker
//! POSTed it: send time, answer status, the gateway's `queued` and `full` counts)

use hdrhistogram::Histogram;

/// Round trips are recorded in microseconds, up to one minute, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// One second of one worker, or (folded) of all workers.
#[derive(Debug, Clone)]
pub struct Second {
    pub second: u64,
    /// Open WebSocket connections at the end of the second (a gauge).
    pub connections: u64,
    pub sent: u64,
    pub received: u64,
    /// Pushes that the control listener accepted (`200`) in this second.
    pub pushes: u64,
    pub errors: u64,
    /// Broadcasts that the control listener (or Pushpin's publish) accepted in this second.
    pub broadcasts: u64,
    /// Broadcast frames that reached a client in this second (one per member).
    pub deliveries: u64,
    pub rtt_us: Histogram<u64>,
}

impl Second {
    pub fn empty(second: u64) -> Second {
        Second {
            second,
            connections: 0,
            sent: 0,
            received: 0,
            pushes: 0,
            errors: 0,
            broadcasts: 0,
            deliveries: 0,
            rtt_us: new_histogram(),
        }
    }

    pub fn to_line(&self) -> String {
        let mut line = format!(
            "S {} {} {} {} {} {} {} {} ",
            self.second,
            self.connections,
            self.sent,
            self.received,
            self.pushes,
            self.errors,
            self.broadcasts,
            self.deliveries
        );
        let mut first = true;
        for v in self.rtt_us.iter_recorded() {
            if !first {
                line.push(',');
            }
            first = false;
            line.push_str(&format!("{}:{}", v.value_iterated_to(), v.count_at_value()));
        }
        if first {
            line.push('-');
        }
        line
    }

    /// Parses the fields after `S `.
    pub fn parse(rest: &str) -> Result<Second, String> {
        let f: Vec<&str> = rest.split(' ').collect();
        if f.len() != 9 {
            return Err(format!("bad report line: {rest}"));
        }
        let n = |i: usize| {
            f[i].parse::<u64>()
                .map_err(|e| format!("bad field {i}: {e}"))
        };
        let mut s = Second::empty(n(0)?);
        s.connections = n(1)?;
        s.sent = n(2)?;
        s.received = n(3)?;
        s.pushes = n(4)?;
        s.errors = n(5)?;
        s.broadcasts = n(6)?;
        s.deliveries = n(7)?;
        if f[8] != "-" {
            for pair in f[8].split(',') {
                let (v, c) = pair.split_once(':').ok_or("bad histogram pair")?;
                let v: u64 = v.parse().map_err(|_| "bad histogram value")?;
                let c: u64 = c.parse().map_err(|_| "bad histogram count")?;
                s.rtt_us.saturating_record_n(v, c);
            }
        }
        Ok(s)
    }

    /// Folds another worker's same second into this one.
    pub fn add(&mut self, other: &Second) {
        self.connections += other.connections;
        self.sent += other.sent;
        self.received += other.received;
        self.pushes += other.pushes;
        self.errors += other.errors;
        self.broadcasts += other.broadcasts;
        self.deliveries += other.deliveries;
        let _ = self.rtt_us.add(&other.rtt_us);
    }
}

/// Milliseconds at quantile `q`, or 0 for an empty histogram.
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

pub const CSV_HEADER: &str =
    "seconds,connections,sent,received,pushes,errors,p50_ms,p99_ms,p999_ms,broadcasts,deliveries";

pub fn csv_row(s: &Second) -> String {
    format!(
        "{},{},{},{},{},{},{:.3},{:.3},{:.3},{},{}",
        s.second,
        s.connections,
        s.sent,
        s.received,
        s.pushes,
        s.errors,
        ms(&s.rtt_us, 0.5),
        ms(&s.rtt_us, 0.99),
        ms(&s.rtt_us, 0.999),
        s.broadcasts,
        s.deliveries
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_survives_the_line_and_folds() {
        let mut s = Second::empty(3);
        s.connections = 10;
        s.sent = 5;
        s.deliveries = 7;
        s.rtt_us.record(250).unwrap();
        s.rtt_us.record(250).unwrap();
        s.rtt_us.record(9000).unwrap();
        let line = s.to_line();
        let back = Second::parse(line.strip_prefix("S ").unwrap()).unwrap();
        assert_eq!(
            (back.second, back.connections, back.sent, back.deliveries),
            (3, 10, 5, 7)
        );
        assert_eq!(back.rtt_us.len(), 3);
        let mut sum = Second::empty(3);
        sum.add(&back);
        sum.add(&back);
        assert_eq!((sum.connections, sum.rtt_us.len()), (20, 6));
        assert!(Second::parse("1 0 0 0 0 0 0 0 -")
            .unwrap()
            .rtt_us
            .is_empty());
    }
}
