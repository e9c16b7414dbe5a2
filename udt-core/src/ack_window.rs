//! The receiver's record of the full and medium ACKs it sent, so that the
//! ACK2 echoing an ACK's sequence number yields an RTT sample and the ACK
//! number the sender has confirmed (UDT4 `CACKWindow`, udt4-protocol.md §6.4,
//! §6.6).
//!
//! UDT4 keeps the entries in a 1024-slot FIFO and searches it linearly on
//! every ACK2. Here an entry lives in slot `ack_seq % 1024`, so both storing
//! and acknowledging are constant time: the connection numbers its ACKs
//! consecutively, and 2^31 is a multiple of 1024, so consecutive numbers map
//! to consecutive slots even across the wrap.

use std::fmt;
use std::time::{Duration, Instant};

use crate::seq::{AckSeqNumber, SeqNumber};

/// Number of ACKs remembered (UDT4 `CACKWindow` default size).
const SLOTS: usize = 1024;

/// One ACK awaiting its ACK2.
#[derive(Clone, Copy, Debug)]
struct Entry {
    ack_seq: AckSeqNumber,
    ack: SeqNumber,
    sent: Instant,
}

/// The last 1024 full or medium ACKs sent, keyed by ACK sequence number.
///
/// An ACK2 is answered ([`acknowledge`](Self::acknowledge) returns `Some`)
/// only for an ACK that is among the last 1024 stored, still in its slot,
/// not yet acknowledged, and newer than the last ACK acknowledged. UDT4 has
/// the same effect by dropping every entry up to the one an ACK2 matches:
/// duplicated or reordered ACK2s give no sample, so they cannot feed the RTT
/// estimator an inflated value.
pub struct AckWindow {
    /// Boxed: 1024 entries are about 32 KiB, too much to move around inline
    /// in a connection.
    slots: Box<[Option<Entry>; SLOTS]>,
    /// The most recently stored ACK sequence number.
    newest: Option<AckSeqNumber>,
    /// The most recently acknowledged ACK sequence number; entries not after
    /// it are stale.
    acknowledged: Option<AckSeqNumber>,
}

impl AckWindow {
    /// An empty window.
    pub fn new() -> Self {
        AckWindow {
            slots: Box::new([None; SLOTS]),
            newest: None,
            acknowledged: None,
        }
    }

    /// Records that the ACK numbered `ack_seq`, acknowledging everything
    /// before `ack`, was sent at `now`. Overwrites whatever ACK used the same
    /// slot 1024 numbers earlier.
    pub fn store(&mut self, ack_seq: AckSeqNumber, ack: SeqNumber, now: Instant) {
        self.slots[slot(ack_seq)] = Some(Entry {
            ack_seq,
            ack,
            sent: now,
        });
        self.newest = Some(ack_seq);
        // Once the last acknowledged number has left the window it can only
        // mislead: far enough behind, the wrapping comparison would flip and
        // call every new entry stale. Everything still in the window is
        // newer than it, so forgetting it loses nothing.
        if let Some(acked) = self.acknowledged {
            if !(0..SLOTS as i32).contains(&distance(ack_seq, acked)) {
                self.acknowledged = None;
            }
        }
    }

    /// Matches an ACK2 carrying `ack_seq` that arrived at `now`: returns the
    /// ACK number that ACK carried and the round-trip time since it was sent
    /// (zero if `now` is earlier), and forgets the entry.
    ///
    /// Returns `None`, changing nothing, for an unknown number (never stored,
    /// or more than 1024 ACKs old), for one already acknowledged, and for one
    /// older than the last acknowledged (a stale, reordered ACK2).
    pub fn acknowledge(
        &mut self,
        ack_seq: AckSeqNumber,
        now: Instant,
    ) -> Option<(SeqNumber, Duration)> {
        let newest = self.newest?;
        if !(0..SLOTS as i32).contains(&distance(newest, ack_seq)) {
            return None;
        }
        if let Some(acked) = self.acknowledged {
            if distance(ack_seq, acked) <= 0 {
                return None;
            }
        }
        let slot = &mut self.slots[slot(ack_seq)];
        let entry = (*slot).filter(|e| e.ack_seq == ack_seq)?;
        *slot = None;
        self.acknowledged = Some(ack_seq);
        Some((entry.ack, now.saturating_duration_since(entry.sent)))
    }
}

impl Default for AckWindow {
    fn default() -> Self {
        AckWindow::new()
    }
}

impl fmt::Debug for AckWindow {
    /// A summary: printing 1024 slots helps nobody.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckWindow")
            .field("newest", &self.newest)
            .field("acknowledged", &self.acknowledged)
            .field("pending", &self.slots.iter().flatten().count())
            .finish()
    }
}

/// The slot of an ACK sequence number.
fn slot(ack_seq: AckSeqNumber) -> usize {
    ack_seq.value() as usize % SLOTS
}

/// Signed distance from `base` to `x` in the 31-bit ACK sequence space,
/// in `[-2^30, 2^30)`.
fn distance(x: AckSeqNumber, base: AckSeqNumber) -> i32 {
    ((x.value().wrapping_sub(base.value()) << 1) as i32) >> 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use std::collections::HashMap;

    use crate::time::test_epoch as epoch;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn ack2_gives_rtt_and_ack_number() {
        let t0 = epoch();
        let mut w = AckWindow::new();
        assert_eq!(w.acknowledge(AckSeqNumber::FIRST, t0), None, "empty window");
        w.store(AckSeqNumber::FIRST, SeqNumber::new(500), ms(t0, 10));
        w.store(AckSeqNumber::new(2), SeqNumber::new(600), ms(t0, 20));
        assert_eq!(
            w.acknowledge(AckSeqNumber::new(2), ms(t0, 45)),
            Some((SeqNumber::new(600), Duration::from_millis(25)))
        );
        // Duplicate ACK2.
        assert_eq!(w.acknowledge(AckSeqNumber::new(2), ms(t0, 46)), None);
        // Reordered, older ACK2: stale.
        assert_eq!(w.acknowledge(AckSeqNumber::FIRST, ms(t0, 47)), None);
        // Never stored (ahead of the newest).
        assert_eq!(w.acknowledge(AckSeqNumber::new(3), ms(t0, 47)), None);
        w.store(AckSeqNumber::new(3), SeqNumber::new(700), ms(t0, 30));
        // ACK2 arriving "before" the ACK was sent: zero RTT, no panic.
        assert_eq!(
            w.acknowledge(AckSeqNumber::new(3), ms(t0, 5)),
            Some((SeqNumber::new(700), Duration::ZERO))
        );
    }

    #[test]
    fn in_order_ack2s_each_match() {
        let t0 = epoch();
        let mut w = AckWindow::new();
        let mut a = AckSeqNumber::FIRST;
        for i in 0..5000u64 {
            w.store(a, SeqNumber::new(i as u32 * 7), ms(t0, i * 10));
            let got = w.acknowledge(a, ms(t0, i * 10 + 3));
            assert_eq!(
                got,
                Some((SeqNumber::new(i as u32 * 7), Duration::from_millis(3)))
            );
            a = a.next();
        }
    }

    #[test]
    fn entries_expire_after_1024_newer_acks() {
        let t0 = epoch();
        let mut w = AckWindow::new();
        let mut a = AckSeqNumber::FIRST;
        for i in 0..1025u32 {
            w.store(a, SeqNumber::new(i), t0);
            a = a.next();
        }
        // 1 was overwritten by 1025 (same slot); 2 is the oldest kept.
        assert_eq!(w.acknowledge(AckSeqNumber::new(1), t0), None);
        assert_eq!(
            w.acknowledge(AckSeqNumber::new(2), t0),
            Some((SeqNumber::new(1), Duration::ZERO))
        );
        // The newest, which took slot 1's place, still matches.
        assert_eq!(
            w.acknowledge(AckSeqNumber::new(1025), t0),
            Some((SeqNumber::new(1024), Duration::ZERO))
        );
    }

    #[test]
    fn wraps_at_2_pow_31() {
        let t0 = epoch();
        let mut w = AckWindow::new();
        let mut a = AckSeqNumber::new(SeqNumber::MAX - 5);
        let mut stored = Vec::new();
        for i in 0..12u32 {
            w.store(a, SeqNumber::new(i), ms(t0, u64::from(i)));
            stored.push(a);
            a = a.next();
        }
        assert_eq!(stored[6].value(), 0);
        // Acknowledge one before the wrap, then one after: both fresh.
        assert!(w.acknowledge(stored[4], ms(t0, 20)).is_some());
        assert_eq!(
            w.acknowledge(stored[8], ms(t0, 20)),
            Some((SeqNumber::new(8), Duration::from_millis(12)))
        );
        // The ones in between are now stale.
        assert_eq!(w.acknowledge(stored[6], ms(t0, 20)), None);
        assert_eq!(w.acknowledge(stored[5], ms(t0, 20)), None);
        assert!(w.acknowledge(stored[11], ms(t0, 20)).is_some());
    }

    #[test]
    fn old_watermark_does_not_block_new_entries() {
        // After an ACK2, 2^30 more ACKs with no ACK2 at all: without
        // forgetting the watermark the wrapping comparison would flip.
        let t0 = epoch();
        let mut w = AckWindow::new();
        w.store(AckSeqNumber::new(10), SeqNumber::new(1), t0);
        assert!(w.acknowledge(AckSeqNumber::new(10), t0).is_some());
        let far = AckSeqNumber::new(10 + (1 << 30) + 5);
        w.store(far, SeqNumber::new(2), t0);
        assert_eq!(
            w.acknowledge(far, t0),
            Some((SeqNumber::new(2), Duration::ZERO))
        );
    }

    #[test]
    fn hostile_ack2_numbers_are_ignored() {
        let t0 = epoch();
        let mut w = AckWindow::new();
        for i in 1..=100u32 {
            w.store(AckSeqNumber::new(i), SeqNumber::new(i), t0);
        }
        for raw in [
            0,
            101,
            5000,
            1 + 1024,
            SeqNumber::MAX,
            0x4000_0000,
            u32::MAX,
        ] {
            assert_eq!(w.acknowledge(AckSeqNumber::new(raw), t0), None, "{raw:#x}");
        }
        // Still works afterwards.
        assert!(w.acknowledge(AckSeqNumber::new(50), t0).is_some());
        assert!(format!("{w:?}").contains("pending: 99"));
    }

    #[test]
    fn matches_naive_model() {
        // Random interleavings of stores (consecutive numbers, as the
        // connection makes them) and ACK2s (fresh, duplicated, reordered,
        // bogus) against a map-based model of the documented rules.
        let seed = 0xAC2;
        let mut rng = Rng::new(seed);
        let t0 = epoch();
        for round in 0..50 {
            let mut w = AckWindow::new();
            let mut model: HashMap<u32, (u32, u64)> = HashMap::new();
            let mut newest: Option<u32> = None;
            let mut acked: Option<u32> = None;
            let mut next = (SeqNumber::MAX - rng.below(3000) as u32) & SeqNumber::MAX;
            let mut clock = 0u64;
            for step in 0..4000 {
                clock += rng.below(5);
                if rng.chance(0.5) {
                    let ack = rng.next_u32() & SeqNumber::MAX;
                    w.store(AckSeqNumber::new(next), SeqNumber::new(ack), ms(t0, clock));
                    model.insert(next, (ack, clock));
                    newest = Some(next);
                    if let Some(a) = acked {
                        let d = distance(AckSeqNumber::new(next), AckSeqNumber::new(a));
                        if !(0..1024).contains(&d) {
                            acked = None;
                        }
                    }
                    next = (next + 1) & SeqNumber::MAX;
                } else {
                    let back = rng.below(1100) as u32;
                    let q = newest.unwrap_or(0).wrapping_sub(back) & SeqNumber::MAX;
                    let q = if rng.chance(0.05) {
                        rng.next_u32() & SeqNumber::MAX
                    } else {
                        q
                    };
                    let got = w.acknowledge(AckSeqNumber::new(q), ms(t0, clock));
                    let expected = newest.and_then(|n| {
                        let d = distance(AckSeqNumber::new(n), AckSeqNumber::new(q));
                        if !(0..1024).contains(&d) {
                            return None;
                        }
                        if let Some(a) = acked {
                            if distance(AckSeqNumber::new(q), AckSeqNumber::new(a)) <= 0 {
                                return None;
                            }
                        }
                        let (ack, sent) = model.remove(&q)?;
                        acked = Some(q);
                        Some((SeqNumber::new(ack), Duration::from_millis(clock - sent)))
                    });
                    assert_eq!(got, expected, "seed={seed} round={round} step={step} q={q}");
                }
            }
        }
    }
}
