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
//!   its entry on. An overstay under the 90-in-180 rule that rests on
//!   earlier stays' days (erasing them would end it) keeps them until its
//!   own exit plus period, or while it has no exit ([`erasure_schedule`]).
//! - Encounters naming nobody go by the `no_match` rule, from the record.
//!
//! The same schedule ([`erasure_schedule`]) says which overstayers' records
//! the purge will erase within the notice period
//! ([`super::policy::NoticeRules`]): [`scheduled_erasures`] lists them, and
//! every purge counts them, so that they are announced before they go.

use std::time::Duration;

use super::policy::{EncounterRules, Event, RetentionPolicy};
use crate::clock::UnixMillis;
use crate::encounter::store::{Movement, page_limit};
use crate::encounter::{
    Category, Day, EncounterError, EncounterStore, Erasure, Stay, StayRule, Traveller, WINDOW_DAYS,
    stay_status,
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
    /// Overstays whose records are scheduled for erasure within the notice
    /// period (listed by [`scheduled_erasures`]).
    pub overstays_noticed: u64,
}

/// Purges what `policy` expires at `now` and checkpoints the store,
/// counting the overstays whose erasure is within its notice period.
pub fn purge_encounters(
    store: &dyn EncounterStore,
    policy: &RetentionPolicy,
    now: UnixMillis,
) -> Result<PurgeReport, EncounterError> {
    let rules = &policy.encounters;
    let notice = policy.notices.overstayer_erasure;
    let mut report = PurgeReport {
        encounters_erased: store.erase(Erasure::UnnamedRecordedBefore {
            before: now.minus(rules.no_match.keep),
        })?,
        ..PurgeReport::default()
    };
    // Nothing captured within the shortest period can have expired. (Every
    // subject with a traveller file is a candidate too, and only they can
    // have an overstay to notice.)
    let shortest = shortest_keep(rules);
    let mut after: Option<String> = None;
    loop {
        let page = store.subjects_before(now.minus(shortest), after.as_deref(), 0)?;
        for id in &page.subject_ids {
            let purged = purge_subject(store, rules, notice, id, now)?;
            report.subjects_examined += 1;
            report.encounters_erased += purged.encounters;
            report.travellers_erased += purged.travellers;
            report.overstays_noticed += purged.noticed;
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

/// Records captured after this cannot belong to an overstay whose erasure
/// falls within `notice` of `now` (its exit plus the overstayer period).
/// The store lists every subject with a traveller file as well, and only
/// they can have overstayed, so a listing still reads every file.
fn notice_cutoff(rules: &EncounterRules, notice: Duration, now: UnixMillis) -> UnixMillis {
    now.plus(notice).minus(rules.overstayer.keep)
}

/// What the purge did to one subject.
struct Purged {
    /// Its encounter records erased.
    encounters: u64,
    /// Its traveller file, when erased (nothing of theirs was left).
    travellers: u64,
    /// Its overstays noticed (erased within the notice period).
    noticed: u64,
}

/// Erases what the subject's rule expires at `now`: records older than
/// its period, or those of the stays whose erasure is due; then its file
/// if nothing is left.
fn purge_subject(
    store: &dyn EncounterStore,
    rules: &EncounterRules,
    notice: Duration,
    id: &str,
    now: UnixMillis,
) -> Result<Purged, EncounterError> {
    let traveller = store.traveller(id)?;
    let rule = rules.for_category(traveller.as_ref().map(|t| t.category));
    let (erasure, noticed) = match erasure_schedule(store, rules, traveller.as_ref(), id, now)? {
        None => {
            let erasure = Erasure::RecordedBefore {
                subject_id: id.to_string(),
                before: now.minus(rule.keep),
            };
            (Some(erasure), 0)
        }
        Some(schedule) => {
            let noticed = noticed(&schedule, notice, now).count() as u64;
            let erasure = last_expired_exit(&schedule, now).map(|up_to| Erasure::CapturedUpTo {
                subject_id: id.to_string(),
                up_to,
            });
            (erasure, noticed)
        }
    };
    let encounters = match erasure {
        Some(e) => store.erase(e)?,
        None => 0,
    };
    let travellers = store.erase(Erasure::UnusedTraveller {
        subject_id: id.to_string(),
        updated_before: now.minus(rule.keep),
    })?;
    Ok(Purged {
        encounters,
        travellers,
        noticed,
    })
}

/// When the purge may erase the records of one of a subject's stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StayErasure {
    /// The exit that ended the stay: the records captured up to it go.
    pub exit_at: UnixMillis,
    /// Days the stay ran over its rule, with those of any stay before it
    /// whose exit was never captured (above 0: the overstayer period
    /// applies).
    pub days_over: u32,
    /// The first instant the purge may erase them: not before its own exit
    /// plus period, an earlier stay's (the purge erases a prefix), nor a
    /// later overstay's own exit plus period where erasing them would end
    /// that overstay (never, while it has no exit).
    pub erase_at: UnixMillis,
}

/// Each closed stay of the subject whose file is `traveller` with when
/// its records may go, in order (non-decreasing `erase_at`); the stay
/// still open keeps its records. `None` when the subject's rule counts
/// from the record, not the exit (no stays are judged).
pub fn erasure_schedule(
    store: &dyn EncounterStore,
    rules: &EncounterRules,
    traveller: Option<&Traveller>,
    id: &str,
    now: UnixMillis,
) -> Result<Option<Vec<StayErasure>>, EncounterError> {
    let rule = rules.for_category(traveller.map(|t| t.category));
    if rule.from != Event::Exit {
        return Ok(None);
    }
    let movements = store.movements(id, UnixMillis(i64::MAX))?;
    let admissions = traveller.map_or(&[][..], |t| t.admissions.as_slice());
    let category = traveller.map_or(Category::Other, |t| t.category);
    let groups = |moves: &[Movement]| {
        let status = stay_status(moves, admissions, category, Day::of(now));
        closings(&status.stays, rules.overstayer.keep, rule.keep)
    };
    let (closings, still_counting) = groups(&movements);
    // Whether erasing every record up to closing `i`'s exit would end the
    // overstay of closing `j` (of the stays after the last exit when `j`
    // is past the end). The stays after an exit are built alike with or
    // without what precedes it; only their days over can fall. Each cut's
    // stays are judged once.
    let mut after_cut: Vec<Option<(Vec<Closing>, Option<Day>)>> = Vec::new();
    after_cut.resize_with(closings.len(), || None);
    let ends_overstay = |i: usize, j: usize| {
        let (after, still) = after_cut[i].get_or_insert_with(|| {
            let cut = closings[i].erasure.exit_at;
            let rest: Vec<Movement> = movements
                .iter()
                .filter(|m| m.captured_at > cut)
                .copied()
                .collect();
            groups(&rest)
        });
        match closings.get(j) {
            Some(later) => !after
                .iter()
                .any(|c| c.erasure.exit_at == later.erasure.exit_at && c.erasure.days_over > 0),
            None => still.is_none(),
        }
    };
    Ok(Some(ordered(&closings, still_counting, ends_overstay)))
}

/// A closed stay, with the stays before it whose exit was never captured
/// (their records go with its exit).
struct Closing {
    /// At its exit plus its own period, before ordering.
    erasure: StayErasure,
    /// The group's first day counted present.
    first_day: Day,
    /// Its exit day.
    last_day: Day,
    /// Whether a stay of the group ran over the 90-in-180 rule, whose
    /// count reaches 179 days back into earlier stays.
    counts_back: bool,
}

/// The closed stays' groups; and the first day of the stays after the
/// last exit (still in the country, or exits never captured) when they
/// run over the 90-in-180 rule, whose count may reach the closed ones.
fn closings(stays: &[Stay], overstayer: Duration, keep: Duration) -> (Vec<Closing>, Option<Day>) {
    let (mut over, mut first, mut counts_back) = (0, None, false);
    let mut out = Vec::new();
    for stay in stays {
        over += stay.days_over;
        first = first.or(Some(stay.first_day));
        counts_back |= stay.days_over > 0 && stay.rule == Some(StayRule::NinetyIn180);
        let Some(exit_at) = stay.exit_at else {
            continue; // an entry whose exit was never captured: judged with the next exit
        };
        let days_over = std::mem::take(&mut over);
        let keep = if days_over > 0 { overstayer } else { keep };
        out.push(Closing {
            erasure: StayErasure {
                exit_at,
                days_over,
                erase_at: exit_at.plus(keep),
            },
            first_day: first.take().unwrap_or(stay.first_day),
            last_day: stay.last_day,
            counts_back: std::mem::take(&mut counts_back),
        });
    }
    (out, first.filter(|_| counts_back))
}

/// The erasures in order. An overstay under the 90-in-180 rule counts the
/// days of earlier stays in its window: where erasing them first would end
/// it (`ends_overstay`), its period would shrink with it (the overstayer's
/// 5 years becoming 3 at the next purge), so they are kept until its own
/// exit plus period, or for as long as it has no exit (`still_counting`:
/// the first day of the stays after the last exit, when they ran over).
/// Then no stay goes before an earlier one (the purge erases a prefix).
fn ordered(
    closings: &[Closing],
    still_counting: Option<Day>,
    mut ends_overstay: impl FnMut(usize, usize) -> bool,
) -> Vec<StayErasure> {
    let mut out: Vec<StayErasure> = closings.iter().map(|c| c.erasure).collect();
    let counting = closings
        .iter()
        .enumerate()
        .filter(|(_, c)| c.counts_back)
        .map(|(j, c)| (j, c.first_day, c.erasure.erase_at))
        .chain(still_counting.map(|day| (closings.len(), day, UnixMillis(i64::MAX))));
    for (j, first_day, later) in counting {
        let window_start = first_day.plus(1 - WINDOW_DAYS as i32);
        for (i, earlier) in closings[..j].iter().enumerate() {
            if earlier.last_day >= window_start && ends_overstay(i, j) {
                out[i].erase_at = out[i].erase_at.max(later);
            }
        }
    }
    let mut latest = UnixMillis(i64::MIN);
    for e in &mut out {
        latest = latest.max(e.erase_at);
        e.erase_at = latest;
    }
    out
}

/// The latest exit up to which every stay's period has passed at `now`.
fn last_expired_exit(schedule: &[StayErasure], now: UnixMillis) -> Option<UnixMillis> {
    schedule
        .iter()
        .take_while(|e| e.erase_at <= now)
        .last()
        .map(|e| e.exit_at)
}

/// The overstays of `schedule` whose records go within `notice` of `now`.
fn noticed(
    schedule: &[StayErasure],
    notice: Duration,
    now: UnixMillis,
) -> impl Iterator<Item = &StayErasure> {
    let until = now.plus(notice);
    schedule
        .iter()
        .filter(move |e| e.days_over > 0 && e.erase_at > now && e.erase_at <= until)
}

/// An overstay whose records the purge will erase within the notice period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledErasure {
    /// Whose.
    pub subject_id: String,
    /// The stay and when its records may go.
    pub stay: StayErasure,
}

/// A page of [`scheduled_erasures`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduledPage {
    /// This page's overstays, by subject id.
    pub erasures: Vec<ScheduledErasure>,
    /// The cursor for the next page; `None` at the end.
    pub next: Option<String>,
}

/// Overstays whose records the purge will erase after `now` and within
/// the policy's notice period, subjects in id order after `after`, at most
/// `limit` subjects (0: 1,000): what must be announced before it goes.
pub fn scheduled_erasures(
    store: &dyn EncounterStore,
    policy: &RetentionPolicy,
    now: UnixMillis,
    after: Option<&str>,
    limit: usize,
) -> Result<ScheduledPage, EncounterError> {
    let rules = &policy.encounters;
    let notice = policy.notices.overstayer_erasure;
    let limit = page_limit(limit) as usize;
    let cutoff = notice_cutoff(rules, notice, now);
    let mut out = ScheduledPage::default();
    let mut cursor = after.map(str::to_owned);
    let mut subjects = 0;
    loop {
        let page = store.subjects_before(cutoff, cursor.as_deref(), 0)?;
        for id in &page.subject_ids {
            let traveller = store.traveller(id)?;
            let Some(schedule) = erasure_schedule(store, rules, traveller.as_ref(), id, now)?
            else {
                continue; // a rule counted from the record: no stays judged
            };
            let due: Vec<_> = noticed(&schedule, notice, now).copied().collect();
            if due.is_empty() {
                continue;
            }
            out.erasures
                .extend(due.into_iter().map(|stay| ScheduledErasure {
                    subject_id: id.clone(),
                    stay,
                }));
            subjects += 1;
            if subjects == limit {
                out.next = Some(id.clone());
                return Ok(out);
            }
        }
        cursor = page.next;
        if cursor.is_none() {
            return Ok(out);
        }
    }
}
