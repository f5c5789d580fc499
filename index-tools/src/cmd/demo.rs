//! `facegate-index demo`: the whole offline path on a synthetic population,
//! ending in what an evaluator asks first: how often is the right person
//! found, and how often is a stranger matched, per demographic group.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use facegate_core::format::{BuildOptions, build_gallery};
use facegate_core::ids::read_ids;
use facegate_core::npy::NpyRows;
use facegate_core::synth::GROUPS;
use facegate_core::{Candidate, CpuEngine, ElementType, Gallery, ScanTarget, SearchEngine};

use crate::progress;

/// Arguments of `demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Working directory; the population is synthesised on first run and reused after.
    #[arg(long, default_value = ".data/demo")]
    pub dir: PathBuf,
    /// Enrolled subjects.
    #[arg(long, default_value_t = 20_000)]
    pub subjects: usize,
    /// Probes.
    #[arg(long, default_value_t = 2_000)]
    pub probes: usize,
    /// Decision threshold on the best candidate's score.
    #[arg(long, default_value_t = 0.35)]
    pub threshold: f32,
}

struct Truth {
    mate: Option<String>,
    group: String,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let data = a.dir.join("synth");
    let gallery = prepare(&a, &data)?;
    let results = search_probes(&gallery, &data)?;
    let truth = read_truth(&data)?;
    let per_group = tally(&gallery, &results, &truth, a.threshold)?;
    print_rates(&per_group, a.threshold);
    Ok(())
}

/// Per group: mated probes, mated found at rank 1 above the threshold,
/// non-mated probes, non-mated with anyone above the threshold.
type GroupCounts = HashMap<String, [usize; 4]>;

/// Synthesises the population and builds its gallery unless a previous run
/// left them in `a.dir`; opens the gallery.
fn prepare(a: &Args, data: &std::path::Path) -> anyhow::Result<Arc<Gallery>> {
    if !data.join("probes_truth.csv").exists() {
        super::synth::run(super::synth::Args {
            out_dir: data.to_path_buf(),
            subjects: a.subjects,
            probes: a.probes,
            dim: 512,
            mated_fraction: 0.8,
            seed: 1,
            threshold: a.threshold,
            force: true,
        })?;
    } else {
        println!("reusing the population in {}", data.display());
    }
    let gallery_path = a.dir.join("demo.fgal");
    if !gallery_path.exists() {
        let mut rows = NpyRows::open(data.join("gallery.npy"))?;
        let ids = read_ids(data.join("gallery_ids.txt"))?;
        build_gallery(
            &gallery_path,
            &mut rows,
            &ids,
            "gallery_ids.txt",
            &BuildOptions {
                scan_type: ElementType::Int8,
                model_tag: "synthetic-v1".into(),
                overwrite: false,
            },
            &mut |_| {},
        )?;
    }
    let gallery = Arc::new(Gallery::open(&gallery_path)?);
    println!(
        "\ngallery {}: {} rows, {} subjects, int8 + f16 re-score",
        gallery_path.display(),
        gallery.rows(),
        gallery.subjects()
    );
    Ok(gallery)
}

/// Searches every probe of the population (rank 1), with a progress bar.
fn search_probes(
    gallery: &Arc<Gallery>,
    data: &std::path::Path,
) -> anyhow::Result<Vec<Vec<Candidate>>> {
    let engine = CpuEngine::new(ScanTarget::whole(gallery.clone()));
    let (probes, dim) = NpyRows::open(data.join("probes.npy"))?.read_all()?;
    let n = probes.len() / dim;
    let pb = progress::bar(n as u64, "searching", false);
    let started = std::time::Instant::now();
    let results = super::search::search_all(
        &engine,
        &probes,
        dim,
        1,
        64,
        &data.join("probes.npy"),
        &mut |d| pb.set_position(d),
    )?;
    let elapsed = started.elapsed();
    pb.finish_and_clear();
    println!(
        "searched {n} probes in {:.2} s with {} ({:.0} probes/s, batches of 64)",
        elapsed.as_secs_f64(),
        engine.describe(),
        n as f64 / elapsed.as_secs_f64()
    );
    Ok(results)
}

/// Counts each group's rank-1 outcomes at `threshold`.
fn tally(
    gallery: &Gallery,
    results: &[Vec<Candidate>],
    truth: &[Truth],
    threshold: f32,
) -> anyhow::Result<GroupCounts> {
    let mut per_group = GroupCounts::new();
    for (cands, t) in results.iter().zip(truth) {
        let top = cands.first().context("empty result")?;
        let above = top.score >= threshold;
        let e = per_group.entry(t.group.clone()).or_default();
        match &t.mate {
            Some(m) => {
                e[0] += 1;
                if above && gallery.subject_id(top.subject)? == m {
                    e[1] += 1;
                }
            }
            None => {
                e[2] += 1;
                if above {
                    e[3] += 1;
                }
            }
        }
    }
    Ok(per_group)
}

/// Prints FNIR and FPIR per group.
fn print_rates(per_group: &GroupCounts, threshold: f32) {
    println!("\n1:N identification at threshold {threshold:.2} (rank 1):");
    println!(
        "{:<6} {:>7} {:>8} {:>11} {:>8}",
        "group", "mated", "FNIR", "non-mated", "FPIR"
    );
    let rate = |x: usize, n: usize| {
        if n == 0 {
            f64::NAN
        } else {
            x as f64 / n as f64
        }
    };
    for g in GROUPS {
        let e = per_group.get(g.name).copied().unwrap_or_default();
        println!(
            "{:<6} {:>7} {:>8.4} {:>11} {:>8.4}",
            g.name,
            e[0],
            rate(e[0] - e[1], e[0]),
            e[2],
            rate(e[3], e[2])
        );
    }
    println!("\nFNIR: mated probes whose subject was not returned at rank 1 above the threshold.");
    println!("FPIR: non-mated probes that returned anyone above the threshold.");
}

fn read_truth(dir: &std::path::Path) -> anyhow::Result<Vec<Truth>> {
    let mut r = csv::Reader::from_path(dir.join("probes_truth.csv"))?;
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec?;
        let mated = rec.get(1).context("mated column")? == "true";
        out.push(Truth {
            mate: mated.then(|| rec.get(2).unwrap_or_default().to_string()),
            group: rec.get(3).context("group column")?.to_string(),
        });
    }
    Ok(out)
}
