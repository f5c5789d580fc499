//! `facegate-index audit-key` and `audit --public-key` as an operator runs
//! them: a key pair in PEM files, a signed trail that verifies, and a
//! forgery that recomputes the xxh3 chain found and named by its checkpoint.

mod common;

use common::*;

use std::path::Path;

use facegate_core::audit::{AuditEvent, AuditLog, AuditRecord, AuditSigningKey, record};
use facegate_core::clock::UnixMillis;

fn event(i: u64) -> AuditEvent {
    AuditEvent {
        time_unix_ms: 1_000 + i,
        rpc: "Identify".into(),
        code: "OK".into(),
        port_id: "JFK-T4".into(),
        subjects: vec![format!("S{i}")],
        ..Default::default()
    }
}

/// Rewrites record `seq` of the one-file trail in `dir` with `subject` and
/// recomputes the chain of every line after it.
fn forge(dir: &Path, seq: u64, subject: &str) {
    let file = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("audit-")
        })
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let (mut out, mut chain) = (Vec::new(), 0);
    for line in text.lines() {
        let mut r: AuditRecord = serde_json::from_str(line).unwrap();
        if r.seq == seq {
            r.event.subjects = vec![subject.into()];
        }
        chain = record::encode_line(r.seq, &r.event, chain, &mut out);
    }
    std::fs::write(&file, out).unwrap();
}

#[test]
fn audit_key_writes_a_pem_pair_once_and_audit_verifies_the_signed_checkpoints() {
    let keys = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let id = ok(&["audit-key", "--out-dir", p(keys.path())]);
    let (private, public) = (
        keys.path().join("audit-signing.key.pem"),
        keys.path().join("audit-signing.pub.pem"),
    );
    assert_eq!(id.trim().len(), 16, "{id}");
    assert!(
        std::fs::read_to_string(&private)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    assert!(
        std::fs::read_to_string(&public)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    let err = fails(&["audit-key", "--out-dir", p(keys.path())]);
    assert!(err.contains("refusing to overwrite"), "{err}");

    let key = AuditSigningKey::load(&private).unwrap();
    assert_eq!(key.id().to_string(), id.trim());
    let (mut log, _) = AuditLog::open(dir.path()).unwrap();
    log.start_sealing(key).unwrap();
    log.append(&(1..=3).map(event).collect::<Vec<_>>()).unwrap();
    log.seal(UnixMillis(10)).unwrap();
    log.append(&(4..=6).map(event).collect::<Vec<_>>()).unwrap();
    log.seal(UnixMillis(20)).unwrap();
    log.append(&[event(7)]).unwrap();
    drop(log);

    let out = run(&["audit", p(dir.path())]);
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("signatures were not checked"), "{err}");
    let out = run(&["audit", p(dir.path()), "--public-key", p(&public)]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("2 checkpoints, 6 records recomputed"), "{err}");
    assert!(
        err.contains("records 7..=7 come after the last signed checkpoint"),
        "{err}"
    );

    // The forgery passes the chain check, not the signatures.
    forge(dir.path(), 5, "SOMEONE-ELSE");
    ok(&["audit", p(dir.path())]);
    let err = fails(&["audit", p(dir.path()), "--public-key", p(&public)]);
    assert!(
        err.contains("signed checkpoint at line 2 (records 4..=6)") && err.contains("SHA-256"),
        "{err}"
    );

    // Another key verifies nothing; a missing key file is a clear error.
    let other = tempfile::tempdir().unwrap();
    ok(&["audit-key", "--out-dir", p(other.path())]);
    let other_public = other.path().join("audit-signing.pub.pem");
    let err = fails(&["audit", p(dir.path()), "--public-key", p(&other_public)]);
    assert!(err.contains("not among the public keys"), "{err}");
    let err = fails(&[
        "audit",
        p(dir.path()),
        "--public-key",
        p(&other.path().join("nope")),
    ]);
    assert!(err.contains("--public-key"), "{err}");
}

#[test]
fn keys_interoperate_with_openssl() {
    let Ok(version) = std::process::Command::new("openssl")
        .arg("version")
        .output()
    else {
        eprintln!("no openssl here: skipped");
        return;
    };
    assert!(version.status.success());
    let keys = tempfile::tempdir().unwrap();
    ok(&["audit-key", "--out-dir", p(keys.path())]);
    let private = keys.path().join("audit-signing.key.pem");
    let derived = std::process::Command::new("openssl")
        .args(["pkey", "-in", p(&private), "-pubout"])
        .output()
        .unwrap();
    assert!(
        derived.status.success(),
        "{}",
        String::from_utf8_lossy(&derived.stderr)
    );
    let public = std::fs::read(keys.path().join("audit-signing.pub.pem")).unwrap();
    assert_eq!(
        derived.stdout, public,
        "openssl derives the same public key"
    );
    // And a key openssl made is one the server can load.
    let theirs = keys.path().join("openssl.pem");
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out", p(&theirs)])
        .output()
        .unwrap();
    assert!(made.status.success());
    AuditSigningKey::load(&theirs).unwrap();
}
