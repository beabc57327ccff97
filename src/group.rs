//! Owns `GroupName`: the validated name of a group of clients (the ClientId's form,
//! 1–128 bytes of `A–Z a–z 0–9 . _ ~ -`), and [`Audience`], a group or `*`, every
//! connected client.

use std::fmt;

use crate::client_id::{ClientId, ClientIdError};

/// The name that means every connected client; no client can join or leave it.
pub const EVERYONE: &str = "*";

/// A validated group name. Construct it only through [`GroupName::parse`].
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct GroupName(Box<str>);

/// Why a byte string is not a group name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupNameError {
    #[error("group name is empty")]
    Empty,
    #[error("group name is longer than 128 bytes")]
    TooLong,
    #[error("group name contains forbidden byte 0x{0:02x} (allowed: A-Z a-z 0-9 . _ ~ -)")]
    BadByte(u8),
    #[error("'*' is every client: it cannot be joined or left")]
    Everyone,
}

impl GroupName {
    /// Validates `s` as a group one can join (`*` is not one).
    pub fn parse(s: &[u8]) -> Result<GroupName, GroupNameError> {
        if s == EVERYONE.as_bytes() {
            return Err(GroupNameError::Everyone);
        }
        match ClientId::parse(s) {
            Ok(id) => Ok(GroupName(id.as_str().into())),
            Err(ClientIdError::Empty) => Err(GroupNameError::Empty),
            Err(ClientIdError::TooLong) => Err(GroupNameError::TooLong),
            Err(ClientIdError::BadByte(b)) => Err(GroupNameError::BadByte(b)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a broadcast or a count is for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Audience {
    /// `*`: every connected client.
    Everyone,
    /// The members of one group.
    Group(GroupName),
}

impl Audience {
    /// `*` or a group name.
    pub fn parse(s: &[u8]) -> Result<Audience, GroupNameError> {
        match GroupName::parse(s) {
            Ok(name) => Ok(Audience::Group(name)),
            Err(GroupNameError::Everyone) => Ok(Audience::Everyone),
            Err(e) => Err(e),
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Audience::Everyone => f.write_str(EVERYONE),
            Audience::Group(name) => name.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_the_client_id_form_and_star_is_everyone() {
        assert_eq!(
            GroupName::parse(b"room-1.a_b~c").unwrap().as_str(),
            "room-1.a_b~c"
        );
        assert_eq!(GroupName::parse(b""), Err(GroupNameError::Empty));
        assert_eq!(GroupName::parse(&[b'g'; 129]), Err(GroupNameError::TooLong));
        assert!(GroupName::parse(&[b'g'; 128]).is_ok());
        assert_eq!(GroupName::parse(b"a b"), Err(GroupNameError::BadByte(b' ')));
        assert_eq!(GroupName::parse(b"a/b"), Err(GroupNameError::BadByte(b'/')));
        assert_eq!(GroupName::parse(b"*"), Err(GroupNameError::Everyone));
        assert_eq!(GroupName::parse(b"**"), Err(GroupNameError::BadByte(b'*')));
        assert_eq!(Audience::parse(b"*"), Ok(Audience::Everyone));
        assert_eq!(
            Audience::parse(b"lobby").map(|a| a.to_string()),
            Ok("lobby".to_string())
        );
        assert!(Audience::parse(b"%41").is_err());
    }
}
