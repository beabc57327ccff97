//! Starting the shards: one glommio executor per shard, each on its own thread.
//!
//! Executors are spawned in shard order (the mesh numbers its peers by executor id,
//! so shard `i` is mesh peer `i`). With no more shards than cores each executor is
//! pinned to one core; beyond that they float. glommio registers `io_memory` with the
//! kernel for each ring and falls back to unregistered buffers when `RLIMIT_MEMLOCK`
//! is too small, so any number of shards starts even with an 8 MiB limit; we keep the
//! amount small (nothing here reads files through it).

use std::future::Future;
use std::io;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

/// How to build the executors.
#[derive(Debug, Clone)]
pub struct RuntimeSpec {
    /// Number of shards (executors), at least 1.
    pub shards: usize,
    /// Bytes of io_uring buffer memory per executor (glommio's default is 10 MiB).
    pub io_memory: usize,
    /// Submission/completion queue depth. Deep rings keep the kernel's cancel lookup
    /// cheap with many pending socket polls (measured: 128 costs ~2x CPU at 10k sockets).
    pub ring_depth: usize,
    /// Thread name prefix; shard `i` runs in thread `{name}-{i}`.
    pub name: String,
}

impl RuntimeSpec {
    /// Defaults for `shards` shards.
    pub fn new(shards: usize) -> RuntimeSpec {
        RuntimeSpec {
            shards,
            io_memory: 1 << 20,
            ring_depth: 4096,
            name: "shard".into(),
        }
    }
}

/// The running shards.
pub struct Runtime {
    handles: Vec<ExecutorJoinHandle<()>>,
}

/// Number of CPUs this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Runtime {
    /// Starts `spec.shards` executors; shard `i` runs a clone of `body` called with `i`.
    pub fn start<F, Fut>(spec: &RuntimeSpec, body: F) -> io::Result<Runtime>
    where
        F: FnOnce(usize) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let cores = available_cores();
        let mut handles = Vec::with_capacity(spec.shards);
        for shard in 0..spec.shards {
            let placement = if spec.shards <= cores {
                Placement::Fixed(shard)
            } else {
                Placement::Unbound
            };
            let body = body.clone();
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("{}-{shard}", spec.name))
                .io_memory(spec.io_memory)
                .ring_depth(spec.ring_depth)
                .spawn(move || async move { body(shard).await })
                .map_err(|e| io::Error::other(format!("starting shard {shard}: {e}")))?;
            handles.push(handle);
        }
        Ok(Runtime { handles })
    }

    /// Waits for every shard to finish. Returns the first failure, if any.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for (shard, handle) in self.handles.into_iter().enumerate() {
            if let Err(e) = handle.join() {
                if result.is_ok() {
                    result = Err(io::Error::other(format!("shard {shard} failed: {e}")));
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::MeshPlan;
    use std::sync::mpsc;

    #[test]
    fn every_shard_runs_and_the_mesh_carries_messages_both_ways() {
        let shards = 3;
        let plan: MeshPlan<(usize, u32)> = MeshPlan::new(shards, 16);
        let (done_tx, done_rx) = mpsc::channel::<(usize, usize, u32)>();
        let runtime = Runtime::start(&RuntimeSpec::new(shards), move |shard| {
            let plan = plan.clone();
            let done = done_tx.clone();
            async move {
                let mut mesh = plan.join(shard).await;
                let expected = shards - 1;
                let (got_tx, got_rx) = glommio::channels::local_channel::new_bounded(expected);
                mesh.serve(move |from, (sender, value)| {
                    assert_eq!(from, sender);
                    got_tx.try_send((from, value)).unwrap();
                });
                let sender = mesh.sender();
                for peer in (0..shards).filter(|&p| p != shard) {
                    sender.send(peer, (shard, shard as u32 * 10)).await.unwrap();
                }
                for _ in 0..expected {
                    let (from, value) = got_rx.recv().await.unwrap();
                    done.send((shard, from, value)).unwrap();
                }
                sender.close();
            }
        })
        .unwrap();
        runtime.join().unwrap();
        let mut got: Vec<_> = done_rx.try_iter().collect();
        got.sort();
        let mut want = Vec::new();
        for to in 0..shards {
            for from in (0..shards).filter(|&f| f != to) {
                want.push((to, from, from as u32 * 10));
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn more_shards_than_cores_still_start() {
        let shards = available_cores() * 4;
        let (tx, rx) = mpsc::channel();
        Runtime::start(&RuntimeSpec::new(shards), move |shard| {
            let tx = tx.clone();
            async move { tx.send(shard).unwrap() }
        })
        .unwrap()
        .join()
        .unwrap();
        assert_eq!(rx.try_iter().count(), shards);
    }
}
