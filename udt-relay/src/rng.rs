//! The relay's seedable pseudo-random generator (SplitMix64).
//!
//! Impairments must be reproducible from a seed, and the relay is a
//! stand-alone tool that should not pull in the protocol engine or `rand`
//! for a dozen lines of arithmetic. SplitMix64 passes BigCrush, which is far
//! more than loss and jitter decisions need.

/// A deterministic generator: the same seed gives the same decisions.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose whole output is fixed by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)` (53 random bits).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`; never true for `p <= 0`, always for `p >= 1`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }

    /// A uniform integer in `[0, n]` (inclusive), by multiply-shift.
    pub(crate) fn up_to(&mut self, n: u64) -> u64 {
        match n.checked_add(1) {
            Some(range) => ((self.next_u64() as u128 * range as u128) >> 64) as u64,
            None => self.next_u64(),
        }
    }
}

/// Derives an independent seed for one use of a master seed, so that the
/// two directions of a relay draw from unrelated streams: traffic in one
/// direction must not shift the losses of the other.
pub(crate) fn derive_seed(master: u64, stream: u64) -> u64 {
    let mut g = SplitMix64::new(master ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    g.next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(derive_seed(42, 1), derive_seed(42, 2));
    }

    #[test]
    fn chance_and_range_edges() {
        let mut g = SplitMix64::new(7);
        for _ in 0..1000 {
            assert!(!g.chance(0.0));
            assert!(!g.chance(-1.0));
            assert!(g.chance(1.0));
            assert!(g.up_to(5) <= 5);
            assert_eq!(g.up_to(0), 0);
            let f = g.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
        // The full range does not overflow.
        let _ = g.up_to(u64::MAX);
    }

    #[test]
    fn chance_is_roughly_fair() {
        let mut g = SplitMix64::new(3);
        let hits = (0..100_000).filter(|_| g.chance(0.25)).count();
        assert!((24_000..26_000).contains(&hits), "{hits}");
    }
}
