//! report.json: every figure of the evaluation, machine-readable, with what
//! was evaluated (gallery generation, sizes, engine) and how the operating
//! threshold was chosen.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::bail;
use facegate_core::accuracy::{
    AtThreshold, BootstrapConfig, CmcPoint, DEFAULT_DET_POINTS, DetPoint, Eer, GroupTable,
    OperatingPoint, Searches, Verification, per_group,
};
use facegate_core::{Gallery, SearchEngine};
use serde::Serialize;

use super::Args;
use super::search::Searched;
use super::truth::ProbeTruth;

/// The whole report.
#[derive(Serialize)]
pub struct Report {
    /// The tool and its version.
    pub tool: String,
    /// The gallery searched.
    pub gallery: GalleryFacts,
    /// The probes and how many of each kind.
    pub probes: ProbeFacts,
    /// The engine and how it was asked.
    pub engine: EngineFacts,
    /// The operating threshold and how it was chosen.
    pub threshold: ThresholdFacts,
    /// Identification with a threshold.
    pub identification: Identification,
    /// Investigation: FNIR at ranks 1..=top_k.
    pub cmc: Vec<CmcPoint>,
    /// Verification (1:1).
    pub verification: VerificationFacts,
    /// Per group at the operating threshold.
    pub groups: GroupTable,
    /// Wall-clock times.
    pub timing: Timing,
}

/// What gallery was evaluated.
#[derive(Serialize)]
pub struct GalleryFacts {
    /// The gallery file.
    pub path: String,
    /// Its generation (hex), which names exactly what was searched.
    pub generation: String,
    /// Template rows.
    pub rows: usize,
    /// Distinct subjects.
    pub subjects: usize,
    /// Template dimension.
    pub dim: usize,
    /// Element type of the scan rows.
    pub scan_type: String,
    /// The embedding model's tag.
    pub model_tag: String,
}

/// The probes.
#[derive(Serialize)]
pub struct ProbeFacts {
    /// The probes' .npy.
    pub file: String,
    /// The truth CSV.
    pub truth: String,
    /// Probes in all.
    pub total: usize,
    /// Probes of enrolled subjects.
    pub mated: usize,
    /// Probes of people not enrolled.
    pub non_mated: usize,
    /// Per group: (mated, non-mated).
    pub per_group: BTreeMap<String, [usize; 2]>,
}

/// The engine.
#[derive(Serialize)]
pub struct EngineFacts {
    /// The engine's own description (kernels, scan type).
    pub name: String,
    /// Which engine that is, in words.
    pub note: &'static str,
    /// Candidates per search.
    pub top_k: usize,
    /// Probes per batch.
    pub batch: usize,
}

/// The operating threshold.
#[derive(Serialize)]
pub struct ThresholdFacts {
    /// The threshold (a score equal to it is a match).
    pub value: f32,
    /// How it was chosen.
    pub rule: String,
}

/// Identification figures.
#[derive(Serialize)]
pub struct Identification {
    /// The definitions and the tie rule, in words.
    pub definitions: &'static str,
    /// FNIR at the threshold of each target FPIR.
    pub fnir_at_fpir: Vec<OperatingPoint>,
    /// Both rates at the operating threshold.
    pub at_operating_threshold: AtThreshold,
}

/// Verification figures.
#[derive(Serialize)]
pub struct VerificationFacts {
    /// How the pairs were made, in words.
    pub pairs: &'static str,
    /// Genuine pairs (one per mated probe).
    pub genuine_pairs: usize,
    /// Impostor pairs.
    pub impostor_pairs: usize,
    /// The equal error rate.
    pub eer: Eer,
    /// FMR and FNMR at the operating threshold.
    pub at_operating_threshold: DetPoint,
    /// The DET curve, thinned.
    pub det: Vec<DetPoint>,
}

/// Times.
#[derive(Serialize)]
pub struct Timing {
    /// Searching and scoring pairs.
    pub search_seconds: f64,
    /// The whole command up to the report (files not included).
    pub total_seconds: f64,
}

const IDENTIFICATION: &str = "FPIR: non-mated searches whose best candidate scores >= T. \
FNIR: mated searches whose mate is not the rank-1 candidate with score >= T. A score equal to \
T is a match. The threshold for a target FPIR is the next f32 above the (k+1)-th highest \
non-mated best score, k the most false positives with k/N <= target; null when k = 0 \
(target below 1/N: not estimable).";

const PAIRS: &str = "genuine: each mated probe against its mate's best template; impostor: \
probes against random other subjects' best templates (any group), seeded; scored as Verify does";

const CPU_NOTE: &str = "the server's CPU engine (CpuEngine): int8 scan with exact f16 \
re-score for int8 galleries";

const GPU_NOTE: &str = "the server's GPU engine (GpuEngine): WGSL int8 scan and top-k, \
candidates re-scored exactly on the CPU as the CPU engine does";

/// What was evaluated, and how.
pub struct Facts<'a> {
    /// The command line.
    pub args: &'a Args,
    /// The gallery searched.
    pub gallery: &'a Gallery,
    /// The engine that searched it.
    pub engine: &'a dyn SearchEngine,
    /// The truth of each probe.
    pub truth: &'a [ProbeTruth],
    /// The answers and pair scores.
    pub searched: &'a Searched,
    /// When the command started.
    pub started: Instant,
}

/// Computes every figure.
pub fn build(
    f: &Facts,
    searches: &Searches,
    bootstrap: &BootstrapConfig,
) -> anyhow::Result<Report> {
    let (a, searched) = (f.args, f.searched);
    let points = searches.fnir_at_fpir(&a.target_fpir)?;
    let threshold = operating_threshold(a, &points)?;
    let genuine: Vec<f32> = searched.genuine.iter().flatten().copied().collect();
    let verification = Verification::new(genuine, searched.impostor.clone())?;
    Ok(Report {
        tool: format!("facegate-index eval {}", env!("CARGO_PKG_VERSION")),
        gallery: gallery_facts(f.gallery),
        probes: probe_facts(a, f.truth),
        engine: EngineFacts {
            name: f.engine.describe(),
            note: if f.engine.describe().starts_with("gpu/") {
                GPU_NOTE
            } else {
                CPU_NOTE
            },
            top_k: a.top_k,
            batch: a.batch,
        },
        identification: Identification {
            definitions: IDENTIFICATION,
            fnir_at_fpir: points,
            at_operating_threshold: searches.at_threshold(threshold.value),
        },
        cmc: searches.cmc(a.top_k)?,
        verification: VerificationFacts {
            pairs: PAIRS,
            genuine_pairs: searched.genuine.iter().flatten().count(),
            impostor_pairs: searched.impostor.len(),
            eer: verification.eer(),
            at_operating_threshold: verification.at(threshold.value),
            det: verification.det(DEFAULT_DET_POINTS)?,
        },
        groups: per_group(searches, threshold.value, bootstrap)?,
        threshold,
        timing: Timing {
            search_seconds: searched.seconds,
            total_seconds: f.started.elapsed().as_secs_f64(),
        },
    })
}

/// `--threshold`, else the threshold of the smallest estimable target FPIR.
fn operating_threshold(a: &Args, points: &[OperatingPoint]) -> anyhow::Result<ThresholdFacts> {
    if let Some(t) = a.threshold {
        return Ok(ThresholdFacts {
            value: t,
            rule: "given with --threshold".into(),
        });
    }
    let mut estimable: Vec<&OperatingPoint> = points.iter().filter(|p| p.at.is_some()).collect();
    estimable.sort_by(|x, y| x.target_fpir.total_cmp(&y.target_fpir));
    let Some(p) = estimable.first() else {
        bail!(
            "no target FPIR is estimable with {} non-mated probes (the smallest is 1/{0}): \
             give --threshold, a larger --target-fpir or more non-mated probes",
            (1.0 / points.first().map_or(1.0, |p| p.resolution)).round()
        );
    };
    let value = p.at.map(|at| at.threshold).unwrap_or_default();
    Ok(ThresholdFacts {
        value,
        rule: format!(
            "lowest threshold with FPIR <= {} (the smallest target FPIR these non-mated probes can estimate)",
            p.target_fpir
        ),
    })
}

fn gallery_facts(g: &Gallery) -> GalleryFacts {
    let h = g.header();
    GalleryFacts {
        path: g.path().display().to_string(),
        generation: format!("{:016x}", h.generation),
        rows: g.rows(),
        subjects: g.subjects(),
        dim: g.dim(),
        scan_type: h.scan_type.name().to_string(),
        model_tag: h.model_tag.clone(),
    }
}

fn probe_facts(a: &Args, truth: &[ProbeTruth]) -> ProbeFacts {
    let mut per_group: BTreeMap<String, [usize; 2]> = BTreeMap::new();
    for t in truth {
        per_group.entry(t.group.clone()).or_default()[usize::from(t.mate.is_none())] += 1;
    }
    let mated = truth.iter().filter(|t| t.mate.is_some()).count();
    ProbeFacts {
        file: a.probes.display().to_string(),
        truth: a.truth.display().to_string(),
        total: truth.len(),
        mated,
        non_mated: truth.len() - mated,
        per_group,
    }
}
