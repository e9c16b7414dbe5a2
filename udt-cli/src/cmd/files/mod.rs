//! `udt send` and `udt recv`: the file-transfer protocol over one
//! connection, with a progress bar and a summary (human or JSON). The
//! sending command is in `send`, the receiving one in `recv`; this module
//! has what both print and share.
//!
//! The receiver serves several connections at once (each on its own
//! thread, at most [`MAX_CONNECTIONS`]) so that one silent client cannot
//! block a real sender: a connection that does not greet within
//! [`GREETING_TIMEOUT`] is dropped, and every transfer gives up after
//! `--idle-timeout` without progress. A one-shot receiver belongs to the
//! first connection that greets; later ones are told it is busy.

mod recv;
mod send;

use std::time::Duration;

use serde::Serialize;

use crate::net::{Conn, LinkStats, Transport};
use crate::proto::{self, exit, TransferError};
use crate::ui::{self, Output};
use crate::watch::Watched;

pub use recv::{check_out_dir, recv, serve_one, RecvArgs};
pub use send::{send, send_over, SendArgs};

/// Most connections a receiver serves at once (greeting or transferring);
/// more are refused at once.
pub const MAX_CONNECTIONS: usize = 16;

/// How long a new connection has to send its greeting.
pub const GREETING_TIMEOUT: Duration = Duration::from_secs(10);

/// The default `--idle-timeout`: how long a transfer may make no progress.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30);

/// How long an interrupted side waits for its last frame to be
/// acknowledged before it exits.
pub(super) const LAST_WORDS: Duration = Duration::from_secs(1);

/// The linger of `udt send` (see [`crate::net::NetOptions::linger`]).
pub const SENDER_LINGER: Duration = Duration::from_millis(500);

/// The linger of `udt recv`: its last frame (the result) is tiny and a
/// real sender is waiting to read it, so a peer that has not read it
/// after this long never will; without a bound the close would wait the
/// library's 180 s for that peer's reader.
pub const RECEIVER_LINGER: Duration = Duration::from_secs(3);

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
    /// Wall-clock seconds from connection to confirmation (3 decimals).
    pub seconds: f64,
    /// `bytes_transferred` over `seconds`, in megabits per second (3
    /// decimals).
    pub throughput_mbps: f64,
    /// RTT, packets, retransmissions and loss of the connection.
    pub link: LinkStats,
    /// Files on the receiver whose partial or complete copy did not match
    /// and was sent again (sender only).
    pub restarted_files: u64,
    /// Paths the sender left out (symbolic links, special files).
    pub skipped: Vec<String>,
    /// Everything else worth knowing that was not an error.
    pub notes: Vec<String>,
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
        let n = |v: Option<u64>| v.unwrap_or(0);
        let rtt = self
            .link
            .rtt_ms
            .map(|r| format!("rtt {r:.3} ms, "))
            .unwrap_or_default();
        if self.link.packets_sent.is_none() {
            return;
        }
        if self.command == "send" {
            let sent = n(self.link.packets_sent);
            let retransmitted = n(self.link.packets_retransmitted);
            let pct = if sent > 0 {
                retransmitted as f64 * 100.0 / sent as f64
            } else {
                0.0
            };
            eprintln!(
                "  {rtt}{sent} packets sent, {retransmitted} retransmitted ({pct:.2}%), {} reported lost",
                n(self.link.packets_reported_lost)
            );
        } else {
            eprintln!(
                "  {rtt}{} packets received, {} lost on the way (recovered)",
                n(self.link.packets_received),
                n(self.link.packets_lost)
            );
        }
    }
}

/// Tells a connection we will not serve why, then lets it close.
pub(super) fn refuse(conn: Conn, why: &str) {
    let mut conn = Watched::new(conn, Some(Duration::from_secs(1)));
    let _ = proto::wire::write_frame(
        &mut conn,
        &proto::wire::Frame::Error {
            class: exit::NETWORK,
            message: why,
        },
    );
}

/// True when a transfer that failed this way left something `--resume` can
/// continue: the connection broke, was interrupted, or the peer stopped for
/// such a reason (both ends give the same hint).
fn is_resumable(e: &TransferError) -> bool {
    matches!(
        e,
        TransferError::Network(_)
            | TransferError::Interrupted
            | TransferError::Peer {
                class: exit::INTERRUPTED | exit::NETWORK | exit::LOCAL_IO,
                ..
            }
    )
}
