//! `facegate-index search`: offline 1:N search of probes from a .npy file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use facegate_core::npy::NpyRows;
use facegate_core::{CpuEngine, Gallery, ProbeBatch, ScanTarget, SearchEngine};

use crate::progress;

/// Arguments of `search`.
#[derive(clap::Args)]
pub struct Args {
    /// Gallery file.
    #[arg(long)]
    pub gallery: PathBuf,
    /// Probes, .npy float32 [P, d].
    #[arg(long)]
    pub probes: PathBuf,
    /// Distinct subjects to return per probe.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// CSV to write: probe,rank,subject_id,score.
    #[arg(long)]
    pub out: PathBuf,
    /// Probes searched together (each row is read once per batch).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Replace the output if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Most candidates one probe may ask for offline.
const MAX_TOP_K: usize = 10_000;

pub fn run(a: Args) -> anyhow::Result<()> {
    super::refuse_existing(&a.out, a.force)?;
    if a.top_k == 0 || a.top_k > MAX_TOP_K {
        anyhow::bail!("--top-k must be within 1..={MAX_TOP_K}, got {}", a.top_k);
    }
    if a.batch == 0 {
        anyhow::bail!("--batch must be at least 1");
    }
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
    let engine = CpuEngine::new(ScanTarget::whole(gallery.clone()));
    let n = probes.len() / dim;
    let pb = progress::bar(n as u64, "searching", false);
    let results = search_all(
        &engine,
        &probes,
        dim,
        a.top_k,
        a.batch,
        &a.probes,
        &mut |d| pb.set_position(d),
    )?;
    pb.finish_and_clear();
    write_csv(&a.out, &gallery, &results)?;
    println!(
        "searched {n} probes with {}; wrote {}",
        engine.describe(),
        a.out.display()
    );
    Ok(())
}

/// Searches `probes` in batches; errors name the probe row in `probes_path`.
pub fn search_all(
    engine: &CpuEngine,
    probes: &[f32],
    dim: usize,
    top_k: usize,
    batch: usize,
    probes_path: &Path,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<Vec<Vec<facegate_core::Candidate>>> {
    let mut results = Vec::with_capacity(probes.len() / dim);
    for (bi, chunk) in probes.chunks(batch * dim).enumerate() {
        let batch_probes = ProbeBatch::new(dim, chunk).map_err(|e| {
            anyhow::anyhow!(
                "{} (batch starting at row {}): {e}",
                probes_path.display(),
                bi * batch
            )
        })?;
        results.extend(engine.search(&batch_probes, top_k)?);
        progress(results.len() as u64);
    }
    Ok(results)
}

fn write_csv(
    out: &Path,
    gallery: &Gallery,
    results: &[Vec<facegate_core::Candidate>],
) -> anyhow::Result<()> {
    let mut w =
        csv::Writer::from_path(out).with_context(|| format!("creating {}", out.display()))?;
    w.write_record(["probe", "rank", "subject_id", "score"])?;
    for (p, cands) in results.iter().enumerate() {
        for (rank, c) in cands.iter().enumerate() {
            w.write_record([
                p.to_string(),
                (rank + 1).to_string(),
                gallery.subject_id(c.subject)?.to_string(),
                format!("{:.6}", c.score),
            ])?;
        }
    }
    w.flush()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
