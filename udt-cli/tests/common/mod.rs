//! Helpers for the process tests: start `udt` with a time bound, learn the
//! port it listens on from its stderr, kill only the processes we started
//! (by their PID, on drop), scratch directories, tree comparison.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// The `udt` binary under test.
pub fn udt() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_udt"));
    c.env("RUST_LOG", "warn");
    // `udt send` and `udt recv` are secure by default (issue 11): both
    // sides of every test transfer share this code (the --code option's
    // environment variable); tests of the code workflow remove it.
    c.env("UDT_CODE", "test-code");
    c
}

/// Heavy tests (hundreds of MiB) run one at a time: the machine has two
/// cores and the transfers are timed.
pub fn heavy() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process killed (by its own PID) when dropped, with its stderr
/// (and its stdout, when piped) collected by threads, so that it never
/// blocks on a full pipe while a test waits for it to exit.
pub struct Proc {
    pub child: Child,
    pub name: String,
    stderr_lines: mpsc::Receiver<String>,
    stderr_all: std::sync::Arc<Mutex<String>>,
    /// The thread collecting stderr: it ends at end of file, once the
    /// process has exited; `wait` joins it so `stderr()` is then complete.
    stderr_reader: Option<thread::JoinHandle<()>>,
    /// The thread collecting a piped stdout: its lines as they come, and
    /// all of it once the process has exited.
    stdout_lines: Option<mpsc::Receiver<String>>,
    stdout_reader: Option<thread::JoinHandle<Vec<u8>>>,
}

impl Proc {
    /// Spawns `cmd` with stderr captured (stdout as the command set it,
    /// else null).
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn udt");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let all = std::sync::Arc::new(Mutex::new(String::new()));
        let all2 = all.clone();
        let label = name.to_owned();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("UDT_TEST_VERBOSE").is_some() {
                    eprintln!("[{label}] {line}");
                }
                all2.lock().unwrap().push_str(&line);
                all2.lock().unwrap().push('\n');
                let _ = tx.send(line);
            }
        });
        let (stdout_lines, stdout_reader) = match child.stdout.take() {
            Some(out) => {
                let (tx, rx) = mpsc::channel();
                (
                    Some(rx),
                    Some(thread::spawn(move || collect_stdout(out, &tx))),
                )
            }
            None => (None, None),
        };
        Proc {
            child,
            name: name.to_owned(),
            stderr_lines: rx,
            stderr_all: all,
            stderr_reader: Some(reader),
            stdout_lines,
            stdout_reader,
        }
    }

    /// Waits for the "listening on ADDR (" line and returns ADDR.
    pub fn listening_addr(&self, within: Duration) -> SocketAddr {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stderr_lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!("{}: no 'listening on' line within {within:?}", self.name)
            });
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split(' ').next().unwrap();
                return addr
                    .parse()
                    .unwrap_or_else(|_| panic!("bad address in {line:?}"));
            }
        }
    }

    /// Waits for a stderr line holding `marker` and returns what follows
    /// it on that line.
    pub fn line_after(&self, marker: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .stderr_lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{}: no {marker:?} line within {within:?}", self.name));
            if let Some(rest) = line.split(marker).nth(1) {
                return rest.to_string();
            }
        }
    }

    /// Waits at most `limit` for the exit; kills and panics after that.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The pipe is at end of file now: once the reader is done,
                // every line the process wrote is in `stderr()`.
                if let Some(reader) = self.stderr_reader.take() {
                    let _ = reader.join();
                }
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not finish within {limit:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit and returns the exit code (panics on a signal).
    pub fn code(&mut self, limit: Duration) -> i32 {
        let status = self.wait(limit);
        status.code().unwrap_or_else(|| {
            panic!(
                "{} was killed by a signal; stderr:\n{}",
                self.name,
                self.stderr()
            )
        })
    }

    /// Everything it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr_all.lock().unwrap().clone()
    }

    /// Kills it now (SIGKILL, this PID only) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the next line on its stdout (piped) and returns it.
    pub fn first_stdout_line(&mut self, within: Duration) -> String {
        self.stdout_lines
            .as_ref()
            .expect("stdout piped")
            .recv_timeout(within)
            .unwrap_or_else(|_| panic!("{}: no stdout line within {within:?}", self.name))
    }

    /// All of its stdout (when piped), once it has closed it (exited).
    pub fn stdout_string(&mut self) -> String {
        let out = self
            .stdout_reader
            .take()
            .map(|r| r.join().unwrap_or_default())
            .unwrap_or_default();
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Reads `out` to its end, sending each complete line on `lines` as it
/// comes; returns every byte.
fn collect_stdout(mut out: impl Read, lines: &mpsc::Sender<String>) -> Vec<u8> {
    let mut all = Vec::new();
    let mut line_start = 0;
    let mut buf = [0u8; 64 * 1024];
    while let Ok(n) = out.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        while let Some(end) = all[line_start..].iter().position(|&b| b == b'\n') {
            let line = &all[line_start..line_start + end];
            let _ = lines.send(String::from_utf8_lossy(line).into_owned());
            line_start += end + 1;
        }
    }
    all
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes `len` deterministic pseudo-random bytes to `path`.
pub fn write_random(path: &Path, len: u64, seed: u64) {
    let mut f = fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut state = seed | 1;
    let mut left = len;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            w.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
}

/// BLAKE3 of a file.
pub fn hash(path: &Path) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    let mut f = fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return h.finalize();
        }
        h.update(&buf[..n]);
    }
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn set_mtime(p: &Path, t: std::time::SystemTime) {
    fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Asserts two trees are the same: names, kinds, contents, modes, mtimes.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let ma = fs::symlink_metadata(a).unwrap();
    let mb = fs::symlink_metadata(b).unwrap_or_else(|e| panic!("{}: {e}", b.display()));
    assert_eq!(ma.is_dir(), mb.is_dir(), "{}", b.display());
    assert_eq!(mode(a), mode(b), "mode of {}", b.display());
    assert_eq!(
        ma.modified().unwrap(),
        mb.modified().unwrap(),
        "mtime of {}",
        b.display()
    );
    if ma.is_dir() {
        let mut na: Vec<_> = fs::read_dir(a)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let mut nb: Vec<_> = fs::read_dir(b)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        na.sort();
        nb.sort();
        assert_eq!(na, nb, "entries of {}", b.display());
        for n in na {
            assert_same_tree(&a.join(&n), &b.join(&n));
        }
    } else {
        assert_eq!(ma.len(), mb.len(), "size of {}", b.display());
        assert_eq!(hash(a), hash(b), "contents of {}", b.display());
    }
}

/// Every path under `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Starts `udt recv` on a free loopback port into `out` with `extra`
/// arguments and returns it with its address.
pub fn start_recv(name: &str, out: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = udt();
    cmd.arg("recv")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--out")
        .arg(out)
        .args(extra);
    cmd.stdout(Stdio::piped());
    let p = Proc::spawn(name, cmd);
    let addr = p.listening_addr(Duration::from_secs(20));
    (p, addr)
}

/// Starts `udt send` of `paths` to `addr` with `extra` arguments, JSON
/// summary on stdout.
pub fn start_send(name: &str, paths: &[&Path], addr: SocketAddr, extra: &[&str]) -> Proc {
    let mut cmd = udt();
    cmd.arg("send")
        .arg("--json")
        .args(extra)
        .args(paths)
        .arg(addr.to_string());
    cmd.stdout(Stdio::piped());
    Proc::spawn(name, cmd)
}

/// The JSON summary a process printed on stdout.
pub fn json_of(p: &mut Proc) -> serde_json::Value {
    let out = p.stdout_string();
    let line = out
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{}: no JSON on stdout; stderr:\n{}", p.name, p.stderr()));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: bad JSON {line:?}: {e}", p.name))
}

/// Transport options of a test that speaks the protocol to `udt recv`
/// itself: the shared test code (see [`udt`]), as the receiver expects.
pub fn test_net() -> udt_cli::net::NetOptions {
    udt_cli::net::NetOptions {
        security: udt_mux::Security::Code("test-code".into()),
        ..udt_cli::net::NetOptions::default()
    }
}

/// Starts a `udt bench --server --once` of its own, its stdout to
/// `server_stdout`, and a `udt bench` client with `client_args` against
/// it, its stdout piped: (server, client). A server's piped stdout must be
/// read as it goes (`first_stdout_line`) unless the test is small: it
/// prints a line per stream per second, and a full pipe would stop it.
pub fn start_bench(name: &str, server_stdout: Stdio, client_args: &[&str]) -> (Proc, Proc) {
    let mut server = udt();
    server
        .args(["bench", "--server", "127.0.0.1:0", "--once"])
        .stdout(server_stdout);
    let server = Proc::spawn(&format!("{name}-server"), server);
    let addr = server.listening_addr(Duration::from_secs(20));
    let mut client = udt();
    client
        .arg("bench")
        .args(client_args)
        .arg(addr.to_string())
        .stdout(Stdio::piped());
    (server, Proc::spawn(&format!("{name}-client"), client))
}
