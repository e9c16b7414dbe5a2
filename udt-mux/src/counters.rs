//! Counters of one multiplexer's port and the statistics type built from
//! them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::udp::Flushed;

/// I/O counters, updated without locks by both threads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) datagrams_received: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) datagrams_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) send_calls: AtomicU64,
    pub(crate) recv_calls: AtomicU64,
    pub(crate) recv_errors: AtomicU64,
    pub(crate) truncated: AtomicU64,
    pub(crate) datagrams_offloaded: AtomicU64,
    pub(crate) datagrams_coalesced: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn on_flush(&self, f: Flushed) {
        Self::add(&self.datagrams_sent, f.datagrams);
        Self::add(&self.bytes_sent, f.bytes);
        Self::add(&self.send_errors, f.errors);
        Self::add(&self.send_calls, f.calls);
        Self::add(&self.datagrams_offloaded, f.offloaded);
    }
}

/// Counters and socket facts of an endpoint (its multiplexer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// The bound address.
    pub local_addr: Option<SocketAddr>,
    /// `SO_SNDBUF` the kernel granted (Linux reports twice the usable size).
    pub udp_send_buffer: usize,
    /// `SO_RCVBUF` the kernel granted.
    pub udp_recv_buffer: usize,
    /// Connections and handshakes currently registered.
    pub connections: usize,
    /// Datagrams read from the socket.
    pub datagrams_received: u64,
    /// Bytes read from the socket.
    pub bytes_received: u64,
    /// Datagrams handed to the kernel.
    pub datagrams_sent: u64,
    /// Bytes handed to the kernel.
    pub bytes_sent: u64,
    /// Datagrams the kernel refused to send (dropped; UDT retransmits).
    pub send_errors: u64,
    /// Send system calls (`sendmmsg` batches or single sends).
    pub send_calls: u64,
    /// Receive system calls that returned data.
    pub recv_calls: u64,
    /// Receive errors other than "nothing to read".
    pub recv_errors: u64,
    /// Datagrams too short to carry a UDT header.
    pub malformed: u64,
    /// Datagrams longer than the receive slot (cut, then dropped).
    pub truncated: u64,
    /// Datagrams for a socket ID nobody here has (or dest 0 with no
    /// listener or rendezvous for that peer).
    pub unknown_destination: u64,
    /// Datagrams for a known socket ID from an address other than its peer.
    pub wrong_source: u64,
    /// Connection requests refused because the accept backlog was full.
    pub handshakes_rejected: u64,
    /// Connection requests ignored because their source address already
    /// had its share of the backlog waiting (the caller retries).
    pub handshakes_throttled: u64,
    /// Datagrams that were not UDT, handed to the registered
    /// [`DatagramHandler`](udt_core::endpoint::DatagramHandler).
    pub foreign: u64,
    /// Secure listener: callers refused because their key agreement
    /// failed (wrong key, a static key not allowed).
    pub secure_refused: u64,
    /// Secure listener: replayed final requests ignored.
    pub secure_replays: u64,
    /// Secure connections ended because the peer refused our key
    /// agreement (it gave a wrong code or key), accepted or not.
    pub secure_peer_refused: u64,
    /// Datagrams sent inside UDP GSO super-datagrams (of `datagrams_sent`).
    pub datagrams_offloaded: u64,
    /// Datagrams received inside UDP GRO super-datagrams (of
    /// `datagrams_received`).
    pub datagrams_coalesced: u64,
}
