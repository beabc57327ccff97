//! Validated runtime configuration: turns the raw `Cli` into a typed `Config` (durations, sizes, addresses, the API URL) and owns the one-line "bad flag → exit 2" policy.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use crate::cli::Cli;
use crate::logger::LogLevel;

/// Upper bound for every duration flag: keeps `Instant + d` far from overflow and catches typos.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Upper bound for --max-message-size and --max-answer-size.
pub const MAX_MESSAGE_SIZE: usize = 2 << 30;
/// Bounds for --max-head-size: room for an upgrade request, and a cap on per-socket memory.
pub const MIN_HEAD_SIZE: usize = 1 << 10;
pub const MAX_HEAD_SIZE: usize = 1 << 20;
/// Upper bound for --shards.
pub const MAX_SHARDS: usize = 1024;

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

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("host '{host}' resolves to no address")),
        Err(e) => Err(format!("cannot resolve host '{host}': {e}")),
    }
}

/// Parses a listen address: `ip:port`, `[v6]:port`, `:port` (all IPv4 interfaces) or `name:port`.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
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

/// Why a configuration was refused; Display is `--flag: reason`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--{flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
}

fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.into(),
    }
}

/// Everything ws2api runs with, typed and validated. `None` only where "none" is a real setting.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub control_listen: SocketAddr,
    /// The API server; with --demo it points at the demo API.
    pub api: ApiUrl,
    /// `None`: the control listener needs no auth.
    pub control_token: Option<String>,
    pub shards: usize,
    /// Whole process; a shard may enforce `max_connections / shards`.
    pub max_connections: usize,
    pub max_message_size: usize,
    /// Per client.
    pub max_outbound_bytes: usize,
    pub max_answer_size: usize,
    pub max_inflight_per_client: usize,
    /// Per shard.
    pub api_max_conns: usize,
    pub api_timeout: Duration,
    pub handshake_timeout: Duration,
    /// `None`: no pings.
    pub ping_interval: Option<Duration>,
    /// `None`: no periodic stats.
    pub stats_interval: Option<Duration>,
    /// `None`: stats go to stderr.
    pub stats_file: Option<PathBuf>,
    pub shutdown_timeout: Duration,
    pub proxy_protocol: bool,
    pub max_head_size: usize,
    pub cpuprofile: Option<PathBuf>,
    pub memprofile: Option<PathBuf>,
    pub log_level: LogLevel,
    /// `Some(addr)` with --demo: run the demo API there (`api` already points at it).
    pub demo: Option<SocketAddr>,
}

/// Hand-written so that `{:?}` (e.g. in a startup log line) never prints the control token.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured so that a new field fails to compile until it is listed here.
        let Config {
            listen,
            control_listen,
            api,
            control_token,
            shards,
            max_connections,
            max_message_size,
            max_outbound_bytes,
            max_answer_size,
            max_inflight_per_client,
            api_max_conns,
            api_timeout,
            handshake_timeout,
            ping_interval,
            stats_interval,
            stats_file,
            shutdown_timeout,
            proxy_protocol,
            max_head_size,
            cpuprofile,
            memprofile,
            log_level,
            demo,
        } = self;
        f.debug_struct("Config")
            .field("listen", listen)
            .field("control_listen", control_listen)
            .field("api", api)
            .field(
                "control_token",
                &control_token.as_ref().map(|_| "<redacted>"),
            )
            .field("shards", shards)
            .field("max_connections", max_connections)
            .field("max_message_size", max_message_size)
            .field("max_outbound_bytes", max_outbound_bytes)
            .field("max_answer_size", max_answer_size)
            .field("max_inflight_per_client", max_inflight_per_client)
            .field("api_max_conns", api_max_conns)
            .field("api_timeout", api_timeout)
            .field("handshake_timeout", handshake_timeout)
            .field("ping_interval", ping_interval)
            .field("stats_interval", stats_interval)
            .field("stats_file", stats_file)
            .field("shutdown_timeout", shutdown_timeout)
            .field("proxy_protocol", proxy_protocol)
            .field("max_head_size", max_head_size)
            .field("cpuprofile", cpuprofile)
            .field("memprofile", memprofile)
            .field("log_level", log_level)
            .field("demo", demo)
            .finish()
    }
}

fn size(flag: &'static str, s: &str, min: usize, max: usize) -> Result<usize, ConfigError> {
    let n = parse_size(s).map_err(|r| invalid(flag, r))?;
    if n < min {
        return Err(invalid(
            flag,
            if min == 1 {
                "must be greater than 0".to_string()
            } else {
                format!("{n} bytes is below the minimum of {min}")
            },
        ));
    }
    if n > max {
        return Err(invalid(
            flag,
            format!("{n} bytes is above the maximum of {max}"),
        ));
    }
    Ok(n)
}

fn duration(flag: &'static str, s: &str) -> Result<Duration, ConfigError> {
    let d = parse_duration(s).map_err(|r| invalid(flag, r))?;
    if d > MAX_DURATION {
        return Err(invalid(flag, format!("'{s}' is above the maximum of 168h")));
    }
    Ok(d)
}

fn positive_duration(flag: &'static str, s: &str) -> Result<Duration, ConfigError> {
    let d = duration(flag, s)?;
    if d.is_zero() {
        return Err(invalid(flag, "must be greater than 0"));
    }
    Ok(d)
}

fn at_least_one(flag: &'static str, n: usize) -> Result<usize, ConfigError> {
    if n == 0 {
        return Err(invalid(flag, "must be at least 1"));
    }
    Ok(n)
}

fn output_file(flag: &'static str, p: Option<PathBuf>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(p) = p else { return Ok(None) };
    if p.as_os_str().is_empty() {
        return Err(invalid(
            flag,
            "must not be empty (leave the flag out instead)",
        ));
    }
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(invalid(
                flag,
                format!("directory '{}' does not exist", dir.display()),
            ));
        }
    }
    Ok(Some(p))
}

/// Whether two sockets bound to `a` and `b` would collide (or, with SO_REUSEPORT, silently
/// share traffic). Port 0 means "any free port" and never collides.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Whether connecting to `target` would reach a socket bound to `bound` on this machine.
fn reaches(target: SocketAddr, bound: SocketAddr) -> bool {
    bound.port() != 0
        && target.port() == bound.port()
        && (target.ip() == bound.ip()
            || ((target.ip().is_loopback() || target.ip().is_unspecified())
                && (bound.ip().is_unspecified() || bound.ip().is_loopback())))
}

fn default_shards() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(MAX_SHARDS)
}

impl Config {
    /// Parses and validates every flag; the error names the flag that is wrong.
    pub fn from_cli(cli: Cli) -> Result<Config, ConfigError> {
        let listen = parse_listen(&cli.listen).map_err(|r| invalid("listen", r))?;
        let control_listen =
            parse_listen(&cli.control_listen).map_err(|r| invalid("control-listen", r))?;
        if overlaps(listen, control_listen) {
            return Err(invalid(
                "control-listen",
                format!("{control_listen} collides with --listen {listen}; use another port"),
            ));
        }

        let demo = if cli.demo {
            let addr = parse_listen(&cli.demo_listen).map_err(|r| invalid("demo-listen", r))?;
            if addr.port() == 0 {
                return Err(invalid(
                    "demo-listen",
                    "needs a fixed port (the gateway is pointed at it before it starts)",
                ));
            }
            for (other, what) in [(listen, "--listen"), (control_listen, "--control-listen")] {
                if overlaps(addr, other) {
                    return Err(invalid(
                        "demo-listen",
                        format!("{addr} collides with {what} {other}; use another port"),
                    ));
                }
            }
            Some(addr)
        } else {
            None
        };
        let api = match demo {
            Some(addr) => {
                let ip = match addr.ip() {
                    IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    ip => ip,
                };
                ApiUrl::from_addr(SocketAddr::new(ip, addr.port()))
            }
            None => {
                let api = ApiUrl::parse(&cli.api_url).map_err(|r| invalid("api-url", r))?;
                for (bound, what) in [(listen, "--listen"), (control_listen, "--control-listen")] {
                    if reaches(api.addr, bound) {
                        return Err(invalid(
                            "api-url",
                            format!("{} is ws2api's own {what} {bound}", api.addr),
                        ));
                    }
                }
                api
            }
        };

        let control_token = match cli.control_token {
            None => None,
            Some(t) if t.is_empty() => {
                return Err(invalid(
                    "control-token",
                    "must not be empty (leave the flag out to disable auth)",
                ))
            }
            Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(invalid(
                    "control-token",
                    "must be printable ASCII without spaces (it travels in an HTTP header)",
                ))
            }
            Some(t) => Some(t),
        };

        let shards = match cli.shards {
            None => default_shards(),
            Some(0) => return Err(invalid("shards", "must be at least 1")),
            Some(n) if n > MAX_SHARDS => {
                return Err(invalid(
                    "shards",
                    format!("{n} is above the maximum of {MAX_SHARDS}"),
                ))
            }
            Some(n) => n,
        };
        let max_connections = at_least_one("max-connections", cli.max_connections)?;
        if max_connections < shards {
            return Err(invalid(
                "max-connections",
                format!(
                    "{max_connections} is below --shards {shards}; every shard needs room for one"
                ),
            ));
        }

        let max_message_size = size(
            "max-message-size",
            &cli.max_message_size,
            1,
            MAX_MESSAGE_SIZE,
        )?;
        let max_outbound_bytes =
            size("max-outbound-bytes", &cli.max_outbound_bytes, 1, usize::MAX)?;
        let max_answer_size = size("max-answer-size", &cli.max_answer_size, 1, MAX_MESSAGE_SIZE)?;
        let max_head_size = size(
            "max-head-size",
            &cli.max_head_size,
            MIN_HEAD_SIZE,
            MAX_HEAD_SIZE,
        )?;
        let max_inflight_per_client =
            at_least_one("max-inflight-per-client", cli.max_inflight_per_client)?;
        let api_max_conns = at_least_one("api-max-conns", cli.api_max_conns)?;

        let api_timeout = positive_duration("api-timeout", &cli.api_timeout)?;
        let handshake_timeout = positive_duration("handshake-timeout", &cli.handshake_timeout)?;
        let shutdown_timeout = positive_duration("shutdown-timeout", &cli.shutdown_timeout)?;
        let ping_interval = match duration("ping-interval", &cli.ping_interval)? {
            d if d.is_zero() => None,
            d if d < Duration::from_secs(1) => {
                return Err(invalid(
                    "ping-interval",
                    "must be at least 1s (or 0s to disable pings)",
                ))
            }
            d => Some(d),
        };
        let stats_interval =
            Some(duration("stats-interval", &cli.stats_interval)?).filter(|d| !d.is_zero());
        let stats_file = output_file("stats-file", cli.stats_file)?;
        if stats_file.is_some() && stats_interval.is_none() {
            return Err(invalid(
                "stats-file",
                "has no effect without --stats-interval (e.g. --stats-interval 10s)",
            ));
        }
        let cpuprofile = output_file("cpuprofile", cli.cpuprofile)?;
        let memprofile = output_file("memprofile", cli.memprofile)?;
        if let (Some(c), Some(m)) = (&cpuprofile, &memprofile) {
            if same_file(c, m) {
                return Err(invalid("memprofile", "is the same file as --cpuprofile"));
            }
        }

        Ok(Config {
            listen,
            control_listen,
            api,
            control_token,
            shards,
            max_connections,
            max_message_size,
            max_outbound_bytes,
            max_answer_size,
            max_inflight_per_client,
            api_max_conns,
            api_timeout,
            handshake_timeout,
            ping_interval,
            stats_interval,
            stats_file,
            shutdown_timeout,
            proxy_protocol: cli.proxy_protocol,
            max_head_size,
            cpuprofile,
            memprofile,
            log_level: cli.log_level,
            demo,
        })
    }

    /// Builds a Config with all defaults (for tests), listen and control on 127.0.0.1:0, shards 2.
    #[allow(dead_code)] // only tests call it; a binary-only crate would otherwise warn
    pub fn for_tests(api: SocketAddr) -> Config {
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        Config {
            listen: loopback,
            control_listen: loopback,
            api: ApiUrl::from_addr(api),
            control_token: None,
            shards: 2,
            max_connections: 1_000_000,
            max_message_size: 1 << 20,
            max_outbound_bytes: 1 << 20,
            max_answer_size: 1 << 20,
            max_inflight_per_client: 1,
            api_max_conns: 1000,
            api_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Some(Duration::from_secs(30)),
            stats_interval: None,
            stats_file: None,
            shutdown_timeout: Duration::from_secs(30),
            proxy_protocol: false,
            max_head_size: 8 << 10,
            cpuprofile: None,
            memprofile: None,
            log_level: LogLevel::Info,
            demo: None,
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The one-line message for a clap error: its first line without clap's `error: ` prefix,
/// plus clap's tip or list of possible values when it has one.
fn clap_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let mut line = first.to_string();
    let mut tip = false;
    for extra in lines {
        if extra.starts_with("tip:") {
            tip = true;
            line.push_str(&format!(" ({extra})"));
        } else if extra.starts_with("[possible values:") {
            line.push_str(&format!(" {extra}"));
        }
    }
    if !tip && e.kind() == clap::error::ErrorKind::UnknownArgument {
        line.push_str(" (see --help)");
    }
    line
}

/// Parses argv into a Config; on any error prints ONE line "ws2api: error: <message naming the flag>"
/// to stderr and exits 2 (clap's own --help/--version print normally and exit 0).
pub fn parse_args_or_exit() -> Config {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                e.exit()
            }
            _ => {
                eprintln!("ws2api: error: {}", clap_error_line(&e));
                std::process::exit(2);
            }
        },
    };
    match Config::from_cli(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ws2api: error: {e}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, MutexGuard};

    /// Serializes every test that reads WS2API_* env vars against the one that sets them.
    static ENV: Mutex<()> = Mutex::new(());

    fn env_lock() -> MutexGuard<'static, ()> {
        ENV.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cli(args: &[&str]) -> Cli {
        let _g = env_lock();
        Cli::try_parse_from(std::iter::once("ws2api").chain(args.iter().copied()))
            .expect("clap accepts the arguments")
    }

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        Config::from_cli(cli(args))
    }

    /// The Display of the error for `args`, which must be refused.
    fn err(args: &[&str]) -> String {
        match config(args) {
            Ok(c) => panic!("{args:?} accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_err(args: &[&str], prefix: &str, contains: &str) {
        let e = err(args);
        assert!(
            e.starts_with(prefix),
            "{args:?}: '{e}' should start with '{prefix}'"
        );
        assert!(
            e.contains(contains),
            "{args:?}: '{e}' should contain '{contains}'"
        );
    }

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

    #[test]
    fn defaults_match_spec() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:7001".parse().unwrap());
        assert_eq!(c.control_listen, "127.0.0.1:7002".parse().unwrap());
        assert_eq!(c.api.to_string(), "http://127.0.0.1:8000/");
        assert_eq!(c.api.host, "127.0.0.1");
        assert_eq!(c.api.port, 8000);
        assert_eq!(c.api.path, "/");
        assert_eq!(c.api.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(c.api.authority(), "127.0.0.1:8000");
        assert_eq!(c.control_token, None);
        assert_eq!(c.shards, default_shards());
        assert!(c.shards >= 1);
        assert_eq!(c.max_connections, 1_000_000);
        assert_eq!(c.max_message_size, 1 << 20);
        assert_eq!(c.max_outbound_bytes, 1 << 20);
        assert_eq!(c.max_answer_size, 1 << 20);
        assert_eq!(c.max_inflight_per_client, 1);
        assert_eq!(c.api_max_conns, 1000);
        assert_eq!(c.api_timeout, Duration::from_secs(60));
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.ping_interval, Some(Duration::from_secs(30)));
        assert_eq!(c.stats_interval, None);
        assert_eq!(c.stats_file, None);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert!(!c.proxy_protocol);
        assert_eq!(c.max_head_size, 8 << 10);
        assert_eq!(c.cpuprofile, None);
        assert_eq!(c.memprofile, None);
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.demo, None);
    }

    #[test]
    fn every_flag_is_parsed() {
        let c = config(&[
            "--listen=127.0.0.1:9001",
            "--control-listen=[::1]:9002",
            "--api-url=http://localhost:9000/api",
            "--control-token=s3cret",
            "--shards=3",
            "--max-connections=300",
            "--max-message-size=64KiB",
            "--max-outbound-bytes=2MB",
            "--max-answer-size=512",
            "--max-inflight-per-client=4",
            "--api-max-conns=16",
            "--api-timeout=1500ms",
            "--handshake-timeout=2s",
            "--ping-interval=0s",
            "--stats-interval=1m",
            "--stats-file=stats.txt",
            "--shutdown-timeout=1h",
            "--proxy-protocol",
            "--max-head-size=16KiB",
            "--cpuprofile=cpu.prof",
            "--memprofile=mem.prof",
            "--log-level=DEBUG",
        ])
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(c.control_listen, "[::1]:9002".parse().unwrap());
        assert_eq!(c.api.host, "localhost");
        assert_eq!(c.api.port, 9000);
        assert_eq!(c.api.path, "/api/");
        assert!(c.api.addr.ip().is_loopback() && c.api.addr.port() == 9000);
        assert_eq!(c.control_token.as_deref(), Some("s3cret"));
        assert_eq!(c.shards, 3);
        assert_eq!(c.max_connections, 300);
        assert_eq!(c.max_message_size, 65536);
        assert_eq!(c.max_outbound_bytes, 2_000_000);
        assert_eq!(c.max_answer_size, 512);
        assert_eq!(c.max_inflight_per_client, 4);
        assert_eq!(c.api_max_conns, 16);
        assert_eq!(c.api_timeout, Duration::from_millis(1500));
        assert_eq!(c.handshake_timeout, Duration::from_secs(2));
        assert_eq!(c.ping_interval, None);
        assert_eq!(c.stats_interval, Some(Duration::from_secs(60)));
        assert_eq!(c.stats_file, Some(PathBuf::from("stats.txt")));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(3600));
        assert!(c.proxy_protocol);
        assert_eq!(c.max_head_size, 16384);
        assert_eq!(c.cpuprofile, Some(PathBuf::from("cpu.prof")));
        assert_eq!(c.memprofile, Some(PathBuf::from("mem.prof")));
        assert_eq!(c.log_level, LogLevel::Debug);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret"), "token leaked in Debug: {dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn api_url_forms() {
        let api = |u: &str| config(&["--api-url", u]).map(|c| c.api);
        let a = api("http://127.0.0.1:8000").unwrap();
        assert_eq!(a.path, "/");
        let a = api("http://127.0.0.1:8000/ws/events").unwrap();
        assert_eq!(a.path, "/ws/events/");
        assert_eq!(a.to_string(), "http://127.0.0.1:8000/ws/events/");
        let a = api("http://127.0.0.1/x/").unwrap();
        assert_eq!((a.port, a.path.as_str()), (80, "/x/"));
        assert_eq!(a.addr, "127.0.0.1:80".parse().unwrap());
        assert_eq!(a.authority(), "127.0.0.1:80");
        let a = api("HTTP://[::1]:8080/p").unwrap();
        assert_eq!(a.host, "::1");
        assert_eq!(a.authority(), "[::1]:8080");
        assert_eq!(a.addr, "[::1]:8080".parse().unwrap());
        let a = api("http://localhost:8123/").unwrap();
        assert_eq!(a.authority(), "localhost:8123");
    }

    #[test]
    fn api_url_errors() {
        let bad = |u: &str, contains: &str| assert_err(&["--api-url", u], "--api-url: ", contains);
        bad(
            "https://x",
            "https is not supported; put a TLS proxy in front",
        );
        bad("HTTPS://x:443/", "https is not supported");
        bad("ws://x/", "not supported");
        bad("127.0.0.1:8000", "not a URL");
        bad("http://", "no host");
        bad("http:///path", "no host");
        bad("http://x:0/", "bad port");
        bad("http://x:99999/", "bad port");
        bad("http://x:abc/", "bad port");
        bad("http://x/?a=1", "query");
        bad("http://u:p@x/", "credentials");
        bad("http://[::1/", "unclosed");
        bad("http://[zz]:80/", "IPv6");
        bad("http://a b/", "whitespace");
        bad("http://no-such-host.invalid/", "cannot resolve");
    }

    #[test]
    fn api_url_pointing_at_itself_is_refused() {
        assert_err(
            &["--api-url", "http://127.0.0.1:7001/"],
            "--api-url: ",
            "own --listen",
        );
        assert_err(
            &["--api-url", "http://127.0.0.1:7002/"],
            "--api-url: ",
            "own --control-listen",
        );
    }

    #[test]
    fn validation_errors_name_their_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--listen", "nonsense"], "--listen: "),
            (&["--listen", "127.0.0.1:99999"], "--listen: "),
            (&["--control-listen", "1.2.3.4"], "--control-listen: "),
            (&["--control-listen", "0.0.0.0:7001"], "--control-listen: "),
            (&["--listen", "127.0.0.1:7002"], "--control-listen: "),
            (&["--control-token", ""], "--control-token: "),
            (&["--control-token", "a b"], "--control-token: "),
            (&["--shards", "0"], "--shards: "),
            (&["--shards", "1025"], "--shards: "),
            (&["--max-connections", "0"], "--max-connections: "),
            (
                &["--shards", "4", "--max-connections", "3"],
                "--max-connections: ",
            ),
            (&["--max-message-size", "0"], "--max-message-size: "),
            (&["--max-message-size", "3GiB"], "--max-message-size: "),
            (&["--max-message-size", "1XB"], "--max-message-size: "),
            (&["--max-outbound-bytes", "0"], "--max-outbound-bytes: "),
            (&["--max-answer-size", "0KiB"], "--max-answer-size: "),
            (&["--max-answer-size", "3GB"], "--max-answer-size: "),
            (
                &["--max-inflight-per-client", "0"],
                "--max-inflight-per-client: ",
            ),
            (&["--api-max-conns", "0"], "--api-max-conns: "),
            (&["--api-timeout", "0s"], "--api-timeout: "),
            (&["--api-timeout", "5"], "--api-timeout: "),
            (&["--api-timeout", "169h"], "--api-timeout: "),
            (&["--handshake-timeout", "0ms"], "--handshake-timeout: "),
            (&["--handshake-timeout", "10sec"], "--handshake-timeout: "),
            (&["--ping-interval", "500ms"], "--ping-interval: "),
            (&["--ping-interval", "30"], "--ping-interval: "),
            (&["--stats-interval", "1"], "--stats-interval: "),
            (&["--stats-file", "s.txt"], "--stats-file: "),
            (
                &["--stats-interval=1s", "--stats-file=/no/such/dir/s"],
                "--stats-file: ",
            ),
            (&["--shutdown-timeout", "0s"], "--shutdown-timeout: "),
            (&["--max-head-size", "0"], "--max-head-size: "),
            (&["--max-head-size", "512"], "--max-head-size: "),
            (&["--max-head-size", "2MiB"], "--max-head-size: "),
            (&["--memprofile", "/no/such/dir/m"], "--memprofile: "),
            (
                &["--cpuprofile", "p", "--memprofile", "p"],
                "--memprofile: ",
            ),
            (
                &["--demo", "--demo-listen", "127.0.0.1:0"],
                "--demo-listen: ",
            ),
            (&["--demo", "--demo-listen", "x"], "--demo-listen: "),
            (
                &["--demo", "--demo-listen", "127.0.0.1:7001"],
                "--demo-listen: ",
            ),
        ];
        for (args, prefix) in cases {
            assert_err(args, prefix, "");
        }
    }

    #[test]
    fn bare_number_duration_says_add_a_unit() {
        assert_eq!(
            err(&["--api-timeout", "5"]),
            "--api-timeout: '5' has no unit; write e.g. 5s or 5ms (units: ms, s, m, h)"
        );
    }

    #[test]
    fn shards_zero_names_shards() {
        assert_eq!(err(&["--shards", "0"]), "--shards: must be at least 1");
        assert_eq!(config(&["--shards", "1024"]).unwrap().shards, 1024);
    }

    #[test]
    fn listen_forms() {
        let c = config(&["--listen", ":7100"]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:7100".parse().unwrap());
        let c = config(&["--listen", "localhost:7100"]).unwrap();
        assert!(c.listen.ip().is_loopback());
        // Port 0 on both is fine: the kernel picks two different ports.
        let c = config(&["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"]).unwrap();
        assert_eq!(c.listen, c.control_listen);
        // Same port on different concrete IPs does not collide.
        config(&["--listen", "127.0.0.2:7002"]).unwrap();
    }

    #[test]
    fn demo_points_api_at_demo_listen() {
        let c = config(&["--demo", "--api-url", "https://ignored"]).unwrap();
        assert_eq!(c.demo, Some("127.0.0.1:8000".parse().unwrap()));
        assert_eq!(c.api.to_string(), "http://127.0.0.1:8000/");
        assert_eq!(c.api.addr, "127.0.0.1:8000".parse().unwrap());
        let c = config(&["--demo", "--demo-listen", "0.0.0.0:8100"]).unwrap();
        assert_eq!(c.demo, Some("0.0.0.0:8100".parse().unwrap()));
        assert_eq!(c.api.addr, "127.0.0.1:8100".parse().unwrap());
        assert_eq!(c.api.authority(), "127.0.0.1:8100");
        let c = config(&["--demo", "--demo-listen", "[::1]:8100"]).unwrap();
        assert_eq!(c.api.to_string(), "http://[::1]:8100/");
        // Without --demo, --demo-listen is not even looked at.
        assert_eq!(config(&["--demo-listen", "junk"]).unwrap().demo, None);
    }

    #[test]
    fn clap_rejects_bad_types_naming_the_flag() {
        let _g = env_lock();
        let e = Cli::try_parse_from(["ws2api", "--shards", "abc"]).unwrap_err();
        let line = clap_error_line(&e);
        assert!(line.contains("--shards") && !line.contains('\n'), "{line}");
        let e = Cli::try_parse_from(["ws2api", "--bogus"]).unwrap_err();
        let line = clap_error_line(&e);
        assert!(line.contains("--bogus") && !line.contains('\n'), "{line}");
        let e = Cli::try_parse_from(["ws2api", "--log-level", "loud"]).unwrap_err();
        let line = clap_error_line(&e);
        assert!(
            line.contains("--log-level") && !line.contains('\n'),
            "{line}"
        );
        let e = Cli::try_parse_from(["ws2api", "--cpuprofile="]).unwrap_err();
        let line = clap_error_line(&e);
        assert!(
            line.contains("--cpuprofile") && !line.contains('\n'),
            "{line}"
        );
        let e = Cli::try_parse_from(["ws2api", "--help"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn env_overrides_and_flags_win() {
        let _g = env_lock();
        std::env::set_var("WS2API_API_TIMEOUT", "7s");
        std::env::set_var("WS2API_SHARDS", "5");
        std::env::set_var("WS2API_PROXY_PROTOCOL", "yes");
        std::env::set_var("WS2API_API_URL", "http://127.0.0.1:8181/env");
        let parsed = Cli::try_parse_from(["ws2api"]);
        let flag_wins = Cli::try_parse_from(["ws2api", "--api-timeout", "9s"]);
        std::env::set_var("WS2API_API_TIMEOUT", "7");
        let bad = Cli::try_parse_from(["ws2api"]);
        for v in [
            "WS2API_API_TIMEOUT",
            "WS2API_SHARDS",
            "WS2API_PROXY_PROTOCOL",
            "WS2API_API_URL",
        ] {
            std::env::remove_var(v);
        }
        let c = Config::from_cli(parsed.unwrap()).unwrap();
        assert_eq!(c.api_timeout, Duration::from_secs(7));
        assert_eq!(c.shards, 5);
        assert!(c.proxy_protocol);
        assert_eq!(c.api.port, 8181);
        assert_eq!(c.api.path, "/env/");
        let c = Config::from_cli(flag_wins.unwrap()).unwrap();
        assert_eq!(c.api_timeout, Duration::from_secs(9));
        let e = Config::from_cli(bad.unwrap()).unwrap_err().to_string();
        assert!(e.starts_with("--api-timeout: "), "{e}");
    }

    #[test]
    fn every_flag_has_env_help_and_default() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        for arg in cmd.get_arguments() {
            let long = arg.get_long().expect("every flag is long");
            let env = format!("WS2API_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(env.as_str()),
                "--{long}"
            );
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(!help.is_empty(), "--{long} has no help");
            assert!(
                !arg.get_default_values().is_empty() || help.contains("[default: "),
                "--{long} documents no default"
            );
        }
    }

    #[test]
    fn for_tests_is_sane() {
        let api: SocketAddr = "127.0.0.1:18000".parse().unwrap();
        let c = Config::for_tests(api);
        assert_eq!(c.api.addr, api);
        assert_eq!(c.api.to_string(), "http://127.0.0.1:18000/");
        assert_eq!(c.api.authority(), "127.0.0.1:18000");
        assert_eq!(c.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.control_listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.shards, 2);
        assert_eq!(c.demo, None);
        // Apart from addresses and shards, exactly the command-line defaults.
        let mut d = config(&[
            "--listen=127.0.0.1:0",
            "--control-listen=127.0.0.1:0",
            "--shards=2",
        ])
        .unwrap();
        d.api = c.api.clone();
        assert_eq!(format!("{d:?}"), format!("{c:?}"));
    }
}
