//! Reading one request head (and a body) from a socket, within a size bound. The
//! caller bounds the time.

use std::io;

use futures_lite::{AsyncRead, AsyncReadExt};

use super::proxy::{self, ProxyError, ProxyHeader};
use super::request::{self, RequestError, RequestHead};
use crate::side::Side;

/// Why a head (or the PROXY header, or a body) could not be read. Always the client's side.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes are not an acceptable request head.
    #[error("bad request: {0}")]
    Request(#[from] RequestError),
    /// `--proxy-protocol` is on and the connection did not start with a valid header.
    #[error("PROXY protocol: {0}")]
    Proxy(#[from] ProxyError),
    /// The socket failed, or ended in the middle of what was being read.
    #[error("client socket: {0}")]
    Io(#[from] io::Error),
}

impl ReadError {
    /// Who failed: reading is only ever stopped by what the client sent or did.
    pub fn side(&self) -> Side {
        Side::Client
    }
}

/// How many bytes one read asks for while a head is incomplete.
const READ_CHUNK: usize = 1024;

/// Reads until `buf` holds a complete request head (bytes already in `buf` count).
/// Returns the head and its length; bytes after it stay in `buf`.
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    max_head: usize,
) -> Result<Option<(usize, RequestHead)>, ReadError> {
    loop {
        if !buf.is_empty() {
            if let Some(parsed) = request::parse(buf, max_head)? {
                return Ok(Some(parsed));
            }
        }
        let filled = buf.len();
        if filled >= max_head {
            return Err(RequestError::HeadTooLarge.into());
        }
        let n = read_more(stream, buf, READ_CHUNK.min(max_head - filled + 1)).await?;
        if n == 0 {
            // EOF: a clean end between requests, or a cut-off head.
            return if filled == 0 {
                Ok(None)
            } else {
                Err(io::Error::from(io::ErrorKind::UnexpectedEof).into())
            };
        }
    }
}

/// Largest PROXY protocol header accepted (v2 with TLVs fits comfortably).
pub const MAX_PROXY_HEADER: usize = 4096;

/// Reads a PROXY protocol (v1 or v2) header from the start of the stream and removes
/// it from `buf`; the bytes behind it (the HTTP request) stay in `buf`.
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<ProxyHeader, ReadError> {
    loop {
        if !buf.is_empty() {
            if let Some((used, header)) = proxy::parse(buf, MAX_PROXY_HEADER)? {
                buf.drain(..used);
                return Ok(header);
            }
        }
        if read_more(stream, buf, 256).await? == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
    }
}

/// Appends at most `chunk` bytes read from `stream` to `buf`; returns how many (0 at EOF).
async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    chunk: usize,
) -> Result<usize, ReadError> {
    let filled = buf.len();
    buf.resize(filled + chunk, 0);
    let result = stream.read(&mut buf[filled..]).await;
    let n = *result.as_ref().unwrap_or(&0);
    buf.truncate(filled + n);
    Ok(result?)
}

/// Reads until `buf` holds at least `len` bytes.
pub async fn read_exact_into<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    len: usize,
) -> Result<(), ReadError> {
    let filled = buf.len();
    if filled >= len {
        return Ok(());
    }
    buf.resize(len, 0);
    Ok(stream.read_exact(&mut buf[filled..]).await?)
}
