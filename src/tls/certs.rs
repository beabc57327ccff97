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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ClientAuth;

    /// A self-signed certificate for `name` and its key, as PEM.
    fn pem_pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_reload_reaches_each_shard_once_and_bad_files_keep_the_old_configuration() {
        let dir = std::env::temp_dir().join(format!("ws2api-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("cert.key"),
            client_ca: None,
            client_auth: ClientAuth::Required,
        };
        let (cert, key) = pem_pair("first.example");
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        let certs = Arc::new(Certs::load(files.clone()).unwrap());
        let shard = ShardCerts::new(certs.clone());
        let first = shard.current();
        assert!(
            Arc::ptr_eq(&first, &shard.current()),
            "no reload, same config"
        );

        let (cert, key) = pem_pair("second.example");
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        certs.reload().unwrap();
        let second = shard.current();
        assert!(
            !Arc::ptr_eq(&first, &second),
            "new handshakes get the new files"
        );
        assert!(Arc::ptr_eq(&second, &shard.current()));

        std::fs::write(&files.cert, "half a certificate").unwrap();
        let error = certs.reload().unwrap_err();
        assert_eq!(error.flag, "tls-cert");
        assert!(Arc::ptr_eq(&second, &shard.current()), "the old ones stay");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
