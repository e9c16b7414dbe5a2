//! What the user sees: progress bars, human-readable numbers, the
//! `--quiet` / `--json` output modes, and the command error type that maps
//! every failure to one line and an exit code.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::Serialize;

use crate::proto::{exit, Observer, RelPath, TransferError};

/// How much a command prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Only errors, on stderr.
    pub quiet: bool,
    /// A JSON summary on stdout instead of the human one.
    pub json: bool,
    /// One line per file sent, received or kept (`-v`).
    pub verbose: bool,
}

impl Output {
    /// Nothing but errors (for the parts of a command that run inside
    /// another, and for tests).
    pub fn quiet() -> Output {
        Output {
            quiet: true,
            ..Output::default()
        }
    }

    /// True when human-readable lines go to stderr.
    pub fn is_human(&self) -> bool {
        !self.quiet && !self.json
    }

    /// Prints a human line on stderr unless quiet or JSON.
    pub fn say(&self, line: impl fmt::Display) {
        if self.is_human() {
            eprintln!("{line}");
        }
    }

    /// Prints a status line on stderr unless quiet, also in JSON mode
    /// (whose output is on stdout): where a server listens, who connected.
    pub fn status(&self, line: impl fmt::Display) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// Prints `value` as one line of JSON on stdout (JSON mode only).
    pub fn json<T: Serialize>(&self, value: &T) {
        if self.json {
            match serde_json::to_string(value) {
                Ok(s) => {
                    let mut out = io::stdout().lock();
                    let _ = writeln!(out, "{s}");
                    let _ = out.flush();
                }
                Err(e) => log::error!("cannot encode the JSON summary: {e}"),
            }
        }
    }

    /// A byte progress bar on stderr, hidden when quiet, in JSON mode, or
    /// when stderr is not a terminal. Amounts are in bytes (binary
    /// prefixes), the rate in bits per second, as everywhere in `udt`.
    pub fn bar(&self, total: u64) -> ProgressBar {
        let target = if self.is_human() && io::stderr().is_terminal() {
            ProgressDrawTarget::term_like_with_hz(Box::new(NarrowTerm(console::Term::stderr())), 10)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.green} [{elapsed_precise}] [{wide_bar:.cyan/blue}] {bytes}/{total_bytes} \
                 {bitrate} eta {eta} {prefix} {msg}",
            )
            .map(|style| {
                style.with_key("bitrate", |state: &ProgressState, w: &mut dyn fmt::Write| {
                    let _ = w.write_str(&bitrate(state.per_sec() * 8.0));
                })
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    }
}

/// The terminal, reported a few columns narrower than it is: indicatif
/// pads its line to the full width, which leaves the cursor at the wrap,
/// where the "^C" the terminal echoes on Ctrl-C would start a new line;
/// clearing the bar would then clear that line and leave the bar on
/// screen.
#[derive(Debug)]
struct NarrowTerm(console::Term);

impl indicatif::TermLike for NarrowTerm {
    fn width(&self) -> u16 {
        self.0.size().1.saturating_sub(4).max(20)
    }
    fn height(&self) -> u16 {
        self.0.size().0
    }
    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        self.0.write_str(s)
    }
    fn clear_line(&self) -> io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A failed command: one line for the user and an exit code (see
/// [`exit`]).
#[derive(Debug)]
pub struct CliError {
    /// The process exit code.
    pub code: u8,
    /// The message, without the `udt: error:` prefix.
    pub message: String,
}

impl CliError {
    /// An error with an explicit code.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(exit::USAGE, message)
    }

    /// The user pressed Ctrl-C (exit 130).
    pub fn interrupted(message: impl Into<String>) -> Self {
        CliError::new(exit::INTERRUPTED, message)
    }

    /// An I/O error in `context` with its exit code chosen by kind.
    pub fn io(context: &str, e: io::Error) -> Self {
        CliError::new(io_exit_code(&e), format!("{context}: {e}"))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<TransferError> for CliError {
    fn from(e: TransferError) -> Self {
        CliError::new(e.exit_code(), e.to_string())
    }
}

/// Exit code for an I/O error: network kinds → 3, disk full → 6.
pub fn io_exit_code(e: &io::Error) -> u8 {
    use io::ErrorKind::*;
    if crate::proto::is_disk_full(e) {
        return exit::LOCAL_IO;
    }
    match e.kind() {
        ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | TimedOut
        | BrokenPipe | UnexpectedEof | AddrNotAvailable | AddrInUse | HostUnreachable
        | NetworkUnreachable => exit::NETWORK,
        InvalidInput => exit::USAGE,
        _ => exit::FAILURE,
    }
}

/// Bytes not yet acknowledged by the peer (see `Watched::unacknowledged_bytes`).
pub type UnackedProbe = Box<dyn Fn() -> u64 + Send>;

/// A progress bar as a transfer [`Observer`]: bytes, rate, files done,
/// notes kept for the JSON summary, one line per file with `-v`, and the
/// Ctrl-C flag.
pub struct BarObserver {
    bar: ProgressBar,
    output: Output,
    /// On the sender: what the transport has not yet acknowledged, so the
    /// bar shows delivered bytes, not bytes handed to the send buffer.
    unacked: Option<UnackedProbe>,
    /// Bytes already on the receiver (resumed) plus bytes that went
    /// through `on_bytes`.
    moved: u64,
    files_total: u64,
    files_done: u64,
    planned: bool,
    /// The receiving side (for the words of the `-v` lines).
    receiving: bool,
    /// Size and starting offset of the file in progress (for `-v`).
    current: (u64, u64),
    /// Notes for the JSON summary.
    pub notes: Vec<String>,
    /// Paths skipped by the scan (symlinks, special files).
    pub skipped: Vec<String>,
}

impl fmt::Debug for BarObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarObserver")
            .field("moved", &self.moved)
            .field("files_done", &self.files_done)
            .finish_non_exhaustive()
    }
}

impl BarObserver {
    /// A hidden bar until the plan gives its length.
    pub fn new(output: Output) -> Self {
        BarObserver {
            bar: output.bar(0),
            output,
            unacked: None,
            moved: 0,
            files_total: 0,
            files_done: 0,
            planned: false,
            receiving: false,
            current: (0, 0),
            notes: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// The same observer for the receiving side: its `-v` lines say
    /// "received" and "kept" rather than "sent" and "already there".
    pub fn receiving(mut self) -> Self {
        self.receiving = true;
        self
    }

    /// Shows acknowledged bytes: `probe` tells how many of the bytes
    /// written are still unacknowledged.
    pub fn set_unacked_probe(&mut self, probe: UnackedProbe) {
        self.unacked = Some(probe);
    }

    /// True once the receiver answered with its plan: the peer is a real
    /// receiver.
    pub fn planned(&self) -> bool {
        self.planned
    }

    /// Removes the bar from the screen (before any final message).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn show_position(&mut self) {
        let pending = self.unacked.as_ref().map_or(0, |probe| probe());
        self.bar.set_position(self.moved.saturating_sub(pending));
    }

    fn show_files(&self) {
        self.bar.set_prefix(format!(
            "{}/{} file{}",
            self.files_done,
            self.files_total,
            if self.files_total == 1 { "" } else { "s" }
        ));
    }
}

impl Observer for BarObserver {
    fn on_plan(&mut self, files: u64, bytes: u64, _already: u64) {
        self.planned = true;
        self.files_total = files;
        self.bar.set_length(bytes);
        self.bar.set_position(0);
        self.bar.reset_eta();
        self.show_files();
    }
    fn on_file(&mut self, name: &RelPath, size: u64, offset: u64) {
        self.current = (size, offset);
        self.moved += offset;
        self.show_position();
        let mut label = name.to_string();
        if label.chars().count() > 40 {
            let tail: String = label
                .chars()
                .rev()
                .take(39)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            label = format!("…{tail}");
        }
        self.bar.set_message(label);
    }
    fn on_bytes(&mut self, n: u64) {
        self.moved += n;
        self.show_position();
    }
    fn on_file_done(&mut self, name: &RelPath) {
        self.files_done += 1;
        self.show_files();
        if self.output.verbose && self.output.is_human() {
            let line = file_line(self.receiving, name, self.current.0, self.current.1);
            self.bar.suspend(|| eprintln!("{line}"));
        }
    }
    fn on_note(&mut self, message: &str) {
        self.notes.push(message.to_owned());
        if self.output.is_human() {
            self.bar.suspend(|| eprintln!("udt: note: {message}"));
        }
    }
    fn on_skipped(&mut self, path: &str, why: &str) {
        self.skipped.push(path.to_owned());
        self.on_note(&format!("skipping {path}: {why}"));
    }
    fn should_stop(&mut self) -> bool {
        crate::signals::interrupted()
    }
}

/// The `-v` line for a finished file of `size` bytes that started at
/// `offset`: sent or received whole, resumed, or already complete there.
pub fn file_line(receiving: bool, name: &RelPath, size: u64, offset: u64) -> String {
    let whole = if receiving { "received" } else { "sent" };
    if offset == 0 {
        format!("  {whole} {name} ({})", bytes(size))
    } else if offset >= size {
        if receiving {
            format!(
                "  kept {name} (already here and identical, {})",
                bytes(size)
            )
        } else {
            format!("  already there: {name} ({}, identical)", bytes(size))
        }
    } else {
        format!(
            "  resumed {name}: {} of {} {}",
            bytes(size - offset),
            bytes(size),
            if receiving { "received" } else { "sent" }
        )
    }
}

/// `n` bytes in binary units: `1.50 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

/// Bits per second in decimal units: `941.3 Mbit/s`.
pub fn bitrate(bits_per_sec: f64) -> String {
    let (v, unit) = if bits_per_sec >= 1e9 {
        (bits_per_sec / 1e9, "Gbit/s")
    } else if bits_per_sec >= 1e6 {
        (bits_per_sec / 1e6, "Mbit/s")
    } else if bits_per_sec >= 1e3 {
        (bits_per_sec / 1e3, "kbit/s")
    } else {
        (bits_per_sec, "bit/s")
    };
    format!("{v:.1} {unit}")
}

/// `v` rounded to 3 decimals, so JSON shows `0.043`, not
/// `0.043000000000000003`.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Megabits per second of `bytes` over `elapsed` (0 for no time).
pub fn mbps(bytes: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s <= 0.0 {
        0.0
    } else {
        bytes as f64 * 8.0 / s / 1e6
    }
}

/// Parses a byte count with an optional binary suffix: `1500`, `64K`,
/// `256M`, `1G`, `2.5G` (K = 1024).
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let mult: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "bad size {s:?}: use a number with an optional K, M, G or T suffix"
            ))
        }
    };
    let v: f64 = num.parse().map_err(|_| {
        format!("bad size {s:?}: use a number with an optional K, M, G or T suffix")
    })?;
    let bytes = v * mult as f64;
    if !(0.0..1.8e19).contains(&bytes) {
        return Err(format!("size {s:?} out of range"));
    }
    Ok(bytes as u64)
}

/// Parses a rate into bytes per second. The convention of all of `udt`:
/// rates are bits per second with decimal prefixes (`100M` = `100Mbit/s`
/// = 100,000,000 bit/s, as the progress bar and summaries print them);
/// a capital `B` means bytes (`12.5MB/s`, `10MiB/s`).
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "bad rate {s:?}: use bits per second like 100M, 1.5G, 800k or 100Mbit/s, or bytes like 12MB/s"
        )
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("/s")
        .or_else(|| unit.strip_suffix("ps"))
        .unwrap_or(unit);
    let (prefix, rest) = match unit.chars().next() {
        Some(c @ ('k' | 'K' | 'm' | 'M' | 'g' | 'G' | 't' | 'T')) => {
            let binary = unit[1..].starts_with('i');
            let p = match (c.to_ascii_lowercase(), binary) {
                ('k', false) => 1e3,
                ('m', false) => 1e6,
                ('g', false) => 1e9,
                ('t', false) => 1e12,
                ('k', true) => 1024.0,
                ('m', true) => 1024.0 * 1024.0,
                ('g', true) => 1024.0 * 1024.0 * 1024.0,
                _ => 1024f64.powi(4),
            };
            (p, &unit[if binary { 2 } else { 1 }..])
        }
        _ => (1.0, unit),
    };
    let bytes_per_unit = match rest {
        "" | "b" | "bit" | "bits" => 1.0 / 8.0,
        "B" | "byte" | "bytes" => 1.0,
        _ => return Err(bad()),
    };
    let bytes = value * prefix * bytes_per_unit;
    if !(1.0..1.8e19).contains(&bytes) {
        return Err(format!("rate {s:?} out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_the_units_udt_prints() {
        assert_eq!(parse_rate("100M"), Ok(12_500_000));
        assert_eq!(parse_rate("100m"), Ok(12_500_000));
        assert_eq!(parse_rate("100Mbit/s"), Ok(12_500_000));
        assert_eq!(parse_rate("100 Mbit/s"), Ok(12_500_000));
        assert_eq!(parse_rate("100mbit"), Ok(12_500_000));
        assert_eq!(parse_rate("100Mbps"), Ok(12_500_000));
        assert_eq!(parse_rate("1.5G"), Ok(187_500_000));
        assert_eq!(parse_rate("800k"), Ok(100_000));
        assert_eq!(parse_rate("8000"), Ok(1000));
        assert_eq!(parse_rate("12MB/s"), Ok(12_000_000));
        assert_eq!(parse_rate("10MiB/s"), Ok(10 << 20));
        // What the bar prints parses back to the same rate.
        let shown = bitrate(941.3e6);
        assert_eq!(parse_rate(&shown), Ok(117_662_500));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10Q").is_err());
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1500"), Ok(1500));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn verbose_file_lines_say_what_happened() {
        let name = RelPath::parse(b"dir/a.bin", &crate::proto::Limits::default()).unwrap();
        assert_eq!(
            file_line(true, &name, 2048, 0),
            "  received dir/a.bin (2.00 KiB)"
        );
        assert_eq!(
            file_line(false, &name, 2048, 0),
            "  sent dir/a.bin (2.00 KiB)"
        );
        assert_eq!(
            file_line(true, &name, 2048, 1024),
            "  resumed dir/a.bin: 1.00 KiB of 2.00 KiB received"
        );
        assert_eq!(
            file_line(true, &name, 2048, 2048),
            "  kept dir/a.bin (already here and identical, 2.00 KiB)"
        );
        assert_eq!(
            file_line(false, &name, 2048, 2048),
            "  already there: dir/a.bin (2.00 KiB, identical)"
        );
    }

    #[test]
    fn numbers_format() {
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(256 << 20), "256.00 MiB");
        assert_eq!(bitrate(941.26e6), "941.3 Mbit/s");
        assert_eq!(bitrate(2.5e9), "2.5 Gbit/s");
        assert!((mbps(125_000_000, Duration::from_secs(1)) - 1000.0).abs() < 1e-9);
        assert_eq!(mbps(1, Duration::ZERO), 0.0);
    }

    #[test]
    fn exit_codes_by_kind() {
        assert_eq!(
            io_exit_code(&io::Error::from(io::ErrorKind::ConnectionRefused)),
            exit::NETWORK
        );
        assert_eq!(
            io_exit_code(&io::Error::from(io::ErrorKind::TimedOut)),
            exit::NETWORK
        );
        assert_eq!(
            io_exit_code(&io::Error::from_raw_os_error(libc::ENOSPC)),
            exit::LOCAL_IO
        );
        assert_eq!(io_exit_code(&io::Error::other("x")), exit::FAILURE);
    }
}
