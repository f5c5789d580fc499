//! `encounters history` and `encounters stay`: one subject at a time.

use std::path::PathBuf;

use anyhow::Context;
use facegate_core::encounter::{
    Day, EncounterStore, Stay, StayKind, StayReport, StayRule, StoredEncounter, stay_of,
};

use super::{open, today, utc};

/// Arguments of `encounters history`.
#[derive(clap::Args)]
pub struct HistoryArgs {
    /// The server's data directory (`--data-dir`).
    pub data_dir: PathBuf,
    /// The subject.
    pub subject: String,
    /// Print JSON (an array of records) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `encounters stay`.
#[derive(clap::Args)]
pub struct StayArgs {
    /// The server's data directory (`--data-dir`).
    pub data_dir: PathBuf,
    /// The subject.
    pub subject: String,
    /// The day (YYYY-MM-DD, UTC) whose end the status is taken at; today by default.
    #[arg(long)]
    pub as_of: Option<Day>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The columns of a record in CSV: [`Record`]'s fields.
pub(super) const RECORD_COLUMNS: [&str; 19] = [
    "record_id",
    "encounter_id",
    "captured_at",
    "captured_at_unix_ms",
    "direction",
    "port",
    "lane",
    "carrier",
    "voyage",
    "method",
    "decision",
    "subject_id",
    "score",
    "threshold",
    "manifest_id",
    "principal",
    "generation",
    "recorded_at_unix_ms",
    "changes",
];

/// A record as printed: the encounter's fields, flat, with its number of
/// changes (officers' decisions and corrections).
#[derive(serde::Serialize)]
pub(super) struct Record {
    pub record_id: u64,
    pub encounter_id: String,
    pub captured_at: String,
    pub captured_at_unix_ms: i64,
    pub direction: &'static str,
    pub port: String,
    pub lane: String,
    pub carrier: String,
    pub voyage: String,
    pub method: &'static str,
    pub decision: &'static str,
    pub subject_id: Option<String>,
    pub score: Option<f32>,
    pub threshold: f32,
    pub manifest_id: Option<String>,
    pub principal: String,
    pub generation: u64,
    pub recorded_at_unix_ms: i64,
    pub changes: usize,
}

#[cfg(test)]
impl Record {
    /// Any record, for checking the CSV columns.
    pub(super) fn example() -> Record {
        Record {
            record_id: 1,
            encounter_id: "e".into(),
            captured_at: String::new(),
            captured_at_unix_ms: 0,
            direction: "entry",
            port: "P".into(),
            lane: String::new(),
            carrier: String::new(),
            voyage: String::new(),
            method: "identify",
            decision: "match",
            subject_id: Some("S1".into()),
            score: Some(0.5),
            threshold: 0.35,
            manifest_id: None,
            principal: String::new(),
            generation: 1,
            recorded_at_unix_ms: 0,
            changes: 0,
        }
    }
}

impl From<&StoredEncounter> for Record {
    fn from(r: &StoredEncounter) -> Record {
        let (e, c) = (&r.encounter, &r.encounter.context);
        Record {
            record_id: r.record_id,
            encounter_id: c.encounter_id.clone(),
            captured_at: utc(c.captured_at),
            captured_at_unix_ms: c.captured_at.0,
            direction: c.direction.name(),
            port: c.port.clone(),
            lane: c.lane.clone(),
            carrier: c.carrier.clone(),
            voyage: c.voyage.clone(),
            method: e.method.name(),
            decision: e.decision.name(),
            subject_id: e.subject_id.clone(),
            score: e.score,
            threshold: e.threshold,
            manifest_id: e.manifest_id.clone(),
            principal: e.principal.clone(),
            generation: e.generation,
            recorded_at_unix_ms: e.recorded_at.0,
            changes: r.changes.len(),
        }
    }
}

/// One line of a record in a text listing.
pub(super) fn line(r: &Record) -> String {
    let score = r.score.map_or("-".to_string(), |s| format!("{s:.3}"));
    format!(
        "{:>10}  {}  {:<5}  {:<14} {:<5} {:<10} {:<9} {:<16} {:>6} / {:.2}  {}{}",
        r.record_id,
        r.captured_at,
        r.direction,
        r.port,
        r.lane,
        r.voyage,
        r.method,
        r.decision,
        score,
        r.threshold,
        r.manifest_id.as_deref().unwrap_or("-"),
        if r.changes > 0 { "  (corrected)" } else { "" },
    )
}

pub fn history(a: HistoryArgs) -> anyhow::Result<()> {
    let store = open(&a.data_dir, false)?;
    let records = store
        .history(&a.subject)
        .with_context(|| format!("reading the history of {}", a.subject))?;
    let rows: Vec<Record> = records.iter().map(Record::from).collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("{}: {} encounters", a.subject, rows.len());
    for r in &rows {
        println!("{}", line(r));
    }
    Ok(())
}

/// A stay rule in words: its name, with the day of an admit-until rule.
pub(super) fn rule(r: Option<StayRule>) -> String {
    match r {
        Some(StayRule::AdmittedUntil(d)) => format!("admitted_until {d}"),
        Some(r) => r.name().to_string(),
        None => "none".to_string(),
    }
}

fn kind(k: StayKind) -> &'static str {
    match k {
        StayKind::Closed => "closed",
        StayKind::Open => "open",
        StayKind::ExitMissing => "exit missing",
        StayKind::EntryMissing => "entry missing",
    }
}

/// A stay as printed.
#[derive(serde::Serialize)]
struct StayRow {
    kind: &'static str,
    first_day: String,
    last_day: String,
    rule: String,
    days_over: u32,
}

impl From<&Stay> for StayRow {
    fn from(s: &Stay) -> StayRow {
        StayRow {
            kind: kind(s.kind),
            first_day: s.first_day.to_string(),
            last_day: s.last_day.to_string(),
            rule: rule(s.rule),
            days_over: s.days_over,
        }
    }
}

/// The stay status as printed.
#[derive(serde::Serialize)]
struct StayOut {
    subject_id: String,
    category: Option<&'static str>,
    as_of: String,
    in_country_since: Option<String>,
    days_used_in_180: u32,
    days_remaining_in_180: u32,
    admitted_until: Option<String>,
    days_over: u32,
    past_days_over: u32,
    rule: String,
    stays: Vec<StayRow>,
    anomalies: Vec<String>,
}

impl From<&StayReport> for StayOut {
    fn from(r: &StayReport) -> StayOut {
        let s = &r.status;
        StayOut {
            subject_id: r.subject_id.clone(),
            category: r.category.map(|c| c.name()),
            as_of: s.as_of.to_string(),
            in_country_since: s.in_country_since.map(|d| d.to_string()),
            days_used_in_180: s.days_used_in_180,
            days_remaining_in_180: s.days_remaining_in_180,
            admitted_until: s.admitted_until.map(|d| d.to_string()),
            days_over: s.days_over,
            past_days_over: s.days_over_in_past_stays,
            rule: rule(s.rule),
            stays: s.stays.iter().map(StayRow::from).collect(),
            anomalies: s.anomalies.iter().map(ToString::to_string).collect(),
        }
    }
}

pub fn stay(a: StayArgs) -> anyhow::Result<()> {
    let store = open(&a.data_dir, false)?;
    let as_of = a.as_of.unwrap_or_else(today);
    let report = stay_of(store.as_ref(), &a.subject, as_of)
        .with_context(|| format!("the stay of {} as of {as_of}", a.subject))?;
    let out = StayOut::from(&report);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_stay(&out);
    Ok(())
}

fn print_stay(o: &StayOut) {
    let none = || "-".to_string();
    println!("subject           {}", o.subject_id);
    println!(
        "category          {}",
        o.category.unwrap_or("no traveller file")
    );
    println!("as of             {} (end of day, UTC)", o.as_of);
    println!(
        "in country since  {}",
        o.in_country_since
            .clone()
            .unwrap_or_else(|| "not in the country".into())
    );
    println!(
        "days used in 180  {} ({} remaining of 90)",
        o.days_used_in_180, o.days_remaining_in_180
    );
    println!("rule              {}", o.rule);
    println!(
        "admitted until    {}",
        o.admitted_until.clone().unwrap_or_else(none)
    );
    println!("days over         {}", o.days_over);
    println!("past days over    {}", o.past_days_over);
    println!("stays             {}", o.stays.len());
    for s in &o.stays {
        println!(
            "  {:<13} {} .. {}  {:<26} over {}",
            s.kind, s.first_day, s.last_day, s.rule, s.days_over
        );
    }
    for a in &o.anomalies {
        println!("anomaly           {a}");
    }
}
