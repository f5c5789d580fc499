//! Every probe searched in batches, with its verification pairs scored on
//! the same prepared batch.

use std::path::Path;
use std::time::Instant;

use anyhow::anyhow;
use facegate_core::accuracy::{Ranked, Search};
use facegate_core::{CpuEngine, ProbeBatch, SearchEngine};

use super::Args;
use super::pairs::{PairPlan, score_batch};
use super::truth::ProbeTruth;
use crate::progress;

/// What the engine answered, and the pair scores.
pub struct Searched {
    /// One search per probe, in probe order, with its truth.
    pub searches: Vec<Search>,
    /// Per probe: its score against its mate (mated probes).
    pub genuine: Vec<Option<f32>>,
    /// Impostor pair scores.
    pub impostor: Vec<f32>,
    /// Seconds spent searching and scoring.
    pub seconds: f64,
}

/// How the probes are searched: what `eval` and `calibrate` each ask for.
pub struct Plan<'a> {
    /// Candidates per search.
    pub top_k: usize,
    /// Probes searched together.
    pub batch: usize,
    /// Impostor verification pairs in all (0: none).
    pub impostor_pairs: usize,
    /// Seed of the impostor pairs.
    pub seed: u64,
    /// The probes' file, named in errors.
    pub probes: &'a Path,
}

impl<'a> From<&'a Args> for Plan<'a> {
    fn from(a: &'a Args) -> Self {
        Plan {
            top_k: a.top_k,
            batch: a.batch,
            impostor_pairs: a.impostor_pairs,
            seed: a.seed,
            probes: &a.probes,
        }
    }
}

/// Searches all `probes` (rows of `dim`) at `top_k` in `batch`es with
/// `engine`; the verification pairs are scored exactly as Verify scores
/// them, by `cpu`'s refiner.
pub fn run(
    engine: &dyn SearchEngine,
    cpu: &CpuEngine,
    probes: &[f32],
    dim: usize,
    truth: &[ProbeTruth],
    a: &Plan<'_>,
) -> anyhow::Result<Searched> {
    let n = probes.len() / dim;
    let plan = PairPlan {
        pairs: a.impostor_pairs,
        probes: n,
        seed: a.seed,
    };
    let mut out = Searched {
        searches: Vec::with_capacity(n),
        genuine: Vec::with_capacity(n),
        impostor: Vec::with_capacity(a.impostor_pairs),
        seconds: 0.0,
    };
    let pb = progress::bar(n as u64, "searching", false);
    let started = Instant::now();
    for (bi, chunk) in probes.chunks(a.batch * dim).enumerate() {
        let first = bi * a.batch;
        let batch = ProbeBatch::new(dim, chunk)
            .map_err(|e| anyhow!("{} (batch from row {first}): {e}", a.probes.display()))?;
        let answers = engine.search(&batch, a.top_k)?;
        let pairs = score_batch(cpu.refiner(), &batch, first, truth, &plan)?;
        for (b, (cands, p)) in answers.into_iter().zip(pairs).enumerate() {
            let t = &truth[first + b];
            out.searches.push(Search {
                candidates: cands
                    .iter()
                    .map(|c| Ranked {
                        subject: c.subject,
                        score: c.score,
                    })
                    .collect(),
                mate: t.mate,
                group: t.group.clone(),
            });
            out.genuine.push(p.genuine);
            out.impostor.extend(p.impostor);
        }
        pb.set_position(out.searches.len() as u64);
    }
    pb.finish_and_clear();
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}
