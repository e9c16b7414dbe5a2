//! The receive windows a receiver advertised, and when: which one held the
//! sender back when the packets arriving now left it.
//!
//! A sender stops at the far edge of the newest window it heard of, and
//! what it sent then arrives about a round trip after the ACK that carried
//! that window left the receiver. By then the receiver has usually
//! advertised a farther edge: the reader consumed what arrived meanwhile.
//! So "did the data reach the edge we advertised last?" is almost never
//! true of a sender that the window holds back on a long path (a
//! 1 Gbit/s, 200 ms path without loss kept an 8192-packet window for good:
//! 47 % of the link). The edge to compare with is the one in force a round
//! trip ago.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::seq::SeqNumber;

/// Advertisements kept at most: with a 10 ms ACK period, round trips of up
/// to ten seconds (UDT's EXP timer gives up on a peer long before).
const MAX_KEPT: usize = 1024;

/// One advertised window: packets from `first` on, `window` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Advertised {
    /// When the ACK carrying it left.
    pub(super) at: Instant,
    /// The first packet the window counts from (the ACK number).
    pub(super) first: SeqNumber,
    /// Its size in packets.
    pub(super) window: u32,
}

impl Advertised {
    /// The first sequence number beyond the window.
    pub(super) fn edge(&self) -> SeqNumber {
        self.first.add(self.window)
    }
}

/// The advertisements of the last round trip or so, oldest first.
#[derive(Debug, Default)]
pub(super) struct AdvertisedWindows {
    entries: VecDeque<Advertised>,
}

impl AdvertisedWindows {
    /// Records that an ACK advertising `window` packets from `first` left at
    /// `at` (times never go backwards).
    pub(super) fn record(&mut self, at: Instant, first: SeqNumber, window: u32) {
        if self.entries.len() >= MAX_KEPT {
            self.entries.pop_front();
        }
        self.entries.push_back(Advertised { at, first, window });
    }

    /// The window that held the sender back for the packets arriving at
    /// `now`: the newest one advertised at least `rtt` before `now`, or
    /// `None` while none is that old. Forgets the ones older than it, which
    /// the next question (at a later `now`) needs only if the round trip
    /// grew faster than time passed; it then gets `None`, "not limited",
    /// until the history covers the longer round trip.
    pub(super) fn in_force(&mut self, now: Instant, rtt: Duration) -> Option<Advertised> {
        let cutoff = now.checked_sub(rtt)?;
        while self.entries.get(1).is_some_and(|e| e.at <= cutoff) {
            self.entries.pop_front();
        }
        self.entries.front().filter(|e| e.at <= cutoff).copied()
    }

    /// Forgets everything (the buffer changed size: the old windows no
    /// longer say whether the new one is too small).
    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::test_epoch;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_window_in_force_is_the_newest_a_round_trip_old() {
        let t0 = test_epoch();
        let mut w = AdvertisedWindows::default();
        for i in 0..30u32 {
            w.record(t0 + ms(10 * u64::from(i)), SeqNumber::new(100 * i), 50);
        }
        // At 250 ms with a 100 ms RTT: the ACK sent at 150 ms.
        let got = w.in_force(t0 + ms(250), ms(100)).unwrap();
        assert_eq!((got.first.value(), got.edge().value()), (1500, 1550));
        // Exactly a round trip old counts.
        let got = w.in_force(t0 + ms(260), ms(100)).unwrap();
        assert_eq!(got.first.value(), 1600);
        // Between two ACKs: the older.
        let got = w.in_force(t0 + ms(275), ms(100)).unwrap();
        assert_eq!(got.first.value(), 1700);
    }

    #[test]
    fn nothing_is_in_force_before_a_round_trip_passed() {
        let t0 = test_epoch() + ms(1000);
        let mut w = AdvertisedWindows::default();
        assert_eq!(w.in_force(t0, ms(100)), None);
        w.record(t0, SeqNumber::new(0), 8);
        assert_eq!(w.in_force(t0 + ms(99), ms(100)), None);
        assert_eq!(w.in_force(t0 + ms(100), ms(100)).map(|e| e.window), Some(8));
        w.clear();
        assert_eq!(w.in_force(t0 + ms(500), ms(100)), None);
    }

    #[test]
    fn a_shorter_round_trip_later_still_finds_the_newest_old_enough() {
        let t0 = test_epoch();
        let mut w = AdvertisedWindows::default();
        for i in 0..10u32 {
            w.record(t0 + ms(10 * u64::from(i)), SeqNumber::new(i), 1);
        }
        assert_eq!(w.in_force(t0 + ms(90), ms(50)).unwrap().first.value(), 4);
        assert_eq!(w.in_force(t0 + ms(90), ms(10)).unwrap().first.value(), 8);
    }

    #[test]
    fn the_history_is_bounded() {
        let t0 = test_epoch();
        let mut w = AdvertisedWindows::default();
        for i in 0..(MAX_KEPT as u32 + 10) {
            w.record(t0 + ms(u64::from(i)), SeqNumber::new(i), 1);
        }
        assert_eq!(w.entries.len(), MAX_KEPT);
        assert_eq!(w.entries.front().map(|e| e.first.value()), Some(10));
        assert_eq!(
            w.in_force(t0 + ms(2000), ms(1000)).unwrap().first.value(),
            1000
        );
    }
}
