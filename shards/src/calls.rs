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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `body` on a fresh executor of this thread (the reply channels are glommio's).
    fn on_executor(body: impl std::future::Future<Output = ()>) {
        glommio::LocalExecutor::default().run(body);
    }

    #[test]
    fn each_reply_reaches_its_own_waiter_whatever_the_order() {
        on_executor(async {
            let calls: Calls<&str> = Calls::default();
            let (a, reply_a) = calls.register();
            let (b, reply_b) = calls.register();
            let (c, reply_c) = calls.register();
            assert!(a != b && b != c && a != c, "numbers {a} {b} {c}");
            assert_eq!(calls.pending(), 3);
            assert!(calls.complete(c, "for c"));
            assert!(calls.complete(a, "for a"));
            assert!(calls.complete(b, "for b"));
            assert_eq!(calls.pending(), 0);
            assert_eq!(reply_b.wait().await, Some("for b"));
            assert_eq!(reply_a.wait().await, Some("for a"));
            assert_eq!(reply_c.wait().await, Some("for c"));
        });
    }

    #[test]
    fn a_reply_wakes_a_waiter_that_is_already_waiting() {
        on_executor(async {
            let calls: Calls<u32> = Calls::default();
            let (id, reply) = calls.register();
            let waiter = glommio::spawn_local(reply.wait());
            // Let the waiter run until it waits for the reply.
            futures_lite::future::yield_now().await;
            assert!(calls.complete(id, 42));
            assert_eq!(waiter.await, Some(42));
        });
    }

    #[test]
    fn a_reply_for_no_pending_call_is_refused() {
        on_executor(async {
            let calls: Calls<u32> = Calls::default();
            assert!(!calls.complete(1, 0), "nothing registered yet");
            let (id, reply) = calls.register();
            assert!(!calls.complete(id + 1, 0), "a number never given");
            assert!(calls.complete(id, 5));
            assert!(!calls.complete(id, 6), "a call is completed once");
            assert_eq!(reply.wait().await, Some(5));
        });
    }

    #[test]
    fn a_forgotten_call_gets_none_and_its_late_reply_is_refused() {
        on_executor(async {
            let calls: Calls<u32> = Calls::default();
            let (forgotten, reply) = calls.register();
            let (kept, kept_reply) = calls.register();
            calls.forget(forgotten);
            assert_eq!(calls.pending(), 1);
            assert_eq!(reply.wait().await, None);
            assert!(
                !calls.complete(forgotten, 1),
                "the late reply has no waiter"
            );
            assert!(calls.complete(kept, 2), "the other call is untouched");
            assert_eq!(kept_reply.wait().await, Some(2));
        });
    }

    #[test]
    fn abandon_all_wakes_every_waiter_with_none() {
        on_executor(async {
            let calls: Calls<u32> = Calls::default();
            let waiters: Vec<_> = (0..3)
                .map(|_| glommio::spawn_local(calls.register().1.wait()))
                .collect();
            futures_lite::future::yield_now().await;
            assert_eq!(calls.pending(), 3);
            calls.abandon_all();
            assert_eq!(calls.pending(), 0);
            for waiter in waiters {
                assert_eq!(waiter.await, None);
            }
            let (id, reply) = calls.register();
            assert!(calls.complete(id, 9), "the table still works afterwards");
            assert_eq!(reply.wait().await, Some(9));
        });
    }
}
