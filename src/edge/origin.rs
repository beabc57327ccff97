//! `--allowed-origins`: which web origins may open a socket (a defence against
//! cross-site WebSocket hijacking, where any page a user visits opens a socket with
//! that user's cookies). An entry is an origin (RFC 6454: `scheme://host[:port]`),
//! matched exactly (scheme and host case-insensitively, the port made explicit from
//! the scheme's default), or `scheme://*.domain[:port]`, which matches every
//! subdomain of `domain` at any depth but not `domain` itself; `null` matches the
//! opaque origin `null`. A request without `Origin` (not a browser) is not checked.

use std::fmt;

/// The parsed `--allowed-origins` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigins {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// `scheme://host[:port]`.
    Exact(Origin),
    /// `scheme://*.suffix[:port]`: `host` ends with `.suffix`.
    Subdomains(Origin),
    /// The opaque origin `null`.
    Null,
}

/// A tuple origin, normalised: lower-case scheme and host, the port explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

/// Why an `--allowed-origins` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginError(String);

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AllowedOrigins {
    /// Parses a comma-separated list (spaces around entries are ignored).
    pub fn parse(list: &str) -> Result<AllowedOrigins, OriginError> {
        let mut entries = Vec::new();
        for raw in list.split(',').map(str::trim) {
            if raw.is_empty() {
                return Err(OriginError("an entry is empty".into()));
            }
            entries.push(Entry::parse(raw)?);
        }
        Ok(AllowedOrigins { entries })
    }

    /// Whether a request with this `Origin` header value may open a socket.
    pub fn allows(&self, origin: &[u8]) -> bool {
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        let origin = origin.trim();
        if origin == "null" {
            return self.entries.contains(&Entry::Null);
        }
        let Ok(origin) = Origin::parse(origin, false) else {
            return false;
        };
        self.entries.iter().any(|entry| entry.matches(&origin))
    }

    /// Entries in the list.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The list is empty (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Entry {
    fn parse(raw: &str) -> Result<Entry, OriginError> {
        if raw == "null" {
            return Ok(Entry::Null);
        }
        let origin =
            Origin::parse(raw, true).map_err(|why| OriginError(format!("'{raw}': {why}")))?;
        Ok(match origin.host.strip_prefix("*.") {
            Some(suffix) => Entry::Subdomains(Origin {
                host: suffix.to_owned(),
                ..origin
            }),
            None => Entry::Exact(origin),
        })
    }

    fn matches(&self, origin: &Origin) -> bool {
        match self {
            Entry::Null => false,
            Entry::Exact(allowed) => allowed == origin,
            Entry::Subdomains(allowed) => {
                allowed.scheme == origin.scheme
                    && allowed.port == origin.port
                    && origin.host.len() > allowed.host.len() + 1
                    && origin.host.ends_with(allowed.host.as_str())
                    && origin.host.as_bytes()[origin.host.len() - allowed.host.len() - 1] == b'.'
            }
        }
    }
}

impl Origin {
    /// `scheme://host[:port]`, nothing after; `wildcard` lets the host start with `*.`.
    fn parse(s: &str, wildcard: bool) -> Result<Origin, &'static str> {
        let (scheme, rest) = s.split_once("://").ok_or("not scheme://host[:port]")?;
        if scheme.is_empty()
            || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err("bad scheme");
        }
        if rest.contains(['/', '?', '#', '@']) {
            return Err("an origin has no path, query, fragment or user");
        }
        let (host, port) = split_port(rest)?;
        let host = host.to_ascii_lowercase();
        let name = match host.strip_prefix("*.") {
            Some(name) if wildcard => name,
            Some(_) => return Err("a wildcard"),
            None => host.as_str(),
        };
        if !valid_host(name) {
            return Err("bad host");
        }
        let scheme = scheme.to_ascii_lowercase();
        let port = port.or(match scheme.as_str() {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            _ => None,
        });
        Ok(Origin { scheme, host, port })
    }
}

/// `host[:port]`, with an IPv6 host in brackets.
fn split_port(s: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']').ok_or("bad host")?;
        let (host, after) = s.split_at(end + 1);
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or("bad port")?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse().map_err(|_| "bad port")?)
        }
        Some(_) => return Err("bad port"),
    };
    Ok((host, port))
}

/// A DNS name of non-empty labels of letters, digits, `-` and `_`, or a bracketed
/// IPv6 address; no `*` anywhere (a wildcard is only ever the whole first label).
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests;
