//! Validated runtime configuration: turns the raw `Cli` into a typed `Config` (durations, sizes, addresses, the API URL) and owns the one-line "bad flag → exit 2" policy. Value parsers are in `parse.rs`, the API URL in `api_url.rs`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use crate::cli::Cli;
use crate::logger::LogLevel;

mod api_url;
mod parse;

pub use api_url::ApiUrl;
pub use parse::{parse_duration, parse_listen, parse_size};

/// Upper bound for every duration flag: keeps `Instant + d` far from overflow and catches typos.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Upper bound for --max-message-size and --max-answer-size.
pub const MAX_MESSAGE_SIZE: usize = 2 << 30;
/// Bounds for --max-head-size: room for an upgrade request, and a cap on per-socket memory.
pub const MIN_HEAD_SIZE: usize = 1 << 10;
pub const MAX_HEAD_SIZE: usize = 1 << 20;
/// Upper bound for --shards.
pub const MAX_SHARDS: usize = 1024;

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
mod tests;
