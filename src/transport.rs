//! How a client reached the gateway: over TLS or not, and what its certificate says
//! of it, as learnt from a proxy in front that terminated TLS (the SSL TLV of a PROXY
//! v2 header). The API server hears it as `X-Forwarded-Proto` on every request of the
//! connection and the `X-Client-Cert-*` headers on its Connect.

/// A connection's transport, from accept to its Disconnect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    /// The client spoke TLS (to the gateway or to the proxy in front of it).
    pub tls: bool,
    /// A client certificate that was verified, if any.
    pub cert: Option<ClientCert>,
}

/// What a verified client certificate says; each part only where it is known (a proxy
/// passes the common name only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject, RFC 4514 (`CN=charger-17,O=Acme`): `X-Client-Cert-Subject`.
    pub subject: Option<String>,
    /// The subject's common name: `X-Client-Cert-CN`.
    pub cn: Option<String>,
    /// Lowercase hex SHA-256 of the DER certificate: `X-Client-Cert-Fingerprint`.
    pub fingerprint: Option<String>,
}

impl Transport {
    /// `X-Forwarded-Proto`.
    pub fn proto(&self) -> &'static str {
        proto(self.tls)
    }
}

/// `X-Forwarded-Proto` of a connection that came over TLS or not.
pub fn proto(tls: bool) -> &'static str {
    match tls {
        true => "https",
        false => "http",
    }
}
