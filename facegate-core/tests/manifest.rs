//! Manifests: staged, amended, closed, listed, expired and purged through
//! the registry and its SQLite store, with a clock the tests drive; the
//! file's durability, erasure and damage detection.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use facegate_core::clock::{Clock, ManualClock, UnixMillis};
use facegate_core::manifest::{
    Amendment, Direction, FILE_NAME, ListQuery, MAX_TRAVELLERS, Manifest, ManifestError,
    ManifestHeader, ManifestKind, ManifestStore, Manifests, REMEMBER_PURGED, ScopeError,
    StoreError,
};
use facegate_core::sqlite::DbError;
use proptest::prelude::*;

const HOUR: Duration = Duration::from_secs(3600);
const T0: UnixMillis = UnixMillis(1_800_000_000_000);

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A manifest of `port` valid from `from` for `hours`.
fn manifest(id: &str, port: &str, from: UnixMillis, hours: u64, subjects: &[&str]) -> Manifest {
    Manifest {
        header: ManifestHeader {
            id: id.into(),
            kind: ManifestKind::Vessel,
            carrier: "Nordic Line".into(),
            voyage: "NL-42".into(),
            port: port.into(),
            direction: Direction::Entry,
            scheduled: from.plus(HOUR),
            valid_from: from,
            valid_until: from.plus(HOUR * hours as u32),
        },
        subject_ids: ids(subjects),
    }
}

fn open(dir: &Path, clock: &Arc<ManualClock>) -> Manifests {
    Manifests::open(dir, clock.clone() as Arc<dyn Clock>).unwrap()
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0))
}

#[test]
fn a_manifest_is_searchable_in_its_window_only_and_purged_after() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let reg = open(dir.path(), &clock);
    let start = T0.plus(HOUR);
    let staged = reg
        .stage(manifest("NL-42-0601", "HEL", start, 2, &["s3", "s1", "s2"]))
        .unwrap();
    assert!(staged.newly_staged);
    assert_eq!(staged.manifest.subject_ids, ["s1", "s2", "s3"]);
    let scope = |t: UnixMillis| reg.scope("NL-42-0601", t);
    assert_eq!(
        scope(T0).unwrap_err(),
        ScopeError::NotYetValid {
            id: "NL-42-0601".into(),
            valid_from: start
        }
    );
    assert_eq!(scope(start).unwrap().subject_ids.len(), 3);
    let end = start.plus(HOUR * 2);
    assert_eq!(
        scope(end).unwrap_err(),
        ScopeError::Expired {
            id: "NL-42-0601".into(),
            valid_until: end
        }
    );
    assert_eq!(
        reg.scope("nope", start).unwrap_err(),
        ScopeError::Unknown { id: "nope".into() }
    );
    assert!(matches!(
        reg.scope("", start).unwrap_err(),
        ScopeError::BadId(ManifestError::EmptyId)
    ));
    // Nothing to purge until the window ends; then it goes, and is still
    // answered as expired (not unknown) for a while.
    clock.set(end.minus(Duration::from_millis(1)));
    assert!(reg.purge_expired().unwrap().is_empty());
    clock.set(end);
    assert_eq!(reg.purge_expired().unwrap(), ["NL-42-0601"]);
    assert_eq!(reg.len(), 0);
    assert!(matches!(
        scope(end).unwrap_err(),
        ScopeError::Expired { .. }
    ));
    assert!(matches!(
        reg.get("NL-42-0601").unwrap_err(),
        StoreError::Expired { .. }
    ));
    clock.advance(REMEMBER_PURGED + HOUR);
    reg.purge_expired().unwrap();
    assert!(matches!(
        scope(clock.now()).unwrap_err(),
        ScopeError::Unknown { .. }
    ));
    // And it is gone from disk too.
    drop(reg);
    let reg = open(dir.path(), &clock);
    assert!(matches!(
        reg.get("NL-42-0601").unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

#[test]
fn stage_is_idempotent_and_conflicts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let reg = open(dir.path(), &clock);
    let m = manifest("F1", "JFK", T0, 4, &["a", "b"]);
    assert!(reg.stage(m.clone()).unwrap().newly_staged);
    // The same manifest, travellers in another order: a retry.
    let mut again = m.clone();
    again.subject_ids.reverse();
    assert!(!reg.stage(again).unwrap().newly_staged);
    let mut other = m.clone();
    other.header.port = "EWR".into();
    assert!(matches!(
        reg.stage(other).unwrap_err(),
        StoreError::Conflict { id } if id == "F1"
    ));
    assert_eq!(reg.get("F1").unwrap().header.port, "JFK");
    // A window already over can never be searched: refused.
    let past = manifest("F0", "JFK", T0.minus(HOUR * 3), 2, &["a"]);
    assert!(matches!(
        reg.stage(past).unwrap_err(),
        StoreError::Invalid(ManifestError::AlreadyExpired { .. })
    ));
}

#[test]
fn every_validation_error_is_refused_with_nothing_staged() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let reg = open(dir.path(), &clock);
    let ok = manifest("M", "JFK", T0, 1, &["a"]);
    let with = |f: &dyn Fn(&mut Manifest)| {
        let mut m = ok.clone();
        f(&mut m);
        match reg.stage(m).unwrap_err() {
            StoreError::Invalid(e) => e,
            e => panic!("{e}"),
        }
    };
    let too_many: Vec<String> = (0..=MAX_TRAVELLERS).map(|i| format!("S{i:09}")).collect();
    let cases: Vec<(ManifestError, &str)> = vec![
        (with(&|m| m.header.id.clear()), "manifest id is empty"),
        (
            with(&|m| m.header.id = "x".repeat(200)),
            "200 bytes, at most 128",
        ),
        (
            with(&|m| m.header.id = "a\u{7}".into()),
            "control character",
        ),
        (with(&|m| m.header.port.clear()), "port: is empty"),
        (
            with(&|m| m.header.valid_until = m.header.valid_from),
            "must be after valid_from",
        ),
        (
            with(&|m| m.subject_ids = too_many.clone()),
            "50001 travellers: at most 50000",
        ),
        (
            with(&|m| m.subject_ids = ids(&["a", "b c ", "d"])),
            "traveller 1: subject_id: invalid subject id",
        ),
        (
            with(&|m| m.subject_ids = ids(&["a", "b", "a"])),
            "\"a\" is listed more than once",
        ),
    ];
    for (err, expect) in cases {
        assert!(err.to_string().contains(expect), "{expect:?} not in {err}");
    }
    assert!(reg.is_empty());
    assert!(
        reg.list(&ListQuery::default())
            .unwrap()
            .manifests
            .is_empty()
    );
}

#[test]
fn amendments_apply_whole_or_not_at_all_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let reg = open(dir.path(), &clock);
    reg.stage(manifest("V", "HEL", T0, 6, &["a", "b", "c"]))
        .unwrap();
    let amend = |add: &[&str], drop: &[&str]| Amendment {
        add: ids(add),
        drop: ids(drop),
    };
    let m = reg.amend("V", &amend(&["d", "a"], &["b", "zz"])).unwrap();
    assert_eq!(m.subject_ids, ["a", "c", "d"]);
    assert_eq!(reg.scope("V", T0).unwrap().subject_ids, ["a", "c", "d"]);
    // A bad id anywhere: nothing applied.
    let e = reg.amend("V", &amend(&["e", ""], &["a"])).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Invalid(ManifestError::BadSubjectId { index: 1, .. })
        ),
        "{e}"
    );
    // Over the limit: rolled back inside the transaction.
    // 3 - 1 + (MAX - 1) = MAX + 1.
    let many: Vec<String> = (0..MAX_TRAVELLERS - 1).map(|i| format!("n{i}")).collect();
    let over = Amendment {
        add: many,
        drop: ids(&["c"]),
    };
    let e = match reg.amend("V", &over) {
        Ok(m) => panic!("accepted: {} travellers", m.subject_ids.len()),
        Err(e) => e,
    };
    assert!(
        matches!(e, StoreError::Invalid(ManifestError::TooManyTravellers { count }) if count == MAX_TRAVELLERS + 1),
        "{e}"
    );
    assert!(matches!(
        reg.amend("W", &amend(&["a"], &[])).unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert_eq!(reg.get("V").unwrap().subject_ids, ["a", "c", "d"]);
    drop(reg);
    let reg = open(dir.path(), &clock);
    assert_eq!(reg.get("V").unwrap().subject_ids, ["a", "c", "d"]);
    // Closed early: no longer searchable, nor changeable; purged at once.
    clock.advance(HOUR);
    let closed = reg.close("V").unwrap();
    assert_eq!(closed.header.valid_until, clock.now());
    assert!(matches!(
        reg.scope("V", clock.now()).unwrap_err(),
        ScopeError::Expired { .. }
    ));
    assert!(matches!(
        reg.amend("V", &amend(&["x"], &[])).unwrap_err(),
        StoreError::Expired { .. }
    ));
    assert_eq!(
        reg.close("V").unwrap(),
        closed,
        "closing twice changes nothing"
    );
    assert_eq!(reg.purge_expired().unwrap(), ["V"]);
}

#[test]
fn closing_before_the_window_opens_leaves_it_empty() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let reg = open(dir.path(), &clock);
    reg.stage(manifest("L", "SYD", T0.plus(HOUR * 5), 2, &["a"]))
        .unwrap();
    let m = reg.close("L").unwrap();
    assert_eq!((m.header.valid_from, m.header.valid_until), (T0, T0));
    for t in [T0, T0.plus(HOUR * 6)] {
        assert!(reg.scope("L", t).is_err());
    }
    drop(reg);
    // An empty window is a legal stored state, not corruption.
    let reg = open(dir.path(), &clock);
    assert_eq!(reg.len(), 0, "purged at open: it had ended");
}

#[test]
fn listing_pages_by_cursor_and_filters_by_port() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let reg = open(dir.path(), &clock);
    for i in 0..25 {
        let port = if i % 3 == 0 { "HEL" } else { "JFK" };
        let subjects: Vec<String> = (0..i).map(|j| format!("s{j}")).collect();
        let refs: Vec<&str> = subjects.iter().map(String::as_str).collect();
        reg.stage(manifest(&format!("M{i:02}"), port, T0, 2, &refs))
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut q = ListQuery {
        limit: 7,
        ..ListQuery::default()
    };
    loop {
        let page = reg.list(&q).unwrap();
        assert!(page.manifests.len() <= 7);
        seen.extend(
            page.manifests
                .iter()
                .map(|s| (s.header.id.clone(), s.travellers)),
        );
        match page.next {
            Some(next) => q.after = Some(next),
            None => break,
        }
    }
    let want: Vec<(String, usize)> = (0..25).map(|i| (format!("M{i:02}"), i)).collect();
    assert_eq!(seen, want);
    let hel = reg
        .list(&ListQuery {
            port: Some("HEL".into()),
            ..ListQuery::default()
        })
        .unwrap();
    let hel: Vec<&str> = hel.manifests.iter().map(|s| s.header.id.as_str()).collect();
    assert_eq!(
        hel,
        [
            "M00", "M03", "M06", "M09", "M12", "M15", "M18", "M21", "M24"
        ]
    );
}

/// Whether `needle` occurs in the file at `path` (absent file: no).
fn file_contains(path: &Path, needle: &[u8]) -> bool {
    std::fs::read(path)
        .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        .unwrap_or(false)
}

#[test]
fn a_purge_leaves_no_purged_subject_id_in_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let reg = open(dir.path(), &clock);
    let gone = "ERASE-ME-4b1d9c7e";
    let kept = "KEEP-ME-77aa3e10";
    // Enough travellers to span several pages, in both files.
    let mut short: Vec<String> = (0..400).map(|i| format!("{gone}-{i:04}")).collect();
    short.push(gone.to_string());
    let long: Vec<String> = (0..50).map(|i| format!("{kept}-{i:04}")).collect();
    let mut m = manifest("SHORT", "HEL", T0, 1, &[]);
    m.subject_ids = short;
    reg.stage(m).unwrap();
    let mut m = manifest("LONG", "HEL", T0, 48, &[]);
    m.subject_ids = long;
    reg.stage(m).unwrap();
    let db = dir.path().join(FILE_NAME);
    let wal = dir.path().join(format!("{FILE_NAME}-wal"));
    let anywhere = |s: &str| file_contains(&db, s.as_bytes()) || file_contains(&wal, s.as_bytes());
    assert!(anywhere(gone) && anywhere(kept), "staged ids are on disk");
    clock.advance(HOUR * 2);
    assert_eq!(reg.purge_expired().unwrap(), ["SHORT"]);
    assert!(
        !file_contains(&db, gone.as_bytes()),
        "purged id left in {db:?}"
    );
    assert!(
        !file_contains(&wal, gone.as_bytes()),
        "purged id left in {wal:?}"
    );
    assert!(anywhere(kept), "the live manifest is still stored");
    assert_eq!(reg.get("LONG").unwrap().subject_ids.len(), 50);
}

#[test]
fn damage_is_reported_as_corruption_never_a_panic() {
    // Not a database at all.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), vec![0x5a; 8192]).unwrap();
    let e = ManifestStore::open(dir.path()).unwrap_err();
    assert!(matches!(e, StoreError::Db(DbError::Corrupt { .. })), "{e}");
    assert!(
        e.to_string().contains("manifests.db: corrupt database"),
        "{e}"
    );

    // A real one with pages overwritten in the middle.
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    {
        let reg = open(dir.path(), &clock);
        for i in 0..40 {
            let subjects: Vec<String> = (0..100).map(|j| format!("S{i:03}{j:06}")).collect();
            let mut m = manifest(&format!("M{i}"), "HEL", T0, 2, &[]);
            m.subject_ids = subjects;
            reg.stage(m).unwrap();
        }
    }
    let path = dir.path().join(FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 16 * 4096, "{} bytes", bytes.len());
    for b in &mut bytes[5 * 4096..9 * 4096] {
        *b = 0xa7;
    }
    std::fs::write(&path, bytes).unwrap();
    let e = Manifests::open(dir.path(), clock as Arc<dyn Clock>).unwrap_err();
    assert!(matches!(e, StoreError::Db(DbError::Corrupt { .. })), "{e}");

    // A row no stage could have written (edited behind the store's back).
    let dir = tempfile::tempdir().unwrap();
    drop(ManifestStore::open(dir.path()).unwrap());
    {
        let c = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
        c.execute_batch(
            "INSERT INTO manifests (id, kind, carrier, voyage, port, direction, scheduled_ms,
                 valid_from_ms, valid_until_ms) VALUES ('X', 'flight', '', '', '', 'exit', 0, 0, 9);",
        )
        .unwrap();
    }
    let store = ManifestStore::open(dir.path()).unwrap();
    let e = store.load_all().unwrap_err();
    assert!(
        e.to_string().contains("manifest \"X\": port: is empty"),
        "{e}"
    );
}

#[test]
fn a_newer_schema_and_a_second_owner_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = ManifestStore::open(dir.path()).unwrap();
    let e = ManifestStore::open(dir.path()).unwrap_err();
    assert!(matches!(e, StoreError::Db(DbError::InUse { .. })), "{e}");
    drop(store);
    {
        let c = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
        c.pragma_update(None, "user_version", 7).unwrap();
    }
    let e = ManifestStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Db(DbError::NewerSchema {
                found: 7,
                supported: 1,
                ..
            })
        ),
        "{e}"
    );
}

/// One step of an amendment sequence: ids from a small alphabet so that
/// adds, drops and retries collide often.
fn step() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (
        proptest::collection::vec(0u8..12, 0..5),
        proptest::collection::vec(0u8..12, 0..5),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Amendments against a set: valid ones apply exactly, invalid ones
    /// (an id twice, or both added and dropped) change nothing; the file
    /// reopens to the same state.
    #[test]
    fn amendment_sequences_match_a_set(initial in proptest::collection::btree_set(0u8..12, 0..8),
                                       steps in proptest::collection::vec(step(), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let name = |i: &u8| format!("p{i}");
        let mut model: BTreeSet<String> = initial.iter().map(name).collect();
        let reg = open(dir.path(), &clock);
        let mut m = manifest("P", "HEL", T0, 2, &[]);
        m.subject_ids = model.iter().cloned().collect();
        reg.stage(m).unwrap();
        for (add, drop) in steps {
            let a = Amendment { add: add.iter().map(name).collect(), drop: drop.iter().map(name).collect() };
            let valid = a.validate().is_ok();
            let got = reg.amend("P", &a);
            prop_assert_eq!(got.is_ok(), valid, "{:?}", got);
            if valid {
                for d in &a.drop { model.remove(d); }
                for x in &a.add { model.insert(x.clone()); }
            }
            let held: BTreeSet<String> = reg.get("P").unwrap().subject_ids.iter().cloned().collect();
            prop_assert_eq!(&held, &model);
        }
        drop(reg);
        let reg = open(dir.path(), &clock);
        let held: Vec<String> = reg.get("P").unwrap().subject_ids.clone();
        prop_assert_eq!(held, model.into_iter().collect::<Vec<_>>());
    }
}
