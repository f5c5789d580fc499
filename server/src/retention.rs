//! Retention as the server runs it: the policy loaded at start-up (a bad
//! file stops the start), and a timer that purges the encounter store by
//! it on the blocking pool, then exports the oldest item of each category
//! beside its bound, so that a purge that stops working raises an alert
//! (`FacegateRetentionOverdue`) instead of going unnoticed.
//!
//! Citizens' capture templates are removed from the gallery by the same
//! timer (their bytes leave at the next scheduled compaction,
//! `crate::compaction`); manifests expire with their window
//! (`serve::purge_manifests`); after each purge the audit trail's files
//! older than the longest encounter period plus the audit period are
//! expired on the audit thread (`expire_audit`; docs/privacy.md says what
//! is and is not erased).

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use facegate_core::clock::{Clock, UnixMillis};
use facegate_core::encounter::{Category, Oldest};
use facegate_core::live::{ChangeError, CommitError};
use facegate_core::retention::{Event, PurgeReport, RetentionPolicy, Rule, purge_encounters};
use facegate_core::wal::Change;

use crate::audit::Auditor;
use crate::metrics::Metrics;
use crate::served::ServedGallery;

/// The policy of `path`, or the documented defaults when none is given.
pub fn load(path: Option<&Path>) -> anyhow::Result<RetentionPolicy> {
    match path {
        Some(p) => RetentionPolicy::load(p).context("reading the retention policy"),
        None => Ok(RetentionPolicy::default()),
    }
}

/// The category label of metrics and reports.
pub fn category_label(c: Option<Category>) -> &'static str {
    c.map_or("unknown", Category::name)
}

/// Every `every`, purges the encounters `policy` expires (by the state's
/// clock) and refreshes the retention metrics. Holds the state weakly, as
/// the manifest purge does.
pub async fn purge_on_timer(
    state: Weak<ServedGallery>,
    auditor: Arc<Auditor>,
    policy: Arc<RetentionPolicy>,
    every: Duration,
) {
    let bounds = bounds(&policy, every);
    if let Some(s) = state.upgrade() {
        for (category, bound) in &bounds {
            let labels = ["encounters", *category];
            s.metrics()
                .retention_bound_seconds
                .with_label_values(&labels)
                .set(bound.as_secs_f64());
            s.metrics()
                .retention_overdue_seconds
                .with_label_values(&labels)
                .set(0.0);
        }
    }
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(state) = state.upgrade() else { return };
        let (s, p) = (Arc::clone(&state), Arc::clone(&policy));
        let ran = tokio::task::spawn_blocking(move || purge_once(&s, &p)).await;
        let metrics = state.metrics();
        match ran {
            Ok(Ok((report, oldest))) => {
                let now = state.encounters().clock().now();
                record(metrics, &report, &oldest, now, &bounds);
            }
            Ok(Err(e)) => {
                metrics.retention_runs.with_label_values(&["error"]).inc();
                tracing::error!(error = format!("{e:#}"), "the retention purge failed");
            }
            Err(e) => {
                metrics.retention_runs.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, "the retention purge task failed");
            }
        }
        let clock = Arc::clone(state.encounters().clock());
        expire_audit(&auditor, clock, metrics, &policy).await;
    }
}

/// Every `every`, expires the audit trail's files older than the longest
/// data period plus the audit period: the router's timer, whose trail is its only
/// store of personal data (the shards purge the shared encounter store).
pub async fn expire_audit_on_timer(
    auditor: Arc<Auditor>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    policy: Arc<RetentionPolicy>,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        expire_audit(&auditor, Arc::clone(&clock), &metrics, &policy).await;
    }
}

/// Expires the audit trail's files older than the longest data period
/// plus the audit period, behind a checkpoint (on the audit thread).
async fn expire_audit(
    auditor: &Auditor,
    clock: Arc<dyn Clock>,
    metrics: &Metrics,
    policy: &RetentionPolicy,
) {
    let keep = policy.longest_encounter_keep() + policy.audit.keep;
    let cutoff = clock.now().minus(keep);
    match auditor.expire_before(cutoff, clock).await {
        Ok(Some(report)) if report.records() > 0 => {
            metrics
                .retention_erased
                .with_label_values(&["audit", "record"])
                .inc_by(report.records());
        }
        Ok(_) => {}
        Err(reason) => {
            metrics.retention_runs.with_label_values(&["error"]).inc();
            tracing::error!(%reason, "expiring old audit files failed");
        }
    }
}

/// One purge: citizens' capture templates out of the gallery, then the
/// encounter store; and the store's oldest items after it.
pub fn purge_once(
    state: &ServedGallery,
    policy: &RetentionPolicy,
) -> anyhow::Result<(PurgeReport, Oldest)> {
    let encounters = state.encounters();
    let now = encounters.clock().now();
    let removed = remove_citizens_templates(state, policy, now)?;
    if removed > 0 {
        state
            .metrics()
            .retention_erased
            .with_label_values(&["gallery", "citizen_subject"])
            .inc_by(removed);
        tracing::info!(
            subjects = removed,
            "citizens' capture templates removed from the gallery"
        );
    }
    let store = encounters.readable();
    // A shared store is purged by one node at a time; the others only
    // remove their own gallery's citizens (above) and report its oldest.
    let report = match store.lead_purge()? {
        Some(_lead) => {
            let report = purge_encounters(store, policy, now)?;
            let noticed = i64::try_from(report.overstays_noticed).unwrap_or(i64::MAX);
            state.metrics().retention_overstays_noticed.set(noticed);
            report
        }
        None => {
            tracing::debug!("another node is purging the shared encounter store");
            PurgeReport::default()
        }
    };
    Ok((report, store.oldest()?))
}

/// Removes from the gallery every citizen whose file was last set more than
/// the capture-template period ago (their bytes leave at the next scheduled
/// compaction); the subjects removed.
fn remove_citizens_templates(
    state: &ServedGallery,
    policy: &RetentionPolicy,
    now: UnixMillis,
) -> anyhow::Result<u64> {
    let store = state.encounters().readable();
    let cutoff = now.minus(policy.capture_templates.citizen.keep);
    let mut after: Option<String> = None;
    let mut removed = 0;
    loop {
        let page = store.travellers_set_before(Category::Citizen, cutoff, after.as_deref(), 0)?;
        for id in &page.subject_ids {
            if state.generation().live().find_live(id)?.is_none() {
                continue;
            }
            let change = Change::Remove {
                subject_id: id.clone(),
            };
            match state.commit(&change) {
                Ok(_) => removed += 1,
                // Removed meanwhile (an erasure, the back office): done.
                Err(CommitError::Change(ChangeError::UnknownSubject)) => {}
                Err(e) => return Err(e).context("removing a citizen's templates"),
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(removed),
        }
    }
}

fn record(
    metrics: &Metrics,
    report: &PurgeReport,
    oldest: &Oldest,
    now: UnixMillis,
    bounds: &[(&'static str, Duration)],
) {
    metrics.retention_runs.with_label_values(&["ok"]).inc();
    let erased = |kind: &str, n: u64| {
        metrics
            .retention_erased
            .with_label_values(&["encounters", kind])
            .inc_by(n);
    };
    erased("encounter", report.encounters_erased);
    erased("traveller", report.travellers_erased);
    if report.encounters_erased + report.travellers_erased > 0 {
        tracing::info!(
            encounters = report.encounters_erased,
            travellers = report.travellers_erased,
            subjects_examined = report.subjects_examined,
            "retention purge erased expired records"
        );
    }
    metrics.retention_oldest_seconds.reset();
    let age = |at: UnixMillis| (now.0 - at.0).max(0) as f64 / 1e3;
    for (category, at) in &oldest.by_category {
        metrics
            .retention_oldest_seconds
            .with_label_values(&["encounters", category_label(*category)])
            .set(age(*at));
    }
    if let Some(at) = oldest.unnamed {
        metrics
            .retention_oldest_seconds
            .with_label_values(&["encounters", "no_match"])
            .set(age(at));
    }
    for (category, bound) in bounds {
        let labels = ["encounters", *category];
        let aged = metrics
            .retention_oldest_seconds
            .get_metric_with_label_values(&labels)
            .map_or(0.0, |g| g.get());
        let over = (aged - bound.as_secs_f64()).max(0.0);
        metrics
            .retention_overdue_seconds
            .with_label_values(&labels)
            .set(over);
    }
}

/// The bound of every rule counted from the record, by category label:
/// its period plus the purge interval. A rule counted from an exit has no
/// age bound (a traveller still in the country keeps their records).
fn bounds(policy: &RetentionPolicy, every: Duration) -> Vec<(&'static str, Duration)> {
    let e = &policy.encounters;
    let mut rules: Vec<(&'static str, Rule)> = Category::ALL
        .into_iter()
        .map(|c| (c.name(), e.for_category(Some(c))))
        .collect();
    rules.push(("unknown", e.unknown));
    rules.push(("no_match", e.no_match));
    rules
        .into_iter()
        .filter(|(_, r)| r.from == Event::Recorded)
        .map(|(c, r)| (c, r.keep + every))
        .collect()
}
