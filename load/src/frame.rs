//! Client side of the wire: the HTTP upgrade request and answer check, masked client
//! frames out, unmasked server frames in (RFC 6455 §5). Sans-IO: no socket here.

/// The RFC 6455 §1.3 sample key and its accept value: a load generator has no need for
/// fresh nonces, and a fixed pair spares SHA-1 and base64 on every connect.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Appends the upgrade request for `/<client_id>` to `out`.
pub fn upgrade_request(out: &mut Vec<u8>, host: &str, client_id: &str) {
    out.extend_from_slice(b"GET /");
    out.extend_from_slice(client_id.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    out.extend_from_slice(KEY.as_bytes());
    out.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\nUser-Agent: ws2api-load\r\n\r\n");
}

/// Checks the answer head in `input`: `Ok(None)` = need more bytes, `Ok(Some(n))` = a
/// valid `101` with the right accept value, `n` bytes long; `Err` = anything else.
pub fn parse_upgrade_answer(input: &[u8]) -> Result<Option<usize>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(input) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(n)) => {
            if resp.code != Some(101) {
                return Err(format!("upgrade answered {}", resp.code.unwrap_or(0)));
            }
            let accept = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"));
            match accept {
                Some(h) if h.value == ACCEPT => Ok(Some(n)),
                _ => Err("101 without the right Sec-WebSocket-Accept".into()),
            }
        }
        Err(e) => Err(format!("bad upgrade answer: {e}")),
    }
}

/// Appends one masked, final client frame. The mask is taken from `mask_seed`: any value
/// does (the mask protects proxies, not secrets), it only has to vary.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask_seed: u32) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = mask_seed.wrapping_mul(0x9E37_79B9).to_be_bytes();
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

/// One server frame borrowed from the input buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub fin: bool,
    pub opcode: u8,
    pub payload: &'a [u8],
}

/// Parses one server frame: `Ok(None)` = need more bytes, `Ok(Some((n, frame)))` = a frame
/// of `n` bytes. Masked server frames, reserved bits and payloads over `max` are errors.
pub fn parse(input: &[u8], max: usize) -> Result<Option<(usize, Frame<'_>)>, String> {
    if input.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (input[0], input[1]);
    if b0 & 0x70 != 0 {
        return Err("reserved bits set in a server frame".into());
    }
    if b1 & 0x80 != 0 {
        return Err("masked server frame".into());
    }
    let (len, head) = match b1 & 0x7f {
        126 if input.len() < 4 => return Ok(None),
        126 => (u16::from_be_bytes([input[2], input[3]]) as usize, 4),
        127 if input.len() < 10 => return Ok(None),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&input[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    if len > max {
        return Err(format!("server frame of {len} bytes, over {max}"));
    }
    if input.len() < head + len {
        return Ok(None);
    }
    Ok(Some((
        head + len,
        Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0f,
            payload: &input[head..head + len],
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_frame_round_trips_through_the_mask() {
        let mut out = Vec::new();
        encode(&mut out, OP_TEXT, b"Hello", 7);
        assert_eq!(out[0], 0x81);
        assert_eq!(out[1], 0x85);
        let mask = &out[2..6];
        let plain: Vec<u8> = out[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        assert_eq!(plain, b"Hello");
    }

    #[test]
    fn parses_rfc_unmasked_hello_and_waits_for_more() {
        let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(parse(&wire[..4], 100), Ok(None));
        let (n, f) = parse(&wire, 100).unwrap().unwrap();
        assert_eq!(
            (n, f.fin, f.opcode, f.payload),
            (7, true, OP_TEXT, &b"Hello"[..])
        );
        assert!(parse(&[0x81, 0x85, 0, 0, 0, 0], 100).is_err());
    }

    #[test]
    fn checks_the_upgrade_answer() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
        assert_eq!(parse_upgrade_answer(&ok[..20]), Ok(None));
        assert_eq!(parse_upgrade_answer(ok), Ok(Some(ok.len() - 2)));
        assert!(parse_upgrade_answer(b"HTTP/1.1 403 Forbidden\r\n\r\n").is_err());
    }
}
