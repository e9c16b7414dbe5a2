//! `udt listen` and `udt connect`: raw byte pipes between stdin/stdout and
//! one UDT connection, like netcat. No framing of ours: the other end can be
//! any UDT4 application (stream mode, or message mode with `--msg`).

use std::io::{self, BufRead, Read, Write};
use std::time::Instant;

use serde::Serialize;

use crate::net::{self, Conn, LinkStats, Listener, NetOptions, Transport};
use crate::ui::{self, CliError, Output};

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
                "udt: {verb} {}{msgs} in {:.2} s: {}",
                ui::bytes(self.bytes),
                self.seconds,
                ui::bitrate(self.throughput_mbps * 1e6)
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
    let addr = net::listen_addr(&args.addr).map_err(|e| CliError::io("bad listen address", e))?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
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
        let mut buf = vec![0u8; CHUNK];
        let mut bytes = 0u64;
        loop {
            let n = match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CliError::io("the connection broke", e)),
            };
            bytes += n as u64;
            if !write_out(&mut out, &buf[..n])? {
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
/// returns once the peer has acknowledged everything.
///
/// # Errors
/// Connection failures (exit 3), stdin read errors.
pub fn connect(args: &PipeArgs) -> Result<PipeSummary, CliError> {
    check_msg(args)?;
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let start = Instant::now();
    let connect_err = |e| CliError::io(&format!("cannot connect to {}", args.addr), e);
    let (bytes, messages, link, peer) = if args.msg {
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
        let probe = sock
            .try_clone()
            .map_err(|e| CliError::io("the connection broke", e))?;
        sock.close()
            .map_err(|e| CliError::io("the peer did not acknowledge everything", e))?;
        // After the close: every byte is in the counters.
        let link = net::message_stats(&probe);
        (bytes, messages, link, Some(peer))
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
            .map_err(|e| CliError::io("the connection broke", e))?;
        conn.finish()
            .map_err(|e| CliError::io("the peer did not acknowledge everything", e))?;
        // After the close: every byte is in the counters.
        let link = probe.stats();
        (bytes, 0, link, peer)
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
