//! TLS on the public listener (`--tls-cert`): rustls' unbuffered connection, driven
//! sans-IO over the shard's sockets the way the WebSocket codec is.
//!
//! * `files.rs`: the flags' files → a rustls configuration (TLS 1.2/1.3, ALPN
//!   `http/1.1`, client certificates against `--tls-client-ca`).
//! * `certs.rs`: the current configuration, replaced on `SIGHUP`.
//! * `link.rs`: one client's session: ciphertext in, plaintext out, and back.
//! * `subject.rs`: a certificate's subject as RFC 4514 text and its CN.
//! * `provider.rs`: the crypto provider and the fingerprint digest.
//!
//! The gateway's own code meets TLS in two places only: the handshake phase
//! (`shard/tls_stream.rs`, an async stream over a link) and the connection loop,
//! whose reads decrypt and whose writes encrypt through the connection's link.

mod certs;
mod files;
mod link;
mod provider;
mod subject;
#[cfg(test)]
pub mod testing;

pub use certs::{Certs, ShardCerts};
pub use files::{ClientAuth, FilesError, TlsFiles};
pub use link::{Opened, TlsError, TlsLink};
pub use provider::fingerprint;
pub use subject::{subject_of, Subject};
