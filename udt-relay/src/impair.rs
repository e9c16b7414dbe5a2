//! The impairment model of one direction: given a datagram's arrival time
//! and size, decide whether it is lost, duplicated or queue-dropped, and when
//! each surviving copy leaves the relay.
//!
//! Pure logic with time as an argument (no sockets, no clock), so it is
//! tested deterministically; the relay threads call it per datagram.
//!
//! Order of effects, as on a real path: random or bursty loss first, then
//! duplication, then the bottleneck (serialization at the rate cap behind a
//! drop-tail queue), then propagation delay plus jitter. Jitter is drawn per
//! copy, so packets closer together than the jitter get reordered.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use udt_core::rng::Rng;

/// Bytes of IPv4 + UDP header counted for each datagram at the rate cap, so
/// that the cap is a wire rate (UDT4 counts the same 28 bytes in its MSS).
pub const WIRE_OVERHEAD: usize = 28;

/// How datagrams are lost.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Loss {
    /// No loss.
    #[default]
    None,
    /// Each datagram is lost independently with this probability.
    Random(f64),
    /// The two-state Gilbert–Elliott channel: bursty loss. Before each
    /// datagram the channel moves Good→Bad with probability `good_to_bad`
    /// or Bad→Good with `bad_to_good`; the datagram is then lost with
    /// `loss_good` or `loss_bad` depending on the state.
    GilbertElliott {
        /// Probability per datagram of entering the bad state.
        good_to_bad: f64,
        /// Probability per datagram of leaving the bad state (1 / mean burst length).
        bad_to_good: f64,
        /// Loss probability in the good state.
        loss_good: f64,
        /// Loss probability in the bad state.
        loss_bad: f64,
    },
}

impl Loss {
    /// Bursty loss with a given long-run loss rate and mean burst length (in
    /// datagrams): a Gilbert channel that loses everything in the bad state
    /// and nothing in the good one. `mean_burst` below 1 is treated as 1, and
    /// raised where needed to reach a high rate (a good run lasts at least
    /// one datagram, so bursts must average `rate / (1 - rate)` or more).
    pub fn bursty(mean_loss: f64, mean_burst: f64) -> Loss {
        let loss = mean_loss.clamp(0.0, 1.0);
        if loss >= 1.0 {
            return Loss::GilbertElliott {
                good_to_bad: 1.0,
                bad_to_good: 0.0,
                loss_good: 0.0,
                loss_bad: 1.0,
            };
        }
        let shortest_burst = loss / (1.0 - loss);
        let bad_to_good = 1.0 / mean_burst.max(1.0).max(shortest_burst);
        // Stationary P(bad) = g2b / (g2b + b2g) = loss.
        let good_to_bad = (loss * bad_to_good / (1.0 - loss)).min(1.0);
        Loss::GilbertElliott {
            good_to_bad,
            bad_to_good,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }

    /// The long-run fraction of datagrams this model loses.
    pub fn mean_rate(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Random(p) => p.clamp(0.0, 1.0),
            Loss::GilbertElliott {
                good_to_bad,
                bad_to_good,
                loss_good,
                loss_bad,
            } => {
                let sum = good_to_bad + bad_to_good;
                if sum <= 0.0 {
                    // Never changes state: it stays good.
                    return loss_good;
                }
                let bad = good_to_bad / sum;
                bad * loss_bad + (1.0 - bad) * loss_good
            }
        }
    }

    fn probabilities(&self) -> [f64; 4] {
        match *self {
            Loss::None => [0.0; 4],
            Loss::Random(p) => [p, 0.0, 0.0, 0.0],
            Loss::GilbertElliott {
                good_to_bad,
                bad_to_good,
                loss_good,
                loss_bad,
            } => [good_to_bad, bad_to_good, loss_good, loss_bad],
        }
    }
}

/// What one direction of the relay does to the datagrams crossing it.
/// `Impairment::default()` forwards everything at once, unchanged.
#[derive(Clone, Debug, PartialEq)]
pub struct Impairment {
    /// Random or bursty loss.
    pub loss: Loss,
    /// Fixed one-way delay added to every datagram.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` per datagram; datagrams
    /// closer together than this are reordered.
    pub jitter: Duration,
    /// Probability that a datagram is sent twice (the copy gets its own jitter).
    pub duplicate: f64,
    /// Bottleneck rate in bits per second (datagram plus [`WIRE_OVERHEAD`]);
    /// `None` for no cap.
    pub rate_bps: Option<u64>,
    /// Bytes the bottleneck queue holds (drop-tail), counting the datagram
    /// being serialized. A datagram arriving at an empty queue is always
    /// accepted. Used only with `rate_bps`. Default 1 MiB.
    pub queue_bytes: usize,
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment {
            loss: Loss::None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            duplicate: 0.0,
            rate_bps: None,
            queue_bytes: 1 << 20,
        }
    }
}

/// Why an [`Impairment`] was refused.
#[derive(Clone, Debug, PartialEq)]
pub enum ImpairmentError {
    /// A probability outside `[0, 1]` (or NaN); names the field.
    Probability(&'static str, f64),
    /// A rate cap of zero bits per second.
    ZeroRate,
    /// A delay or jitter above [`MAX_DELAY`]; names the field.
    TooLong(&'static str, Duration),
}

/// The longest delay or jitter accepted: an hour is already no network, and
/// the bound keeps every computed departure time far from `Instant` overflow.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

impl fmt::Display for ImpairmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImpairmentError::Probability(field, v) => {
                write!(f, "{field} must be a probability between 0 and 1, got {v}")
            }
            ImpairmentError::ZeroRate => {
                f.write_str("the rate cap must be above 0 bit/s (leave it out for no cap)")
            }
            ImpairmentError::TooLong(field, v) => {
                write!(f, "{field} must be at most {MAX_DELAY:?}, got {v:?}")
            }
        }
    }
}

impl std::error::Error for ImpairmentError {}

impl Impairment {
    /// Checks that every probability is in `[0, 1]`, the rate is non-zero
    /// and delay and jitter are at most [`MAX_DELAY`].
    ///
    /// # Errors
    /// [`ImpairmentError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ImpairmentError> {
        let [a, b, c, d] = self.loss.probabilities();
        let names = ["loss", "bad_to_good", "loss_good", "loss_bad"];
        let names = if matches!(self.loss, Loss::GilbertElliott { .. }) {
            ["good_to_bad", names[1], names[2], names[3]]
        } else {
            names
        };
        for (name, p) in names.into_iter().zip([a, b, c, d]) {
            check_probability(name, p)?;
        }
        check_probability("duplicate", self.duplicate)?;
        if self.rate_bps == Some(0) {
            return Err(ImpairmentError::ZeroRate);
        }
        if self.delay > MAX_DELAY {
            return Err(ImpairmentError::TooLong("delay", self.delay));
        }
        if self.jitter > MAX_DELAY {
            return Err(ImpairmentError::TooLong("jitter", self.jitter));
        }
        Ok(())
    }

    /// True when the direction forwards everything at once, unchanged.
    pub fn is_transparent(&self) -> bool {
        self.loss.mean_rate() == 0.0
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && self.duplicate == 0.0
            && self.rate_bps.is_none()
    }
}

fn check_probability(name: &'static str, p: f64) -> Result<(), ImpairmentError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(ImpairmentError::Probability(name, p))
    }
}

/// Why the model dropped a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Random or bursty loss.
    Loss,
    /// The bottleneck queue was full (rate cap).
    Queue,
}

/// The fate of one copy of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Send it at this time.
    Deliver(Instant),
    /// Drop it.
    Drop(DropReason),
}

/// The model's decision for one arriving datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What happens to the datagram itself.
    pub original: Fate,
    /// What happens to its duplicate, if one was made.
    pub duplicate: Option<Fate>,
}

/// The state of one direction's impairments: the loss channel state, the
/// bottleneck queue and the random stream.
#[derive(Debug)]
pub struct DirectionModel {
    impairment: Impairment,
    rng: Rng,
    /// Gilbert–Elliott state.
    is_bad: bool,
    /// When the bottleneck finishes serializing everything queued so far.
    link_free_at: Option<Instant>,
    /// (serialization done, bytes) of each datagram still in the queue, oldest first.
    queue: VecDeque<(Instant, usize)>,
    queued_bytes: usize,
}

impl DirectionModel {
    /// A model applying `impairment`, drawing from a stream fixed by `seed`.
    pub fn new(impairment: Impairment, seed: u64) -> Self {
        DirectionModel {
            impairment,
            rng: Rng::new(seed),
            is_bad: false,
            link_free_at: None,
            // Room for a full queue of large datagrams without growing later.
            queue: VecDeque::with_capacity(1024),
            queued_bytes: 0,
        }
    }

    /// The impairment applied.
    pub fn impairment(&self) -> &Impairment {
        &self.impairment
    }

    /// Bytes waiting at the bottleneck at `now` (after retiring finished ones).
    pub fn queued_bytes(&mut self, now: Instant) -> usize {
        self.retire(now);
        self.queued_bytes
    }

    /// Decides the fate of a datagram of `len` bytes arriving at `now`.
    /// `now` must not go backwards between calls.
    pub fn on_datagram(&mut self, now: Instant, len: usize) -> Verdict {
        if self.is_lost() {
            return Verdict {
                original: Fate::Drop(DropReason::Loss),
                duplicate: None,
            };
        }
        let original = self.through_bottleneck(now, len);
        let duplicate = if self.rng.chance(self.impairment.duplicate) {
            Some(self.through_bottleneck(now, len))
        } else {
            None
        };
        Verdict {
            original,
            duplicate,
        }
    }

    fn is_lost(&mut self) -> bool {
        match self.impairment.loss {
            Loss::None => false,
            Loss::Random(p) => self.rng.chance(p),
            Loss::GilbertElliott {
                good_to_bad,
                bad_to_good,
                loss_good,
                loss_bad,
            } => {
                let flip = if self.is_bad {
                    bad_to_good
                } else {
                    good_to_bad
                };
                if self.rng.chance(flip) {
                    self.is_bad = !self.is_bad;
                }
                let p = if self.is_bad { loss_bad } else { loss_good };
                self.rng.chance(p)
            }
        }
    }

    /// Serializes one copy at the rate cap (if any) behind the drop-tail
    /// queue, then adds delay and jitter.
    fn through_bottleneck(&mut self, now: Instant, len: usize) -> Fate {
        let mut leave = now;
        if let Some(rate) = self.impairment.rate_bps {
            self.retire(now);
            let wire = len + WIRE_OVERHEAD;
            if !self.queue.is_empty()
                && self.queued_bytes.saturating_add(wire) > self.impairment.queue_bytes
            {
                return Fate::Drop(DropReason::Queue);
            }
            let start = match self.link_free_at {
                Some(t) if t > now => t,
                _ => now,
            };
            // A link so slow that the departure overflows `Instant` is a
            // full queue, not a panic.
            let Some(done) = start.checked_add(serialization_time(wire, rate)) else {
                return Fate::Drop(DropReason::Queue);
            };
            self.link_free_at = Some(done);
            self.queue.push_back((done, wire));
            self.queued_bytes += wire;
            leave = done;
        }
        let jitter = self.impairment.jitter.min(MAX_DELAY).as_nanos() as u64;
        let extra = Duration::from_nanos(self.rng.below(jitter.saturating_add(1)));
        let delay = self.impairment.delay.min(MAX_DELAY) + extra;
        match leave.checked_add(delay) {
            Some(t) => Fate::Deliver(t),
            None => Fate::Drop(DropReason::Queue),
        }
    }

    /// Forgets the datagrams whose serialization has finished by `now`.
    fn retire(&mut self, now: Instant) {
        while let Some(&(done, bytes)) = self.queue.front() {
            if done > now {
                break;
            }
            self.queue.pop_front();
            self.queued_bytes -= bytes;
        }
    }
}

/// Time to put `bytes` on a link of `rate_bps` bits per second.
fn serialization_time(bytes: usize, rate_bps: u64) -> Duration {
    let nanos = (bytes as u128 * 8 * 1_000_000_000) / rate_bps.max(1) as u128;
    Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn epoch() -> Instant {
        Instant::now()
    }

    fn deliver_time(f: Fate) -> Instant {
        match f {
            Fate::Deliver(t) => t,
            Fate::Drop(r) => panic!("dropped: {r:?}"),
        }
    }

    #[test]
    fn transparent_forwards_at_once() {
        let t0 = epoch();
        let mut m = DirectionModel::new(Impairment::default(), 1);
        assert!(m.impairment().is_transparent());
        for i in 0..100 {
            let now = t0 + Duration::from_micros(i);
            let v = m.on_datagram(now, 1500);
            assert_eq!(v.original, Fate::Deliver(now));
            assert_eq!(v.duplicate, None);
        }
    }

    #[test]
    fn random_loss_rate_and_determinism() {
        for seed in [1u64, 2, 99] {
            let imp = Impairment {
                loss: Loss::Random(0.05),
                ..Impairment::default()
            };
            let t0 = epoch();
            let mut a = DirectionModel::new(imp.clone(), seed);
            let mut b = DirectionModel::new(imp, seed);
            let mut lost = 0;
            for i in 0..100_000u64 {
                let now = t0 + Duration::from_micros(i);
                let va = a.on_datagram(now, 100);
                assert_eq!(va, b.on_datagram(now, 100), "seed={seed}");
                if va.original == Fate::Drop(DropReason::Loss) {
                    lost += 1;
                }
            }
            // 5 % of 100 000 = 5000, sd ≈ 69.
            assert!((4700..5300).contains(&lost), "seed={seed} lost={lost}");
        }
    }

    #[test]
    fn bursty_loss_has_the_mean_rate_and_long_bursts() {
        let loss = Loss::bursty(0.02, 8.0);
        assert!((loss.mean_rate() - 0.02).abs() < 1e-9);
        let imp = Impairment {
            loss,
            ..Impairment::default()
        };
        let t0 = epoch();
        let mut m = DirectionModel::new(imp, 5);
        let (mut lost, mut bursts, mut prev_lost) = (0u32, 0u32, false);
        let n = 400_000;
        for i in 0..n {
            let l = m.on_datagram(t0 + Duration::from_nanos(i), 10).original
                == Fate::Drop(DropReason::Loss);
            if l {
                lost += 1;
                if !prev_lost {
                    bursts += 1;
                }
            }
            prev_lost = l;
        }
        let rate = f64::from(lost) / n as f64;
        let mean_burst = f64::from(lost) / f64::from(bursts.max(1));
        assert!((0.017..0.023).contains(&rate), "rate={rate}");
        assert!((6.5..9.5).contains(&mean_burst), "mean burst={mean_burst}");
    }

    #[test]
    fn bursty_edges() {
        assert_eq!(Loss::bursty(0.0, 4.0).mean_rate(), 0.0);
        assert!((Loss::bursty(1.0, 4.0).mean_rate() - 1.0).abs() < 1e-9);
        assert!((Loss::bursty(0.5, 0.0).mean_rate() - 0.5).abs() < 1e-9);
        assert!((Loss::bursty(0.8, 1.0).mean_rate() - 0.8).abs() < 1e-9);
        assert!((Loss::bursty(0.99, 2.0).mean_rate() - 0.99).abs() < 1e-9);
        let never = Loss::GilbertElliott {
            good_to_bad: 0.0,
            bad_to_good: 0.0,
            loss_good: 0.1,
            loss_bad: 1.0,
        };
        assert_eq!(never.mean_rate(), 0.1);
    }

    #[test]
    fn delay_and_jitter_bounds_and_reordering() {
        let imp = Impairment {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(2),
            ..Impairment::default()
        };
        let t0 = epoch();
        let mut m = DirectionModel::new(imp, 11);
        let mut last = t0;
        let mut reordered = 0;
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_micros(100 * i);
            let at = deliver_time(m.on_datagram(now, 1000).original);
            let extra = at - now;
            assert!(extra >= Duration::from_millis(10), "{extra:?}");
            assert!(extra <= Duration::from_millis(12), "{extra:?}");
            if at < last {
                reordered += 1;
            }
            last = last.max(at);
        }
        assert!(
            reordered > 1000,
            "jitter 2 ms over 100 µs spacing must reorder: {reordered}"
        );
    }

    #[test]
    fn rate_cap_serializes_and_drops_tail() {
        // 8 Mbit/s: a 972 + 28 = 1000-byte datagram takes 1 ms.
        let imp = Impairment {
            rate_bps: Some(8_000_000),
            queue_bytes: 10_000,
            ..Impairment::default()
        };
        let t0 = epoch();
        let mut m = DirectionModel::new(imp, 3);
        // A burst of 20 at the same instant: 10 fit (10 000 bytes), 10 drop.
        let mut times = Vec::new();
        let mut queue_drops = 0;
        for _ in 0..20 {
            match m.on_datagram(t0, 972).original {
                Fate::Deliver(t) => times.push(t),
                Fate::Drop(DropReason::Queue) => queue_drops += 1,
                Fate::Drop(r) => panic!("{r:?}"),
            }
        }
        assert_eq!(times.len(), 10);
        assert_eq!(queue_drops, 10);
        for (i, t) in times.iter().enumerate() {
            assert_eq!(*t - t0, Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(m.queued_bytes(t0), 10_000);
        // After 3.5 ms three have left, so three more fit.
        let later = t0 + Duration::from_micros(3500);
        assert_eq!(m.queued_bytes(later), 7000);
        for k in 0..3 {
            let at = deliver_time(m.on_datagram(later, 972).original);
            assert_eq!(at - t0, Duration::from_millis(11 + k));
        }
        assert_eq!(
            m.on_datagram(later, 972).original,
            Fate::Drop(DropReason::Queue)
        );
        // Long after, the link is idle again: no queueing delay.
        let idle = t0 + Duration::from_secs(1);
        assert_eq!(
            deliver_time(m.on_datagram(idle, 972).original) - idle,
            Duration::from_millis(1)
        );
    }

    #[test]
    fn oversized_datagram_passes_an_empty_queue() {
        let imp = Impairment {
            rate_bps: Some(1_000_000),
            queue_bytes: 0,
            ..Impairment::default()
        };
        let t0 = epoch();
        let mut m = DirectionModel::new(imp, 3);
        assert!(matches!(
            m.on_datagram(t0, 60_000).original,
            Fate::Deliver(_)
        ));
        assert_eq!(m.on_datagram(t0, 1).original, Fate::Drop(DropReason::Queue));
    }

    #[test]
    fn duplication_rate() {
        let imp = Impairment {
            duplicate: 0.1,
            ..Impairment::default()
        };
        let t0 = epoch();
        let mut m = DirectionModel::new(imp, 8);
        let dups = (0..50_000)
            .filter(|_| m.on_datagram(t0, 10).duplicate.is_some())
            .count();
        assert!((4_600..5_400).contains(&dups), "{dups}");
    }

    #[test]
    fn validation() {
        assert!(Impairment::default().validate().is_ok());
        let bad = Impairment {
            loss: Loss::Random(1.5),
            ..Impairment::default()
        };
        assert_eq!(
            bad.validate(),
            Err(ImpairmentError::Probability("loss", 1.5))
        );
        let nan = Impairment {
            duplicate: f64::NAN,
            ..Impairment::default()
        };
        assert!(nan.validate().is_err());
        let ge = Impairment {
            loss: Loss::GilbertElliott {
                good_to_bad: -0.1,
                bad_to_good: 0.5,
                loss_good: 0.0,
                loss_bad: 1.0,
            },
            ..Impairment::default()
        };
        assert!(matches!(
            ge.validate(),
            Err(ImpairmentError::Probability("good_to_bad", _))
        ));
        let zero = Impairment {
            rate_bps: Some(0),
            ..Impairment::default()
        };
        assert_eq!(zero.validate(), Err(ImpairmentError::ZeroRate));
        assert!(!zero.is_transparent());
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let too_long = Impairment {
            jitter: Duration::from_secs(u64::MAX / 4),
            ..Impairment::default()
        };
        assert!(matches!(
            too_long.validate(),
            Err(ImpairmentError::TooLong("jitter", _))
        ));
        // Even unvalidated, huge values are clamped instead of overflowing.
        let imp = Impairment {
            delay: Duration::from_secs(u64::MAX / 2),
            jitter: Duration::from_secs(u64::MAX / 4),
            rate_bps: Some(1),
            queue_bytes: usize::MAX,
            ..Impairment::default()
        };
        let t0 = epoch();
        let mut m = DirectionModel::new(imp, 1);
        for _ in 0..1000 {
            let _ = m.on_datagram(t0, 65_000);
        }
        assert_eq!(
            serialization_time(usize::MAX, 1),
            Duration::from_nanos(u64::MAX)
        );
    }
}
