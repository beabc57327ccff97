//! `ws2api-bench-api`: a small, fast API server for load tests of ws2api. HTTP/1.1
//! keep-alive (pipelining too) on glommio, one executor per `--threads`, each with its own
//! SO_REUSEPORT listener. `GET` → `ok`, `POST` → `{"echo":<body>}` (the body verbatim if
//! it looks like JSON, else as a JSON string), `DELETE` → `ok`.
//!
//! It also answers Pushpin's WebSocket-over-HTTP (`Content-Type:
//! application/websocket-events`): `OPEN` → `OPEN`, `TEXT`/`BINARY` → the same echo as a
//! `TEXT` event, `PING` → `PONG`, `CLOSE` → `CLOSE`, `DISCONNECT` → nothing.
//!
//! With `--groups K` every client joins group `<prefix><i mod K>`, `i` being the number at
//! the end of its ClientId (ws2api-load's `load-<i>`): ws2api through `X-Group-Join` in the
//! Connect answer, Pushpin through a GRIP `subscribe` control message in the `OPEN` answer
//! (with `Sec-WebSocket-Extensions: grip; message-prefix=""`, so other messages need no prefix).

use std::cell::Cell;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

#[derive(Parser, Debug)]
#[command(
    name = "ws2api-bench-api",
    version,
    about = "Fast echo API server for ws2api load tests"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Executors (threads), each accepting on its own SO_REUSEPORT socket.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Largest request (head + body) accepted; larger closes the connection with 413.
    #[arg(long, default_value_t = 1 << 20)]
    max_request: usize,
    /// Print requests per second to stderr every second.
    #[arg(long)]
    stats: bool,
    /// Join every client to one of K groups, `<group-prefix><i mod K>` for the ClientId
    /// ending in the number i (0: no groups). ws2api: `X-Group-Join` in the Connect
    /// answer; Pushpin: a `subscribe` control message in the answer to `OPEN`.
    #[arg(long, default_value_t = 0)]
    groups: u64,
    /// Group names are this prefix and the group number.
    #[arg(long, default_value = "g")]
    group_prefix: String,
}

/// What every answer depends on besides the request: the group a client joins.
#[derive(Clone, Debug)]
struct Groups {
    count: u64,
    prefix: String,
}

impl Groups {
    /// The group of the client at `path` (`/load-17` → `g1` of 4), if groups are on.
    fn of(&self, path: &str) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let id = path.split('?').next().unwrap_or("");
        let digits = id.len() - id.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let i: u64 = id[id.len() - digits..].parse().unwrap_or(0);
        Some(format!("{}{}", self.prefix, i % self.count))
    }
}

/// One handled request's outcome for the connection loop.
enum Step {
    /// A complete request of `n` bytes; keep the connection unless `close`.
    Done {
        n: usize,
        close: bool,
    },
    NeedMore,
    Bad(&'static str),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = cli.threads.max(1);
    // Bound here, with SO_REUSEADDR and SO_REUSEPORT, one socket per thread: a run right
    // after another finds the port free even with connections still in TIME_WAIT.
    let mut group = match ws2api_shards::ListenerGroup::bind(
        cli.listen,
        threads,
        ws2api_shards::listener::DEFAULT_BACKLOG,
    ) {
        Ok(group) => group,
        Err(e) => {
            eprintln!("ws2api-bench-api: error: --listen {}: {e}", cli.listen);
            return ExitCode::from(2);
        }
    };
    let groups = Groups {
        count: cli.groups,
        prefix: cli.group_prefix.clone(),
    };
    let mut handles = Vec::new();
    for t in 0..threads {
        let (listen, max, stats) = (group.addr, cli.max_request, cli.stats);
        let groups = groups.clone();
        let Some(fd) = group.take(t) else {
            return ExitCode::from(1);
        };
        let h = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("bench-api-{t}"))
            .ring_depth(4096)
            .io_memory(1 << 20)
            .spawn(move || async move {
                let listener = ws2api_shards::listener::into_listener(fd);
                serve(listener, listen, max, stats && t == 0, t, groups).await
            });
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("ws2api-bench-api: error: cannot start executor {t}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let mut code = ExitCode::SUCCESS;
    for h in handles {
        if !matches!(h.join(), Ok(Ok(()))) {
            code = ExitCode::from(1);
        }
    }
    code
}

async fn serve(
    listener: TcpListener,
    listen: SocketAddr,
    max: usize,
    stats: bool,
    t: usize,
    groups: Groups,
) -> Result<(), String> {
    let groups = Rc::new(groups);
    if t == 0 {
        eprintln!("ws2api-bench-api: listening on http://{listen}/");
    }
    let requests = Rc::new(Cell::new(0u64));
    if stats {
        let r = requests.clone();
        glommio::spawn_local(async move {
            let mut last = 0;
            loop {
                glommio::timer::sleep(Duration::from_secs(1)).await;
                eprintln!("ws2api-bench-api: {} requests/s (thread 0)", r.get() - last);
                last = r.get();
            }
        })
        .detach();
    }
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let (r, g) = (requests.clone(), groups.clone());
                glommio::spawn_local(async move { connection(stream, max, &r, &g).await }).detach();
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("ws2api-bench-api: accept: {e}");
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(mut stream: TcpStream, max: usize, requests: &Cell<u64>, groups: &Groups) {
    let mut buf: Vec<u8> = vec![0; 4096];
    let mut len = 0;
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    loop {
        if len == buf.len() {
            if buf.len() >= max {
                let _ = stream.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                return;
            }
            buf.resize((buf.len() * 2).min(max), 0);
        }
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        // Answer every complete request in the buffer with one write.
        let mut at = 0;
        let mut close = false;
        out.clear();
        while at < len {
            match handle(&buf[at..len], &mut out, groups) {
                Step::Done { n, close: c } => {
                    requests.set(requests.get() + 1);
                    at += n;
                    if c {
                        close = true;
                        break;
                    }
                }
                Step::NeedMore => break,
                Step::Bad(why) => {
                    let _ = write!(out, "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{why}", why.len());
                    close = true;
                    break;
                }
            }
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
        if close {
            return;
        }
        buf.copy_within(at..len, 0);
        len -= at;
        if len == 0 && buf.len() > 4096 {
            buf.truncate(4096);
            buf.shrink_to_fit();
        }
    }
}

/// Parses one request at the start of `input` and appends its answer to `out`.
fn handle(input: &[u8], out: &mut Vec<u8>, groups: &Groups) -> Step {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Step::NeedMore,
        Err(_) => return Step::Bad("bad request head"),
    };
    let mut content_length = 0usize;
    let mut close = req.version == Some(0);
    let mut ws_events = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            {
                Some(n) => content_length = n,
                None => return Step::Bad("bad Content-Length"),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Step::Bad("chunked requests are not supported");
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        } else if h.name.eq_ignore_ascii_case("content-type") {
            ws_events = h.value.starts_with(b"application/websocket-events");
        }
    }
    if input.len() < head + content_length {
        return Step::NeedMore;
    }
    let body = &input[head..head + content_length];
    let method = req.method.unwrap_or("");
    let conn = if close { "Connection: close\r\n" } else { "" };
    let group = groups.of(req.path.unwrap_or(""));
    if ws_events {
        let mut events = Vec::with_capacity(body.len() + 32);
        ws_over_http(body, &mut events, group.as_deref());
        // GRIP on, and no prefix on ordinary messages: echoes stay as they are.
        let grip = if group.is_some() {
            "Sec-WebSocket-Extensions: grip; message-prefix=\"\"\r\n"
        } else {
            ""
        };
        let _ = write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: application/websocket-events\r\n{grip}Content-Length: {}\r\n{conn}\r\n",
            events.len()
        );
        out.extend_from_slice(&events);
        return Step::Done {
            n: head + content_length,
            close,
        };
    }
    match method {
        "GET" => {
            let join = match &group {
                Some(g) => format!("X-Group-Join: {g}\r\n"),
                None => String::new(),
            };
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{join}Content-Length: 2\r\n{conn}\r\nok"
            );
        }
        "DELETE" => {
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n{conn}\r\nok"
            );
        }
        "POST" => {
            let mut answer = Vec::with_capacity(body.len() + 10);
            echo(body, &mut answer);
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{conn}\r\n",
                answer.len()
            );
            out.extend_from_slice(&answer);
        }
        _ => {
            let _ = write!(
                out,
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n{conn}\r\n"
            );
        }
    }
    Step::Done {
        n: head + content_length,
        close,
    }
}

/// `{"echo":<body>}`: the body verbatim if it starts like JSON (`[` or `{`), else escaped
/// as a JSON string.
fn echo(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"echo\":");
    if matches!(body.first(), Some(b'[') | Some(b'{')) {
        out.extend_from_slice(body);
    } else {
        out.push(b'"');
        for &b in body {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0..=0x1f => {
                    let _ = write!(out, "\\u{b:04x}");
                }
                _ => out.push(b),
            }
        }
        out.push(b'"');
    }
    out.push(b'}');
}

/// Pushpin WebSocket-over-HTTP: `TYPE[ hexlen]\r\n[content\r\n]` events in, answers out.
/// With a `group`, `OPEN` is answered with `OPEN` and the GRIP control message that
/// subscribes the connection to that channel.
fn ws_over_http(mut body: &[u8], out: &mut Vec<u8>, group: Option<&str>) {
    while !body.is_empty() {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return;
        };
        let line = &body[..eol];
        let (kind, len) = match line.iter().position(|&b| b == b' ') {
            Some(sp) => {
                let len = std::str::from_utf8(&line[sp + 1..])
                    .ok()
                    .and_then(|h| usize::from_str_radix(h, 16).ok());
                (&line[..sp], len)
            }
            None => (line, None),
        };
        body = &body[eol + 2..];
        let content: &[u8] = match len {
            Some(n) if body.len() >= n + 2 => {
                let c = &body[..n];
                body = &body[n + 2..];
                c
            }
            Some(_) => return,
            None => &[],
        };
        match kind {
            b"OPEN" => {
                out.extend_from_slice(b"OPEN\r\n");
                if let Some(g) = group {
                    let sub = format!("c:{{\"type\":\"subscribe\",\"channel\":\"{g}\"}}");
                    let _ = write!(out, "TEXT {:x}\r\n{sub}\r\n", sub.len());
                }
            }
            b"TEXT" | b"BINARY" => {
                let mut answer = Vec::with_capacity(content.len() + 10);
                echo(content, &mut answer);
                let _ = write!(out, "TEXT {:x}\r\n", answer.len());
                out.extend_from_slice(&answer);
                out.extend_from_slice(b"\r\n");
            }
            b"PING" => {
                let _ = write!(out, "PONG {:x}\r\n", content.len());
                out.extend_from_slice(content);
                out.extend_from_slice(b"\r\n");
            }
            b"CLOSE" => {
                let _ = write!(out, "CLOSE {:x}\r\n", content.len());
                out.extend_from_slice(content);
                out.extend_from_slice(b"\r\n");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_groups() -> Groups {
        Groups {
            count: 0,
            prefix: "g".into(),
        }
    }

    #[test]
    fn answers_the_three_events() {
        let g = &no_groups();
        let mut out = Vec::new();
        let req = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n[1,\"x\"]GET /a HTTP/1.1\r\n\r\n";
        let Step::Done { n, close: false } = handle(req, &mut out, g) else {
            panic!()
        };
        assert!(out.ends_with(b"\r\n\r\n{\"echo\":[1,\"x\"]}"));
        out.clear();
        assert!(matches!(
            handle(&req[n..], &mut out, g),
            Step::Done { close: false, .. }
        ));
        assert!(out.ends_with(b"\r\n\r\nok"));
        assert!(matches!(handle(&req[..20], &mut out, g), Step::NeedMore));
    }

    #[test]
    fn speaks_websocket_events() {
        let mut out = Vec::new();
        ws_over_http(
            b"OPEN\r\nTEXT 2\r\nhi\r\nCLOSE 2\r\n\x03\xe8\r\n",
            &mut out,
            None,
        );
        assert_eq!(
            out,
            b"OPEN\r\nTEXT d\r\n{\"echo\":\"hi\"}\r\nCLOSE 2\r\n\x03\xe8\r\n"
        );
    }

    #[test]
    fn joins_clients_to_groups_by_their_number() {
        let g = &Groups {
            count: 4,
            prefix: "g".into(),
        };
        assert_eq!(g.of("/load-17").as_deref(), Some("g1"));
        assert_eq!(g.of("/load-8?x=1").as_deref(), Some("g0"));
        assert_eq!(g.of("/abc").as_deref(), Some("g0"));
        assert_eq!(no_groups().of("/load-3"), None);
        let mut out = Vec::new();
        handle(b"GET /load-6 HTTP/1.1\r\n\r\n", &mut out, g);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\nX-Group-Join: g2\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nok"));
        let mut out = Vec::new();
        let req = b"POST /load-5 HTTP/1.1\r\nContent-Type: application/websocket-events\r\nContent-Length: 6\r\n\r\nOPEN\r\n";
        handle(req, &mut out, g);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\nSec-WebSocket-Extensions: grip; message-prefix=\"\"\r\n"));
        let sub = "c:{\"type\":\"subscribe\",\"channel\":\"g1\"}";
        assert!(
            text.ends_with(&format!(
                "\r\n\r\nOPEN\r\nTEXT {:x}\r\n{sub}\r\n",
                sub.len()
            )),
            "{text}"
        );
    }
}
