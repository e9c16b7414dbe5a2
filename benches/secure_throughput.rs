//! Encrypted against plain UDT on loopback, one connection, memory to
//! memory, in the same run (issue 11: encrypted throughput ≥ 80 % of plain).
//!
//! `cargo bench --bench secure_throughput`. Environment:
//! - `UDT_BENCH_MIB`: MiB per transfer (default 512);
//! - `UDT_BENCH_REPS`: pairs of transfers, alternating plain and secure
//!   (default 4); the ratio is taken pair by pair and the median reported.
//!
//! Each transfer gets fresh endpoints; CPU time is the whole process's
//! (both ends) from `getrusage`, so CPU-seconds per GiB count sender and
//! receiver together.

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;

use support::{cpu_time, env};
use udt::{Config, Endpoint, EndpointConfig};
use udt_core::secure::Security;

const CHUNK: usize = 256 << 10;

/// One transfer of `total` bytes; returns (wall time, CPU time).
fn transfer(security: &Security, total: u64) -> (Duration, Duration) {
    let mut config = Config::default();
    config.security = security.clone();
    let options = EndpointConfig::default();
    let server_ep = Endpoint::bind_with("127.0.0.1:0", config.clone(), options.clone())
        .expect("bind the server endpoint");
    let listener = server_ep.listen(1).expect("listen");
    let client_ep =
        Endpoint::bind_with("127.0.0.1:0", config, options).expect("bind the client endpoint");
    let mut client = client_ep.connect(server_ep.local_addr()).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    let cpu0 = cpu_time();
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
    writer.join().expect("writer thread");
    assert_eq!(got, total, "bytes received");
    (wall, cpu_time() - cpu0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let total = env("UDT_BENCH_MIB", 512) << 20;
    let reps = env("UDT_BENCH_REPS", 4).max(1);
    let secure = Security::PreSharedKey([0x42; 32]);
    let gib = total as f64 / f64::from(1u32 << 30);
    let (mut ratios, mut plain_cpu, mut secure_cpu, mut plain_rate, mut secure_rate) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    println!(
        "plain vs secure (AES-256-GCM), {} MiB per transfer, loopback:",
        total >> 20
    );
    println!(
        "| pair | plain MB/s | secure MB/s | secure/plain | plain CPU-s/GiB | secure CPU-s/GiB |"
    );
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
        let rate = |t: Duration| total as f64 / t.as_secs_f64() / 1e6;
        let ratio = p.0.as_secs_f64() / s.0.as_secs_f64();
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} |",
            i + 1,
            rate(p.0),
            rate(s.0),
            ratio,
            p.1.as_secs_f64() / gib,
            s.1.as_secs_f64() / gib
        );
        ratios.push(ratio);
        plain_rate.push(rate(p.0));
        secure_rate.push(rate(s.0));
        plain_cpu.push(p.1.as_secs_f64() / gib);
        secure_cpu.push(s.1.as_secs_f64() / gib);
    }
    println!(
        "median: plain {:.0} MB/s, secure {:.0} MB/s, secure/plain {:.2} (pair by pair); CPU-s/GiB (both ends) plain {:.2}, secure {:.2}",
        median(plain_rate),
        median(secure_rate),
        median(ratios),
        median(plain_cpu),
        median(secure_cpu)
    );
}
