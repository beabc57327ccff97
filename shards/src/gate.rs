//! Counting a shard's live work (handshakes, connections), so that an orderly stop can
//! wait until every unit has finished: each unit holds a [`Pass`] until it is done.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

#[derive(Default)]
struct Inner {
    live: Cell<usize>,
    waiters: RefCell<Vec<Waker>>,
}

/// The count of live work on one shard. Shard-local: clones share one count.
#[derive(Default, Clone)]
pub struct Gate {
    inner: Rc<Inner>,
}

/// One unit of live work; counted until dropped.
pub struct Pass {
    inner: Rc<Inner>,
}

impl Gate {
    /// Counts one more unit of work until the pass drops.
    pub fn enter(&self) -> Pass {
        self.inner.live.set(self.inner.live.get() + 1);
        Pass {
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

impl Drop for Pass {
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
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Wake};

    struct Count(std::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn counts_passes_until_dropped() {
        let gate = Gate::default();
        let a = gate.enter();
        let b = gate.enter();
        assert_eq!(gate.live(), 2);
        drop(a);
        assert_eq!(gate.live(), 1);
        drop(b);
        assert_eq!(gate.live(), 0);
    }

    #[test]
    fn idle_waits_for_the_last_pass_and_is_woken_by_it() {
        let gate = Gate::default();
        let pass = gate.enter();
        let woken = Arc::new(Count(Default::default()));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut idle = pin!(gate.idle());
        assert!(idle.as_mut().poll(&mut cx).is_pending());
        let other = gate.enter();
        drop(pass);
        assert_eq!(woken.0.load(std::sync::atomic::Ordering::Relaxed), 0);
        drop(other);
        assert_eq!(woken.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(idle.as_mut().poll(&mut cx).is_ready());
    }
}
