//! The delta segment: templates enrolled since the base gallery was built,
//! held in memory and scanned exactly beside the mapped base.
//!
//! Rows are unit f16 vectors, the precision of the base's re-score rows, so
//! that a subject scores the same before and after `facegate-index compact`
//! folds the delta into a new base (for int8 galleries with re-score rows
//! and f16 galleries). The delta is small next to the base (it only holds
//! what changed since the last rebuild), so it is scanned on the CPU by both
//! engines. Replacing or removing a subject marks its old rows dead; dead
//! rows are dropped once they outnumber the live ones.

use std::collections::HashMap;

use half::f16;
use rayon::prelude::*;

use crate::kernels::Kernels;
use crate::search::{Candidate, ProbeBatch, SubjectTopK};

/// `row_subject` of a dead row.
const DEAD: u32 = u32::MAX;
/// Rows scored per kernel call.
const BLOCK_ROWS: usize = 256;
/// Dead rows tolerated before a rebuild, whatever the live count.
const MIN_DEAD_FOR_REBUILD: usize = 1024;

/// Enrolled templates, by subject.
#[derive(Debug)]
pub(crate) struct Delta {
    dim: usize,
    rows: Vec<f16>,
    row_subject: Vec<u32>,
    /// Live delta rows of each subject that has any.
    by_subject: HashMap<u32, Vec<u32>>,
    dead: usize,
}

impl Delta {
    pub(crate) fn new(dim: usize) -> Self {
        Delta {
            dim,
            rows: Vec::new(),
            row_subject: Vec::new(),
            by_subject: HashMap::new(),
            dead: 0,
        }
    }

    /// Live rows.
    pub(crate) fn rows(&self) -> usize {
        self.row_subject.len() - self.dead
    }

    /// Subjects with live rows.
    pub(crate) fn subjects(&self) -> usize {
        self.by_subject.len()
    }

    /// The subjects with live rows, in no particular order.
    pub(crate) fn subject_numbers(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_subject.keys().copied()
    }

    /// The live rows of `subject`, if it has any here.
    pub(crate) fn rows_of(&self, subject: u32) -> Option<&[u32]> {
        self.by_subject.get(&subject).map(Vec::as_slice)
    }

    /// The unit f16 template at delta row `row`.
    pub(crate) fn row(&self, row: u32) -> &[f16] {
        let at = row as usize * self.dim;
        &self.rows[at..at + self.dim]
    }

    /// Makes `units` (unit vectors, `dim` floats each) the subject's only
    /// delta rows.
    pub(crate) fn set(&mut self, subject: u32, units: &[f32]) {
        self.clear(subject);
        let first = self.row_subject.len() as u32;
        let n = units.len() / self.dim;
        self.rows.extend(units.iter().map(|&x| f16::from_f32(x)));
        self.row_subject.extend(std::iter::repeat_n(subject, n));
        self.by_subject
            .insert(subject, (first..first + n as u32).collect());
    }

    /// Drops the subject's delta rows; true when it had any.
    pub(crate) fn clear(&mut self, subject: u32) -> bool {
        let Some(rows) = self.by_subject.remove(&subject) else {
            return false;
        };
        for r in &rows {
            self.row_subject[*r as usize] = DEAD;
        }
        self.dead += rows.len();
        if self.dead >= MIN_DEAD_FOR_REBUILD && self.dead > self.rows() {
            self.drop_dead();
        }
        true
    }

    /// Rewrites the rows without the dead ones.
    fn drop_dead(&mut self) {
        let mut rows = Vec::with_capacity(self.rows() * self.dim);
        let mut row_subject = Vec::with_capacity(self.rows());
        let mut by_subject: HashMap<u32, Vec<u32>> = HashMap::with_capacity(self.by_subject.len());
        for (r, &s) in self.row_subject.iter().enumerate() {
            if s != DEAD {
                by_subject
                    .entry(s)
                    .or_default()
                    .push(row_subject.len() as u32);
                row_subject.push(s);
                rows.extend_from_slice(self.row(r as u32));
            }
        }
        self.rows = rows;
        self.row_subject = row_subject;
        self.by_subject = by_subject;
        self.dead = 0;
    }

    /// The best `k` distinct subjects of the delta for each probe, exact.
    /// Candidate rows are numbered from `first_row`, after the base's rows,
    /// so that ties rank base rows first.
    pub(crate) fn search(
        &self,
        kernels: &Kernels,
        probes: &ProbeBatch,
        k: usize,
        first_row: u32,
    ) -> Vec<Vec<Candidate>> {
        if self.by_subject.is_empty() {
            return vec![Vec::new(); probes.len()];
        }
        (0..probes.len())
            .into_par_iter()
            .map(|b| {
                let probe = probes.unit(b);
                let mut top = SubjectTopK::new(k);
                let mut scores = [0f32; BLOCK_ROWS];
                let n = self.row_subject.len();
                let mut start = 0;
                while start < n {
                    let t = BLOCK_ROWS.min(n - start);
                    (kernels.f16_block)(
                        probe,
                        &self.rows[start * self.dim..(start + t) * self.dim],
                        self.dim,
                        &mut scores[..t],
                    );
                    for (j, &score) in scores[..t].iter().enumerate() {
                        let r = start + j;
                        let subject = self.row_subject[r];
                        let row = first_row + r as u32;
                        if subject != DEAD && top.admits(score, row) {
                            top.insert(Candidate {
                                subject,
                                row,
                                score,
                            });
                        }
                    }
                    start += t;
                }
                top.into_sorted()
            })
            .collect()
    }

    /// The subject's best delta template for one probe, exact.
    pub(crate) fn score_subject(
        &self,
        kernels: &Kernels,
        probe: &[f32],
        subject: u32,
        first_row: u32,
    ) -> Option<Candidate> {
        let mut best: Option<Candidate> = None;
        for &r in self.rows_of(subject)? {
            let c = Candidate {
                subject,
                row: first_row + r,
                score: kernels.dot_f16(probe, self.row(r)),
            };
            if best.is_none_or(|b| c.ranks_before(&b)) {
                best = Some(c);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn replacing_and_clearing_keep_only_live_rows_searchable() {
        let k = Kernels::portable();
        let mut d = Delta::new(2);
        d.set(7, &[unit(&[1.0, 0.0]), unit(&[0.0, 1.0])].concat());
        d.set(8, &unit(&[1.0, 1.0]));
        assert_eq!((d.rows(), d.subjects()), (3, 2));
        d.set(7, &unit(&[-1.0, 0.0]));
        assert_eq!((d.rows(), d.subjects()), (2, 2));
        let probe = ProbeBatch::single(2, &[1.0, 0.0]).unwrap();
        let got = d.search(&k, &probe, 5, 100);
        let subjects: Vec<u32> = got[0].iter().map(|c| c.subject).collect();
        assert_eq!(subjects, [8, 7]);
        assert!((got[0][1].score + 1.0).abs() < 1e-3, "{:?}", got[0]);
        assert!(got[0].iter().all(|c| c.row >= 100));
        assert!(d.clear(8));
        assert!(!d.clear(8));
        let got = d.search(&k, &probe, 5, 0);
        assert_eq!(got[0].len(), 1);
        assert_eq!(
            d.score_subject(&k, probe.unit(0), 7, 0).map(|c| c.subject),
            Some(7)
        );
        assert!(d.score_subject(&k, probe.unit(0), 8, 0).is_none());
    }

    #[test]
    fn dead_rows_are_dropped_once_they_dominate() {
        let mut d = Delta::new(1);
        for s in 0..3000u32 {
            d.set(s, &[1.0]);
        }
        for s in 0..2000u32 {
            d.clear(s);
        }
        assert_eq!(d.rows(), 1000);
        assert!(d.row_subject.len() < 3000, "dead rows were rebuilt away");
        for s in 2000..3000u32 {
            let rows = d.rows_of(s).unwrap();
            assert_eq!(d.row_subject[rows[0] as usize], s);
        }
    }
}
