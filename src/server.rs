//! Starting and stopping a whole gateway: bind every shard's listeners, start the
//! executors, and wake them from the starting thread (signals, tests).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ws2api_shards::listener::{ListenerGroup, DEFAULT_BACKLOG};
use ws2api_shards::wake::{self, Waker};
use ws2api_shards::{MeshPlan, Runtime, RuntimeSpec};

use crate::config::Config;
use crate::shard::{self, wake_byte, ShardMsg, ShardStart, MESH_CAPACITY};
use crate::tls::Certs;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listening address could not be bound (the flag is named).
    #[error("--{flag} {addr}: {source}")]
    Bind {
        /// The flag that named the address.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// What the kernel said.
        source: io::Error,
    },
    /// The TLS files did not load (they did when the flags were checked).
    #[error("{0}")]
    Tls(#[from] crate::tls::FilesError),
    /// The executors could not start.
    #[error("starting shards: {0}")]
    Runtime(io::Error),
}

/// 48 random bits naming this gateway process in connection ids. `RandomState` is
/// seeded from the OS's random source, so no extra dependency is needed.
fn process_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish() & 0xffff_ffff_ffff
}

/// A running gateway.
pub struct Gateway {
    /// Where WebSocket clients connect (port 0 resolved).
    pub public_addr: SocketAddr,
    /// Where the control listener is (port 0 resolved).
    pub control_addr: SocketAddr,
    wakers: Arc<Vec<Waker>>,
    certs: Option<Arc<Certs>>,
    runtime: Runtime,
}

/// Wakes every shard of a gateway; `Send`, for a signal thread.
#[derive(Clone)]
pub struct Stopper {
    wakers: Arc<Vec<Waker>>,
}

impl Stopper {
    /// Begins the orderly stop on every shard.
    pub fn stop(&self) {
        for waker in self.wakers.iter() {
            waker.wake(wake_byte::STOP);
        }
    }

    /// Every shard prints its counters to stderr.
    pub fn dump(&self) {
        for waker in self.wakers.iter() {
            waker.wake(wake_byte::DUMP);
        }
    }
}

impl Gateway {
    /// Binds the listeners and starts the shards. Connections are queued by the
    /// kernel from the moment this returns.
    pub fn start(config: Config) -> Result<Gateway, StartError> {
        let shards = config.shards;
        let mut public =
            ListenerGroup::bind(config.listen, shards, DEFAULT_BACKLOG).map_err(|source| {
                StartError::Bind {
                    flag: "listen",
                    addr: config.listen,
                    source,
                }
            })?;
        let mut control = ListenerGroup::bind(config.control.listen, shards, DEFAULT_BACKLOG)
            .map_err(|source| StartError::Bind {
                flag: "control-listen",
                addr: config.control.listen,
                source,
            })?;
        let certs = match &config.tls {
            Some(files) => Some(Arc::new(Certs::load(files.clone())?)),
            None => None,
        };
        let boot = process_id();
        let plan: MeshPlan<ShardMsg> = MeshPlan::new(shards, MESH_CAPACITY);
        let config = Arc::new(config);
        let mut wakers = Vec::with_capacity(shards);
        let mut starts = Vec::with_capacity(shards);
        for id in 0..shards {
            let (waker, wakeup) = wake::pair().map_err(StartError::Runtime)?;
            wakers.push(waker);
            starts.push(ShardStart {
                id,
                config: config.clone(),
                plan: plan.clone(),
                public: public.take(id).expect("one public socket per shard"),
                control: control.take(id).expect("one control socket per shard"),
                wakeup,
                boot,
                certs: certs.clone(),
            });
        }
        // Each shard takes its own start; the closure is cloned per shard, so the
        // starts travel in a shared slot indexed by shard. A lock, at start-up only:
        // each slot is taken once, before the shard runs.
        #[allow(clippy::disallowed_types)]
        let slots: Arc<Vec<std::sync::Mutex<Option<ShardStart>>>> = Arc::new(
            starts
                .into_iter()
                .map(|s| std::sync::Mutex::new(Some(s)))
                .collect(),
        );
        let mut spec = RuntimeSpec::new(shards);
        spec.name = "ws2api-shard".into();
        let runtime = Runtime::start(&spec, move |id| {
            let start = slots[id]
                .lock()
                .expect("start slot")
                .take()
                .expect("each shard starts once");
            shard::run(start)
        })
        .map_err(StartError::Runtime)?;
        Ok(Gateway {
            public_addr: public.addr,
            control_addr: control.addr,
            wakers: Arc::new(wakers),
            certs,
            runtime,
        })
    }

    /// A handle that stops or dumps this gateway from any thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            wakers: self.wakers.clone(),
        }
    }

    /// The TLS configuration `SIGHUP` reloads, with `--tls-cert`.
    pub fn certs(&self) -> Option<Arc<Certs>> {
        self.certs.clone()
    }

    /// Waits until every shard has stopped.
    pub fn join(self) -> io::Result<()> {
        self.runtime.join()
    }
}
