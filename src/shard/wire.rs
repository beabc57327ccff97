//! The client's bytes during the handshake phase (from accept to the 101 or a
//! refusal): the socket itself, or the socket through the connection's TLS link. The
//! upgrade request is read, and a refusal written, through a [`Wire`] the same way
//! in both cases; after the 101 the connection loop takes the socket and the link
//! apart again (`ws/connection.rs`).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use crate::tls::{TlsError, TlsLink};

/// Largest run of ciphertext held while a handshake message or record is incomplete:
/// rustls joins handshake messages of up to 64 KiB (a client's certificate chain) in
/// the caller's buffer.
const MAX_PENDING_CIPHERTEXT: usize = 80 * 1024;

/// How much one read asks for.
const READ_CHUNK: usize = 4096;

/// Why a TLS handshake did not complete: the `reason` of
/// `ws2api_tls_handshake_failures_total`.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeFailure {
    /// Nothing like a TLS handshake, a version or cipher we do not speak, ALPN
    /// without `http/1.1`.
    #[error("{0}")]
    Protocol(TlsError),
    /// The client's certificate is missing, unknown, expired or otherwise refused.
    #[error("{0}")]
    Certificate(TlsError),
    /// The socket ended or failed first.
    #[error("client socket: {0}")]
    Closed(io::Error),
    /// Not complete within `--handshake-timeout`.
    #[error("TLS handshake timed out")]
    Timeout,
}

impl HandshakeFailure {
    /// The metric's label (one of `stats::prometheus::TLS_FAILURE_REASONS`).
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeFailure::Protocol(_) => "protocol",
            HandshakeFailure::Certificate(_) => "certificate",
            HandshakeFailure::Closed(_) => "closed",
            HandshakeFailure::Timeout => "timeout",
        }
    }

    fn of(error: TlsError) -> HandshakeFailure {
        use rustls::Error;
        match &error.0 {
            Error::InvalidCertificate(_) | Error::NoCertificatesPresented => {
                HandshakeFailure::Certificate(error)
            }
            _ => HandshakeFailure::Protocol(error),
        }
    }
}

/// The client's socket, and its TLS link if it spoke TLS.
pub struct Wire<'a> {
    tcp: &'a mut TcpStream,
    tls: Option<Tls<'a>>,
}

struct Tls<'a> {
    /// The session; its `partial` holds the ciphertext read and not yet used.
    link: &'a mut TlsLink,
    /// Plaintext decrypted and not yet read.
    plain: Vec<u8>,
    /// The client sent close_notify.
    closed: bool,
    /// We sent close_notify.
    notified: bool,
}

impl<'a> Wire<'a> {
    /// The socket as it is.
    pub fn plain(tcp: &'a mut TcpStream) -> Wire<'a> {
        Wire { tcp, tls: None }
    }

    /// The socket, through `link` if there is one: for writing a refusal once the
    /// request was read.
    pub fn over(tcp: &'a mut TcpStream, link: Option<&'a mut TlsLink>) -> Wire<'a> {
        match link {
            Some(link) => Wire::tls(tcp, link, Vec::new()),
            None => Wire::plain(tcp),
        }
    }

    /// The socket through `link`; `cipher` is what was read already (behind a PROXY
    /// header) and belongs to the TLS session.
    pub fn tls(tcp: &'a mut TcpStream, link: &'a mut TlsLink, cipher: Vec<u8>) -> Wire<'a> {
        if !cipher.is_empty() {
            link.partial = cipher;
        }
        let tls = Tls {
            link,
            plain: Vec::new(),
            closed: false,
            notified: false,
        };
        Wire {
            tcp,
            tls: Some(tls),
        }
    }

    /// True if the client speaks TLS to us.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Runs the TLS handshake to its end (a plain wire has none). Plaintext that came
    /// with the client's last flight waits to be read.
    pub async fn handshake(&mut self) -> Result<(), HandshakeFailure> {
        std::future::poll_fn(|cx| self.poll_handshake(cx)).await
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HandshakeFailure>> {
        let Some(tls) = self.tls.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        loop {
            // Our flight first: the client waits for it.
            if let Err(e) = ready!(flush(self.tcp, tls.link, cx)) {
                if !tls.link.is_handshaking() {
                    // Complete; only the session tickets behind it found the client
                    // gone. Reading the request meets that.
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(HandshakeFailure::Closed(e)));
            }
            if !tls.link.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match ready!(tls.fill(self.tcp, cx)) {
                Ok(()) => {}
                Err(Filled::Tls(error)) => {
                    // The alert that tells the client why, if the socket takes it now.
                    let _ = flush(self.tcp, tls.link, cx);
                    return Poll::Ready(Err(HandshakeFailure::of(error)));
                }
                Err(Filled::Io(e)) => return Poll::Ready(Err(HandshakeFailure::Closed(e))),
            }
        }
    }

    /// Ends the handshake phase: bytes read and not yet used go back to the link (a
    /// record begun) and to `plain_out` (plaintext behind the request head).
    pub fn finish(self, plain_out: &mut Vec<u8>) {
        if let Some(tls) = self.tls {
            plain_out.extend_from_slice(&tls.plain);
            tls.link.shrink();
        }
    }
}

/// Why reading ciphertext gave nothing.
enum Filled {
    Tls(TlsError),
    Io(io::Error),
}

impl Tls<'_> {
    /// Reads once, and processes what came: plaintext to `plain`, our answers to the
    /// link's `unsent`.
    fn fill(&mut self, tcp: &mut TcpStream, cx: &mut Context<'_>) -> Poll<Result<(), Filled>> {
        // The bytes not used yet live in the link's `partial`; `open` reads them, with
        // what comes now behind them, from a buffer of its own, and what it leaves
        // unused goes back.
        let mut input = std::mem::take(&mut self.link.partial);
        let start = input.len();
        if start >= MAX_PENDING_CIPHERTEXT {
            self.link.partial = input;
            return Poll::Ready(Err(Filled::Tls(TlsError(
                rustls::Error::PeerSentOversizedRecord,
            ))));
        }
        input.resize(start + READ_CHUNK, 0);
        let read = Pin::new(&mut *tcp).poll_read(cx, &mut input[start..]);
        let n = match read {
            Poll::Ready(Ok(n)) => n,
            _ => 0,
        };
        input.truncate(start + n);
        let n = match read {
            Poll::Pending => {
                self.link.partial = input;
                return Poll::Pending;
            }
            Poll::Ready(Err(e)) => {
                self.link.partial = input;
                return Poll::Ready(Err(Filled::Io(e)));
            }
            Poll::Ready(Ok(0)) => {
                self.link.partial = input;
                return Poll::Ready(Err(Filled::Io(io::ErrorKind::UnexpectedEof.into())));
            }
            Poll::Ready(Ok(n)) => n,
        };
        debug_assert_eq!(input.len(), start + n);
        let plain = &mut self.plain;
        let opened = self
            .link
            .open(&mut input, &mut |bytes| plain.extend_from_slice(bytes));
        let used = opened.as_ref().map_or(0, |o| o.used);
        input.drain(..used);
        self.link.partial = input;
        let opened = opened.map_err(Filled::Tls)?;
        self.closed |= opened.peer_closed;
        Poll::Ready(Ok(()))
    }
}

/// Writes the link's `unsent` until it is empty or the socket takes no more.
fn flush(tcp: &mut TcpStream, link: &mut TlsLink, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    while !link.unsent.is_empty() {
        match ready!(Pin::new(&mut *tcp).poll_write(cx, &link.unsent)) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                link.unsent.drain(..n);
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

impl AsyncRead for Wire<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(tls) = this.tls.as_mut() else {
            return Pin::new(&mut *this.tcp).poll_read(cx, buf);
        };
        loop {
            if !tls.plain.is_empty() {
                let n = buf.len().min(tls.plain.len());
                buf[..n].copy_from_slice(&tls.plain[..n]);
                tls.plain.drain(..n);
                return Poll::Ready(Ok(n));
            }
            if tls.closed {
                return Poll::Ready(Ok(0));
            }
            ready!(flush(this.tcp, tls.link, cx))?;
            match ready!(tls.fill(this.tcp, cx)) {
                Ok(()) => {}
                // EOF without close_notify: the head reader says what it cut off.
                Err(Filled::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Ok(0))
                }
                Err(Filled::Io(e)) => return Poll::Ready(Err(e)),
                Err(Filled::Tls(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
    }
}

impl AsyncWrite for Wire<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(tls) = this.tls.as_mut() else {
            return Pin::new(&mut *this.tcp).poll_write(cx, buf);
        };
        // What was sealed before goes first; then all of `buf` is sealed at once.
        ready!(flush(this.tcp, tls.link, cx))?;
        let mut sealed = std::mem::take(&mut tls.link.unsent);
        let result = tls.link.seal(buf, &mut sealed);
        tls.link.unsent = sealed;
        result.map_err(io::Error::other)?;
        let _ = flush(this.tcp, tls.link, cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(tls) = this.tls.as_mut() {
            ready!(flush(this.tcp, tls.link, cx))?;
        }
        Pin::new(&mut *this.tcp).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(tls) = this.tls.as_mut() {
            if !tls.notified {
                tls.notified = true;
                let mut notify = std::mem::take(&mut tls.link.unsent);
                tls.link.close_notify(&mut notify);
                tls.link.unsent = notify;
            }
            ready!(flush(this.tcp, tls.link, cx))?;
        }
        Pin::new(&mut *this.tcp).poll_close(cx)
    }
}
