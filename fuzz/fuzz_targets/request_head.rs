//! `ws2api::http::request::parse` (the HTTP/1.x request head parser shared by the WebSocket
//! and API listeners), then `client_id()` and `websocket_accept()` on every head it accepts.
//!
//! Properties checked besides "no panic":
//! * `parse` is deterministic on the same buffer;
//! * a complete head of `n` bytes: every shorter prefix answers `Ok(None)` ("need more"), and
//!   every longer prefix (the body or frames following) gives the same `(n, head)`;
//! * an incomplete buffer: every prefix is incomplete too;
//! * a refused buffer: every prefix is incomplete or refused with the same error variant;
//! * `n <= buf.len()`, `n <= max_head`, never chunked together with a Content-Length.
#![no_main]

use std::mem::discriminant;

use libfuzzer_sys::fuzz_target;
use ws2api::http::request::{parse, RequestError, RequestHead};

const MAX_HEAD: usize = 8192;

type Parsed = Result<Option<(usize, RequestHead)>, RequestError>;

/// Prefix lengths to re-parse: all of them for short inputs, else a spread plus the edges.
fn prefix_lengths(len: usize, head_len: Option<usize>) -> Vec<usize> {
    if len <= 512 {
        return (0..len).collect();
    }
    let mut out: Vec<usize> = (0..64).map(|i| i * len / 64).collect();
    out.extend([len - 1, len.saturating_sub(2)]);
    if let Some(n) = head_len {
        out.extend([n.saturating_sub(1), n.saturating_sub(2), n, (n + 1).min(len - 1)]);
    }
    out
}

fn check_prefix(data: &[u8], full: &Parsed, p: usize) {
    let prefix = parse(&data[..p], MAX_HEAD);
    match full {
        Ok(Some((n, head))) => {
            if p < *n {
                assert!(
                    matches!(prefix, Ok(None)),
                    "prefix of {p} bytes of a {n}-byte head gave {prefix:?}"
                );
            } else {
                assert_eq!(
                    prefix.as_ref().ok().and_then(|r| r.as_ref()),
                    Some(&(*n, head.clone())),
                    "prefix of {p} bytes (head is {n}) gave a different result"
                );
            }
        }
        Ok(None) => assert!(
            matches!(prefix, Ok(None)),
            "prefix of {p} bytes of an incomplete head gave {prefix:?}"
        ),
        Err(e) => match &prefix {
            Ok(None) => {}
            Err(pe) if discriminant(pe) == discriminant(e) => {}
            other => panic!("full buffer refused with {e:?} but prefix of {p} bytes gave {other:?}"),
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let full = parse(data, MAX_HEAD);
    assert_eq!(full, parse(data, MAX_HEAD), "parse is not deterministic");

    let head_len = match &full {
        Ok(Some((n, head))) => {
            assert!(*n <= data.len() && *n <= MAX_HEAD, "consumed {n} of {}", data.len());
            assert!(!(head.chunked && head.content_length.is_some()));
            let _ = head.client_id();
            let _ = head.websocket_accept();
            let _ = head.has_token("connection", "upgrade");
            Some(*n)
        }
        Ok(None) => {
            assert!(data.len() < MAX_HEAD, "Ok(None) with {} bytes", data.len());
            None
        }
        Err(e) => {
            let _ = (e.status(), e.extra_headers(), e.to_string());
            None
        }
    };

    for p in prefix_lengths(data.len(), head_len) {
        check_prefix(data, &full, p);
    }
});
