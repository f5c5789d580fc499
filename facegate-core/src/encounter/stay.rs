//! Stays and overstays: a traveller's recorded crossings turned into stays,
//! and the status of their stay as of a day (in the country since, days used
//! in the rolling 180, admitted until, days over), as the EU Entry/Exit
//! System (Regulation (EU) 2017/2226) and the U.S. arrival/departure records
//! compute them.
//!
//! Every input is a recorded fact, so nothing here fails: a messy history
//! (two entries in a row, an exit with no entry) becomes stays that count
//! only the days the records prove, plus an [`Anomaly`] for the reports.
//!
//! Choices, each the one that cannot invent an overstay or hide a record:
//! * Movements are taken in capture order, not recording order; at the same
//!   instant an entry comes before an exit (an entry and an exit captured at
//!   once make one same-day stay, not an exit without entry).
//! * Movements after the as-of day are ignored: the status is what the
//!   records said at the end of that day.
//! * A stay's present days run from its entry day through its exit day. An
//!   entry followed by another entry counts its entry day only; an exit with
//!   no open entry counts its exit day only; the open stay counts through
//!   the as-of day.
//! * A stay is governed by the latest admission on or before its first
//!   present day (its entry day, or its exit day when no entry was
//!   recorded); among admissions of the same day, the last one given.
//! * Day arithmetic is done in `i64`, so no day near the ends of [`Day`]'s
//!   range overflows; a result beyond the range is clamped to its end.

use super::day::Day;
use super::model::{Admission, Category, StayRule};
use crate::clock::UnixMillis;
use crate::manifest::Direction;

/// The rolling period of the short-stay rule, in days: a day and the 179
/// before it.
pub const WINDOW_DAYS: u32 = 180;
/// The most days present the short-stay rule allows in any window.
pub const MAX_DAYS_IN_WINDOW: u32 = 90;

const WINDOW: i64 = WINDOW_DAYS as i64;
const LIMIT: i64 = MAX_DAYS_IN_WINDOW as i64;

/// One crossing of the traveller, as the stay rules need it: when the photo
/// was taken and which way they were going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Movement {
    /// When the capture was taken (the port's clock), which orders the
    /// crossings; the order they were recorded in does not.
    pub captured_at: UnixMillis,
    /// Entry or exit.
    pub direction: Direction,
}

/// How a stay began and ended in the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StayKind {
    /// An entry, then an exit.
    Closed,
    /// The last entry, with no exit up to the as-of day: still in the
    /// country.
    Open,
    /// An entry followed by another entry: the exit was never captured, so
    /// only the entry day is known to be present.
    ExitMissing,
    /// An exit with no open entry (a missed entry capture, or an impostor
    /// leaving on someone else's identity): only the exit day is known.
    EntryMissing,
}

/// One stay, with the days it counts as present and what its rule makes of
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stay {
    /// How the records bound it.
    pub kind: StayKind,
    /// The entry's capture time, when an entry was recorded.
    pub entry_at: Option<UnixMillis>,
    /// The exit's capture time, for a closed stay or an exit without entry.
    pub exit_at: Option<UnixMillis>,
    /// The first day counted present.
    pub first_day: Day,
    /// The last day counted present (the as-of day for an open stay).
    pub last_day: Day,
    /// The rule of the admission that governs it; `None` when no admission
    /// does, or when the traveller's category has no stay limit.
    pub rule: Option<StayRule>,
    /// Days of this stay (up to the as-of day) spent beyond its rule.
    pub days_over: u32,
}

/// Something in the records that a reconciliation report should show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Anomaly {
    /// An entry followed by another entry with no exit between.
    ExitMissing {
        /// The entry whose exit is missing.
        entry_at: UnixMillis,
        /// The next entry, which closed the stay in the records.
        next_entry_at: UnixMillis,
    },
    /// An exit with no open entry.
    EntryMissing {
        /// The exit.
        exit_at: UnixMillis,
    },
    /// A stay of a traveller with a stay limit that no admission governs:
    /// no rule to count it against, so it counts no days over.
    NoAdmission {
        /// The stay's first present day.
        first_day: Day,
    },
}

/// Where a traveller's stay stands at the end of a day: what a border
/// officer, the overstay report and the traveller's own enquiry show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StayStatus {
    /// The day the status is taken at.
    pub as_of: Day,
    /// The entry day of the open stay, when in the country on `as_of`.
    pub in_country_since: Option<Day>,
    /// Distinct days present in the 180 days ending on `as_of`.
    pub days_used_in_180: u32,
    /// 90 less `days_used_in_180`, floored at 0; it means something only
    /// under the 90-in-180 rule, but is always given.
    pub days_remaining_in_180: u32,
    /// The last day the open stay may last: an admit-until date as given;
    /// under 90-in-180, the last day the count stays within 90 if the
    /// traveller stays on from `as_of` (when already over, the day before
    /// the stay first went over). `None` when not in the country, or the
    /// rule has no end date.
    pub admitted_until: Option<Day>,
    /// Days of the open stay spent beyond its rule, through `as_of`.
    pub days_over: u32,
    /// The rule governing the open stay.
    pub rule: Option<StayRule>,
    /// Days over in stays that have ended (left late), summed: a
    /// traveller no longer in the country still belongs on the overstayer
    /// list.
    pub days_over_in_past_stays: u32,
    /// Every stay up to `as_of`, in capture order.
    pub stays: Vec<Stay>,
    /// Movement anomalies in capture order, then stays with no admission.
    pub anomalies: Vec<Anomaly>,
}

impl StayStatus {
    /// Whether the overstayer report lists this traveller: over now, or
    /// left late before.
    pub fn is_overstayer(&self) -> bool {
        self.days_over > 0 || self.days_over_in_past_stays > 0
    }
}

/// The stay status of a traveller as of a day, from their movements (any
/// order), their admissions (any order) and their category. Never fails:
/// odd records become anomalies.
pub fn stay_status(
    movements: &[Movement],
    admissions: &[Admission],
    category: Category,
    as_of: Day,
) -> StayStatus {
    let (mut stays, mut anomalies) = build_stays(movements, as_of);
    let presence = Presence::of(&stays);
    let rules = Rules::new(admissions, category);
    for stay in &mut stays {
        stay.rule = rules.governing(stay.first_day);
        stay.days_over = to_u32(days_over(stay, &presence));
        if rules.limited && stay.rule.is_none() {
            anomalies.push(Anomaly::NoAdmission {
                first_day: stay.first_day,
            });
        }
    }
    summarize(stays, anomalies, &presence, as_of)
}

/// The status fields, from the stays with their rules and days over.
fn summarize(
    stays: Vec<Stay>,
    anomalies: Vec<Anomaly>,
    presence: &Presence,
    as_of: Day,
) -> StayStatus {
    let open = stays.last().filter(|s| s.kind == StayKind::Open).cloned();
    let past_over = stays
        .iter()
        .filter(|s| s.kind != StayKind::Open)
        .fold(0u32, |sum, s| sum.saturating_add(s.days_over));
    let used = to_u32(presence.in_window(day_num(as_of)));
    StayStatus {
        as_of,
        in_country_since: open.as_ref().map(|s| s.first_day),
        days_used_in_180: used,
        days_remaining_in_180: MAX_DAYS_IN_WINDOW.saturating_sub(used),
        admitted_until: open
            .as_ref()
            .and_then(|s| admitted_until(s, presence, as_of)),
        days_over: open.as_ref().map_or(0, |s| s.days_over),
        rule: open.and_then(|s| s.rule),
        days_over_in_past_stays: past_over,
        stays,
        anomalies,
    }
}

/// Walks the movements up to `as_of` in capture order, pairing each entry
/// with the exit after it.
fn build_stays(movements: &[Movement], as_of: Day) -> (Vec<Stay>, Vec<Anomaly>) {
    let mut sorted: Vec<Movement> = movements
        .iter()
        .filter(|m| Day::of(m.captured_at) <= as_of)
        .copied()
        .collect();
    sorted.sort_by_key(|m| (m.captured_at, m.direction == Direction::Exit));
    let (mut stays, mut anomalies) = (Vec::new(), Vec::new());
    let mut open: Option<UnixMillis> = None;
    for m in sorted {
        let at = m.captured_at;
        match (m.direction, open) {
            (Direction::Entry, Some(entry)) => {
                stays.push(stay(StayKind::ExitMissing, Some(entry), None, entry, entry));
                anomalies.push(Anomaly::ExitMissing {
                    entry_at: entry,
                    next_entry_at: at,
                });
                open = Some(at);
            }
            (Direction::Entry, None) => open = Some(at),
            (Direction::Exit, Some(entry)) => {
                stays.push(stay(StayKind::Closed, Some(entry), Some(at), entry, at));
                open = None;
            }
            (Direction::Exit, None) => {
                stays.push(stay(StayKind::EntryMissing, None, Some(at), at, at));
                anomalies.push(Anomaly::EntryMissing { exit_at: at });
            }
        }
    }
    if let Some(entry) = open {
        let mut s = stay(StayKind::Open, Some(entry), None, entry, entry);
        s.last_day = as_of;
        stays.push(s);
    }
    (stays, anomalies)
}

fn stay(
    kind: StayKind,
    entry_at: Option<UnixMillis>,
    exit_at: Option<UnixMillis>,
    from: UnixMillis,
    to: UnixMillis,
) -> Stay {
    Stay {
        kind,
        entry_at,
        exit_at,
        first_day: Day::of(from),
        last_day: Day::of(to),
        rule: None,
        days_over: 0,
    }
}

/// The admissions, ordered by day, and whether they matter at all.
struct Rules {
    by_day: Vec<(Day, StayRule)>,
    limited: bool,
}

impl Rules {
    fn new(admissions: &[Admission], category: Category) -> Rules {
        let mut by_day: Vec<(Day, StayRule)> = admissions.iter().map(|a| (a.day, a.rule)).collect();
        // Stable: of admissions on the same day, the last given stays last.
        by_day.sort_by_key(|&(day, _)| day);
        Rules {
            by_day,
            limited: category.has_stay_limit(),
        }
    }

    /// The rule of the latest admission on or before `day`; none for a
    /// category without a stay limit.
    fn governing(&self, day: Day) -> Option<StayRule> {
        if !self.limited {
            return None;
        }
        let i = self.by_day.partition_point(|&(d, _)| d <= day);
        i.checked_sub(1)
            .and_then(|i| self.by_day.get(i))
            .map(|&(_, rule)| rule)
    }
}

/// Days of `stay` beyond its rule. Under 90-in-180 every day of a stay is
/// present, so the count in the window never falls from one day of the
/// stay to the next (a day enters, at most one leaves): the days over are
/// the stay's last days, found by bisection.
fn days_over(stay: &Stay, presence: &Presence) -> i64 {
    let (first, last) = (day_num(stay.first_day), day_num(stay.last_day));
    match stay.rule {
        Some(StayRule::AdmittedUntil(until)) => (last - first.max(day_num(until) + 1) + 1).max(0),
        Some(StayRule::NinetyIn180) => {
            first_true(first, last, |d| presence.in_window(d) > LIMIT).map_or(0, |f| last - f + 1)
        }
        Some(StayRule::DurationOfStatus) | None => 0,
    }
}

/// The last day of the open stay under its rule (see
/// [`StayStatus::admitted_until`]).
fn admitted_until(open: &Stay, presence: &Presence, as_of: Day) -> Option<Day> {
    let today = day_num(as_of);
    match open.rule? {
        StayRule::AdmittedUntil(until) => Some(until),
        StayRule::DurationOfStatus => None,
        StayRule::NinetyIn180 if open.days_over > 0 => {
            Some(clamp_day(today - i64::from(open.days_over)))
        }
        StayRule::NinetyIn180 => {
            // Staying on, day d counts the recorded days in [d-179, as_of]
            // plus one for each day after as_of: never falling, and 180 by
            // as_of + 179, so the first day over exists.
            let count = |d: i64| presence.between(d - WINDOW + 1, today) + (d - today);
            first_true(today, today + WINDOW - 1, |d| count(d) > LIMIT)
                .map(|over| clamp_day(over - 1))
        }
    }
}

/// The smallest `x` in `lo..=hi` with `pred(x)`, for a `pred` that once
/// true stays true; `None` when there is none.
fn first_true(mut lo: i64, mut hi: i64, pred: impl Fn(i64) -> bool) -> Option<i64> {
    if lo > hi || !pred(hi) {
        return None;
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

/// The set of days present, as disjoint sorted runs with the number of
/// days before each: any count over a range of days in O(log runs).
struct Presence {
    /// `(first, last, days in earlier runs)`.
    runs: Vec<(i64, i64, i64)>,
}

impl Presence {
    fn of(stays: &[Stay]) -> Presence {
        let mut spans: Vec<(i64, i64)> = stays
            .iter()
            .map(|s| (day_num(s.first_day), day_num(s.last_day)))
            .collect();
        spans.sort_unstable();
        let mut runs: Vec<(i64, i64, i64)> = Vec::with_capacity(spans.len());
        let mut total = 0;
        for (first, last) in spans {
            match runs.last_mut() {
                Some(run) if first <= run.1 + 1 => {
                    total += (last - run.1).max(0);
                    run.1 = run.1.max(last);
                }
                _ => {
                    runs.push((first, last, total));
                    total += last - first + 1;
                }
            }
        }
        Presence { runs }
    }

    /// Days present on or before `day`.
    fn up_to(&self, day: i64) -> i64 {
        let i = self.runs.partition_point(|&(first, _, _)| first <= day);
        match i.checked_sub(1).and_then(|i| self.runs.get(i)) {
            Some(&(first, last, before)) => before + day.min(last) - first + 1,
            None => 0,
        }
    }

    /// Days present in `from..=to`.
    fn between(&self, from: i64, to: i64) -> i64 {
        (self.up_to(to) - self.up_to(from - 1)).max(0)
    }

    /// Days present in the window of 180 days ending on `day`.
    fn in_window(&self, day: i64) -> i64 {
        self.between(day - WINDOW + 1, day)
    }
}

fn day_num(day: Day) -> i64 {
    i64::from(day.0)
}

/// The day numbered `n`, clamped to the range of [`Day`].
fn clamp_day(n: i64) -> Day {
    Day(i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX }))
}

/// A count of days as `u32`, saturating (a stay may span all 2^32 days).
fn to_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}
