//! `facegate-index synth`: a synthetic population in interchange formats.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use facegate_core::format::RowSource;
use facegate_core::npy::NpyWriter;
use facegate_core::synth::{GROUPS, ScoreReport, Synth, SynthConfig};

use crate::progress;

/// Arguments of `synth`.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Enrolled subjects (each has 1 to 5 templates).
    #[arg(long, default_value_t = 10_000)]
    pub subjects: usize,
    /// Probes to generate.
    #[arg(long, default_value_t = 1_000)]
    pub probes: usize,
    /// Template dimension.
    #[arg(long, default_value_t = 512)]
    pub dim: usize,
    /// Fraction of probes of enrolled subjects; the rest are of people never enrolled.
    #[arg(long, default_value_t = 0.8)]
    pub mated_fraction: f64,
    /// Seed; the same seed and sizes give the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Threshold at which the printed error rates are given.
    #[arg(long, default_value_t = 0.35)]
    pub threshold: f32,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

/// The files `synth` writes, relative to its output directory.
pub const FILES: [&str; 6] = [
    "gallery.npy",
    "gallery_ids.txt",
    "probes.npy",
    "probes_truth.csv",
    "subjects.csv",
    "score_distributions.json",
];

pub fn run(a: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    for f in FILES {
        super::refuse_existing(&a.out_dir.join(f), a.force)?;
    }
    let synth = Synth::new(SynthConfig {
        subjects: a.subjects,
        probes: a.probes,
        dim: a.dim,
        mated_fraction: a.mated_fraction,
        seed: a.seed,
    })?;
    let rows = write_gallery(&synth, &a.out_dir)?;
    write_probes(&synth, &a.out_dir)?;
    let report = synth.score_report(2_000, a.threshold);
    let json = a.out_dir.join("score_distributions.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| json.display().to_string())?;
    println!(
        "wrote {} subjects ({rows} templates) and {} probes to {}",
        a.subjects,
        a.probes,
        a.out_dir.display()
    );
    print_report(&report);
    Ok(())
}

fn write_gallery(synth: &Synth, dir: &Path) -> anyhow::Result<usize> {
    let dim = synth.config().dim;
    let mut rows = synth.gallery_rows();
    let n = rows.rows();
    let mut npy = NpyWriter::create(dir.join("gallery.npy"), n, dim)?;
    let ids_path = dir.join("gallery_ids.txt");
    let mut ids =
        std::io::BufWriter::new(std::fs::File::create(&ids_path).context("gallery_ids.txt")?);
    let mut subjects = csv::Writer::from_path(dir.join("subjects.csv"))?;
    subjects.write_record(["subject_id", "group", "templates"])?;
    let pb = progress::bar(n as u64, "gallery", false);
    let mut last: Option<String> = None;
    let mut count = 0usize;
    let mut done = 0u64;
    while let Some((id, row)) = rows.next_with_id() {
        npy.push_row(row)?;
        writeln!(ids, "{id}")?;
        if last.as_deref() != Some(id) {
            if let Some(prev) = last.take() {
                subject_line(&mut subjects, synth, &prev, count)?;
            }
            last = Some(id.to_string());
            count = 0;
        }
        count += 1;
        done += 1;
        if done.is_multiple_of(4096) {
            pb.set_position(done);
        }
    }
    if let Some(prev) = last {
        subject_line(&mut subjects, synth, &prev, count)?;
    }
    pb.finish_and_clear();
    npy.finish()?;
    ids.flush()?;
    subjects.flush()?;
    Ok(n)
}

fn subject_line(
    w: &mut csv::Writer<std::fs::File>,
    synth: &Synth,
    id: &str,
    count: usize,
) -> anyhow::Result<()> {
    let index: usize = id[1..].parse().context("synthetic id")?;
    let group = GROUPS[synth.subject(index).group].name;
    w.write_record([id, group, &count.to_string()])?;
    Ok(())
}

fn write_probes(synth: &Synth, dir: &Path) -> anyhow::Result<()> {
    let cfg = synth.config();
    let mut npy = NpyWriter::create(dir.join("probes.npy"), cfg.probes, cfg.dim)?;
    let mut truth = csv::Writer::from_path(dir.join("probes_truth.csv"))?;
    truth.write_record(["probe", "mated", "subject_id", "group", "capture_noise"])?;
    for j in 0..cfg.probes {
        let p = synth.probe(j);
        npy.push_row(&p.vector)?;
        truth.write_record([
            j.to_string(),
            p.mate.is_some().to_string(),
            p.mate.map(Synth::subject_id).unwrap_or_default(),
            GROUPS[p.group].name.to_string(),
            format!("{:.3}", p.noise),
        ])?;
    }
    npy.finish()?;
    truth.flush()?;
    Ok(())
}

/// Prints genuine and impostor score distributions per group.
pub fn print_report(r: &ScoreReport) {
    println!("\nscore distributions (cosine; genuine = probe vs its own subject's best template,");
    println!(
        "impostor = probe vs another subject of the same group), error rates at {:.2}:",
        r.threshold
    );
    println!(
        "{:<6} {:>9} {:>9} {:>9}   {:>9} {:>9} {:>9} {:>9}   {:>8} {:>8}",
        "group",
        "gen mean",
        "gen p1",
        "gen p50",
        "imp mean",
        "imp p50",
        "imp p99",
        "imp p99.9",
        "FNMR",
        "FMR"
    );
    for g in &r.groups {
        println!(
            "{:<6} {:>9.3} {:>9.3} {:>9.3}   {:>9.3} {:>9.3} {:>9.3} {:>9.3}   {:>8.4} {:>8.4}",
            g.group,
            g.genuine.mean,
            g.genuine.p1,
            g.genuine.p50,
            g.impostor_same_group.mean,
            g.impostor_same_group.p50,
            g.impostor_same_group.p99,
            g.impostor_same_group.p999,
            g.fnmr,
            g.fmr
        );
    }
}
