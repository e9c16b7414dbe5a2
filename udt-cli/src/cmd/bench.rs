//! `udt bench`: an iperf3-like throughput and latency test.
//!
//! Stream mode: each of `--parallel` connections starts with a `Header`,
//! then carries length-prefixed chunks for `--seconds`, then a zero length;
//! the server answers with one JSON line ([`ServerReport`]) and both close.
//!
//! Message mode (`--msg SIZE`): a control stream carries the header; the
//! server binds a message-mode port and answers with its number (u16); the
//! client connects `--parallel` message sockets there and sends messages
//! `[seq u64][send time ns u64][padding]`; the server echoes the first 16
//! bytes of each, and the client records the round trip in a histogram.
//! When the message sockets close, the server sends its report on the
//! control stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use udt_mux::MessageOptions;

use crate::net::{self, Conn, LinkStats, Listener, NetOptions, Transport};
use crate::proto::exit;
use crate::ui::{self, CliError, Output};

const MAGIC: [u8; 8] = *b"UDTBENCH";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 8 + 1 + 1 + 4 + 4 + 4 + 4 + 8;
/// Bytes per chunk the client writes in stream mode.
const CHUNK: usize = 1 << 20;
/// Largest chunk the server accepts.
const MAX_CHUNK: u32 = 16 << 20;
/// Most connections a server handles at once.
const MAX_ACTIVE: usize = 256;
/// Longest report line accepted.
const MAX_REPORT: u64 = 64 * 1024;
/// Bytes of a message header (sequence number, send time).
const MSG_HEADER: usize = 16;

/// The first bytes of every bench connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    msg: bool,
    index: u32,
    parallel: u32,
    duration_ms: u32,
    msg_size: u32,
    test_id: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(&MAGIC);
        b[8] = VERSION;
        b[9] = u8::from(self.msg);
        b[10..14].copy_from_slice(&self.index.to_be_bytes());
        b[14..18].copy_from_slice(&self.parallel.to_be_bytes());
        b[18..22].copy_from_slice(&self.duration_ms.to_be_bytes());
        b[22..26].copy_from_slice(&self.msg_size.to_be_bytes());
        b[26..34].copy_from_slice(&self.test_id.to_be_bytes());
        b
    }

    fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, String> {
        if b[..8] != MAGIC {
            return Err("not a udt bench client".into());
        }
        if b[8] != VERSION {
            return Err(format!(
                "bench protocol version {} (we speak {VERSION})",
                b[8]
            ));
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[26..34]);
        let h = Header {
            msg: b[9] != 0,
            index: u32_at(10),
            parallel: u32_at(14),
            duration_ms: u32_at(18),
            msg_size: u32_at(22),
            test_id: u64::from_be_bytes(id),
        };
        if h.parallel == 0 || h.parallel > 128 || h.index >= h.parallel {
            return Err("bad parallel count".into());
        }
        if h.msg && !(MSG_HEADER as u32..=(1 << 20)).contains(&h.msg_size) {
            return Err("message size out of range".into());
        }
        Ok(h)
    }
}

/// What the server measured, sent back as one JSON line.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerReport {
    /// Payload bytes received.
    pub bytes: u64,
    /// Messages received (message mode).
    pub messages: u64,
    /// Seconds from the first byte to the end.
    pub seconds: f64,
    /// Server process CPU over that time, percent of one core.
    pub cpu_percent: f64,
    /// Data packets the server found missing.
    pub packets_lost: Option<u64>,
    /// Data packets the server received.
    pub packets_received: Option<u64>,
}

/// `udt bench --server` arguments.
#[derive(Clone, Debug)]
pub struct ServerArgs {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Exit after one complete test.
    pub once: bool,
    /// Transport options.
    pub net: NetOptions,
    /// Output mode.
    pub output: Output,
}

/// Runs the bench server until killed (or after one test with `once`).
///
/// # Errors
/// Listen failures.
pub fn server(args: &ServerArgs) -> Result<(), CliError> {
    let listener = Arc::new(
        Listener::bind(args.addr, &args.net).map_err(|e| CliError::io("cannot listen", e))?,
    );
    args.output.status(format_args!(
        "udt bench: listening on {} ({}); run: udt bench HOST:{}",
        listener.local_addr(),
        args.net.transport,
        listener.local_addr().port()
    ));
    let (done_tx, done_rx) = mpsc::channel::<(u64, u32)>();
    let active = Arc::new(AtomicU64::new(0));
    let accept_net = args.net.clone();
    let output = args.output;
    let accept_listener = listener.clone();
    thread::Builder::new()
        .name("bench-accept".into())
        .spawn(move || loop {
            let conn = match accept_listener.accept() {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if active.load(Ordering::SeqCst) >= MAX_ACTIVE as u64 {
                log::warn!("too many bench connections; dropping one");
                continue;
            }
            active.fetch_add(1, Ordering::SeqCst);
            let (net, done, active) = (accept_net.clone(), done_tx.clone(), active.clone());
            let _ = thread::Builder::new()
                .name("bench-conn".into())
                .spawn(move || {
                    let peer = conn.peer_addr();
                    match serve_conn(conn, &net, output) {
                        Ok(Some(h)) => {
                            let _ = done.send((h.test_id, h.parallel));
                        }
                        Ok(None) => {}
                        Err(e) => eprintln!("udt: bench connection from {peer:?}: {e}"),
                    }
                    active.fetch_sub(1, Ordering::SeqCst);
                });
        })
        .map_err(|e| CliError::io("cannot start a thread", e))?;
    let mut finished: Vec<(u64, u32)> = Vec::new();
    for (id, parallel) in done_rx {
        finished.push((id, parallel));
        let count = finished.iter().filter(|(i, _)| *i == id).count() as u32;
        // Message tests report once on their control stream.
        if args.once && (count >= parallel || finished.iter().any(|(i, p)| *i == id && *p == 0)) {
            return Ok(());
        }
    }
    Ok(())
}

/// Serves one accepted connection; returns its header when a test part
/// completed (`parallel` = 0 for a whole message test).
fn serve_conn(
    mut conn: Conn,
    net_opts: &NetOptions,
    output: Output,
) -> Result<Option<Header>, CliError> {
    let mut hb = [0u8; HEADER_LEN];
    conn.set_read_timeout(Some(Duration::from_secs(10)));
    conn.read_exact(&mut hb)
        .map_err(|e| CliError::io("reading the bench header", e))?;
    let header = Header::decode(&hb).map_err(|m| CliError::new(exit::PROTOCOL, m))?;
    let peer = conn.peer_addr();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut report = ServerReport::default();
    if header.msg {
        serve_messages(&mut conn, &header, net_opts, &mut report)?;
    } else {
        conn.set_read_timeout(Some(Duration::from_secs(30)));
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let mut lb = [0u8; 4];
            conn.read_exact(&mut lb)
                .map_err(|e| CliError::io("the bench connection broke", e))?;
            let len = u32::from_be_bytes(lb);
            if len == 0 {
                break;
            }
            if len > MAX_CHUNK {
                return Err(CliError::new(exit::PROTOCOL, "bench chunk too large"));
            }
            let mut left = len as usize;
            while left > 0 {
                let n = left.min(buf.len());
                conn.read_exact(&mut buf[..n])
                    .map_err(|e| CliError::io("the bench connection broke", e))?;
                left -= n;
            }
            report.bytes += u64::from(len);
        }
        let link = conn.stats();
        report.packets_lost = link.packets_lost;
        report.packets_received = link.packets_received;
    }
    let elapsed = start.elapsed();
    report.seconds = elapsed.as_secs_f64();
    report.cpu_percent = cpu_percent(cpu0, elapsed);
    let mut line =
        serde_json::to_vec(&report).map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
    line.push(b'\n');
    conn.write_all(&line)
        .map_err(|e| CliError::io("sending the report", e))?;
    if let Err(e) = conn.finish() {
        log::debug!("bench close: {e}");
    }
    output.say(format_args!(
        "udt bench: {} from {}: {} in {:.2} s = {}{} (server CPU {:.0}%)",
        if header.msg { "messages" } else { "stream" },
        peer.map(|p| p.to_string()).unwrap_or_default(),
        ui::bytes(report.bytes),
        report.seconds,
        ui::bitrate(ui::mbps(report.bytes, elapsed) * 1e6),
        if header.msg {
            format!(", {} messages", report.messages)
        } else {
            String::new()
        },
        report.cpu_percent
    ));
    let mut h = header;
    if header.msg {
        h.parallel = 0;
    }
    Ok(Some(h))
}

/// The message-mode half of the server: a new port, echoes, counts.
fn serve_messages(
    control: &mut Conn,
    header: &Header,
    net_opts: &NetOptions,
    report: &mut ServerReport,
) -> Result<(), CliError> {
    let local_ip = match control {
        Conn::Udt(s) => s.local_addr().ip(),
        Conn::Tcp(_) => return Err(CliError::usage("message mode needs UDT")),
    };
    let (ep, listener) = net::listen_messages(SocketAddr::new(local_ip, 0), net_opts)
        .map_err(|e| CliError::io("cannot listen", e))?;
    control
        .write_all(&ep.local_addr().port().to_be_bytes())
        .map_err(|e| CliError::io("the control connection broke", e))?;
    let mut workers = Vec::new();
    for _ in 0..header.parallel {
        let (sock, _) = listener
            .accept_timeout(Duration::from_secs(10))
            .map_err(|e| CliError::io("the client did not connect its message sockets", e))?;
        workers.push(thread::spawn(move || -> (u64, u64, LinkStats) {
            let mut buf = Vec::with_capacity(64 * 1024);
            let (mut bytes, mut messages) = (0u64, 0u64);
            // Echoes are latency probes: deliver them as soon as complete.
            let unordered = MessageOptions::new().unordered();
            while let Ok(Some(n)) = sock.recv_msg_into(&mut buf) {
                bytes += n as u64;
                messages += 1;
                let echo = &buf[..n.min(MSG_HEADER)];
                if sock.send_msg_with(echo, unordered).is_err() {
                    break;
                }
            }
            let link = net::message_stats(&sock);
            let _ = sock.close();
            (bytes, messages, link)
        }));
    }
    drop(listener);
    let (mut lost, mut received) = (0, 0);
    for w in workers {
        let (b, m, link) = w.join().unwrap_or_default();
        report.bytes += b;
        report.messages += m;
        lost += link.packets_lost.unwrap_or(0);
        received += link.packets_received.unwrap_or(0);
    }
    report.packets_lost = Some(lost);
    report.packets_received = Some(received);
    drop(ep);
    Ok(())
}

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

/// One per-second line.
#[derive(Clone, Debug, Serialize)]
pub struct Interval {
    /// Seconds since the start, beginning of the interval.
    pub start: f64,
    /// End of the interval.
    pub end: f64,
    /// Bytes written in the interval.
    pub bytes: u64,
    /// Throughput of the interval, megabits per second.
    pub mbps: f64,
    /// RTT at the end of the interval (mean over connections), ms.
    pub rtt_ms: Option<f64>,
    /// Retransmissions in the interval.
    pub retransmitted: Option<u64>,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// Round trips measured.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Maximum.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

/// The bench result, as printed with `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchSummary {
    /// `"bench"`.
    pub command: &'static str,
    /// UDT or TCP.
    pub transport: Transport,
    /// `"stream"` or `"message"`.
    pub mode: &'static str,
    /// Connections.
    pub parallel: u32,
    /// Per-second samples.
    pub intervals: Vec<Interval>,
    /// Bytes the client wrote.
    pub sent_bytes: u64,
    /// Seconds the client wrote for (until the last byte was acknowledged).
    pub sent_seconds: f64,
    /// Client throughput, megabits per second.
    pub sent_mbps: f64,
    /// Bytes the server received.
    pub received_bytes: u64,
    /// Seconds the server measured.
    pub received_seconds: f64,
    /// Server throughput, megabits per second.
    pub received_mbps: f64,
    /// Smoothed RTT at the end (mean over connections), ms.
    pub rtt_ms: Option<f64>,
    /// Packets retransmitted by the client.
    pub retransmitted: Option<u64>,
    /// Packets lost: found missing by the server.
    pub lost: Option<u64>,
    /// Client process CPU, percent of one core.
    pub cpu_client_percent: f64,
    /// Server process CPU, percent of one core (the busiest report).
    pub cpu_server_percent: f64,
    /// Message round trips (message mode).
    pub latency: Option<Latency>,
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
        let size = size.clamp(MSG_HEADER as u64, 1 << 20) as u32;
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

    // Per-second reports while the test runs.
    let mut intervals = Vec::new();
    let mut last_bytes = 0u64;
    let mut last_retr = 0u64;
    let mut tick = start;
    if output.is_human() {
        eprintln!("  interval         transfer      bitrate          rtt     retr");
    }
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
        if output.is_human() {
            eprintln!(
                "  {:5.2}-{:5.2} s  {:>12}  {:>14}  {:>9}  {:>6}",
                iv.start,
                iv.end,
                ui::bytes(iv.bytes),
                ui::bitrate(iv.mbps * 1e6),
                rtt.map(|r| format!("{r:.2} ms"))
                    .unwrap_or_else(|| "-".into()),
                retr.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
            );
        }
        intervals.push(iv);
        last_bytes = bytes;
        tick = now;
    }

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
                    match &mut hist {
                        Some(acc) => {
                            let _ = acc.add(&h);
                        }
                        None => hist = Some(h),
                    }
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
        latency: hist.map(|h| Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }),
    };
    print_summary(&summary, &output);
    Ok(summary)
}

fn print_summary(s: &BenchSummary, output: &Output) {
    output.json(s);
    if !output.is_human() {
        return;
    }
    eprintln!(
        "  sender:   {:>12} in {:6.2} s = {}",
        ui::bytes(s.sent_bytes),
        s.sent_seconds,
        ui::bitrate(s.sent_mbps * 1e6)
    );
    eprintln!(
        "  receiver: {:>12} in {:6.2} s = {}",
        ui::bytes(s.received_bytes),
        s.received_seconds,
        ui::bitrate(s.received_mbps * 1e6)
    );
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    eprintln!(
        "  rtt {}, retransmitted {}, lost {}, CPU client {:.0}% server {:.0}%",
        s.rtt_ms
            .map(|r| format!("{r:.3} ms"))
            .unwrap_or_else(|| "-".into()),
        opt(s.retransmitted),
        opt(s.lost),
        s.cpu_client_percent,
        s.cpu_server_percent
    );
    if let Some(l) = &s.latency {
        eprintln!(
            "  latency (round trip, {} messages): p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            l.count, l.p50_us, l.p99_us, l.p999_us, l.max_us
        );
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
    conn.write_all(&0u32.to_be_bytes()).map_err(broke)?;
    let report = read_report(&mut conn)?;
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
                if n >= MSG_HEADER {
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&buf[8..16]);
                    let sent_ns = u64::from_be_bytes(t);
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
                    msg[..8].copy_from_slice(&seq.to_be_bytes());
                    msg[8..16].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_be_bytes());
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
            match &mut hist {
                Some(acc) => {
                    let _ = acc.add(&h);
                }
                None => hist = Some(h),
            }
        }
    }
    let sent_time = started.elapsed();
    let report = read_report(&mut control)?;
    let _ = control.finish();
    let link = LinkStats {
        rtt_ms: mean(links.iter().filter_map(|l| l.rtt_ms)),
        packets_retransmitted: links.iter().map(|l| l.packets_retransmitted).sum(),
        ..LinkStats::default()
    };
    Ok((report, link, hist, sent_time))
}

/// Reads the server's JSON line.
fn read_report(conn: &mut Conn) -> Result<ServerReport, CliError> {
    conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut line = String::new();
    BufReader::new(conn.take(MAX_REPORT))
        .read_line(&mut line)
        .map_err(|e| CliError::io("reading the server's report", e))?;
    serde_json::from_str(line.trim())
        .map_err(|e| CliError::new(exit::PROTOCOL, format!("bad report from the server: {e}")))
}

fn duration_ms(d: Duration) -> u32 {
    d.as_millis().min(u128::from(u32::MAX)) as u32
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

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

/// CPU time (user + system) this process has used.
pub fn cpu_time() -> Duration {
    #[cfg(unix)]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes a `rusage` into the pointer we pass,
        // which points to enough zeroed memory for one.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
        if rc == 0 {
            // SAFETY: initialised by the successful call above (and zeroed
            // before it).
            let u = unsafe { usage.assume_init() };
            let tv = |t: libc::timeval| {
                Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000)
            };
            return tv(u.ru_utime) + tv(u.ru_stime);
        }
    }
    Duration::ZERO
}

/// Percent of one core used since `cpu0` over `wall`.
pub fn cpu_percent(cpu0: Duration, wall: Duration) -> f64 {
    let w = wall.as_secs_f64();
    if w <= 0.0 {
        0.0
    } else {
        cpu_time().saturating_sub(cpu0).as_secs_f64() / w * 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrips_and_rejects_garbage() {
        let h = Header {
            msg: true,
            index: 2,
            parallel: 4,
            duration_ms: 1000,
            msg_size: 1024,
            test_id: 0xdead_beef,
        };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[0] = b'X';
        assert!(Header::decode(&bad).is_err());
        let mut bad = h;
        bad.index = 4;
        assert!(Header::decode(&bad.encode()).is_err());
        let mut bad = h;
        bad.msg_size = 1 << 30;
        assert!(Header::decode(&bad.encode()).is_err());
    }

    #[test]
    fn stream_and_message_bench_on_loopback() {
        let net = NetOptions::default();
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), &net).unwrap();
        let addr = listener.local_addr();
        let quiet = Output {
            quiet: true,
            json: false,
        };
        let server_net = net.clone();
        thread::spawn(move || {
            for _ in 0..3 {
                let conn = listener.accept().unwrap();
                let n = server_net.clone();
                thread::spawn(move || serve_conn(conn, &n, quiet));
            }
        });
        let base = ClientArgs {
            target: addr.to_string(),
            duration: Duration::from_millis(700),
            parallel: 2,
            msg_size: None,
            rate: 0,
            net,
            output: quiet,
        };
        let s = client(&base).unwrap();
        assert!(s.sent_bytes > 0);
        assert_eq!(s.sent_bytes, s.received_bytes);
        assert!(s.rtt_ms.is_some());
        let m = client(&ClientArgs {
            parallel: 1,
            msg_size: Some(1000),
            rate: 2000,
            ..base
        })
        .unwrap();
        let lat = m.latency.unwrap();
        assert!(lat.count > 100, "{lat:?}");
        assert!(lat.p50_us <= lat.p99_us && lat.p99_us <= lat.max_us);
        assert_eq!(m.sent_bytes, m.received_bytes);
    }
}
