//! Reconciliation over any [`EncounterStore`]: a subject's stay as of a
//! day, the overstayers as of a day, and a manifest's travellers against
//! the captures recorded on it. Written against the store interface, so the
//! central PostgreSQL store (a later issue) gets the same reports.

use std::collections::BTreeSet;

use super::day::Day;
use super::model::{Category, Decision};
use super::stay::{StayStatus, stay_status};
use super::store::{EncounterError, EncounterStore, MAX_PAGE, StoredEncounter, end_of};

/// A subject's stay as of a day, with the category it was judged under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StayReport {
    /// The subject.
    pub subject_id: String,
    /// Their category; `None` when no traveller file was recorded (their
    /// stays then have no admission, reported as an anomaly).
    pub category: Option<Category>,
    /// The status.
    pub status: StayStatus,
}

/// The stay of `subject_id` as of the end of `as_of`.
pub fn stay_of(
    store: &dyn EncounterStore,
    subject_id: &str,
    as_of: Day,
) -> Result<StayReport, EncounterError> {
    super::model::check_subject(subject_id)?;
    let traveller = store.traveller(subject_id)?;
    let movements = store.movements(subject_id, end_of(as_of))?;
    let (category, admissions) = match &traveller {
        Some(t) => (Some(t.category), t.admissions.as_slice()),
        None => (None, &[][..]),
    };
    let status = stay_status(
        &movements,
        admissions,
        category.unwrap_or(Category::Other),
        as_of,
    );
    Ok(StayReport {
        subject_id: subject_id.to_string(),
        category,
        status,
    })
}

/// One page of overstayers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverstayPage {
    /// Everyone in the country on the as-of day past their authorised
    /// stay, in subject id order.
    pub overstays: Vec<StayReport>,
    /// The cursor for the next page (`after`); `None` at the end.
    pub next: Option<String>,
}

/// Everyone present at the end of `as_of` with days over, after `after`
/// in subject id order, at most `limit` (0 or more than [`MAX_PAGE`] mean
/// [`MAX_PAGE`]). Only subjects whose last movement is an entry are judged,
/// a page of the store's presence list at a time.
pub fn overstays(
    store: &dyn EncounterStore,
    as_of: Day,
    after: Option<&str>,
    limit: usize,
) -> Result<OverstayPage, EncounterError> {
    let limit = if limit == 0 || limit > MAX_PAGE {
        MAX_PAGE
    } else {
        limit
    };
    let mut overstays = Vec::new();
    let mut cursor = after.map(str::to_owned);
    loop {
        let page = store.present_subjects(end_of(as_of), cursor.as_deref(), MAX_PAGE)?;
        for id in &page.subject_ids {
            let report = stay_of(store, id, as_of)?;
            if report.status.days_over > 0 {
                overstays.push(report);
                if overstays.len() == limit {
                    return Ok(OverstayPage {
                        overstays,
                        next: Some(id.clone()),
                    });
                }
            }
        }
        cursor = page.next;
        if cursor.is_none() {
            return Ok(OverstayPage {
                overstays,
                next: None,
            });
        }
    }
}

/// A manifest's travellers against the captures recorded on it.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestReconciliation {
    /// Listed travellers matched (or confirmed by an officer) by a capture
    /// on this manifest, in id order.
    pub matched: Vec<String>,
    /// Listed travellers with no such capture, in id order.
    pub no_show: Vec<String>,
    /// Captures on this manifest that named nobody listed (no match, or an
    /// officer's decision naming someone else), in capture order.
    pub not_matched: Vec<StoredEncounter>,
}

/// Reconciles manifest `manifest_id`, which lists `subject_ids`, with the
/// encounters recorded against it. (The list is passed, not the manifest,
/// since behind a router each shard holds only its own travellers.)
pub fn reconcile_manifest(
    store: &dyn EncounterStore,
    manifest_id: &str,
    subject_ids: &[String],
) -> Result<ManifestReconciliation, EncounterError> {
    let listed: BTreeSet<&str> = subject_ids.iter().map(String::as_str).collect();
    let mut matched = BTreeSet::new();
    let mut not_matched = Vec::new();
    for e in store.manifest_encounters(manifest_id)? {
        let named = match (&e.encounter.decision, &e.encounter.subject_id) {
            (Decision::NoMatch, _) | (_, None) => None,
            (_, Some(s)) => listed.get(s.as_str()).copied(),
        };
        match named {
            Some(s) => {
                matched.insert(s);
            }
            None => not_matched.push(e),
        }
    }
    let no_show = listed.difference(&matched).map(|s| s.to_string()).collect();
    Ok(ManifestReconciliation {
        matched: matched.into_iter().map(str::to_owned).collect(),
        no_show,
        not_matched,
    })
}
