//! Sans-IO PROXY protocol (v1 text and v2 binary) header parsing: the real client address a load balancer such as HAProxy puts in front of a connection.
//!
//! Follows haproxy's `proxy-protocol.txt` (sections 2.1 and 2.2). [`parse`] is called
//! on the bytes read so far; it says "need more", gives the header and its length, or
//! rejects the connection. Every error means the peer is not speaking the PROXY
//! protocol: the caller drops the connection without answering.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What a PROXY header says about the real client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The proxied connection's source and destination.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
        /// v2 only: the client reached the proxy over TLS (an SSL TLV with
        /// `PP2_CLIENT_SSL`), and what the proxy says of its certificate.
        tls: Option<ProxyTls>,
    },
    /// v1 "UNKNOWN", v2 LOCAL command, or a v2 family we do not map to a TCP peer
    /// (UDP, AF_UNIX, UNSPEC): use the socket's own peer address.
    Local,
}

/// What a v2 header's SSL TLV (`PP2_TYPE_SSL`, spec section 2.2.5) says of the
/// client's TLS connection to the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyTls {
    /// The client presented a certificate that the proxy verified (`PP2_CLIENT_CERT_CONN`
    /// or `PP2_CLIENT_CERT_SESS` with `verify` 0), and the proxy sent its common name
    /// (`PP2_SUBTYPE_SSL_CN`, HAProxy's `send-proxy-v2-ssl-cn`). `None` for a name that
    /// is not printable text (it travels in an HTTP header).
    pub client_cn: Option<String>,
}

/// `PP2_TYPE_SSL` and its fields (spec section 2.2.5).
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
const PP2_CLIENT_SSL: u8 = 0x01;
const PP2_CLIENT_CERT_CONN: u8 = 0x02;
const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// The TLVs of `bytes`, in order, as (type, value), up to the first one that does not
/// fit (TLVs are optional: a malformed tail is ignored, not an error).
pub fn tlvs(bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> + '_ {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let (&kind, after) = rest.split_first()?;
        let (len, after) = after.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        let value = after.get(..len)?;
        rest = &after[len..];
        Some((kind, value))
    })
}

/// The TLS facts in the TLVs after a v2 address block: `Some` if an SSL TLV says the
/// client spoke TLS to the proxy.
pub fn tls_of(tlv_bytes: &[u8]) -> Option<ProxyTls> {
    let (_, ssl) = tlvs(tlv_bytes).find(|&(kind, _)| kind == PP2_TYPE_SSL)?;
    let (&client, rest) = ssl.split_first()?;
    let (verify, subs) = rest.split_first_chunk::<4>()?;
    if client & PP2_CLIENT_SSL == 0 {
        return None;
    }
    let verified = client & (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS) != 0
        && u32::from_be_bytes(*verify) == 0;
    let client_cn = if verified {
        tlvs(subs)
            .find(|&(kind, _)| kind == PP2_SUBTYPE_SSL_CN)
            .and_then(|(_, cn)| std::str::from_utf8(cn).ok())
            .filter(|cn| !cn.is_empty() && !cn.chars().any(char::is_control))
            .map(str::to_owned)
    } else {
        None
    };
    Some(ProxyTls { client_cn })
}

/// Why bytes at the start of a connection are not an acceptable PROXY header. All of
/// them drop the connection (no HTTP 400: the peer is not speaking our protocol).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    /// The first bytes cannot start a v1 ("PROXY ") or v2 (signature) header.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// It started like a PROXY header but breaks the spec.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    /// The header is longer than allowed (107 bytes for v1, the caller's `max` for both).
    #[error("PROXY protocol header too long")]
    TooLong,
}

/// Longest v1 header, CRLF included (spec section 2.1).
pub const V1_MAX: usize = 107;

/// Longest possible v2 header: the 16-byte fixed part plus a 16-bit length.
pub const V2_MAX: usize = V2_FIXED + u16::MAX as usize;

/// The v1 header starts with these bytes.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The v2 header starts with these 12 bytes.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// Signature, version/command, family/protocol, and the 2-byte length.
const V2_FIXED: usize = 16;

/// Parses a PROXY protocol v1 or v2 header at the start of `buf`.
///
/// - `Ok(None)`: need more bytes. For a non-empty `buf` this is only returned while
///   `buf.len() < max`, so a caller that reads at most `max` bytes always gets an answer.
/// - `Ok(Some((consumed, header)))`: the header and its length; bytes after it (the
///   HTTP request) are not consumed. `consumed <= max`.
/// - `Err(_)`: drop the connection.
///
/// `max` bounds the whole header: v1 is also bounded by [`V1_MAX`], v2 by [`V2_MAX`];
/// a v2 header declaring more than `max` bytes is `TooLong` as soon as its length is read.
///
/// The version is decided from the first byte: anything that cannot be the start of
/// "PROXY " or of the v2 signature is `NotProxy` at once, so a plain HTTP request on a
/// PROXY-only port is rejected without waiting for more bytes.
pub fn parse(buf: &[u8], max: usize) -> Result<Option<(usize, ProxyHeader)>, ProxyError> {
    if buf.is_empty() {
        Ok(None)
    } else if starts_like(buf, V1_PREFIX) {
        parse_v1(buf, max)
    } else if starts_like(buf, V2_SIGNATURE) {
        parse_v2(buf, max)
    } else {
        Err(ProxyError::NotProxy)
    }
}

/// Whether `buf` and `pattern` agree on their common length.
fn starts_like(buf: &[u8], pattern: &[u8]) -> bool {
    let n = buf.len().min(pattern.len());
    buf[..n] == pattern[..n]
}

/// "Need more bytes", unless `max` bytes are already there without a complete header.
fn need_more(buf: &[u8], max: usize) -> Result<Option<(usize, ProxyHeader)>, ProxyError> {
    if buf.len() >= max {
        Err(ProxyError::TooLong)
    } else {
        Ok(None)
    }
}

fn parse_v1(buf: &[u8], max: usize) -> Result<Option<(usize, ProxyHeader)>, ProxyError> {
    let limit = max.min(V1_MAX);
    let window = &buf[..buf.len().min(limit)];
    for (i, &byte) in window.iter().enumerate() {
        match byte {
            b'\r' => {
                // The line ends here or nowhere: if its CRLF cannot fit, it is too long,
                // whatever follows (so the verdict does not depend on how bytes arrive).
                if i + 2 > limit {
                    return Err(ProxyError::TooLong);
                }
                return match buf.get(i + 1) {
                    Some(b'\n') => {
                        let line = buf
                            .get(V1_PREFIX.len()..i)
                            .ok_or(ProxyError::Malformed("v1 header cut short"))?;
                        parse_v1_line(line).map(|header| Some((i + 2, header)))
                    }
                    Some(_) => Err(ProxyError::Malformed("v1 header has CR without LF")),
                    None => Ok(None),
                };
            }
            b'\n' => return Err(ProxyError::Malformed("v1 header has LF without CR")),
            b' '..=b'~' => {}
            _ => return Err(ProxyError::Malformed("v1 header has a non-printable byte")),
        }
    }
    if window.len() >= limit {
        Err(ProxyError::TooLong)
    } else {
        Ok(None)
    }
}

/// The v1 line between "PROXY " and CRLF: printable ASCII only.
fn parse_v1_line(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let line =
        std::str::from_utf8(line).map_err(|_| ProxyError::Malformed("v1 header is not ASCII"))?;
    let (protocol, rest) = match line.split_once(' ') {
        Some((protocol, rest)) => (protocol, Some(rest)),
        None => (line, None),
    };
    let v6 = match protocol {
        // The receiver must ignore anything after UNKNOWN.
        "UNKNOWN" => return Ok(ProxyHeader::Local),
        "TCP4" => false,
        "TCP6" => true,
        _ => {
            return Err(ProxyError::Malformed(
                "v1 protocol is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let rest = rest.ok_or(ProxyError::Malformed("v1 header lacks addresses and ports"))?;
    let mut fields = rest.split(' ');
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(ProxyError::Malformed(
            "v1 header needs exactly two addresses and two ports, single-spaced",
        ));
    };
    Ok(ProxyHeader::Proxied {
        source: SocketAddr::new(parse_v1_ip(src, v6)?, parse_v1_port(sport)?),
        destination: SocketAddr::new(parse_v1_ip(dst, v6)?, parse_v1_port(dport)?),
        tls: None,
    })
}

fn parse_v1_ip(field: &str, v6: bool) -> Result<IpAddr, ProxyError> {
    if v6 {
        field
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| ProxyError::Malformed("v1 TCP6 address is not IPv6"))
    } else {
        field
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| ProxyError::Malformed("v1 TCP4 address is not dotted-decimal IPv4"))
    }
}

/// A decimal port 0..=65535: digits only, no sign, no leading zero.
fn parse_v1_port(field: &str) -> Result<u16, ProxyError> {
    const BAD: ProxyError = ProxyError::Malformed("v1 port is not a decimal 0..=65535");
    let digits = field.as_bytes();
    if digits.is_empty()
        || digits.len() > 5
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
    {
        return Err(BAD);
    }
    let value = digits
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| BAD)
}

/// What a v2 PROXY command's family/protocol byte carries.
enum V2Family {
    Inet,
    Inet6,
    /// Known but not a TCP peer we use (UDP, AF_UNIX, UNSPEC).
    Ignored,
}

/// The family and the least length its address block needs (spec section 2.2).
fn v2_family(fam: u8) -> Result<(V2Family, usize), ProxyError> {
    match fam {
        0x00 => Ok((V2Family::Ignored, 0)),
        0x11 => Ok((V2Family::Inet, 12)),
        0x12 => Ok((V2Family::Ignored, 12)),
        0x21 => Ok((V2Family::Inet6, 36)),
        0x22 => Ok((V2Family::Ignored, 36)),
        0x31 | 0x32 => Ok((V2Family::Ignored, 216)),
        _ => Err(ProxyError::Malformed(
            "v2 family/protocol byte is not defined",
        )),
    }
}

fn parse_v2(buf: &[u8], max: usize) -> Result<Option<(usize, ProxyHeader)>, ProxyError> {
    let Some(&ver_cmd) = buf.get(12) else {
        return need_more(buf, max);
    };
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version is not 2"));
    }
    let local = match ver_cmd & 0x0f {
        0x0 => true,
        0x1 => false,
        _ => {
            return Err(ProxyError::Malformed(
                "v2 command is neither LOCAL nor PROXY",
            ))
        }
    };
    let Some(&fam) = buf.get(13) else {
        return need_more(buf, max);
    };
    // LOCAL: the family is ignored and the whole block discarded.
    let (family, min_len) = if local {
        (V2Family::Ignored, 0)
    } else {
        v2_family(fam)?
    };
    let Some(&[len_hi, len_lo]) = buf.get(14..V2_FIXED) else {
        return need_more(buf, max);
    };
    let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    if len < min_len {
        return Err(ProxyError::Malformed(
            "v2 length is shorter than the address block",
        ));
    }
    let total = V2_FIXED + len;
    if total > max {
        return Err(ProxyError::TooLong);
    }
    let Some(block) = buf.get(V2_FIXED..total) else {
        return need_more(buf, max);
    };
    // After the addresses come TLVs; only the SSL one is read.
    let header = match family {
        V2Family::Ignored => ProxyHeader::Local,
        V2Family::Inet => {
            let (Some(src), Some(dst), Some(ports)) =
                (block.get(0..4), block.get(4..8), block.get(8..12))
            else {
                return Err(ProxyError::Malformed("v2 IPv4 block cut short"));
            };
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(src).unwrap_or_default());
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(dst).unwrap_or_default());
            v2_proxied(src.into(), dst.into(), ports, &block[12..])
        }
        V2Family::Inet6 => {
            let (Some(src), Some(dst), Some(ports)) =
                (block.get(0..16), block.get(16..32), block.get(32..36))
            else {
                return Err(ProxyError::Malformed("v2 IPv6 block cut short"));
            };
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(src).unwrap_or_default());
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(dst).unwrap_or_default());
            v2_proxied(src.into(), dst.into(), ports, &block[36..])
        }
    };
    Ok(Some((total, header)))
}

/// `ports`: 4 bytes, source then destination port, big-endian; `tlvs` what follows.
fn v2_proxied(src: IpAddr, dst: IpAddr, ports: &[u8], tlvs: &[u8]) -> ProxyHeader {
    let port = |i: usize| match ports.get(i..i + 2) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    };
    ProxyHeader::Proxied {
        source: SocketAddr::new(src, port(0)),
        destination: SocketAddr::new(dst, port(2)),
        tls: tls_of(tlvs),
    }
}

#[cfg(test)]
mod tests {
    /// Found by the `proxy_header` fuzz target: a CR at the last byte that cannot hold a
    /// CRLF gave `Malformed` when the next byte was there and `TooLong` when it was not.
    #[test]
    fn a_cr_with_no_room_for_its_lf_is_too_long_however_the_bytes_arrive() {
        let mut line = b"PROXY ".to_vec();
        line.extend_from_slice(&[b'A'; 100]);
        line.push(b'\r');
        assert_eq!(line.len(), 107);
        assert_eq!(super::parse(&line, 4096), Err(super::ProxyError::TooLong));
        line.push(b'X');
        assert_eq!(super::parse(&line, 4096), Err(super::ProxyError::TooLong));
    }

    use super::*;
    use proptest::prelude::*;

    const MAX: usize = V2_MAX;
    const HTTP: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

    fn proxied(source: &str, destination: &str) -> ProxyHeader {
        ProxyHeader::Proxied {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
            tls: None,
        }
    }

    /// One TLV on the wire.
    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    /// An SSL TLV as HAProxy's `send-proxy-v2-ssl-cn` writes it: client flags, verify,
    /// then the version and (if given) CN sub-TLVs.
    fn ssl_tlv(client: u8, verify: u32, cn: Option<&[u8]>) -> Vec<u8> {
        let mut value = vec![client];
        value.extend_from_slice(&verify.to_be_bytes());
        value.extend(tlv(0x21, b"TLSv1.3"));
        if let Some(cn) = cn {
            value.extend(tlv(0x22, cn));
        }
        tlv(0x20, &value)
    }

    /// A v2 PROXY TCP4 header from 10.1.2.3:5000 to 10.0.0.1:443 with these TLVs.
    fn v2_with_tlvs(tlvs: &[u8]) -> Vec<u8> {
        let mut wire = V2_SIGNATURE.to_vec();
        wire.extend_from_slice(&[0x21, 0x11]);
        wire.extend_from_slice(&u16::try_from(12 + tlvs.len()).unwrap().to_be_bytes());
        wire.extend_from_slice(&[10, 1, 2, 3, 10, 0, 0, 1, 0x13, 0x88, 0x01, 0xbb]);
        wire.extend_from_slice(tlvs);
        wire
    }

    fn tls_from_wire(wire: &[u8]) -> Option<ProxyTls> {
        match parse(wire, MAX) {
            Ok(Some((n, ProxyHeader::Proxied { tls, .. }))) if n == wire.len() => tls,
            other => panic!("not a whole proxied header: {other:?}"),
        }
    }

    #[test]
    fn v2_ssl_tlv_with_a_verified_certificate_gives_its_cn() {
        // ALPN first (0x01), then the SSL TLV: PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN, verify 0.
        let mut tlvs = tlv(0x01, b"http/1.1");
        tlvs.extend(ssl_tlv(0x01 | 0x02, 0, Some(b"charger-17")));
        let tls = tls_from_wire(&v2_with_tlvs(&tlvs));
        assert_eq!(
            tls,
            Some(ProxyTls {
                client_cn: Some("charger-17".into())
            })
        );
        // A certificate of the session (resumed) counts as verified too.
        let tls = tls_from_wire(&v2_with_tlvs(&ssl_tlv(0x01 | 0x04, 0, Some(b"cp-2"))));
        assert_eq!(tls.unwrap().client_cn.as_deref(), Some("cp-2"));
    }

    #[test]
    fn v2_ssl_tlv_without_a_verified_certificate_gives_tls_only() {
        let tls_only = Some(ProxyTls { client_cn: None });
        // No certificate.
        assert_eq!(
            tls_from_wire(&v2_with_tlvs(&ssl_tlv(0x01, 0, None))),
            tls_only
        );
        // A certificate that did not verify (verify != 0): its CN is not believed.
        let wire = v2_with_tlvs(&ssl_tlv(0x01 | 0x02, 1, Some(b"mallory")));
        assert_eq!(tls_from_wire(&wire), tls_only);
        // A CN that cannot travel in a header.
        let wire = v2_with_tlvs(&ssl_tlv(0x01 | 0x02, 0, Some(b"a\r\nX-Evil: 1")));
        assert_eq!(tls_from_wire(&wire), tls_only);
        let wire = v2_with_tlvs(&ssl_tlv(0x01 | 0x02, 0, Some(b"\xff\xfe")));
        assert_eq!(tls_from_wire(&wire), tls_only);
    }

    #[test]
    fn v2_without_an_ssl_tlv_or_with_a_broken_one_is_plain() {
        assert_eq!(tls_from_wire(&v2_with_tlvs(&[])), None);
        assert_eq!(tls_from_wire(&v2_with_tlvs(&tlv(0x01, b"h2"))), None);
        // The client flag without PP2_CLIENT_SSL: not TLS.
        assert_eq!(
            tls_from_wire(&v2_with_tlvs(&ssl_tlv(0x02, 0, Some(b"x")))),
            None
        );
        // An SSL TLV too short for its flags and verify field.
        assert_eq!(
            tls_from_wire(&v2_with_tlvs(&tlv(0x20, &[0x01, 0, 0]))),
            None
        );
        // A TLV whose length runs past the block: it and what follows are ignored.
        let mut tlvs = tlv(0x01, b"h2");
        tlvs.extend_from_slice(&[0x20, 0x00, 0x40, 0x01]);
        assert_eq!(tls_from_wire(&v2_with_tlvs(&tlvs)), None);
        assert_eq!(tlvs_of_count(&tlvs), 1);
    }

    fn tlvs_of_count(bytes: &[u8]) -> usize {
        super::tlvs(bytes).count()
    }

    fn malformed(buf: &[u8]) {
        assert!(
            matches!(parse(buf, MAX), Err(ProxyError::Malformed(_))),
            "{:?} gave {:?}",
            String::from_utf8_lossy(buf),
            parse(buf, MAX)
        );
    }

    /// Every strict prefix needs more bytes; the whole header gives `expected`, also
    /// with an HTTP request behind it, which is left unconsumed.
    fn assert_wire(wire: &[u8], expected: ProxyHeader) {
        for n in 0..wire.len() {
            assert_eq!(parse(&wire[..n], MAX), Ok(None), "prefix of {n} bytes");
        }
        assert_eq!(parse(wire, MAX), Ok(Some((wire.len(), expected.clone()))));
        let mut with_http = wire.to_vec();
        with_http.extend_from_slice(HTTP);
        for n in wire.len()..=with_http.len() {
            assert_eq!(
                parse(&with_http[..n], MAX),
                Ok(Some((wire.len(), expected.clone())))
            );
        }
    }

    // ---- v1 ----

    #[test]
    fn v1_tcp4() {
        assert_wire(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
            proxied("192.168.0.1:56324", "192.168.0.11:443"),
        );
    }

    #[test]
    fn v1_tcp6() {
        assert_wire(
            b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
            proxied("[2001:db8::1]:56324", "[2001:db8::2]:443"),
        );
    }

    #[test]
    fn v1_tcp6_longest_is_104_bytes() {
        let wire = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(wire.len(), 104);
        let all = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
        assert_wire(wire, proxied(all, all));
    }

    #[test]
    fn v1_ports_zero() {
        assert_wire(
            b"PROXY TCP4 0.0.0.0 255.255.255.255 0 0\r\n",
            proxied("0.0.0.0:0", "255.255.255.255:0"),
        );
    }

    #[test]
    fn v1_unknown() {
        assert_wire(b"PROXY UNKNOWN\r\n", ProxyHeader::Local);
    }

    #[test]
    fn v1_unknown_with_rest_is_ignored() {
        assert_wire(
            b"PROXY UNKNOWN 192.168.0.1 192.168.0.11 56324 443\r\n",
            ProxyHeader::Local,
        );
        assert_wire(b"PROXY UNKNOWN  whatever  \r\n", ProxyHeader::Local);
    }

    #[test]
    fn v1_longest_allowed_is_107_bytes() {
        let wire = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(wire.len(), V1_MAX);
        assert_wire(wire, ProxyHeader::Local);
    }

    #[test]
    fn v1_one_byte_over_is_too_long() {
        let wire = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655350\r\n";
        assert_eq!(wire.len(), V1_MAX + 1);
        assert_eq!(parse(wire, MAX), Err(ProxyError::TooLong));
        // The CR arrives as byte 107: its LF could only be byte 108.
        assert_eq!(parse(&wire[..V1_MAX], MAX), Err(ProxyError::TooLong));
        assert_eq!(parse(&wire[..V1_MAX - 1], MAX), Ok(None));
    }

    #[test]
    fn v1_missing_crlf_within_107_bytes() {
        let mut wire = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443".to_vec();
        wire.resize(V1_MAX, b' ');
        assert_eq!(parse(&wire[..V1_MAX - 1], MAX), Ok(None));
        assert_eq!(parse(&wire, MAX), Err(ProxyError::TooLong));
        wire.extend_from_slice(b"\r\n");
        assert_eq!(parse(&wire, MAX), Err(ProxyError::TooLong));
    }

    #[test]
    fn v1_respects_callers_max() {
        let wire = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
        let len = wire.len();
        assert!(matches!(parse(wire, len), Ok(Some((n, _))) if n == len));
        assert_eq!(parse(wire, len - 1), Err(ProxyError::TooLong));
        assert_eq!(parse(&wire[..10], 10), Err(ProxyError::TooLong));
        assert_eq!(parse(&wire[..9], 10), Ok(None));
    }

    #[test]
    fn v1_malformed() {
        // Double space.
        malformed(b"PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n");
        malformed(b"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n");
        malformed(b"PROXY  TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
        // Trailing space, missing or extra field.
        malformed(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n");
        malformed(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n");
        malformed(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 1\r\n");
        malformed(b"PROXY TCP4\r\n");
        malformed(b"PROXY \r\n");
        // Ports.
        malformed(b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n");
        malformed(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 +443\r\n");
        malformed(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 -1\r\n");
        malformed(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 0443\r\n");
        malformed(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 44a\r\n");
        malformed(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 999999\r\n");
        // Address family mismatch or garbage.
        malformed(b"PROXY TCP4 2001:db8::1 192.168.0.11 56324 443\r\n");
        malformed(b"PROXY TCP6 192.168.0.1 2001:db8::2 56324 443\r\n");
        malformed(b"PROXY TCP4 192.168.0.256 192.168.0.11 56324 443\r\n");
        malformed(b"PROXY TCP4 192.168.000.1 192.168.0.11 56324 443\r\n");
        malformed(b"PROXY TCP6 fe80::1%eth0 2001:db8::2 56324 443\r\n");
        // Protocol.
        malformed(b"PROXY UDP4 192.168.0.1 192.168.0.11 56324 443\r\n");
        malformed(b"PROXY tcp4 192.168.0.1 192.168.0.11 56324 443\r\n");
        malformed(b"PROXY UNKNOWNX\r\n");
        // Line ending and bytes, rejected as soon as they arrive.
        malformed(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n");
        malformed(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX");
        malformed(b"PROXY TCP4 192.168.0.1\t192.168.0.11 56324 443\r\n");
        malformed(b"PROXY TCP4 \x00");
        malformed(b"PROXY TCP4 \xc3\xa9");
    }

    // ---- v2 ----

    #[test]
    fn v2_proxy_ipv4() {
        assert_wire(
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\
              \xc0\xa8\x00\x01\xc0\xa8\x00\x0b\xdc\x04\x01\xbb",
            proxied("192.168.0.1:56324", "192.168.0.11:443"),
        );
    }

    #[test]
    fn v2_proxy_ipv6() {
        assert_wire(
            b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24\
              \x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\
              \x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\
              \xdc\x04\x01\xbb",
            proxied("[2001:db8::1]:56324", "[2001:db8::2]:443"),
        );
    }

    #[test]
    fn v2_tlvs_are_consumed() {
        // IPv4 + PP2_TYPE_ALPN "h2" + PP2_TYPE_NOOP with 3 bytes: 12 + 5 + 6 = 23.
        assert_wire(
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x17\
              \x0a\x00\x00\x01\x0a\x00\x00\x02\x30\x39\x00\x50\
              \x01\x00\x02h2\
              \x04\x00\x03\0\0\0",
            proxied("10.0.0.1:12345", "10.0.0.2:80"),
        );
        // IPv6 + PP2_TYPE_AUTHORITY "example.com": 36 + 14 = 50.
        assert_wire(
            b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x32\
              \x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\
              \x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\
              \xdc\x04\x01\xbb\
              \x02\x00\x0bexample.com",
            proxied("[2001:db8::1]:56324", "[2001:db8::2]:443"),
        );
    }

    #[test]
    fn v2_local() {
        assert_wire(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00", ProxyHeader::Local);
        // LOCAL ignores the family (even an undefined one) and discards the block.
        assert_wire(
            b"\r\n\r\n\0\r\nQUIT\n\x20\x11\x00\x0c\
              \xc0\xa8\x00\x01\xc0\xa8\x00\x0b\xdc\x04\x01\xbb",
            ProxyHeader::Local,
        );
        assert_wire(
            b"\r\n\r\n\0\r\nQUIT\n\x20\xff\x00\x02\0\0",
            ProxyHeader::Local,
        );
    }

    #[test]
    fn v2_unspec_udp_unix_are_local() {
        assert_wire(b"\r\n\r\n\0\r\nQUIT\n\x21\x00\x00\x00", ProxyHeader::Local);
        assert_wire(
            b"\r\n\r\n\0\r\nQUIT\n\x21\x12\x00\x0c\
              \xc0\xa8\x00\x01\xc0\xa8\x00\x0b\xdc\x04\x01\xbb",
            ProxyHeader::Local,
        );
        let mut udp6 = b"\r\n\r\n\0\r\nQUIT\n\x21\x22\x00\x24".to_vec();
        udp6.resize(16 + 36, 7);
        assert_wire(&udp6, ProxyHeader::Local);
        for fam in [0x31, 0x32] {
            let mut unix = b"\r\n\r\n\0\r\nQUIT\n\x21".to_vec();
            unix.extend_from_slice(&[fam, 0x00, 0xd8]);
            unix.resize(16 + 216, b'/');
            assert_wire(&unix, ProxyHeader::Local);
        }
    }

    #[test]
    fn v2_malformed() {
        // Version 1 or 3 in the high nibble.
        malformed(b"\r\n\r\n\0\r\nQUIT\n\x11");
        malformed(b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c");
        // Command neither LOCAL nor PROXY.
        malformed(b"\r\n\r\n\0\r\nQUIT\n\x22");
        // Undefined family/protocol under PROXY.
        malformed(b"\r\n\r\n\0\r\nQUIT\n\x21\x13");
        malformed(b"\r\n\r\n\0\r\nQUIT\n\x21\x10");
        malformed(b"\r\n\r\n\0\r\nQUIT\n\x21\x41");
        // Length shorter than the address block.
        malformed(b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0b");
        malformed(b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x0c");
        malformed(b"\r\n\r\n\0\r\nQUIT\n\x21\x12\x00\x00");
        malformed(b"\r\n\r\n\0\r\nQUIT\n\x21\x31\x00\xd7");
    }

    #[test]
    fn v2_respects_callers_max() {
        let wire = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\
                     \xc0\xa8\x00\x01\xc0\xa8\x00\x0b\xdc\x04\x01\xbb";
        assert!(matches!(parse(wire, 28), Ok(Some((28, _)))));
        // Known as soon as the length is read.
        assert_eq!(parse(&wire[..16], 27), Err(ProxyError::TooLong));
        assert_eq!(parse(&wire[..15], 27), Ok(None));
        // A full 64 KiB header is accepted when allowed.
        let mut big = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec();
        big.resize(V2_MAX, 0);
        assert!(matches!(parse(&big, V2_MAX), Ok(Some((V2_MAX, _)))));
        assert_eq!(parse(&big, 1024), Err(ProxyError::TooLong));
        // A max below the fixed part.
        assert_eq!(parse(&wire[..8], 8), Err(ProxyError::TooLong));
    }

    // ---- neither ----

    #[test]
    fn plain_http_is_rejected_at_the_first_byte() {
        assert_eq!(parse(b"G", MAX), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n", MAX), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"\x16\x03\x01", MAX), Err(ProxyError::NotProxy));
    }

    #[test]
    fn diverging_from_either_start_is_rejected_at_once() {
        assert_eq!(parse(b"", MAX), Ok(None));
        assert_eq!(parse(b"P", MAX), Ok(None));
        assert_eq!(parse(b"PROXY", MAX), Ok(None));
        assert_eq!(parse(b"PROXY ", MAX), Ok(None));
        assert_eq!(parse(b"POST", MAX), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"PROXYTCP4", MAX), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"proxy ", MAX), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"\r\n\r\n", MAX), Ok(None));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUIT", MAX), Ok(None));
        assert_eq!(parse(b"\r\n\r\nX", MAX), Err(ProxyError::NotProxy));
        assert_eq!(
            parse(b"\r\n\r\n\0\r\nQUIT\r", MAX),
            Err(ProxyError::NotProxy)
        );
    }

    // ---- properties ----

    /// A valid header on the wire, with what it must parse to.
    fn valid_header() -> impl Strategy<Value = (Vec<u8>, ProxyHeader)> {
        let port = any::<u16>();
        let v1_tcp4 =
            (any::<[u8; 4]>(), any::<[u8; 4]>(), port, port).prop_map(|(s, d, sp, dp)| {
                let (s, d) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
                let wire = format!("PROXY TCP4 {s} {d} {sp} {dp}\r\n").into_bytes();
                let header = ProxyHeader::Proxied {
                    source: SocketAddr::new(s.into(), sp),
                    destination: SocketAddr::new(d.into(), dp),
                    tls: None,
                };
                (wire, header)
            });
        let v1_tcp6 = (any::<u128>(), any::<u128>(), port, port).prop_map(|(s, d, sp, dp)| {
            let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            let wire = format!("PROXY TCP6 {s} {d} {sp} {dp}\r\n").into_bytes();
            let header = ProxyHeader::Proxied {
                source: SocketAddr::new(s.into(), sp),
                destination: SocketAddr::new(d.into(), dp),
                tls: None,
            };
            (wire, header)
        });
        let v1_unknown = proptest::option::of(proptest::collection::vec(b' '..=b'~', 0..=91))
            .prop_map(|rest| {
                let mut wire = b"PROXY UNKNOWN".to_vec();
                if let Some(rest) = rest {
                    wire.push(b' ');
                    wire.extend_from_slice(&rest);
                }
                wire.extend_from_slice(b"\r\n");
                (wire, ProxyHeader::Local)
            });
        let tlvs = || proptest::collection::vec(any::<u8>(), 0..80);
        let v2_fixed = |ver_cmd: u8, fam: u8, len: usize| {
            let mut wire = V2_SIGNATURE.to_vec();
            wire.extend_from_slice(&[ver_cmd, fam]);
            wire.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
            wire
        };
        let v2_inet = (any::<[u8; 4]>(), any::<[u8; 4]>(), port, port, tlvs()).prop_map(
            move |(s, d, sp, dp, tlv)| {
                let mut wire = v2_fixed(0x21, 0x11, 12 + tlv.len());
                for part in [&s[..], &d[..], &sp.to_be_bytes(), &dp.to_be_bytes(), &tlv] {
                    wire.extend_from_slice(part);
                }
                let header = ProxyHeader::Proxied {
                    source: SocketAddr::new(Ipv4Addr::from(s).into(), sp),
                    destination: SocketAddr::new(Ipv4Addr::from(d).into(), dp),
                    tls: tls_of(&tlv),
                };
                (wire, header)
            },
        );
        let v2_inet6 = (any::<[u8; 16]>(), any::<[u8; 16]>(), port, port, tlvs()).prop_map(
            move |(s, d, sp, dp, tlv)| {
                let mut wire = v2_fixed(0x21, 0x21, 36 + tlv.len());
                for part in [&s[..], &d[..], &sp.to_be_bytes(), &dp.to_be_bytes(), &tlv] {
                    wire.extend_from_slice(part);
                }
                let header = ProxyHeader::Proxied {
                    source: SocketAddr::new(Ipv6Addr::from(s).into(), sp),
                    destination: SocketAddr::new(Ipv6Addr::from(d).into(), dp),
                    tls: tls_of(&tlv),
                };
                (wire, header)
            },
        );
        let v2_local = (any::<u8>(), tlvs()).prop_map(move |(fam, block)| {
            let mut wire = v2_fixed(0x20, fam, block.len());
            wire.extend_from_slice(&block);
            (wire, ProxyHeader::Local)
        });
        let v2_ignored = (
            prop::sample::select(vec![
                (0x00u8, 0usize),
                (0x12, 12),
                (0x22, 36),
                (0x31, 216),
                (0x32, 216),
            ]),
            tlvs(),
        )
            .prop_map(move |((fam, min), extra)| {
                let mut wire = v2_fixed(0x21, fam, min + extra.len());
                wire.resize(wire.len() + min, 0xaa);
                wire.extend_from_slice(&extra);
                (wire, ProxyHeader::Local)
            });
        prop_oneof![v1_tcp4, v1_tcp6, v1_unknown, v2_inet, v2_inet6, v2_local, v2_ignored]
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            start in prop::sample::select(vec![&b""[..], V1_PREFIX, V2_SIGNATURE]),
            tail in proptest::collection::vec(any::<u8>(), 0..300),
            max in prop_oneof![0usize..400, Just(V2_MAX), Just(usize::MAX)],
        ) {
            let mut buf = start.to_vec();
            buf.extend_from_slice(&tail);
            match parse(&buf, max) {
                Ok(None) => prop_assert!(buf.is_empty() || buf.len() < max),
                Ok(Some((consumed, _))) => {
                    prop_assert!(consumed <= buf.len());
                    prop_assert!(consumed <= max);
                }
                Err(_) => {}
            }
        }

        #[test]
        fn v2_random_fixed_part_never_panics(
            ver_cmd in any::<u8>(),
            fam in any::<u8>(),
            len in any::<u16>(),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut buf = V2_SIGNATURE.to_vec();
            buf.extend_from_slice(&[ver_cmd, fam]);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&body);
            for n in 0..=buf.len() {
                let _ = parse(&buf[..n], MAX);
            }
        }

        #[test]
        fn valid_headers_parse_whole_and_split(
            (wire, header) in valid_header(),
            trailing in proptest::collection::vec(any::<u8>(), 0..64),
            split in any::<prop::sample::Index>(),
        ) {
            let mut buf = wire.clone();
            buf.extend_from_slice(&trailing);
            let expected = Ok(Some((wire.len(), header)));
            prop_assert_eq!(&parse(&buf, MAX), &expected);
            prop_assert_eq!(&parse(&wire, wire.len()), &expected);
            let split = split.index(buf.len() + 1);
            let prefix = parse(&buf[..split], MAX);
            if split < wire.len() {
                prop_assert_eq!(prefix, Ok(None));
            } else {
                prop_assert_eq!(prefix, expected);
            }
        }
    }
}
