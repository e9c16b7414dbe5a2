//! Loopback benchmark of the multiplexer (run with `cargo bench --bench
//! mux_loopback`):
//!
//! 1. one connection, memory to memory, `UDT_BENCH_MIB` MiB (default 1024),
//!    against TCP on loopback in the same run; prints both rates and the
//!    ratio;
//! 2. CPU time of two endpoints holding 100 idle connections for
//!    `UDT_BENCH_IDLE_SECS` seconds (default 10), from `getrusage`;
//! 3. resident memory per idle connection (VmRSS before and after).
//!
//! Linux only for the memory figure (it reads /proc/self/status).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;

use support::{cpu_time, env};
use udt::{Config, Endpoint, EndpointConfig};

const CHUNK: usize = 256 << 10;

/// Resident set size in KiB (Linux), or 0 elsewhere.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Sends `total` bytes from a writer thread to `reader`; returns the time
/// from the first write to the reader's end of stream.
fn transfer<W, R>(
    mut writer: W,
    mut reader: R,
    total: u64,
    finish: impl FnOnce(W) + Send + 'static,
) -> Duration
where
    W: Write + Send + 'static,
    R: Read,
{
    let start = Instant::now();
    let t = thread::spawn(move || {
        let buf = vec![0x5Au8; CHUNK];
        let mut left = total;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            writer.write_all(&buf[..n]).expect("write");
            left -= n as u64;
        }
        finish(writer);
    });
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        let n = reader.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let took = start.elapsed();
    t.join().expect("writer thread");
    assert_eq!(got, total, "short transfer");
    took
}

fn rate(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / 1e6
}

fn bench_throughput(total: u64) {
    // TCP on loopback.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let tcp = transfer(client, server, total, |s| {
        let _ = s.shutdown(std::net::Shutdown::Write);
    });

    // UDT through two endpoints.
    let config = Config::default();
    let mut options = EndpointConfig::default();
    options.precise_wait = Duration::from_micros(env("UDT_BENCH_PRECISE_US", 50));
    let server_ep = Endpoint::bind_with("127.0.0.1:0", config.clone(), options.clone()).unwrap();
    let listener = server_ep.listen(1).unwrap();
    let client_ep = Endpoint::bind_with("127.0.0.1:0", config, options).unwrap();
    let client = client_ep.connect(server_ep.local_addr()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let cpu0 = cpu_time();
    let udt = transfer(client, server, total, |s| s.close().expect("close"));
    let cpu = cpu_time() - cpu0;
    let stats = server_ep.stats();

    let mib = total >> 20;
    println!("throughput, one connection, {mib} MiB memory to memory over 127.0.0.1:");
    println!("  TCP: {:>8.1} MB/s ({tcp:.2?})", rate(total, tcp));
    println!(
        "  UDT: {:>8.1} MB/s ({udt:.2?}, {cpu:.2?} CPU for both ends)",
        rate(total, udt)
    );
    println!(
        "  UDT/TCP ratio: {:.3}",
        tcp.as_secs_f64() / udt.as_secs_f64()
    );
    println!(
        "  receiver port: {} datagrams in {} recvmmsg calls ({:.1}/call); sender port: {} datagrams in {} sendmmsg calls",
        stats.datagrams_received,
        stats.recv_calls,
        stats.datagrams_received as f64 / stats.recv_calls.max(1) as f64,
        client_ep.stats().datagrams_sent,
        client_ep.stats().send_calls,
    );
}

fn bench_idle(connections: usize, secs: u64) {
    let rss_before = rss_kib();
    let server = Endpoint::bind("127.0.0.1:0").unwrap();
    let listener = server.listen(connections).unwrap();
    let client = Endpoint::bind("127.0.0.1:0").unwrap();
    let rss_endpoints = rss_kib();
    let mut streams = Vec::new();
    for _ in 0..connections {
        let mut c = client.connect(server.local_addr()).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        // One byte each way, so both sides have touched their buffers.
        c.write_all(b"x").unwrap();
        s.write_all(b"y").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        c.read_exact(&mut b).unwrap();
        streams.push((c, s));
    }
    thread::sleep(Duration::from_millis(500));
    let rss_connected = rss_kib();
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs(secs));
    let cpu = cpu_time() - cpu0;
    let wall = t0.elapsed();
    let sent = client.stats().datagrams_sent + server.stats().datagrams_sent;
    println!("idle: {connections} connections (both ends in this process) for {wall:.2?}:");
    println!(
        "  CPU {cpu:.3?} = {:.3}% of one core; {sent} datagrams sent in total so far (keep-alives)",
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
    println!(
        "  RSS: {rss_before} KiB at start, {rss_endpoints} KiB with two endpoints, {rss_connected} KiB connected"
    );
    println!(
        "  RSS per idle connection (each end counted): {:.1} KiB",
        (rss_connected.saturating_sub(rss_endpoints)) as f64 / (2 * connections) as f64
    );
    drop(streams);
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let total = env("UDT_BENCH_MIB", 1024) << 20;
    let idle_secs = env("UDT_BENCH_IDLE_SECS", 10);
    bench_idle(100, idle_secs);
    bench_throughput(total);
}
