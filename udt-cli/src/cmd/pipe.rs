//! `udt listen` and `udt connect`: raw byte pipes between stdin/stdout and
//! one UDT connection, like netcat. No framing of ours: the other end can be
//! any UDT4 application (stream mode, or message mode with `--msg`).

use std::io::{self, BufRead, Read, Write};
use std::time::Instant;

use serde::Serialize;

use crate::net::{self, Conn, LinkStats, Listener, NetOptions, Transport};
use crate::proto::ReadAppend;
use crate::stdio;
use crate::ui::{self, CliError, Output};
use udt_mux::{ConnectionError, Stats};

/// Bytes per read from stdin or the connection.
const CHUNK: usize = 256 * 1024;

/// Largest message `connect --msg` sends; longer lines are split.
pub const MAX_MESSAGE: usize = 1 << 20;

/// `udt listen` / `udt connect` arguments.
#[derive(Clone, Debug)]
pub struct PipeArgs {
    /// `[ADDR:]PORT` to listen on, or `HOST:PORT` to connect to.
    pub addr: String,
    /// Message mode: one line (connect) or one message (listen) at a time.
    pub msg: bool,
    /// Transport options.
    pub net: NetOptions,
    /// Output mode (the summary goes to stderr: stdout carries the data).
    pub output: Output,
}

/// The summary of a pipe, printed on stderr.
#[derive(Clone, Debug, Serialize)]
pub struct PipeSummary {
    /// `"listen"` or `"connect"`.
    pub command: &'static str,
    /// True: the pipe ended in order (failures print an error object).
    pub ok: bool,
    /// UDT or TCP.
    pub transport: Transport,
    /// The other end.
    pub peer: Option<String>,
    /// Payload bytes moved.
    pub bytes: u64,
    /// Messages moved (`--msg`), else 0.
    pub messages: u64,
    /// Seconds from connection to the end (3 decimals).
    pub seconds: f64,
    /// Megabits per second (3 decimals).
    pub throughput_mbps: f64,
    /// Connection counters.
    pub link: LinkStats,
    /// `connect` only: whether the peer's application read everything.
    pub delivery: Option<Delivery>,
}

/// What `udt connect` knows, after a successful close, about the peer's
/// application reading what it sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Delivery {
    /// The peer's ACKs reported its receive buffer drained: its application
    /// read everything.
    Read,
    /// The peer acknowledged everything, then closed the connection before
    /// its ACKs reported that its application had read the last
    /// `unread_packets` packets: UDT cannot tell whether it did.
    Unconfirmed {
        /// Packets unread in the peer's last report.
        unread_packets: u32,
    },
    /// TCP acknowledges what the peer's kernel received; nothing tells
    /// whether its application read it.
    Unknowable,
}

impl Delivery {
    /// From the connection's statistics after its close returned success.
    fn after_udt_close(stats: &Stats) -> Delivery {
        match stats.peer_unread_packets {
            0 => Delivery::Read,
            unread_packets => Delivery::Unconfirmed { unread_packets },
        }
    }

    /// The end of the summary line.
    fn clause(&self) -> String {
        match self {
            Delivery::Read => "; the peer read everything".to_string(),
            Delivery::Unconfirmed { unread_packets } => format!(
                "; the peer acknowledged everything but closed before reporting that its \
                 application read the last {unread_packets} packets: UDT cannot tell whether it did"
            ),
            Delivery::Unknowable => {
                "; TCP cannot tell whether the peer's application read everything".to_string()
            }
        }
    }
}

/// The error of a failed orderly close.
fn close_error(e: io::Error) -> CliError {
    let unread = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ConnectionError>())
        == Some(&ConnectionError::PeerUnread);
    let context = if unread {
        "the peer acknowledged everything, but its application did not read it all in time"
    } else {
        "the peer did not acknowledge everything"
    };
    CliError::io(context, e)
}

impl PipeSummary {
    fn print(&self, output: &Output) {
        if output.json {
            if let Ok(s) = serde_json::to_string(self) {
                eprintln!("{s}");
            }
        } else if output.is_human() {
            let verb = if self.command == "listen" {
                "received"
            } else {
                "sent"
            };
            let msgs = if self.messages > 0 {
                format!(" in {} messages", self.messages)
            } else {
                String::new()
            };
            eprintln!(
                "udt: {verb} {}{msgs} in {:.2} s: {}{}",
                ui::bytes(self.bytes),
                self.seconds,
                ui::bitrate(self.throughput_mbps * 1e6),
                self.delivery.map(|d| d.clause()).unwrap_or_default()
            );
        }
    }
}

fn check_msg(args: &PipeArgs) -> Result<(), CliError> {
    if args.msg && args.net.transport == Transport::Tcp {
        return Err(CliError::usage("--msg needs UDT: TCP has no message mode"));
    }
    Ok(())
}

/// Runs `udt listen`: accepts one connection and copies it to stdout until
/// the peer closes.
///
/// # Errors
/// Listen and connection failures (exit 3 when the connection breaks).
pub fn listen(args: &PipeArgs) -> Result<PipeSummary, CliError> {
    check_msg(args)?;
    let addr =
        net::listen_addr_dual(&args.addr).map_err(|e| CliError::io("bad listen address", e))?;
    let mut out = stdio::raw_stdout().map_err(|e| CliError::io("cannot use stdout", e))?;
    let summary = if args.msg {
        let (ep, listener) =
            net::listen_messages(addr, &args.net).map_err(|e| CliError::io("cannot listen", e))?;
        args.output.status(format_args!(
            "udt: listening on {} (UDT, message mode)",
            ep.local_addr()
        ));
        let (sock, peer) = listener
            .accept()
            .map_err(|e| CliError::io("accept failed", e))?;
        drop(listener);
        args.output
            .status(format_args!("udt: connection from {peer}"));
        let start = Instant::now();
        let (mut bytes, mut messages) = (0u64, 0u64);
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Some(n) = sock
            .recv_msg_into(&mut buf)
            .map_err(|e| CliError::io("receive failed", e))?
        {
            bytes += n as u64;
            messages += 1;
            if !write_out(&mut out, &buf)? {
                break;
            }
        }
        let link = net::message_stats(&sock);
        PipeSummary {
            command: "listen",
            ok: true,
            transport: Transport::Udt,
            peer: Some(peer.to_string()),
            bytes,
            messages,
            seconds: ui::round3(start.elapsed().as_secs_f64()),
            throughput_mbps: ui::round3(ui::mbps(bytes, start.elapsed())),
            link,
            delivery: None,
        }
    } else {
        let listener =
            Listener::bind(addr, &args.net).map_err(|e| CliError::io("cannot listen", e))?;
        args.output.status(format_args!(
            "udt: listening on {} ({})",
            listener.local_addr(),
            args.net.transport
        ));
        let mut conn = listener
            .accept()
            .map_err(|e| CliError::io("accept failed", e))?;
        drop(listener);
        let peer = conn.peer_addr();
        if let Some(p) = peer {
            args.output.status(format_args!("udt: connection from {p}"));
        }
        let start = Instant::now();
        let mut buf = Vec::with_capacity(CHUNK);
        let mut bytes = 0u64;
        loop {
            buf.clear();
            let n = match conn.read_append(&mut buf, CHUNK) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CliError::io("the connection broke", e)),
            };
            bytes += n as u64;
            if !write_out(&mut out, &buf)? {
                break;
            }
        }
        let link = conn.stats();
        PipeSummary {
            command: "listen",
            ok: true,
            transport: args.net.transport,
            peer: peer.map(|p| p.to_string()),
            bytes,
            messages: 0,
            seconds: ui::round3(start.elapsed().as_secs_f64()),
            throughput_mbps: ui::round3(ui::mbps(bytes, start.elapsed())),
            link,
            delivery: None,
        }
    };
    out.flush().map_err(|e| CliError::io("writing stdout", e))?;
    summary.print(&args.output);
    Ok(summary)
}

/// Writes to stdout; false when stdout was closed (`| head`), which ends
/// the pipe without an error.
fn write_out(out: &mut impl Write, data: &[u8]) -> Result<bool, CliError> {
    match out.write_all(data).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(CliError::io("writing stdout", e)),
    }
}

/// Runs `udt connect`: sends stdin until EOF, then closes in order and
/// returns once the peer has acknowledged everything and (UDT) its ACKs
/// report that its application has read it all, or it closed first. The
/// summary's [`Delivery`] says which, or that TCP cannot tell.
///
/// # Errors
/// Connection failures (exit 3), stdin read errors; a close that timed out
/// with data unacknowledged, or acknowledged but not read by the peer's
/// application (exit 3).
pub fn connect(args: &PipeArgs) -> Result<PipeSummary, CliError> {
    check_msg(args)?;
    let stdin = io::stdin();
    let mut input = stdin.lock();
    stdio::widen_pipe(stdio::STDIN);
    let start = Instant::now();
    let connect_err = |e| CliError::io(&format!("cannot connect to {}", args.addr), e);
    let (bytes, messages, link, peer, delivery) = if args.msg {
        let sock = net::connect_messages(&args.addr, &args.net).map_err(connect_err)?;
        let peer = sock.peer_addr();
        let (mut bytes, mut messages) = (0u64, 0u64);
        let mut line = Vec::with_capacity(4096);
        loop {
            line.clear();
            read_line_bounded(&mut input, &mut line, MAX_MESSAGE)
                .map_err(|e| CliError::io("reading stdin", e))?;
            if line.is_empty() {
                break;
            }
            sock.send_msg(&line)
                .map_err(|e| CliError::io("send failed", e))?;
            bytes += line.len() as u64;
            messages += 1;
        }
        // A second handle reads the statistics once the close has ended
        // (the last packets leave during the close).
        let probe = sock
            .try_clone()
            .map_err(|e| CliError::io("cannot use the connection", e))?;
        sock.close().map_err(close_error)?;
        let link = net::message_stats(&probe);
        let delivery = Delivery::after_udt_close(&probe.stats());
        (bytes, messages, link, Some(peer), delivery)
    } else {
        let mut conn = Conn::connect(&args.addr, &args.net).map_err(connect_err)?;
        let peer = conn.peer_addr();
        let mut buf = vec![0u8; CHUNK];
        let mut bytes = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CliError::io("reading stdin", e)),
            };
            conn.write_all(&buf[..n])
                .map_err(|e| CliError::io("the connection broke", e))?;
            bytes += n as u64;
        }
        let probe = conn
            .try_clone()
            .map_err(|e| CliError::io("cannot use the connection", e))?;
        conn.finish().map_err(close_error)?;
        // After the close: every byte is in the counters.
        let link = probe.stats();
        let delivery = match &probe {
            Conn::Udt { stream, .. } => Delivery::after_udt_close(&stream.stats()),
            Conn::Tcp(_) => Delivery::Unknowable,
        };
        (bytes, 0, link, peer, delivery)
    };
    let summary = PipeSummary {
        command: "connect",
        ok: true,
        transport: args.net.transport,
        peer: peer.map(|p| p.to_string()),
        bytes,
        messages,
        seconds: ui::round3(start.elapsed().as_secs_f64()),
        throughput_mbps: ui::round3(ui::mbps(bytes, start.elapsed())),
        link,
        delivery: Some(delivery),
    };
    summary.print(&args.output);
    Ok(summary)
}

/// Reads one line (newline included) of at most `max` bytes into `out`;
/// a longer line is returned in pieces. Empty at EOF.
fn read_line_bounded(input: &mut impl BufRead, out: &mut Vec<u8>, max: usize) -> io::Result<()> {
    while out.len() < max {
        let available = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        let room = max - out.len();
        let (take, done) = match available.iter().take(room).position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len().min(room), false),
        };
        out.extend_from_slice(&available[..take]);
        input.consume(take);
        if done {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_follows_what_the_peer_last_reported() {
        let mut stats = Stats::default();
        assert_eq!(Delivery::after_udt_close(&stats), Delivery::Read);
        stats.peer_unread_packets = 12;
        let d = Delivery::after_udt_close(&stats);
        assert_eq!(d, Delivery::Unconfirmed { unread_packets: 12 });
        assert!(d.clause().contains("last 12 packets"), "{}", d.clause());
        assert!(d.clause().contains("cannot tell"), "{}", d.clause());
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"status":"unconfirmed","unread_packets":12}"#
        );
        assert_eq!(
            serde_json::to_string(&Delivery::Read).unwrap(),
            r#"{"status":"read"}"#
        );
        assert!(Delivery::Unknowable.clause().contains("TCP cannot tell"));
    }

    #[test]
    fn a_close_into_a_reader_that_never_read_says_so() {
        let unread = close_error(ConnectionError::PeerUnread.into());
        assert_eq!(unread.code, crate::proto::exit::NETWORK);
        assert!(
            unread.message.contains("did not read it all"),
            "{}",
            unread.message
        );
        let unacked = close_error(ConnectionError::LingerExpired.into());
        assert_eq!(unacked.code, crate::proto::exit::NETWORK);
        assert!(
            unacked.message.contains("did not acknowledge everything"),
            "{}",
            unacked.message
        );
    }

    #[test]
    fn lines_are_bounded() {
        let mut input = io::Cursor::new(b"ab\ncdefgh\n\nlast".to_vec());
        let mut got = Vec::new();
        loop {
            let mut line = Vec::new();
            read_line_bounded(&mut input, &mut line, 4).unwrap();
            if line.is_empty() {
                break;
            }
            got.push(String::from_utf8(line).unwrap());
        }
        assert_eq!(got, ["ab\n", "cdef", "gh\n", "\n", "last"]);
    }
}
