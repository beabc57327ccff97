//! The gateway's errors for a handshake or a control request, each knowing which side
//! failed, and the one place where an error becomes the HTTP status a client sees.
//!
//! Each layer has its own error ([`ReadError`] and [`RequestError`] in `http`,
//! [`ApiError`] in `api`); this one gathers them with the gateway's own refusals, so
//! it sits above those layers and none of them imports it.

use std::io;

use crate::api::ApiError;
use crate::edge::rate::retry_after_secs;
use crate::edge::Refusal;
use crate::group::GroupNameError;
use crate::http::proxy::ProxyError;
use crate::http::read::ReadError;
use crate::http::request::RequestError;
pub use crate::side::Side;

/// Everything that can end a handshake or a control request early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request head was malformed, too large or not an upgrade.
    #[error("bad request: {0}")]
    Request(#[from] RequestError),
    /// `--proxy-protocol` is on and the connection did not start with a valid header.
    #[error("PROXY protocol: {0}")]
    Proxy(#[from] ProxyError),
    /// The client did not send its request head in time.
    #[error("request head not received within the handshake timeout")]
    HandshakeTimeout,
    /// The client's socket failed.
    #[error("client socket: {0}")]
    ClientIo(io::Error),
    /// The API server could not be asked.
    #[error("API server: {0}")]
    Api(#[from] ApiError),
    /// The API server answered the connect request with a non-2xx status.
    #[error("API server answered {0}")]
    ApiStatus(u16),
    /// The API server answered 2xx but not `ok`.
    #[error("API server refused the connection: {0:?}")]
    ApiRefused(String),
    /// The gateway is draining and takes no new connections.
    #[error("gateway is shutting down")]
    Draining,
    /// The shard holds its share of `--max-connections`.
    #[error("--max-connections reached")]
    Full,
    /// A browser upgrade whose `Origin` is not in `--allowed-origins`.
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// A per-address limit refused the connection.
    #[error("{}", match .0 {
        Refusal::TooMany => "--max-connections-per-ip reached".to_string(),
        Refusal::Rate(wait) => format!("--connect-rate-per-ip reached; retry in {wait:?}"),
        Refusal::TableFull => "--max-tracked-ips addresses are tracked already".to_string(),
    })]
    Address(Refusal),
    /// `/readyz`: the gateway takes no new connections now (the reason says why).
    #[error("{0}")]
    NotReady(&'static str),
    /// A request body over the allowed size.
    #[error("request body too large")]
    BodyTooLarge,
    /// A control request without the right `--control-token`.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// No such route, or no such client on its owning shard.
    #[error("not found")]
    NotFound,
    /// A route that exists, with another method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A query parameter of a control request that cannot be used (the reason says why).
    #[error("{0}")]
    BadQuery(String),
    /// A group name that is not one (or `*` where a group must be named).
    #[error("bad group name: {0}")]
    BadGroup(GroupNameError),
    /// The client is in `--max-groups-per-client` groups already.
    #[error("the client is in --max-groups-per-client groups already")]
    TooManyGroups,
    /// The client's outbound queue is over `--max-outbound-bytes`.
    #[error("send queue full")]
    QueueFull,
    /// The owning shard could not be reached or did not answer in time.
    #[error("owning shard did not answer")]
    OwnerSilent,
    /// A state the gateway should never be in.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<ReadError> for Error {
    fn from(error: ReadError) -> Error {
        match error {
            ReadError::Request(e) => Error::Request(e),
            ReadError::Proxy(e) => Error::Proxy(e),
            ReadError::Io(e) => Error::ClientIo(e),
        }
    }
}

impl Error {
    /// Who failed.
    pub fn side(&self) -> Side {
        match self {
            Error::Request(_) | Error::Proxy(_) | Error::HandshakeTimeout | Error::ClientIo(_) => {
                Side::Client
            }
            Error::BodyTooLarge
            | Error::Unauthorized
            | Error::NotFound
            | Error::MethodNotAllowed
            | Error::BadQuery(_)
            | Error::BadGroup(_)
            | Error::TooManyGroups => Side::Client,
            Error::Api(e) => e.side(),
            Error::ApiStatus(_) | Error::ApiRefused(_) => Side::Upstream,
            Error::OriginNotAllowed | Error::Address(Refusal::TooMany | Refusal::Rate(_)) => {
                Side::Client
            }
            Error::Draining
            | Error::Full
            | Error::Address(Refusal::TableFull)
            | Error::NotReady(_)
            | Error::QueueFull
            | Error::OwnerSilent
            | Error::Internal(_) => Side::Internal,
        }
    }

    /// The HTTP status the client gets for this error (SPEC "Public listener" and
    /// "Control listener"). Every status the gateway answers with an error is decided here.
    pub fn status(&self) -> u16 {
        match self {
            Error::Request(e) => match e {
                RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
                RequestError::UnsupportedVersion => 426,
                RequestError::Malformed(_)
                | RequestError::BadClientId(_)
                | RequestError::NotUpgrade(_)
                | RequestError::BadLength => 400,
            },
            Error::HandshakeTimeout => 408,
            Error::ClientIo(_) | Error::Proxy(_) | Error::BadQuery(_) | Error::BadGroup(_) => 400,
            Error::TooManyGroups => 409,
            Error::Unauthorized => 401,
            Error::NotFound => 404,
            Error::MethodNotAllowed => 405,
            Error::BodyTooLarge => 413,
            Error::Api(ApiError::Timeout(_)) => 504,
            Error::Api(ApiError::Closed) => 503,
            Error::Api(_) => 502,
            Error::ApiStatus(status) if (400..500).contains(status) => *status,
            Error::ApiStatus(_) => 502,
            Error::ApiRefused(_) => 403,
            Error::OriginNotAllowed => 403,
            Error::Address(Refusal::TooMany | Refusal::Rate(_)) => 429,
            Error::Address(Refusal::TableFull) => 503,
            Error::Draining | Error::Full | Error::NotReady(_) => 503,
            Error::QueueFull | Error::OwnerSilent => 503,
            Error::Internal(_) => 500,
        }
    }

    /// Headers the error response must carry: RFC 6455 4.4, a 426 names the version we
    /// speak; RFC 6585 4, a 429 for a rate says when to come back.
    pub fn extra_headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Error::Request(RequestError::UnsupportedVersion) => {
                vec![("Sec-WebSocket-Version", "13".into())]
            }
            Error::Address(Refusal::Rate(wait)) => {
                vec![("Retry-After", retry_after_secs(*wait).to_string())]
            }
            _ => Vec::new(),
        }
    }

    /// The `reason` label of `ws2api_refused_total` for a refusal by an edge limit.
    pub fn edge_reason(&self) -> Option<&'static str> {
        match self {
            Error::OriginNotAllowed => Some("origin"),
            Error::Address(Refusal::TooMany) => Some("ip_connections"),
            Error::Address(Refusal::Rate(_)) => Some("ip_rate"),
            Error::Address(Refusal::TableFull) => Some("ip_table_full"),
            _ => None,
        }
    }

    /// True when the peer is gone or does not speak HTTP at all, so nothing is answered.
    pub fn unanswerable(&self) -> bool {
        matches!(self, Error::ClientIo(_) | Error::Proxy(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn statuses_follow_the_contract() {
        let cases: Vec<(Error, u16, Side)> = vec![
            (Error::ApiRefused("ko".into()), 403, Side::Upstream),
            (Error::ApiStatus(401), 401, Side::Upstream),
            (Error::ApiStatus(404), 404, Side::Upstream),
            (Error::ApiStatus(503), 502, Side::Upstream),
            (Error::ApiStatus(302), 502, Side::Upstream),
            (
                Error::Api(ApiError::Connect(io::ErrorKind::ConnectionRefused.into())),
                502,
                Side::Upstream,
            ),
            (
                Error::Api(ApiError::Timeout(Duration::from_secs(1))),
                504,
                Side::Upstream,
            ),
            (Error::Api(ApiError::Closed), 503, Side::Internal),
            (
                Error::Request(RequestError::HeadTooLarge),
                431,
                Side::Client,
            ),
            (
                Error::Request(RequestError::TooManyHeaders),
                431,
                Side::Client,
            ),
            (
                Error::Request(RequestError::NotUpgrade("upgrade")),
                400,
                Side::Client,
            ),
            (
                Error::Request(RequestError::UnsupportedVersion),
                426,
                Side::Client,
            ),
            (Error::Request(RequestError::BadLength), 400, Side::Client),
            (
                Error::Request(RequestError::BadClientId("x".into())),
                400,
                Side::Client,
            ),
            (Error::HandshakeTimeout, 408, Side::Client),
            (Error::Draining, 503, Side::Internal),
            (Error::OriginNotAllowed, 403, Side::Client),
            (Error::Address(Refusal::TooMany), 429, Side::Client),
            (
                Error::Address(Refusal::Rate(std::time::Duration::from_millis(1500))),
                429,
                Side::Client,
            ),
            (Error::Address(Refusal::TableFull), 503, Side::Internal),
            (Error::Full, 503, Side::Internal),
            (Error::NotReady("draining"), 503, Side::Internal),
            (Error::BodyTooLarge, 413, Side::Client),
            (Error::Unauthorized, 401, Side::Client),
            (Error::NotFound, 404, Side::Client),
            (Error::MethodNotAllowed, 405, Side::Client),
            (Error::BadQuery("bad close code".into()), 400, Side::Client),
            (Error::BadGroup(GroupNameError::Everyone), 400, Side::Client),
            (Error::TooManyGroups, 409, Side::Client),
            (Error::QueueFull, 503, Side::Internal),
            (Error::OwnerSilent, 503, Side::Internal),
            (Error::Internal("bug".into()), 500, Side::Internal),
        ];
        for (error, status, side) in cases {
            assert_eq!(error.status(), status, "{error}");
            assert_eq!(error.side(), side, "{error}");
        }
    }

    /// Request heads as they come off the wire, and the status each one's error gets
    /// (every `RequestError` variant, reached the way a client reaches it).
    #[test]
    fn every_request_error_from_the_wire_gets_its_status() {
        use crate::http::request::parse;
        use crate::http::upgrade::Upgrade;
        let upgrade = |raw: &[u8], max: usize| -> Error {
            match parse(raw, max) {
                Err(e) => e.into(),
                Ok(Some((_, head))) => Upgrade::new(head).unwrap_err().into(),
                Ok(None) => panic!("incomplete: {:?}", String::from_utf8_lossy(raw)),
            }
        };
        let mut many = b"GET /a HTTP/1.1\r\n".to_vec();
        for i in 0..65 {
            many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let v8 = b"GET /a HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let cases: Vec<(&[u8], usize, u16)> = vec![
            (b"GET /a HTTP/9.9\r\n\r\n", 8192, 400),
            (
                b"GET /a HTTP/1.1\r\nHost: a-rather-long-host-name\r\n\r\n",
                32,
                431,
            ),
            (&many, 8192, 431),
            (b"GET /a/b HTTP/1.1\r\nHost: h\r\n\r\n", 8192, 400),
            (b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n", 8192, 400),
            (v8, 8192, 426),
            (
                b"POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                8192,
                400,
            ),
        ];
        for (raw, max, status) in cases {
            let error = upgrade(raw, max);
            assert_eq!(error.status(), status, "{error}");
            assert_eq!(error.side(), Side::Client);
            let extra = error.extra_headers();
            match status {
                426 => assert_eq!(extra, [("Sec-WebSocket-Version", "13".to_string())]),
                _ => assert!(extra.is_empty(), "{error}"),
            }
        }
    }

    #[test]
    fn a_rate_refusal_says_when_to_retry() {
        let wait = std::time::Duration::from_millis(1500);
        let extra = Error::Address(Refusal::Rate(wait)).extra_headers();
        assert_eq!(extra, [("Retry-After", "2".to_string())]);
        assert!(Error::Address(Refusal::TooMany).extra_headers().is_empty());
    }

    #[test]
    fn control_bodies_keep_their_words() {
        // The control listener answers `{error}\n`: these texts are what callers read.
        assert_eq!(Error::NotFound.to_string(), "not found");
        assert_eq!(Error::QueueFull.to_string(), "send queue full");
        assert_eq!(
            Error::OwnerSilent.to_string(),
            "owning shard did not answer"
        );
        assert_eq!(
            Error::Unauthorized.to_string(),
            "missing or wrong bearer token"
        );
        assert_eq!(Error::MethodNotAllowed.to_string(), "method not allowed");
    }

    #[test]
    fn read_errors_keep_their_kind() {
        let e = Error::from(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
        assert!(matches!(e, Error::ClientIo(_)) && e.unanswerable());
        let e = Error::from(ReadError::Proxy(ProxyError::NotProxy));
        assert!(matches!(e, Error::Proxy(_)) && e.unanswerable());
        let e = Error::from(ReadError::Request(RequestError::HeadTooLarge));
        assert_eq!(e.status(), 431);
        assert!(!e.unanswerable());
    }
}
