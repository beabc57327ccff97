//! Validated runtime configuration: turns the raw `Cli` into a typed `Config`, grouped by who takes it (client limits, API client, control port, observability), and owns the one-line "bad flag → exit 2" policy. Value parsers are in `parse.rs`, the API URL in `api_url.rs`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use crate::cli::Cli;
use crate::edge::AllowedOrigins;
use crate::logger::LogLevel;
use crate::tls::{ClientAuth, TlsFiles};

mod api_url;
mod parse;

pub use api_url::ApiUrl;
use parse::parse_listen;
pub use parse::{parse_duration, parse_size};

/// Upper bound for every duration flag: keeps `Instant + d` far from overflow and catches typos.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Upper bound for --max-message-size and --max-answer-size.
pub const MAX_MESSAGE_SIZE: usize = 2 << 30;
/// Upper bound for --max-groups-per-client.
pub const MAX_GROUPS_PER_CLIENT: usize = 1 << 16;
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
///
/// Grouped by who takes it: `server` binds `listen` and `control.listen` and starts `shards`;
/// each shard builds its API pool from `api`, enforces `limits` on its clients, checks
/// `control.token` and stops within `shutdown_timeout`; `main` starts the profilers and the
/// logger from `observability` and the demo API from `demo`. The flag each field comes from is
/// in `cli.rs`, with its default, unit and trade-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `--listen`: the public WebSocket listener.
    pub listen: SocketAddr,
    /// `--shards`: worker threads, one shard each.
    pub shards: usize,
    /// `--shutdown-timeout`: the orderly stop's deadline, per shard.
    pub shutdown_timeout: Duration,
    /// `--proxy-protocol`: every public connection starts with a PROXY header.
    pub proxy_protocol: bool,
    /// `--tls-cert` and its companions: TLS on the public listener (the files load).
    pub tls: Option<TlsFiles>,
    /// `Some(addr)` with --demo: run the demo API there (`api.url` already points at it).
    pub demo: Option<SocketAddr>,
    /// What one client may cost and how long it may stay silent.
    pub limits: ClientLimits,
    /// Limits for a public edge: origins, per-address caps and rates, the message
    /// rate, the process-wide outbound budget.
    pub edge: EdgeLimits,
    /// The client of the API server (each shard's pool).
    pub api: ApiClient,
    /// The control listener and its token.
    pub control: ControlPort,
    /// Periodic stats, profiles, log level.
    pub observability: Observability,
}

/// Limits on clients, enforced by each shard on its own connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLimits {
    /// `--max-connections`, whole process; a shard enforces `max_connections / shards`.
    pub max_connections: usize,
    /// `--max-message-size`, bytes, for a client's message and a pushed body.
    pub max_message_size: usize,
    /// `--max-outbound-bytes`, bytes queued per client.
    pub max_outbound_bytes: usize,
    /// `--max-inflight-per-client`: API requests of one client at once.
    pub max_inflight_per_client: usize,
    /// `--max-groups-per-client`: groups one client may be in at once.
    pub max_groups_per_client: usize,
    /// `--max-head-size`, bytes of an upgrade (or control) request head.
    pub max_head_size: usize,
    /// `--handshake-timeout`: from accept to a complete upgrade request.
    pub handshake_timeout: Duration,
    /// `--ping-interval`; `None`: no pings.
    pub ping_interval: Option<Duration>,
}

/// Limits for a public edge (SPEC "Limits for a public edge"); each 0 is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeLimits {
    /// `--allowed-origins`; `None`: any origin.
    pub allowed_origins: Option<AllowedOrigins>,
    /// `--max-connections-per-ip`, all shards together.
    pub max_connections_per_ip: u32,
    /// `--connect-rate-per-ip`, upgrades per second (burst as many).
    pub connect_rate_per_ip: u32,
    /// `--max-tracked-ips`, whole process; a shard holds `max_tracked_ips / shards`.
    pub max_tracked_ips: usize,
    /// `--max-message-rate`, messages per second per client (burst as many).
    pub max_message_rate: u32,
    /// `--max-outbound-total`, bytes, whole process; a shard holds `/ shards`.
    pub max_outbound_total: usize,
}

impl EdgeLimits {
    /// Whether new connections are checked against the per-address table.
    pub fn per_address(&self) -> bool {
        self.max_connections_per_ip > 0 || self.connect_rate_per_ip > 0
    }
}

/// A quarter of physical memory (`MemTotal` of /proc/meminfo), or 1 GiB where that
/// cannot be read: the default of `--max-outbound-total`.
pub fn default_outbound_total() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            kib.checked_mul(1024)
        });
    total.map_or(1 << 30, |bytes| bytes / 4)
}

/// The client of the API server: where it is and what one shard's pool may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiClient {
    /// `--api-url`, resolved; with --demo it points at the demo API.
    pub url: ApiUrl,
    /// `--api-max-conns`, per shard.
    pub max_conns: usize,
    /// `--api-timeout`: one request, connect to the last byte of the answer.
    pub timeout: Duration,
    /// `--max-answer-size`, bytes of one answer body.
    pub max_answer_size: usize,
}

/// The control listener: `server` binds it, `shard::control` checks the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPort {
    /// `--control-listen`.
    pub listen: SocketAddr,
    /// `--control-token`; `None`: the control listener needs no auth.
    pub token: Option<Secret>,
}

impl ControlPort {
    /// The bearer token every control request but /healthz and /readyz must carry.
    pub fn token(&self) -> Option<&str> {
        self.token.as_ref().map(Secret::expose)
    }
}

/// What the gateway reports about itself: stats, profiles, logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observability {
    /// `--stats-interval`; `None`: no periodic stats.
    pub stats_interval: Option<Duration>,
    /// `--stats-file`; `None`: stats go to stderr.
    pub stats_file: Option<PathBuf>,
    /// `--cpuprofile`.
    pub cpuprofile: Option<PathBuf>,
    /// `--memprofile`.
    pub memprofile: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: LogLevel,
}

/// A string that `{:?}` never prints (the control token, e.g. in a logged Config).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the one place that compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
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

/// `--tls-cert`, `--tls-key`, `--tls-client-ca`, `--tls-client-auth`: all or none of
/// the listener's pair, the client flags only with it, and files that load.
fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    client_auth: Option<String>,
) -> Result<Option<TlsFiles>, ConfigError> {
    let client_auth = match client_auth.as_deref() {
        None | Some("required") => ClientAuth::Required,
        Some("optional") => ClientAuth::Optional,
        Some(other) => {
            return Err(invalid(
                "tls-client-auth",
                format!("'{other}' is neither required nor optional"),
            ))
        }
    };
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => {
            if client_ca.is_some() {
                return Err(invalid("tls-client-ca", "needs --tls-cert and --tls-key"));
            }
            if client_auth == ClientAuth::Optional {
                return Err(invalid(
                    "tls-client-auth",
                    "needs --tls-cert and --tls-client-ca",
                ));
            }
            return Ok(None);
        }
        (Some(_), None) => return Err(invalid("tls-cert", "needs --tls-key")),
        (None, Some(_)) => return Err(invalid("tls-key", "needs --tls-cert")),
    };
    if client_ca.is_none() && client_auth == ClientAuth::Optional {
        return Err(invalid("tls-client-auth", "needs --tls-client-ca"));
    }
    let files = TlsFiles {
        cert,
        key,
        client_ca,
        client_auth,
    };
    files.load().map_err(|e| ConfigError::Invalid {
        flag: e.flag,
        reason: format!("{}: {}", e.path.display(), e.reason),
    })?;
    Ok(Some(files))
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
        // The final API address: with --demo, the demo's fixed address (all interfaces
        // reached through loopback); nothing changes it after validation.
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
            Some(t) => Some(Secret(t)),
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
        let max_groups_per_client = match cli.max_groups_per_client {
            n if n > MAX_GROUPS_PER_CLIENT => {
                return Err(invalid(
                    "max-groups-per-client",
                    format!("{n} is above the maximum of {MAX_GROUPS_PER_CLIENT}"),
                ))
            }
            n => n,
        };

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
        let allowed_origins = match cli.allowed_origins.as_deref() {
            None => None,
            Some(list) => Some(
                AllowedOrigins::parse(list)
                    .map_err(|e| invalid("allowed-origins", e.to_string()))?,
            ),
        };
        let max_tracked_ips = at_least_one("max-tracked-ips", cli.max_tracked_ips)?;
        if max_tracked_ips < shards {
            return Err(invalid(
                "max-tracked-ips",
                format!(
                    "{max_tracked_ips} is below --shards {shards}; every shard needs room for one"
                ),
            ));
        }
        let max_outbound_total = match cli.max_outbound_total.as_deref() {
            Some(s) => size("max-outbound-total", s, 1, usize::MAX)?,
            None => default_outbound_total(),
        };
        let share = max_outbound_total / shards;
        if share < max_outbound_bytes {
            return Err(invalid(
                "max-outbound-total",
                format!(
                    "{max_outbound_total} bytes is {share} per shard, below --max-outbound-bytes {max_outbound_bytes}: a shard could not hold one client's full queue"
                ),
            ));
        }

        let tls = tls_files(
            cli.tls_cert,
            cli.tls_key,
            cli.tls_client_ca,
            cli.tls_client_auth,
        )?;

        let cpuprofile = output_file("cpuprofile", cli.cpuprofile)?;
        let memprofile = output_file("memprofile", cli.memprofile)?;
        if let (Some(c), Some(m)) = (&cpuprofile, &memprofile) {
            if same_file(c, m) {
                return Err(invalid("memprofile", "is the same file as --cpuprofile"));
            }
        }

        Ok(Config {
            listen,
            shards,
            shutdown_timeout,
            proxy_protocol: cli.proxy_protocol,
            tls,
            demo,
            limits: ClientLimits {
                max_connections,
                max_message_size,
                max_outbound_bytes,
                max_inflight_per_client,
                max_groups_per_client,
                max_head_size,
                handshake_timeout,
                ping_interval,
            },
            edge: EdgeLimits {
                allowed_origins,
                max_connections_per_ip: cli.max_connections_per_ip,
                connect_rate_per_ip: cli.connect_rate_per_ip,
                max_tracked_ips,
                max_message_rate: cli.max_message_rate,
                max_outbound_total,
            },
            api: ApiClient {
                url: api,
                max_conns: api_max_conns,
                timeout: api_timeout,
                max_answer_size,
            },
            control: ControlPort {
                listen: control_listen,
                token: control_token,
            },
            observability: Observability {
                stats_interval,
                stats_file,
                cpuprofile,
                memprofile,
                log_level: cli.log_level,
            },
        })
    }

    /// The configuration of the in-process tests: clap's own defaults, so that there is no
    /// second table of defaults to drift from the flags, except listen and control on
    /// 127.0.0.1:0, shards 2 and the API server at `api`.
    ///
    /// `WS2API_*` variables are not read (see [`Cli::try_parse_from_ignoring_env`]): what the
    /// tests run with does not depend on the environment they run in.
    pub fn for_tests(api: SocketAddr) -> Config {
        let api_url = format!("--api-url={}", ApiUrl::from_addr(api));
        let cli = Cli::try_parse_from_ignoring_env([
            "ws2api",
            "--listen=127.0.0.1:0",
            "--control-listen=127.0.0.1:0",
            "--shards=2",
            &api_url,
        ])
        .expect("clap accepts the test overrides");
        Config::from_cli(cli).expect("the test overrides are valid")
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
