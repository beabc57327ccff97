//! The client side of `wss://`: the rustls client config built once from the PEM files
//! of `--tls-ca` and `--tls-client-cert`/`--tls-client-key`, and `TlsStream`, a buffered
//! rustls `ClientConnection` driven over one glommio `TcpStream`.
//!
//! The stream is cancel-safe, as the plain `TcpStream` is: the worker races `read`
//! against a timer and drops the loser, so every byte taken from the socket and every
//! byte rustls has sealed but the socket has not yet taken lives in the struct, never
//! in a future.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// Ciphertext read from the socket per `recv`. rustls keeps partial records in a buffer
/// of its own, so this is a batch size, not a record bound: 8 KiB holds every answer and
/// push, and a broadcast of up to 8 KiB, in one `recv`.
const READ_BATCH: usize = 8 * 1024;

/// What every TLS connection of a run is made with.
#[derive(Debug, Clone)]
pub struct Tls {
    pub config: Arc<ClientConfig>,
    /// The name the server certificate is checked against (and the SNI, unless an IP).
    pub server_name: ServerName<'static>,
}

/// The certificates of a PEM file, at least one.
fn certificates(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = |e: &dyn std::fmt::Display| format!("{flag} {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| what(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| what(&e))?;
    if certs.is_empty() {
        return Err(what(&"no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// Reads the CA bundle and the client certificate and key, and builds the one config
/// every connection shares: TLS 1.3 and 1.2 with ring, ALPN `http/1.1`, session
/// resumption on (rustls' default in-memory cache, so that a reconnect storm resumes).
pub fn config(ca: &Path, server_name: &str, client: Option<(&Path, &Path)>) -> Result<Tls, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("--tls-ca", ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
    }
    let server_name = ServerName::try_from(server_name.to_string())
        .map_err(|e| format!("--tls-server-name {server_name:?}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates("--tls-client-cert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("--tls-client-key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("--tls-client-cert/--tls-client-key: {e}"))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::default();
    Ok(Tls {
        config: Arc::new(config),
        server_name,
    })
}

/// One TLS client connection over a glommio socket. The handshake runs inside the first
/// reads and writes: plaintext written before it ends waits in rustls and goes out
/// sealed once it does.
pub struct TlsStream {
    tcp: TcpStream,
    conn: ClientConnection,
    /// Ciphertext from the socket not yet handed to rustls: `rx[rx_at..rx_len]`.
    rx: Box<[u8]>,
    rx_at: usize,
    rx_len: usize,
    /// Records rustls has sealed that the socket has not taken yet: `tx[tx_at..]`.
    tx: Vec<u8>,
    tx_at: usize,
}

/// A rustls error as an I/O error, so that it ends the connection like any other.
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl TlsStream {
    /// Starts the client side of a handshake on `tcp` (nothing is sent yet).
    pub fn new(tcp: TcpStream, tls: &Tls) -> io::Result<TlsStream> {
        let conn = ClientConnection::new(tls.config.clone(), tls.server_name.clone())
            .map_err(tls_error)?;
        Ok(TlsStream {
            tcp,
            conn,
            rx: vec![0u8; READ_BATCH].into_boxed_slice(),
            rx_at: 0,
            rx_len: 0,
            tx: Vec::with_capacity(1024),
            tx_at: 0,
        })
    }

    /// Sends everything rustls has sealed (handshake messages, records, alerts).
    async fn flush(&mut self) -> io::Result<()> {
        loop {
            if self.tx_at == self.tx.len() {
                self.tx.clear();
                self.tx_at = 0;
                if !self.conn.wants_write() {
                    return Ok(());
                }
                self.conn.write_tls(&mut self.tx)?;
                continue;
            }
            let n = self.tcp.write(&self.tx[self.tx_at..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.tx_at += n;
        }
    }

    /// Seals all of `data` and sends it (with whatever rustls had queued before it).
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.conn.writer().write_all(data)?;
        self.flush().await
    }

    /// Reads plaintext into `buf`: `Ok(0)` after the server's `close_notify`, an
    /// `UnexpectedEof` error after a TCP EOF without one.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // Handshake flights, a KeyUpdate answer: out before we wait for more.
            if self.conn.wants_write() || self.tx_at < self.tx.len() {
                self.flush().await?;
            }
            if self.rx_at == self.rx_len {
                let n = self.tcp.read(&mut self.rx).await?;
                (self.rx_at, self.rx_len) = (0, n);
                if n == 0 {
                    // TCP EOF: rustls learns of it from an empty read.
                    self.conn.read_tls(&mut io::empty())?;
                    continue;
                }
            }
            // Fed only while no plaintext waits, so rustls' plaintext limit is never hit.
            let mut ciphertext = &self.rx[self.rx_at..self.rx_len];
            match self.conn.read_tls(&mut ciphertext)? {
                // Only after a close_notify, which the reader reports next turn.
                0 => self.rx_at = self.rx_len,
                fed => self.rx_at += fed,
            }
            if let Err(e) = self.conn.process_new_packets() {
                // rustls queued an alert saying why; the error is what counts.
                let _ = self.flush().await;
                return Err(tls_error(e));
            }
        }
    }

    /// Sends a `close_notify` (after the WebSocket close: the end of this TLS session).
    pub async fn close(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush().await
    }
}
