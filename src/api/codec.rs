//! Sans-IO HTTP/1.1 codec for the API side: encodes requests to the API server and incrementally decodes its answers.
//!
//! Nothing here touches a socket. [`encode_request`] appends one request to a buffer the caller
//! writes out; [`AnswerDecoder`] is fed the bytes the caller reads and yields one [`Answer`].
//!
//! Answer framing follows RFC 9112 section 6.3:
//! * 1xx heads are skipped (101 is refused: this client never asks to upgrade);
//! * answers to HEAD, and 204 / 304 answers, have no body;
//! * `Transfer-Encoding` ending in `chunked` → chunked body (extensions ignored, trailers skipped);
//!   any other `Transfer-Encoding` → body delimited by close;
//! * else `Content-Length` (several equal values are accepted, differing ones are `Malformed`);
//! * else the body runs until the peer closes ([`AnswerDecoder::finish`]), and the connection
//!   cannot be reused.
//!
//! Bytes after the end of an answer are never consumed, so a caller holding pipelined answers
//! starts a new decoder on the remainder.

use std::fmt;

/// Most bytes a status line plus headers may take.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers an answer head may carry.
pub const MAX_HEADERS: usize = 64;
/// Most bytes of chunk extensions on one chunk-size line, and of trailer fields in total.
pub const MAX_CHUNK_META: usize = 16 * 1024;

/// The request methods the gateway sends to the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiMethod {
    Get,
    Post,
    Delete,
}

impl ApiMethod {
    /// The method token as written on the request line.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiMethod::Get => "GET",
            ApiMethod::Post => "POST",
            ApiMethod::Delete => "DELETE",
        }
    }
}

impl fmt::Display for ApiMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Appends one HTTP/1.1 request to `out`:
/// `"{METHOD} {path_and_query} HTTP/1.1\r\nHost: {host}\r\n"`, then each `(name, value)` header,
/// then `"Content-Length: {body.len()}\r\n"` (always, also 0, so keep-alive servers never wait),
/// `"\r\n"` and `body`.
///
/// Guards against header injection and request smuggling:
/// * a header whose name or value holds CR or LF is skipped, as is one with an empty name or a
///   name holding a colon, space or other control byte;
/// * caller headers named `Host`, `Content-Length` or `Transfer-Encoding` are skipped, since this
///   function writes the framing itself;
/// * bytes of `path_and_query` that would break the request line (controls, space, DEL, non-ASCII)
///   are percent-encoded; such bytes in `host` are dropped.
pub fn encode_request(
    out: &mut Vec<u8>,
    method: ApiMethod,
    host: &str,
    path_and_query: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) {
    let headers_len: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    out.reserve(
        method.as_str().len() + path_and_query.len() + host.len() + headers_len + body.len() + 64,
    );

    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    if path_and_query.is_empty() {
        out.push(b'/');
    }
    for &b in path_and_query.as_bytes() {
        if breaks_request_line(b) {
            out.push(b'%');
            out.push(HEX_UPPER[usize::from(b >> 4)]);
            out.push(HEX_UPPER[usize::from(b & 0x0f)]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend(host.bytes().filter(|&b| !breaks_request_line(b)));
    out.extend_from_slice(b"\r\n");

    for &(name, value) in headers {
        if !header_allowed(name, value) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }

    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, body.len());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn breaks_request_line(b: u8) -> bool {
    b <= b' ' || b >= 0x7f
}

fn header_allowed(name: &str, value: &[u8]) -> bool {
    if name.is_empty()
        || name.bytes().any(|b| b <= b' ' || b >= 0x7f || b == b':')
        || value.iter().any(|&b| b == b'\r' || b == b'\n')
    {
        return false;
    }
    !(name.eq_ignore_ascii_case("host")
        || name.eq_ignore_ascii_case("content-length")
        || name.eq_ignore_ascii_case("transfer-encoding"))
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// One complete answer from the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Header fields in wire order, names lowercased, values as sent (surrounding whitespace trimmed).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// false if "Connection: close", HTTP/1.0 without "Connection: keep-alive", a body delimited
    /// by close, or framing that hints at smuggling (Transfer-Encoding next to Content-Length).
    pub keep_alive: bool,
}

impl Answer {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Why an answer could not be decoded. After any of these the connection must be dropped.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    /// Bad status line, header or chunk syntax.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// Head over [`MAX_HEAD`] bytes, body over the decoder's limit, or chunk metadata over
    /// [`MAX_CHUNK_META`].
    #[error("answer too large")]
    TooLarge,
    /// The peer closed the connection before a complete answer.
    #[error("connection closed before a complete answer")]
    Closed,
}

fn malformed(what: impl Into<String>) -> AnswerError {
    AnswerError::Malformed(what.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of a chunk size; `digits` counts those seen.
    Size { size: u64, digits: u8 },
    /// Whitespace after the size, before `;` or CR.
    SizeWs { size: u64 },
    /// Inside chunk extensions; `seen` counts their bytes.
    Ext { size: u64, seen: usize },
    /// CR of the size line seen, LF expected.
    SizeLf { size: u64 },
    /// Chunk data, `left` bytes to go.
    Data { left: u64 },
    /// CR expected after chunk data.
    DataCr,
    /// LF expected after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// CR of a trailer field line seen, LF expected.
    TrailerLineLf,
    /// CR of the final empty line seen, LF expected.
    EndLf,
}

#[derive(Debug)]
enum State {
    Head,
    Length { left: u64 },
    Chunked { chunk: Chunk, meta: usize },
    UntilClose,
    Done,
    Failed(AnswerError),
}

/// Incremental decoder for ONE answer. Feed it bytes as they arrive.
#[derive(Debug)]
pub struct AnswerDecoder {
    max_body: usize,
    head_request: bool,
    state: State,
    /// Bytes of a head not yet complete.
    head: Vec<u8>,
    /// Whether any byte has been consumed (to tell an idle close from one mid-answer).
    started: bool,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    keep_alive: bool,
}

impl AnswerDecoder {
    /// A decoder whose body may take at most `max_body` bytes; `head_request` says the request
    /// was a HEAD, so the answer has no body whatever its headers say.
    pub fn new(max_body: usize, head_request: bool) -> Self {
        AnswerDecoder {
            max_body,
            head_request,
            state: State::Head,
            head: Vec::new(),
            started: false,
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
            keep_alive: true,
        }
    }

    /// Whether any byte of an answer has been consumed yet. A close while this is false is a
    /// close of an idle connection rather than a truncated answer.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether the answer has been handed out by [`feed`](Self::feed) or [`finish`](Self::finish).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Consumes bytes from `input`; returns how many bytes it consumed and, when complete, the
    /// Answer. Bytes after the end of the answer are NOT consumed (pipelining safety: the caller
    /// sees them). Once the answer is out, further calls consume nothing and return `None`; once
    /// an error is returned, further calls return it again.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Answer>), AnswerError> {
        if !input.is_empty() {
            self.started = true;
        }
        match self.feed_inner(input) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.state = State::Failed(e.clone());
                self.head = Vec::new();
                self.body = Vec::new();
                Err(e)
            }
        }
    }

    /// The peer closed the connection: completes an answer whose body is delimited by close (no
    /// Content-Length, not chunked), otherwise `Err(Closed)`.
    pub fn finish(&mut self) -> Result<Answer, AnswerError> {
        match &self.state {
            State::UntilClose => {
                self.keep_alive = false;
                Ok(self.take_answer())
            }
            State::Failed(e) => Err(e.clone()),
            _ => {
                self.state = State::Failed(AnswerError::Closed);
                Err(AnswerError::Closed)
            }
        }
    }

    fn feed_inner(&mut self, input: &[u8]) -> Result<(usize, Option<Answer>), AnswerError> {
        let mut used = 0;
        loop {
            match &mut self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Done => return Ok((0, None)),
                State::Head => {
                    let (n, complete) = self.feed_head(&input[used..])?;
                    used += n;
                    if !complete {
                        return Ok((used, None));
                    }
                    // The head set the body state; an empty body completes at once.
                }
                State::Length { left } => {
                    if *left == 0 {
                        return Ok((used, Some(self.take_answer())));
                    }
                    let rest = &input[used..];
                    let n = usize::try_from(*left).map_or(rest.len(), |l| l.min(rest.len()));
                    self.body.extend_from_slice(&rest[..n]);
                    *left -= n as u64;
                    used += n;
                    if *left == 0 {
                        return Ok((used, Some(self.take_answer())));
                    }
                    return Ok((used, None));
                }
                State::UntilClose => {
                    let rest = &input[used..];
                    if rest.len() > self.max_body - self.body.len() {
                        return Err(AnswerError::TooLarge);
                    }
                    self.body.extend_from_slice(rest);
                    return Ok((input.len(), None));
                }
                State::Chunked { .. } => {
                    let (n, complete) = self.feed_chunked(&input[used..])?;
                    used += n;
                    if complete {
                        return Ok((used, Some(self.take_answer())));
                    }
                    return Ok((used, None));
                }
            }
        }
    }

    /// Accumulates head bytes; returns how many of `input` it consumed and whether a final
    /// (non-1xx) head is complete, in which case the body state is set.
    fn feed_head(&mut self, input: &[u8]) -> Result<(usize, bool), AnswerError> {
        let mut used = 0;
        loop {
            // Invariant: `self.head` never holds a complete head here.
            let room = MAX_HEAD - self.head.len();
            let take = room.min(input.len() - used);
            let new = &input[used..used + take];
            let old_len = self.head.len();
            self.head.extend_from_slice(new);
            // A head only completes on a LF; before the first LF there is nothing to parse.
            // Once a line is in, parse on every feed, so that an error in a partial header
            // line is reported the same however the bytes are split.
            let full = self.head.len() >= MAX_HEAD;
            if !full && !new.contains(&b'\n') && !self.head[..old_len].contains(&b'\n') {
                return Ok((used + take, false));
            }
            match self.parse_head()? {
                None => {
                    if full {
                        return Err(AnswerError::TooLarge);
                    }
                    return Ok((used + take, false));
                }
                Some(head_len) => {
                    // head_len > old_len because the old bytes held no complete head.
                    used += head_len.saturating_sub(old_len);
                    self.head.clear();
                    if (100..200).contains(&self.status) {
                        self.headers.clear();
                        continue;
                    }
                    self.head = Vec::new();
                    return Ok((used, true));
                }
            }
        }
    }

    /// Parses `self.head`; on a complete head stores status and headers, sets the body state and
    /// returns the head length.
    fn parse_head(&mut self) -> Result<Option<usize>, AnswerError> {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut slots);
        let head_len = match res.parse(&self.head) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(malformed(format!("more than {MAX_HEADERS} headers")))
            }
            Err(e) => return Err(malformed(format!("bad answer head: {e}"))),
        };
        let status = res.code.unwrap_or(0);
        if !(100..=999).contains(&status) {
            return Err(malformed(format!("bad status code {status}")));
        }
        if status == 101 {
            return Err(malformed("unexpected 101 Switching Protocols"));
        }
        self.status = status;
        if (100..200).contains(&status) {
            return Ok(Some(head_len));
        }
        let http10 = res.version == Some(0);
        self.headers = res
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();

        let mut keep_alive = !http10;
        let mut has_te = false;
        let mut chunked = false;
        for (name, value) in &self.headers {
            match name.as_str() {
                "connection" => {
                    for token in list_tokens(value) {
                        if token.eq_ignore_ascii_case(b"close") {
                            keep_alive = false;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                            keep_alive = true;
                        }
                    }
                }
                "transfer-encoding" => {
                    for token in list_tokens(value) {
                        has_te = true;
                        chunked = token.eq_ignore_ascii_case(b"chunked");
                    }
                }
                _ => {}
            }
        }
        // A later "Connection: close" wins over an earlier keep-alive on HTTP/1.0 too.
        if http10 && self.connection_says_close() {
            keep_alive = false;
        }
        self.keep_alive = keep_alive;

        if self.head_request || status == 204 || status == 304 {
            self.state = State::Length { left: 0 };
            return Ok(Some(head_len));
        }
        if has_te {
            // Transfer-Encoding overrides Content-Length; both together (or TE in HTTP/1.0)
            // smells of smuggling, so the connection is not reused.
            if http10 || self.headers.iter().any(|(n, _)| n == "content-length") {
                self.keep_alive = false;
            }
            self.state = if chunked {
                State::Chunked {
                    chunk: Chunk::Size { size: 0, digits: 0 },
                    meta: 0,
                }
            } else {
                self.keep_alive = false;
                State::UntilClose
            };
            return Ok(Some(head_len));
        }
        match self.content_length()? {
            Some(len) => {
                if len > self.max_body as u64 {
                    return Err(AnswerError::TooLarge);
                }
                self.body.reserve(len.min(64 * 1024) as usize);
                self.state = State::Length { left: len };
            }
            None => {
                self.keep_alive = false;
                self.state = State::UntilClose;
            }
        }
        Ok(Some(head_len))
    }

    fn connection_says_close(&self) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .flat_map(|(_, v)| list_tokens(v))
            .any(|t| t.eq_ignore_ascii_case(b"close"))
    }

    /// The Content-Length, if any: every value (across fields and comma lists) must be the same
    /// run of digits.
    fn content_length(&self) -> Result<Option<u64>, AnswerError> {
        let mut found: Option<u64> = None;
        for (_, value) in self.headers.iter().filter(|(n, _)| n == "content-length") {
            // split yields at least one (possibly empty) part, and an empty part is refused.
            for part in value.split(|&b| b == b',') {
                let v = parse_decimal(trim_ows(part))?;
                match found {
                    Some(f) if f != v => {
                        return Err(malformed(format!(
                            "conflicting Content-Length values {f} and {v}"
                        )))
                    }
                    _ => found = Some(v),
                }
            }
        }
        Ok(found)
    }

    /// Runs the chunked-body state machine over `input`; returns how many bytes it consumed and
    /// whether the body (with its trailers) is complete.
    fn feed_chunked(&mut self, input: &[u8]) -> Result<(usize, bool), AnswerError> {
        let State::Chunked { chunk, meta } = &mut self.state else {
            return Ok((0, false));
        };
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match *chunk {
                Chunk::Data { left } => {
                    let rest = &input[i..];
                    let n = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
                    self.body.extend_from_slice(&rest[..n]);
                    i += n;
                    let left = left - n as u64;
                    *chunk = if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data { left }
                    };
                    continue;
                }
                Chunk::Size { size, digits } => {
                    if let Some(d) = hex_value(b) {
                        if size > u64::MAX >> 4 {
                            return Err(malformed("chunk size overflows"));
                        }
                        *chunk = Chunk::Size {
                            size: (size << 4) | u64::from(d),
                            digits: digits.saturating_add(1),
                        };
                    } else if digits == 0 {
                        return Err(malformed(format!("bad chunk size byte 0x{b:02x}")));
                    } else {
                        *chunk = after_size(size, b)?;
                    }
                }
                Chunk::SizeWs { size } => {
                    *chunk = after_size(size, b)?;
                }
                Chunk::Ext { size, seen } => {
                    *chunk = match b {
                        b'\r' => Chunk::SizeLf { size },
                        b'\n' => return Err(malformed("bare LF in chunk extension")),
                        _ if seen >= MAX_CHUNK_META => return Err(AnswerError::TooLarge),
                        _ => Chunk::Ext {
                            size,
                            seen: seen + 1,
                        },
                    };
                }
                Chunk::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(malformed("chunk size line not ended by CRLF"));
                    }
                    *chunk = if size == 0 {
                        Chunk::TrailerStart
                    } else {
                        if size > (self.max_body - self.body.len()) as u64 {
                            return Err(AnswerError::TooLarge);
                        }
                        Chunk::Data { left: size }
                    };
                }
                Chunk::DataCr => {
                    if b != b'\r' {
                        return Err(malformed("chunk data not followed by CRLF"));
                    }
                    *chunk = Chunk::DataLf;
                }
                Chunk::DataLf => {
                    if b != b'\n' {
                        return Err(malformed("chunk data not followed by CRLF"));
                    }
                    *chunk = Chunk::Size { size: 0, digits: 0 };
                }
                Chunk::TrailerStart => {
                    *chunk = match b {
                        b'\r' => Chunk::EndLf,
                        b'\n' => return Err(malformed("bare LF in trailers")),
                        _ => {
                            *meta += 1;
                            Chunk::TrailerLine
                        }
                    };
                }
                Chunk::TrailerLine => {
                    *meta += 1;
                    if *meta > MAX_CHUNK_META {
                        return Err(AnswerError::TooLarge);
                    }
                    *chunk = match b {
                        b'\r' => Chunk::TrailerLineLf,
                        b'\n' => return Err(malformed("bare LF in trailers")),
                        _ => Chunk::TrailerLine,
                    };
                }
                Chunk::TrailerLineLf => {
                    if b != b'\n' {
                        return Err(malformed("trailer line not ended by CRLF"));
                    }
                    *chunk = Chunk::TrailerStart;
                }
                Chunk::EndLf => {
                    if b != b'\n' {
                        return Err(malformed("chunked body not ended by CRLF"));
                    }
                    return Ok((i + 1, true));
                }
            }
            i += 1;
        }
        Ok((i, false))
    }

    fn take_answer(&mut self) -> Answer {
        self.state = State::Done;
        Answer {
            status: self.status,
            headers: std::mem::take(&mut self.headers),
            body: std::mem::take(&mut self.body),
            keep_alive: self.keep_alive,
        }
    }
}

/// The state after the hex digits of a chunk size, given the byte `b` that ended them.
fn after_size(size: u64, b: u8) -> Result<Chunk, AnswerError> {
    match b {
        b' ' | b'\t' => Ok(Chunk::SizeWs { size }),
        b';' => Ok(Chunk::Ext { size, seen: 0 }),
        b'\r' => Ok(Chunk::SizeLf { size }),
        _ => Err(malformed(format!("bad byte 0x{b:02x} after chunk size"))),
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn parse_decimal(s: &[u8]) -> Result<u64, AnswerError> {
    if s.is_empty() {
        return Err(malformed("empty Content-Length"));
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return Err(malformed("bad Content-Length"));
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(AnswerError::TooLarge)?;
    }
    Ok(v)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The non-empty, trimmed elements of a comma-separated header list.
fn list_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    /// Found by the `answer_codec` fuzz target: a bad header name in a line that has
    /// no LF yet was reported when fed whole but not when it came in its own piece.
    #[test]
    fn a_bad_partial_header_line_is_an_error_however_the_bytes_arrive() {
        let whole = b"HTTP/1.1 200 OK\r\nBad Name";
        let mut decoder = super::AnswerDecoder::new(1 << 16, false);
        let whole_result = decoder.feed(whole);
        assert!(
            matches!(whole_result, Err(super::AnswerError::Malformed(_))),
            "{whole_result:?}"
        );
        let mut decoder = super::AnswerDecoder::new(1 << 16, false);
        assert!(matches!(decoder.feed(&whole[..17]), Ok((17, None))));
        assert_eq!(decoder.feed(&whole[17..]), whole_result);
    }

    use super::*;

    const MAX: usize = 1 << 20;

    fn encode(
        method: ApiMethod,
        host: &str,
        path: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        encode_request(&mut out, method, host, path, headers, body);
        out
    }

    /// Decodes every answer in `chunks` (fed in order), starting a new decoder on the unconsumed
    /// remainder after each answer, and calls `finish` at the end if an answer is open.
    fn decode_stream(chunks: &[&[u8]], max_body: usize, head: bool) -> Vec<Answer> {
        let mut answers = Vec::new();
        let mut dec = AnswerDecoder::new(max_body, head);
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                let (n, answer) = dec.feed(rest).expect("decode");
                assert!(n <= rest.len());
                rest = &rest[n..];
                match answer {
                    Some(a) => {
                        answers.push(a);
                        dec = AnswerDecoder::new(max_body, head);
                    }
                    None => assert!(rest.is_empty(), "bytes left unconsumed without an answer"),
                }
            }
        }
        if dec.started() {
            answers.push(dec.finish().expect("finish"));
        }
        answers
    }

    fn decode_one(wire: &[u8]) -> Answer {
        let mut answers = decode_stream(&[wire], MAX, false);
        assert_eq!(answers.len(), 1);
        answers.pop().unwrap()
    }

    /// Decodes `wire` whole, split at every offset, and one byte at a time; all must agree.
    fn decode_all_ways(wire: &[u8], head: bool) -> Vec<Answer> {
        let whole = decode_stream(&[wire], MAX, head);
        for at in 0..=wire.len() {
            let (a, b) = wire.split_at(at);
            assert_eq!(decode_stream(&[a, b], MAX, head), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(decode_stream(&bytes, MAX, head), whole, "byte by byte");
        whole
    }

    fn feed_err(wire: &[u8], max_body: usize) -> AnswerError {
        let mut dec = AnswerDecoder::new(max_body, false);
        match dec.feed(wire) {
            Err(e) => e,
            Ok(r) => panic!("expected an error, got {r:?}"),
        }
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    // ---- encode_request ----

    #[test]
    fn encode_get_with_query_and_headers() {
        let wire = encode(
            ApiMethod::Get,
            "api.local:8080",
            "/ws/open?id=42&room=a",
            &[("X-Conn-Id", b"42"), ("Authorization", b"Bearer t0k")],
            b"",
        );
        assert_eq!(
            wire,
            b"GET /ws/open?id=42&room=a HTTP/1.1\r\n\
              Host: api.local:8080\r\n\
              X-Conn-Id: 42\r\n\
              Authorization: Bearer t0k\r\n\
              Content-Length: 0\r\n\
              \r\n"
        );
    }

    #[test]
    fn encode_post_with_body() {
        let wire = encode(
            ApiMethod::Post,
            "api",
            "/ws/message",
            &[("Content-Type", b"application/octet-stream")],
            b"hello\r\nworld",
        );
        assert_eq!(
            wire,
            b"POST /ws/message HTTP/1.1\r\n\
              Host: api\r\n\
              Content-Type: application/octet-stream\r\n\
              Content-Length: 12\r\n\
              \r\n\
              hello\r\nworld"
        );
    }

    #[test]
    fn encode_delete_with_body_appends() {
        let mut out = b"previous".to_vec();
        encode_request(
            &mut out,
            ApiMethod::Delete,
            "api",
            "/ws/close",
            &[],
            b"{\"id\":7}",
        );
        assert_eq!(
            out,
            b"previous\
              DELETE /ws/close HTTP/1.1\r\n\
              Host: api\r\n\
              Content-Length: 8\r\n\
              \r\n\
              {\"id\":7}"
        );
    }

    #[test]
    fn encode_skips_injected_and_framing_headers() {
        let wire = encode(
            ApiMethod::Get,
            "api",
            "/",
            &[
                ("X-Evil", b"a\r\nContent-Length: 5"),
                ("X-Lf", b"a\nb"),
                ("X-Cr", b"a\rb"),
                ("Bad\r\nName", b"v"),
                ("content-length", b"99"),
                ("Transfer-Encoding", b"chunked"),
                ("HOST", b"other"),
                ("", b"v"),
                ("X-Ok", b"fine"),
            ],
            b"",
        );
        assert_eq!(
            wire,
            b"GET / HTTP/1.1\r\n\
              Host: api\r\n\
              X-Ok: fine\r\n\
              Content-Length: 0\r\n\
              \r\n"
        );
    }

    #[test]
    fn encode_escapes_request_line_breakers() {
        let wire = encode(ApiMethod::Get, "ap\r\ni", "/a b\r\nX: y?q=\u{e9}", &[], b"");
        assert_eq!(
            wire,
            b"GET /a%20b%0D%0AX:%20y?q=%C3%A9 HTTP/1.1\r\n\
              Host: api\r\n\
              Content-Length: 0\r\n\
              \r\n"
        );
        assert_eq!(ApiMethod::Delete.as_str(), "DELETE");
        assert_eq!(ApiMethod::Post.to_string(), "POST");
    }

    // ---- answers ----

    #[test]
    fn content_length_answer() {
        let wire = b"HTTP/1.1 200 OK\r\n\
                     Content-Type: text/plain\r\n\
                     Content-Length: 5\r\n\
                     \r\n\
                     hello";
        let a = decode_all_ways(wire, false).pop().unwrap();
        assert_eq!(
            a,
            Answer {
                status: 200,
                headers: hdrs(&[("content-type", "text/plain"), ("content-length", "5")]),
                body: b"hello".to_vec(),
                keep_alive: true,
            }
        );
        assert_eq!(a.header("Content-Type"), Some(&b"text/plain"[..]));
        assert_eq!(a.header("x-missing"), None);
    }

    #[test]
    fn chunked_answer_with_extension_and_trailer() {
        let wire = b"HTTP/1.1 200 OK\r\n\
                     Transfer-Encoding: chunked\r\n\
                     \r\n\
                     5;name=value\r\n\
                     hello\r\n\
                     1A ; x\r\n\
                     , chunked world!!!!!!!!!!!\r\n\
                     0\r\n\
                     X-Trailer: yes\r\n\
                     \r\n";
        let a = decode_all_ways(wire, false).pop().unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.body, b"hello, chunked world!!!!!!!!!!!");
        assert!(a.keep_alive);
        assert_eq!(a.header("transfer-encoding"), Some(&b"chunked"[..]));
        assert_eq!(a.header("x-trailer"), None);
    }

    #[test]
    fn empty_200_with_zero_length() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let a = decode_all_ways(wire, false).pop().unwrap();
        assert_eq!((a.status, a.body.len(), a.keep_alive), (200, 0, true));
        // Complete as soon as the head is: feed returns the answer with every byte consumed.
        let mut dec = AnswerDecoder::new(MAX, false);
        let (n, answer) = dec.feed(wire).unwrap();
        assert_eq!((n, answer.is_some()), (wire.len(), true));
        assert!(dec.is_done());
        assert_eq!(dec.feed(b"more").unwrap(), (0, None));
    }

    #[test]
    fn no_content_without_length() {
        let wire = b"HTTP/1.1 204 No Content\r\nX-Id: 1\r\n\r\n";
        let a = decode_all_ways(wire, false).pop().unwrap();
        assert_eq!(
            a,
            Answer {
                status: 204,
                headers: hdrs(&[("x-id", "1")]),
                body: vec![],
                keep_alive: true,
            }
        );
        let wire = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n";
        assert_eq!(decode_all_ways(wire, false)[0].body, b"");
    }

    #[test]
    fn head_answer_has_no_body() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
        let a = decode_all_ways(wire, true).pop().unwrap();
        assert_eq!((a.status, a.body.len(), a.keep_alive), (200, 0, true));
    }

    #[test]
    fn continue_then_200() {
        let wire = b"HTTP/1.1 100 Continue\r\n\
                     \r\n\
                     HTTP/1.1 103 Early Hints\r\n\
                     Link: </a>\r\n\
                     \r\n\
                     HTTP/1.1 201 Created\r\n\
                     Content-Length: 2\r\n\
                     \r\n\
                     ok";
        let answers = decode_all_ways(wire, false);
        assert_eq!(answers.len(), 1);
        assert_eq!(
            answers[0],
            Answer {
                status: 201,
                headers: hdrs(&[("content-length", "2")]),
                body: b"ok".to_vec(),
                keep_alive: true,
            }
        );
    }

    #[test]
    fn close_delimited_answer_via_finish() {
        let wire = b"HTTP/1.1 200 OK\r\n\
                     Content-Type: text/plain\r\n\
                     \r\n\
                     until the end";
        let a = decode_all_ways(wire, false).pop().unwrap();
        assert_eq!(a.body, b"until the end");
        assert!(!a.keep_alive);

        let mut dec = AnswerDecoder::new(MAX, false);
        assert_eq!(dec.feed(wire).unwrap(), (wire.len(), None));
        let a = dec.finish().unwrap();
        assert_eq!(
            (a.status, &a.body[..], a.keep_alive),
            (200, &b"until the end"[..], false)
        );
    }

    #[test]
    fn http10_answer_not_kept_alive() {
        let wire = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let a = decode_all_ways(wire, false).pop().unwrap();
        assert_eq!((&a.body[..], a.keep_alive), (&b"hi"[..], false));

        let wire = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhi";
        assert!(decode_one(wire).keep_alive);
    }

    #[test]
    fn connection_close_answer() {
        let wire = b"HTTP/1.1 200 OK\r\nConnection: upgrade, Close\r\nContent-Length: 3\r\n\r\nbye";
        let a = decode_all_ways(wire, false).pop().unwrap();
        assert_eq!((&a.body[..], a.keep_alive), (&b"bye"[..], false));
    }

    #[test]
    fn equal_content_lengths_accepted() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(decode_one(wire).body, b"abc");
    }

    #[test]
    fn te_with_content_length_is_chunked_and_closes() {
        let wire = b"HTTP/1.1 200 OK\r\n\
                     Content-Length: 100\r\n\
                     Transfer-Encoding: gzip, chunked\r\n\
                     \r\n\
                     3\r\nabc\r\n0\r\n\r\n";
        let a = decode_all_ways(wire, false).pop().unwrap();
        assert_eq!((&a.body[..], a.keep_alive), (&b"abc"[..], false));
    }

    #[test]
    fn pipelined_answers_decode_as_two() {
        let first = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none".as_slice();
        let second = b"HTTP/1.1 202 Accepted\r\n\
                       Transfer-Encoding: chunked\r\n\
                       \r\n\
                       3\r\ntwo\r\n0\r\n\r\n"
            .as_slice();
        let wire = [first, second].concat();

        let mut dec = AnswerDecoder::new(MAX, false);
        let (n, a1) = dec.feed(&wire).unwrap();
        assert_eq!(n, first.len());
        let a1 = a1.unwrap();
        assert_eq!((a1.status, &a1.body[..]), (200, &b"one"[..]));

        let mut dec = AnswerDecoder::new(MAX, false);
        let (n, a2) = dec.feed(&wire[first.len()..]).unwrap();
        assert_eq!(n, second.len());
        let a2 = a2.unwrap();
        assert_eq!((a2.status, &a2.body[..]), (202, &b"two"[..]));

        let all = decode_all_ways(&wire, false);
        assert_eq!(all, vec![a1, a2]);

        // A chunked answer does not eat the next answer's bytes either.
        let wire = [second, first].concat();
        let mut dec = AnswerDecoder::new(MAX, false);
        assert_eq!(dec.feed(&wire).unwrap().0, second.len());
    }

    // ---- errors ----

    #[test]
    fn bad_status_line_is_malformed() {
        for wire in [
            &b"HTTP/1.1 abc OK\r\n\r\n"[..],
            b"XTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(
                matches!(feed_err(wire, MAX), AnswerError::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn bad_chunk_size_is_malformed() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        for body in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"5x\r\n",
            b"5\nhello\r\n",
            b"3\r\nabcX",
            b"1\r\na\r\n0\r\n\n",
            b"10000000000000000\r\n",
        ] {
            let wire = [&head[..], body].concat();
            assert!(
                matches!(feed_err(&wire, MAX), AnswerError::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn bad_content_length_is_malformed() {
        for wire in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd",
            b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        ] {
            assert!(matches!(feed_err(wire, MAX), AnswerError::Malformed(_)));
        }
    }

    #[test]
    fn over_max_body_is_too_large() {
        // Up front, by Content-Length: refused on the head alone.
        let mut dec = AnswerDecoder::new(4, false);
        assert_eq!(
            dec.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Err(AnswerError::TooLarge)
        );
        assert_eq!(dec.feed(b"hello"), Err(AnswerError::TooLarge));
        // Exactly at the limit is fine.
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfour";
        assert_eq!(decode_stream(&[wire], 4, false)[0].body, b"four");
        // Chunked: as chunks accumulate, before the over-limit chunk's data arrives.
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\n";
        assert_eq!(feed_err(wire, 4), AnswerError::TooLarge);
        // Close-delimited bodies are capped too.
        let mut dec = AnswerDecoder::new(4, false);
        dec.feed(b"HTTP/1.1 200 OK\r\n\r\nabc").unwrap();
        assert_eq!(dec.feed(b"de"), Err(AnswerError::TooLarge));
        // A huge Content-Length, and an overflowing one.
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(feed_err(wire, MAX), AnswerError::TooLarge);
    }

    #[test]
    fn oversized_head_is_too_large() {
        let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
        while wire.len() <= MAX_HEAD {
            wire.extend_from_slice(b"X-Pad: 0123456789012345678901234567890123456789\r\n");
        }
        let err = feed_err(&wire, MAX);
        assert!(
            matches!(err, AnswerError::TooLarge | AnswerError::Malformed(_)),
            "{err:?}"
        );
        let mut long = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
        long.resize(MAX_HEAD + 10, b'a');
        assert_eq!(feed_err(&long, MAX), AnswerError::TooLarge);
        let mut dec = AnswerDecoder::new(MAX, false);
        let mut err = None;
        for b in long.chunks(1) {
            if let Err(e) = dec.feed(b) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(AnswerError::TooLarge));
    }

    #[test]
    fn finish_mid_answer_is_closed() {
        for partial in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\nContent-Len",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
        ] {
            let mut dec = AnswerDecoder::new(MAX, false);
            dec.feed(partial).unwrap();
            assert_eq!(dec.started(), !partial.is_empty());
            assert_eq!(dec.finish(), Err(AnswerError::Closed));
            assert_eq!(dec.feed(b"x"), Err(AnswerError::Closed));
        }
    }

    #[test]
    fn no_panic_on_mangled_input() {
        let seeds: [&[u8]; 4] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No\r\nConnection: keep-alive\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\nbody",
        ];
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        const NOISE: &[u8] = b"0123456789abcdefABCDEF;:, \t\r\n\x00\xffHTTP/1.chunked";
        for round in 0..3000 {
            let mut wire = seeds[round % seeds.len()].to_vec();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % (wire.len() + 1);
                let noise = NOISE[(next() as usize) % NOISE.len()];
                match next() % 3 {
                    0 => wire.insert(at, noise),
                    1 if at < wire.len() => {
                        wire.remove(at);
                    }
                    _ if at < wire.len() => wire[at] = noise,
                    _ => {}
                }
            }
            let max_body = (next() % 8) as usize;
            let mut dec = AnswerDecoder::new(max_body, next() % 5 == 0);
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let step = 1 + (next() as usize) % rest.len();
                match dec.feed(&rest[..step]) {
                    Ok((n, answer)) => {
                        assert!(n <= step);
                        if answer.is_some() {
                            dec = AnswerDecoder::new(max_body, false);
                        } else {
                            assert_eq!(n, step);
                        }
                        rest = &rest[n..];
                    }
                    Err(_) => break,
                }
            }
            let _ = dec.finish();
        }
    }
}
