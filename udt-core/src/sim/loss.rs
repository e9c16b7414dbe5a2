//! Random loss models of a simulated link direction: none, independent
//! (Bernoulli) and bursty (Gilbert–Elliott).

use crate::rng::Rng;

/// How a link direction loses datagrams.
///
/// Probabilities are clamped to `[0, 1]`; a NaN probability counts as 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// Nothing is lost at random.
    None,
    /// Each datagram is lost independently with this probability.
    Bernoulli(f64),
    /// A two-state Markov chain (Gilbert–Elliott): the link is either
    /// *good* or *bad* and loses datagrams with `loss_good` or `loss_bad`.
    /// After each datagram it moves good→bad with `p_good_to_bad` and
    /// bad→good with `p_bad_to_good`, so losses come in bursts whose mean
    /// length grows as `p_bad_to_good` shrinks.
    GilbertElliott {
        /// Per-datagram probability of going from good to bad.
        p_good_to_bad: f64,
        /// Per-datagram probability of going from bad to good.
        p_bad_to_good: f64,
        /// Loss probability while good.
        loss_good: f64,
        /// Loss probability while bad.
        loss_bad: f64,
    },
}

impl Loss {
    /// The long-run fraction of datagrams lost.
    ///
    /// For Gilbert–Elliott this is the stationary mix
    /// `π_bad·loss_bad + (1−π_bad)·loss_good` with
    /// `π_bad = p_gb / (p_gb + p_bg)`; a chain that never moves
    /// (both transition probabilities 0) stays good forever.
    pub fn mean_loss(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Bernoulli(p) => clamp01(p),
            Loss::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_good,
                loss_bad,
            } => {
                let gb = clamp01(p_good_to_bad);
                let bg = clamp01(p_bad_to_good);
                let pi_bad = if gb + bg > 0.0 { gb / (gb + bg) } else { 0.0 };
                pi_bad * clamp01(loss_bad) + (1.0 - pi_bad) * clamp01(loss_good)
            }
        }
    }
}

/// Probabilities from a test configuration may be anything; make them
/// usable (NaN → 0).
fn clamp01(p: f64) -> f64 {
    if p.is_nan() {
        0.0
    } else {
        p.clamp(0.0, 1.0)
    }
}

/// The per-direction state a loss model needs between datagrams.
#[derive(Clone, Debug, Default)]
pub(crate) struct LossState {
    /// Gilbert–Elliott: whether the chain is in the bad state. Starts good.
    is_bad: bool,
}

impl LossState {
    /// Decides whether the next datagram is lost, advancing the chain.
    ///
    /// The loss draw uses the state the datagram found the link in; the
    /// transition happens afterwards, so a burst starts with the datagram
    /// after the good→bad move.
    pub(crate) fn is_lost(&mut self, loss: &Loss, rng: &mut Rng) -> bool {
        match *loss {
            Loss::None => false,
            Loss::Bernoulli(p) => rng.chance(p),
            Loss::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_good,
                loss_bad,
            } => {
                let lost = rng.chance(if self.is_bad { loss_bad } else { loss_good });
                let p_flip = if self.is_bad {
                    p_bad_to_good
                } else {
                    p_good_to_bad
                };
                if rng.chance(p_flip) {
                    self.is_bad = !self.is_bad;
                }
                lost
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (loss fraction, mean burst length) over `n` draws.
    fn measure(loss: Loss, seed: u64, n: usize) -> (f64, f64) {
        let mut rng = Rng::new(seed);
        let mut state = LossState::default();
        let (mut lost, mut bursts, mut in_burst) = (0usize, 0usize, false);
        for _ in 0..n {
            if state.is_lost(&loss, &mut rng) {
                lost += 1;
                if !in_burst {
                    bursts += 1;
                }
                in_burst = true;
            } else {
                in_burst = false;
            }
        }
        (lost as f64 / n as f64, lost as f64 / bursts.max(1) as f64)
    }

    #[test]
    fn none_and_extremes() {
        assert_eq!(measure(Loss::None, 1, 1000).0, 0.0);
        assert_eq!(measure(Loss::Bernoulli(0.0), 1, 1000).0, 0.0);
        assert_eq!(measure(Loss::Bernoulli(1.0), 1, 1000).0, 1.0);
        assert_eq!(measure(Loss::Bernoulli(f64::NAN), 1, 1000).0, 0.0);
        assert_eq!(measure(Loss::Bernoulli(-3.0), 1, 1000).0, 0.0);
        assert_eq!(measure(Loss::Bernoulli(7.0), 1, 1000).0, 1.0);
        assert_eq!(Loss::Bernoulli(f64::NAN).mean_loss(), 0.0);
    }

    #[test]
    fn gilbert_elliott_matches_its_stationary_loss_and_is_bursty() {
        let ge = Loss::GilbertElliott {
            p_good_to_bad: 0.01,
            p_bad_to_good: 0.25,
            loss_good: 0.0,
            loss_bad: 1.0,
        };
        let mean = ge.mean_loss();
        assert!((mean - 0.01 / 0.26).abs() < 1e-12);
        for seed in [1u64, 2, 3] {
            let (rate, burst) = measure(ge, seed, 200_000);
            assert!((rate - mean).abs() < 0.006, "seed={seed} rate={rate}");
            // Bad lasts 1/p_bg = 4 datagrams on average, all lost.
            assert!((3.5..4.5).contains(&burst), "seed={seed} burst={burst}");
            let (_, bern_burst) = measure(Loss::Bernoulli(mean), seed, 200_000);
            assert!(bern_burst < 1.1, "seed={seed} bern_burst={bern_burst}");
        }
    }

    #[test]
    fn frozen_chain_stays_good() {
        let ge = Loss::GilbertElliott {
            p_good_to_bad: 0.0,
            p_bad_to_good: 0.0,
            loss_good: 0.0,
            loss_bad: 1.0,
        };
        assert_eq!(ge.mean_loss(), 0.0);
        assert_eq!(measure(ge, 9, 10_000).0, 0.0);
    }
}
