//! The bench client (`udt bench HOST:PORT`): runs one test against a bench
//! server, samples it every second, and gathers the server's reports into
//! a [`BenchSummary`].

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use udt_mux::MessageOptions;

use crate::net::{self, Conn, Connector, LinkStats, NetOptions, Transport};
use crate::proto::exit;
use crate::signals;
use crate::ui::{self, CliError, Output};

use super::cpu::{cpu_percent, cpu_time};
use super::protocol::{
    broke, buffer_share, chunk, chunk_error, chunk_payload, duration_ms, msg_sent_ns,
    put_msg_header, read_chunks, write_patiently, Ack, Header, ServerReport, END_OF_CHUNKS,
    MAX_MSG, MSG_HEADER, STALL_PATIENCE,
};
use super::pump::{self, Pump};
use super::report::{
    mean, print_interval, print_interval_header, print_summary, BenchSummary, Interval, Latency,
    StreamResult,
};

/// Bytes per chunk the client writes in stream mode.
const CHUNK: usize = 1 << 20;

/// How long the server has to answer a header.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Time between interval lines.
    pub interval: Duration,
    /// Reverse mode (`-R`): the server sends, this side receives.
    pub reverse: bool,
    /// Transport options.
    pub net: NetOptions,
    /// Output mode.
    pub output: Output,
}

/// What one client connection ends with: the server's report, the link
/// counters, the latency histogram (message mode) and the sending time.
type Outcome = Result<(ServerReport, LinkStats, Option<Histogram<u64>>, Duration), CliError>;

/// Shared per-connection counters the reporter samples.
struct Shared {
    /// Bytes written (stream mode) or read (reverse), per stream.
    streams: Vec<AtomicU64>,
    stop: AtomicBool,
    /// One probe per connection, for the link counters.
    links: Mutex<Vec<Probe>>,
    /// Every connection of the test goes through one local endpoint (one
    /// port), as a multiplexed client would send.
    connector: Connector,
    /// Moves the chunks of the test's UDT streams when it has many
    /// ([`pump::for_test_of`]).
    pump: Pump,
}

/// What the reporter asks of one connection once per interval.
struct Probe {
    /// The stream whose bytes [`Shared::streams`] counts.
    index: usize,
    /// Its link counters, and the bytes written to it that its peer has
    /// not acknowledged yet (`None`: count every written byte).
    sample: Box<dyn Fn() -> (LinkStats, Option<u64>) + Send>,
}

impl Shared {
    fn new(streams: u32, net: &NetOptions) -> Shared {
        Shared {
            connector: Connector::new(net),
            streams: (0..streams).map(|_| AtomicU64::new(0)).collect(),
            stop: AtomicBool::new(false),
            links: Mutex::new(Vec::new()),
            pump: Pump::default(),
        }
    }

    /// The chunk every stream writes, made once: a copy per stream was 1 GB
    /// of fresh memory for `-P 1024`.
    fn chunk() -> &'static [u8] {
        static CHUNK_DATA: OnceLock<Vec<u8>> = OnceLock::new();
        CHUNK_DATA.get_or_init(|| chunk(CHUNK as u32))
    }

    /// True when the test's UDT streams move their chunks through the pump.
    fn pumped(&self) -> bool {
        pump::for_test_of(self.streams.len() as u32)
    }

    /// What the pump calls for stream `index`: its byte count, and whether
    /// the test goes on.
    fn pump_calls(
        self: &Arc<Self>,
        index: usize,
    ) -> (
        impl FnMut(u64) + Send + 'static,
        impl Fn() -> bool + Send + 'static,
    ) {
        let (counts, checks) = (self.clone(), self.clone());
        (move |n| counts.add(index, n), move || checks.running())
    }

    /// Stops the test at once when `outcome` is a failure: the interval
    /// lines end and the other streams stop (a test whose server died ran
    /// on to its full `-t` after every connection had timed out).
    fn failed_if(&self, outcome: &Outcome) {
        if outcome.is_err() {
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    /// False once a failure elsewhere stopped the test.
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    fn add(&self, stream: usize, n: u64) {
        if let Some(c) = self.streams.get(stream) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn per_stream(&self) -> Vec<u64> {
        self.streams
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// The network options of a test: `--buffer` if given, else buffers sized
/// for the test's connections ([`buffer_share`]).
fn test_net(args: &ClientArgs) -> NetOptions {
    let mut net = args.net.clone();
    if net.buffer_packets.is_none() {
        net.buffer_packets = buffer_share(args.parallel);
    }
    net
}

/// Runs the bench client.
///
/// # Errors
/// Connection failures (exit 3), a server speaking something else (5).
pub fn client(args: &ClientArgs) -> Result<BenchSummary, CliError> {
    if args.msg_size.is_some() && args.net.transport == Transport::Tcp {
        return Err(CliError::usage("--msg needs UDT: TCP has no message mode"));
    }
    if args.reverse && args.msg_size.is_some() {
        return Err(CliError::usage(
            "-R (reverse) is for stream mode: --msg already measures both directions",
        ));
    }
    if args.reverse && args.net.max_rate.is_some() {
        return Err(CliError::usage(
            "with -R the server sends: give -b to `udt bench -s` instead",
        ));
    }
    let output = args.output;
    let test_id = test_id();
    let shared = Arc::new(Shared::new(args.parallel, &test_net(args)));
    let cpu0 = cpu_time();
    let mode = if args.msg_size.is_some() {
        "message"
    } else {
        "stream"
    };
    output.say(format_args!(
        "udt bench: {} connection{} to {} ({mode} mode{}, {} s)",
        args.parallel,
        if args.parallel == 1 { "" } else { "s" },
        args.target,
        if args.reverse {
            ", reverse: the server sends"
        } else {
            ""
        },
        args.duration.as_secs_f64()
    ));
    // Connect every stream first and hear each server answer: a missing
    // or wrong server fails here, before any interval line.
    // Each outcome comes with its stream's index.
    let (tx, rx) = mpsc::channel::<(usize, Outcome)>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), CliError>>();
    let mut handles = Vec::new();
    let mut go = Vec::new();
    if let Some(size) = args.msg_size {
        let size = size.clamp(MSG_HEADER as u64, u64::from(MAX_MSG)) as u32;
        let (a, s, ready) = (args.clone(), shared.clone(), ready_tx.clone());
        let (go_tx, go_rx) = mpsc::channel::<(Instant, Instant)>();
        go.push(go_tx);
        handles.push(thread::spawn(move || {
            let setup = match open_messages(&a, size, test_id, &s) {
                Ok(setup) => {
                    let _ = ready.send(Ok(()));
                    setup
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            if let Ok((epoch, deadline)) = go_rx.recv() {
                let outcome = run_messages(setup, &a, size, epoch, deadline, &s);
                s.failed_if(&outcome);
                let _ = tx.send((0, outcome));
            }
        }));
    } else {
        for index in 0..args.parallel {
            let (a, s, tx, ready) = (args.clone(), shared.clone(), tx.clone(), ready_tx.clone());
            let (go_tx, go_rx) = mpsc::channel::<(Instant, Instant)>();
            go.push(go_tx);
            handles.push(thread::spawn(move || {
                let conn = match open_stream(&a, index, test_id, &s) {
                    Ok(c) => {
                        let _ = ready.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                if let Ok((_, deadline)) = go_rx.recv() {
                    let outcome = if a.reverse {
                        receive_stream(conn, index as usize, &s)
                    } else {
                        run_stream(conn, index as usize, deadline, &s)
                    };
                    s.failed_if(&outcome);
                    let _ = tx.send((index as usize, outcome));
                }
            }));
        }
        drop(tx);
    }
    drop(ready_tx);
    let mut ready = 0;
    while ready < go.len() {
        match ready_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(())) => ready += 1,
            Ok(Err(e)) => {
                drop(go);
                return Err(e);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if signals::interrupted() => {
                return Err(CliError::interrupted("interrupted while connecting"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(CliError::new(exit::FAILURE, "a bench thread stopped"));
            }
        }
    }
    let start = Instant::now();
    let deadline = start + args.duration;
    for g in &go {
        let _ = g.send((start, deadline));
    }
    drop(go);

    let intervals = sample_intervals(&shared, start, deadline, args.interval, &output);

    let mut ended = Vec::new();
    let mut hist: Option<Histogram<u64>> = None;
    let mut first_error = None;
    for (index, outcome) in rx {
        match outcome {
            Ok((report, link, h, time)) => {
                if let Some(h) = h {
                    merge_histogram(&mut hist, h);
                }
                ended.push(Ended {
                    index,
                    report,
                    link,
                    time,
                });
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
    if signals::interrupted() {
        return Err(CliError::interrupted("interrupted"));
    }
    let elapsed = start.elapsed();
    let server = || ended.iter().map(|e| &e.report);
    let links = || ended.iter().map(|e| &e.link);
    let sent_time = ended.iter().map(|e| e.time).max().unwrap_or_default();
    let ours: u64 = shared.per_stream().iter().sum();
    let theirs: u64 = server().map(|r| r.bytes).sum();
    let server_seconds = server().map(|r| r.seconds).fold(0.0, f64::max);
    let our_seconds = sent_time.as_secs_f64();
    // Who sent and who received: the client, unless -R.
    let ((sent_bytes, sent_seconds), (received_bytes, received_seconds)) = if args.reverse {
        ((theirs, server_seconds), (ours, our_seconds))
    } else {
        ((ours, our_seconds), (theirs, server_seconds))
    };
    let rate = |bytes: u64, seconds: f64| {
        ui::round3(if seconds > 0.0 {
            bytes as f64 * 8.0 / seconds / 1e6
        } else {
            0.0
        })
    };
    let (rtt_ms, retransmitted, lost) = if args.reverse {
        (
            mean(server().filter_map(|r| r.rtt_ms)),
            server().map(|r| r.packets_retransmitted).sum(),
            links().map(|l| l.packets_lost).sum(),
        )
    } else {
        (
            mean(links().filter_map(|l| l.rtt_ms)),
            links().map(|l| l.packets_retransmitted).sum(),
            server().map(|r| r.packets_lost).sum(),
        )
    };
    let streams = if args.parallel > 1 && args.msg_size.is_none() {
        stream_results(&shared, &ended, args.reverse)
    } else {
        Vec::new()
    };
    let summary = BenchSummary {
        command: "bench",
        ok: true,
        transport: args.net.transport,
        encrypted: args.net.security.is_secure(),
        mode,
        reverse: args.reverse,
        parallel: args.parallel,
        intervals,
        sent_bytes,
        sent_seconds: ui::round3(sent_seconds),
        sent_mbps: rate(sent_bytes, sent_seconds),
        received_bytes,
        received_seconds: ui::round3(received_seconds),
        received_mbps: rate(received_bytes, received_seconds),
        rtt_ms: rtt_ms.map(ui::round3),
        retransmitted,
        lost,
        cpu_client_percent: ui::round3(cpu_percent(cpu0, elapsed)),
        cpu_server_percent: ui::round3(server().map(|r| r.cpu_percent).fold(0.0, f64::max)),
        latency: hist.as_ref().map(Latency::of),
        streams,
    };
    print_summary(&summary, &output);
    Ok(summary)
}

/// A stream that ended well: its index, the server's report, its link
/// counters and its sending (or, with `-R`, receiving) time.
struct Ended {
    index: usize,
    report: ServerReport,
    link: LinkStats,
    time: Duration,
}

/// Each stream's result, in stream order: the receiving side's bytes and
/// seconds, the sending side's counters.
fn stream_results(shared: &Shared, ended: &[Ended], reverse: bool) -> Vec<StreamResult> {
    let ours = shared.per_stream();
    let mut streams: Vec<StreamResult> = ended
        .iter()
        .map(
            |Ended {
                 index,
                 report,
                 link,
                 time,
             }| {
                let id = *index as u32 + 1;
                if reverse {
                    StreamResult {
                        id,
                        bytes: ours.get(*index).copied().unwrap_or(0),
                        seconds: ui::round3(time.as_secs_f64()),
                        rtt_ms: report.rtt_ms.map(ui::round3),
                        retransmitted: report.packets_retransmitted,
                        timeouts: report.timeouts,
                    }
                } else {
                    StreamResult {
                        id,
                        bytes: report.bytes,
                        seconds: ui::round3(report.seconds),
                        rtt_ms: link.rtt_ms.map(ui::round3),
                        retransmitted: link.packets_retransmitted,
                        timeouts: link.timeouts,
                    }
                }
            },
        )
        .collect();
    streams.sort_by_key(|r| r.id);
    streams
}

/// Samples the shared counters once a second until `deadline` (or a
/// failure stops the test), printing each interval as it ends: the bytes
/// delivered in it (written and acknowledged, or read with `-R`).
fn sample_intervals(
    shared: &Shared,
    start: Instant,
    deadline: Instant,
    every: Duration,
    output: &Output,
) -> Vec<Interval> {
    let mut intervals = Vec::new();
    let mut last = vec![0u64; shared.streams.len()];
    let mut last_retr = 0u64;
    let mut tick = start;
    print_interval_header(output);
    while Instant::now() < deadline && !shared.stop.load(Ordering::SeqCst) {
        let next = (tick + every).min(deadline);
        sleep_until(next, &shared.stop);
        let now = Instant::now();
        let samples: Vec<(usize, LinkStats, Option<u64>)> = shared
            .links
            .lock()
            .map(|l| {
                l.iter()
                    .map(|p| {
                        let (stats, queued) = (p.sample)();
                        (p.index, stats, queued)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let streams = delivered(shared.per_stream(), &samples, &last);
        let moved: Vec<u64> = streams
            .iter()
            .zip(&last)
            .map(|(now, before)| now - before)
            .collect();
        let bytes: u64 = moved.iter().sum();
        let links: Vec<LinkStats> = samples.into_iter().map(|(_, l, _)| l).collect();
        let rtt = mean(links.iter().filter_map(|l| l.rtt_ms));
        let retr_total: Option<u64> = links.iter().map(|l| l.packets_retransmitted).sum();
        let retr = retr_total.map(|t| t.saturating_sub(last_retr));
        last_retr = retr_total.unwrap_or(0);
        let iv = Interval {
            start: ui::round3((tick - start).as_secs_f64()),
            end: ui::round3((now - start).as_secs_f64()),
            bytes,
            mbps: ui::round3(ui::mbps(bytes, now - tick)),
            rtt_ms: rtt.map(ui::round3),
            retransmitted: retr,
            streams: if moved.len() > 1 { moved } else { Vec::new() },
        };
        print_interval(output, &iv, now - tick);
        intervals.push(iv);
        last = streams;
        tick = now;
    }
    intervals
}

/// Bytes delivered per stream: `written` minus what each stream's peer has
/// not acknowledged yet (`samples`), never less than an earlier interval
/// counted (`last`: the two counters are read moments apart). Counting
/// writes alone put a whole send buffer (12 MB per UDT connection) into
/// the first interval and left the last ones short.
fn delivered(
    mut written: Vec<u64>,
    samples: &[(usize, LinkStats, Option<u64>)],
    last: &[u64],
) -> Vec<u64> {
    for (index, _, queued) in samples {
        if let (Some(w), Some(q)) = (written.get_mut(*index), queued) {
            *w = w.saturating_sub(*q);
        }
    }
    for (w, before) in written.iter_mut().zip(last) {
        *w = (*w).max(*before);
    }
    written
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

/// Connects stream `index` of the test and sends its header; returns once
/// the server accepted it.
fn open_stream(
    args: &ClientArgs,
    index: u32,
    test_id: u64,
    shared: &Shared,
) -> Result<Conn, CliError> {
    let mut conn = shared
        .connector
        .connect(&args.target)
        .map_err(|e| CliError::io(&format!("cannot connect to {}", args.target), e))?;
    let reverse = args.reverse;
    if let Ok(probe) = conn.try_clone() {
        if let Ok(mut links) = shared.links.lock() {
            links.push(Probe {
                index: index as usize,
                sample: Box::new(move || {
                    // Only a sender has bytes in flight to subtract.
                    let queued = (!reverse).then(|| probe.unacknowledged_bytes());
                    (probe.stats(), queued)
                }),
            });
        }
    }
    let header = Header {
        msg: false,
        reverse: args.reverse,
        index,
        parallel: args.parallel,
        duration_ms: duration_ms(args.duration),
        msg_size: 0,
        test_id,
    };
    conn.write_all(&header.encode()).map_err(broke)?;
    conn.set_read_timeout(Some(ANSWER_TIMEOUT));
    Ack::read_from(&mut conn)?;
    Ok(conn)
}

/// Sends chunks on stream `index` until `deadline`, then reads the
/// server's report.
fn run_stream(mut conn: Conn, index: usize, deadline: Instant, shared: &Arc<Shared>) -> Outcome {
    let started = Instant::now();
    let chunk = Shared::chunk();
    if let Some(stream) = conn.udt_stream().filter(|_| shared.pumped()) {
        let (counted, keep_going) = shared.pump_calls(index);
        shared
            .pump
            .send(stream, chunk, deadline, STALL_PATIENCE, counted, keep_going)
            .map_err(chunk_error)?;
    } else {
        while Instant::now() < deadline && shared.running() {
            // Counted as the send buffer takes it, not per chunk: with the
            // small buffers of a thousand connections a chunk waits seconds
            // for room, and its first bytes were delivered long before it
            // was all queued.
            write_patiently(&mut conn, chunk, STALL_PATIENCE, |at, n| {
                shared.add(index, chunk_payload(at, n));
            })
            .map_err(broke)?;
        }
        write_patiently(&mut conn, &END_OF_CHUNKS, STALL_PATIENCE, |_, _| {}).map_err(broke)?;
    }
    let report = ServerReport::read_from(&mut conn)?;
    let sent_time = started.elapsed();
    let link = conn.stats();
    let _ = conn.finish();
    Ok((report, link, None, sent_time))
}

/// Reverse mode: counts what the server sends on stream `index` until its
/// zero length, then reads its report. The receiving time (first byte
/// expected to the end) stands in for the sending time.
fn receive_stream(mut conn: Conn, index: usize, shared: &Arc<Shared>) -> Outcome {
    let started = Instant::now();
    conn.set_read_timeout(Some(STALL_PATIENCE));
    if let Some(stream) = conn.udt_stream().filter(|_| shared.pumped()) {
        let (counted, keep_going) = shared.pump_calls(index);
        shared
            .pump
            .receive(stream, STALL_PATIENCE, counted, keep_going)
            .map_err(chunk_error)?;
    } else {
        read_chunks(&mut conn, |n| shared.add(index, n), || shared.running())?;
    }
    let received_time = started.elapsed();
    let report = ServerReport::read_from(&mut conn)?;
    let link = conn.stats();
    let _ = conn.finish();
    Ok((report, link, None, received_time))
}

/// A message test's connections, made before the clock starts.
struct MessageSetup {
    control: Conn,
    sockets: Vec<udt_mux::UdtMessageSocket>,
}

/// Connects the control stream, sends the header, and connects the
/// message sockets to the port the server opened.
fn open_messages(
    args: &ClientArgs,
    size: u32,
    test_id: u64,
    shared: &Arc<Shared>,
) -> Result<MessageSetup, CliError> {
    let mut control = shared
        .connector
        .connect(&args.target)
        .map_err(|e| CliError::io(&format!("cannot connect to {}", args.target), e))?;
    let header = Header {
        msg: true,
        reverse: false,
        index: 0,
        parallel: args.parallel,
        duration_ms: duration_ms(args.duration),
        msg_size: size,
        test_id,
    };
    let broke = |e| CliError::io("the bench control connection broke", e);
    control.write_all(&header.encode()).map_err(broke)?;
    control.set_read_timeout(Some(ANSWER_TIMEOUT));
    Ack::read_from(&mut control)?;
    let mut pb = [0u8; 2];
    control.read_exact(&mut pb).map_err(broke)?;
    let port = u16::from_be_bytes(pb);
    let host = control
        .peer_addr()
        .ok_or_else(|| CliError::new(exit::NETWORK, "the control connection has no peer"))?;
    let data_target = SocketAddr::new(host.ip(), port).to_string();
    let mut sockets = Vec::new();
    for i in 0..args.parallel as usize {
        let sock = shared
            .connector
            .connect_messages(&data_target)
            .map_err(|e| {
                CliError::io(
                    &format!("cannot connect the message socket to {data_target}"),
                    e,
                )
            })?;
        if let Ok(probe) = sock.try_clone() {
            if let Ok(mut links) = shared.links.lock() {
                links.push(Probe {
                    index: i,
                    sample: Box::new(move || (net::message_stats(&probe), None)),
                });
            }
        }
        sockets.push(sock);
    }
    Ok(MessageSetup { control, sockets })
}

/// The message-mode test: messages out, echoes back, until `deadline`.
fn run_messages(
    setup: MessageSetup,
    args: &ClientArgs,
    size: u32,
    epoch: Instant,
    deadline: Instant,
    shared: &Arc<Shared>,
) -> Outcome {
    let started = Instant::now();
    let MessageSetup {
        mut control,
        sockets,
    } = setup;
    let broke = |e| CliError::io("the bench control connection broke", e);
    let mut workers = Vec::new();
    for (stream, sock) in sockets.into_iter().enumerate() {
        let reader = sock.try_clone().map_err(broke)?;
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
                    shared_w.add(stream, u64::from(size));
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
    control.set_read_timeout(None);
    let report = ServerReport::read_from(&mut control)?;
    let _ = control.finish();
    let link = LinkStats {
        rtt_ms: mean(links.iter().filter_map(|l| l.rtt_ms)),
        packets_retransmitted: links.iter().map(|l| l.packets_retransmitted).sum(),
        ..LinkStats::default()
    };
    Ok((report, link, hist, sent_time))
}

/// Sleeps until `t`, waking at least every 50 ms to notice `stop` (set
/// here on Ctrl-C).
fn sleep_until(t: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        if signals::interrupted() {
            stop.store(true, Ordering::SeqCst);
            return;
        }
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
