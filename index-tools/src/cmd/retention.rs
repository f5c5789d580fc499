//! `facegate-index retention-report`: per store and category, the oldest
//! item and whether everything is inside the retention policy, read from
//! the files under a data directory (run with the server stopped: it holds
//! the stores). Exits with status 1 when anything is overdue, so a cron
//! job or a compliance check can act on it.

use std::path::PathBuf;

use anyhow::Context;
use facegate_core::clock::{Clock, SystemClock, UnixMillis};
use facegate_core::retention::{Line, RetentionPolicy, report};

/// Arguments of `retention-report`.
#[derive(clap::Args)]
pub struct Args {
    /// The server's data directory.
    pub data_dir: PathBuf,
    /// The retention policy the server runs with (default: the documented
    /// defaults).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The audit trail's directory (default: DATA_DIR/audit).
    #[arg(long)]
    pub audit_dir: Option<PathBuf>,
    /// Judge as of this instant (Unix ms) instead of now.
    #[arg(long)]
    pub as_of_unix_ms: Option<i64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Prints the report; an error when anything is overdue.
pub fn run(a: Args) -> anyhow::Result<()> {
    let policy = match &a.policy {
        Some(p) => RetentionPolicy::load(p)?,
        None => RetentionPolicy::default(),
    };
    let now = a
        .as_of_unix_ms
        .map_or_else(|| SystemClock.now(), UnixMillis);
    let audit = a
        .audit_dir
        .clone()
        .unwrap_or_else(|| a.data_dir.join("audit"));
    let lines = report(&a.data_dir, &audit, &policy, now).with_context(|| {
        format!(
            "reading the stores under {} (a running server holds them: stop it first)",
            a.data_dir.display()
        )
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
    } else {
        print_table(&lines);
    }
    let overdue: u64 = lines.iter().map(|l| l.overdue).sum();
    anyhow::ensure!(
        overdue == 0,
        "{overdue} items are past their retention period"
    );
    Ok(())
}

fn print_table(lines: &[Line]) {
    println!("store       category                   oldest (UTC)          overdue  rule");
    for l in lines {
        let oldest = l.oldest_unix_ms.map_or("-".to_string(), |t| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.max(0) as u64),
            )
            .to_string()
        });
        let flag = if l.inside() {
            ""
        } else {
            "  <- past its period"
        };
        println!(
            "{:<11} {:<26} {:<21} {:>7}  {}{flag}",
            l.store, l.category, oldest, l.overdue, l.rule
        );
    }
}
