//! Who travels how: a traveller's profile, the trips it makes over the
//! span (each stay cut to end within its rule), and what is injected.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::{Injected, Shares, SynthConfig, records, unit};
use crate::encounter::day::Day;
use crate::encounter::model::{Category, StayRule};
use crate::encounter::stay::{MAX_DAYS_IN_WINDOW, WINDOW_DAYS};

/// How a traveller travels: it decides the visa class, the rule, the
/// length of stays and how often they come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Visa waiver: 90 days in any 180.
    VisaExempt,
    /// B2 visitor for pleasure, admitted for six months.
    Tourist,
    /// B1 visitor for business, admitted for one to six months.
    Business,
    /// H-1B worker, admitted for three years, with trips home.
    Worker,
    /// F-1 student, admitted for the duration of status, home for summers.
    Student,
    /// D crew member, admitted for 29 days, in and out every few weeks.
    Crew,
    /// A citizen or permanent resident: lives here, trips abroad.
    Resident,
}

/// A kind's typical numbers: stays and rates are log-normal around their
/// medians.
struct Spec {
    class: &'static str,
    stay_median: f64,
    stay_sigma: f64,
    rate_median: f64,
    rate_sigma: f64,
}

fn spec(kind: Kind) -> Spec {
    let s = |class, stay_median, stay_sigma, rate_median, rate_sigma| Spec {
        class,
        stay_median,
        stay_sigma,
        rate_median,
        rate_sigma,
    };
    match kind {
        Kind::VisaExempt => s("WT", 9.0, 0.9, 0.9, 0.9),
        Kind::Tourist => s("B2", 14.0, 0.8, 0.7, 0.6),
        Kind::Business => s("B1", 4.0, 0.6, 3.0, 0.7),
        Kind::Worker => s("H1B", 250.0, 0.6, 1.5, 0.5),
        Kind::Student => s("F1", 270.0, 0.3, 1.0, 0.3),
        Kind::Crew => s("D", 1.5, 0.5, 10.0, 0.4),
        // A resident's absence abroad.
        Kind::Resident => s("", 10.0, 0.8, 2.0, 0.7),
    }
}

/// The visa class an admission of `kind` records.
pub(super) fn class(kind: Kind) -> &'static str {
    spec(kind).class
}

/// One traveller's constants.
#[derive(Debug, Clone, Copy)]
pub(super) struct Profile {
    pub category: Category,
    pub kind: Kind,
    /// Index into [`records::PORTS`].
    pub home: usize,
    /// Index into the carriers of a port's kind.
    pub carrier: usize,
    pub trips_per_year: f64,
}

impl Profile {
    /// A category by its share, then a kind, a home port, a carrier and a
    /// rate of trips.
    pub fn draw(rng: &mut ChaCha8Rng, shares: &Shares) -> Profile {
        let u = unit(rng);
        let cuts = [
            (shares.citizen, Category::Citizen),
            (shares.permanent_resident, Category::LawfulPermanentResident),
            (shares.visa_holder, Category::NonImmigrantVisa),
            (shares.other, Category::Other),
        ];
        let (mut acc, mut category) = (0.0, Category::VisaExempt);
        for (share, c) in cuts {
            acc += share;
            if u < acc {
                category = c;
                break;
            }
        }
        let kind = kind_of(rng, category);
        let s = spec(kind);
        Profile {
            category,
            kind,
            home: records::draw_port(rng),
            carrier: rng.random_range(0..64),
            trips_per_year: log_normal(rng, s.rate_median, s.rate_sigma).clamp(0.1, 40.0),
        }
    }
}

fn kind_of(rng: &mut ChaCha8Rng, category: Category) -> Kind {
    match category {
        Category::Citizen | Category::LawfulPermanentResident => Kind::Resident,
        Category::VisaExempt => Kind::VisaExempt,
        Category::Other => Kind::Crew,
        Category::NonImmigrantVisa => match unit(rng) {
            u if u < 0.55 => Kind::Tourist,
            u if u < 0.75 => Kind::Business,
            u if u < 0.85 => Kind::Worker,
            _ => Kind::Student,
        },
    }
}

/// A draw around `median` with log-spread `sigma`.
pub(super) fn log_normal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    let z: f64 = rng.sample(StandardNormal);
    median * (sigma * z).exp()
}

/// An exponential draw of mean `mean`.
pub(super) fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    -(1.0 - unit(rng)).ln() * mean
}

/// Whole days of a draw, clamped so day arithmetic cannot overflow.
fn days(x: f64) -> i32 {
    x.clamp(0.0, 100_000.0) as i32
}

/// One trip: a visitor's stay (entry, exit) or a resident's absence
/// (exit, return).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Trip {
    /// A visitor's entry day, or a resident's exit day.
    pub first: Day,
    /// A visitor's exit day, or a resident's return; `None` when it has
    /// not happened by the end of the span.
    pub second: Option<Day>,
    /// A visitor's admission rule.
    pub rule: Option<StayRule>,
    /// A visitor's last allowed day under `rule` (`None` for duration of
    /// status, and for residents).
    pub last_allowed: Option<Day>,
    /// Indexes into [`records::PORTS`] of the two crossings.
    pub ports: (usize, usize),
}

/// Which capture is missing from the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dropped {
    /// The exit of trip `trip` (a visitor's exit, a resident's departure);
    /// `unmatched`: recorded as a no-match naming nobody.
    Exit { trip: usize, unmatched: bool },
    /// The entry just before trip `trip`'s exit (a visitor's entry; a
    /// resident's previous return).
    EntryBefore { trip: usize },
}

/// A traveller's trips over the span.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Plan {
    /// A resident's first record: the return from a trip abroad that began
    /// before the span.
    pub resident_return: Option<(Day, usize)>,
    pub trips: Vec<Trip>,
    pub dropped: Option<Dropped>,
}

/// The trips of `p` between `start` and `end`, all within their rules.
pub(super) fn plan(rng: &mut ChaCha8Rng, p: &Profile, start: Day, end: Day) -> Plan {
    let gap_mean = 365.0 / p.trips_per_year;
    let span = i64::from(end.since(start)) + 1;
    // The first crossing: anywhere in the span (each traveller crosses at
    // least once), earlier for those who travel often.
    let first = start.plus((exponential(rng, gap_mean) as i64 % span) as i32);
    if p.kind == Kind::Resident {
        let back = start.plus(rng.random_range(0..span.min(30)) as i32);
        resident_plan(rng, p, back, end, gap_mean)
    } else {
        visitor_plan(rng, p, first, end, gap_mean)
    }
}

fn visitor_plan(rng: &mut ChaCha8Rng, p: &Profile, first: Day, end: Day, gap: f64) -> Plan {
    let mut trips: Vec<Trip> = Vec::new();
    let mut day = first;
    while day <= end {
        let present: Vec<(Day, Day)> = trips
            .iter()
            .map(|t| (t.first, t.second.unwrap_or(end)))
            .collect();
        let Some(trip) = visitor_trip(rng, p, day, end, &present) else {
            break;
        };
        let exit = trip.second;
        trips.push(trip);
        match exit {
            Some(exit) => day = exit.plus(1 + days(exponential(rng, gap))),
            None => break,
        }
    }
    Plan {
        resident_return: None,
        trips,
        dropped: None,
    }
}

/// A stay entered on `entry` (later, under 90-in-180, if the entry day
/// itself would be over), cut to end by its last allowed day; `None` when
/// it would begin after `end`.
fn visitor_trip(
    rng: &mut ChaCha8Rng,
    p: &Profile,
    entry: Day,
    end: Day,
    present: &[(Day, Day)],
) -> Option<Trip> {
    let entry = match p.kind {
        Kind::VisaExempt => first_allowed_entry(present, entry),
        _ => entry,
    };
    if entry > end {
        return None;
    }
    let rule = rule_of(rng, p.kind, entry);
    let last_allowed = match rule {
        StayRule::AdmittedUntil(until) => Some(until),
        StayRule::NinetyIn180 => Some(last_allowed_90(present, entry)),
        StayRule::DurationOfStatus => None,
    };
    let s = spec(p.kind);
    let planned = entry.plus(days(log_normal(rng, s.stay_median, s.stay_sigma)));
    let exit = last_allowed.map_or(planned, |l| planned.min(l));
    let port = records::trip_port(rng, p.home);
    Some(Trip {
        first: entry,
        second: (exit <= end).then_some(exit),
        rule: Some(rule),
        last_allowed,
        ports: (port, records::exit_port(rng, port)),
    })
}

fn rule_of(rng: &mut ChaCha8Rng, kind: Kind, entry: Day) -> StayRule {
    let until = |n: i32| StayRule::AdmittedUntil(entry.plus(n - 1));
    match kind {
        Kind::VisaExempt | Kind::Resident => StayRule::NinetyIn180,
        Kind::Tourist => until(180),
        Kind::Business => until([30, 90, 180][rng.random_range(0..3)]),
        Kind::Worker => until(3 * 365),
        Kind::Student => StayRule::DurationOfStatus,
        Kind::Crew => until(29),
    }
}

fn resident_plan(rng: &mut ChaCha8Rng, p: &Profile, back: Day, end: Day, gap: f64) -> Plan {
    let mut trips = Vec::new();
    let mut day = back.plus(1 + days(exponential(rng, gap)));
    while day <= end {
        let s = spec(Kind::Resident);
        let away = days(log_normal(rng, s.stay_median, s.stay_sigma)).max(1);
        let ret = day.plus(away);
        let port = records::trip_port(rng, p.home);
        trips.push(Trip {
            first: day,
            second: (ret <= end).then_some(ret),
            rule: None,
            last_allowed: None,
            ports: (records::exit_port(rng, port), port),
        });
        if ret > end {
            break;
        }
        day = ret.plus(1 + days(exponential(rng, gap)));
    }
    Plan {
        resident_return: Some((back, p.home)),
        trips,
        dropped: None,
    }
}

/// Days of `present` (inclusive spans) within `from..=to`.
fn days_in(present: &[(Day, Day)], from: Day, to: Day) -> i32 {
    present
        .iter()
        .map(|&(a, b)| (b.min(to).since(a.max(from)) + 1).max(0))
        .sum()
}

const WINDOW: i32 = WINDOW_DAYS as i32;
const LIMIT: i32 = MAX_DAYS_IN_WINDOW as i32;

/// The first day on or after `day` whose window, with that day present,
/// holds at most 90 days.
fn first_allowed_entry(present: &[(Day, Day)], mut day: Day) -> Day {
    while days_in(present, day.plus(1 - WINDOW), day) + 1 > LIMIT {
        day = day.plus(1);
    }
    day
}

/// The last day a stay entered on `entry` may last under 90-in-180: the
/// count in the window ending on a day of the stay never falls from one day
/// to the next (a day enters, at most one leaves), so it is the last day
/// whose count is at most 90 (the entry day's is, and by day 179 of the
/// stay the count is 180).
fn last_allowed_90(present: &[(Day, Day)], entry: Day) -> Day {
    let count = |x: Day| days_in(present, x.plus(1 - WINDOW), x) + x.since(entry) + 1;
    let (mut lo, mut hi) = (entry, entry.plus(WINDOW - 1));
    while lo < hi {
        let mid = lo.plus((hi.since(lo) + 1) / 2);
        if count(mid) <= LIMIT {
            lo = mid;
        } else {
            hi = mid.plus(-1);
        }
    }
    lo
}

/// Injects at most one irregularity into `plan`, as `cfg`'s shares say.
pub(super) fn inject(
    rng: &mut ChaCha8Rng,
    plan: &mut Plan,
    p: &Profile,
    cfg: &SynthConfig,
    end: Day,
) -> Injected {
    let u = unit(rng);
    let dated = !matches!(p.kind, Kind::Student | Kind::Resident);
    if u < cfg.overstay {
        return if dated {
            overstay(rng, plan, cfg.still_here, end)
        } else {
            Injected::Nothing
        };
    }
    let u = u - cfg.overstay;
    if u < cfg.missed_exit {
        return missed_exit(rng, plan, p.kind == Kind::Resident);
    }
    if u - cfg.missed_exit < cfg.exit_without_entry {
        return exit_without_entry(rng, plan, p.kind == Kind::Resident);
    }
    Injected::Nothing
}

/// One stay runs past its last allowed day: it never ends (`still_here`
/// of the time), or ends 1 to 365 days late (mean about 25) and the trips
/// it overlaps are dropped; a late exit past the span's end is still here.
fn overstay(rng: &mut ChaCha8Rng, plan: &mut Plan, still_here: f64, end: Day) -> Injected {
    let still = unit(rng) < still_here;
    let over = 1 + days(exponential(rng, 24.0)).min(364);
    let eligible: Vec<usize> = (0..plan.trips.len())
        .filter(|&k| plan.trips[k].last_allowed.is_some_and(|l| l < end))
        .collect();
    if eligible.is_empty() {
        return Injected::Nothing;
    }
    let k = eligible[rng.random_range(0..eligible.len())];
    let trip = &mut plan.trips[k];
    let Some(last_allowed) = trip.last_allowed else {
        return Injected::Nothing;
    };
    let exit = last_allowed.plus(over);
    let left = (!still && exit <= end).then_some(exit);
    trip.second = left;
    match left {
        Some(exit) => {
            // The trips the late stay overlaps never happened.
            let mut i = 0;
            plan.trips.retain(|t| {
                i += 1;
                i <= k + 1 || t.first > exit
            });
        }
        None => plan.trips.truncate(k + 1),
    }
    Injected::Overstay { last_allowed, left }
}

/// One exit is not captured (or captured as a no-match), preferring one
/// followed by another crossing.
fn missed_exit(rng: &mut ChaCha8Rng, plan: &mut Plan, resident: bool) -> Injected {
    let n = plan.trips.len();
    // A visitor's exit is `second`; a resident's is `first`, always there.
    let exits: Vec<usize> = (0..n)
        .filter(|&k| resident || plan.trips[k].second.is_some())
        .collect();
    let followed: Vec<usize> = exits
        .iter()
        .copied()
        .filter(|&k| {
            if resident {
                plan.trips[k].second.is_some()
            } else {
                k + 1 < n
            }
        })
        .collect();
    let pool = if followed.is_empty() { exits } else { followed };
    if pool.is_empty() {
        return Injected::Nothing;
    }
    let k = pool[rng.random_range(0..pool.len())];
    let unmatched = unit(rng) < 0.5;
    plan.dropped = Some(Dropped::Exit { trip: k, unmatched });
    let t = &plan.trips[k];
    let (exit_day, last) = if resident {
        (t.first, t.second.is_none())
    } else {
        (t.second.unwrap_or(t.first), k + 1 == n)
    };
    Injected::MissedExit {
        exit_day,
        recorded_unmatched: unmatched,
        last,
    }
}

/// The entry before one exit is not captured.
fn exit_without_entry(rng: &mut ChaCha8Rng, plan: &mut Plan, resident: bool) -> Injected {
    let exits: Vec<usize> = (0..plan.trips.len())
        .filter(|&k| resident || plan.trips[k].second.is_some())
        .collect();
    if exits.is_empty() {
        return Injected::Nothing;
    }
    let k = exits[rng.random_range(0..exits.len())];
    plan.dropped = Some(Dropped::EntryBefore { trip: k });
    let t = &plan.trips[k];
    let exit_day = if resident {
        t.first
    } else {
        t.second.unwrap_or(t.first)
    };
    Injected::ExitWithoutEntry { exit_day }
}
