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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream as StdTcpStream};
    use std::os::fd::IntoRawFd;
    use std::time::Duration;

    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::{LocalExecutorBuilder, Placement};

    use super::*;

    /// Runs `body` on a fresh executor thread and returns what it returns.
    fn on_executor<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
        name: &str,
        body: impl FnOnce() -> F + Send + 'static,
    ) -> T {
        LocalExecutorBuilder::new(Placement::Unbound)
            .name(name)
            .spawn(body)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn a_handed_off_socket_keeps_its_bytes_and_peer_and_works_on_the_other_executor() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = StdTcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        accepted.set_nonblocking(true).unwrap();
        let fd = accepted.into_raw_fd();
        client.write_all(b"GET /42 HTTP/1.1\r\n").unwrap();

        // The executor that accepted reads the first bytes and lets the socket go; it
        // has ended (and dropped its stream) before the other one picks the socket up.
        let handoff = on_executor("accepting", move || async move {
            // SAFETY: `fd` is the accepted socket, released by its std stream above.
            let mut stream = unsafe { TcpStream::from_raw_fd(fd) };
            let mut first = vec![0u8; 18];
            stream.read_exact(&mut first).await.unwrap();
            Handoff::new(stream, peer, first).unwrap()
        });
        assert!(handoff.raw_fd() >= 0);

        let owner = std::thread::spawn(move || {
            on_executor("owning", move || async move {
                let (mut stream, peer, bytes) = handoff.into_stream();
                stream.write_all(b"HTTP/1.1 101 ").await.unwrap();
                let mut more = [0u8; 6];
                stream.read_exact(&mut more).await.unwrap();
                (peer, bytes, more)
                // The stream drops here: the socket's last descriptor closes.
            })
        });
        let mut answer = [0u8; 13];
        client.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"HTTP/1.1 101 ");
        client.write_all(b"Host: ").unwrap();
        let (got_peer, bytes, more) = owner.join().unwrap();
        assert_eq!(got_peer, peer);
        assert_eq!(
            bytes, b"GET /42 HTTP/1.1\r\n",
            "the bytes read before the hand-off"
        );
        assert_eq!(&more, b"Host: ");
        let mut rest = Vec::new();
        assert_eq!(
            client.read_to_end(&mut rest).unwrap(),
            0,
            "closed once the owner drops it: no descriptor left behind on the accepting side"
        );
    }
}
