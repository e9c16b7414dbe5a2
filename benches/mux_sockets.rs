//! Aggregate loopback throughput of many connections into one port, by the
//! number of sockets on that port (`EndpointConfig::sockets`) and with
//! segmentation offload on and off. Both ends run in this process; the CPU
//! figure is the whole process's (`getrusage`).
//!
//! `cargo bench --bench mux_sockets`, or build it and run the binary.
//! Environment: `UDT_BENCH_SOCKETS` (comma-separated socket counts, default
//! `1,2`), `UDT_BENCH_CONNS` (connections, default 8), `UDT_BENCH_PEERS`
//! (client endpoints the connections are spread over, default one per
//! connection), `UDT_BENCH_MIB`
//! (MiB per connection, default 64), `UDT_BENCH_OFFLOAD` (`1`, `0` or
//! `both`, default `1`), `UDT_BENCH_BATCH` (`EndpointConfig::batch_size`,
//! default the endpoint's), `UDT_BENCH_RCVBUF` (MiB of `SO_RCVBUF` for every
//! endpoint, default the endpoint's), `UDT_BENCH_IDLE` (seconds the
//! connections are held open and idle before sending, default 0: the CPU
//! both ends use meanwhile is printed as a share of one core),
//! `UDT_BENCH_INTERVAL_US` (`EndpointConfig::batch_interval` in µs),
//! `UDT_BENCH_READ_PAUSE_US` (`EndpointConfig::read_pause` in µs),
//! `UDT_BENCH_ZEROCOPY=0` (`EndpointConfig::zero_copy_send` off),
//! `UDT_BENCH_CLIENT_SOCKETS` (`EndpointConfig::sockets` of every client
//! endpoint, default 1: with more, each sends through a thread per socket),
//! `UDT_BENCH_RCVPKTS` (`Config::recv_buffer_packets`: the receive buffer's
//! starting size, still growing with the BDP),
//! `UDT_BENCH_BUFFER` (send and receive buffers of that many packets, fixed,
//! default the connection's 8192 growing with the BDP). Prints one
//! line per case. `UDT_BENCH_DRIVER=poll` moves the data with two
//! application threads (one `Poller` for all senders, one for all
//! receivers, non-blocking I/O) instead of one thread per connection and
//! side, as a server holding a thousand connections would: aggregate MB/s, CPU
//! seconds per GiB, Jain's fairness index over the connections' rates, and
//! the port counters that show the batching. `RUST_LOG=udt_core=debug`
//! logs each resend and why.

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use udt::{Config, Endpoint, EndpointConfig, Interest, PollEvent, Poller, Token, UdtStream};

#[path = "support/mod.rs"]
mod support;

const CHUNK: usize = 256 << 10;

fn setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Jain's index: (Σx)² / (n Σx²); 1 when every rate is equal.
fn jain(rates: &[f64]) -> f64 {
    let sum: f64 = rates.iter().sum();
    let squares: f64 = rates.iter().map(|r| r * r).sum();
    if squares == 0.0 {
        return 0.0;
    }
    sum * sum / (rates.len() as f64 * squares)
}

/// The connections' configuration: the default, or with
/// `UDT_BENCH_BUFFER=N` send and receive buffers of N packets that do not
/// grow (what a server holding many connections would choose to bound its
/// memory: the default lets each connection queue 8192 packets, 12 MB).
fn connection_config() -> Config {
    let mut config = Config::default();
    if let Some(packets) = setting("UDT_BENCH_BUFFER").and_then(|v| v.parse::<u32>().ok()) {
        config.send_buffer_packets = packets;
        config.recv_buffer_packets = packets;
        // A cap at the configured sizes keeps them fixed.
        config.memory_cap = 2 * u64::from(packets) * u64::from(config.mss);
    }
    if let Some(packets) = setting("UDT_BENCH_SNDBUF").and_then(|v| v.parse::<u32>().ok()) {
        config.send_buffer_packets = packets;
    }
    if let Some(packets) = setting("UDT_BENCH_RCVPKTS").and_then(|v| v.parse::<u32>().ok()) {
        config.recv_buffer_packets = packets;
    }
    config
}

struct Case {
    sockets: usize,
    offload: bool,
    conns: usize,
    peers: usize,
    bytes: u64,
}

fn run(case: &Case) {
    let mut options = EndpointConfig::default();
    options.sockets = case.sockets;
    options.offload = case.offload;
    if let Some(batch) = setting("UDT_BENCH_BATCH").and_then(|v| v.parse().ok()) {
        options.batch_size = batch;
    }
    if setting("UDT_BENCH_ZEROCOPY").as_deref() == Some("0") {
        options.zero_copy_send = false;
    }
    if let Some(us) = setting("UDT_BENCH_INTERVAL_US").and_then(|v| v.parse::<u64>().ok()) {
        options.batch_interval = Duration::from_micros(us);
    }
    if let Some(mib) = setting("UDT_BENCH_RCVBUF").and_then(|v| v.parse::<usize>().ok()) {
        options.udp_recv_buffer = Some(mib << 20);
    }
    if let Some(us) = setting("UDT_BENCH_READ_PAUSE_US").and_then(|v| v.parse::<u64>().ok()) {
        options.read_pause = Duration::from_micros(us);
    }
    let config = connection_config();
    let server = Endpoint::bind_with("127.0.0.1:0", config.clone(), options.clone())
        .expect("bind the server");
    // Every connection is opened before the first accept, so the backlog
    // must hold them all; twice the count keeps one client endpoint's
    // requests inside the per-source share (all but an eighth).
    let listener = server.listen(2 * case.conns).expect("listen");
    let addr = server.local_addr();
    let mut client_options = EndpointConfig::default();
    client_options.offload = case.offload;
    if let Some(n) = setting("UDT_BENCH_CLIENT_SOCKETS").and_then(|v| v.parse().ok()) {
        client_options.sockets = n;
    }
    client_options.batch_size = options.batch_size;
    client_options.batch_interval = options.batch_interval;
    client_options.read_pause = options.read_pause;
    client_options.zero_copy_send = options.zero_copy_send;
    client_options.udp_recv_buffer = options.udp_recv_buffer;
    let clients: Vec<Endpoint> = (0..case.peers.clamp(1, case.conns))
        .map(|_| {
            Endpoint::bind_with("127.0.0.1:0", config.clone(), client_options.clone())
                .expect("bind a client")
        })
        .collect();
    let streams: Vec<_> = (0..case.conns)
        .map(|i| clients[i % clients.len()].connect(addr).expect("connect"))
        .collect();
    let mut accepted = Vec::new();
    for _ in 0..case.conns {
        accepted.push(listener.accept().expect("accept").0);
    }
    if let Some(secs) = setting("UDT_BENCH_IDLE").and_then(|v| v.parse::<f64>().ok()) {
        let idle = Duration::from_secs_f64(secs);
        let cpu0 = support::cpu_time();
        let t0 = Instant::now();
        thread::sleep(idle);
        let share = (support::cpu_time() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
        println!(
            "idle: {} connections held open {:.1} s: {:.2} % of one core (both ends)",
            case.conns,
            t0.elapsed().as_secs_f64(),
            share * 100.0
        );
    }
    let (rss_open, _) = support::rss();
    let cpu0 = support::cpu_time();
    let start = Instant::now();
    let bytes = case.bytes;
    let polled = setting("UDT_BENCH_DRIVER").as_deref() == Some("poll");
    let (total, rates) = if polled {
        transfer_polled(streams, accepted, bytes, start)
    } else {
        transfer_threaded(streams, accepted, bytes, start)
    };
    let took = start.elapsed();
    let cpu = support::cpu_time() - cpu0;
    let (_, rss_peak) = support::rss();
    // Both ends of every connection live in this process.
    let ends = 2 * case.conns as u64;
    println!(
        "memory: {:.1} MB resident with the {} connections open and idle ({:.1} kB per \
         connection end), peak {:.1} MB while sending ({:.1} kB per end, the process's \
         own buffers included)",
        rss_open as f64 / 1e6,
        case.conns,
        rss_open as f64 / ends as f64 / 1e3,
        rss_peak as f64 / 1e6,
        rss_peak as f64 / ends as f64 / 1e3,
    );
    let gib = total as f64 / (1u64 << 30) as f64;
    let s = server.stats();
    let sent: u64 = clients.iter().map(|c| c.stats().datagrams_sent).sum();
    let offloaded: u64 = clients.iter().map(|c| c.stats().datagrams_offloaded).sum();
    let calls: u64 = clients.iter().map(|c| c.stats().send_calls).sum();
    println!(
        "sockets {} offload {:<5} conns {:>4}: {:>8.1} MB/s aggregate, {:.2} CPU-s/GiB (both ends), \
         Jain {:.3}; sent {sent} datagrams in {calls} calls ({offloaded} by GSO); \
         received {} in {} calls ({} by GRO)",
        case.sockets,
        case.offload,
        case.conns,
        total as f64 / took.as_secs_f64() / 1e6,
        cpu.as_secs_f64() / gib,
        jain(&rates),
        s.datagrams_received,
        s.recv_calls,
        s.datagrams_coalesced,
    );
}

/// One thread per connection and side, blocking I/O. Returns the bytes
/// received and each connection's rate.
fn transfer_threaded(
    streams: Vec<UdtStream>,
    accepted: Vec<UdtStream>,
    bytes: u64,
    start: Instant,
) -> (u64, Vec<f64>) {
    let writers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            thread::spawn(move || {
                let buf = vec![0xA5u8; CHUNK];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(CHUNK as u64) as usize;
                    s.write_all(&buf[..n]).expect("write");
                    left -= n as u64;
                }
                s.close().expect("close");
            })
        })
        .collect();
    let readers: Vec<_> = accepted
        .into_iter()
        .map(|mut s| {
            thread::spawn(move || {
                let mut buf = vec![0u8; CHUNK];
                let mut got = 0u64;
                loop {
                    let n = s.read(&mut buf).expect("read");
                    if n == 0 {
                        break;
                    }
                    got += n as u64;
                }
                (got, start.elapsed())
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let mut rates = Vec::new();
    let mut total = 0u64;
    for r in readers {
        let (got, took) = r.join().expect("reader");
        assert_eq!(got, bytes, "short transfer");
        total += got;
        rates.push(got as f64 / took.as_secs_f64());
    }
    (total, rates)
}

/// Waits for the next events of `poller`; a silent minute means a stall.
fn next_events(poller: &Poller, events: &mut Vec<PollEvent>) {
    let n = poller
        .wait(events, Some(Duration::from_secs(60)))
        .expect("poll");
    assert!(n > 0, "no connection made progress for a minute");
}

/// One thread writes to every connection and one reads from every
/// connection, each through a `Poller`.
fn transfer_polled(
    streams: Vec<UdtStream>,
    accepted: Vec<UdtStream>,
    bytes: u64,
    start: Instant,
) -> (u64, Vec<f64>) {
    let writer = thread::spawn(move || {
        let poller = Poller::new();
        let mut streams: Vec<Option<UdtStream>> = streams.into_iter().map(Some).collect();
        for (i, s) in streams.iter().flatten().enumerate() {
            s.set_nonblocking(true);
            poller
                .register(s, Token(i), Interest::WRITABLE)
                .expect("register");
        }
        let buf = vec![0xA5u8; CHUNK];
        let mut left = vec![bytes; streams.len()];
        let mut done = Vec::new();
        let mut events = Vec::new();
        while done.len() < streams.len() {
            next_events(&poller, &mut events);
            for ev in &events {
                let i = ev.token.0;
                let Some(s) = streams[i].as_mut() else {
                    continue;
                };
                while left[i] > 0 {
                    let n = left[i].min(CHUNK as u64) as usize;
                    match s.write(&buf[..n]) {
                        Ok(w) => left[i] -= w as u64,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("write: {e}"),
                    }
                }
                if left[i] == 0 {
                    poller.deregister(Token(i)).expect("deregister");
                    if let Some(s) = streams[i].take() {
                        done.push(s);
                    }
                }
            }
        }
        let written = start.elapsed();
        let (mut resent, mut timeouts, mut reported, mut presumed) = (0u64, 0u64, 0u64, 0u64);
        let mut nudges = 0u64;
        let mut limits = udt::proto::SendLimits::default();
        for s in done {
            s.set_nonblocking(false);
            let stats = s.stats();
            resent += stats.packets_retransmitted;
            timeouts += stats.timeouts;
            reported += stats.packets_reported_lost;
            presumed += stats.packets_presumed_lost;
            nudges += stats.ack_nudges_sent;
            let l = stats.send_limits;
            limits.app += l.app;
            limits.flow_window += l.flow_window;
            limits.congestion_window += l.congestion_window;
            limits.pacing += l.pacing;
            limits.driver += l.driver;
            s.close().expect("close");
        }
        println!(
            "writer: everything written after {:.3} s, every connection closed after {:.3} s",
            written.as_secs_f64(),
            start.elapsed().as_secs_f64()
        );
        println!(
            "senders: {reported} packets reported lost by NAKs, {presumed} presumed lost, \
             {nudges} ACK nudges"
        );
        let [app, flow, cwnd, pacing, driver] = limits.shares().map(|x| x * 100.0);
        println!(
            "senders waited for: the application {app:.0} %, the flow window {flow:.0} %, \
             the congestion window {cwnd:.0} %, pacing {pacing:.0} %, the driver {driver:.0} %"
        );
        (resent, timeouts)
    });
    let reader = thread::spawn(move || {
        let poller = Poller::new();
        let mut accepted: Vec<Option<UdtStream>> = accepted.into_iter().map(Some).collect();
        for (i, s) in accepted.iter().flatten().enumerate() {
            s.set_nonblocking(true);
            poller
                .register(s, Token(i), Interest::READABLE)
                .expect("register");
        }
        let mut buf = vec![0u8; CHUNK];
        let mut got = vec![0u64; accepted.len()];
        let mut rates = vec![0.0; accepted.len()];
        let mut open = accepted.len();
        let mut first_end = None;
        // NAKs sent, packets lost, duplicates, over the receivers.
        let (mut naks, mut lost, mut duplicates) = (0u64, 0u64, 0u64);
        let mut events = Vec::new();
        while open > 0 {
            next_events(&poller, &mut events);
            for ev in &events {
                let i = ev.token.0;
                let Some(s) = accepted[i].as_mut() else {
                    continue;
                };
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => {
                            let stats = s.stats();
                            naks += stats.naks_sent;
                            lost += stats.packets_lost;
                            duplicates += stats.dropped.duplicate;
                            poller.deregister(Token(i)).expect("deregister");
                            accepted[i] = None;
                            rates[i] = got[i] as f64 / start.elapsed().as_secs_f64();
                            first_end.get_or_insert(start.elapsed());
                            open -= 1;
                            break;
                        }
                        Ok(n) => got[i] += n as u64,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("read: {e}"),
                    }
                }
            }
        }
        for &g in &got {
            assert_eq!(g, bytes, "short transfer");
        }
        println!("receivers: {naks} naks sent, {lost} packets lost, {duplicates} duplicates");
        println!(
            "reader: first end of stream after {:.3} s, the last after {:.3} s",
            first_end.unwrap_or_default().as_secs_f64(),
            start.elapsed().as_secs_f64()
        );
        (got.iter().sum(), rates)
    });
    let (resent, timeouts) = writer.join().expect("writer");
    let (total, rates) = reader.join().expect("reader");
    println!("senders: {resent} packets retransmitted, {timeouts} timeouts");
    (total, rates)
}

fn main() {
    // RUST_LOG=udt_core=debug shows why packets were resent.
    let _ = env_logger::try_init();
    let sockets: Vec<usize> = setting("UDT_BENCH_SOCKETS")
        .unwrap_or_else(|| "1,2".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let offloads: Vec<bool> = match setting("UDT_BENCH_OFFLOAD").as_deref() {
        Some("0") => vec![false],
        Some("both") => vec![false, true],
        _ => vec![true],
    };
    let conns = support::env("UDT_BENCH_CONNS", 8) as usize;
    let peers = support::env("UDT_BENCH_PEERS", conns as u64) as usize;
    let bytes = support::env("UDT_BENCH_MIB", 64) << 20;
    for &offload in &offloads {
        for &n in &sockets {
            run(&Case {
                sockets: n,
                offload,
                conns,
                peers,
                bytes,
            });
        }
    }
}
