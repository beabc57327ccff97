//! Tests of the WebSocket codec: frames as bytes on the wire (RFC 6455 examples and
//! hand-built frames), fed whole and in pieces; protocol errors; server frames out.

use super::*;

/// The masking key from the RFC 6455 section 5.7 examples.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const FIN: u8 = 0x80;
const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BIN: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

/// A client frame: `first` is the raw first byte (FIN | RSV | opcode), the payload is masked.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![first];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// Feeds `chunks` one after another, stopping at the first error.
fn feed<'a>(
    dec: &mut WsDecoder,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<WsEvent>, Result<(), WsError>) {
    let mut out = Vec::new();
    for chunk in chunks {
        if let Err(e) = dec.decode(chunk, &mut out) {
            return (out, Err(e));
        }
    }
    (out, Ok(()))
}

fn decode_whole(max: usize, input: &[u8]) -> (Vec<WsEvent>, Result<(), WsError>) {
    feed(&mut WsDecoder::new(max), [input])
}

/// Decodes `input` whole and in 1-byte feeds; both must agree. Returns the error's close code.
fn error_code(max: usize, input: &[u8]) -> Option<u16> {
    let (ev_whole, whole) = decode_whole(max, input);
    let (ev_bytes, bytes) = feed(&mut WsDecoder::new(max), input.chunks(1));
    assert_eq!(whole, bytes, "whole vs 1-byte feeds");
    assert_eq!(ev_whole, ev_bytes);
    whole.err().map(|e| e.close_code())
}

fn text(s: &str) -> WsEvent {
    WsEvent::Text(s.as_bytes().to_vec())
}

fn encoded(f: fn(&mut Vec<u8>, &[u8]), payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut out, payload);
    out
}

#[test]
fn rfc_single_masked_text() {
    let wire = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(masked(FIN | TEXT, b"Hello"), wire);
    let mut dec = WsDecoder::new(1 << 20);
    let (events, res) = feed(&mut dec, [&wire[..]]);
    assert_eq!(res, Ok(()));
    assert_eq!(events, [text("Hello")]);
    // Fast path: a single exact allocation, nothing kept.
    let WsEvent::Text(v) = &events[0] else {
        unreachable!()
    };
    assert_eq!(v.capacity(), v.len());
    assert_eq!(dec.buffered_bytes(), 0);
}

#[test]
fn rfc_masked_pong() {
    let wire = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        decode_whole(0, &wire),
        (vec![WsEvent::Pong(b"Hello".to_vec())], Ok(()))
    );
}

#[test]
fn rfc_fragmented_text() {
    // RFC: 0x01 0x03 "Hel", 0x80 0x02 "lo" -- as a client would send it, masked.
    let mut wire = masked(TEXT, b"Hel");
    assert_eq!(wire[..6], [0x01, 0x83, 0x37, 0xfa, 0x21, 0x3d]);
    wire.extend(masked(FIN | CONT, b"lo"));
    let mut dec = WsDecoder::new(5);
    assert_eq!(feed(&mut dec, [&wire[..]]), (vec![text("Hello")], Ok(())));
    assert_eq!(dec.buffered_bytes(), 0);
}

#[test]
fn rfc_ping() {
    let wire = masked(FIN | PING, b"Hello");
    assert_eq!(wire[..2], [0x89, 0x85]);
    assert_eq!(
        decode_whole(0, &wire),
        (vec![WsEvent::Ping(b"Hello".to_vec())], Ok(()))
    );
}

#[test]
fn rfc_binary_256_with_16_bit_length() {
    let payload: Vec<u8> = (0..=255).collect();
    let wire = masked(FIN | BIN, &payload);
    assert_eq!(wire[..8], [0x82, 0xfe, 0x01, 0x00, 0x37, 0xfa, 0x21, 0x3d]);
    assert_eq!(wire.len(), 8 + 256);
    let mut dec = WsDecoder::new(256);
    assert_eq!(
        feed(&mut dec, [&wire[..]]),
        (vec![WsEvent::Binary(payload)], Ok(()))
    );
    assert_eq!(dec.buffered_bytes(), 0);
}

#[test]
fn rfc_binary_64k_with_64_bit_length_in_any_feed_size() {
    let payload: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    let wire = masked(FIN | BIN, &payload);
    assert_eq!(
        wire[..14],
        [0x82, 0xff, 0, 0, 0, 0, 0, 0x01, 0, 0, 0x37, 0xfa, 0x21, 0x3d]
    );
    let expected = vec![WsEvent::Binary(payload)];
    for size in [1, 2, 3, 5, 13, 14, 15, 4096, 65535, wire.len()] {
        let mut dec = WsDecoder::new(65536);
        assert_eq!(
            feed(&mut dec, wire.chunks(size)),
            (expected.clone(), Ok(())),
            "feed size {size}"
        );
        assert_eq!(dec.buffered_bytes(), 0);
    }
    // A few arbitrary two-way splits.
    for split in [1, 9, 10, 13, 14, 15, 100, 32768, 65549] {
        let mut dec = WsDecoder::new(65536);
        let (a, b) = wire.split_at(split);
        assert_eq!(feed(&mut dec, [a, b]), (expected.clone(), Ok(())));
    }
}

#[test]
fn split_frame_buffers_only_what_arrived() {
    let payload = vec![0x5a; 10_000];
    let wire = masked(FIN | BIN, &payload);
    let mut dec = WsDecoder::new(1 << 20);
    let mut out = Vec::new();
    // Header only: at most one header's worth kept.
    dec.decode(&wire[..3], &mut out).unwrap();
    assert!(dec.buffered_bytes() <= MAX_HEADER_LEN);
    dec.decode(&wire[3..8], &mut out).unwrap();
    assert_eq!(dec.buffered_bytes(), 0, "header done, no payload yet");
    dec.decode(&wire[8..108], &mut out).unwrap();
    assert_eq!(
        dec.buffered_bytes(),
        100,
        "no commitment beyond what was sent"
    );
    dec.decode(&wire[108..], &mut out).unwrap();
    assert_eq!(out, [WsEvent::Binary(payload)]);
    assert_eq!(dec.buffered_bytes(), 0);
}

/// A conversation covering every event kind, fragments, interleaved control frames,
/// 7- and 16-bit lengths, empty payloads and a final close.
fn conversation() -> (Vec<u8>, Vec<WsEvent>) {
    let mut wire = Vec::new();
    let mut events = Vec::new();
    wire.extend([
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ]);
    events.push(text("Hello"));
    wire.extend(masked(TEXT, "h€".as_bytes()[..2].as_ref()));
    wire.extend(masked(FIN | PING, b"p"));
    events.push(WsEvent::Ping(b"p".to_vec()));
    wire.extend(masked(CONT, &"h€".as_bytes()[2..]));
    wire.extend(masked(FIN | PONG, b""));
    events.push(WsEvent::Pong(Vec::new()));
    wire.extend(masked(FIN | CONT, b"!"));
    events.push(text("h€!"));
    let bin: Vec<u8> = (0..200).collect();
    wire.extend(masked(FIN | BIN, &bin));
    events.push(WsEvent::Binary(bin));
    wire.extend(masked(FIN | TEXT, b""));
    events.push(text(""));
    wire.extend(masked(BIN, b""));
    wire.extend(masked(FIN | CONT, b"\x00\xff"));
    events.push(WsEvent::Binary(vec![0x00, 0xff]));
    wire.extend(masked(FIN | CLOSE, &close_payload(1000, b"bye")));
    events.push(WsEvent::Close(Some((1000, "bye".to_owned()))));
    (wire, events)
}

#[test]
fn every_two_way_split_gives_the_same_events() {
    let (wire, expected) = conversation();
    for i in 0..=wire.len() {
        let mut dec = WsDecoder::new(1024);
        let (events, res) = feed(&mut dec, [&wire[..i], &wire[i..]]);
        assert_eq!(res, Ok(()), "split at {i}");
        assert_eq!(events, expected, "split at {i}");
        assert_eq!(dec.buffered_bytes(), 0);
    }
}

#[test]
fn every_three_way_split_gives_the_same_events() {
    let (wire, _) = conversation();
    let wire = &wire[..wire.len().min(70)];
    let expected = decode_whole(1024, wire).0;
    assert!(expected.len() >= 4);
    for i in 0..=wire.len() {
        for j in i..=wire.len() {
            let mut dec = WsDecoder::new(1024);
            let parts = [&wire[..i], &wire[i..j], &wire[j..]];
            assert_eq!(feed(&mut dec, parts), (expected.clone(), Ok(())));
        }
    }
}

#[test]
fn one_byte_feeds_give_the_same_events() {
    let (wire, expected) = conversation();
    let mut dec = WsDecoder::new(1024);
    assert_eq!(feed(&mut dec, wire.chunks(1)), (expected, Ok(())));
    assert_eq!(dec.buffered_bytes(), 0);
}

#[test]
fn holds_no_heap_between_messages() {
    let mut dec = WsDecoder::new(1 << 20);
    let mut out = Vec::new();
    for (wire, completes) in [
        (masked(FIN | TEXT, b"whole"), true),
        (masked(BIN, &[1; 300]), false),
        (masked(FIN | CONT, &[2; 300]), true),
        (masked(FIN | PING, &[3; 125]), true),
    ] {
        for chunk in wire.chunks(7) {
            dec.decode(chunk, &mut out).unwrap();
        }
        if completes {
            assert_eq!(dec.buffered_bytes(), 0);
        } else {
            // Only the open message's payload, sized to what arrived.
            assert_eq!(dec.buffered_bytes(), 300);
        }
    }
    assert_eq!(out.len(), 3);
}

#[test]
fn decoder_is_small() {
    let size = std::mem::size_of::<WsDecoder>();
    assert!(size <= 96, "WsDecoder is {size} bytes");
}

#[test]
fn empty_input_is_fine() {
    assert_eq!(decode_whole(10, b""), (vec![], Ok(())));
}

#[test]
fn unmasked_frame_is_protocol_error() {
    // RFC 5.7 unmasked "Hello" is legal server->client, not client->server.
    let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(error_code(100, &wire), Some(1002));
    assert_eq!(error_code(100, &[0x89, 0x00]), Some(1002));
}

#[test]
fn rsv_bits_are_protocol_error() {
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        assert_eq!(error_code(100, &masked(FIN | rsv | TEXT, b"x")), Some(1002));
    }
}

#[test]
fn reserved_opcodes_are_protocol_error() {
    for op in (3..=7).chain(0xb..=0xf) {
        assert_eq!(error_code(100, &masked(FIN | op, b"")), Some(1002), "{op}");
        assert_eq!(decode_whole(100, &masked(FIN | op, b"")).1, {
            Err(WsError::Protocol("reserved opcode"))
        });
    }
}

#[test]
fn fragmented_control_is_protocol_error() {
    for op in [CLOSE, PING, PONG] {
        assert_eq!(error_code(100, &masked(op, b"")), Some(1002));
    }
}

#[test]
fn control_over_125_bytes_is_protocol_error() {
    let wire = masked(FIN | PING, &[0; 126]);
    assert_eq!(wire[1], 0x80 | 126);
    assert_eq!(error_code(1000, &wire), Some(1002));
    // Rejected from the header alone.
    let mut dec = WsDecoder::new(1000);
    assert!(dec.decode(&wire[..8], &mut Vec::new()).is_err());
    assert_eq!(masked(FIN | PING, &[0; 125])[1], 0x80 | 125);
    assert_eq!(error_code(1000, &masked(FIN | PING, &[0; 125])), None);
}

#[test]
fn continuation_without_start_is_protocol_error() {
    assert_eq!(error_code(100, &masked(FIN | CONT, b"x")), Some(1002));
    assert_eq!(error_code(100, &masked(CONT, b"x")), Some(1002));
}

#[test]
fn new_message_inside_fragmented_message_is_protocol_error() {
    for op in [TEXT, BIN, FIN | TEXT, FIN | BIN] {
        let mut wire = masked(TEXT, b"a");
        wire.extend(masked(op, b"b"));
        assert_eq!(error_code(100, &wire), Some(1002));
    }
}

#[test]
fn top_bit_of_64_bit_length_is_protocol_error() {
    let mut wire = vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
    wire.extend(MASK);
    assert_eq!(error_code(usize::MAX, &wire), Some(1002));
}

#[test]
fn invalid_utf8_text_is_1007() {
    assert_eq!(error_code(100, &masked(FIN | TEXT, b"ok\xff")), Some(1007));
    // Overlong encoding and a lone surrogate.
    assert_eq!(
        error_code(100, &masked(FIN | TEXT, b"\xc0\xaf")),
        Some(1007)
    );
    assert_eq!(
        error_code(100, &masked(FIN | TEXT, b"\xed\xa0\x80")),
        Some(1007)
    );
    // Ends inside a multi-byte sequence.
    assert_eq!(
        error_code(100, &masked(FIN | TEXT, b"\xe2\x82")),
        Some(1007)
    );
    // Binary is not validated.
    assert_eq!(error_code(100, &masked(FIN | BIN, b"ok\xff")), None);
}

#[test]
fn invalid_utf8_fragmented_text_is_1007() {
    // A code point split across fragments is fine.
    let mut ok = masked(TEXT, b"\xe2");
    ok.extend(masked(CONT, b"\x82"));
    ok.extend(masked(FIN | CONT, b"\xac"));
    assert_eq!(decode_whole(100, &ok), (vec![text("€")], Ok(())));
    assert_eq!(error_code(100, &ok), None);

    // Invalid continuation byte in the second fragment.
    let mut bad = masked(TEXT, b"\xe2");
    bad.extend(masked(FIN | CONT, b"\x28\xa1"));
    assert_eq!(error_code(100, &bad), Some(1007));

    // Message ends mid-sequence.
    let mut cut = masked(TEXT, b"a");
    cut.extend(masked(FIN | CONT, b"\xf0\x9f\x98"));
    assert_eq!(error_code(100, &cut), Some(1007));

    // Fails fast: the final fragment never needs to arrive.
    let mut dec = WsDecoder::new(100);
    let (events, res) = feed(&mut dec, [&masked(TEXT, b"fine\xff")[..]]);
    assert_eq!((events, res), (vec![], Err(WsError::InvalidUtf8)));
}

#[test]
fn oversized_single_frame_is_1009_without_buffering() {
    assert_eq!(error_code(16, &masked(FIN | BIN, &[0; 17])), Some(1009));
    assert_eq!(error_code(16, &masked(FIN | BIN, &[0; 16])), None);
    // A 2 GiB length header with no payload behind it: rejected, nothing allocated.
    let mut wire = vec![0x82, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0];
    wire.extend(MASK);
    let mut dec = WsDecoder::new(1 << 20);
    let mut out = Vec::new();
    assert_eq!(dec.decode(&wire, &mut out), Err(WsError::MessageTooBig));
    assert_eq!(dec.buffered_bytes(), 0);
    assert_eq!(WsError::MessageTooBig.close_code(), 1009);
    // Same when the header trickles in byte by byte.
    let mut dec = WsDecoder::new(1 << 20);
    let (_, res) = feed(&mut dec, wire.chunks(1));
    assert_eq!(res, Err(WsError::MessageTooBig));
    assert_eq!(dec.buffered_bytes(), 0);
}

#[test]
fn oversized_fragmented_message_is_1009_without_buffering() {
    let first = masked(BIN, &[1; 6]);
    let second = masked(FIN | CONT, &[2; 6]);
    let mut dec = WsDecoder::new(10);
    let mut out = Vec::new();
    dec.decode(&first, &mut out).unwrap();
    assert_eq!(dec.buffered_bytes(), 6);
    // Rejected from the second header alone (6 + 6 > 10).
    assert_eq!(
        dec.decode(&second[..6], &mut out),
        Err(WsError::MessageTooBig)
    );
    assert_eq!(dec.buffered_bytes(), 0);
    assert!(out.is_empty());

    let mut wire = first.clone();
    wire.extend(&second);
    assert_eq!(error_code(10, &wire), Some(1009));
    assert_eq!(error_code(12, &wire), None);
    // Control frames do not count towards the message size.
    let mut wire = first;
    wire.extend(masked(FIN | PING, &[0; 100]));
    wire.extend(masked(FIN | CONT, &[2; 4]));
    assert_eq!(error_code(10, &wire), None);
}

#[test]
fn close_with_code_and_reason() {
    let wire = masked(FIN | CLOSE, &close_payload(1001, b"going away"));
    assert_eq!(
        decode_whole(0, &wire),
        (
            vec![WsEvent::Close(Some((1001, "going away".to_owned())))],
            Ok(())
        )
    );
    assert_eq!(
        decode_whole(0, &masked(FIN | CLOSE, b"")),
        (vec![WsEvent::Close(None)], Ok(()))
    );
    assert_eq!(
        decode_whole(0, &masked(FIN | CLOSE, &close_payload(4999, b""))),
        (vec![WsEvent::Close(Some((4999, String::new())))], Ok(()))
    );
}

#[test]
fn input_after_close_is_ignored() {
    let mut wire = masked(FIN | CLOSE, b"");
    wire.extend(masked(FIN | TEXT, b"late"));
    let mut dec = WsDecoder::new(100);
    let mut out = Vec::new();
    assert_eq!(dec.decode(&wire, &mut out), Ok(()));
    assert_eq!(out, [WsEvent::Close(None)]);
    assert_eq!(dec.decode(&masked(FIN | TEXT, b"x"), &mut out), Ok(()));
    assert_eq!(dec.decode(&[0x81, 0x05], &mut out), Ok(()));
    assert_eq!(out.len(), 1);
    assert_eq!(dec.buffered_bytes(), 0);
}

#[test]
fn input_after_error_is_ignored() {
    let mut dec = WsDecoder::new(100);
    let mut out = Vec::new();
    let mut wire = masked(FIN | TEXT, b"before");
    wire.extend([0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
    assert_eq!(
        dec.decode(&wire, &mut out),
        Err(WsError::Protocol("client frame is not masked"))
    );
    // Events decoded before the error are still delivered.
    assert_eq!(out, [text("before")]);
    assert_eq!(dec.decode(&masked(FIN | TEXT, b"x"), &mut out), Ok(()));
    assert_eq!(out.len(), 1);
}

#[test]
fn close_payload_of_one_byte_is_protocol_error() {
    assert_eq!(error_code(0, &masked(FIN | CLOSE, &[0x03])), Some(1002));
}

#[test]
fn close_code_validation() {
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let wire = masked(FIN | CLOSE, &close_payload(code, b"r"));
        assert_eq!(error_code(0, &wire), None, "{code} should be accepted");
    }
    for code in [
        0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let wire = masked(FIN | CLOSE, &close_payload(code, b""));
        assert_eq!(
            error_code(0, &wire),
            Some(1002),
            "{code} should be rejected"
        );
    }
}

#[test]
fn close_reason_invalid_utf8_is_1007() {
    let wire = masked(FIN | CLOSE, &close_payload(1000, b"\xce\xba\xe1\xbd"));
    assert_eq!(error_code(0, &wire), Some(1007));
}

#[test]
fn control_frames_interleave_with_fragments() {
    let mut wire = masked(BIN, b"ab");
    wire.extend(masked(FIN | PING, b"1"));
    wire.extend(masked(CONT, b"cd"));
    wire.extend(masked(FIN | PONG, b"2"));
    wire.extend(masked(FIN | PING, b"3"));
    wire.extend(masked(FIN | CONT, b"ef"));
    let expected = vec![
        WsEvent::Ping(b"1".to_vec()),
        WsEvent::Pong(b"2".to_vec()),
        WsEvent::Ping(b"3".to_vec()),
        WsEvent::Binary(b"abcdef".to_vec()),
    ];
    assert_eq!(decode_whole(6, &wire), (expected.clone(), Ok(())));
    assert_eq!(
        feed(&mut WsDecoder::new(6), wire.chunks(1)),
        (expected, Ok(()))
    );
    // A close inside a fragmented message ends decoding; the message is dropped.
    let mut wire = masked(TEXT, b"ab");
    wire.extend(masked(FIN | CLOSE, b""));
    wire.extend(masked(FIN | CONT, b"cd"));
    let mut dec = WsDecoder::new(6);
    assert_eq!(
        feed(&mut dec, [&wire[..]]),
        (vec![WsEvent::Close(None)], Ok(()))
    );
    assert_eq!(dec.buffered_bytes(), 0);
}

#[test]
fn error_close_codes() {
    assert_eq!(WsError::Protocol("x").close_code(), 1002);
    assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
    assert_eq!(WsError::MessageTooBig.close_code(), 1009);
}

#[test]
fn encode_short_frames_byte_exact() {
    // RFC 6455 5.7: unmasked "Hello" and unmasked ping "Hello".
    let hello = [0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(
        encoded(encode_text, b"Hello"),
        [[0x81, 0x05].as_slice(), &hello].concat()
    );
    assert_eq!(
        encoded(encode_ping, b"Hello"),
        [[0x89, 0x05].as_slice(), &hello].concat()
    );
    assert_eq!(
        encoded(encode_pong, b"Hello"),
        [[0x8a, 0x05].as_slice(), &hello].concat()
    );
    assert_eq!(
        encoded(encode_binary, b"\x00\xff"),
        [0x82, 0x02, 0x00, 0xff]
    );
    assert_eq!(encoded(encode_binary, b""), [0x82, 0x00]);
    assert_eq!(encoded(encode_pong, b""), [0x8a, 0x00]);
    assert_eq!(encoded(encode_binary, &[7; 125])[..2], [0x82, 0x7d]);
}

#[test]
fn encode_appends() {
    let mut out = vec![0xaa];
    encode_text(&mut out, b"a");
    encode_pong(&mut out, b"b");
    assert_eq!(out, [0xaa, 0x81, 0x01, b'a', 0x8a, 0x01, b'b']);
}

#[test]
fn encode_16_bit_length_byte_exact() {
    let payload = [0x42; 126];
    let out = encoded(encode_binary, &payload);
    assert_eq!(out[..4], [0x82, 0x7e, 0x00, 0x7e]);
    assert_eq!(out[4..], payload);
    let out = encoded(encode_text, &[b'a'; 256]);
    assert_eq!(out[..4], [0x81, 0x7e, 0x01, 0x00]);
    assert_eq!(out.len(), 4 + 256);
    assert_eq!(
        encoded(encode_binary, &[0; 65535])[..4],
        [0x82, 0x7e, 0xff, 0xff]
    );
}

#[test]
fn encode_64_bit_length_byte_exact() {
    let payload: Vec<u8> = (0..70000u32).map(|i| i as u8).collect();
    let out = encoded(encode_binary, &payload);
    assert_eq!(
        out[..10],
        [0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x11, 0x70]
    );
    assert_eq!(out[10..], payload);
    assert_eq!(
        encoded(encode_text, &[b'a'; 65536])[..10],
        [0x81, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]
    );
}

#[test]
fn encode_close_byte_exact() {
    let mut out = Vec::new();
    encode_close(&mut out, 1000, "");
    assert_eq!(out, [0x88, 0x02, 0x03, 0xe8]);
    out.clear();
    encode_close(&mut out, 1009, "too big");
    assert_eq!(out, [&[0x88, 0x09, 0x03, 0xf1][..], b"too big"].concat());
}

#[test]
fn encode_close_truncates_reason_on_char_boundary() {
    let mut out = Vec::new();
    encode_close(&mut out, 1001, &"a".repeat(200));
    assert_eq!(out[..4], [0x88, 0x7d, 0x03, 0xe9]);
    assert_eq!(out[4..], [b'a'; 123]);

    // 'é' is 2 bytes: 61 of them fill 122 bytes, the 62nd would straddle byte 123.
    out.clear();
    encode_close(&mut out, 1000, &"é".repeat(100));
    assert_eq!(out[1], 2 + 122);
    assert_eq!(std::str::from_utf8(&out[4..]), Ok("é".repeat(61).as_str()));

    // Exactly 123 bytes is kept whole.
    out.clear();
    let reason = "b".repeat(123);
    encode_close(&mut out, 1000, &reason);
    assert_eq!(out[4..], *reason.as_bytes());
}

#[test]
fn encoded_close_round_trips_through_decoder() {
    // Mask a server frame as a client would and decode it.
    let mut server = Vec::new();
    encode_close(&mut server, 4000, "done");
    let payload = &server[2..];
    let wire = masked(server[0], payload);
    assert_eq!(
        decode_whole(0, &wire),
        (
            vec![WsEvent::Close(Some((4000, "done".to_owned())))],
            Ok(())
        )
    );
}

/// Deterministic xorshift so the fuzz test needs no extra crates.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_and_random_input_never_panics_and_is_split_invariant() {
    let (base, _) = conversation();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000 {
        let wire: Vec<u8> = if round % 3 == 0 {
            (0..rng.below(64)).map(|_| rng.next() as u8).collect()
        } else {
            let mut w = base.clone();
            for _ in 0..=rng.below(3) {
                let i = rng.below(w.len());
                w[i] ^= 1 << rng.below(8);
            }
            w
        };
        let max = rng.below(300);
        let whole = decode_whole(max, &wire);
        let cut = rng.below(wire.len() + 1);
        let mut dec = WsDecoder::new(max);
        let split = feed(&mut dec, [&wire[..cut], &wire[cut..]]);
        assert_eq!(whole, split, "round {round}");
        let mut dec = WsDecoder::new(max);
        assert_eq!(whole, feed(&mut dec, wire.chunks(1)), "round {round}");
        assert!(dec.buffered_bytes() <= max.max(MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD));
    }
}

#[test]
fn apply_mask_matches_bytewise_at_every_length() {
    for len in 0..40 {
        let data: Vec<u8> = (0..len as u8).collect();
        let mut fast = data.clone();
        apply_mask(&mut fast, MASK);
        let slow: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ MASK[i % 4])
            .collect();
        assert_eq!(fast, slow);
    }
}

#[test]
fn frame_len_is_what_the_encoder_writes() {
    for len in [0usize, 1, 125, 126, 127, 0xffff, 0x1_0000, 70_000] {
        let mut out = Vec::new();
        encode_binary(&mut out, &vec![0u8; len]);
        assert_eq!(frame_len(len), out.len(), "payload {len}");
    }
}
