//! Demographic differentials: FNIR and FPIR per group at one operating
//! threshold, each group's ratio to the best (lowest) group's rate, with
//! percentile-bootstrap confidence intervals.
//!
//! Resampling is stratified: within each group, mated and non-mated
//! searches are resampled separately (with replacement, as many as there
//! are), since how many of each a group has is fixed by the evaluation's
//! design, not drawn. Resample set `2·g` (mated) and `2·g + 1` (non-mated)
//! of group `g` (in label order) use their own seeded ChaCha8 stream.
//!
//! Ratios: the reference group is the one with the lowest rate (the first
//! in label order on ties), fixed from the full sample; every resample
//! divides by the reference group's rate in that same resample. A ratio
//! whose reference rate is 0 is 1 when the group's rate is 0 as well (no
//! difference seen) and otherwise unbounded: no smoothing is added, so
//! that the table never shows a ratio the data cannot support. Upper CI
//! bounds are then often unbounded for rare errors, which is the honest
//! answer: more searches are needed.

use serde::Serialize;
use serde::ser::Serializer;

use super::bootstrap::{BootstrapConfig, Interval, percentile_interval, resample_rates};
use super::error::AccuracyError;
use super::identification::count;
use super::input::Searches;
use super::rate::Rate;

/// A group's rate over the reference group's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ratio {
    /// A finite ratio.
    Finite(f64),
    /// The reference rate is 0 and this group's is not.
    Unbounded,
}

impl Ratio {
    /// `rate / reference` with the rules of this module: 0/0 = 1, x/0 = unbounded.
    pub fn of(rate: f64, reference: f64) -> Ratio {
        if reference > 0.0 {
            Ratio::Finite(rate / reference)
        } else if rate == 0.0 {
            Ratio::Finite(1.0)
        } else {
            Ratio::Unbounded
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Ratio::Finite(v) => v,
            Ratio::Unbounded => f64::INFINITY,
        }
    }

    fn from_f64(v: f64) -> Ratio {
        if v.is_finite() {
            Ratio::Finite(v)
        } else {
            Ratio::Unbounded
        }
    }
}

/// A number, or the string `"unbounded"`.
impl Serialize for Ratio {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Ratio::Finite(v) => s.serialize_f64(*v),
            Ratio::Unbounded => s.serialize_str("unbounded"),
        }
    }
}

/// One rate of one group, with its interval and its ratio to the reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupMetric {
    /// The rate at the threshold.
    pub rate: Rate,
    /// Its bootstrap interval (`None` without trials or resamples).
    pub ci: Option<Interval<f64>>,
    /// Its ratio to the reference group's rate (`None` without trials).
    pub ratio: Option<Ratio>,
    /// The ratio's bootstrap interval.
    pub ratio_ci: Option<Interval<Ratio>>,
}

/// Both rates of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRates {
    /// The group label.
    pub group: String,
    /// Rank-1 FNIR of the group's mated searches.
    pub fnir: GroupMetric,
    /// FPIR of the group's non-mated searches.
    pub fpir: GroupMetric,
}

/// The per-group table at one threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupTable {
    /// The operating threshold (a score equal to it is a match).
    pub threshold: f32,
    /// The group with the lowest FNIR, which FNIR ratios divide by.
    pub fnir_reference: Option<String>,
    /// The group with the lowest FPIR, which FPIR ratios divide by.
    pub fpir_reference: Option<String>,
    /// How the intervals were drawn.
    pub bootstrap: BootstrapConfig,
    /// One row per group, in label order.
    pub groups: Vec<GroupRates>,
}

/// FNIR and FPIR per group at `threshold`, with ratios and intervals.
pub fn per_group(
    searches: &Searches,
    threshold: f32,
    cfg: &BootstrapConfig,
) -> Result<GroupTable, AccuracyError> {
    cfg.check()?;
    let n = searches.groups().len();
    // flags[class][group]: class 0 = mated (a miss), 1 = non-mated (a false positive).
    let mut flags = vec![vec![Vec::new(); n]; 2];
    for o in searches.outcomes() {
        let (class, error) = if o.mated {
            (0, o.misses(threshold))
        } else {
            (1, o.false_positive(threshold))
        };
        flags[class][o.group].push(error);
    }
    let boots: Vec<Vec<Vec<f64>>> = (0..2)
        .map(|class| {
            (0..n)
                .map(|g| {
                    let f = &flags[class][g];
                    if f.is_empty() {
                        return Vec::new();
                    }
                    resample_rates(f, cfg.resamples, &mut cfg.rng((2 * g + class) as u64))
                })
                .collect()
        })
        .collect();
    let (fnir, fnir_ref) = class_metrics(&flags[0], &boots[0], cfg.confidence);
    let (fpir, fpir_ref) = class_metrics(&flags[1], &boots[1], cfg.confidence);
    let name = |r: Option<usize>| r.map(|i| searches.groups()[i].clone());
    Ok(GroupTable {
        threshold,
        fnir_reference: name(fnir_ref),
        fpir_reference: name(fpir_ref),
        bootstrap: *cfg,
        groups: searches
            .groups()
            .iter()
            .zip(fnir.into_iter().zip(fpir))
            .map(|(g, (fnir, fpir))| GroupRates {
                group: g.clone(),
                fnir,
                fpir,
            })
            .collect(),
    })
}

/// One rate for every group: the metrics, and the reference group.
fn class_metrics(
    flags: &[Vec<bool>],
    boots: &[Vec<f64>],
    confidence: f64,
) -> (Vec<GroupMetric>, Option<usize>) {
    let rates: Vec<Rate> = flags.iter().map(|f| count(f.iter(), |&e| e)).collect();
    let mut reference: Option<(usize, f64)> = None;
    for (g, r) in rates.iter().enumerate() {
        if let Some(v) = r.value()
            && reference.is_none_or(|(_, best)| v < best)
        {
            reference = Some((g, v));
        }
    }
    let metrics = rates
        .iter()
        .enumerate()
        .map(|(g, rate)| {
            let ci = percentile_interval(&mut boots[g].clone(), confidence);
            let Some((r, ref_rate)) = reference else {
                return GroupMetric {
                    rate: *rate,
                    ci,
                    ratio: None,
                    ratio_ci: None,
                };
            };
            let ratio = rate.value().map(|v| Ratio::of(v, ref_rate));
            let mut ratios: Vec<f64> = boots[g]
                .iter()
                .zip(&boots[r])
                .map(|(&a, &b)| Ratio::of(a, b).as_f64())
                .collect();
            let ratio_ci = percentile_interval(&mut ratios, confidence).map(|i| Interval {
                low: Ratio::from_f64(i.low),
                high: Ratio::from_f64(i.high),
            });
            GroupMetric {
                rate: *rate,
                ci,
                ratio,
                ratio_ci,
            }
        })
        .collect();
    (metrics, reference.map(|(g, _)| g))
}
