//! GPU benchmark: the WGSL engine's designs (and the second design's
//! variants) over one int8 gallery for a range of batch sizes, beside the
//! device's read and copy bandwidth measured in the same run (the read
//! bandwidth is the physical limit of a scan that reads every row once),
//! the int8 rate given as an argument (wgpu cannot query it), and the CPU
//! engine on galleries small enough to wait for. Each batch size is timed
//! after a second of untimed searches, and the second design's GPU time is
//! split by stage (timestamp queries).
//!
//! It first prints the adapter: name, driver, the limits the engine sizes
//! itself from, and the features it offers (subgroups, f16, cooperative
//! matrices), none of which the engine uses yet. With `--dump-dir` it
//! writes the gallery's int8 rows, scales and row subjects, the largest batch's probes
//! and the second design's answers as .npy files, for the PyTorch peer
//! (benchmarks/gpu-run/torch_peer.py) to search the same data and compare.
//! On a software adapter (lavapipe) the figures only show that it runs.

mod peer;
mod report;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use facegate_benchmarks::{NoiseRows, noise_gallery};
use facegate_core::format::RowSource;
use facegate_core::{
    Candidate, CpuEngine, ElementType, Gallery, ProbeBatch, ScanTarget, SearchEngine,
};
use facegate_gpu::{Design, DeviceOptions, GpuEngine, GpuOptions, bandwidth};
use report::Case;

#[derive(Parser)]
#[command(about = "GPU engine benchmark: the designs against the measured bandwidth and the CPU")]
struct Args {
    /// Gallery rows.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Template dimension.
    #[arg(long, default_value_t = 512)]
    dim: usize,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64,256,1024")]
    batches: Vec<usize>,
    /// Designs to time: scan (the second), classic (the first). A scan may
    /// name options after colons: `checked` (the scan and top-k kernels
    /// with naga's runtime checks), `topk-run3` (the top-k kernel as the
    /// first three H200 runs ran it: checked, K = 256), `direct` or `rows` (the kernel with a share of each row in
    /// registers, or one whole row an invocation), `coop` (the kernel on
    /// f16 cooperative matrices, where the device offers them; a tile of
    /// 16N probes) and `tpN` (N probes per invocation, a tile of 4N, for
    /// every batch), e.g. `scan:rows:tp1`. A design the device cannot run
    /// is reported and skipped.
    #[arg(long, value_delimiter = ',', default_value = "scan,classic")]
    designs: Vec<String>,
    /// Timed repetitions per batch size (median reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Candidates per probe.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Device int8 rate, tera-operations/s (H100/H200 SXM dense: 1979).
    #[arg(long, default_value_t = 1979.0)]
    peak_tops: f64,
    /// MiB per copy or read when measuring the bandwidth.
    #[arg(long, default_value_t = 1024)]
    copy_mib: u64,
    /// Seconds of reads before the timed ones, so the clocks have risen.
    #[arg(long, default_value_t = 2.0)]
    warm_up_secs: f64,
    /// Also time the CPU engine on the same probes (skipped above this many rows).
    #[arg(long, default_value_t = 2_000_000)]
    cpu_peer_max_rows: usize,
    /// Probes whose answers are checked against the CPU engine's (the same
    /// subjects in the same order, scores within 1e-4) for every batch size
    /// of every design: the first this many of each batch.
    #[arg(long, default_value_t = 8)]
    verify_probes: usize,
    /// Accept a software adapter (for a smoke run without a GPU).
    #[arg(long)]
    allow_software_gpu: bool,
    /// Write rows, scales, probes and answers as .npy here (for the PyTorch peer).
    #[arg(long)]
    dump_dir: Option<PathBuf>,
    /// Print JSON after the table.
    #[arg(long)]
    json: bool,
}

/// The measured limits: read bandwidth (the scan's) and copy bandwidth.
struct Limits {
    read_gbps: f64,
    copy_gbps: f64,
}

/// A design to time and its options, parsed from `--designs`.
fn variant(
    spec: &str,
) -> anyhow::Result<(Design, facegate_gpu::ScanOptions, facegate_gpu::TopkOptions)> {
    let mut parts = spec.split(':');
    let design = match parts.next() {
        Some("scan") => Design::Auto,
        Some("classic") => Design::Classic,
        _ => anyhow::bail!("--designs: unknown design {spec:?} (scan, classic)"),
    };
    let mut scan = facegate_gpu::ScanOptions {
        profile: true,
        ..Default::default()
    };
    let mut topk = facegate_gpu::TopkOptions::default();
    for opt in parts {
        match opt {
            "checked" => {
                scan.runtime_checks = true;
                topk.runtime_checks = true;
            }
            // The top-k kernel as runs 1 to 3 ran it: checked, K = 256.
            "topk-run3" => {
                topk.runtime_checks = true;
                topk.keep = Some(facegate_gpu::shared::TOPK_WORKGROUP);
            }
            "direct" => scan.kernel = facegate_gpu::shared::ScanKernel::Direct,
            "rows" => scan.kernel = facegate_gpu::shared::ScanKernel::Rows,
            "coop" => scan.kernel = facegate_gpu::shared::ScanKernel::Coop,
            tp if tp.starts_with("tp") => scan.thread_probes = Some(tp[2..].parse()?),
            other => anyhow::bail!("--designs: unknown scan option {other:?} in {spec:?}"),
        }
    }
    Ok((design, scan, topk))
}

/// Seconds of untimed searches before each timed batch size.
const WARM_UP_SECS: f64 = 1.0;

/// Searches for [`WARM_UP_SECS`] (at least once), so that the device's
/// clocks have risen: an H200 idles at 345 MHz, and right after an idle
/// upload took several times longer for a 10 ms batch.
fn warm_up(engine: &dyn SearchEngine, probes: &ProbeBatch, k: usize) -> anyhow::Result<()> {
    let warm = Instant::now();
    engine.search(probes, k)?;
    while warm.elapsed().as_secs_f64() < WARM_UP_SECS {
        engine.search(probes, k)?;
    }
    Ok(())
}

/// The median of `repeats` timed searches (warm the engine up first).
fn median_ms(
    engine: &dyn SearchEngine,
    probes: &ProbeBatch,
    k: usize,
    repeats: usize,
) -> anyhow::Result<f64> {
    let mut v = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = Instant::now();
        engine.search(probes, k)?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

fn open(gallery: &std::sync::Arc<Gallery>, a: &Args, spec: &str) -> anyhow::Result<GpuEngine> {
    let t = Instant::now();
    let (design, scan, topk) = variant(spec)?;
    let opts = GpuOptions {
        device: DeviceOptions {
            allow_software: a.allow_software_gpu,
        },
        design,
        scan,
        topk,
        ..Default::default()
    };
    let gpu = GpuEngine::new(ScanTarget::whole(gallery.clone()), opts)?;
    eprintln!(
        "{}: {} bytes in {} bindings, uploaded in {:.1} s",
        gpu.design_name(),
        gpu.gpu_memory_bytes(),
        gpu.chunks(),
        t.elapsed().as_secs_f64()
    );
    Ok(gpu)
}

fn adapter_report(gpu: &GpuEngine) {
    let d = gpu.device();
    let l = &d.limits;
    println!("adapter: {}", d.describe());
    println!(
        "limits: max_buffer_size {}, max_storage_buffer_binding_size {}, \
         max_compute_workgroup_storage_size {}, max_compute_invocations_per_workgroup {}, \
         max_compute_workgroups_per_dimension {}",
        l.max_buffer_size,
        l.max_storage_buffer_binding_size,
        l.max_compute_workgroup_storage_size,
        l.max_compute_invocations_per_workgroup,
        l.max_compute_workgroups_per_dimension,
    );
    println!("features: {:?}", d.features);
    println!(
        "subgroup sizes: {}..={}",
        d.info.subgroup_min_size, d.info.subgroup_max_size
    );
    println!("cooperative matrices: {:?}", d.cooperative_matrices);
}

/// The probes of a batch: seeded noise, unit length.
fn probes(b: usize, dim: usize) -> anyhow::Result<ProbeBatch> {
    let mut raw = vec![0f32; b * dim];
    let mut src = NoiseRows::with_seed(b, dim, 7);
    for r in raw.chunks_exact_mut(dim) {
        src.next_row(r)?;
    }
    Ok(ProbeBatch::new(dim, &raw)?)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    // With --dump-dir the gallery is built there and kept, for the peer to
    // map its sections rather than read a copy of its rows.
    let dir = tempfile::tempdir()?;
    let home = match &a.dump_dir {
        Some(out) => {
            std::fs::create_dir_all(out)?;
            out.clone()
        }
        None => dir.path().to_path_buf(),
    };
    let t = Instant::now();
    let gallery = noise_gallery(&home.join("bench.fgal"), a.rows, a.dim, ElementType::Int8)?;
    eprintln!(
        "{} x {} int8 rows generated in {:.1} s",
        a.rows,
        a.dim,
        t.elapsed().as_secs_f64()
    );
    let cpu = CpuEngine::new(ScanTarget::whole(gallery.clone()));
    let t = Instant::now();
    let mut reference = cpu.search(&probes(a.verify_probes.max(1), a.dim)?, a.top_k)?;
    eprintln!(
        "CPU engine's answers for {} probes in {:.1} s",
        reference.len(),
        t.elapsed().as_secs_f64()
    );
    let mut cases = Vec::new();
    let mut ctx: Option<Context> = None;
    let mut dumped = false;
    for spec in &a.designs {
        // A design the device cannot run (the coop kernel without
        // cooperative matrices) is reported, and the others still run.
        let gpu = match open(&gallery, &a, spec) {
            Ok(gpu) => gpu,
            Err(e) => {
                eprintln!("{spec}: not run: {e:#}");
                continue;
            }
        };
        let ctx = match &mut ctx {
            Some(c) => &*c,
            None => {
                adapter_report(&gpu);
                &*ctx.insert(Context {
                    args: &a,
                    cpu: &cpu,
                    reference: std::mem::take(&mut reference),
                    limits: measure_limits(&gpu, &a)?,
                })
            }
        };
        // The CPU engine is timed beside the first design that runs.
        let time_cpu = cases.is_empty() && a.rows <= a.cpu_peer_max_rows;
        cases.extend(time_batches(&gpu, ctx, spec, time_cpu));
        if let (Some(out), Design::Auto, false) = (&a.dump_dir, variant(spec)?.0, dumped) {
            let t = Instant::now();
            peer::dump(out, &gallery, &gpu, &a)?;
            dumped = true;
            eprintln!("dumped for the peer in {:.1} s", t.elapsed().as_secs_f64());
        }
        eprintln!(
            "{spec}: {} probes answered by the CPU after a list overflowed",
            gpu.list_overflows()
        );
    }
    if let Some(ctx) = &ctx {
        report::print_table(&a, &cases, &ctx.limits);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&cases)?);
    }
    Ok(())
}

/// What every timed batch is set against: the arguments, the CPU engine,
/// its answers for the first probes, the measured limits.
struct Context<'a> {
    args: &'a Args,
    cpu: &'a CpuEngine,
    reference: Vec<Vec<Candidate>>,
    limits: Limits,
}

/// Times `gpu` (and the CPU engine, when `time_cpu`) at every batch size
/// in turn; a batch that fails is reported and ends the design's series
/// (the other designs still run).
fn time_batches(gpu: &GpuEngine, ctx: &Context, spec: &str, time_cpu: bool) -> Vec<Case> {
    let mut cases = Vec::new();
    for &b in &ctx.args.batches {
        match time_batch(gpu, ctx, spec, b, time_cpu) {
            Ok(case) => {
                eprintln!("{spec} batch {b}: {:.2} ms", case.gpu_ms);
                cases.push(case);
            }
            Err(e) => {
                eprintln!("{spec} batch {b}: failed: {e:#}");
                break;
            }
        }
    }
    cases
}

/// Times `gpu` (and the CPU engine, when `time_cpu`) on a batch of `b` probes after a
/// warm-up, splits the GPU's time by stage and checks its first answers
/// against the CPU engine's `reference`.
fn time_batch(
    gpu: &GpuEngine,
    ctx: &Context,
    spec: &str,
    b: usize,
    time_cpu: bool,
) -> anyhow::Result<Case> {
    let Context {
        args: a,
        cpu,
        reference,
        limits: lim,
    } = ctx;
    let p = probes(b, a.dim)?;
    warm_up(gpu, &p, a.top_k)?;
    gpu.stage_times(); // from here on: the timed searches' stages
    let gpu_ms = median_ms(gpu, &p, a.top_k, a.repeats)?;
    let stage_ms = gpu.stage_times().filter(|t| t.batches > 0).map(|t| {
        t.seconds
            .iter()
            .map(|s| s * 1e3 / t.batches as f64)
            .collect()
    });
    let cpu_ms = time_cpu
        .then(|| {
            warm_up(*cpu, &p, a.top_k)?;
            median_ms(*cpu, &p, a.top_k, a.repeats.min(3))
        })
        .transpose()?;
    let verified = verify(gpu, &p, a.top_k, reference, a.verify_probes, spec)?;
    let secs = gpu_ms / 1e3;
    let gallery_gb_per_s = (a.rows * (a.dim.div_ceil(16) * 16 + 4)) as f64 / secs / 1e9;
    let m = cpu.refiner().candidate_rows(a.top_k) as u32;
    Ok(Case {
        design: gpu.design_name().into(),
        variant: spec.into(),
        batch: b,
        gpu_ms,
        probes_per_s: b as f64 / secs,
        gallery_gb_per_s,
        of_read_bandwidth: gallery_gb_per_s / lim.read_gbps,
        of_int8_rate: 2.0 * (a.rows * a.dim * b) as f64 / secs / (a.peak_tops * 1e12),
        plan_bytes: gpu
            .scan_plan(b, m)
            .map(|p| p.traffic().iter().map(|(_, v)| v).sum()),
        stage_ms,
        cpu_ms,
        verified,
    })
}

/// Searches `batch` once more and checks its first `n` answers against the
/// CPU engine's `reference` answers for the same probes: the same subjects
/// in the same order, scores within 1e-4 (the int8 scan scores are
/// bit-identical; the exact re-score may differ in the last bits). Prints
/// each disagreement; returns (checked, agreed).
fn verify(
    gpu: &GpuEngine,
    batch: &ProbeBatch,
    k: usize,
    reference: &[Vec<Candidate>],
    n: usize,
    spec: &str,
) -> anyhow::Result<(usize, usize)> {
    let got = gpu.search(batch, k)?;
    let checked = n.min(got.len()).min(reference.len());
    let mut agreed = 0;
    for (i, (g, w)) in got.iter().zip(reference).take(checked).enumerate() {
        let same = g.len() == w.len()
            && g.iter()
                .zip(w)
                .all(|(x, y)| x.subject == y.subject && (x.score - y.score).abs() <= 1e-4);
        if same {
            agreed += 1;
        } else {
            eprintln!(
                "{spec} batch {}: probe {i} differs from the CPU engine: {g:?} against {w:?}",
                batch.len()
            );
        }
    }
    Ok((checked, agreed))
}

/// The read bandwidth (after a warm-up, so the clocks have risen) and the
/// copy bandwidth, measured on the engine's device.
fn measure_limits(gpu: &GpuEngine, a: &Args) -> anyhow::Result<Limits> {
    let bytes = a.copy_mib << 20;
    let read_gbps = bandwidth::read_bandwidth(gpu.device(), bytes, 20, a.warm_up_secs)? / 1e9;
    let copy_gbps = bandwidth::copy_bandwidth(gpu.device(), bytes, 20)? / 1e9;
    println!("read bandwidth (shader reads, same run): {read_gbps:.0} GB/s");
    println!("copy bandwidth (buffer copy, read + write, same run): {copy_gbps:.0} GB/s\n");
    Ok(Limits {
        read_gbps,
        copy_gbps,
    })
}
