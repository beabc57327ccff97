//! Sans-IO decoding of the API server's HTTP/1.1 answers: [`AnswerDecoder`] is fed the bytes
//! the caller reads and yields one [`Answer`], or an [`AnswerError`].
//!
//! Nothing here touches a socket. The requests are encoded by
//! [`super::request::encode_request`].
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

/// Most bytes a status line plus headers may take.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers an answer head may carry.
pub const MAX_HEADERS: usize = 64;
/// Most bytes of chunk extensions on one chunk-size line, and of trailer fields in total.
pub const MAX_CHUNK_META: usize = 16 * 1024;

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
mod tests;
