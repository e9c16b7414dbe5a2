//! The bench client (`udt bench HOST:PORT`): runs one test against a bench
//! server, samples it every second, and gathers the server's reports into
//! a [`BenchSummary`].

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use udt_mux::MessageOptions;

use crate::net::{self, Conn, LinkStats, NetOptions, Transport};
use crate::proto::exit;
use crate::ui::{self, CliError, Output};

use super::cpu::{cpu_percent, cpu_time};
use super::protocol::{
    duration_ms, msg_sent_ns, put_msg_header, Header, ServerReport, END_OF_CHUNKS, MAX_MSG,
    MSG_HEADER,
};
use super::report::{
    mean, print_interval, print_interval_header, print_summary, BenchSummary, Interval, Latency,
};

/// Bytes per chunk the client writes in stream mode.
const CHUNK: usize = 1 << 20;

/// `udt bench HOST:PORT` arguments.
#[derive(Clone, Debug)]
pub struct ClientArgs {
    /// The server.
    pub target: String,
    /// How long to send.
    pub duration: Duration,
    /// Connections in parallel.
    pub parallel: u32,
    /// Message mode with this message size.
    pub msg_size: Option<u64>,
    /// Messages per second per connection (0: unlimited).
    pub rate: u64,
    /// Transport options.
    pub net: NetOptions,
    /// Output mode.
    pub output: Output,
}

/// What one client connection ends with: the server's report, the link
/// counters, the latency histogram (message mode) and the sending time.
type Outcome = Result<(ServerReport, LinkStats, Option<Histogram<u64>>, Duration), CliError>;

/// Shared per-connection counters the reporter samples.
#[derive(Default)]
struct Shared {
    bytes: AtomicU64,
    stop: AtomicBool,
    links: Mutex<Vec<Box<dyn Fn() -> LinkStats + Send>>>,
}

/// Runs the bench client.
///
/// # Errors
/// Connection failures (exit 3), a server speaking something else (5).
pub fn client(args: &ClientArgs) -> Result<BenchSummary, CliError> {
    if args.msg_size.is_some() && args.net.transport == Transport::Tcp {
        return Err(CliError::usage("--msg needs UDT: TCP has no message mode"));
    }
    let output = args.output;
    let test_id = test_id();
    let shared = Arc::new(Shared::default());
    let cpu0 = cpu_time();
    let start = Instant::now();
    let deadline = start + args.duration;
    let mode = if args.msg_size.is_some() {
        "message"
    } else {
        "stream"
    };
    output.say(format_args!(
        "udt bench: {} connection{} to {} ({mode} mode, {} s)",
        args.parallel,
        if args.parallel == 1 { "" } else { "s" },
        args.target,
        args.duration.as_secs_f64()
    ));
    let (tx, rx) = mpsc::channel::<Outcome>();
    let mut handles = Vec::new();
    if let Some(size) = args.msg_size {
        let size = size.clamp(MSG_HEADER as u64, u64::from(MAX_MSG)) as u32;
        let a = args.clone();
        let s = shared.clone();
        handles.push(thread::spawn(move || {
            let _ = tx.send(run_messages(&a, size, test_id, start, deadline, &s));
        }));
    } else {
        for index in 0..args.parallel {
            let (a, s, tx) = (args.clone(), shared.clone(), tx.clone());
            handles.push(thread::spawn(move || {
                let _ = tx.send(run_stream(&a, index, test_id, deadline, &s));
            }));
        }
        drop(tx);
    }

    let intervals = sample_intervals(&shared, start, deadline, &output);

    let mut server = Vec::new();
    let mut links = Vec::new();
    let mut hist: Option<Histogram<u64>> = None;
    let mut sent_time = Duration::ZERO;
    let mut first_error = None;
    for outcome in rx {
        match outcome {
            Ok((report, link, h, t)) => {
                server.push(report);
                links.push(link);
                sent_time = sent_time.max(t);
                if let Some(h) = h {
                    merge_histogram(&mut hist, h);
                }
            }
            Err(e) => {
                shared.stop.store(true, Ordering::SeqCst);
                first_error.get_or_insert(e);
            }
        }
    }
    for h in handles {
        let _ = h.join();
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let elapsed = start.elapsed();
    let sent_bytes = shared.bytes.load(Ordering::Relaxed);
    let received_bytes: u64 = server.iter().map(|r| r.bytes).sum();
    let received_seconds = server.iter().map(|r| r.seconds).fold(0.0, f64::max);
    let summary = BenchSummary {
        command: "bench",
        transport: args.net.transport,
        mode,
        parallel: args.parallel,
        intervals,
        sent_bytes,
        sent_seconds: sent_time.as_secs_f64(),
        sent_mbps: ui::mbps(sent_bytes, sent_time),
        received_bytes,
        received_seconds,
        received_mbps: if received_seconds > 0.0 {
            received_bytes as f64 * 8.0 / received_seconds / 1e6
        } else {
            0.0
        },
        rtt_ms: mean(links.iter().filter_map(|l| l.rtt_ms)),
        retransmitted: links.iter().map(|l| l.packets_retransmitted).sum(),
        lost: server.iter().map(|r| r.packets_lost).sum(),
        cpu_client_percent: cpu_percent(cpu0, elapsed),
        cpu_server_percent: server.iter().map(|r| r.cpu_percent).fold(0.0, f64::max),
        latency: hist.as_ref().map(Latency::of),
    };
    print_summary(&summary, &output);
    Ok(summary)
}

/// Samples the shared counters once a second until `deadline` (or a
/// failure stops the test), printing each interval as it ends.
fn sample_intervals(
    shared: &Shared,
    start: Instant,
    deadline: Instant,
    output: &Output,
) -> Vec<Interval> {
    let mut intervals = Vec::new();
    let mut last_bytes = 0u64;
    let mut last_retr = 0u64;
    let mut tick = start;
    print_interval_header(output);
    while Instant::now() < deadline && !shared.stop.load(Ordering::SeqCst) {
        let next = (tick + Duration::from_secs(1)).min(deadline);
        sleep_until(next, &shared.stop);
        let now = Instant::now();
        let bytes = shared.bytes.load(Ordering::Relaxed);
        let links: Vec<LinkStats> = shared
            .links
            .lock()
            .map(|l| l.iter().map(|f| f()).collect())
            .unwrap_or_default();
        let rtt = mean(links.iter().filter_map(|l| l.rtt_ms));
        let retr_total: Option<u64> = links.iter().map(|l| l.packets_retransmitted).sum();
        let retr = retr_total.map(|t| t.saturating_sub(last_retr));
        last_retr = retr_total.unwrap_or(0);
        let iv = Interval {
            start: (tick - start).as_secs_f64(),
            end: (now - start).as_secs_f64(),
            bytes: bytes - last_bytes,
            mbps: ui::mbps(bytes - last_bytes, now - tick),
            rtt_ms: rtt,
            retransmitted: retr,
        };
        print_interval(output, &iv);
        intervals.push(iv);
        last_bytes = bytes;
        tick = now;
    }
    intervals
}

/// Adds `h` into the accumulated histogram `acc`.
fn merge_histogram(acc: &mut Option<Histogram<u64>>, h: Histogram<u64>) {
    match acc {
        Some(acc) => {
            let _ = acc.add(&h);
        }
        None => *acc = Some(h),
    }
}

/// One stream-mode connection of the client.
fn run_stream(
    args: &ClientArgs,
    index: u32,
    test_id: u64,
    deadline: Instant,
    shared: &Shared,
) -> Outcome {
    let started = Instant::now();
    let mut conn = Conn::connect(&args.target, &args.net)
        .map_err(|e| CliError::io(&format!("cannot connect to {}", args.target), e))?;
    if let Ok(probe) = conn.try_clone() {
        if let Ok(mut links) = shared.links.lock() {
            links.push(Box::new(move || probe.stats()));
        }
    }
    let header = Header {
        msg: false,
        index,
        parallel: args.parallel,
        duration_ms: duration_ms(args.duration),
        msg_size: 0,
        test_id,
    };
    let broke = |e| CliError::io("the bench connection broke", e);
    conn.write_all(&header.encode()).map_err(broke)?;
    let mut chunk = vec![0u8; 4 + CHUNK];
    chunk[..4].copy_from_slice(&(CHUNK as u32).to_be_bytes());
    for (i, b) in chunk[4..].iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    while Instant::now() < deadline && !shared.stop.load(Ordering::Relaxed) {
        conn.write_all(&chunk).map_err(broke)?;
        shared.bytes.fetch_add(CHUNK as u64, Ordering::Relaxed);
    }
    conn.write_all(&END_OF_CHUNKS).map_err(broke)?;
    let report = ServerReport::read_from(&mut conn)?;
    let sent_time = started.elapsed();
    let link = conn.stats();
    let _ = conn.finish();
    Ok((report, link, None, sent_time))
}

/// The message-mode client: control stream, message sockets, echoes.
fn run_messages(
    args: &ClientArgs,
    size: u32,
    test_id: u64,
    epoch: Instant,
    deadline: Instant,
    shared: &Arc<Shared>,
) -> Outcome {
    let started = Instant::now();
    let mut control = Conn::connect(&args.target, &args.net)
        .map_err(|e| CliError::io(&format!("cannot connect to {}", args.target), e))?;
    let header = Header {
        msg: true,
        index: 0,
        parallel: args.parallel,
        duration_ms: duration_ms(args.duration),
        msg_size: size,
        test_id,
    };
    let broke = |e| CliError::io("the bench control connection broke", e);
    control.write_all(&header.encode()).map_err(broke)?;
    let mut pb = [0u8; 2];
    control.read_exact(&mut pb).map_err(broke)?;
    let port = u16::from_be_bytes(pb);
    let host = control
        .peer_addr()
        .ok_or_else(|| CliError::new(exit::NETWORK, "the control connection has no peer"))?;
    let data_target = SocketAddr::new(host.ip(), port).to_string();

    let mut workers = Vec::new();
    for _ in 0..args.parallel {
        let sock = net::connect_messages(&data_target, &args.net).map_err(|e| {
            CliError::io(
                &format!("cannot connect the message socket to {data_target}"),
                e,
            )
        })?;
        let reader = sock.try_clone().map_err(broke)?;
        if let Ok(probe) = sock.try_clone() {
            if let Ok(mut links) = shared.links.lock() {
                links.push(Box::new(move || net::message_stats(&probe)));
            }
        }
        let (rate, shared_w) = (args.rate, shared.clone());
        let received = Arc::new(AtomicU64::new(0));
        let received_r = received.clone();
        // Echo reader: round-trip times into a histogram (µs, 3 digits).
        let echo = thread::spawn(move || {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok();
            let mut buf = Vec::with_capacity(64);
            while let Ok(Some(n)) = reader.recv_msg_into(&mut buf) {
                if let Some(sent_ns) = msg_sent_ns(&buf[..n]) {
                    let now_ns = epoch.elapsed().as_nanos() as u64;
                    let us = now_ns.saturating_sub(sent_ns) / 1000;
                    if let Some(h) = hist.as_mut() {
                        let _ = h.record(us.max(1));
                    }
                }
                received_r.fetch_add(1, Ordering::SeqCst);
            }
            hist
        });
        workers.push(thread::spawn(
            move || -> Result<(LinkStats, Option<Histogram<u64>>), CliError> {
                let mut msg = vec![0u8; size as usize];
                let mut seq = 0u64;
                let period = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
                let mut next = Instant::now();
                while Instant::now() < deadline && !shared_w.stop.load(Ordering::Relaxed) {
                    if let Some(p) = period {
                        let now = Instant::now();
                        if next > now {
                            thread::sleep(next - now);
                        }
                        next += p;
                    }
                    put_msg_header(&mut msg, seq, epoch.elapsed().as_nanos() as u64);
                    sock.send_msg_with(&msg, MessageOptions::new().unordered())
                        .map_err(|e| CliError::io("the message connection broke", e))?;
                    seq += 1;
                    shared_w.bytes.fetch_add(u64::from(size), Ordering::Relaxed);
                }
                // Wait (bounded) for the last echoes before closing.
                let wait_until = Instant::now() + Duration::from_secs(5);
                while received.load(Ordering::SeqCst) < seq && Instant::now() < wait_until {
                    thread::sleep(Duration::from_millis(5));
                }
                let link = net::message_stats(&sock);
                let _ = sock.close();
                let hist = echo.join().ok().flatten();
                Ok((link, hist))
            },
        ));
    }
    let mut hist: Option<Histogram<u64>> = None;
    let mut links = Vec::new();
    for w in workers {
        let (link, h) = w
            .join()
            .map_err(|_| CliError::new(exit::FAILURE, "a bench thread panicked"))??;
        links.push(link);
        if let Some(h) = h {
            merge_histogram(&mut hist, h);
        }
    }
    let sent_time = started.elapsed();
    let report = ServerReport::read_from(&mut control)?;
    let _ = control.finish();
    let link = LinkStats {
        rtt_ms: mean(links.iter().filter_map(|l| l.rtt_ms)),
        packets_retransmitted: links.iter().map(|l| l.packets_retransmitted).sum(),
        ..LinkStats::default()
    };
    Ok((report, link, hist, sent_time))
}

/// Sleeps until `t`, waking at least every 50 ms to notice `stop`.
fn sleep_until(t: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= t {
            return;
        }
        thread::sleep((t - now).min(Duration::from_millis(50)));
    }
}

/// A test identifier that differs between runs.
fn test_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32)
}
