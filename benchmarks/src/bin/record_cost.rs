//! `facegate-record-cost`: what one encounter record costs the machine, in
//! CPU and in bytes written, beside the floor of a bare durable write.
//!
//! On a two-core server that the scan keeps busy, what recording adds to a
//! request's latency near saturation is mostly the CPU it takes, queueing
//! behind the scan (docs/benchmarks.md, "Encounters: what recording costs a
//! port"). This isolates it: a store in `--dir` holding `--preload` records
//! of synthetic travel histories takes `--rate` records a second on a fixed
//! schedule, as ports' requests queue them (`EncounterStore::enqueue_record`),
//! for `--seconds`; it reports the CPU time of the store's writer and
//! checkpointer threads per record (from `/proc/self/task/*/schedstat`: on
//! CPU, user and kernel), the bytes the process wrote to storage per record
//! (`/proc/self/io`), commits per record, and the records' latency. Then, in
//! the same run, the floor: one thread writing the same bytes per commit to
//! a region of a file and fdatasyncing it, as many times a second as the
//! store committed, measured the same way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use facegate_core::clock::UnixMillis;
use facegate_core::encounter::synth::{EncounterSynth, SynthConfig, load};
use facegate_core::encounter::{Encounter, EncounterStore, SqliteEncounters};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Parser)]
#[command(
    name = "facegate-record-cost",
    about = "CPU and bytes written per encounter record, beside a bare write + fdatasync"
)]
struct Args {
    /// Directory for the store (its `store/` subdirectory, removed first)
    /// and the floor's file.
    #[arg(long)]
    dir: PathBuf,
    /// Records of synthetic histories stored before the timed run, so the
    /// indexes have the depth of a store in service.
    #[arg(long, default_value_t = 500_000)]
    preload: u64,
    /// Records a second during the timed run.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Seconds of the timed run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seed of the histories and of the records' encounter ids.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// CPU nanoseconds so far of this process's threads with these names.
fn thread_cpu_ns(names: &[&str]) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?.path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else {
            continue; // the thread ended
        };
        // The kernel keeps 15 bytes of a thread's name.
        if !names
            .iter()
            .any(|n| n.get(..15).unwrap_or(n) == comm.trim())
        {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("schedstat"))?;
        total += stat
            .split_whitespace()
            .next()
            .context("empty schedstat")?
            .parse::<u64>()?;
    }
    Ok(total)
}

/// Bytes this process has caused to be sent to storage so far.
fn written_bytes() -> anyhow::Result<u64> {
    let io = std::fs::read_to_string("/proc/self/io")?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .context("no write_bytes in /proc/self/io")?
        .trim()
        .parse()
        .context("write_bytes")
}

/// What one timed run measured.
struct Cost {
    ops: u64,
    commits: u64,
    cpu_ns: u64,
    /// Of `cpu_ns`, the store's checkpoint thread's.
    checkpoint_ns: u64,
    bytes: u64,
    latency: Histogram<u64>,
}

/// The share of `latency` (microseconds) above `us`, in percent: a tail
/// measure that moves less from run to run than one quantile does.
fn over_percent(latency: &Histogram<u64>, us: u64) -> f64 {
    let above = latency.count_between(us + 1, latency.max().max(us + 1));
    100.0 * above as f64 / latency.len().max(1) as f64
}

impl Cost {
    fn print(&self, what: &str) {
        let per = |x: u64| x as f64 / self.ops.max(1) as f64;
        let q = |p: f64| self.latency.value_at_quantile(p) as f64 / 1e3;
        println!(
            "{what}: {} ops, {:.3} commits/op, {:.1} us CPU/op ({:.1} checkpointing), \
             {:.1} KiB written/op, latency p50 {:.3} p99 {:.3} p99.9 {:.3} ms, \
             over 1 ms {:.2} %",
            self.ops,
            per(self.commits),
            per(self.cpu_ns) / 1e3,
            per(self.checkpoint_ns) / 1e3,
            per(self.bytes) / 1024.0,
            q(0.5),
            q(0.99),
            q(0.999),
            over_percent(&self.latency, 1_000),
        );
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(
        a.rate > 0.0 && a.seconds > 0.0,
        "--rate and --seconds must be positive"
    );
    let store_dir = a.dir.join("store");
    if store_dir.exists() {
        std::fs::remove_dir_all(&store_dir)?;
    }
    let store = SqliteEncounters::open(&store_dir)?;
    let synth = EncounterSynth::new(SynthConfig {
        travellers: usize::try_from(a.preload / 4 + 1_000)?,
        seed: a.seed,
        ..SynthConfig::default()
    })?;
    let loaded = load(&synth, &store, Some(a.preload), &mut |_| {})?;
    store.checkpoint()?;
    // The preload's writes leave the page cache before the timed run.
    let synced = std::process::Command::new("sync").status()?;
    anyhow::ensure!(synced.success(), "sync failed");
    println!(
        "store: {} records of {} travellers preloaded",
        loaded.encounters, loaded.travellers
    );
    let records = live_records(&synth, loaded.travellers, &a);
    let cost = time_records(&store, records, a.rate)?;
    cost.print("record");
    let per_commit = cost.bytes / cost.commits.max(1);
    let commit_rate = cost.commits as f64 / a.seconds;
    store.close();
    let floor = time_floor(&a.dir, per_commit.max(512) as usize, commit_rate, a.seconds)?;
    floor.print("floor (write + fdatasync of a commit's bytes)");
    println!(
        "record CPU / floor CPU per commit: {:.2}",
        (cost.cpu_ns as f64 / cost.commits.max(1) as f64)
            / (floor.cpu_ns as f64 / floor.ops.max(1) as f64)
    );
    Ok(())
}

/// The timed run's records: the next travellers' captures, as ports would
/// send them now (captured in order from the span's end, each with a
/// random 128-bit encounter id).
fn live_records(synth: &EncounterSynth, first: usize, a: &Args) -> Vec<Encounter> {
    let wanted = (a.rate * a.seconds).ceil() as usize;
    let start = facegate_core::encounter::store::end_of(synth.end()).0 + 1;
    let mut rng = StdRng::seed_from_u64(a.seed ^ 0x5eed);
    let mut out = Vec::with_capacity(wanted);
    let mut i = first;
    while out.len() < wanted {
        for mut e in synth.history(i).encounters {
            let at = UnixMillis(start + out.len() as i64);
            e.context.captured_at = at;
            e.recorded_at = at;
            e.context.encounter_id = format!("{:032x}", rng.random::<u128>());
            out.push(e);
        }
        i += 1;
    }
    out.truncate(wanted);
    out
}

/// Queues `records` at `rate` a second on a fixed schedule and waits for
/// every answer.
fn time_records(
    store: &Arc<SqliteEncounters>,
    records: Vec<Encounter>,
    rate: f64,
) -> anyhow::Result<Cost> {
    let threads = ["encounter-writer", "encounter-checkpoint"];
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (cpu0, bytes0) = (thread_cpu_ns(&threads)?, written_bytes()?);
    let checkpoint0 = thread_cpu_ns(&threads[1..])?;
    let commits0 = store
        .commit_stats()
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    let ops = records.len() as u64;
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut next = Instant::now();
    for e in records {
        let (latency, done) = (Arc::clone(&latency), done_tx.clone());
        let queued = Instant::now();
        let reply = Box::new(move |r: Result<_, _>| {
            let us = queued.elapsed().as_micros().max(1) as u64;
            latency
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .saturating_record(us);
            let _ = done.send(
                r.map(|_| ())
                    .map_err(|e: facegate_core::encounter::EncounterError| e.to_string()),
            );
        });
        store
            .enqueue_record(e, reply)
            .map_err(|_| anyhow::anyhow!("the SQLite store always queues"))?;
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    drop(done_tx);
    for r in done_rx.iter().take(ops as usize) {
        r.map_err(|e| anyhow::anyhow!("a record failed: {e}"))?;
    }
    let commits = store
        .commit_stats()
        .commits
        .load(std::sync::atomic::Ordering::Relaxed)
        - commits0;
    let latency = latency.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(Cost {
        ops,
        commits,
        cpu_ns: thread_cpu_ns(&threads)? - cpu0,
        checkpoint_ns: thread_cpu_ns(&threads[1..])? - checkpoint0,
        bytes: written_bytes()? - bytes0,
        latency,
    })
}

/// CPU nanoseconds so far of the calling thread.
fn own_cpu_ns() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    Ok(stat
        .split_whitespace()
        .next()
        .context("empty schedstat")?
        .parse()?)
}

/// One thread writing `bytes` at a time round an 8 MiB region written
/// beforehand and fdatasyncing each, `rate` times a second.
fn time_floor(dir: &Path, bytes: usize, rate: f64, seconds: f64) -> anyhow::Result<Cost> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("floor.region");
    let region = 8usize << 20;
    let block = vec![2u8; bytes.min(region)];
    // Written a block at a time, as a WAL grows: one large write would
    // leave the page cache's large folios, and each later overwrite would
    // write back a whole folio (2 MiB on this VM's kernel), not the block.
    let mut file = std::fs::File::create(&path)?;
    for _ in 0..region / block.len() {
        file.write_all(&block)?;
    }
    file.sync_all()?;
    let slots = (region / block.len()) as u64;
    let bytes0 = written_bytes()?;
    let (ops, cpu_ns, latency) = std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<(u64, u64, Histogram<u64>)> {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let period = Duration::from_secs_f64(1.0 / rate);
            let cpu0 = own_cpu_ns()?;
            let (start, mut next, mut ops) = (Instant::now(), Instant::now(), 0u64);
            while start.elapsed().as_secs_f64() < seconds {
                let t = Instant::now();
                file.write_all_at(&block, (ops % slots) * block.len() as u64)?;
                file.sync_data()?;
                latency.saturating_record(t.elapsed().as_micros().max(1) as u64);
                ops += 1;
                next += period;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            Ok((ops, own_cpu_ns()? - cpu0, latency))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the floor writer panicked"))?
    })?;
    std::fs::remove_file(&path)?;
    Ok(Cost {
        ops,
        commits: ops,
        cpu_ns,
        checkpoint_ns: 0,
        bytes: written_bytes()? - bytes0,
        latency,
    })
}
