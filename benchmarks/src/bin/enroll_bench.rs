//! Enrolment benchmark: durable enrolments per second with group commit
//! against one fsync per enrolment, in the same run, beside this disk's raw
//! fsync rate (the physical limit of one-fsync-per-change).
//!
//! Each case commits enrolments from N threads through
//! `LiveGallery::commit` (check, change log append + fdatasync, apply) for a
//! fixed time on a fresh log. Run it on the disk the server's `--data-dir`
//! uses: the default directory is the current one, because a temp dir may
//! be tmpfs, where fsync is free and the comparison means nothing.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use facegate_benchmarks::{NoiseRows, noise_gallery};
use facegate_core::format::RowSource;
use facegate_core::live::LiveGallery;
use facegate_core::wal::{Change, ChangeLog, CommitMode};
use facegate_core::{ElementType, Gallery};
use hdrhistogram::Histogram;

#[derive(Parser)]
#[command(about = "Durable enrolments per second: group commit vs one fsync per change")]
struct Args {
    /// Directory for the logs (on the disk under test).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Template dimension.
    #[arg(long, default_value_t = 512)]
    dim: usize,
    /// Concurrent enrolling threads, one case each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    threads: Vec<usize>,
    /// Templates per enrolment.
    #[arg(long, default_value_t = 1)]
    templates: usize,
    /// Seconds per case.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Print JSON results after the table.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Case {
    mode: &'static str,
    threads: usize,
    enrolls: u64,
    enrolls_per_s: f64,
    fsyncs: u64,
    changes_per_fsync: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Appends of one frame-sized block, each followed by fdatasync, for
/// `seconds`: the most durable one-at-a-time writes this disk does.
fn raw_fsync_rate(dir: &Path, bytes: usize, seconds: f64) -> anyhow::Result<f64> {
    let path = dir.join("raw-fsync.bin");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let block = vec![0x5au8; bytes];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

fn run_case(
    base: &Arc<Gallery>,
    dir: &Path,
    mode: CommitMode,
    threads: usize,
    a: &Args,
) -> anyhow::Result<Case> {
    let path = dir.join(format!("{mode:?}-{threads}.wal"));
    let _ = std::fs::remove_file(&path);
    let (log, _) = ChangeLog::open(&path, a.dim, base.header().generation, mode)?;
    let live = LiveGallery::new(base.clone());
    let stop = AtomicBool::new(false);
    let next_id = AtomicU64::new(0);
    let started = Instant::now();
    let hists = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (log, live, stop, next_id) = (&log, &live, &stop, &next_id);
                s.spawn(move || -> anyhow::Result<Histogram<u64>> {
                    let mut hist = Histogram::<u64>::new(3)?;
                    let mut rows = NoiseRows::with_seed(usize::MAX, a.dim, t as u64 + 1);
                    let mut templates = vec![0f32; a.dim * a.templates];
                    while !stop.load(Ordering::Relaxed) {
                        for chunk in templates.chunks_exact_mut(a.dim) {
                            rows.next_row(chunk)?;
                        }
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        let change = Change::Enroll {
                            subject_id: format!("enrolled-{id}"),
                            templates: templates.clone(),
                        };
                        let t0 = Instant::now();
                        live.commit(log, &change)?;
                        hist.record(t0.elapsed().as_micros() as u64)?;
                    }
                    Ok(hist)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(a.seconds));
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().expect("worker panicked"))
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut all = Histogram::<u64>::new(3)?;
    for h in &hists {
        all.add(h)?;
    }
    let enrolls = all.len();
    let fsyncs = log.syncs();
    drop(log);
    std::fs::remove_file(&path)?;
    Ok(Case {
        mode: match mode {
            CommitMode::Group => "group commit",
            CommitMode::EachChange => "fsync per change",
        },
        threads,
        enrolls,
        enrolls_per_s: enrolls as f64 / elapsed,
        fsyncs,
        changes_per_fsync: enrolls as f64 / fsyncs.max(1) as f64,
        p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let dir = tempfile::Builder::new()
        .prefix("facegate-enroll-bench")
        .tempdir_in(&a.dir)
        .with_context(|| format!("creating a work dir in {}", a.dir.display()))?;
    let base = noise_gallery(
        &dir.path().join("base.fgal"),
        1000,
        a.dim,
        ElementType::Int8,
    )?;
    // One enrolment's frame: header, id, and the floats.
    let frame = 40 + a.templates * a.dim * 4;
    let raw = raw_fsync_rate(dir.path(), frame, a.seconds)?;
    println!(
        "raw append + fdatasync of {frame} B on {}: {raw:.0}/s\n",
        a.dir.display()
    );
    println!(
        "| mode | threads | enrolls/s | x raw fsync rate | changes per fsync | p50 ms | p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut cases = Vec::new();
    for &threads in &a.threads {
        for mode in [CommitMode::EachChange, CommitMode::Group] {
            let c = run_case(&base, dir.path(), mode, threads, &a)?;
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.1} | {:.2} | {:.2} |",
                c.mode,
                c.threads,
                c.enrolls_per_s,
                c.enrolls_per_s / raw,
                c.changes_per_fsync,
                c.p50_ms,
                c.p99_ms
            );
            cases.push(c);
        }
    }
    println!();
    for pair in cases.chunks_exact(2) {
        println!(
            "{} threads: group commit {:.1}x the enrolments/s of one fsync per change",
            pair[0].threads,
            pair[1].enrolls_per_s / pair[0].enrolls_per_s
        );
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "raw_fsync_per_s": raw,
                "cases": cases,
            }))?
        );
    }
    Ok(())
}
