//! `ws2api-load`: a load generator for ws2api. Opens N WebSocket connections ramped at R per
//! second from many 127.0.0.x source addresses, spread over worker processes (this binary
//! re-executed with `--worker K`), sends OCPP-style messages open or closed loop, checks
//! every echo, optionally pushes through the control listener, optionally broadcasts to
//! groups (`--broadcasts`: worker 0 POSTs, every client checks it got each broadcast of
//! its group in order, the parent merges every worker's first and last arrival per
//! broadcast), and prints one CSV row per second (merged over workers) and a summary.
//! Exit code 1 if any error was seen.
//!
//! Layout: this file (flags, the plan, the parent that starts and folds workers),
//! `worker.rs` (one glommio executor driving its connections), `frame.rs` (client
//! framing and upgrade), `stream.rs` (a connection's bytes: plain TCP or TLS),
//! `tls.rs` (the `wss://` client config and the rustls stream), `report.rs` (the
//! per-second line between worker and parent, the CSV). `bin/ws2api-bench-api.rs` is
//! the API backend the load runs against.

mod frame;
mod report;
mod stream;
mod tls;
mod worker;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;

use report::{csv_row, ms, new_histogram, Second, CSV_HEADER};

/// Open files a worker may hold: the 20,000 per-process limit of the CI machines, less
/// room for the executor, stdio and the push connections.
const FILES_PER_WORKER: usize = 19_000;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ws2api-load",
    version,
    args_override_self = true,
    about = "Load generator for ws2api: N WebSocket clients, echo checks, pushes, one CSV row per second"
)]
struct Cli {
    /// Public listener of the gateway; the ClientId is appended to the path. `wss://`
    /// speaks TLS (then --tls-ca is required).
    #[arg(long, default_value = "ws://127.0.0.1:7001/")]
    url: String,
    /// With a `wss://` --url: PEM bundle of the CA(s) that signed the gateway's
    /// certificate (the only roots trusted; no system store).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// With a `wss://` --url: the name the gateway's certificate must carry, and the SNI
    /// (none for an IP address). Default: localhost.
    #[arg(long, value_name = "NAME")]
    tls_server_name: Option<String>,
    /// With a `wss://` --url: PEM certificate chain for mutual TLS (with --tls-client-key).
    #[arg(long, value_name = "FILE")]
    tls_client_cert: Option<PathBuf>,
    /// With a `wss://` --url: PEM private key of --tls-client-cert.
    #[arg(long, value_name = "FILE")]
    tls_client_key: Option<PathBuf>,
    /// Control listener of the gateway, for pushes (`POST <control><ClientId>`).
    #[arg(long, default_value = "http://127.0.0.1:7002/")]
    control: String,
    /// Connections to open in all.
    #[arg(short = 'c', long, default_value_t = 100)]
    connections: usize,
    /// New connections per second, over all workers.
    #[arg(long, default_value_t = 1000)]
    ramp: u64,
    /// Open loop: each connection sends one message per interval (`0s`: idle, none).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    interval: Duration,
    /// How long to keep sending once the ramp is done.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// After the duration, how long to wait for the last answers and pushes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain: Duration,
    /// Closed loop: each connection sends its next message as soon as the answer is in
    /// (`--interval` is then ignored).
    #[arg(long)]
    closed_loop: bool,
    /// Pushes per second through the control listener, over all workers (0: none).
    #[arg(long, default_value_t = 0)]
    pushes: u64,
    /// Keep-alive control connections per worker that carry the pushes.
    #[arg(long, default_value_t = 2)]
    push_conns: usize,
    /// Worker processes (0: enough that none holds more than 19,000 sockets).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Connections per source address; sources are 127.0.0.2, 127.0.0.3, …  Keep it
    /// under a quarter of net.ipv4.ip_local_port_range: connect() scans every even port
    /// before it tries an odd one, so a source using more than half the range makes each
    /// connect a full scan.
    #[arg(long, default_value_t = 5_000)]
    conns_per_source: usize,
    /// First source address (must be loopback or local).
    #[arg(long, default_value = "127.0.0.2")]
    source_base: Ipv4Addr,
    /// ClientId prefix; connection k is `<prefix><k>`.
    #[arg(long, default_value = "load-")]
    id_prefix: String,
    /// Broadcasts per second over all groups (0: none), open loop from the end of the ramp
    /// plus --broadcast-delay to the end of --duration. Worker 0 POSTs them one after
    /// another on one keep-alive connection (the next after the previous one's answer);
    /// broadcast n goes to group n mod --groups, and every member must get every
    /// broadcast of its group, in order.
    #[arg(long, default_value_t = 0.0)]
    broadcasts: f64,
    /// Groups the clients are in: client k is in `<group-prefix><k mod K>` (what
    /// `ws2api-bench-api --groups K` makes them join).
    #[arg(long, default_value_t = 1)]
    groups: u64,
    /// Group names are this prefix and the group number.
    #[arg(long, default_value = "g")]
    group_prefix: String,
    /// Payload of each broadcast (`1KiB`, `512`): `B <n> <µs> ` padded with `x`.
    #[arg(long, default_value = "1KiB", value_parser = parse_size)]
    broadcast_size: usize,
    /// After the ramp, how long before the first broadcast (joins and subscriptions
    /// settle; the gateway's RSS before broadcasts is taken in this window).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    broadcast_delay: Duration,
    /// Where broadcasts go: `ws2api` (`POST <control>groups/<group>`, answer `{"queued":N,…}`)
    /// or `pushpin` (`POST <control>publish/` with a JSON `items` list, `ws-message` format).
    #[arg(long, default_value = "ws2api", value_parser = ["ws2api", "pushpin"])]
    publish: String,
    /// Bound on connect + upgrade of one connection.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Write the CSV here instead of stdout.
    #[arg(long)]
    csv: Option<String>,
    /// Also write the summary as `key value` lines to this file.
    #[arg(long)]
    summary: Option<String>,
    /// Internal: run as worker K.
    #[arg(long, hide = true)]
    worker: Option<usize>,
    /// Internal: the shared start, CLOCK_MONOTONIC nanoseconds.
    #[arg(long, hide = true)]
    t0_ns: Option<u64>,
}

/// The validated workload, the same in the parent and every worker.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: SocketAddr,
    /// `wss://`: the config every connection's TLS session is made with.
    pub tls: Option<tls::Tls>,
    pub host: String,
    pub path: String,
    pub control: SocketAddr,
    pub control_path: String,
    pub connections: usize,
    pub ramp: u64,
    pub interval: Duration,
    pub duration: Duration,
    pub drain: Duration,
    pub closed_loop: bool,
    pub pushes: u64,
    pub push_conns: usize,
    pub workers: usize,
    pub conns_per_source: usize,
    pub source_base: Ipv4Addr,
    pub id_prefix: String,
    pub connect_timeout: Duration,
    /// Broadcasts per second (0: none); see the flag.
    pub broadcasts: f64,
    pub groups: u64,
    pub group_prefix: String,
    pub broadcast_size: usize,
    pub broadcast_delay: Duration,
    /// Publish through Pushpin's `/publish/` instead of ws2api's `/groups/<g>`.
    pub publish_pushpin: bool,
}

impl Plan {
    pub fn ramp_time(&self) -> Duration {
        Duration::from_secs_f64(self.connections as f64 / self.ramp as f64)
    }
    pub fn client_id(&self, g: usize) -> String {
        format!("{}{}{g}", self.path, self.id_prefix)
    }
    pub fn source_addr(&self, g: usize) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.source_base) + (g / self.conns_per_source) as u32)
    }
    /// When broadcast n is due, after t0 (the first at the ramp's end plus the delay).
    pub fn broadcast_at(&self, n: u64) -> Duration {
        self.ramp_time()
            + self.broadcast_delay
            + Duration::from_secs_f64(n as f64 / self.broadcasts)
    }
    /// Broadcasts in the run: those due before the end of --duration. Every process
    /// computes the same number, so each client knows how many its group gets.
    pub fn broadcasts_total(&self) -> u64 {
        if self.broadcasts <= 0.0 {
            return 0;
        }
        let span = self.duration.saturating_sub(self.broadcast_delay);
        (span.as_secs_f64() * self.broadcasts).ceil() as u64
    }
    /// The group of client g, and of broadcast n.
    pub fn group_of(&self, g: u64) -> u64 {
        g % self.groups
    }
    pub fn group_name(&self, k: u64) -> String {
        format!("{}{k}", self.group_prefix)
    }
    /// Broadcasts of group k: the n < total with n mod K = k.
    pub fn broadcasts_of_group(&self, k: u64) -> u64 {
        self.broadcasts_total()
            .saturating_sub(k)
            .div_ceil(self.groups)
    }
}

/// `1KiB`, `4KiB`, `1MiB`, `512` (bytes).
fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("{s:?}: not a size"))?;
    let mult = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (B, KiB, MiB)")),
    };
    Ok(n * mult)
}

/// `500ms`, `10s`, `2m`, `1h`, `0s`; a bare number is refused.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("{s:?}: a duration needs a unit (ms, s, m, h)"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: not a number"))?;
    let secs = match unit {
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// `scheme://host:port/path`, the scheme one of `schemes` → (scheme, address, host:port,
/// path with a trailing `/`).
fn parse_url<'s>(
    flag: &str,
    url: &str,
    schemes: &[&'s str],
) -> Result<(&'s str, SocketAddr, String, String), String> {
    let (scheme, rest) = schemes
        .iter()
        .find_map(|&s| Some((s, url.strip_prefix(s)?.strip_prefix("://")?)))
        .ok_or_else(|| {
            let list: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
            format!("--{flag} {url}: must start with {}", list.join(" or "))
        })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("--{flag} {url}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("--{flag} {url}: no IPv4 address"))?;
    let mut path = path.to_string();
    if !path.is_empty() && !path.ends_with('/') {
        path.push('/');
    }
    Ok((scheme, addr, authority.to_string(), path))
}

/// The TLS flags: a config for a `wss://` --url, none for `ws://` (where they are refused).
fn tls_of(cli: &Cli, wss: bool) -> Result<Option<tls::Tls>, String> {
    if !wss {
        let given = [
            ("--tls-ca", cli.tls_ca.is_some()),
            ("--tls-server-name", cli.tls_server_name.is_some()),
            ("--tls-client-cert", cli.tls_client_cert.is_some()),
            ("--tls-client-key", cli.tls_client_key.is_some()),
        ];
        return match given.iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(format!("{flag}: only with a wss:// --url")),
            None => Ok(None),
        };
    }
    let ca = cli
        .tls_ca
        .as_deref()
        .ok_or("--tls-ca: required with a wss:// --url")?;
    let client = match (&cli.tls_client_cert, &cli.tls_client_key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        (None, None) => None,
        _ => return Err("--tls-client-cert and --tls-client-key: one needs the other".into()),
    };
    let name = cli.tls_server_name.as_deref().unwrap_or("localhost");
    tls::config(ca, name, client).map(Some)
}

fn plan_of(cli: &Cli) -> Result<Plan, String> {
    let (scheme, target, host, path) = parse_url("url", &cli.url, &["ws", "wss"])?;
    let (_, control, _, control_path) = parse_url("control", &cli.control, &["http"])?;
    if cli.connections == 0 {
        return Err("--connections: must be at least 1".into());
    }
    if cli.ramp == 0 {
        return Err("--ramp: must be at least 1 per second".into());
    }
    if cli.conns_per_source == 0 || cli.conns_per_source > 60_000 {
        return Err("--conns-per-source: 1..=60000".into());
    }
    let sources = cli.connections.div_ceil(cli.conns_per_source);
    if u32::from(cli.source_base) as u64 + sources as u64
        > u32::from(Ipv4Addr::new(127, 255, 255, 254)) as u64
    {
        return Err(
            "--source-base: not enough addresses for --connections / --conns-per-source".into(),
        );
    }
    let workers = if cli.workers == 0 {
        cli.connections.div_ceil(FILES_PER_WORKER - 1000).max(1)
    } else {
        cli.workers
    };
    if cli.connections / workers + cli.push_conns + 64 > FILES_PER_WORKER {
        return Err(format!(
            "--workers {workers}: {} connections per worker is over {FILES_PER_WORKER} open files",
            cli.connections / workers
        ));
    }
    if !cli.closed_loop && !cli.interval.is_zero() && cli.interval < Duration::from_millis(1) {
        return Err("--interval: at least 1ms (or 0s for idle)".into());
    }
    if !(cli.broadcasts >= 0.0 && cli.broadcasts <= 100_000.0) {
        return Err("--broadcasts: 0..=100000 per second".into());
    }
    if cli.groups == 0 || cli.groups > cli.connections as u64 {
        return Err("--groups: 1..=--connections".into());
    }
    if cli.broadcast_size < 64 || cli.broadcast_size > 60 * 1024 {
        return Err("--broadcast-size: 64 B..=60 KiB".into());
    }
    if cli.broadcasts > 0.0 && cli.broadcast_delay >= cli.duration {
        return Err("--broadcast-delay: must be shorter than --duration".into());
    }
    if cli.group_prefix.is_empty()
        || !cli
            .group_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
    {
        return Err("--group-prefix: 1 or more of A-Z a-z 0-9 . _ ~ -".into());
    }
    // Last: the files are read only once every other flag is known to be good.
    let tls = tls_of(cli, scheme == "wss")?;
    Ok(Plan {
        target,
        tls,
        host,
        path: String::new(),
        control,
        control_path: format!("/{control_path}"),
        connections: cli.connections,
        ramp: cli.ramp,
        interval: cli.interval,
        duration: cli.duration,
        drain: cli.drain,
        closed_loop: cli.closed_loop,
        pushes: cli.pushes,
        push_conns: cli.push_conns.max(1),
        workers,
        conns_per_source: cli.conns_per_source,
        source_base: cli.source_base,
        id_prefix: format!("{path}{}", cli.id_prefix),
        connect_timeout: cli.connect_timeout,
        broadcasts: cli.broadcasts,
        groups: cli.groups,
        group_prefix: cli.group_prefix.clone(),
        broadcast_size: cli.broadcast_size,
        broadcast_delay: cli.broadcast_delay,
        publish_pushpin: cli.publish == "pushpin",
    })
}

fn monotonic_ns() -> u64 {
    let mut ts = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The `Instant` of a CLOCK_MONOTONIC reading (std's `Instant` is that clock on Linux).
fn instant_of(t0_ns: u64) -> Instant {
    let now_ns = monotonic_ns();
    let now = Instant::now();
    if t0_ns <= now_ns {
        now - Duration::from_nanos(now_ns - t0_ns)
    } else {
        now + Duration::from_nanos(t0_ns - now_ns)
    }
}

/// Raises the soft open-files limit to the hard one; returns the soft limit now in force.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let plan = match plan_of(&cli) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ws2api-load: error: {e}");
            return ExitCode::from(2);
        }
    };
    let nofile = raise_nofile();
    if let Some(k) = cli.worker {
        let t0 = instant_of(cli.t0_ns.unwrap_or_else(monotonic_ns));
        return ExitCode::from(worker::run(plan, k, t0) as u8);
    }
    let per_worker = plan.connections.div_ceil(plan.workers) as u64;
    if per_worker + 64 > nofile {
        eprintln!(
            "ws2api-load: error: {per_worker} connections per worker but the open-files limit is {nofile}: \
             raise `ulimit -n` or pass more --workers"
        );
        return ExitCode::from(2);
    }
    parent(&cli, &plan)
}

/// One broadcast as worker 0 posted it (its `P` line).
struct Post {
    sent_us: u64,
    status: u64,
    queued: u64,
    full: u64,
}

/// The broadcast lines of the summary: per broadcast the time from the POST to its
/// first and to its last delivery over all workers (p50/p99/max over broadcasts), the
/// per-delivery latency, deliveries against what the plan and the gateway expected, and
/// the load seconds before and during broadcasts (for the gateway's CPU and RSS there).
fn broadcast_summary(
    plan: &Plan,
    rows: &[Second],
    arrivals: &BTreeMap<u64, (u64, u64, u64)>,
    posts: &BTreeMap<u64, Post>,
    delivery_hist: &Histogram<u64>,
) -> Vec<(String, String)> {
    let mut first_hist = new_histogram();
    let mut last_hist = new_histogram();
    let mut complete = 0u64;
    for (n, p) in posts {
        if p.status != 200 {
            continue;
        }
        if let Some(&(count, first, last)) = arrivals.get(n) {
            let _ = first_hist.record(first.saturating_sub(p.sent_us).max(1));
            let _ = last_hist.record(last.saturating_sub(p.sent_us).max(1));
            let members = members_of(plan, plan.group_of(*n));
            if count >= members {
                complete += 1;
            }
        }
    }
    let total = plan.broadcasts_total();
    let expected: u64 = (0..plan.groups.min(total))
        .map(|k| members_of(plan, k) * plan.broadcasts_of_group(k))
        .sum();
    let delivered: u64 = arrivals.values().map(|a| a.0).sum();
    let ok = posts.values().filter(|p| p.status == 200).count();
    // Whole load seconds (second s covers [s-1, s) after t0) inside each window.
    let start = plan.ramp_time() + plan.broadcast_delay;
    let end = plan.ramp_time() + plan.duration;
    let pre = (
        plan.ramp_time().as_secs_f64().ceil() as u64 + 1,
        start.as_secs_f64() as u64,
    );
    let during = (
        start.as_secs_f64().ceil() as u64 + 1,
        end.as_secs_f64() as u64,
    );
    let in_window = rows
        .iter()
        .filter(|r| r.second >= during.0 && r.second <= during.1);
    let (secs, window_deliveries) =
        in_window.fold((0u64, 0u64), |(s, d), r| (s + 1, d + r.deliveries));
    let q = |h: &Histogram<u64>, v: f64| format!("{:.3}", ms(h, v));
    let max = |h: &Histogram<u64>| format!("{:.3}", h.max() as f64 / 1000.0);
    vec![
        ("broadcasts_per_s".into(), format!("{}", plan.broadcasts)),
        ("broadcast_groups".into(), plan.groups.to_string()),
        ("broadcast_size".into(), plan.broadcast_size.to_string()),
        ("broadcasts_planned".into(), total.to_string()),
        ("broadcasts_ok".into(), ok.to_string()),
        ("broadcasts_complete".into(), complete.to_string()),
        (
            "broadcast_queued".into(),
            posts.values().map(|p| p.queued).sum::<u64>().to_string(),
        ),
        (
            "broadcast_full".into(),
            posts.values().map(|p| p.full).sum::<u64>().to_string(),
        ),
        ("deliveries".into(), delivered.to_string()),
        ("deliveries_expected".into(), expected.to_string()),
        (
            "deliveries_per_s".into(),
            format!("{:.0}", window_deliveries as f64 / secs.max(1) as f64),
        ),
        ("bcast_first_p50_ms".into(), q(&first_hist, 0.5)),
        ("bcast_first_p99_ms".into(), q(&first_hist, 0.99)),
        ("bcast_first_max_ms".into(), max(&first_hist)),
        ("bcast_last_p50_ms".into(), q(&last_hist, 0.5)),
        ("bcast_last_p99_ms".into(), q(&last_hist, 0.99)),
        ("bcast_last_max_ms".into(), max(&last_hist)),
        ("delivery_p50_ms".into(), q(delivery_hist, 0.5)),
        ("delivery_p99_ms".into(), q(delivery_hist, 0.99)),
        ("delivery_max_ms".into(), max(delivery_hist)),
        ("pre_broadcast_first_second".into(), pre.0.to_string()),
        ("pre_broadcast_last_second".into(), pre.1.to_string()),
        ("broadcast_first_second".into(), during.0.to_string()),
        ("broadcast_last_second".into(), during.1.to_string()),
    ]
}

/// Clients of group k in the plan: the g < connections with g mod K = k.
fn members_of(plan: &Plan, k: u64) -> u64 {
    (plan.connections as u64)
        .saturating_sub(k)
        .div_ceil(plan.groups)
}

/// What the parent hears from a worker's stdout reader thread.
enum Heard {
    Line(usize, String),
    End(usize),
}

fn parent(cli: &Cli, plan: &Plan) -> ExitCode {
    // Workers start 200 ms from now, all on the same clock.
    let t0_ns = monotonic_ns() + 200_000_000;
    let t0 = instant_of(t0_ns);
    let t0_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64 + 200)
        .unwrap_or(0);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ws2api-load: error: cannot find my own executable: {e}");
            return ExitCode::from(1);
        }
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (tx, rx) = crossbeam_channel::unbounded::<Heard>();
    let mut children: Vec<Child> = Vec::new();
    for k in 0..plan.workers {
        let child = Command::new(&exe)
            .args(&args)
            .arg("--worker")
            .arg(k.to_string())
            .arg("--t0-ns")
            .arg(t0_ns.to_string())
            .arg("--workers")
            .arg(plan.workers.to_string())
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ws2api-load: error: cannot start worker {k}: {e}");
                for c in &mut children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return ExitCode::from(1);
            }
        };
        let out = child.stdout.take().expect("piped stdout");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(Heard::Line(k, l)).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = tx.send(Heard::End(k));
        });
        children.push(child);
    }
    drop(tx);

    let mut csv: Box<dyn Write> = match &cli.csv {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("ws2api-load: error: --csv {path}: {e}");
                return ExitCode::from(2);
            }
        },
        None => Box::new(std::io::stdout()),
    };
    let _ = writeln!(csv, "{CSV_HEADER}");
    let _ = csv.flush();
    eprintln!(
        "ws2api-load: {} connections to {}{} at {}/s over {} workers, {}, for {:?} after the ramp ({:.1}s)",
        plan.connections,
        plan.target,
        match &plan.tls {
            Some(tls) => format!(" over TLS (server name {:?})", tls.server_name.to_str()),
            None => String::new(),
        },
        plan.ramp,
        plan.workers,
        if plan.closed_loop {
            "closed loop".to_string()
        } else if plan.interval.is_zero() {
            "idle".to_string()
        } else {
            format!("1 message per {:?} each", plan.interval)
        },
        plan.duration,
        plan.ramp_time().as_secs_f64()
    );

    let hard_end = t0 + plan.ramp_time() + plan.duration + plan.drain + Duration::from_secs(30);
    let w = plan.workers;
    let mut last_second = vec![0u64; w];
    let mut ended = vec![false; w];
    let mut pending: BTreeMap<u64, Second> = BTreeMap::new();
    let mut next_row: u64 = 1;
    let mut total = Second::empty(0);
    let mut max_connections = 0u64;
    let mut error_kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut push_hist: Histogram<u64> = new_histogram();
    let mut pushes_received = 0u64;
    // Broadcast n → (deliveries, first arrival, last arrival) over all workers, and how
    // worker 0 posted it; per-delivery latency over all workers.
    let mut arrivals: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    let mut posts: BTreeMap<u64, Post> = BTreeMap::new();
    let mut delivery_hist: Histogram<u64> = new_histogram();
    let mut worker_failures = 0u64;
    let mut timed_out = false;
    let mut rows: Vec<Second> = Vec::new();

    while ended.iter().any(|e| !e) {
        let now = Instant::now();
        if now >= hard_end {
            eprintln!(
                "ws2api-load: error: workers still running past the hard deadline; killing them"
            );
            for c in &mut children {
                let _ = c.kill();
            }
            timed_out = true;
            break;
        }
        let heard = match rx.recv_timeout((hard_end - now).min(Duration::from_secs(1))) {
            Ok(h) => h,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        match heard {
            Heard::End(k) => ended[k] = true,
            Heard::Line(k, line) => {
                if let Some(rest) = line.strip_prefix("S ") {
                    match Second::parse(rest) {
                        Ok(s) => {
                            last_second[k] = s.second;
                            pending
                                .entry(s.second)
                                .or_insert_with(|| Second::empty(s.second))
                                .add(&s);
                        }
                        Err(e) => eprintln!("ws2api-load: worker {k}: {e}"),
                    }
                } else if let Some(rest) = line.strip_prefix("B ") {
                    let f: Vec<u64> = rest.split(' ').filter_map(|v| v.parse().ok()).collect();
                    if let [n, count, first, last] = f[..] {
                        let e = arrivals.entry(n).or_insert((0, u64::MAX, 0));
                        e.0 += count;
                        e.1 = e.1.min(first);
                        e.2 = e.2.max(last);
                    }
                } else if let Some(rest) = line.strip_prefix("P ") {
                    let f: Vec<u64> = rest.split(' ').filter_map(|v| v.parse().ok()).collect();
                    if let [n, sent_us, status, queued, full] = f[..] {
                        posts.insert(
                            n,
                            Post {
                                sent_us,
                                status,
                                queued,
                                full,
                            },
                        );
                    }
                } else if let Some(rest) = line.strip_prefix("E ") {
                    for field in rest.split(' ') {
                        let Some((name, value)) = field.split_once('=') else {
                            continue;
                        };
                        if name == "push_hist" || name == "delivery_hist" {
                            if let Ok(s) = Second::parse(&format!("0 0 0 0 0 0 0 0 {value}")) {
                                let h = if name == "push_hist" {
                                    &mut push_hist
                                } else {
                                    &mut delivery_hist
                                };
                                let _ = h.add(&s.rtt_us);
                            }
                        } else if let Ok(v) = value.parse::<u64>() {
                            if name == "pushes_received" {
                                pushes_received += v;
                            } else {
                                *error_kinds.entry(name.to_string()).or_default() += v;
                            }
                        }
                    }
                }
            }
        }
        // Rows that every worker has reported (or that an ended worker never will).
        while (0..w).all(|k| ended[k] || last_second[k] >= next_row)
            && pending.contains_key(&next_row)
        {
            let row = pending.remove(&next_row).expect("checked");
            let _ = writeln!(csv, "{}", csv_row(&row));
            let _ = csv.flush();
            next_row += 1;
            rows.push(row);
        }
    }
    for (_, row) in std::mem::take(&mut pending) {
        let _ = writeln!(csv, "{}", csv_row(&row));
        rows.push(row);
    }
    let _ = csv.flush();
    for (k, c) in children.iter_mut().enumerate() {
        match c.wait() {
            Ok(st) if st.success() => {}
            Ok(st) if st.code() == Some(1) => {} // errors, counted from its lines
            Ok(st) => {
                eprintln!("ws2api-load: worker {k} failed: {st}");
                worker_failures += 1;
            }
            Err(e) => {
                eprintln!("ws2api-load: worker {k}: {e}");
                worker_failures += 1;
            }
        }
    }
    for r in &rows {
        max_connections = max_connections.max(r.connections);
        total.add(r);
    }
    let errors = total.errors + worker_failures + u64::from(timed_out);
    // Steady state: the seconds at full connection count with traffic (or all, if idle).
    let steady: Vec<&Second> = rows
        .iter()
        .filter(|r| r.connections == max_connections && max_connections > 0)
        .filter(|r| r.second as f64 <= (plan.ramp_time() + plan.duration).as_secs_f64())
        .collect();
    let steady_secs = steady.len().saturating_sub(1).max(1) as f64;
    let steady_received: u64 = steady.iter().skip(1).map(|r| r.received).sum();
    let mut steady_rtt = new_histogram();
    for r in steady.iter().skip(1) {
        let _ = steady_rtt.add(&r.rtt_us);
    }
    let elapsed = rows.len() as f64;

    let mut summary: Vec<(String, String)> = vec![
        ("t0_unix_ms".into(), t0_unix_ms.to_string()),
        ("workers".into(), plan.workers.to_string()),
        ("connections_target".into(), plan.connections.to_string()),
        ("connections_max".into(), max_connections.to_string()),
        (
            "mode".into(),
            if plan.closed_loop {
                "closed-loop".into()
            } else if plan.interval.is_zero() {
                "idle".into()
            } else {
                format!("interval-{}ms", plan.interval.as_millis())
            },
        ),
        ("seconds".into(), format!("{elapsed:.0}")),
        ("sent".into(), total.sent.to_string()),
        ("received".into(), total.received.to_string()),
        ("pushes_ok".into(), total.pushes.to_string()),
        ("pushes_received".into(), pushes_received.to_string()),
        (
            "msgs_per_s_steady".into(),
            format!("{:.0}", steady_received as f64 / steady_secs),
        ),
        (
            "steady_first_second".into(),
            steady.get(1).map_or(0, |r| r.second).to_string(),
        ),
        (
            "steady_last_second".into(),
            steady.last().map_or(0, |r| r.second).to_string(),
        ),
        (
            "steady_rtt_p50_ms".into(),
            format!("{:.3}", ms(&steady_rtt, 0.5)),
        ),
        (
            "steady_rtt_p99_ms".into(),
            format!("{:.3}", ms(&steady_rtt, 0.99)),
        ),
        (
            "steady_rtt_p999_ms".into(),
            format!("{:.3}", ms(&steady_rtt, 0.999)),
        ),
        (
            "rtt_p50_ms".into(),
            format!("{:.3}", ms(&total.rtt_us, 0.5)),
        ),
        (
            "rtt_p90_ms".into(),
            format!("{:.3}", ms(&total.rtt_us, 0.9)),
        ),
        (
            "rtt_p99_ms".into(),
            format!("{:.3}", ms(&total.rtt_us, 0.99)),
        ),
        (
            "rtt_p999_ms".into(),
            format!("{:.3}", ms(&total.rtt_us, 0.999)),
        ),
        (
            "rtt_max_ms".into(),
            format!("{:.3}", total.rtt_us.max() as f64 / 1000.0),
        ),
        ("push_p50_ms".into(), format!("{:.3}", ms(&push_hist, 0.5))),
        ("push_p99_ms".into(), format!("{:.3}", ms(&push_hist, 0.99))),
        ("errors".into(), errors.to_string()),
    ];
    if plan.broadcasts > 0.0 {
        summary.extend(broadcast_summary(
            plan,
            &rows,
            &arrivals,
            &posts,
            &delivery_hist,
        ));
    }
    for (name, v) in &error_kinds {
        summary.push((format!("errors_{name}"), v.to_string()));
    }
    if worker_failures > 0 {
        summary.push(("errors_worker_failed".into(), worker_failures.to_string()));
    }
    eprintln!("ws2api-load: summary");
    for (k, v) in &summary {
        eprintln!("  {k:<26} {v}");
    }
    if let Some(path) = &cli.summary {
        let text: String = summary.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("ws2api-load: error: --summary {path}: {e}");
        }
    }
    if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate (P-256, `CN=ws2api-load-test`, valid to 2126): trusted
    /// roots need only the certificate, so no private key lives in the tree.
    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBjjCCATOgAwIBAgIUCmodTYnm7FYz6m5M8faDNn+dDd4wCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQd3MyYXBpLWxvYWQtdGVzdDAgFw0yNjEyMDIxNjQ4MThaGA8y
MTI2MTEwODE2NDgxOFowGzEZMBcGA1UEAwwQd3MyYXBpLWxvYWQtdGVzdDBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABMqph6jbfdYL1IOg2W0ypKTV/aQ0lE+a6pup
Lom9uD3eVYMIYjU8dJkpEiKTyzdV+wrj1Yy7aOPZJwifbx2o082jUzBRMB0GA1Ud
DgQWBBQW6vKbhzIy79lniWL9m19a4kPdlzAfBgNVHSMEGDAWgBQW6vKbhzIy79ln
iWL9m19a4kPdlzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQCy
IVSy4MOpE/VHsAWxJhmjRH1JqfIoyFQoTAmUbjMbfAIhAMkZ+Ic6t6xtJaMIH2Gk
qhOGy/whuyLPi1BUkF27Vqs/
-----END CERTIFICATE-----
";

    /// A file in the temporary directory, named for this process, removed when dropped.
    struct Temp(String);
    impl Temp {
        fn new(name: &str, contents: &str) -> Temp {
            let path =
                std::env::temp_dir().join(format!("ws2api-load-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            Temp(path.to_str().unwrap().to_string())
        }
    }
    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let cli = Cli::try_parse_from(std::iter::once("ws2api-load").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        plan_of(&cli)
    }

    fn error(args: &[&str]) -> String {
        plan(args).expect_err("the flags should have been refused")
    }

    #[test]
    fn wss_takes_the_ca_and_the_server_name() {
        let ca = Temp::new("ca.pem", CA_PEM);
        let ca = ca.0.as_str();
        let p = plan(&["--url", "wss://127.0.0.1:7443/tenant", "--tls-ca", ca]).unwrap();
        let tls = p.tls.expect("wss:// is TLS");
        assert_eq!(tls.server_name.to_str(), "localhost");
        assert_eq!(tls.config.alpn_protocols, [b"http/1.1".to_vec()]);
        assert_eq!(
            (p.host.as_str(), p.id_prefix.as_str()),
            ("127.0.0.1:7443", "tenant/load-")
        );
        let p = plan(&[
            "--url",
            "wss://127.0.0.1:7443/",
            "--tls-ca",
            ca,
            "--tls-server-name",
            "127.0.0.1",
        ])
        .unwrap();
        assert_eq!(p.tls.unwrap().server_name.to_str(), "127.0.0.1");
        assert!(plan(&[]).unwrap().tls.is_none());
    }

    #[test]
    fn tls_flags_are_refused_one_line_each() {
        let wss = "wss://127.0.0.1:7443/";
        let ca = Temp::new("ca-refused.pem", CA_PEM);
        let not_pem = Temp::new("not.pem", "hello\n");
        let (ca, not_pem) = (ca.0.as_str(), not_pem.0.as_str());
        assert_eq!(
            error(&["--url", wss]),
            "--tls-ca: required with a wss:// --url"
        );
        assert_eq!(
            error(&["--tls-ca", ca]),
            "--tls-ca: only with a wss:// --url"
        );
        assert_eq!(
            error(&["--tls-server-name", "localhost"]),
            "--tls-server-name: only with a wss:// --url"
        );
        assert_eq!(
            error(&["--url", wss, "--tls-ca", ca, "--tls-client-key", ca]),
            "--tls-client-cert and --tls-client-key: one needs the other"
        );
        let missing = format!("{ca}.missing");
        let e = error(&["--url", wss, "--tls-ca", &missing]);
        assert!(e.starts_with(&format!("--tls-ca {missing}: ")), "{e}");
        assert_eq!(
            error(&["--url", wss, "--tls-ca", not_pem]),
            format!("--tls-ca {not_pem}: no CERTIFICATE in the file")
        );
        let e = error(&[
            "--url",
            wss,
            "--tls-ca",
            ca,
            "--tls-server-name",
            "not a name",
        ]);
        assert!(e.starts_with("--tls-server-name \"not a name\": "), "{e}");
        // A certificate where the key should be: no PRIVATE KEY in it.
        let e = error(&[
            "--url",
            wss,
            "--tls-ca",
            ca,
            "--tls-client-cert",
            ca,
            "--tls-client-key",
            ca,
        ]);
        assert!(e.starts_with(&format!("--tls-client-key {ca}: ")), "{e}");
        assert_eq!(
            error(&["--url", "https://127.0.0.1:7443/"]),
            "--url https://127.0.0.1:7443/: must start with ws:// or wss://"
        );
        for e in [
            error(&["--url", wss]),
            error(&["--url", wss, "--tls-ca", &missing]),
        ] {
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
