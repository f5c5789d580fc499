//! facegate's CPU engine and Faiss's exhaustive CPU indexes (exact
//! `IndexFlatIP`, and the 8-bit scalar quantizer SQ8), side by side: the same
//! gallery rows, the same probes, batch sizes 1, 8, 32 and 256, in one run
//! (the machine is shared and noisy, so only same-run ratios mean much).
//!
//! facegate scans int8 rows (a quarter of Faiss's f32 bytes) and re-scores a
//! pool of subjects exactly in f16; Faiss Flat computes exact f32 scores
//! (BLAS sgemm from 20 probes up), SQ8 decodes its 8-bit rows to f32 as it
//! scans. The recall column checks facegate's answers against the peer's
//! (against Flat, the exact answers).
//!
//! Needs `--features faiss` (Faiss builds from source: see benchmarks/Cargo.toml).
//! Runs with `OMP_WAIT_POLICY=PASSIVE` unless told otherwise (see
//! [`ensure_passive_openmp`]).

use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use facegate_benchmarks::NoiseRows;
use facegate_benchmarks::faiss_peer::{
    Agreement, FaissPeer, PeerKind, agreement, distinct_subjects,
};
use facegate_core::format::{BuildOptions, RowSource, ScanRows, SliceRows, build_gallery};
use facegate_core::{CpuEngine, ElementType, Gallery, ProbeBatch, ScanTarget, SearchEngine};

#[derive(Parser)]
#[command(about = "facegate CPU engine against Faiss's exhaustive indexes on the same data")]
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
    /// The Faiss indexes to measure against.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [PeerKind::Flat, PeerKind::Sq8])]
    peers: Vec<PeerKind>,
}

/// One peer's and batch size's figures.
#[derive(serde::Serialize)]
struct Case {
    /// The Faiss index ("Flat", "SQ8").
    peer: &'static str,
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
    let dir = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let (bench, mut peers) = prepare(&a, dir.path())?;
    println!(
        "\n{} rows x {}, top-{} distinct subjects, facegate {} ({}), median of {}\n",
        a.rows,
        a.dim,
        a.top_k,
        bench.engine.describe(),
        bench.gallery.header().scan_type.name(),
        a.repeats
    );
    println!(
        "| Faiss index | batch | facegate ms | Faiss ms | facegate probes/s | Faiss probes/s | ratio | recall@k | top-1 same |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut cases = Vec::new();
    for peer in &mut peers {
        for &b in &a.batches {
            let case = measure(&bench, peer, b)?;
            print_case(&case);
            cases.push(case);
        }
    }
    print_bytes(&bench, a.rows, a.dim);
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&cases)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// The facegate side of the comparison and the probes both sides search.
struct Bench {
    gallery: std::sync::Arc<Gallery>,
    engine: CpuEngine,
    /// `repeats` batches of the largest size, row-major.
    probes: Vec<f32>,
    dim: usize,
    top_k: usize,
    repeats: usize,
    /// Rows asked of Faiss so that they hold `top_k` distinct subjects.
    k_rows: usize,
}

/// Generates the rows, builds facegate's gallery and each Faiss index over
/// them, and makes the probes: even ones a gallery row plus as much noise
/// again (mated, cosine about 0.7), odd ones fresh noise (non-mated).
fn prepare(a: &Args, dir: &std::path::Path) -> anyhow::Result<(Bench, Vec<FaissPeer>)> {
    let scan_type: ElementType = a
        .dtype
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--dtype: {e}"))?;
    let dim = a.dim;
    eprintln!("generating {} unit rows of {dim}", a.rows);
    let rows = unit_rows(&mut NoiseRows::new(a.rows, dim), a.rows, dim)?;
    let path = dir.join("side-by-side.fgal");
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
    let mut peers = Vec::new();
    for &kind in &a.peers {
        eprintln!("building Faiss {}", kind.factory_name());
        peers.push(FaissPeer::build(kind, dim, &rows)?);
    }
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
    let k_rows = a.top_k * gallery.header().max_templates_per_subject.max(1) as usize;
    let engine = CpuEngine::new(ScanTarget::whole(gallery.clone()));
    // Warm both (page the gallery in, start thread pools).
    let warm = &probes[..dim];
    engine.search(&ProbeBatch::new(dim, warm)?, a.top_k)?;
    for peer in &mut peers {
        peer.search(warm, k_rows)?;
    }
    let bench = Bench {
        gallery,
        engine,
        probes,
        dim,
        top_k: a.top_k,
        repeats: a.repeats,
        k_rows,
    };
    Ok((bench, peers))
}

/// Times facegate and `peer` on `repeats` batches of `b` probes each.
fn measure(bench: &Bench, peer: &mut FaissPeer, b: usize) -> anyhow::Result<Case> {
    let dim = bench.dim;
    let subject_of = |r: u64| -> anyhow::Result<u32> { Ok(bench.gallery.row_subject(r as usize)?) };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut f_all, mut x_all) = (Vec::new(), Vec::new());
    for r in 0..bench.repeats {
        let q = &bench.probes[r * b * dim..(r + 1) * b * dim];
        let t = Instant::now();
        let f = bench
            .engine
            .search(&ProbeBatch::new(dim, q)?, bench.top_k)?;
        ours.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let x = peer.search(q, bench.k_rows)?;
        theirs.push(t.elapsed().as_secs_f64());
        for rows in &x {
            x_all.push(distinct_subjects(rows, subject_of, bench.top_k)?);
        }
        f_all.extend(f);
    }
    let (fm, xm) = (median(ours), median(theirs));
    Ok(Case {
        peer: peer.kind().factory_name(),
        batch: b,
        facegate_ms: fm * 1e3,
        faiss_ms: xm * 1e3,
        facegate_probes_per_s: b as f64 / fm,
        faiss_probes_per_s: b as f64 / xm,
        ratio: xm / fm,
        agreement: agreement(&f_all, &x_all),
    })
}

fn print_case(case: &Case) {
    println!(
        "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}x | {:.4} | {}/{} |",
        case.peer,
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
}

/// The bytes each side reads per pass over the gallery.
fn print_bytes(bench: &Bench, rows: usize, dim: usize) {
    let bytes_ours = match bench.gallery.scan_rows() {
        ScanRows::Int8 { data, .. } => data.len(),
        ScanRows::F16 { data, .. } => data.len() * 2,
        ScanRows::F32 { data, .. } => data.len() * 4,
    };
    println!(
        "\nbytes read per pass: facegate {:.0} MB, Faiss Flat {:.0} MB, Faiss SQ8 {:.0} MB",
        bytes_ours as f64 / 1e6,
        (rows * dim * 4) as f64 / 1e6,
        (rows * dim) as f64 / 1e6
    );
}
