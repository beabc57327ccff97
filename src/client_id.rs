//! Owns `ClientId`: the validated identifier of one WebSocket client (1–128 bytes of `A–Z a–z 0–9 . _ ~ -`).
//!
//! The allowed set is exactly RFC 3986's "unreserved" characters, so an id can be put into a URL
//! path segment, a header value or a log line without any escaping.

use std::fmt;

/// Longest accepted client id, in bytes.
pub const MAX_LEN: usize = 128;

/// A validated client id. Construct it only through [`ClientId::parse`].
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ClientId(Box<str>);

/// Why a byte string is not a valid [`ClientId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientIdError {
    #[error("client id is empty")]
    Empty,
    #[error("client id is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("client id contains forbidden byte 0x{0:02x} (allowed: A-Z a-z 0-9 . _ ~ -)")]
    BadByte(u8),
}

/// True for the bytes allowed in a client id (RFC 3986 "unreserved").
#[inline]
fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')
}

impl ClientId {
    /// Validates `s` and copies it into a new `ClientId`.
    pub fn parse(s: &[u8]) -> Result<ClientId, ClientIdError> {
        if s.is_empty() {
            return Err(ClientIdError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(ClientIdError::TooLong);
        }
        if let Some(&b) = s.iter().find(|&&b| !allowed(b)) {
            return Err(ClientIdError::BadByte(b));
        }
        // Every byte is ASCII, so this conversion cannot fail; map the impossible error anyway
        // rather than unwrap.
        let text = std::str::from_utf8(s).map_err(|_| ClientIdError::BadByte(0x80))?;
        Ok(ClientId(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        assert_eq!(ClientId::parse(b""), Err(ClientIdError::Empty));
        assert_eq!(ClientId::parse(b"a").unwrap().as_str(), "a");
        let max = [b'x'; MAX_LEN];
        assert_eq!(ClientId::parse(&max).unwrap().as_bytes(), &max[..]);
        let over = [b'x'; MAX_LEN + 1];
        assert_eq!(ClientId::parse(&over), Err(ClientIdError::TooLong));
    }

    #[test]
    fn too_long_wins_over_bad_byte() {
        let over = [b'/'; MAX_LEN + 1];
        assert_eq!(ClientId::parse(&over), Err(ClientIdError::TooLong));
    }

    #[test]
    fn every_allowed_class() {
        let all = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";
        let id = ClientId::parse(all).unwrap();
        assert_eq!(id.as_bytes(), &all[..]);
        for &b in all.iter() {
            assert!(
                ClientId::parse(&[b]).is_ok(),
                "byte {b:#04x} should be allowed"
            );
        }
        for id in [&b"user-42"[..], b"a.b", b"a_b", b"~home", b"Z9"] {
            assert!(ClientId::parse(id).is_ok());
        }
    }

    #[test]
    fn forbidden_bytes() {
        for b in [b'/', b'%', b' ', b'?', b'#', 0x00, 0x7f, 0x80, 0xff] {
            assert_eq!(
                ClientId::parse(&[b'o', b'k', b]),
                Err(ClientIdError::BadByte(b)),
                "byte {b:#04x}"
            );
        }
    }

    #[test]
    fn exactly_the_unreserved_set_is_allowed() {
        let count = (0u8..=255)
            .filter(|&b| ClientId::parse(&[b]).is_ok())
            .count();
        assert_eq!(count, 26 + 26 + 10 + 4);
    }

    #[test]
    fn display_and_errors() {
        let id = ClientId::parse(b"abc-1").unwrap();
        assert_eq!(id.to_string(), "abc-1");
        assert_eq!(format!("{id}"), id.as_str());
        assert_eq!(ClientIdError::Empty.to_string(), "client id is empty");
        assert_eq!(
            ClientIdError::TooLong.to_string(),
            "client id is longer than 128 bytes"
        );
        assert!(ClientIdError::BadByte(b'/').to_string().contains("0x2f"));
    }
}
