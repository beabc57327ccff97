//! Benchmark of the cross-shard mesh: one hop's latency (ping-pong between two
//! shards) and the message rate one shard can push to another.
//!
//! A plain program (`harness = false`) that prints its figures and the machine.
//! Run: `cargo bench --bench mesh`.

use std::time::Instant;

use ws2api_shards::{MeshPlan, Runtime, RuntimeSpec};

const ROUND_TRIPS: u64 = 20_000;
const STREAMED: u64 = 1_000_000;

#[derive(Debug)]
enum Msg {
    Ping(Instant),
    Pong(Instant),
    Data(#[allow(dead_code)] u64),
    Done,
}

fn main() {
    let plan: MeshPlan<Msg> = MeshPlan::new(2, 1024);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    Runtime::start(&RuntimeSpec::new(2), move |shard| {
        let plan = plan.clone();
        let report = tx.clone();
        async move {
            let mut mesh = plan.join(shard).await;
            let sender = mesh.sender();
            let (local_tx, local_rx) = glommio::channels::local_channel::new_unbounded();
            mesh.serve(move |_, msg| {
                let _ = local_tx.try_send(msg);
            });
            let peer = 1 - shard;
            if shard == 0 {
                // Latency: ping-pong, one message in flight.
                let mut hops = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                for _ in 0..ROUND_TRIPS {
                    sender.send(peer, Msg::Ping(Instant::now())).await.unwrap();
                    if let Some(Msg::Pong(sent)) = local_rx.recv().await {
                        hops.record(sent.elapsed().as_nanos() as u64 / 2).unwrap();
                    }
                }
                report
                    .send(format!(
                        "mesh hop latency (ping-pong / 2): p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs over {ROUND_TRIPS} round trips",
                        hops.value_at_quantile(0.5) as f64 / 1e3,
                        hops.value_at_quantile(0.99) as f64 / 1e3,
                        hops.value_at_quantile(0.999) as f64 / 1e3
                    ))
                    .unwrap();
                // Throughput: stream messages as fast as the channel takes them.
                let start = Instant::now();
                for i in 0..STREAMED {
                    sender.send(peer, Msg::Data(i)).await.unwrap();
                }
                sender.send(peer, Msg::Done).await.unwrap();
                if let Some(Msg::Done) = local_rx.recv().await {
                    let secs = start.elapsed().as_secs_f64();
                    report
                        .send(format!(
                            "mesh throughput: {:.2} M msgs/s ({STREAMED} messages in {:.3} s)",
                            STREAMED as f64 / secs / 1e6,
                            secs
                        ))
                        .unwrap();
                }
            } else {
                while let Some(msg) = local_rx.recv().await {
                    match msg {
                        Msg::Ping(sent) => sender.send(peer, Msg::Pong(sent)).await.unwrap(),
                        Msg::Done => {
                            sender.send(peer, Msg::Done).await.unwrap();
                            break;
                        }
                        _ => {}
                    }
                }
            }
            sender.close();
        }
    })
    .unwrap()
    .join()
    .unwrap();
    println!(
        "# mesh on {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    for line in rx.try_iter() {
        println!("{line}");
    }
}
