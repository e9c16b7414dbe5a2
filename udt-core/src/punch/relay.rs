//! The relay table: which peer a relayed datagram goes to, sans-I/O.
//!
//! When no candidate pair works, both peers of a session the broker
//! introduced ask it to relay (method Relay, with the broker's ticket and
//! their own token). The broker then binds the two source addresses it saw
//! those requests come from to each other. From then on every non-STUN
//! datagram arriving at the broker's port from one of them is forwarded,
//! unchanged, to the other: the peers run UDT to the broker's address as
//! if it were the peer. No header is added (the UDT packet size does not
//! change) and no port is allocated per user, unlike TURN.
//!
//! Demultiplexing is by source address, so one address takes part in at
//! most one relayed pair (a new binding replaces an old one). The table is
//! bounded ([`RelayTable::new`]'s `max_pairs`) and a pair idle for the
//! idle time is dropped. [`RelayTable::route`] is one hash lookup and
//! allocates nothing, so a broker can forward bulk data.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What the relay forwarded and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayCounters {
    /// Pairs bound.
    pub bound: u64,
    /// Datagrams forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Non-STUN datagrams from an address without a binding (not relayed:
    /// the broker is never an open relay).
    pub unrouted: u64,
    /// Bindings refused because the table was full.
    pub refused: u64,
    /// Pairs dropped after being idle.
    pub expired: u64,
}

/// The bound refusal of [`RelayTable::bind`]: the table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayFull;

impl std::fmt::Display for RelayFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the relay table is full")
    }
}

impl std::error::Error for RelayFull {}

/// One direction of a bound pair.
#[derive(Clone, Copy, Debug)]
struct Route {
    to: SocketAddr,
    last_active: Instant,
}

/// Bound pairs of addresses. See the module documentation.
#[derive(Debug)]
pub struct RelayTable {
    routes: HashMap<SocketAddr, Route>,
    max_pairs: usize,
    idle: Duration,
    counters: RelayCounters,
}

impl RelayTable {
    /// An empty table holding at most `max_pairs` pairs, each dropped
    /// after `idle` without traffic in either direction.
    pub fn new(max_pairs: usize, idle: Duration) -> RelayTable {
        RelayTable {
            // Two entries per pair; reserved up front so binding never
            // reallocates under load.
            routes: HashMap::with_capacity(max_pairs.min(1 << 16) * 2),
            max_pairs,
            idle,
            counters: RelayCounters::default(),
        }
    }

    /// Counters of what it did.
    pub fn counters(&self) -> RelayCounters {
        self.counters
    }

    /// Pairs bound now.
    pub fn pairs(&self) -> usize {
        self.routes.len() / 2
    }

    /// The address `a` is bound to, if any.
    pub fn peer_of(&self, a: SocketAddr) -> Option<SocketAddr> {
        self.routes.get(&a).map(|r| r.to)
    }

    /// Binds `a` and `b` to each other, replacing any binding either had.
    /// Binding the same pair again only refreshes it.
    ///
    /// # Errors
    /// [`RelayFull`] when the table holds `max_pairs` pairs already.
    pub fn bind(&mut self, now: Instant, a: SocketAddr, b: SocketAddr) -> Result<(), RelayFull> {
        if a == b {
            return Err(RelayFull);
        }
        if self.peer_of(a) == Some(b) && self.peer_of(b) == Some(a) {
            for x in [a, b] {
                if let Some(r) = self.routes.get_mut(&x) {
                    r.last_active = now;
                }
            }
            return Ok(());
        }
        self.unbind(a);
        self.unbind(b);
        if self.pairs() >= self.max_pairs {
            self.counters.refused += 1;
            return Err(RelayFull);
        }
        self.routes.insert(
            a,
            Route {
                to: b,
                last_active: now,
            },
        );
        self.routes.insert(
            b,
            Route {
                to: a,
                last_active: now,
            },
        );
        self.counters.bound += 1;
        Ok(())
    }

    /// Removes the pair `a` belongs to (both directions).
    pub fn unbind(&mut self, a: SocketAddr) {
        if let Some(r) = self.routes.remove(&a) {
            if self.routes.get(&r.to).is_some_and(|back| back.to == a) {
                self.routes.remove(&r.to);
            }
        }
    }

    /// Marks `a`'s pair active (its peer is still registered).
    pub fn touch(&mut self, now: Instant, a: SocketAddr) {
        if let Some(r) = self.routes.get_mut(&a) {
            r.last_active = now;
        }
    }

    /// Where a `len`-byte datagram from `from` goes, or `None` (dropped:
    /// `from` has no binding). One lookup, no allocation.
    pub fn route(&mut self, now: Instant, from: SocketAddr, len: usize) -> Option<SocketAddr> {
        match self.routes.get_mut(&from) {
            Some(r) => {
                r.last_active = now;
                self.counters.packets += 1;
                self.counters.bytes += len as u64;
                Some(r.to)
            }
            None => {
                self.counters.unrouted += 1;
                None
            }
        }
    }

    /// Drops pairs idle in both directions for the idle time.
    pub fn sweep(&mut self, now: Instant) {
        let idle = self.idle;
        let stale = |r: &Route| now.saturating_duration_since(r.last_active) >= idle;
        let expired: Vec<SocketAddr> = self
            .routes
            .iter()
            .filter(|(_, r)| stale(r) && self.routes.get(&r.to).is_none_or(stale))
            .map(|(a, _)| *a)
            .collect();
        for a in expired {
            if self.routes.contains_key(&a) {
                self.unbind(a);
                self.counters.expired += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::time::test_epoch as epoch;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn forwards_both_ways_and_nothing_else() {
        let t0 = epoch();
        let mut t = RelayTable::new(4, Duration::from_secs(60));
        let (a, b, x) = (
            sa("198.18.1.1:40000"),
            sa("198.18.2.1:40001"),
            sa("198.18.3.1:1"),
        );
        t.bind(t0, a, b).expect("room");
        assert_eq!(t.route(t0, a, 1000), Some(b));
        assert_eq!(t.route(t0, b, 500), Some(a));
        assert_eq!(t.route(t0, x, 100), None);
        let c = t.counters();
        assert_eq!((c.packets, c.bytes, c.unrouted), (2, 1500, 1));
    }

    #[test]
    fn is_bounded_and_rebinding_replaces() {
        let t0 = epoch();
        let mut t = RelayTable::new(2, Duration::from_secs(60));
        let addr = |i: u16| SocketAddr::from(([198, 18, 0, 1], 40000 + i));
        t.bind(t0, addr(0), addr(1)).expect("room");
        t.bind(t0, addr(2), addr(3)).expect("room");
        assert_eq!(t.bind(t0, addr(4), addr(5)), Err(RelayFull));
        assert_eq!(t.pairs(), 2);
        assert_eq!(t.counters().refused, 1);
        // addr(0) moves to a new partner: its old pair is gone entirely.
        t.bind(t0, addr(0), addr(2)).expect("room after unbinding");
        assert_eq!(t.pairs(), 1);
        assert_eq!(t.peer_of(addr(1)), None);
        assert_eq!(t.peer_of(addr(3)), None);
        assert_eq!(t.route(t0, addr(2), 1), Some(addr(0)));
        // The same pair again is only a refresh.
        t.bind(t0, addr(2), addr(0)).expect("refresh");
        assert_eq!(t.counters().bound, 3);
    }

    #[test]
    fn idle_pairs_expire_active_ones_stay() {
        let t0 = epoch();
        let mut t = RelayTable::new(4, Duration::from_secs(10));
        let (a, b) = (sa("198.18.1.1:1"), sa("198.18.2.1:2"));
        let (c, d) = (sa("198.18.1.1:3"), sa("198.18.2.1:4"));
        t.bind(t0, a, b).expect("room");
        t.bind(t0, c, d).expect("room");
        // Only one direction of a↔b is used: that keeps the pair.
        t.route(t0 + Duration::from_secs(8), b, 1);
        t.sweep(t0 + Duration::from_secs(12));
        assert_eq!(t.peer_of(a), Some(b));
        assert_eq!(t.peer_of(c), None);
        assert_eq!(t.counters().expired, 1);
        t.sweep(t0 + Duration::from_secs(19));
        assert_eq!(t.pairs(), 0);
    }
}
