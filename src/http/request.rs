//! Owns parsing one HTTP/1.x request head (shared by the WebSocket and the API listeners) and the
//! checks on it: framing (Content-Length / chunked), keep-alive, the client id in the path, and the
//! RFC 6455 upgrade handshake.
//!
//! No I/O: [`parse`] looks at the bytes read so far and answers `Ok(None)` when it needs more.

use crate::client_id::ClientId;

/// Most headers accepted in one request head; one more is [`RequestError::TooManyHeaders`].
pub const MAX_HEADERS: usize = 64;

/// Request method. Anything not listed is `Other` (still a valid token, checked by httparse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Delete,
    Put,
    Head,
    Options,
    Other,
}

impl Method {
    fn from_token(m: &str) -> Method {
        // Methods are case-sensitive (RFC 9110 9.1).
        match m {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            "PUT" => Method::Put,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// One parsed request head, owning its data (the read buffer can be reused at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// Raw path without the query, e.g. `/abc`. Not percent-decoded.
    pub path: String,
    /// Raw query string without the `?`; `Some("")` for a bare trailing `?`.
    pub query: Option<String>,
    /// 0 or 1.
    pub version_minor: u8,
    /// All headers in order, names lowercased, values as sent (httparse strips surrounding whitespace).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body length from Content-Length (all copies agree; absent when not sent).
    pub content_length: Option<usize>,
    /// Transfer-Encoding ends in `chunked`. Never true together with `content_length`.
    pub chunked: bool,
    /// HTTP/1.1: true unless `Connection: close`; HTTP/1.0: true only with `Connection: keep-alive`.
    pub keep_alive: bool,
}

/// Why a request head was refused. The status a client gets for each is decided with every other
/// status, in `crate::error::Error::status`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request head too large")]
    HeadTooLarge,
    #[error("too many request headers (limit {MAX_HEADERS})")]
    TooManyHeaders,
    #[error("bad client id in path: {0}")]
    BadClientId(String),
    #[error("not a WebSocket upgrade: {0}")]
    NotUpgrade(&'static str),
    #[error("unsupported Sec-WebSocket-Version (only 13 is supported)")]
    UnsupportedVersion,
    #[error("invalid or conflicting Content-Length")]
    BadLength,
}

/// Splits a header value on commas and yields the trimmed, non-empty list elements.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

impl RequestHead {
    /// Value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers_named(name).next()
    }

    /// Values of every header called `name` (case-insensitive), in order.
    pub fn headers_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// True when some comma-separated element of some `name` header equals `token`, ignoring case.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers_named(name)
            .flat_map(list_items)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// First path segment as a ClientId: "/abc" and "/abc?x" → abc; "/" or "/a/b" or bad bytes → Err.
    pub fn client_id(&self) -> Result<ClientId, RequestError> {
        let rest = self
            .path
            .strip_prefix('/')
            .ok_or_else(|| RequestError::BadClientId("path does not start with '/'".into()))?;
        if rest.contains('/') {
            return Err(RequestError::BadClientId(
                "path has more than one segment".into(),
            ));
        }
        ClientId::parse(rest.as_bytes()).map_err(|e| RequestError::BadClientId(e.to_string()))
    }

    /// Checks a WebSocket upgrade (RFC 6455 4.2.1: GET, HTTP/1.1, Upgrade contains token
    /// "websocket" case-insensitively, Connection contains token "upgrade" (comma-separated list,
    /// case-insensitive), Sec-WebSocket-Version: 13, Sec-WebSocket-Key present and base64 of 16
    /// bytes) and returns the Sec-WebSocket-Accept value.
    pub fn websocket_accept(&self) -> Result<String, RequestError> {
        if self.method != Method::Get {
            return Err(RequestError::NotUpgrade("method must be GET"));
        }
        if self.version_minor != 1 {
            return Err(RequestError::NotUpgrade("HTTP/1.1 required"));
        }
        if !self.has_token("upgrade", "websocket") {
            return Err(RequestError::NotUpgrade("Upgrade: websocket header"));
        }
        if !self.has_token("connection", "upgrade") {
            return Err(RequestError::NotUpgrade("Connection: Upgrade header"));
        }
        let mut versions = self.headers_named("sec-websocket-version").peekable();
        if versions.peek().is_none() {
            return Err(RequestError::NotUpgrade("Sec-WebSocket-Version header"));
        }
        if !versions.all(|v| v.trim_ascii() == b"13") {
            return Err(RequestError::UnsupportedVersion);
        }
        let mut keys = self.headers_named("sec-websocket-key");
        let key = keys
            .next()
            .ok_or(RequestError::NotUpgrade("Sec-WebSocket-Key header"))?
            .trim_ascii();
        if keys.next().is_some() {
            return Err(RequestError::NotUpgrade(
                "a single Sec-WebSocket-Key header",
            ));
        }
        if !is_base64_of_16_bytes(key) {
            return Err(RequestError::NotUpgrade(
                "Sec-WebSocket-Key of 16 base64-encoded bytes",
            ));
        }
        Ok(tungstenite::handshake::derive_accept_key(key))
    }
}

/// True for 22 base64 characters followed by `==` — the encoding of 16 bytes. The unused low bits
/// of the last character are not checked (the key is only hashed, never decoded).
fn is_base64_of_16_bytes(key: &[u8]) -> bool {
    match key.split_at_checked(22) {
        Some((data, b"==")) => data
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'),
        _ => false,
    }
}

/// Parses the Content-Length headers: every value (and every element of a comma list) must be
/// digits and all must agree (RFC 9110 8.6).
fn content_length(headers: &[(String, Vec<u8>)]) -> Result<Option<usize>, RequestError> {
    let mut found: Option<usize> = None;
    for (_, value) in headers.iter().filter(|(n, _)| n == "content-length") {
        let mut any = false;
        for item in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            any = true;
            if item.is_empty() {
                return Err(RequestError::BadLength);
            }
            let mut n: usize = 0;
            for &b in item {
                if !b.is_ascii_digit() {
                    return Err(RequestError::BadLength);
                }
                n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(usize::from(b - b'0')))
                    .ok_or(RequestError::BadLength)?;
            }
            match found {
                Some(prev) if prev != n => return Err(RequestError::BadLength),
                _ => found = Some(n),
            }
        }
        if !any {
            return Err(RequestError::BadLength);
        }
    }
    Ok(found)
}

/// Checks Transfer-Encoding and answers whether the body is chunked. RFC 9112 6.1/6.3: chunked
/// must be the final coding of a request; Transfer-Encoding is not HTTP/1.0; and together with
/// Content-Length it is a smuggling attempt.
fn chunked(head: &RequestHead) -> Result<bool, RequestError> {
    if head.headers_named("transfer-encoding").next().is_none() {
        return Ok(false);
    }
    let last = head
        .headers_named("transfer-encoding")
        .flat_map(list_items)
        .last();
    if !last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
        return Err(RequestError::Malformed(
            "Transfer-Encoding without final chunked".into(),
        ));
    }
    if head.version_minor == 0 {
        return Err(RequestError::Malformed(
            "Transfer-Encoding in HTTP/1.0".into(),
        ));
    }
    if head.content_length.is_some() {
        return Err(RequestError::Malformed(
            "both Content-Length and Transfer-Encoding".into(),
        ));
    }
    Ok(true)
}

/// Parses one request head from the start of `buf`. Ok(None): incomplete. `max_head` bounds the head size:
/// if no complete head within max_head bytes → HeadTooLarge (also when buf is longer than max_head and still incomplete).
///
/// On success returns the head's length in bytes (body or WebSocket frames follow it in `buf`)
/// and the head.
pub fn parse(buf: &[u8], max_head: usize) -> Result<Option<(usize, RequestHead)>, RequestError> {
    let window = buf.get(..max_head).unwrap_or(buf);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Err(RequestError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(e) => return Err(RequestError::Malformed(e.to_string())),
    };

    let (method, target, version_minor) = match (req.method, req.path, req.version) {
        (Some(m), Some(p), Some(v)) => (m, p, v),
        _ => return Err(RequestError::Malformed("incomplete request line".into())),
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let headers: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();

    let mut head = RequestHead {
        method: Method::from_token(method),
        path,
        query,
        version_minor,
        headers,
        content_length: None,
        chunked: false,
        keep_alive: false,
    };

    head.content_length = content_length(&head.headers)?;
    head.chunked = chunked(&head)?;

    head.keep_alive = if head.has_token("connection", "close") {
        false
    } else {
        version_minor >= 1 || head.has_token("connection", "keep-alive")
    };

    Ok(Some((consumed, head)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8192;

    /// What Chrome sends (RFC 6455 1.3 sample key), modulo cookies.
    const BROWSER: &[u8] = b"GET /chat-42?token=x%20y HTTP/1.1\r\n\
        Host: gw.example.com\r\n\
        Connection: Upgrade\r\n\
        Pragma: no-cache\r\n\
        Cache-Control: no-cache\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n\
        Upgrade: websocket\r\n\
        Origin: https://example.com\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Accept-Encoding: gzip, deflate, br\r\n\
        Accept-Language: en-US,en;q=0.9\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
        \r\n";

    /// RFC 6455 5.7: a masked text frame carrying "Hello".
    const HELLO_FRAME: &[u8] = &[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];

    const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn head(raw: &[u8]) -> RequestHead {
        match parse(raw, MAX) {
            Ok(Some((n, h))) => {
                assert_eq!(n, raw.len(), "whole input is the head");
                h
            }
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    fn err(raw: &[u8]) -> RequestError {
        match parse(raw, MAX) {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn accept(raw: &[u8]) -> Result<String, RequestError> {
        head(raw).websocket_accept()
    }

    // ---- the RFC example and the browser request ----

    #[test]
    fn rfc6455_sample_key() {
        let h = head(
            b"GET /chat HTTP/1.1\r\n\
              Host: server.example.com\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Origin: http://example.com\r\n\
              Sec-WebSocket-Protocol: chat, superchat\r\n\
              Sec-WebSocket-Version: 13\r\n\
              \r\n",
        );
        assert_eq!(h.websocket_accept().as_deref(), Ok(RFC_ACCEPT));
        assert_eq!(
            h.header("Sec-WebSocket-Protocol"),
            Some(&b"chat, superchat"[..])
        );
    }

    #[test]
    fn browser_request_fields() {
        let h = head(BROWSER);
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path, "/chat-42");
        assert_eq!(h.query.as_deref(), Some("token=x%20y"));
        assert_eq!(h.version_minor, 1);
        assert_eq!(h.headers.len(), 12);
        assert_eq!(h.headers.first().map(|(n, _)| n.as_str()), Some("host"));
        assert!(h.headers.iter().all(|(n, _)| *n == n.to_ascii_lowercase()));
        assert_eq!(h.header("HOST"), Some(&b"gw.example.com"[..]));
        assert_eq!(h.header("x-missing"), None);
        assert_eq!(h.content_length, None);
        assert!(!h.chunked);
        assert!(h.keep_alive);
        assert_eq!(h.client_id().unwrap().as_str(), "chat-42");
        assert_eq!(h.websocket_accept().as_deref(), Ok(RFC_ACCEPT));
    }

    #[test]
    fn browser_request_split_at_every_offset() {
        let (whole_len, whole) = parse(BROWSER, MAX).unwrap().unwrap();
        assert_eq!(whole_len, BROWSER.len());
        for cut in 0..BROWSER.len() {
            let prefix = BROWSER.get(..cut).unwrap();
            assert_eq!(parse(prefix, MAX), Ok(None), "prefix of {cut} bytes");
        }
        // The head followed by the first frame, also split at every offset past the head.
        let mut stream = BROWSER.to_vec();
        stream.extend_from_slice(HELLO_FRAME);
        for end in BROWSER.len()..=stream.len() {
            let (n, h) = parse(stream.get(..end).unwrap(), MAX).unwrap().unwrap();
            assert_eq!(n, BROWSER.len(), "consumed excludes frame bytes");
            assert_eq!(h, whole);
        }
        assert_eq!(stream.get(whole_len..), Some(HELLO_FRAME));
    }

    #[test]
    fn head_exactly_max_head_is_fine() {
        assert!(matches!(parse(BROWSER, BROWSER.len()), Ok(Some((n, _))) if n == BROWSER.len()));
        assert_eq!(
            parse(BROWSER, BROWSER.len() - 1),
            Err(RequestError::HeadTooLarge)
        );
    }

    // ---- limits ----

    #[test]
    fn head_over_max_is_431() {
        // Complete head, but one byte longer than allowed.
        let e = parse(BROWSER, BROWSER.len() - 1).unwrap_err();
        assert_eq!(e, RequestError::HeadTooLarge);
        // Incomplete and already max_head bytes long: it can never fit.
        let junk = vec![b'a'; 64];
        let mut req = b"GET /x HTTP/1.1\r\nX-Pad: ".to_vec();
        req.extend_from_slice(&junk);
        assert_eq!(parse(&req, req.len()), Err(RequestError::HeadTooLarge));
        assert_eq!(parse(&req, req.len() + 10), Ok(None));
        assert_eq!(parse(&req, 16), Err(RequestError::HeadTooLarge));
    }

    fn with_headers(n: usize) -> Vec<u8> {
        let mut req = b"GET /abc HTTP/1.1\r\n".to_vec();
        for i in 0..n {
            req.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req
    }

    #[test]
    fn sixty_four_headers_ok_sixty_five_is_431() {
        assert_eq!(head(&with_headers(MAX_HEADERS)).headers.len(), MAX_HEADERS);
        let e = err(&with_headers(MAX_HEADERS + 1));
        assert_eq!(e, RequestError::TooManyHeaders);
    }

    // ---- malformed heads ----

    #[test]
    fn malformed_is_400() {
        for raw in [
            &b"GET /abc HTTP/1.1\r\nBad Name: x\r\n\r\n"[..],
            b"GET /abc HTTP/2.0\r\n\r\n",
            b"GET /abc FTP/1.1\r\n\r\n",
            b"GET  HTTP/1.1\r\n\r\n",
            b"G(T /abc HTTP/1.1\r\n\r\n",
            b"GET /abc HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
            b"GET /abc HTTP/1.1\r\nX: \x01\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            let e = err(raw);
            assert!(
                matches!(e, RequestError::Malformed(_)),
                "{:?} → {e:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    // ---- framing ----

    #[test]
    fn content_length() {
        let h = head(b"POST /abc HTTP/1.1\r\nContent-Length: 42\r\n\r\n");
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.content_length, Some(42));
        let h = head(b"POST /abc HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(h.content_length, Some(5));
        let h = head(b"POST /abc HTTP/1.1\r\nContent-Length: 7, 7\r\n\r\n");
        assert_eq!(h.content_length, Some(7));
        let h = head(b"POST /abc HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.content_length, Some(0));
    }

    #[test]
    fn bad_length_is_400() {
        for raw in [
            &b"POST /abc HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"POST /abc HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            b"POST /abc HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            b"POST /abc HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST /abc HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"POST /abc HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
            b"POST /abc HTTP/1.1\r\nContent-Length: \r\n\r\n",
            b"POST /abc HTTP/1.1\r\nContent-Length: 5,\r\n\r\n",
            b"POST /abc HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ] {
            let e = err(raw);
            assert_eq!(
                e,
                RequestError::BadLength,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn chunked() {
        let h = head(b"POST /abc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(h.chunked);
        assert_eq!(h.content_length, None);
        let h = head(b"POST /abc HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        assert!(h.chunked);
    }

    #[test]
    fn smuggling_guards() {
        for raw in [
            &b"POST /abc HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST /abc HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            b"POST /abc HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST /abc HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
            b"POST /abc HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n",
            b"POST /abc HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let e = err(raw);
            assert!(
                matches!(e, RequestError::Malformed(_)),
                "{:?} → {e:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn keep_alive_defaults() {
        assert!(head(b"GET /a HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!head(b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head(b"GET /a HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n").keep_alive);
        assert!(!head(b"GET /a HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head(b"GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!head(b"GET /a HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
    }

    #[test]
    fn methods_and_targets() {
        for (raw, m) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], Method::Get),
            (b"POST / HTTP/1.1\r\n\r\n", Method::Post),
            (b"DELETE / HTTP/1.1\r\n\r\n", Method::Delete),
            (b"PUT / HTTP/1.1\r\n\r\n", Method::Put),
            (b"HEAD / HTTP/1.1\r\n\r\n", Method::Head),
            (b"OPTIONS * HTTP/1.1\r\n\r\n", Method::Options),
            (b"PATCH / HTTP/1.1\r\n\r\n", Method::Other),
            (b"get / HTTP/1.1\r\n\r\n", Method::Other),
        ] {
            assert_eq!(head(raw).method, m);
        }
        let h = head(b"GET /a? HTTP/1.0\r\n\r\n");
        assert_eq!((h.path.as_str(), h.query.as_deref()), ("/a", Some("")));
        assert_eq!(h.version_minor, 0);
        let h = head(b"GET /a?b?c=d HTTP/1.1\r\n\r\n");
        assert_eq!((h.path.as_str(), h.query.as_deref()), ("/a", Some("b?c=d")));
    }

    #[test]
    fn header_lookup_is_first_match_case_insensitive() {
        let h = head(b"GET /a HTTP/1.1\r\nX-Dup: one\r\nx-dup: two\r\nX-Empty:\r\n\r\n");
        assert_eq!(h.header("x-DUP"), Some(&b"one"[..]));
        assert_eq!(h.headers_named("X-Dup").count(), 2);
        assert_eq!(h.header("x-empty"), Some(&b""[..]));
        assert_eq!(
            h.headers,
            vec![
                ("x-dup".to_string(), b"one".to_vec()),
                ("x-dup".to_string(), b"two".to_vec()),
                ("x-empty".to_string(), b"".to_vec()),
            ]
        );
    }

    // ---- client id ----

    fn client_id_of(target: &str) -> Result<String, RequestError> {
        let raw = format!("GET {target} HTTP/1.1\r\n\r\n");
        head(raw.as_bytes()).client_id().map(|c| c.to_string())
    }

    #[test]
    fn client_id_from_path() {
        assert_eq!(client_id_of("/abc").as_deref(), Ok("abc"));
        assert_eq!(client_id_of("/abc?x=1").as_deref(), Ok("abc"));
        assert_eq!(client_id_of("/A.b_c~d-9").as_deref(), Ok("A.b_c~d-9"));
        let max = "x".repeat(128);
        assert_eq!(client_id_of(&format!("/{max}")), Ok(max));
        for bad in [
            "/".to_string(),
            "/?x=1".to_string(),
            "/a/b".to_string(),
            "/abc/".to_string(),
            "//abc".to_string(),
            "/%41".to_string(),
            "*".to_string(),
            "http://host/abc".to_string(),
            format!("/{}", "x".repeat(129)),
        ] {
            let e = client_id_of(&bad).unwrap_err();
            assert!(matches!(e, RequestError::BadClientId(_)), "{bad} → {e:?}");
        }
        assert!(client_id_of("/%41")
            .unwrap_err()
            .to_string()
            .contains("0x25"));
        assert!(client_id_of(&format!("/{}", "x".repeat(129)))
            .unwrap_err()
            .to_string()
            .contains("longer"));
    }

    // ---- upgrade checks ----

    const UPGRADE_TAIL: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    fn upgrade(request_line: &str, headers: &str) -> Result<String, RequestError> {
        accept(format!("{request_line}\r\nHost: h\r\n{headers}{UPGRADE_TAIL}").as_bytes())
    }

    const STD: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";

    #[test]
    fn upgrade_ok_variants() {
        assert_eq!(upgrade("GET /a HTTP/1.1", STD).as_deref(), Ok(RFC_ACCEPT));
        // Firefox.
        assert_eq!(
            upgrade(
                "GET /a HTTP/1.1",
                "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            )
            .as_deref(),
            Ok(RFC_ACCEPT)
        );
        // Lowercase tokens, odd spacing, token in a list, split across headers.
        assert_eq!(
            upgrade(
                "GET /a HTTP/1.1",
                "upgrade: h2c ,WebSocket\r\nconnection: foo\r\nCONNECTION:upgrade\r\nsec-websocket-version:  13 \r\n"
            )
            .as_deref(),
            Ok(RFC_ACCEPT)
        );
    }

    #[test]
    fn plain_get_is_not_upgrade() {
        let e = accept(b"GET /abc HTTP/1.1\r\nHost: h\r\n\r\n").unwrap_err();
        assert!(matches!(e, RequestError::NotUpgrade(_)));
    }

    #[test]
    fn not_upgrade_reasons() {
        let cases: [(&str, &str, &str); 7] = [
            ("POST /a HTTP/1.1", STD, "method must be GET"),
            ("GET /a HTTP/1.0", STD, "HTTP/1.1 required"),
            (
                "GET /a HTTP/1.1",
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
                "Upgrade: websocket header",
            ),
            (
                "GET /a HTTP/1.1",
                "Upgrade: websockets\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
                "Upgrade: websocket header",
            ),
            (
                "GET /a HTTP/1.1",
                "Upgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Version: 13\r\n",
                "Connection: Upgrade header",
            ),
            (
                "GET /a HTTP/1.1",
                "Upgrade: websocket\r\nConnection: upgraded\r\nSec-WebSocket-Version: 13\r\n",
                "Connection: Upgrade header",
            ),
            (
                "GET /a HTTP/1.1",
                "Upgrade: websocket\r\nConnection: Upgrade\r\n",
                "Sec-WebSocket-Version header",
            ),
        ];
        for (line, headers, why) in cases {
            let e = upgrade(line, headers).unwrap_err();
            assert_eq!(e, RequestError::NotUpgrade(why), "{line} {headers:?}");
        }
    }

    #[test]
    fn version_8_is_426() {
        for v in ["8", "13, 8", "14", ""] {
            let headers = format!(
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: {v}\r\n"
            );
            let e = upgrade("GET /a HTTP/1.1", &headers).unwrap_err();
            assert_eq!(e, RequestError::UnsupportedVersion, "version {v:?}");
        }
    }

    #[test]
    fn missing_or_bad_key() {
        let missing = accept(
            b"GET /a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(
            missing,
            RequestError::NotUpgrade("Sec-WebSocket-Key header")
        );

        for key in [
            "",
            "dGhlIHNhbXBsZSBub25jZQ",           // no padding
            "dGhlIHNhbXBsZSBub25jZQ=",          // short padding
            "dGhlIHNhbXBsZSBub25jZQ===",        // long
            "dGhlIHNhbXBsZSBub25j",             // 15 bytes
            "dGhlIHNhbXBsZSBub25jZQ-=",         // not padding
            "dGhlIHNhbXBsZSBub25jZ!==",         // not base64
            "dGhlIHNhbXBsZSBub25jZSBz",         // 18 bytes
            "dGhlIHNhbXBsZSBub25jZSBzYW1wbGU=", // 23 bytes
        ] {
            let raw = format!(
                "GET /a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
            );
            let e = accept(raw.as_bytes()).unwrap_err();
            assert_eq!(
                e,
                RequestError::NotUpgrade("Sec-WebSocket-Key of 16 base64-encoded bytes"),
                "key {key:?}"
            );
        }

        let two = format!("{STD}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n");
        assert_eq!(
            upgrade("GET /a HTTP/1.1", &two),
            Err(RequestError::NotUpgrade(
                "a single Sec-WebSocket-Key header"
            ))
        );
    }

    #[test]
    fn other_keys_hash_like_tungstenite() {
        let raw =
            format!("GET /a HTTP/1.1\r\n{STD}Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\r\n");
        // RFC 6455 4.2.2's second worked example, as documented by many servers.
        assert_eq!(
            accept(raw.as_bytes()).as_deref(),
            Ok("HSmrc0sMlYUkAGmm5OPpG2HaGWk=")
        );
    }

    // ---- every variant ----

    /// Every variant is reachable from the wire (the status each gets is checked with
    /// every other status, in `crate::error`'s tests).
    #[test]
    fn every_variant_reached() {
        let reached: Vec<RequestError> = vec![
            err(b"GET /a HTTP/9.9\r\n\r\n"),
            parse(BROWSER, 32).unwrap_err(),
            err(&with_headers(65)),
            head(b"GET /a/b HTTP/1.1\r\n\r\n").client_id().unwrap_err(),
            accept(b"GET /a HTTP/1.1\r\n\r\n").unwrap_err(),
            upgrade(
                "GET /a HTTP/1.1",
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n",
            )
            .unwrap_err(),
            err(b"POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        ];
        let kinds: Vec<&str> = reached
            .iter()
            .map(|e| match e {
                RequestError::Malformed(_) => "Malformed",
                RequestError::HeadTooLarge => "HeadTooLarge",
                RequestError::TooManyHeaders => "TooManyHeaders",
                RequestError::BadClientId(_) => "BadClientId",
                RequestError::NotUpgrade(_) => "NotUpgrade",
                RequestError::UnsupportedVersion => "UnsupportedVersion",
                RequestError::BadLength => "BadLength",
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                "Malformed",
                "HeadTooLarge",
                "TooManyHeaders",
                "BadClientId",
                "NotUpgrade",
                "UnsupportedVersion",
                "BadLength",
            ]
        );
        for e in &reached {
            assert!(!e.to_string().is_empty());
        }
    }

    // ---- robustness ----

    /// Deterministic xorshift so the test needs no extra crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn no_panic_on_mutated_and_random_input() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let alphabet =
            b"GET /?:,\r\n \t=-aZ09chunkedContent-LengthUpgradewebsocket\x00\x7f\x80\xff";
        for round in 0..20_000 {
            let mut buf = BROWSER.to_vec();
            if round % 2 == 0 {
                for _ in 0..=rng.below(6) {
                    let i = rng.below(buf.len());
                    let b = alphabet
                        .get(rng.below(alphabet.len()))
                        .copied()
                        .unwrap_or(0);
                    match rng.below(3) {
                        0 => {
                            if let Some(x) = buf.get_mut(i) {
                                *x = b;
                            }
                        }
                        1 => buf.insert(i, b),
                        _ => {
                            if i < buf.len() {
                                buf.remove(i);
                            }
                        }
                    }
                }
            } else {
                let len = rng.below(64);
                buf = (0..len)
                    .map(|_| {
                        alphabet
                            .get(rng.below(alphabet.len()))
                            .copied()
                            .unwrap_or(0)
                    })
                    .collect();
            }
            let max_head = rng.below(BROWSER.len() + 40);
            for m in [max_head, MAX] {
                if let Ok(Some((n, h))) = parse(&buf, m) {
                    assert!(n <= buf.len() && n <= m);
                    let _ = h.client_id();
                    let _ = h.websocket_accept();
                    assert!(!(h.chunked && h.content_length.is_some()));
                }
            }
        }
    }
}
