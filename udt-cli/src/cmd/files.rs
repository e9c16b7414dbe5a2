//! `udt send` and `udt recv`: the file-transfer protocol over one
//! connection, with a progress bar and a summary (human or JSON).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::net::{Conn, LinkStats, Listener, NetOptions, Transport};
use crate::proto::{self, exit, Limits, RecvOptions};
use crate::ui::{self, BarObserver, CliError, Output};

/// The summary of one transfer, as printed with `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct TransferSummary {
    /// `"send"` or `"recv"`.
    pub command: &'static str,
    /// True when every file arrived and was verified.
    pub ok: bool,
    /// The other end.
    pub peer: Option<String>,
    /// UDT or TCP.
    pub transport: Transport,
    /// Files in the transfer.
    pub files: u64,
    /// Directories in the transfer.
    pub dirs: u64,
    /// Sum of the file sizes.
    pub total_bytes: u64,
    /// Bytes of contents moved by this run (sent, or received and written).
    pub bytes_transferred: u64,
    /// Bytes already on the receiver and verified (`--resume`).
    pub bytes_resumed: u64,
    /// Wall-clock seconds from connection to confirmation.
    pub seconds: f64,
    /// `bytes_transferred` over `seconds`, in megabits per second.
    pub throughput_mbps: f64,
    /// RTT, packets, retransmissions and loss of the connection.
    pub link: LinkStats,
    /// Files on the receiver whose partial or complete copy did not match
    /// and was sent again (sender only).
    pub restarted_files: u64,
}

impl TransferSummary {
    fn print(&self, output: &Output) {
        output.json(self);
        if !output.is_human() {
            return;
        }
        let verb = if self.command == "send" {
            "sent"
        } else {
            "received"
        };
        let mut line = format!(
            "{verb} {} file{}, {} director{}, {} in {:.2} s: {}",
            self.files,
            if self.files == 1 { "" } else { "s" },
            self.dirs,
            if self.dirs == 1 { "y" } else { "ies" },
            ui::bytes(self.bytes_transferred),
            self.seconds,
            ui::bitrate(self.throughput_mbps * 1e6),
        );
        if self.bytes_resumed > 0 {
            line.push_str(&format!(
                " ({} already there, verified)",
                ui::bytes(self.bytes_resumed)
            ));
        }
        eprintln!("{line}");
        if let Some(rtt) = self.link.rtt_ms {
            let n = |v: Option<u64>| v.unwrap_or(0);
            if self.command == "send" {
                let sent = n(self.link.packets_sent);
                let retransmitted = n(self.link.packets_retransmitted);
                let pct = if sent > 0 {
                    retransmitted as f64 * 100.0 / sent as f64
                } else {
                    0.0
                };
                eprintln!(
                    "  rtt {rtt:.3} ms, {sent} packets sent, {retransmitted} retransmitted ({pct:.2}%), {} reported lost",
                    n(self.link.packets_reported_lost)
                );
            } else {
                eprintln!(
                    "  rtt {rtt:.3} ms, {} packets received, {} lost on the way (recovered)",
                    n(self.link.packets_received),
                    n(self.link.packets_lost)
                );
            }
        }
    }
}

/// `udt send` arguments.
#[derive(Clone, Debug)]
pub struct SendArgs {
    /// Files and directories to send.
    pub paths: Vec<PathBuf>,
    /// `HOST:PORT` of the receiver.
    pub target: String,
    /// Transport options.
    pub net: NetOptions,
    /// Output mode.
    pub output: Output,
}

/// Runs `udt send`.
///
/// # Errors
/// The transfer's failure with its exit code.
pub fn send(args: &SendArgs) -> Result<TransferSummary, CliError> {
    let mut observer = BarObserver::new(args.output);
    let entries = proto::scan(&args.paths, &Limits::default(), &mut observer)?;
    let start = Instant::now();
    let conn = Conn::connect(&args.target, &args.net)
        .map_err(|e| CliError::io(&format!("cannot connect to {}", args.target), e))?;
    send_over(conn, &entries, &args.net, args.output, &mut observer, start)
}

/// Sends `entries` over an established connection and prints the summary.
///
/// # Errors
/// As [`send`].
pub fn send_over(
    conn: Conn,
    entries: &[proto::LocalEntry],
    net: &NetOptions,
    output: Output,
    observer: &mut BarObserver,
    start: Instant,
) -> Result<TransferSummary, CliError> {
    let peer = conn.peer_addr();
    let reader = conn
        .try_clone()
        .map_err(|e| CliError::io("cannot use the connection", e))?;
    let mut writer = conn;
    let result = proto::send_files(reader, &mut writer, entries, observer);
    observer.finish();
    let link = writer.stats();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            // Let the receiver see our error frame, but do not wait long
            // for a peer that may be gone.
            drop(writer);
            return Err(e.into());
        }
    };
    if let Err(e) = writer.finish() {
        // Everything was confirmed before: only log.
        log::debug!("closing the connection: {e}");
    }
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
        seconds: elapsed.as_secs_f64(),
        throughput_mbps: ui::mbps(report.bytes_sent, elapsed),
        link,
        restarted_files: report.restarted,
    };
    summary.print(&output);
    Ok(summary)
}

/// `udt recv` arguments.
#[derive(Clone, Debug)]
pub struct RecvArgs {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Output directory and policies.
    pub options: RecvOptions,
    /// Serve transfers until killed instead of exiting after one.
    pub keep_listening: bool,
    /// Transport options.
    pub net: NetOptions,
    /// Output mode.
    pub output: Output,
}

/// Runs `udt recv`.
///
/// # Errors
/// The failure of the (last) transfer, with its exit code.
pub fn recv(args: &RecvArgs) -> Result<(), CliError> {
    let listener =
        Listener::bind(args.listen, &args.net).map_err(|e| CliError::io("cannot listen", e))?;
    args.output.status(format_args!(
        "udt: listening on {} ({}), receiving into {}; send with: udt send PATH... HOST:{}",
        listener.local_addr(),
        args.net.transport,
        args.options.out.display(),
        listener.local_addr().port()
    ));
    loop {
        let conn = listener
            .accept()
            .map_err(|e| CliError::io("accept failed", e))?;
        let result = serve_one(conn, &args.options, &args.net, args.output);
        match result {
            Ok(_) if !args.keep_listening => return Ok(()),
            Ok(_) => {}
            Err(e) if !args.keep_listening => return Err(e),
            Err(e) => eprintln!("udt: error: {e}"),
        }
    }
}

/// Receives one transfer on an accepted connection and prints its summary.
///
/// # Errors
/// The transfer's failure with its exit code.
pub fn serve_one(
    conn: Conn,
    options: &RecvOptions,
    net: &NetOptions,
    output: Output,
) -> Result<TransferSummary, CliError> {
    let start = Instant::now();
    let peer = conn.peer_addr();
    if let Some(p) = peer {
        output.status(format_args!("udt: transfer from {p}"));
    }
    let reader = conn
        .try_clone()
        .map_err(|e| CliError::io("cannot use the connection", e))?;
    let mut writer = conn;
    let mut observer = BarObserver::new(output);
    let result = proto::receive(reader, &mut writer, options, &mut observer);
    observer.finish();
    let link = writer.stats();
    // Deliver our last frame (the result, or the reason we stopped).
    if let Err(e) = writer.finish() {
        log::debug!("closing the connection: {e}");
    }
    let report = result.map_err(|e| {
        let mut err = CliError::from(e);
        if err.code == exit::NETWORK {
            err.message
                .push_str(" (partial files are kept; run again with --resume to continue)");
        }
        err
    })?;
    let elapsed = start.elapsed();
    let summary = TransferSummary {
        command: "recv",
        ok: true,
        peer: peer.map(|p| p.to_string()),
        transport: net.transport,
        files: report.files,
        dirs: report.dirs,
        total_bytes: report.total_bytes,
        bytes_transferred: report.bytes_written,
        bytes_resumed: report.bytes_resumed,
        seconds: elapsed.as_secs_f64(),
        throughput_mbps: ui::mbps(report.bytes_written, elapsed),
        link,
        restarted_files: 0,
    };
    summary.print(&output);
    Ok(summary)
}
