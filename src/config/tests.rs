// The environment is process-wide: tests that read or set WS2API_* take one lock (tests only).
#![allow(clippy::disallowed_types)]

use super::*;
use std::sync::{Mutex, MutexGuard};

/// Serializes every test that reads WS2API_* env vars against the ones that set them.
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
fn defaults_match_spec() {
    let c = config(&[]).unwrap();
    assert_eq!(c.listen, "0.0.0.0:7001".parse().unwrap());
    assert_eq!(c.control.listen, "127.0.0.1:7002".parse().unwrap());
    assert_eq!(c.api.url.to_string(), "http://127.0.0.1:8000/");
    assert_eq!(c.api.url.host, "127.0.0.1");
    assert_eq!(c.api.url.port, 8000);
    assert_eq!(c.api.url.path, "/");
    assert_eq!(c.api.url.addr, "127.0.0.1:8000".parse().unwrap());
    assert_eq!(c.api.url.authority(), "127.0.0.1:8000");
    assert_eq!(c.control.token, None);
    assert_eq!(c.shards, default_shards());
    assert!(c.shards >= 1);
    assert_eq!(c.limits.max_connections, 1_000_000);
    assert_eq!(c.limits.max_message_size, 1 << 20);
    assert_eq!(c.limits.max_outbound_bytes, 1 << 20);
    assert_eq!(c.api.max_answer_size, 1 << 20);
    assert_eq!(c.limits.max_inflight_per_client, 1);
    assert_eq!(c.api.max_conns, 1000);
    assert_eq!(c.api.timeout, Duration::from_secs(60));
    assert_eq!(c.limits.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.limits.ping_interval, Some(Duration::from_secs(30)));
    assert_eq!(c.observability.stats_interval, None);
    assert_eq!(c.observability.stats_file, None);
    assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
    assert!(!c.proxy_protocol);
    assert_eq!(c.limits.max_head_size, 8 << 10);
    assert_eq!(c.observability.cpuprofile, None);
    assert_eq!(c.observability.memprofile, None);
    assert_eq!(c.observability.log_level, LogLevel::Info);
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
    assert_eq!(c.control.listen, "[::1]:9002".parse().unwrap());
    assert_eq!(c.api.url.host, "localhost");
    assert_eq!(c.api.url.port, 9000);
    assert_eq!(c.api.url.path, "/api/");
    assert!(c.api.url.addr.ip().is_loopback() && c.api.url.addr.port() == 9000);
    assert_eq!(c.control.token(), Some("s3cret"));
    assert_eq!(c.shards, 3);
    assert_eq!(c.limits.max_connections, 300);
    assert_eq!(c.limits.max_message_size, 65536);
    assert_eq!(c.limits.max_outbound_bytes, 2_000_000);
    assert_eq!(c.api.max_answer_size, 512);
    assert_eq!(c.limits.max_inflight_per_client, 4);
    assert_eq!(c.api.max_conns, 16);
    assert_eq!(c.api.timeout, Duration::from_millis(1500));
    assert_eq!(c.limits.handshake_timeout, Duration::from_secs(2));
    assert_eq!(c.limits.ping_interval, None);
    assert_eq!(
        c.observability.stats_interval,
        Some(Duration::from_secs(60))
    );
    assert_eq!(c.observability.stats_file, Some(PathBuf::from("stats.txt")));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(3600));
    assert!(c.proxy_protocol);
    assert_eq!(c.limits.max_head_size, 16384);
    assert_eq!(c.observability.cpuprofile, Some(PathBuf::from("cpu.prof")));
    assert_eq!(c.observability.memprofile, Some(PathBuf::from("mem.prof")));
    assert_eq!(c.observability.log_level, LogLevel::Debug);
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("s3cret"), "token leaked in Debug: {dbg}");
    assert!(dbg.contains("<redacted>"));
}

#[test]
fn api_url_forms() {
    let api = |u: &str| config(&["--api-url", u]).map(|c| c.api.url);
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
    assert_eq!(c.listen, c.control.listen);
    // Same port on different concrete IPs does not collide.
    config(&["--listen", "127.0.0.2:7002"]).unwrap();
}

#[test]
fn demo_points_api_at_demo_listen() {
    let c = config(&["--demo", "--api-url", "https://ignored"]).unwrap();
    assert_eq!(c.demo, Some("127.0.0.1:8000".parse().unwrap()));
    assert_eq!(c.api.url.to_string(), "http://127.0.0.1:8000/");
    assert_eq!(c.api.url.addr, "127.0.0.1:8000".parse().unwrap());
    let c = config(&["--demo", "--demo-listen", "0.0.0.0:8100"]).unwrap();
    assert_eq!(c.demo, Some("0.0.0.0:8100".parse().unwrap()));
    assert_eq!(c.api.url.addr, "127.0.0.1:8100".parse().unwrap());
    assert_eq!(c.api.url.authority(), "127.0.0.1:8100");
    let c = config(&["--demo", "--demo-listen", "[::1]:8100"]).unwrap();
    assert_eq!(c.api.url.to_string(), "http://[::1]:8100/");
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
    assert_eq!(c.api.timeout, Duration::from_secs(7));
    assert_eq!(c.shards, 5);
    assert!(c.proxy_protocol);
    assert_eq!(c.api.url.port, 8181);
    assert_eq!(c.api.url.path, "/env/");
    let c = Config::from_cli(flag_wins.unwrap()).unwrap();
    assert_eq!(c.api.timeout, Duration::from_secs(9));
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
    assert_eq!(c.api.url.addr, api);
    assert_eq!(c.api.url.to_string(), "http://127.0.0.1:18000/");
    assert_eq!(c.api.url.authority(), "127.0.0.1:18000");
    assert_eq!(c.listen, "127.0.0.1:0".parse().unwrap());
    assert_eq!(c.control.listen, "127.0.0.1:0".parse().unwrap());
    assert_eq!(c.shards, 2);
    assert_eq!(c.demo, None);
    // Apart from addresses and shards, exactly the command-line defaults.
    let mut d = config(&[]).unwrap();
    d.listen = "127.0.0.1:0".parse().unwrap();
    d.control.listen = "127.0.0.1:0".parse().unwrap();
    d.shards = 2;
    d.api.url = ApiUrl::from_addr(api);
    assert_eq!(d, c);
    let v6: SocketAddr = "[::1]:18000".parse().unwrap();
    assert_eq!(Config::for_tests(v6).api.url, ApiUrl::from_addr(v6));
}

#[test]
fn for_tests_ignores_the_environment() {
    let _g = env_lock();
    std::env::set_var("WS2API_SHARDS", "7");
    std::env::set_var("WS2API_MAX_CONNECTIONS", "70");
    let c = Config::for_tests("127.0.0.1:18000".parse().unwrap());
    std::env::remove_var("WS2API_SHARDS");
    std::env::remove_var("WS2API_MAX_CONNECTIONS");
    assert_eq!(c.shards, 2);
    assert_eq!(c.limits.max_connections, 1_000_000);
}

#[test]
fn tls_flags_come_as_a_pair_and_client_flags_only_with_them() {
    assert_err(&["--tls-cert", "a.pem"], "--tls-cert: ", "needs --tls-key");
    assert_err(&["--tls-key", "a.key"], "--tls-key: ", "needs --tls-cert");
    assert_err(
        &["--tls-client-ca", "ca.pem"],
        "--tls-client-ca: ",
        "needs --tls-cert",
    );
    assert_err(
        &["--tls-client-auth", "optional"],
        "--tls-client-auth: ",
        "needs --tls-cert",
    );
    assert_err(
        &["--tls-client-auth", "maybe"],
        "--tls-client-auth: ",
        "'maybe' is neither",
    );
    assert_eq!(config(&[]).unwrap().tls, None);
}

#[test]
fn tls_files_must_load() {
    let dir = std::env::temp_dir().join(format!("ws2api-config-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&ca_key)
        .unwrap();
    let (cert, key, junk) = (dir.join("c.pem"), dir.join("c.key"), dir.join("junk.pem"));
    std::fs::write(&cert, ca.pem()).unwrap();
    std::fs::write(&key, ca_key.serialize_pem()).unwrap();
    std::fs::write(&junk, "not PEM at all\n").unwrap();
    let (cert, key, junk) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        junk.to_str().unwrap(),
    );
    let c = config(&["--tls-cert", cert, "--tls-key", key]).unwrap();
    assert_eq!(c.tls.unwrap().client_auth, ClientAuth::Required);
    assert_err(
        &["--tls-cert", "/nonexistent/c.pem", "--tls-key", key],
        "--tls-cert: /nonexistent/c.pem: ",
        "No such file",
    );
    assert_err(
        &["--tls-cert", junk, "--tls-key", key],
        "--tls-cert: ",
        "no PEM",
    );
    assert_err(&["--tls-cert", cert, "--tls-key", junk], "--tls-key: ", "");
    // The key of another certificate.
    let other = rcgen::KeyPair::generate().unwrap();
    let other_key = dir.join("other.key");
    std::fs::write(&other_key, other.serialize_pem()).unwrap();
    assert_err(
        &["--tls-cert", cert, "--tls-key", other_key.to_str().unwrap()],
        "--tls-key: ",
        "does not fit --tls-cert",
    );
    let c = config(&[
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--tls-client-ca",
        cert,
        "--tls-client-auth",
        "optional",
    ])
    .unwrap();
    assert_eq!(c.tls.unwrap().client_auth, ClientAuth::Optional);
    let _ = std::fs::remove_dir_all(&dir);
}
