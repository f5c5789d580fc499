//! `facegate-index compact`: a gallery plus its change log (the online
//! enrolments and removals a server took) folded into a new gallery
//! generation.
//!
//! Safe to run while the server is still taking changes: the log is only
//! read, up to its last complete frame, and the new gallery records the last
//! sequence it folded in. Writing over the served file (`--out` equal to the
//! server's `--gallery`, with `--force`) is an atomic rename; the server
//! keeps answering from its old mapping until it reloads (GalleryAdmin
//! Reload or SIGHUP), then carries over the changes logged after that
//! sequence.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use facegate_core::Gallery;
use facegate_core::live::compact;
use facegate_core::wal::ChangeLog;

use crate::progress;

/// Arguments of `compact`.
#[derive(clap::Args)]
pub struct Args {
    /// The base gallery the server serves.
    #[arg(long)]
    pub gallery: PathBuf,
    /// The server's --data-dir: the log read is DATA_DIR/changes/GENERATION.wal.
    #[arg(long, required_unless_present = "log", conflicts_with = "log")]
    pub data_dir: Option<PathBuf>,
    /// The change log to fold in (instead of finding it under --data-dir).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Gallery file to write (may be the --gallery path, with --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace the output if it exists.
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    super::refuse_existing(&a.out, a.force)?;
    let base = Arc::new(
        Gallery::open(&a.gallery).with_context(|| format!("opening {}", a.gallery.display()))?,
    );
    let generation = base.header().generation;
    let log = match (&a.log, &a.data_dir) {
        (Some(l), _) => l.clone(),
        (None, Some(d)) => d.join("changes").join(format!("{generation:016x}.wal")),
        (None, None) => anyhow::bail!("give --data-dir or --log"),
    };
    let replay = ChangeLog::read(&log, base.dim(), generation)
        .with_context(|| format!("reading change log {}", log.display()))?;
    if replay.cut_bytes > 0 {
        eprintln!(
            "note: {} bytes after the last complete change of {} were left out ({}); a server still writing them will carry them over",
            replay.cut_bytes,
            log.display(),
            replay.cut_reason.as_deref().unwrap_or("incomplete")
        );
    }
    let pb = progress::bar(base.rows() as u64, "compacting", false);
    let report = compact(base, &replay.changes, &a.out, a.force, &mut |done| {
        pb.set_position(done)
    })
    .with_context(|| format!("writing {}", a.out.display()))?;
    pb.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "wrote {}: generation {:016x} from {:016x} through change {}",
        a.out.display(),
        report.generation,
        report.parent_generation,
        report.through_sequence
    );
    println!(
        "  changes folded in: {} ({} skipped as no longer applicable)",
        report.changes, report.skipped
    );
    println!(
        "  subjects: {} -> {} ({} base subjects removed or replaced, {} enrolled from the log)",
        report.parent_subjects,
        report.subjects,
        report.masked_base_subjects,
        report.enrolled_subjects
    );
    println!("  rows: {} -> {}", report.parent_rows, report.rows);
    Ok(())
}
