//! A small fixed-size histogram of durations, for the queueing delay a
//! simulated bottleneck imposes: eight buckets per power of two of
//! microseconds (about 9 % resolution), from under 1 µs to over an hour, no
//! allocation.

use std::time::Duration;

/// Sub-buckets per power of two.
const SUB: usize = 8;

/// Powers of two covered: 2^32 µs is over an hour.
const OCTAVES: usize = 32;

/// Bucket 0 holds zero; then `SUB` buckets per octave.
const BUCKETS: usize = 1 + SUB * OCTAVES;

/// Counts of durations by bucket. Compare two snapshots with
/// [`since`](Self::since) to look at an interval of a run.
#[derive(Clone, PartialEq, Eq)]
pub struct DelayHistogram {
    counts: [u64; BUCKETS],
    total: u64,
}

impl std::fmt::Debug for DelayHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelayHistogram")
            .field("total", &self.total)
            .field("p50", &self.percentile(0.5))
            .field("p99", &self.percentile(0.99))
            .finish()
    }
}

impl Default for DelayHistogram {
    fn default() -> Self {
        DelayHistogram {
            counts: [0; BUCKETS],
            total: 0,
        }
    }
}

/// The bucket of `us` microseconds.
fn bucket_of(us: u64) -> usize {
    if us == 0 {
        return 0;
    }
    let octave = 63 - us.leading_zeros() as usize; // floor(log2 us)
    if octave >= OCTAVES {
        return BUCKETS - 1;
    }
    // The top bits below the leading one pick the sub-bucket.
    let sub = if octave >= 3 {
        ((us >> (octave - 3)) & 7) as usize
    } else {
        ((us << (3 - octave)) & 7) as usize
    };
    1 + octave * SUB + sub
}

/// The largest duration in µs that falls into bucket `b` (its upper edge).
fn upper_edge(b: usize) -> u64 {
    if b == 0 {
        return 0;
    }
    let octave = (b - 1) / SUB;
    let sub = (b - 1) % SUB;
    let base = 1u64 << octave;
    // Bucket covers [base·(8+sub)/8, base·(9+sub)/8).
    (base * (9 + sub as u64))
        .div_ceil(8)
        .saturating_sub(1)
        .max(base)
}

impl DelayHistogram {
    /// Counts one duration.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(us)] += 1;
        self.total += 1;
    }

    /// How many durations were counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0 ≤ q ≤ 1) as the upper edge of its bucket, or
    /// zero when nothing was counted.
    pub fn percentile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(upper_edge(b));
            }
        }
        Duration::from_micros(upper_edge(BUCKETS - 1))
    }

    /// The counts added since `earlier`, a snapshot of this histogram.
    pub fn since(&self, earlier: &DelayHistogram) -> DelayHistogram {
        let mut d = DelayHistogram::default();
        for (i, c) in d.counts.iter_mut().enumerate() {
            *c = self.counts[i].saturating_sub(earlier.counts[i]);
        }
        d.total = self.total.saturating_sub(earlier.total);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for us in [
            0u64,
            1,
            2,
            3,
            7,
            8,
            9,
            15,
            16,
            100,
            999,
            1000,
            50_000,
            1 << 31,
        ] {
            let b = bucket_of(us);
            assert!(b >= last, "{us}");
            last = b;
            let edge = upper_edge(b);
            assert!(edge >= us, "{us} above its bucket edge {edge}");
            // Within ~13 % (one sub-bucket of eight) above the value.
            assert!(edge as f64 <= us as f64 * 1.13 + 1.0, "{us}: edge {edge}");
        }
    }

    #[test]
    fn percentiles_and_intervals() {
        let mut h = DelayHistogram::default();
        assert_eq!(h.percentile(0.5), Duration::ZERO);
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.percentile(0.5).as_secs_f64() * 1e3;
        let p99 = h.percentile(0.99).as_secs_f64() * 1e3;
        assert!((50.0..=56.5).contains(&p50), "p50 {p50}");
        assert!((99.0..=112.0).contains(&p99), "p99 {p99}");
        let snapshot = h.clone();
        for _ in 0..10 {
            h.record(Duration::ZERO);
        }
        let d = h.since(&snapshot);
        assert_eq!(d.count(), 10);
        assert_eq!(d.percentile(0.99), Duration::ZERO);
    }
}
