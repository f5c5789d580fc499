//! Retention of the audit trail on real files: old files expire behind a
//! checkpoint and the rest still verifies, through crashes at every step of
//! the expiry; gaps no checkpoint covers, and checkpoints that do not match
//! the chain, are still damage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use facegate_core::audit::{
    AuditError, AuditEvent, AuditLog, CHECKPOINT_FILE, Checkpoint, ExpiryReport, TrailSummary,
    check_newest, expire_dir, read_dir, verify_dir,
};
use facegate_core::clock::{ManualClock, UnixMillis};

/// When the expiries run, per the injected clock.
const NOW: UnixMillis = UnixMillis(1_800_000_000_000);

fn event(time_unix_ms: u64) -> AuditEvent {
    AuditEvent {
        time_unix_ms,
        rpc: "Identify".into(),
        code: "OK".into(),
        port_id: "JFK-T4".into(),
        subjects: vec![format!("S{time_unix_ms}")],
        ..Default::default()
    }
}

/// One server run: a new file holding a record for each of `times`.
fn run(dir: &Path, times: &[u64]) -> PathBuf {
    let (mut log, _) = AuditLog::open(dir).unwrap();
    let events: Vec<_> = times.iter().map(|&t| event(t)).collect();
    log.append(&events).unwrap();
    log.path().to_path_buf()
}

/// Three closed files: records 1..=3 at 1000s, 4..=5 at 2000s, 6..=7 at
/// 3000s.
fn three_runs(dir: &Path) -> Vec<PathBuf> {
    vec![
        run(dir, &[1_000, 1_001, 1_002]),
        run(dir, &[2_000, 2_001]),
        run(dir, &[3_000, 3_001]),
    ]
}

fn seqs(dir: &Path) -> Vec<u64> {
    let mut v = Vec::new();
    read_dir(dir, &mut |r| v.push(r.seq)).unwrap();
    v
}

/// Every file of `dir` and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn expire(dir: &Path, cutoff: i64) -> ExpiryReport {
    expire_dir(dir, UnixMillis(cutoff), &ManualClock::new(NOW)).unwrap()
}

fn damaged(result: Result<TrailSummary, AuditError>) -> (PathBuf, usize, String) {
    match result {
        Err(AuditError::Damaged { path, line, reason }) => (path, line, reason),
        other => panic!("expected damage, got {other:?}"),
    }
}

#[test]
fn old_files_expire_behind_a_checkpoint_and_the_rest_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let files = three_runs(dir.path());
    let (mut log, _) = AuditLog::open(dir.path()).unwrap();
    log.append(&[event(4_000)]).unwrap();
    let clock = ManualClock::new(NOW);

    let report = log.expire_before(UnixMillis(2_500), &clock).unwrap();
    let expiry = report.expiry.clone().unwrap();
    assert_eq!((expiry.first_seq, expiry.last_seq), (1, 5));
    assert_eq!(report.records(), 5);
    assert_eq!(expiry.newest_record_unix_ms, 2_001);
    assert_eq!((expiry.at_unix_ms, expiry.cutoff_unix_ms), (NOW.0, 2_500));
    let names: Vec<String> = files[..2]
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(expiry.files, names);
    assert!(!files[0].exists() && !files[1].exists() && files[2].exists());

    let s = verify_dir(dir.path()).unwrap();
    let checkpoint = s.checkpoint.clone().unwrap();
    assert_eq!(Some(checkpoint.clone()), report.checkpoint);
    assert_eq!((checkpoint.last_seq, checkpoint.expiries.len()), (5, 1));
    assert_eq!((s.records, s.files, s.last_seq), (3, 2, 8));
    assert!(s.expired_files_left.is_empty());
    assert_eq!(seqs(dir.path()), [6, 7, 8]);

    // A second expiry extends the history; the records go on after it.
    let report = log.expire_before(UnixMillis(3_500), &clock).unwrap();
    assert_eq!(report.records(), 2);
    assert!(!files[2].exists());
    assert_eq!(log.append(&[event(4_001)]).unwrap(), 9..=9);
    let s = verify_dir(dir.path()).unwrap();
    let checkpoint = s.checkpoint.unwrap();
    assert_eq!((checkpoint.last_seq, checkpoint.files()), (7, 3));
    assert_eq!(checkpoint.expiries[1].first_seq, 6);
    assert_eq!(seqs(dir.path()), [8, 9]);

    // A restart goes on from the checkpoint's chain.
    drop(log);
    let (mut log, s) = AuditLog::open(dir.path()).unwrap();
    assert_eq!((s.last_seq, s.records), (9, 2));
    assert_eq!(log.append(&[event(5_000)]).unwrap(), 10..=10);
    assert_eq!(seqs(dir.path()), [8, 9, 10]);
}

#[test]
fn a_crash_at_any_step_of_an_expiry_leaves_a_trail_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let files = three_runs(dir.path());
    let before = snapshot(dir.path());
    let all_seqs = seqs(dir.path());

    // Crash while writing the new checkpoint, before its rename: it was
    // never in force, and the next expiry removes it.
    let tmp = dir.path().join("checkpoint.json.tmp");
    std::fs::write(&tmp, b"{\"format\":1,\"last_s").unwrap();
    assert_eq!(seqs(dir.path()), all_seqs);
    assert_eq!(verify_dir(dir.path()).unwrap().checkpoint, None);

    let done = expire(dir.path(), 2_500);
    assert!(!tmp.exists());
    let after = snapshot(dir.path());

    // Crash after the checkpoint, before any file was deleted.
    for (path, bytes) in &before {
        std::fs::write(path, bytes).unwrap();
    }
    let s = verify_dir(dir.path()).unwrap();
    let left = vec![(files[0].clone(), 3), (files[1].clone(), 2)];
    assert_eq!(s.expired_files_left, left);
    assert_eq!(s.checkpoint, done.checkpoint);
    assert_eq!(seqs(dir.path()), [6, 7]);
    assert_eq!(check_newest(dir.path()).unwrap().last_seq, 7);

    // Crash after the oldest file was deleted.
    std::fs::remove_file(&files[0]).unwrap();
    let s = verify_dir(dir.path()).unwrap();
    assert_eq!(s.expired_files_left, [(files[1].clone(), 2)]);
    assert_eq!(seqs(dir.path()), [6, 7]);

    // The next expiry finishes the job, and adds nothing more.
    let report = expire(dir.path(), 2_500);
    assert_eq!(report.finished, files[1..2]);
    assert_eq!((report.expiry, report.checkpoint), (None, done.checkpoint));
    assert_eq!(snapshot(dir.path()), after);

    // A restart amid an interrupted expiry goes on from the checkpoint.
    std::fs::write(&files[1], &before[&files[1]]).unwrap();
    let (mut log, s) = AuditLog::open(dir.path()).unwrap();
    assert_eq!((s.last_seq, s.records), (7, 2));
    log.append(&[event(4_000)]).unwrap();
    assert_eq!(seqs(dir.path()), [6, 7, 8]);
}

#[test]
fn a_file_deleted_without_a_checkpoint_is_still_missing_records() {
    let dir = tempfile::tempdir().unwrap();
    let files = three_runs(dir.path());
    std::fs::remove_file(&files[0]).unwrap();
    let (path, line, reason) = damaged(verify_dir(dir.path()));
    assert_eq!((path, line), (files[1].clone(), 1));
    assert!(reason.contains("records are missing"), "{reason}");

    // Nor can a file after a checkpoint go: the checkpoint covers only
    // what it expired.
    let dir = tempfile::tempdir().unwrap();
    let files = three_runs(dir.path());
    run(dir.path(), &[4_000]);
    expire(dir.path(), 1_500);
    std::fs::remove_file(&files[1]).unwrap();
    let (path, _, reason) = damaged(verify_dir(dir.path()));
    assert_eq!(path, files[2]);
    assert!(
        reason.contains("follows the checkpoint's last expired record 3"),
        "{reason}"
    );
}

/// Rewrites the checkpoint in `dir` through `edit`, keeping its history
/// consistent (a careful forger).
fn forge(dir: &Path, edit: impl FnOnce(&mut Checkpoint)) {
    let path = dir.join(CHECKPOINT_FILE);
    let mut c: Checkpoint = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut c);
    let last = c.expiries.last_mut().unwrap();
    (last.last_seq, last.chain) = (c.last_seq, c.chain);
    std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
}

#[test]
fn a_checkpoint_that_does_not_match_the_chain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = three_runs(dir.path());
    run(dir.path(), &[4_000]);
    expire(dir.path(), 1_500);
    assert_eq!(seqs(dir.path()), [4, 5, 6, 7, 8]);

    // A wrong chain value.
    forge(dir.path(), |c| c.chain ^= 1);
    let (path, line, reason) = damaged(verify_dir(dir.path()));
    assert_eq!((path, line), (files[1].clone(), 1));
    assert!(reason.contains("checkpoint's value"), "{reason}");

    // Widened to cover a file deleted by hand: its chain cannot match.
    forge(dir.path(), |c| c.chain ^= 1);
    std::fs::remove_file(&files[1]).unwrap();
    forge(dir.path(), |c| c.last_seq = 5);
    let (path, _, reason) = damaged(verify_dir(dir.path()));
    assert_eq!(path, files[2]);
    assert!(reason.contains("checkpoint's value"), "{reason}");

    // Widened past every record: nothing is left to match it.
    forge(dir.path(), |c| c.last_seq = 100);
    match verify_dir(dir.path()) {
        Err(AuditError::Checkpoint { reason, .. }) => {
            assert!(reason.contains("no record follows"), "{reason}")
        }
        other => panic!("expected a bad checkpoint, got {other:?}"),
    }
    // A restart refuses to go on after it.
    assert!(matches!(
        AuditLog::open(dir.path()),
        Err(AuditError::Damaged { .. })
    ));

    // A history that does not add up, or a checkpoint that is not one.
    forge(dir.path(), |c| c.expiries[0].first_seq = 2);
    assert!(matches!(
        verify_dir(dir.path()),
        Err(AuditError::Checkpoint { .. })
    ));
    std::fs::write(dir.path().join(CHECKPOINT_FILE), b"{}").unwrap();
    assert!(matches!(
        verify_dir(dir.path()),
        Err(AuditError::Checkpoint { .. })
    ));
}

#[test]
fn when_nothing_is_old_enough_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    three_runs(dir.path());
    let before = snapshot(dir.path());
    let report = expire(dir.path(), 1_002);
    assert_eq!(report.expiry, None);
    assert_eq!(report.checkpoint, None);
    assert!(report.finished.is_empty());
    assert_eq!(snapshot(dir.path()), before);

    // An empty trail, or none yet.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(expire(empty.path(), i64::MAX).records(), 0);
}

#[test]
fn the_file_being_written_and_the_newest_record_are_never_expired() {
    let dir = tempfile::tempdir().unwrap();
    let files = three_runs(dir.path());
    let clock = ManualClock::new(NOW);

    // The file being written holds no record yet: the newest record's
    // file stays with it.
    let (mut log, _) = AuditLog::open(dir.path()).unwrap();
    let report = log.expire_before(UnixMillis(i64::MAX), &clock).unwrap();
    assert_eq!(report.records(), 5);
    assert!(files[2].exists() && log.path().exists());
    assert_eq!(seqs(dir.path()), [6, 7]);

    // Once it holds the newest record, it alone stays.
    log.append(&[event(3_500)]).unwrap();
    let report = log.expire_before(UnixMillis(i64::MAX), &clock).unwrap();
    assert_eq!(report.records(), 2);
    assert!(!files[2].exists());
    let left: Vec<PathBuf> = snapshot(dir.path())
        .into_keys()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert_eq!(left, [log.path().to_path_buf()]);
    assert_eq!(log.append(&[event(3_600)]).unwrap(), 9..=9);
    assert_eq!(seqs(dir.path()), [8, 9]);
    assert_eq!(
        log.expire_before(UnixMillis(i64::MAX), &clock)
            .unwrap()
            .records(),
        0
    );
}

#[test]
fn the_server_holding_the_trail_keeps_an_offline_expiry_out() {
    let dir = tempfile::tempdir().unwrap();
    three_runs(dir.path());
    let log = AuditLog::open(dir.path()).unwrap();
    assert!(matches!(
        expire_dir(dir.path(), UnixMillis(i64::MAX), &ManualClock::new(NOW)),
        Err(AuditError::Locked(_))
    ));
    drop(log);
    assert_eq!(expire(dir.path(), i64::MAX).records(), 5);
}

#[test]
fn damage_in_a_file_due_to_expire_refuses_the_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let files = three_runs(dir.path());
    let text = std::fs::read_to_string(&files[0]).unwrap();
    std::fs::write(&files[0], text.replace("S1001", "S9999")).unwrap();
    let before = snapshot(dir.path());
    let e = expire_dir(dir.path(), UnixMillis(2_500), &ManualClock::new(NOW)).unwrap_err();
    assert!(
        matches!(&e, AuditError::Damaged { path, line: 2, .. } if *path == files[0]),
        "{e}"
    );
    assert_eq!(snapshot(dir.path()), before);

    // Nor does finishing an interrupted expiry delete a kept file edited
    // to look covered by the checkpoint.
    std::fs::write(&files[0], text).unwrap();
    assert_eq!(expire(dir.path(), 1_500).records(), 3);
    let text = std::fs::read_to_string(&files[1]).unwrap();
    let edited = text.replace("\"seq\":4,", "\"seq\":2,");
    std::fs::write(&files[1], edited.replace("\"seq\":5,", "\"seq\":3,")).unwrap();
    let before = snapshot(dir.path());
    let e = expire_dir(dir.path(), UnixMillis(1_500), &ManualClock::new(NOW)).unwrap_err();
    assert!(
        matches!(&e, AuditError::Damaged { path, line: 1, .. } if *path == files[2]),
        "{e}"
    );
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_file_ending_in_an_incomplete_line_waits_until_the_next_file_is_old_too() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), &[1_000]);
    // A crash while writing its second record: when is unknown, but
    // before the next file was opened (now, by the real clock).
    let mut bytes = std::fs::read(&first).unwrap();
    bytes.extend_from_slice(b"{\"seq\":2,\"time_unix_ms\":1");
    std::fs::write(&first, bytes).unwrap();
    run(dir.path(), &[2_000]);
    run(dir.path(), &[3_000]);
    assert_eq!(expire(dir.path(), 2_500).records(), 0);
    assert!(first.exists());
    let report = expire(dir.path(), i64::MAX);
    assert_eq!(report.records(), 2);
    assert!(!first.exists());
    assert_eq!(seqs(dir.path()), [3]);
}
