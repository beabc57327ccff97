//! What waits to be written to one client, in order: frames of its own (answers,
//! pushes, pongs, pings, its close) coalesced into owned buffers, and broadcast frames
//! shared with the other members of a group (one `Rc` per shard, no copy per member).
//!
//! An empty outbox holds no buffer: a chunk is released once written, and the chunk
//! list itself once empty, so an idle connection keeps nothing but the list's header.
//! Every byte queued counts against the shard's [`Budget`] until it is written or
//! dropped.

use std::collections::VecDeque;
use std::rc::Rc;

use super::budget::Budget;

#[derive(Debug)]
enum Chunk {
    /// Bytes of this connection's own frames; written from the front.
    Own(Vec<u8>),
    /// A frame shared with other connections; `at` bytes of it are written.
    Shared { frame: Rc<[u8]>, at: usize },
}

impl Chunk {
    fn unwritten(&self) -> &[u8] {
        match self {
            Chunk::Own(bytes) => bytes,
            Chunk::Shared { frame, at } => &frame[*at..],
        }
    }
}

/// The queue of bytes for one client.
#[derive(Debug)]
pub struct Outbox {
    chunks: VecDeque<Chunk>,
    budget: Rc<Budget>,
}

impl Outbox {
    /// An outbox whose first bytes are `first` (e.g. the `101` answer), counted in
    /// `budget`.
    pub fn new(first: Vec<u8>, budget: Rc<Budget>) -> Outbox {
        let mut outbox = Outbox {
            chunks: VecDeque::new(),
            budget,
        };
        outbox.push_own(|buf| *buf = first);
        outbox
    }

    /// Bytes queued and not yet written.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.unwritten().len()).sum()
    }

    /// The budget this outbox counts in.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    fn grew(&self, n: usize) {
        self.budget.add(n);
    }

    fn shrank(&self, n: usize) {
        self.budget.sub(n);
    }

    /// Nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Appends own bytes with `write`, which is given the buffer to append to: the last
    /// chunk if it is owned, else a new (empty, unallocated) one; the frame encoder
    /// reserves what it needs. Nothing is queued if `write` appends nothing.
    pub fn push_own(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        if !matches!(self.chunks.back(), Some(Chunk::Own(_))) {
            self.chunks.push_back(Chunk::Own(Vec::new()));
        }
        let Some(Chunk::Own(bytes)) = self.chunks.back_mut() else {
            unreachable!("the last chunk is owned");
        };
        let before = bytes.len();
        write(bytes);
        let added = bytes.len().saturating_sub(before);
        if bytes.is_empty() {
            self.chunks.pop_back();
        }
        self.grew(added);
    }

    /// Queues a frame shared with other connections.
    pub fn push_shared(&mut self, frame: Rc<[u8]>) {
        self.push_shared_from(frame, 0);
    }

    /// Queues the rest of a shared frame whose first `at` bytes are already written.
    pub fn push_shared_from(&mut self, frame: Rc<[u8]>, at: usize) {
        if at < frame.len() {
            self.grew(frame.len() - at);
            self.chunks.push_back(Chunk::Shared { frame, at });
        }
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.shrank(self.len());
        self.chunks = VecDeque::new();
    }

    /// The unwritten bytes of the first chunk (empty when nothing is queued).
    pub fn front(&self) -> &[u8] {
        self.chunks.front().map_or(&[], Chunk::unwritten)
    }

    /// Marks `n` bytes of [`Outbox::front`] as written.
    pub fn consume(&mut self, n: usize) {
        let (taken, done) = match self.chunks.front_mut() {
            None => return,
            Some(Chunk::Own(bytes)) => {
                let taken = n.min(bytes.len());
                bytes.drain(..taken);
                (taken, bytes.is_empty())
            }
            Some(Chunk::Shared { frame, at }) => {
                let taken = n.min(frame.len() - *at);
                *at += taken;
                (taken, *at == frame.len())
            }
        };
        self.shrank(taken);
        if done {
            self.chunks.pop_front();
            if self.chunks.is_empty() {
                // Idle again: keep no buffer at all.
                self.chunks = VecDeque::new();
            }
        }
    }

    /// Everything queued, as one buffer (tests).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len());
        for chunk in &self.chunks {
            all.extend_from_slice(chunk.unwritten());
        }
        all
    }

    /// Takes everything queued out, as one buffer (the last write of a close); the
    /// outbox is empty after.
    pub fn take_all(&mut self) -> Vec<u8> {
        let all = self.to_vec();
        self.clear();
        all
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.budget.sub(self.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_frames_coalesce_and_shared_ones_keep_their_place() {
        let budget = Budget::unlimited();
        let mut out = Outbox::new(b"HTTP".to_vec(), budget.clone());
        out.push_own(|b| b.extend_from_slice(b"/1.1"));
        let frame: Rc<[u8]> = Rc::from(&b"[shared]"[..]);
        out.push_shared(frame.clone());
        out.push_own(|b| b.extend_from_slice(b"tail"));
        assert_eq!(out.to_vec(), b"HTTP/1.1[shared]tail");
        assert_eq!(out.len(), 20);
        assert_eq!(budget.used(), 20);
        assert_eq!(out.front(), b"HTTP/1.1");
        out.consume(5);
        assert_eq!(out.front(), b"1.1");
        out.consume(3);
        assert_eq!(out.front(), b"[shared]");
        out.consume(2);
        assert_eq!(out.front(), b"hared]");
        assert_eq!(
            Rc::strong_count(&frame),
            2,
            "queued by reference, not copied"
        );
        out.consume(6);
        assert_eq!(Rc::strong_count(&frame), 1, "released once written");
        assert_eq!(out.front(), b"tail");
        out.consume(4);
        assert!(out.is_empty());
        assert_eq!(out.len(), 0);
        assert_eq!(out.front(), b"");
    }

    #[test]
    fn clear_and_empty_inputs() {
        let budget = Budget::unlimited();
        let mut out = Outbox::new(Vec::new(), budget.clone());
        assert!(out.is_empty());
        out.push_shared(Rc::from(&b""[..]));
        out.push_own(|_| {});
        assert!(out.is_empty());
        out.push_own(|b| b.extend_from_slice(b"ab"));
        assert_eq!(budget.used(), 2);
        out.clear();
        assert!(out.is_empty() && out.to_vec().is_empty());
        assert_eq!(budget.used(), 0);
        out.consume(10);
        assert!(out.is_empty());
    }

    #[test]
    fn the_budget_counts_what_is_queued_until_written_taken_or_dropped() {
        let budget = Budget::new(1000);
        let frame: Rc<[u8]> = Rc::from(&[7u8; 100][..]);
        let mut a = Outbox::new(b"HTTP/1.1 101\r\n\r\n".to_vec(), budget.clone());
        let mut b = Outbox::new(Vec::new(), budget.clone());
        assert_eq!(budget.used(), 16);
        a.push_shared(frame.clone());
        b.push_shared_from(frame.clone(), 40);
        assert_eq!(budget.used(), 16 + 100 + 60);
        a.consume(10);
        a.consume(10); // across the end of the first chunk: only 6 were left in it
        assert_eq!(a.len(), 100);
        assert_eq!(budget.used(), 100 + 60);
        assert_eq!(b.take_all().len(), 60);
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 0);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
