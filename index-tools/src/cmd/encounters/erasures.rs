//! `encounters scheduled-erasures`: overstays whose records the retention
//! purge will erase within the policy's notice period, as the server's
//! `Encounters/ListScheduledErasures` lists them, every page.

use std::path::PathBuf;

use anyhow::Context;
use facegate_core::clock::UnixMillis;
use facegate_core::encounter::Day;
use facegate_core::encounter::store::end_of;
use facegate_core::retention::{RetentionPolicy, ScheduledErasure, scheduled_erasures};

use super::lists::write_csv;
use super::{check_output, open, utc};
use crate::progress;

/// Arguments of `encounters scheduled-erasures`.
#[derive(clap::Args)]
pub struct Args {
    /// The server's data directory (`--data-dir`).
    pub data_dir: PathBuf,
    /// The server's retention policy (`--retention-policy`); the
    /// documented defaults when not given.
    #[arg(long)]
    pub retention_policy: Option<PathBuf>,
    /// Take the list at the end of this day (YYYY-MM-DD, UTC); now by default.
    #[arg(long)]
    pub as_of: Option<Day>,
    /// Write CSV (with a header) to this file; `-` for standard output.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Replace an existing CSV file.
    #[arg(long)]
    pub force: bool,
}

/// The CSV's columns: [`Row`]'s fields.
const COLUMNS: [&str; 4] = ["subject_id", "exit_utc", "days_over", "erase_at_utc"];

/// One scheduled erasure as reported: the CSV's columns, in order.
#[derive(serde::Serialize)]
struct Row {
    subject_id: String,
    exit_utc: String,
    days_over: u32,
    erase_at_utc: String,
}

impl From<&ScheduledErasure> for Row {
    fn from(e: &ScheduledErasure) -> Row {
        Row {
            subject_id: e.subject_id.clone(),
            exit_utc: utc(e.stay.exit_at),
            days_over: e.stay.days_over,
            erase_at_utc: utc(e.stay.erase_at),
        }
    }
}

/// Lists every page, as text or CSV, and says how many on stderr.
pub fn run(a: Args) -> anyhow::Result<()> {
    check_output(a.csv.as_deref(), a.force)?;
    let policy = match &a.retention_policy {
        Some(path) => RetentionPolicy::load(path)?,
        None => RetentionPolicy::default(),
    };
    let store = open(&a.data_dir, false)?;
    let now = a.as_of.map_or_else(
        || UnixMillis::from_system_time(std::time::SystemTime::now()),
        end_of,
    );
    let pb = progress::spinner("scheduled erasures");
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = scheduled_erasures(store.as_ref(), &policy, now, cursor.as_deref(), 0)
            .context("listing the scheduled erasures")?;
        rows.extend(page.erasures.iter().map(Row::from));
        pb.set_position(rows.len() as u64);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    pb.finish_and_clear();
    match &a.csv {
        Some(path) => write_csv(path, a.force, &COLUMNS, &rows)?,
        None => {
            for r in &rows {
                let (who, over) = (&r.subject_id, r.days_over);
                println!(
                    "{who:<16} left {}  over {over:>4}  erased from {}",
                    r.exit_utc, r.erase_at_utc
                );
            }
        }
    }
    let notice = humantime::format_duration(policy.notices.overstayer_erasure);
    eprintln!(
        "{} overstays erased within {notice} of {}",
        rows.len(),
        utc(now)
    );
    Ok(())
}
