//! The per-address table of one shard: for each client address this shard owns (by
//! hash of the address), its open connections and its connect-rate bucket, asked once
//! per new connection (`--max-connections-per-ip`, `--connect-rate-per-ip`).
//!
//! Bounded: an entry lives while its address has a connection open or its bucket is
//! still paying back a burst, and is forgotten after that (at the connection's end, or
//! by [`Addresses::sweep`]); the table never holds more than its capacity (its share of
//! `--max-tracked-ips`). A new address that finds the table full, even after a sweep,
//! is refused: a scan over millions of addresses costs the scanner, not the table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::rate::{Bucket, Rate};

/// How often a full table may be swept for forgettable entries when a new address
/// arrives (a sweep is linear in the table).
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Why a connection from an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections-per-ip` connections from it are open.
    TooMany,
    /// `--connect-rate-per-ip` reached: the next one is allowed after this wait.
    Rate(Duration),
    /// The table holds its share of `--max-tracked-ips` live addresses.
    TableFull,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    conns: u32,
    bucket: Bucket,
}

/// The table of one shard.
#[derive(Debug)]
pub struct Addresses {
    entries: HashMap<IpAddr, Entry>,
    capacity: usize,
    max_conns: u32,
    rate: Option<Rate>,
    last_full_sweep: Option<Instant>,
}

impl Addresses {
    /// A table for at most `capacity` addresses; `max_conns` 0 is no cap, `rate` `None`
    /// no connect rate.
    pub fn new(capacity: usize, max_conns: u32, rate: Option<Rate>) -> Addresses {
        Addresses {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            max_conns,
            rate,
            last_full_sweep: None,
        }
    }

    /// The address form the table counts: an IPv4-mapped IPv6 address as its IPv4.
    pub fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        }
    }

    /// A new connection from `ip` at `now`: counted, or refused (and then not counted;
    /// a refusal for the cap takes no token of the rate).
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let ip = Self::key(ip);
        if !self.entries.contains_key(&ip) && self.entries.len() >= self.capacity {
            let due = self
                .last_full_sweep
                .is_none_or(|at| now.duration_since(at) >= FULL_SWEEP_EVERY);
            if due {
                self.last_full_sweep = Some(now);
                self.sweep(now);
            }
            if self.entries.len() >= self.capacity {
                return Err(Refusal::TableFull);
            }
        }
        let entry = self.entries.entry(ip).or_insert(Entry {
            conns: 0,
            bucket: Bucket::new(now),
        });
        let refused = if self.max_conns > 0 && entry.conns >= self.max_conns {
            Some(Refusal::TooMany)
        } else if let Some(rate) = self.rate {
            entry.bucket.take(rate, now).err().map(Refusal::Rate)
        } else {
            None
        };
        match refused {
            Some(refusal) => {
                if entry.conns == 0 && entry.bucket.is_full(now) {
                    self.entries.remove(&ip);
                }
                Err(refusal)
            }
            None => {
                entry.conns += 1;
                Ok(())
            }
        }
    }

    /// A connection admitted from `ip` ended.
    pub fn release(&mut self, ip: IpAddr, now: Instant) {
        let ip = Self::key(ip);
        if let Some(entry) = self.entries.get_mut(&ip) {
            entry.conns = entry.conns.saturating_sub(1);
            if entry.conns == 0 && entry.bucket.is_full(now) {
                self.entries.remove(&ip);
            }
        }
    }

    /// Forgets every address with no connection whose bucket is full again; returns
    /// how many were forgotten.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, entry| entry.conns > 0 || !entry.bucket.is_full(now));
        self.entries.shrink_to(self.entries.len().max(64) * 2);
        before - self.entries.len()
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No address is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Open connections counted for `ip`.
    pub fn connections(&self, ip: IpAddr) -> u32 {
        self.entries.get(&Self::key(ip)).map_or(0, |e| e.conns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn the_cap_counts_open_connections_per_address() {
        let now = Instant::now();
        let mut t = Addresses::new(100, 2, None);
        assert_eq!(t.admit(ip(2), now), Ok(()));
        assert_eq!(t.admit(ip(2), now), Ok(()));
        assert_eq!(t.admit(ip(2), now), Err(Refusal::TooMany));
        assert_eq!(
            t.admit(ip(3), now),
            Ok(()),
            "another address has its own count"
        );
        t.release(ip(2), now);
        assert_eq!(t.admit(ip(2), now), Ok(()));
        assert_eq!(t.connections(ip(2)), 2);
        // Mapped IPv6 is the same address.
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(t.admit(mapped, now), Err(Refusal::TooMany));
    }

    #[test]
    fn the_rate_refuses_with_the_wait_and_a_refusal_for_the_cap_takes_no_token() {
        let now = Instant::now();
        let mut t = Addresses::new(100, 1, Rate::per_second(2));
        assert_eq!(t.admit(ip(2), now), Ok(()));
        assert_eq!(t.admit(ip(2), now), Err(Refusal::TooMany));
        t.release(ip(2), now);
        assert_eq!(
            t.admit(ip(2), now),
            Ok(()),
            "the second token was not taken"
        );
        t.release(ip(2), now);
        assert_eq!(
            t.admit(ip(2), now),
            Err(Refusal::Rate(Duration::from_millis(500)))
        );
        let later = now + Duration::from_millis(500);
        assert_eq!(t.admit(ip(2), later), Ok(()));
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let now = Instant::now();
        let mut t = Addresses::new(100, 0, Rate::per_second(1));
        for last in 2..12 {
            t.admit(ip(last), now).unwrap();
        }
        for last in 2..12 {
            t.release(ip(last), now);
        }
        assert_eq!(t.len(), 10, "their buckets still pay back");
        assert_eq!(t.sweep(now), 0);
        t.admit(ip(2), now + Duration::from_secs(1)).unwrap();
        assert_eq!(
            t.sweep(now + Duration::from_secs(1)),
            9,
            "only the open one stays"
        );
        assert_eq!(t.len(), 1);
        t.release(ip(2), now + Duration::from_secs(2));
        assert!(t.is_empty(), "forgotten at its end once its bucket is full");
        // Without a rate an address is forgotten with its last connection.
        let mut t = Addresses::new(100, 5, None);
        t.admit(ip(2), now).unwrap();
        t.release(ip(2), now);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_refuses_new_addresses_until_some_are_forgettable() {
        let now = Instant::now();
        let mut t = Addresses::new(3, 0, Rate::per_second(1));
        for last in 2..5 {
            t.admit(ip(last), now).unwrap();
        }
        assert_eq!(t.admit(ip(9), now), Err(Refusal::TableFull));
        assert_eq!(
            t.admit(ip(2), now),
            Err(Refusal::Rate(Duration::from_secs(1))),
            "a known address is still served"
        );
        t.release(ip(3), now);
        // Forgettable only once its bucket is full, and a full table sweeps at most once a second.
        let later = now + Duration::from_millis(1500);
        assert_eq!(t.admit(ip(9), later), Ok(()));
        assert_eq!(t.len(), 3);
        assert_eq!(t.admit(ip(10), later), Err(Refusal::TableFull));
    }

    #[test]
    fn a_scan_of_many_addresses_stays_within_capacity() {
        let now = Instant::now();
        let mut t = Addresses::new(1000, 0, Rate::per_second(5));
        let mut refused = 0;
        for i in 0..100_000u32 {
            let addr = IpAddr::from(i.to_be_bytes());
            let at = now + Duration::from_millis(u64::from(i / 100));
            match t.admit(addr, at) {
                Ok(()) => t.release(addr, at),
                Err(Refusal::TableFull) => refused += 1,
                Err(other) => panic!("{other:?}"),
            }
            assert!(t.len() <= 1000);
        }
        assert!(refused > 0);
        let left = t.len();
        assert_eq!(t.sweep(now + Duration::from_secs(3600)), left);
        assert!(t.is_empty());
    }
}
