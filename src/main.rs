//! The `ws2api` binary: flags → validated Config → a running gateway until SIGTERM/SIGINT.

use std::process::ExitCode;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use ws2api::config::{parse_args_or_exit, ApiUrl};
use ws2api::demo::Demo;
use ws2api::server::Gateway;

fn main() -> ExitCode {
    let mut config = parse_args_or_exit();
    for (flag, given) in [
        ("cpuprofile", config.cpuprofile.is_some()),
        ("memprofile", config.memprofile.is_some()),
    ] {
        if given {
            eprintln!("ws2api: error: --{flag}: profiling is not available in this version");
            return ExitCode::from(2);
        }
    }
    ws2api::logger::init(config.log_level.as_str());

    // Signals are taken by one thread with sigwait: block them before any thread starts.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGUSR1);
    if let Err(e) = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals), None) {
        eprintln!("ws2api: error: cannot block signals: {e}");
        return ExitCode::from(1);
    }

    let demo = match config.demo {
        Some(addr) => match Demo::start(addr) {
            Ok(demo) => {
                config.api = ApiUrl::from_addr(demo.addr);
                Some(demo)
            }
            Err(e) => {
                eprintln!("ws2api: error: --demo-listen {addr}: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };

    let api = config.api.to_string();
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
        eprintln!(
            "ws2api: demo API on http://{}/ - try: websocat ws://{}/alice, then send \"hello\" or \"push hi\"",
            demo.addr, gateway.public_addr
        );
    }
    log::info!(
        "ws2api: {shards} shards, public ws://{}/<ClientId>, control http://{}/, API {api}",
        gateway.public_addr,
        gateway.control_addr
    );

    let stopper = gateway.stopper();
    let _ = std::thread::Builder::new()
        .name("ws2api-signals".into())
        .spawn(move || loop {
            match signals.wait() {
                Ok(Signal::SIGUSR1) => stopper.dump(),
                Ok(signal) => {
                    log::info!("ws2api: {signal}: closing every client, then exiting");
                    stopper.stop();
                }
                Err(_) => return,
            }
        });

    match gateway.join() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws2api: error: {e}");
            ExitCode::from(1)
        }
    }
}
