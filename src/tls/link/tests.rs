//! A real rustls client against the link, bytes passed by hand: the handshake, the
//! client certificate's identity, records cut anywhere, close_notify both ways, and
//! what the link does with bytes that are not TLS.

use std::io::{Read, Write};

use super::*;
use crate::tls::fingerprint;
use crate::tls::testing::{from_client, handshake, to_client, Pki};

#[test]
fn handshake_then_both_ways_with_the_client_certificate_named() {
    let pki = Pki::new("both-ways");
    let config = pki.files(true).load().unwrap();
    let mut link = TlsLink::new(config).unwrap();
    let mut client = pki.client(true);
    client
        .writer()
        .write_all(b"GET /cp HTTP/1.1\r\n\r\n")
        .unwrap();
    let early = handshake(&mut link, &mut client).unwrap();
    // The request may ride with the client's last flight or come right after it.
    let mut got = early;
    let mut rest = from_client(&mut client);
    link.open(&mut rest, &mut |p| got.extend_from_slice(p))
        .unwrap();
    assert_eq!(got, b"GET /cp HTTP/1.1\r\n\r\n");

    let cert = link.client_cert().unwrap();
    assert_eq!(cert.subject.as_deref(), Some("CN=charger-17,O=Acme"));
    assert_eq!(cert.cn.as_deref(), Some("charger-17"));
    assert_eq!(cert.fingerprint, Some(fingerprint(pki.client.0.as_ref())));

    let mut sealed = Vec::new();
    link.seal(b"hello", &mut sealed).unwrap();
    link.seal(&vec![7u8; 40_000], &mut sealed).unwrap();
    link.unsent = sealed;
    let read = to_client(&mut link, &mut client).unwrap();
    assert_eq!(read.len(), 40_005);
    assert_eq!(&read[..5], b"hello");
    assert!(read[5..].iter().all(|&b| b == 7));
    assert!(link.unsent.is_empty());
}

#[test]
fn records_cut_anywhere_are_kept_until_complete() {
    let pki = Pki::new("cut");
    let mut link = TlsLink::new(pki.files(false).load().unwrap()).unwrap();
    let mut client = pki.client(false);
    handshake(&mut link, &mut client).unwrap();
    client.writer().write_all(b"first").unwrap();
    client.writer().write_all(b"second").unwrap();
    let wire = from_client(&mut client);
    // Fed one byte at a time, as a slow network would: the link says how much it
    // used, the caller keeps the rest in front of the next bytes.
    let mut pending: Vec<u8> = Vec::new();
    let mut plain = Vec::new();
    for &byte in &wire {
        pending.push(byte);
        let opened = link
            .open(&mut pending, &mut |p| plain.extend_from_slice(p))
            .unwrap();
        pending.drain(..opened.used);
    }
    assert!(pending.is_empty());
    assert_eq!(plain, b"firstsecond");
}

#[test]
fn close_notify_both_ways() {
    let pki = Pki::new("close");
    let mut link = TlsLink::new(pki.files(false).load().unwrap()).unwrap();
    let mut client = pki.client(false);
    handshake(&mut link, &mut client).unwrap();
    let mut notify = Vec::new();
    link.close_notify(&mut notify);
    assert_eq!(
        notify.first(),
        Some(&0x17),
        "an encrypted TLS 1.3 alert record"
    );
    link.unsent = notify;
    assert!(to_client(&mut link, &mut client).unwrap().is_empty());
    let mut sink = [0u8; 1];
    assert_eq!(client.reader().read(&mut sink).unwrap(), 0, "clean close");

    let mut link = TlsLink::new(pki.files(false).load().unwrap()).unwrap();
    let mut client = pki.client(false);
    handshake(&mut link, &mut client).unwrap();
    client.writer().write_all(b"bye").unwrap();
    client.send_close_notify();
    let mut wire = from_client(&mut client);
    let mut plain = Vec::new();
    let opened = link
        .open(&mut wire, &mut |p| plain.extend_from_slice(p))
        .unwrap();
    assert_eq!(plain, b"bye");
    assert!(opened.peer_closed && link.peer_closed());
}

#[test]
fn a_client_without_a_required_certificate_is_refused_with_an_alert() {
    let pki = Pki::new("no-cert");
    let mut link = TlsLink::new(pki.files(true).load().unwrap()).unwrap();
    let mut client = pki.client(false);
    let error = handshake(&mut link, &mut client).unwrap_err();
    assert!(
        matches!(error.0, rustls::Error::NoCertificatesPresented),
        "{error}"
    );
    assert!(!link.unsent.is_empty(), "the alert is there to send");
    assert!(link.client_cert().is_none());
}

#[test]
fn plain_http_is_not_tls() {
    let pki = Pki::new("plain");
    let mut link = TlsLink::new(pki.files(false).load().unwrap()).unwrap();
    let mut input = b"GET /alice HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let error = link
        .open(&mut input, &mut |_| panic!("no plaintext"))
        .unwrap_err();
    assert!(
        matches!(error.0, rustls::Error::InvalidMessage(_)),
        "{error}"
    );
    assert_eq!(link.unsent.first(), Some(&0x15), "a plaintext alert record");
}

#[test]
fn sealing_before_the_handshake_is_an_error_not_plaintext() {
    let pki = Pki::new("early-seal");
    let mut link = TlsLink::new(pki.files(false).load().unwrap()).unwrap();
    let mut out = Vec::new();
    assert!(link.seal(b"secret", &mut out).is_err());
    assert!(!out.windows(6).any(|w| w == b"secret"));
}

#[test]
fn shrink_gives_back_empty_buffers() {
    let pki = Pki::new("shrink");
    let mut link = TlsLink::new(pki.files(false).load().unwrap()).unwrap();
    link.unsent.reserve(4096);
    link.partial.reserve(4096);
    link.shrink();
    assert_eq!((link.unsent.capacity(), link.partial.capacity()), (0, 0));
}

#[test]
fn a_client_key_update_is_answered_and_traffic_goes_on() {
    let pki = Pki::new("key-update");
    let mut link = TlsLink::new(pki.files(false).load().unwrap()).unwrap();
    let mut client = pki.client(false);
    handshake(&mut link, &mut client).unwrap();
    client.refresh_traffic_keys().unwrap();
    client.writer().write_all(b"after").unwrap();
    let mut wire = from_client(&mut client);
    // Cut in the middle: the first part is kept, the whole is used once complete.
    let half = wire.len() / 2;
    let mut plain = Vec::new();
    let opened = link
        .open(&mut wire[..half], &mut |p| plain.extend_from_slice(p))
        .unwrap();
    let kept = wire[opened.used..half].to_vec();
    // Sealing meanwhile works on what was kept.
    link.partial = kept.clone();
    let mut sealed = Vec::new();
    link.seal(b"reply", &mut sealed).unwrap();
    assert_eq!(link.partial, kept, "sealing used none of the kept bytes");
    link.partial.clear();
    let mut rest = wire[opened.used..].to_vec();
    let opened = link
        .open(&mut rest, &mut |p| plain.extend_from_slice(p))
        .unwrap();
    assert_eq!(opened.used, rest.len());
    assert_eq!(plain, b"after");
    let mut to = std::mem::take(&mut link.unsent);
    to.extend_from_slice(&sealed);
    link.unsent = to;
    assert_eq!(to_client(&mut link, &mut client).unwrap(), b"reply");
}
