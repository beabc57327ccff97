//! End-to-end tests of the gateway: a real gateway (2 shards, port 0) in front of a
//! fake API server over real TCP, driven by clients that speak the wire.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::thread;

use support::*;
use tungstenite::Message;

/// A Connect carries the id, the query, the connection id, the client's address
/// and the client's forwarded headers; backend `ok` → 101 with the RFC accept value.
#[test]
fn connect_accepted_forwards_the_upgrade_to_the_api() {
    let api = FakeApi::start();
    let gw = TestGateway::start(api.addr);

    let (stream, reply) = raw_upgrade(
        gw.public,
        "/alice?room=7&lang=en",
        "Cookie: session=abc\r\n\
         Authorization: Bearer t0k3n\r\n\
         Origin: https://example.com\r\n\
         User-Agent: e2e-test/1.0\r\n\
         Sec-WebSocket-Protocol: chat, superchat\r\n",
    );
    assert_eq!(reply.status, 101, "{reply:?}");
    assert_eq!(reply.header("upgrade"), Some("websocket"));
    assert_eq!(reply.header("sec-websocket-accept"), Some(RFC_ACCEPT));
    assert_eq!(reply.header("sec-websocket-protocol"), None);

    let connect = api.requests();
    assert_eq!(connect.len(), 1, "{connect:#?}");
    let connect = &connect[0];
    assert!(connect.is("GET", "/alice?room=7&lang=en"), "{connect:?}");
    assert!(!connect.conn_id().is_empty());
    assert_eq!(connect.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(connect.header("cookie"), Some("session=abc"));
    assert_eq!(connect.header("authorization"), Some("Bearer t0k3n"));
    assert_eq!(connect.header("origin"), Some("https://example.com"));
    assert_eq!(connect.header("user-agent"), Some("e2e-test/1.0"));
    assert_eq!(
        connect.header("sec-websocket-protocol"),
        Some("chat, superchat")
    );
    assert!(connect.body.is_empty());
    drop(stream); // else the stop waits out the close grace for this client
    gw.stop();
}

/// A 2xx answer whose body is not exactly `ok` refuses the client with 403.
#[test]
fn connect_refused_by_backend_body_is_403() {
    let api = FakeApi::builder().connect(Reply::ok("ko")).start();
    let gw = TestGateway::start(api.addr);

    let (_stream, reply) = raw_upgrade(gw.public, "/alice", "");
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(
        !reply.text().contains("ko"),
        "the backend's body is not shown"
    );
    assert_eq!(api.matching("GET", "/alice").len(), 1);
    gw.stop();
    assert!(
        api.matching("DELETE", "/alice").is_empty(),
        "no Disconnect for a connection never accepted"
    );
}

/// Backend 5xx or unreachable → 502; backend 4xx → the same 4xx.
#[test]
fn connect_backend_errors_map_to_statuses() {
    let api = FakeApi::builder().connect(Reply::status(503)).start();
    let gw = TestGateway::start(api.addr);
    let (_s, reply) = raw_upgrade(gw.public, "/alice", "");
    assert_eq!(reply.status, 502, "backend 503: {reply:?}");
    gw.stop();

    let gw = TestGateway::start(dead_addr());
    let (_s, reply) = raw_upgrade(gw.public, "/alice", "");
    assert_eq!(reply.status, 502, "backend refused: {reply:?}");
    gw.stop();

    let api = FakeApi::builder().connect(Reply::status(401)).start();
    let gw = TestGateway::start(api.addr);
    let (_s, reply) = raw_upgrade(gw.public, "/alice", "");
    assert_eq!(reply.status, 401, "backend 401: {reply:?}");
    gw.stop();
}

/// A text message becomes a POST; the answer's body goes back as a text message.
#[test]
fn message_round_trip() {
    let api = FakeApi::builder().message_echo("re: ").start();
    let gw = TestGateway::start(api.addr);
    let mut alice = ws(gw.public, "alice");
    let connect_id = api.wait_request("GET", "/alice").conn_id().to_string();

    send_text(&mut alice, "hello");
    assert_eq!(recv_text(&mut alice), "re: hello");

    let post = api.wait_request("POST", "/alice");
    assert_eq!(post.text(), "hello");
    assert_eq!(
        post.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(post.conn_id(), connect_id);
    assert_eq!(post.header("x-forwarded-for"), Some("127.0.0.1"));
    close(&mut alice, 1000, "");
    gw.stop();
}

/// A push on the control listener reaches the client; a push to nobody is 404.
#[test]
fn push_reaches_the_client_and_unknown_is_404() {
    let api = FakeApi::start();
    let gw = TestGateway::start(api.addr);
    let mut alice = ws(gw.public, "alice");

    let reply = gw.push("alice", "text/plain", b"hi");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.text().trim_end(), "ok");
    assert_eq!(recv_text(&mut alice), "hi");

    let reply = gw.push("nobody", "text/plain", b"hi");
    assert_eq!(reply.status, 404, "{reply:?}");
    close(&mut alice, 1000, "");
    gw.stop();
}

/// A clean close from the client: one DELETE with its reason and code.
#[test]
fn clean_close_sends_disconnect_with_reason_and_code() {
    let api = FakeApi::start();
    let gw = TestGateway::start(api.addr);
    let mut alice = ws(gw.public, "alice");
    let connect_id = api.wait_request("GET", "/alice").conn_id().to_string();

    close(&mut alice, 1000, "bye");
    let delete = api.wait_request("DELETE", "/alice");
    assert_eq!(delete.text(), "bye");
    assert_eq!(delete.close_code(), 1000);
    assert_eq!(delete.conn_id(), connect_id);
    gw.stop();
    assert_eq!(api.matching("DELETE", "/alice").len(), 1);
}

/// The socket goes away without a close frame: DELETE with 1006 and `EOF`.
#[test]
fn abrupt_disconnect_sends_disconnect_1006_eof() {
    let api = FakeApi::start();
    let gw = TestGateway::start(api.addr);
    let alice = ws(gw.public, "alice");
    let connect_id = api.wait_request("GET", "/alice").conn_id().to_string();

    drop(alice);
    let delete = api.wait_request("DELETE", "/alice");
    assert_eq!(delete.close_code(), 1006);
    assert_eq!(delete.text(), "EOF");
    assert_eq!(delete.conn_id(), connect_id);
    gw.stop();
    assert_eq!(api.matching("DELETE", "/alice").len(), 1);
}

/// Clients owned by shard 1 work wherever the kernel accepted them: some are
/// handed off from shard 0, and pushes accepted on shard 0 are forwarded to shard 1.
#[test]
fn handed_off_and_forwarded_clients_work() {
    let api = FakeApi::builder().message_echo("re: ").start();
    let gw = TestGateway::start(api.addr);
    let ids = ids_owned_by(1, "user-", 20);

    let mut clients: Vec<Ws> = ids.iter().map(|id| ws(gw.public, id)).collect();
    for (id, client) in ids.iter().zip(clients.iter_mut()) {
        send_text(client, &format!("from {id}"));
        assert_eq!(recv_text(client), format!("re: from {id}"));
    }
    let before = gw.control_get("/metrics");
    // Each push on its own control connection, so the kernel spreads them too.
    for (id, client) in ids.iter().zip(clients.iter_mut()) {
        let reply = gw.push(id, "text/plain", format!("to {id}").as_bytes());
        assert_eq!(reply.status, 200, "push to {id}: {reply:?}");
        assert_eq!(recv_text(client), format!("to {id}"));
    }
    let after = gw.control_get("/metrics");

    // Every connection lives on its owner, whichever shard accepted it.
    assert_eq!(metric(&after, "ws2api_connections_active", Some(1)), 20);
    assert_eq!(metric(&after, "ws2api_connections_active", Some(0)), 0);
    // Only shard 0 ever hands off (shard 1 owns every id); 20 accepts all landing on
    // shard 1 has odds of 2^-20.
    assert_eq!(metric(&after, "ws2api_handoffs_total", Some(1)), 0);
    assert!(
        metric(&after, "ws2api_handoffs_total", Some(0)) > 0,
        "{after}"
    );
    // Pushes accepted on shard 0 were forwarded to shard 1. A /metrics request may
    // itself forward one stats call, hence more than one.
    let forwarded = metric(&after, "ws2api_forwards_total", None)
        - metric(&before, "ws2api_forwards_total", None);
    assert!(forwarded > 1, "forwards: {forwarded}");

    for client in &mut clients {
        close(client, 1000, "done");
    }
    gw.stop();
    for id in &ids {
        assert_eq!(api.matching("DELETE", &format!("/{id}")).len(), 1, "{id}");
    }
}

/// A second connection with the same id replaces the first: 4000 "replaced" to
/// the first, whose Disconnect reaches the API before the second gets its 101.
#[test]
fn replacement_closes_the_first_and_disconnects_it_before_accepting() {
    let api = FakeApi::start();
    let gw = TestGateway::start(api.addr);
    let first = ws(gw.public, "alice");
    let first_id = api.wait_request("GET", "/alice").conn_id().to_string();

    let watcher = close_watcher(first);
    let (mut second, _) = try_ws(gw.public, "/alice", &[]).expect("second accepted");
    // The 101 has arrived: the first's Disconnect must already have been received.
    let seen = api.requests();
    let deletes: Vec<_> = seen.iter().filter(|r| r.is("DELETE", "/alice")).collect();
    assert_eq!(deletes.len(), 1, "DELETE before the second 101: {seen:#?}");
    assert_eq!(deletes[0].conn_id(), first_id);
    assert_eq!(deletes[0].close_code(), 4000);
    assert_eq!(deletes[0].text(), "replaced");
    let connects: Vec<_> = seen.iter().filter(|r| r.is("GET", "/alice")).collect();
    assert_eq!(connects.len(), 2);
    assert_ne!(connects[1].conn_id(), first_id);

    assert_eq!(watcher.join().unwrap(), (4000, "replaced".to_string()));

    let reply = gw.push("alice", "text/plain", b"to the second");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(recv_text(&mut second), "to the second");
    close(&mut second, 1000, "");
    gw.stop();
    assert_eq!(api.matching("DELETE", "/alice").len(), 2);
}

/// Binary both ways: binary message → octet-stream POST; octet-stream answer and
/// octet-stream push → binary frames.
#[test]
fn binary_messages_both_ways() {
    let api = FakeApi::builder()
        .message_with(|req| {
            if req.header("content-type") == Some("application/octet-stream") {
                Reply::binary(&[0xff, 0x00, 0x80])
            } else {
                Reply::ok("text answer")
            }
        })
        .start();
    let gw = TestGateway::start(api.addr);
    let mut alice = ws(gw.public, "alice");

    let payload = vec![0x00, 0x01, 0xfe, 0xff];
    alice.send(Message::binary(payload.clone())).unwrap();
    match recv(&mut alice) {
        Message::Binary(body) => assert_eq!(&body[..], &[0xff, 0x00, 0x80]),
        other => panic!("expected a binary answer, got {other:?}"),
    }
    let post = api.wait_request("POST", "/alice");
    assert_eq!(post.body, payload);
    assert_eq!(
        post.header("content-type"),
        Some("application/octet-stream")
    );

    send_text(&mut alice, "text please");
    assert_eq!(recv_text(&mut alice), "text answer");

    let reply = gw.push("alice", "application/octet-stream", &[0xc3, 0x28]);
    assert_eq!(reply.status, 200, "{reply:?}");
    match recv(&mut alice) {
        Message::Binary(body) => assert_eq!(&body[..], &[0xc3, 0x28]),
        other => panic!("expected a binary push, got {other:?}"),
    }
    close(&mut alice, 1000, "");
    gw.stop();
}

/// 50 messages sent back-to-back reach the API in order and their answers come
/// back in order, over a keep-alive API connection and over one closed after each answer.
#[test]
fn messages_keep_their_order() {
    for close_each in [false, true] {
        let mut builder = FakeApi::builder().message_echo("re: ");
        if close_each {
            builder = builder.close_after_each();
        }
        let api = builder.start();
        let gw = TestGateway::start(api.addr);
        let mut alice = ws(gw.public, "alice");

        let sent: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
        for text in &sent {
            alice.write(Message::text(text.as_str())).unwrap();
        }
        alice.flush().unwrap();
        for text in &sent {
            assert_eq!(
                recv_text(&mut alice),
                format!("re: {text}"),
                "close_each {close_each}"
            );
        }
        let posted: Vec<String> = api
            .matching("POST", "/alice")
            .iter()
            .map(|r| r.text().to_string())
            .collect();
        assert_eq!(posted, sent, "close_each {close_each}");
        close(&mut alice, 1000, "");
        gw.stop();
    }
}

/// Exactly one Disconnect per accepted connection, whatever ended it: clean
/// close, abrupt drop, replacement, gateway stop.
#[test]
fn exactly_one_disconnect_per_accepted_connection() {
    let api = FakeApi::start();
    let gw = TestGateway::start(api.addr);
    let mut watchers = Vec::new();
    let mut workers = Vec::new();
    for i in 0..30 {
        let id = format!("c{i}");
        let mut client = ws(gw.public, &id);
        match i % 4 {
            0 => workers.push(thread::spawn(move || close(&mut client, 1000, "bye"))),
            1 => drop(client),
            2 => {
                watchers.push(close_watcher(client));
                let replacement = ws(gw.public, &id);
                watchers.push(close_watcher(replacement));
            }
            _ => watchers.push(close_watcher(client)),
        }
    }
    for worker in workers {
        worker.join().unwrap();
    }
    gw.stop();
    for watcher in watchers {
        let (code, _) = watcher.join().unwrap();
        assert!(code == 4000 || code == 1001, "close code {code}");
    }

    let seen = api.requests();
    let accepted: Vec<&str> = seen
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.conn_id())
        .collect();
    let summary: Vec<String> = seen
        .iter()
        .map(|r| format!("{} {} {} {}", r.method, r.path, r.conn_id(), r.text()))
        .collect();
    assert_eq!(accepted.len(), 30 + 7, "7 replaced: {summary:#?}");
    let mut deletes: HashMap<&str, Vec<&Recorded>> = HashMap::new();
    for r in seen.iter().filter(|r| r.method == "DELETE") {
        deletes.entry(r.conn_id()).or_default().push(r);
    }
    for id in &accepted {
        match deletes.get(id).map(Vec::len) {
            Some(1) => {}
            n => panic!("connection {id}: {n:?} Disconnects; {summary:#?}"),
        }
    }
    assert_eq!(
        deletes.len(),
        accepted.len(),
        "a DELETE for an unknown connection"
    );
    let mut by_code: HashMap<u16, usize> = HashMap::new();
    for r in deletes.values().flatten() {
        *by_code.entry(r.close_code()).or_default() += 1;
    }
    // c0, c4, .., c28 (8): clean; c1, c5, .., c29 (8): dropped; c2, c6, .., c26 (7):
    // replaced, and their replacements stopped with c3, c7, .., c27 (7 + 7).
    assert_eq!(by_code.get(&1000), Some(&8), "{by_code:?}");
    assert_eq!(by_code.get(&1006), Some(&8), "{by_code:?}");
    assert_eq!(by_code.get(&4000), Some(&7), "{by_code:?}");
    assert_eq!(by_code.get(&1001), Some(&14), "{by_code:?}");
}

/// Protocol violations close the connection with the RFC 6455 code:
/// invalid UTF-8 → 1007, too large → 1009, unmasked client frame → 1002.
#[test]
fn protocol_violations_close_with_their_codes() {
    let api = FakeApi::start();
    let gw = TestGateway::start_with(api.addr, |c| c.limits.max_message_size = 1024);

    let cases: [(&str, Vec<u8>, u16); 3] = [
        ("utf8", masked_frame(0x1, &[b'h', 0xff, 0xfe]), 1007),
        ("big", masked_frame(0x1, &[b'x'; 2000]), 1009),
        ("unmasked", b"\x81\x02hi".to_vec(), 1002),
    ];
    for (id, frame, code) in cases {
        let mut stream = raw_ws(gw.public, &format!("/{id}"));
        stream.write_all(&frame).unwrap();
        let (got, _reason) = read_close_frame(&mut stream);
        assert_eq!(got, code, "{id}");
        drop(stream);
        let delete = api.wait_request("DELETE", &format!("/{id}"));
        assert_eq!(delete.close_code(), code, "{id}");
        assert!(
            api.matching("POST", &format!("/{id}")).is_empty(),
            "{id}: a bad message must not reach the API"
        );
    }
    // A message just at the limit still goes through.
    let mut stream = raw_ws(gw.public, "/fits");
    stream.write_all(&masked_frame(0x1, &[b'y'; 1024])).unwrap();
    let (first, payload) = read_server_frame(&mut stream);
    assert_eq!((first, payload.len()), (0x81, 1024));
    drop(stream);
    gw.stop();
}

/// The orderly stop closes every client with 1001, sends each Disconnect
/// (`shutdown`, 1001), and `join` returns.
#[test]
fn stop_closes_clients_with_1001_and_disconnects_them() {
    let api = FakeApi::start();
    let gw = TestGateway::start(api.addr);
    let alice = close_watcher(ws(gw.public, "alice"));
    let bob = close_watcher(ws(gw.public, "bob"));
    api.wait_for("both connects", |r| r.len() == 2);

    gw.stop();
    assert_eq!(alice.join().unwrap(), (1001, "shutdown".to_string()));
    assert_eq!(bob.join().unwrap(), (1001, "shutdown".to_string()));
    for id in ["alice", "bob"] {
        let deletes = api.matching("DELETE", &format!("/{id}"));
        assert_eq!(deletes.len(), 1, "{id}");
        assert_eq!(deletes[0].close_code(), 1001);
        assert_eq!(deletes[0].text(), "shutdown");
    }
}

/// Control `GET /` counts what happened; health answers; requests that are not a
/// valid upgrade are refused with 400 and never reach the API.
#[test]
fn counters_health_and_bad_requests() {
    let api = FakeApi::builder()
        .connect_with(|req| {
            if req.path.contains("deny") {
                Reply::ok("ko")
            } else {
                Reply::ok("ok")
            }
        })
        .message_with(|req| match req.text() {
            "fail" => Reply::status(500),
            text => Reply::ok(&format!("re: {text}")),
        })
        .start();
    let gw = TestGateway::start(api.addr);

    let health = http(
        gw.control,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(health.status, 200);

    let plain = http(
        gw.public,
        b"GET /alice HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(plain.status, 400, "plain GET: {plain:?}");
    for path in ["/a%20b", "/a/b"] {
        let (_s, reply) = raw_upgrade(gw.public, path, "");
        assert_eq!(reply.status, 400, "{path}: {reply:?}");
    }
    assert!(api.requests().is_empty(), "{:#?}", api.requests());

    let mut alice = ws(gw.public, "alice"); // GET: ok
    send_text(&mut alice, "hello"); // POST: ok
    assert_eq!(recv_text(&mut alice), "re: hello");
    send_text(&mut alice, "fail"); // POST: 500, nothing sent back
    send_text(&mut alice, "again"); // POST: ok, after "fail" was answered
    assert_eq!(recv_text(&mut alice), "re: again");
    assert_eq!(try_ws(gw.public, "/deny", &[]).err(), Some(403)); // GET: 2xx, refused
    close(&mut alice, 1000, "bye"); // DELETE: ok
    api.wait_request("DELETE", "/alice");
    assert_eq!(api.requests().len(), 6);

    let want = "connections_opened 1\n\
                connections_closed 1\n\
                requests_started 6\n\
                requests_failed 1\n\
                requests_succeeded 5\n";
    // The DELETE is counted when its answer arrives, just after the API saw it.
    let deadline = std::time::Instant::now() + WAIT;
    let mut got = gw.control_get("/");
    while got != want && std::time::Instant::now() < deadline {
        thread::yield_now();
        got = gw.control_get("/");
    }
    assert_eq!(got, want);
    gw.stop();
}

/// A `Sec-WebSocket-Protocol` in the Connect answer selects the subprotocol.
#[test]
fn backend_selects_the_subprotocol() {
    let api = FakeApi::builder()
        .connect(Reply::ok("ok").header("Sec-WebSocket-Protocol", "chat"))
        .start();
    let gw = TestGateway::start(api.addr);

    let (mut alice, response) = try_ws(
        gw.public,
        "/alice",
        &[("Sec-WebSocket-Protocol", "superchat, chat")],
    )
    .expect("accepted");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some("chat")
    );
    let connect = api.wait_request("GET", "/alice");
    assert_eq!(
        connect.header("sec-websocket-protocol"),
        Some("superchat, chat")
    );
    send_text(&mut alice, "x");
    assert_eq!(recv_text(&mut alice), "x");
    close(&mut alice, 1000, "");
    gw.stop();
}

/// Frames the client writes right behind its upgrade request (before the 101) are
/// not lost, whether the connection was served where it was accepted or handed off.
#[test]
fn frames_pipelined_behind_the_upgrade_are_kept() {
    let api = FakeApi::builder().message_echo("re: ").start();
    let gw = TestGateway::start(api.addr);
    let mut ids = ids_owned_by(0, "early-", 4);
    ids.extend(ids_owned_by(1, "early-", 4));
    for id in &ids {
        let mut stream = tcp(gw.public);
        let mut bytes = upgrade_request(&format!("/{id}"), "").into_bytes();
        bytes.extend_from_slice(&masked_frame(0x1, id.as_bytes()));
        stream.write_all(&bytes).unwrap();
        let (first, payload) = read_frame_after_101(&mut stream);
        assert_eq!(first, 0x81, "{id}");
        assert_eq!(payload, format!("re: {id}").into_bytes(), "{id}");
    }
    gw.stop();
}

/// Reads a 101 head (byte by byte) and then one server frame.
fn read_frame_after_101(stream: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("101 head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{head:?}");
    read_server_frame(stream)
}

/// Pings are answered with the same payload; a fragmented text message (with a ping
/// between its fragments) reaches the API as one message.
#[test]
fn ping_pong_and_fragments() {
    let api = FakeApi::builder().message_echo("re: ").start();
    let gw = TestGateway::start(api.addr);
    let mut stream = raw_ws(gw.public, "/alice");

    stream.write_all(&masked_frame(0x9, b"p1")).unwrap();
    assert_eq!(read_server_frame(&mut stream), (0x8a, b"p1".to_vec()));

    let mut text_start = masked_frame(0x1, b"hel");
    text_start[0] = 0x01; // no FIN
    let mut bytes = text_start;
    bytes.extend_from_slice(&masked_frame(0x9, b"p2"));
    bytes.extend_from_slice(&masked_frame(0x0, b"lo")); // FIN continuation
    stream.write_all(&bytes).unwrap();
    assert_eq!(read_server_frame(&mut stream), (0x8a, b"p2".to_vec()));
    assert_eq!(
        read_server_frame(&mut stream),
        (0x81, b"re: hello".to_vec())
    );
    assert_eq!(api.matching("POST", "/alice")[0].text(), "hello");

    stream
        .write_all(&masked_frame(0x8, b"\x03\xe8done"))
        .unwrap();
    assert_eq!(read_close_frame(&mut stream), (1000, "done".to_string()));
    let delete = api.wait_request("DELETE", "/alice");
    assert_eq!((delete.close_code(), delete.text()), (1000, "done"));
    gw.stop();
}

/// Control `GET /<id>` describes the client, `DELETE /<id>?code=N` closes it with N
/// (and the API hears N); unknown ids are 404, codes a server may not send are 400.
#[test]
fn control_info_and_close() {
    let api = FakeApi::start();
    let gw = TestGateway::start(api.addr);
    let alice = ws(gw.public, "alice");
    let connect_id = api.wait_request("GET", "/alice").conn_id().to_string();

    let info = gw.control_get("/alice");
    assert!(info.contains("\"alice\""), "{info}");
    assert!(info.contains(&connect_id), "{info}");
    assert!(info.contains("\"shard\":1"), "{info}");

    let request = |method: &str, path: &str| {
        http(
            gw.control,
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    assert_eq!(request("DELETE", "/alice?code=1005").status, 400);
    assert_eq!(request("DELETE", "/nobody").status, 404);
    assert_eq!(request("GET", "/nobody").status, 404);

    let watcher = close_watcher(alice);
    assert_eq!(request("DELETE", "/alice?code=4001").status, 200);
    let (code, _reason) = watcher.join().unwrap();
    assert_eq!(code, 4001);
    let delete = api.wait_request("DELETE", "/alice");
    assert_eq!(delete.close_code(), 4001);
    assert_eq!(delete.conn_id(), connect_id);
    gw.stop();
}

/// With `--control-token`, every control request but the health checks needs the
/// bearer token.
#[test]
fn control_token_is_required() {
    let api = FakeApi::start();
    let gw = TestGateway::start_with(api.addr, |c| c.control.token = Some("s3cret".into()));
    let get = |path: &str, auth: &str| {
        http(
            gw.control,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
        )
        .status
    };
    assert_eq!(get("/", ""), 401);
    assert_eq!(get("/", "Authorization: Bearer wrong\r\n"), 401);
    assert_eq!(get("/", "Authorization: Bearer s3cret\r\n"), 200);
    assert_eq!(get("/metrics", ""), 401);
    assert_eq!(get("/healthz", ""), 200);
    assert_eq!(get("/readyz", ""), 200);
    assert_eq!(gw.push("alice", "text/plain", b"x").status, 401);
    gw.stop();
}

/// Handshake checks before any backend call: version 8 → 426 naming version 13;
/// a 129-byte id → 400; a 128-byte id is accepted.
#[test]
fn upgrade_validation() {
    let api = FakeApi::start();
    let gw = TestGateway::start(api.addr);
    let mut stream = tcp(gw.public);
    let request = upgrade_request("/alice", "").replace("Version: 13", "Version: 8");
    stream.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut bytes);
    let reply = parse_reply(&bytes);
    assert_eq!(reply.status, 426, "{reply:?}");
    assert_eq!(reply.header("sec-websocket-version"), Some("13"));

    let (_s, reply) = raw_upgrade(gw.public, &format!("/{}", "x".repeat(129)), "");
    assert_eq!(reply.status, 400);
    assert!(api.requests().is_empty(), "{:#?}", api.requests());

    let long = "y".repeat(128);
    let accepted = raw_ws(gw.public, &format!("/{long}"));
    api.wait_request("GET", &format!("/{long}"));
    drop(accepted);
    gw.stop();
}

/// A backend slower than `--api-timeout`: a Connect is answered 504, a Message gets
/// nothing back, and the late answers never reach a later request.
#[test]
fn api_timeout_is_504_and_late_answers_are_not_reused() {
    let slow = std::time::Duration::from_millis(700);
    let api = FakeApi::builder()
        .connect_with(move |req| {
            if req.path.starts_with("/slow") {
                thread::sleep(slow);
            }
            Reply::ok("ok")
        })
        .message_with(move |req| {
            if req.text() == "slow" {
                thread::sleep(slow);
                return Reply::ok("late");
            }
            Reply::ok(&format!("re: {}", req.text()))
        })
        .start();
    let gw = TestGateway::start_with(api.addr, |c| {
        c.api.timeout = std::time::Duration::from_millis(300)
    });

    let (_s, reply) = raw_upgrade(gw.public, "/slow", "");
    assert_eq!(reply.status, 504, "{reply:?}");

    let mut alice = ws(gw.public, "alice");
    send_text(&mut alice, "slow");
    send_text(&mut alice, "fast");
    assert_eq!(recv_text(&mut alice), "re: fast");
    for i in 0..5 {
        send_text(&mut alice, &format!("n{i}"));
        assert_eq!(recv_text(&mut alice), format!("re: n{i}"));
    }
    close(&mut alice, 1000, "");
    api.wait_request("DELETE", "/alice");
    gw.stop();
}

/// A backend that drops keep-alive connections after each answer without saying so:
/// every message still gets through (stale pooled connections are retried).
#[test]
fn backend_dropping_idle_connections_silently() {
    let api = FakeApi::builder()
        .message_echo("re: ")
        .close_silently_after_each()
        .start();
    let gw = TestGateway::start(api.addr);
    let mut alice = ws(gw.public, "alice");
    for i in 0..10 {
        send_text(&mut alice, &format!("m{i}"));
        assert_eq!(recv_text(&mut alice), format!("re: m{i}"));
    }
    close(&mut alice, 1000, "bye");
    let delete = api.wait_request("DELETE", "/alice");
    assert_eq!(delete.text(), "bye");
    gw.stop();
    assert_eq!(api.matching("POST", "/alice").len(), 10);
}

/// A large binary message (several socket reads, 16- and 64-bit frame lengths)
/// crosses intact in both directions.
#[test]
fn large_binary_message_round_trip() {
    let api = FakeApi::start();
    let gw = TestGateway::start(api.addr);
    let mut alice = ws(gw.public, "alice");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    alice.send(Message::binary(payload.clone())).unwrap();
    match recv(&mut alice) {
        Message::Binary(body) => assert!(body[..] == payload[..], "payload changed"),
        other => panic!("expected binary, got {other:?}"),
    }
    assert_eq!(api.matching("POST", "/alice")[0].body, payload);
    close(&mut alice, 1000, "");
    gw.stop();
}

/// A Disconnect answered 503 is retried with the same connection id until it is
/// answered `ok`.
#[test]
fn disconnect_is_retried_after_a_5xx() {
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = failures.clone();
    let api = FakeApi::builder()
        .delete_with(move |_| {
            if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Reply::status(503)
            } else {
                Reply::ok("ok")
            }
        })
        .start();
    let gw = TestGateway::start(api.addr);
    let mut alice = ws(gw.public, "alice");
    let connect_id = api.wait_request("GET", "/alice").conn_id().to_string();
    close(&mut alice, 1000, "bye");
    let deletes = api.wait_for("a retried DELETE", |reqs| {
        reqs.iter().filter(|r| r.is("DELETE", "/alice")).count() == 2
    });
    for delete in deletes.iter().filter(|r| r.is("DELETE", "/alice")) {
        assert_eq!(delete.conn_id(), connect_id);
        assert_eq!((delete.close_code(), delete.text()), (1000, "bye"));
    }
    gw.stop();
    assert_eq!(api.matching("DELETE", "/alice").len(), 2);
}

/// With pings on, a client that never answers is pinged, then dropped (no close
/// frame: 1006 is never sent on the wire) and disconnected as `timeout`; a client
/// that answers pings stays.
#[test]
fn silent_clients_time_out_and_answering_clients_stay() {
    let api = FakeApi::start();
    let gw = TestGateway::start_with(api.addr, |c| {
        c.limits.ping_interval = Some(std::time::Duration::from_millis(200))
    });
    let mut silent = raw_ws(gw.public, "/silent");
    let mut lively = ws(gw.public, "lively");
    // `recv` skips pings; tungstenite answers each one on its next read.
    let lively = thread::spawn(move || {
        let text = recv_text(&mut lively);
        (lively, text)
    });

    assert_eq!(read_server_frame(&mut silent), (0x89, Vec::new()));
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut silent, &mut rest);
    assert!(rest.is_empty(), "no close frame after a timeout: {rest:?}");
    let delete = api.wait_request("DELETE", "/silent");
    assert_eq!((delete.close_code(), delete.text()), (1006, "timeout"));

    // Not a wait for readiness: time itself is under test. Two more ping intervals
    // pass for the lively client, which must survive them.
    thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(gw.push("lively", "text/plain", b"still here").status, 200);
    let (mut lively, text) = lively.join().unwrap();
    assert_eq!(text, "still here");
    assert!(api.matching("DELETE", "/lively").is_empty());
    close(&mut lively, 1000, "");
    gw.stop();
}

/// A stop that begins while a Connect waits for the API: the client is either
/// refused, or accepted and then closed with 1001 with exactly one Disconnect.
#[test]
fn stop_during_a_pending_connect() {
    let api = FakeApi::builder()
        .connect_with(|_| {
            thread::sleep(std::time::Duration::from_millis(300));
            Reply::ok("ok")
        })
        .start();
    let gw = TestGateway::start(api.addr);
    let ids = ["p0", "p1", "p2", "p3"];
    let clients: Vec<_> = ids
        .iter()
        .map(|id| {
            let addr = gw.public;
            let path = format!("/{id}");
            thread::spawn(move || match try_ws(addr, &path, &[]) {
                Ok((mut ws, _)) => Some(expect_close(&mut ws)),
                Err(_) => None,
            })
        })
        .collect();
    api.wait_for("every Connect", |reqs| reqs.len() == ids.len());
    gw.stop();
    for (id, client) in ids.iter().zip(clients) {
        let deletes = api.matching("DELETE", &format!("/{id}"));
        match client.join().unwrap() {
            Some(closed) => {
                assert_eq!(closed, (1001, "shutdown".to_string()), "{id}");
                assert_eq!(deletes.len(), 1, "{id}");
            }
            None => assert!(deletes.is_empty(), "{id}"),
        }
    }
}
