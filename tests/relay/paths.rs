//! The simulator's paths (`udt_core::sim::scenario`) on a real
//! `udt-relay`, and two of our flows through one of them: shared by the
//! `relay_cc` and `interop_throughput` benchmarks and the
//! `relay_fairness` and `relay_reordering` tests.

// Each of those crates uses a part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use udt::Endpoint;
use udt_core::cc::CcAlgorithm;
use udt_core::sim::scenario::Scenario;
use udt_core::sim::Loss as SimLoss;
use udt_core::Config;
use udt_relay::{Impairment, Loss, Relay, RelayConfig};

/// How long the receiver of [`two_flows`] waits for a connection or data.
const ACCEPT_LIMIT: Duration = Duration::from_secs(60);

/// Writes `bytes` of a fixed pattern to `stream`, 64 KiB at a time.
pub fn write_bytes(mut stream: impl Write, bytes: u64) {
    let buf = vec![0x5Au8; 1 << 16];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        stream.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The relay's impairment for one direction of `s`.
pub fn impairment(s: &Scenario) -> Impairment {
    let rate = s.rate_mbps * 1_000_000;
    let loss = match s.loss {
        SimLoss::None => Loss::None,
        SimLoss::Bernoulli(p) => Loss::Random(p),
        SimLoss::GilbertElliott {
            p_good_to_bad,
            p_bad_to_good,
            loss_good,
            loss_bad,
        } => Loss::GilbertElliott {
            good_to_bad: p_good_to_bad,
            bad_to_good: p_bad_to_good,
            loss_good,
            loss_bad,
        },
    };
    Impairment {
        loss,
        delay: s.one_way_delay,
        rate_bps: Some(rate),
        queue_bytes: ((rate / 8) as f64 * s.queue.as_secs_f64()) as usize,
        ..Impairment::default()
    }
}

/// A relay with `s`'s path in front of `server`.
pub fn relay_to(server: SocketAddr, s: &Scenario, seed: u64) -> Relay {
    relay_with(server, impairment(s), seed)
}

/// A relay with `impairment` both ways in front of `server`.
pub fn relay_with(server: SocketAddr, impairment: Impairment, seed: u64) -> Relay {
    let config = RelayConfig {
        seed,
        max_pending: 1 << 17,
        socket_buffer: 16 << 20,
        ..RelayConfig::new(server)
    }
    .with_both(impairment);
    Relay::start(config).expect("start the relay")
}

/// When the second flow of [`two_flows`] joins.
pub const JOIN: Duration = Duration::from_secs(2);

/// One flow of [`two_flows`]: from `start` until `end` (both measured from
/// `t0`) our sender with `cc` writes as fast as it may to `to`.
fn timed_sender(to: SocketAddr, cc: CcAlgorithm, t0: Instant, start: Duration, end: Duration) {
    std::thread::sleep(start.saturating_sub(t0.elapsed()));
    // The receiver counts what arrived by the end; what is still queued
    // then does not matter, so the close is abortive.
    let mut config = Config::default().with_congestion(cc);
    config.linger = None;
    let ep = Endpoint::bind_with(localhost(), config, udt::EndpointConfig::default())
        .expect("bind an endpoint");
    let mut stream = ep.connect(to).expect("connect");
    let buf = vec![0x5Au8; 1 << 16];
    while t0.elapsed() < end {
        stream.write_all(&buf).expect("write");
    }
    let _ = stream.close();
}

/// Two of our flows through one bottleneck (issue 9: fair to itself): the
/// receiver counts each flow's bytes, sampled once a second.
pub fn two_flows(cc: CcAlgorithm, seconds: u64, seed: u64) -> [Vec<f64>; 2] {
    let s = Scenario::two_flows();
    let server = Endpoint::bind_with(
        localhost(),
        Config::default(),
        udt::EndpointConfig::default(),
    )
    .expect("bind the server");
    let listener = server.listen(2).expect("listen");
    let relay = relay_to(server.local_addr(), &s, seed);
    let to = relay.local_addr();
    let end = Duration::from_secs(seconds);
    let counts = [AtomicU64::new(0), AtomicU64::new(0)];
    let t0 = Instant::now();
    let mut bins = [Vec::new(), Vec::new()];
    std::thread::scope(|scope| {
        let counts = &counts;
        scope.spawn(move || timed_sender(to, cc, t0, Duration::ZERO, end));
        scope.spawn(move || timed_sender(to, cc, t0, JOIN, end));
        // The first connection accepted is the first flow's. Accepted on
        // their own thread: the second arrives only after the join, and the
        // samples below must start at once.
        let listener = &listener;
        scope.spawn(move || {
            std::thread::scope(|readers| {
                for count in counts {
                    let (mut stream, _) = listener.accept_timeout(ACCEPT_LIMIT).expect("accept");
                    stream.set_read_timeout(Some(ACCEPT_LIMIT));
                    readers.spawn(move || {
                        let mut buf = vec![0u8; 1 << 16];
                        while let Ok(n) = stream.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            count.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    });
                }
            });
        });
        let mut last = [0u64; 2];
        for second in 1..=seconds {
            std::thread::sleep(
                (t0 + Duration::from_secs(second)).saturating_duration_since(Instant::now()),
            );
            for (i, c) in counts.iter().enumerate() {
                let now = c.load(Ordering::Relaxed);
                bins[i].push((now - last[i]) as f64 * 8.0 / 1e6);
                last[i] = now;
            }
        }
    });
    bins
}

/// The slower flow's goodput as a share of the faster one's, over the
/// seconds `from..to` of `bins`.
pub fn share(bins: &[Vec<f64>; 2], from: usize, to: usize) -> f64 {
    let sum = |b: &Vec<f64>| {
        b.get(from..to.min(b.len()))
            .map_or(0.0, |w| w.iter().sum::<f64>())
    };
    let (a, b) = (sum(&bins[0]), sum(&bins[1]));
    a.min(b) / a.max(b).max(1e-9)
}
