//! The bench server (`udt bench --server`): accepts bench connections,
//! counts what arrives (stream mode) or echoes message headers (message
//! mode), and answers each test with a [`ServerReport`].

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use udt_mux::MessageOptions;

use crate::net::{self, Conn, LinkStats, Listener, NetOptions};
use crate::proto::exit;
use crate::ui::{CliError, Output};

use super::cpu::{cpu_percent, cpu_time};
use super::protocol::{
    broke, buffer_share, chunk, chunk_error, is_file_hello, read_chunks, write_patiently, Ack,
    Header, ServerReport, END_OF_CHUNKS, HEADER_LEN, MAX_PARALLEL, MSG_HEADER, STALL_PATIENCE,
};
use super::pump::{self, Pump};
use super::report::{print_server_interval, print_server_result};
use crate::proto::wire;
use crate::signals;

/// Most connections a server handles at once (each has a thread): a
/// whole test of the most connections a client may ask for, twice, so a
/// test that follows one whose connections are still closing is not
/// refused (at 64, any `-P` above 64 was refused part-way every time).
const MAX_ACTIVE: usize = 2 * MAX_PARALLEL as usize;

/// Most message-mode tests at once: each binds an endpoint (a UDP port and
/// its threads).
const MAX_MESSAGE_TESTS: usize = 4;

/// Most message sockets (one thread each) over all message-mode tests:
/// room for two tests of the most sockets a client may ask for.
const MAX_MESSAGE_SOCKETS: usize = 2 * MAX_PARALLEL as usize;

/// Most tests remembered for `--once` while their connections arrive.
const MAX_PENDING_TESTS: usize = 1024;

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

/// What the server has in use, to bound it.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    connections: AtomicUsize,
    message_tests: AtomicUsize,
    message_sockets: AtomicUsize,
}

impl Budget {
    /// Takes `n` of `counter` if that stays within `max`.
    fn take(counter: &AtomicUsize, n: usize, max: usize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                (v + n <= max).then_some(v + n)
            })
            .is_ok()
    }
}

/// Runs the bench server until killed (or after one test with `once`).
///
/// # Errors
/// Listen failures; 130 after Ctrl-C.
pub fn server(args: &ServerArgs) -> Result<(), CliError> {
    let listener =
        Listener::bind(args.addr, &args.net).map_err(|e| CliError::io("cannot listen", e))?;
    args.output.status(format_args!(
        "udt bench: listening on {} ({}{}); run: udt bench HOST:{}{}",
        listener.local_addr(),
        args.net.transport,
        if args.net.security.is_secure() {
            ", secure mode"
        } else {
            ""
        },
        listener.local_addr().port(),
        if args.net.security.is_secure() {
            " with the same --code or --key"
        } else {
            ""
        }
    ));
    let (done_tx, done_rx) = mpsc::channel::<(u64, u32)>();
    let budget = Arc::new(Budget::default());
    // Moves the chunks of the UDT streams of tests of many connections.
    let pump = Arc::new(Pump::default());
    // --once: parts seen per test until it is complete; bounded.
    let mut pending: HashMap<u64, u32> = HashMap::new();
    loop {
        if signals::interrupted() {
            return Err(CliError::interrupted("interrupted"));
        }
        while let Ok((id, parallel)) = done_rx.try_recv() {
            if !args.once {
                continue;
            }
            // Message tests report once, on their control stream.
            let seen = pending.entry(id).or_insert(0);
            *seen += 1;
            if parallel == 0 || *seen >= parallel {
                return Ok(());
            }
            if pending.len() > MAX_PENDING_TESTS {
                pending.clear();
            }
        }
        let conn = match listener.accept_timeout(Duration::from_millis(200)) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("accept failed: {e}");
                continue;
            }
        };
        if !Budget::take(&budget.connections, 1, MAX_ACTIVE) {
            log::warn!("too many bench connections; refusing one");
            refuse(conn, "busy: too many bench connections");
            continue;
        }
        let (net, done, conn_budget) = (args.net.clone(), done_tx.clone(), budget.clone());
        let pump = pump.clone();
        let output = args.output;
        let spawned = thread::Builder::new()
            .name("bench-conn".into())
            .spawn(move || {
                let budget = conn_budget;
                let peer = conn.peer_addr();
                match serve_conn(conn, &net, output, &budget, &pump) {
                    Ok(Some(h)) => {
                        let _ = done.send((h.test_id, h.parallel));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let who = peer.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
                        eprintln!("udt: bench connection from {who}: {e}");
                    }
                }
                budget.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a thread: {e}");
            budget.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Answers a header we will not serve, best effort.
fn refuse(mut conn: Conn, why: &str) {
    conn.set_write_timeout(Some(Duration::from_secs(1)));
    let ack = Ack {
        error: Some(why.to_owned()),
    };
    let _ = conn.write_all(&ack.to_line());
}

/// Serves one accepted connection; returns its header when a test part
/// completed (`parallel` = 0 for a whole message test).
///
/// # Errors
/// A broken connection, or a client that breaks the protocol.
pub(super) fn serve_conn(
    mut conn: Conn,
    net_opts: &NetOptions,
    output: Output,
    budget: &Budget,
    pump: &Pump,
) -> Result<Option<Header>, CliError> {
    let mut hb = [0u8; HEADER_LEN];
    conn.set_read_timeout(Some(Duration::from_secs(10)));
    conn.set_write_timeout(Some(Duration::from_secs(10)));
    conn.read_exact(&mut hb)
        .map_err(|e| CliError::io("reading the bench header", e))?;
    let header = match Header::decode(&hb) {
        Ok(h) => h,
        Err(m) => {
            if is_file_hello(&hb) {
                // `udt send` reads file-protocol frames: tell it there.
                let _ = wire::write_frame(
                    &mut conn,
                    &wire::Frame::Error {
                        class: exit::PROTOCOL,
                        message: "this port is a udt bench server, not a udt recv",
                    },
                );
                let _ = conn.finish();
            } else {
                refuse(conn, &m);
            }
            return Err(CliError::new(exit::PROTOCOL, m));
        }
    };
    let mut message_sockets = 0;
    if header.msg {
        if !Budget::take(&budget.message_tests, 1, MAX_MESSAGE_TESTS) {
            refuse(conn, "busy: too many message tests at once");
            return Err(CliError::new(exit::NETWORK, "busy: refused a message test"));
        }
        message_sockets = header.parallel as usize;
        if !Budget::take(
            &budget.message_sockets,
            message_sockets,
            MAX_MESSAGE_SOCKETS,
        ) {
            budget.message_tests.fetch_sub(1, Ordering::SeqCst);
            refuse(conn, "busy: too many message sockets at once");
            return Err(CliError::new(exit::NETWORK, "busy: refused a message test"));
        }
    }
    let result = serve_test(&mut conn, &header, net_opts, output, pump);
    if header.msg {
        budget.message_tests.fetch_sub(1, Ordering::SeqCst);
        budget
            .message_sockets
            .fetch_sub(message_sockets, Ordering::SeqCst);
    }
    result?;
    if let Err(e) = conn.finish() {
        log::debug!("bench close: {e}");
    }
    let mut h = header;
    if header.msg {
        h.parallel = 0;
    }
    Ok(Some(h))
}

/// Runs one accepted test and sends the report.
fn serve_test(
    conn: &mut Conn,
    header: &Header,
    net_opts: &NetOptions,
    output: Output,
    pump: &Pump,
) -> Result<(), CliError> {
    conn.write_all(&Ack::default().to_line())
        .map_err(|e| CliError::io("answering the bench header", e))?;
    let peer = conn.peer_addr();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut report = ServerReport::default();
    let pump = pump::for_test_of(header.parallel).then_some(pump);
    if header.msg {
        serve_messages(conn, header, net_opts, &mut report)?;
    } else if header.reverse {
        // This side sends: the test's connections share a bounded buffer,
        // as a client's do, unless this server was given its own.
        if net_opts.buffer_packets.is_none() {
            if let Some(packets) = buffer_share(header.parallel) {
                conn.set_send_buffer(packets)
                    .map_err(|e| CliError::io("sizing the send buffer", e))?;
            }
        }
        send_chunks(conn, header, &mut report, output, pump)?;
        let link = conn.stats();
        report.rtt_ms = link.rtt_ms;
        report.packets_retransmitted = link.packets_retransmitted;
        report.timeouts = link.timeouts;
    } else {
        receive_chunks(conn, &mut report, output, pump)?;
        let link = conn.stats();
        report.packets_lost = link.packets_lost;
        report.packets_received = link.packets_received;
    }
    let elapsed = start.elapsed();
    report.seconds = elapsed.as_secs_f64();
    report.cpu_percent = cpu_percent(cpu0, elapsed);
    conn.set_write_timeout(None);
    conn.write_all(&report.to_line()?)
        .map_err(|e| CliError::io("sending the report", e))?;
    print_server_result(output, header, peer, &report, elapsed);
    Ok(())
}

/// The stream-mode half of the server: length-prefixed chunks until a
/// zero length, counted into `report`, with an interval line every second
/// (human output). A UDT stream's chunks go through `pump` if given.
fn receive_chunks(
    conn: &mut Conn,
    report: &mut ServerReport,
    output: Output,
    pump: Option<&Pump>,
) -> Result<(), CliError> {
    conn.set_read_timeout(Some(STALL_PATIENCE));
    let mut interval = ServerIntervals::new(conn, output);
    let (Some(stream), Some(pump)) = (conn.udt_stream(), pump) else {
        return read_chunks(
            conn,
            |n| {
                report.bytes += n;
                let total = report.bytes;
                interval.tick(|| total);
            },
            || true,
        );
    };
    let bytes = Arc::new(AtomicU64::new(0));
    let counted = bytes.clone();
    let moved = pump.receive(
        stream,
        STALL_PATIENCE,
        move |n| {
            let total = counted.fetch_add(n, Ordering::Relaxed) + n;
            interval.tick(|| total);
        },
        || !signals::interrupted(),
    );
    report.bytes = bytes.load(Ordering::Relaxed);
    moved.map_err(chunk_error)
}

/// Reverse mode (`-R`): sends chunks for the test's duration, with an
/// interval line every second, then the zero length. A UDT stream's chunks
/// go through `pump` if given.
fn send_chunks(
    conn: &mut Conn,
    header: &Header,
    report: &mut ServerReport,
    output: Output,
    pump: Option<&Pump>,
) -> Result<(), CliError> {
    let deadline = Instant::now() + Duration::from_millis(u64::from(header.duration_ms));
    // One copy for all of a server's reverse streams (a thousand copies
    // were 256 MB of fresh memory).
    static DATA: OnceLock<Vec<u8>> = OnceLock::new();
    let data = DATA.get_or_init(|| chunk(REVERSE_CHUNK));
    let mut interval = ServerIntervals::new(conn, output);
    if let (Some(stream), Some(pump)) = (conn.udt_stream(), pump) {
        let bytes = Arc::new(AtomicU64::new(0));
        let (counted, held) = (bytes.clone(), conn.try_clone().map_err(broke)?);
        let moved = pump.send(
            stream,
            data,
            deadline,
            STALL_PATIENCE,
            move |n| {
                let written = counted.fetch_add(n, Ordering::Relaxed) + n;
                // Delivered, not merely queued: the send buffer holds
                // megabytes.
                interval.tick(|| written.saturating_sub(held.unacknowledged_bytes()));
            },
            || !signals::interrupted(),
        );
        report.bytes = bytes.load(Ordering::Relaxed);
        return moved.map_err(chunk_error);
    }
    while Instant::now() < deadline {
        if signals::interrupted() {
            return Err(CliError::interrupted("interrupted"));
        }
        write_patiently(conn, data, STALL_PATIENCE, |_, _| {}).map_err(broke)?;
        report.bytes += u64::from(REVERSE_CHUNK);
        // Delivered, not merely queued, as above.
        let written = report.bytes;
        interval.tick(|| written.saturating_sub(conn.unacknowledged_bytes()));
    }
    write_patiently(conn, &END_OF_CHUNKS, STALL_PATIENCE, |_, _| {}).map_err(broke)
}

/// Bytes per chunk the server writes in reverse mode: small enough for
/// the Ctrl-C check and the interval lines to come often.
const REVERSE_CHUNK: u32 = 256 * 1024;

/// The server's interval lines for one stream: one per second of bytes
/// moved, either way (sent bytes once the client acknowledged them).
struct ServerIntervals {
    peer: String,
    output: Output,
    start: Instant,
    tick: Instant,
    at_tick: u64,
}

impl ServerIntervals {
    fn new(conn: &Conn, output: Output) -> ServerIntervals {
        let start = Instant::now();
        ServerIntervals {
            peer: conn
                .peer_addr()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "?".into()),
            output,
            start,
            tick: start,
            at_tick: 0,
        }
    }

    /// Prints a line when a second passed, of the bytes moved so far
    /// (`total`, asked only then) less those of earlier lines.
    fn tick(&mut self, total: impl FnOnce() -> u64) {
        let now = Instant::now();
        if now - self.tick >= Duration::from_secs(1) {
            // Never below an earlier line's count: delivered bytes are
            // read from two counters at slightly different moments.
            let total = total().max(self.at_tick);
            print_server_interval(
                self.output,
                &self.peer,
                self.start,
                self.tick,
                now,
                total - self.at_tick,
            );
            (self.tick, self.at_tick) = (now, total);
        }
    }
}

/// The message-mode half of the server: a new port, echoes, counts.
fn serve_messages(
    control: &mut Conn,
    header: &Header,
    net_opts: &NetOptions,
    report: &mut ServerReport,
) -> Result<(), CliError> {
    let local_ip = match control {
        // A mapped IPv4 address (dual-stack listener) binds as IPv4.
        Conn::Udt { stream, .. } => stream.local_addr().ip().to_canonical(),
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
