//! The built-in demo API (`--demo`): a tiny HTTP server on loopback that plays the API
//! server's part, so the gateway does something useful at once.
//!
//! - `GET /<ClientId>` → `ok` (any client may connect);
//! - `POST /<ClientId>` → `echo: <message>`; a message `push <text>` makes the demo
//!   push `<text>` back through the control listener (the way a real API server
//!   pushes) and answer `pushed`;
//! - `DELETE /<ClientId>` → `ok`, and a line on stderr.
//!
//! It runs on plain threads, apart from the shards, like any outside API server.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};
use std::thread;

use crate::http::request::{self, Method};
use crate::http::response::write_response;

/// A running demo API.
pub struct Demo {
    /// Where it listens.
    pub addr: SocketAddr,
    control: Arc<OnceLock<SocketAddr>>,
}

impl Demo {
    /// Binds `addr` and serves in the background.
    pub fn start(addr: SocketAddr) -> io::Result<Demo> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let control: Arc<OnceLock<SocketAddr>> = Arc::new(OnceLock::new());
        let shared = control.clone();
        thread::Builder::new()
            .name("ws2api-demo".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let control = shared.clone();
                    let _ = thread::Builder::new()
                        .name("ws2api-demo-conn".into())
                        .spawn(move || serve(stream, &control));
                }
            })?;
        Ok(Demo { addr, control })
    }

    /// Tells the demo where the gateway's control listener is (for its pushes).
    pub fn set_control(&self, control: SocketAddr) {
        let _ = self.control.set(control);
    }
}

fn serve(mut stream: TcpStream, control: &OnceLock<SocketAddr>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let (head_len, head) = loop {
            match request::parse(&buf, 64 * 1024) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {}
                Err(_) => return,
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let len = head.content_length.unwrap_or(0);
        while buf.len() < head_len + len {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf[head_len..head_len + len].to_vec();
        buf.drain(..head_len + len);
        let client = head.path.trim_start_matches('/').to_owned();
        let answer: Vec<u8> = match head.method {
            Method::Get => b"ok".to_vec(),
            Method::Post => match body.strip_prefix(b"push ") {
                Some(text) => {
                    let text = text.to_vec();
                    let target = control.get().copied();
                    let who = client.clone();
                    // Push from another thread, as an API server would from elsewhere.
                    thread::spawn(move || {
                        if let Some(target) = target {
                            if let Err(e) = push(target, &who, &text) {
                                eprintln!("demo: push to {who} failed: {e}");
                            }
                        }
                    });
                    b"pushed".to_vec()
                }
                None => [b"echo: ".as_slice(), &body].concat(),
            },
            Method::Delete => {
                let code = head
                    .header("x-close-code")
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .unwrap_or_default();
                eprintln!(
                    "demo: {client} left ({code} {})",
                    String::from_utf8_lossy(&body)
                );
                b"ok".to_vec()
            }
            _ => b"".to_vec(),
        };
        let mut out = Vec::new();
        write_response(
            &mut out,
            200,
            Some("text/plain; charset=utf-8"),
            &[],
            &answer,
            true,
        );
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// `POST /<client>` to the control listener, the way an API server pushes.
fn push(control: SocketAddr, client: &str, text: &[u8]) -> io::Result<()> {
    let mut stream = TcpStream::connect(control)?;
    let head = format!(
        "POST /{client} HTTP/1.1\r\nHost: {control}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(text)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    if !answer.starts_with("HTTP/1.1 200") {
        return Err(io::Error::other(
            answer.lines().next().unwrap_or("").to_owned(),
        ));
    }
    Ok(())
}
