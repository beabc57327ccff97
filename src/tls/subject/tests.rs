use super::*;

/// One DER TLV (lengths up to 64 KiB).
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend_from_slice(&[0x81, n as u8]),
        n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

fn attribute(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
    der(SEQUENCE, &[der(OID, oid), der(tag, value)].concat())
}

fn rdn(attributes: &[Vec<u8>]) -> Vec<u8> {
    der(SET, &attributes.concat())
}

/// A certificate whose TBS has `subject` as its subject (the other fields are
/// placeholders of the right shapes).
fn cert(subject_rdns: &[Vec<u8>], with_version: bool) -> Vec<u8> {
    let mut tbs = Vec::new();
    if with_version {
        tbs.extend(der(VERSION, &der(0x02, &[2])));
    }
    tbs.extend(der(0x02, &[0x01, 0x23]));
    tbs.extend(der(
        SEQUENCE,
        &der(OID, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
    ));
    tbs.extend(der(SEQUENCE, &rdn(&[attribute(CN_OID, 0x0c, b"Test CA")])));
    tbs.extend(der(
        SEQUENCE,
        &[der(0x17, b"260101000000Z"), der(0x17, b"270101000000Z")].concat(),
    ));
    tbs.extend(der(SEQUENCE, &subject_rdns.concat()));
    tbs.extend(der(SEQUENCE, b"spki"));
    der(
        SEQUENCE,
        &[
            der(SEQUENCE, &tbs),
            der(SEQUENCE, b"alg"),
            der(0x03, b"\0sig"),
        ]
        .concat(),
    )
}

const O: &[u8] = &[0x55, 0x04, 0x0a];
const C: &[u8] = &[0x55, 0x04, 0x06];
const EMAIL: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];

#[test]
fn most_specific_rdn_comes_first() {
    let der = cert(
        &[
            rdn(&[attribute(C, 0x13, b"DE")]),
            rdn(&[attribute(O, 0x0c, b"Acme")]),
            rdn(&[attribute(CN_OID, 0x0c, b"charger-17")]),
        ],
        true,
    );
    let subject = subject_of(&der).unwrap();
    assert_eq!(subject.rfc4514, "CN=charger-17,O=Acme,C=DE");
    assert_eq!(subject.cn.as_deref(), Some("charger-17"));
}

#[test]
fn a_v1_certificate_without_version_reads_the_same() {
    let der = cert(&[rdn(&[attribute(CN_OID, 0x13, b"cp-1")])], false);
    assert_eq!(subject_of(&der).unwrap().rfc4514, "CN=cp-1");
}

#[test]
fn special_characters_are_escaped_and_the_cn_is_not() {
    let der = cert(
        &[
            rdn(&[attribute(O, 0x0c, b"Acme, Inc.")]),
            rdn(&[attribute(CN_OID, 0x0c, b" #a+b\\c ")]),
        ],
        true,
    );
    let subject = subject_of(&der).unwrap();
    // A space leads, so the `#` behind it is plain.
    assert_eq!(subject.rfc4514, r"CN=\ #a\+b\\c\ ,O=Acme\, Inc.");
    assert_eq!(subject.cn.as_deref(), Some(" #a+b\\c "));
}

#[test]
fn a_leading_hash_is_escaped() {
    let der = cert(&[rdn(&[attribute(CN_OID, 0x0c, b"#1")])], true);
    assert_eq!(subject_of(&der).unwrap().rfc4514, r"CN=\#1");
}

#[test]
fn non_ascii_is_hex_escaped_like_openssl_rfc2253() {
    let der = cert(
        &[rdn(&[attribute(CN_OID, 0x0c, "Zürich".as_bytes())])],
        true,
    );
    let subject = subject_of(&der).unwrap();
    assert_eq!(subject.rfc4514, r"CN=Z\C3\BCrich");
    assert_eq!(subject.cn.as_deref(), Some("Zürich"));
}

#[test]
fn multi_valued_rdn_and_unknown_type() {
    let der = cert(
        &[rdn(&[
            attribute(CN_OID, 0x0c, b"a"),
            attribute(EMAIL, 0x16, b"x@y"),
        ])],
        true,
    );
    assert_eq!(
        subject_of(&der).unwrap().rfc4514,
        "CN=a+1.2.840.113549.1.9.1=#1603784079"
    );
}

#[test]
fn bmp_string_and_control_characters() {
    let bmp: Vec<u8> = "cp".encode_utf16().flat_map(u16::to_be_bytes).collect();
    let der = cert(&[rdn(&[attribute(CN_OID, 0x1e, &bmp)])], true);
    assert_eq!(subject_of(&der).unwrap().cn.as_deref(), Some("cp"));
    // A CN with a control character is no identity: no CN, and the subject escapes it.
    let der = cert(&[rdn(&[attribute(CN_OID, 0x0c, b"a\nb")])], true);
    let subject = subject_of(&der).unwrap();
    assert_eq!(subject.cn, None);
    assert_eq!(subject.rfc4514, r"CN=a\0Ab");
}

#[test]
fn no_cn_and_empty_subject() {
    let der = cert(&[rdn(&[attribute(O, 0x0c, b"Acme")])], true);
    assert_eq!(subject_of(&der).unwrap().cn, None);
    let der = cert(&[], true);
    assert_eq!(subject_of(&der).unwrap().rfc4514, "");
}

#[test]
fn truncated_and_garbage_input_give_none() {
    let whole = cert(&[rdn(&[attribute(CN_OID, 0x0c, b"charger-17")])], true);
    for cut in 0..whole.len() {
        // Every prefix is malformed somewhere before the subject ends, or reads a
        // subject that is a prefix-free part of the whole: never a panic.
        let _ = subject_of(&whole[..cut]);
    }
    assert_eq!(subject_of(b""), None);
    assert_eq!(subject_of(b"\x30\x84\xff\xff\xff\xff"), None);
    assert_eq!(subject_of(b"GET / HTTP/1.1\r\n"), None);
}

#[test]
fn oid_arcs() {
    assert_eq!(dotted(EMAIL).unwrap(), "1.2.840.113549.1.9.1");
    assert_eq!(dotted(&[0x88, 0x37]).unwrap(), "2.999");
    assert_eq!(dotted(&[0x88]), None);
    assert_eq!(dotted(&[]), None);
}
