//! Best scores of non-mated probes within sampled manifests.
//!
//! A scoped search compares the probe with the manifest's travellers only,
//! exactly (`Refiner::score_subject`, as Verify and eval's pairs score a
//! subject: the best of its templates). For each manifest size n, each
//! non-mated probe j gets `per_probe` manifests of n distinct subjects
//! drawn uniformly from the gallery, and its best score within each is a
//! trial: FPIR(T) for size n is the share of trials whose best score is at
//! least T. The draws come from ChaCha8 stream 2^41 + j of the seed, so
//! they do not depend on the batch size or thread count. A subject's score
//! against a probe is computed once and reused across its manifests.

use anyhow::anyhow;
use facegate_core::ProbeBatch;
use facegate_core::search::Refiner;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::truth::ProbeTruth;
use crate::progress;

/// First stream of the manifest draws (eval's pairs use 2^40 onwards).
const MANIFEST_STREAM: u64 = 1 << 41;

/// What to draw.
pub struct Draws<'a> {
    /// Manifest sizes, increasing, each below the gallery's subject count.
    pub sizes: &'a [u64],
    /// Manifests per probe and size.
    pub per_probe: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// Probes scored together.
    pub batch: usize,
}

/// Per size (in `draws.sizes` order): every trial's best score, over the
/// non-mated probes among `probes` (rows of `dim`).
pub fn best_scores(
    refiner: &Refiner,
    probes: &[f32],
    dim: usize,
    truth: &[ProbeTruth],
    draws: &Draws<'_>,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut out = vec![Vec::new(); draws.sizes.len()];
    if draws.sizes.is_empty() {
        return Ok(out);
    }
    let non_mated: Vec<usize> = (0..truth.len())
        .filter(|&j| truth[j].mate.is_none())
        .collect();
    let pb = progress::bar(non_mated.len() as u64, "manifests", false);
    for chunk in non_mated.chunks(draws.batch) {
        let rows: Vec<f32> = chunk
            .iter()
            .flat_map(|&j| &probes[j * dim..(j + 1) * dim])
            .copied()
            .collect();
        let batch = ProbeBatch::new(dim, &rows)
            .map_err(|e| anyhow!("probe {} (manifest draws): {e}", chunk[0]))?;
        let per_probe: Vec<Vec<Vec<f32>>> = chunk
            .par_iter()
            .enumerate()
            .map(|(b, &j)| probe_maxima(refiner, &batch, b, j, draws))
            .collect::<anyhow::Result<_>>()?;
        for maxima in per_probe {
            for (all, mine) in out.iter_mut().zip(maxima) {
                all.extend(mine);
            }
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(out)
}

/// Probe `j` (row `b` of `batch`): per size, its best score in each of its
/// manifests.
fn probe_maxima(
    refiner: &Refiner,
    batch: &ProbeBatch,
    b: usize,
    j: usize,
    draws: &Draws<'_>,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let subjects = refiner.target().gallery().subjects();
    let mut rng = ChaCha8Rng::seed_from_u64(draws.seed);
    rng.set_stream(MANIFEST_STREAM + j as u64);
    let mut scores = vec![f32::NAN; subjects];
    let mut score = |s: usize| -> anyhow::Result<f32> {
        if scores[s].is_nan() {
            let subject = u32::try_from(s).map_err(|_| anyhow!("subject {s} out of range"))?;
            scores[s] = refiner
                .score_subject(batch, b, subject)
                .map_err(|e| anyhow!("scoring probe {j} against subject {s}: {e}"))?
                .score;
        }
        Ok(scores[s])
    };
    let mut out = Vec::with_capacity(draws.sizes.len());
    for &n in draws.sizes {
        let mut maxima = Vec::with_capacity(draws.per_probe);
        for _ in 0..draws.per_probe {
            let manifest = rand::seq::index::sample(&mut rng, subjects, n as usize);
            let mut best = f32::NEG_INFINITY;
            for s in manifest.iter() {
                best = best.max(score(s)?);
            }
            maxima.push(best);
        }
        out.push(maxima);
    }
    Ok(out)
}
