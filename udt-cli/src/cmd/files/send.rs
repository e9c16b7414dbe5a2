//! `udt send`: scans the paths, connects (or waits for the receiver with
//! `--listen`), sends, and prints the summary.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{refuse, TransferSummary, SENDER_LINGER};
use crate::net::{AllowList, Conn, Listener, NetOptions};
use crate::proto::{self, exit, Limits, TransferError};
use crate::signals;
use crate::ui::{self, BarObserver, CliError, Output};
use crate::watch::Watched;

/// `udt send` arguments.
#[derive(Clone, Debug)]
pub struct SendArgs {
    /// Files and directories to send.
    pub paths: Vec<std::path::PathBuf>,
    /// `HOST:PORT` of the receiver (`None` with `listen`).
    pub target: Option<String>,
    /// Wait here for the receiver to connect (`udt recv HOST:PORT`).
    pub listen: Option<SocketAddr>,
    /// With `listen`: who may connect (empty: anyone).
    pub allow: AllowList,
    /// Names to leave out (`--exclude`, shell patterns).
    pub excludes: Vec<String>,
    /// When not empty, the only file names to send (`--include`).
    pub includes: Vec<String>,
    /// Ask the receiver to continue what an interrupted run left there
    /// (`--resume`).
    pub resume: bool,
    /// Transport options.
    pub net: NetOptions,
    /// How long the transfer may make no progress.
    pub idle: Duration,
    /// Output mode.
    pub output: Output,
    /// `--broker`/`--code`: meet the receiver through a broker instead.
    pub broker: crate::cmd::punch::BrokerOpts,
}

/// Runs `udt send`.
///
/// # Errors
/// The transfer's failure with its exit code; 2 when there is nothing to
/// send; 130 after Ctrl-C.
pub fn send(args: &SendArgs) -> Result<TransferSummary, CliError> {
    let mut observer = BarObserver::new(args.output);
    let mut net = args.net.clone();
    net.linger = Some(SENDER_LINGER);
    let filter = proto::glob::Filter {
        excludes: args.excludes.clone(),
        includes: args.includes.clone(),
    };
    let entries = proto::scan_filtered(&args.paths, &Limits::default(), &filter, &mut observer)?;
    if entries.is_empty() {
        return Err(CliError::usage(
            "nothing to send: every path given was skipped (only files and directories can be sent)",
        ));
    }
    if let Some(addr) = args.listen {
        return send_listening(args, addr, &net, &entries, &mut observer);
    }
    let target = args.target.as_deref().unwrap_or_default();
    let start = Instant::now();
    let conn = if args.broker.broker.is_some() {
        crate::cmd::punch::connect(&args.broker, &net, args.output)?
    } else {
        Conn::connect(target, &net)
            .map_err(|e| CliError::io(&format!("cannot connect to {target}"), e))?
    };
    if signals::interrupted() {
        return Err(CliError::interrupted(
            "interrupted before the transfer started",
        ));
    }
    send_over(
        conn,
        &entries,
        &net,
        args.idle,
        args.resume,
        args.output,
        &mut observer,
        start,
    )
}

/// `udt send --listen`: waits for a receiver to connect, then sends. A
/// connection that does not behave as a receiver (no plan) is dropped and
/// the next one awaited.
fn send_listening(
    args: &SendArgs,
    addr: SocketAddr,
    net: &NetOptions,
    entries: &[proto::LocalEntry],
    observer: &mut BarObserver,
) -> Result<TransferSummary, CliError> {
    let listener = Listener::bind(addr, net).map_err(|e| CliError::io("cannot listen", e))?;
    let local = listener.local_addr();
    args.output.status(format_args!(
        "udt: listening on {local} ({}), {} to send; receive with: udt recv HOST:{}",
        net.transport,
        entries.len(),
        local.port()
    ));
    loop {
        if signals::interrupted() {
            return Err(CliError::interrupted(
                "interrupted while waiting for a receiver",
            ));
        }
        // As `udt recv`: a code is good for one guess (recv.rs, on_wrong_code).
        if listener.wrong_codes() > 0 {
            return Err(wrong_code());
        }
        let conn = match listener.accept_timeout(Duration::from_millis(200)) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => return Err(CliError::io("accept failed", e)),
        };
        let peer = conn.peer_addr();
        if let Some(p) = peer.filter(|p| !args.allow.permits(p.ip())) {
            args.output.status(format_args!(
                "udt: refused a connection from {p} (not in --allow)"
            ));
            refuse(conn, &format!("this sender does not send to {}", p.ip()));
            continue;
        }
        if let Some(p) = peer {
            args.output.status(format_args!("udt: sending to {p}"));
        }
        let mut attempt = BarObserver::new(args.output);
        let result = send_over(
            conn,
            entries,
            net,
            args.idle,
            args.resume,
            args.output,
            &mut attempt,
            Instant::now(),
        );
        match result {
            Err(e) if e.message.starts_with(proto::WRONG_CODE) => return Err(wrong_code()),
            Err(e) if !attempt.planned() && e.code != exit::INTERRUPTED => {
                let who = peer.map(|p| p.to_string()).unwrap_or_default();
                args.output.status(format_args!(
                    "udt: note: dropped a connection from {who}: {e}"
                ));
            }
            other => {
                observer.notes.append(&mut attempt.notes);
                return other;
            }
        }
    }
}

/// `udt send --listen`: a receiver presented a wrong code (or key); the
/// sender ends, as `udt recv` does, since a code is a one-guess secret.
fn wrong_code() -> CliError {
    CliError::from(proto::TransferError::WrongCode(
        "wrong code: a receiver presented a wrong code (or key), so nothing was sent; a code is \
         good for one try: start again (a new code) and check it on both sides"
            .into(),
    ))
}

/// Sends `entries` over an established connection and prints the summary;
/// with `resume`, asks the receiver to continue an interrupted transfer.
///
/// # Errors
/// As [`send`].
#[allow(clippy::too_many_arguments)]
pub fn send_over(
    conn: Conn,
    entries: &[proto::LocalEntry],
    net: &NetOptions,
    idle: Duration,
    resume: bool,
    output: Output,
    observer: &mut BarObserver,
    start: Instant,
) -> Result<TransferSummary, CliError> {
    let peer = conn.peer_addr();
    let mut writer = Watched::new(conn, Some(idle));
    let reader = writer
        .try_clone()
        .map_err(|e| CliError::io("cannot use the connection", e))?;
    let probe = writer
        .try_clone()
        .map_err(|e| CliError::io("cannot use the connection", e))?;
    observer.set_unacked_probe(Box::new(move || probe.unacknowledged_bytes()));
    let result = proto::send_files_resuming(reader, &mut writer, entries, resume, observer);
    observer.finish();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            // Our Error frame may be queued behind data: the close tries
            // to deliver it for the (short) linger, then sends the
            // shutdown, so the receiver learns at once either way.
            if let Err(close) = writer.into_inner().finish() {
                log::debug!("closing after an error: {close}");
            }
            return Err(send_error(e));
        }
    };
    let link_probe = writer
        .try_clone()
        .map_err(|e| CliError::io("cannot use the connection", e))?;
    if let Err(e) = writer.into_inner().finish() {
        // Everything was confirmed before: only log.
        log::debug!("closing the connection: {e}");
    }
    let link = link_probe.stats();
    let elapsed = start.elapsed();
    let summary = TransferSummary {
        command: "send",
        ok: true,
        peer: peer.map(|p| p.to_string()),
        transport: net.transport,
        files: report.files,
        dirs: report.dirs,
        total_bytes: report.total_bytes,
        bytes_transferred: report.bytes_sent,
        bytes_resumed: report.bytes_resumed,
        seconds: ui::round3(elapsed.as_secs_f64()),
        throughput_mbps: ui::round3(ui::mbps(report.bytes_sent, elapsed)),
        link,
        restarted_files: report.restarted,
        skipped: observer.skipped.clone(),
        notes: observer.notes.clone(),
    };
    summary.print(&output);
    Ok(summary)
}

/// The sender's error with what to do about it.
fn send_error(e: TransferError) -> CliError {
    let resumable = super::is_resumable(&e);
    let mut err = match e {
        TransferError::Interrupted => CliError::interrupted("interrupted; the receiver was told"),
        e => CliError::from(e),
    };
    if resumable {
        err.message.push_str(
            "; the receiver keeps what arrived: run the same command again with --resume to continue",
        );
    }
    err
}
