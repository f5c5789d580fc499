//! The percentile bootstrap, seeded so that a report is reproducible.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::error::AccuracyError;

/// How confidence intervals are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BootstrapConfig {
    /// Resamples per interval (1,000 by default; 0 reports no intervals).
    pub resamples: usize,
    /// Seed of every resample: the same seed and searches give the same
    /// intervals, on any machine and thread count.
    pub seed: u64,
    /// Coverage of the intervals, in (0, 1); 0.95 by default.
    pub confidence: f64,
}

impl Default for BootstrapConfig {
    /// 1,000 resamples, seed 1, 95 % intervals.
    fn default() -> Self {
        BootstrapConfig {
            resamples: 1_000,
            seed: 1,
            confidence: 0.95,
        }
    }
}

impl BootstrapConfig {
    /// Checks the confidence level.
    pub fn check(&self) -> Result<(), AccuracyError> {
        if self.confidence > 0.0 && self.confidence < 1.0 {
            Ok(())
        } else {
            Err(AccuracyError::BadParameter(format!(
                "confidence {} is not within (0, 1)",
                self.confidence
            )))
        }
    }

    /// The random stream of resample set `stream`: ChaCha8 seeded with
    /// `seed`, on its own stream so that sets do not share draws.
    pub fn rng(&self, stream: u64) -> ChaCha8Rng {
        let mut r = ChaCha8Rng::seed_from_u64(self.seed);
        r.set_stream(stream);
        r
    }
}

/// A confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval<T> {
    /// Lower bound.
    pub low: T,
    /// Upper bound.
    pub high: T,
}

/// The error rate of each of `resamples` resamples of `errors` (one flag
/// per trial), each drawing as many trials as there are, with replacement,
/// by `rng.random_range(0..n)`.
pub fn resample_rates(errors: &[bool], resamples: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let n = errors.len();
    (0..resamples)
        .map(|_| {
            let hits = (0..n).filter(|_| errors[rng.random_range(0..n)]).count();
            hits as f64 / n as f64
        })
        .collect()
}

/// The percentile interval of `values` at `confidence`: with B values
/// sorted, the bounds are the ⌈B·a⌉-th and ⌈B·(1 − a)⌉-th smallest,
/// a = (1 − confidence) / 2 (nearest rank; infinities sort last). B·a is
/// taken 1e-9 low before rounding up, so that rounding in `1 − 0.95` does
/// not move a bound by one rank.
pub fn percentile_interval(values: &mut [f64], confidence: f64) -> Option<Interval<f64>> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let b = values.len();
    let a = (1.0 - confidence) / 2.0;
    let pick = |q: f64| values[((q * b as f64 - 1e-9).ceil() as usize).clamp(1, b) - 1];
    Some(Interval {
        low: pick(a),
        high: pick(1.0 - a),
    })
}
