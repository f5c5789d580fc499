//! `encounters synth-encounters`: a data dir's encounter store filled with
//! synthetic travel histories (`facegate_core::encounter::synth`), to try
//! the reports, the server's Encounters API and the benchmark on.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use facegate_core::encounter::Day;
use facegate_core::encounter::synth::{EncounterSynth, LoadReport, SynthConfig, load};

use super::{open, store_file};
use crate::progress;

/// Arguments of `encounters synth-encounters`.
#[derive(clap::Args)]
pub struct Args {
    /// The data directory (as the server's `--data-dir`); created if missing.
    pub data_dir: PathBuf,
    /// Travellers (each crosses at least once; about 10 records each over 3 years).
    #[arg(long, default_value_t = 10_000)]
    pub travellers: usize,
    /// Years of travel.
    #[arg(long, default_value_t = 3)]
    pub years: u32,
    /// The first day of the span (YYYY-MM-DD).
    #[arg(long, default_value = "2023-01-01")]
    pub start: Day,
    /// Seed; the same seed and sizes give the same records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this many encounter records.
    #[arg(long)]
    pub max_encounters: Option<u64>,
    /// Add to an existing store (records already there are skipped).
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let file = store_file(&a.data_dir);
    if file.exists() && !a.force {
        anyhow::bail!(
            "{}: an encounter store exists; synthetic records would mix with it (pass --force to add to it)",
            file.display()
        );
    }
    let synth = EncounterSynth::new(SynthConfig {
        travellers: a.travellers,
        start: a.start,
        years: a.years,
        seed: a.seed,
        ..SynthConfig::default()
    })?;
    let store = open(&a.data_dir, true)?;
    let pb = progress::bar(a.travellers as u64, "travellers", false);
    let started = Instant::now();
    let report = load(&synth, &store, a.max_encounters, &mut |r: &LoadReport| {
        pb.set_position(r.travellers as u64)
    })
    .with_context(|| format!("writing synthetic encounters into {}", file.display()))?;
    pb.finish_and_clear();
    store.close();
    println!(
        "wrote {} travellers and {} encounters ({} already there) from {} to {} into {} in {:.1} s",
        report.travellers,
        report.encounters,
        report.duplicates,
        a.start,
        synth.end(),
        file.display(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "try: facegate-index encounters overstays {} --as-of {}",
        a.data_dir.display(),
        synth.end()
    );
    Ok(())
}
