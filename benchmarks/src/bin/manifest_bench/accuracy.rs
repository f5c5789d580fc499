//! `accuracy`: the false-positive identification rate (FPIR) at a fixed
//! threshold when a capture of someone who is not enrolled is searched
//! against a 420-person manifest (NISTIR 8381's boarding gallery), a
//! 42,000-person one (its airport-day gallery) and the whole national
//! gallery: the reason manifests exist, measured on the synthetic
//! population and drawn as a figure.
//!
//! Every probe is of a person never enrolled (non-mated), so any candidate
//! at or above the threshold is a false positive. For each probe the
//! national search runs as the server runs it (int8 scan, exact re-score;
//! `LiveGallery::search`), and every subject's best exact score is taken as
//! a manifest search takes it (`LiveGallery::verify`, the per-subject step
//! of `LiveGallery::search_subjects`). The subjects are then shuffled (per
//! probe) and cut into disjoint manifests of each size; each (probe,
//! manifest) pair is one trial, a false positive when the manifest's best
//! score reaches the threshold. A 420-person manifest thus gets hundreds of
//! trials per probe, enough to see rates far below the national one.
//!
//! The table also gives what independence predicts from the per-comparison
//! false match rate (FMR, the share of subject scores at or above the
//! threshold): FPIR(N) = 1 - (1 - FMR)^N, about N x FMR while that is small.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use facegate_core::format::{BuildOptions, build_gallery};
use facegate_core::live::LiveGallery;
use facegate_core::synth::{Synth, SynthConfig};
use facegate_core::{CpuEngine, ElementType, Gallery, ProbeBatch};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::Serialize;

mod figure;

/// Arguments of `accuracy`.
#[derive(clap::Args)]
pub struct Args {
    /// Enrolled subjects of the synthetic population (the whole gallery).
    #[arg(long, default_value_t = 200_000)]
    subjects: usize,
    /// Non-mated probes (captures of people never enrolled).
    #[arg(long, default_value_t = 1_000)]
    probes: usize,
    /// Manifest sizes, besides the whole gallery.
    #[arg(long, value_delimiter = ',', default_value = "420,4200,42000")]
    sizes: Vec<usize>,
    /// Thresholds at which FPIR is counted.
    #[arg(long, value_delimiter = ',', default_value = "0.30,0.33,0.35")]
    thresholds: Vec<f32>,
    /// Seed of the population and of the manifests' draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the results as JSON.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Draw FPIR against the number of people searched.
    #[arg(long, value_name = "OUT.svg")]
    svg: Option<PathBuf>,
    /// Directory for the temporary gallery (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// FPIR for one searched size at one threshold.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    /// People searched (manifest size, or the whole gallery).
    pub searched: usize,
    /// Whether this is the national search of the whole gallery.
    pub national: bool,
    /// The threshold.
    pub threshold: f32,
    /// (probe, gallery) pairs searched.
    pub trials: u64,
    /// Pairs whose best candidate reached the threshold.
    pub false_positives: u64,
    /// `false_positives / trials`.
    pub fpir: f64,
    /// 95 % Wilson interval of the FPIR.
    pub ci95: (f64, f64),
    /// What independent comparisons predict: 1 - (1 - FMR)^searched.
    pub predicted: f64,
}

/// Counts of one probe (or of all, once summed).
#[derive(Default)]
struct Tally {
    /// Per (size, threshold): trials and false positives; the last size is
    /// the national search.
    counts: Vec<(u64, u64)>,
    /// Per threshold: subject scores at or above it (for the FMR).
    matches: Vec<u64>,
    /// Probes whose national top-1 differs from the best per-subject score.
    disagreements: u64,
}

impl Tally {
    fn add(mut self, other: Tally) -> Tally {
        if self.counts.is_empty() {
            return other;
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            a.0 += b.0;
            a.1 += b.1;
        }
        for (a, b) in self.matches.iter_mut().zip(other.matches) {
            *a += b;
        }
        self.disagreements += other.disagreements;
        self
    }
}

/// Builds the population's gallery, searches every probe, prints the table.
pub fn run(a: Args) -> anyhow::Result<()> {
    check(&a)?;
    let dir = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let synth = Synth::new(SynthConfig {
        subjects: a.subjects,
        probes: a.probes,
        dim: 512,
        mated_fraction: 0.0,
        seed: a.seed,
    })?;
    eprintln!("synthesising {} subjects", a.subjects);
    let gallery = build(&synth, &dir.path().join("population.fgal"))?;
    let live = LiveGallery::new(gallery);
    let engine = CpuEngine::new(live.scan_target().clone());
    let ids: Vec<String> = (0..a.subjects).map(Synth::subject_id).collect();
    eprintln!(
        "searching {} non-mated probes (national, then every subject)",
        a.probes
    );
    let tally = (0..a.probes)
        .into_par_iter()
        .map(|j| tally_probe(&a, &synth, &live, &engine, &ids, j))
        .try_reduce(Tally::default, |x, y| Ok(x.add(y)))?;
    let rates = rates(&a, &tally);
    print_table(&a, &rates, tally.disagreements);
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&rates)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &a.svg {
        figure::write_svg(path, &rates, a.subjects, a.probes)?;
    }
    Ok(())
}

fn check(a: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(a.probes >= 1, "--probes must be at least 1");
    anyhow::ensure!(!a.thresholds.is_empty(), "--thresholds: give at least one");
    for &n in &a.sizes {
        anyhow::ensure!(
            (1..a.subjects).contains(&n),
            "--sizes {n}: each must be 1..{} (below the whole gallery)",
            a.subjects
        );
    }
    Ok(())
}

fn build(synth: &Synth, path: &Path) -> anyhow::Result<Arc<Gallery>> {
    let ids = synth.gallery_ids();
    build_gallery(
        path,
        &mut synth.gallery_rows(),
        &ids,
        "synthetic ids",
        &BuildOptions {
            scan_type: ElementType::Int8,
            model_tag: "synthetic-v1".into(),
            overwrite: true,
        },
        &mut |_| {},
    )?;
    Ok(Arc::new(Gallery::open(path)?))
}

/// One probe's trials at every size and threshold.
fn tally_probe(
    a: &Args,
    synth: &Synth,
    live: &LiveGallery,
    engine: &CpuEngine,
    ids: &[String],
    j: usize,
) -> anyhow::Result<Tally> {
    let probe = ProbeBatch::new(512, &synth.probe(j).vector)?;
    let national = live.search(engine, &probe, 1)?;
    let top1 = national[0].first().map_or(f32::NEG_INFINITY, |c| c.score);
    let mut scores = Vec::with_capacity(ids.len());
    for id in ids {
        let best = live.verify(&probe, 0, id)?;
        scores.push(best.map_or(f32::NEG_INFINITY, |(c, _)| c.score));
    }
    let best_of_all = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    scores.shuffle(&mut StdRng::seed_from_u64(a.seed ^ ((j as u64) << 20)));
    let mut t = Tally {
        disagreements: u64::from((best_of_all - top1).abs() > 1e-5),
        ..Tally::default()
    };
    for &size in &a.sizes {
        let bests: Vec<f32> = scores
            .chunks_exact(size)
            .map(|c| c.iter().copied().fold(f32::NEG_INFINITY, f32::max))
            .collect();
        for &th in &a.thresholds {
            let hits = bests.iter().filter(|&&s| s >= th).count() as u64;
            t.counts.push((bests.len() as u64, hits));
        }
    }
    for &th in &a.thresholds {
        t.counts.push((1, u64::from(top1 >= th)));
        t.matches
            .push(scores.iter().filter(|&&s| s >= th).count() as u64);
    }
    Ok(t)
}

fn rates(a: &Args, tally: &Tally) -> Vec<Rate> {
    let sizes = a.sizes.iter().map(|&n| (n, false));
    let sizes = sizes.chain(std::iter::once((a.subjects, true)));
    let comparisons = (a.probes * a.subjects) as f64;
    let mut out = Vec::new();
    for (i, (searched, national)) in sizes.enumerate() {
        for (k, &threshold) in a.thresholds.iter().enumerate() {
            let (trials, false_positives) = tally.counts[i * a.thresholds.len() + k];
            let fmr = tally.matches[k] as f64 / comparisons;
            out.push(Rate {
                searched,
                national,
                threshold,
                trials,
                false_positives,
                fpir: false_positives as f64 / trials as f64,
                ci95: wilson(false_positives, trials),
                predicted: 1.0 - (1.0 - fmr).powf(searched as f64),
            });
        }
    }
    out
}

/// The 95 % Wilson score interval of `k` successes in `n` trials (sound at
/// k = 0, where the normal approximation gives a zero-width interval).
fn wilson(k: u64, n: u64) -> (f64, f64) {
    let (k, n, z) = (k as f64, n as f64, 1.96f64);
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn print_table(a: &Args, rates: &[Rate], disagreements: u64) {
    println!(
        "\nsynthetic population: {} subjects, {} non-mated probes, seed {}\n",
        a.subjects, a.probes, a.seed
    );
    println!(
        "| people searched | threshold | trials | false positives | FPIR | 95 % CI | predicted 1-(1-FMR)^N |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|");
    for r in rates {
        let what = if r.national {
            format!("{} (whole gallery, national search)", r.searched)
        } else {
            format!("{} (manifest)", r.searched)
        };
        println!(
            "| {what} | {:.2} | {} | {} | {:.2e} | {:.1e} .. {:.1e} | {:.2e} |",
            r.threshold, r.trials, r.false_positives, r.fpir, r.ci95.0, r.ci95.1, r.predicted
        );
    }
    println!(
        "\nnational top-1 differs from the best per-subject exact score for {disagreements} of {} probes",
        a.probes
    );
}

#[cfg(test)]
mod tests {
    use super::wilson;

    #[test]
    fn wilson_interval_brackets_the_rate_and_stays_in_range() {
        let (lo, hi) = wilson(0, 100);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.03 && hi < 0.04, "{hi}"); // rule of three: ~3/n
        let (lo, hi) = wilson(50, 100);
        assert!(lo < 0.5 && hi > 0.5 && lo > 0.39 && hi < 0.61);
        let (lo, hi) = wilson(100, 100);
        assert!(lo > 0.96 && (hi - 1.0).abs() < 1e-12, "{lo} {hi}");
    }
}
