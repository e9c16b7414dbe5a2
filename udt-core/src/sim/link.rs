//! One direction of a simulated link: its configuration, its counters and
//! the per-datagram decision of whether, when and how a datagram arrives.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::histogram::DelayHistogram;
use super::loss::{Loss, LossState};
use crate::rng::Rng;

/// The largest datagram an [`LinkConfig::ideal`] link carries: the biggest
/// UDP payload over IPv6 jumbograms aside, nothing UDP can carry is larger.
pub const MAX_DATAGRAM: usize = 65_535;

/// The one-way delay of `LinkConfig::default()`: a 20 ms round trip, long
/// enough that RTT-driven timers see a real RTT and short enough that
/// protocol tests finish in few virtual seconds.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(10);

/// The impairments of one link direction. Every field may be changed
/// mid-run through [`Sim::link_config_mut`](super::Sim::link_config_mut);
/// the change applies to datagrams sent afterwards.
///
/// A datagram offered to the link goes through, in order: the MTU check,
/// the blackhole, the bottleneck (serialization at `bandwidth_bps` behind a
/// drop-tail queue of `queue_bytes`), random loss, duplication, corruption
/// (each copy independently), then propagation (`delay` plus a uniform
/// jitter in `[0, jitter]`, plus `reorder_delay` for the datagrams picked
/// for reordering), and last the receiving endpoint's read schedule
/// (`read_batching`).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// Propagation delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` per datagram; any
    /// non-zero jitter reorders datagrams sent closer together than it.
    pub jitter: Duration,
    /// Random loss.
    pub loss: Loss,
    /// Probability that a delivered datagram arrives twice (the copy gets
    /// its own jitter).
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_delay`, so that
    /// datagrams sent up to that much later overtake it: occasional
    /// reordering, unlike the wholesale shuffle of a jitter larger than the
    /// spacing of the datagrams.
    pub reorder: f64,
    /// How long a datagram picked for reordering is held back.
    pub reorder_delay: Duration,
    /// Probability that one random bit of a datagram copy is flipped.
    pub corrupt: f64,
    /// Bottleneck rate in bits per second; `None` for an unlimited link.
    /// `Some(0)` carries nothing (every datagram is a queue drop).
    pub bandwidth_bps: Option<u64>,
    /// Bytes that may wait at the bottleneck behind the datagram being
    /// serialized; a datagram that does not fit is dropped (drop-tail).
    /// A datagram reaching an idle bottleneck never waits, so 0 means "no
    /// buffer". Unused without `bandwidth_bps`.
    pub queue_bytes: usize,
    /// Datagrams longer than this many bytes (UDP payload) are dropped.
    pub mtu: usize,
    /// Drop every datagram sent while set (an outage). Datagrams already in
    /// flight still arrive.
    pub blackhole: bool,
    /// The receiving endpoint reads its datagrams in batches, as a real
    /// receiver does (recvmmsg, UDP GRO, a thread that is not always
    /// running): `None` hands each datagram over the moment it arrives.
    pub read_batching: Option<ReadBatching>,
}

/// When a receiving endpoint gets to read what arrived: at the end of every
/// `period`, and after a scheduling stall now and then. Everything that
/// arrived since the last read is handed over at one instant, in arrival
/// order, so the endpoint sees the bursts a real socket reader sees: one
/// time for dozens of datagrams, and the ACKs it sends for them leaving
/// together. On real sockets that is what made both receivers' arrival
/// speed read ~1 000 000 packets/s and the sender's delivery samples
/// bunch (docs/congestion-control.md 11.6).
///
/// The schedule is a pure function of time (stalls are drawn per window
/// of `stall_every` from the link's seed), so arrival order is kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadBatching {
    /// Reads happen at multiples of this (from the link's first datagram);
    /// zero reads at once, leaving only the stalls.
    pub period: Duration,
    /// Each window of this length holds at most one stall; zero for none.
    pub stall_every: Duration,
    /// The chance that a window holds a stall.
    pub stall_chance: f64,
    /// The longest stall (at most `stall_every`); each is drawn uniformly
    /// up to it, at a uniform place where it fits in its window. Nothing
    /// is read during a stall: what arrives is handed over when it ends.
    pub longest_stall: Duration,
}

impl ReadBatching {
    /// The instant a datagram arriving `at` (as an offset from the link's
    /// first datagram) is read: the next read at or after it. `seed` draws
    /// the stalls. Never earlier than `at`, and never earlier for a later
    /// `at` (arrival order is kept).
    fn read_at(&self, at: Duration, seed: u64) -> Duration {
        let period = self.period.as_nanos();
        let mut t = at.as_nanos();
        if period > 0 {
            t = t.div_ceil(period) * period;
        }
        let every = self.stall_every.as_nanos().min(u128::from(u64::MAX));
        if every == 0 || self.stall_chance <= 0.0 {
            return nanos(t);
        }
        // A read pushed past a stall may land in the next window's stall:
        // follow a few; stalls shorter than their window end the chain.
        for _ in 0..4 {
            let window = t / every;
            let mut rng = Rng::new(seed ^ (window as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            if !rng.chance(self.stall_chance) {
                break;
            }
            let longest = self.longest_stall.as_nanos().min(every) as u64;
            // Within its window, so that no later window's reads come
            // before this stall's end (order is kept).
            let length = rng.below(longest + 1);
            let start = window * every + u128::from(rng.below(every as u64 - length + 1));
            let length = u128::from(length);
            if t < start || t >= start + length {
                break;
            }
            t = start + length;
            if period > 0 {
                t = t.div_ceil(period) * period;
            }
        }
        nanos(t)
    }
}

/// `n` nanoseconds, saturating (a run of centuries does not happen).
fn nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

impl LinkConfig {
    /// A link that only delays: no jitter, loss, duplication, corruption or
    /// bandwidth limit, and an MTU of [`MAX_DATAGRAM`].
    pub fn ideal(delay: Duration) -> Self {
        LinkConfig {
            delay,
            jitter: Duration::ZERO,
            loss: Loss::None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            corrupt: 0.0,
            bandwidth_bps: None,
            queue_bytes: 0,
            mtu: MAX_DATAGRAM,
            blackhole: false,
            read_batching: None,
        }
    }
}

impl Default for LinkConfig {
    /// [`LinkConfig::ideal`] with [`DEFAULT_DELAY`].
    fn default() -> Self {
        LinkConfig::ideal(DEFAULT_DELAY)
    }
}

/// Counters of one link direction. Each datagram offered is counted once in
/// `sent` and ends in exactly one of `delivered`, `lost`, `queue_dropped`,
/// `mtu_dropped` or `blackholed` (or is still in flight); a duplicate adds
/// one to `duplicated` and then ends like any other copy, so
/// `sent + duplicated == delivered + lost + queue_dropped + mtu_dropped +
/// blackholed + in_flight()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams the sender offered to this direction.
    pub sent: u64,
    /// Bytes the sender offered.
    pub sent_bytes: u64,
    /// Datagram copies handed to the receiving endpoint.
    pub delivered: u64,
    /// Bytes handed to the receiving endpoint.
    pub delivered_bytes: u64,
    /// Datagrams lost by the random loss model.
    pub lost: u64,
    /// Datagrams dropped because the bottleneck queue was full.
    pub queue_dropped: u64,
    /// Extra copies created by duplication.
    pub duplicated: u64,
    /// Copies that had a bit flipped.
    pub corrupted: u64,
    /// Datagrams dropped for exceeding the MTU.
    pub mtu_dropped: u64,
    /// Datagrams dropped by the blackhole (or whose arrival time would not
    /// fit in an `Instant`).
    pub blackholed: u64,
}

impl LinkStats {
    /// Datagram copies accepted by the link that have not arrived yet.
    pub fn in_flight(&self) -> u64 {
        (self.sent + self.duplicated).saturating_sub(
            self.delivered + self.lost + self.queue_dropped + self.mtu_dropped + self.blackholed,
        )
    }
}

/// What a link decided for one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Dropped (already counted).
    Drop,
    /// Arrives at `at`; a duplicate, if any, arrives at `copy_at`.
    Deliver {
        at: Instant,
        copy_at: Option<Instant>,
    },
}

/// One link direction with its state.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) config: LinkConfig,
    pub(crate) stats: LinkStats,
    /// The receiving node's index.
    pub(crate) to: usize,
    /// One generator per impairment, so that enabling, say, jitter does not
    /// change which datagrams the loss model picks.
    loss_rng: Rng,
    jitter_rng: Rng,
    duplicate_rng: Rng,
    corrupt_rng: Rng,
    reorder_rng: Rng,
    /// Seed of the read schedule's stalls.
    read_seed: u64,
    /// The origin of the read schedule: the first datagram's offer.
    read_epoch: Option<Instant>,
    loss_state: LossState,
    bottleneck: Bottleneck,
    /// How long accepted datagrams waited in the bottleneck queue.
    pub(crate) queue_delay: DelayHistogram,
}

impl Link {
    /// A link direction whose random streams derive from `seed`, which the
    /// caller makes unique per direction.
    pub(crate) fn new(config: LinkConfig, to: usize, seed: u64) -> Self {
        // Distinct odd multipliers give four unrelated SplitMix seeds.
        let stream = |k: u64| Rng::new(seed ^ k.wrapping_mul(0xD1B5_4A32_D192_ED03));
        Link {
            config,
            stats: LinkStats::default(),
            to,
            loss_rng: stream(1),
            jitter_rng: stream(2),
            duplicate_rng: stream(3),
            corrupt_rng: stream(4),
            reorder_rng: stream(5),
            read_seed: seed ^ 6u64.wrapping_mul(0xD1B5_4A32_D192_ED03),
            read_epoch: None,
            loss_state: LossState::default(),
            bottleneck: Bottleneck::default(),
            queue_delay: DelayHistogram::default(),
        }
    }

    /// Decides the fate of a datagram of `len` bytes offered at `now`, and
    /// counts it. Constant work (amortized) and no allocation once the
    /// bottleneck queue has reached its largest size.
    pub(crate) fn offer(&mut self, now: Instant, len: usize) -> Verdict {
        let c = &self.config;
        self.stats.sent += 1;
        self.stats.sent_bytes += len as u64;
        if len > c.mtu {
            self.stats.mtu_dropped += 1;
            return Verdict::Drop;
        }
        if c.blackhole {
            self.stats.blackholed += 1;
            return Verdict::Drop;
        }
        let departs = match c.bandwidth_bps {
            None => now,
            Some(bps) => match self.bottleneck.enqueue(now, len, bps, c.queue_bytes) {
                Some(t) => {
                    self.queue_delay.record(self.bottleneck.last_wait);
                    t
                }
                None => {
                    self.stats.queue_dropped += 1;
                    return Verdict::Drop;
                }
            },
        };
        if self.loss_state.is_lost(&c.loss, &mut self.loss_rng) {
            self.stats.lost += 1;
            return Verdict::Drop;
        }
        let is_duplicated = self.duplicate_rng.chance(c.duplicate);
        let Some(at) = self.arrival(departs) else {
            self.stats.blackholed += 1;
            return Verdict::Drop;
        };
        let copy_at = if is_duplicated {
            self.stats.duplicated += 1;
            let copy_at = self.arrival(departs);
            if copy_at.is_none() {
                self.stats.blackholed += 1;
            }
            copy_at
        } else {
            None
        };
        Verdict::Deliver { at, copy_at }
    }

    /// Departure plus propagation delay plus jitter; `None` if that is
    /// beyond what `Instant` can represent.
    fn arrival(&mut self, departs: Instant) -> Option<Instant> {
        let jitter_ns = u64::try_from(self.config.jitter.as_nanos()).unwrap_or(u64::MAX - 1);
        let extra = if jitter_ns == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.jitter_rng.below(jitter_ns + 1))
        };
        // Drawn only when enabled, so that links without reordering keep
        // the random streams (and runs) they always had.
        let held = if self.config.reorder > 0.0 && self.reorder_rng.chance(self.config.reorder) {
            self.config.reorder_delay
        } else {
            Duration::ZERO
        };
        let at = departs
            .checked_add(self.config.delay)?
            .checked_add(extra)?
            .checked_add(held)?;
        let Some(batching) = self.config.read_batching else {
            return Some(at);
        };
        let epoch = *self.read_epoch.get_or_insert(departs);
        let offset = at.saturating_duration_since(epoch);
        epoch.checked_add(batching.read_at(offset, self.read_seed))
    }

    /// Flips one random bit of `datagram` with the configured probability.
    pub(crate) fn maybe_corrupt(&mut self, datagram: &mut [u8]) {
        if datagram.is_empty() || !self.corrupt_rng.chance(self.config.corrupt) {
            return;
        }
        let bit = self.corrupt_rng.below(datagram.len() as u64 * 8);
        let (byte, shift) = ((bit / 8) as usize, bit % 8);
        if let Some(b) = datagram.get_mut(byte) {
            *b ^= 1 << shift;
            self.stats.corrupted += 1;
        }
    }
}

/// The bottleneck of a link direction: a transmitter serializing at the
/// configured rate behind a FIFO bounded in bytes.
#[derive(Debug, Default)]
struct Bottleneck {
    /// When the transmitter finishes the last accepted datagram.
    busy_until: Option<Instant>,
    /// Accepted datagrams that had not started serializing when last
    /// looked at: (start time, length), in start order.
    waiting: VecDeque<(Instant, usize)>,
    /// Sum of the lengths in `waiting`.
    waiting_bytes: usize,
    /// Remainder (in 1/bps ns) of the serialization times so far, carried
    /// so the long-run rate is exact rather than rounded per datagram.
    carry: u128,
    /// How long the datagram accepted last waited before its serialization
    /// began.
    last_wait: Duration,
}

impl Bottleneck {
    /// Accepts a datagram of `len` bytes at `now`, returning when its last
    /// bit leaves the transmitter, or `None` when the queue has no room.
    fn enqueue(
        &mut self,
        now: Instant,
        len: usize,
        bps: u64,
        queue_bytes: usize,
    ) -> Option<Instant> {
        if bps == 0 {
            return None;
        }
        // Datagrams whose serialization has begun no longer wait.
        while let Some(&(start, l)) = self.waiting.front() {
            if start > now {
                break;
            }
            self.waiting_bytes -= l;
            self.waiting.pop_front();
        }
        let start = match self.busy_until {
            Some(t) if t > now => t,
            _ => now,
        };
        if start > now {
            if self.waiting_bytes.saturating_add(len) > queue_bytes {
                return None;
            }
            self.waiting.push_back((start, len));
            self.waiting_bytes += len;
        }
        // len·8 bits at bps: len·8·1e9/bps ns, with the remainder carried.
        let numerator = len as u128 * 8 * 1_000_000_000 + self.carry;
        let ns = numerator / bps as u128;
        self.carry = numerator % bps as u128;
        let finish = start.checked_add(Duration::from_nanos(u64::try_from(ns).ok()?))?;
        self.busy_until = Some(finish);
        self.last_wait = start - now;
        Some(finish)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::time::test_epoch as epoch;

    #[test]
    fn bottleneck_serializes_exactly_and_drops_tail() {
        let t0 = epoch();
        let mut b = Bottleneck::default();
        // 1000 bytes at 8 Mbit/s = 1 ms each; room for 2 waiting.
        let finishes: Vec<_> = (0..5)
            .map(|_| b.enqueue(t0, 1000, 8_000_000, 2000))
            .collect();
        let ms = Duration::from_millis(1);
        assert_eq!(
            finishes,
            vec![
                Some(t0 + ms),
                Some(t0 + 2 * ms),
                Some(t0 + 3 * ms),
                None,
                None
            ]
        );
        // At 1 ms the second one starts, freeing its queue space.
        assert_eq!(b.enqueue(t0 + ms, 1000, 8_000_000, 2000), Some(t0 + 4 * ms));
        assert_eq!(b.enqueue(t0 + ms, 1000, 8_000_000, 2000), None);
        // Idle again much later: no wait, no queue.
        assert_eq!(
            b.enqueue(t0 + 100 * ms, 1000, 8_000_000, 0),
            Some(t0 + 101 * ms)
        );
        assert_eq!(b.enqueue(t0 + 100 * ms, 1, 8_000_000, 0), None);
        assert_eq!(b.enqueue(t0, 1, 0, usize::MAX), None);
    }

    #[test]
    fn bottleneck_carries_the_rounding_remainder() {
        let t0 = epoch();
        let mut b = Bottleneck::default();
        // 1 byte at 3 bit/s is 2.666… s; 3 bytes must take exactly 8 s.
        let mut last = None;
        for _ in 0..3 {
            last = b.enqueue(t0, 1, 3, usize::MAX);
        }
        assert_eq!(last, Some(t0 + Duration::from_secs(8)));
    }

    #[test]
    fn offer_counts_and_orders_checks() {
        let t0 = epoch();
        let mut link = Link::new(
            LinkConfig {
                mtu: 100,
                ..LinkConfig::ideal(Duration::from_millis(5))
            },
            1,
            42,
        );
        assert_eq!(link.offer(t0, 101), Verdict::Drop);
        assert_eq!(
            link.offer(t0, 100),
            Verdict::Deliver {
                at: t0 + Duration::from_millis(5),
                copy_at: None
            }
        );
        link.config.blackhole = true;
        assert_eq!(link.offer(t0, 0), Verdict::Drop);
        link.config.blackhole = false;
        link.config.delay = Duration::MAX;
        assert_eq!(link.offer(t0, 10), Verdict::Drop);
        let s = link.stats;
        assert_eq!(
            (s.sent, s.mtu_dropped, s.blackholed, s.sent_bytes),
            (4, 1, 2, 211)
        );
        assert_eq!(s.in_flight(), 1);
    }

    #[test]
    fn corrupt_flips_exactly_one_bit_and_ignores_empty() {
        let mut link = Link::new(
            LinkConfig {
                corrupt: 1.0,
                ..LinkConfig::default()
            },
            0,
            7,
        );
        let mut empty: [u8; 0] = [];
        link.maybe_corrupt(&mut empty);
        assert_eq!(link.stats.corrupted, 0);
        for _ in 0..1000 {
            let mut d = [0u8; 13];
            link.maybe_corrupt(&mut d);
            let ones: u32 = d.iter().map(|b| b.count_ones()).sum();
            assert_eq!(ones, 1);
        }
        assert_eq!(link.stats.corrupted, 1000);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let t0 = epoch();
        let mut link = Link::new(
            LinkConfig {
                jitter: Duration::from_micros(300),
                ..LinkConfig::ideal(Duration::from_millis(1))
            },
            0,
            3,
        );
        let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
        for _ in 0..10_000 {
            let Verdict::Deliver { at, .. } = link.offer(t0, 10) else {
                panic!("ideal link dropped");
            };
            lo = lo.min(at - t0);
            hi = hi.max(at - t0);
        }
        assert!(
            lo >= Duration::from_millis(1) && lo < Duration::from_micros(1010),
            "{lo:?}"
        );
        assert!(
            hi <= Duration::from_micros(1300) && hi > Duration::from_micros(1290),
            "{hi:?}"
        );
    }

    #[test]
    fn batched_reads_hand_over_at_read_instants_in_order() {
        let t0 = epoch();
        let every_ms = ReadBatching {
            period: Duration::from_millis(1),
            stall_every: Duration::ZERO,
            stall_chance: 0.0,
            longest_stall: Duration::ZERO,
        };
        let mut link = Link::new(
            LinkConfig {
                read_batching: Some(every_ms),
                ..LinkConfig::ideal(Duration::from_millis(5))
            },
            0,
            1,
        );
        // Offered 0.25 ms apart from t0: arrivals at 5.00, 5.25, ... ms are
        // read at 5, 6, 6, 6, 6, 7, ... ms.
        let reads: Vec<Duration> = (0..9u64)
            .map(|i| {
                let Verdict::Deliver { at, .. } =
                    link.offer(t0 + Duration::from_micros(250 * i), 1)
                else {
                    panic!("ideal link dropped");
                };
                at - t0
            })
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(
            reads,
            vec![
                ms(5),
                ms(6),
                ms(6),
                ms(6),
                ms(6),
                ms(7),
                ms(7),
                ms(7),
                ms(7)
            ]
        );
    }

    #[test]
    fn read_stalls_postpone_reads_and_keep_arrival_order() {
        let t0 = epoch();
        let stalls = ReadBatching {
            period: Duration::from_millis(1),
            stall_every: Duration::from_millis(20),
            stall_chance: 1.0,
            longest_stall: Duration::from_millis(8),
        };
        let mut link = Link::new(
            LinkConfig {
                read_batching: Some(stalls),
                ..LinkConfig::ideal(Duration::from_millis(5))
            },
            0,
            9,
        );
        let mut last = Duration::ZERO;
        let mut longest_wait = Duration::ZERO;
        for i in 0..10_000u64 {
            let sent = Duration::from_micros(50 * i);
            let Verdict::Deliver { at, .. } = link.offer(t0 + sent, 1) else {
                panic!("ideal link dropped");
            };
            let read = at - t0;
            let arrived = sent + Duration::from_millis(5);
            assert!(read >= arrived, "read {read:?} before arrival {arrived:?}");
            assert!(read >= last, "read {read:?} before an earlier one {last:?}");
            last = read;
            longest_wait = longest_wait.max(read - arrived);
        }
        // Some arrival waited out most of a stall, none much longer than
        // one (and a period).
        assert!(longest_wait > Duration::from_millis(4), "{longest_wait:?}");
        assert!(
            longest_wait <= Duration::from_millis(18),
            "{longest_wait:?}"
        );
    }

    #[test]
    fn reorder_holds_back_the_configured_share() {
        let t0 = epoch();
        let mut link = Link::new(
            LinkConfig {
                reorder: 0.1,
                reorder_delay: Duration::from_millis(2),
                ..LinkConfig::ideal(Duration::from_millis(1))
            },
            0,
            11,
        );
        let mut held = 0;
        for _ in 0..10_000 {
            let Verdict::Deliver { at, .. } = link.offer(t0, 10) else {
                panic!("ideal link dropped");
            };
            match (at - t0).as_millis() {
                1 => {}
                3 => held += 1,
                other => panic!("arrival after {other} ms"),
            }
        }
        assert!((900..1100).contains(&held), "held {held}");
    }
}
