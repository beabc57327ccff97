//! The API server's contract (SPEC "Requests to the API server"), in one place: the
//! request ws2api sends for each event (Connect, Message, Disconnect) and what each
//! answer means.
//!
//! An event is built from what the connection knows, lends its headers to an
//! [`ApiRequest`] (nothing is allocated for a Message or a Disconnect), and its answer
//! is read once into an [`EventAnswer`].

use std::net::IpAddr;

use super::answer::Answer;
use super::pool::ApiRequest;
use super::request::ApiMethod;
use crate::http::forwarded::IpText;
use crate::transport::ClientCert;

/// `Content-Type` of a text message (and of a Disconnect's reason).
pub const TEXT: &[u8] = b"text/plain; charset=utf-8";

/// `Content-Type` of a binary message, in either direction.
pub const OCTETS: &[u8] = b"application/octet-stream";

/// Headers of the client's upgrade request passed on to the Connect: (lowercase name
/// as parsed, name as sent to the API server).
pub const FORWARDED: [(&str, &str); 5] = [
    ("cookie", "Cookie"),
    ("authorization", "Authorization"),
    ("origin", "Origin"),
    ("user-agent", "User-Agent"),
    ("sec-websocket-protocol", "Sec-WebSocket-Protocol"),
];

/// True for a `Content-Type` that asks for a binary frame (`application/octet-stream`),
/// in an answer of the API server or on a push.
pub fn is_binary(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|t| t.starts_with(OCTETS))
}

/// True for a status the contract counts as success (2xx).
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Who an event is about: sent with every request as the path, `X-Connection-Id`,
/// `X-Forwarded-For` and `X-Forwarded-Proto`.
#[derive(Clone, Copy)]
pub struct Who<'a> {
    /// The ClientId, appended to `--api-url`.
    pub client: &'a str,
    /// The connection's `X-Connection-Id`.
    pub conn_id: &'a str,
    /// The client's address, as `X-Forwarded-For`.
    pub peer: IpText,
    /// `X-Forwarded-Proto`: `https` for a client that came over TLS, else `http`.
    pub proto: &'static str,
}

impl<'a> Who<'a> {
    /// The connection `conn_id` of `client` from `peer`, over `proto` (see
    /// [`crate::transport::Transport::proto`]).
    pub fn new(client: &'a str, conn_id: &'a str, peer: IpAddr, proto: &'static str) -> Who<'a> {
        Who {
            client,
            conn_id,
            peer: IpText::new(peer),
            proto,
        }
    }
}

/// Connect: `GET {api}{ClientId}[?query]`, with the client's forwarded headers and
/// what its verified certificate says.
pub struct Connect<'a> {
    who: Who<'a>,
    query: Option<&'a str>,
    forwarded: Vec<(&'static str, &'a [u8])>,
    cert: Option<&'a ClientCert>,
}

impl<'a> Connect<'a> {
    /// The Connect of `who`, whose upgrade request had `query` and the [`FORWARDED`]
    /// headers found by `header` (lowercase name → first value).
    pub fn new(
        who: Who<'a>,
        query: Option<&'a str>,
        header: impl Fn(&str) -> Option<&'a [u8]>,
    ) -> Connect<'a> {
        let forwarded = FORWARDED
            .iter()
            .filter_map(|&(lower, name)| header(lower).map(|value| (name, value)))
            .collect();
        Connect {
            who,
            query,
            forwarded,
            cert: None,
        }
    }

    /// The same Connect, with the `X-Client-Cert-*` headers of `cert`.
    pub fn with_cert(self, cert: Option<&'a ClientCert>) -> Connect<'a> {
        Connect { cert, ..self }
    }

    /// The headers, in wire order.
    pub fn headers(&self) -> Vec<(&str, &[u8])> {
        let mut headers: Vec<(&str, &[u8])> = Vec::with_capacity(6 + self.forwarded.len());
        headers.push(("X-Connection-Id", self.who.conn_id.as_bytes()));
        headers.push(("X-Forwarded-For", self.who.peer.as_bytes()));
        headers.push(("X-Forwarded-Proto", self.who.proto.as_bytes()));
        if let Some(cert) = self.cert {
            for (name, value) in [
                ("X-Client-Cert-Subject", &cert.subject),
                ("X-Client-Cert-CN", &cert.cn),
                ("X-Client-Cert-Fingerprint", &cert.fingerprint),
            ] {
                if let Some(value) = value {
                    headers.push((name, value.as_bytes()));
                }
            }
        }
        headers.extend(self.forwarded.iter().copied());
        headers
    }

    /// The request, with `headers` from [`Connect::headers`].
    pub fn request<'r>(&'r self, headers: &'r [(&'r str, &'r [u8])]) -> ApiRequest<'r> {
        ApiRequest {
            method: ApiMethod::Get,
            client_id: self.who.client,
            query: self.query,
            headers,
            body: b"",
        }
    }
}

/// Message: `POST {api}{ClientId}` with the message as body.
pub struct Message<'a> {
    who: Who<'a>,
    body: &'a [u8],
    binary: bool,
}

impl<'a> Message<'a> {
    /// A text (or, with `binary`, binary) message of `who`.
    pub fn new(who: Who<'a>, body: &'a [u8], binary: bool) -> Message<'a> {
        Message { who, body, binary }
    }

    /// The headers, in wire order.
    pub fn headers(&self) -> [(&str, &[u8]); 4] {
        [
            ("Content-Type", if self.binary { OCTETS } else { TEXT }),
            ("X-Connection-Id", self.who.conn_id.as_bytes()),
            ("X-Forwarded-For", self.who.peer.as_bytes()),
            ("X-Forwarded-Proto", self.who.proto.as_bytes()),
        ]
    }

    /// The request, with `headers` from [`Message::headers`].
    pub fn request<'r>(&'r self, headers: &'r [(&'r str, &'r [u8])]) -> ApiRequest<'r> {
        ApiRequest {
            method: ApiMethod::Post,
            client_id: self.who.client,
            query: None,
            headers,
            body: self.body,
        }
    }
}

/// Disconnect: `DELETE {api}{ClientId}` with the close reason as body and `X-Close-Code`.
pub struct Disconnect<'a> {
    who: Who<'a>,
    code: [u8; 5],
    code_len: usize,
    reason: &'a str,
}

impl<'a> Disconnect<'a> {
    /// The Disconnect of `who`, closed with `code` and `reason`.
    pub fn new(who: Who<'a>, code: u16, reason: &'a str) -> Disconnect<'a> {
        let mut text = [0u8; 5];
        let mut n = code;
        let mut len = 0;
        loop {
            text[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        text[..len].reverse();
        Disconnect {
            who,
            code: text,
            code_len: len,
            reason,
        }
    }

    /// The headers, in wire order.
    pub fn headers(&self) -> [(&str, &[u8]); 5] {
        [
            ("Content-Type", TEXT),
            ("X-Close-Code", &self.code[..self.code_len]),
            ("X-Connection-Id", self.who.conn_id.as_bytes()),
            ("X-Forwarded-For", self.who.peer.as_bytes()),
            ("X-Forwarded-Proto", self.who.proto.as_bytes()),
        ]
    }

    /// The request, with `headers` from [`Disconnect::headers`].
    pub fn request<'r>(&'r self, headers: &'r [(&'r str, &'r [u8])]) -> ApiRequest<'r> {
        ApiRequest {
            method: ApiMethod::Delete,
            client_id: self.who.client,
            query: None,
            headers,
            body: self.reason.as_bytes(),
        }
    }
}

/// An answer of the API server, read under the contract.
#[derive(Debug)]
pub struct EventAnswer {
    answer: Answer,
}

/// How a Connect was answered.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnectVerdict {
    /// `2xx` with body `ok`: answer `101`, with the subprotocol the API server chose.
    Accept {
        /// The answer's `Sec-WebSocket-Protocol`, trimmed, if not empty.
        subprotocol: Option<String>,
    },
    /// Not `2xx`.
    Status(u16),
    /// `2xx` with another body (its first 200 bytes, for the log).
    Refused(String),
}

/// The groups an answer asks to join and leave (joins apply first).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GroupChanges<'a> {
    /// Names from `X-Group-Join`, in order.
    pub joins: Vec<&'a [u8]>,
    /// Names from `X-Group-Leave`, in order.
    pub leaves: Vec<&'a [u8]>,
}

impl GroupChanges<'_> {
    /// Neither joins nor leaves.
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }
}

/// A close asked for by `X-Close-Code` / `X-Close-Reason`.
#[derive(Debug, PartialEq, Eq)]
pub struct CloseAsked {
    /// The code, or the header's text if it is no number.
    pub code: Result<u16, String>,
    /// The reason (empty if none was given).
    pub reason: String,
}

/// What goes back to the client for a Message's answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// The answer body.
    pub body: Vec<u8>,
    /// Sent as a binary frame.
    pub binary: bool,
    /// Binary only because a text frame cannot carry it (not UTF-8): worth a log line.
    pub not_utf8: bool,
}

impl EventAnswer {
    /// Reads `answer` under the contract.
    pub fn new(answer: Answer) -> EventAnswer {
        EventAnswer { answer }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.answer.status
    }

    /// `2xx`.
    pub fn is_success(&self) -> bool {
        is_success(self.answer.status)
    }

    /// The answer's `Content-Type` asks for a binary frame.
    pub fn is_binary(&self) -> bool {
        is_binary(self.answer.header("content-type"))
    }

    /// The answer to a Connect.
    pub fn connect(&self) -> ConnectVerdict {
        let answer = &self.answer;
        if !self.is_success() {
            return ConnectVerdict::Status(answer.status);
        }
        if answer.body != b"ok" {
            return ConnectVerdict::Refused(
                String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)]).into_owned(),
            );
        }
        ConnectVerdict::Accept {
            subprotocol: answer
                .header("sec-websocket-protocol")
                .and_then(|p| std::str::from_utf8(p).ok())
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty()),
        }
    }

    /// The answer to a Message: what goes back to the client (`None` for an empty body).
    /// Call it only for a [successful](EventAnswer::is_success) answer.
    pub fn reply(self) -> Option<Reply> {
        if self.answer.body.is_empty() {
            return None;
        }
        let octets = self.is_binary();
        // A text frame must carry UTF-8: anything else goes out as binary rather than
        // make the client fail the connection with 1007.
        let not_utf8 = !octets && std::str::from_utf8(&self.answer.body).is_err();
        Some(Reply {
            body: self.answer.body,
            binary: octets || not_utf8,
            not_utf8,
        })
    }

    /// The group names of its `X-Group-Join` and `X-Group-Leave` headers, as sent
    /// (comma-separated, either header may repeat); empty for a non-`2xx` answer,
    /// whose headers the contract ignores.
    pub fn group_changes(&self) -> GroupChanges<'_> {
        let names = |header: &str| -> Vec<&[u8]> {
            if !self.is_success() {
                return Vec::new();
            }
            self.answer
                .headers
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case(header))
                .flat_map(|(_, value)| value.split(|&b| b == b','))
                .map(<[u8]>::trim_ascii)
                .filter(|name| !name.is_empty())
                .collect()
        };
        GroupChanges {
            joins: names("x-group-join"),
            leaves: names("x-group-leave"),
        }
    }

    /// The close a `2xx` Message answer asks for with `X-Close-Code` (and
    /// `X-Close-Reason`), if any.
    pub fn close(&self) -> Option<CloseAsked> {
        if !self.is_success() {
            return None;
        }
        let code = self.answer.header("x-close-code")?;
        let reason = self
            .answer
            .header("x-close-reason")
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .unwrap_or_default();
        let code = std::str::from_utf8(code.trim_ascii())
            .ok()
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| String::from_utf8_lossy(code).into_owned());
        Some(CloseAsked { code, reason })
    }

    /// The answer to a Disconnect ends its retries (anything below 500: the API server
    /// heard it, even if it did not like it).
    pub fn settles_disconnect(&self) -> bool {
        self.answer.status < 500
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::request::encode_request;

    fn wire(request: &ApiRequest<'_>) -> String {
        let mut path = format!("/{}", request.client_id);
        if let Some(query) = request.query {
            path.push('?');
            path.push_str(query);
        }
        let mut out = Vec::new();
        encode_request(
            &mut out,
            request.method,
            "api",
            &path,
            request.headers,
            request.body,
        );
        String::from_utf8(out).unwrap()
    }

    fn who() -> Who<'static> {
        Who::new("alice", "c-1", "10.0.0.7".parse().unwrap(), "http")
    }

    fn answer(status: u16, headers: &[(&str, &[u8])], body: &[u8]) -> EventAnswer {
        EventAnswer::new(Answer {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
            body: body.to_vec(),
            keep_alive: true,
        })
    }

    #[test]
    fn connect_forwards_the_listed_headers_in_order() {
        let upgrade: [(&str, &[u8]); 3] = [
            ("origin", b"https://app"),
            ("cookie", b"s=1"),
            ("x-other", b"no"),
        ];
        let connect = Connect::new(who(), Some("v=2"), |name| {
            upgrade.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        });
        let headers = connect.headers();
        assert_eq!(
            wire(&connect.request(&headers)),
            "GET /alice?v=2 HTTP/1.1\r\nHost: api\r\nX-Connection-Id: c-1\r\n\
             X-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\nCookie: s=1\r\n\
             Origin: https://app\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn connect_over_tls_says_https_and_what_the_certificate_says() {
        let cert = ClientCert {
            subject: None,
            cn: Some("charger-17".into()),
            fingerprint: Some("ab01".into()),
        };
        let who = Who::new("cp", "c-2", "10.0.0.8".parse().unwrap(), "https");
        let connect = Connect::new(who, None, |_| None).with_cert(Some(&cert));
        let headers = connect.headers();
        assert_eq!(
            wire(&connect.request(&headers)),
            "GET /cp HTTP/1.1\r\nHost: api\r\nX-Connection-Id: c-2\r\n\
             X-Forwarded-For: 10.0.0.8\r\nX-Forwarded-Proto: https\r\n\
             X-Client-Cert-CN: charger-17\r\nX-Client-Cert-Fingerprint: ab01\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let d = Disconnect::new(who, 1000, "");
        assert_eq!(d.headers()[4], ("X-Forwarded-Proto", &b"https"[..]));
        assert_eq!(Message::new(who, b"", false).headers()[3].1, b"https");
    }

    #[test]
    fn message_says_text_or_binary() {
        let text = Message::new(who(), b"hi", false);
        let headers = text.headers();
        assert_eq!(
            wire(&text.request(&headers)),
            "POST /alice HTTP/1.1\r\nHost: api\r\nContent-Type: text/plain; charset=utf-8\r\n\
             X-Connection-Id: c-1\r\nX-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n\
             Content-Length: 2\r\n\r\nhi"
        );
        let binary = Message::new(who(), b"\x00", true);
        assert_eq!(binary.headers()[0], ("Content-Type", OCTETS));
    }

    #[test]
    fn disconnect_carries_code_and_reason() {
        for (code, text) in [
            (1000u16, "1000"),
            (4000, "4000"),
            (7, "7"),
            (65535, "65535"),
        ] {
            let d = Disconnect::new(who(), code, "bye");
            assert_eq!(d.headers()[1], ("X-Close-Code", text.as_bytes()));
        }
        let d = Disconnect::new(who(), 1006, "EOF");
        let headers = d.headers();
        assert_eq!(
            wire(&d.request(&headers)),
            "DELETE /alice HTTP/1.1\r\nHost: api\r\nContent-Type: text/plain; charset=utf-8\r\n\
             X-Close-Code: 1006\r\nX-Connection-Id: c-1\r\nX-Forwarded-For: 10.0.0.7\r\n\
             X-Forwarded-Proto: http\r\nContent-Length: 3\r\n\r\nEOF"
        );
    }

    #[test]
    fn connect_answers() {
        assert_eq!(
            answer(200, &[], b"ok").connect(),
            ConnectVerdict::Accept { subprotocol: None }
        );
        assert_eq!(
            answer(204, &[("sec-websocket-protocol", b" ocpp1.6 ")], b"ok").connect(),
            ConnectVerdict::Accept {
                subprotocol: Some("ocpp1.6".into())
            }
        );
        assert_eq!(
            answer(200, &[("sec-websocket-protocol", b"  ")], b"ok").connect(),
            ConnectVerdict::Accept { subprotocol: None }
        );
        assert_eq!(
            answer(200, &[], b"no").connect(),
            ConnectVerdict::Refused("no".into())
        );
        assert_eq!(
            answer(401, &[], b"ok").connect(),
            ConnectVerdict::Status(401)
        );
        assert_eq!(
            answer(302, &[], b"ok").connect(),
            ConnectVerdict::Status(302)
        );
    }

    #[test]
    fn message_answers() {
        assert_eq!(answer(200, &[], b"").reply(), None);
        assert_eq!(
            answer(200, &[], b"hi").reply(),
            Some(Reply {
                body: b"hi".to_vec(),
                binary: false,
                not_utf8: false
            })
        );
        assert_eq!(
            answer(200, &[("content-type", OCTETS)], b"hi").reply(),
            Some(Reply {
                body: b"hi".to_vec(),
                binary: true,
                not_utf8: false
            })
        );
        assert_eq!(
            answer(200, &[], b"\xff").reply(),
            Some(Reply {
                body: b"\xff".to_vec(),
                binary: true,
                not_utf8: true
            })
        );
        assert!(answer(299, &[], b"").is_success());
        assert!(!answer(300, &[], b"").is_success());
    }

    #[test]
    fn membership_headers_repeat_and_split_on_commas() {
        let a = answer(
            200,
            &[
                ("x-group-join", b"room-1, lobby"),
                ("x-group-join", b" ,news"),
                ("x-group-leave", b"old"),
            ],
            b"",
        );
        let m = a.group_changes();
        assert_eq!(m.joins, [&b"room-1"[..], b"lobby", b"news"]);
        assert_eq!(m.leaves, [&b"old"[..]]);
        assert!(!m.is_empty());
        assert!(answer(200, &[], b"").group_changes().is_empty());
        // A non-2xx answer's headers are ignored.
        let refused = answer(403, &[("x-group-join", b"room")], b"");
        assert!(refused.group_changes().is_empty());
    }

    #[test]
    fn a_close_asked_for_in_the_answer() {
        let a = answer(
            200,
            &[("x-close-code", b"4001"), ("x-close-reason", b"bye now")],
            b"",
        );
        assert_eq!(
            a.close(),
            Some(CloseAsked {
                code: Ok(4001),
                reason: "bye now".into()
            })
        );
        assert_eq!(
            answer(200, &[("x-close-code", b" 1000 ")], b"").close(),
            Some(CloseAsked {
                code: Ok(1000),
                reason: String::new()
            })
        );
        assert_eq!(
            answer(200, &[("x-close-code", b"soon")], b"").close(),
            Some(CloseAsked {
                code: Err("soon".into()),
                reason: String::new()
            })
        );
        assert_eq!(answer(200, &[], b"").close(), None);
        assert_eq!(answer(500, &[("x-close-code", b"1000")], b"").close(), None);
    }

    #[test]
    fn disconnect_answers_below_500_settle() {
        assert!(answer(200, &[], b"ok").settles_disconnect());
        assert!(answer(404, &[], b"").settles_disconnect());
        assert!(!answer(500, &[], b"").settles_disconnect());
        assert!(!answer(503, &[], b"").settles_disconnect());
    }

    #[test]
    fn binary_content_types() {
        assert!(is_binary(Some(b"application/octet-stream")));
        assert!(is_binary(Some(b"application/octet-stream; x=1")));
        assert!(!is_binary(Some(b"text/plain")));
        assert!(!is_binary(None));
    }
}
