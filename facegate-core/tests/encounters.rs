//! The SQLite encounter store on real files: recording, retries,
//! corrections, restarts, concurrent writers (group commit), the reads
//! reconciliation uses, and a second owner refused.

use std::sync::Arc;

use facegate_core::clock::UnixMillis;
use facegate_core::encounter::{
    Admission, CaptureContext, Category, Correction, Day, Decision, Encounter, EncounterError,
    EncounterStore, Method, RecordError, Recorded, SqliteEncounters, StayRule, Traveller,
};
use facegate_core::manifest::Direction;
use facegate_core::sqlite::DbError;

const DAY_MS: i64 = 86_400_000;

fn at(day: i32, hour: i64) -> UnixMillis {
    UnixMillis(i64::from(day) * DAY_MS + hour * 3_600_000)
}

fn crossing(id: &str, subject: Option<&str>, direction: Direction, t: UnixMillis) -> Encounter {
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

#[test]
fn a_record_survives_a_restart_and_a_retry_returns_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let store = SqliteEncounters::open(dir.path()).unwrap();
        let r = store
            .record(crossing("c1", Some("S1"), Direction::Entry, at(100, 9)))
            .unwrap();
        assert!(r.newly_recorded);
        r.stored
    };
    let store = SqliteEncounters::open(dir.path()).unwrap();
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

#[test]
fn bad_records_are_refused_with_their_reason_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
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

#[test]
fn an_officer_correction_keeps_what_was_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
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

#[test]
fn concurrent_records_share_commits_and_none_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
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
    let stats = store.commit_stats();
    let (writes, commits) = (
        stats.writes.load(std::sync::atomic::Ordering::Relaxed),
        stats.commits.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert_eq!(writes, 800);
    assert!(commits < writes, "{commits} commits for {writes} records");
    drop(store);
    let store = SqliteEncounters::open(dir.path()).unwrap();
    for t in 0..16 {
        assert_eq!(store.history(&format!("S{t}")).unwrap().len(), 50);
    }
}

#[test]
fn travellers_files_hold_category_and_admissions() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
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

#[test]
fn presence_and_irregular_movements_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
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

#[test]
fn out_of_order_captures_are_read_in_capture_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
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

#[test]
fn a_second_owner_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = SqliteEncounters::open(dir.path()).unwrap();
    let e = SqliteEncounters::open(dir.path()).unwrap_err();
    assert!(
        matches!(e, EncounterError::Db(DbError::InUse { .. })),
        "{e}"
    );
}

fn admitted(store: &SqliteEncounters, s: &str, category: Category, rule: StayRule) {
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

#[test]
fn overstayers_are_those_present_past_their_rule() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    let rec = |id: &str, s: &str, d: Direction, day: i32| {
        store.record(crossing(id, Some(s), d, at(day, 10))).unwrap();
    };
    // A: visa-exempt, in since day 0: days 0..=89 allowed, 90..=100 over.
    admitted(&store, "A", Category::VisaExempt, StayRule::NinetyIn180);
    rec("a1", "A", Direction::Entry, 0);
    // B: admitted until day 30, left on day 20.
    admitted(
        &store,
        "B",
        Category::NonImmigrantVisa,
        StayRule::AdmittedUntil(Day(30)),
    );
    rec("b1", "B", Direction::Entry, 0);
    rec("b2", "B", Direction::Exit, 20);
    // C: a citizen, in.
    admitted(&store, "C", Category::Citizen, StayRule::DurationOfStatus);
    rec("c1", "C", Direction::Entry, 0);
    // D: no traveller file, in: no rule to be over.
    rec("d1", "D", Direction::Entry, 0);
    // E: admitted until day 50, in on day 100.
    admitted(
        &store,
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

#[test]
fn a_manifest_reconciles_into_matched_no_shows_and_strangers() {
    use facegate_core::manifest::{Manifest, ManifestHeader, ManifestKind};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
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
    let r = facegate_core::encounter::reconcile_manifest(store.as_ref(), &manifest).unwrap();
    assert_eq!(r.matched, ["A"]);
    assert_eq!(r.no_show, ["B", "C"]);
    let strangers: Vec<_> = r
        .not_matched
        .iter()
        .map(|e| e.encounter.context.encounter_id.as_str())
        .collect();
    assert_eq!(strangers, ["m2", "m3"]);
}

#[test]
fn bulk_writes_are_checked_first_and_skip_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    let batch = vec![
        crossing("b1", Some("S1"), Direction::Entry, at(1, 1)),
        crossing("b2", Some("S1"), Direction::Exit, at(2, 1)),
    ];
    let mut bad = batch.clone();
    bad.push(crossing("", Some("S1"), Direction::Entry, at(3, 1)));
    let e = store.record_many(bad).unwrap_err();
    assert!(e.to_string().contains("encounter_id: is empty"), "{e}");
    assert!(store.history("S1").unwrap().is_empty());
    let done = store.record_many(batch.clone()).unwrap();
    assert_eq!((done.recorded, done.duplicates), (2, 0));
    let again = store.record_many(batch.clone()).unwrap();
    assert_eq!((again.recorded, again.duplicates), (0, 2));
    let retry = store.record(batch[0].clone()).unwrap();
    assert!(!retry.newly_recorded);
    let stored: Vec<_> = store
        .history("S1")
        .unwrap()
        .into_iter()
        .map(|r| r.encounter)
        .collect();
    assert_eq!(stored, batch);

    let traveller = |id: &str, until: i32| Traveller {
        subject_id: id.into(),
        category: Category::NonImmigrantVisa,
        admissions: vec![Admission {
            class: "B2".into(),
            port: "JFK".into(),
            day: Day(10),
            rule: StayRule::AdmittedUntil(Day(until)),
        }],
    };
    let e = store
        .put_travellers(vec![traveller("T1", 20), traveller("T2", 5)], at(10, 1))
        .unwrap_err();
    assert!(e.to_string().contains("before the admission day"), "{e}");
    assert_eq!(store.traveller("T1").unwrap(), None);
    let both = vec![traveller("T1", 20), traveller("T2", 30)];
    store.put_travellers(both.clone(), at(10, 1)).unwrap();
    assert_eq!(store.traveller("T2").unwrap(), Some(both[1].clone()));
}

#[test]
fn report_queries_are_explained_and_use_the_subject_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    let plans = store.query_plans().unwrap();
    assert_eq!(plans.len(), facegate_core::encounter::REPORT_QUERIES.len());
    let plan = |name: &str| {
        let (_, lines) = plans.iter().find(|(n, _)| *n == name).unwrap();
        assert!(!lines.is_empty(), "{name}");
        lines.join("\n")
    };
    for name in ["history", "movements", "present_subjects"] {
        assert!(
            plan(name).contains("encounters_by_subject"),
            "{name}: {}",
            plan(name)
        );
    }
    for name in ["exits_without_entry", "entries_without_exit"] {
        let plan = plan(name);
        assert!(
            plan.contains("COVERING INDEX encounters_by_direction_time"),
            "{name}: {plan}"
        );
    }
    // Pages of present subjects come in index order: no sort of them all.
    assert!(!plan("present_subjects").contains("TEMP B-TREE"));
}

#[test]
fn irregular_reads_order_movements_at_one_instant_as_stays_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
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
fn enqueue(store: &SqliteEncounters, e: Encounter) -> Result<Recorded, EncounterError> {
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

#[test]
fn a_queued_record_is_durable_when_answered_and_flags_an_exit_without_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    // S1 leaves without having entered: flagged. S2 enters, then leaves: not.
    let impostor = enqueue(
        &store,
        crossing("x1", Some("S1"), Direction::Exit, at(5, 9)),
    )
    .unwrap();
    assert!(impostor.newly_recorded && impostor.exit_without_entry);
    let entry = enqueue(
        &store,
        crossing("e2", Some("S2"), Direction::Entry, at(1, 9)),
    )
    .unwrap();
    assert!(!entry.exit_without_entry, "an entry is never flagged");
    let exit = enqueue(
        &store,
        crossing("x2", Some("S2"), Direction::Exit, at(5, 9)),
    )
    .unwrap();
    assert!(!exit.exit_without_entry);
    // A second exit in a row is flagged: the movement before it is an exit.
    let again = enqueue(
        &store,
        crossing("x3", Some("S2"), Direction::Exit, at(6, 9)),
    )
    .unwrap();
    assert!(again.exit_without_entry);
    // An exit captured before the entry (out of order) has nothing open before it.
    let early = enqueue(
        &store,
        crossing("x4", Some("S2"), Direction::Exit, at(0, 9)),
    )
    .unwrap();
    assert!(early.exit_without_entry);
    // A retry is answered with the first record, and never flagged again.
    let retry = enqueue(
        &store,
        crossing("x1", Some("S1"), Direction::Exit, at(5, 9)),
    )
    .unwrap();
    assert!(!retry.newly_recorded && !retry.exit_without_entry);
    assert_eq!(retry.stored, impostor.stored);
    // An exit that matched nobody names no subject: nothing to flag.
    let unknown = enqueue(&store, crossing("x5", None, Direction::Exit, at(7, 9))).unwrap();
    assert!(!unknown.exit_without_entry);
    // A bad record is answered with its reason, queued or not.
    let bad = enqueue(&store, crossing("", Some("S3"), Direction::Entry, at(1, 1)));
    assert!(matches!(bad, Err(EncounterError::Invalid(_))), "{bad:?}");
    // What was answered is on disk: a reopened store has it.
    drop(store);
    let store = SqliteEncounters::open(dir.path()).unwrap();
    assert_eq!(
        store.get(impostor.stored.record_id).unwrap().as_ref(),
        Some(&impostor.stored)
    );
    assert_eq!(store.history("S2").unwrap().len(), 4);
}

#[test]
fn a_closed_store_answers_a_queued_record_with_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    store.close();
    let r = enqueue(
        &store,
        crossing("c1", Some("S1"), Direction::Entry, at(1, 1)),
    );
    assert!(matches!(r, Err(EncounterError::Closed)), "{r:?}");
}
