//! Helpers shared by the loopback tests: configurations with short
//! timeouts, deterministic payloads, a lossy delaying UDP relay.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use udt_core::rng::Rng;
use udt_mux::{Config, Endpoint, EndpointConfig};

pub fn init() {
    let _ = env_logger::builder().is_test(true).try_init();
}

pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A configuration for tests: small buffers (many connections stay cheap)
/// and short timeouts (failures show up fast).
pub fn config() -> Config {
    let mut c = Config::default();
    c.send_buffer_packets = 1024;
    c.recv_buffer_packets = 1024;
    c.linger = Some(Duration::from_secs(10));
    c.connect_timeout = Duration::from_secs(2);
    c.rendezvous_timeout = Duration::from_secs(5);
    c.peer_idle_timeout = Duration::from_secs(3);
    c
}

pub fn bind(config: Config) -> Endpoint {
    bind_at(any_port(), config).expect("bind 127.0.0.1:0")
}

/// An endpoint at `addr` whose connections use `config` by default.
pub fn bind_at(addr: impl std::net::ToSocketAddrs, config: Config) -> std::io::Result<Endpoint> {
    Endpoint::bind_with(addr, config, EndpointConfig::default())
}

/// `len` deterministic bytes for stream `seed`: every stream differs.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The same bytes as [`pattern`], produced piece by piece so that large
/// transfers need no copy of the whole payload.
pub struct PatternStream {
    rng: Rng,
    word: [u8; 8],
    used: usize,
}

impl PatternStream {
    pub fn new(seed: u64) -> PatternStream {
        PatternStream {
            rng: Rng::new(seed),
            word: [0; 8],
            used: 8,
        }
    }

    /// Fills `out` with the next bytes of the pattern.
    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            if self.used == 8 {
                self.word = self.rng.next_u64().to_le_bytes();
                self.used = 0;
            }
            *b = self.word[self.used];
            self.used += 1;
        }
    }
}

/// Reads `total` bytes and compares them with the pattern of `seed`,
/// chunk by chunk (no copy of the whole payload per connection).
pub fn read_pattern(stream: &mut impl std::io::Read, seed: u64, total: usize) {
    let mut want = PatternStream::new(seed);
    let mut buf = vec![0u8; 64 << 10];
    let mut expected = vec![0u8; 64 << 10];
    let mut at = 0;
    while at < total {
        let n = stream
            .read(&mut buf[..(total - at).min(64 << 10)])
            .expect("read");
        assert!(n > 0, "stream {seed}: early end of stream at {at}");
        want.fill(&mut expected[..n]);
        assert!(
            buf[..n] == expected[..n],
            "stream {seed}: bytes differ near {at}"
        );
        at += n;
    }
}

/// Writes `total` bytes of the pattern of `seed`.
pub fn write_pattern(stream: &mut impl std::io::Write, seed: u64, total: usize) {
    let mut pattern = PatternStream::new(seed);
    let mut buf = vec![0u8; 64 << 10];
    let mut left = total;
    while left > 0 {
        let n = left.min(buf.len());
        pattern.fill(&mut buf[..n]);
        stream.write_all(&buf[..n]).expect("write");
        left -= n;
    }
}

/// Spawns a named thread with a small stack (tests start hundreds).
pub fn spawn<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    std::thread::Builder::new()
        .name(name)
        .stack_size(256 << 10)
        .spawn(f)
        .expect("spawn test thread")
}

/// A UDP relay between a client and a server that delays every datagram
/// and drops a fraction of the client's data packets (never control
/// packets, so handshakes and ACKs get through).
pub struct Relay {
    /// Where the client should connect.
    pub front: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Data packets dropped so far.
    pub dropped: Arc<AtomicU64>,
}

impl Relay {
    pub fn start(server: SocketAddr, delay: Duration, data_loss: f64, seed: u64) -> Relay {
        let front = UdpSocket::bind(any_port()).unwrap();
        let back = UdpSocket::bind(any_port()).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_micros(500)))
                .unwrap();
        }
        let front_addr = front.local_addr().unwrap();
        let front = Arc::new(front);
        let back = Arc::new(back);
        let client: Arc<parking_lot::Mutex<Option<SocketAddr>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        {
            // client -> server, lossy
            let (front, back, client, stop, dropped) = (
                front.clone(),
                back.clone(),
                client.clone(),
                stop.clone(),
                dropped.clone(),
            );
            threads.push(spawn("relay-up".into(), move || {
                let mut rng = Rng::new(seed);
                pump(&front, &back, &stop, delay, |from, data| {
                    *client.lock() = Some(from);
                    let is_data = data.first().is_some_and(|b| b & 0x80 == 0);
                    if is_data && rng.chance(data_loss) {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        None
                    } else {
                        Some(server)
                    }
                });
            }));
        }
        {
            // server -> client
            let (front, back, client, stop) =
                (front.clone(), back.clone(), client.clone(), stop.clone());
            threads.push(spawn("relay-down".into(), move || {
                pump(&back, &front, &stop, delay, |_, _| *client.lock());
            }));
        }
        Relay {
            front: front_addr,
            stop,
            threads,
            dropped,
        }
    }
}

/// Moves datagrams from `input` to `output` after `delay`, in order.
fn pump(
    input: &UdpSocket,
    output: &UdpSocket,
    stop: &AtomicBool,
    delay: Duration,
    mut route: impl FnMut(SocketAddr, &[u8]) -> Option<SocketAddr>,
) {
    let mut queue: VecDeque<(Instant, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, from)) = input.recv_from(&mut buf) {
            if let Some(to) = route(from, &buf[..n]) {
                queue.push_back((Instant::now() + delay, to, buf[..n].to_vec()));
            }
        }
        let now = Instant::now();
        while queue.front().is_some_and(|(at, _, _)| *at <= now) {
            let (_, to, data) = queue.pop_front().unwrap();
            let _ = output.send_to(&data, to);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Busy loops in child processes that starve the endpoints' threads of CPU
/// the way a loaded machine does: each is `timeout SECS sh -c 'while :; do
/// :; done'`, so it ends by itself after `limit` even if the test dies.
/// Dropping the value ends them by PID (SIGTERM to `timeout`, which passes
/// it on to its shell) and reaps them.
pub struct CpuLoad {
    loops: Vec<std::process::Child>,
}

impl CpuLoad {
    /// Starts `n` busy loops that last at most `limit`.
    pub fn start(n: usize, limit: Duration) -> CpuLoad {
        let secs = limit.as_secs().max(1).to_string();
        let loops = (0..n)
            .map(|_| {
                std::process::Command::new("timeout")
                    .arg(&secs)
                    .args(["sh", "-c", "while :; do :; done"])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("start a busy loop with timeout(1)")
            })
            .collect();
        CpuLoad { loops }
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
                    // SAFETY: kill(2) on the PID of a child we spawned and
                    // have not reaped, so it cannot name another process.
                    unsafe {
                        libc::kill(pid, libc::SIGTERM);
                    }
                }
            }
            let _ = child.wait();
        }
    }
}
