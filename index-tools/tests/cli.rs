//! The `facegate-index` command line, run as a data engineer would run it.

mod common;
use common::*;

use std::path::Path;
use std::process::Output;

fn synth(dir: &Path) {
    let text = ok(&[
        "synth",
        "--out-dir",
        p(dir),
        "--subjects",
        "300",
        "--probes",
        "60",
        "--dim",
        "128",
        "--seed",
        "9",
    ]);
    assert!(text.contains("score distributions"), "{text}");
    for g in ["g0", "g1", "g2", "g3"] {
        assert!(
            text.lines().any(|l| l.starts_with(g)),
            "no row for {g}: {text}"
        );
    }
}

#[test]
fn synth_build_info_check_search() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    synth(d);
    let g = d.join("g.fgal");
    let out = ok(&[
        "build",
        "--embeddings",
        p(&d.join("gallery.npy")),
        "--ids",
        p(&d.join("gallery_ids.txt")),
        "--out",
        p(&g),
        "--dtype",
        "int8",
        "--model-tag",
        "synthetic-v1",
    ]);
    assert!(out.contains("300 subjects"), "{out}");

    let info: serde_json::Value = serde_json::from_str(&ok(&["info", p(&g), "--json"])).unwrap();
    assert_eq!(info["subjects"], 300);
    assert_eq!(info["dim"], 128);
    assert_eq!(info["scan_type"], "int8");
    assert_eq!(info["model_tag"], "synthetic-v1");
    assert!(ok(&["info", p(&g)]).contains("int8 + f16 re-score rows"));
    assert!(ok(&["check", p(&g)]).contains("OK"));

    let csv_path = d.join("r.csv");
    ok(&[
        "search",
        "--gallery",
        p(&g),
        "--probes",
        p(&d.join("probes.npy")),
        "--top-k",
        "3",
        "--out",
        p(&csv_path),
    ]);
    let mut results = csv::Reader::from_path(&csv_path).unwrap();
    assert_eq!(
        results.headers().unwrap(),
        vec!["probe", "rank", "subject_id", "score"]
    );
    let rows: Vec<csv::StringRecord> = results.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 60 * 3);
    // Mated probes of good quality find their subject at rank 1.
    let truth: Vec<csv::StringRecord> = csv::Reader::from_path(d.join("probes_truth.csv"))
        .unwrap()
        .records()
        .map(Result::unwrap)
        .collect();
    let (mut mated, mut found) = (0, 0);
    for t in &truth {
        if &t[1] == "true" && t[4].parse::<f32>().unwrap() < 1.2 {
            mated += 1;
            let top = rows.iter().find(|r| r[0] == t[0] && &r[1] == "1").unwrap();
            found += usize::from(top[2] == t[2]);
        }
    }
    assert!(
        mated > 10 && found == mated,
        "{found} of {mated} good mated probes found"
    );
}

#[test]
fn outputs_are_not_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    synth(d);
    assert!(fails(&["synth", "--out-dir", p(d), "--subjects", "10"]).contains("pass --force"));
    let g = d.join("g.fgal");
    let (emb, ids) = (d.join("gallery.npy"), d.join("gallery_ids.txt"));
    let build = |extra: &[&str]| {
        let mut a = vec![
            "build",
            "--embeddings",
            p(&emb),
            "--ids",
            p(&ids),
            "--out",
            p(&g),
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    assert!(build(&[]).status.success());
    let before = std::fs::read(&g).unwrap();
    let again = build(&["--dtype", "f32"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("output exists; pass --force"));
    assert_eq!(std::fs::read(&g).unwrap(), before);
    assert!(build(&["--dtype", "f32", "--force"]).status.success());
    assert!(ok(&["info", p(&g)]).contains("scan rows    f32"));
}

#[test]
fn corrupt_galleries_fail_check() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    synth(d);
    let g = d.join("g.fgal");
    ok(&[
        "build",
        "--embeddings",
        p(&d.join("gallery.npy")),
        "--ids",
        p(&d.join("gallery_ids.txt")),
        "--out",
        p(&g),
    ]);
    let mut bytes = std::fs::read(&g).unwrap();
    bytes[4096 + 1000] ^= 0x20;
    std::fs::write(&g, &bytes).unwrap();
    assert!(fails(&["check", p(&g)]).contains("scan_rows checksum mismatch"));
    std::fs::write(&g, &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&["check", p(&g)]);
    assert!(err.contains("truncated") && err.contains(p(&g)), "{err}");
    std::fs::write(&g, b"hello").unwrap();
    assert!(fails(&["info", p(&g)]).contains("not a facegate gallery"));
    assert!(fails(&["check", p(&d.join("missing.fgal"))]).contains("No such file"));
}

#[test]
fn bad_inputs_name_the_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("g.fgal");
    let build = |e: &Path, ids: &Path| {
        fails(&[
            "build",
            "--embeddings",
            p(e),
            "--ids",
            p(ids),
            "--out",
            p(&out),
        ])
    };
    let e = d.join("e.npy");
    let ids = d.join("ids.txt");
    std::fs::write(&ids, "a\nb\nc\n").unwrap();
    facegate_write(&e, &[1.0, 0.0, 0.0, 1.0, f32::NAN, 1.0], 2);
    let err = build(&e, &ids);
    assert!(
        err.contains("e.npy row 2: element 0 is not finite"),
        "{err}"
    );
    facegate_write(&e, &[1.0, 0.0, 0.0, 0.0, 1.0, 1.0], 2);
    assert!(build(&e, &ids).contains("e.npy row 1: vector has zero norm"));
    facegate_write(&e, &[1.0, 0.0, 0.0, 1.0], 2);
    assert!(build(&e, &ids).contains("ids.txt: 3 ids for 2 embedding rows"));
    npyz::to_file_1d(&e, vec![1f32, 2.0]).unwrap();
    assert!(build(&e, &ids).contains("expected 2 dimensions"));
    assert!(build(&d.join("none.npy"), &ids).contains("none.npy"));
    assert!(!out.exists());

    // Probes of the wrong dimension, and an absurd top-k.
    facegate_write(&e, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], 2);
    ok(&[
        "build",
        "--embeddings",
        p(&e),
        "--ids",
        p(&ids),
        "--out",
        p(&out),
    ]);
    let probes = d.join("p.npy");
    facegate_write(&probes, &[1.0, 0.0, 0.0], 3);
    let r = d.join("r.csv");
    let err = fails(&[
        "search",
        "--gallery",
        p(&out),
        "--probes",
        p(&probes),
        "--top-k",
        "1",
        "--out",
        p(&r),
    ]);
    assert!(
        err.contains("probes have dimension 3") && err.contains("has 2"),
        "{err}"
    );
    facegate_write(&probes, &[1.0, 0.0], 2);
    assert!(
        fails(&[
            "search",
            "--gallery",
            p(&out),
            "--probes",
            p(&probes),
            "--top-k",
            "0",
            "--out",
            p(&r)
        ])
        .contains("--top-k")
    );
    assert!(!r.exists());
}

fn facegate_write(path: &Path, data: &[f32], dim: usize) {
    facegate_core::npy::write_matrix(path, data, dim).unwrap();
}

#[test]
fn compact_folds_a_server_change_log_into_a_new_generation() {
    use facegate_core::Gallery;
    use facegate_core::live::LiveGallery;
    use facegate_core::wal::{Change, ChangeLog, CommitMode};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    synth(d);
    let g = d.join("g.fgal");
    ok(&[
        "build",
        "--embeddings",
        p(&d.join("gallery.npy")),
        "--ids",
        p(&d.join("gallery_ids.txt")),
        "--out",
        p(&g),
    ]);
    // The log a server with --data-dir D would have written.
    let base = std::sync::Arc::new(Gallery::open(&g).unwrap());
    let generation = base.header().generation;
    let data = d.join("data");
    std::fs::create_dir_all(data.join("changes")).unwrap();
    let log_path = data.join("changes").join(format!("{generation:016x}.wal"));
    let (log, _) = ChangeLog::open(&log_path, 128, generation, CommitMode::Group).unwrap();
    let live = LiveGallery::new(base.clone());
    let first = base.subject_id(0).unwrap().to_string();
    for change in [
        Change::Enroll {
            subject_id: "enrolled-online".into(),
            templates: vec![0.5; 256],
        },
        Change::Remove { subject_id: first },
    ] {
        live.commit(&log, &change).unwrap();
    }
    drop(log);

    let out = d.join("g2.fgal");
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "compact",
        "--gallery",
        p(&g),
        "--data-dir",
        p(&data),
        "--out",
        p(&out),
        "--json",
    ]))
    .unwrap();
    assert_eq!(report["changes"], 2);
    assert_eq!(report["through_sequence"], 2);
    assert_eq!(report["subjects"], 300);
    assert_eq!(report["masked_base_subjects"], 1);
    assert_eq!(report["enrolled_subjects"], 1);
    let parent = base.header().rows;
    let removed_rows = base.subject_rows(0).unwrap().len() as u64;
    assert_eq!(report["rows"], parent - removed_rows + 2);
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", p(&out), "--json"])).unwrap();
    assert_eq!(info["compacted_from"], format!("{generation:016x}"));
    assert_eq!(info["compacted_through_change"], 2);
    assert!(ok(&["check", p(&out)]).contains("OK"));
    // The output is not replaced without --force; a log of another
    // gallery generation is refused.
    let err = fails(&[
        "compact",
        "--gallery",
        p(&g),
        "--data-dir",
        p(&data),
        "--out",
        p(&out),
    ]);
    assert!(err.contains("--force"), "{err}");
    let err = fails(&[
        "compact",
        "--gallery",
        p(&out),
        "--log",
        p(&log_path),
        "--out",
        p(&d.join("g3.fgal")),
    ]);
    assert!(err.contains("generation"), "{err}");
}

#[test]
fn audit_checks_the_trail_and_prints_what_a_subject_or_port_filter_matches() {
    use facegate_core::audit::{AuditEvent, AuditLog};
    let dir = tempfile::tempdir().unwrap();
    let event = |port: &str, rpc: &str, subjects: &[&str]| AuditEvent {
        time_unix_ms: 1_700_000_000_000,
        rpc: rpc.into(),
        code: "OK".into(),
        port_id: port.into(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let (mut log, _) = AuditLog::open(dir.path()).unwrap();
    log.append(&[
        event("JFK-T4", "Identify", &["S1", "S2"]),
        event("SEA-1", "Verify", &["S2"]),
        event("JFK-T4", "Identify", &["S3"]),
        AuditEvent {
            principal: "JFK-T4".into(),
            ..event("", "Verify", &["S4"])
        },
    ])
    .unwrap();
    let file = log.path().to_path_buf();
    drop(log);

    let seqs = |text: &str| -> Vec<u64> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(
        seqs(&ok(&["audit", p(dir.path()), "--subject", "S2"])),
        [1, 2]
    );
    // A keyed request that named no port is still its key's port's.
    assert_eq!(
        seqs(&ok(&["audit", p(dir.path()), "--port", "JFK-T4"])),
        [1, 3, 4]
    );
    assert_eq!(
        seqs(&ok(&[
            "audit",
            p(dir.path()),
            "--port",
            "JFK-T4",
            "--subject",
            "S2"
        ])),
        [1]
    );
    assert_eq!(seqs(&ok(&["audit", p(dir.path()), "--all"])), [1, 2, 3, 4]);
    assert_eq!(ok(&["audit", p(dir.path())]), "");
    let out = run(&["audit", p(dir.path())]);
    let summary = String::from_utf8(out.stderr).unwrap();
    assert!(summary.contains("4 records in 1 files"), "{summary}");

    // A record removed from the middle is found, naming the file and line.
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&file, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
    let err = fails(&["audit", p(dir.path()), "--all"]);
    assert!(err.contains(p(&file)) && err.contains("line 2"), "{err}");
}

/// Runs `args`, again while the trail's lock is held for an instant by a
/// child that another test is spawning: it inherits this process's
/// descriptors, the lock's among them, until it execs.
fn run_unlocked(args: &[&str]) -> Output {
    for _ in 0..100 {
        let out = run(args);
        if !String::from_utf8_lossy(&out.stderr).contains("a running server holds") {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{args:?}: the audit trail stayed locked")
}

/// Opens the trail in `dir`, waiting out such an instant.
fn open_trail(dir: &Path) -> facegate_core::audit::AuditLog {
    use facegate_core::audit::{AuditError, AuditLog};
    for _ in 0..100 {
        match AuditLog::open(dir) {
            Err(AuditError::Locked(_)) => std::thread::sleep(std::time::Duration::from_millis(20)),
            result => return result.unwrap().0,
        }
    }
    panic!("{}: the audit trail stayed locked", dir.display())
}

#[test]
fn audit_expires_old_files_while_the_server_is_stopped_and_never_while_it_runs() {
    use facegate_core::audit::AuditEvent;
    use facegate_core::encounter::Day;
    let dir = tempfile::tempdir().unwrap();
    let at = |day: &str| day.parse::<Day>().unwrap().start().0 as u64;
    for day in ["2025-01-10", "2025-03-10", "2025-06-10"] {
        let mut log = open_trail(dir.path());
        log.append(&[AuditEvent {
            time_unix_ms: at(day),
            rpc: "Identify".into(),
            code: "OK".into(),
            subjects: vec![format!("S-{day}")],
            ..Default::default()
        }])
        .unwrap();
    }

    // The server holds the trail: refused, nothing deleted.
    let server = open_trail(dir.path());
    let err = fails(&["audit", p(dir.path()), "--expire-before", "2025-04-01"]);
    assert!(
        err.contains("a running server holds this audit trail"),
        "{err}"
    );
    drop(server);
    let all = ok(&["audit", p(dir.path()), "--all"]);
    assert!(all.contains("S-2025-01-10"), "{all}");

    let args = [
        "audit",
        p(dir.path()),
        "--expire-before",
        "2025-04-01",
        "--all",
    ];
    let out = run_unlocked(&args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("expired records 1..=2 in 2 files"),
        "{stderr}"
    );
    assert!(
        stderr.contains("numbered 3..=3 without gaps")
            && stderr.contains("records 1..=2 were expired under the retention policy"),
        "{stderr}"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("S-2025-06-10"), "{stdout}");

    // Nothing left old enough; a date that is not one.
    let cutoff = at("2025-04-01").to_string();
    let args = ["audit", p(dir.path()), "--expire-before-unix-ms", &cutoff];
    let stderr = String::from_utf8(run_unlocked(&args).stderr).unwrap();
    assert!(stderr.contains("no file is old enough"), "{stderr}");
    let err = fails(&["audit", p(dir.path()), "--expire-before", "2025-02-30"]);
    assert!(err.contains("YYYY-MM-DD"), "{err}");
}
