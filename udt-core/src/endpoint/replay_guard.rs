//! Secure listener: the first key-agreement messages of recent accepted
//! connections, so a replayed final request does not open a second
//! connection. A two-message Noise handshake gives the responder no
//! replay protection of its own (WireGuard adds a timestamp for it); here
//! the SYN cookie already limits a replay to the caller's address and the
//! cookie's lifetime, and this table refuses it within that lifetime.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How long a message is remembered: as long as its cookie stays valid
/// (two cookie buckets), after which the cookie check refuses the replay.
pub(crate) const REMEMBER: Duration = Duration::from_secs(2 * 60);

/// The most messages remembered; the oldest are forgotten first.
pub(crate) const MAX_REMEMBERED: usize = 4096;

/// Bytes of the message kept: the SPAKE2 message and the ephemeral key
/// are fresh random values in every honest handshake.
const PREFIX: usize = 72;

/// Recently accepted first messages.
#[derive(Debug, Default)]
pub(crate) struct ReplayGuard {
    seen: HashSet<Vec<u8>>,
    order: VecDeque<(Instant, Vec<u8>)>,
}

impl ReplayGuard {
    /// True when `init` (a first message) was accepted recently.
    pub(crate) fn is_replay(&mut self, now: Instant, init: &[u8]) -> bool {
        self.expire(now);
        self.seen.contains(&init[..init.len().min(PREFIX)])
    }

    /// Remembers an accepted first message.
    pub(crate) fn remember(&mut self, now: Instant, init: &[u8]) {
        self.expire(now);
        let key = init[..init.len().min(PREFIX)].to_vec();
        if self.seen.insert(key.clone()) {
            self.order.push_back((now, key));
        }
        while self.order.len() > MAX_REMEMBERED {
            if let Some((_, k)) = self.order.pop_front() {
                self.seen.remove(&k);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((t, _)) = self.order.front() {
            if now.saturating_duration_since(*t) < REMEMBER {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.seen.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::time::test_epoch as epoch;

    #[test]
    fn remembers_for_the_cookie_lifetime_and_is_bounded() {
        let t0 = epoch();
        let mut g = ReplayGuard::default();
        g.remember(t0, &[1; 100]);
        assert!(g.is_replay(t0 + Duration::from_secs(119), &[1; 100]));
        assert!(!g.is_replay(t0, &[2; 100]));
        assert!(!g.is_replay(t0 + REMEMBER, &[1; 100]));
        for i in 0..(MAX_REMEMBERED as u32 + 10) {
            g.remember(t0 + REMEMBER, &i.to_be_bytes());
        }
        assert_eq!(g.order.len(), MAX_REMEMBERED);
        assert_eq!(g.seen.len(), MAX_REMEMBERED);
        assert!(!g.is_replay(t0 + REMEMBER, &0u32.to_be_bytes()));
        assert!(g.is_replay(t0 + REMEMBER, &20u32.to_be_bytes()));
    }
}
