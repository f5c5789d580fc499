//! The disk's durable-write latency while a load runs: every 1/RATE s it
//! writes one BYTES-byte block to a file in DIR and fdatasyncs it, on the
//! same absolute schedule whatever each sync took, and reports the
//! percentiles of write + fdatasync. By default the blocks go round a
//! region written and synced beforehand, as SQLite reuses its WAL once it
//! has grown (so no sync needs a journal commit for the file's size);
//! `--append` grows the file instead, as an append-only log does. Run
//! beside a benchmark's load without recording, it is the floor any
//! durable record under that load sits on: a record cannot be acknowledged
//! sooner than its commit's fdatasync returns
//! (benchmarks/scripts/encounters.sh runs it so).

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;

#[derive(Parser)]
#[command(
    about = "Latency of a small append + fdatasync at a fixed rate, under whatever load runs"
)]
struct Args {
    /// Directory on the file system to probe (the probe file is removed after).
    #[arg(long)]
    dir: PathBuf,
    /// Seconds to probe.
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Writes per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Bytes per write (a SQLite WAL frame of a 4 KiB page is 4,120).
    #[arg(long, default_value_t = 4096)]
    bytes: usize,
    /// Grow the file with every write instead of going round a region
    /// written beforehand.
    #[arg(long)]
    append: bool,
    /// Bytes of the region the writes go round (without --append).
    #[arg(long, default_value_t = 4 << 20)]
    region_bytes: u64,
    /// Write the percentiles (microseconds) as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(
        a.rate > 0.0 && a.duration_s > 0.0,
        "--rate and --duration-s must be positive"
    );
    let path = a.dir.join(format!("fsync-probe-{}", std::process::id()));
    let mut file = std::fs::File::create(&path)?;
    let block = vec![0x5au8; a.bytes];
    let slots = (a.region_bytes / a.bytes as u64).max(1);
    if !a.append {
        // Written, not just allocated: writing into unwritten extents would
        // change metadata on every sync, as appending does.
        for _ in 0..slots {
            file.write_all(&block)?;
        }
        file.sync_all()?;
    }
    let mut slot = 0;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let period = Duration::from_secs_f64(1.0 / a.rate);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.duration_s);
    let mut next = start;
    while next < end {
        let t = Instant::now();
        if !a.append {
            file.write_all_at(&block, slot * a.bytes as u64)?;
            slot = (slot + 1) % slots;
        } else {
            file.write_all(&block)?;
        }
        file.sync_data()?;
        hist.saturating_record(t.elapsed().as_micros().max(1) as u64);
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    drop(file);
    std::fs::remove_file(&path)?;
    let q = |p: f64| hist.value_at_quantile(p);
    let out = serde_json::json!({
        "writes": hist.len(),
        "append": a.append,
        "p50_us": q(0.5),
        "p90_us": q(0.9),
        "p99_us": q(0.99),
        "p999_us": q(0.999),
        "max_us": hist.max(),
    });
    println!("{out}");
    if let Some(json) = &a.json {
        std::fs::write(json, serde_json::to_vec_pretty(&out)?)?;
    }
    Ok(())
}
