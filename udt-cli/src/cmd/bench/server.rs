//! The bench server (`udt bench --server`): accepts bench connections,
//! counts what arrives (stream mode) or echoes message headers (message
//! mode), and answers each test with a [`ServerReport`].

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use udt_mux::MessageOptions;

use crate::net::{self, Conn, LinkStats, Listener, NetOptions};
use crate::proto::exit;
use crate::ui::{CliError, Output};

use super::cpu::{cpu_percent, cpu_time};
use super::protocol::{Header, ServerReport, HEADER_LEN, MAX_CHUNK, MSG_HEADER};
use super::report::print_server_result;

/// Most connections a server handles at once.
const MAX_ACTIVE: usize = 256;

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
///
/// # Errors
/// A broken connection, or a client that breaks the protocol.
pub(super) fn serve_conn(
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
        receive_chunks(&mut conn, &mut report)?;
        let link = conn.stats();
        report.packets_lost = link.packets_lost;
        report.packets_received = link.packets_received;
    }
    let elapsed = start.elapsed();
    report.seconds = elapsed.as_secs_f64();
    report.cpu_percent = cpu_percent(cpu0, elapsed);
    conn.write_all(&report.to_line()?)
        .map_err(|e| CliError::io("sending the report", e))?;
    if let Err(e) = conn.finish() {
        log::debug!("bench close: {e}");
    }
    print_server_result(output, header.msg, peer, &report, elapsed);
    let mut h = header;
    if header.msg {
        h.parallel = 0;
    }
    Ok(Some(h))
}

/// The stream-mode half of the server: length-prefixed chunks until a
/// zero length, counted into `report`.
fn receive_chunks(conn: &mut Conn, report: &mut ServerReport) -> Result<(), CliError> {
    conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let mut lb = [0u8; 4];
        conn.read_exact(&mut lb)
            .map_err(|e| CliError::io("the bench connection broke", e))?;
        let len = u32::from_be_bytes(lb);
        if len == 0 {
            return Ok(());
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
}

/// The message-mode half of the server: a new port, echoes, counts.
fn serve_messages(
    control: &mut Conn,
    header: &Header,
    net_opts: &NetOptions,
    report: &mut ServerReport,
) -> Result<(), CliError> {
    let local_ip = match control {
        Conn::Udt { stream, .. } => stream.local_addr().ip(),
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
