//! A WebSocket upgrade request, checked once: its head, the ClientId of its path and the
//! `Sec-WebSocket-Accept` key. Made on the shard that read the request and carried with
//! the socket to the shard that owns the ClientId, which uses it as it is.

use super::request::{RequestError, RequestHead};
use crate::client_id::ClientId;

/// A checked upgrade request (RFC 6455 4.2.1) naming a valid ClientId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The request head (its headers are what the Connect forwards).
    pub head: RequestHead,
    /// The first path segment.
    pub client: ClientId,
    /// The `Sec-WebSocket-Accept` value of the `101`.
    pub accept: String,
}

impl Upgrade {
    /// Checks `head` as an upgrade naming a ClientId.
    pub fn new(head: RequestHead) -> Result<Upgrade, RequestError> {
        let client = head.client_id()?;
        let accept = head.websocket_accept()?;
        Ok(Upgrade {
            head,
            client,
            accept,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse;

    fn upgrade(raw: &[u8]) -> Result<Upgrade, RequestError> {
        let (_, head) = parse(raw, 8192).unwrap().unwrap();
        Upgrade::new(head)
    }

    #[test]
    fn keeps_client_accept_and_head() {
        // RFC 6455 1.3's key and accept value.
        let u = upgrade(
            b"GET /charger-17?v=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\nCookie: s=1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(u.client.as_str(), "charger-17");
        assert_eq!(u.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(u.head.query.as_deref(), Some("v=1"));
        assert_eq!(u.head.header("cookie"), Some(&b"s=1"[..]));
    }

    #[test]
    fn the_client_id_is_checked_before_the_upgrade() {
        assert!(matches!(
            upgrade(b"GET /a/b HTTP/1.1\r\nHost: h\r\n\r\n"),
            Err(RequestError::BadClientId(_))
        ));
        assert!(matches!(
            upgrade(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"),
            Err(RequestError::NotUpgrade(_))
        ));
    }
}
