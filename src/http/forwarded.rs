//! The `X-Forwarded-For` value the API server gets with every request: the client's
//! address as text, written into a stack buffer (IPv4 by hand) so that a message costs
//! no allocation and no formatting machinery for it.

use std::io::Write;
use std::net::IpAddr;

/// Longest text of an IPv6 address (`ffff:ffff:…` with an embedded IPv4 tail).
const MAX: usize = 45;

/// An IP address as text, without allocating.
#[derive(Clone, Copy)]
pub struct IpText {
    buf: [u8; MAX],
    len: u8,
}

impl IpText {
    /// `ip` as `std` writes it (`127.0.0.1`, `::1`).
    pub fn new(ip: IpAddr) -> Self {
        let mut text = IpText {
            buf: [0; MAX],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                let mut at = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.buf[at] = b'.';
                        at += 1;
                    }
                    if octet >= 100 {
                        text.buf[at] = b'0' + octet / 100;
                        at += 1;
                    }
                    if octet >= 10 {
                        text.buf[at] = b'0' + octet / 10 % 10;
                        at += 1;
                    }
                    text.buf[at] = b'0' + octet % 10;
                    at += 1;
                }
                text.len = at as u8;
            }
            IpAddr::V6(v6) => {
                let mut cursor = &mut text.buf[..];
                // MAX holds the longest IPv6 text, so this cannot run out of room.
                let _ = write!(cursor, "{v6}");
                text.len = (MAX - cursor.len()) as u8;
            }
        }
        text
    }

    /// The text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_std_for_v4_and_v6() {
        let cases = [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "1.2.3.4",
            "192.168.9.99",
            "::1",
            "::",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.168.100.200",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        for case in cases {
            let ip: IpAddr = case.parse().unwrap();
            assert_eq!(
                std::str::from_utf8(IpText::new(ip).as_bytes()).unwrap(),
                ip.to_string(),
                "{case}"
            );
        }
    }

    #[test]
    fn every_v4_octet_matches_std() {
        for octet in 0..=255u8 {
            let ip = IpAddr::from([octet, 0, 255, octet]);
            assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }
}
