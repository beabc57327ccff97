//! `ws2api::http::proxy::{tlvs, tls_of}`: the TLVs after a PROXY v2 address block, and
//! the SSL TLV's TLS facts (HAProxy's `send-proxy-v2-ssl-cn`).
//!
//! Properties checked besides "no panic":
//! * the TLVs found tile a prefix of the input exactly (3 header bytes plus the value
//!   each), in order, each value inside the input;
//! * `tls_of` is `Some` only if there is an SSL TLV (type 0x20) among them whose first
//!   byte has `PP2_CLIENT_SSL` set;
//! * a CN it returns is non-empty text with no control character (it travels in an
//!   HTTP header), and is only returned when the certificate verified (`verify` 0 and a
//!   certificate flag set).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws2api::http::proxy::{tls_of, tlvs};

fuzz_target!(|data: &[u8]| {
    let mut at = 0usize;
    let mut ssl = None;
    for (kind, value) in tlvs(data) {
        assert_eq!(data[at], kind, "TLV at {at}");
        let len = usize::from(u16::from_be_bytes([data[at + 1], data[at + 2]]));
        assert_eq!(len, value.len());
        assert_eq!(&data[at + 3..at + 3 + len], value);
        if kind == 0x20 && ssl.is_none() {
            ssl = Some(value);
        }
        at += 3 + len;
    }
    assert!(at <= data.len());
    let tls = tls_of(data);
    let is_tls = ssl.is_some_and(|v| v.len() >= 5 && v[0] & 0x01 != 0);
    assert_eq!(tls.is_some(), is_tls, "{tls:?}");
    if let (Some(tls), Some(v)) = (tls, ssl) {
        if let Some(cn) = tls.client_cn {
            assert!(!cn.is_empty() && !cn.chars().any(char::is_control), "{cn:?}");
            assert!(v[0] & 0x06 != 0 && v[1..5] == [0, 0, 0, 0], "CN of an unverified certificate");
        }
    }
});
