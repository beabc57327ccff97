//! Waking executors from a plain thread (a signal thread, `main`): a socket pair per
//! shard. The thread writes one byte; the shard awaits it with an io_uring read, so a
//! sleeping executor wakes at once and nobody polls a flag.

use std::io::{self, Write};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream as StdUnixStream;

use futures_lite::AsyncReadExt;

/// The thread's end: `Send`, usable from any thread.
#[derive(Debug)]
pub struct Waker {
    stream: StdUnixStream,
}

/// The shard's end: moved into the executor before use.
#[derive(Debug)]
pub struct Wakeup {
    stream: StdUnixStream,
}

/// A connected pair.
pub fn pair() -> io::Result<(Waker, Wakeup)> {
    let (a, b) = StdUnixStream::pair()?;
    a.set_nonblocking(true)?;
    Ok((Waker { stream: a }, Wakeup { stream: b }))
}

impl Waker {
    /// Sends one wakeup carrying `byte`. Never blocks: if the shard has a backlog of
    /// unread wakeups, this one is already implied and is dropped.
    pub fn wake(&self, byte: u8) {
        let _ = (&self.stream).write(&[byte]);
    }
}

impl Wakeup {
    /// Turns this end into an awaitable stream of wakeup bytes. Call from inside the executor.
    pub fn listen(self) -> io::Result<WakeupStream> {
        self.stream.set_nonblocking(true)?;
        let fd = self.stream.into_raw_fd();
        // SAFETY: `fd` was just released by a live socket we own.
        let stream = unsafe { glommio::net::UnixStream::from_raw_fd(fd) };
        Ok(WakeupStream { stream })
    }
}

/// The shard's awaitable end.
pub struct WakeupStream {
    stream: glommio::net::UnixStream,
}

impl WakeupStream {
    /// Waits for the next wakeup byte; `None` once every `Waker` is gone.
    pub async fn next(&mut self) -> Option<u8> {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte).await {
            Ok(1) => Some(byte[0]),
            _ => None,
        }
    }
}
