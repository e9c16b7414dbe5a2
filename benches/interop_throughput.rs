//! Loopback throughput of the UDT4 interop transfers, next to UDT4 ↔ UDT4
//! (Debian's libudt0) and ours ↔ ours in the same run.
//!
//! `cargo bench --bench interop_throughput` (needs libudt-dev and g++, as
//! the interop tests). Environment: `UDT_BENCH_MIB` (loopback transfer size,
//! default 256), `UDT_BENCH_REPS` (repetitions, default 3; the median is
//! reported), `UDT_BENCH_LOSSY=0` skips the lossy-path rows.
//!
//! Each transfer is one stream, client to server, with fresh processes for
//! every libudt peer. Throughput is measured on the receiving side, from the
//! accepted connection to the last byte, with no data checks on either side
//! (the interop tests check the data). The lossy rows put the impairment
//! relay (20 ms RTT, 1 % or 5 % random loss each way) between client and
//! server. Figures go to `docs/interop.md`.

#[path = "../tests/interop/harness.rs"]
mod harness;
#[path = "../tests/relay/paths.rs"]
mod paths;

use std::net::SocketAddr;
use std::time::Duration;

use harness::{ours_receive, udt4_stream_elapsed, udt4_stream_receiver, udt4_stream_sender};
use udt::Endpoint;
use udt_relay::{Impairment, Loss, Relay, RelayConfig};

const LIMIT: Duration = Duration::from_secs(300);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn endpoint() -> Endpoint {
    Endpoint::bind(localhost()).expect("bind an endpoint")
}

/// Our sender: one reused buffer, then an orderly close.
fn ours_send(to: SocketAddr, bytes: u64) {
    let ep = endpoint();
    let stream = ep.connect(to).expect("connect");
    paths::write_bytes(&stream, bytes);
    // The peer may close first once it has everything; that is fine here.
    let _ = stream.close();
}

/// The relay in front of `server` for a lossy row, or nothing.
fn path_to(server: SocketAddr, loss: Option<f64>) -> (Option<Relay>, SocketAddr) {
    let Some(loss) = loss else {
        return (None, server);
    };
    let path = Impairment {
        loss: Loss::Random(loss),
        delay: Duration::from_millis(10),
        ..Impairment::default()
    };
    let relay = Relay::start(RelayConfig::new(server).with_both(path)).expect("start the relay");
    let front = relay.local_addr();
    (Some(relay), front)
}

fn udt4_to_udt4(bytes: u64, loss: Option<f64>) -> Duration {
    let (mut server, addr) = udt4_stream_receiver(bytes, LIMIT);
    let (_relay, to) = path_to(addr, loss);
    let mut client = udt4_stream_sender(to, bytes, LIMIT);
    let t = udt4_stream_elapsed(&mut server, bytes, LIMIT);
    client.expect_success(Duration::from_secs(60));
    t
}

fn ours_to_udt4(bytes: u64, loss: Option<f64>) -> Duration {
    let (mut server, addr) = udt4_stream_receiver(bytes, LIMIT);
    let (_relay, to) = path_to(addr, loss);
    ours_send(to, bytes);
    udt4_stream_elapsed(&mut server, bytes, LIMIT)
}

fn udt4_to_ours(bytes: u64, loss: Option<f64>) -> Duration {
    let ep = endpoint();
    let listener = ep.listen(4).expect("listen");
    let (_relay, to) = path_to(ep.local_addr(), loss);
    let mut client = udt4_stream_sender(to, bytes, LIMIT);
    let t = ours_receive(&listener, bytes, Duration::from_secs(30));
    client.expect_success(Duration::from_secs(60));
    t
}

fn ours_to_ours(bytes: u64, loss: Option<f64>) -> Duration {
    let ep = endpoint();
    let listener = ep.listen(4).expect("listen");
    let (_relay, to) = path_to(ep.local_addr(), loss);
    let sender = std::thread::spawn(move || ours_send(to, bytes));
    let t = ours_receive(&listener, bytes, Duration::from_secs(30));
    sender.join().expect("sender thread");
    t
}

fn mbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 * 8.0 / t.as_secs_f64().max(1e-9) / 1e6
}

fn main() {
    let mib = env_or("UDT_BENCH_MIB", 256);
    let reps = env_or("UDT_BENCH_REPS", 3).max(1);
    // Build the peers before timing anything.
    let _ = harness::peers_dir();
    let mut paths: Vec<(String, u64, Option<f64>)> =
        vec![(format!("loopback, {mib} MiB"), mib << 20, None)];
    if env_or("UDT_BENCH_LOSSY", 1) != 0 {
        paths.push(("20 ms RTT, 1 % loss, 16 MiB".into(), 16 << 20, Some(0.01)));
        paths.push(("20 ms RTT, 5 % loss, 4 MiB".into(), 4 << 20, Some(0.05)));
    }
    type Scenario = (&'static str, fn(u64, Option<f64>) -> Duration);
    let scenarios: [Scenario; 4] = [
        ("UDT4 -> UDT4", udt4_to_udt4),
        ("ours -> UDT4", ours_to_udt4),
        ("UDT4 -> ours", udt4_to_ours),
        ("ours -> ours", ours_to_ours),
    ];
    println!("stream throughput, median of {reps} (Mbit/s, measured at the receiver)");
    for (title, bytes, loss) in paths {
        // Interleave the scenarios so a slow phase of the machine hits all alike.
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); scenarios.len()];
        for _ in 0..reps {
            for (i, (_, run)) in scenarios.iter().enumerate() {
                samples[i].push(mbps(bytes, run(bytes, loss)));
            }
        }
        println!();
        println!("{title}");
        println!(
            "{:<14} {:>10} {:>10} {:>10} {:>15}",
            "transfer", "median", "min", "max", "vs UDT4<->UDT4"
        );
        let mut reference = None;
        for ((name, _), mut s) in scenarios.iter().zip(samples) {
            s.sort_by(|a, b| a.total_cmp(b));
            let median = s[s.len() / 2];
            let base = *reference.get_or_insert(median);
            println!(
                "{name:<14} {median:>10.1} {:>10.1} {:>10.1} {:>14.2}x",
                s[0],
                s[s.len() - 1],
                median / base
            );
        }
    }
}
