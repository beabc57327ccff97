//! `ws2api::http::proxy::parse` (PROXY protocol v1 text / v2 binary header) with max 4096.
//!
//! Properties checked besides "no panic" (all documented on `parse`):
//! * `Ok(None)` only while the buffer is empty or shorter than `max`;
//! * a header of `n` bytes: `n <= len`, `n <= max`; every shorter prefix is `Ok(None)`;
//!   the header alone parses to the same result, also with `max == n`;
//! * a refused buffer: every prefix is incomplete or refused with the same error variant.
//!
//! Known finding F1 (fuzz/README.md), tolerated unless `WS2API_FUZZ_STRICT=1`: a v1 CR as
//! byte 107 is `TooLong` while the next byte has not arrived but `Malformed("v1 header has CR
//! without LF")` once a non-LF byte follows it.
#![no_main]

use std::mem::discriminant;

use libfuzzer_sys::fuzz_target;
use ws2api::http::proxy::{parse, ProxyError, V1_MAX};

fn strict() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("WS2API_FUZZ_STRICT").is_some_and(|v| v == "1"))
}

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let full = parse(data, MAX);
    match &full {
        Ok(None) => assert!(data.is_empty() || data.len() < MAX, "Ok(None) on {} bytes", data.len()),
        Ok(Some((n, header))) => {
            let n = *n;
            assert!(n <= data.len() && n <= MAX, "consumed {n} of {}", data.len());
            let alone = parse(&data[..n], MAX);
            assert_eq!(alone.as_ref().ok().and_then(|r| r.as_ref()), Some(&(n, header.clone())));
            let exact = parse(&data[..n], n);
            assert_eq!(exact.as_ref().ok().and_then(|r| r.as_ref()), Some(&(n, header.clone())));
            // Every strict prefix needs more bytes (v2 headers can be 64 KiB: sample them).
            let step = (n / 256).max(1);
            for p in (0..n).step_by(step).chain([n - 1]) {
                let prefix = parse(&data[..p], MAX);
                assert!(matches!(prefix, Ok(None)), "prefix {p} of a {n}-byte header: {prefix:?}");
            }
        }
        Err(e) => {
            let _ = e.to_string();
            let step = (data.len() / 256).max(1);
            for p in (0..data.len()).step_by(step) {
                match parse(&data[..p], MAX) {
                    Ok(None) => {}
                    Err(pe) if discriminant(&pe) == discriminant(e) => {}
                    // F1: CR at byte 107 with nothing after it yet.
                    Err(ProxyError::TooLong)
                        if !strict()
                            && p == V1_MAX
                            && *e == ProxyError::Malformed("v1 header has CR without LF") => {}
                    other => panic!("full refused with {e:?}, prefix {p} gave {other:?}"),
                }
            }
        }
    }
});
