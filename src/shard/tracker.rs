//! Counting a shard's live handshakes and connections, so the orderly stop can wait
//! until every one of them has sent its Disconnect.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

#[derive(Default)]
struct Inner {
    live: Cell<usize>,
    waiters: RefCell<Vec<Waker>>,
}

/// The count of live work on one shard.
#[derive(Default, Clone)]
pub struct Tracker {
    inner: Rc<Inner>,
}

/// One unit of live work; counted until dropped.
pub struct Token {
    inner: Rc<Inner>,
}

impl Tracker {
    /// Counts one more unit of work until the token drops.
    pub fn token(&self) -> Token {
        self.inner.live.set(self.inner.live.get() + 1);
        Token {
            inner: self.inner.clone(),
        }
    }

    /// Units alive now.
    pub fn live(&self) -> usize {
        self.inner.live.get()
    }

    /// Resolves when no unit is alive.
    pub async fn idle(&self) {
        poll_fn(|cx| {
            if self.inner.live.get() == 0 {
                Poll::Ready(())
            } else {
                self.inner.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        let live = self.inner.live.get() - 1;
        self.inner.live.set(live);
        if live == 0 {
            for waker in self.inner.waiters.borrow_mut().drain(..) {
                waker.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tokens_until_dropped() {
        let tracker = Tracker::default();
        let a = tracker.token();
        let b = tracker.token();
        assert_eq!(tracker.live(), 2);
        drop(a);
        assert_eq!(tracker.live(), 1);
        drop(b);
        assert_eq!(tracker.live(), 0);
    }
}
