//! The `ws2api` binary: flags → validated Config → a running gateway until SIGTERM/SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use ws2api::config::parse_args_or_exit;
use ws2api::demo::Demo;
use ws2api::profile::{Profiler, SamplingAlloc};
use ws2api::server::Gateway;

/// glibc malloc, sampled only while `--memprofile` is on (see `profile/heap.rs`).
#[global_allocator]
static ALLOC: SamplingAlloc = SamplingAlloc;

fn main() -> ExitCode {
    let config = parse_args_or_exit();
    ws2api::logger::init(config.observability.log_level);
    let profiler = match Profiler::start(
        config.observability.cpuprofile.as_deref(),
        config.observability.memprofile.as_deref(),
    ) {
        Ok(profiler) => Arc::new(profiler),
        Err(e) => {
            eprintln!("ws2api: error: {e}");
            return ExitCode::from(2);
        }
    };

    // Signals are taken by one thread with sigwait: block them before any thread starts.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGUSR1);
    signals.add(Signal::SIGUSR2);
    signals.add(Signal::SIGHUP);
    if let Err(e) = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals), None) {
        eprintln!("ws2api: error: cannot block signals: {e}");
        return ExitCode::from(1);
    }

    let demo = match config.demo {
        Some(addr) => match Demo::start(addr) {
            Ok(demo) => Some(demo),
            Err(e) => {
                eprintln!("ws2api: error: --demo-listen {addr}: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };

    let api = config.api.url.to_string();
    let scheme = if config.tls.is_some() { "wss" } else { "ws" };
    let shards = config.shards;
    let gateway = match Gateway::start(config) {
        Ok(gateway) => gateway,
        Err(e) => {
            eprintln!("ws2api: error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(demo) = &demo {
        demo.set_control(gateway.control_addr);
        // Listening on all interfaces: show (and give the chat page) an address a client on
        // this machine can use.
        let mut reachable = gateway.public_addr;
        if reachable.ip().is_unspecified() {
            reachable.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        demo.set_public(reachable);
        eprintln!(
            "ws2api: demo API on http://{}/ - open it in a browser for a chat page, or try: python3 -m websockets ws://{}/alice, then send \"hello\" or \"push hi\"",
            demo.addr, reachable
        );
    }
    log::info!(
        "ws2api: {shards} shards, public {scheme}://{}/<ClientId>, control http://{}/, API {api}",
        gateway.public_addr,
        gateway.control_addr
    );

    let stopper = gateway.stopper();
    let certs = gateway.certs();
    let signal_profiler = Arc::clone(&profiler);
    let _ = std::thread::Builder::new()
        .name("ws2api-signals".into())
        .spawn(move || loop {
            match signals.wait() {
                Ok(Signal::SIGUSR1) => stopper.dump(),
                Ok(Signal::SIGHUP) => match &certs {
                    Some(certs) => match certs.reload() {
                        Ok(()) => log::info!(
                            "ws2api: SIGHUP: TLS certificate, key and client CA reloaded"
                        ),
                        Err(e) => {
                            log::error!("ws2api: SIGHUP: {e}; keeping the previous TLS files")
                        }
                    },
                    None => log::info!("ws2api: SIGHUP: no --tls-cert, nothing to reload"),
                },
                Ok(Signal::SIGUSR2) => {
                    if let Err(e) = signal_profiler.write() {
                        log::error!("ws2api: {e}");
                    }
                }
                Ok(signal) => {
                    log::info!("ws2api: {signal}: closing every client, then exiting");
                    stopper.stop();
                }
                Err(_) => return,
            }
        });

    let joined = gateway.join();
    if let Err(e) = profiler.write() {
        eprintln!("ws2api: error: {e}");
    }
    match joined {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws2api: error: {e}");
            ExitCode::from(1)
        }
    }
}
