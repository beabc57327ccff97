//! Command-line surface of ws2api: the clap `Cli` (flags, defaults, help text, `WS2API_*` env overrides); raw values only, validation lives in `config/`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{CommandFactory, FromArgMatches, Parser};

use crate::logger::LogLevel;

const AFTER_HELP: &str = "\
Durations take a unit: 500ms, 10s, 2m, 1h (a bare number is rejected).
Sizes are bytes with an optional suffix: 512, 64KiB, 1MiB, 1GiB (KB, MB, GB are powers of 1000).
Every flag can also be set from the environment as WS2API_<FLAG>, e.g. WS2API_API_URL; a flag on the command line wins.";

/// Raw command line of ws2api. Durations and sizes stay strings here; `Config::from_cli` parses and
/// validates them so that every error names its flag.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ws2api",
    version,
    about = "WebSocket-to-HTTP gateway: every WebSocket event (connect, message, disconnect) becomes a plain HTTP request to --api-url",
    after_help = AFTER_HELP,
    next_line_help = true
)]
pub struct Cli {
    /// Public WebSocket listener (host:port); clients connect to ws://ADDR/<ClientId>
    #[arg(
        long,
        env = "WS2API_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:7001"
    )]
    pub listen: String,

    /// Control listener (host:port): push, disconnect, /metrics, /healthz
    ///
    /// For the API server and operators, never for the public: keep it on loopback or a private network, or set --control-token.
    #[arg(
        long,
        env = "WS2API_CONTROL_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:7002"
    )]
    pub control_listen: String,

    /// Base URL of the API server (http:// only); the ClientId is appended to it. Ignored with --demo
    ///
    /// A missing trailing '/' is added. For https, put a TLS proxy in front. The host is resolved once at startup.
    #[arg(
        long,
        env = "WS2API_API_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:8000/"
    )]
    pub api_url: String,

    /// Bearer token required on every control request but /healthz and /readyz [default: none = no auth]
    ///
    /// Set it whenever the control listener is reachable from other hosts.
    #[arg(
        long,
        env = "WS2API_CONTROL_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub control_token: Option<String>,

    /// Worker threads, one event loop each, 1 to 1024 [default: one per available core]
    ///
    /// Fewer leaves cores to a backend on the same machine; more than the cores only adds context switches.
    #[arg(long, env = "WS2API_SHARDS", value_name = "N")]
    pub shards: Option<usize>,

    /// WebSocket clients for the whole process (each shard enforces its even share)
    ///
    /// Beyond it new clients are refused and /readyz answers 503. Each client costs socket buffers and state, so this bounds memory.
    #[arg(
        long,
        env = "WS2API_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 1_000_000
    )]
    pub max_connections: usize,

    /// Largest message accepted from a client, in bytes (at most 2GiB); larger closes it with 1009
    ///
    /// Bigger allows larger uploads at more memory per busy client.
    #[arg(
        long,
        env = "WS2API_MAX_MESSAGE_SIZE",
        value_name = "SIZE",
        default_value = "1MiB"
    )]
    pub max_message_size: String,

    /// Bytes queued for sending to one client (answers and pushes); a push beyond it gets 503
    ///
    /// Bigger tolerates slower readers at more memory per client.
    #[arg(
        long,
        env = "WS2API_MAX_OUTBOUND_BYTES",
        value_name = "SIZE",
        default_value = "1MiB"
    )]
    pub max_outbound_bytes: String,

    /// Largest answer body read from the API server, in bytes (at most 2GiB); larger counts as a failed request
    ///
    /// Bigger allows larger replies at more memory per request in flight.
    #[arg(
        long,
        env = "WS2API_MAX_ANSWER_SIZE",
        value_name = "SIZE",
        default_value = "1MiB"
    )]
    pub max_answer_size: String,

    /// Backend requests one client may have in flight at once
    ///
    /// 1 keeps a client's messages strictly ordered; more raises one client's throughput, and answers then go out as they complete.
    #[arg(
        long,
        env = "WS2API_MAX_INFLIGHT_PER_CLIENT",
        value_name = "N",
        default_value_t = 1
    )]
    pub max_inflight_per_client: usize,

    /// Groups one client may belong to at once, 0 to 65536; a join beyond it gets 409 (or is skipped, from an API answer)
    ///
    /// Each membership costs tens of bytes on the client's shard; 0 turns groups off for every client.
    #[arg(
        long,
        env = "WS2API_MAX_GROUPS_PER_CLIENT",
        value_name = "N",
        default_value_t = 64
    )]
    pub max_groups_per_client: usize,

    /// Browser origins allowed to open a socket, comma-separated: `https://app.example.com` (exact), `https://*.example.com` (any subdomain); others get 403 [default: none = any origin]
    ///
    /// Stops cross-site WebSocket hijacking (any page opening a socket with a user's cookies) before the API is asked; requests without Origin (not browsers) pass.
    #[arg(long, env = "WS2API_ALLOWED_ORIGINS", value_name = "LIST")]
    pub allowed_origins: Option<String>,

    /// Open connections from one client address (all shards together); beyond it 429. 0: off
    ///
    /// Bounds what one host can hold; mind NAT (a carrier or office shares one address). The address is the PROXY source with --proxy-protocol.
    #[arg(
        long,
        env = "WS2API_MAX_CONNECTIONS_PER_IP",
        value_name = "N",
        default_value_t = 0
    )]
    pub max_connections_per_ip: u32,

    /// Upgrades per second from one client address (burst N); beyond it 429 with Retry-After. 0: off
    ///
    /// Slows reconnect storms and scans before they reach the API server.
    #[arg(
        long,
        env = "WS2API_CONNECT_RATE_PER_IP",
        value_name = "N",
        default_value_t = 0
    )]
    pub connect_rate_per_ip: u32,

    /// Client addresses tracked for the two per-address limits, whole process (each shard holds its share); a new address beyond it gets 503
    ///
    /// About 60 bytes each; idle addresses are forgotten, so only addresses with open connections or a recent burst count.
    #[arg(
        long,
        env = "WS2API_MAX_TRACKED_IPS",
        value_name = "N",
        default_value_t = 1_000_000
    )]
    pub max_tracked_ips: usize,

    /// Messages per second one client may send (burst N); beyond it the client is not read until the rate allows. 0: off
    ///
    /// Throttles by TCP backpressure: nothing is dropped, nothing closed, order kept.
    #[arg(
        long,
        env = "WS2API_MAX_MESSAGE_RATE",
        value_name = "N",
        default_value_t = 0
    )]
    pub max_message_rate: u32,

    /// Bytes queued to all clients of the process together (each shard holds its share); a push beyond it gets 503, broadcast members count as full [default: a quarter of physical memory]
    ///
    /// Bounds the worst case of --max-outbound-bytes x --max-connections; /readyz answers 503 while less than --max-outbound-bytes of a shard's share is free.
    #[arg(long, env = "WS2API_MAX_OUTBOUND_TOTAL", value_name = "SIZE")]
    pub max_outbound_total: Option<String>,

    /// Keep-alive connections to the API server, per shard (total = shards x N)
    ///
    /// More allows more concurrent requests; mind the backend's worker count and the local ephemeral ports.
    #[arg(
        long,
        env = "WS2API_API_MAX_CONNS",
        value_name = "N",
        default_value_t = 1000
    )]
    pub api_max_conns: usize,

    /// Time limit for one backend request, connect to last byte of the answer (a Connect then gets 504)
    ///
    /// Longer tolerates slow endpoints; shorter frees waiting clients sooner.
    #[arg(
        long,
        env = "WS2API_API_TIMEOUT",
        value_name = "DURATION",
        default_value = "60s"
    )]
    pub api_timeout: String,

    /// Time a new socket has to send its upgrade request (and PROXY header, if on)
    ///
    /// Shorter sheds idle and slowloris sockets sooner; longer tolerates slow mobile links.
    #[arg(
        long,
        env = "WS2API_HANDSHAKE_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub handshake_timeout: String,

    /// Interval between pings to each client, at least 1s; 0s disables pings
    ///
    /// Keeps NAT and proxy mappings alive and finds dead peers; shorter finds them sooner at more traffic.
    #[arg(
        long,
        env = "WS2API_PING_INTERVAL",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub ping_interval: String,

    /// Interval for printing per-shard stats; 0s = off (SIGUSR1 still dumps them to stderr)
    #[arg(
        long,
        env = "WS2API_STATS_INTERVAL",
        value_name = "DURATION",
        default_value = "0s"
    )]
    pub stats_interval: String,

    /// File that --stats-interval writes to (requires --stats-interval) [default: none = stderr]
    #[arg(long, env = "WS2API_STATS_FILE", value_name = "FILE")]
    pub stats_file: Option<PathBuf>,

    /// On SIGTERM/SIGINT: time to close every client with 1001 and deliver every Disconnect
    ///
    /// Longer is gentler on a slow backend; shorter restarts sooner.
    #[arg(
        long,
        env = "WS2API_SHUTDOWN_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub shutdown_timeout: String,

    /// Speak TLS (wss://) on the public listener with this PEM certificate (its chain may follow it in the file) [default: none = plain ws://]
    ///
    /// TLS 1.2 and 1.3, ALPN http/1.1; needs --tls-key. SIGHUP reloads the certificate, key and client CA (files that do not load keep the old ones).
    #[arg(long, env = "WS2API_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1) [default: none]
    #[arg(long, env = "WS2API_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Ask clients for a certificate signed by a CA in this PEM file; Connect then carries X-Client-Cert-Subject, -CN and -Fingerprint [default: none = no client certificates]
    #[arg(long, env = "WS2API_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,

    /// With --tls-client-ca: `required` (no certificate, no connection) or `optional` (a client may present none; one it presents must verify) [default: required]
    #[arg(long, env = "WS2API_TLS_CLIENT_AUTH", value_name = "MODE")]
    pub tls_client_auth: Option<String>,

    /// Expect a PROXY protocol header on every public connection [default: off]
    ///
    /// For running behind HAProxy or a load balancer: X-Forwarded-For then carries the real client address.
    #[arg(
        long,
        env = "WS2API_PROXY_PROTOCOL",
        value_parser = BoolishValueParser::new()
    )]
    pub proxy_protocol: bool,

    /// Largest upgrade request head (request line + headers), 1KiB to 1MiB; beyond it 431
    ///
    /// Bounds per-socket memory during the handshake; raise it for very large cookies.
    #[arg(
        long,
        env = "WS2API_MAX_HEAD_SIZE",
        value_name = "SIZE",
        default_value = "8KiB"
    )]
    pub max_head_size: String,

    /// Write a CPU profile to FILE at exit and on SIGUSR2: a flame graph if FILE ends in .svg, else pprof protobuf (go tool pprof) [default: none = no profiling]
    #[arg(long, env = "WS2API_CPUPROFILE", value_name = "FILE")]
    pub cpuprofile: Option<PathBuf>,

    /// Write a heap profile (live bytes by call site, sampled every ~512 KiB allocated) to FILE at exit and on SIGUSR2: a flame graph if FILE ends in .svg, else folded stacks [default: none = no profiling]
    #[arg(long, env = "WS2API_MEMPROFILE", value_name = "FILE")]
    pub memprofile: Option<PathBuf>,

    /// Log verbosity
    ///
    /// debug and trace cost throughput at high connection counts.
    #[arg(
        long,
        env = "WS2API_LOG_LEVEL",
        value_name = "LEVEL",
        value_enum,
        ignore_case = true,
        default_value_t = LogLevel::Info
    )]
    pub log_level: LogLevel,

    /// Run a built-in demo API on --demo-listen and point the gateway at it; --api-url is then ignored [default: off]
    ///
    /// For trying ws2api out, not for production.
    #[arg(
        long,
        env = "WS2API_DEMO",
        value_parser = BoolishValueParser::new()
    )]
    pub demo: bool,

    /// Listen address of the built-in demo API (only with --demo; needs a fixed port)
    #[arg(
        long,
        env = "WS2API_DEMO_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8000"
    )]
    pub demo_listen: String,
}

impl Cli {
    /// Parses `args` (the program name first) like `try_parse_from`, but as if no `WS2API_*`
    /// variable were set: every flag's `env` is dropped from the command before parsing.
    pub fn try_parse_from_ignoring_env<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Cli::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(args)?;
        Cli::from_arg_matches(&matches)
    }
}
