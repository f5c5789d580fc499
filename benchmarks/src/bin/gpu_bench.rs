//! GPU benchmark: both designs of the WGSL engine over one int8 gallery for
//! a range of batch sizes, beside the device's copy bandwidth measured in
//! the same run (the physical limit of a scan that reads every row once),
//! the int8 rate given as an argument (wgpu cannot query it), and the CPU
//! engine on galleries small enough to wait for.
//!
//! It first prints the adapter: name, driver, the limits the engine sizes
//! itself from, and the features it offers (subgroups, f16, cooperative
//! matrices), none of which the engine uses yet. With `--dump-dir` it
//! writes the gallery's int8 rows, scales and row subjects, the largest batch's probes
//! and the second design's answers as .npy files, for the PyTorch peer
//! (benchmarks/gpu-run/torch_peer.py) to search the same data and compare.
//! On a software adapter (lavapipe) the figures only show that it runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use facegate_benchmarks::{NoiseRows, noise_gallery};
use facegate_core::format::{RowSource, ScanRows};
use facegate_core::{CpuEngine, ElementType, Gallery, ProbeBatch, ScanTarget, SearchEngine};
use facegate_gpu::{Design, DeviceOptions, GpuEngine, GpuOptions};
use npyz::WriterBuilder;

#[derive(Parser)]
#[command(about = "GPU engine benchmark: both designs against the copy bandwidth and the CPU")]
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
    /// Designs to time: scan (the second), classic (the first).
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
    /// MiB per copy when measuring the copy bandwidth.
    #[arg(long, default_value_t = 1024)]
    copy_mib: u64,
    /// Also time the CPU engine on the same probes (skipped above this many rows).
    #[arg(long, default_value_t = 2_000_000)]
    cpu_peer_max_rows: usize,
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

#[derive(serde::Serialize)]
struct Case {
    design: String,
    batch: usize,
    gpu_ms: f64,
    probes_per_s: f64,
    gallery_gb_per_s: f64,
    of_copy_bandwidth: f64,
    of_int8_rate: f64,
    plan_bytes: Option<u64>,
    cpu_ms: Option<f64>,
}

fn median_ms(
    engine: &dyn SearchEngine,
    probes: &ProbeBatch,
    k: usize,
    repeats: usize,
) -> anyhow::Result<f64> {
    engine.search(probes, k)?; // warm-up
    let mut v = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = Instant::now();
        engine.search(probes, k)?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

fn open(gallery: &std::sync::Arc<Gallery>, a: &Args, design: Design) -> anyhow::Result<GpuEngine> {
    let t = Instant::now();
    let opts = GpuOptions {
        device: DeviceOptions {
            allow_software: a.allow_software_gpu,
        },
        design,
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
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let gallery = noise_gallery(
        &dir.path().join("bench.fgal"),
        a.rows,
        a.dim,
        ElementType::Int8,
    )?;
    eprintln!(
        "{} x {} int8 rows generated in {:.1} s",
        a.rows,
        a.dim,
        t.elapsed().as_secs_f64()
    );
    let cpu = CpuEngine::new(ScanTarget::whole(gallery.clone()));
    let gallery_bytes = (a.rows * (a.dim.div_ceil(16) * 16 + 4)) as f64;
    let mut cases = Vec::new();
    let mut copy_gbps = 0.0;
    for (i, name) in a.designs.iter().enumerate() {
        let design = match name.as_str() {
            "scan" => Design::Auto,
            "classic" => Design::Classic,
            other => anyhow::bail!("--designs: unknown design {other:?} (scan, classic)"),
        };
        let gpu = open(&gallery, &a, design)?;
        if i == 0 {
            adapter_report(&gpu);
            copy_gbps = gpu.device().copy_bandwidth(a.copy_mib << 20, 10)? / 1e9;
            println!("copy bandwidth (read + write, same run): {copy_gbps:.0} GB/s\n");
        }
        for &b in &a.batches {
            let p = probes(b, a.dim)?;
            let gpu_ms = median_ms(&gpu, &p, a.top_k, a.repeats)?;
            let cpu_ms = (i == 0 && a.rows <= a.cpu_peer_max_rows)
                .then(|| median_ms(&cpu, &p, a.top_k, a.repeats.min(3)))
                .transpose()?;
            let secs = gpu_ms / 1e3;
            let m = cpu.refiner().candidate_rows(a.top_k) as u32;
            let plan = gpu.scan_plan(b, m);
            cases.push(Case {
                design: gpu.design_name().into(),
                batch: b,
                gpu_ms,
                probes_per_s: b as f64 / secs,
                gallery_gb_per_s: gallery_bytes / secs / 1e9,
                of_copy_bandwidth: gallery_bytes / secs / 1e9 / copy_gbps,
                of_int8_rate: 2.0 * (a.rows * a.dim * b) as f64 / secs / (a.peak_tops * 1e12),
                plan_bytes: plan.map(|p| p.traffic().iter().map(|(_, v)| v).sum()),
                cpu_ms,
            });
            eprintln!("{name} batch {b}: {gpu_ms:.2} ms");
        }
        if let (Some(out), "scan") = (&a.dump_dir, name.as_str()) {
            let t = Instant::now();
            dump(out, &gallery, &gpu, &a)?;
            eprintln!("dumped for the peer in {:.1} s", t.elapsed().as_secs_f64());
        }
        eprintln!(
            "{name}: {} probes answered by the CPU after a list overflowed",
            gpu.list_overflows()
        );
    }
    print_table(&a, &cases, copy_gbps);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&cases)?);
    }
    Ok(())
}

fn print_table(a: &Args, cases: &[Case], copy_gbps: f64) {
    println!(
        "{} x {} int8, top-{}; copy bandwidth {copy_gbps:.0} GB/s (measured), int8 rate {} TOPS (given)\n",
        a.rows, a.dim, a.top_k, a.peak_tops
    );
    println!(
        "| design | batch | ms / batch | probes/s | gallery GB/s | of copy bandwidth | of int8 rate | bytes moved (plan) | CPU ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in cases {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.0} | {:.1} % | {:.2} % | {} | {} |",
            c.design,
            c.batch,
            c.gpu_ms,
            c.probes_per_s,
            c.gallery_gb_per_s,
            c.of_copy_bandwidth * 100.0,
            c.of_int8_rate * 100.0,
            c.plan_bytes
                .map_or("-".into(), |v| format!("{:.2} GB", v as f64 / 1e9)),
            c.cpu_ms.map_or("-".into(), |v| format!("{v:.1}")),
        );
    }
}

/// Writes `items` as a C-order .npy of `shape`.
fn write_npy<T: npyz::AutoSerialize>(
    path: &Path,
    shape: &[u64],
    items: impl IntoIterator<Item = T>,
) -> anyhow::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(file)
        .begin_nd()?;
    w.extend(items)?;
    w.finish()?;
    Ok(())
}

/// Writes rows.npy (int8, rows x dim), scales.npy (f32), row_subjects.npy
/// (each row's subject number, u32), probes.npy (the
/// largest batch, f32, unit length) and answers.npy (each probe's top-k
/// subject numbers by the second design, u32; u32::MAX pads) for the
/// PyTorch peer.
fn dump(out: &Path, gallery: &Gallery, gpu: &GpuEngine, a: &Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let ScanRows::Int8 {
        data,
        scales,
        stride,
    } = gallery.scan_rows()
    else {
        anyhow::bail!("the benchmark gallery is int8");
    };
    let (rows, dim) = (a.rows, a.dim);
    let row_bytes = (0..rows).flat_map(|r| data[r * stride..r * stride + dim].iter().copied());
    write_npy(&out.join("rows.npy"), &[rows as u64, dim as u64], row_bytes)?;
    write_npy(
        &out.join("scales.npy"),
        &[rows as u64],
        scales[..rows].iter().copied(),
    )?;
    let subjects = (0..rows)
        .map(|r| gallery.row_subject(r))
        .collect::<Result<Vec<u32>, _>>()?;
    write_npy(&out.join("row_subjects.npy"), &[rows as u64], subjects)?;
    let b = a.batches.iter().copied().max().unwrap_or(1);
    let p = probes(b, dim)?;
    let unit = (0..b).flat_map(|i| p.unit(i).to_vec());
    write_npy(&out.join("probes.npy"), &[b as u64, dim as u64], unit)?;
    let answers = gpu.search(&p, a.top_k)?;
    let subjects = answers.iter().flat_map(|list| {
        let mut s: Vec<u32> = list.iter().map(|c| c.subject).collect();
        s.resize(a.top_k, u32::MAX);
        s
    });
    write_npy(
        &out.join("answers.npy"),
        &[b as u64, a.top_k as u64],
        subjects,
    )
}
