//! Signed checkpoints over real trail files: what the writer seals, what
//! the verifier finds (a forger who recomputes the xxh3 chain, a removed
//! seal, a cut trail), and how restarts, torn lines and expiry interplay.

use std::io::Write;

use super::*;

fn event(t: u64) -> AuditEvent {
    AuditEvent {
        time_unix_ms: t,
        rpc: "Identify".into(),
        code: "OK".into(),
        port_id: "JFK-T4".into(),
        subjects: vec![format!("S{t}")],
        ..Default::default()
    }
}

/// Opens the trail in `dir` sealing with `key`.
fn open(dir: &Path, key: &AuditSigningKey) -> (AuditLog, SealResume) {
    let (mut log, _) = AuditLog::open(dir).unwrap();
    let resume = log.start_sealing(key.clone()).unwrap();
    (log, resume)
}

/// A new key pair written into `dir`: the signing key and the public key.
fn key(dir: &Path) -> (AuditSigningKey, AuditVerifyingKey) {
    let (k, _, public) = signing::write_new_pair(dir).unwrap();
    (k, AuditVerifyingKey::load(&public).unwrap())
}

fn seal_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(SEALS_FILE))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// Rewrites every record of the trail through `edit`, recomputing the
/// xxh3 chain of every line after it: what a forger without the key does.
fn forge(dir: &Path, edit: impl Fn(&mut AuditRecord)) {
    let mut chain = checkpoint::read(dir).unwrap().map_or(0, |c| c.chain);
    for path in trail_files(dir).unwrap() {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out = Vec::new();
        for line in text.lines() {
            let mut r: AuditRecord = serde_json::from_str(line).unwrap();
            edit(&mut r);
            chain = record::encode_line(r.seq, &r.event, chain, &mut out);
        }
        std::fs::write(&path, out).unwrap();
    }
}

#[test]
fn a_sealed_trail_verifies_and_the_unsealed_tail_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (k, public) = key(keys.path());
    let (mut log, resume) = open(dir.path(), &k);
    assert_eq!((resume.last.clone(), resume.pending), (None, 0));
    assert_eq!(log.seal(UnixMillis(5)).unwrap(), None, "nothing to seal");
    log.append(&[event(1), event(2)]).unwrap();
    log.append(&[event(3)]).unwrap();
    assert_eq!(log.unsealed(), 3);
    let s = log.seal(UnixMillis(10)).unwrap().unwrap();
    assert_eq!((s.first_seq, s.last_seq, s.time_unix_ms), (1, 3, 10));
    assert_eq!(s.prev_sha256, [0; 32]);
    log.append(&[event(4), event(5)]).unwrap();
    let s2 = log.seal(UnixMillis(20)).unwrap().unwrap();
    assert_eq!(
        (s2.first_seq, s2.last_seq, s2.prev_sha256),
        (4, 5, s.digest())
    );
    log.append(&[event(6)]).unwrap();
    drop(log);

    let r = verify_seals(dir.path(), std::slice::from_ref(&public)).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!((r.seals, r.records_verified), (2, 5));
    assert_eq!(r.unsealed_after, Some((6, 6)));
    assert_eq!(r.last_seal_unix_ms, Some(20));

    // Another key's public key verifies nothing.
    let (_, stranger) = key(tempfile::tempdir().unwrap().path());
    let r = verify_seals(dir.path(), &[stranger]).unwrap();
    assert_eq!(r.failures.len(), 2);
    assert!(
        r.failures[0].reason.contains("not among"),
        "{:?}",
        r.failures
    );
}

#[test]
fn a_record_rewritten_with_a_recomputed_chain_is_found_by_its_seal() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (k, public) = key(keys.path());
    let (mut log, _) = open(dir.path(), &k);
    log.append(&(1..=4).map(event).collect::<Vec<_>>()).unwrap();
    log.seal(UnixMillis(10)).unwrap();
    log.append(&(5..=10).map(event).collect::<Vec<_>>())
        .unwrap();
    log.seal(UnixMillis(20)).unwrap();
    drop(log);

    forge(dir.path(), |r| {
        if r.seq == 7 {
            r.event.subjects = vec!["SOMEONE-ELSE".into()];
        }
    });
    // The xxh3 chain holds: the old verifier passes the forgery.
    assert_eq!(verify_dir(dir.path()).unwrap().records, 10);
    let r = verify_seals(dir.path(), &[public]).unwrap();
    assert_eq!(r.records_verified, 4);
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    let f = &r.failures[0];
    assert_eq!((f.line, f.range), (2, Some((5, 10))));
    assert!(f.reason.contains("SHA-256"), "{f}");
}

#[test]
fn a_removed_seal_a_changed_seal_and_a_cut_trail_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (k, public) = key(keys.path());
    let (mut log, _) = open(dir.path(), &k);
    for i in 0..3 {
        log.append(&[event(2 * i + 1), event(2 * i + 2)]).unwrap();
        log.seal(UnixMillis(i as i64)).unwrap();
    }
    let newest = log.path().to_path_buf();
    drop(log);
    let lines = seal_lines(dir.path());
    let path = dir.path().join(SEALS_FILE);
    let keys_given = std::slice::from_ref(&public);

    std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
    let r = verify_seals(dir.path(), keys_given).unwrap();
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    assert_eq!(r.failures[0].line, 2);
    assert!(
        r.failures[0].reason.contains("prev_sha256"),
        "{}",
        r.failures[0]
    );

    std::fs::write(&path, format!("{}\n{}\n", lines[1], lines[2])).unwrap();
    let r = verify_seals(dir.path(), keys_given).unwrap();
    assert!(
        r.failures[0].reason.contains("first in the file"),
        "{:?}",
        r.failures
    );

    let changed = lines[1].replace("\"last_seq\":4", "\"last_seq\":3");
    std::fs::write(&path, format!("{}\n{changed}\n{}\n", lines[0], lines[2])).unwrap();
    let r = verify_seals(dir.path(), keys_given).unwrap();
    assert!(
        r.failures[0].reason.contains("signature invalid"),
        "{:?}",
        r.failures
    );

    // The trail cut after its last seal: the xxh3 check cannot tell.
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let text = std::fs::read_to_string(&newest).unwrap();
    let kept: Vec<&str> = text.lines().take(5).collect();
    std::fs::write(&newest, kept.join("\n") + "\n").unwrap();
    verify_dir(dir.path()).unwrap();
    let r = verify_seals(dir.path(), keys_given).unwrap();
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    assert_eq!((r.failures[0].line, r.records_verified), (3, 4));
    assert!(
        r.failures[0].reason.contains("records 6..=6 are missing"),
        "{:?}",
        r.failures
    );
    // And the server refuses to go on from it.
    assert!(
        AuditLog::open(dir.path()).is_ok_and(|(mut log, _)| log.start_sealing(k.clone()).is_err())
    );
}

#[test]
fn sealing_goes_on_after_a_restart_and_a_torn_seal_line() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (k, public) = key(keys.path());
    let (mut log, _) = open(dir.path(), &k);
    log.append(&[event(1), event(2), event(3)]).unwrap();
    let first = log.seal(UnixMillis(10)).unwrap().unwrap();
    log.append(&[event(4), event(5)]).unwrap();
    drop(log);
    // A crash while a seal was written.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join(SEALS_FILE))
        .unwrap();
    f.write_all(b"{\"format\":1,\"first_s").unwrap();
    let r = verify_seals(dir.path(), std::slice::from_ref(&public)).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!((r.incomplete_tail, r.unsealed_after), (20, Some((4, 5))));

    let (mut log, resume) = open(dir.path(), &k);
    assert_eq!(resume.last, Some(first.clone()));
    assert_eq!((resume.pending, resume.cut_tail_bytes), (2, 20));
    log.append(&[event(6)]).unwrap();
    let s = log.seal(UnixMillis(20)).unwrap().unwrap();
    assert_eq!(
        (s.first_seq, s.last_seq, s.prev_sha256),
        (4, 6, first.digest())
    );
    drop(log);
    // A restart with nothing pending goes on after the last seal.
    let (mut log, resume) = open(dir.path(), &k);
    assert_eq!(resume.pending, 0);
    log.append(&[event(7)]).unwrap();
    assert_eq!(log.seal(UnixMillis(30)).unwrap().unwrap().first_seq, 7);
    drop(log);
    let r = verify_seals(dir.path(), &[public]).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!((r.seals, r.records_verified, r.incomplete_tail), (3, 7, 0));
}

#[test]
fn expired_records_leave_their_seals_valid_and_reported_as_expired_or_partial() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (k, public) = key(keys.path());
    let (mut log, _) = open(dir.path(), &k);
    log.append(&[event(1_000), event(1_001)]).unwrap();
    log.seal(UnixMillis(1)).unwrap(); // 1..=2, expires whole
    drop(log);
    let (mut log, _) = open(dir.path(), &k);
    log.append(&[event(1_500)]).unwrap(); // 3, left pending
    drop(log);
    let (mut log, resume) = open(dir.path(), &k);
    assert_eq!(resume.pending, 1);
    log.append(&[event(5_000)]).unwrap();
    log.seal(UnixMillis(2)).unwrap(); // 3..=4, straddles the cutoff
    drop(log);
    let (mut log, _) = open(dir.path(), &k);
    log.append(&[event(6_000)]).unwrap();
    log.seal(UnixMillis(3)).unwrap(); // 5..=5
    drop(log);

    let report = expire_dir(dir.path(), UnixMillis(2_000), &crate::clock::SystemClock).unwrap();
    assert_eq!(report.records(), 3);
    let r = verify_seals(dir.path(), std::slice::from_ref(&public)).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(
        (r.expired.clone(), r.partial.clone()),
        (vec![(1, 2)], vec![(3, 4)])
    );
    assert_eq!(r.records_verified, 1);

    // Sealing goes on after the expiry, and so does a forgery's discovery.
    let (mut log, _) = open(dir.path(), &k);
    log.append(&[event(7_000)]).unwrap();
    log.seal(UnixMillis(4)).unwrap();
    drop(log);
    forge(dir.path(), |r| {
        if r.seq == 6 {
            r.event.code = "NOT_FOUND".into();
        }
    });
    verify_dir(dir.path()).unwrap();
    let r = verify_seals(dir.path(), &[public]).unwrap();
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    assert_eq!(r.failures[0].range, Some((6, 6)));
}

#[test]
fn without_a_seals_file_nothing_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = AuditLog::open(dir.path()).unwrap();
    log.append(&[event(1)]).unwrap();
    assert_eq!(log.seal(UnixMillis(1)).unwrap(), None);
    let r = verify_seals(dir.path(), &[]).unwrap();
    assert!(!r.file_present && r.failures.is_empty());
}

#[test]
fn a_key_given_late_seals_from_the_next_record_and_a_gap_of_expired_records_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (k, public) = key(keys.path());
    // Records 1..=2 written before the server had a key.
    let (mut log, _) = AuditLog::open(dir.path()).unwrap();
    log.append(&[event(1_000), event(1_001)]).unwrap();
    drop(log);
    let (mut log, resume) = open(dir.path(), &k);
    assert_eq!((resume.last, resume.pending), (None, 0));
    log.append(&[event(1_002)]).unwrap();
    log.seal(UnixMillis(1)).unwrap(); // 3..=3
    drop(log);
    let r = verify_seals(dir.path(), std::slice::from_ref(&public)).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!((r.unsealed_before, r.records_verified), (Some((1, 2)), 1));

    // Records 4..=5 written without the key, then expired with the seal's
    // file: sealing goes on from the first remaining record.
    for t in [1_003, 1_004] {
        let (mut log, _) = AuditLog::open(dir.path()).unwrap();
        log.append(&[event(t)]).unwrap();
    }
    let (mut log, _) = AuditLog::open(dir.path()).unwrap();
    log.append(&[event(9_000)]).unwrap(); // 6
    drop(log);
    expire_dir(dir.path(), UnixMillis(2_000), &crate::clock::SystemClock).unwrap();
    let (mut log, resume) = open(dir.path(), &k);
    assert_eq!(resume.pending, 1);
    log.append(&[event(9_001)]).unwrap();
    let s = log.seal(UnixMillis(2)).unwrap().unwrap();
    assert_eq!((s.first_seq, s.last_seq), (6, 7));
    drop(log);
    let r = verify_seals(dir.path(), &[public]).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!((r.expired.clone(), r.records_verified), (vec![(3, 3)], 2));
}
