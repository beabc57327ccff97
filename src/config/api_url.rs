//! The `--api-url` type: `http://host[:port]/base/`, parsed and resolved once at startup.

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};

use super::parse::resolve;

/// The parsed `--api-url`: `http://host[:port]/base/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl {
    /// Host as written, without IPv6 brackets (`127.0.0.1`, `api.local`, `::1`).
    pub host: String,
    /// Port; 80 when the URL has none.
    pub port: u16,
    /// Base path, always starting and ending with '/'; the ClientId is appended to it.
    pub path: String,
    /// `host:port` resolved once at startup.
    pub addr: SocketAddr,
}

impl ApiUrl {
    /// Parses and resolves an API URL; the error is the reason only (no flag name).
    pub fn parse(s: &str) -> Result<ApiUrl, String> {
        let (host, port, path) = split_http_url(s)?;
        let addr = resolve(&host, port)?;
        Ok(ApiUrl {
            host,
            port,
            path,
            addr,
        })
    }

    /// The URL of a resolved socket address with base path `/` (used for --demo).
    pub fn from_addr(addr: SocketAddr) -> ApiUrl {
        ApiUrl {
            host: addr.ip().to_string(),
            port: addr.port(),
            path: "/".to_string(),
            addr,
        }
    }

    /// `host:port` for the Host header (IPv6 hosts in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

/// Splits `http://host[:port][/path]` into (host, port, path ending in '/').
fn split_http_url(s: &str) -> Result<(String, u16, String), String> {
    let s = s.trim();
    let Some(colon) = s.find("://") else {
        return Err(format!(
            "'{s}' is not a URL; expected http://host[:port]/path/"
        ));
    };
    let scheme = s[..colon].to_ascii_lowercase();
    match scheme.as_str() {
        "http" => {}
        "https" => return Err("https is not supported; put a TLS proxy in front".to_string()),
        _ => {
            return Err(format!(
                "scheme '{scheme}://' is not supported; use http://"
            ))
        }
    }
    let rest = &s[colon + 3..];
    if rest.contains(['?', '#']) {
        return Err(
            "must not contain a query or fragment (the ClientId is appended to the path)".into(),
        );
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err("credentials in the URL are not supported".into());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some(end) = bracketed.find(']') else {
            return Err(format!("unclosed '[' in host '{authority}'"));
        };
        let host = &bracketed[..end];
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("'{host}' is not an IPv6 address"));
        }
        let after = &bracketed[end + 1..];
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(format!("unexpected '{after}' after the host")),
            },
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    let port = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("bad port '{p}' (expected 1-65535)")),
            Ok(p) => p,
        },
    };
    let mut path = path.to_string();
    if !path.ends_with('/') {
        path.push('/');
    }
    Ok((host.to_string(), port, path))
}
