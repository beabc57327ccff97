//! Sans-IO parsers of flag values: durations with a unit, sizes with a suffix, listen addresses. Errors are the reason only; `Config::from_cli` prefixes the flag.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Resolves `host:port` to its first address (once, at startup).
pub(super) fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("host '{host}' resolves to no address")),
        Err(e) => Err(format!("cannot resolve host '{host}': {e}")),
    }
}

/// Parses a listen address: `ip:port`, `[v6]:port`, `:port` (all IPv4 interfaces) or `name:port`.
pub(super) fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some(p) = s.strip_prefix(':') {
        if let Ok(port) = p.parse::<u16>() {
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
        }
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("'{s}' is not host:port"));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("bad port in '{s}' (expected 0-65535)"));
    };
    if host.is_empty() {
        return Err(format!("'{s}' is not host:port"));
    }
    resolve(host, port)
}

/// Parses a duration with a mandatory unit: `ms`, `s`, `m` or `h` (`500ms`, `10s`, `2m`, `1h`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write e.g. 10s or 500ms".into());
    }
    if t.starts_with('-') {
        return Err(format!("'{t}' is negative; durations must be >= 0"));
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    if num.is_empty() {
        return Err(format!(
            "'{s}' is not a duration; write a whole number with a unit: 500ms, 10s, 2m, 1h"
        ));
    }
    if unit.is_empty() {
        return Err(format!(
            "'{s}' has no unit; write e.g. {num}s or {num}ms (units: ms, s, m, h)"
        ));
    }
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is too large"))?;
    let too_large = || format!("'{s}' is too large");
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(too_large),
        "h" => n
            .checked_mul(3600)
            .map(Duration::from_secs)
            .ok_or_else(too_large),
        _ => Err(format!(
            "'{s}' has unknown unit '{unit}' (units: ms, s, m, h; a whole number before it)"
        )),
    }
}

/// Parses a size in bytes: a whole number with an optional suffix `B`, `KiB`, `MiB`, `GiB`
/// (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty size; write e.g. 64KiB or 1MiB".into());
    }
    if t.starts_with('-') {
        return Err(format!("'{t}' is negative; sizes must be >= 0"));
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    if num.is_empty() {
        return Err(format!(
            "'{s}' is not a size; write a whole number of bytes with an optional suffix: 512, 64KiB, 1MiB"
        ));
    }
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => {
            return Err(format!(
                "'{s}' has unknown suffix '{unit}' (suffixes: KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    let too_large = || format!("'{s}' is too large");
    let n: u64 = num.parse().map_err(|_| too_large())?;
    let bytes = n.checked_mul(mult).ok_or_else(too_large)?;
    usize::try_from(bytes).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 7s "), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("+3s"), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn duration_errors() {
        let e = parse_duration("5").unwrap_err();
        assert!(e.contains("no unit") && e.contains("5s"), "{e}");
        let e = parse_duration("5d").unwrap_err();
        assert!(e.contains("unknown unit 'd'"), "{e}");
        assert!(parse_duration("5 s").is_err());
        assert!(parse_duration("5S").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("s").unwrap_err().contains("not a duration"));
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(parse_duration("   ").unwrap_err().contains("empty"));
        assert!(parse_duration("-5s").unwrap_err().contains("negative"));
        assert!(parse_duration("99999999999999999999s")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_duration("18446744073709551615h")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_duration("18446744073709551615m")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(
            parse_duration("18446744073709551615s"),
            Ok(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn sizes_every_unit() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2KB"), Ok(2_000));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("4GB"), Ok(4_000_000_000));
        assert_eq!(parse_size(" 8KiB "), Ok(8192));
    }

    #[test]
    fn size_errors() {
        for bad in [
            "1kb", "1k", "1K", "1KIB", "1mib", "1TiB", "1 KiB", "1.5MiB", "0x10",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains("unknown suffix"), "{bad}: {e}");
        }
        assert!(parse_size("KiB").unwrap_err().contains("not a size"));
        assert!(parse_size("").unwrap_err().contains("empty"));
        assert!(parse_size("-1").unwrap_err().contains("negative"));
        assert!(parse_size("-1KiB").unwrap_err().contains("negative"));
        assert!(parse_size("99999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("17179869184GiB")
            .unwrap_err()
            .contains("too large"));
    }
}
