//! A client certificate's subject, read from its DER: the RFC 4514 string
//! (`CN=charger-17,O=Acme`) and the common name. Sans-IO and allocation-light: it
//! walks the certificate's outer structure as far as the subject and no further, and
//! gives up (None) on anything it does not understand, since the certificate has
//! already been verified by then and only its name is wanted.

/// DER tags met on the way.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;

/// A certificate's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// RFC 4514: the RDNs most specific first, `,` between them, `+` inside one.
    pub rfc4514: String,
    /// The value of the most specific CN attribute, if any and if it is text without
    /// control characters.
    pub cn: Option<String>,
}

/// The subject of a DER certificate, or None if the bytes are not one.
pub fn subject_of(der: &[u8]) -> Option<Subject> {
    let (tag, cert, _) = tlv(der)?;
    (tag == SEQUENCE).then_some(())?;
    let (tag, tbs, _) = tlv(cert)?;
    (tag == SEQUENCE).then_some(())?;
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == VERSION {
        rest = after;
    }
    // serialNumber, signature, issuer, validity: skipped; then the subject.
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (tag, name, _) = tlv(rest)?;
    (tag == SEQUENCE).then_some(())?;
    name_of(name)
}

/// An RDNSequence's content, as RFC 4514 text and its CN.
fn name_of(mut name: &[u8]) -> Option<Subject> {
    let mut rdns: Vec<String> = Vec::new();
    let mut cn = None;
    while !name.is_empty() {
        let (tag, mut set, rest) = tlv(name)?;
        (tag == SET).then_some(())?;
        name = rest;
        let mut rdn = String::new();
        while !set.is_empty() {
            let (tag, attribute, rest) = tlv(set)?;
            (tag == SEQUENCE).then_some(())?;
            set = rest;
            let (tag, oid, value) = tlv(attribute)?;
            (tag == OID).then_some(())?;
            let (value_tag, content, _) = tlv(value)?;
            if !rdn.is_empty() {
                rdn.push('+');
            }
            let text = text_of(value_tag, content);
            match short_name(oid) {
                Some(short) => rdn.push_str(short),
                None => rdn.push_str(&dotted(oid)?),
            }
            rdn.push('=');
            match (&text, short_name(oid)) {
                (Some(text), Some(_)) => escape_into(&mut rdn, text),
                // Unknown types and values that are not strings: `#` and the DER value.
                _ => {
                    rdn.push('#');
                    hex_into(&mut rdn, value);
                }
            }
            if oid == CN_OID {
                // Later RDNs are more specific: the last CN in DER order wins.
                cn = text.filter(|t| !t.is_empty() && !t.chars().any(char::is_control));
            }
        }
        rdns.push(rdn);
    }
    rdns.reverse();
    Some(Subject {
        rfc4514: rdns.join(","),
        cn,
    })
}

/// 2.5.4.3, the common name.
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

/// The short names RFC 4514 section 3 lists, by their DER OID content.
fn short_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        CN_OID => "CN",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x09] => "STREET",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

/// An OID's dotted form (`1.2.840.113549.1.9.1`).
fn dotted(oid: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut arc: u64 = 0;
    for (i, &byte) in oid.iter().enumerate() {
        arc = arc.checked_mul(128)? | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (arc / 40).min(2);
                arcs.push(first);
                arcs.push(arc - first * 40);
            } else {
                arcs.push(arc);
            }
            arc = 0;
        } else if i + 1 == oid.len() {
            return None;
        }
    }
    if arcs.is_empty() {
        return None;
    }
    Some(
        arcs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// A directory string's text: UTF8String, PrintableString, IA5String, TeletexString
/// (read as Latin-1), BMPString, UniversalString.
fn text_of(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        0x0c => std::str::from_utf8(content).ok().map(str::to_owned),
        0x13 | 0x16 => content
            .is_ascii()
            .then(|| String::from_utf8_lossy(content).into_owned()),
        0x14 => Some(content.iter().map(|&b| char::from(b)).collect()),
        0x1e => {
            let units: Vec<u16> = content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            content
                .len()
                .is_multiple_of(2)
                .then(|| String::from_utf16(&units).ok())
                .flatten()
        }
        0x1c => {
            if !content.len().is_multiple_of(4) {
                return None;
            }
            content
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// Appends `value` escaped as RFC 4514 section 2.4 asks, and every byte that is not
/// printable ASCII as `\XX` (so the string is safe in an HTTP header; what
/// `openssl x509 -nameopt RFC2253` prints).
fn escape_into(out: &mut String, value: &str) {
    let last = value.len().saturating_sub(1);
    for (i, c) in value.char_indices() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            let mut utf8 = [0u8; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                out.push('\\');
                hex_into(out, &[byte]);
            }
        }
    }
}

fn hex_into(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// One DER TLV: its tag, its content, and the bytes after it. Only the forms DER
/// allows (definite lengths, shortest form is not checked), single-byte tags.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (content, after) = rest.split_at(len);
    Some((tag, content, after))
}

#[cfg(test)]
mod tests;
