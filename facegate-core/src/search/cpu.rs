//! The exact CPU engine: a SIMD scan over the mapped rows, parallel across
//! chunks of rows, with exact f16 re-scoring of int8 candidates.
//!
//! Rows are visited in tiles small enough to stay in L1 while every probe of
//! the batch is scored against them, so each row is read from memory once per
//! batch, not once per probe. The int8 pre-selection scan scores the whole
//! batch against a tile with one call of the register-blocked batch kernel
//! ([`crate::kernels::I8BatchBlock`]), which makes a batch compute bound at
//! several times the per-probe rate of a single probe.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use half::f16;
use rayon::prelude::*;

use super::refine::{Refiner, rescore_pool};
use super::target::ScanTarget;
use super::topk::{Candidate, SubjectTopK};
use super::{ProbeBatch, SearchEngine, SearchError};
use crate::error::InputError;
use crate::format::{Gallery, ScanRows};
use crate::kernels::{Kernels, NarrowProbes};

/// Rows per parallel task: large enough to amortise scheduling, small enough
/// to balance the load over cores.
const CHUNK_ROWS: usize = 16 * 1024;
/// Rows between two checks of the scan's time slice (see
/// [`super::yielding`]): a few microseconds of scanning at batch 1, so the
/// clock read costs under 1 %.
const YIELD_ROWS: usize = 1024;
/// Rows scored against every probe before moving on.
const TILE_ROWS: usize = crate::kernels::BATCH_TILE_ROWS;
/// How many tiles ahead of the one being scored the int8 batch scan asks
/// for rows ([`crate::kernels::prefetch`]).
const PREFETCH_TILES: usize = crate::kernels::PREFETCH_TILES;

/// The exact CPU search engine.
pub struct CpuEngine {
    /// The gallery, its mask, and the exact re-score shared with the GPU engine.
    refiner: Refiner,
}

impl CpuEngine {
    /// An engine over `target` with the fastest kernels this processor has.
    pub fn new(target: ScanTarget) -> Self {
        Self::with_kernels(target, Kernels::detect())
    }

    /// An engine with a chosen kernel set (tests and benchmarks compare them).
    pub fn with_kernels(target: ScanTarget, kernels: Kernels) -> Self {
        CpuEngine {
            refiner: Refiner::new(target, kernels),
        }
    }

    /// The gallery searched.
    pub fn gallery(&self) -> &Arc<Gallery> {
        self.refiner.target().gallery()
    }

    /// The exact scoring and final selection this engine finishes with.
    pub fn refiner(&self) -> &Refiner {
        &self.refiner
    }

    /// Scans rows `[start, end)` for every probe into `tops` (one per probe);
    /// `score_tile(first, t, out)` fills `out[b * t + j]` with the score of
    /// probe `b` against row `first + j`, for `j < t`.
    fn scan_range(
        &self,
        tops: &mut [SubjectTopK],
        start: usize,
        end: usize,
        mut score_tile: impl FnMut(usize, usize, &mut [f32]),
    ) -> Result<(), SearchError> {
        let count = tops.len();
        let mut scores = vec![0f32; count * TILE_ROWS];
        let mut first = start;
        while first < end {
            let t = TILE_ROWS.min(end - first);
            let scores = &mut scores[..count * t];
            score_tile(first, t, scores);
            for (top, tile) in tops.iter_mut().zip(scores.chunks_exact(t)) {
                self.admit_tile(top, first, tile)?;
            }
            first += t;
            if first.is_multiple_of(YIELD_ROWS) {
                super::yielding::offer_core();
            }
        }
        Ok(())
    }

    /// Offers the scores of rows `first..first + scores.len()` to `top`.
    ///
    /// Once `top` is full almost no row enters, so the tile's best score is
    /// checked first: `admits` only gets easier with a higher score or an
    /// earlier row, so if the best score with the tile's first row cannot
    /// enter, no row of the tile can, and the per-row checks are skipped.
    fn admit_tile(
        &self,
        top: &mut SubjectTopK,
        first: usize,
        scores: &[f32],
    ) -> Result<(), SearchError> {
        // Eight lanes and a plain comparison (NaN, never admitted, is
        // skipped), so that the maximum compiles to vector `max` instructions.
        let mut lanes = [f32::NEG_INFINITY; 8];
        let mut eights = scores.chunks_exact(8);
        for c in &mut eights {
            for (m, &x) in lanes.iter_mut().zip(c) {
                *m = if x > *m { x } else { *m };
            }
        }
        for (m, &x) in lanes.iter_mut().zip(eights.remainder()) {
            *m = if x > *m { x } else { *m };
        }
        let best = lanes
            .iter()
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        if !top.admits(best, first as u32) {
            return Ok(());
        }
        for (j, &score) in scores.iter().enumerate() {
            let row = (first + j) as u32;
            if top.admits(score, row) {
                self.refiner.offer(top, row, score)?;
            }
        }
        Ok(())
    }

    /// Scans one chunk of rows. `narrow` holds the batch quantised for the
    /// int8 batch kernel when the gallery is int8 and its candidates are
    /// re-scored exactly; int8 galleries without re-score rows keep the 8-bit
    /// probes, whose scan scores are the final ones.
    fn scan_chunk(
        &self,
        probes: &ProbeBatch,
        narrow: Option<&NarrowProbes>,
        chunk: usize,
        tops: &mut [SubjectTopK],
    ) -> Result<(), SearchError> {
        let start = chunk * CHUNK_ROWS;
        let rows = start..(start + CHUNK_ROWS).min(self.gallery().rows());
        let dim = self.gallery().dim();
        let k = *self.refiner.kernels();
        match (self.gallery().scan_rows(), narrow) {
            (
                ScanRows::Int8 {
                    data,
                    scales,
                    stride,
                },
                Some(narrow),
            ) => {
                let int8 = Int8Rows {
                    data,
                    scales,
                    stride,
                    dim,
                };
                self.scan_int8_batch(tops, rows, &int8, narrow)
            }
            (
                ScanRows::Int8 {
                    data,
                    scales,
                    stride,
                },
                None,
            ) => {
                let int8 = Int8Rows {
                    data,
                    scales,
                    stride,
                    dim,
                };
                let mut dots = [0i32; TILE_ROWS];
                self.scan_range(tops, rows.start, rows.end, |first, t, out| {
                    let tile = int8.tile(first, t);
                    for (b, out) in out.chunks_exact_mut(t).enumerate() {
                        let (q, s) = probes.quantized(b);
                        (k.i8_block)(q, tile, stride, &mut dots[..t]);
                        int8.scale(&dots[..t], s, first, out);
                    }
                })
            }
            (ScanRows::F16 { data, stride }, _) => {
                self.scan_range(tops, rows.start, rows.end, |first, t, out| {
                    let tile: &[f16] = &data[tile_range(first, t, stride, dim, data.len())];
                    for (b, out) in out.chunks_exact_mut(t).enumerate() {
                        (k.f16_block)(probes.unit(b), tile, stride, out);
                    }
                })
            }
            (ScanRows::F32 { data, stride }, _) => {
                self.scan_range(tops, rows.start, rows.end, |first, t, out| {
                    let tile = &data[tile_range(first, t, stride, dim, data.len())];
                    for (b, out) in out.chunks_exact_mut(t).enumerate() {
                        (k.f32_block)(probes.unit(b), tile, stride, out);
                    }
                })
            }
        }
    }

    /// Scans every chunk into one selection per probe of the size `pool`.
    ///
    /// One worker per thread takes the next chunk from a shared counter and
    /// keeps its selections across all the chunks it scans. A fresh
    /// selection admits almost every row at first, and each insert costs far
    /// more than the check that rejects a row: with `try_fold` over the
    /// chunks, rayon started a fresh selection for most chunks, and inserts
    /// took about a quarter of the batch kernel's time (perf, batch 256, on
    /// AVX-512 VNNI). Workers that find no chunk left return at once, so a
    /// busy pool still balances.
    fn scan_all(
        &self,
        probes: &ProbeBatch,
        narrow: Option<&NarrowProbes>,
        pool: usize,
    ) -> Result<Vec<SubjectTopK>, SearchError> {
        let chunks = self.gallery().rows().div_ceil(CHUNK_ROWS);
        let next = AtomicUsize::new(0);
        let workers = rayon::current_num_threads().clamp(1, chunks.max(1));
        (0..workers)
            .into_par_iter()
            .with_max_len(1)
            .map(|_| {
                let mut tops = vec![SubjectTopK::new(pool); probes.len()];
                loop {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    if c >= chunks {
                        return Ok(tops);
                    }
                    self.scan_chunk(probes, narrow, c, &mut tops)?;
                }
            })
            .try_reduce(
                || vec![SubjectTopK::new(pool); probes.len()],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        x.merge(y);
                    }
                    Ok(a)
                },
            )
    }

    /// The int8 pre-selection scan of `rows`: every probe against each tile
    /// in one call of the batch kernel, which reuses each loaded chunk
    /// across probes and rows; for batches, the rows two tiles ahead are
    /// asked for while this one is scored.
    ///
    /// Scores are made only for the probes whose tile might enter their
    /// selection: the best integer dot times the probe's scale and the
    /// tile's largest row scale (its smallest, if every dot is negative)
    /// bounds every score of the tile, in floating point too (each step
    /// rounds monotonically), so a bound that cannot enter means no row can,
    /// and the conversion and per-row checks are skipped. Once selections
    /// fill, that is almost every probe and tile: the scan then costs little
    /// more than its kernel.
    fn scan_int8_batch(
        &self,
        tops: &mut [SubjectTopK],
        rows: std::ops::Range<usize>,
        int8: &Int8Rows<'_>,
        narrow: &NarrowProbes,
    ) -> Result<(), SearchError> {
        let k = *self.refiner.kernels();
        let count = tops.len();
        let end = rows.end;
        let mut dots = vec![0i32; count * TILE_ROWS];
        let mut scores = [0f32; TILE_ROWS];
        let mut first = rows.start;
        while first < end {
            let t = TILE_ROWS.min(end - first);
            let ahead = first + PREFETCH_TILES * TILE_ROWS;
            if count > 1 && ahead < end {
                crate::kernels::prefetch(int8.tile(ahead, TILE_ROWS.min(end - ahead)));
            }
            let dots = &mut dots[..count * t];
            (k.i8_batch_block)(narrow, int8.tile(first, t), int8.stride, dots);
            let (lo, hi) = int8.scale_range(first, t);
            for (b, (top, dots)) in tops.iter_mut().zip(dots.chunks_exact(t)).enumerate() {
                let best = dots.iter().fold(i32::MIN, |m, &d| m.max(d));
                let bound = best as f32 * narrow.scale(b) * if best >= 0 { hi } else { lo };
                if top.admits(bound, first as u32) {
                    int8.scale(dots, narrow.scale(b), first, &mut scores[..t]);
                    self.admit_tile(top, first, &scores[..t])?;
                }
            }
            first += t;
            if first.is_multiple_of(YIELD_ROWS) {
                super::yielding::offer_core();
            }
        }
        Ok(())
    }
}

/// The elements of rows `first..first + t` in a row-major buffer of `len`
/// elements with `stride` elements per row, of which the first `dim` count.
fn tile_range(
    first: usize,
    t: usize,
    stride: usize,
    dim: usize,
    len: usize,
) -> std::ops::Range<usize> {
    (first * stride)..((first + t - 1) * stride + dim).min(len)
}

/// The int8 scan rows of a gallery with their per-row scales.
struct Int8Rows<'a> {
    data: &'a [i8],
    scales: &'a [f32],
    stride: usize,
    dim: usize,
}

impl Int8Rows<'_> {
    /// Rows `first..first + t`, as the kernels read them.
    fn tile(&self, first: usize, t: usize) -> &[i8] {
        &self.data[tile_range(first, t, self.stride, self.dim, self.data.len())]
    }

    /// The smallest and largest scale of rows `first..first + t`.
    fn scale_range(&self, first: usize, t: usize) -> (f32, f32) {
        self.scales[first..first + t]
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &s| {
                (lo.min(s), hi.max(s))
            })
    }

    /// Scores from integer dot products with rows `first..`: each times the
    /// probe's scale and the row's.
    #[inline]
    fn scale(&self, dots: &[i32], probe_scale: f32, first: usize, out: &mut [f32]) {
        let row_scales = &self.scales[first..first + dots.len()];
        for ((o, &d), &rs) in out.iter_mut().zip(dots).zip(row_scales) {
            *o = d as f32 * probe_scale * rs;
        }
    }
}

impl SearchEngine for CpuEngine {
    fn describe(&self) -> String {
        format!("cpu/{}", self.refiner.kernels().name)
    }

    fn search(
        &self,
        probes: &ProbeBatch,
        top_k: usize,
    ) -> Result<Vec<Vec<Candidate>>, SearchError> {
        self.refiner.check_probes(probes)?;
        if top_k == 0 {
            return Err(InputError::BadParameter("top_k must be at least 1".into()).into());
        }
        let rescoring = self.gallery().rescore_rows().is_some();
        let pool = if rescoring {
            rescore_pool(top_k)
        } else {
            top_k
        };
        // The int8 pre-selection scan uses the batch kernel's 7-bit probes
        // (quantised once per search); the exact re-score makes up for their
        // coarser scan scores.
        let narrow = (rescoring && matches!(self.gallery().scan_rows(), ScanRows::Int8 { .. }))
            .then(|| {
                NarrowProbes::quantize(probes.dim(), (0..probes.len()).map(|b| probes.unit(b)))
            });
        let tops = self.scan_all(probes, narrow.as_ref(), pool)?;
        tops.into_par_iter()
            .enumerate()
            .map(|(b, top)| {
                let ranked = top.into_sorted();
                if rescoring {
                    self.refiner.rescore(probes, b, ranked, top_k)
                } else {
                    Ok(ranked.into_iter().take(top_k).collect())
                }
            })
            .collect()
    }
}
