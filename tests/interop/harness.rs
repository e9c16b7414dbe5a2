//! Harness of the UDT4 interop tests: builds the C++ peers against Debian's
//! libudt once per test binary, runs each peer in a fresh process with a
//! hard time limit, parses its `READY`/`CONNECTED`/`RESULT` lines, and
//! provides the data pattern and checksum the peers use
//! (`tests/interop/peers/common.h`) plus our side's senders and receivers.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The C++ peer programs, one source file each in `tests/interop/peers/`.
pub const PEERS: [&str; 5] = [
    "stream_server",
    "stream_client",
    "msg_server",
    "msg_client",
    "rendezvous",
];

const INSTALL_HINT: &str = "the UDT4 interop tests need Debian's libudt (UDT 4.11) and g++: \
     run `apt-get install -y libudt-dev g++` (scripts/test.sh installs them)";

/// Serializes the interop tests of one binary: each one moves hundreds of
/// megabytes or measures time, and two at once on a 2-core machine would
/// make both slow and the timing checks flaky.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts `env_logger` once (quiet unless `RUST_LOG` is set).
pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// The directory holding the built peers. Builds them on first use, or
/// reuses binaries newer than their sources. Panics, failing the test, when
/// libudt or g++ is missing: these tests must never pass by skipping.
pub fn peers_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/peers");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("udt4-peers");
        std::fs::create_dir_all(&out).expect("create the peer build directory");
        assert!(
            Path::new("/usr/include/udt/udt.h").exists(),
            "/usr/include/udt/udt.h not found: {INSTALL_HINT}"
        );
        let header = src.join("common.h");
        let stale: Vec<&str> = PEERS
            .iter()
            .copied()
            .filter(|name| {
                let bin = out.join(name);
                let cpp = src.join(format!("{name}.cpp"));
                !is_newer(&bin, &cpp) || !is_newer(&bin, &header)
            })
            .collect();
        // Two compilers at once: the machine has two cores.
        for pair in stale.chunks(2) {
            let builds: Vec<_> = pair
                .iter()
                .map(|name| {
                    let cmd = Command::new("g++")
                        .args(["-O2", "-Wall", "-o"])
                        .arg(out.join(name))
                        .arg(src.join(format!("{name}.cpp")))
                        .args(["-ludt", "-lpthread"])
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap_or_else(|e| panic!("cannot run g++ ({e}): {INSTALL_HINT}"));
                    (name, cmd)
                })
                .collect();
            for (name, cmd) in builds {
                let output = cmd.wait_with_output().expect("wait for g++");
                assert!(
                    output.status.success(),
                    "building peer {name} failed ({INSTALL_HINT}):\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
        out
    })
}

fn is_newer(a: &Path, b: &Path) -> bool {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (m(a), m(b)) {
        (Some(a), Some(b)) => a >= b,
        _ => false,
    }
}

/// The `key=value` fields of one peer output line.
#[derive(Clone, Debug)]
pub struct Fields {
    /// The whole line, for messages.
    pub line: String,
    map: HashMap<String, String>,
}

impl Fields {
    /// Parses `WORD key=value key="quoted value" ...`.
    pub fn parse(line: &str) -> Fields {
        let mut map = HashMap::new();
        let mut rest = line.split_once(' ').map_or("", |(_, r)| r).trim();
        while !rest.is_empty() {
            let Some((key, after)) = rest.split_once('=') else {
                break;
            };
            let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"').unwrap_or(quoted.len());
                (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
            } else {
                after.split_once(' ').unwrap_or((after, ""))
            };
            map.insert(key.trim().to_string(), value.to_string());
            rest = next.trim_start();
        }
        Fields {
            line: line.to_string(),
            map,
        }
    }

    /// A field's text; panics naming the line if absent.
    pub fn get(&self, key: &str) -> &str {
        self.map
            .get(key)
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.line))
    }

    /// A decimal integer field.
    pub fn num(&self, key: &str) -> i64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key}= is not a number in {:?}", self.line))
    }

    /// A hexadecimal (checksum) field.
    pub fn hex(&self, key: &str) -> u64 {
        u64::from_str_radix(self.get(key), 16)
            .unwrap_or_else(|_| panic!("{key}= is not hex in {:?}", self.line))
    }

    /// An address field.
    pub fn addr(&self, key: &str) -> SocketAddr {
        self.get(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key}= is not an address in {:?}", self.line))
    }
}

/// One running UDT4 peer process. Dropping it kills the process (by PID)
/// and reaps it.
pub struct Peer {
    name: String,
    child: Child,
    lines: Receiver<String>,
    transcript: Arc<Mutex<Vec<String>>>,
    /// The stdout and stderr readers; they end when the process has exited
    /// and its pipes are closed.
    readers: Vec<JoinHandle<()>>,
}

impl Peer {
    /// Starts peer `name` with `args`. `--timeout` (the peer's own alarm)
    /// is added from `limit` so that even a leaked process dies.
    pub fn spawn(name: &str, args: &[String], limit: Duration) -> Peer {
        let bin = peers_dir().join(name);
        let mut child = Command::new(&bin)
            .args(args)
            .arg("--timeout")
            .arg((limit.as_secs() + 5).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let log = Arc::clone(&transcript);
        let out_reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::clone(&transcript);
        let err_reader = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            if !text.is_empty() {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("stderr: {text}"));
            }
        });
        Peer {
            name: name.to_string(),
            child,
            lines,
            transcript,
            readers: vec![out_reader, err_reader],
        }
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the peer printed so far.
    pub fn transcript(&self) -> String {
        self.transcript
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Waits for the next line starting with `word` (READY, CONNECTED,
    /// RESULT) and returns its fields. Panics with the transcript on an
    /// ERROR line, on exit, or after `timeout`.
    pub fn expect_line(&mut self, word: &str, timeout: Duration) -> Fields {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(word) => return Fields::parse(&line),
                Ok(line) if line.starts_with("ERROR") => {
                    panic!(
                        "UDT4 peer {} failed: {line}\n{}",
                        self.name,
                        self.transcript()
                    )
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!(
                    "UDT4 peer {} printed no {word} line within {timeout:?}:\n{}",
                    self.name,
                    self.transcript()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!(
                        "UDT4 peer {} exited ({status:?}) before printing {word}:\n{}",
                        self.name,
                        self.transcript()
                    )
                }
            }
        }
    }

    /// `ACCEPTED` of a listening peer: it has accepted a connection and
    /// asked libudt for its socket names. libudt refuses them once the
    /// connection is broken, so a test that checks the names waits for this
    /// line before its side closes.
    pub fn accepted(&mut self) -> Fields {
        self.expect_line("ACCEPTED", Duration::from_secs(10))
    }

    /// `READY addr=` of a listening peer.
    pub fn ready_addr(&mut self) -> SocketAddr {
        self.expect_line("READY", Duration::from_secs(10))
            .addr("addr")
    }

    /// Waits for the process to exit; kills it and panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on a peer") {
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "UDT4 peer {} still running after {timeout:?}; killed:\n{}",
                    self.name,
                    self.transcript()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for exit and asserts success.
    pub fn expect_success(&mut self, timeout: Duration) {
        let status = self.wait_exit(timeout);
        // The process is gone, so its pipes are at end of file: once the
        // readers have finished, the transcript holds every last line.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        assert!(
            status.success(),
            "UDT4 peer {} exited with {status}:\n{}",
            self.name,
            self.transcript()
        );
    }

    /// Kills the process (SIGKILL to its PID) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Convenience: `["--k", "v", ...]` as owned strings.
pub fn args(pairs: &[(&str, String)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(k, v)| [format!("--{k}"), v.clone()])
        .collect()
}

// ---------------------------------------------------------------------------
// The data pattern and checksum shared with the C++ peers (common.h).

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The byte stream of a seed: byte i is byte (i % 8) of
/// `mix(seed + (i / 8) * GOLDEN)`, little-endian.
#[derive(Clone, Debug)]
pub struct Pattern {
    seed: u64,
    offset: u64,
}

impl Pattern {
    /// The stream of `seed`, from offset 0.
    pub fn new(seed: u64) -> Self {
        Pattern { seed, offset: 0 }
    }

    fn word(&self, index: u64) -> [u8; 8] {
        mix(self.seed.wrapping_add(index.wrapping_mul(GOLDEN))).to_le_bytes()
    }

    /// Fills `buf` with the next bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut i = 0;
        while i < buf.len() {
            let at = self.offset + i as u64;
            let word = self.word(at / 8);
            let start = (at % 8) as usize;
            let n = (8 - start).min(buf.len() - i);
            buf[i..i + n].copy_from_slice(&word[start..start + n]);
            i += n;
        }
        self.offset += buf.len() as u64;
    }

    /// Compares `buf` with the next bytes; the index of the first
    /// difference, if any. Advances either way.
    pub fn check(&mut self, buf: &[u8]) -> Option<usize> {
        let mut i = 0;
        let mut bad = None;
        while i < buf.len() {
            let at = self.offset + i as u64;
            let word = self.word(at / 8);
            let start = (at % 8) as usize;
            let n = (8 - start).min(buf.len() - i);
            if buf[i..i + n] != word[start..start + n] {
                let k = (0..n).find(|&k| buf[i + k] != word[start + k]).unwrap_or(0);
                bad = Some(i + k);
                break;
            }
            i += n;
        }
        self.offset += buf.len() as u64;
        bad
    }

    /// Bytes produced or checked so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// FNV-1a, 64 bits.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xCBF2_9CE4_8422_2325)
    }
}

impl Fnv {
    /// Adds bytes.
    pub fn update(&mut self, buf: &[u8]) {
        for &b in buf {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01B3);
        }
    }

    /// The checksum so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// FNV-1a of `len` bytes of pattern `seed`: what a peer reports after
/// sending or receiving them.
pub fn pattern_fnv(seed: u64, len: u64) -> u64 {
    let mut p = Pattern::new(seed);
    let mut f = Fnv::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        p.fill(&mut buf[..n]);
        f.update(&buf[..n]);
        left -= n as u64;
    }
    f.value()
}

/// Size of message `index` of stream `seed` (common.h `message_size`).
pub fn message_size(seed: u64, index: u64, min: usize, max: usize) -> usize {
    let min = min.max(8);
    let max = max.max(min);
    let span = (max - min) as u64 + 1;
    min + (mix(seed ^ index.wrapping_mul(GOLDEN).wrapping_add(1)) % span) as usize
}

/// Builds message `index` of stream `seed` into `out`: the index as 8
/// little-endian bytes, then the message's own pattern.
pub fn build_message(seed: u64, index: u64, min: usize, max: usize, out: &mut Vec<u8>) {
    let size = message_size(seed, index, min, max);
    out.clear();
    out.resize(size, 0);
    out[..8].copy_from_slice(&index.to_le_bytes());
    Pattern::new(mix(seed.wrapping_add(index).wrapping_add(0x1234))).fill(&mut out[8..]);
}

/// What a receiver of a message stream saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageTally {
    /// Messages received.
    pub msgs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Wrong size, content or index.
    pub bad: u64,
    /// Indices seen twice.
    pub dups: u64,
    /// Messages whose index is not the previous one + 1.
    pub out_of_order: u64,
    /// Different indices seen.
    pub distinct: u64,
}

/// Checks received messages against stream `seed` of `count` messages.
#[derive(Debug)]
pub struct MessageChecker {
    seed: u64,
    min: usize,
    max: usize,
    seen: Vec<bool>,
    last: Option<u64>,
    expected: Vec<u8>,
    /// The tally so far.
    pub tally: MessageTally,
}

impl MessageChecker {
    /// A checker for `count` messages of sizes in `[min, max]`.
    pub fn new(seed: u64, count: usize, min: usize, max: usize) -> Self {
        MessageChecker {
            seed,
            min,
            max,
            seen: vec![false; count],
            last: None,
            expected: Vec::new(),
            tally: MessageTally::default(),
        }
    }

    /// Records one received message.
    pub fn record(&mut self, msg: &[u8]) {
        let t = &mut self.tally;
        t.msgs += 1;
        t.bytes += msg.len() as u64;
        let Some(head) = msg.get(..8) else {
            t.bad += 1;
            return;
        };
        let index = u64::from_le_bytes(head.try_into().unwrap_or_default());
        let Some(seen) = self.seen.get_mut(index as usize) else {
            t.bad += 1;
            return;
        };
        build_message(self.seed, index, self.min, self.max, &mut self.expected);
        if msg != &self.expected[..] {
            t.bad += 1;
        }
        if *seen {
            t.dups += 1;
        } else {
            *seen = true;
            t.distinct += 1;
        }
        if self.last.map_or(index != 0, |l| index != l + 1) {
            t.out_of_order += 1;
        }
        self.last = Some(index);
    }

    /// True once every message arrived exactly once, intact.
    pub fn is_complete(&self) -> bool {
        self.tally.distinct == self.seen.len() as u64 && self.tally.bad == 0 && self.tally.dups == 0
    }
}

// ---------------------------------------------------------------------------
// Our side of a transfer.

/// Writes `len` bytes of pattern `seed` to `w`; returns their FNV-1a.
pub fn write_pattern(w: &mut impl Write, seed: u64, len: u64) -> io::Result<u64> {
    let mut p = Pattern::new(seed);
    let mut f = Fnv::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        p.fill(&mut buf[..n]);
        f.update(&buf[..n]);
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(f.value())
}

/// What a stream receiver saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes read.
    pub bytes: u64,
    /// FNV-1a of them.
    pub fnv: u64,
    /// Offset of the first byte that differs from the pattern.
    pub mismatch: Option<u64>,
}

/// Reads from `r` until `expect` bytes (or end of stream with `None`),
/// checking pattern `seed`. The error, if reading failed, comes with what
/// had arrived.
pub fn read_pattern(
    r: &mut impl Read,
    seed: u64,
    expect: Option<u64>,
) -> (Received, Option<io::Error>) {
    let mut p = Pattern::new(seed);
    let mut f = Fnv::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = Received {
        bytes: 0,
        fnv: 0,
        mismatch: None,
    };
    let mut error = None;
    loop {
        let want = match expect {
            Some(e) if got.bytes >= e => break,
            Some(e) => (e - got.bytes).min(buf.len() as u64) as usize,
            None => buf.len(),
        };
        match r.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => {
                f.update(&buf[..n]);
                if let Some(bad) = p.check(&buf[..n]) {
                    got.mismatch.get_or_insert(got.bytes + bad as u64);
                }
                got.bytes += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    got.fnv = f.value();
    (got, error)
}

// ---------------------------------------------------------------------------
// CPU load.

/// Busy loops in child processes, to starve the peers of CPU the way a
/// loaded machine does. Each loop is `timeout SECS sh -c 'while :; do :; done'`,
/// so it ends by itself after `limit` even if the test process dies; dropping
/// the value ends them earlier, by PID (SIGTERM to `timeout`, which passes it
/// on to its shell), and reaps them.
pub struct CpuLoad {
    loops: Vec<Child>,
}

impl CpuLoad {
    /// Starts `n` busy loops that last at most `limit`.
    pub fn start(n: usize, limit: Duration) -> CpuLoad {
        let secs = limit.as_secs().max(1).to_string();
        let loops = (0..n)
            .map(|_| {
                Command::new("timeout")
                    .arg(&secs)
                    .args(["sh", "-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start a busy loop with timeout(1): {e}"))
            })
            .collect();
        CpuLoad { loops }
    }

    /// The PIDs of the `timeout` processes.
    pub fn pids(&self) -> Vec<u32> {
        self.loops.iter().map(Child::id).collect()
    }

    /// True while every loop is still running.
    pub fn all_running(&mut self) -> bool {
        self.loops
            .iter_mut()
            .all(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        for child in &mut self.loops {
            if let Ok(None) = child.try_wait() {
                if let Ok(pid) = i32::try_from(child.id()) {
                    // SAFETY: kill(2) with the PID of a child we spawned and
                    // have not reaped yet, so the PID cannot have been reused.
                    unsafe {
                        libc::kill(pid, libc::SIGTERM);
                    }
                }
            }
            let _ = child.wait();
        }
    }
}

/// A UDT4 `stream_server` receiving `bytes` unchecked (benchmarks): the
/// peer and the address it listens on.
pub fn udt4_stream_receiver(bytes: u64, limit: Duration) -> (Peer, SocketAddr) {
    let mut server = Peer::spawn(
        "stream_server",
        &args(&[
            ("bind", "127.0.0.1:0".into()),
            ("expect", bytes.to_string()),
            ("verify", "0".into()),
        ]),
        limit,
    );
    let addr = server.ready_addr();
    (server, addr)
}

/// The transfer time a [`udt4_stream_receiver`] measured for `bytes`.
pub fn udt4_stream_elapsed(server: &mut Peer, bytes: u64, limit: Duration) -> Duration {
    let r = server.expect_line("RESULT", limit);
    assert_eq!(r.num("bytes") as u64, bytes, "{}", r.line);
    let ms: f64 = r.get("elapsed_ms").parse().expect("elapsed_ms");
    server.expect_success(Duration::from_secs(30));
    Duration::from_secs_f64(ms / 1000.0)
}

/// A UDT4 `stream_client` sending `bytes` unchecked to `to` (benchmarks).
pub fn udt4_stream_sender(to: SocketAddr, bytes: u64, limit: Duration) -> Peer {
    Peer::spawn(
        "stream_client",
        &args(&[
            ("connect", to.to_string()),
            ("bytes", bytes.to_string()),
            ("verify", "0".into()),
        ]),
        limit,
    )
}

/// Our receiver for the benchmarks: reads `bytes` from the next stream
/// `listener` accepts (waiting at most `limit` for it and for each read)
/// and returns the time from accept to the last byte.
pub fn ours_receive(listener: &udt::UdtListener, bytes: u64, limit: Duration) -> Duration {
    let (mut stream, _) = listener.accept_timeout(limit).expect("accept");
    stream.set_read_timeout(Some(limit));
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    while got < bytes {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "stream ended after {got} of {bytes} bytes");
        got += n as u64;
    }
    let elapsed = start.elapsed();
    // Stay until the sender's close is through.
    let _ = stream.read(&mut buf);
    elapsed
}
