//! Turning scan candidates into the answer, shared by every engine: distinct
//! subjects with the masked ones dropped, then each kept subject re-scored
//! exactly over all of its templates.
//!
//! The CPU engine's scan and the GPU engine's kernels only pre-select rows;
//! both finish through one [`Refiner`], so that they answer alike: the same
//! subjects, the same exact scores, the same tie order.

use half::f16;

use super::target::ScanTarget;
use super::topk::{Candidate, SubjectTopK, sort_ranked};
use super::{ProbeBatch, SearchError};
use crate::error::{GalleryError, InputError};
use crate::format::ScanRows;
use crate::kernels::Kernels;

/// How many distinct subjects the int8 scan keeps for exact re-scoring when
/// `k` are asked for: int8 scan scores (7-bit probes against 8-bit rows) are
/// typically within 1e-3 of the exact ones (rms 4e-4 to 7e-4 at 512
/// dimensions, rarely a few 1e-3), so a margin of a few dozen subjects holds
/// every true top-k subject.
pub fn rescore_pool(k: usize) -> usize {
    // Saturating: a library caller's huge k must neither panic nor wrap to
    // a pool smaller than k (the server caps k far below).
    k.saturating_mul(2).max(k.saturating_add(32))
}

/// Exact scoring and final selection over one [`ScanTarget`].
#[derive(Clone)]
pub struct Refiner {
    target: ScanTarget,
    kernels: Kernels,
}

impl Refiner {
    /// Refines candidates of `target` with `kernels`.
    pub fn new(target: ScanTarget, kernels: Kernels) -> Self {
        Refiner { target, kernels }
    }

    /// The gallery and mask refined over.
    pub fn target(&self) -> &ScanTarget {
        &self.target
    }

    /// The kernels exact scores are computed with.
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// Whether the probes fit this gallery (same dimension).
    pub fn check_probes(&self, probes: &ProbeBatch) -> Result<(), InputError> {
        let dim = self.target.gallery().dim();
        if probes.dim() != dim {
            return Err(InputError::Dimension {
                what: "probe".into(),
                expected: dim,
                actual: probes.dim(),
            });
        }
        Ok(())
    }

    /// Offers row `row` with scan score `score` to `top`, unless its subject
    /// is masked. Callers check [`SubjectTopK::admits`] first: the subject
    /// lookup is the costly part.
    #[inline]
    pub fn offer(&self, top: &mut SubjectTopK, row: u32, score: f32) -> Result<(), GalleryError> {
        let subject = self.target.gallery().row_subject(row as usize)?;
        if !self.target.mask().is_removed(subject) {
            top.insert(Candidate {
                subject,
                row,
                score,
            });
        }
        Ok(())
    }

    /// The exact score of probe `b` against template `row`: f16 re-score rows
    /// when the gallery has them, else the scan rows themselves.
    fn exact_score(&self, probes: &ProbeBatch, b: usize, row: usize) -> f32 {
        let gallery = self.target.gallery();
        let dim = gallery.dim();
        let unit = probes.unit(b);
        if let Some((data, stride)) = gallery.rescore_rows() {
            return self
                .kernels
                .dot_f16(unit, &data[row * stride..row * stride + dim]);
        }
        let mut out = [0f32];
        match gallery.scan_rows() {
            ScanRows::F16 { data, stride } => {
                let rows: &[f16] = &data[row * stride..row * stride + dim];
                (self.kernels.f16_block)(unit, rows, stride, &mut out);
            }
            ScanRows::F32 { data, stride } => {
                let rows = &data[row * stride..row * stride + dim];
                (self.kernels.f32_block)(unit, rows, stride, &mut out);
            }
            ScanRows::Int8 {
                data,
                scales,
                stride,
            } => {
                let (q, s) = probes.quantized(b);
                let mut dot = [0i32];
                let rows = &data[row * stride..row * stride + dim];
                (self.kernels.i8_block)(q, rows, stride, &mut dot);
                out[0] = dot[0] as f32 * s * scales[row];
            }
        }
        out[0]
    }

    /// The best exact score of a probe over one subject's templates (1:1
    /// verification, and the re-score of a candidate), with the row that
    /// gave it.
    pub fn score_subject(
        &self,
        probes: &ProbeBatch,
        b: usize,
        subject: u32,
    ) -> Result<Candidate, SearchError> {
        self.check_probes(probes)?;
        let gallery = self.target.gallery();
        let mut best: Option<Candidate> = None;
        for &row in gallery.subject_rows(subject)? {
            let c = Candidate {
                subject,
                row,
                score: self.exact_score(probes, b, row as usize),
            };
            if best.is_none_or(|b| c.ranks_before(&b)) {
                best = Some(c);
            }
        }
        best.ok_or_else(|| {
            SearchError::Gallery(GalleryError::Corrupt {
                path: gallery.path().to_path_buf(),
                reason: format!("subject {subject} has no rows"),
            })
        })
    }

    /// How many best rows by scan score always contain the best rows of the
    /// distinct subjects [`Refiner::rank_candidates`] needs for `top_k`: a
    /// subject's best row is preceded only by rows of better-ranked subjects,
    /// each having at most `max_templates_per_subject` rows.
    pub fn candidate_rows(&self, top_k: usize) -> usize {
        let gallery = self.target.gallery();
        let per_subject = gallery.header().max_templates_per_subject.max(1) as usize;
        rescore_pool(top_k)
            .saturating_mul(per_subject)
            .min(gallery.rows())
    }

    /// Finishes a search from candidate rows scored elsewhere (the GPU
    /// kernels): the same distinct-subject selection and exact re-score as
    /// the CPU engine's, so both engines answer alike.
    ///
    /// `candidates` must hold, for probe `b`, at least the best
    /// `candidate_rows(k)` rows by scan score (rows equal to `u32::MAX` are
    /// padding and ignored).
    pub fn rank_candidates(
        &self,
        probes: &ProbeBatch,
        b: usize,
        candidates: impl IntoIterator<Item = (u32, f32)>,
        top_k: usize,
    ) -> Result<Vec<Candidate>, SearchError> {
        self.check_probes(probes)?;
        let mut top = SubjectTopK::new(rescore_pool(top_k));
        for (row, score) in candidates {
            if row != u32::MAX && top.admits(score, row) {
                self.offer(&mut top, row, score)?;
            }
        }
        self.rescore(probes, b, top.into_sorted(), top_k)
    }

    /// Re-scores each candidate subject exactly over all of its templates,
    /// then keeps the best `k`.
    pub fn rescore(
        &self,
        probes: &ProbeBatch,
        b: usize,
        pool: Vec<Candidate>,
        k: usize,
    ) -> Result<Vec<Candidate>, SearchError> {
        let mut out = Vec::with_capacity(pool.len());
        for c in pool {
            out.push(self.score_subject(probes, b, c.subject)?);
        }
        sort_ranked(&mut out);
        out.truncate(k);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_never_wraps_below_k() {
        assert_eq!(rescore_pool(10), 42);
        assert_eq!(rescore_pool(100), 200);
        for k in [
            usize::MAX / 2,
            usize::MAX / 2 + 1,
            usize::MAX - 10,
            usize::MAX,
        ] {
            assert!(rescore_pool(k) >= k, "{k}");
        }
    }
}
