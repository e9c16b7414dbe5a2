//! The bench's results and how they are shown: the per-second intervals,
//! the latency percentiles and the summary of the client, and the line the
//! server prints per test.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::net::Transport;
use crate::ui::{self, Output};

use super::protocol::{Header, ServerReport};

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
    /// Bytes per stream with `--parallel` above 1 (empty otherwise).
    pub streams: Vec<u64>,
}

/// One stream's result at the end of a test of several (stream mode): a
/// stream far slower than the rest shows here, where the sums hide it.
#[derive(Clone, Debug, Serialize)]
pub struct StreamResult {
    /// The stream's number, from 1 as in the interval lines.
    pub id: u32,
    /// Bytes the receiving side received on it.
    pub bytes: u64,
    /// Seconds the receiving side measured on it.
    pub seconds: f64,
    /// The sending side's smoothed RTT at the end, ms.
    pub rtt_ms: Option<f64>,
    /// Data packets the sending side retransmitted.
    pub retransmitted: Option<u64>,
    /// The sending side's retransmission timeouts.
    pub timeouts: Option<u64>,
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

impl Latency {
    /// The percentiles of a histogram of round trips in microseconds.
    pub(super) fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// The bench result, as printed with `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchSummary {
    /// `"bench"`.
    pub command: &'static str,
    /// True: the test ran to its end (failures print an error object).
    pub ok: bool,
    /// UDT or TCP.
    pub transport: Transport,
    /// Secure mode (`--code` / `--key`): encrypted and authenticated.
    pub encrypted: bool,
    /// `"stream"` or `"message"`.
    pub mode: &'static str,
    /// Reverse mode (`-R`): the server sent, the client received.
    pub reverse: bool,
    /// Connections.
    pub parallel: u32,
    /// Per-second samples.
    pub intervals: Vec<Interval>,
    /// Bytes the sending side wrote (the client; the server with `-R`).
    pub sent_bytes: u64,
    /// Seconds the sending side wrote for (until the last byte was
    /// acknowledged).
    pub sent_seconds: f64,
    /// Sending throughput, megabits per second.
    pub sent_mbps: f64,
    /// Bytes the receiving side received (the server; the client with
    /// `-R`).
    pub received_bytes: u64,
    /// Seconds the receiving side measured.
    pub received_seconds: f64,
    /// Receiving throughput, megabits per second.
    pub received_mbps: f64,
    /// Smoothed RTT at the end (mean over connections), ms.
    pub rtt_ms: Option<f64>,
    /// Packets retransmitted by the sending side.
    pub retransmitted: Option<u64>,
    /// Packets lost: found missing by the receiving side.
    pub lost: Option<u64>,
    /// Client process CPU, percent of one core.
    pub cpu_client_percent: f64,
    /// Server process CPU, percent of one core (the busiest report).
    pub cpu_server_percent: f64,
    /// Message round trips (message mode).
    pub latency: Option<Latency>,
    /// Each stream's result, in stream order (stream mode with
    /// `--parallel` above 1; empty otherwise).
    pub streams: Vec<StreamResult>,
}

/// The mean of `values`, if there are any.
pub(super) fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

/// The column titles of the interval lines (human output, on stdout).
pub(super) fn print_interval_header(output: &Output) {
    if output.is_human() {
        println!("[ ID]  interval         transfer      bitrate          rtt     retr");
    }
}

/// One interval: a line per stream with `--parallel`, then the sum.
pub(super) fn print_interval(output: &Output, iv: &Interval, length: Duration) {
    if !output.is_human() {
        return;
    }
    for (i, &b) in iv.streams.iter().enumerate() {
        println!(
            "[{:>3}]  {:5.2}-{:5.2} s  {:>12}  {:>14}",
            i + 1,
            iv.start,
            iv.end,
            ui::bytes(b),
            ui::bitrate(ui::mbps(b, length) * 1e6),
        );
    }
    println!(
        "[{}]  {:5.2}-{:5.2} s  {:>12}  {:>14}  {:>9}  {:>6}",
        if iv.streams.is_empty() { "  1" } else { "SUM" },
        iv.start,
        iv.end,
        ui::bytes(iv.bytes),
        ui::bitrate(iv.mbps * 1e6),
        iv.rtt_ms
            .map(|r| format!("{r:.2} ms"))
            .unwrap_or_else(|| "-".into()),
        iv.retransmitted
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into()),
    );
}

/// The client's summary: JSON with `--json`, else a few lines on stdout.
pub(super) fn print_summary(s: &BenchSummary, output: &Output) {
    output.json(s);
    if !output.is_human() {
        return;
    }
    if s.encrypted {
        println!("  secure mode: encrypted and authenticated");
    }
    println!(
        "  sender:   {:>12} in {:6.2} s = {}",
        ui::bytes(s.sent_bytes),
        s.sent_seconds,
        ui::bitrate(s.sent_mbps * 1e6)
    );
    println!(
        "  receiver: {:>12} in {:6.2} s = {}",
        ui::bytes(s.received_bytes),
        s.received_seconds,
        ui::bitrate(s.received_mbps * 1e6)
    );
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    println!(
        "  rtt {}, retransmitted {}, lost {}, CPU client {:.0}% server {:.0}%",
        s.rtt_ms
            .map(|r| format!("{r:.3} ms"))
            .unwrap_or_else(|| "-".into()),
        opt(s.retransmitted),
        opt(s.lost),
        s.cpu_client_percent,
        s.cpu_server_percent
    );
    let slowest = s
        .streams
        .iter()
        .max_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let fastest = s.streams.iter().map(|r| r.seconds).min_by(f64::total_cmp);
    if let (Some(slow), Some(fast)) = (slowest, fastest) {
        println!(
            "  streams: {fast:.2}-{:.2} s (slowest: stream {}, retransmitted {}, timeouts {})",
            slow.seconds,
            slow.id,
            opt(slow.retransmitted),
            opt(slow.timeouts)
        );
    }
    if let Some(l) = &s.latency {
        println!(
            "  latency (round trip, {} messages): p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            l.count, l.p50_us, l.p99_us, l.p999_us, l.max_us
        );
    }
}

/// The server's interval line for one stream (human output, stdout).
pub(super) fn print_server_interval(
    output: Output,
    peer: &str,
    start: Instant,
    from: Instant,
    to: Instant,
    bytes: u64,
) {
    if output.is_human() {
        println!(
            "[{peer}]  {:5.2}-{:5.2} s  {:>12}  {:>14}",
            (from - start).as_secs_f64(),
            (to - start).as_secs_f64(),
            ui::bytes(bytes),
            ui::bitrate(ui::mbps(bytes, to - from) * 1e6),
        );
    }
}

/// The server's line for one finished test.
pub(super) fn print_server_result(
    output: Output,
    header: &Header,
    peer: Option<SocketAddr>,
    report: &ServerReport,
    elapsed: Duration,
) {
    let messages = header.msg;
    output.say(format_args!(
        "udt bench: {}: {} in {:.2} s = {}{} (server CPU {:.0}%)",
        match (messages, header.reverse) {
            (true, _) => format!("messages from {}", shown(peer)),
            (false, true) => format!("stream to {} (reverse)", shown(peer)),
            (false, false) => format!("stream from {}", shown(peer)),
        },
        ui::bytes(report.bytes),
        report.seconds,
        ui::bitrate(ui::mbps(report.bytes, elapsed) * 1e6),
        if messages {
            format!(", {} messages", report.messages)
        } else {
            String::new()
        },
        report.cpu_percent
    ));
}

/// A peer address for the server's lines.
fn shown(peer: Option<SocketAddr>) -> String {
    peer.map(|p| p.to_string())
        .unwrap_or_else(|| "an unknown peer".into())
}
