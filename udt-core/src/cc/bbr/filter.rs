//! The two windowed filters of the path model: the largest delivery rate of
//! the last few round trips and the smallest round-trip time of the last
//! few seconds.

use std::time::{Duration, Instant};

/// The largest value seen in the last `N` round trips: one slot per round,
/// so the maximum is exact and an old peak leaves the window on time.
#[derive(Clone, Debug)]
pub(super) struct MaxPerRound<const N: usize> {
    /// `(round, largest value seen in that round)`, ring indexed by round % N.
    slots: [(u64, f64); N],
}

impl<const N: usize> MaxPerRound<N> {
    pub(super) fn new() -> Self {
        MaxPerRound {
            slots: [(0, 0.0); N],
        }
    }

    /// Records `value` as seen in `round`.
    pub(super) fn update(&mut self, round: u64, value: f64) {
        let slot = &mut self.slots[(round % N as u64) as usize];
        if slot.0 != round {
            *slot = (round, value);
        } else if value > slot.1 {
            slot.1 = value;
        }
    }

    /// The largest value recorded in rounds `round − N + 1 ..= round`, or 0.
    pub(super) fn get(&self, round: u64) -> f64 {
        let oldest = round.saturating_sub(N as u64 - 1);
        self.slots
            .iter()
            .filter(|(r, _)| *r >= oldest && *r <= round)
            .map(|(_, v)| *v)
            .fold(0.0, f64::max)
    }
}

/// The smallest round-trip time seen, and when it was last seen (or
/// refreshed).
#[derive(Clone, Copy, Debug)]
pub(super) struct MinRtt {
    value: Option<Duration>,
    stamp: Option<Instant>,
}

impl MinRtt {
    pub(super) fn new() -> Self {
        MinRtt {
            value: None,
            stamp: None,
        }
    }

    /// The current minimum, if any sample was taken.
    pub(super) fn get(&self) -> Option<Duration> {
        self.value
    }

    /// When the minimum was last taken or confirmed.
    pub(super) fn stamp(&self) -> Option<Instant> {
        self.stamp
    }

    /// Takes a sample: a new minimum replaces the old one; one within
    /// `tolerance` of it confirms it; one older than `window` is replaced by
    /// any sample.
    pub(super) fn update(
        &mut self,
        now: Instant,
        sample: Duration,
        window: Duration,
        tolerance: Duration,
    ) {
        let expired = self
            .stamp
            .is_none_or(|t| now.saturating_duration_since(t) > window);
        match self.value {
            Some(v) if !expired && sample > v => {
                if sample <= v + tolerance {
                    self.stamp = Some(now);
                }
            }
            _ => {
                self.value = Some(sample);
                self.stamp = Some(now);
            }
        }
    }

    /// Restarts the window at `now` with the current value kept (after a
    /// round-trip probe that found nothing lower).
    pub(super) fn confirm(&mut self, now: Instant) {
        if self.value.is_some() {
            self.stamp = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_per_round_forgets_after_the_window() {
        let mut f = MaxPerRound::<3>::new();
        assert_eq!(f.get(0), 0.0);
        f.update(1, 10.0);
        f.update(1, 7.0);
        f.update(2, 5.0);
        assert_eq!(f.get(2), 10.0);
        f.update(3, 4.0);
        assert_eq!(f.get(3), 10.0);
        // Round 1 leaves the window at round 4.
        f.update(4, 1.0);
        assert_eq!(f.get(4), 5.0);
        // A gap of rounds without samples empties it.
        assert_eq!(f.get(20), 0.0);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs one real Instant as an epoch
    fn min_rtt_window_and_tolerance() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut m = MinRtt::new();
        assert_eq!(m.get(), None);
        m.update(t0, ms(50), ms(1000), ms(1));
        m.update(t0 + ms(10), ms(40), ms(1000), ms(1));
        assert_eq!(m.get(), Some(ms(40)));
        // Higher but within tolerance: confirms without raising.
        m.update(t0 + ms(500), Duration::from_micros(40_500), ms(1000), ms(1));
        assert_eq!((m.get(), m.stamp()), (Some(ms(40)), Some(t0 + ms(500))));
        // Higher and outside: ignored while the window lasts.
        m.update(t0 + ms(900), ms(60), ms(1000), ms(1));
        assert_eq!((m.get(), m.stamp()), (Some(ms(40)), Some(t0 + ms(500))));
        // Expired: any sample replaces it.
        m.update(t0 + ms(1600), ms(60), ms(1000), ms(1));
        assert_eq!(m.get(), Some(ms(60)));
        m.confirm(t0 + ms(1700));
        assert_eq!(m.stamp(), Some(t0 + ms(1700)));
    }
}
