//! The cross-shard mesh: one bounded channel from every shard to every other shard.
//!
//! Built once at start (glommio's full `channel_mesh`), so sending never allocates a
//! channel or takes a lock. A send to a full channel waits (backpressure) and a send
//! wakes the receiving executor through its eventfd: no shard polls another. Each shard
//! drains its incoming channels in one task per peer and hands every message to one
//! handler; the handler must not block, and spawns a task for anything that awaits.

use std::rc::Rc;

use glommio::channels::channel_mesh::{MeshBuilder, Receivers, Senders};
use glommio::channels::shared_channel::ConnectedReceiver;

/// A send failed because the receiving shard has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerGone {
    /// The shard that could not be reached.
    pub shard: usize,
}

impl std::fmt::Display for PeerGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard {} has stopped", self.shard)
    }
}

impl std::error::Error for PeerGone {}

/// Builds the mesh; cloned into every shard before the executors start.
pub struct MeshPlan<T: Send + 'static> {
    builder: MeshBuilder<T, glommio::channels::channel_mesh::Full>,
}

impl<T: Send + 'static> Clone for MeshPlan<T> {
    fn clone(&self) -> Self {
        MeshPlan {
            builder: self.builder.clone(),
        }
    }
}

impl<T: Send + 'static> MeshPlan<T> {
    /// A mesh among `shards` shards whose channels hold `capacity` messages each.
    pub fn new(shards: usize, capacity: usize) -> Self {
        MeshPlan {
            builder: MeshBuilder::full(shards, capacity),
        }
    }

    /// Joins the mesh from inside shard `shard`'s executor; waits until every shard joined.
    pub async fn join(self, shard: usize) -> Mesh<T> {
        let (senders, receivers) = self
            .builder
            .join()
            .await
            .unwrap_or_else(|e| panic!("shard {shard} could not join the mesh: {e}"));
        assert_eq!(
            senders.peer_id(),
            shard,
            "executors must be spawned in shard order"
        );
        Mesh {
            shard,
            senders: Rc::new(senders),
            receivers: Some(receivers),
        }
    }
}

/// One shard's end of the mesh.
pub struct Mesh<T: Send + 'static> {
    shard: usize,
    senders: Rc<Senders<T>>,
    receivers: Option<Receivers<T>>,
}

/// The sending half, cheap to clone into tasks.
pub struct MeshSender<T: Send + 'static> {
    shard: usize,
    senders: Rc<Senders<T>>,
}

impl<T: Send + 'static> Clone for MeshSender<T> {
    fn clone(&self) -> Self {
        MeshSender {
            shard: self.shard,
            senders: self.senders.clone(),
        }
    }
}

impl<T: Send + 'static> MeshSender<T> {
    /// This shard's index.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Number of shards in the mesh.
    pub fn shards(&self) -> usize {
        self.senders.nr_consumers()
    }

    /// Sends `msg` to shard `to` (never this shard: serve local work locally).
    /// Waits while that channel is full.
    pub async fn send(&self, to: usize, msg: T) -> Result<(), PeerGone> {
        debug_assert_ne!(to, self.shard, "local work must not cross the mesh");
        self.senders
            .send_to(to, msg)
            .await
            .map_err(|_| PeerGone { shard: to })
    }

    /// Closes this shard's outgoing channels: peers' receive loops for this shard end.
    pub fn close(&self) {
        self.senders.close();
    }
}

impl<T: Send + 'static> Mesh<T> {
    /// This shard's index.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// A sender for tasks of this shard.
    pub fn sender(&self) -> MeshSender<T> {
        MeshSender {
            shard: self.shard,
            senders: self.senders.clone(),
        }
    }

    /// Spawns one task per peer that receives its messages and calls `handler(from, msg)`
    /// for each, in order. The tasks end when the peer closes its side.
    pub fn serve(&mut self, handler: impl Fn(usize, T) + 'static) {
        let handler = Rc::new(handler);
        let streams: Vec<(usize, ConnectedReceiver<T>)> = self
            .receivers
            .take()
            .map(|mut r| r.streams())
            .unwrap_or_default();
        for (from, receiver) in streams {
            let handler = handler.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = receiver.recv().await {
                    handler(from, msg);
                }
            })
            .detach();
        }
    }
}

#[cfg(test)]
// The test hands receivers to executor threads through a lock (test set-up only).
#[allow(clippy::disallowed_types)]
mod tests {
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::Duration;

    use glommio::channels::local_channel;
    use glommio::timer::timeout;

    use super::*;
    use crate::runtime::{Runtime, RuntimeSpec};

    /// More messages than the channel holds, so the sender waits for the receiver, and
    /// the receiver, asleep in `recv`, must be woken by each send.
    const MESSAGES: u32 = 200;

    #[test]
    fn messages_arrive_in_order_past_a_full_channel_and_close_ends_the_receive_loop() {
        let plan: MeshPlan<u32> = MeshPlan::new(2, 2);
        let (done_tx, done_rx) = mpsc::channel::<(Vec<(usize, u32)>, bool)>();
        // Shard 1 tells shard 0 it has finished, so shard 0's mesh stays alive until then:
        // the receive loop must end because of `close`, not because shard 0 went away.
        let (finished_tx, finished_rx) = mpsc::channel::<()>();
        let finished_rx = Arc::new(Mutex::new(Some(finished_rx)));
        Runtime::start(&RuntimeSpec::new(2), move |shard| {
            let plan = plan.clone();
            let (done_tx, finished_tx) = (done_tx.clone(), finished_tx.clone());
            let finished_rx = finished_rx.clone();
            async move {
                let mut mesh = plan.join(shard).await;
                assert_eq!(mesh.shard(), shard);
                let sender = mesh.sender();
                assert_eq!((sender.shard(), sender.shards()), (shard, 2));
                if shard == 0 {
                    for n in 0..MESSAGES {
                        sender.send(1, n).await.unwrap();
                    }
                    sender.close();
                    let finished = finished_rx.lock().unwrap().take().unwrap();
                    // Blocks this executor only, which has nothing else to run.
                    finished.recv().unwrap();
                    drop(mesh);
                    return;
                }
                let (got_tx, got_rx) = local_channel::new_unbounded();
                mesh.serve(move |from, n| got_tx.try_send((from, n)).unwrap());
                let mut got = Vec::new();
                let collect = async {
                    // `None` once the receive loop has ended and dropped the handler
                    // (and `got_tx` in it).
                    while let Some(message) = got_rx.recv().await {
                        got.push(message);
                    }
                };
                let ended = timeout(Duration::from_secs(10), async {
                    collect.await;
                    Ok(())
                })
                .await
                .is_ok();
                finished_tx.send(()).unwrap();
                done_tx.send((got, ended)).unwrap();
            }
        })
        .unwrap()
        .join()
        .unwrap();
        let (got, ended) = done_rx.recv().unwrap();
        let want: Vec<(usize, u32)> = (0..MESSAGES).map(|n| (0, n)).collect();
        assert_eq!(got, want, "every message from shard 0, in the order sent");
        assert!(ended, "close() on shard 0 ends shard 1's receive loop");
    }

    #[test]
    fn a_send_to_a_shard_that_has_stopped_is_peer_gone() {
        let plan: MeshPlan<u32> = MeshPlan::new(2, 4);
        let (stopped_tx, stopped_rx) = mpsc::channel::<()>();
        // The body is cloned into both shards; only shard 0 takes the receiver.
        let stopped_rx = Arc::new(Mutex::new(Some(stopped_rx)));
        let (result_tx, result_rx) = mpsc::channel::<Result<(), PeerGone>>();
        Runtime::start(&RuntimeSpec::new(2), move |shard| {
            let plan = plan.clone();
            let (stopped_tx, stopped_rx) = (stopped_tx.clone(), stopped_rx.clone());
            let result_tx = result_tx.clone();
            async move {
                let mesh = plan.join(shard).await;
                if shard == 1 {
                    drop(mesh);
                    stopped_tx.send(()).unwrap();
                    return;
                }
                let stopped = stopped_rx.lock().unwrap().take().unwrap();
                // Blocks this executor only, which has nothing else to run.
                stopped.recv().unwrap();
                result_tx.send(mesh.sender().send(1, 7).await).unwrap();
            }
        })
        .unwrap()
        .join()
        .unwrap();
        let result = result_rx.recv().unwrap();
        assert_eq!(result, Err(PeerGone { shard: 1 }));
        assert_eq!(result.unwrap_err().to_string(), "shard 1 has stopped");
    }
}
