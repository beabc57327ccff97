//! Sans-IO server-side RFC 6455 codec: owns WebSocket frame parsing, unmasking, message reassembly,
//! protocol validation (close codes, UTF-8, size limits) and encoding of unmasked server frames.
//!
//! The decoder never touches a socket: the caller feeds it bytes from a per-shard read buffer and
//! gets [`WsEvent`]s back. It copies only what must outlive the caller's buffer (the bytes of a
//! frame split across reads and the payload of a message still being assembled) and releases its
//! heap buffers whenever it holds nothing, so an idle connection costs `size_of::<WsDecoder>()`.

use std::io::Cursor;

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Longest possible frame header: 2 + 8 (64-bit length) + 4 (mask).
const MAX_HEADER_LEN: usize = 14;
/// Longest control frame payload (RFC 6455 5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;
/// Longest close reason: control payload minus the 2-byte status code.
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// What the peer said, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// Complete text message; UTF-8 already validated (kept as bytes, it becomes an HTTP body).
    Text(Vec<u8>),
    /// Complete binary message.
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// Close frame received: status code and reason, `None` if the payload was empty.
    Close(Option<(u16, String)>),
}

/// A fatal protocol violation by the peer; each maps to the close code we answer with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WsError {
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("invalid UTF-8 in text message or close reason")]
    InvalidUtf8,
    #[error("websocket message exceeds the size limit")]
    MessageTooBig,
}

impl WsError {
    /// Close code (RFC 6455 7.4.1) to send to the peer for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => 1002,
            WsError::InvalidUtf8 => 1007,
            WsError::MessageTooBig => 1009,
        }
    }
}

/// Opcode of the frame whose payload is being read (reserved opcodes are rejected earlier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    Continue,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl FrameKind {
    fn is_control(self) -> bool {
        matches!(self, FrameKind::Close | FrameKind::Ping | FrameKind::Pong)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageKind {
    Text,
    Binary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a frame header; its first bytes, if any, are in `partial`.
    Header,
    /// Header parsed; `remaining` payload bytes still to come. `mask` is rotated as bytes are
    /// consumed so that the next payload byte is always XORed with `mask[0]`.
    Payload {
        kind: FrameKind,
        fin: bool,
        mask: [u8; 4],
        remaining: usize,
    },
    /// A Close was received or an error was returned: all further input is ignored.
    Done,
}

/// Incremental decoder for client-to-server WebSocket frames.
#[derive(Debug)]
pub struct WsDecoder {
    max_message_size: usize,
    /// Header bytes of a frame split across reads, or the payload so far of a split control frame.
    partial: Vec<u8>,
    /// Unmasked payload of the data message being assembled (fragments and/or split frames).
    message: Vec<u8>,
    /// Prefix of `message` known to be valid UTF-8 (text messages only).
    utf8_valid: usize,
    phase: Phase,
    /// Kind of the data message in progress, `None` when no message is open.
    open: Option<MessageKind>,
}

impl WsDecoder {
    /// `max_message_size` bounds the payload of a whole (possibly fragmented) data message.
    pub fn new(max_message_size: usize) -> Self {
        WsDecoder {
            max_message_size,
            partial: Vec::new(),
            message: Vec::new(),
            utf8_valid: 0,
            phase: Phase::Header,
            open: None,
        }
    }

    /// Feeds bytes read from the socket (they live in a per-shard buffer owned by the caller, so the decoder must
    /// COPY only what it needs to keep: an incomplete frame's bytes and a fragmented message's payload).
    /// Pushes every complete event to `out`. After an error or after a Close event, further input is ignored (returns Ok, no events).
    ///
    /// Events decoded before an error in the same call are still pushed to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<WsEvent>) -> Result<(), WsError> {
        let result = self.decode_inner(input, out);
        if result.is_err() {
            self.phase = Phase::Done;
        }
        if self.phase == Phase::Done {
            self.partial = Vec::new();
            self.message = Vec::new();
            self.utf8_valid = 0;
            self.open = None;
        } else {
            release_if_empty(&mut self.partial);
            release_if_empty(&mut self.message);
        }
        result
    }

    /// Bytes this decoder holds on the heap right now (partial frame + partial message capacity), for memory stats.
    pub fn buffered_bytes(&self) -> usize {
        self.partial.capacity() + self.message.capacity()
    }

    fn decode_inner(&mut self, mut input: &[u8], out: &mut Vec<WsEvent>) -> Result<(), WsError> {
        loop {
            match self.phase {
                Phase::Done => return Ok(()),
                Phase::Header => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let Some((header, len, used)) = self.read_header(input)? else {
                        // `read_header` kept the incomplete header; all of `input` is consumed.
                        return Ok(());
                    };
                    input = input.get(used..).unwrap_or_default();
                    self.phase = self.start_frame(&header, len)?;
                }
                Phase::Payload {
                    kind,
                    fin,
                    mask,
                    remaining,
                } => {
                    if input.is_empty() && remaining > 0 {
                        return Ok(());
                    }
                    let (chunk, rest) = input.split_at(remaining.min(input.len()));
                    input = rest;
                    let remaining = remaining - chunk.len();
                    let next_mask = rotate_mask(mask, chunk.len());
                    self.phase = if remaining == 0 {
                        Phase::Header
                    } else {
                        Phase::Payload {
                            kind,
                            fin,
                            mask: next_mask,
                            remaining,
                        }
                    };
                    if kind.is_control() {
                        self.control_chunk(kind, chunk, mask, remaining, out)?;
                    } else {
                        self.data_chunk(fin, chunk, mask, remaining, out)?;
                    }
                }
            }
        }
    }

    /// Parses a frame header from `partial` + `input`. Returns the header, its payload length and
    /// how many bytes of `input` it used, or `None` (with the bytes kept in `partial`) if incomplete.
    fn read_header(&mut self, input: &[u8]) -> Result<Option<(FrameHeader, u64, usize)>, WsError> {
        if self.partial.is_empty() {
            let mut cursor = Cursor::new(input);
            return match FrameHeader::parse(&mut cursor).map_err(header_error)? {
                Some((header, len)) => Ok(Some((header, len, cursor_pos(&cursor)))),
                None => {
                    // Incomplete, so `input` is shorter than the header (< 14 bytes).
                    self.partial.reserve_exact(MAX_HEADER_LEN);
                    self.partial.extend_from_slice(input);
                    Ok(None)
                }
            };
        }
        let before = self.partial.len();
        let take = MAX_HEADER_LEN.saturating_sub(before).min(input.len());
        self.partial
            .extend_from_slice(input.get(..take).unwrap_or_default());
        let mut cursor = Cursor::new(self.partial.as_slice());
        match FrameHeader::parse(&mut cursor).map_err(header_error)? {
            Some((header, len)) => {
                // Bytes copied past the header end belong to the payload: leave them in `input`.
                let used = cursor_pos(&cursor).saturating_sub(before);
                self.partial.clear();
                Ok(Some((header, len, used)))
            }
            // 14 bytes always hold a complete header, so all of `input` was taken.
            None => Ok(None),
        }
    }

    /// Validates a freshly parsed header (before any payload is buffered) and opens the frame.
    fn start_frame(&mut self, header: &FrameHeader, len: u64) -> Result<Phase, WsError> {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(WsError::Protocol(
                "reserved bits set without a negotiated extension",
            ));
        }
        let Some(mask) = header.mask else {
            return Err(WsError::Protocol("client frame is not masked"));
        };
        if len > i64::MAX as u64 {
            return Err(WsError::Protocol(
                "64-bit payload length has its top bit set",
            ));
        }
        let kind = match header.opcode {
            OpCode::Data(Data::Continue) => FrameKind::Continue,
            OpCode::Data(Data::Text) => FrameKind::Text,
            OpCode::Data(Data::Binary) => FrameKind::Binary,
            OpCode::Control(Control::Close) => FrameKind::Close,
            OpCode::Control(Control::Ping) => FrameKind::Ping,
            OpCode::Control(Control::Pong) => FrameKind::Pong,
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                return Err(WsError::Protocol("reserved opcode"));
            }
        };
        if kind.is_control() {
            if !header.is_final {
                return Err(WsError::Protocol("fragmented control frame"));
            }
            if len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(WsError::Protocol("control frame payload over 125 bytes"));
            }
        } else {
            match (kind, self.open) {
                (FrameKind::Continue, None) => {
                    return Err(WsError::Protocol(
                        "continuation frame without a message to continue",
                    ));
                }
                (FrameKind::Text | FrameKind::Binary, Some(_)) => {
                    return Err(WsError::Protocol(
                        "new data frame inside a fragmented message",
                    ));
                }
                (FrameKind::Text, None) => self.open = Some(MessageKind::Text),
                (FrameKind::Binary, None) => self.open = Some(MessageKind::Binary),
                _ => {}
            }
            // Checked against the header, so an absurd length costs nothing.
            let total = (self.message.len() as u64).saturating_add(len);
            if total > self.max_message_size as u64 {
                return Err(WsError::MessageTooBig);
            }
        }
        let remaining = usize::try_from(len).map_err(|_| WsError::MessageTooBig)?;
        Ok(Phase::Payload {
            kind,
            fin: header.is_final,
            mask,
            remaining,
        })
    }

    /// Handles `chunk` (still masked with `mask`) of a control frame; `remaining` bytes follow it.
    fn control_chunk(
        &mut self,
        kind: FrameKind,
        chunk: &[u8],
        mask: [u8; 4],
        remaining: usize,
        out: &mut Vec<WsEvent>,
    ) -> Result<(), WsError> {
        let payload = if remaining == 0 && self.partial.is_empty() {
            // Whole payload is in the caller's buffer: one exact allocation, no staging copy.
            unmasked_copy(chunk, mask)
        } else {
            if self.partial.is_empty() {
                self.partial.reserve_exact(chunk.len() + remaining);
            }
            let start = self.partial.len();
            self.partial.extend_from_slice(chunk);
            apply_mask(self.partial.get_mut(start..).unwrap_or_default(), mask);
            if remaining > 0 {
                return Ok(());
            }
            std::mem::take(&mut self.partial)
        };
        match kind {
            FrameKind::Ping => out.push(WsEvent::Ping(payload)),
            FrameKind::Pong => out.push(WsEvent::Pong(payload)),
            _ => {
                out.push(parse_close(&payload)?);
                self.phase = Phase::Done;
            }
        }
        Ok(())
    }

    /// Handles `chunk` (still masked with `mask`) of a data frame; `remaining` bytes follow it.
    fn data_chunk(
        &mut self,
        fin: bool,
        chunk: &[u8],
        mask: [u8; 4],
        remaining: usize,
        out: &mut Vec<WsEvent>,
    ) -> Result<(), WsError> {
        let is_text = self.open == Some(MessageKind::Text);
        let completes = fin && remaining == 0;
        let payload = if completes && self.message.is_empty() {
            // Fast path: the whole message is in the caller's buffer; unmask straight into the
            // Vec that becomes the event.
            let payload = unmasked_copy(chunk, mask);
            if is_text && std::str::from_utf8(&payload).is_err() {
                return Err(WsError::InvalidUtf8);
            }
            payload
        } else {
            let start = self.message.len();
            grow_for(&mut self.message, chunk.len(), remaining);
            self.message.extend_from_slice(chunk);
            apply_mask(self.message.get_mut(start..).unwrap_or_default(), mask);
            if is_text {
                self.check_utf8_prefix()?;
                if completes && self.utf8_valid != self.message.len() {
                    // The message ends inside a multi-byte sequence.
                    return Err(WsError::InvalidUtf8);
                }
            }
            if !completes {
                return Ok(());
            }
            self.utf8_valid = 0;
            std::mem::take(&mut self.message)
        };
        out.push(match self.open.take() {
            Some(MessageKind::Text) => WsEvent::Text(payload),
            _ => WsEvent::Binary(payload),
        });
        Ok(())
    }

    /// Extends the validated UTF-8 prefix of `message`; fails as soon as the bytes so far cannot
    /// be the start of valid UTF-8 (an incomplete sequence at the end is fine for now).
    fn check_utf8_prefix(&mut self) -> Result<(), WsError> {
        let unchecked = self.message.get(self.utf8_valid..).unwrap_or_default();
        match std::str::from_utf8(unchecked) {
            Ok(s) => self.utf8_valid += s.len(),
            Err(e) if e.error_len().is_none() => self.utf8_valid += e.valid_up_to(),
            Err(_) => return Err(WsError::InvalidUtf8),
        }
        Ok(())
    }
}

fn release_if_empty(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() != 0 {
        *buf = Vec::new();
    }
}

/// Makes room for `incoming` bytes when `remaining` more bytes of the current frame follow:
/// amortized doubling, but never past the end of the frame, so a frame that arrives whole gets
/// an exact allocation and a slow sender cannot make us commit memory it has not sent.
fn grow_for(buf: &mut Vec<u8>, incoming: usize, remaining: usize) {
    let len = buf.len();
    if buf.capacity() - len >= incoming {
        return;
    }
    let frame_end = len.saturating_add(incoming).saturating_add(remaining);
    let target = buf
        .capacity()
        .saturating_mul(2)
        .min(frame_end)
        .max(len + incoming);
    buf.reserve_exact(target - len);
}

fn cursor_pos(cursor: &Cursor<&[u8]>) -> usize {
    // The position never exceeds the slice length, which fits in usize.
    usize::try_from(cursor.position()).unwrap_or(usize::MAX)
}

fn header_error(err: tungstenite::Error) -> WsError {
    match err {
        tungstenite::Error::Protocol(tungstenite::error::ProtocolError::InvalidOpcode(_)) => {
            WsError::Protocol("reserved opcode")
        }
        _ => WsError::Protocol("malformed frame header"),
    }
}

fn parse_close(payload: &[u8]) -> Result<WsEvent, WsError> {
    match payload {
        [] => Ok(WsEvent::Close(None)),
        [_] => Err(WsError::Protocol("close frame payload of 1 byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code_is_valid(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(WsEvent::Close(Some((code, reason.to_owned()))))
        }
    }
}

/// Close codes a peer may send (RFC 6455 7.4): 1004-1006, 1015 and unassigned ranges are not.
fn close_code_is_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

fn rotate_mask(mut mask: [u8; 4], consumed: usize) -> [u8; 4] {
    mask.rotate_left(consumed % 4);
    mask
}

fn unmasked_copy(masked: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut payload = masked.to_vec();
    apply_mask(&mut payload, mask);
    payload
}

/// XORs `buf` with the repeating `mask`, `buf[0]` taking `mask[0]`. (tungstenite 0.28 keeps its
/// `apply_mask` in a private module.)
fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let (words, tail) = buf.as_chunks_mut::<8>();
    for word in words {
        *word = (u64::from_ne_bytes(*word) ^ wide).to_ne_bytes();
    }
    // `words` covered a multiple of 8 bytes, so the tail starts at mask phase 0.
    for (byte, m) in tail.iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
    }
}

fn encode_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: None,
    };
    let len = payload.len() as u64;
    out.reserve(header.len(len) + payload.len());
    // Writing into a Vec<u8> cannot fail.
    if header.format(len, out).is_ok() {
        out.extend_from_slice(payload);
    }
}

/// True for a close code a server may send (RFC 6455 7.4: 1000, 1001, 1008, 1011–1013,
/// and the 3000–4999 range for libraries and applications).
pub fn server_may_send(code: u16) -> bool {
    matches!(code, 1000 | 1001 | 1008 | 1011 | 1012 | 1013 | 3000..=4999)
}

/// Appends an unmasked text frame (the caller guarantees `payload` is UTF-8).
pub fn encode_text(out: &mut Vec<u8>, payload: &[u8]) {
    encode_frame(out, OpCode::Data(Data::Text), payload);
}

/// Bytes of the unmasked frame that carries `payload_len` bytes of payload (RFC 6455
/// 5.2: a 2-byte header, plus 2 or 8 bytes of extended length).
pub fn frame_len(payload_len: usize) -> usize {
    let header = match payload_len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    };
    header + payload_len
}

/// Appends an unmasked binary frame.
pub fn encode_binary(out: &mut Vec<u8>, payload: &[u8]) {
    encode_frame(out, OpCode::Data(Data::Binary), payload);
}

/// Appends an unmasked ping frame; `payload` must be at most 125 bytes.
pub fn encode_ping(out: &mut Vec<u8>, payload: &[u8]) {
    encode_frame(out, OpCode::Control(Control::Ping), payload);
}

/// Appends an unmasked pong frame; `payload` must be at most 125 bytes (echo a ping's payload).
pub fn encode_pong(out: &mut Vec<u8>, payload: &[u8]) {
    encode_frame(out, OpCode::Control(Control::Pong), payload);
}

/// Appends an unmasked close frame with `code` and `reason`, the reason truncated on a char
/// boundary to fit the 123 bytes a control frame leaves for it.
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let reason = &reason.as_bytes()[..reason.floor_char_boundary(MAX_CLOSE_REASON)];
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    let [hi, lo] = code.to_be_bytes();
    payload[0] = hi;
    payload[1] = lo;
    payload[2..2 + reason.len()].copy_from_slice(reason);
    encode_frame(
        out,
        OpCode::Control(Control::Close),
        &payload[..2 + reason.len()],
    );
}

#[cfg(test)]
mod tests;
