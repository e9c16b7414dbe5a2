//! The simulator demo: a 64 MiB stream through a simulated 100 Mbit/s link
//! with 50 ms RTT and 1 % random loss, verified byte for byte, with a
//! summary of what the protocol did. Runs seconds of virtual time in a
//! moment of real time, and the same way every run (fixed seed).
//!
//! `cargo run --release --example sim_demo [-- SEED]`

use std::time::{Duration, Instant};

use udt_core::sim::harness::{link, stream_transfer, Pair, MIB_64};
use udt_core::sim::Loss;
use udt_core::Config;

fn main() {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026);
    let l = link(100, Duration::from_millis(25), Loss::Bernoulli(0.01));
    println!("udt simulator demo (seed {seed})");
    println!("link: 100 Mbit/s, 50 ms RTT, 1 % random loss each way");
    let wall = Instant::now();
    let mut pair = Pair::new(seed, l.clone(), l, Config::default());
    let (a, b) = pair.connect();
    println!("connected after {:?} of virtual time", pair.sim.elapsed());
    let r = stream_transfer(
        &mut pair.sim,
        (pair.a, a),
        (pair.b, b),
        MIB_64,
        Duration::from_secs(3600),
    );
    println!(
        "sent and verified {} bytes in {:.2} s of virtual time ({:.2} s real)",
        r.bytes,
        r.elapsed.as_secs_f64(),
        wall.elapsed().as_secs_f64()
    );
    println!(
        "goodput {:.1} Mbit/s ({:.0} % of the link)",
        r.goodput_mbps(),
        r.goodput_mbps()
    );
    println!(
        "data packets sent {}, retransmitted {} ({:.2} %), reported lost {}",
        r.sender.packets_sent,
        r.sender.packets_retransmitted,
        r.sender.retransmit_ratio() * 100.0,
        r.sender.packets_reported_lost
    );
    println!(
        "receiver: {} packets, {} gaps detected, {} duplicates dropped; rtt {:?}",
        r.receiver.packets_received,
        r.receiver.packets_lost,
        r.receiver.dropped.duplicate,
        r.sender.rtt
    );
}
