//! Seed sweep: a list of regression seeds plus random seeds that are
//! logged. Each seed draws its own link (delay, loss, jitter, duplication)
//! and runs a byte-exact transfer in each direction.
//!
//! Replay one seed with `UDT_SIM_SEED=<seed> cargo test --test sim_seeds`;
//! run more random seeds with `UDT_SIM_SWEEP=<count>`.

mod common;

use std::time::Duration;

use common::{init_logs, stream_bytes, stream_transfer, Pair};
use udt_core::rng::Rng;
use udt_core::sim::{random_seed, LinkConfig, Loss};
use udt_core::Config;

/// Seeds that once failed, or cover a corner worth keeping.
const REGRESSION_SEEDS: &[u64] = &[0, 1, 42, 0xDEAD_BEEF, 7_777_777];

fn scenario(seed: u64) {
    let mut rng = Rng::new(seed);
    let delay = Duration::from_micros(500 + rng.below(60_000));
    let loss = match rng.below(3) {
        0 => Loss::Bernoulli(rng.next_f64() * 0.2),
        1 => Loss::GilbertElliott {
            p_good_to_bad: 0.005 + rng.next_f64() * 0.02,
            p_bad_to_good: 0.1 + rng.next_f64() * 0.4,
            loss_good: rng.next_f64() * 0.01,
            loss_bad: 0.3 + rng.next_f64() * 0.5,
        },
        _ => Loss::None,
    };
    let mbps = [10, 100, 1000][rng.below(3) as usize];
    let bps = mbps * 1_000_000;
    let l = LinkConfig {
        delay,
        jitter: Duration::from_micros(rng.below(5_000)),
        loss,
        duplicate: rng.next_f64() * 0.02,
        bandwidth_bps: Some(bps),
        queue_bytes: ((bps as f64 / 8.0 * delay.as_secs_f64() * 2.0) as usize).max(100_000),
        ..LinkConfig::default()
    };
    eprintln!("seed={seed}: {mbps} Mbit/s, delay {delay:?}, {l:?}");
    let mut p = Pair::new(seed, l.clone(), l, Config::default());
    let (a, b) = p.connect();
    // One direction with the connection kept open, then the other,
    // ending with an orderly close.
    stream_bytes(
        &mut p.sim,
        (p.a, a),
        (p.b, b),
        2 << 20,
        Duration::from_secs(1800),
    );
    stream_transfer(
        &mut p.sim,
        (p.b, b),
        (p.a, a),
        2 << 20,
        Duration::from_secs(1800),
    );
}

#[test]
fn regression_seeds() {
    init_logs();
    if let Ok(s) = std::env::var("UDT_SIM_SEED") {
        let seed = udt_core::sim::seed_from_env_or(0);
        eprintln!("replaying UDT_SIM_SEED={s}");
        scenario(seed);
        return;
    }
    for &seed in REGRESSION_SEEDS {
        scenario(seed);
    }
}

#[test]
fn random_seeds() {
    init_logs();
    let count: usize = std::env::var("UDT_SIM_SWEEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    for _ in 0..count {
        let seed = random_seed();
        eprintln!("random sweep: seed={seed} (replay with UDT_SIM_SEED={seed})");
        scenario(seed);
    }
}
