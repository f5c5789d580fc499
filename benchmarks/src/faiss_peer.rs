//! Faiss's exact inner-product index (`IndexFlatIP`) as the peer that
//! facegate's CPU engine is measured against, on the same rows and probes.
//!
//! Faiss ranks rows; facegate ranks distinct subjects (a subject may have
//! several templates). To compare like with like, Faiss is asked for enough
//! rows to hold `k` distinct subjects and its ranking is reduced to subjects
//! the way facegate's is: each subject scored by its best template.

use anyhow::Context;
use facegate_core::Candidate;
use faiss::{FlatIndex, Index};

/// An exact f32 inner-product index over unit rows.
pub struct FlatIp {
    index: FlatIndex,
    dim: usize,
}

impl FlatIp {
    /// Copies `rows` (unit length, row-major, `dim` per row) into a new index.
    pub fn build(dim: usize, rows: &[f32]) -> anyhow::Result<FlatIp> {
        let mut index = FlatIndex::new_ip(dim as u32).context("creating IndexFlatIP")?;
        index.add(rows).context("adding rows to IndexFlatIP")?;
        Ok(FlatIp { index, dim })
    }

    /// The best `k` rows for each probe, best first, as (row, score).
    pub fn search(&mut self, probes: &[f32], k: usize) -> anyhow::Result<Vec<Vec<(u64, f32)>>> {
        let r = self.index.search(probes, k).context("IndexFlatIP search")?;
        let n = probes.len() / self.dim;
        Ok((0..n)
            .map(|q| {
                (0..k)
                    .filter_map(|j| {
                        let i = q * k + j;
                        r.labels[i].get().map(|row| (row, r.distances[i]))
                    })
                    .collect()
            })
            .collect())
    }
}

/// Reduces a row ranking to its first `k` distinct subjects, each with the
/// score of its best row (the first one met).
pub fn distinct_subjects(
    rows: &[(u64, f32)],
    subject_of: impl Fn(u64) -> anyhow::Result<u32>,
    k: usize,
) -> anyhow::Result<Vec<(u32, f32)>> {
    let mut out: Vec<(u32, f32)> = Vec::with_capacity(k);
    for &(row, score) in rows {
        let s = subject_of(row)?;
        if !out.iter().any(|&(t, _)| t == s) {
            out.push((s, score));
            if out.len() == k {
                break;
            }
        }
    }
    Ok(out)
}

/// How closely facegate's answers follow Faiss's exact ones.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Agreement {
    /// Fraction of Faiss's top-k subjects that facegate also returned.
    pub recall: f64,
    /// Probes whose top-1 subject is the same.
    pub top1_same: usize,
    /// Probes compared.
    pub probes: usize,
    /// Largest difference between the two engines' scores at the same rank:
    /// a missed subject within this of the one returned is a near tie, not
    /// an error.
    pub max_score_diff_at_rank: f32,
}

/// Compares facegate's answers with Faiss's subject rankings, probe by probe.
pub fn agreement(facegate: &[Vec<Candidate>], faiss: &[Vec<(u32, f32)>]) -> Agreement {
    let (mut hits, mut wanted, mut top1, mut diff) = (0usize, 0usize, 0usize, 0f32);
    for (f, x) in facegate.iter().zip(faiss) {
        wanted += x.len();
        hits += x
            .iter()
            .filter(|(s, _)| f.iter().any(|c| c.subject == *s))
            .count();
        if f.first().map(|c| c.subject) == x.first().map(|t| t.0) {
            top1 += 1;
        }
        for (c, t) in f.iter().zip(x) {
            diff = diff.max((c.score - t.1).abs());
        }
    }
    Agreement {
        recall: if wanted == 0 {
            1.0
        } else {
            hits as f64 / wanted as f64
        },
        top1_same: top1,
        probes: faiss.len().min(facegate.len()),
        max_score_diff_at_rank: diff,
    }
}
