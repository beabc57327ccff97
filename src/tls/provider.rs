//! The one crypto provider ws2api's TLS uses, and the digest for certificate
//! fingerprints. ring: chosen by measurement (docs/BENCHMARKS.md, "TLS crypto
//! provider"); this file is the one place to change it.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The provider every TLS configuration is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Lowercase hex SHA-256 of `der`: `X-Client-Cert-Fingerprint`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut hex = String::with_capacity(64);
    for byte in digest.as_ref() {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprint_is_lowercase_hex_sha256() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            super::fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
