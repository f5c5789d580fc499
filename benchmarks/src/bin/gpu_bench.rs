//! GPU benchmark: the WGSL engine over an int8 gallery for a range of batch
//! sizes, against the device's memory-bandwidth and int8 compute rooflines,
//! with the CPU engine measured in the same run as the peer.
//!
//! wgpu cannot query a device's peak bandwidth or int8 rate, so they are
//! arguments (defaults: an H100 SXM, 3350 GB/s and 1979 dense int8 TOPS);
//! the adapter's name is printed beside them. On a software adapter
//! (lavapipe) the figures only show that the path works.

use std::time::Instant;

use clap::Parser;
use facegate_benchmarks::noise_gallery;
use facegate_core::{CpuEngine, ElementType, ProbeBatch, ScanTarget, SearchEngine};
use facegate_gpu::{DeviceOptions, GpuEngine, GpuOptions};

#[derive(Parser)]
#[command(about = "GPU engine benchmark against device rooflines and the CPU engine")]
struct Args {
    /// Gallery rows.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Template dimension.
    #[arg(long, default_value_t = 512)]
    dim: usize,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,256,1024")]
    batches: Vec<usize>,
    /// Timed repetitions per batch size (median reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Candidates per probe.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Device memory bandwidth, GB/s, for the one-probe roofline.
    #[arg(long, default_value_t = 3350.0)]
    peak_gbps: f64,
    /// Device int8 rate, tera-operations/s, for the batch roofline.
    #[arg(long, default_value_t = 1979.0)]
    peak_tops: f64,
    /// Also time the CPU engine on the same probes (skipped above this many rows).
    #[arg(long, default_value_t = 2_000_000)]
    cpu_peer_max_rows: usize,
    /// Accept a software adapter (for a smoke run without a GPU).
    #[arg(long)]
    allow_software_gpu: bool,
    /// Print JSON after the table.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Case {
    batch: usize,
    gpu_ms: f64,
    probes_per_s: f64,
    fraction_of_bandwidth: f64,
    fraction_of_int8_peak: f64,
    cpu_ms: Option<f64>,
    gpu_over_cpu: Option<f64>,
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

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let dir = tempfile::tempdir()?;
    let gallery = noise_gallery(
        &dir.path().join("bench.fgal"),
        a.rows,
        a.dim,
        ElementType::Int8,
    )?;
    let t = Instant::now();
    let gpu = GpuEngine::new(
        ScanTarget::whole(gallery.clone()),
        GpuOptions {
            device: DeviceOptions {
                allow_software: a.allow_software_gpu,
            },
            ..Default::default()
        },
    )?;
    eprintln!(
        "uploaded {} bytes in {} chunks in {:.2} s",
        gpu.gpu_memory_bytes(),
        gpu.chunks(),
        t.elapsed().as_secs_f64()
    );
    let cpu = CpuEngine::new(ScanTarget::whole(gallery.clone()));
    let scan_bytes = gpu.gpu_memory_bytes() as f64;
    let mut cases = Vec::new();
    for &b in &a.batches {
        let raw: Vec<f32> = (0..b * a.dim)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let probes = ProbeBatch::new(a.dim, &raw)?;
        let gpu_ms = median_ms(&gpu, &probes, a.top_k, a.repeats)?;
        let cpu_ms = (a.rows <= a.cpu_peer_max_rows)
            .then(|| median_ms(&cpu, &probes, a.top_k, a.repeats.min(3)))
            .transpose()?;
        let secs = gpu_ms / 1e3;
        cases.push(Case {
            batch: b,
            gpu_ms,
            probes_per_s: b as f64 / secs,
            fraction_of_bandwidth: scan_bytes / secs / (a.peak_gbps * 1e9),
            fraction_of_int8_peak: 2.0 * (a.rows * a.dim * b) as f64 / secs / (a.peak_tops * 1e12),
            cpu_ms,
            gpu_over_cpu: cpu_ms.map(|c| c / gpu_ms),
        });
        eprintln!("batch {b}: gpu {gpu_ms:.2} ms");
    }
    println!(
        "\nGPU engine on {}: {} x {} int8, top-{}; rooflines given: {} GB/s, {} int8 TOPS\n",
        gpu.device().describe(),
        a.rows,
        a.dim,
        a.top_k,
        a.peak_gbps,
        a.peak_tops
    );
    println!(
        "| batch | GPU ms / batch | probes/s | of bandwidth | of int8 peak | CPU ms (same run) | GPU speed-up |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for c in &cases {
        println!(
            "| {} | {:.2} | {:.0} | {:.1} % | {:.2} % | {} | {} |",
            c.batch,
            c.gpu_ms,
            c.probes_per_s,
            c.fraction_of_bandwidth * 100.0,
            c.fraction_of_int8_peak * 100.0,
            c.cpu_ms.map_or("-".into(), |v| format!("{v:.1}")),
            c.gpu_over_cpu.map_or("-".into(), |v| format!("{v:.2}x")),
        );
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&cases)?);
    }
    Ok(())
}
