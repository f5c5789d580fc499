//! `encounters overstays` and `encounters irregular`: reports over the
//! whole store, every page of them.

use std::path::PathBuf;

use anyhow::Context;
use facegate_core::clock::UnixMillis;
use facegate_core::encounter::store::{MAX_PAGE, end_of};
use facegate_core::encounter::{
    Day, EncounterStore, SqliteEncounters, StayReport, StoredEncounter,
};

use super::show::{RECORD_COLUMNS, Record, line, rule};
use super::{check_output, open, output, today};
use crate::progress;

/// Arguments of `encounters overstays`.
#[derive(clap::Args)]
pub struct OverstaysArgs {
    /// The server's data directory (`--data-dir`).
    pub data_dir: PathBuf,
    /// The day (YYYY-MM-DD, UTC) whose end the report is taken at; today by default.
    #[arg(long)]
    pub as_of: Option<Day>,
    /// Write CSV (with a header) to this file; `-` for standard output.
    #[arg(long, conflicts_with = "json")]
    pub csv: Option<PathBuf>,
    /// Print JSON (an array of rows) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Replace an existing CSV file.
    #[arg(long)]
    pub force: bool,
}

/// One overstayer as reported: the CSV's columns, in order. Days are
/// YYYY-MM-DD; empty when there is none.
#[derive(serde::Serialize)]
pub(super) struct OverstayRow {
    subject_id: String,
    category: &'static str,
    in_country_since: String,
    days_used_in_180: u32,
    admitted_until: String,
    days_over: u32,
    past_days_over: u32,
    rule: &'static str,
    anomalies: String,
}

impl From<&StayReport> for OverstayRow {
    fn from(r: &StayReport) -> OverstayRow {
        let s = &r.status;
        let day = |d: Option<Day>| d.map(|d| d.to_string()).unwrap_or_default();
        let anomalies: Vec<String> = s.anomalies.iter().map(ToString::to_string).collect();
        OverstayRow {
            subject_id: r.subject_id.clone(),
            category: r.category.map_or("", |c| c.name()),
            in_country_since: day(s.in_country_since),
            days_used_in_180: s.days_used_in_180,
            admitted_until: day(s.admitted_until),
            days_over: s.days_over,
            past_days_over: s.days_over_in_past_stays,
            rule: s.rule.map_or("", |r| r.name()),
            anomalies: anomalies.join("; "),
        }
    }
}

pub fn overstays(a: OverstaysArgs) -> anyhow::Result<()> {
    check_output(a.csv.as_deref(), a.force)?;
    let store = open(&a.data_dir, false)?;
    let as_of = a.as_of.unwrap_or_else(today);
    let found = all_overstays(&store, as_of)?;
    let rows: Vec<OverstayRow> = found.iter().map(OverstayRow::from).collect();
    if let Some(path) = &a.csv {
        write_csv(path, a.force, &OVERSTAY_COLUMNS, &rows)?;
    } else if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in &found {
            let s = &r.status;
            println!(
                "{:<16} {:<26} since {}  over {:>4}  {}",
                r.subject_id,
                r.category.map_or("-", |c| c.name()),
                s.in_country_since.map_or("-".into(), |d| d.to_string()),
                s.days_over,
                rule(s.rule),
            );
        }
    }
    eprintln!("{} overstayers as of the end of {as_of} (UTC)", rows.len());
    Ok(())
}

/// The overstay CSV's columns: [`OverstayRow`]'s fields.
pub(super) const OVERSTAY_COLUMNS: [&str; 9] = [
    "subject_id",
    "category",
    "in_country_since",
    "days_used_in_180",
    "admitted_until",
    "days_over",
    "past_days_over",
    "rule",
    "anomalies",
];

/// Writes `rows` as CSV under `columns` (their serialized fields, in
/// order), the header even when there are no rows.
pub(super) fn write_csv<T: serde::Serialize>(
    path: &std::path::Path,
    force: bool,
    columns: &[&str],
    rows: &[T],
) -> anyhow::Result<()> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(output(path, force)?);
    let written = || format!("writing {}", path.display());
    w.write_record(columns).with_context(written)?;
    for r in rows {
        w.serialize(r).with_context(written)?;
    }
    w.flush().with_context(written)?;
    Ok(())
}

/// Every page of the overstay report.
fn all_overstays(store: &SqliteEncounters, as_of: Day) -> anyhow::Result<Vec<StayReport>> {
    let pb = progress::spinner("overstayers");
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = facegate_core::encounter::overstays(store, as_of, cursor.as_deref(), MAX_PAGE)
            .with_context(|| format!("the overstay report as of {as_of}"))?;
        out.extend(page.overstays);
        pb.set_position(out.len() as u64);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    pb.finish_and_clear();
    Ok(out)
}

/// Which irregular movements.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Kind {
    /// Exits whose subject's previous movement is not an entry (an
    /// impostor leaving on someone's identity, or a missed entry capture).
    ExitWithoutEntry,
    /// Entries followed by another entry with no exit between (a missed
    /// exit capture).
    EntryWithoutExit,
}

impl Kind {
    /// The name given on the command line.
    fn name(self) -> &'static str {
        match self {
            Kind::ExitWithoutEntry => "exits without entry",
            Kind::EntryWithoutExit => "entries without exit",
        }
    }
}

/// Arguments of `encounters irregular`.
#[derive(clap::Args)]
pub struct IrregularArgs {
    /// The server's data directory (`--data-dir`).
    pub data_dir: PathBuf,
    /// Which movements.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// The first day (YYYY-MM-DD, UTC) of captures to list.
    #[arg(long)]
    pub from: Day,
    /// The last day (YYYY-MM-DD, UTC), included.
    #[arg(long)]
    pub until: Day,
    /// Write CSV (with a header) to this file; `-` for standard output.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Replace an existing CSV file.
    #[arg(long)]
    pub force: bool,
}

pub fn irregular(a: IrregularArgs) -> anyhow::Result<()> {
    if a.until < a.from {
        anyhow::bail!("--until {} is before --from {}", a.until, a.from);
    }
    check_output(a.csv.as_deref(), a.force)?;
    let store = open(&a.data_dir, false)?;
    let found = all_irregular(&store, a.kind, a.from.start(), end_of(a.until))?;
    let rows: Vec<Record> = found.iter().map(Record::from).collect();
    if let Some(path) = &a.csv {
        write_csv(path, a.force, &RECORD_COLUMNS, &rows)?;
    } else {
        for r in &rows {
            println!("{:<16} {}", r.subject_id.as_deref().unwrap_or("-"), line(r));
        }
    }
    eprintln!(
        "{} {} captured {} to {} (UTC, both days included)",
        rows.len(),
        a.kind.name(),
        a.from,
        a.until
    );
    Ok(())
}

/// Every record of the listing in `[from, until)`. The store pages by
/// capture time: each page after the first starts at the last capture
/// time seen, and records already listed (same time, lower or equal key)
/// are skipped.
fn all_irregular(
    store: &SqliteEncounters,
    kind: Kind,
    from: UnixMillis,
    until: UnixMillis,
) -> anyhow::Result<Vec<StoredEncounter>> {
    let pb = progress::spinner("records");
    let (mut out, mut start, mut last) = (Vec::new(), from, None::<(i64, u64)>);
    loop {
        let page = match kind {
            Kind::ExitWithoutEntry => store.exits_without_entry(start, until, MAX_PAGE),
            Kind::EntryWithoutExit => store.entries_without_exit(start, until, MAX_PAGE),
        }
        .context("listing irregular movements")?;
        let (full, before) = (page.len() == MAX_PAGE, out.len());
        for r in page {
            let at = (r.encounter.context.captured_at.0, r.record_id);
            if last.is_none_or(|l| at > l) {
                last = Some(at);
                out.push(r);
            }
        }
        pb.set_position(out.len() as u64);
        match last {
            Some((ms, _)) if full && out.len() > before => start = UnixMillis(ms),
            Some((ms, _)) if full => anyhow::bail!(
                "more than {MAX_PAGE} records captured at {ms} ms: the store cannot page past one instant"
            ),
            _ => break,
        }
    }
    pb.finish_and_clear();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header a serializer would write for `row`.
    fn serde_header<T: serde::Serialize>(row: &T) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(row).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        text.lines().next().unwrap().to_string()
    }

    #[test]
    fn the_written_headers_are_the_rows_fields() {
        let stay = facegate_core::encounter::stay_status(
            &[],
            &[],
            facegate_core::encounter::Category::Other,
            Day(0),
        );
        let report = StayReport {
            subject_id: "S1".into(),
            category: None,
            status: stay,
        };
        assert_eq!(
            serde_header(&OverstayRow::from(&report)),
            OVERSTAY_COLUMNS.join(",")
        );
        let record = Record::example();
        assert_eq!(serde_header(&record), RECORD_COLUMNS.join(","));
    }
}
