//! `facegate-index calibrate`: the threshold that meets a target FPIR on
//! this gallery, and on manifests of several sizes, written beside the
//! gallery as `GALLERY.fgal.calibration.json` for the server's default
//! (issue 18; docs/accuracy.md, "Calibrating the threshold").
//!
//! FPIR grows with the number of people searched (about N · FMR(T)), so a
//! threshold holds for one gallery size: the national threshold is found on
//! a real search of the whole gallery with the server's CPU engine (as
//! `eval` searches), and each manifest size gets its own threshold from
//! the non-mated probes' best scores within sampled manifests of that size.
//! Both use the accuracy module's threshold rule.

mod manifests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use facegate_core::accuracy::calibration::{
    CALIBRATION_FORMAT, CalibratedGallery, DEFAULT_MANIFEST_SIZES, ManifestThreshold, ProbeSet,
    file_xxh3,
};
use facegate_core::accuracy::{Calibration, Searches, fpir_threshold};
use facegate_core::clock::{Clock, SystemClock};
use facegate_core::npy::NpyRows;
use facegate_core::{CpuEngine, Gallery, ScanTarget};

use super::eval::{search, truth};

/// Arguments of `calibrate`.
#[derive(clap::Args)]
pub struct Args {
    /// The engine that searches (the server's CPU engine by default).
    #[command(flatten)]
    pub engine: super::engine::EngineArgs,
    /// Gallery file to calibrate; the sidecar is written beside it.
    #[arg(long)]
    pub gallery: PathBuf,
    /// Probes, .npy float32 [P, d]; the non-mated ones set the threshold.
    #[arg(long)]
    pub probes: PathBuf,
    /// Ground truth CSV (probe, mated, subject_id, group), as for `eval`.
    #[arg(long)]
    pub truth: PathBuf,
    /// The FPIR the threshold must meet (at least 1 / non-mated probes).
    #[arg(long, default_value_t = 0.001)]
    pub target_fpir: f64,
    /// Manifest sizes (people) given a threshold of their own.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_MANIFEST_SIZES.to_vec())]
    pub manifest_sizes: Vec<u64>,
    /// Manifests drawn per non-mated probe and size.
    #[arg(long, default_value_t = 10)]
    pub manifests_per_probe: usize,
    /// Seed of the manifest draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Probes searched together.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Where to write (default: GALLERY.calibration.json beside the gallery).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing sidecar (recalibration).
    #[arg(long)]
    pub force: bool,
}

/// Calibrates and writes the sidecar.
pub fn run(mut a: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    check_args(&mut a)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| Calibration::sidecar_path(&a.gallery));
    super::refuse_existing(&out, a.force)?;
    let gallery = Arc::new(Gallery::open(&a.gallery)?);
    let (probes, dim) = NpyRows::open(&a.probes)?.read_all()?;
    if dim != gallery.dim() {
        bail!(
            "{}: probes have dimension {dim}, gallery {} has {}",
            a.probes.display(),
            a.gallery.display(),
            gallery.dim()
        );
    }
    let truth = truth::read(&a.truth, probes.len() / dim, &gallery, &a.probes)?;
    let non_mated = truth.iter().filter(|t| t.mate.is_none()).count();
    if non_mated == 0 || 1.0 / (non_mated as f64) > a.target_fpir {
        return Err(not_estimable(a.target_fpir, non_mated, "these probes"));
    }
    let engine = CpuEngine::new(ScanTarget::whole(gallery.clone()));
    let searcher = super::engine::open(&a.engine, &gallery)?;
    let plan = search::Plan {
        top_k: 1,
        batch: a.batch,
        impostor_pairs: 0,
        seed: a.seed,
        probes: &a.probes,
    };
    let searched = search::run(searcher.as_ref(), &engine, &probes, dim, &truth, &plan)?;
    let searches = Searches::new(&searched.searches).context("measuring the searches")?;
    let calibration = national(&a, &gallery, &searches)?;
    let sizes = manifest_sizes(&a, gallery.subjects() as u64);
    let draws = manifests::Draws {
        sizes: &sizes,
        per_probe: a.manifests_per_probe,
        seed: a.seed,
        batch: a.batch,
    };
    let maxima = manifests::best_scores(engine.refiner(), &probes, dim, &truth, &draws)?;
    let calibration = with_manifests(calibration, &sizes, &maxima, a.target_fpir)?.seal();
    calibration.write(&out)?;
    print_summary(&calibration, &out, started);
    Ok(())
}

/// Checks the numbers given; sorts and deduplicates the sizes.
fn check_args(a: &mut Args) -> anyhow::Result<()> {
    if !(a.target_fpir > 0.0 && a.target_fpir < 1.0) {
        bail!("--target-fpir must be within (0, 1), got {}", a.target_fpir);
    }
    if a.manifest_sizes.contains(&0) {
        bail!("--manifest-sizes must be at least 1");
    }
    a.manifest_sizes.sort_unstable();
    a.manifest_sizes.dedup();
    if a.manifests_per_probe == 0 || a.batch == 0 {
        bail!("--manifests-per-probe and --batch must be at least 1");
    }
    Ok(())
}

/// The sizes below the gallery's subject count: a manifest as large as the
/// gallery is the national search, whose threshold applies.
fn manifest_sizes(a: &Args, subjects: u64) -> Vec<u64> {
    let (kept, dropped): (Vec<u64>, Vec<u64>) =
        a.manifest_sizes.iter().partition(|&&n| n < subjects);
    if !dropped.is_empty() {
        eprintln!(
            "manifest sizes {dropped:?} are not below the gallery's {subjects} subjects: the national threshold applies to them"
        );
    }
    kept
}

/// The national threshold, FPIR and FNIR there, and what was measured.
fn national(a: &Args, gallery: &Gallery, searches: &Searches) -> anyhow::Result<Calibration> {
    let best: Vec<f32> = searches.non_mated().map(|o| o.best_score()).collect();
    let mated = searches.mated().count() as u64;
    let (threshold, fpir) = estimable(&best, a.target_fpir, "the gallery")?;
    let h = gallery.header();
    Ok(Calibration {
        format: CALIBRATION_FORMAT.into(),
        gallery: CalibratedGallery {
            file: file_name(&a.gallery),
            generation: format!("{:016x}", h.generation),
            rows: h.rows,
            subjects: h.subjects,
            model_tag: h.model_tag.clone(),
        },
        target_fpir: a.target_fpir,
        threshold,
        fpir: fpir.into(),
        fnir: (mated > 0).then(|| searches.fnir(threshold).into()),
        manifests: Vec::new(),
        probes: ProbeSet {
            file: file_name(&a.probes),
            xxh3: file_xxh3(&a.probes)?,
            truth_file: file_name(&a.truth),
            truth_xxh3: file_xxh3(&a.truth)?,
            mated,
            non_mated: best.len() as u64,
        },
        seed: a.seed,
        made_unix_ms: u64::try_from(SystemClock.now().0).unwrap_or(0),
        tool: format!("facegate-index {}", env!("CARGO_PKG_VERSION")),
        checksum: String::new(),
    })
}

/// The threshold rule on `best`, or an error saying how many non-mated
/// searches the target needs.
fn estimable(
    best: &[f32],
    target: f64,
    what: &str,
) -> anyhow::Result<(f32, facegate_core::accuracy::Rate)> {
    match fpir_threshold(best, target)? {
        Some(found) => Ok(found),
        None => Err(not_estimable(target, best.len(), what)),
    }
}

/// A target below 1 / `n` non-mated searches: an observed FPIR of 0 would
/// not show that the true FPIR is that low, so no threshold is given.
fn not_estimable(target: f64, n: usize, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "target FPIR {target} is not estimable on {what}: it is below 1/{n}, the resolution of \
         {n} non-mated searches; give at least {need} non-mated probes (truth mated=false) or a larger target",
        need = (1.0 / target).ceil() as u64,
    )
}

/// Adds a threshold per manifest size from the sampled manifests' maxima.
fn with_manifests(
    mut c: Calibration,
    sizes: &[u64],
    maxima: &[Vec<f32>],
    target: f64,
) -> anyhow::Result<Calibration> {
    for (&people, best) in sizes.iter().zip(maxima) {
        let (threshold, fpir) = estimable(best, target, &format!("manifests of {people}"))?;
        c.manifests.push(ManifestThreshold {
            people,
            threshold,
            fpir: fpir.into(),
        });
    }
    Ok(c)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
}

fn print_summary(c: &Calibration, out: &Path, started: Instant) {
    let rate = |m: &facegate_core::accuracy::calibration::Measured| {
        format!("{:.4} ({}/{})", m.rate, m.errors, m.trials)
    };
    println!("target FPIR {}: threshold {}", c.target_fpir, c.threshold);
    println!("  FPIR {}", rate(&c.fpir));
    if let Some(f) = &c.fnir {
        println!("  FNIR (rank 1) {}", rate(f));
    }
    for m in &c.manifests {
        println!(
            "  manifests of {}: threshold {}, FPIR {}",
            m.people,
            m.threshold,
            rate(&m.fpir)
        );
    }
    println!(
        "wrote {} in {:.1} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
}
