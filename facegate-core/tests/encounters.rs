//! The SQLite encounter store on real files: the store contract
//! (`store_contract/`) on a fresh directory per check, and what only the
//! embedded store does (a second owner refused, bulk writes, query plans,
//! closing).

mod store_contract;

use std::sync::Arc;

use facegate_core::encounter::{
    Admission, Category, Day, EncounterError, EncounterStore, SqliteEncounters, StayRule, Traveller,
};
use facegate_core::manifest::Direction;
use facegate_core::sqlite::DbError;
use store_contract::{a_full_queue_refuses_at_once_and_loses_nothing, at, crossing, enqueue};

/// A fresh directory and an opener of its store.
fn fresh() -> (tempfile::TempDir, impl Fn() -> Arc<dyn EncounterStore>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let open = move || SqliteEncounters::open(&path).unwrap() as Arc<dyn EncounterStore>;
    (dir, open)
}

store_contract_tests!(fresh);

#[test]
fn a_writer_held_by_a_lock_fills_its_queue_and_then_refuses_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    let file = dir
        .path()
        .join(facegate_core::encounter::sqlite_store::FILE_NAME);
    a_full_queue_refuses_at_once_and_loses_nothing(store, || {
        // Another connection's write lock: the writer's first commit waits
        // on it (within its 5 s busy timeout) while the records queue up.
        let other = rusqlite::Connection::open(&file).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        Box::new(move || other.execute_batch("COMMIT").unwrap())
    });
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
fn a_closed_store_answers_a_queued_record_with_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    store.close();
    let r = enqueue(
        store.as_ref(),
        crossing("c1", Some("S1"), Direction::Entry, at(1, 1)),
    );
    assert!(matches!(r, Err(EncounterError::Closed)), "{r:?}");
}

#[test]
fn commits_reach_the_database_file_by_a_checkpoint_outside_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    let main_file = || std::fs::metadata(store.path()).unwrap().len();
    let before = main_file();
    // Far fewer pages than SQLite's automatic checkpoint waits for (1,000):
    // only the store's checkpoint thread copies them into the file.
    let batch: Vec<_> = (0..200)
        .map(|i| {
            crossing(
                &format!("k{i}"),
                Some(&format!("S{i}")),
                Direction::Entry,
                at(1, 1),
            )
        })
        .collect();
    assert_eq!(store.record_many(batch).unwrap().recorded, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while main_file() <= before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        main_file() > before,
        "no checkpoint in 10 s: the file still has {before} bytes"
    );
    assert_eq!(store.history("S7").unwrap().len(), 1);
}

#[test]
fn an_erasures_checkpoint_waits_out_a_reader_on_an_older_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    store
        .record(crossing("r1", Some("S1"), Direction::Entry, at(1, 1)))
        .unwrap();
    // A report's connection, in the middle of a read of the state before r2.
    let reader = rusqlite::Connection::open(store.path()).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let seen: i64 = reader
        .query_row("SELECT count(*) FROM encounters", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seen, 1);
    store
        .record(crossing("r2", Some("S1"), Direction::Exit, at(2, 1)))
        .unwrap();
    let report_ends = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        reader.execute_batch("COMMIT").unwrap();
    });
    let started = std::time::Instant::now();
    store.checkpoint().unwrap();
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(150),
        "the WAL cannot be truncated under a reader: the checkpoint waited for it"
    );
    report_ends.join().unwrap();
    let wal = dir.path().join("encounters.db-wal");
    assert_eq!(std::fs::metadata(wal).unwrap().len(), 0, "truncated");
    assert_eq!(store.history("S1").unwrap().len(), 2);
}
