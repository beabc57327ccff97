//! Listening sockets for a group of shards: one `SO_REUSEPORT` socket per shard on the
//! same address, so the kernel spreads new connections over the shards without a lock.
//!
//! The sockets are bound on the starting thread, before any executor runs, so a bad or
//! busy address is reported before anything starts, and port 0 resolves to one port
//! that every shard shares.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Listen backlog asked of the kernel (it is capped by `net.core.somaxconn`).
pub const DEFAULT_BACKLOG: i32 = 65_535;

/// One bound, listening socket per shard, all on the same address.
#[derive(Debug)]
pub struct ListenerGroup {
    /// The address every socket is bound to (port 0 resolved).
    pub addr: SocketAddr,
    sockets: Vec<Option<OwnedFd>>,
}

impl ListenerGroup {
    /// Binds `count` sockets to `addr` with `SO_REUSEPORT`.
    pub fn bind(addr: SocketAddr, count: usize, backlog: i32) -> io::Result<ListenerGroup> {
        let mut sockets = Vec::with_capacity(count);
        let mut bound = addr;
        for _ in 0..count.max(1) {
            let socket = Socket::new(
                Domain::for_address(bound),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&bound.into())?;
            socket.listen(backlog)?;
            if let Some(local) = socket.local_addr()?.as_socket() {
                bound = local;
            }
            sockets.push(Some(OwnedFd::from(socket)));
        }
        Ok(ListenerGroup {
            addr: bound,
            sockets,
        })
    }

    /// Takes shard `shard`'s socket out of the group (once).
    pub fn take(&mut self, shard: usize) -> Option<OwnedFd> {
        self.sockets.get_mut(shard).and_then(Option::take)
    }
}

/// Wraps a socket from a [`ListenerGroup`] as a listener of the calling executor.
pub fn into_listener(fd: OwnedFd) -> glommio::net::TcpListener {
    // SAFETY: `fd` is a bound, listening TCP socket that we own.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd.into_raw_fd()) }
}

/// How long an accept loop pauses after an error such as `EMFILE` (out of descriptors)
/// before it tries again: accepting in a tight loop would only burn the core.
pub fn accept_backoff(error: &io::Error) -> Duration {
    match error.raw_os_error() {
        Some(libc_emfile) if libc_emfile == 24 || libc_emfile == 23 => Duration::from_millis(100),
        Some(105 /* ENOBUFS */) | Some(12 /* ENOMEM */) => Duration::from_millis(100),
        _ => Duration::from_millis(5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_once_for_the_whole_group() {
        let mut group = ListenerGroup::bind("127.0.0.1:0".parse().unwrap(), 3, 128).unwrap();
        assert_ne!(group.addr.port(), 0);
        for shard in 0..3 {
            assert!(group.take(shard).is_some());
        }
        assert!(group.take(0).is_none(), "a socket is taken once");
        assert!(group.take(3).is_none());
    }

    #[test]
    fn a_busy_address_is_an_error_before_anything_runs() {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = first.local_addr().unwrap();
        let err = ListenerGroup::bind(addr, 2, 128).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn out_of_descriptors_backs_off_longer() {
        let emfile = io::Error::from_raw_os_error(24);
        let other = io::Error::from_raw_os_error(103);
        assert!(accept_backoff(&emfile) > accept_backoff(&other));
    }
}
