//! The encounter store's retention purge, over any [`EncounterStore`]: each
//! subject's records are erased when their rule's period has passed, then
//! traveller files with nothing left, then the WAL is checkpointed so the
//! erased bytes leave the disk.
//!
//! - A rule counted from the record (a citizen's 12 hours): encounters
//!   recorded before `now - keep` go.
//! - A rule counted from the exit: a subject's stays are rebuilt (the same
//!   rules as reports use); walking them in order, each stay that ended
//!   with a recorded exit at least `keep` ago (the overstayer rule's
//!   `keep` when the stay ran over) lets go of every encounter captured up
//!   to that exit. The walk stops at the first stay still inside its
//!   period, so a later short rule never erases an earlier overstay. A
//!   stay with no exit yet (still in the country) keeps everything from
//!   its entry on.
//! - Encounters naming nobody go by the `no_match` rule, from the record.

use super::policy::{EncounterRules, Event, Rule};
use crate::clock::UnixMillis;
use crate::encounter::{
    Category, Day, EncounterError, EncounterStore, Erasure, Traveller, stay_status,
};

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Subjects whose records were examined.
    pub subjects_examined: u64,
    /// Encounter records erased.
    pub encounters_erased: u64,
    /// Traveller files erased (nothing of theirs was left).
    pub travellers_erased: u64,
}

/// Purges what `rules` expire at `now` and checkpoints the store.
pub fn purge_encounters(
    store: &dyn EncounterStore,
    rules: &EncounterRules,
    now: UnixMillis,
) -> Result<PurgeReport, EncounterError> {
    let mut report = PurgeReport {
        encounters_erased: store.erase(Erasure::UnnamedRecordedBefore {
            before: now.minus(rules.no_match.keep),
        })?,
        ..PurgeReport::default()
    };
    // Nothing captured within the shortest period can have expired.
    let shortest = shortest_keep(rules);
    let mut after: Option<String> = None;
    loop {
        let page = store.subjects_before(now.minus(shortest), after.as_deref(), 0)?;
        for id in &page.subject_ids {
            let (encounters, files) = purge_subject(store, rules, id, now)?;
            report.subjects_examined += 1;
            report.encounters_erased += encounters;
            report.travellers_erased += files;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    store.checkpoint()?;
    Ok(report)
}

fn shortest_keep(r: &EncounterRules) -> std::time::Duration {
    [
        r.citizen,
        r.lawful_permanent_resident,
        r.non_immigrant_visa,
        r.visa_exempt,
        r.other,
        r.unknown,
        r.overstayer,
    ]
    .iter()
    .map(|r| r.keep)
    .min()
    .unwrap_or_default()
}

/// One subject: (encounters erased, traveller files erased).
fn purge_subject(
    store: &dyn EncounterStore,
    rules: &EncounterRules,
    id: &str,
    now: UnixMillis,
) -> Result<(u64, u64), EncounterError> {
    let traveller = store.traveller(id)?;
    let category = traveller.as_ref().map(|t| t.category);
    let rule = rules.for_category(category);
    let erasure = match rule.from {
        Event::Recorded => Some(Erasure::RecordedBefore {
            subject_id: id.to_string(),
            before: now.minus(rule.keep),
        }),
        Event::Exit => {
            last_expired_exit(store, rules, rule, traveller.as_ref(), id, now)?.map(|up_to| {
                Erasure::CapturedUpTo {
                    subject_id: id.to_string(),
                    up_to,
                }
            })
        }
    };
    let encounters = match erasure {
        Some(e) => store.erase(e)?,
        None => 0,
    };
    let files = store.erase(Erasure::UnusedTraveller {
        subject_id: id.to_string(),
        updated_before: now.minus(rule.keep),
    })?;
    Ok((encounters, files))
}

/// The latest exit up to which every stay's period has passed at `now`.
fn last_expired_exit(
    store: &dyn EncounterStore,
    rules: &EncounterRules,
    rule: Rule,
    traveller: Option<&Traveller>,
    id: &str,
    now: UnixMillis,
) -> Result<Option<UnixMillis>, EncounterError> {
    let movements = store.movements(id, UnixMillis(i64::MAX))?;
    let admissions = traveller.map_or(&[][..], |t| t.admissions.as_slice());
    let category = traveller.map_or(Category::Other, |t| t.category);
    let status = stay_status(&movements, admissions, category, Day::of(now));
    let mut last = None;
    for stay in &status.stays {
        let Some(exit) = stay.exit_at else {
            continue; // an entry whose exit was never captured: judged with the next exit
        };
        let keep = if stay.days_over > 0 {
            rules.overstayer.keep
        } else {
            rule.keep
        };
        if exit.plus(keep) > now {
            break;
        }
        last = Some(exit);
    }
    Ok(last)
}
