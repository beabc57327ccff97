//! Owns writing HTTP/1.1 responses onto a byte buffer: status line, framing headers, the 101 upgrade answer.
//!
//! Nothing here parses or does I/O; every function appends to a caller-owned `Vec<u8>` so a
//! connection can reuse one buffer. Header values are written verbatim except that CR and LF
//! bytes are replaced by spaces, so a value can never split the header block.

/// Reason phrase for the statuses the gateway emits; `"Unknown"` for anything else.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Appends the decimal digits of `n` without allocating.
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or(&[]));
}

/// Appends `text` with CR and LF replaced by spaces.
fn push_field(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if bytes.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(bytes.iter().map(|&b| match b {
            b'\r' | b'\n' => b' ',
            b => b,
        }));
    } else {
        out.extend_from_slice(bytes);
    }
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    push_field(out, name);
    out.extend_from_slice(b": ");
    push_field(out, value);
    out.extend_from_slice(b"\r\n");
}

fn push_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, usize::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete response: status line, Content-Length, Content-Type if given, extra headers,
/// "Connection: close" if `!keep_alive`, blank line, body.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) {
    out.reserve(96 + body.len());
    push_status_line(out, status);
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, body.len());
    out.extend_from_slice(b"\r\n");
    if let Some(ct) = content_type {
        push_header(out, "Content-Type", ct);
    }
    for &(name, value) in extra {
        push_header(out, name, value);
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Appends the 101 answer: Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Accept,
/// optional Sec-WebSocket-Protocol.
pub fn write_switching_protocols(out: &mut Vec<u8>, accept: &str, protocol: Option<&str>) {
    push_status_line(out, 101);
    out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
    push_header(out, "Sec-WebSocket-Accept", accept);
    if let Some(p) = protocol {
        push_header(out, "Sec-WebSocket-Protocol", p);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        for (s, r) in [
            (101, "Switching Protocols"),
            (200, "OK"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (413, "Content Too Large"),
            (426, "Upgrade Required"),
            (429, "Too Many Requests"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
            (504, "Gateway Timeout"),
        ] {
            assert_eq!(reason(s), r);
        }
        assert_eq!(reason(418), "Unknown");
        assert_eq!(reason(0), "Unknown");
    }

    #[test]
    fn ok_keep_alive_with_type() {
        let mut out = Vec::new();
        write_response(&mut out, 200, Some("text/plain"), &[], b"hello", true);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\n\
              Content-Length: 5\r\n\
              Content-Type: text/plain\r\n\
              \r\n\
              hello"
        );
    }

    #[test]
    fn error_close_with_extra_headers() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            426,
            None,
            &[("Sec-WebSocket-Version", "13"), ("X-Reason", "old")],
            b"",
            false,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 426 Upgrade Required\r\n\
              Content-Length: 0\r\n\
              Sec-WebSocket-Version: 13\r\n\
              X-Reason: old\r\n\
              Connection: close\r\n\
              \r\n"
        );
    }

    #[test]
    fn appends_and_counts_large_body() {
        let mut out = b"prev".to_vec();
        let body = vec![b'x'; 1_234_567];
        write_response(&mut out, 599, None, &[], &body, true);
        let head = b"prevHTTP/1.1 599 Unknown\r\nContent-Length: 1234567\r\n\r\n";
        assert_eq!(out.get(..head.len()), Some(&head[..]));
        assert_eq!(out.len(), head.len() + body.len());
    }

    #[test]
    fn crlf_in_header_values_is_neutralised() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            200,
            Some("a\r\nX: y"),
            &[("N\n", "v\r")],
            b"",
            true,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\n\
              Content-Length: 0\r\n\
              Content-Type: a  X: y\r\n\
              N : v \r\n\
              \r\n"
        );
    }

    #[test]
    fn decimal() {
        for n in [0usize, 7, 10, 99, 100, 65535, usize::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn switching_protocols() {
        let mut out = Vec::new();
        write_switching_protocols(&mut out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", None);
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
              \r\n"
        );
    }

    #[test]
    fn switching_protocols_with_subprotocol() {
        let mut out = Vec::new();
        write_switching_protocols(&mut out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", Some("chat"));
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
              Sec-WebSocket-Protocol: chat\r\n\
              \r\n"
        );
    }
}
