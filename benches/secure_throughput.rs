//! Encrypted against plain UDT on loopback, one connection, memory to
//! memory, in the same run (issue 11: encrypted throughput ≥ 80 % of plain).
//!
//! `cargo bench --bench secure_throughput`. Environment:
//! - `UDT_BENCH_MIB`: MiB per transfer (default 512);
//! - `UDT_BENCH_REPS`: pairs of transfers, alternating plain and secure
//!   (default 4); the ratio is taken pair by pair and the median reported;
//! - `UDT_BENCH_ONLY`: `plain` or `secure` runs that mode alone, `REPS`
//!   times (for a profiler: `perf record`, `valgrind --tool=callgrind`).
//!
//! Each transfer gets fresh endpoints; CPU time is the whole process's
//! (both ends) from `getrusage`, so CPU-seconds per GiB count sender and
//! receiver together. The split in parentheses is per thread: the sending
//! end is the writing thread and the client endpoint's threads, the
//! receiving end the reading thread and the server endpoint's.

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
#[path = "support/threads.rs"]
mod threads;

use support::{cpu_time, env};
use udt::{Config, Endpoint, EndpointConfig};
use udt_core::secure::Security;

const CHUNK: usize = 256 << 10;

/// What one transfer cost.
struct Run {
    wall: Duration,
    /// The whole process.
    cpu: Duration,
    /// The sending end's threads.
    send_cpu: Duration,
    /// The receiving end's threads.
    recv_cpu: Duration,
}

/// One transfer of `total` bytes.
fn transfer(security: &Security, total: u64) -> Run {
    let mut config = Config::default();
    config.security = security.clone();
    let options = EndpointConfig::default();
    let before = threads::threads();
    let server_ep = Endpoint::bind_with("127.0.0.1:0", config.clone(), options.clone())
        .expect("bind the server endpoint");
    let with_server = threads::threads();
    let listener = server_ep.listen(1).expect("listen");
    let client_ep =
        Endpoint::bind_with("127.0.0.1:0", config, options).expect("bind the client endpoint");
    let client_threads: Vec<u32> = threads::threads()
        .difference(&with_server)
        .copied()
        .collect();
    let mut server_threads: Vec<u32> = with_server.difference(&before).copied().collect();
    server_threads.push(threads::current());
    let mut client = client_ep.connect(server_ep.local_addr()).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    let cpu0 = cpu_time();
    let (send0, recv0) = (threads::cpu(&client_threads), threads::cpu(&server_threads));
    let start = Instant::now();
    let writer = thread::spawn(move || {
        let buf = vec![0x5Au8; CHUNK];
        let mut left = total;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            client.write_all(&buf[..n]).expect("write");
            left -= n as u64;
        }
        client.close().expect("close");
        // Its own CPU time, read before it ends (an ended thread reads 0).
        threads::cpu(&[threads::current()])
    });
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        let n = server.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let wall = start.elapsed();
    let recv_cpu = threads::cpu(&server_threads) - recv0;
    let writer_cpu = writer.join().expect("writer thread");
    let send_cpu = threads::cpu(&client_threads) - send0 + writer_cpu;
    assert_eq!(got, total, "bytes received");
    Run {
        wall,
        cpu: cpu_time() - cpu0,
        send_cpu,
        recv_cpu,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Per-GiB figures of one run: (MB/s, CPU-s/GiB whole, sending end,
/// receiving end).
fn per_gib(run: &Run, total: u64) -> (f64, f64, f64, f64) {
    let gib = total as f64 / f64::from(1u32 << 30);
    (
        total as f64 / run.wall.as_secs_f64() / 1e6,
        run.cpu.as_secs_f64() / gib,
        run.send_cpu.as_secs_f64() / gib,
        run.recv_cpu.as_secs_f64() / gib,
    )
}

fn main() {
    let total = env("UDT_BENCH_MIB", 512) << 20;
    let reps = env("UDT_BENCH_REPS", 4).max(1);
    let secure = Security::PreSharedKey([0x42; 32]);
    if let Ok(only) = std::env::var("UDT_BENCH_ONLY") {
        let security = match only.as_str() {
            "plain" => Security::Plain,
            "secure" => secure,
            other => panic!("UDT_BENCH_ONLY is plain or secure, not {other:?}"),
        };
        for i in 0..reps {
            let r = per_gib(&transfer(&security, total), total);
            println!(
                "{only} {}: {:.0} MB/s, {:.2} CPU-s/GiB (send {:.2} + recv {:.2})",
                i + 1,
                r.0,
                r.1,
                r.2,
                r.3
            );
        }
        return;
    }
    // Per pair: plain and secure figures, and the throughput ratio.
    let mut plain = Vec::new();
    let mut sealed = Vec::new();
    let mut ratios = Vec::new();
    println!(
        "plain vs secure (AES-128-GCM), {} MiB per transfer, loopback:",
        total >> 20
    );
    println!("| pair | plain MB/s | secure MB/s | secure/plain | plain CPU-s/GiB (send + recv) | secure CPU-s/GiB (send + recv) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for i in 0..reps {
        // Alternate which goes first, so a trend in the machine's load
        // does not favour one.
        let (p, s) = if i % 2 == 0 {
            let p = transfer(&Security::Plain, total);
            (p, transfer(&secure, total))
        } else {
            let s = transfer(&secure, total);
            (transfer(&Security::Plain, total), s)
        };
        let ratio = p.wall.as_secs_f64() / s.wall.as_secs_f64();
        let (p, s) = (per_gib(&p, total), per_gib(&s, total));
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} ({:.2} + {:.2}) | {:.2} ({:.2} + {:.2}) |",
            i + 1,
            p.0,
            s.0,
            ratio,
            p.1,
            p.2,
            p.3,
            s.1,
            s.2,
            s.3
        );
        ratios.push(ratio);
        plain.push(p);
        sealed.push(s);
    }
    let med = |v: &[(f64, f64, f64, f64)], f: fn(&(f64, f64, f64, f64)) -> f64| {
        median(v.iter().map(f).collect())
    };
    println!(
        "median: plain {:.0} MB/s, secure {:.0} MB/s, secure/plain {:.2} (pair by pair); \
         CPU-s/GiB plain {:.2} (send {:.2} + recv {:.2}), secure {:.2} (send {:.2} + recv {:.2})",
        med(&plain, |r| r.0),
        med(&sealed, |r| r.0),
        median(ratios),
        med(&plain, |r| r.1),
        med(&plain, |r| r.2),
        med(&plain, |r| r.3),
        med(&sealed, |r| r.1),
        med(&sealed, |r| r.2),
        med(&sealed, |r| r.3),
    );
}
