//! Benchmarks of the sans-IO codecs on the hot path: request-head parsing, WebSocket
//! frame decode and encode, backend request encoding and answer decoding; and what the
//! edge limits add: the message-rate bucket per message, the Origin check and the
//! per-address table per connection.
//!
//! A plain program (`harness = false`) that prints one line per case with its rate and
//! the machine it ran on. Run: `cargo bench --bench codecs`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ws2api::api::answer::AnswerDecoder;
use ws2api::api::request::{encode_request, ApiMethod};
use ws2api::edge::{Addresses, AllowedOrigins, Bucket, Rate};
use ws2api::http::request;
use ws2api::ws::codec::{encode_text, WsDecoder};

const UPGRADE: &[u8] = b"GET /client-42?token=abc HTTP/1.1\r\n\
Host: gateway.example:7001\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: https://app.example\r\n\
Cookie: session=0123456789abcdef0123456789abcdef\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

const ANSWER_BODY: &str = r#"[3,"123",{"status":"Accepted"},7]"#;

fn answer() -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{ANSWER_BODY}",
        ANSWER_BODY.len()
    )
    .into_bytes()
}

/// Runs `f` repeatedly for about `budget` and prints operations per second and ns per operation.
fn bench(name: &str, bytes_per_op: usize, budget: Duration, mut f: impl FnMut()) {
    for _ in 0..1000 {
        f();
    }
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < budget {
        for _ in 0..1000 {
            f();
        }
        ops += 1000;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ns = elapsed * 1e9 / ops as f64;
    let mb_s = (bytes_per_op as f64 * ops as f64) / elapsed / 1e6;
    println!(
        "{name:<40} {:>12.0} ops/s {ns:>9.1} ns/op {mb_s:>9.1} MB/s",
        ops as f64 / elapsed
    );
}

fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n < 65536 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cpu}, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    )
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(700),
    );
    println!("# codecs on {}", machine());

    bench(
        "request head parse (upgrade, 10 headers)",
        UPGRADE.len(),
        budget,
        || {
            let parsed = request::parse(black_box(UPGRADE), 8192).unwrap().unwrap();
            black_box(parsed.1.websocket_accept().unwrap());
        },
    );

    let small = masked_text_frame(br#"[2,"123","hello","hello world 7"]"#);
    let mut events = Vec::new();
    let mut decoder = WsDecoder::new(1 << 20);
    bench(
        "ws decode, 34 B masked text frame",
        small.len(),
        budget,
        || {
            events.clear();
            decoder.decode(black_box(&small), &mut events).unwrap();
            black_box(&events);
        },
    );

    let big = masked_text_frame(&vec![b'x'; 64 * 1024]);
    bench(
        "ws decode, 64 KiB masked text frame",
        big.len(),
        budget,
        || {
            events.clear();
            decoder.decode(black_box(&big), &mut events).unwrap();
            black_box(&events);
        },
    );

    let mut out = Vec::with_capacity(1024);
    bench("ws encode, 34 B text frame", 36, budget, || {
        out.clear();
        encode_text(&mut out, black_box(br#"[2,"123","hello","hello world 7"]"#));
        black_box(&out);
    });

    let body = br#"[2,"123","hello","hello world 7"]"#;
    let headers: [(&str, &[u8]); 3] = [
        ("Content-Type", b"text/plain; charset=utf-8"),
        ("X-Connection-Id", b"1a2b3c4d-0-12345"),
        ("X-Forwarded-For", b"127.0.0.1"),
    ];
    bench("api request encode (POST, 3 headers)", 200, budget, || {
        out.clear();
        encode_request(
            &mut out,
            ApiMethod::Post,
            "127.0.0.1:8000",
            "/ws/client-42",
            black_box(&headers),
            body,
        );
        black_box(&out);
    });

    let answer_bytes = answer();
    bench(
        "api answer decode (200, Content-Length)",
        answer_bytes.len(),
        budget,
        || {
            let mut decoder = AnswerDecoder::new(1 << 20, false);
            let (_, answer) = decoder.feed(black_box(&answer_bytes)).unwrap();
            black_box(answer.unwrap());
        },
    );

    // --max-message-rate: what a message pays (a clock read and the bucket).
    let rate = Rate::per_second(1_000_000_000).unwrap();
    let mut bucket = Bucket::new(Instant::now());
    bench("message rate: clock + bucket take", 0, budget, || {
        black_box(bucket.take(black_box(rate), Instant::now())).ok();
    });
    let origins = AllowedOrigins::parse(
        "https://app.example.com,https://*.example.org,http://localhost:8080",
    )
    .unwrap();
    bench(
        "origin check, wildcard match of 3 entries",
        0,
        budget,
        || {
            black_box(origins.allows(black_box(b"https://a.b.example.org")));
        },
    );
    let mut table = Addresses::new(1_000_000, 1_000_000, Rate::per_second(1_000_000_000));
    let mut n = 0u32;
    bench(
        "per-address table: admit + release, 64k addresses",
        0,
        budget,
        || {
            n = n.wrapping_add(1);
            let ip = std::net::IpAddr::from((n & 0xffff).to_be_bytes());
            let now = Instant::now();
            black_box(table.admit(ip, now)).ok();
            table.release(ip, now);
        },
    );
}
