//! The byte stream of one load connection: plain TCP (`ws://`) or TLS over it
//! (`wss://`). An enum rather than a trait object, so that the plain path costs one
//! branch per call and no copy: its reads and writes go straight to the socket.

use std::io;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::tls::TlsStream;

pub enum Stream {
    Plain(TcpStream),
    /// Boxed: a rustls connection is large, and the plain connection's future need not
    /// carry its size.
    Tls(Box<TlsStream>),
}

impl Stream {
    /// Reads into `buf` (`Ok(0)`: the server closed). Cancel-safe on both paths.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(data).await,
            Stream::Tls(s) => s.write_all(data).await,
        }
    }

    /// The end of the session after the WebSocket close: a TLS `close_notify`; nothing
    /// on plain TCP, whose close is the socket's.
    pub async fn close(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(s) => s.close().await,
        }
    }
}
