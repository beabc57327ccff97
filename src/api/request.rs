//! Encoding of the requests the gateway sends to the API server: [`ApiMethod`] and
//! [`encode_request`]. Sans-IO: it appends to a buffer the caller writes out.
//!
//! The answers coming back are decoded by [`super::answer::AnswerDecoder`].

use std::fmt;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
