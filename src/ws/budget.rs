//! `--max-outbound-total`: the bytes one shard may hold queued for all its clients
//! together (its share of the process-wide budget). Every [`super::outbox::Outbox`] of
//! the shard adds what it queues and gives back what it writes or drops, so the count
//! is exact; pushes and broadcasts check it before they queue. Bytes the socket takes
//! at once are never queued and never count.

use std::cell::Cell;
use std::rc::Rc;

/// One shard's outbound budget.
#[derive(Debug)]
pub struct Budget {
    used: Cell<usize>,
    limit: usize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Rc<Budget> {
        Rc::new(Budget {
            used: Cell::new(0),
            limit,
        })
    }

    /// No limit (unit tests).
    pub fn unlimited() -> Rc<Budget> {
        Budget::new(usize::MAX)
    }

    /// Whether `n` more bytes may be queued.
    pub fn has_room(&self, n: usize) -> bool {
        self.used.get().saturating_add(n) <= self.limit
    }

    /// Bytes queued now.
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Fewer than `reserve` bytes are free: what `/readyz` calls used up.
    pub fn exhausted(&self, reserve: usize) -> bool {
        !self.has_room(reserve)
    }

    pub(super) fn add(&self, n: usize) {
        self.used.set(self.used.get().saturating_add(n));
    }

    pub(super) fn sub(&self, n: usize) {
        self.used.set(self.used.get().saturating_sub(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_and_exhaustion() {
        let b = Budget::new(100);
        assert!(b.has_room(100));
        b.add(60);
        assert!(b.has_room(40) && !b.has_room(41));
        assert!(!b.exhausted(40) && b.exhausted(41));
        b.sub(100);
        assert_eq!(b.used(), 0);
        assert_eq!(b.limit(), 100);
    }
}
