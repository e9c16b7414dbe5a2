//! The congestion-control scenarios of issue 9 over real sockets: each path
//! is a `udt-relay` (rate cap behind a 50 ms drop-tail queue, one-way delay,
//! random loss both ways) on loopback, and each transfer runs through it in
//! four combinations: Debian's libudt0 to libudt0, our sender (with each
//! controller asked for) to libudt0, libudt0 to our receiver, and ours to
//! ours. The paths are the simulator's (`udt_core::sim::scenario`), so the
//! two tables compare. Figures go to docs/congestion-control.md.
//!
//! `cargo bench --bench relay_cc` (needs libudt-dev and g++, as the interop
//! tests; run it on a quiet machine). Environment:
//! - `UDT_BENCH_REPS`: repetitions, alternating the transfers (default 2;
//!   the median is reported);
//! - `UDT_BENCH_ONLY`: scenario names, comma-separated (S2,S3,S4,S5,high-bdp);
//! - `UDT_BENCH_CC`: our controllers to run (default `bbr,udt`);
//! - `UDT_BENCH_SCALE`: multiplies the transfer sizes (default 1);
//! - `UDT_BENCH_HIGH_MBPS`: the high-BDP path's rate, for a machine whose
//!   relay cannot sustain 1 Gbit/s (default 1000);
//! - `UDT_BENCH_SMOKE=1`: one tiny path and transfer, to check the
//!   benchmark itself works;
//! - `UDT_BENCH_TRANSFERS`: which of `udt4-udt4`, `ours-udt4`,
//!   `udt4-ours`, `ours-ours` to run, comma-separated (default all four;
//!   libudt0 as a sender takes minutes on the lossy paths; without
//!   `udt4-udt4` the ratio column is left empty);
//! - `UDT_BENCH_TIMELINE=1`: our sender's state once a second on stderr;
//! - `UDT_BENCH_TWO_FLOWS=1`: instead of the table, two of our flows (the
//!   first controller of `UDT_BENCH_CC`) through one bottleneck of the
//!   simulator's `two-flows` path, the second joining after 2 s, for
//!   `UDT_BENCH_SECONDS` (default 20; seeds 1..=`UDT_BENCH_REPS`): each
//!   flow's goodput per second and the slower flow's share of the faster
//!   one's over windows after the join.
//!
//! Goodput is measured at the receiver, from the accepted connection to the
//! last byte, so it includes the ramp-up; the transfer sizes are chosen so
//! that libudt0 finishes in well under a minute on each path. The queue
//! column is our sender's smoothed RTT above the path's base RTT, sampled
//! every 20 ms from one second into the transfer (the relay does not time
//! its queue); it is empty for libudt0 senders.

#[path = "../tests/interop/harness.rs"]
mod harness;
#[path = "../tests/relay/paths.rs"]
mod paths;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use harness::{ours_receive, udt4_stream_elapsed, udt4_stream_receiver, udt4_stream_sender};
use paths::{relay_to, share, two_flows, JOIN};
use udt::Endpoint;
use udt_core::cc::CcAlgorithm;
use udt_core::sim::scenario::Scenario;
use udt_core::Config;
use udt_relay::Relay;

/// The longest any single transfer may take.
const LIMIT: Duration = Duration::from_secs(300);

/// Queue samples start this long into a transfer.
const SETTLE: Duration = Duration::from_secs(1);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// One transfer's outcome: goodput at the receiver, our sender's
/// queueing-delay samples (empty for a libudt0 sender) and its statistics
/// at the end.
struct Outcome {
    mbps: f64,
    queue_ms: Vec<f64>,
    sender: Option<udt_core::stats::Stats>,
    /// What the relay dropped, and what the kernel dropped at full UDP
    /// receive buffers meanwhile.
    drops: String,
}

/// The kernel's count of UDP datagrams dropped at a full receive buffer
/// (`RcvbufErrors` in /proc/net/snmp; machine-wide, so other UDP traffic
/// counts too). `None` where it cannot be read.
fn rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// The relay's drops in the data direction (`forward`) and the control
/// direction, and the kernel's receive-buffer drops since `before`.
fn drops(relay: &Relay, forward_is_upstream: bool, before: Option<u64>) -> String {
    let st = relay.stats();
    let (data, control) = if forward_is_upstream {
        (st.to_upstream, st.to_client)
    } else {
        (st.to_client, st.to_upstream)
    };
    let kernel = match (before, rcvbuf_errors()) {
        (Some(b), Some(a)) => format!("{}", a.saturating_sub(b)),
        _ => "?".into(),
    };
    format!(
        "relay data: forwarded {} random loss {} queue full {} overflow {} send errors {}; control: forwarded {} lost {}; kernel rcvbuf drops {kernel}",
        data.forwarded,
        data.dropped_loss,
        data.dropped_queue,
        data.dropped_overflow,
        data.send_errors,
        control.forwarded,
        control.dropped()
    )
}

/// Runs `f` while sampling the relay's queue drops in the data direction
/// every [`DROP_TICK`]; returns its result and the drops per tick, so
/// the details show when the bottleneck overflowed (Startup's overshoot,
/// or later).
fn with_drop_timeline<T: Send>(relay: &Relay, f: impl FnOnce() -> T + Send) -> (T, String) {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let done = &done;
        let sampler = scope.spawn(move || {
            let mut ticks = Vec::new();
            let mut last = 0;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(DROP_TICK);
                let now = relay.stats().to_upstream.dropped_queue;
                ticks.push(now - last);
                last = now;
            }
            // Trailing quiet ticks say nothing.
            while ticks.last() == Some(&0) {
                ticks.pop();
            }
            ticks
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        });
        let out = f();
        done.store(true, Ordering::Relaxed);
        let timeline = sampler.join().expect("drop sampler");
        (out, timeline)
    })
}

/// The interval of the drop timeline.
const DROP_TICK: Duration = Duration::from_millis(250);

/// Our sender's view of one transfer: how much it resent, and what kept
/// it from sending (as shares of the connection's time).
fn sender_summary(s: &udt_core::stats::Stats) -> String {
    let l = s.send_limits.shares();
    format!(
        "retransmitted {:.2} % ({} reported lost, {} presumed lost, {} timeouts); limited by app {:.0} %, flow window {:.0} %, cwnd {:.0} %, pacing {:.0} %, driver {:.0} %",
        s.retransmit_ratio() * 100.0,
        s.packets_reported_lost,
        s.packets_presumed_lost,
        s.timeouts,
        l[0] * 100.0,
        l[1] * 100.0,
        l[2] * 100.0,
        l[3] * 100.0,
        l[4] * 100.0
    )
}

/// The drop timeline as a note for the details.
fn timeline_note(timeline: &str) -> String {
    format!(
        "; queue drops per {} ms: {}",
        DROP_TICK.as_millis(),
        if timeline.is_empty() {
            "none"
        } else {
            timeline
        }
    )
}

fn mbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 * 8.0 / t.as_secs_f64().max(1e-9) / 1e6
}

/// Our sender with controller `cc`: writes `bytes`, closes, and samples its
/// smoothed RTT above `base_rtt` meanwhile; returns the samples and its
/// statistics after the close.
fn ours_send(
    to: SocketAddr,
    bytes: u64,
    cc: CcAlgorithm,
    base_rtt: Duration,
) -> (Vec<f64>, udt_core::stats::Stats) {
    let config = Config::default().with_congestion(cc);
    let ep = Endpoint::bind_with(localhost(), config, udt::EndpointConfig::default())
        .expect("bind an endpoint");
    let stream = ep.connect(to).expect("connect");
    let done = AtomicBool::new(false);
    let mut samples = Vec::new();
    std::thread::scope(|scope| {
        let stream = &stream;
        let done = &done;
        let sampler = scope.spawn(move || {
            let start = Instant::now();
            let mut queue = Vec::new();
            let mut timeline = Timeline::from_env();
            while !done.load(Ordering::Relaxed) {
                let stats = stream.stats();
                // The smoothed RTT starts at UDT4's 100 ms placeholder and
                // needs a few dozen ACKs to forget it: skip the first second.
                if start.elapsed() >= SETTLE {
                    queue.push(stats.rtt.saturating_sub(base_rtt).as_secs_f64() * 1e3);
                }
                if let Some(t) = timeline.as_mut() {
                    t.sample(&stats);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            queue
        });
        paths::write_bytes(stream, bytes);
        done.store(true, Ordering::Relaxed);
        samples = sampler.join().expect("sampler thread");
    });
    // Everything acknowledged: the counters cover the whole transfer.
    let _ = stream.wait_acknowledged(Some(LIMIT));
    let stats = stream.stats();
    // The peer may close first once it has everything; that is fine here.
    let _ = stream.close();
    (samples, stats)
}

/// `UDT_BENCH_TIMELINE=1`: our sender's state once a second on stderr
/// (packets sent and resent in that second, the pacing rate, the windows,
/// and what limited the sender in that second), to see where a transfer
/// loses its time.
struct Timeline {
    last: udt_core::stats::Stats,
    next: Duration,
    every: Duration,
}

impl Timeline {
    fn from_env() -> Option<Self> {
        // 1 means once a second; a larger value is the interval in ms.
        let every = match env_or("UDT_BENCH_TIMELINE", 0u64) {
            0 => return None,
            1 => Duration::from_secs(1),
            ms => Duration::from_millis(ms),
        };
        Some(Timeline {
            last: udt_core::stats::Stats::default(),
            next: every,
            every,
        })
    }

    fn sample(&mut self, s: &udt_core::stats::Stats) {
        if s.elapsed < self.next {
            return;
        }
        self.next = s.elapsed + self.every;
        let l = &s.send_limits;
        let p = &self.last.send_limits;
        let total = (l.total().saturating_sub(p.total()))
            .as_secs_f64()
            .max(1e-9);
        let share = |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64() / total * 100.0;
        let secs = s
            .elapsed
            .saturating_sub(self.last.elapsed)
            .as_secs_f64()
            .max(1e-9);
        let pace = 1.0 / s.send_period.as_secs_f64().max(1e-9);
        eprintln!(
            "t {:.2} s: sent {:.0}/s resent {:.0}/s presumed {} pace {:.0}/s cwnd {:.0} flight {} flow {} rtt {:.1} ms recv-rate {} timeouts {}; limits app {:.0} flow {:.0} cwnd {:.0} pacing {:.0} driver {:.0} %",
            s.elapsed.as_secs_f64(),
            (s.packets_sent - self.last.packets_sent) as f64 / secs,
            (s.packets_retransmitted - self.last.packets_retransmitted) as f64 / secs,
            s.packets_presumed_lost - self.last.packets_presumed_lost,
            pace,
            s.congestion_window,
            s.packets_in_flight,
            s.flow_window,
            s.rtt.as_secs_f64() * 1e3,
            s.recv_rate_pps,
            s.timeouts,
            share(l.app, p.app),
            share(l.flow_window, p.flow_window),
            share(l.congestion_window, p.congestion_window),
            share(l.pacing, p.pacing),
            share(l.driver, p.driver),
        );
        self.last = *s;
    }
}

/// The four combinations of sender and receiver.
#[derive(Clone, Copy, Debug)]
enum Transfer {
    Udt4ToUdt4,
    OursToUdt4(CcAlgorithm),
    Udt4ToOurs,
    OursToOurs(CcAlgorithm),
}

impl Transfer {
    fn name(self) -> String {
        match self {
            Transfer::Udt4ToUdt4 => "libudt0 -> libudt0".into(),
            Transfer::OursToUdt4(cc) => format!("ours ({cc}) -> libudt0"),
            Transfer::Udt4ToOurs => "libudt0 -> ours".into(),
            Transfer::OursToOurs(cc) => format!("ours ({cc}) -> ours"),
        }
    }

    fn run(self, s: &Scenario, bytes: u64, seed: u64) -> Outcome {
        let base = s.rtt();
        let before = rcvbuf_errors();
        match self {
            Transfer::Udt4ToUdt4 => {
                let (mut server, addr) = udt4_stream_receiver(bytes, LIMIT);
                let relay = relay_to(addr, s, seed);
                let mut client = udt4_stream_sender(relay.local_addr(), bytes, LIMIT);
                let t = udt4_stream_elapsed(&mut server, bytes, LIMIT);
                client.expect_success(Duration::from_secs(60));
                Outcome {
                    mbps: mbps(bytes, t),
                    queue_ms: Vec::new(),
                    sender: None,
                    drops: drops(&relay, true, before),
                }
            }
            Transfer::OursToUdt4(cc) => {
                let (mut server, addr) = udt4_stream_receiver(bytes, LIMIT);
                let relay = relay_to(addr, s, seed);
                let to = relay.local_addr();
                let ((queue_ms, stats), timeline) =
                    with_drop_timeline(&relay, || ours_send(to, bytes, cc, base));
                let t = udt4_stream_elapsed(&mut server, bytes, LIMIT);
                Outcome {
                    mbps: mbps(bytes, t),
                    queue_ms,
                    sender: Some(stats),
                    drops: drops(&relay, true, before) + &timeline_note(&timeline),
                }
            }
            Transfer::Udt4ToOurs => {
                let ep = Endpoint::bind(localhost()).expect("bind an endpoint");
                let listener = ep.listen(4).expect("listen");
                let relay = relay_to(ep.local_addr(), s, seed);
                let mut client = udt4_stream_sender(relay.local_addr(), bytes, LIMIT);
                let t = ours_receive(&listener, bytes, LIMIT);
                client.expect_success(Duration::from_secs(60));
                Outcome {
                    mbps: mbps(bytes, t),
                    queue_ms: Vec::new(),
                    sender: None,
                    drops: drops(&relay, true, before),
                }
            }
            Transfer::OursToOurs(cc) => {
                let ep = Endpoint::bind(localhost()).expect("bind an endpoint");
                let listener = ep.listen(4).expect("listen");
                let relay = relay_to(ep.local_addr(), s, seed);
                let to = relay.local_addr();
                let sender = std::thread::spawn(move || ours_send(to, bytes, cc, base));
                let (t, timeline) =
                    with_drop_timeline(&relay, || ours_receive(&listener, bytes, LIMIT));
                let (queue_ms, stats) = sender.join().expect("sender thread");
                Outcome {
                    mbps: mbps(bytes, t),
                    queue_ms,
                    sender: Some(stats),
                    drops: drops(&relay, true, before) + &timeline_note(&timeline),
                }
            }
        }
    }
}

fn percentile(mut v: Vec<f64>, q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v.get(i).copied()
}

/// The paths, each with the bytes per transfer.
fn paths() -> Vec<(Scenario, u64)> {
    let scale: f64 = env_or("UDT_BENCH_SCALE", 1.0);
    let mib = |n: f64| ((n * scale).max(1.0) * (1u64 << 20) as f64) as u64;
    if env_or("UDT_BENCH_SMOKE", 0u32) != 0 {
        let tiny = Scenario {
            name: "smoke",
            rate_mbps: 20,
            ..Scenario::s2()
        };
        return vec![(tiny, mib(1.0))];
    }
    let high_mbps: u64 = env_or("UDT_BENCH_HIGH_MBPS", 1000);
    let all = vec![
        (Scenario::s2(), mib(32.0)),
        (Scenario::s3(), mib(64.0)),
        (Scenario::s4(), mib(128.0)),
        (Scenario::s5(), mib(8.0)),
        (
            Scenario {
                rate_mbps: high_mbps,
                ..Scenario::high_bdp()
            },
            mib(256.0),
        ),
    ];
    match std::env::var("UDT_BENCH_ONLY") {
        Ok(only) => all
            .into_iter()
            .filter(|(s, _)| only.split(',').any(|n| n.eq_ignore_ascii_case(s.name)))
            .collect(),
        Err(_) => all,
    }
}

fn run_two_flows(cc: CcAlgorithm, reps: u64) {
    let seconds: u64 = env_or("UDT_BENCH_SECONDS", 20u64).max(8);
    let join = JOIN.as_secs() as usize;
    let windows = [(join + 2, join + 6), (join + 6, seconds as usize)];
    println!(
        "two flows of ours ({cc}) through one 100 Mbit/s bottleneck, 20 ms RTT, 50 ms queue; the second joins at {join} s"
    );
    for seed in 1..=reps {
        let bins = two_flows(cc, seconds, seed);
        let show = |b: &Vec<f64>| {
            b.iter()
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("seed {seed}: first  {}", show(&bins[0]));
        println!("seed {seed}: second {}", show(&bins[1]));
        let shares: Vec<String> = windows
            .iter()
            .map(|&(from, to)| format!("{from}-{to} s {:.2}", share(&bins, from, to)))
            .collect();
        println!("seed {seed}: slower / faster flow: {}", shares.join(", "));
    }
}

fn main() {
    // RUST_LOG=udt_core=debug shows our sender's loss detection and timeouts.
    let _ = env_logger::builder().format_timestamp_micros().try_init();
    if env_or("UDT_BENCH_TWO_FLOWS", 0u32) != 0 {
        let cc = std::env::var("UDT_BENCH_CC")
            .ok()
            .and_then(|v| v.split(',').next().and_then(|n| n.parse().ok()))
            .unwrap_or(CcAlgorithm::Bbr);
        run_two_flows(cc, env_or("UDT_BENCH_REPS", 2u64).max(1));
        return;
    }
    let smoke = env_or("UDT_BENCH_SMOKE", 0u32) != 0;
    let reps: u64 = if smoke {
        1
    } else {
        env_or("UDT_BENCH_REPS", 2u64).max(1)
    };
    let ccs: Vec<CcAlgorithm> = std::env::var("UDT_BENCH_CC")
        .unwrap_or_else(|_| "bbr,udt".into())
        .split(',')
        .filter_map(|n| n.parse().ok())
        .collect();
    // Build the peers before timing anything.
    let _ = harness::peers_dir();
    let chosen = std::env::var("UDT_BENCH_TRANSFERS")
        .unwrap_or_else(|_| "udt4-udt4,ours-udt4,udt4-ours,ours-ours".into());
    let wants = |name: &str| chosen.split(',').any(|n| n.trim() == name);
    let with_reference = wants("udt4-udt4");
    let mut transfers = Vec::new();
    if with_reference {
        transfers.push(Transfer::Udt4ToUdt4);
    }
    if wants("ours-udt4") {
        transfers.extend(ccs.iter().map(|&cc| Transfer::OursToUdt4(cc)));
    }
    if wants("udt4-ours") {
        transfers.push(Transfer::Udt4ToOurs);
    }
    if wants("ours-ours") {
        transfers.extend(ccs.iter().map(|&cc| Transfer::OursToOurs(cc)));
    }
    println!(
        "stream goodput through udt-relay, median of {reps} (Mbit/s, measured at the receiver)"
    );
    for (s, bytes) in paths() {
        let mut goodput: Vec<Vec<f64>> = vec![Vec::new(); transfers.len()];
        let mut queue: Vec<Vec<f64>> = vec![Vec::new(); transfers.len()];
        let mut details: Vec<String> = Vec::new();
        for rep in 0..reps {
            // Alternate the transfers so a slow phase of the machine hits
            // all alike; the same relay seed for all in one repetition.
            for (i, t) in transfers.iter().enumerate() {
                let o = t.run(&s, bytes, 1 + rep);
                let sender = o.sender.as_ref().map(sender_summary);
                details.push(format!(
                    "{} rep {}: {:.1} Mbit/s; {}{}",
                    t.name(),
                    rep + 1,
                    o.mbps,
                    sender.map(|s| s + "; ").unwrap_or_default(),
                    o.drops
                ));
                goodput[i].push(o.mbps);
                queue[i].extend(o.queue_ms);
            }
        }
        println!();
        println!(
            "{}: {} Mbit/s, {} ms RTT, {:.1} % loss each way, 50 ms queue, {} MiB per transfer",
            s.name,
            s.rate_mbps,
            s.rtt().as_millis(),
            s.loss.mean_loss() * 100.0,
            bytes >> 20
        );
        println!("| transfer | Mbit/s | of link | vs libudt0 | queue p50 / p99 (ms) |");
        println!("|---|---:|---:|---:|---:|");
        let mut reference = None;
        for ((t, g), q) in transfers.iter().zip(goodput).zip(queue) {
            let median = percentile(g, 0.5).unwrap_or(0.0);
            // The first row is libudt0 -> libudt0 unless it was left out.
            let base = *reference.get_or_insert(if with_reference { median } else { f64::NAN });
            let queue = match (percentile(q.clone(), 0.5), percentile(q, 0.99)) {
                (Some(p50), Some(p99)) => format!("{p50:.1} / {p99:.1}"),
                _ => "-".into(),
            };
            let ratio = if base.is_nan() {
                "-".to_string()
            } else {
                format!("{:.2}x", median / base.max(1e-9))
            };
            println!(
                "| {} | {median:.1} | {:.0} % | {ratio} | {queue} |",
                t.name(),
                median / s.rate_mbps as f64 * 100.0,
            );
        }
        println!();
        println!("Each transfer (our sender's counters where it sends):");
        for d in details {
            println!("- {d}");
        }
    }
}
