//! Verification pairs (1:1), scored exactly as the server's Verify scores a
//! claimed subject (`Refiner::score_subject`: the best of the subject's
//! templates, f16 re-score rows when the gallery has them).
//!
//! - Genuine: each mated probe against its mate.
//! - Impostor: `--impostor-pairs` in all, spread evenly over the probes
//!   (the first `pairs % P` probes get one more); probe j's subjects are
//!   drawn uniformly from the gallery, its mate excluded, from ChaCha8
//!   stream 2^40 + j of `--seed`, so the pairs do not depend on the batch
//!   size or thread count. They are random subjects of any group, so FMR
//!   here is the population's, lower than a same-group FMR.

use anyhow::anyhow;
use facegate_core::search::Refiner;
use facegate_core::{ProbeBatch, SearchError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::truth::ProbeTruth;

/// First stream of the impostor draws (the bootstrap uses the low streams).
const PAIR_STREAM: u64 = 1 << 40;

/// How the impostor pairs are drawn.
pub struct PairPlan {
    /// Impostor pairs in all.
    pub pairs: usize,
    /// Probes in all.
    pub probes: usize,
    /// Seed of the draws.
    pub seed: u64,
}

/// The pair scores of one probe.
pub struct ProbePairs {
    /// Against its mate (mated probes).
    pub genuine: Option<f32>,
    /// Against random other subjects.
    pub impostor: Vec<f32>,
}

impl PairPlan {
    /// Impostor pairs of probe `j`.
    fn count(&self, j: usize) -> usize {
        self.pairs / self.probes + usize::from(j < self.pairs % self.probes)
    }

    /// Probe `j`'s impostor subjects: none when its mate is the only subject.
    fn subjects(&self, j: usize, mate: Option<u32>, subjects: u32) -> Vec<u32> {
        if subjects == 0 || (subjects == 1 && mate.is_some()) {
            return Vec::new();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(PAIR_STREAM + j as u64);
        (0..self.count(j))
            .map(|_| {
                loop {
                    let s = rng.random_range(0..subjects);
                    if Some(s) != mate {
                        break s;
                    }
                }
            })
            .collect()
    }
}

/// Scores the pairs of the probes of `batch`, whose first is probe `first`.
pub fn score_batch(
    refiner: &Refiner,
    batch: &ProbeBatch,
    first: usize,
    truth: &[ProbeTruth],
    plan: &PairPlan,
) -> anyhow::Result<Vec<ProbePairs>> {
    let subjects = u32::try_from(refiner.target().gallery().subjects())
        .map_err(|_| anyhow!("more subjects than a gallery can hold"))?;
    (0..batch.len())
        .into_par_iter()
        .map(|b| {
            let j = first + b;
            let score = |s: u32| -> Result<f32, SearchError> {
                Ok(refiner.score_subject(batch, b, s)?.score)
            };
            let genuine = truth[j].mate.map(score).transpose()?;
            let impostor = plan
                .subjects(j, truth[j].mate, subjects)
                .into_iter()
                .map(score)
                .collect::<Result<_, _>>()?;
            Ok(ProbePairs { genuine, impostor })
        })
        .collect::<Result<Vec<_>, SearchError>>()
        .map_err(|e| anyhow!("scoring verification pairs of probes from {first}: {e}"))
}
