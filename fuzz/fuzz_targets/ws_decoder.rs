//! `ws2api::ws::codec::WsDecoder` (client-to-server RFC 6455 frames, 64 KiB message limit):
//! the first input byte picks a split position, the rest is the wire.
//!
//! Fed whole and fed in two pieces must give the same events and the same error (compared
//! exactly, including the protocol-error text). The decoder never holds more than a message's
//! worth of heap, and holds nothing once it stops (Close or error).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws2api::ws::codec::{WsDecoder, WsError, WsEvent};

const MAX_MESSAGE: usize = 1 << 16;

fn run(dec: &mut WsDecoder, pieces: &[&[u8]]) -> (Vec<WsEvent>, Result<(), WsError>) {
    let mut out = Vec::new();
    for piece in pieces {
        if let Err(e) = dec.decode(piece, &mut out) {
            return (out, Err(e));
        }
        // A message in progress plus a split frame header or control payload (at most 125 bytes).
        assert!(dec.buffered_bytes() <= MAX_MESSAGE + 125, "{}", dec.buffered_bytes());
    }
    (out, Ok(()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, wire)) = data.split_first() else {
        return;
    };
    let cut = usize::from(selector) * (wire.len() + 1) / 256;
    let (a, b) = wire.split_at(cut);

    let mut whole = WsDecoder::new(MAX_MESSAGE);
    let (ev_w, res_w) = run(&mut whole, &[wire]);
    let mut split = WsDecoder::new(MAX_MESSAGE);
    let (ev_s, res_s) = run(&mut split, &[a, b]);

    assert_eq!(res_w, res_s, "error: whole vs split at {cut}");
    assert_eq!(ev_w, ev_s, "events: whole vs split at {cut}");
    for ev in &ev_w {
        match ev {
            WsEvent::Text(t) => assert!(std::str::from_utf8(t).is_ok() && t.len() <= MAX_MESSAGE),
            WsEvent::Binary(b) => assert!(b.len() <= MAX_MESSAGE),
            WsEvent::Ping(p) | WsEvent::Pong(p) => assert!(p.len() <= 125),
            WsEvent::Close(c) => {
                if let Some((_, reason)) = c {
                    assert!(reason.len() <= 123);
                }
            }
        }
    }
    if let Err(e) = &res_w {
        let _ = (e.close_code(), e.to_string());
        assert_eq!(whole.buffered_bytes(), 0, "decoder holds memory after an error");
    }
    if matches!(ev_w.last(), Some(WsEvent::Close(_))) {
        assert_eq!(whole.buffered_bytes(), 0, "decoder holds memory after a Close");
    }
});
