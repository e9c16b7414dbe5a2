//! The checklist: candidate pairs, their states and in-flight checks.
//!
//! All local candidates share one base (the multiplexer's socket), so a
//! pair is identified by its remote address; its priority uses the local
//! candidate of the same family that the base stands for (RFC 8445
//! §6.1.2.4 prunes reflexive locals to their base).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::candidate::{pair_priority, Candidate};
use super::stun::TransactionId;

/// Most pairs in a checklist (announced plus peer-reflexive).
pub const MAX_PAIRS: usize = 32;

/// The state of one pair (RFC 8445 §6.1.2.6, without Frozen: one
/// component, one data stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairState {
    /// Not checked yet.
    Waiting,
    /// A check is in flight.
    InProgress,
    /// A check succeeded.
    Succeeded,
    /// Every check went unanswered.
    Failed,
}

/// A check in flight.
#[derive(Clone, Copy, Debug)]
pub struct Inflight {
    /// Its transaction ID (the same for each retransmission).
    pub tx: TransactionId,
    /// Transmissions so far.
    pub sends: u32,
    /// When the last transmission left.
    pub last_sent: Instant,
    /// When to retransmit or give up.
    pub next: Instant,
    /// Current retransmission timeout.
    pub rto: Duration,
    /// True for the nominating check (USE-CANDIDATE).
    pub use_candidate: bool,
}

/// One candidate pair.
#[derive(Clone, Debug)]
pub struct Pair {
    /// The local candidate the base stands for.
    pub local: Candidate,
    /// The remote candidate.
    pub remote: Candidate,
    /// RFC 8445 pair priority.
    pub priority: u64,
    /// Where its checks stand.
    pub state: PairState,
    /// The check in flight, if any.
    pub inflight: Option<Inflight>,
    /// RTT of the successful check.
    pub rtt: Option<Duration>,
    /// Our address as the peer saw it on this pair.
    pub mapped: Option<SocketAddr>,
    /// The controlling peer sent USE-CANDIDATE on this pair.
    pub peer_nominated: bool,
}

/// The pairs, highest priority first.
#[derive(Clone, Debug, Default)]
pub struct Checklist {
    /// The pairs, sorted by priority (highest first).
    pub pairs: Vec<Pair>,
}

impl Checklist {
    /// Adds a pair for `remote` unless one exists or the list is full;
    /// returns its index. `locals` are our candidates; `controlling` fixes
    /// which side's priority is G in the formula.
    pub fn add(
        &mut self,
        locals: &[Candidate],
        remote: Candidate,
        controlling: bool,
    ) -> Option<usize> {
        if let Some(i) = self.find(remote.addr) {
            return Some(i);
        }
        if self.pairs.len() >= MAX_PAIRS {
            return None;
        }
        let local = *locals
            .iter()
            .filter(|l| l.addr.is_ipv4() == remote.addr.is_ipv4())
            .max_by_key(|l| l.priority)?;
        let priority = if controlling {
            pair_priority(local.priority, remote.priority)
        } else {
            pair_priority(remote.priority, local.priority)
        };
        let pair = Pair {
            local,
            remote,
            priority,
            state: PairState::Waiting,
            inflight: None,
            rtt: None,
            mapped: None,
            peer_nominated: false,
        };
        let at = self.pairs.partition_point(|p| p.priority >= priority);
        self.pairs.insert(at, pair);
        Some(at)
    }

    /// The pair whose remote address is `addr`.
    pub fn find(&self, addr: SocketAddr) -> Option<usize> {
        self.pairs.iter().position(|p| p.remote.addr == addr)
    }

    /// The pair with a check in flight under `tx`.
    pub fn by_transaction(&self, tx: &TransactionId) -> Option<usize> {
        self.pairs
            .iter()
            .position(|p| p.inflight.is_some_and(|f| &f.tx == tx))
    }

    /// The highest-priority pair that has not been checked.
    pub fn next_waiting(&self) -> Option<usize> {
        self.pairs
            .iter()
            .position(|p| p.state == PairState::Waiting && p.inflight.is_none())
    }

    /// The highest-priority pair that succeeded.
    pub fn best_succeeded(&self) -> Option<usize> {
        self.pairs
            .iter()
            .position(|p| p.state == PairState::Succeeded)
    }

    /// True when a pair above index `i` may still succeed.
    pub fn better_pending(&self, i: usize) -> bool {
        self.pairs[..i]
            .iter()
            .any(|p| matches!(p.state, PairState::Waiting | PairState::InProgress))
    }

    /// True when every pair failed (and there is at least one).
    pub fn all_failed(&self) -> bool {
        !self.pairs.is_empty()
            && self
                .pairs
                .iter()
                .all(|p| p.state == PairState::Failed && p.inflight.is_none())
    }

    /// The earliest retransmission time.
    pub fn next_retransmit(&self) -> Option<Instant> {
        self.pairs
            .iter()
            .filter_map(|p| p.inflight.map(|f| f.next))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::punch::candidate::CandidateType;

    fn cand(kind: CandidateType, addr: &str) -> Candidate {
        Candidate::new(kind, addr.parse().expect("addr"), 65535)
    }

    #[test]
    fn pairs_sort_by_priority_and_deduplicate() {
        let locals = [cand(CandidateType::Host, "192.0.2.2:9000")];
        let mut c = Checklist::default();
        c.add(
            &locals,
            cand(CandidateType::ServerReflexive, "198.18.0.9:7"),
            true,
        );
        c.add(
            &locals,
            cand(CandidateType::Host, "198.51.100.2:9000"),
            true,
        );
        c.add(
            &locals,
            cand(CandidateType::Host, "198.51.100.2:9000"),
            true,
        );
        // IPv6 remote without an IPv6 local: no pair.
        assert_eq!(
            c.add(&locals, cand(CandidateType::Host, "[2001:db8::1]:1"), true),
            None
        );
        assert_eq!(c.pairs.len(), 2);
        assert_eq!(c.pairs[0].remote.kind, CandidateType::Host);
        assert_eq!(c.next_waiting(), Some(0));
        assert!(!c.all_failed());
    }
}
