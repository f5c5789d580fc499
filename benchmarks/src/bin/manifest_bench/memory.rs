//! `memory`: many live manifests at once, as a national service holds them
//! (every flight, vessel and crossing of the coming day or two), staged
//! through the real registry and its SQLite store: what each one costs in
//! memory and on disk, how long staging takes with its fsync, and how long a
//! restart takes to load them all back.
//!
//! Manifest sizes are log-uniform between the bounds: most manifests are
//! flights and buses of a few hundred, a few are ships and port-days of
//! thousands, as at real ports. Travellers are drawn from a 1,000,000
//! subject id space in the synthetic population's id format (`S000123456`),
//! so the ids are the length real ones would be; the registry never looks at
//! the gallery, so none is built.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use facegate_core::clock::{Clock, SystemClock};
use facegate_core::manifest::{Direction, Manifest, ManifestHeader, ManifestKind, Manifests};
use facegate_core::synth::Synth;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Arguments of `memory`.
#[derive(clap::Args)]
pub struct Args {
    /// Manifests live at once.
    #[arg(long, default_value_t = 10_000)]
    manifests: usize,
    /// Fewest travellers on one manifest.
    #[arg(long, default_value_t = 50)]
    min_travellers: usize,
    /// Most travellers on one manifest.
    #[arg(long, default_value_t = 5_000)]
    max_travellers: usize,
    /// Seed of the sizes and travellers; the same seed stages the same manifests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory for the temporary store (default: the system temp dir).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// Subject ids travellers are drawn from.
const ID_SPACE: usize = 1_000_000;

/// Stages the manifests, then reopens the store, and prints the table.
pub fn run(a: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.manifests >= 1 && a.min_travellers >= 1 && a.min_travellers <= a.max_travellers,
        "need at least one manifest and 1 <= min-travellers <= max-travellers"
    );
    let dir = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let rss_before = rss_bytes()?;
    let manifests = Manifests::open(dir.path(), Arc::clone(&clock))?;
    let mut rng = StdRng::seed_from_u64(a.seed);
    let mut travellers = 0usize;
    let mut stage_times = Vec::with_capacity(a.manifests);
    let started = Instant::now();
    for i in 0..a.manifests {
        let m = manifest(i, &a, clock.as_ref(), &mut rng);
        travellers += m.subject_ids.len();
        let t = Instant::now();
        manifests
            .stage(m)
            .with_context(|| format!("staging manifest {i}"))?;
        stage_times.push(t.elapsed());
    }
    let staging = started.elapsed();
    let held = rss_bytes()?.saturating_sub(rss_before);
    anyhow::ensure!(manifests.len() == a.manifests, "not every manifest is held");
    drop(manifests);
    let disk = dir_bytes(dir.path())?;
    let t = Instant::now();
    let reopened = Manifests::open(dir.path(), clock)?;
    let reload = t.elapsed();
    anyhow::ensure!(reopened.len() == a.manifests, "a restart lost manifests");
    print_table(
        &a,
        travellers,
        held,
        disk,
        staging,
        &mut stage_times,
        reload,
    );
    Ok(())
}

/// Manifest `i`: a log-uniform number of distinct travellers, valid for
/// the next day.
fn manifest(i: usize, a: &Args, clock: &dyn Clock, rng: &mut StdRng) -> Manifest {
    let (lo, hi) = (a.min_travellers as f64, a.max_travellers as f64);
    let size = (lo * (hi / lo).powf(rng.random::<f64>())).round() as usize;
    let mut ids = std::collections::BTreeSet::new();
    while ids.len() < size.min(ID_SPACE) {
        ids.insert(Synth::subject_id(rng.random_range(0..ID_SPACE)));
    }
    let now = clock.now();
    Manifest {
        header: ManifestHeader {
            id: format!("XA{i:05}-2026-11-30"),
            kind: ManifestKind::Flight,
            carrier: "XA".into(),
            voyage: format!("XA{i:05}"),
            port: format!("P{:03}", i % 300),
            direction: if i.is_multiple_of(2) {
                Direction::Entry
            } else {
                Direction::Exit
            },
            scheduled: now.plus(Duration::from_secs(12 * 3600)),
            valid_from: now,
            valid_until: now.plus(Duration::from_secs(24 * 3600)),
        },
        subject_ids: ids.into_iter().collect(),
    }
}

fn print_table(
    a: &Args,
    travellers: usize,
    held: u64,
    disk: u64,
    staging: Duration,
    stage_times: &mut [Duration],
    reload: Duration,
) {
    stage_times.sort();
    let pct = |p: f64| stage_times[((stage_times.len() - 1) as f64 * p) as usize];
    let n = a.manifests as f64;
    let mean = travellers as f64 / n;
    println!(
        "\n{} manifests live, {}..{} travellers each (log-uniform, mean {mean:.0}), \
         {travellers} traveller references in all\n",
        a.manifests, a.min_travellers, a.max_travellers
    );
    println!("| measure | all | per manifest | per traveller |");
    println!("|---|---:|---:|---:|");
    let row = |what: &str, bytes: u64| {
        println!(
            "| {what} | {:.1} MiB | {:.1} KiB | {:.0} B |",
            bytes as f64 / (1 << 20) as f64,
            bytes as f64 / n / 1024.0,
            bytes as f64 / travellers as f64
        );
    };
    row("memory held (RSS growth while staging)", held);
    row("store on disk (manifests.db with its WAL)", disk);
    println!(
        "\nstaging, each durable (fsync) before it returns: {:.1} s in all; per manifest \
         median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        staging.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(1.0).as_secs_f64() * 1e3
    );
    println!(
        "restart: reopening the store and loading every manifest took {:.2} s",
        reload.as_secs_f64()
    );
}

/// This process's resident memory, from `/proc/self/status` (Linux).
fn rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context("reading /proc/self/status (the memory figure needs Linux)")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS line in /proc/self/status")?;
    Ok(kib * 1024)
}

/// Bytes of the files directly under `dir`.
fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}
