//! Misbehaving peers, one made for each limit of the gateway: clients that are slow,
//! greedy or never read; API servers that stall, break, babble, flood or go away;
//! load balancers that speak the PROXY protocol. A real gateway (2 shards, port 0)
//! in front of a fake API server over real TCP.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// A client that dribbles its request head one byte per 100 ms is cut at
/// `--handshake-timeout` (408 or a bare close), without any backend request, while
/// another client is served meanwhile.
#[test]
fn slowloris_is_cut_at_the_handshake_timeout() {
    let api = FakeApi::builder().message_echo("re: ").start();
    let gw = TestGateway::start_with(api.addr, |c| c.limits.handshake_timeout = ms(300));

    let mut slow = tcp(gw.public);
    let mut writer = slow.try_clone().unwrap();
    let request = upgrade_request("/slowpoke", "");
    let started = Instant::now();
    let dribbler = thread::spawn(move || {
        for byte in request.as_bytes() {
            if writer.write_all(&[*byte]).is_err() {
                return;
            }
            // The dribble itself is under test, not a wait for readiness.
            thread::sleep(ms(100));
        }
    });

    // Meanwhile a well-behaved client connects and is served.
    let mut alice = ws(gw.public, "alice");
    send_text(&mut alice, "hello");
    assert_eq!(recv_text(&mut alice), "re: hello");

    let ending = read_ending(&mut slow);
    let elapsed = started.elapsed();
    match &ending {
        Ending::Bytes(bytes) => assert!(
            bytes.starts_with(b"HTTP/1.1 408 "),
            "{:?}",
            String::from_utf8_lossy(bytes)
        ),
        Ending::Eof | Ending::Reset => {}
    }
    assert!(
        elapsed >= ms(250),
        "cut after {elapsed:?}, before the timeout"
    );
    assert!(elapsed < ms(2500), "cut only after {elapsed:?}");
    drop(slow);
    dribbler.join().unwrap();

    close(&mut alice, 1000, "");
    api.wait_request("DELETE", "/alice");
    gw.stop();
    assert!(
        api.requests().iter().all(|r| !r.path.contains("slowpoke")),
        "{:#?}",
        api.requests()
    );
}

/// `--max-connections 4` over 2 shards: each shard holds 2; a third client of a full
/// shard gets 503 before any backend call; `/readyz` is 503 once every shard is full
/// and 200 again when one has room.
#[test]
fn max_connections_is_enforced_per_shard_before_the_backend() {
    let api = FakeApi::start();
    let gw = TestGateway::start_with(api.addr, |c| c.limits.max_connections = 4);
    let zeros = ids_owned_by(0, "zero-", 3);
    let ones = ids_owned_by(1, "one-", 3);
    let ready = || control_request(gw.control, "GET", "/readyz", "", b"").status;

    let mut z0 = ws(gw.public, &zeros[0]);
    let z1 = ws(gw.public, &zeros[1]);
    let (_s, refused) = raw_upgrade(gw.public, &format!("/{}", zeros[2]), "");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        api.matching("GET", &format!("/{}", zeros[2])).is_empty(),
        "the refused client reached the backend"
    );

    // Shard 1 has room of its own.
    let o0 = ws(gw.public, &ones[0]);
    let o1 = ws(gw.public, &ones[1]);
    let (_s, refused) = raw_upgrade(gw.public, &format!("/{}", ones[2]), "");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(api.matching("GET", &format!("/{}", ones[2])).is_empty());

    // Every shard is full: whichever shard answers, it is not ready. Several
    // requests, so that both shards are likely asked.
    for _ in 0..6 {
        assert_eq!(ready(), 503);
    }
    assert_eq!(
        control_request(gw.control, "GET", "/healthz", "", b"").status,
        200
    );

    // One leaves shard 0: its place is free again.
    close(&mut z0, 1000, "");
    api.wait_request("DELETE", &format!("/{}", zeros[0]));
    let z2 = ws(gw.public, &zeros[2]);
    assert_eq!(api.matching("GET", &format!("/{}", zeros[2])).len(), 1);
    // Gone before the stop, which would otherwise wait out their close grace.
    drop((z1, o0, o1, z2));
    api.wait_for("every Disconnect", |r| {
        r.iter().filter(|r| r.method == "DELETE").count() == 5
    });
    gw.stop();
}

/// A request head over `--max-head-size` is 431, and so is one with more than 64
/// header fields (64 are fine); neither reaches the backend.
#[test]
fn oversized_heads_are_431_before_the_backend() {
    let api = FakeApi::start();
    let gw = TestGateway::start_with(api.addr, |c| c.limits.max_head_size = 1024);

    let cookie = format!("Cookie: c={}\r\n", "x".repeat(2000));
    let mut stream = tcp(gw.public);
    stream
        .write_all(upgrade_request("/big", &cookie).as_bytes())
        .unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes); // the gateway may reset after its answer
    assert!(
        bytes.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );

    // upgrade_request writes 5 fields; 59 more make 64, 60 more make 65.
    let fields = |n: usize| (0..n).map(|i| format!("X-F{i}: 1\r\n")).collect::<String>();
    let (_s, reply) = raw_upgrade(gw.public, "/many", &fields(60));
    assert_eq!(reply.status, 431, "{reply:?}");
    assert!(api.requests().is_empty(), "{:#?}", api.requests());

    let (ok, reply) = raw_upgrade(gw.public, "/enough", &fields(59));
    assert_eq!(reply.status, 101, "64 header fields are allowed: {reply:?}");
    drop(ok);
    api.wait_request("DELETE", "/enough");
    gw.stop();
    assert!(api.matching("GET", "/big").is_empty());
    assert!(api.matching("GET", "/many").is_empty());
}

/// Writes a masked ping every 50 ms on `stream` until `stop`: a client that is alive
/// (so idle pings never time it out) but never reads.
fn keep_talking(mut stream: TcpStream, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            if stream.write_all(&masked_frame(0x9, b"k")).is_err() {
                return;
            }
            // Pacing of the client's own traffic, not a wait for readiness.
            thread::sleep(ms(50));
        }
    })
}

/// Pushes `body` to `id` until the gateway answers 503 (its queue for that client is
/// full); returns how many were accepted. Bounded at 64 MiB pushed.
fn push_until_full(gw: &TestGateway, id: &str, body: &[u8]) -> usize {
    let mut control = ControlConn::open(gw.control);
    let limit = (64 << 20) / body.len();
    for accepted in 0..limit {
        match control.push(id, "application/octet-stream", body) {
            200 => continue,
            503 => return accepted,
            status => panic!("push {accepted}: {status}"),
        }
    }
    panic!(
        "{limit} pushes of {} bytes and the queue is not full",
        body.len()
    );
}

/// Connects `/{id}` on a socket with a 4 KiB kernel receive buffer and keeps it
/// talking (pings every 50 ms) but never reads after the 101.
fn never_reading_client(
    gw: &TestGateway,
    id: &str,
) -> (TcpStream, Arc<AtomicBool>, thread::JoinHandle<()>) {
    let mut stream = tcp_small_rcvbuf(gw.public, 4096);
    stream
        .write_all(upgrade_request(&format!("/{id}"), "").as_bytes())
        .unwrap();
    assert_eq!(read_reply_head(&mut stream).status, 101);
    let stop = Arc::new(AtomicBool::new(false));
    let talker = keep_talking(stream.try_clone().unwrap(), stop.clone());
    (stream, stop, talker)
}

/// A client that sends but never reads: pushes are refused with 503 once
/// `--max-outbound-bytes` are queued, and nothing is queued beyond the bound.
#[test]
fn never_reading_client_gets_503_and_a_bounded_queue() {
    let api = FakeApi::start();
    let gw = TestGateway::start_with(api.addr, |c| {
        c.limits.max_outbound_bytes = 64 << 10;
        c.limits.ping_interval = Some(ms(200));
    });
    let (stream, stop, talker) = never_reading_client(&gw, "hoarder");
    for push_size in [16 << 10, 100 << 10] {
        let accepted = push_until_full(&gw, "hoarder", &vec![0x5a; push_size]);
        let info = gw.control_get("/hoarder");
        let queued: usize = json_field(&info, "queued_bytes").parse().unwrap();
        assert!(
            queued <= (64 << 10) + push_size + 16,
            "queued {queued} bytes past the bound ({accepted} pushes of {push_size}): {info}"
        );
        // Refused, not queued. The kernel may still take a few bytes of the queue
        // (zero-window probes), so only a push larger than the whole bound is sure to
        // be refused again while anything is queued.
        if push_size > 64 << 10 {
            let mut control = ControlConn::open(gw.control);
            assert_eq!(
                control.push("hoarder", "text/plain", &vec![b'x'; push_size]),
                503
            );
        }
    }
    let metrics = gw.control_get("/metrics");
    // One refusal ends each round, and the push over the whole bound is refused too.
    assert_eq!(
        sum_over_shards(&metrics, "ws2api_pushes_total", "outcome=\"queue_full\""),
        3.0,
        "{metrics}"
    );
    // It talks, so the idle timeout leaves it alone; only the stall check (1008) may
    // have closed it by now.
    for delete in api.matching("DELETE", "/hoarder") {
        assert_eq!(delete.close_code(), 1008, "{delete:?}");
    }
    stop.store(true, Ordering::SeqCst);
    talker.join().unwrap();
    drop(stream);
    api.wait_request("DELETE", "/hoarder");
    gw.stop();
}

/// A client whose queue stays full (it talks but never reads) is closed by the
/// sweep with 1008, which the backend hears as its Disconnect's close code.
#[test]
fn never_reading_client_is_closed_with_1008() {
    let api = FakeApi::start();
    let gw = TestGateway::start_with(api.addr, |c| {
        c.limits.max_outbound_bytes = 64 << 10;
        c.limits.ping_interval = Some(ms(200));
    });
    let (stream, stop, talker) = never_reading_client(&gw, "hoarder");
    // Until the kernel's buffers are full too: a whole round refused at once.
    let mut rounds = 0;
    while push_until_full(&gw, "hoarder", &vec![0x5a; 16 << 10]) > 0 {
        rounds += 1;
        assert!(rounds < 20, "the queue never stays full");
    }
    let info = gw.control_get("/hoarder");
    let queued: usize = json_field(&info, "queued_bytes").parse().unwrap();
    assert!(queued > 0, "{info}");
    let delete = api.wait_request("DELETE", "/hoarder");
    assert_eq!(delete.close_code(), 1008, "{delete:?}");
    stop.store(true, Ordering::SeqCst);
    talker.join().unwrap();
    drop(stream);
    gw.stop();
    assert_eq!(api.matching("DELETE", "/hoarder").len(), 1);
}

/// The raw text of `"key":value` in a flat JSON object (quotes stripped).
fn json_field<'a>(json: &'a str, key: &str) -> &'a str {
    let marker = format!("\"{key}\":");
    let start = json
        .find(&marker)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + marker.len();
    let rest = &json[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        &quoted[..quoted.find('"').unwrap()]
    } else {
        let end = rest.find([',', '}']).unwrap();
        rest[..end].trim()
    }
}

// ---------------------------------------------------------------------------
// The API server misbehaves
// ---------------------------------------------------------------------------

/// A message answered by `fault` fails (nothing sent back, counted failed with
/// `kind`), and the next message on the same client works.
fn message_fault_is_counted(
    fault: fn() -> Reply,
    kind: &str,
    tune: impl FnOnce(&mut ws2api::config::Config),
) {
    let api = FakeApi::builder()
        .message_with(move |req| match req.text() {
            "bad" => fault(),
            text => Reply::ok(&format!("re: {text}")),
        })
        .start();
    let gw = TestGateway::start_with(api.addr, tune);
    let mut alice = ws(gw.public, "alice");
    send_text(&mut alice, "first");
    assert_eq!(recv_text(&mut alice), "re: first");
    send_text(&mut alice, "bad");
    send_text(&mut alice, "after");
    // "bad" produced nothing: the next message is the answer to "after".
    assert_eq!(recv_text(&mut alice), "re: after", "{kind}");

    let reference = gw.control_get("/");
    assert_eq!(
        reference_counter(&reference, "requests_failed"),
        1,
        "{kind}"
    );
    // GET + 3 POSTs, of which one failed.
    assert_eq!(reference_counter(&reference, "requests_started"), 4);
    assert_eq!(reference_counter(&reference, "requests_succeeded"), 3);
    let metrics = gw.control_get("/metrics");
    let kind_label = format!("kind=\"{kind}\"");
    assert_eq!(
        sum_over_shards(&metrics, "ws2api_api_errors_total", &kind_label),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "ws2api_api_errors_total",
            &format!("shard=\"1\",{kind_label}")
        ),
        Some(1.0),
        "alice lives on shard 1"
    );
    close(&mut alice, 1000, "bye");
    assert_eq!(api.wait_request("DELETE", "/alice").text(), "bye");
    gw.stop();
}

/// An API server that never answers: the message times out at `--api-timeout`.
#[test]
fn backend_stalls_message_times_out() {
    message_fault_is_counted(Reply::stall, "timeout", |c| c.api.timeout = ms(300));
}

/// An API server that resets the connection half-way through its answer.
#[test]
fn backend_resets_mid_answer() {
    message_fault_is_counted(
        || Reply::raw_then_reset(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf an ans"),
        "broken",
        |_| {},
    );
}

/// An API server that closes (FIN) half-way through its answer.
#[test]
fn backend_closes_mid_answer() {
    message_fault_is_counted(
        || Reply::raw_then_close(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf an ans"),
        "bad_answer",
        |_| {},
    );
}

/// An API server that answers something that is not HTTP at all.
#[test]
fn backend_answers_garbage() {
    message_fault_is_counted(
        || Reply::raw_then_close(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02garbage"),
        "bad_answer",
        |_| {},
    );
}

/// An API server answering 10 MiB (Content-Length) with `--max-answer-size 1MiB`.
#[test]
fn backend_answers_too_much_with_length() {
    message_fault_is_counted(
        || {
            Reply::stream(
                b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n",
                10 << 20,
            )
        },
        "bad_answer",
        |c| c.api.max_answer_size = 1 << 20,
    );
}

/// An API server answering 10 MiB delimited by its close, with `--max-answer-size 1MiB`.
#[test]
fn backend_answers_too_much_until_close() {
    message_fault_is_counted(
        || Reply::stream(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", 10 << 20),
        "bad_answer",
        |c| c.api.max_answer_size = 1 << 20,
    );
}

/// A 5xx answer counts as failed with kind `status`.
#[test]
fn backend_answers_500() {
    message_fault_is_counted(|| Reply::status(500), "status", |_| {});
}

/// A Connect that never gets an answer: 504 at `--api-timeout`, counted `timeout`.
#[test]
fn backend_stalls_connect_is_504() {
    let api = FakeApi::builder().connect(Reply::stall()).start();
    let gw = TestGateway::start_with(api.addr, |c| c.api.timeout = ms(300));
    let started = Instant::now();
    let (_s, reply) = raw_upgrade(gw.public, "/alice", "");
    assert_eq!(reply.status, 504, "{reply:?}");
    assert!(started.elapsed() < ms(2500), "{:?}", started.elapsed());
    let metrics = gw.control_get("/metrics");
    assert_eq!(
        sample(
            &metrics,
            "ws2api_api_errors_total",
            "shard=\"1\",kind=\"timeout\""
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        reference_counter(&gw.control_get("/"), "requests_failed"),
        1
    );
    gw.stop();
}

/// Huge answers from the API server do not grow the gateway's memory: the real
/// binary's peak RSS after five 10 MiB answers (with `--max-answer-size 1MiB`) stays
/// within a few MiB of where it was, and the client is served afterwards.
#[test]
fn huge_answers_do_not_grow_gateway_memory() {
    let api = FakeApi::builder()
        .message_with(|req| match req.text() {
            "length" => Reply::stream(
                b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n",
                10 << 20,
            ),
            "close" => Reply::stream(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", 10 << 20),
            text => Reply::ok(&format!("re: {text}")),
        })
        .start();
    let api_url = format!("http://{}/", api.addr);
    let mut gw = GatewayProcess::spawn(&[
        "--api-url",
        &api_url,
        "--shards",
        "2",
        "--max-answer-size",
        "1MiB",
        "--log-level",
        "info",
    ]);
    let mut alice = ws(gw.public, "alice");
    send_text(&mut alice, "warm up");
    assert_eq!(recv_text(&mut alice), "re: warm up");
    let before = gw.peak_rss_kib();
    for i in 0..5 {
        send_text(&mut alice, if i % 2 == 0 { "length" } else { "close" });
        send_text(&mut alice, &format!("after {i}"));
        assert_eq!(recv_text(&mut alice), format!("re: after {i}"));
    }
    let after = gw.peak_rss_kib();
    assert!(
        after < before + 4096,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
    let reference = http(
        gw.control,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .text();
    assert_eq!(reference_counter(&reference, "requests_failed"), 5);
    close(&mut alice, 1000, "");
    api.wait_request("DELETE", "/alice");
    gw.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(gw.wait_exit().success(), "{}", gw.stderr.join("\n"));
}

/// An API server that is down: a Connect is 502 and a message fails, both counted
/// `connect`; once it is back, both work again.
#[test]
fn backend_refusing_connections_is_502() {
    let api = FakeApi::builder().message_echo("re: ").start();
    let gw = TestGateway::start(api.addr);
    let mut alice = ws(gw.public, "alice"); // shard 1
    send_text(&mut alice, "up");
    assert_eq!(recv_text(&mut alice), "re: up");

    api.stop_listening();
    let (_s, reply) = raw_upgrade(gw.public, "/bob", "");
    assert_eq!(reply.status, 502, "{reply:?}");
    send_text(&mut alice, "down");
    wait_until("the failed message counted", || {
        reference_counter(&gw.control_get("/"), "requests_failed") == 2
    });
    let metrics = gw.control_get("/metrics");
    assert_eq!(
        sum_over_shards(&metrics, "ws2api_api_errors_total", "kind=\"connect\""),
        2.0,
        "{metrics}"
    );

    api.restart();
    send_text(&mut alice, "up again");
    assert_eq!(recv_text(&mut alice), "re: up again");
    let (bob, reply) = raw_upgrade(gw.public, "/bob", "");
    assert_eq!(reply.status, 101, "{reply:?}");
    drop(bob);
    close(&mut alice, 1000, "");
    api.wait_for("both Disconnects", |r| {
        r.iter().filter(|r| r.method == "DELETE").count() == 2
    });
    gw.stop();
    assert!(api
        .matching("POST", "/alice")
        .iter()
        .all(|r| r.text() != "down"));
}

/// The API server goes down while clients leave and comes back about a second
/// later: every accepted connection still gets exactly one Disconnect (the retries
/// span ~16 s), with its own connection id and close code.
#[test]
fn exactly_one_disconnect_per_connection_across_a_backend_restart() {
    let api = FakeApi::start();
    let gw = TestGateway::start(api.addr);
    let mut clients: Vec<(String, Ws)> = (0..6)
        .map(|i| {
            let id = format!("r{i}");
            let client = ws(gw.public, &id);
            (id, client)
        })
        .collect();
    api.wait_for("6 Connects", |r| r.len() == 6);
    let conn_ids: HashMap<String, String> = api
        .requests()
        .iter()
        .map(|r| (r.conn_id().to_string(), r.path[1..].to_string()))
        .collect();

    api.stop_listening();
    let down = Instant::now();
    let mut closers = Vec::new();
    for (i, (_, mut client)) in clients.drain(..).enumerate() {
        if i % 2 == 0 {
            closers.push(thread::spawn(move || close(&mut client, 1000, "bye")));
        } else {
            drop(client);
        }
    }
    for closer in closers {
        closer.join().unwrap();
    }
    // Every first attempt has failed against the closed port before it comes back.
    wait_until("6 refused Disconnects", || {
        let metrics = gw.control_get("/metrics");
        sum_over_shards(&metrics, "ws2api_api_errors_total", "kind=\"connect\"") >= 6.0
    });
    assert!(api.matching("DELETE", "/r0").is_empty());
    // Down for about a second: the time away is what is tested.
    thread::sleep(ms(1000).saturating_sub(down.elapsed()));
    api.restart();

    api.wait_for("6 Disconnects", |r| {
        r.iter().filter(|r| r.method == "DELETE").count() >= 6
    });
    gw.stop();
    let deletes: Vec<Recorded> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 6, "{deletes:#?}");
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for delete in &deletes {
        *seen.entry(delete.conn_id()).or_default() += 1;
        let id = &conn_ids[delete.conn_id()];
        assert_eq!(&delete.path[1..], id, "{delete:?}");
        let n: usize = id[1..].parse().unwrap();
        let want = if n.is_multiple_of(2) {
            (1000, "bye")
        } else {
            (1006, "EOF")
        };
        assert_eq!((delete.close_code(), delete.text()), want, "{id}");
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
}

// ---------------------------------------------------------------------------
// PROXY protocol
// ---------------------------------------------------------------------------

/// Sends `header` and then an upgrade for `/{id}` on one socket; returns the socket
/// and the answer.
fn proxied_upgrade(gw: &TestGateway, header: &[u8], id: &str) -> (TcpStream, HttpReply) {
    let mut stream = tcp(gw.public);
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(upgrade_request(&format!("/{id}"), "").as_bytes());
    stream.write_all(&bytes).unwrap();
    let reply = read_reply_head(&mut stream);
    (stream, reply)
}

/// A PROXY v2 header: `command` 0x0 LOCAL / 0x1 PROXY, `family` byte, `addresses`.
fn proxy_v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x20 | command);
    header.push(family);
    header.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    header.extend_from_slice(addresses);
    header
}

/// With `--proxy-protocol`, a v1 header's source is the client's address for the
/// API server (Connect, Message, Disconnect) and for control `GET /<id>`.
#[test]
fn proxy_protocol_v1_source_is_forwarded() {
    let api = FakeApi::builder().message_echo("re: ").start();
    let gw = TestGateway::start_with(api.addr, |c| c.proxy_protocol = true);
    let (stream, reply) = proxied_upgrade(
        &gw,
        b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 7001\r\n",
        "alice",
    );
    assert_eq!(reply.status, 101, "{reply:?}");
    let mut alice =
        tungstenite::WebSocket::from_raw_socket(stream, tungstenite::protocol::Role::Client, None);
    send_text(&mut alice, "hi");
    assert_eq!(recv_text(&mut alice), "re: hi");
    let info = gw.control_get("/alice");
    assert_eq!(
        json_field(&info, "remote_addr"),
        "203.0.113.7:5555",
        "{info}"
    );
    close(&mut alice, 1000, "");
    api.wait_request("DELETE", "/alice");
    gw.stop();
    for request in api.requests() {
        assert_eq!(
            request.header("x-forwarded-for"),
            Some("203.0.113.7"),
            "{request:?}"
        );
    }
}

/// A v2 header with an IPv6 source; a v2 LOCAL header (a health check of the
/// balancer itself) means the socket's own address.
#[test]
fn proxy_protocol_v2_ipv6_and_local() {
    let api = FakeApi::start();
    let gw = TestGateway::start_with(api.addr, |c| c.proxy_protocol = true);

    let source: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
    let destination: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut addresses = source.octets().to_vec();
    addresses.extend_from_slice(&destination.octets());
    addresses.extend_from_slice(&4242u16.to_be_bytes());
    addresses.extend_from_slice(&7001u16.to_be_bytes());
    let (v6, reply) = proxied_upgrade(&gw, &proxy_v2(0x1, 0x21, &addresses), "six");
    assert_eq!(reply.status, 101, "{reply:?}");
    let connect = api.wait_request("GET", "/six");
    assert_eq!(connect.header("x-forwarded-for"), Some("2001:db8::7"));
    let info = gw.control_get("/six");
    assert_eq!(
        json_field(&info, "remote_addr"),
        "[2001:db8::7]:4242",
        "{info}"
    );

    let (local, reply) = proxied_upgrade(&gw, &proxy_v2(0x0, 0x00, &[]), "local");
    assert_eq!(reply.status, 101, "{reply:?}");
    let connect = api.wait_request("GET", "/local");
    assert_eq!(connect.header("x-forwarded-for"), Some("127.0.0.1"));
    drop((v6, local));
    api.wait_for("both Disconnects", |r| {
        r.iter().filter(|r| r.method == "DELETE").count() == 2
    });
    assert_eq!(
        api.matching("DELETE", "/six")[0].header("x-forwarded-for"),
        Some("2001:db8::7")
    );
    gw.stop();
}

/// With `--proxy-protocol`, a connection without a header is dropped unanswered and
/// never reaches the API server.
#[test]
fn proxy_protocol_required_when_on() {
    let api = FakeApi::start();
    let gw = TestGateway::start_with(api.addr, |c| c.proxy_protocol = true);
    let mut plain = tcp(gw.public);
    plain
        .write_all(upgrade_request("/sneaky", "").as_bytes())
        .unwrap();
    let ending = read_ending(&mut plain);
    assert!(
        matches!(ending, Ending::Eof | Ending::Reset),
        "expected a bare close, got {ending:?}"
    );
    // The gateway still serves a proper one afterwards.
    let (ok, reply) = proxied_upgrade(
        &gw,
        b"PROXY TCP4 198.51.100.1 127.0.0.1 1000 7001\r\n",
        "proper",
    );
    assert_eq!(reply.status, 101, "{reply:?}");
    drop(ok);
    api.wait_request("DELETE", "/proper");
    gw.stop();
    assert!(api.matching("GET", "/sneaky").is_empty());
}

// ---------------------------------------------------------------------------
// Control API
// ---------------------------------------------------------------------------

/// With `--control-token`, the token opens push, close, info and metrics; without it
/// each is 401 and does nothing.
#[test]
fn control_token_guards_every_operation() {
    let api = FakeApi::start();
    let gw = TestGateway::start_with(api.addr, |c| c.control.token = Some("s3cret".into()));
    let mut alice = ws(gw.public, "alice");
    let bearer = "Authorization: Bearer s3cret\r\n";
    let req = |method: &str, path: &str, auth: &str, body: &[u8]| {
        control_request(gw.control, method, path, auth, body).status
    };

    assert_eq!(req("POST", "/alice", "", b"no"), 401);
    assert_eq!(
        req("POST", "/alice", "Authorization: s3cret\r\n", b"no"),
        401
    );
    assert_eq!(
        req("POST", "/alice", "Authorization: Basic czNjcmV0\r\n", b"no"),
        401
    );
    assert_eq!(req("GET", "/alice", "", b""), 401);
    assert_eq!(req("DELETE", "/alice", "", b""), 401);
    assert_eq!(req("POST", "/alice", bearer, b"yes"), 200);
    assert_eq!(
        recv_text(&mut alice),
        "yes",
        "the refused push was not delivered"
    );
    assert_eq!(req("GET", "/alice", bearer, b""), 200);
    assert_eq!(req("GET", "/metrics", bearer, b""), 200);

    let watcher = close_watcher(alice);
    assert_eq!(req("DELETE", "/alice?code=4002", bearer, b""), 200);
    assert_eq!(watcher.join().unwrap().0, 4002);
    assert_eq!(api.wait_request("DELETE", "/alice").close_code(), 4002);
    gw.stop();
}

/// Control `GET /<id>`: shard, remote address, connected-at, messages in and out
/// match what the client did.
#[test]
fn control_info_matches_what_the_client_did() {
    let api = FakeApi::builder()
        .message_with(|req| match req.text() {
            "quiet" => Reply::status(200), // empty answer: nothing sent back
            text => Reply::ok(&format!("re: {text}")),
        })
        .start();
    let gw = TestGateway::start(api.addr);
    let id = &ids_owned_by(0, "info-", 1)[0];
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut client = ws(gw.public, id);
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let local = client.get_ref().local_addr().unwrap();

    for text in ["one", "two"] {
        send_text(&mut client, text);
        assert_eq!(recv_text(&mut client), format!("re: {text}"));
    }
    send_text(&mut client, "quiet");
    send_text(&mut client, "three");
    assert_eq!(recv_text(&mut client), "re: three");
    assert_eq!(gw.push(id, "text/plain", b"pushed").status, 200);
    assert_eq!(recv_text(&mut client), "pushed");

    let info = gw.control_get(&format!("/{id}"));
    assert_eq!(json_field(&info, "client_id"), id.as_str(), "{info}");
    assert_eq!(json_field(&info, "shard"), "0", "{info}");
    assert_eq!(
        json_field(&info, "remote_addr"),
        local.to_string(),
        "{info}"
    );
    let connected_at: f64 = json_field(&info, "connected_at").parse().unwrap();
    assert!(
        connected_at >= before - 0.01 && connected_at <= after + 0.01,
        "connected_at {connected_at} not within [{before}, {after}]"
    );
    assert_eq!(json_field(&info, "messages_in"), "4", "{info}");
    assert_eq!(json_field(&info, "messages_out"), "4", "{info}");
    let connect = api.wait_request("GET", &format!("/{id}"));
    assert_eq!(
        json_field(&info, "connection_id"),
        connect.conn_id(),
        "{info}"
    );
    close(&mut client, 1000, "");
    gw.stop();
}

/// Two gateways started at the same moment (as behind one load balancer) must not
/// hand out the same `X-Connection-Id`s: the API server behind both tells a
/// reconnect from a stale Disconnect by it.
#[test]
fn connection_ids_differ_between_gateways_started_together() {
    let api = FakeApi::start();
    for attempt in 0..20 {
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let starters: Vec<_> = (0..2)
            .map(|_| {
                let barrier = barrier.clone();
                let addr = api.addr;
                thread::spawn(move || {
                    barrier.wait();
                    TestGateway::start(addr)
                })
            })
            .collect();
        let gateways: Vec<TestGateway> = starters.into_iter().map(|t| t.join().unwrap()).collect();
        let id = format!("twin{attempt}");
        let mut ids = Vec::new();
        for gw in &gateways {
            let client = ws(gw.public, &id);
            let connects = api.wait_for("the Connect", |r| {
                r.iter().filter(|r| r.is("GET", &format!("/{id}"))).count() > ids.len()
            });
            let connect = connects
                .iter()
                .filter(|r| r.is("GET", &format!("/{id}")))
                .nth(ids.len())
                .unwrap();
            ids.push(connect.conn_id().to_string());
            drop(client);
        }
        for gw in gateways {
            gw.stop();
        }
        assert_ne!(ids[0], ids[1], "attempt {attempt}");
    }
}
