//! `facegate-index eval`: the accuracy of the matcher on probes whose truth
//! is known (issue 18), in the terms of NIST FRTE and ISO/IEC 19795-1.
//!
//! It searches every probe with the CPU engine the server uses (int8 scan
//! and exact f16 re-score when the gallery is int8), scores genuine and
//! impostor pairs the way 1:1 verification does, hands the results to
//! `facegate_core::accuracy`, and writes `report.json`, `report.md`,
//! `scores.csv` and the DET, CMC and per-group plots. See docs/accuracy.md.

mod markdown;
mod pairs;
mod plot;
mod report;
mod scores_csv;
pub(crate) mod search;
pub(crate) mod truth;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use facegate_core::accuracy::{BootstrapConfig, DEFAULT_TARGET_FPIRS, Searches};
use facegate_core::npy::NpyRows;
use facegate_core::{CpuEngine, Gallery, ScanTarget};

/// Arguments of `eval`.
#[derive(clap::Args)]
pub struct Args {
    /// The engine that searches (the server's CPU engine by default).
    #[command(flatten)]
    pub engine: super::engine::EngineArgs,
    /// Gallery file the probes are searched in.
    #[arg(long)]
    pub gallery: PathBuf,
    /// Probes, .npy float32 [P, d], one row per probe.
    #[arg(long)]
    pub probes: PathBuf,
    /// Ground truth CSV with the columns probe, mated, subject_id, group
    /// (as `synth` writes it; other columns are ignored).
    #[arg(long)]
    pub truth: PathBuf,
    /// Directory for report.json, report.md, scores.csv and the plots.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Operating threshold of the per-group table and of FMR/FNMR (default:
    /// the threshold found for the smallest estimable --target-fpir).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Candidates per search; the CMC is reported to this rank.
    #[arg(long, default_value_t = 50)]
    pub top_k: usize,
    /// Target FPIRs at which thresholds and FNIR are reported.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_TARGET_FPIRS.to_vec())]
    pub target_fpir: Vec<f64>,
    /// Bootstrap resamples for the per-group intervals (0: none).
    #[arg(long, default_value_t = 1_000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap and of the impostor pairs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Impostor pairs for verification: probes against random other subjects.
    #[arg(long, default_value_t = 100_000)]
    pub impostor_pairs: usize,
    /// Probes searched together.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Replace the outputs if they exist.
    #[arg(long)]
    pub force: bool,
}

/// Most candidates per search (the CMC's depth).
const MAX_TOP_K: usize = 1_000;

/// The files `eval` writes into `--out-dir`.
pub const FILES: [&str; 9] = [
    "report.json",
    "report.md",
    "scores.csv",
    "det.svg",
    "det.png",
    "cmc.svg",
    "cmc.png",
    "groups.svg",
    "groups.png",
];

/// Runs the evaluation: checks, searches, measures, writes the outputs.
pub fn run(a: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    check_args(&a)?;
    let gallery = Arc::new(Gallery::open(&a.gallery)?);
    let (probes, dim) = NpyRows::open(&a.probes)?.read_all()?;
    if dim != gallery.dim() {
        anyhow::bail!(
            "{}: probes have dimension {dim}, gallery {} has {}",
            a.probes.display(),
            a.gallery.display(),
            gallery.dim()
        );
    }
    let truth = truth::read(&a.truth, probes.len() / dim, &gallery, &a.probes)?;
    let cpu = CpuEngine::new(ScanTarget::whole(gallery.clone()));
    let engine = super::engine::open(&a.engine, &gallery)?;
    let searched = search::run(engine.as_ref(), &cpu, &probes, dim, &truth, &(&a).into())?;
    let searches = Searches::new(&searched.searches).context("measuring the searches")?;
    let bootstrap = BootstrapConfig {
        resamples: a.bootstrap,
        seed: a.seed,
        ..BootstrapConfig::default()
    };
    let facts = report::Facts {
        args: &a,
        gallery: &gallery,
        engine: engine.as_ref(),
        truth: &truth,
        searched: &searched,
        started,
    };
    let report = report::build(&facts, &searches, &bootstrap)?;
    write_outputs(&a, &gallery, &searches, &searched, &report)?;
    println!("{}", markdown::summary(&report));
    println!(
        "wrote {} in {:.1} s",
        a.out_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Checks the arguments and that no output would be replaced without --force.
fn check_args(a: &Args) -> anyhow::Result<()> {
    if a.top_k == 0 || a.top_k > MAX_TOP_K {
        anyhow::bail!("--top-k must be within 1..={MAX_TOP_K}, got {}", a.top_k);
    }
    if a.batch == 0 {
        anyhow::bail!("--batch must be at least 1");
    }
    if let Some(t) = a.threshold
        && !t.is_finite()
    {
        anyhow::bail!("--threshold must be a finite number");
    }
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    for f in FILES {
        super::refuse_existing(&a.out_dir.join(f), a.force)?;
    }
    Ok(())
}

/// Writes report.json, report.md, scores.csv and the plots.
fn write_outputs(
    a: &Args,
    gallery: &Gallery,
    searches: &Searches,
    searched: &search::Searched,
    report: &report::Report,
) -> anyhow::Result<()> {
    let dir = &a.out_dir;
    let json = dir.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(report)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    let md = dir.join("report.md");
    std::fs::write(&md, markdown::render(report))
        .with_context(|| format!("writing {}", md.display()))?;
    scores_csv::write(&dir.join("scores.csv"), gallery, searches, searched)?;
    plot::write_all(dir, report)
}
