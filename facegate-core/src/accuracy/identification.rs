//! Identification mode (1:N with a threshold), in the terms of NIST's Face
//! Recognition Technology Evaluation (FRTE) and ISO/IEC 19795-1.
//!
//! - FPIR(T), false positive identification rate: the share of non-mated
//!   searches whose best candidate scores at least T (anyone returned above
//!   the threshold is a false positive, since the person is not enrolled).
//! - FNIR(T), false negative identification rate: the share of mated
//!   searches in which the mate is not the rank-1 candidate with a score of
//!   at least T. This is the rank-1 FNIR that a gate which admits or alerts
//!   on the top candidate experiences; FRTE also reports a rank-L variant
//!   (mate anywhere in the top L above T) for investigative lists, which
//!   [`super::cmc`] covers without a threshold.
//!
//! Ties: a score equal to T counts as at or above it (a match). The
//! threshold for a target FPIR is the lowest T with FPIR(T) ≤ target; see
//! [`Searches::fnir_at_fpir`] for how it is chosen and when it is not
//! estimable.

use serde::Serialize;

use super::error::AccuracyError;
use super::input::Searches;
use super::rate::Rate;

/// The target FPIRs reported by default: those FRTE tabulates for
/// identification (1 in 1,000, 3 in 1,000, 1 in 100).
pub const DEFAULT_TARGET_FPIRS: [f64; 3] = [0.001, 0.003, 0.01];

/// FNIR at the threshold that meets one target FPIR.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperatingPoint {
    /// The FPIR asked for.
    pub target_fpir: f64,
    /// The smallest non-zero FPIR these non-mated searches can show:
    /// 1 / their number. A target below it is not estimable.
    pub resolution: f64,
    /// The threshold and the rates there; `None` when the target is below
    /// the resolution (an observed FPIR of 0 would not show that the true
    /// FPIR is that low, so no threshold is invented).
    pub at: Option<AtThreshold>,
}

/// Both identification rates at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AtThreshold {
    /// The threshold (a score equal to it is a match).
    pub threshold: f32,
    /// FPIR at the threshold (at most the target).
    pub fpir: Rate,
    /// Rank-1 FNIR at the threshold.
    pub fnir: Rate,
}

impl Searches {
    /// FPIR(T): non-mated searches whose best candidate scores at least T.
    pub fn fpir(&self, threshold: f32) -> Rate {
        count(self.non_mated(), |o| o.false_positive(threshold))
    }

    /// FNIR(T), rank 1: mated searches whose mate is not the rank-1
    /// candidate with a score of at least T.
    pub fn fnir(&self, threshold: f32) -> Rate {
        count(self.mated(), |o| o.misses(threshold))
    }

    /// For each target FPIR, the lowest threshold T with FPIR(T) ≤ target,
    /// and FNIR at T.
    ///
    /// With N non-mated searches, k = the largest count with k / N ≤ target
    /// (compared as f64) false positives are allowed. Let s be the (k+1)-th
    /// highest non-mated best score (an empty answer counting as −∞). Every
    /// T ≤ s gives at least k+1 false positives, and every T > s at most k,
    /// so T is the next representable f32 above s (`f32::next_up`): a
    /// score value taken from the non-mated best scores, moved up by one
    /// unit in the last place. With ties at s the FPIR reached may be well
    /// below the target; it is reported as measured. When k = 0 (target
    /// < 1 / N) the target is not estimable and `at` is `None`.
    pub fn fnir_at_fpir(&self, targets: &[f64]) -> Result<Vec<OperatingPoint>, AccuracyError> {
        let mut best: Vec<f32> = self.non_mated().map(|o| o.best_score()).collect();
        if best.is_empty() {
            return Err(AccuracyError::Empty("non-mated searches"));
        }
        if self.mated().next().is_none() {
            return Err(AccuracyError::Empty("mated searches"));
        }
        best.sort_by(|a, b| b.total_cmp(a));
        let n = best.len();
        targets
            .iter()
            .map(|&target| {
                let at = threshold_in_sorted(&best, target)?.map(|t| self.at_threshold(t));
                Ok(OperatingPoint {
                    target_fpir: target,
                    resolution: 1.0 / n as f64,
                    at,
                })
            })
            .collect()
    }

    /// FPIR and FNIR at `threshold`.
    pub fn at_threshold(&self, threshold: f32) -> AtThreshold {
        AtThreshold {
            threshold,
            fpir: self.fpir(threshold),
            fnir: self.fnir(threshold),
        }
    }
}

/// The lowest threshold T at which at most `target` of the non-mated
/// searches whose best scores are `best` score at least T, by the rule of
/// [`Searches::fnir_at_fpir`] (which uses it), and FPIR there; `None` when
/// the target is below 1 / `best.len()` (not estimable).
///
/// Public so that a calibration can apply the very same rule to best
/// scores that are not one engine search each (the best score of a probe
/// within a sampled manifest). Scores must be finite or −∞ (no candidate).
pub fn fpir_threshold(best: &[f32], target: f64) -> Result<Option<(f32, Rate)>, AccuracyError> {
    if best.is_empty() {
        return Err(AccuracyError::Empty("non-mated searches"));
    }
    for (i, &s) in best.iter().enumerate() {
        if s.is_nan() || s == f32::INFINITY {
            super::error::finite(s, || format!("best score {i}"))?;
        }
    }
    let mut sorted = best.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let found = threshold_in_sorted(&sorted, target)?;
    Ok(found.map(|t| (t, count(best.iter(), |&s| s >= t))))
}

/// [`fpir_threshold`] on best scores sorted from the highest down.
fn threshold_in_sorted(sorted: &[f32], target: f64) -> Result<Option<f32>, AccuracyError> {
    if !(target > 0.0 && target < 1.0) {
        return Err(AccuracyError::BadTarget(target));
    }
    let k = allowed_false_positives(target, sorted.len());
    Ok((k > 0).then(|| sorted[k].next_up()))
}

/// The largest k with k / n ≤ target, the quotient computed in f64 as a
/// reader recomputing FPIR would (so that rounding in `target * n` cannot
/// give one more or one fewer).
fn allowed_false_positives(target: f64, n: usize) -> usize {
    let mut k = ((target * n as f64).floor() as usize).min(n);
    while k > 0 && k as f64 / n as f64 > target {
        k -= 1;
    }
    while k < n && (k + 1) as f64 / n as f64 <= target {
        k += 1;
    }
    k
}

/// The share of `items` for which `error` holds.
pub(crate) fn count<'a, T: 'a>(
    items: impl Iterator<Item = &'a T>,
    error: impl Fn(&T) -> bool,
) -> Rate {
    let mut r = Rate::default();
    for it in items {
        r.trials += 1;
        r.errors += usize::from(error(it));
    }
    r
}
