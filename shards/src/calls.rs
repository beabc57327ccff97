//! Calls across shards: a shard-local table that pairs a request it sent with the
//! reply that comes back over the mesh.
//!
//! The request carries the number `register` gave; the peer sends the reply back in
//! a message of its own; the mesh handler hands it to `complete`, which wakes the task
//! awaiting it. Nothing here is shared between threads.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

/// Pending calls of one shard, with replies of type `R`.
pub struct Calls<R> {
    next: Cell<u64>,
    pending: RefCell<HashMap<u64, LocalSender<R>>>,
}

impl<R> Default for Calls<R> {
    fn default() -> Self {
        Calls {
            next: Cell::new(1),
            pending: RefCell::new(HashMap::new()),
        }
    }
}

/// The reply to one call, to be awaited.
pub struct Reply<R> {
    receiver: LocalReceiver<R>,
}

impl<R> Reply<R> {
    /// Waits for the reply; `None` if the call was abandoned (see [`Calls::abandon_all`]).
    pub async fn wait(self) -> Option<R> {
        self.receiver.recv().await
    }
}

impl<R> Calls<R> {
    /// Registers a call: returns its number (to put in the request) and its reply.
    pub fn register(&self) -> (u64, Reply<R>) {
        let id = self.next.get();
        self.next.set(id.wrapping_add(1));
        let (sender, receiver) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(id, sender);
        (id, Reply { receiver })
    }

    /// Delivers the reply to call `id`. Returns false if no such call is pending.
    pub fn complete(&self, id: u64, reply: R) -> bool {
        match self.pending.borrow_mut().remove(&id) {
            Some(sender) => sender.try_send(reply).is_ok(),
            None => false,
        }
    }

    /// Forgets call `id` (its waiter gets `None`), e.g. after a timeout.
    pub fn forget(&self, id: u64) {
        self.pending.borrow_mut().remove(&id);
    }

    /// Number of calls still waiting for a reply.
    pub fn pending(&self) -> usize {
        self.pending.borrow().len()
    }

    /// Wakes every waiter with `None`.
    pub fn abandon_all(&self) {
        self.pending.borrow_mut().clear();
    }
}
