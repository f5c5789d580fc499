//! The benchmark's results: one case per design and batch size, and the
//! Markdown table docs/benchmarks.md records.

use crate::{Args, Limits};

/// One design at one batch size.
#[derive(serde::Serialize)]
pub struct Case {
    /// The design's name ("interleaved scan", "score matrix").
    pub design: String,
    /// The `--designs` entry it ran as (options included).
    pub variant: String,
    /// Probes in the batch.
    pub batch: usize,
    /// Median wall milliseconds of one batch.
    pub gpu_ms: f64,
    /// Probes answered per second.
    pub probes_per_s: f64,
    /// Gallery bytes per second (rows x (padded row + scale) / time).
    pub gallery_gb_per_s: f64,
    /// That against the read bandwidth measured in the same run.
    pub of_read_bandwidth: f64,
    /// 2·N·d·B / time against the given int8 rate.
    pub of_int8_rate: f64,
    /// Bytes the second design's plan moves per batch (None: first design).
    pub plan_bytes: Option<u64>,
    /// GPU ms per batch in each stage (pilot scan, pilot select, scan, select).
    /// The wall time less their sum is spent outside them: the host's
    /// submission and read-back, and the exact re-score on the CPU.
    pub stage_ms: Option<Vec<f64>>,
    /// The CPU engine's median ms on the same batch, where timed.
    pub cpu_ms: Option<f64>,
    /// Probes checked against the CPU engine, and how many agreed.
    pub verified: (usize, usize),
}

/// Prints the cases as the Markdown table docs/benchmarks.md records.
pub fn print_table(a: &Args, cases: &[Case], lim: &Limits) {
    println!(
        "{} x {} int8, top-{}; read bandwidth {:.0} GB/s, copy bandwidth {:.0} GB/s (measured), int8 rate {} TOPS (given)\n",
        a.rows, a.dim, a.top_k, lim.read_gbps, lim.copy_gbps, a.peak_tops
    );
    println!(
        "| variant | batch | ms / batch | probes/s | gallery GB/s | of read bandwidth | of int8 rate | bytes moved (plan) | GPU ms: pilot, pilot select, scan, select | outside the stages ms | same as CPU | CPU ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|");
    for c in cases {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.0} | {:.1} % | {:.2} % | {} | {} | {} | {}/{} | {} |",
            c.variant,
            c.batch,
            c.gpu_ms,
            c.probes_per_s,
            c.gallery_gb_per_s,
            c.of_read_bandwidth * 100.0,
            c.of_int8_rate * 100.0,
            c.plan_bytes
                .map_or("-".into(), |v| format!("{:.2} GB", v as f64 / 1e9)),
            c.stage_ms.as_ref().map_or("-".into(), |v| v
                .iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(", ")),
            c.stage_ms.as_ref().map_or("-".into(), |v| format!(
                "{:.2}",
                c.gpu_ms - v.iter().sum::<f64>()
            )),
            c.verified.1,
            c.verified.0,
            c.cpu_ms.map_or("-".into(), |v| format!("{v:.1}")),
        );
    }
}
