//! `facegate-encounter-bench`: the encounter store's reports over a large
//! synthetic population (issue 16): the overstay report as of a day (every
//! page), one subject's travel history and stay status, and the irregular
//! movements of a month, timed on a store of 10 million records made by
//! `facegate_core::encounter::synth` through the store's bulk path, with the
//! SQLite query plans each report uses.
//!
//! The store is kept in `--dir` so later runs can `--reuse` it (generating
//! 10 million records takes minutes). See docs/benchmarks.md, "Encounters:
//! reports over 10 million records".

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use facegate_core::clock::UnixMillis;
use facegate_core::encounter::store::{MAX_PAGE, end_of};
use facegate_core::encounter::synth::{EncounterSynth, LoadReport, SynthConfig, load};
use facegate_core::encounter::{Day, EncounterStore, SqliteEncounters, overstays, stay_of};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Parser)]
#[command(
    name = "facegate-encounter-bench",
    about = "Encounter reports (overstays, history, stay, irregular movements) over a large synthetic store"
)]
struct Args {
    /// Directory of the store (DIR/encounters.db); kept for --reuse.
    #[arg(long, default_value = ".data/encounter-bench")]
    dir: PathBuf,
    /// Encounter records to generate.
    #[arg(long, default_value_t = 10_000_000)]
    encounters: u64,
    /// Years the histories span (from 2023-01-01).
    #[arg(long, default_value_t = 3)]
    years: u32,
    /// Seed of the population.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Use the store already in --dir (made by an earlier run with the same
    /// --encounters, --years and --seed) instead of generating one.
    #[arg(long)]
    reuse: bool,
    /// Random subjects whose history and stay are timed.
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    /// Runs of each whole-store report (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let synth = EncounterSynth::new(SynthConfig {
        // An upper bound: loading stops at --encounters (about 10 each).
        travellers: usize::try_from(a.encounters / 4 + 1)?,
        years: a.years,
        seed: a.seed,
        ..SynthConfig::default()
    })?;
    let (store, travellers) = open_or_generate(&a, &synth)?;
    let as_of = synth.end();
    println!(
        "store: {} ({})",
        store.path().display(),
        size_of_store(&a.dir)?
    );
    println!("{travellers} travellers; reports as of {as_of} (the span's last day)\n");
    print_plans(&store)?;
    overstay_report(&store, as_of, a.runs)?;
    per_subject(&store, as_of, travellers, a.samples, a.seed)?;
    irregular(&store, as_of, a.runs)?;
    Ok(())
}

/// Opens the store in `--dir` (with `--reuse`), or makes it.
fn open_or_generate(
    a: &Args,
    synth: &EncounterSynth,
) -> anyhow::Result<(Arc<SqliteEncounters>, usize)> {
    let file = a
        .dir
        .join(facegate_core::encounter::sqlite_store::FILE_NAME);
    if file.exists() && !a.reuse {
        anyhow::bail!("{}: exists; pass --reuse, or remove it", file.display());
    }
    let t = Instant::now();
    let store =
        SqliteEncounters::open(&a.dir).with_context(|| format!("opening {}", file.display()))?;
    // Opening checks the file and applies any schema migration (an index
    // built over every record takes most of this).
    println!("opened in {:.1} s", t.elapsed().as_secs_f64());
    if a.reuse && file.exists() {
        let travellers = count(&store, "SELECT COUNT(*) FROM travellers")?;
        let records = count(&store, "SELECT COUNT(*) FROM encounters")?;
        println!("reusing {records} encounters of {travellers} travellers");
        return Ok((store, travellers as usize));
    }
    let report = generate(&store, synth, a.encounters)?;
    Ok((store, report.travellers))
}

/// A count, read through the store's own reader (the store holds the lock,
/// so a second connection of this process reads it).
fn count(store: &SqliteEncounters, sql: &str) -> anyhow::Result<i64> {
    let c = facegate_core::sqlite::open_reader(store.path())?;
    Ok(c.query_row(sql, [], |r| r.get(0))?)
}

/// Loads the population, printing progress to stderr.
fn generate(
    store: &SqliteEncounters,
    synth: &EncounterSynth,
    encounters: u64,
) -> anyhow::Result<LoadReport> {
    let started = Instant::now();
    let mut next = 0u64;
    let report = load(synth, store, Some(encounters), &mut |r: &LoadReport| {
        if r.encounters >= next {
            let s = started.elapsed().as_secs_f64();
            eprintln!(
                "  {:>11} encounters of {encounters}, {} travellers, {:.0} s, {:.0}/s",
                r.encounters,
                r.travellers,
                s,
                r.encounters as f64 / s
            );
            next += 500_000;
        }
    })?;
    let s = started.elapsed().as_secs_f64();
    println!(
        "generated {} encounters of {} travellers in {s:.1} s ({:.0} records/s)",
        report.encounters,
        report.travellers,
        report.encounters as f64 / s
    );
    Ok(report)
}

/// The store's file and WAL, in MiB.
fn size_of_store(dir: &std::path::Path) -> anyhow::Result<String> {
    let mut bytes = 0;
    for e in std::fs::read_dir(dir)? {
        bytes += e?.metadata()?.len();
    }
    Ok(format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64))
}

fn print_plans(store: &SqliteEncounters) -> anyhow::Result<()> {
    println!("query plans (EXPLAIN QUERY PLAN):");
    for (name, lines) in store.query_plans()? {
        println!("  {name}:");
        for l in lines {
            println!("    {l}");
        }
    }
    println!();
    Ok(())
}

/// `runs` timings of `f`, and its last result.
fn timed<T>(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Vec<Duration>, T)> {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        last = Some(f()?);
        times.push(t.elapsed());
    }
    let last = last.context("no run")?;
    Ok((times, last))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// "first, median" of a set of runs, in ms.
fn runs_text(times: &[Duration]) -> String {
    let mut sorted = times.to_vec();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let first = times.first().copied().unwrap_or_default();
    format!(
        "first {:.1} ms, median of {} {:.1} ms",
        ms(first),
        times.len(),
        ms(median)
    )
}

/// The overstay report as of `as_of`, every page; and the presence list
/// alone (the store's part of it), to say where the time goes.
fn overstay_report(store: &SqliteEncounters, as_of: Day, runs: usize) -> anyhow::Result<()> {
    let (times, present) = timed(runs, || {
        let (mut n, mut cursor) = (0usize, None::<String>);
        loop {
            let page = store.present_subjects(end_of(as_of), cursor.as_deref(), MAX_PAGE)?;
            n += page.subject_ids.len();
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(n),
            }
        }
    })?;
    println!(
        "present_subjects, every page: {present} subjects; {}",
        runs_text(&times)
    );
    let (times, over) = timed(runs, || {
        let (mut n, mut cursor) = (0usize, None::<String>);
        loop {
            let page = overstays(store, as_of, cursor.as_deref(), MAX_PAGE)?;
            n += page.overstays.len();
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(n),
            }
        }
    })?;
    println!(
        "overstay report, every page: {over} overstayers; {}\n",
        runs_text(&times)
    );
    Ok(())
}

/// History and stay of random subjects: median and p99.
fn per_subject(
    store: &SqliteEncounters,
    as_of: Day,
    travellers: usize,
    samples: usize,
    seed: u64,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let subjects: Vec<String> = (0..samples)
        .map(|_| EncounterSynth::subject_id(rng.random_range(0..travellers.max(1))))
        .collect();
    let (mut history, mut stay, mut records) = (Vec::new(), Vec::new(), 0usize);
    for s in &subjects {
        let t = Instant::now();
        records += store.history(s)?.len();
        history.push(t.elapsed());
        let t = Instant::now();
        stay_of(store, s, as_of)?;
        stay.push(t.elapsed());
    }
    println!(
        "history of one subject ({samples} random subjects, {:.1} records each): {}",
        records as f64 / samples.max(1) as f64,
        percentiles(&mut history)
    );
    println!(
        "stay status of one subject as of {as_of}: {}\n",
        percentiles(&mut stay)
    );
    Ok(())
}

/// "median, p99, max" in ms.
fn percentiles(times: &mut [Duration]) -> String {
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len().max(1)) - 1;
        times.get(i).map_or(0.0, |d| ms(*d))
    };
    format!(
        "median {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

/// Exits without entry and entries without exit captured in the 30 days
/// up to `as_of`, every page.
fn irregular(store: &SqliteEncounters, as_of: Day, runs: usize) -> anyhow::Result<()> {
    let (from, until) = (as_of.plus(-29).start(), end_of(as_of));
    for exits in [true, false] {
        let (times, n) = timed(runs, || every_page(store, exits, from, until))?;
        let what = if exits {
            "exits without entry"
        } else {
            "entries without exit"
        };
        println!(
            "{what}, {} to {as_of}: {n} records; {}",
            as_of.plus(-29),
            runs_text(&times)
        );
    }
    Ok(())
}

/// Every record of one irregular listing, paging by capture time (as
/// `facegate-index encounters irregular` does).
fn every_page(
    store: &SqliteEncounters,
    exits: bool,
    from: UnixMillis,
    until: UnixMillis,
) -> anyhow::Result<usize> {
    let (mut n, mut start, mut last) = (0usize, from, None::<(i64, u64)>);
    loop {
        let page = if exits {
            store.exits_without_entry(start, until, MAX_PAGE)?
        } else {
            store.entries_without_exit(start, until, MAX_PAGE)?
        };
        let (full, before) = (page.len() == MAX_PAGE, n);
        for r in page {
            let at = (r.encounter.context.captured_at.0, r.record_id);
            if last.is_none_or(|l| at > l) {
                last = Some(at);
                n += 1;
            }
        }
        match last {
            Some((ms, _)) if full && n > before => start = UnixMillis(ms),
            _ if full => anyhow::bail!("a page of one instant"),
            _ => return Ok(n),
        }
    }
}
