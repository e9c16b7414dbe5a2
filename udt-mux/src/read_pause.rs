//! When a receive thread should pause before reading its socket again:
//! interrupt moderation for a busy socket.
//!
//! Why: a sender that does not coalesce its datagrams (UDT4, or any peer
//! without GSO) delivers them microseconds apart, and a receive thread
//! that sleeps in `poll` whenever the socket is empty wakes for nearly
//! every one of them: a wake-up, a `poll`, a `recvmmsg` and a lock per
//! datagram. Pausing a little after a read, while datagrams keep coming,
//! lets the next read take everything that arrived meanwhile in one call.
//! A socket that is idle, or slower than one datagram per pause, is read
//! as soon as a datagram arrives, as before.

use std::time::{Duration, Instant};

/// The longest pause used, whatever the configuration asks: the socket's
/// buffer must absorb what arrives meanwhile, and a pause delays
/// acknowledgements the peer's round-trip time then includes.
pub(crate) const MAX_READ_PAUSE: Duration = Duration::from_micros(500);

/// A read that found this many datagrams or more is followed at once: the
/// kernel already batches them (GRO), and a pause measured no gain there.
const FEW: usize = 16;

/// A pause is worth it when about this many datagrams are expected to
/// arrive during it (at the rate of the last read): an acknowledgement
/// stream of one datagram every 80 µs is read as it comes.
const EXPECTED: u32 = 8;

/// Decides the pause after each read of one socket.
#[derive(Debug)]
pub(crate) struct ReadPause {
    pause: Duration,
    /// When the last read that found datagrams ended.
    last_data: Option<Instant>,
}

impl ReadPause {
    /// A decider pausing `pause` (at most [`MAX_READ_PAUSE`]); zero never
    /// pauses.
    pub(crate) fn new(pause: Duration) -> ReadPause {
        ReadPause {
            pause: pause.min(MAX_READ_PAUSE),
            last_data: None,
        }
    }

    /// After a read at `now` that found `datagrams` and emptied the socket
    /// (`drained`): how long to wait before reading again, if at all. Only
    /// when the read found few datagrams and they came fast: at the rate
    /// since the previous read that found any, [`EXPECTED`] or more would
    /// arrive during the pause, so waiting costs each at most one pause of
    /// delay and saves a wake-up for nearly every one. A read that stopped
    /// on its budget is followed at once.
    pub(crate) fn after_read(
        &mut self,
        now: Instant,
        datagrams: usize,
        drained: bool,
    ) -> Option<Duration> {
        if self.pause.is_zero() || datagrams == 0 {
            return None;
        }
        let since = self.last_data.map(|t| now.saturating_duration_since(t));
        self.last_data = Some(now);
        let fast = since.is_some_and(|dt| {
            self.pause.saturating_mul(datagrams as u32) >= dt.saturating_mul(EXPECTED)
        });
        (drained && datagrams < FEW && fast).then_some(self.pause)
    }

    /// For a receive thread after a read that found `datagrams` and emptied
    /// the socket (`drained`): sleeps the pause if [`after_read`](Self::after_read)
    /// asks for one, and returns whether it did (the next read must then
    /// not wait in `poll`).
    pub(crate) fn rest(&mut self, datagrams: usize, drained: bool) -> bool {
        match self.after_read(Instant::now(), datagrams, drained) {
            Some(pause) => {
                std::thread::sleep(pause);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // one real instant as the epoch
    fn epoch() -> Instant {
        Instant::now()
    }

    #[test]
    fn pauses_only_while_few_datagrams_come_fast() {
        let t0 = epoch();
        let us = Duration::from_micros;
        let mut p = ReadPause::new(us(100));
        // The first datagram after a quiet spell is read at once and not
        // followed by a pause: the socket may stay quiet.
        assert_eq!(p.after_read(t0, 1, true), None);
        // One datagram 5 µs later: 20 would arrive during a pause.
        assert_eq!(p.after_read(t0 + us(5), 1, true), Some(us(100)));
        // The read after the pause found a batch: read on at once ...
        assert_eq!(p.after_read(t0 + us(110), 21, true), None);
        // ... and pause again when the next wake finds one or two.
        assert_eq!(p.after_read(t0 + us(114), 2, true), Some(us(100)));
        // A read that found nothing (the flow stopped) never pauses.
        assert_eq!(p.after_read(t0 + us(220), 0, true), None);
        // An acknowledgement every 80 µs: one or two per pause, no pause.
        assert_eq!(p.after_read(t0 + us(1_000), 1, true), None);
        assert_eq!(p.after_read(t0 + us(1_080), 1, true), None);
        assert_eq!(p.after_read(t0 + us(1_160), 1, true), None);
        // A read cut short by its budget is followed at once.
        assert_eq!(p.after_read(t0 + us(1_162), 4, false), None);
        assert_eq!(p.after_read(t0 + us(1_164), 3, true), Some(us(100)));
    }

    #[test]
    fn zero_never_pauses_and_the_pause_is_capped() {
        let t0 = epoch();
        let us = Duration::from_micros;
        let mut off = ReadPause::new(Duration::ZERO);
        assert_eq!(off.after_read(t0, 1, true), None);
        assert_eq!(off.after_read(t0 + us(1), 1, true), None);
        let mut long = ReadPause::new(Duration::from_secs(1));
        assert_eq!(long.after_read(t0, 1, true), None);
        assert_eq!(long.after_read(t0 + us(1), 1, true), Some(MAX_READ_PAUSE));
        // Fast, but a whole batch: no pause.
        assert_eq!(long.after_read(t0 + us(2), FEW, true), None);
    }
}
