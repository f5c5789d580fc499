//! The encounter store's contract: what every [`EncounterStore`] must do,
//! written once and run against each store (the embedded SQLite one in
//! `facegate-core/tests/encounters.rs`, the central PostgreSQL one in
//! `facegate-postgres/tests/contract.rs`, which includes this file).
//!
//! Each check takes an [`Opener`]: every call opens the same, initially
//! empty, store (a directory, a database), so a check can drop its store
//! and open it again to see what survived.

#![allow(dead_code)]

use std::sync::Arc;

use facegate_core::clock::UnixMillis;
use facegate_core::encounter::{
    Admission, CaptureContext, Category, Correction, Day, Decision, Encounter, EncounterError,
    EncounterStore, Method, RecordError, Recorded, StayRule, Traveller,
};
use facegate_core::manifest::Direction;

/// Opens the store under test (the same one at every call).
pub type Opener<'a> = &'a dyn Fn() -> Arc<dyn EncounterStore>;

/// One `#[test]` per check of the contract, each on a fresh store that
/// `$fresh()` makes: it returns what must live as long as the test (a
/// temporary directory, a database) and the store's [`Opener`].
#[macro_export]
macro_rules! store_contract_tests {
    ($fresh:expr) => {
        $crate::store_contract_tests!(@each $fresh;
            a_record_survives_a_restart_and_a_retry_returns_the_first,
            bad_records_are_refused_with_their_reason_and_nothing_is_written,
            an_officer_correction_keeps_what_was_before,
            concurrent_records_share_commits_and_none_is_lost,
            travellers_files_hold_category_and_admissions,
            presence_and_irregular_movements_are_found,
            out_of_order_captures_are_read_in_capture_order,
            overstayers_are_those_present_past_their_rule,
            a_manifest_reconciles_into_matched_no_shows_and_strangers,
            irregular_reads_order_movements_at_one_instant_as_stays_do,
            a_queued_record_is_durable_when_answered_and_flags_an_exit_without_entry,
        );
    };
    (@each $fresh:expr; $($check:ident,)*) => {
        $(
            #[test]
            fn $check() {
                let (_keep, open) = $fresh();
                store_contract::$check(&open);
            }
        )*
    };
}

const DAY_MS: i64 = 86_400_000;

/// Noon-ish on `day`: `hour` hours into it.
pub fn at(day: i32, hour: i64) -> UnixMillis {
    UnixMillis(i64::from(day) * DAY_MS + hour * 3_600_000)
}

/// A port's crossing at JFK, matched to `subject` or to nobody.
pub fn crossing(id: &str, subject: Option<&str>, direction: Direction, t: UnixMillis) -> Encounter {
    Encounter {
        context: CaptureContext {
            encounter_id: id.into(),
            direction,
            port: "JFK".into(),
            lane: "7".into(),
            carrier: "XA".into(),
            voyage: "XA100".into(),
            captured_at: t,
        },
        manifest_id: None,
        method: Method::Identify,
        decision: if subject.is_some() {
            Decision::Match
        } else {
            Decision::NoMatch
        },
        subject_id: subject.map(str::to_owned),
        score: subject.map(|_| 0.71),
        threshold: 0.35,
        principal: "jfk-kiosk".into(),
        generation: 3,
        recorded_at: t,
    }
}

pub fn admitted(store: &dyn EncounterStore, s: &str, category: Category, rule: StayRule) {
    let t = Traveller {
        subject_id: s.into(),
        category,
        admissions: vec![Admission {
            class: "B2".into(),
            port: "JFK".into(),
            day: Day(0),
            rule,
        }],
    };
    store.put_traveller(&t, at(0, 1)).unwrap();
}

/// The contract: see the module doc.
pub fn a_record_survives_a_restart_and_a_retry_returns_the_first(open: Opener<'_>) {
    let first = {
        let store = open();
        let r = store
            .record(crossing("c1", Some("S1"), Direction::Entry, at(100, 9)))
            .unwrap();
        assert!(r.newly_recorded);
        r.stored
    };
    let store = open();
    assert_eq!(store.get(first.record_id).unwrap().as_ref(), Some(&first));
    // The same port's id again, with different contents: the first stands.
    let retry = store
        .record(crossing("c1", Some("S2"), Direction::Exit, at(101, 9)))
        .unwrap();
    assert!(!retry.newly_recorded);
    assert_eq!(retry.stored, first);
    // Another port may use the same id.
    let mut other = crossing("c1", Some("S1"), Direction::Exit, at(101, 9));
    other.context.port = "LAX".into();
    let r = store.record(other).unwrap();
    assert!(r.newly_recorded);
    assert_ne!(r.stored.record_id, first.record_id);
    assert_eq!(store.history("S1").unwrap().len(), 2);
}

/// The contract: see the module doc.
pub fn bad_records_are_refused_with_their_reason_and_nothing_is_written(open: Opener<'_>) {
    let store = open();
    let mut bad = crossing("", Some("S1"), Direction::Entry, at(1, 1));
    let e = store.record(bad.clone()).unwrap_err();
    assert!(e.to_string().contains("encounter_id: is empty"), "{e}");
    bad.context.encounter_id = "ok".into();
    bad.decision = Decision::Match;
    bad.subject_id = None;
    let e = store.record(bad.clone()).unwrap_err();
    assert!(
        matches!(
            e,
            EncounterError::Invalid(RecordError::DecisionMismatch { .. })
        ),
        "{e}"
    );
    bad.subject_id = Some("S1".into());
    bad.score = Some(f32::NAN);
    assert!(store.record(bad).is_err());
    assert!(store.history("S1").unwrap().is_empty());
}

/// The contract: see the module doc.
pub fn an_officer_correction_keeps_what_was_before(open: Opener<'_>) {
    let store = open();
    let r = store
        .record(crossing("c1", None, Direction::Exit, at(10, 8)))
        .unwrap();
    let fixed = store
        .correct(Correction {
            record_id: r.stored.record_id,
            decision: Decision::OfficerOverride,
            subject_id: Some("S9".into()),
            principal: "officer-17".into(),
            note: "passport checked by hand".into(),
            at: at(10, 9),
        })
        .unwrap();
    assert_eq!(fixed.encounter.decision, Decision::OfficerOverride);
    assert_eq!(fixed.encounter.subject_id.as_deref(), Some("S9"));
    assert_eq!(fixed.changes.len(), 1);
    assert_eq!(fixed.changes[0].old_decision, Decision::NoMatch);
    assert_eq!(fixed.changes[0].old_subject_id, None);
    assert_eq!(store.history("S9").unwrap(), vec![fixed]);
    let e = store
        .correct(Correction {
            record_id: 999,
            decision: Decision::NoMatch,
            subject_id: None,
            principal: "officer-17".into(),
            note: "x".into(),
            at: at(10, 9),
        })
        .unwrap_err();
    assert!(
        matches!(e, EncounterError::NotFound { record_id: 999 }),
        "{e}"
    );
}

/// The contract: see the module doc.
pub fn concurrent_records_share_commits_and_none_is_lost(open: Opener<'_>) {
    let store = open();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..50 {
                    let s = format!("S{t}");
                    let dir = if i % 2 == 0 {
                        Direction::Entry
                    } else {
                        Direction::Exit
                    };
                    store
                        .record(crossing(
                            &format!("{t}-{i}"),
                            Some(&s),
                            dir,
                            at(i, t.into()),
                        ))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // 800 records from 16 threads at once: commits are shared (each costs
    // an fsync of milliseconds, while the other threads' records queue).
    let (writes, commits) = store.commit_counts();
    assert_eq!(writes, 800);
    assert!(commits < writes, "{commits} commits for {writes} records");
    drop(store);
    let store = open();
    for t in 0..16 {
        assert_eq!(store.history(&format!("S{t}")).unwrap().len(), 50);
    }
}

/// The contract: see the module doc.
pub fn travellers_files_hold_category_and_admissions(open: Opener<'_>) {
    let store = open();
    let mut t = Traveller {
        subject_id: "S1".into(),
        category: Category::NonImmigrantVisa,
        admissions: vec![Admission {
            class: "B2".into(),
            port: "JFK".into(),
            day: Day(100),
            rule: StayRule::AdmittedUntil(Day(280)),
        }],
    };
    store.put_traveller(&t, at(100, 1)).unwrap();
    t.admissions.push(Admission {
        class: "visa-exempt".into(),
        port: "LAX".into(),
        day: Day(400),
        rule: StayRule::NinetyIn180,
    });
    t.category = Category::VisaExempt;
    store.put_traveller(&t, at(400, 1)).unwrap();
    assert_eq!(store.traveller("S1").unwrap(), Some(t.clone()));
    assert_eq!(store.traveller("S2").unwrap(), None);
    t.admissions[0].rule = StayRule::AdmittedUntil(Day(99));
    let e = store.put_traveller(&t, at(400, 2)).unwrap_err();
    assert!(e.to_string().contains("before the admission day"), "{e}");
}

/// The contract: see the module doc.
pub fn presence_and_irregular_movements_are_found(open: Opener<'_>) {
    let store = open();
    let rec = |id: &str, s: &str, d: Direction, day: i32| {
        store.record(crossing(id, Some(s), d, at(day, 10))).unwrap();
    };
    // A: in and out; B: in; C: out with no entry; D: in, in (a missed exit);
    // E: a citizen who is in.
    rec("a1", "A", Direction::Entry, 10);
    rec("a2", "A", Direction::Exit, 20);
    rec("b1", "B", Direction::Entry, 15);
    rec("c1", "C", Direction::Exit, 16);
    rec("d1", "D", Direction::Entry, 5);
    rec("d2", "D", Direction::Entry, 18);
    rec("e1", "E", Direction::Entry, 12);
    store
        .put_traveller(
            &facegate_core::encounter::store::traveller_of("E", Category::Citizen),
            at(12, 11),
        )
        .unwrap();
    let present = store.present_subjects(at(30, 0), None, 0).unwrap();
    assert_eq!(present.subject_ids, ["B", "D"]);
    assert_eq!(present.next, None);
    // As of day 11, only A and D had entered.
    let early = store.present_subjects(at(11, 0), None, 0).unwrap();
    assert_eq!(early.subject_ids, ["A", "D"]);
    // Paged.
    let p1 = store.present_subjects(at(30, 0), None, 1).unwrap();
    assert_eq!(
        (p1.subject_ids.as_slice(), p1.next.as_deref()),
        (&["B".to_string()][..], Some("B"))
    );
    let p2 = store
        .present_subjects(at(30, 0), p1.next.as_deref(), 1)
        .unwrap();
    assert_eq!(p2.subject_ids, ["D"]);

    let exits = store.exits_without_entry(at(0, 0), at(30, 0), 0).unwrap();
    let ids: Vec<_> = exits
        .iter()
        .map(|e| e.encounter.context.encounter_id.as_str())
        .collect();
    assert_eq!(ids, ["c1"]);
    let entries = store.entries_without_exit(at(0, 0), at(30, 0), 0).unwrap();
    let ids: Vec<_> = entries
        .iter()
        .map(|e| e.encounter.context.encounter_id.as_str())
        .collect();
    assert_eq!(ids, ["d1"]);
    let m: Vec<_> = store.movements("D", at(30, 0)).unwrap();
    assert_eq!(m.len(), 2);
    assert!(store.movements("D", at(6, 0)).unwrap().len() == 1);
}

/// The contract: see the module doc.
pub fn out_of_order_captures_are_read_in_capture_order(open: Opener<'_>) {
    let store = open();
    store
        .record(crossing("x2", Some("A"), Direction::Exit, at(20, 1)))
        .unwrap();
    store
        .record(crossing("x1", Some("A"), Direction::Entry, at(10, 1)))
        .unwrap();
    let h = store.history("A").unwrap();
    let ids: Vec<_> = h
        .iter()
        .map(|e| e.encounter.context.encounter_id.as_str())
        .collect();
    assert_eq!(ids, ["x1", "x2"]);
    assert!(
        store
            .exits_without_entry(at(0, 0), at(30, 0), 0)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .present_subjects(at(30, 0), None, 0)
            .unwrap()
            .subject_ids
            .is_empty()
    );
}

/// The contract: see the module doc.
pub fn overstayers_are_those_present_past_their_rule(open: Opener<'_>) {
    let store = open();
    let rec = |id: &str, s: &str, d: Direction, day: i32| {
        store.record(crossing(id, Some(s), d, at(day, 10))).unwrap();
    };
    // A: visa-exempt, in since day 0: days 0..=89 allowed, 90..=100 over.
    admitted(
        store.as_ref(),
        "A",
        Category::VisaExempt,
        StayRule::NinetyIn180,
    );
    rec("a1", "A", Direction::Entry, 0);
    // B: admitted until day 30, left on day 20.
    admitted(
        store.as_ref(),
        "B",
        Category::NonImmigrantVisa,
        StayRule::AdmittedUntil(Day(30)),
    );
    rec("b1", "B", Direction::Entry, 0);
    rec("b2", "B", Direction::Exit, 20);
    // C: a citizen, in.
    admitted(
        store.as_ref(),
        "C",
        Category::Citizen,
        StayRule::DurationOfStatus,
    );
    rec("c1", "C", Direction::Entry, 0);
    // D: no traveller file, in: no rule to be over.
    rec("d1", "D", Direction::Entry, 0);
    // E: admitted until day 50, in on day 100.
    admitted(
        store.as_ref(),
        "E",
        Category::NonImmigrantVisa,
        StayRule::AdmittedUntil(Day(50)),
    );
    rec("e1", "E", Direction::Entry, 0);

    let all = facegate_core::encounter::overstays(store.as_ref(), Day(100), None, 0).unwrap();
    let over: Vec<_> = all
        .overstays
        .iter()
        .map(|r| (r.subject_id.as_str(), r.status.days_over))
        .collect();
    assert_eq!(over, [("A", 11), ("E", 50)]);
    assert_eq!(all.next, None);
    let first = facegate_core::encounter::overstays(store.as_ref(), Day(100), None, 1).unwrap();
    assert_eq!(first.overstays.len(), 1);
    assert_eq!(first.next.as_deref(), Some("A"));
    let rest =
        facegate_core::encounter::overstays(store.as_ref(), Day(100), first.next.as_deref(), 1)
            .unwrap();
    assert_eq!(rest.overstays[0].subject_id, "E");
    // On day 89, A has used exactly 90 days: not over.
    let a = facegate_core::encounter::stay_of(store.as_ref(), "A", Day(89)).unwrap();
    assert_eq!((a.status.days_used_in_180, a.status.days_over), (90, 0));
    let d = facegate_core::encounter::stay_of(store.as_ref(), "D", Day(100)).unwrap();
    assert_eq!(d.category, None);
    assert!(!d.status.anomalies.is_empty());
}

/// The contract: see the module doc.
pub fn a_manifest_reconciles_into_matched_no_shows_and_strangers(open: Opener<'_>) {
    use facegate_core::manifest::{Manifest, ManifestHeader, ManifestKind};
    let store = open();
    let on_manifest = |id: &str, s: Option<&str>| {
        let mut e = crossing(id, s, Direction::Exit, at(5, 10));
        e.manifest_id = Some("XA100-D5".into());
        e.method = Method::Manifest;
        store.record(e).unwrap();
    };
    on_manifest("m1", Some("A"));
    on_manifest("m2", None);
    on_manifest("m3", Some("Z")); // found by the national fallback
    store
        .record(crossing("other", Some("B"), Direction::Exit, at(5, 11)))
        .unwrap();
    let manifest = Manifest {
        header: ManifestHeader {
            id: "XA100-D5".into(),
            kind: ManifestKind::Flight,
            carrier: "XA".into(),
            voyage: "XA100".into(),
            port: "JFK".into(),
            direction: Direction::Exit,
            scheduled: at(5, 12),
            valid_from: at(5, 0),
            valid_until: at(6, 0),
        },
        subject_ids: vec!["A".into(), "B".into(), "C".into()],
    };
    let r = facegate_core::encounter::reconcile_manifest(
        store.as_ref(),
        &manifest.header.id,
        &manifest.subject_ids,
    )
    .unwrap();
    assert_eq!(r.matched, ["A"]);
    assert_eq!(r.no_show, ["B", "C"]);
    let strangers: Vec<_> = r
        .not_matched
        .iter()
        .map(|e| e.encounter.context.encounter_id.as_str())
        .collect();
    assert_eq!(strangers, ["m2", "m3"]);
}

/// The contract: see the module doc.
pub fn irregular_reads_order_movements_at_one_instant_as_stays_do(open: Opener<'_>) {
    let store = open();
    let rec = |id: &str, s: &str, d: Direction| {
        store.record(crossing(id, Some(s), d, at(5, 10))).unwrap();
    };
    // F: an exit recorded before its entry, both at one instant: a
    // same-day stay (entry first), nothing irregular.
    rec("f2", "F", Direction::Exit);
    rec("f1", "F", Direction::Entry);
    // G: two exits at one instant: neither follows an entry.
    rec("g1", "G", Direction::Exit);
    rec("g2", "G", Direction::Exit);
    // H: two entries at one instant: the first is followed by an entry.
    rec("h1", "H", Direction::Entry);
    rec("h2", "H", Direction::Entry);
    let ids = |found: Vec<facegate_core::encounter::StoredEncounter>| -> Vec<String> {
        found
            .into_iter()
            .map(|e| e.encounter.context.encounter_id)
            .collect()
    };
    let (from, until) = (at(5, 0), at(6, 0));
    assert_eq!(
        ids(store.exits_without_entry(from, until, 0).unwrap()),
        ["g1", "g2"]
    );
    assert_eq!(
        ids(store.entries_without_exit(from, until, 0).unwrap()),
        ["h1"]
    );
    // A page of one, then the rest from the same instant.
    assert_eq!(
        ids(store.exits_without_entry(from, until, 1).unwrap()),
        ["g1"]
    );
}

/// Records `e` through the queued path and waits for its reply.
pub fn enqueue(store: &dyn EncounterStore, e: Encounter) -> Result<Recorded, EncounterError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let queued = store.enqueue_record(
        e,
        Box::new(move |r| {
            tx.send(r).unwrap();
        }),
    );
    assert!(queued.is_ok(), "an open store with room queues the record");
    rx.recv().unwrap()
}

/// The contract: see the module doc.
pub fn a_queued_record_is_durable_when_answered_and_flags_an_exit_without_entry(open: Opener<'_>) {
    let store = open();
    // S1 leaves without having entered: flagged. S2 enters, then leaves: not.
    let impostor = enqueue(
        store.as_ref(),
        crossing("x1", Some("S1"), Direction::Exit, at(5, 9)),
    )
    .unwrap();
    assert!(impostor.newly_recorded && impostor.exit_without_entry);
    let entry = enqueue(
        store.as_ref(),
        crossing("e2", Some("S2"), Direction::Entry, at(1, 9)),
    )
    .unwrap();
    assert!(!entry.exit_without_entry, "an entry is never flagged");
    let exit = enqueue(
        store.as_ref(),
        crossing("x2", Some("S2"), Direction::Exit, at(5, 9)),
    )
    .unwrap();
    assert!(!exit.exit_without_entry);
    // A second exit in a row is flagged: the movement before it is an exit.
    let again = enqueue(
        store.as_ref(),
        crossing("x3", Some("S2"), Direction::Exit, at(6, 9)),
    )
    .unwrap();
    assert!(again.exit_without_entry);
    // An exit captured before the entry (out of order) has nothing open before it.
    let early = enqueue(
        store.as_ref(),
        crossing("x4", Some("S2"), Direction::Exit, at(0, 9)),
    )
    .unwrap();
    assert!(early.exit_without_entry);
    // A retry is answered with the first record, and never flagged again.
    let retry = enqueue(
        store.as_ref(),
        crossing("x1", Some("S1"), Direction::Exit, at(5, 9)),
    )
    .unwrap();
    assert!(!retry.newly_recorded && !retry.exit_without_entry);
    assert_eq!(retry.stored, impostor.stored);
    // An exit that matched nobody names no subject: nothing to flag.
    let unknown = enqueue(
        store.as_ref(),
        crossing("x5", None, Direction::Exit, at(7, 9)),
    )
    .unwrap();
    assert!(!unknown.exit_without_entry);
    // A bad record is answered with its reason, queued or not.
    let bad = enqueue(
        store.as_ref(),
        crossing("", Some("S3"), Direction::Entry, at(1, 1)),
    );
    assert!(matches!(bad, Err(EncounterError::Invalid(_))), "{bad:?}");
    // What was answered is on disk: a reopened store has it.
    drop(store);
    let store = open();
    assert_eq!(
        store.get(impostor.stored.record_id).unwrap().as_ref(),
        Some(&impostor.stored)
    );
    assert_eq!(store.history("S2").unwrap().len(), 4);
}

/// With the store's writer held up (by `hold`, which returns what lets it
/// go), records are queued past what its queue holds: each one past it is
/// answered at once with `Overloaded`, nothing blocks, and once the writer
/// goes on every record that was queued is durable, none lost.
pub fn a_full_queue_refuses_at_once_and_loses_nothing(
    store: Arc<dyn EncounterStore>,
    hold: impl FnOnce() -> Box<dyn FnOnce()>,
) {
    // More than any store's queue (4,096) and group (256) hold together.
    const SENT: usize = 5_000;
    let release = hold();
    let (tx, rx) = std::sync::mpsc::channel();
    // Sent from a thread of their own, so that a send that blocked would
    // fail this check (below) rather than hang it.
    let (sent, all_sent) = std::sync::mpsc::channel();
    let sender = Arc::clone(&store);
    std::thread::spawn(move || {
        for i in 0..SENT {
            let tx = tx.clone();
            let e = crossing(&format!("q{i}"), Some("SQ"), Direction::Entry, at(1, 9));
            let queued = sender.enqueue_record(e, Box::new(move |r| tx.send((i, r)).unwrap()));
            assert!(
                queued.is_ok(),
                "a store that queues never hands a record back"
            );
        }
        sent.send(()).unwrap();
    });
    all_sent
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("every record sent, none blocking");
    // While the writer is held, the only answers are the refusals.
    let refused: Vec<_> = rx.try_iter().collect();
    assert!(
        refused.len() >= SENT - 4_096 - 256,
        "{} refused",
        refused.len()
    );
    for (i, r) in &refused {
        assert!(
            matches!(r, Err(EncounterError::Overloaded { .. })),
            "record {i}: {r:?}"
        );
    }
    release();
    let taken: Vec<_> = rx.iter().collect();
    assert_eq!(taken.len() + refused.len(), SENT, "every record answered");
    for (i, r) in &taken {
        assert!(
            r.as_ref().is_ok_and(|r| r.newly_recorded),
            "record {i}: {r:?}"
        );
    }
    assert_eq!(store.history("SQ").unwrap().len(), taken.len());
}
