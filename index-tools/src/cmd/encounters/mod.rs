//! `facegate-index encounters ...`: the back office's reports over a
//! server's encounter store (travel history, stay status, overstays,
//! irregular movements, overstays' scheduled erasures), and a synthetic
//! store to try them on.
//!
//! Every command opens `DATA_DIR/encounters/encounters.db` (the server's
//! `--data-dir`) as the server does. The store admits one process at a
//! time (a lock file beside it), so these commands run on a stopped
//! server's data, or on a copy; a running server is asked through its
//! Encounters API instead.

mod erasures;
mod lists;
mod show;
mod synth;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use facegate_core::clock::UnixMillis;
use facegate_core::encounter::sqlite_store::FILE_NAME;
use facegate_core::encounter::{Day, EncounterError, SqliteEncounters};
use facegate_core::sqlite::DbError;

/// Arguments of `encounters`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// A subject's travel history: every encounter naming them, in capture order.
    History(show::HistoryArgs),
    /// A subject's stay as of a day: in the country since, days used in 180, days over.
    Stay(show::StayArgs),
    /// Everyone in the country past their authorised stay as of a day (all pages).
    Overstays(lists::OverstaysArgs),
    /// Exits with no open entry, or entries with no exit, captured in a period.
    Irregular(lists::IrregularArgs),
    /// Overstays whose records the retention purge will erase within the
    /// policy's notice period (announced before they go).
    ScheduledErasures(erasures::Args),
    /// Fill a data dir's encounter store with synthetic travel histories.
    SynthEncounters(synth::Args),
}

pub fn run(a: Args) -> anyhow::Result<()> {
    match a.command {
        Command::History(a) => show::history(a),
        Command::Stay(a) => show::stay(a),
        Command::Overstays(a) => lists::overstays(a),
        Command::Irregular(a) => lists::irregular(a),
        Command::ScheduledErasures(a) => erasures::run(a),
        Command::SynthEncounters(a) => synth::run(a),
    }
}

/// The store's file under a data dir.
fn store_file(data_dir: &Path) -> PathBuf {
    data_dir.join("encounters").join(FILE_NAME)
}

/// Opens the store of `data_dir`, which must exist unless `create`.
fn open(data_dir: &Path, create: bool) -> anyhow::Result<Arc<SqliteEncounters>> {
    let file = store_file(data_dir);
    if !create && !file.exists() {
        anyhow::bail!(
            "{}: no encounter store here (give the server's --data-dir; its store is created at the first recorded encounter)",
            file.display()
        );
    }
    SqliteEncounters::open(&data_dir.join("encounters")).map_err(|e| {
        let held = matches!(e, EncounterError::Db(DbError::InUse { .. }));
        let why = if held {
            "; it is held by another process, most likely a facegate server running with this --data-dir: \
             the store admits one process at a time, so stop the server or ask it through its Encounters API"
        } else {
            ""
        };
        anyhow::Error::new(e).context(format!("opening the encounter store {}{why}", file.display()))
    })
}

/// Today (UTC), the default as-of day.
fn today() -> Day {
    Day::of(UnixMillis::from_system_time(std::time::SystemTime::now()))
}

/// An instant as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
fn utc(t: UnixMillis) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0) * 1_000_000)
        .ok()
        .and_then(|d| d.format(&format).ok())
        .unwrap_or_else(|| format!("{} ms since 1970", t.0))
}

/// Refuses, before any work, to replace an existing CSV output without
/// `force` (`-` is standard output).
fn check_output(path: Option<&Path>, force: bool) -> anyhow::Result<()> {
    match path {
        Some(p) if p != Path::new("-") => super::refuse_existing(p, force),
        _ => Ok(()),
    }
}

/// Where a report is written: a file (not replaced without `force`), or
/// standard output for `-`.
fn output(path: &Path, force: bool) -> anyhow::Result<Box<dyn std::io::Write>> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::stdout().lock()));
    }
    check_output(Some(path), force)?;
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(Box::new(std::io::BufWriter::new(f)))
}
