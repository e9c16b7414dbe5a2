//! Sender-side loss detection for retransmissions, in the spirit of RACK
//! (RFC 8985): a retransmission sent well before a packet that has since
//! been delivered, and still not acknowledged, was lost too.
//!
//! Why a UDT sender needs it: a UDT4 receiver reports each gap once, when
//! it appears, and never again (its periodic NAK is disabled,
//! udt4-protocol.md §6.3). A lost retransmission therefore shows in no NAK;
//! only the cumulative ACK keeps naming it, and only once it is the first
//! missing packet. Without this, every lost retransmission waits until it
//! is the head and then until the head resend's timeout, one hole after
//! the other, while the flow window fills behind it.
//!
//! What the sender knows: the send time of the newest packet known to
//! have arrived ([`DeliveryTracker::newest_delivered_sent`]: acknowledged,
//! or proved arrived by a NAK, see `cc/delivery.rs`). The path delivers in
//! order, so a retransmission sent more than a reordering window before
//! that packet should have arrived before it. UDT's ACK carries no SACK
//! blocks, so whether a retransmission beyond the first missing packet
//! arrived is unknown: it is presumed lost when the rule says so, and such
//! a resend may be a duplicate (the receiver drops it). That costs one
//! datagram; the alternative is a stalled window.
//!
//! The rule is applied to each retransmission once per transmission: they
//! are kept in the order they left, which is the order of their send
//! times, and each is examined when the newest delivered send time passes
//! its own by the reordering window. The work per ACK is the number of
//! retransmissions examined, each once, plus one.
//!
//! [`DeliveryTracker::newest_delivered_sent`]: crate::cc::DeliveryTracker::newest_delivered_sent

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::seq::SeqNumber;

/// The smallest reordering window: below a millisecond, timer and batching
/// jitter of the sending host alone could reorder what it means.
const MIN_REORDERING_WINDOW: Duration = Duration::from_millis(1);

/// The reordering window: a quarter of the smallest RTT (RFC 8985 §6.2
/// step 4), or of the smoothed RTT before any sample, and at least 1 ms.
pub(super) fn reordering_window(min_rtt: Option<Duration>, smoothed_rtt: Duration) -> Duration {
    (min_rtt.unwrap_or(smoothed_rtt) / 4).max(MIN_REORDERING_WINDOW)
}

/// How old evidence must be before a NAK may act on it: an ACK covering a
/// retransmission leaves at most one ACK interval (10 ms) after the packets
/// that prove it arrived; twice that allows for the return path's jitter.
pub(super) const SETTLE_TIME: Duration = Duration::from_millis(20);

/// The most evidence updates remembered while they settle.
const MAX_UNSETTLED: usize = 1024;

/// Retransmissions in flight, in the order they left, and the evidence
/// against them.
#[derive(Debug, Default)]
pub(super) struct Rack {
    pending: VecDeque<(Instant, SeqNumber)>,
    /// Evidence not yet [`SETTLE_TIME`] old: (when it was seen, the send
    /// time of the newest packet known delivered then).
    unsettled: VecDeque<(Instant, Instant)>,
    /// The newest evidence at least [`SETTLE_TIME`] old.
    settled: Option<Instant>,
}

impl Rack {
    /// Nothing retransmitted yet.
    pub(super) fn new() -> Self {
        Rack::default()
    }

    /// Retransmissions not yet examined.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    /// At `now` the newest packet known delivered left at `newest`.
    pub(super) fn observe(&mut self, now: Instant, newest: Instant) {
        if self
            .unsettled
            .back()
            .map_or(self.settled, |&(_, n)| Some(n))
            .is_some_and(|n| n >= newest)
        {
            return;
        }
        if self.unsettled.len() >= MAX_UNSETTLED {
            self.settled = self.unsettled.pop_front().map(|(_, n)| n);
        }
        self.unsettled.push_back((now, newest));
    }

    /// The newest evidence seen at least [`SETTLE_TIME`] before `now`. A
    /// UDT4 receiver sends no ACK at all while its first missing packet
    /// stays the same and the sender confirmed the ACK naming it (not even
    /// a light ACK, udt4-protocol.md §6.4), so its NAKs must be able to
    /// trigger the judgement too; this is the evidence they may use.
    pub(super) fn settled(&mut self, now: Instant) -> Option<Instant> {
        while let Some(&(seen, newest)) = self.unsettled.front() {
            if seen + SETTLE_TIME > now {
                break;
            }
            self.settled = Some(newest);
            self.unsettled.pop_front();
        }
        self.settled
    }

    /// `seq` was retransmitted at `now`. At most `limit` are remembered (the
    /// send buffer's size: an EXP timeout resends everything unacknowledged
    /// at once); beyond it the oldest is forgotten and left to the head
    /// resend and the EXP timer.
    pub(super) fn on_retransmitted(&mut self, now: Instant, seq: SeqNumber, limit: usize) {
        while self.pending.len() >= limit.max(1) {
            self.pending.pop_front();
        }
        self.pending.push_back((now, seq));
    }

    /// Examines, oldest first, every retransmission that left more than
    /// `window` before `newest_delivered` (the send time of the newest
    /// packet known delivered): `judge(seq, sent)` decides whether it is
    /// still outstanding (not acknowledged, not queued, not sent again
    /// since `sent`) and so lost, and returns [`Verdict::Wait`] when the
    /// evidence cannot tell yet; that one and every later one stay for the
    /// next call. Returns how many were judged and forgotten.
    pub(super) fn detect(
        &mut self,
        newest_delivered: Instant,
        window: Duration,
        mut judge: impl FnMut(SeqNumber, Instant) -> Verdict,
    ) -> usize {
        let mut judged = 0;
        while let Some(&(sent, seq)) = self.pending.front() {
            if sent + window > newest_delivered || judge(seq, sent) == Verdict::Wait {
                break;
            }
            self.pending.pop_front();
            judged += 1;
        }
        judged
    }
}

/// What [`Rack::detect`]'s judge concluded about one retransmission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Judged (resent, or found acknowledged or sent again): forget it.
    Judged,
    /// The evidence cannot tell yet: keep it, and stop for now.
    Wait,
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::time::test_epoch as epoch;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn window_is_a_quarter_of_the_smallest_rtt_and_at_least_a_millisecond() {
        assert_eq!(reordering_window(Some(ms(40)), ms(100)), ms(10));
        assert_eq!(reordering_window(None, ms(100)), ms(25));
        assert_eq!(reordering_window(Some(ms(2)), ms(100)), ms(1));
    }

    #[test]
    fn examines_each_retransmission_once_in_send_order() {
        let t0 = epoch();
        let mut r = Rack::new();
        for (i, seq) in [7u32, 3, 9].into_iter().enumerate() {
            r.on_retransmitted(t0 + ms(10 * i as u64), SeqNumber::new(seq), 100);
        }
        let mut seen = Vec::new();
        // Newest delivered sent at 14 ms, window 4 ms: only the one sent
        // at 0 ms (7) and 10 ms (3) are old enough.
        let n = r.detect(t0 + ms(14), ms(4), |s, at| {
            seen.push((s.value(), at));
            Verdict::Judged
        });
        assert_eq!(n, 2);
        assert_eq!(seen, vec![(7, t0), (3, t0 + ms(10))]);
        // The same evidence again examines nothing.
        assert_eq!(r.detect(t0 + ms(14), ms(4), |_, _| panic!("twice")), 0);
        assert_eq!(r.len(), 1);
        // A judge that cannot tell yet keeps it.
        assert_eq!(r.detect(t0 + ms(24), ms(4), |_, _| Verdict::Wait), 0);
        assert_eq!(r.len(), 1);
        assert_eq!(r.detect(t0 + ms(24), ms(4), |_, _| Verdict::Judged), 1);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn evidence_settles_after_the_settle_time() {
        let t0 = epoch();
        let mut r = Rack::new();
        assert_eq!(r.settled(t0), None);
        r.observe(t0, t0 - ms(50));
        r.observe(t0 + ms(5), t0 - ms(40));
        // Older evidence than what is known changes nothing.
        r.observe(t0 + ms(6), t0 - ms(45));
        assert_eq!(r.settled(t0 + ms(19)), None);
        assert_eq!(r.settled(t0 + ms(20)), Some(t0 - ms(50)));
        assert_eq!(r.settled(t0 + ms(25)), Some(t0 - ms(40)));
        assert_eq!(r.settled(t0 + ms(100)), Some(t0 - ms(40)));
    }

    #[test]
    fn remembers_at_most_the_limit() {
        let t0 = epoch();
        let mut r = Rack::new();
        for seq in 0..10u32 {
            r.on_retransmitted(t0 + ms(u64::from(seq)), SeqNumber::new(seq), 4);
        }
        assert_eq!(r.len(), 4);
        let mut seen = Vec::new();
        r.detect(t0 + ms(100), ms(1), |s, _| {
            seen.push(s.value());
            Verdict::Judged
        });
        assert_eq!(seen, vec![6, 7, 8, 9]);
    }
}
