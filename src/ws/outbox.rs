//! What waits to be written to one client, in order: frames of its own (answers,
//! pushes, pongs, pings, its close) coalesced into owned buffers, and broadcast frames
//! shared with the other members of a group (one `Rc` per shard, no copy per member).
//!
//! An empty outbox holds no buffer: a chunk is released once written, and the chunk
//! list itself once empty, so an idle connection keeps nothing but the list's header.

use std::collections::VecDeque;
use std::rc::Rc;

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
#[derive(Debug, Default)]
pub struct Outbox {
    chunks: VecDeque<Chunk>,
}

impl Outbox {
    /// An outbox whose first bytes are `first` (e.g. the `101` answer).
    pub fn new(first: Vec<u8>) -> Outbox {
        let mut outbox = Outbox::default();
        if !first.is_empty() {
            outbox.chunks.push_back(Chunk::Own(first));
        }
        outbox
    }

    /// Bytes queued and not yet written.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.unwritten().len()).sum()
    }

    /// Nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The buffer to append an own frame to: the last chunk if it is owned, else a new
    /// (empty, unallocated) one; the frame encoder reserves what it needs.
    pub fn own(&mut self) -> &mut Vec<u8> {
        if !matches!(self.chunks.back(), Some(Chunk::Own(_))) {
            self.chunks.push_back(Chunk::Own(Vec::new()));
        }
        match self.chunks.back_mut() {
            Some(Chunk::Own(bytes)) => bytes,
            _ => unreachable!("an owned chunk was just pushed"),
        }
    }

    /// Queues a frame shared with other connections.
    pub fn push_shared(&mut self, frame: Rc<[u8]>) {
        self.push_shared_from(frame, 0);
    }

    /// Queues the rest of a shared frame whose first `at` bytes are already written.
    pub fn push_shared_from(&mut self, frame: Rc<[u8]>, at: usize) {
        if at < frame.len() {
            self.chunks.push_back(Chunk::Shared { frame, at });
        }
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.chunks = VecDeque::new();
    }

    /// The unwritten bytes of the first chunk (empty when nothing is queued).
    pub fn front(&self) -> &[u8] {
        self.chunks.front().map_or(&[], Chunk::unwritten)
    }

    /// Marks `n` bytes of [`Outbox::front`] as written.
    pub fn consume(&mut self, n: usize) {
        let done = match self.chunks.front_mut() {
            None => return,
            Some(Chunk::Own(bytes)) => {
                bytes.drain(..n.min(bytes.len()));
                bytes.is_empty()
            }
            Some(Chunk::Shared { frame, at }) => {
                *at = (*at + n).min(frame.len());
                *at == frame.len()
            }
        };
        if done {
            self.chunks.pop_front();
            if self.chunks.is_empty() {
                // Idle again: keep no buffer at all.
                self.chunks = VecDeque::new();
            }
        }
    }

    /// Everything queued, as one buffer (tests and the last write of a close).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len());
        for chunk in &self.chunks {
            all.extend_from_slice(chunk.unwritten());
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_frames_coalesce_and_shared_ones_keep_their_place() {
        let mut out = Outbox::new(b"HTTP".to_vec());
        out.own().extend_from_slice(b"/1.1");
        let frame: Rc<[u8]> = Rc::from(&b"[shared]"[..]);
        out.push_shared(frame.clone());
        out.own().extend_from_slice(b"tail");
        assert_eq!(out.to_vec(), b"HTTP/1.1[shared]tail");
        assert_eq!(out.len(), 20);
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
        let mut out = Outbox::new(Vec::new());
        assert!(out.is_empty());
        out.push_shared(Rc::from(&b""[..]));
        assert!(out.is_empty());
        out.own().extend_from_slice(b"ab");
        out.clear();
        assert!(out.is_empty() && out.to_vec().is_empty());
        out.consume(10);
        assert!(out.is_empty());
    }
}
