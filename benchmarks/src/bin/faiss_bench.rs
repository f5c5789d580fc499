//! facegate's CPU engine and Faiss's exact `IndexFlatIP`, side by side: the
//! same gallery rows, the same probes, batch sizes 1, 8, 32 and 256, in one
//! run (the machine is shared and noisy, so only same-run ratios mean much).
//!
//! facegate scans int8 rows (a quarter of Faiss's f32 bytes) and re-scores a
//! pool of subjects exactly in f16; Faiss computes exact f32 scores (BLAS
//! sgemm from 20 probes up). The recall column checks that the int8 path
//! loses nothing against Faiss's exact answers.
//!
//! Needs `--features faiss` (Faiss builds from source: see benchmarks/Cargo.toml).
//! Runs with `OMP_WAIT_POLICY=PASSIVE` unless told otherwise (see
//! [`ensure_passive_openmp`]).

use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use facegate_benchmarks::NoiseRows;
use facegate_benchmarks::faiss_peer::{Agreement, FlatIp, agreement, distinct_subjects};
use facegate_core::format::{BuildOptions, RowSource, ScanRows, SliceRows, build_gallery};
use facegate_core::{CpuEngine, ElementType, Gallery, ProbeBatch, ScanTarget, SearchEngine};

#[derive(Parser)]
#[command(about = "facegate CPU engine against Faiss IndexFlatIP on the same data")]
struct Args {
    /// Gallery rows (two templates per subject).
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Template dimension.
    #[arg(long, default_value_t = 512)]
    dim: usize,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,256")]
    batches: Vec<usize>,
    /// Timed repetitions per batch size, each on different probes (medians reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Distinct subjects per probe.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// facegate's scan element type (int8 re-scores in f16; f32 is Faiss's precision).
    #[arg(long, default_value = "int8")]
    dtype: String,
    /// Directory for the temporary gallery (default: the system temp dir).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// One batch size's figures.
#[derive(serde::Serialize)]
struct Case {
    batch: usize,
    facegate_ms: f64,
    faiss_ms: f64,
    facegate_probes_per_s: f64,
    faiss_probes_per_s: f64,
    /// facegate's throughput over Faiss's.
    ratio: f64,
    agreement: Agreement,
}

fn unit_rows(src: &mut NoiseRows, rows: usize, dim: usize) -> anyhow::Result<Vec<f32>> {
    let mut out = vec![0f32; rows * dim];
    for r in out.chunks_exact_mut(dim) {
        src.next_row(r)?;
        normalize(r);
    }
    Ok(out)
}

fn normalize(r: &mut [f32]) {
    let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
    r.iter_mut().for_each(|x| *x /= n);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// OpenMP threads (Faiss) spin after each parallel region by default and then
/// steal both cores from the other engine's threads: measured here, that
/// slowed facegate 2.6x and Faiss's own BLAS path 20x at batch 32. libgomp
/// reads its settings when it loads, before `main`, so the process re-runs
/// itself with passive waiting unless the caller chose a policy.
#[cfg(unix)]
fn ensure_passive_openmp() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return Ok(());
    }
    let err = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .exec();
    Err(err).context("re-running with OMP_WAIT_POLICY=PASSIVE")
}

fn main() -> anyhow::Result<()> {
    #[cfg(unix)]
    ensure_passive_openmp()?;
    let a = Args::parse();
    anyhow::ensure!(
        a.repeats >= 1 && a.top_k >= 1,
        "repeats and top-k must be at least 1"
    );
    anyhow::ensure!(
        a.batches.iter().all(|&b| b >= 1),
        "batch sizes must be at least 1"
    );
    let scan_type: ElementType = a
        .dtype
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--dtype: {e}"))?;
    let dim = a.dim;

    eprintln!("generating {} unit rows of {dim}", a.rows);
    let rows = unit_rows(&mut NoiseRows::new(a.rows, dim), a.rows, dim)?;
    let dir = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let path = dir.path().join("side-by-side.fgal");
    let ids: Vec<String> = (0..a.rows).map(|i| format!("s{}", i / 2)).collect();
    eprintln!("building the facegate gallery ({})", scan_type.name());
    build_gallery(
        &path,
        &mut SliceRows::new(&rows, dim, "noise rows")?,
        &ids,
        "generated ids",
        &BuildOptions {
            scan_type,
            model_tag: "bench".into(),
            overwrite: true,
        },
        &mut |_| {},
    )?;
    let gallery = std::sync::Arc::new(Gallery::open(&path)?);
    let engine = CpuEngine::new(ScanTarget::whole(gallery.clone()));
    eprintln!("adding the rows to Faiss IndexFlatIP");
    let mut faiss = FlatIp::build(dim, &rows)?;

    // Probes: even ones are a gallery row plus as much noise again (mated,
    // cosine about 0.7), odd ones fresh noise (non-mated).
    let max_batch = a.batches.iter().copied().max().unwrap_or(1);
    let pool = max_batch * a.repeats;
    let mut probes = unit_rows(&mut NoiseRows::with_seed(pool, dim, 1), pool, dim)?;
    for (j, p) in probes.chunks_exact_mut(dim).enumerate().step_by(2) {
        let target = (j * 7919) % a.rows;
        for (x, g) in p.iter_mut().zip(&rows[target * dim..(target + 1) * dim]) {
            *x += *g;
        }
        normalize(p);
    }
    drop(rows);
    let k_rows = a.top_k * gallery.header().max_templates_per_subject.max(1) as usize;
    let subject_of = |r: u64| -> anyhow::Result<u32> { Ok(gallery.row_subject(r as usize)?) };

    // Warm both (page the gallery in, start thread pools).
    let warm = &probes[..dim];
    engine.search(&ProbeBatch::new(dim, warm)?, a.top_k)?;
    faiss.search(warm, k_rows)?;

    println!(
        "\n{} rows x {dim}, top-{} distinct subjects, facegate {} ({}), median of {}\n",
        a.rows,
        a.top_k,
        engine.describe(),
        scan_type.name(),
        a.repeats
    );
    println!(
        "| batch | facegate ms | Faiss ms | facegate probes/s | Faiss probes/s | ratio | recall@k | top-1 same |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut cases = Vec::new();
    for &b in &a.batches {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut f_all, mut x_all) = (Vec::new(), Vec::new());
        for r in 0..a.repeats {
            let q = &probes[r * b * dim..(r + 1) * b * dim];
            let t = Instant::now();
            let batch = ProbeBatch::new(dim, q)?;
            let f = engine.search(&batch, a.top_k)?;
            ours.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let x = faiss.search(q, k_rows)?;
            theirs.push(t.elapsed().as_secs_f64());
            for rows in &x {
                x_all.push(distinct_subjects(rows, subject_of, a.top_k)?);
            }
            f_all.extend(f);
        }
        let (fm, xm) = (median(ours), median(theirs));
        let case = Case {
            batch: b,
            facegate_ms: fm * 1e3,
            faiss_ms: xm * 1e3,
            facegate_probes_per_s: b as f64 / fm,
            faiss_probes_per_s: b as f64 / xm,
            ratio: xm / fm,
            agreement: agreement(&f_all, &x_all),
        };
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}x | {:.4} | {}/{} |",
            case.batch,
            case.facegate_ms,
            case.faiss_ms,
            case.facegate_probes_per_s,
            case.faiss_probes_per_s,
            case.ratio,
            case.agreement.recall,
            case.agreement.top1_same,
            case.agreement.probes
        );
        cases.push(case);
    }
    let bytes_ours = match gallery.scan_rows() {
        ScanRows::Int8 { data, .. } => data.len(),
        ScanRows::F16 { data, .. } => data.len() * 2,
        ScanRows::F32 { data, .. } => data.len() * 4,
    };
    let bytes_faiss = (a.rows * dim * 4) as u64;
    println!(
        "\nbytes read per pass: facegate {:.0} MB, Faiss {:.0} MB",
        bytes_ours as f64 / 1e6,
        bytes_faiss as f64 / 1e6
    );
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&cases)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
