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
use super::store::Movement;
use crate::clock::UnixMillis;
use crate::manifest::Direction;

/// The rolling period of the short-stay rule, in days: a day and the 179
/// before it.
pub const WINDOW_DAYS: u32 = 180;
/// The most days present the short-stay rule allows in any window.
pub const MAX_DAYS_IN_WINDOW: u32 = 90;

const WINDOW: i64 = WINDOW_DAYS as i64;
const LIMIT: i64 = MAX_DAYS_IN_WINDOW as i64;

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

impl std::fmt::Display for Anomaly {
    /// The anomaly in words, for reports (days as YYYY-MM-DD, UTC).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anomaly::ExitMissing {
                entry_at,
                next_entry_at,
            } => write!(
                f,
                "entry on {} has no exit before the next entry on {}",
                Day::of(*entry_at),
                Day::of(*next_entry_at)
            ),
            Anomaly::EntryMissing { exit_at } => {
                write!(f, "exit on {} has no open entry", Day::of(*exit_at))
            }
            Anomaly::NoAdmission { first_day } => {
                write!(f, "stay from {first_day} has no admission on record")
            }
        }
    }
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

/// The stay status of a traveller as of a day, from their movements (in any
/// order: capture time orders them, not the order they were recorded in),
/// their admissions (any order) and their category. Never fails: odd
/// records become anomalies.
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
                stays.push(recorded(
                    StayKind::ExitMissing,
                    Some(entry),
                    None,
                    entry,
                    entry,
                ));
                anomalies.push(Anomaly::ExitMissing {
                    entry_at: entry,
                    next_entry_at: at,
                });
                open = Some(at);
            }
            (Direction::Entry, None) => open = Some(at),
            (Direction::Exit, Some(entry)) => {
                stays.push(recorded(StayKind::Closed, Some(entry), Some(at), entry, at));
                open = None;
            }
            (Direction::Exit, None) => {
                stays.push(recorded(StayKind::EntryMissing, None, Some(at), at, at));
                anomalies.push(Anomaly::EntryMissing { exit_at: at });
            }
        }
    }
    if let Some(entry) = open {
        let mut s = recorded(StayKind::Open, Some(entry), None, entry, entry);
        s.last_day = as_of;
        stays.push(s);
    }
    (stays, anomalies)
}

/// A stay as the movements bound it, days counted from `from` through
/// `to`; its rule and days over come later.
fn recorded(
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

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn day(text: &str) -> Day {
        text.parse().unwrap()
    }

    fn at(text: &str, hour: i64) -> UnixMillis {
        UnixMillis(day(text).start().0 + hour * HOUR)
    }

    fn entry(text: &str) -> Movement {
        Movement {
            captured_at: at(text, 12),
            direction: Direction::Entry,
        }
    }

    fn exit(text: &str) -> Movement {
        Movement {
            captured_at: at(text, 12),
            direction: Direction::Exit,
        }
    }

    fn admission(text: &str, rule: StayRule) -> Admission {
        Admission {
            class: "B2".into(),
            port: "JFK".into(),
            day: day(text),
            rule,
        }
    }

    /// A visa-exempt traveller admitted under 90-in-180 on 2024-01-01.
    fn schengen(movements: &[Movement], as_of: &str) -> StayStatus {
        let admissions = [admission("2024-01-01", StayRule::NinetyIn180)];
        stay_status(movements, &admissions, Category::VisaExempt, day(as_of))
    }

    #[test]
    fn a_stay_across_the_window_edge_counts_only_its_days_inside() {
        // The window ending 2025-08-01 begins 2025-02-03: 26 February days
        // and 10 of March are inside it, the January ones are not.
        let s = schengen(&[entry("2025-01-10"), exit("2025-03-10")], "2025-08-01");
        assert_eq!(day("2025-08-01").plus(-179), day("2025-02-03"));
        assert_eq!(s.days_used_in_180, 36);
        assert_eq!(s.days_remaining_in_180, 54);
        assert_eq!(s.in_country_since, None);
        assert_eq!((s.days_over, s.admitted_until, s.rule), (0, None, None));
        assert_eq!(s.stays.len(), 1);
        assert_eq!(s.stays[0].kind, StayKind::Closed);
        assert_eq!(s.stays[0].days_over, 0);
        assert!(s.anomalies.is_empty());
    }

    #[test]
    fn ninety_days_are_allowed_and_the_ninety_first_is_over() {
        // 2025-01-01 through 2025-03-31 is 90 days, entry day counted.
        let s = schengen(&[entry("2025-01-01")], "2025-03-31");
        assert_eq!((s.days_used_in_180, s.days_remaining_in_180), (90, 0));
        assert_eq!(s.in_country_since, Some(day("2025-01-01")));
        assert_eq!(s.rule, Some(StayRule::NinetyIn180));
        assert_eq!(s.days_over, 0);
        assert_eq!(s.admitted_until, Some(day("2025-03-31")));
        assert!(!s.is_overstayer());

        let s = schengen(&[entry("2025-01-01")], "2025-04-01");
        assert_eq!((s.days_used_in_180, s.days_remaining_in_180), (91, 0));
        assert_eq!(s.days_over, 1);
        assert_eq!(s.admitted_until, Some(day("2025-03-31")));
        assert!(s.is_overstayer());

        // Leaving on day 91, exit day counted: one day over, in the past.
        let s = schengen(&[entry("2025-01-01"), exit("2025-04-01")], "2025-06-01");
        assert_eq!((s.days_over, s.days_over_in_past_stays), (0, 1));
        assert_eq!(s.stays[0].days_over, 1);
        assert!(s.is_overstayer());
    }

    #[test]
    fn earlier_stays_in_the_window_count_toward_ninety() {
        // 60 days (2025-01-01..=03-01), then back on 04-01: 30 more reach 90.
        let moves = [entry("2025-01-01"), exit("2025-03-01"), entry("2025-04-01")];
        let s = schengen(&moves, "2025-04-30");
        assert_eq!((s.days_used_in_180, s.days_over), (90, 0));
        assert_eq!(s.admitted_until, Some(day("2025-04-30")));
        let s = schengen(&moves, "2025-05-05");
        assert_eq!((s.days_used_in_180, s.days_over), (95, 5));
        assert_eq!(s.admitted_until, Some(day("2025-04-30")));
        assert_eq!(s.days_over_in_past_stays, 0);
    }

    #[test]
    fn days_leaving_the_window_extend_the_stay() {
        // 60 days from 2025-01-01, back on 05-31 (61 used, 29 left): as the
        // January and February days leave the window one a day, the count
        // stays at 90 until the last of them has gone.
        let moves = [entry("2025-01-01"), exit("2025-03-01"), entry("2025-05-31")];
        let s = schengen(&moves, "2025-05-31");
        assert_eq!((s.days_used_in_180, s.days_remaining_in_180), (61, 29));
        assert_eq!(s.admitted_until, Some(day("2025-08-28")));
        let s = schengen(&moves, "2025-08-28");
        assert_eq!((s.days_used_in_180, s.days_over), (90, 0));
        let s = schengen(&moves, "2025-08-29");
        assert_eq!((s.days_used_in_180, s.days_over), (91, 1));
    }

    #[test]
    fn a_same_day_entry_and_exit_is_one_day() {
        let moves = [
            Movement {
                captured_at: at("2025-03-03", 20),
                direction: Direction::Exit,
            },
            Movement {
                captured_at: at("2025-03-03", 8),
                direction: Direction::Entry,
            },
        ];
        let s = schengen(&moves, "2025-03-10");
        assert_eq!(s.days_used_in_180, 1);
        assert_eq!(s.stays.len(), 1);
        assert_eq!(s.stays[0].kind, StayKind::Closed);
        assert_eq!(s.stays[0].first_day, s.stays[0].last_day);
        assert!(s.anomalies.is_empty());
    }

    #[test]
    fn an_entry_and_an_exit_at_the_same_instant_pair_up() {
        let t = at("2025-03-03", 9);
        let moves = [Direction::Exit, Direction::Entry].map(|direction| Movement {
            captured_at: t,
            direction,
        });
        let s = schengen(&moves, "2025-03-10");
        assert_eq!(s.stays.len(), 1);
        assert_eq!(s.stays[0].kind, StayKind::Closed);
        assert_eq!(
            (s.stays[0].entry_at, s.stays[0].exit_at),
            (Some(t), Some(t))
        );
        assert!(s.anomalies.is_empty());
    }

    #[test]
    fn two_entries_in_a_row_count_only_the_first_entry_day() {
        let s = schengen(&[entry("2025-01-01"), entry("2025-03-01")], "2025-03-10");
        let kinds: Vec<StayKind> = s.stays.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [StayKind::ExitMissing, StayKind::Open]);
        assert_eq!(s.stays[0].last_day, day("2025-01-01"));
        assert_eq!(s.stays[0].exit_at, None);
        assert_eq!(s.days_used_in_180, 1 + 10);
        assert_eq!(s.in_country_since, Some(day("2025-03-01")));
        assert_eq!(
            s.anomalies,
            [Anomaly::ExitMissing {
                entry_at: at("2025-01-01", 12),
                next_entry_at: at("2025-03-01", 12),
            }]
        );
    }

    #[test]
    fn an_exit_without_entry_counts_the_exit_day() {
        let moves = [entry("2025-01-01"), exit("2025-01-05"), exit("2025-02-10")];
        let s = schengen(&moves, "2025-03-01");
        let kinds: Vec<StayKind> = s.stays.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [StayKind::Closed, StayKind::EntryMissing]);
        let lone = &s.stays[1];
        assert_eq!(
            (lone.entry_at, lone.exit_at),
            (None, Some(at("2025-02-10", 12)))
        );
        assert_eq!(
            (lone.first_day, lone.last_day),
            (day("2025-02-10"), day("2025-02-10"))
        );
        assert_eq!(s.days_used_in_180, 5 + 1);
        assert_eq!(s.in_country_since, None);
        assert_eq!(
            s.anomalies,
            [Anomaly::EntryMissing {
                exit_at: at("2025-02-10", 12)
            }]
        );
    }

    #[test]
    fn movements_are_taken_in_capture_order_whatever_the_recording_order() {
        let sorted = [
            entry("2025-01-01"),
            exit("2025-01-20"),
            entry("2025-02-01"),
            entry("2025-02-15"),
            exit("2025-03-01"),
            exit("2025-03-02"),
            entry("2025-04-01"),
        ];
        let expected = schengen(&sorted, "2025-05-01");
        let mut reversed = sorted;
        reversed.reverse();
        let shuffled = [3, 6, 0, 5, 1, 4, 2].map(|i| sorted[i]);
        assert_eq!(schengen(&reversed, "2025-05-01"), expected);
        assert_eq!(schengen(&shuffled, "2025-05-01"), expected);
        assert_eq!(expected.stays.len(), 5);
        assert_eq!(expected.anomalies.len(), 2);
    }

    #[test]
    fn movements_after_the_as_of_day_are_ignored() {
        let moves = [entry("2025-01-01"), exit("2025-02-01"), entry("2025-03-01")];
        let s = schengen(&moves, "2025-01-15");
        assert_eq!(s.in_country_since, Some(day("2025-01-01")));
        assert_eq!(s.days_used_in_180, 15);
        assert_eq!(s.stays.len(), 1);
        assert_eq!(s.stays[0].kind, StayKind::Open);
        assert_eq!(s.stays[0].last_day, day("2025-01-15"));

        let before = schengen(&moves, "2024-12-31");
        assert!(before.stays.is_empty() && before.anomalies.is_empty());
        assert_eq!(
            (before.days_used_in_180, before.in_country_since),
            (0, None)
        );
    }

    #[test]
    fn leaving_after_the_admit_until_date_is_a_past_overstay() {
        let admissions = [admission(
            "2025-01-01",
            StayRule::AdmittedUntil(day("2025-06-30")),
        )];
        let moves = [entry("2025-01-01"), exit("2025-07-03")];
        let status =
            |as_of| stay_status(&moves, &admissions, Category::NonImmigrantVisa, day(as_of));

        let s = status("2025-07-02");
        assert_eq!(s.in_country_since, Some(day("2025-01-01")));
        assert_eq!(s.admitted_until, Some(day("2025-06-30")));
        assert_eq!((s.days_over, s.days_over_in_past_stays), (2, 0));

        let s = status("2025-08-01");
        assert_eq!((s.in_country_since, s.admitted_until), (None, None));
        assert_eq!((s.days_over, s.days_over_in_past_stays), (0, 3));
        assert_eq!(s.stays[0].days_over, 3);
        assert!(s.is_overstayer());
    }

    #[test]
    fn a_leap_day_is_a_day() {
        let admissions = [admission(
            "2024-02-01",
            StayRule::AdmittedUntil(day("2024-02-28")),
        )];
        let s = stay_status(
            &[entry("2024-02-01")],
            &admissions,
            Category::NonImmigrantVisa,
            day("2024-03-01"),
        );
        assert_eq!(s.days_over, 2);
        assert_eq!(s.days_used_in_180, 29 + 1);
    }

    #[test]
    fn citizens_and_residents_never_overstay() {
        let admissions = [admission("2024-01-01", StayRule::NinetyIn180)];
        for category in [Category::Citizen, Category::LawfulPermanentResident] {
            for admissions in [&admissions[..], &[]] {
                let s = stay_status(
                    &[entry("2024-01-01")],
                    admissions,
                    category,
                    day("2025-06-01"),
                );
                assert_eq!(s.days_used_in_180, 180);
                assert_eq!((s.days_over, s.days_over_in_past_stays), (0, 0));
                assert_eq!((s.rule, s.admitted_until), (None, None));
                assert!(s.anomalies.is_empty(), "{category:?}");
            }
        }
    }

    #[test]
    fn the_latest_admission_on_or_before_the_entry_day_governs() {
        let admissions = [
            admission("2025-02-01", StayRule::DurationOfStatus),
            admission("2025-01-01", StayRule::AdmittedUntil(day("2025-01-10"))),
        ];
        let moves = [
            entry("2024-12-01"),
            exit("2024-12-05"),
            entry("2025-01-20"),
            exit("2025-01-31"),
            entry("2025-02-01"),
        ];
        let s = stay_status(&moves, &admissions, Category::Other, day("2025-09-01"));
        let rules: Vec<Option<StayRule>> = s.stays.iter().map(|s| s.rule).collect();
        assert_eq!(
            rules,
            [
                None,
                Some(StayRule::AdmittedUntil(day("2025-01-10"))),
                Some(StayRule::DurationOfStatus),
            ]
        );
        let over: Vec<u32> = s.stays.iter().map(|s| s.days_over).collect();
        assert_eq!(over, [0, 12, 0]);
        assert_eq!(
            (s.rule, s.admitted_until),
            (Some(StayRule::DurationOfStatus), None)
        );
        assert_eq!(s.days_over_in_past_stays, 12);
        assert_eq!(
            s.anomalies,
            [Anomaly::NoAdmission {
                first_day: day("2024-12-01")
            }]
        );
    }

    #[test]
    fn extreme_days_neither_panic_nor_wrap() {
        let first = Day(i32::MIN);
        let moves = [
            Movement {
                captured_at: UnixMillis(i64::MIN),
                direction: Direction::Entry,
            },
            Movement {
                captured_at: UnixMillis(i64::MAX),
                direction: Direction::Exit,
            },
        ];
        let mut until = vec![Admission {
            day: first,
            ..admission("2024-01-01", StayRule::AdmittedUntil(first))
        }];
        let s = stay_status(&moves, &until, Category::Other, Day(i32::MAX));
        assert_eq!(s.stays[0].kind, StayKind::Closed);
        assert_eq!(s.days_over_in_past_stays, u32::MAX);
        assert_eq!(s.days_used_in_180, 180);

        until[0].rule = StayRule::NinetyIn180;
        let s = stay_status(&moves[..1], &until, Category::Other, Day(i32::MAX));
        assert_eq!(s.days_over, u32::MAX - 89);
        assert_eq!(s.admitted_until, Some(Day(i32::MIN + 89)));
        let s = stay_status(&moves[1..], &until, Category::Other, Day(i32::MAX));
        assert_eq!(s.stays[0].kind, StayKind::EntryMissing);
        let s = stay_status(&moves, &until, Category::Other, Day(i32::MIN));
        assert_eq!(s.in_country_since, Some(first));
        assert_eq!(s.admitted_until, Some(Day(i32::MIN + 89)));
    }

    /// The definitions of the module, followed day by day with no cleverness:
    /// a boolean per day over the span of the history, each count summed
    /// over its window, each rule checked on every day.
    mod reference {
        use super::super::*;

        /// Days present, as a boolean per day from `lo`.
        pub struct Days {
            lo: i64,
            present: Vec<bool>,
        }

        impl Days {
            fn new(lo: i64, hi: i64) -> Days {
                Days {
                    lo,
                    present: vec![false; usize::try_from(hi - lo + 1).unwrap()],
                }
            }

            fn mark(&mut self, d: i64) {
                let i = usize::try_from(d - self.lo).unwrap();
                self.present[i] = true;
            }

            pub fn get(&self, d: i64) -> bool {
                usize::try_from(d - self.lo)
                    .ok()
                    .and_then(|i| self.present.get(i))
                    .is_some_and(|&p| p)
            }

            /// Days present in the 180 days ending on `d`, counted one by one.
            pub fn count(&self, d: i64) -> i64 {
                (d - 179..=d).filter(|&x| self.get(x)).count() as i64
            }
        }

        fn num(d: Day) -> i64 {
            i64::from(d.0)
        }

        fn clamp(n: i64) -> Day {
            Day(n.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
        }

        fn blank(
            kind: StayKind,
            entry_at: Option<UnixMillis>,
            exit_at: Option<UnixMillis>,
            first_day: Day,
            last_day: Day,
        ) -> Stay {
            Stay {
                kind,
                entry_at,
                exit_at,
                first_day,
                last_day,
                rule: None,
                days_over: 0,
            }
        }

        /// Stays by looking at each movement and the one after it.
        fn stays(movements: &[Movement], as_of: Day) -> (Vec<Stay>, Vec<Anomaly>) {
            let mut ms: Vec<Movement> = movements
                .iter()
                .copied()
                .filter(|m| Day::of(m.captured_at) <= as_of)
                .collect();
            ms.sort_by_key(|m| (m.captured_at, m.direction == Direction::Exit));
            let (mut stays, mut anomalies) = (vec![], vec![]);
            let mut i = 0;
            while i < ms.len() {
                let (m, next) = (ms[i], ms.get(i + 1).copied());
                let (t, d) = (m.captured_at, Day::of(m.captured_at));
                i += 1;
                if m.direction == Direction::Exit {
                    stays.push(blank(StayKind::EntryMissing, None, Some(t), d, d));
                    anomalies.push(Anomaly::EntryMissing { exit_at: t });
                } else if let Some(n) = next.filter(|n| n.direction == Direction::Exit) {
                    let x = n.captured_at;
                    stays.push(blank(StayKind::Closed, Some(t), Some(x), d, Day::of(x)));
                    i += 1;
                } else if let Some(n) = next {
                    stays.push(blank(StayKind::ExitMissing, Some(t), None, d, d));
                    anomalies.push(Anomaly::ExitMissing {
                        entry_at: t,
                        next_entry_at: n.captured_at,
                    });
                } else {
                    stays.push(blank(StayKind::Open, Some(t), None, d, as_of));
                }
            }
            (stays, anomalies)
        }

        /// The latest admission on or before `day`, the last given of a day.
        fn governing(admissions: &[Admission], day: Day) -> Option<StayRule> {
            let mut best: Option<&Admission> = None;
            for a in admissions {
                if a.day <= day && best.is_none_or(|b| a.day >= b.day) {
                    best = Some(a);
                }
            }
            best.map(|a| a.rule)
        }

        fn over_on(rule: Option<StayRule>, days: &Days, d: i64) -> bool {
            match rule {
                Some(StayRule::AdmittedUntil(u)) => d > num(u),
                Some(StayRule::NinetyIn180) => days.count(d) > 90,
                _ => false,
            }
        }

        /// Under 90-in-180, staying on from `as_of`: the last day of an
        /// unbroken run of days within 90 from `as_of`; when `as_of` is
        /// already over, the day before the stay's first day over.
        fn ninety_until(open: &Stay, days: &Days, today: i64) -> Day {
            let staying_on = |d: i64| (d - 179..=d).filter(|&x| x > today || days.get(x)).count();
            let mut last_ok = None;
            let mut d = today;
            while staying_on(d) <= 90 {
                last_ok = Some(d);
                d += 1;
            }
            clamp(last_ok.unwrap_or_else(|| {
                let first_over = (num(open.first_day)..=today)
                    .find(|&d| days.count(d) > 90)
                    .unwrap();
                first_over - 1
            }))
        }

        pub fn status(
            movements: &[Movement],
            admissions: &[Admission],
            category: Category,
            as_of: Day,
        ) -> StayStatus {
            let today = num(as_of);
            let (mut stays, mut anomalies) = stays(movements, as_of);
            let lo = stays.iter().map(|s| num(s.first_day)).fold(today, i64::min) - 360;
            let mut days = Days::new(lo, today + 360);
            for s in &stays {
                (num(s.first_day)..=num(s.last_day)).for_each(|d| days.mark(d));
            }
            for s in &mut stays {
                if category.has_stay_limit() {
                    s.rule = governing(admissions, s.first_day);
                    if s.rule.is_none() {
                        anomalies.push(Anomaly::NoAdmission {
                            first_day: s.first_day,
                        });
                    }
                }
                s.days_over = (num(s.first_day)..=num(s.last_day))
                    .filter(|&d| over_on(s.rule, &days, d))
                    .count() as u32;
            }
            let open = stays.last().filter(|s| s.kind == StayKind::Open).cloned();
            let used = days.count(today) as u32;
            StayStatus {
                as_of,
                in_country_since: open.as_ref().map(|s| s.first_day),
                days_used_in_180: used,
                days_remaining_in_180: 90u32.saturating_sub(used),
                admitted_until: open.as_ref().and_then(|s| match s.rule {
                    Some(StayRule::AdmittedUntil(u)) => Some(u),
                    Some(StayRule::NinetyIn180) => Some(ninety_until(s, &days, today)),
                    _ => None,
                }),
                days_over: open.as_ref().map_or(0, |s| s.days_over),
                rule: open.as_ref().and_then(|s| s.rule),
                days_over_in_past_stays: stays
                    .iter()
                    .filter(|s| s.kind != StayKind::Open)
                    .map(|s| s.days_over)
                    .sum(),
                stays,
                anomalies,
            }
        }
    }

    mod properties {
        use super::super::*;
        use super::reference;
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::select;

        const DAY_MS: i64 = 86_400_000;
        const QUARTER_DAY_MS: i64 = DAY_MS / 4;

        type History = (Vec<Movement>, Vec<Admission>, Category, Day);

        fn rule(kind: u8, day: Day, length: i32) -> StayRule {
            match kind {
                0 => StayRule::AdmittedUntil(day.plus(length)),
                1 => StayRule::DurationOfStatus,
                _ => StayRule::NinetyIn180,
            }
        }

        /// A history over `span` days from `base`: captures on the quarter
        /// hour of a day (so same-day and same-instant movements are
        /// common), in random order, entries and exits drawn independently
        /// (so missing exits and entries are common), admissions around it.
        fn history_from(base: Day, span: i64, moves: usize) -> impl Strategy<Value = History> {
            let start = base.start().0;
            let movement =
                (0..span, 0i64..4, any::<bool>()).prop_map(move |(d, q, out)| Movement {
                    captured_at: UnixMillis(start.saturating_add(d * DAY_MS + q * QUARTER_DAY_MS)),
                    direction: if out {
                        Direction::Exit
                    } else {
                        Direction::Entry
                    },
                });
            let span = span as i32;
            let admission = (-30..span, 0u8..4, 0i32..200).prop_map(move |(d, kind, length)| {
                let day = base.plus(d);
                Admission {
                    class: "B2".into(),
                    port: "JFK".into(),
                    day,
                    rule: rule(kind, day, length),
                }
            });
            (
                vec(movement, 0..moves),
                vec(admission, 0..4),
                select(Category::ALL.to_vec()),
                (-30..span + 200).prop_map(move |d| base.plus(d)),
            )
        }

        /// Histories over up to two years from 2024, some sparse (long
        /// stays, long open stays: many over 90), some dense.
        fn history() -> impl Strategy<Value = History> {
            (1i64..800, prop_oneof![Just(4usize), Just(8), Just(30)])
                .prop_flat_map(|(span, moves)| history_from(Day(19_723), span, moves))
        }

        /// The same near both ends of the range of days, where day
        /// arithmetic could overflow and instants saturate to the last day.
        fn extreme_history() -> impl Strategy<Value = History> {
            let bases = [
                Day(i32::MIN),
                Day(i32::MIN + 100),
                Day(i32::MAX - 400),
                Day(i32::MAX),
            ];
            (
                select(bases.to_vec()),
                1i64..500,
                prop_oneof![Just(6usize), Just(30)],
            )
                .prop_flat_map(|(base, span, moves)| history_from(base, span, moves))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]

            #[test]
            fn stay_status_is_the_reference(
                (moves, admissions, category, as_of) in history()
            ) {
                prop_assert_eq!(
                    stay_status(&moves, &admissions, category, as_of),
                    reference::status(&moves, &admissions, category, as_of)
                );
            }

            #[test]
            fn stay_status_is_the_reference_at_the_ends_of_time(
                (moves, admissions, category, as_of) in extreme_history()
            ) {
                prop_assert_eq!(
                    stay_status(&moves, &admissions, category, as_of),
                    reference::status(&moves, &admissions, category, as_of)
                );
            }

            /// Anything at all: no panic, and what must hold whatever the
            /// input (too spread out for the reference's day array).
            #[test]
            fn any_input_gives_a_sound_status(
                raw in vec((any::<i64>(), any::<bool>()), 0..12),
                admissions in vec((any::<i32>(), 0u8..4, any::<i32>()), 0..4),
                category in select(Category::ALL.to_vec()),
                as_of in any::<i32>(),
            ) {
                let moves: Vec<Movement> = raw.iter().map(|&(t, out)| Movement {
                    captured_at: UnixMillis(t),
                    direction: if out { Direction::Exit } else { Direction::Entry },
                }).collect();
                let admissions: Vec<Admission> = admissions.iter().map(|&(d, kind, len)| Admission {
                    class: "B2".into(),
                    port: "JFK".into(),
                    day: Day(d),
                    rule: rule(kind, Day(d), len),
                }).collect();
                let as_of = Day(as_of);
                let s = stay_status(&moves, &admissions, category, as_of);
                prop_assert!(s.days_used_in_180 <= 180);
                prop_assert_eq!(s.days_remaining_in_180, 90u32.saturating_sub(s.days_used_in_180));
                prop_assert!(s.in_country_since.is_none_or(|d| d <= as_of));
                prop_assert!(s.stays.iter().all(|t| t.first_day <= t.last_day && t.last_day <= as_of));
                prop_assert!(s.stays.windows(2).all(|w| w[0].last_day <= w[1].first_day));
                if !category.has_stay_limit() {
                    prop_assert!(!s.is_overstayer() && s.rule.is_none());
                }
                let mut reversed = moves.clone();
                reversed.reverse();
                prop_assert_eq!(stay_status(&reversed, &admissions, category, as_of), s);
            }
        }
    }
}
