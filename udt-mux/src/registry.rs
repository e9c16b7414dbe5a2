//! The routing tables of one multiplexer: connections by handle, by socket
//! ID, rendezvous peers by address, the listener, and the de-duplication of
//! repeated connection requests. Behind the multiplexer's registry lock,
//! which comes before any connection lock.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use udt_core::handshake::Listener;
use udt_core::rng::Rng;
use udt_core::sched::ConnectionHandle;
use udt_core::{Config, SeqNumber, SocketId};

use crate::conn::{AcceptKey, ConnShared};
use crate::listener::ListenerShared;

/// The listener of a multiplexer (at most one, as in UDT4).
#[derive(Debug)]
pub(crate) struct ListenerEntry {
    /// The stateless SYN-cookie machine.
    pub(crate) machine: Listener,
    /// The accept queue the application handle reads.
    pub(crate) shared: Arc<ListenerShared>,
    /// Configuration of accepted connections.
    pub(crate) config: Arc<Config>,
}

/// The most tombstones kept; the oldest go first beyond it.
const MAX_TOMBSTONES: usize = 4096;

/// What is left of a finished connection for a while: enough to answer a
/// peer that missed our shutdown (it is sent once and never acknowledged,
/// udt4-protocol.md §12) with another one, so it ends promptly instead of
/// waiting for its idle timeout.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tombstone {
    pub(crate) peer: SocketAddr,
    pub(crate) peer_id: SocketId,
    expires: Instant,
    /// When we last answered, to answer a stream of packets only now and then.
    pub(crate) last_reply: Option<Instant>,
}

/// Connection tables of one multiplexer.
#[derive(Debug)]
pub(crate) struct Registry {
    /// Dense handles, reused through `free` so the heaps stay small.
    slots: Vec<Option<Arc<ConnShared>>>,
    /// Handles allocated and not yet filled, plus free ones.
    reserved: Vec<bool>,
    free: Vec<u32>,
    by_id: HashMap<SocketId, ConnectionHandle>,
    /// Rendezvous connections (pending or established) by peer address:
    /// dest-0 handshakes from that address go to them (udt4-protocol.md §4.2).
    by_peer: HashMap<SocketAddr, ConnectionHandle>,
    /// Accepted connections by request key, so a repeated final request
    /// reaches the connection instead of creating another (§4.1).
    accepted: HashMap<AcceptKey, ConnectionHandle>,
    /// The listener, if any.
    pub(crate) listener: Option<ListenerEntry>,
    live: usize,
    tombstones: HashMap<SocketId, Tombstone>,
    tombstone_order: VecDeque<(Instant, SocketId)>,
    /// Like UDT4, socket IDs count down from a random start (§3).
    next_id: u32,
    rng: Rng,
}

/// 64 random bits from the standard library's per-process random keys:
/// enough for socket IDs, ISNs and cookie secrets without a global RNG.
pub(crate) fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x5544_5434_6d75_7821);
    h.finish()
}

impl Registry {
    pub(crate) fn new(seed: u64) -> Registry {
        let mut rng = Rng::new(seed);
        // A positive 31-bit start in [1, 2^30], as UDT4's CUDTUnited.
        let next_id = (rng.next_u32() & 0x3FFF_FFFF).max(1) + 1;
        Registry {
            slots: Vec::new(),
            reserved: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            by_peer: HashMap::new(),
            accepted: HashMap::new(),
            listener: None,
            live: 0,
            tombstones: HashMap::new(),
            tombstone_order: VecDeque::new(),
            next_id,
            rng,
        }
    }

    /// A socket ID no live connection of this multiplexer uses (never 0).
    pub(crate) fn new_socket_id(&mut self) -> SocketId {
        loop {
            self.next_id = self.next_id.wrapping_sub(1) & 0x7FFF_FFFF;
            if self.next_id == 0 {
                self.next_id = 0x7FFF_FFFF;
            }
            let id = SocketId(self.next_id);
            if !self.by_id.contains_key(&id) && !self.tombstones.contains_key(&id) {
                return id;
            }
        }
    }

    /// A random initial sequence number.
    pub(crate) fn new_isn(&mut self) -> SeqNumber {
        SeqNumber::new(self.rng.next_u32() & SeqNumber::MAX)
    }

    /// A random 16-byte cookie secret for a listener.
    pub(crate) fn new_secret(&mut self) -> [u8; 16] {
        let mut secret = [0u8; 16];
        secret[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        secret[8..].copy_from_slice(&random_u64().to_le_bytes());
        secret
    }

    /// Reserves a handle for a connection about to be inserted.
    pub(crate) fn reserve_handle(&mut self) -> ConnectionHandle {
        if let Some(h) = self.free.pop() {
            if let Some(r) = self.reserved.get_mut(h as usize) {
                *r = true;
            }
            return ConnectionHandle(h);
        }
        let h = self.slots.len() as u32;
        self.slots.push(None);
        self.reserved.push(true);
        ConnectionHandle(h)
    }

    /// True when a rendezvous with `peer` already exists.
    pub(crate) fn has_rendezvous(&self, peer: SocketAddr) -> bool {
        self.by_peer.contains_key(&peer)
    }

    /// Fills a reserved handle with its connection and indexes it.
    pub(crate) fn insert(&mut self, conn: Arc<ConnShared>) {
        let h = conn.handle;
        let Some(slot) = self.slots.get_mut(h.0 as usize) else {
            return;
        };
        self.by_id.insert(conn.socket_id, h);
        if conn.rendezvous {
            self.by_peer.insert(conn.peer, h);
        }
        if let Some(key) = conn.accept_key {
            self.accepted.insert(key, h);
        }
        *slot = Some(conn);
        self.live += 1;
    }

    /// The connection in slot `h`.
    pub(crate) fn slot(&self, h: ConnectionHandle) -> Option<&Arc<ConnShared>> {
        self.slots.get(h.0 as usize)?.as_ref()
    }

    /// The connection (or handshake) with this local socket ID.
    pub(crate) fn by_id(&self, id: SocketId) -> Option<&Arc<ConnShared>> {
        self.slot(*self.by_id.get(&id)?)
    }

    /// The rendezvous connection (or handshake) with this peer.
    pub(crate) fn by_peer(&self, peer: SocketAddr) -> Option<&Arc<ConnShared>> {
        self.slot(*self.by_peer.get(&peer)?)
    }

    /// The connection accepted for this request, if any.
    pub(crate) fn accepted(&self, key: &AcceptKey) -> Option<&Arc<ConnShared>> {
        self.slot(*self.accepted.get(key)?)
    }

    /// Removes `conn` if it still occupies its slot; returns whether it did.
    pub(crate) fn remove(&mut self, conn: &Arc<ConnShared>) -> bool {
        let h = conn.handle;
        let i = h.0 as usize;
        match self.slots.get(i) {
            Some(Some(c)) if Arc::ptr_eq(c, conn) => {}
            _ => return false,
        }
        self.slots[i] = None;
        self.reserved[i] = false;
        self.free.push(h.0);
        self.live -= 1;
        if let Entry::Occupied(e) = self.by_id.entry(conn.socket_id) {
            if *e.get() == h {
                e.remove();
            }
        }
        if conn.rendezvous {
            if let Entry::Occupied(e) = self.by_peer.entry(conn.peer) {
                if *e.get() == h {
                    e.remove();
                }
            }
        }
        if let Some(key) = conn.accept_key {
            if let Entry::Occupied(e) = self.accepted.entry(key) {
                if *e.get() == h {
                    e.remove();
                }
            }
        }
        true
    }

    /// Remembers a finished connection for `lifetime`.
    pub(crate) fn bury(
        &mut self,
        id: SocketId,
        peer: SocketAddr,
        peer_id: SocketId,
        now: Instant,
        lifetime: Duration,
    ) {
        self.expire_tombstones(now);
        while self.tombstones.len() >= MAX_TOMBSTONES {
            match self.tombstone_order.pop_front() {
                Some((_, old)) => {
                    self.tombstones.remove(&old);
                }
                None => break,
            }
        }
        let expires = now + lifetime;
        self.tombstones.insert(
            id,
            Tombstone {
                peer,
                peer_id,
                expires,
                last_reply: None,
            },
        );
        self.tombstone_order.push_back((expires, id));
    }

    /// The tombstone of a finished connection, while it lasts.
    pub(crate) fn tombstone(&mut self, id: SocketId, now: Instant) -> Option<&mut Tombstone> {
        self.expire_tombstones(now);
        self.tombstones.get_mut(&id)
    }

    /// Drops expired tombstones; O(1) amortised (oldest first).
    fn expire_tombstones(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.tombstone_order.front() {
            if at > now {
                break;
            }
            self.tombstone_order.pop_front();
            if self.tombstones.get(&id).is_some_and(|t| t.expires <= now) {
                self.tombstones.remove(&id);
            }
        }
    }

    /// How many connections and handshakes are registered.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Empties every table (abort), returning the connections.
    pub(crate) fn drain(&mut self) -> Vec<Arc<ConnShared>> {
        self.by_id.clear();
        self.by_peer.clear();
        self.accepted.clear();
        self.free.clear();
        self.reserved.clear();
        self.tombstones.clear();
        self.tombstone_order.clear();
        self.live = 0;
        self.slots.drain(..).flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_count_down_and_skip_zero() {
        let mut r = Registry::new(7);
        r.next_id = 2;
        assert_eq!(r.new_socket_id(), SocketId(1));
        assert_eq!(r.new_socket_id(), SocketId(0x7FFF_FFFF));
        assert_eq!(r.new_socket_id(), SocketId(0x7FFF_FFFE));
    }

    #[test]
    fn handles_are_dense() {
        let mut r = Registry::new(1);
        let a = r.reserve_handle();
        let b = r.reserve_handle();
        assert_eq!((a.0, b.0), (0, 1));
        assert_eq!(r.reserve_handle().0, 2);
    }

    #[test]
    fn tombstones_expire_and_stay_bounded() {
        let mut r = Registry::new(3);
        let t0 = Instant::now();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        r.bury(SocketId(5), peer, SocketId(6), t0, Duration::from_secs(1));
        assert_eq!(
            r.tombstone(SocketId(5), t0).map(|t| t.peer_id),
            Some(SocketId(6))
        );
        assert!(r
            .tombstone(SocketId(5), t0 + Duration::from_secs(2))
            .is_none());
        for i in 0..(MAX_TOMBSTONES as u32 + 10) {
            r.bury(
                SocketId(100 + i),
                peer,
                SocketId(1),
                t0,
                Duration::from_secs(60),
            );
        }
        assert!(r.tombstones.len() <= MAX_TOMBSTONES);
        assert!(r.tombstone(SocketId(100), t0).is_none(), "oldest evicted");
        assert!(r
            .tombstone(SocketId(100 + MAX_TOMBSTONES as u32), t0)
            .is_some());
    }

    #[test]
    fn random_bits_differ() {
        assert_ne!(random_u64(), random_u64());
    }
}
