//! `--tls-cert`, `--tls-key`, `--tls-client-ca`, `--tls-client-auth`: the files, and
//! the rustls configuration made from them (at start and on every `SIGHUP`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::provider::provider;

/// Whether a client must present a certificate (`--tls-client-auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// Every client presents one that verifies, or the handshake fails.
    #[default]
    Required,
    /// A client may present none; one that it presents must verify.
    Optional,
}

/// Where the listener's certificate, key and client CA come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--tls-cert`: PEM, the certificate first, then its chain.
    pub cert: PathBuf,
    /// `--tls-key`: PEM, PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
    /// `--tls-client-ca`: PEM, the CAs client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// `--tls-client-auth`.
    pub client_auth: ClientAuth,
}

/// Why the files do not make a configuration; names the flag whose file is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{flag} {}: {reason}", path.display())]
pub struct FilesError {
    /// The flag.
    pub flag: &'static str,
    /// Its file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl TlsFiles {
    /// Reads the files and builds the listener's configuration: TLS 1.2 and 1.3,
    /// ALPN `http/1.1`, the client certificate check if a CA is given.
    pub fn load(&self) -> Result<Arc<ServerConfig>, FilesError> {
        let chain = certificates("tls-cert", &self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| error("tls-key", &self.key, pem_reason(&e)))?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| error("tls-cert", &self.cert, e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for ca in certificates("tls-client-ca", path)? {
                    roots
                        .add(ca)
                        .map_err(|e| error("tls-client-ca", path, e.to_string()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = match self.client_auth {
                    ClientAuth::Required => verifier,
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| error("tls-client-ca", path, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            error(
                "tls-key",
                &self.key,
                format!("does not fit --tls-cert: {e}"),
            )
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Every certificate of a PEM file; at least one.
fn certificates(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, FilesError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(flag, path, pem_reason(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(flag, path, pem_reason(&e)))?;
    if certs.is_empty() {
        return Err(error(flag, path, "holds no PEM certificate".into()));
    }
    Ok(certs)
}

fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "holds no PEM item of the right kind".into(),
        other => format!("not valid PEM: {other}"),
    }
}

fn error(flag: &'static str, path: &Path, reason: String) -> FilesError {
    FilesError {
        flag,
        path: path.to_owned(),
        reason,
    }
}
