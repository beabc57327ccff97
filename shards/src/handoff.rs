//! Moving an accepted socket to the shard that owns it.
//!
//! A glommio `TcpStream` is tied to the executor that made it and is not `Send`. To
//! move one, the shard that read its first bytes duplicates the file descriptor into a
//! [`Handoff`] (plain data, `Send`) together with those bytes, drops its own stream,
//! and sends the hand-off over the mesh; the owner turns it back into a stream of its
//! own executor. The bytes travel with it, so nothing the client sent is lost.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use glommio::net::TcpStream;

/// A socket on its way to its owner, with the bytes already read from it.
#[derive(Debug)]
pub struct Handoff {
    fd: OwnedFd,
    /// The peer's address (after PROXY protocol, if any).
    pub peer: SocketAddr,
    /// Bytes read from the socket before the hand-off, in order.
    pub bytes: Vec<u8>,
}

impl Handoff {
    /// Takes `stream` off this executor. The stream is consumed; its socket stays open
    /// through the duplicated descriptor.
    pub fn new(stream: TcpStream, peer: SocketAddr, bytes: Vec<u8>) -> io::Result<Handoff> {
        // SAFETY: the descriptor is valid while `stream` lives; we only borrow it to dup.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        let fd = borrowed.try_clone_to_owned()?;
        drop(stream);
        Ok(Handoff { fd, peer, bytes })
    }

    /// Re-creates the stream on the executor that calls this.
    pub fn into_stream(self) -> (TcpStream, SocketAddr, Vec<u8>) {
        let raw = self.fd.into_raw_fd();
        // SAFETY: `raw` is an open TCP socket we own, released just above.
        let stream = unsafe { TcpStream::from_raw_fd(raw) };
        (stream, self.peer, self.bytes)
    }

    /// The descriptor, for tests and logs.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_fd().as_raw_fd()
    }
}
