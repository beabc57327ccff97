//! The gateway's errors, each knowing which side failed, and the one place where an
//! error becomes the HTTP status a client sees.

use std::io;

use crate::api::ApiError;
use crate::http::request::RequestError;

/// Which side of the gateway an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The WebSocket client (or a control caller): bad request, slow, gone.
    Client,
    /// The API server: refused, broke, too slow, said no.
    Upstream,
    /// The gateway itself: stopping, full, a bug.
    Internal,
}

/// Everything that can end a handshake or a control request early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request head was malformed, too large or not an upgrade.
    #[error("bad request: {0}")]
    Request(#[from] RequestError),
    /// `--proxy-protocol` is on and the connection did not start with a valid header.
    #[error("PROXY protocol: {0}")]
    Proxy(#[from] crate::http::proxy::ProxyError),
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
    /// A request body over the allowed size.
    #[error("request body too large")]
    BodyTooLarge,
    /// The owning shard could not be reached.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// Who failed.
    pub fn side(&self) -> Side {
        match self {
            Error::Request(_) | Error::HandshakeTimeout | Error::ClientIo(_) => Side::Client,
            Error::Proxy(_) => Side::Client,
            Error::BodyTooLarge => Side::Client,
            Error::Api(_) | Error::ApiStatus(_) | Error::ApiRefused(_) => Side::Upstream,
            Error::Draining | Error::Full | Error::Internal(_) => Side::Internal,
        }
    }

    /// The HTTP status the client gets for this error (SPEC "Public listener").
    pub fn status(&self) -> u16 {
        match self {
            Error::Request(e) => e.status(),
            Error::HandshakeTimeout => 408,
            Error::ClientIo(_) | Error::Proxy(_) => 400,
            Error::BodyTooLarge => 413,
            Error::Api(ApiError::Timeout(_)) => 504,
            Error::Api(ApiError::Closed) => 503,
            Error::Api(_) => 502,
            Error::ApiStatus(status) if (400..500).contains(status) => *status,
            Error::ApiStatus(_) => 502,
            Error::ApiRefused(_) => 403,
            Error::Draining | Error::Full => 503,
            Error::Internal(_) => 500,
        }
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
            (
                Error::Request(RequestError::HeadTooLarge),
                431,
                Side::Client,
            ),
            (
                Error::Request(RequestError::NotUpgrade("upgrade")),
                400,
                Side::Client,
            ),
            (Error::HandshakeTimeout, 408, Side::Client),
            (Error::Draining, 503, Side::Internal),
            (Error::Full, 503, Side::Internal),
        ];
        for (error, status, side) in cases {
            assert_eq!(error.status(), status, "{error}");
            assert_eq!(error.side(), side, "{error}");
        }
    }
}
