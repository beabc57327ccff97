//! Groups and broadcast end to end: a real gateway (2 shards, port 0) in front of a
//! fake API server whose answers carry `X-Group-Join` / `X-Group-Leave` /
//! `X-Close-Code`, members on both shards, and the control listener's group routes.

mod support;

use std::io::Write;

use support::*;
use tungstenite::Message;

/// `method path` on the control listener with `body`; the reply.
fn control(gw: &TestGateway, method: &str, path: &str, body: &[u8]) -> HttpReply {
    control_request(gw.control, method, path, "", body)
}

/// A broadcast's `(queued, full)`, parsed from its JSON answer.
fn broadcast(gw: &TestGateway, group: &str, body: &[u8]) -> (u64, u64) {
    let reply = control(gw, "POST", &format!("/groups/{group}"), body);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    parse_counts(&reply.text())
}

fn parse_counts(json: &str) -> (u64, u64) {
    let number = |key: &str| -> u64 {
        let at = json.find(&format!("\"{key}\": ")).expect(key) + key.len() + 4;
        json[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (number("queued"), number("full"))
}

/// `GET /groups/<group>`'s member count.
fn members(gw: &TestGateway, group: &str) -> u64 {
    let json = gw.control_get(&format!("/groups/{group}"));
    assert!(
        json.starts_with(&format!("{{\"group\": \"{group}\", \"members\": ")),
        "{json}"
    );
    json.trim_end()
        .trim_end_matches('}')
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Clients `a0, a1, …` on shard 0 and `b0, b1, …` on shard 1.
fn ids_on_both_shards(per_shard: usize) -> Vec<String> {
    let mut ids = ids_owned_by(0, "a", per_shard);
    ids.extend(ids_owned_by(1, "b", per_shard));
    ids
}

/// The Connect answer joins each client to the groups named in its query
/// (`?join=x,y`); a broadcast reaches every member on both shards but `except`, and
/// is answered with what every shard queued.
#[test]
fn connect_answers_join_and_a_broadcast_reaches_members_on_both_shards() {
    let api = FakeApi::builder()
        .connect_with(|req| {
            let join = req.path.split("join=").nth(1).unwrap_or("").to_string();
            Reply::ok("ok").header("X-Group-Join", &join)
        })
        .start();
    let gw = TestGateway::start(api.addr);
    let ids = ids_on_both_shards(3);
    let mut clients: Vec<Ws> = ids
        .iter()
        .map(|id| {
            let join = if id.ends_with('0') {
                "room,vip"
            } else {
                "room"
            };
            try_ws(gw.public, &format!("/{id}?join={join}"), &[])
                .expect("accepted")
                .0
        })
        .collect();

    assert_eq!(members(&gw, "room"), 6);
    assert_eq!(members(&gw, "vip"), 2);
    assert_eq!(members(&gw, "nobody"), 0);
    assert_eq!(members(&gw, "*"), 6);
    let info = gw.control_get(&format!("/{}", ids[0]));
    assert!(info.contains("\"groups\":[\"room\",\"vip\"]"), "{info}");

    // Every member, on both shards, but the one excepted.
    let except = &ids[4];
    assert_eq!(
        broadcast(&gw, &format!("room?except={except}"), b"hello room"),
        (5, 0)
    );
    assert_eq!(broadcast(&gw, "vip", b"hello vip"), (2, 0));
    assert_eq!(broadcast(&gw, "*", b"hello all"), (6, 0));
    for (id, client) in ids.iter().zip(clients.iter_mut()) {
        if id != except {
            assert_eq!(recv_text(client), "hello room", "{id}");
        }
        if id.ends_with('0') {
            assert_eq!(recv_text(client), "hello vip", "{id}");
        }
        assert_eq!(recv_text(client), "hello all", "{id}");
    }

    let metrics = gw.control_get("/metrics");
    assert_eq!(metric(&metrics, "ws2api_group_memberships", None), 8);
    assert_eq!(metric(&metrics, "ws2api_groups", Some(0)), 2);
    assert_eq!(metric(&metrics, "ws2api_groups", Some(1)), 2);
    assert_eq!(metric(&metrics, "ws2api_broadcasts_total", Some(0)), 3);
    assert_eq!(metric(&metrics, "ws2api_broadcasts_total", Some(1)), 3);
    assert_eq!(
        sum_over_shards(
            &metrics,
            "ws2api_broadcast_deliveries_total",
            "outcome=\"queued\""
        ),
        13.0
    );

    for client in &mut clients {
        close(client, 1000, "");
    }
    // Closed connections leave their groups, and empty groups are forgotten.
    wait_until("the groups to empty", || members(&gw, "room") == 0);
    assert_eq!(gw.metric("ws2api_groups"), 0);
    gw.stop();
}

/// Message answers join and leave (joins first); so do PUT and DELETE on the control
/// listener; broadcasts sent one after another arrive in that order; binary stays
/// binary.
#[test]
fn answers_and_control_calls_change_membership_and_broadcasts_keep_their_order() {
    let api = FakeApi::builder()
        .message_with(|req| {
            let text = req.text().to_string();
            let (verb, group) = text.split_once(' ').unwrap_or((&text, ""));
            let header = if verb == "join" {
                "X-Group-Join"
            } else {
                "X-Group-Leave"
            };
            // "swap a b": join b, then leave a, in one answer.
            match verb {
                "swap" => {
                    let (from, to) = group.split_once(' ').unwrap();
                    Reply::ok("swapped")
                        .header("X-Group-Leave", from)
                        .header("X-Group-Join", to)
                }
                _ => Reply::ok(&format!("{verb} {group}")).header(header, group),
            }
        })
        .start();
    let gw = TestGateway::start(api.addr);
    let ids = ids_on_both_shards(1);
    let (mut a, mut b) = (ws(gw.public, &ids[0]), ws(gw.public, &ids[1]));

    send_text(&mut a, "join news");
    // The answer body goes out after the join took effect.
    assert_eq!(recv_text(&mut a), "join news");
    assert_eq!(members(&gw, "news"), 1);
    assert_eq!(
        control(&gw, "PUT", &format!("/groups/news/{}", ids[1]), b"").status,
        200
    );
    // Joining again is fine, and changes nothing.
    assert_eq!(
        control(&gw, "PUT", &format!("/groups/news/{}", ids[1]), b"").status,
        200
    );
    assert_eq!(members(&gw, "news"), 2);

    for n in 0..50 {
        assert_eq!(
            broadcast(&gw, "news", format!("item {n}").as_bytes()),
            (2, 0)
        );
    }
    for client in [&mut a, &mut b] {
        for n in 0..50 {
            assert_eq!(recv_text(client), format!("item {n}"));
        }
    }
    let reply = control_request(
        gw.control,
        "POST",
        "/groups/news",
        "Content-Type: application/octet-stream\r\n",
        b"\x00\xff",
    );
    assert_eq!(parse_counts(&reply.text()), (2, 0));
    for client in [&mut a, &mut b] {
        assert_eq!(recv(client), Message::binary(vec![0u8, 0xff]));
    }

    send_text(&mut a, "swap news sports");
    assert_eq!(recv_text(&mut a), "swapped");
    assert_eq!((members(&gw, "news"), members(&gw, "sports")), (1, 1));
    assert_eq!(
        control(&gw, "DELETE", &format!("/groups/news/{}", ids[1]), b"").status,
        200
    );
    assert_eq!(members(&gw, "news"), 0);
    send_text(&mut a, "leave sports");
    assert_eq!(recv_text(&mut a), "leave sports");
    assert_eq!(broadcast(&gw, "sports", b"anyone?"), (0, 0));

    close(&mut a, 1000, "");
    close(&mut b, 1000, "");
    gw.stop();
}

/// Bad input gets a clear answer: bad group 400, `*` cannot be joined 400, unknown
/// client 404, over the cap 409, body over --max-message-size 413; in an answer, bad
/// names and joins past the cap are skipped and counted, the rest still applies.
#[test]
fn bad_group_requests_and_the_cap() {
    let api = FakeApi::builder()
        .connect(Reply::ok("ok").header("X-Group-Join", "g1, bad name, *, g2, g3, g4"))
        .start();
    let gw = TestGateway::start_with(api.addr, |c| {
        c.limits.max_groups_per_client = 3;
        c.limits.max_message_size = 64;
    });
    let mut alice = ws(gw.public, "alice");
    // g1..g3 joined; "bad name", "*" and g4 (past the cap) skipped and counted.
    let info = gw.control_get("/alice");
    assert!(info.contains("\"groups\":[\"g1\",\"g2\",\"g3\"]"), "{info}");
    assert_eq!(gw.metric("ws2api_group_names_skipped_total"), 3);

    let status = |method: &str, path: &str, body: &[u8]| control(&gw, method, path, body).status;
    assert_eq!(status("PUT", "/groups/g4/alice", b""), 409);
    assert_eq!(
        status("PUT", "/groups/g1/alice", b""),
        200,
        "already a member"
    );
    assert_eq!(status("PUT", "/groups/g1/nobody", b""), 404);
    assert_eq!(status("DELETE", "/groups/g1/nobody", b""), 404);
    assert_eq!(status("PUT", "/groups/*/alice", b""), 400);
    assert_eq!(status("DELETE", "/groups/*/alice", b""), 400);
    assert_eq!(status("PUT", "/groups/a%20b/alice", b""), 400);
    assert_eq!(status("POST", "/groups/a%20b", b"x"), 400);
    assert_eq!(status("GET", "/groups/", b""), 400);
    assert_eq!(status("POST", "/groups/g1", &[b'x'; 65]), 413);
    assert_eq!(status("PATCH", "/groups/g1", b""), 405);
    assert_eq!(status("POST", "/groups/g1?except=a%20b", b"x"), 400);
    // A leave frees room under the cap.
    assert_eq!(status("DELETE", "/groups/g3/alice", b""), 200);
    assert_eq!(status("PUT", "/groups/g4/alice", b""), 200);
    close(&mut alice, 1000, "");
    gw.stop();
}

/// A replacement starts in no group; a member whose queue is full is skipped and
/// counted in `full`, never waited for, while the others get the broadcast.
#[test]
fn replacement_starts_in_no_group_and_full_members_are_counted() {
    let api = FakeApi::builder()
        .connect_with(|req| {
            let reply = Reply::ok("ok");
            match req.path.contains("join") {
                true => reply.header("X-Group-Join", "feed"),
                false => reply,
            }
        })
        .start();
    let gw = TestGateway::start_with(api.addr, |c| c.limits.max_outbound_bytes = 4096);
    let first = ws(gw.public, "alice?join");
    assert_eq!(members(&gw, "feed"), 1);
    let watcher = close_watcher(first);
    let (mut second, _) = try_ws(gw.public, "/alice", &[]).expect("replaced");
    assert_eq!(watcher.join().unwrap(), (4000, "replaced".to_string()));
    assert_eq!(members(&gw, "feed"), 0, "the replacement is in no group");
    assert_eq!(broadcast(&gw, "feed", b"x"), (0, 0));

    // bob reads; carol never does, and her queue fills past 4 KiB.
    let mut bob = ws(gw.public, "bob?join");
    let mut carol = tcp_small_rcvbuf(gw.public, 4096);
    carol
        .write_all(upgrade_request("/carol?join", "").as_bytes())
        .unwrap();
    assert_eq!(read_reply_head(&mut carol).status, 101);
    assert_eq!(members(&gw, "feed"), 2);
    let chunk = vec![b'y'; 1000];
    let mut full = 0;
    for _ in 0..400 {
        let (queued, f) = broadcast(&gw, "feed", &chunk);
        assert!(queued >= 1, "bob always gets it");
        assert_eq!(
            recv(&mut bob),
            Message::text(String::from_utf8(chunk.clone()).unwrap())
        );
        full += f;
        if full > 0 {
            break;
        }
    }
    assert!(full > 0, "carol's queue never filled");
    assert!(gw.metric("ws2api_broadcast_deliveries_total") > 0);
    let metrics = gw.control_get("/metrics");
    assert!(
        sum_over_shards(
            &metrics,
            "ws2api_broadcast_deliveries_total",
            "outcome=\"full\""
        ) >= 1.0
    );
    drop(carol);
    close(&mut bob, 1000, "");
    close(&mut second, 1000, "");
    gw.stop();
}

/// `X-Close-Code` / `X-Close-Reason` in a Message answer: the body goes out first,
/// then the close, and the Disconnect carries that code and reason. A code a server
/// may not send is ignored.
#[test]
fn an_answer_can_close_its_client_after_the_body() {
    let api = FakeApi::builder()
        .message_with(|req| match req.text() {
            "bye" => Reply::ok("see you")
                .header("X-Close-Code", "4001")
                .header("X-Close-Reason", "asked to leave"),
            "policy" => Reply::ok("not allowed")
                .header("X-Close-Code", "1008")
                .header("X-Close-Reason", "policy"),
            _ => Reply::ok("still here").header("X-Close-Code", "1005"),
        })
        .start();
    let gw = TestGateway::start(api.addr);
    let mut alice = ws(gw.public, "alice");
    send_text(&mut alice, "stay");
    assert_eq!(recv_text(&mut alice), "still here");
    send_text(&mut alice, "bye");
    assert_eq!(recv_text(&mut alice), "see you");
    assert_eq!(
        expect_close(&mut alice),
        (4001, "asked to leave".to_string())
    );
    let disconnect = api.wait_request("DELETE", "/alice");
    assert_eq!(disconnect.close_code(), 4001);
    assert_eq!(disconnect.text(), "asked to leave");
    // 1008 from the API is a policy close like any other: the answer still goes first.
    let mut bob = ws(gw.public, "bob");
    send_text(&mut bob, "policy");
    assert_eq!(recv_text(&mut bob), "not allowed");
    assert_eq!(expect_close(&mut bob), (1008, "policy".to_string()));
    gw.stop();
}

/// A member that reads nothing for a while: broadcast frames far larger than its socket
/// buffers, with pushes between them, go out partly at once and the rest from its queue,
/// and arrive whole and in order once it reads.
#[test]
fn large_broadcasts_and_pushes_to_a_member_that_reads_late_arrive_whole_and_in_order() {
    let api = FakeApi::start();
    let gw = TestGateway::start_with(api.addr, |c| c.limits.max_outbound_bytes = 64 << 20);
    let ids = ids_on_both_shards(1);
    let mut late: Vec<Ws> = ids.iter().map(|id| ws(gw.public, id)).collect();
    for id in &ids {
        assert_eq!(
            control(&gw, "PUT", &format!("/groups/bulk/{id}"), b"").status,
            200
        );
    }
    let big = |n: usize| -> Vec<u8> {
        let mut body = format!("big {n} ").into_bytes();
        body.extend((0..200 * 1024).map(|i| b'a' + ((i + n) % 26) as u8));
        body
    };
    let pushes = |n: usize| format!("push {n}");
    for n in 0..12 {
        assert_eq!(broadcast(&gw, "bulk", &big(n)), (2, 0), "broadcast {n}");
        for id in &ids {
            let reply = control(&gw, "POST", &format!("/{id}"), pushes(n).as_bytes());
            assert_eq!(reply.status, 200, "push {n} to {id}: {reply:?}");
        }
    }
    for id in &ids {
        // More than its socket buffers hold: the rest waits in its queue.
        let info = gw.control_get(&format!("/{id}"));
        let queued: u64 = info
            .split("\"queued_bytes\":")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no queued_bytes in {info}"));
        assert!(
            queued > 200 * 1024,
            "{id}: only {queued} bytes queued: {info}"
        );
    }
    for (id, client) in ids.iter().zip(late.iter_mut()) {
        for n in 0..12 {
            match recv(client) {
                Message::Text(text) => {
                    assert!(
                        text.as_bytes() == big(n).as_slice(),
                        "{id}: broadcast {n} damaged"
                    )
                }
                other => panic!("{id}: expected broadcast {n}, got {other:?}"),
            }
            assert_eq!(recv_text(client), pushes(n), "{id}");
        }
        close(client, 1000, "");
    }
    gw.stop();
}
