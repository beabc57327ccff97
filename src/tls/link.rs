//! One client's TLS session, sans-IO: ciphertext in, plaintext out, and the other way.
//! rustls' unbuffered connection keeps the keys and the handshake's state; the link
//! keeps only what a socket has not taken yet (`unsent`) and a record the client has
//! begun but not finished (`partial`). Both are empty, with no capacity, while the
//! connection is idle: the ciphertext is read into the shard's read buffer and
//! decrypted from there.

use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
use rustls::ServerConfig;

use super::provider::fingerprint;
use super::subject::subject_of;
use crate::transport::ClientCert;

/// Why a TLS session failed: what the client sent broke the protocol, or its
/// certificate did not verify.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(#[from] pub rustls::Error);

/// What [`TlsLink::open`] did with the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Bytes taken from the front of the input; the rest is the start of a record
    /// that is not complete yet.
    pub used: usize,
    /// The client sent `close_notify`: no more plaintext will come.
    pub peer_closed: bool,
}

/// One client's TLS session.
pub struct TlsLink {
    session: UnbufferedServerConnection,
    /// Ciphertext for the client that the socket has not taken yet, in order.
    pub unsent: Vec<u8>,
    /// Ciphertext from the client not used yet: the start of a record (or of a
    /// handshake message) it has not finished sending. Whoever reads puts it in front
    /// of the next bytes given to [`TlsLink::open`], and keeps what that leaves unused.
    pub partial: Vec<u8>,
    /// The client sent `close_notify`.
    peer_closed: bool,
}

impl std::fmt::Debug for TlsLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsLink")
            .field("handshaking", &self.is_handshaking())
            .field("unsent", &self.unsent.len())
            .field("partial", &self.partial.len())
            .finish()
    }
}

impl TlsLink {
    /// A new server session, before the client's hello.
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsLink, TlsError> {
        Ok(TlsLink {
            session: UnbufferedServerConnection::new(config)?,
            unsent: Vec::new(),
            partial: Vec::new(),
            peer_closed: false,
        })
    }

    /// True once the client sent `close_notify`: no more plaintext will come.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// True until the handshake is complete.
    pub fn is_handshaking(&self) -> bool {
        self.session.is_handshaking()
    }

    /// Feeds ciphertext from the client: every complete record is processed, the
    /// plaintext passed to `plain` in order, and what the session must send (its
    /// handshake flights, alerts, key updates) appended to `unsent`. On an error the
    /// alert that tells the client is in `unsent`.
    pub fn open(
        &mut self,
        input: &mut [u8],
        plain: &mut dyn FnMut(&[u8]),
    ) -> Result<Opened, TlsError> {
        let mut used = 0;
        loop {
            let status = self.session.process_tls_records(&mut input[used..]);
            let discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(error) => {
                    self.encode_alerts(&mut input[used + discard..]);
                    return Err(TlsError(error));
                }
            };
            let done = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        plain(record.map_err(TlsError)?.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut self.unsent, |out| encode.encode(out));
                    None
                }
                // Whatever was encoded is in `unsent`, which its owner sends in order.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => Some(true),
                // Early data is not accepted (the configuration offers none).
                ConnectionState::ReadEarlyData(_) => Some(false),
                ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => Some(false),
                _ => Some(false),
            };
            used += discard;
            if let Some(peer_closed) = done {
                self.peer_closed |= peer_closed;
                return Ok(Opened { used, peer_closed });
            }
        }
    }

    /// Encrypts `plain` as application data records appended to `out`.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        loop {
            // rustls may hold positions in the bytes not yet used (a handshake message
            // begun): they are `partial`, always handed back as the input.
            let status = self.session.process_tls_records(&mut self.partial);
            let discard = status.discard;
            let sealed = match status.state {
                Err(e) => Some(Err(TlsError(e))),
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(out, |buf| encode.encode(buf));
                    None
                }
                Ok(ConnectionState::TransmitTlsData(mut transmit)) => {
                    let sealed = transmit
                        .may_encrypt_app_data()
                        .map(|mut write| encrypt_into(out, |buf| write.encrypt(plain, buf)));
                    transmit.done();
                    sealed
                }
                Ok(ConnectionState::WriteTraffic(mut write)) => {
                    Some(encrypt_into(out, |buf| write.encrypt(plain, buf)))
                }
                // `partial` never holds a whole record (`open` used them all), so
                // there is nothing to read here; and before the handshake's end
                // nothing may be sealed.
                Ok(_) => Some(Err(TlsError(rustls::Error::HandshakeNotComplete))),
            };
            self.partial.drain(..discard);
            if let Some(sealed) = sealed {
                return sealed;
            }
        }
    }

    /// Appends a `close_notify` alert to `out` (nothing if the session cannot send one).
    pub fn close_notify(&mut self, out: &mut Vec<u8>) {
        for _ in 0..8 {
            let status = self.session.process_tls_records(&mut self.partial);
            let discard = status.discard;
            let done = match status.state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(out, |buf| encode.encode(buf));
                    false
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    false
                }
                Ok(ConnectionState::WriteTraffic(mut write)) => {
                    let _ = encrypt_into(out, |buf| write.queue_close_notify(buf));
                    true
                }
                _ => true,
            };
            self.partial.drain(..discard);
            if done {
                return;
            }
        }
    }

    /// The verified client certificate's identity, once the handshake is complete.
    pub fn client_cert(&self) -> Option<ClientCert> {
        let der = self.session.peer_certificates()?.first()?;
        let subject = subject_of(der.as_ref());
        Some(ClientCert {
            cn: subject.as_ref().and_then(|s| s.cn.clone()),
            subject: subject.map(|s| s.rfc4514),
            fingerprint: Some(fingerprint(der.as_ref())),
        })
    }

    /// Gives back the capacity of the buffers once they are empty.
    pub fn shrink(&mut self) {
        if self.unsent.is_empty() && self.unsent.capacity() > 0 {
            self.unsent = Vec::new();
        }
        if self.partial.is_empty() && self.partial.capacity() > 0 {
            self.partial = Vec::new();
        }
    }

    /// Moves the alerts the failed session has queued into `unsent`; `rest` is the
    /// input the failing call left unused (rustls may hold positions in it). Only
    /// while something is queued: past that, rustls would read `rest` again and
    /// meet the same fault a second time.
    fn encode_alerts(&mut self, rest: &mut [u8]) {
        while self.session.wants_write() {
            let status = self.session.process_tls_records(rest);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.unsent, |out| encode.encode(out));
                }
                _ => return,
            }
        }
    }
}

/// Runs an `encode` that wants a buffer of at least some size, growing `out` to it.
fn encode_into(out: &mut Vec<u8>, mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>) {
    let start = out.len();
    let mut room = 512;
    loop {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return;
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                room = required_size;
            }
            Err(EncodeError::AlreadyEncoded) => {
                out.truncate(start);
                return;
            }
        }
    }
}

/// [`encode_into`] for encryption: the room for `plain` and its record overhead.
fn encrypt_into(
    out: &mut Vec<u8>,
    mut encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), TlsError> {
    let start = out.len();
    let mut room = 256;
    loop {
        out.resize(start + room, 0);
        match encrypt(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                room = required_size;
            }
            Err(EncryptError::EncryptExhausted) => {
                out.truncate(start);
                return Err(TlsError(rustls::Error::EncryptError));
            }
        }
    }
}

#[cfg(test)]
mod tests;
