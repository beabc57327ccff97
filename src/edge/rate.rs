//! A rate with a burst, kept as one timestamp per bucket (the generic cell rate
//! algorithm): `N` per second, up to `N` back to back after a quiet second. A bucket
//! is the "theoretical arrival time" of its next event; it is full (forgettable) once
//! that time has passed.

use std::time::{Duration, Instant};

/// `N` events per second with a burst of `N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Time one event uses up: 1 s / N.
    interval: Duration,
    /// How far ahead of now the bucket may run: (N - 1) intervals.
    tolerance: Duration,
}

impl Rate {
    /// `n` per second, burst `n`; `None` for 0 (off).
    pub fn per_second(n: u32) -> Option<Rate> {
        if n == 0 {
            return None;
        }
        let interval = Duration::from_secs(1) / n;
        Some(Rate {
            interval,
            tolerance: interval * (n - 1),
        })
    }
}

/// One client's or one address's bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// When the next event would be on time; never earlier than a past `now`.
    next: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(now: Instant) -> Bucket {
        Bucket { next: now }
    }

    /// Takes one event at `now`, or says how long until the rate allows one.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        let next = self.next.max(now);
        let ahead = next - now;
        if ahead > rate.tolerance {
            return Err(ahead - rate.tolerance);
        }
        self.next = next + rate.interval;
        Ok(())
    }

    /// Nothing taken is still being paid back: the bucket is as if new.
    pub fn is_full(&self, now: Instant) -> bool {
        self.next <= now
    }
}

/// Seconds to put in `Retry-After` for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_n_then_one_per_interval() {
        let rate = Rate::per_second(4).unwrap();
        let t0 = Instant::now();
        let mut b = Bucket::new(t0);
        for _ in 0..4 {
            assert_eq!(b.take(rate, t0), Ok(()));
        }
        let wait = b.take(rate, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(250));
        assert!(!b.is_full(t0));
        // One interval later exactly one more goes through.
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(b.take(rate, t1), Ok(()));
        assert!(b.take(rate, t1).is_err());
        // After a quiet second the bucket is full again: a whole burst.
        let t2 = t1 + Duration::from_secs(1);
        assert!(b.is_full(t2));
        for _ in 0..4 {
            assert_eq!(b.take(rate, t2), Ok(()));
        }
        assert!(b.take(rate, t2).is_err());
    }

    #[test]
    fn a_refusal_takes_nothing() {
        let rate = Rate::per_second(1).unwrap();
        let t0 = Instant::now();
        let mut b = Bucket::new(t0);
        assert_eq!(b.take(rate, t0), Ok(()));
        for _ in 0..100 {
            assert_eq!(b.take(rate, t0), Err(Duration::from_secs(1)));
        }
        assert_eq!(b.take(rate, t0 + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn zero_is_off_and_retry_after_rounds_up() {
        assert_eq!(Rate::per_second(0), None);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
