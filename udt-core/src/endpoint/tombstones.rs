//! What is left of finished connections for a while: enough to answer a
//! peer that missed our shutdown. UDT sends its shutdown once and never
//! acknowledges it (udt4-protocol.md §12), so a peer that lost it would
//! otherwise wait for its idle timeout; another shutdown ends it promptly.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::secure::Sealer;
use crate::seq::SocketId;

/// The most tombstones kept; the oldest go first beyond it, so a flood of
/// short connections cannot grow this table without bound.
pub(crate) const MAX_TOMBSTONES: usize = 4096;

/// Shortest and longest time a tombstone is kept: the connection's peer
/// idle timeout, clamped to this range (a peer waiting longer than a minute
/// for a shutdown is no longer worth answering).
pub(crate) const TOMBSTONE_LIFETIME: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(60));

/// Answers to one tombstone come at most this often, so a stream of late
/// data packets is answered now and then, not one for one.
pub(crate) const REPLY_GAP: Duration = Duration::from_millis(50);

/// One finished connection.
#[derive(Clone, Debug)]
struct Tombstone {
    peer: SocketAddr,
    peer_id: SocketId,
    expires: Instant,
    /// When we last answered.
    last_reply: Option<Instant>,
    /// Secure mode: seals the repeated shutdowns (a secure peer drops
    /// plain ones), continuing the connection's counter.
    seal: Option<Box<Sealer>>,
}

/// Tombstones by local socket ID, expiring oldest first.
#[derive(Debug, Default)]
pub(crate) struct Tombstones {
    by_id: HashMap<SocketId, Tombstone>,
    order: VecDeque<(Instant, SocketId)>,
}

impl Tombstones {
    /// Remembers a finished connection for `lifetime`.
    pub(crate) fn bury(
        &mut self,
        id: SocketId,
        peer: SocketAddr,
        peer_id: SocketId,
        now: Instant,
        lifetime: Duration,
    ) {
        self.expire(now);
        while self.by_id.len() >= MAX_TOMBSTONES {
            match self.order.pop_front() {
                Some((_, old)) => {
                    self.by_id.remove(&old);
                }
                None => break,
            }
        }
        let expires = now + lifetime;
        self.by_id.insert(
            id,
            Tombstone {
                peer,
                peer_id,
                expires,
                last_reply: None,
                seal: None,
            },
        );
        self.order.push_back((expires, id));
    }

    /// True while `id` belongs to a recently finished connection (new
    /// connections do not reuse it, so late packets stay recognisable).
    pub(crate) fn contains(&self, id: SocketId) -> bool {
        self.by_id.contains_key(&id)
    }

    /// The peer's socket ID to address a repeated shutdown to, when a packet
    /// for the finished connection `id` came from its peer and no answer
    /// went out in the last [`REPLY_GAP`].
    pub(crate) fn answer(
        &mut self,
        id: SocketId,
        from: SocketAddr,
        now: Instant,
    ) -> Option<SocketId> {
        self.expire(now);
        let t = self.by_id.get_mut(&id)?;
        if t.peer != from || t.last_reply.is_some_and(|at| now < at + REPLY_GAP) {
            return None;
        }
        t.last_reply = Some(now);
        Some(t.peer_id)
    }

    /// Secure mode: the sealer of the finished connection `id`'s repeated
    /// shutdowns.
    pub(crate) fn set_sealer(&mut self, id: SocketId, sealer: Sealer) {
        if let Some(t) = self.by_id.get_mut(&id) {
            t.seal = Some(Box::new(sealer));
        }
    }

    /// Seals the answer in `buf` for tombstone `id` when its connection was
    /// secure; false when it cannot be sealed (then it must not go out).
    pub(crate) fn seal_answer(&mut self, id: SocketId, buf: &mut Vec<u8>) -> bool {
        match self.by_id.get_mut(&id).and_then(|t| t.seal.as_mut()) {
            Some(s) => s.seal(buf).is_ok(),
            None => true,
        }
    }

    /// How many are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Forgets them all.
    pub(crate) fn clear(&mut self) {
        self.by_id.clear();
        self.order.clear();
    }

    /// Drops expired tombstones; O(1) amortised (oldest first).
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.order.front() {
            if at > now {
                break;
            }
            self.order.pop_front();
            if self.by_id.get(&id).is_some_and(|t| t.expires <= now) {
                self.by_id.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::time::test_epoch as epoch;

    #[test]
    fn tombstones_expire_and_stay_bounded() {
        let mut r = Tombstones::default();
        let t0 = epoch();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        r.bury(SocketId(5), peer, SocketId(6), t0, Duration::from_secs(1));
        assert_eq!(r.answer(SocketId(5), peer, t0), Some(SocketId(6)));
        assert!(r
            .answer(SocketId(5), peer, t0 + Duration::from_secs(2))
            .is_none());
        assert!(!r.contains(SocketId(5)));
        for i in 0..(MAX_TOMBSTONES as u32 + 10) {
            r.bury(
                SocketId(100 + i),
                peer,
                SocketId(1),
                t0,
                Duration::from_secs(60),
            );
        }
        assert!(r.len() <= MAX_TOMBSTONES);
        assert!(!r.contains(SocketId(100)), "oldest evicted");
        assert!(r.contains(SocketId(100 + MAX_TOMBSTONES as u32)));
    }

    #[test]
    fn answers_only_the_peer_and_only_now_and_then() {
        let mut r = Tombstones::default();
        let t0 = epoch();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let stranger: SocketAddr = "127.0.0.1:10".parse().unwrap();
        r.bury(SocketId(5), peer, SocketId(6), t0, Duration::from_secs(10));
        assert_eq!(r.answer(SocketId(5), stranger, t0), None);
        assert_eq!(r.answer(SocketId(5), peer, t0), Some(SocketId(6)));
        assert_eq!(r.answer(SocketId(5), peer, t0 + REPLY_GAP / 2), None);
        assert_eq!(
            r.answer(SocketId(5), peer, t0 + REPLY_GAP),
            Some(SocketId(6))
        );
    }
}
