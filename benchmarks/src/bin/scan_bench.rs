//! Scan benchmark: the CPU engine over a large gallery, against this machine's
//! memory read bandwidth measured in the same run.
//!
//! A single probe is bandwidth bound (every row is read once), so its figure
//! of merit is the fraction of the measured bandwidth it reaches; a batch is
//! compute bound, so it is reported in probes/s and dot-product operations/s.
//! Prints a markdown table (and JSON with --json) for docs/benchmarks.md.
//!
//! For int8, each batch is also timed through the batch kernel alone (the
//! engine's tiles and prefetch, no score conversion, top-k or re-score), so
//! that the engine's rate can be read against its kernel's in the same run.
//! `--kernels avx2,avx512vnni` measures several kernel sets in one run.
//! Each int8 kernel set is also read against the core's int8 peak for its own
//! instructions ([`PeakLoop`]: registers only, every thread), measured before
//! and after the scans like the bandwidth.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use facegate_benchmarks::int8_peak::PeakLoop;
use facegate_benchmarks::noise_gallery;
use facegate_core::format::ScanRows;
use facegate_core::kernels::{Kernels, NarrowProbes, PREFETCH_TILES, prefetch};
use facegate_core::{CpuEngine, ElementType, Gallery, ProbeBatch, ScanTarget, SearchEngine};
use rayon::prelude::*;

#[derive(Parser)]
#[command(about = "CPU scan benchmark against measured memory bandwidth")]
struct Args {
    /// Gallery rows.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Template dimension.
    #[arg(long, default_value_t = 512)]
    dim: usize,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    batches: Vec<usize>,
    /// Scan element types to measure (int8, f32).
    #[arg(long, value_delimiter = ',', default_value = "int8,f32")]
    types: Vec<String>,
    /// Timed repetitions per case (the median is reported).
    #[arg(long, default_value_t = 7)]
    repeats: usize,
    /// Candidates per probe.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Directory for the temporary galleries (default: the system temp dir).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Also measure the portable (non-SIMD) kernels, for the SIMD speed-up.
    #[arg(long)]
    portable: bool,
    /// Kernel sets to measure, by name (e.g. `avx2,avx512vnni`; default: the
    /// one `Kernels::detect` picks, which `FACEGATE_KERNELS` can force).
    #[arg(long, value_delimiter = ',')]
    kernels: Vec<String>,
    /// Rows per tile for the kernel-alone timing (the engine's is fixed).
    #[arg(long, default_value_t = facegate_core::kernels::BATCH_TILE_ROWS)]
    kernel_tile_rows: usize,
    /// Prefetch distance in tiles for the kernel-alone timing (the engine's
    /// is fixed), to re-tune `PREFETCH_TILES`.
    #[arg(long, default_value_t = PREFETCH_TILES)]
    kernel_prefetch_tiles: usize,
    /// Print JSON results after the table.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Case {
    dtype: &'static str,
    kernels: &'static str,
    batch: usize,
    median_ms: f64,
    /// The fastest search: on a shared machine, the one least disturbed.
    best_ms: f64,
    probes_per_s: f64,
    rows_per_s: f64,
    scan_gb_per_s: f64,
    fraction_of_bandwidth: f64,
    gops: f64,
    /// The int8 batch kernel alone over the same rows (0 for f32): median
    /// and fastest pass.
    kernel_ms: f64,
    kernel_best_ms: f64,
    /// The kernel alone's operations/s against its kernel set's int8 peak
    /// (int8 with a peak loop only).
    kernel_of_peak: Option<f64>,
}

/// Seconds one pass of a peak loop must last before it is timed.
const PEAK_MIN_SECS: f64 = 0.1;
/// Timed passes of a peak loop (the best is kept).
const PEAK_PASSES: usize = 5;

/// The int8 peak of each kernel set that has a peak loop, in G operations/s
/// on every thread (none when int8 is not measured).
fn int8_peaks(args: &Args) -> anyhow::Result<BTreeMap<&'static str, f64>> {
    let mut peaks = BTreeMap::new();
    if !scan_types(args)?.contains(&ElementType::Int8) {
        return Ok(peaks);
    }
    for k in kernel_sets(args)? {
        if peaks.contains_key(k.name) {
            continue;
        }
        if let Some(l) = PeakLoop::for_kernels(k.name) {
            peaks.insert(k.name, l.measure(PEAK_MIN_SECS, PEAK_PASSES));
        }
    }
    Ok(peaks)
}

/// Times the int8 batch kernel alone over every row of `g`, as the engine
/// calls it (chunks across threads, `tile` rows per call, the same
/// prefetch, unless told otherwise) but without score conversion, top-k admission or re-score:
/// median and fastest of `repeats` passes, in seconds.
fn kernel_alone(
    kernels: Kernels,
    g: &Gallery,
    probes: &[f32],
    (tile, prefetch_tiles): (usize, usize),
    repeats: usize,
) -> Option<(f64, f64)> {
    let ScanRows::Int8 { data, stride, .. } = g.scan_rows() else {
        return None;
    };
    let (dim, rows) = (g.dim(), g.rows());
    let narrow = NarrowProbes::quantize(dim, probes.chunks_exact(dim));
    let count = narrow.len();
    let pass = || {
        (0..rows.div_ceil(CHUNK_ROWS))
            .into_par_iter()
            .for_each(|c| {
                let end = ((c + 1) * CHUNK_ROWS).min(rows);
                let mut dots = vec![0i32; count * tile];
                let mut first = c * CHUNK_ROWS;
                while first < end {
                    let t = tile.min(end - first);
                    let ahead = first + prefetch_tiles * tile;
                    if count > 1 && ahead < end {
                        let last = (ahead + tile).min(end) - 1;
                        prefetch(&data[ahead * stride..last * stride + dim]);
                    }
                    let block = &data[first * stride..(first + t - 1) * stride + dim];
                    (kernels.i8_batch_block)(&narrow, block, stride, &mut dots[..count * t]);
                    std::hint::black_box(&dots);
                    first += t;
                }
            })
    };
    pass();
    let times: Vec<f64> = (0..repeats)
        .map(|_| {
            let t = Instant::now();
            pass();
            t.elapsed().as_secs_f64()
        })
        .collect();
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    Some((median(times), best))
}

/// Rows per parallel task, as the engine's.
const CHUNK_ROWS: usize = 16 * 1024;

/// A buffer far larger than the caches, for [`memory_read_bandwidth`].
fn bandwidth_buffer(bytes: usize) -> Vec<u64> {
    (0..(bytes / 8) as u64)
        .into_par_iter()
        .map(|i| i.wrapping_mul(7))
        .collect()
}

/// Read bandwidth with all threads: a parallel sum with eight independent
/// accumulators (so the adds never limit it), best of `repeats`.
fn memory_read_bandwidth(buf: &[u64], repeats: usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..repeats {
        let t = Instant::now();
        let s: u64 = buf
            .par_chunks(1 << 17)
            .map(|c| {
                let mut acc = [0u64; 8];
                for w in c.chunks_exact(8) {
                    for (a, &x) in acc.iter_mut().zip(w) {
                        *a = a.wrapping_add(x);
                    }
                }
                acc.iter().fold(0u64, |a, &x| a.wrapping_add(x))
            })
            .reduce(|| 0, u64::wrapping_add);
        std::hint::black_box(s);
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::mem::size_of_val(buf) as f64 / best / 1e9
}

/// Top-1 answers of the int8 (+ f16 re-score) gallery against the f32
/// gallery's exact ones, for the largest batch: both galleries hold the same
/// noise rows, so this checks in the same run that the batched int8
/// pre-selection (7-bit probes) keeps the best subject.
#[derive(serde::Serialize)]
struct Agreement {
    batch: usize,
    same_top1: usize,
    /// Largest f32 exact score shortfall of the int8 top-1 subject where the
    /// two differ (else 0): near-ties within the f16 re-score's rounding
    /// show as a few 1e-5.
    max_shortfall: f32,
}

/// `count` distinct pseudo-random probes (a hash of the element index, so
/// every batch size sees the same first probes).
fn bench_probes(count: usize, dim: usize) -> Vec<f32> {
    (0..(count * dim) as u64)
        .map(|i| {
            // splitmix64
            let mut z = i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn build(dir: &Path, args: &Args, ty: ElementType) -> anyhow::Result<Arc<Gallery>> {
    let t = Instant::now();
    let g = noise_gallery(
        &dir.join(format!("bench-{ty}.fgal")),
        args.rows,
        args.dim,
        ty,
    )?;
    eprintln!(
        "built the {ty} gallery in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(g)
}

fn scan_bytes(g: &Gallery) -> f64 {
    let h = g.header();
    h.sections
        .iter()
        .filter(|s| {
            matches!(
                s.kind,
                facegate_core::format::SectionKind::ScanRows
                    | facegate_core::format::SectionKind::RowScales
            )
        })
        .map(|s| s.length as f64)
        .sum()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile_dir(args.dir.as_deref())?;
    let threads = rayon::current_num_threads();
    eprintln!("measuring memory read bandwidth ({threads} threads)...");
    let bw_buf = bandwidth_buffer(1 << 30);
    let bw_before = memory_read_bandwidth(&bw_buf, 5);
    let mut cases = Vec::new();
    // The int8 top-1 (subject id) of each probe of the largest batch, then
    // the comparison with f32 exact.
    let agree_batch = args.batches.iter().copied().max().unwrap_or(0);
    let mut int8_top1: Option<Vec<String>> = None;
    let mut agreement: Option<Agreement> = None;
    let peaks_before = int8_peaks(&args)?;
    for ty in scan_types(&args)? {
        let g = build(tmp.path(), &args, ty)?;
        let kernel_sets = kernel_sets(&args)?;
        let agree_kernels = kernel_sets[0].name;
        for kernels in kernel_sets {
            let engine = CpuEngine::with_kernels(ScanTarget::whole(g.clone()), kernels);
            for &b in &args.batches {
                let probes = bench_probes(b, args.dim);
                let batch = ProbeBatch::new(args.dim, &probes).context("probes")?;
                cases.push(measure(&args, &engine, &g, ty, &batch, &probes)?);
                if b != agree_batch || kernels.name != agree_kernels {
                    continue;
                }
                let answers = engine.search(&batch, args.top_k)?;
                match (ty, &int8_top1) {
                    (ElementType::Int8, _) => int8_top1 = Some(top1_ids(&g, &answers)?),
                    (_, Some(int8)) => {
                        agreement = Some(compare_top1(&engine, &batch, &answers, int8)?)
                    }
                    _ => {}
                }
            }
        }
        drop(g);
        std::fs::remove_file(tmp.path().join(format!("bench-{ty}.fgal"))).ok();
    }
    // Measured again after the scans; the best of both is the reference, so a
    // quiet moment in either favours the limit, not facegate.
    let bw = bw_before.max(memory_read_bandwidth(&bw_buf, 5));
    drop(bw_buf);
    let mut peaks = int8_peaks(&args)?;
    for (name, before) in peaks_before {
        peaks.entry(name).and_modify(|p| *p = p.max(before));
    }
    for c in &mut cases {
        c.fraction_of_bandwidth = c.scan_gb_per_s / bw;
        if c.dtype == "int8" && c.kernel_ms > 0.0 {
            let kernel_gops = 2.0 * (args.rows * args.dim * c.batch) as f64 / c.kernel_ms / 1e6;
            c.kernel_of_peak = peaks.get(c.kernels).map(|p| kernel_gops / p);
        }
    }
    print_table(&args, threads, bw, &cases);
    print_peaks(&peaks);
    print_agreement(agreement.as_ref());
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "rows": args.rows, "dim": args.dim, "threads": threads,
                "memory_read_gb_per_s": bw, "int8_peak_gops": peaks,
                "cases": cases, "agreement": agreement,
            }))?
        );
    }
    Ok(())
}

/// The scan types asked for.
fn scan_types(args: &Args) -> anyhow::Result<Vec<ElementType>> {
    args.types
        .iter()
        .map(|t| match t.as_str() {
            "int8" => Ok(ElementType::Int8),
            "f32" => Ok(ElementType::F32),
            other => anyhow::bail!("unknown scan type {other:?} (int8 or f32)"),
        })
        .collect()
}

/// The kernel sets to measure: those named, else the one detected; plus the
/// portable set with `--portable`.
fn kernel_sets(args: &Args) -> anyhow::Result<Vec<Kernels>> {
    let mut sets = if args.kernels.is_empty() {
        vec![Kernels::detect()]
    } else {
        args.kernels
            .iter()
            .map(|n| {
                Kernels::by_name(n)
                    .with_context(|| format!("kernel set {n:?} not available on this processor"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    if args.portable && Kernels::detect().name != "portable" {
        sets.push(Kernels::portable());
    }
    Ok(sets)
}

/// Times `engine` on `batch` (after a warm-up that pages the rows in), and
/// the batch kernel alone on the same probes.
fn measure(
    args: &Args,
    engine: &CpuEngine,
    g: &Arc<Gallery>,
    ty: ElementType,
    batch: &ProbeBatch,
    probes: &[f32],
) -> anyhow::Result<Case> {
    let b = batch.len();
    let kernels = *engine.refiner().kernels();
    engine.search(batch, args.top_k)?;
    let times: Vec<f64> = (0..args.repeats)
        .map(|_| {
            let t = Instant::now();
            engine
                .search(batch, args.top_k)
                .map(|_| t.elapsed().as_secs_f64())
        })
        .collect::<Result<_, _>>()?;
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let t = median(times);
    let tiling = (args.kernel_tile_rows, args.kernel_prefetch_tiles);
    let kt = kernel_alone(kernels, g, probes, tiling, args.repeats).unwrap_or((0.0, 0.0));
    eprintln!(
        "{ty} {} batch {b}: {:.1} ms (kernel alone {:.1} ms)",
        kernels.name,
        t * 1e3,
        kt.0 * 1e3
    );
    Ok(Case {
        dtype: ty.name(),
        kernels: kernels.name,
        batch: b,
        median_ms: t * 1e3,
        best_ms: best * 1e3,
        probes_per_s: b as f64 / t,
        rows_per_s: args.rows as f64 / t,
        scan_gb_per_s: scan_bytes(g) / t / 1e9,
        fraction_of_bandwidth: 0.0,
        gops: 2.0 * (args.rows * args.dim * b) as f64 / t / 1e9,
        kernel_ms: kt.0 * 1e3,
        kernel_best_ms: kt.1 * 1e3,
        kernel_of_peak: None,
    })
}

/// The id of each probe's best subject.
fn top1_ids(g: &Gallery, answers: &[Vec<facegate_core::Candidate>]) -> anyhow::Result<Vec<String>> {
    Ok(answers
        .iter()
        .map(|a| g.subject_id(a[0].subject).map(str::to_string))
        .collect::<Result<_, _>>()?)
}

/// The f32 exact answers against the int8 top-1 ids of the same probes.
fn compare_top1(
    engine: &CpuEngine,
    batch: &ProbeBatch,
    exact: &[Vec<facegate_core::Candidate>],
    int8: &[String],
) -> anyhow::Result<Agreement> {
    let g = engine.gallery();
    let mut a = Agreement {
        batch: batch.len(),
        same_top1: 0,
        max_shortfall: 0.0,
    };
    for (j, (exact, id)) in exact.iter().zip(int8).enumerate() {
        if g.subject_id(exact[0].subject)? == id {
            a.same_top1 += 1;
        } else {
            let s = g.find_subject(id)?.context("subject missing")?;
            let theirs = engine.refiner().score_subject(batch, j, s)?.score;
            a.max_shortfall = a.max_shortfall.max(exact[0].score - theirs);
        }
    }
    Ok(a)
}

/// The markdown table for docs/benchmarks.md.
fn print_table(args: &Args, threads: usize, bw: f64, cases: &[Case]) {
    println!(
        "\nCPU scan, {} rows x {} dims, top-{}, {threads} threads; memory read bandwidth measured in this run: {bw:.1} GB/s\n",
        args.rows, args.dim, args.top_k
    );
    println!(
        "kernels detected: {} (the kernels column is what ran)\n",
        Kernels::detect().name
    );
    println!(
        "| dtype | kernels | batch | median ms | probes/s | rows/s (M) | scan GB/s | of bandwidth | GOP/s | best ms | kernel alone ms | kernel best ms | engine / kernel rate | kernel of int8 peak |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in cases {
        let vs_kernel = if c.kernel_ms > 0.0 {
            format!("{:.2}", c.kernel_ms / c.median_ms)
        } else {
            "-".into()
        };
        let of_peak = c
            .kernel_of_peak
            .map_or("-".into(), |f| format!("{:.0} %", f * 100.0));
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.0} % | {:.1} | {:.1} | {:.1} | {:.1} | {vs_kernel} | {of_peak} |",
            c.dtype,
            c.kernels,
            c.batch,
            c.median_ms,
            c.probes_per_s,
            c.rows_per_s / 1e6,
            c.scan_gb_per_s,
            c.fraction_of_bandwidth * 100.0,
            c.gops,
            c.best_ms,
            c.kernel_ms,
            c.kernel_best_ms
        );
    }
}

/// Each kernel set's int8 peak, the reference of the last column.
fn print_peaks(peaks: &BTreeMap<&'static str, f64>) {
    if peaks.is_empty() {
        return;
    }
    let list: Vec<String> = peaks
        .iter()
        .map(|(name, gops)| format!("{name} {gops:.1}"))
        .collect();
    println!(
        "\nint8 peak, G operations/s on every thread (each kernel set's own instructions, registers only, best of before and after the scans): {}",
        list.join(", ")
    );
}

/// The int8 against f32 top-1 comparison, when both were measured.
fn print_agreement(agreement: Option<&Agreement>) {
    let Some(a) = agreement else {
        return;
    };
    let detail = if a.same_top1 < a.batch {
        format!(
            "; where they differ, the int8 answer's exact score is at most {:.1e} below the best",
            a.max_shortfall
        )
    } else {
        String::new()
    };
    println!(
        "\nint8 + re-score against f32 exact, batch {}: same top-1 subject for {}/{} probes{detail}",
        a.batch, a.same_top1, a.batch
    );
}

fn tempfile_dir(dir: Option<&Path>) -> anyhow::Result<tempfile::TempDir> {
    Ok(match dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    })
}
