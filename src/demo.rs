//! The built-in demo API (`--demo`): a tiny HTTP server on loopback that plays the API
//! server's part, so the gateway does something useful at once.
//!
//! - `GET /` → a chat page (`demo/chat.html`) that connects to the gateway's public address;
//! - `GET /<ClientId>` → `ok` (any client may connect); with `?room=<room>` the client joins
//!   that room (`X-Group-Join`) and the room hears `<name> joined`;
//! - `POST /<ClientId>` from a client in a room → broadcast `<name>: <text>` to the room;
//!   otherwise → `echo: <message>`, and a message `push <text>` makes the demo push `<text>`
//!   back through the control listener (the way a real API server pushes) and answer `pushed`;
//! - `DELETE /<ClientId>` → `ok`, a line on stderr, and `<name> left` to its room, if any.
//!
//! Rooms are groups: the demo joins with the `X-Group-Join` header and broadcasts with
//! `POST /groups/<room>` on the control listener, the calls a real API server makes.
//!
//! It runs on plain threads, apart from the shards, like any outside API server.

// The demo's one lock guards its room map; it runs on plain threads, not on a shard's hot path.
#![allow(clippy::disallowed_types)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use crate::client_id::ClientId;
use crate::http::request::{self, Method, RequestHead};
use crate::http::response::write_response;

/// The chat page; `WS_ADDR` stands where the gateway's public address goes.
const CHAT_PAGE: &str = include_str!("demo/chat.html");

/// A running demo API.
pub struct Demo {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

/// What every connection thread of the demo sees.
#[derive(Default)]
struct Shared {
    /// The gateway's control listener (pushes, broadcasts); set once the gateway runs.
    control: OnceLock<SocketAddr>,
    /// The gateway's public listener as a browser on this machine reaches it (the chat page).
    public: OnceLock<SocketAddr>,
    /// Chat members by `X-Connection-Id`: (name, room), from Connect until Disconnect.
    ///
    /// A stateless API would learn the room from the Connect query and, for a message, ask
    /// `GET /<ClientId>` on the control listener (its JSON lists "groups"); but a Disconnect
    /// arrives after the connection has left its groups, so nothing there still names the room
    /// to tell `<name> left`. So the demo keeps this small map, as a real API would keep it in its
    /// session store, and uses it for messages too. Keyed by connection, not by name, so a
    /// replaced connection's late Disconnect cannot remove its successor.
    rooms: Mutex<HashMap<String, Member>>,
}

/// One chat client: its name (the ClientId) and its room.
#[derive(Clone)]
struct Member {
    name: String,
    room: String,
}

impl Shared {
    fn member(&self, connection: &str) -> Option<Member> {
        if connection.is_empty() {
            return None;
        }
        self.rooms.lock().ok()?.get(connection).cloned()
    }
}

impl Demo {
    /// Binds `addr` and serves in the background.
    pub fn start(addr: SocketAddr) -> io::Result<Demo> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let for_threads = shared.clone();
        thread::Builder::new()
            .name("ws2api-demo".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let shared = for_threads.clone();
                    let _ = thread::Builder::new()
                        .name("ws2api-demo-conn".into())
                        .spawn(move || serve(stream, &shared));
                }
            })?;
        Ok(Demo { addr, shared })
    }

    /// Tells the demo where the gateway's control listener is (for its pushes and broadcasts).
    pub fn set_control(&self, control: SocketAddr) {
        let _ = self.shared.control.set(control);
    }

    /// Tells the demo the gateway's public address as a client on this machine reaches it (the
    /// chat page connects there).
    pub fn set_public(&self, public: SocketAddr) {
        let _ = self.shared.public.set(public);
    }
}

/// One answer of the demo: status, Content-Type, extra headers, body.
struct Answer {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn text(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.into(),
        }
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) {
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
        let answer = answer(&head, &body, shared);
        let headers: Vec<(&str, &str)> = answer
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let mut out = Vec::new();
        write_response(
            &mut out,
            answer.status,
            Some(answer.content_type),
            &headers,
            &answer.body,
            true,
        );
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// The demo's answer to one request.
fn answer(head: &RequestHead, body: &[u8], shared: &Shared) -> Answer {
    if head.method == Method::Get && head.path == "/" {
        return chat_page(shared);
    }
    let client = head.path.trim_start_matches('/').to_owned();
    let connection = head
        .header("x-connection-id")
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default();
    match head.method {
        Method::Get => match room_of(head.query.as_deref()) {
            None => Answer::text(200, "ok"),
            Some(room) => join(shared, &client, &room, &connection),
        },
        Method::Post => match shared.member(&connection) {
            Some(member) => {
                let line = [member.name.as_bytes(), b": ", body].concat();
                broadcast(shared, &member.room, &line);
                // Nothing back to the sender itself: it is in the room and gets the broadcast.
                Answer::text(200, "")
            }
            None => echo_or_push(shared, &client, body),
        },
        Method::Delete => {
            let code = head
                .header("x-close-code")
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .unwrap_or_default();
            eprintln!(
                "demo: {client} left ({code} {})",
                String::from_utf8_lossy(body)
            );
            let left = shared
                .rooms
                .lock()
                .ok()
                .and_then(|mut rooms| rooms.remove(&connection));
            if let Some(member) = left {
                broadcast(
                    shared,
                    &member.room,
                    format!("{} left", member.name).as_bytes(),
                );
            }
            Answer::text(200, "ok")
        }
        _ => Answer::text(200, ""),
    }
}

/// `GET /`: the chat page, with the gateway's public address filled in.
fn chat_page(shared: &Shared) -> Answer {
    let Some(public) = shared.public.get() else {
        return Answer::text(503, "the gateway is still starting");
    };
    Answer {
        status: 200,
        content_type: "text/html; charset=utf-8",
        headers: vec![
            ("Cache-Control", "no-store".into()),
            // Inline style and script only; the page may open WebSockets and nothing else.
            (
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                 connect-src ws:; img-src data:"
                    .into(),
            ),
        ],
        // A SocketAddr prints as digits, dots, colons and brackets: nothing to escape in HTML.
        body: CHAT_PAGE
            .replace("WS_ADDR", &public.to_string())
            .into_bytes(),
    }
}

/// The `room` of a Connect query (`a=1&room=r1`), as sent (not percent-decoded).
fn room_of(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("room="))
        .map(str::to_owned)
}

/// Connect with `?room=`: `<name> joined` to the room, then `ok` with `X-Group-Join: <room>`.
///
/// The broadcast goes out before the answer, so the newcomer, not yet a member, does not get its
/// own line (the page says "you are in ..." itself) and the others hear of it before any of its
/// messages.
fn join(shared: &Shared, client: &str, room: &str, connection: &str) -> Answer {
    // The gateway has checked the name; a room is a group name, of the same form.
    if ClientId::parse(client.as_bytes()).is_err() || ClientId::parse(room.as_bytes()).is_err() {
        return Answer::text(400, "name and room: 1-128 of A-Z a-z 0-9 . _ ~ -");
    }
    broadcast(shared, room, format!("{client} joined").as_bytes());
    if let Ok(mut rooms) = shared.rooms.lock() {
        rooms.insert(
            connection.to_owned(),
            Member {
                name: client.to_owned(),
                room: room.to_owned(),
            },
        );
    }
    let mut answer = Answer::text(200, "ok");
    answer.headers.push(("X-Group-Join", room.to_owned()));
    answer
}

/// A message from a client in no room: `echo: <message>`, or a push for `push <text>`.
fn echo_or_push(shared: &Shared, client: &str, body: &[u8]) -> Answer {
    let Some(text) = body.strip_prefix(b"push ") else {
        return Answer::text(200, [b"echo: ".as_slice(), body].concat());
    };
    let text = text.to_vec();
    let target = shared.control.get().copied();
    let who = client.to_owned();
    // Push from another thread, as an API server would from elsewhere.
    thread::spawn(move || {
        if let Some(target) = target {
            if let Err(e) = control(target, &format!("/{who}"), &text) {
                eprintln!("demo: push to {who} failed: {e}");
            }
        }
    });
    Answer::text(200, "pushed")
}

/// `POST /groups/<room>` with `line`; a failure is only logged (the chat goes on).
fn broadcast(shared: &Shared, room: &str, line: &[u8]) {
    let Some(&target) = shared.control.get() else {
        return;
    };
    if let Err(e) = control(target, &format!("/groups/{room}"), line) {
        eprintln!("demo: broadcast to {room} failed: {e}");
    }
}

/// `POST <path>` with `text` to the control listener, the way an API server pushes.
fn control(control: SocketAddr, path: &str, text: &[u8]) -> io::Result<()> {
    let mut stream = TcpStream::connect(control)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {control}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_comes_from_the_connect_query() {
        assert_eq!(room_of(None), None);
        assert_eq!(room_of(Some("")), None);
        assert_eq!(room_of(Some("x=1")), None);
        assert_eq!(room_of(Some("room=r1")).as_deref(), Some("r1"));
        assert_eq!(room_of(Some("x=1&room=r2&room=r3")).as_deref(), Some("r2"));
    }

    #[test]
    fn the_page_is_self_contained_and_names_the_gateway() {
        let shared = Shared::default();
        assert_eq!(chat_page(&shared).status, 503);
        let _ = shared.public.set("127.0.0.1:7001".parse().unwrap());
        let page = String::from_utf8(chat_page(&shared).body).unwrap();
        assert!(page.contains(r#"data-ws="127.0.0.1:7001""#));
        assert!(!page.contains("WS_ADDR"));
        for external in ["src=", "href=\"http", "@import", "url("] {
            assert!(!page.contains(external), "{external}");
        }
        assert!(!page.contains("innerHTML"));
    }

    #[test]
    fn a_bad_room_is_refused_before_any_broadcast() {
        let shared = Shared::default();
        assert_eq!(join(&shared, "alice", "a%20b", "1").status, 400);
        assert_eq!(join(&shared, "alice", "*", "1").status, 400);
        assert!(shared.member("1").is_none());
        let ok = join(&shared, "alice", "r1", "1");
        assert_eq!((ok.status, ok.body.as_slice()), (200, b"ok".as_slice()));
        assert_eq!(ok.headers, [("X-Group-Join", "r1".to_owned())]);
        assert_eq!(shared.member("1").unwrap().room, "r1");
    }
}
