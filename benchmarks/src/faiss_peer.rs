//! Faiss's exhaustive CPU indexes as the peers that facegate's CPU engine is
//! measured against, on the same rows and probes: `IndexFlatIP` (exact f32)
//! and the 8-bit scalar quantizer `SQ8` (the closest Faiss has to
//! facegate's int8 scan; it scans every row too, decoding each to f32).
//!
//! Faiss ranks rows; facegate ranks distinct subjects (a subject may have
//! several templates). To compare like with like, Faiss is asked for enough
//! rows to hold `k` distinct subjects and its ranking is reduced to subjects
//! the way facegate's is: each subject scored by its best template.

use anyhow::Context;
use facegate_core::Candidate;
use faiss::index::IndexImpl;
use faiss::{Index, MetricType, index_factory};

/// Which exhaustive Faiss index to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerKind {
    /// `IndexFlatIP`: exact f32 inner products (BLAS sgemm for batches).
    Flat,
    /// `IndexScalarQuantizer` with 8 bits per dimension, trained on the rows.
    Sq8,
}

impl PeerKind {
    /// The name Faiss's index factory knows it by.
    pub fn factory_name(self) -> &'static str {
        match self {
            PeerKind::Flat => "Flat",
            PeerKind::Sq8 => "SQ8",
        }
    }
}

/// An exhaustive inner-product index over unit rows.
pub struct FaissPeer {
    index: IndexImpl,
    kind: PeerKind,
    dim: usize,
}

impl FaissPeer {
    /// Copies `rows` (unit length, row-major, `dim` per row) into a new
    /// index of `kind`, trained on the same rows when the kind needs it.
    pub fn build(kind: PeerKind, dim: usize, rows: &[f32]) -> anyhow::Result<FaissPeer> {
        let name = kind.factory_name();
        let mut index = index_factory(dim as u32, name, MetricType::InnerProduct)
            .with_context(|| format!("creating Faiss {name}"))?;
        index
            .train(rows)
            .with_context(|| format!("training Faiss {name}"))?;
        index
            .add(rows)
            .with_context(|| format!("adding rows to Faiss {name}"))?;
        Ok(FaissPeer { index, kind, dim })
    }

    /// Which index this is.
    pub fn kind(&self) -> PeerKind {
        self.kind
    }

    /// The best `k` rows for each probe, best first, as (row, score).
    pub fn search(&mut self, probes: &[f32], k: usize) -> anyhow::Result<Vec<Vec<(u64, f32)>>> {
        let r = self
            .index
            .search(probes, k)
            .with_context(|| format!("Faiss {} search", self.kind.factory_name()))?;
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
