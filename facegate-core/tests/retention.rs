//! Retention of encounters on real files, in simulated time: what the
//! policy expires leaves the database file and its WAL (the raw bytes are
//! searched, not only the API), and nothing is erased before its time.

use std::path::Path;
use std::time::Duration;

use facegate_core::clock::UnixMillis;
use facegate_core::encounter::{
    Admission, CaptureContext, Category, Correction, Day, Decision, Encounter, EncounterStore,
    Erasure, Method, SqliteEncounters, StayRule, Traveller,
};
use facegate_core::manifest::Direction;
use facegate_core::retention::{RetentionPolicy, purge_encounters, scheduled_erasures};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn t(days: i64, hours: i64) -> UnixMillis {
    // 2026-01-01T00:00Z plus days and hours.
    UnixMillis(1_767_225_600_000 + days * DAY + hours * HOUR)
}

fn crossing(id: &str, subject: &str, direction: Direction, at: UnixMillis) -> Encounter {
    Encounter {
        context: CaptureContext {
            encounter_id: id.into(),
            direction,
            port: "JFK".into(),
            lane: "1".into(),
            carrier: String::new(),
            voyage: String::new(),
            captured_at: at,
        },
        manifest_id: None,
        method: Method::Identify,
        decision: Decision::Match,
        subject_id: Some(subject.into()),
        score: Some(0.8),
        threshold: 0.35,
        principal: String::new(),
        generation: 1,
        recorded_at: at,
    }
}

fn file(s: &str, category: Category, rule: StayRule) -> Traveller {
    Traveller {
        subject_id: s.into(),
        category,
        admissions: vec![Admission {
            class: "B2".into(),
            port: "JFK".into(),
            day: Day::of(t(0, 0)),
            rule,
        }],
    }
}

/// Whether `needle` occurs in any file under `dir` (the database, its WAL,
/// anything SQLite left there).
fn on_disk(dir: &Path, needle: &str) -> bool {
    std::fs::read_dir(dir).unwrap().any(|f| {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

#[test]
fn a_citizens_records_leave_the_disk_after_12_hours_and_others_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    let policy = RetentionPolicy::default();
    let citizen = "CITIZEN-7f3a";
    let visitor = "VISITOR-91bc";
    store
        .put_traveller(
            &file(citizen, Category::Citizen, StayRule::DurationOfStatus),
            t(0, 0),
        )
        .unwrap();
    store
        .put_traveller(
            &file(visitor, Category::VisaExempt, StayRule::NinetyIn180),
            t(0, 0),
        )
        .unwrap();
    store
        .record(crossing("c-in", citizen, Direction::Entry, t(0, 1)))
        .unwrap();
    store
        .record(crossing("v-in", visitor, Direction::Entry, t(0, 1)))
        .unwrap();
    store
        .record(crossing("v-out", visitor, Direction::Exit, t(10, 1)))
        .unwrap();
    // A correction that names the citizen in another record's history.
    let other = store
        .record(crossing("x", visitor, Direction::Entry, t(20, 1)))
        .unwrap();
    store
        .correct(Correction {
            record_id: other.stored.record_id,
            decision: Decision::OfficerOverride,
            subject_id: Some(visitor.into()),
            principal: "officer".into(),
            note: "checked".into(),
            at: t(20, 2),
        })
        .unwrap();
    assert!(on_disk(dir.path(), citizen));

    // 11 hours on: nothing is due.
    let r = purge_encounters(store.as_ref(), &policy, t(0, 12)).unwrap();
    assert_eq!(r.encounters_erased, 0);
    assert_eq!(store.history(citizen).unwrap().len(), 1);

    // 13 hours on: the citizen's record goes, from the API and the bytes.
    let r = purge_encounters(store.as_ref(), &policy, t(0, 14)).unwrap();
    assert_eq!(r.encounters_erased, 1);
    assert!(store.history(citizen).unwrap().is_empty());
    assert!(
        !on_disk(dir.path(), "c-in"),
        "the citizen's encounter id is still on disk"
    );
    // The visitor's stay ended on day 10: kept for 3 years after it.
    assert_eq!(store.history(visitor).unwrap().len(), 3);
    let three_years = humantime::parse_duration("3years").unwrap();
    let just_before = t(10, 1).plus(three_years).minus(Duration::from_secs(60));
    purge_encounters(store.as_ref(), &policy, just_before).unwrap();
    assert_eq!(store.history(visitor).unwrap().len(), 3);
    let after = t(10, 1).plus(three_years);
    let r = purge_encounters(store.as_ref(), &policy, after).unwrap();
    assert_eq!(r.encounters_erased, 2, "the first stay's entry and exit");
    let left = store.history(visitor).unwrap();
    assert_eq!(left.len(), 1, "the open stay is kept");
    assert!(!on_disk(dir.path(), "v-out"));
}

#[test]
fn an_overstayers_records_are_kept_longer_and_never_erased_early() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    let policy = RetentionPolicy::default();
    let s = "OVER-1";
    let mut f = file(
        s,
        Category::NonImmigrantVisa,
        StayRule::AdmittedUntil(Day::of(t(30, 0))),
    );
    f.admissions.push(Admission {
        class: "B2".into(),
        port: "JFK".into(),
        day: Day::of(t(100, 0)),
        rule: StayRule::AdmittedUntil(Day::of(t(130, 0))),
    });
    store.put_traveller(&f, t(0, 0)).unwrap();
    // First stay overstayed (left on day 40); second stay short and clean.
    store
        .record(crossing("a", s, Direction::Entry, t(0, 1)))
        .unwrap();
    store
        .record(crossing("b", s, Direction::Exit, t(40, 1)))
        .unwrap();
    store
        .record(crossing("c", s, Direction::Entry, t(100, 1)))
        .unwrap();
    store
        .record(crossing("d", s, Direction::Exit, t(110, 1)))
        .unwrap();
    let years = |n: &str| humantime::parse_duration(n).unwrap();
    // 4 years after the second exit: its 3 years have passed, but the
    // first stay's 5 have not: nothing goes (the walk stops at the first).
    let r = purge_encounters(store.as_ref(), &policy, t(110, 1).plus(years("4years"))).unwrap();
    assert_eq!(r.encounters_erased, 0);
    let r = purge_encounters(store.as_ref(), &policy, t(40, 1).plus(years("5years"))).unwrap();
    assert_eq!(r.encounters_erased, 4);
    // Nothing left, and the file was last set long ago: it goes too.
    assert_eq!(r.travellers_erased, 1);
    assert_eq!(store.traveller(s).unwrap(), None);
}

/// Records `s` entering on `entry` and leaving on `exit` (days), admitted
/// for 30 days: an overstay when it stays longer.
fn stay(store: &dyn EncounterStore, s: &str, entry: i64, exit: i64) {
    let mut f = file(
        s,
        Category::VisaExempt,
        StayRule::AdmittedUntil(Day::of(t(entry + 30, 0))),
    );
    f.admissions[0].day = Day::of(t(entry, 0));
    store.put_traveller(&f, t(entry, 0)).unwrap();
    let id = |d| format!("{s}-{d}");
    store
        .record(crossing(&id("in"), s, Direction::Entry, t(entry, 1)))
        .unwrap();
    store
        .record(crossing(&id("out"), s, Direction::Exit, t(exit, 1)))
        .unwrap();
}

#[test]
fn an_overstayers_erasure_is_announced_for_the_notice_period_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    let policy = RetentionPolicy::default();
    let notice = policy.notices.overstayer_erasure;
    let five_years = policy.encounters.overstayer.keep;
    // Two overstayers (left on days 40 and 45, admitted 30), one visitor
    // who left in time (day 20) and one citizen: only the first two are
    // ever announced.
    stay(store.as_ref(), "OVER-A", 0, 40);
    stay(store.as_ref(), "OVER-B", 5, 45);
    stay(store.as_ref(), "ON-TIME", 0, 20);
    store
        .put_traveller(
            &file("CITIZEN", Category::Citizen, StayRule::DurationOfStatus),
            t(0, 0),
        )
        .unwrap();
    store
        .record(crossing("c", "CITIZEN", Direction::Exit, t(40, 1)))
        .unwrap();
    let erase_a = t(40, 1).plus(five_years);
    let listed = |now: UnixMillis| -> Vec<(String, UnixMillis)> {
        let page = scheduled_erasures(store.as_ref(), &policy, now, None, 0).unwrap();
        assert_eq!(page.next, None);
        page.erasures
            .iter()
            .map(|e| (e.subject_id.clone(), e.stay.erase_at))
            .collect()
    };
    let day = Duration::from_secs(86_400);

    let before_notice = erase_a.minus(notice).minus(day);
    assert_eq!(listed(before_notice), []);
    let r = purge_encounters(store.as_ref(), &policy, before_notice).unwrap();
    // The visitor's 3 years and the citizen's 12 hours have passed.
    assert_eq!((r.overstays_noticed, r.encounters_erased), (0, 3));

    let in_notice = erase_a.minus(notice).plus(day);
    assert_eq!(listed(in_notice), [("OVER-A".to_string(), erase_a)]);
    let r = purge_encounters(store.as_ref(), &policy, in_notice).unwrap();
    assert_eq!((r.overstays_noticed, r.encounters_erased), (1, 0));
    let a = scheduled_erasures(store.as_ref(), &policy, in_notice, None, 0).unwrap();
    assert_eq!(a.erasures[0].stay.exit_at, t(40, 1));
    assert_eq!(a.erasures[0].stay.days_over, 10);

    // Both, a page each.
    let both = erase_a.minus(Duration::from_secs(3_600));
    let first = scheduled_erasures(store.as_ref(), &policy, both, None, 1).unwrap();
    assert_eq!(first.next.as_deref(), Some("OVER-A"));
    let second =
        scheduled_erasures(store.as_ref(), &policy, both, first.next.as_deref(), 1).unwrap();
    assert_eq!(second.erasures[0].subject_id, "OVER-B");
    assert_eq!(second.erasures[0].stay.erase_at, t(45, 1).plus(five_years));

    // At the announced instant the purge erases them; nothing is left to announce.
    let r = purge_encounters(store.as_ref(), &policy, erase_a).unwrap();
    assert_eq!(r.encounters_erased, 2);
    assert_eq!(
        listed(erase_a),
        [("OVER-B".to_string(), t(45, 1).plus(five_years))]
    );
    assert_eq!(store.history("OVER-A").unwrap(), []);
}

#[test]
fn a_stay_that_an_overstay_counts_is_kept_as_long_as_the_overstay() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    let policy = RetentionPolicy::default();
    let s = "NINETY-1";
    let f = file(s, Category::VisaExempt, StayRule::NinetyIn180);
    store.put_traveller(&f, t(0, 0)).unwrap();
    // 60 days in, 40 days out, 40 days in: the second stay is 10 days
    // over 90 in 180 only because the first stay's days count in its window.
    for (id, direction, d) in [
        ("a", Direction::Entry, 0),
        ("b", Direction::Exit, 59),
        ("c", Direction::Entry, 100),
        ("d", Direction::Exit, 139),
    ] {
        store.record(crossing(id, s, direction, t(d, 1))).unwrap();
    }
    let years = |n: &str| humantime::parse_duration(n).unwrap();
    let day = Duration::from_secs(86_400);
    // The first stay's own 3 years, then the second's, pass: erasing the
    // first would leave the second 40 days, no overstay, and erased 2 years
    // early by the next purge. Both stay for the overstay's 5 years.
    for at in [
        t(59, 1).plus(years("3years")),
        t(139, 1).plus(years("3years")),
    ] {
        let r = purge_encounters(store.as_ref(), &policy, at.plus(day)).unwrap();
        assert_eq!(r.encounters_erased, 0, "at {at}");
    }
    let erase_at = t(139, 1).plus(years("5years"));
    let listed = scheduled_erasures(store.as_ref(), &policy, erase_at.minus(day), None, 0).unwrap();
    let stays: Vec<_> = listed.erasures.iter().map(|e| e.stay).collect();
    assert_eq!(stays.len(), 1);
    assert_eq!(
        (stays[0].exit_at, stays[0].days_over, stays[0].erase_at),
        (t(139, 1), 10, erase_at)
    );
    let r = purge_encounters(store.as_ref(), &policy, erase_at).unwrap();
    assert_eq!(r.encounters_erased, 4);

    // The same first stay, then an entry 40 days later with no exit: still
    // in the country on day 135, 6 days over 90 in 180 with the first
    // stay's days counted, none without. With visitors' records kept only
    // 30 days after their exit, the first stay's are due on day 89, but
    // they stay as long as the current overstay does.
    let short = RetentionPolicy {
        encounters: facegate_core::retention::EncounterRules {
            visa_exempt: facegate_core::retention::Rule {
                keep: years("30days"),
                from: facegate_core::retention::Event::Exit,
            },
            ..policy.encounters.clone()
        },
        ..policy.clone()
    };
    let s = "NINETY-2";
    store
        .put_traveller(
            &file(s, Category::VisaExempt, StayRule::NinetyIn180),
            t(0, 0),
        )
        .unwrap();
    for (id, direction, d) in [
        ("e", Direction::Entry, 0),
        ("f", Direction::Exit, 59),
        ("g", Direction::Entry, 100),
    ] {
        store.record(crossing(id, s, direction, t(d, 1))).unwrap();
    }
    let r = purge_encounters(store.as_ref(), &short, t(135, 2)).unwrap();
    assert_eq!(r.encounters_erased, 0);
    assert_eq!(store.history(s).unwrap().len(), 3);
    // The same records judged as of day 120, when they were not over yet:
    // the first stay goes, as its own rule says.
    let r = purge_encounters(store.as_ref(), &short, t(120, 2)).unwrap();
    assert_eq!(r.encounters_erased, 2);
}

#[test]
fn erasure_on_request_removes_every_trace_of_a_subject() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    let s = "ERASE-ME-5d1";
    store
        .put_traveller(
            &file(s, Category::VisaExempt, StayRule::NinetyIn180),
            t(0, 0),
        )
        .unwrap();
    store
        .record(crossing("e1", s, Direction::Entry, t(0, 1)))
        .unwrap();
    // Another record corrected away from them still named them.
    let other = store
        .record(crossing("o1", s, Direction::Exit, t(1, 1)))
        .unwrap();
    store
        .correct(Correction {
            record_id: other.stored.record_id,
            decision: Decision::OfficerOverride,
            subject_id: Some("SOMEONE-ELSE".into()),
            principal: "officer".into(),
            note: "wrong person".into(),
            at: t(1, 2),
        })
        .unwrap();
    let n = store
        .erase(Erasure::Subject {
            subject_id: s.into(),
        })
        .unwrap();
    assert_eq!(n, 2, "one encounter and the traveller file");
    store.checkpoint().unwrap();
    assert!(store.history(s).unwrap().is_empty());
    assert_eq!(store.traveller(s).unwrap(), None);
    let kept = store.get(other.stored.record_id).unwrap().unwrap();
    assert_eq!(kept.changes[0].old_subject_id, None);
    assert!(!on_disk(dir.path(), s), "the erased id is still on disk");
    assert!(on_disk(dir.path(), "SOMEONE-ELSE"));
}

mod an_overstay_is_kept_its_whole_period {
    //! Property: whatever a visitor's stays (exits sometimes never
    //! captured) and whenever the purge runs, an overstay's records stay
    //! at least the overstayer's period after its exit, and an overstay
    //! still going on stays one: no purge of an earlier stay it rests on
    //! shortens that.
    use super::*;
    use facegate_core::encounter::stay_status;
    use facegate_core::retention::erasure_schedule;
    use proptest::prelude::*;

    /// Stays as (days since the previous one, days in the country, exit
    /// captured); the last one's missing exit means still in the country.
    fn stays() -> impl Strategy<Value = Vec<(i64, i64, bool)>> {
        proptest::collection::vec((1i64..200, 1i64..120, proptest::bool::weighted(0.8)), 1..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn no_purge_shortens_an_overstays_period(
            spans in stays(),
            days_on in 0i64..3_000,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteEncounters::open(dir.path()).unwrap();
            let policy = RetentionPolicy::default();
            let overstayer = policy.encounters.overstayer.keep;
            let s = "PROP-1";
            let f = file(s, Category::VisaExempt, StayRule::NinetyIn180);
            store.put_traveller(&f, t(0, 0)).unwrap();
            let mut day = 0;
            for (n, (gap, len, exit)) in spans.iter().enumerate() {
                day += gap;
                store.record(crossing(&format!("in{n}"), s, Direction::Entry, t(day, 1))).unwrap();
                day += len - 1;
                if *exit {
                    store.record(crossing(&format!("out{n}"), s, Direction::Exit, t(day, 2))).unwrap();
                }
            }
            let now = t(day + days_on, 3);
            let traveller = store.traveller(s).unwrap();
            let schedule = || {
                erasure_schedule(store.as_ref(), &policy.encounters, traveller.as_ref(), s, now)
                    .unwrap()
                    .unwrap()
            };
            let over_now = || {
                let moves = store.movements(s, UnixMillis(i64::MAX)).unwrap();
                stay_status(&moves, &f.admissions, Category::VisaExempt, Day::of(now)).days_over > 0
            };
            let (before, over_before) = (schedule(), over_now());
            purge_encounters(store.as_ref(), &policy, now).unwrap();
            let after = schedule();
            for over in before.iter().filter(|e| e.days_over > 0) {
                let due = over.exit_at.plus(overstayer);
                if due <= now {
                    continue;
                }
                let kept = after.iter().find(|e| e.exit_at == over.exit_at);
                prop_assert!(
                    kept.is_some_and(|e| e.erase_at >= due),
                    "the overstay ending {} is due {due}, but after the purge at {now}: {before:?} then {after:?}",
                    over.exit_at
                );
            }
            prop_assert!(!over_before || over_now(), "the current overstay ended at {now}");
        }
    }
}
