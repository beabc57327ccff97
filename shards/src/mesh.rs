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
