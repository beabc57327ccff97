//! The listener's current TLS configuration, replaced as a whole on `SIGHUP`. The
//! signal thread loads the files and publishes the result with a new generation;
//! each shard keeps its own `Arc` of it and looks at the generation (one atomic load)
//! per TLS accept, taking the slot's lock only in the rare accept that finds a newer
//! one. Handshakes already begun, and open connections, keep the configuration they
//! started with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::ServerConfig;

use super::files::{FilesError, TlsFiles};

/// Shared by the signal thread and every shard.
pub struct Certs {
    files: TlsFiles,
    generation: AtomicU64,
    // A lock, taken only by a reload and by a shard's first accept after one; never
    // on the message path.
    #[allow(clippy::disallowed_types)]
    current: std::sync::Mutex<Arc<ServerConfig>>,
}

impl Certs {
    /// Loads the files once.
    pub fn load(files: TlsFiles) -> Result<Certs, FilesError> {
        let config = files.load()?;
        #[allow(clippy::disallowed_types)]
        let current = std::sync::Mutex::new(config);
        Ok(Certs {
            files,
            generation: AtomicU64::new(0),
            current,
        })
    }

    /// Loads the files again; on success new handshakes use them. On failure the old
    /// configuration stays, and the error says which file.
    pub fn reload(&self) -> Result<(), FilesError> {
        let config = self.files.load()?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = config;
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    fn snapshot(&self) -> (u64, Arc<ServerConfig>) {
        let generation = self.generation.load(Ordering::Acquire);
        let config = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (generation, config)
    }
}

/// One shard's view of [`Certs`].
pub struct ShardCerts {
    shared: Arc<Certs>,
    seen: std::cell::Cell<u64>,
    config: std::cell::RefCell<Arc<ServerConfig>>,
}

impl ShardCerts {
    /// A shard's view, current as of now.
    pub fn new(shared: Arc<Certs>) -> ShardCerts {
        let (generation, config) = shared.snapshot();
        ShardCerts {
            shared,
            seen: std::cell::Cell::new(generation),
            config: std::cell::RefCell::new(config),
        }
    }

    /// The configuration a new handshake uses.
    pub fn current(&self) -> Arc<ServerConfig> {
        if self.shared.generation.load(Ordering::Acquire) != self.seen.get() {
            let (generation, config) = self.shared.snapshot();
            self.seen.set(generation);
            *self.config.borrow_mut() = config;
        }
        self.config.borrow().clone()
    }
}
