//! A test harness on top of the simulator: two UDT nodes on a simulated
//! link, a deterministic byte pattern that needs no large buffers, and a
//! stream-transfer driver that checks every byte. Used by the scenario
//! tests and the goodput benchmark.

use std::net::SocketAddr;
use std::time::Duration;

use super::{LinkConfig, Loss, NodeId, Sim, UdtNode};
use crate::config::Config;
use crate::error::{ReadError, WriteError};
use crate::seq::{SeqNumber, SocketId};
use crate::stats::Stats;

/// The 8-byte word holding offset `i` of the test stream `stream`.
fn pattern_word(stream: u64, word: u64) -> u64 {
    let mut z = word
        .wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The byte at offset `i` of the test stream `stream`.
pub fn pattern_byte(stream: u64, i: u64) -> u8 {
    (pattern_word(stream, i / 8) >> ((i % 8) * 8)) as u8
}

/// Fills `buf` with the pattern starting at `offset`.
pub fn fill_pattern(stream: u64, offset: u64, buf: &mut [u8]) {
    let mut i = offset;
    let mut k = 0;
    while k < buf.len() {
        let word = pattern_word(stream, i / 8).to_le_bytes();
        let start = (i % 8) as usize;
        let n = (8 - start).min(buf.len() - k);
        buf[k..k + n].copy_from_slice(&word[start..start + n]);
        k += n;
        i += n as u64;
    }
}

/// Index of the first byte of `data` that differs from the pattern at
/// `offset`, if any.
pub fn check_pattern(stream: u64, offset: u64, data: &[u8]) -> Option<u64> {
    let mut expected = [0u8; 4096];
    for (c, chunk) in data.chunks(expected.len()).enumerate() {
        let at = offset + (c * expected.len()) as u64;
        fill_pattern(stream, at, &mut expected[..chunk.len()]);
        if chunk != &expected[..chunk.len()] {
            let k = chunk
                .iter()
                .zip(expected.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Some(at + k as u64);
        }
    }
    None
}

/// Two nodes, A (caller) and B (listener), joined by one link.
#[derive(Debug)]
pub struct Pair {
    /// The simulator holding both nodes.
    pub sim: Sim<UdtNode>,
    /// Node A, the caller.
    pub a: NodeId,
    /// Node B, the listener.
    pub b: NodeId,
    /// A's address (192.0.2.1:9000).
    pub a_addr: SocketAddr,
    /// B's address (198.51.100.7:9000).
    pub b_addr: SocketAddr,
}

impl Pair {
    /// A pair with the same config on both nodes.
    pub fn new(seed: u64, ab: LinkConfig, ba: LinkConfig, config: Config) -> Pair {
        Self::with_configs(seed, ab, ba, config.clone(), config)
    }

    /// A pair with a config per node.
    pub fn with_configs(
        seed: u64,
        ab: LinkConfig,
        ba: LinkConfig,
        a_config: Config,
        b_config: Config,
    ) -> Pair {
        let mut sim = Sim::new(seed);
        let a_addr: SocketAddr = "192.0.2.1:9000".parse().expect("literal address");
        let b_addr: SocketAddr = "198.51.100.7:9000".parse().expect("literal address");
        let a = sim.add_node(a_addr, UdtNode::new(a_addr, a_config, seed ^ 0xA));
        let b = sim.add_node(b_addr, UdtNode::new(b_addr, b_config, seed ^ 0xB));
        sim.link(a, b, ab, ba);
        Pair {
            sim,
            a,
            b,
            a_addr,
            b_addr,
        }
    }

    /// B listens, A connects; runs until both sides have the connection.
    /// Returns (A's socket id, B's accepted socket id).
    pub fn connect(&mut self) -> (SocketId, SocketId) {
        let now = self.sim.now();
        self.sim.node_mut(self.b).listen(now);
        let id = self.sim.node_mut(self.a).connect(now, self.b_addr);
        self.sim.poke(self.a);
        self.finish_connect(id)
    }

    /// Like [`connect`](Self::connect) with a chosen ISN.
    pub fn connect_with_isn(&mut self, isn: SeqNumber) -> (SocketId, SocketId) {
        let now = self.sim.now();
        self.sim.node_mut(self.b).listen(now);
        let id = self
            .sim
            .node_mut(self.a)
            .connect_with_isn(now, self.b_addr, isn);
        self.sim.poke(self.a);
        self.finish_connect(id)
    }

    fn finish_connect(&mut self, id: SocketId) -> (SocketId, SocketId) {
        let (a, b) = (self.a, self.b);
        let mut accepted = None;
        let seed = self.sim.seed();
        self.sim
            .run_until(
                |sim| {
                    if accepted.is_none() {
                        accepted = sim.node_mut(b).accept();
                    }
                    accepted.is_some() && sim.node(a).is_connected(id)
                },
                Duration::from_secs(30),
            )
            .unwrap_or_else(|e| {
                panic!(
                    "seed={seed}: connect did not finish: {e} (error {:?})",
                    self.sim.node(a).connect_error(id)
                )
            });
        (id, accepted.unwrap())
    }
}

/// What a finished transfer looked like.
#[derive(Debug)]
pub struct TransferReport {
    /// Bytes transferred and verified.
    pub bytes: u64,
    /// Virtual time from the first write to the receiver's EOF.
    pub elapsed: Duration,
    /// The sender's statistics at the end.
    pub sender: Stats,
    /// The receiver's statistics at the end.
    pub receiver: Stats,
}

impl TransferReport {
    /// Goodput in megabits per second of virtual time.
    pub fn goodput_mbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Streams `total` pattern bytes from (`from`, `from_id`) to (`to`, `to_id`),
/// closes the sender right after the last write (so the close lingers),
/// and checks every byte and the EOF on the receiver.
///
/// # Panics
/// With the seed in the message, on any mismatch, a failed read or write,
/// or when `limit` of virtual time passes.
pub fn stream_transfer(
    sim: &mut Sim<UdtNode>,
    from: (NodeId, SocketId),
    to: (NodeId, SocketId),
    total: u64,
    limit: Duration,
) -> TransferReport {
    transfer(sim, from, to, total, limit, true)
}

/// Like [`stream_transfer`] but leaves the connection open: it returns
/// once the receiver has read and checked all `total` bytes.
///
/// # Panics
/// As [`stream_transfer`].
pub fn stream_bytes(
    sim: &mut Sim<UdtNode>,
    from: (NodeId, SocketId),
    to: (NodeId, SocketId),
    total: u64,
    limit: Duration,
) -> TransferReport {
    transfer(sim, from, to, total, limit, false)
}

fn transfer(
    sim: &mut Sim<UdtNode>,
    (from, from_id): (NodeId, SocketId),
    (to, to_id): (NodeId, SocketId),
    total: u64,
    limit: Duration,
    close: bool,
) -> TransferReport {
    let seed = sim.seed();
    let start = sim.now();
    let stream = u64::from(from_id.0);
    let mut written = 0u64;
    let mut read = 0u64;
    let mut closed = false;
    let mut eof = false;
    let mut chunk = vec![0u8; 256 * 1024];
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut failure: Option<String> = None;
    let result = sim.run_until(
        |sim| {
            let now = sim.now();
            // Writer: keep the send buffer full, generating only what fits.
            while written < total && !closed {
                let free = sim
                    .node(from)
                    .connection(from_id)
                    .map_or(0, |c| c.send_buffer_free());
                let n = (total - written).min(chunk.len().min(free) as u64) as usize;
                if n == 0 {
                    break;
                }
                fill_pattern(stream, written, &mut chunk[..n]);
                let r = sim
                    .node_mut(from)
                    .with_connection(from_id, |c| c.write(&chunk[..n]))
                    .expect("sender connection vanished");
                match r {
                    Ok(k) => written += k as u64,
                    Err(WriteError::WouldBlock) => break,
                    Err(e) => {
                        failure = Some(format!("write failed at {written}: {e}"));
                        return true;
                    }
                }
            }
            if close && written == total && !closed {
                // The last byte is written: close now, lingering.
                closed = true;
                sim.node_mut(from)
                    .with_connection(from_id, |c| c.close(now));
            }
            sim.poke(from);
            // Reader: drain and verify.
            loop {
                let r = sim
                    .node_mut(to)
                    .with_connection(to_id, |c| c.read(&mut rbuf))
                    .expect("receiver connection vanished");
                match r {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        if let Some(at) = check_pattern(stream, read, &rbuf[..n]) {
                            failure = Some(format!("byte {at} differs"));
                            return true;
                        }
                        read += n as u64;
                    }
                    Err(ReadError::WouldBlock) => break,
                    Err(e) => {
                        failure = Some(format!("read failed at {read}/{total}: {e}"));
                        return true;
                    }
                }
            }
            sim.poke(to);
            eof || (!close && read == total)
        },
        limit,
    );
    if let Err(e) = result {
        panic!(
            "seed={seed}: transfer stopped at {read}/{total} bytes read ({written} written): {e}"
        );
    }
    if let Some(f) = failure {
        panic!("seed={seed}: {f}");
    }
    assert_eq!(read, total, "seed={seed}: EOF before all data arrived");
    let sender = sim
        .node(from)
        .connection(from_id)
        .map(|c| c.stats())
        .unwrap_or_default();
    let receiver = sim
        .node(to)
        .connection(to_id)
        .map(|c| c.stats())
        .unwrap_or_default();
    TransferReport {
        bytes: total,
        elapsed: sim.now() - start,
        sender,
        receiver,
    }
}

/// 64 MiB: the transfer size the issue asks for.
pub const MIB_64: u64 = 64 * 1024 * 1024;

/// A link of `mbps` megabits per second, one-way `delay`, loss model
/// `loss`, with a bottleneck queue of a bandwidth-delay product (at least
/// 64 packets).
pub fn link(mbps: u64, delay: Duration, loss: Loss) -> LinkConfig {
    let bps = mbps * 1_000_000;
    let bdp = (bps as f64 / 8.0 * delay.as_secs_f64() * 2.0) as usize;
    LinkConfig {
        delay,
        loss,
        bandwidth_bps: Some(bps),
        queue_bytes: bdp.max(64 * 1500),
        ..LinkConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_fill_and_check_agree_at_any_offset() {
        for offset in [0u64, 1, 7, 8, 13, 4095, 4097, 1 << 33] {
            let mut buf = vec![0u8; 10_000];
            fill_pattern(9, offset, &mut buf);
            for (k, &b) in buf.iter().enumerate() {
                assert_eq!(b, pattern_byte(9, offset + k as u64));
            }
            assert_eq!(check_pattern(9, offset, &buf), None);
            buf[5000] ^= 1;
            assert_eq!(check_pattern(9, offset, &buf), Some(offset + 5000));
            assert!(check_pattern(10, offset, &buf).is_some(), "streams differ");
        }
    }
}
