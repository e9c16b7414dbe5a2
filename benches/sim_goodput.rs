//! Simulated goodput over bandwidth × RTT × loss, printed as a Markdown
//! table (kept in docs/goodput.md). Each cell is one 64 MiB byte-exact
//! transfer through the deterministic simulator; "efficiency" is goodput
//! divided by the link rate of the same cell, the baseline.
//!
//! `cargo bench --bench sim_goodput` (add `-- --quick` for 8 MiB cells,
//! `-- --cc udt|bbr|bbr-bulk` for a congestion control other than the
//! default).

use std::time::{Duration, Instant};

use udt_core::cc::CcAlgorithm;
use udt_core::sim::harness::{link, stream_transfer, Pair};
use udt_core::sim::Loss;
use udt_core::Config;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let cc: CcAlgorithm = std::env::args()
        .skip_while(|a| a != "--cc")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(CcAlgorithm::DEFAULT);
    println!("congestion control: {cc}");
    println!();
    let size: u64 = if quick { 8 << 20 } else { 64 << 20 };
    let bandwidths = [100u64, 1000];
    let rtts_ms = [1u64, 50, 200];
    let losses = [0.0, 0.001, 0.01, 0.05];
    println!("| link | RTT | loss | goodput (Mbit/s) | efficiency | retransmitted | wall time |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut seed = 1000;
    for &mbps in &bandwidths {
        for &rtt in &rtts_ms {
            for &loss in &losses {
                seed += 1;
                let l = link(
                    mbps,
                    Duration::from_micros(rtt * 500),
                    if loss > 0.0 {
                        Loss::Bernoulli(loss)
                    } else {
                        Loss::None
                    },
                );
                let mut p = Pair::new(seed, l.clone(), l, Config::default().with_congestion(cc));
                let (a, b) = p.connect();
                let wall = Instant::now();
                let r = stream_transfer(
                    &mut p.sim,
                    (p.a, a),
                    (p.b, b),
                    size,
                    Duration::from_secs(7200),
                );
                let g = r.goodput_mbps();
                println!(
                    "| {} Mbit/s | {} ms | {:.1} % | {:.1} | {:.2} | {:.2} % | {:.2} s |",
                    mbps,
                    rtt,
                    loss * 100.0,
                    g,
                    g / mbps as f64,
                    r.sender.retransmit_ratio() * 100.0,
                    wall.elapsed().as_secs_f64()
                );
            }
        }
    }
}
