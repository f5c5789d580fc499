//! The retention report: for each store under a data directory and each
//! category, the oldest item and whether everything is inside the policy,
//! read from the files themselves (`facegate-index retention-report`). Run
//! it with the server stopped: the stores are held by one process.

use std::path::Path;

use serde::Serialize;

use super::policy::{Event, RetentionPolicy};
use crate::clock::UnixMillis;
use crate::encounter::{
    Category, Day, EncounterError, EncounterStore, SqliteEncounters, stay_status,
};
use crate::manifest::{ListQuery, ManifestStore};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// The store: `encounters`, `manifests`, `audit`.
    pub store: &'static str,
    /// The category (or kind) the line is about.
    pub category: String,
    /// The oldest item's time (Unix ms), when there is any.
    pub oldest_unix_ms: Option<i64>,
    /// Items past their period that a purge has not removed yet.
    pub overdue: u64,
    /// The rule, in words.
    pub rule: String,
}

impl Line {
    /// Whether everything of this line is inside the policy.
    pub fn inside(&self) -> bool {
        self.overdue == 0
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The encounter store could not be read (or a server holds it).
    #[error("encounters: {0}")]
    Encounters(#[from] EncounterError),
    /// The manifest store could not be read (or a server holds it).
    #[error("manifests: {0}")]
    Manifests(#[from] crate::manifest::StoreError),
    /// The audit trail could not be read.
    #[error("audit trail: {0}")]
    Audit(#[from] crate::audit::AuditError),
}

/// The report of `data_dir` (audit trail in `audit_dir`) at `now`.
pub fn report(
    data_dir: &Path,
    audit_dir: &Path,
    policy: &RetentionPolicy,
    now: UnixMillis,
) -> Result<Vec<Line>, ReportError> {
    let mut lines = Vec::new();
    let encounters = data_dir.join("encounters");
    if encounters
        .join(crate::encounter::sqlite_store::FILE_NAME)
        .exists()
    {
        let store = SqliteEncounters::open(&encounters)?;
        lines.extend(encounter_lines(store.as_ref(), policy, now)?);
    }
    if data_dir.join(crate::manifest::FILE_NAME).exists() {
        lines.push(manifest_line(&ManifestStore::open(data_dir)?, now)?);
    }
    if audit_dir.exists() {
        lines.push(audit_line(audit_dir, policy, now)?);
    }
    Ok(lines)
}

fn rule_words(keep: std::time::Duration, from: Event) -> String {
    let from = match from {
        Event::Recorded => "the record",
        Event::Exit => "the exit",
    };
    format!("{} after {from}", humantime::format_duration(keep))
}

/// Per category: the oldest encounter, and how many a purge would erase.
fn encounter_lines(
    store: &dyn EncounterStore,
    policy: &RetentionPolicy,
    now: UnixMillis,
) -> Result<Vec<Line>, EncounterError> {
    let rules = &policy.encounters;
    let oldest = store.oldest()?;
    let mut categories: Vec<Option<Category>> = Category::ALL.into_iter().map(Some).collect();
    categories.push(None);
    let overdue = overdue_by_category(store, policy, now)?;
    let mut lines: Vec<Line> = categories
        .into_iter()
        .map(|c| {
            let rule = rules.for_category(c);
            Line {
                store: "encounters",
                category: c.map_or("unknown", Category::name).to_string(),
                oldest_unix_ms: oldest
                    .by_category
                    .iter()
                    .find(|(k, _)| *k == c)
                    .map(|(_, t)| t.0),
                overdue: overdue.iter().filter(|k| **k == c).count() as u64,
                rule: rule_words(rule.keep, rule.from),
            }
        })
        .collect();
    let no_match_cutoff = now.minus(rules.no_match.keep);
    lines.push(Line {
        store: "encounters",
        category: "no_match".into(),
        oldest_unix_ms: oldest.unnamed.map(|t| t.0),
        overdue: u64::from(oldest.unnamed.is_some_and(|t| t < no_match_cutoff)),
        rule: rule_words(rules.no_match.keep, rules.no_match.from),
    });
    Ok(lines)
}

/// One entry per encounter past its period (by the purge's own rules),
/// labelled with its subject's category.
fn overdue_by_category(
    store: &dyn EncounterStore,
    policy: &RetentionPolicy,
    now: UnixMillis,
) -> Result<Vec<Option<Category>>, EncounterError> {
    let rules = &policy.encounters;
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.subjects_before(now, after.as_deref(), 0)?;
        for id in &page.subject_ids {
            let traveller = store.traveller(id)?;
            let category = traveller.as_ref().map(|t| t.category);
            let rule = rules.for_category(category);
            let history = store.history(id)?;
            let expired = match rule.from {
                Event::Recorded => {
                    let cutoff = now.minus(rule.keep);
                    history
                        .iter()
                        .filter(|e| e.encounter.recorded_at < cutoff)
                        .count()
                }
                Event::Exit => {
                    let movements = store.movements(id, UnixMillis(i64::MAX))?;
                    let admissions = traveller.as_ref().map_or(&[][..], |t| &t.admissions[..]);
                    let status = stay_status(
                        &movements,
                        admissions,
                        category.unwrap_or(Category::Other),
                        Day::of(now),
                    );
                    let mut up_to = None;
                    for stay in &status.stays {
                        let Some(exit) = stay.exit_at else { continue };
                        let keep = if stay.days_over > 0 {
                            rules.overstayer.keep
                        } else {
                            rule.keep
                        };
                        if exit.plus(keep) > now {
                            break;
                        }
                        up_to = Some(exit);
                    }
                    up_to.map_or(0, |u| {
                        history
                            .iter()
                            .filter(|e| e.encounter.context.captured_at <= u)
                            .count()
                    })
                }
            };
            out.extend(std::iter::repeat_n(category, expired));
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}

/// Manifests: the earliest window end held, and how many have ended.
fn manifest_line(
    store: &ManifestStore,
    now: UnixMillis,
) -> Result<Line, crate::manifest::StoreError> {
    let mut oldest: Option<i64> = None;
    let mut overdue = 0;
    let mut after = None;
    loop {
        let page = store.list(&ListQuery {
            port: None,
            after: after.clone(),
            limit: 0,
        })?;
        for m in &page.manifests {
            let until = m.header.valid_until;
            oldest = Some(oldest.map_or(until.0, |o| o.min(until.0)));
            overdue += u64::from(until <= now);
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    Ok(Line {
        store: "manifests",
        category: "manifest".into(),
        oldest_unix_ms: oldest,
        overdue,
        rule: "purged when the window ends (oldest: the earliest window end held)".into(),
    })
}

/// The audit trail: its oldest record, and whether it is older than the
/// longest data period plus the audit period.
fn audit_line(
    dir: &Path,
    policy: &RetentionPolicy,
    now: UnixMillis,
) -> Result<Line, crate::audit::AuditError> {
    let keep = policy.longest_encounter_keep() + policy.audit.keep;
    let cutoff = now.minus(keep);
    let mut oldest: Option<i64> = None;
    let mut overdue = 0;
    let summary = crate::audit::read_dir(dir, &mut |r| {
        let t = i64::try_from(r.event.time_unix_ms).unwrap_or(i64::MAX);
        oldest = Some(oldest.map_or(t, |o| o.min(t)));
        overdue += u64::from(UnixMillis(t) < cutoff);
    })?;
    // Files an interrupted expiry left are covered by its checkpoint (so
    // past their period) and still on disk until the next expiry.
    overdue += summary
        .expired_files_left
        .iter()
        .map(|(_, n)| n)
        .sum::<u64>();
    Ok(Line {
        store: "audit",
        category: "record".into(),
        oldest_unix_ms: oldest,
        overdue,
        rule: format!(
            "{} (the longest data period plus {})",
            humantime::format_duration(keep),
            humantime::format_duration(policy.audit.keep)
        ),
    })
}
