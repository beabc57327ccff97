//! What the gateway tells about itself: the counters of `/metrics` after a known
//! sequence of events, the `SIGUSR1` table and the `--stats-interval` CSV of the
//! real binary, and its one-line answer to bad flags.

mod support;

use std::collections::BTreeMap;
use std::io::Write;

use nix::sys::signal::Signal;
use support::*;

/// Checks that every line of a Prometheus text exposition is a `# HELP`/`# TYPE`
/// comment or `name{label="value",...} value`; returns the samples by key.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                comment.starts_with("HELP ") || comment.starts_with("TYPE "),
                "comment line: {line:?}"
            );
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let name_end = key.find('{').unwrap_or(key.len());
        let name = &key[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .enumerate()
                    .all(|(i, c)| c.is_ascii_alphabetic()
                        || c == '_'
                        || c == ':'
                        || (i > 0 && c.is_ascii_digit())),
            "metric name in {line:?}"
        );
        if name_end < key.len() {
            let labels = key[name_end..]
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("labels in {line:?}"));
            for pair in labels.split(',') {
                let (label, quoted) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("label {pair:?} in {line:?}"));
                assert!(
                    !label.is_empty()
                        && label
                            .chars()
                            .enumerate()
                            .all(|(i, c)| c.is_ascii_alphabetic()
                                || c == '_'
                                || (i > 0 && c.is_ascii_digit())),
                    "label name {label:?} in {line:?}"
                );
                assert!(
                    quoted.len() >= 2
                        && quoted.starts_with('"')
                        && quoted.ends_with('"')
                        && !quoted[1..quoted.len() - 1].contains('"'),
                    "label value {quoted:?} in {line:?}"
                );
            }
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        assert!(
            samples.insert(key.to_string(), value).is_none(),
            "duplicate sample {key}"
        );
    }
    samples
}

/// `promtool check metrics` on `text`, when promtool is installed (CI installs it).
fn promtool_check(text: &str) {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not on PATH: skipping `promtool check metrics`");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// On a fresh gateway: 3 connects (2 owned by shard 0, 1 by shard 1), 5 messages,
/// 2 pushes delivered, 1 push to an unknown id, 1 replacement, then every client
/// closes. Every counter of `/metrics` is then exactly what that sequence implies.
#[test]
fn metrics_match_a_known_sequence() {
    let api = FakeApi::builder().message_echo("re: ").start();
    let gw = TestGateway::start(api.addr);
    let zeros = ids_owned_by(0, "m-", 2);
    let one = ids_owned_by(1, "m-", 1).remove(0);
    let ghost = ids_owned_by(0, "ghost-", 1).remove(0);

    let mut a0 = ws(gw.public, &zeros[0]);
    let mut a1 = ws(gw.public, &zeros[1]);
    let mut b = ws(gw.public, &one);
    for (client, count) in [(&mut a0, 2), (&mut a1, 1), (&mut b, 2)] {
        for i in 0..count {
            send_text(client, &format!("m{i}"));
            assert_eq!(recv_text(client), format!("re: m{i}"));
        }
    }
    assert_eq!(gw.push(&zeros[0], "text/plain", b"p").status, 200);
    assert_eq!(recv_text(&mut a0), "p");
    assert_eq!(gw.push(&one, "text/plain", b"p").status, 200);
    assert_eq!(recv_text(&mut b), "p");
    assert_eq!(gw.push(&ghost, "text/plain", b"p").status, 404);

    let replaced = close_watcher(b);
    let mut b2 = ws(gw.public, &one);
    assert_eq!(replaced.join().unwrap().0, 4000);
    for client in [&mut a0, &mut a1, &mut b2] {
        close(client, 1000, "bye");
    }
    // A Disconnect is counted once its answer is in, just after the API saw it.
    wait_until("every request answered and counted", || {
        let reference = gw.control_get("/");
        reference_counter(&reference, "requests_succeeded") == 13
            && reference_counter(&reference, "connections_closed") == 4
    });

    let text = gw.control_get("/metrics");
    let samples = parse_exposition(&text);
    let get = |key: &str| -> f64 {
        *samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in:\n{text}"))
    };
    // The reference counters, untyped, process totals: 4 GET, 5 POST, 4 DELETE.
    for (name, want) in [
        ("connections_opened", 4.0),
        ("connections_closed", 4.0),
        ("requests_started", 13.0),
        ("requests_failed", 0.0),
        ("requests_succeeded", 13.0),
    ] {
        assert_eq!(get(name), want, "{name}");
        assert!(
            text.contains(&format!("# TYPE {name} untyped\n")),
            "{name} is untyped"
        );
    }
    let want: &[(&str, f64)] = &[
        ("ws2api_connections_opened_total{shard=\"0\"}", 2.0),
        ("ws2api_connections_opened_total{shard=\"1\"}", 2.0),
        ("ws2api_connections_closed_total{shard=\"0\"}", 2.0),
        ("ws2api_connections_closed_total{shard=\"1\"}", 2.0),
        ("ws2api_connections_active{shard=\"0\"}", 0.0),
        ("ws2api_connections_active{shard=\"1\"}", 0.0),
        ("ws2api_messages_in_total{shard=\"0\"}", 3.0),
        ("ws2api_messages_in_total{shard=\"1\"}", 2.0),
        // Answers and pushes.
        ("ws2api_messages_out_total{shard=\"0\"}", 4.0),
        ("ws2api_messages_out_total{shard=\"1\"}", 3.0),
        ("ws2api_pushes_total{shard=\"0\",outcome=\"ok\"}", 1.0),
        (
            "ws2api_pushes_total{shard=\"0\",outcome=\"not_found\"}",
            1.0,
        ),
        (
            "ws2api_pushes_total{shard=\"0\",outcome=\"queue_full\"}",
            0.0,
        ),
        ("ws2api_pushes_total{shard=\"1\",outcome=\"ok\"}", 1.0),
        (
            "ws2api_pushes_total{shard=\"1\",outcome=\"not_found\"}",
            0.0,
        ),
        (
            "ws2api_pushes_total{shard=\"1\",outcome=\"queue_full\"}",
            0.0,
        ),
        ("ws2api_closes_total{shard=\"0\",code=\"1000\"}", 2.0),
        ("ws2api_closes_total{shard=\"1\",code=\"1000\"}", 1.0),
        ("ws2api_closes_total{shard=\"1\",code=\"4000\"}", 1.0),
        (
            "ws2api_api_request_seconds_count{shard=\"0\",event=\"connect\"}",
            2.0,
        ),
        (
            "ws2api_api_request_seconds_count{shard=\"0\",event=\"message\"}",
            3.0,
        ),
        (
            "ws2api_api_request_seconds_count{shard=\"0\",event=\"disconnect\"}",
            2.0,
        ),
        (
            "ws2api_api_request_seconds_count{shard=\"1\",event=\"connect\"}",
            2.0,
        ),
        (
            "ws2api_api_request_seconds_count{shard=\"1\",event=\"message\"}",
            2.0,
        ),
        (
            "ws2api_api_request_seconds_count{shard=\"1\",event=\"disconnect\"}",
            2.0,
        ),
        ("ws2api_api_requests_started_total{shard=\"0\"}", 7.0),
        ("ws2api_api_requests_started_total{shard=\"1\"}", 6.0),
        ("ws2api_api_requests_failed_total{shard=\"0\"}", 0.0),
        ("ws2api_api_requests_failed_total{shard=\"1\"}", 0.0),
        ("ws2api_upgrades_refused_total{shard=\"0\"}", 0.0),
        ("ws2api_upgrades_refused_total{shard=\"1\"}", 0.0),
    ];
    for (key, value) in want {
        assert_eq!(get(key), *value, "{key}\n{text}");
    }
    // No close code other than those, and no API error of any kind.
    let closes = samples
        .keys()
        .filter(|k| k.starts_with("ws2api_closes_total{"))
        .count();
    assert_eq!(closes, 3, "{text}");
    assert!(
        !samples
            .keys()
            .any(|k| k.starts_with("ws2api_api_errors_total{")),
        "{text}"
    );
    promtool_check(&text);
    gw.stop();
}

/// A CSV line of `--stats-interval`: (seconds, connections, total); `None` for
/// any other line.
fn csv_row(line: &str) -> Option<(u64, u64, u64)> {
    let fields: Vec<&str> = line.split(',').collect();
    if fields.len() != 6 {
        return None;
    }
    for f in &fields[2..] {
        f.parse::<f64>().ok()?;
    }
    Some((
        fields[0].parse().ok()?,
        fields[1].parse().ok()?,
        fields[3].parse().ok()?,
    ))
}

/// The CSV lines among `lines`.
fn csv_rows(lines: &[String]) -> Vec<(u64, u64, u64)> {
    lines.iter().filter_map(|l| csv_row(l)).collect()
}

const CSV_HEADER: &str = "seconds,connections,rps,total,p50_ms,p99_ms";

/// The real binary: `SIGUSR1` prints a table with a row per shard and a total row;
/// `--stats-interval 200ms` writes a CSV whose `total` never decreases and whose
/// `connections` shows the connected client; `SIGTERM` closes the client with 1001
/// and exits 0.
#[test]
fn sigusr1_table_stats_csv_and_sigterm() {
    let api = FakeApi::builder().message_echo("re: ").start();
    let api_url = format!("http://{}/", api.addr);
    let mut gw = GatewayProcess::spawn(&[
        "--api-url",
        &api_url,
        "--stats-interval",
        "200ms",
        "--shards",
        "2",
        "--log-level",
        "info",
    ]);
    let mut alice = ws(gw.public, "alice"); // owned by shard 1
    for i in 0..3 {
        send_text(&mut alice, &format!("m{i}"));
        assert_eq!(recv_text(&mut alice), format!("re: m{i}"));
    }
    // A line written after the messages were counted.
    gw.wait_line("a CSV line with the client and its 3 messages", |l| {
        csv_row(l).is_some_and(|(_, c, t)| c == 1 && t == 3)
    });

    gw.signal(Signal::SIGUSR1);
    let header = gw.wait_line("the SIGUSR1 table header", |l| {
        l.split_whitespace().next() == Some("shard")
    });
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "shard",
            "connections",
            "in/s",
            "out/s",
            "inflight",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "forwards"
        ]
    );
    let mut rows = BTreeMap::new();
    while rows.len() < 3 {
        let line = gw.next_line().expect("table rows");
        let cells: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if cells.len() == 9 && ["0", "1", "total"].contains(&cells[0].as_str()) {
            for cell in &cells[1..] {
                cell.parse::<f64>()
                    .unwrap_or_else(|_| panic!("cell {cell:?} in {line:?}"));
            }
            rows.insert(cells[0].clone(), cells);
        }
    }
    let connections = |row: &str| rows[row][1].parse::<u64>().unwrap();
    assert_eq!(connections("0"), 0, "{rows:?}");
    assert_eq!(connections("1"), 1, "{rows:?}");
    assert_eq!(connections("total"), connections("0") + connections("1"));

    // One more CSV line while the client is still connected, then stop.
    let last = gw.wait_line("one more CSV line", |l| csv_row(l).is_some());
    assert_eq!(
        csv_row(&last).unwrap().1,
        1,
        "the last line while the client is connected: {last}"
    );
    let watcher = close_watcher(alice);
    gw.signal(Signal::SIGTERM);
    assert_eq!(watcher.join().unwrap(), (1001, "shutdown".to_string()));
    let status = gw.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", gw.stderr.join("\n"));
    api.wait_request("DELETE", "/alice");

    assert!(
        gw.stderr.iter().any(|l| l == CSV_HEADER),
        "no CSV header in:\n{}",
        gw.stderr.join("\n")
    );
    let rows = csv_rows(&gw.stderr);
    assert!(rows.len() >= 2, "{rows:?}");
    for pair in rows.windows(2) {
        assert!(pair[0].2 <= pair[1].2, "total went down: {rows:?}");
        assert!(pair[0].0 <= pair[1].0, "seconds went down: {rows:?}");
    }
    assert_eq!(rows.last().unwrap().2, 3, "{rows:?}");
}

/// `--stats-file FILE`: the CSV goes to the file, not to stderr.
#[test]
fn stats_file_gets_the_csv_instead_of_stderr() {
    let api = FakeApi::start();
    let path = std::env::temp_dir().join(format!("ws2api-stats-{}.csv", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let api_url = format!("http://{}/", api.addr);
    let mut gw = GatewayProcess::spawn(&[
        "--api-url",
        &api_url,
        "--stats-interval",
        "100ms",
        "--stats-file",
        path.to_str().unwrap(),
        "--shards",
        "2",
    ]);
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    wait_until("two CSV lines in the stats file", || {
        csv_rows(&read().lines().map(str::to_string).collect::<Vec<_>>()).len() >= 2
    });
    gw.signal(Signal::SIGTERM);
    assert_eq!(gw.wait_exit().code(), Some(0));
    let text = read();
    let _ = std::fs::remove_file(&path);
    assert_eq!(text.lines().next(), Some(CSV_HEADER), "{text}");
    for line in text.lines().skip(1) {
        assert!(csv_row(line).is_some(), "{line:?}");
    }
    assert!(
        !gw.stderr.iter().any(|l| l == CSV_HEADER) && csv_rows(&gw.stderr).is_empty(),
        "CSV on stderr too:\n{}",
        gw.stderr.join("\n")
    );
}

/// Bad flags: exactly one line on stderr, naming the flag, and exit code 2.
#[test]
fn bad_flags_are_one_line_and_exit_2() {
    for (args, names) in [
        (&["--shards", "0"][..], "--shards"),
        (&["--api-timeout", "5"][..], "--api-timeout"),
        (&["--bogus"][..], "--bogus"),
        (
            &["--max-outbound-bytes", "12XB"][..],
            "--max-outbound-bytes",
        ),
        (&["--ping-interval", "soon"][..], "--ping-interval"),
    ] {
        let (code, stderr) = run_ws2api(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr:?}");
        assert!(lines[0].contains(names), "{args:?}: {stderr:?}");
    }
}

/// Every `/metrics` a busy gateway renders parses, and `/` agrees with it.
#[test]
fn reference_counters_agree_with_metrics() {
    let api = FakeApi::builder().message_echo("").start();
    let gw = TestGateway::start(api.addr);
    let mut clients: Vec<Ws> = (0..4)
        .map(|i| ws(gw.public, &format!("agree{i}")))
        .collect();
    for client in &mut clients {
        send_text(client, "x");
        assert_eq!(recv_text(client), "x");
    }
    let metrics = parse_exposition(&gw.control_get("/metrics"));
    let reference = gw.control_get("/");
    for name in [
        "connections_opened",
        "connections_closed",
        "requests_started",
        "requests_failed",
        "requests_succeeded",
    ] {
        assert_eq!(
            metrics[name] as u64,
            reference_counter(&reference, name),
            "{name}"
        );
    }
    let per_shard: f64 = (0..2)
        .map(|s| metrics[&format!("ws2api_connections_opened_total{{shard=\"{s}\"}}")])
        .sum();
    assert_eq!(per_shard, metrics["connections_opened"]);
    for client in &mut clients {
        close(client, 1000, "");
    }
    gw.stop();
}
