//! The change log on real files: what was acknowledged is replayed, a torn
//! or damaged tail is cut and never applied, concurrent appends share fsyncs.

use std::sync::Arc;

use facegate_core::wal::{Change, ChangeLog, CommitMode, WalError};

const DIM: usize = 4;
const GEN: u64 = 0x1234_5678_9abc_def0;

fn enroll(i: usize) -> Change {
    Change::Enroll {
        subject_id: format!("subject-{i}"),
        templates: (0..DIM * (1 + i % 3))
            .map(|j| (i * 10 + j) as f32 * 0.5)
            .collect(),
    }
}

fn remove(i: usize) -> Change {
    Change::Remove {
        subject_id: format!("subject-{i}"),
    }
}

#[test]
fn acknowledged_changes_are_replayed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changes.log");
    let (log, replay) = ChangeLog::open(&path, DIM, GEN, CommitMode::Group).unwrap();
    assert!(replay.changes.is_empty());
    let mut want = Vec::new();
    for i in 0..20 {
        let c = if i % 4 == 3 { remove(i - 1) } else { enroll(i) };
        let seq = log.append(&c).unwrap();
        want.push((seq, c));
    }
    assert_eq!(log.syncs(), 20, "one thread: one fsync per change");
    drop(log);
    let (log, replay) = ChangeLog::open(&path, DIM, GEN, CommitMode::Group).unwrap();
    assert_eq!(replay.changes, want);
    assert_eq!(replay.cut_bytes, 0);
    // Sequence numbers go on after the replayed ones.
    assert_eq!(log.append(&remove(0)).unwrap(), want.last().unwrap().0 + 1);
}

#[test]
fn concurrent_appends_share_fsyncs_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changes.log");
    let (log, _) = ChangeLog::open(&path, DIM, GEN, CommitMode::Group).unwrap();
    let log = Arc::new(log);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..40)
                    .map(|i| (log.append(&enroll(t * 1000 + i)).unwrap(), t * 1000 + i))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: Vec<(u64, usize)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    acked.sort();
    assert_eq!(acked.len(), 640);
    let syncs = log.syncs();
    assert!(
        syncs < 640,
        "{syncs} fsyncs for 640 concurrent changes: no grouping"
    );
    drop(log);
    let (_, replay) = ChangeLog::open(&path, DIM, GEN, CommitMode::Group).unwrap();
    let got: Vec<(u64, Change)> = replay.changes;
    assert_eq!(got.len(), 640);
    for ((seq, i), (rseq, c)) in acked.iter().zip(&got) {
        assert_eq!((seq, &enroll(*i)), (rseq, c));
    }
}

#[test]
fn every_torn_tail_is_cut_and_never_applied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changes.log");
    let (log, _) = ChangeLog::open(&path, DIM, GEN, CommitMode::EachChange).unwrap();
    for i in 0..3 {
        log.append(&enroll(i)).unwrap();
    }
    let good = log.durable_len();
    log.append(&enroll(3)).unwrap();
    let full = log.durable_len();
    drop(log);
    let bytes = std::fs::read(&path).unwrap();
    // A crash may stop the last write at any byte.
    for cut in good..full {
        std::fs::write(&path, &bytes[..cut as usize]).unwrap();
        let (log, replay) = ChangeLog::open(&path, DIM, GEN, CommitMode::Group).unwrap();
        assert_eq!(replay.changes.len(), 3, "cut at {cut}");
        assert_eq!(replay.cut_bytes, cut - good, "cut at {cut}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        // The repaired log takes new changes, which replay after the old.
        log.append(&remove(1)).unwrap();
        drop(log);
        let (_, replay) = ChangeLog::open(&path, DIM, GEN, CommitMode::Group).unwrap();
        assert_eq!(replay.changes.len(), 4);
        assert_eq!(replay.changes[3].1, remove(1));
    }
}

#[test]
fn a_damaged_frame_ends_the_log_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changes.log");
    let (log, _) = ChangeLog::open(&path, DIM, GEN, CommitMode::Group).unwrap();
    log.append(&enroll(0)).unwrap();
    let first_end = log.durable_len();
    log.append(&enroll(1)).unwrap();
    drop(log);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40; // one flipped bit inside the second frame
    std::fs::write(&path, &bytes).unwrap();
    let (_, replay) = ChangeLog::open(&path, DIM, GEN, CommitMode::Group).unwrap();
    assert_eq!(replay.changes, [(1, enroll(0))]);
    assert_eq!(replay.cut_bytes, bytes.len() as u64 - first_end);
    assert!(
        replay.cut_reason.as_deref().unwrap().contains("checksum"),
        "{:?}",
        replay.cut_reason
    );
}

#[test]
fn a_log_of_another_gallery_or_dimension_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changes.log");
    drop(ChangeLog::open(&path, DIM, GEN, CommitMode::Group).unwrap());
    let err = ChangeLog::open(&path, DIM, GEN + 1, CommitMode::Group)
        .err()
        .unwrap();
    assert!(matches!(err, WalError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("generation"), "{err}");
    let err = ChangeLog::open(&path, DIM + 1, GEN, CommitMode::Group)
        .err()
        .unwrap();
    assert!(err.to_string().contains("dimension"), "{err}");
    std::fs::write(&path, b"not a log at all, but long enough to have a header").unwrap();
    let err = ChangeLog::open(&path, DIM, GEN, CommitMode::Group)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("not a facegate change log"),
        "{err}"
    );
}

#[test]
fn changes_outside_the_limits_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changes.log");
    let (log, _) = ChangeLog::open(&path, DIM, GEN, CommitMode::Group).unwrap();
    let before = log.durable_len();
    for bad in [
        Change::Enroll {
            subject_id: "s".into(),
            templates: vec![],
        },
        Change::Enroll {
            subject_id: "s".into(),
            templates: vec![1.0; DIM + 1],
        },
        Change::Remove {
            subject_id: String::new(),
        },
    ] {
        assert!(matches!(log.append(&bad), Err(WalError::Refused(_))));
    }
    assert_eq!(log.durable_len(), before);
}
