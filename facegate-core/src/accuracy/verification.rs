//! Verification (1:1): a claimed identity checked against one subject.
//!
//! - FMR(T), false match rate: the share of impostor (non-mated) pairs
//!   scoring at least T.
//! - FNMR(T), false non-match rate: the share of genuine (mated) pairs
//!   scoring below T.
//! - DET: FNMR against FMR over every threshold, usually on log axes.
//! - EER: the rate where the DET crosses FMR = FNMR, a one-number summary
//!   (not an operating point: no border runs at its EER).
//!
//! A score equal to T is a match, as in identification.

use serde::Serialize;

use super::error::{AccuracyError, finite};
use super::rate::Rate;

/// Points a DET curve is thinned to by default: enough for a smooth curve
/// on log axes, few enough for a report.
pub const DEFAULT_DET_POINTS: usize = 300;

/// Genuine and impostor pair scores, sorted, ready to answer at any threshold.
#[derive(Debug, Clone)]
pub struct Verification {
    genuine: Vec<f32>,
    impostor: Vec<f32>,
}

/// One point of a DET curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DetPoint {
    /// The threshold.
    pub threshold: f32,
    /// Impostor pairs at or above it.
    pub fmr: Rate,
    /// Genuine pairs below it.
    pub fnmr: Rate,
}

/// The equal error rate and the two sweep points it lies between.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Eer {
    /// Where the segment from `before` to `at` crosses FMR = FNMR.
    pub eer: f64,
    /// The last threshold of the sweep with FMR > FNMR.
    pub before: Option<DetPoint>,
    /// The first threshold of the sweep with FNMR ≥ FMR.
    pub at: DetPoint,
}

impl Verification {
    /// Checks the pair scores (both sets non-empty, every score finite).
    pub fn new(mut genuine: Vec<f32>, mut impostor: Vec<f32>) -> Result<Self, AccuracyError> {
        if genuine.is_empty() {
            return Err(AccuracyError::Empty("genuine pairs"));
        }
        if impostor.is_empty() {
            return Err(AccuracyError::Empty("impostor pairs"));
        }
        for (i, &s) in genuine.iter().enumerate() {
            finite(s, || format!("genuine pair {i}"))?;
        }
        for (i, &s) in impostor.iter().enumerate() {
            finite(s, || format!("impostor pair {i}"))?;
        }
        genuine.sort_by(f32::total_cmp);
        impostor.sort_by(f32::total_cmp);
        Ok(Verification { genuine, impostor })
    }

    /// FMR(T): impostor pairs scoring at least T.
    pub fn fmr(&self, threshold: f32) -> Rate {
        let below = self.impostor.partition_point(|&s| s < threshold);
        Rate {
            errors: self.impostor.len() - below,
            trials: self.impostor.len(),
        }
    }

    /// FNMR(T): genuine pairs scoring below T.
    pub fn fnmr(&self, threshold: f32) -> Rate {
        Rate {
            errors: self.genuine.partition_point(|&s| s < threshold),
            trials: self.genuine.len(),
        }
    }

    /// Both rates at `threshold`.
    pub fn at(&self, threshold: f32) -> DetPoint {
        DetPoint {
            threshold,
            fmr: self.fmr(threshold),
            fnmr: self.fnmr(threshold),
        }
    }

    /// The full sweep: one point at each distinct score (ascending), then
    /// one just above the highest, where FMR = 0 and FNMR = 1.
    pub fn sweep(&self) -> Vec<DetPoint> {
        let mut all: Vec<f32> = self.genuine.iter().chain(&self.impostor).copied().collect();
        all.sort_by(f32::total_cmp);
        all.dedup();
        if let Some(&top) = all.last() {
            all.push(top.next_up());
        }
        let (mut g, mut i) = (0, 0);
        all.into_iter()
            .map(|t| {
                while g < self.genuine.len() && self.genuine[g] < t {
                    g += 1;
                }
                while i < self.impostor.len() && self.impostor[i] < t {
                    i += 1;
                }
                DetPoint {
                    threshold: t,
                    fmr: Rate {
                        errors: self.impostor.len() - i,
                        trials: self.impostor.len(),
                    },
                    fnmr: Rate {
                        errors: g,
                        trials: self.genuine.len(),
                    },
                }
            })
            .collect()
    }

    /// The DET curve thinned to at most `max_points` (at least 3) points.
    ///
    /// Log axes spread the tails, where a few errors make a decade, so the
    /// sweep is thinned evenly on the log of both error counts rather than
    /// on thresholds: a point is kept when log(errors + 1), in steps of
    /// log r, changes on either axis, r being chosen so that no more than
    /// `max_points` can be kept; the first and last points always are.
    pub fn det(&self, max_points: usize) -> Result<Vec<DetPoint>, AccuracyError> {
        if max_points < 3 {
            return Err(AccuracyError::BadParameter(format!(
                "a DET curve needs at least 3 points, got {max_points}"
            )));
        }
        let sweep = self.sweep();
        if sweep.len() <= max_points {
            return Ok(sweep);
        }
        let span = ((self.impostor.len() + 1) as f64).ln() + ((self.genuine.len() + 1) as f64).ln();
        let step = span / (max_points - 2) as f64;
        let bucket = |p: &DetPoint| {
            let b = |c: usize| (((c + 1) as f64).ln() / step).floor() as i64;
            (b(p.fmr.errors), b(p.fnmr.errors))
        };
        let last = sweep.len() - 1;
        let mut kept: Vec<DetPoint> = Vec::with_capacity(max_points);
        for (i, p) in sweep.iter().enumerate() {
            let keep = match kept.last() {
                None => true,
                Some(k) => i == last || bucket(k) != bucket(p),
            };
            if keep {
                kept.push(*p);
            }
        }
        Ok(kept)
    }

    /// The equal error rate: along the sweep, FMR falls and FNMR rises;
    /// between the last point with FMR > FNMR and the first with FNMR ≥ FMR
    /// the DET is taken as the straight segment joining them, and the EER
    /// is where it crosses FMR = FNMR. When even the lowest threshold has
    /// FNMR ≥ FMR (only possible with FMR = FNMR = 0 there: perfect
    /// separation) the EER is 0.
    pub fn eer(&self) -> Eer {
        eer_of(&self.sweep())
    }
}

/// The EER of a sweep ordered by ascending threshold (see [`Verification::eer`]).
fn eer_of(sweep: &[DetPoint]) -> Eer {
    let v = |r: &Rate| r.value().unwrap_or(0.0);
    let i = sweep
        .iter()
        .position(|p| v(&p.fnmr) >= v(&p.fmr))
        .unwrap_or(sweep.len() - 1);
    let at = sweep[i];
    if i == 0 {
        return Eer {
            eer: (v(&at.fmr) + v(&at.fnmr)) / 2.0,
            before: None,
            at,
        };
    }
    let before = sweep[i - 1];
    let d0 = v(&before.fmr) - v(&before.fnmr);
    let d1 = v(&at.fmr) - v(&at.fnmr);
    let alpha = d0 / (d0 - d1);
    Eer {
        eer: v(&before.fmr) + alpha * (v(&at.fmr) - v(&before.fmr)),
        before: Some(before),
        at,
    }
}
