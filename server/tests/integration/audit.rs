//! The audit trail through the real server: one durable record per answer,
//! attributing it to its caller and port; numbering and chain carried over
//! a restart; a damaged trail refused at start-up; and searches refused,
//! never answered unaudited, when records cannot be written.

use crate::common::*;

use std::path::Path;
use std::process::{Command, Stdio};

use facegate_api::v1::manifests_client::ManifestsClient;
use facegate_api::v1::{
    CaptureContext, Direction, GetGalleryInfoRequest, ListManifestsRequest, RemoveRequest,
    VerifyRequest,
};
use facegate_core::audit::{AuditRecord, SEALS_FILE, read_dir, verify_dir};
use tonic::Code;

fn records(dir: &Path) -> Vec<AuditRecord> {
    let mut v = Vec::new();
    read_dir(dir, &mut |r| v.push(r.clone())).unwrap();
    v
}

fn capture(port: &str) -> Option<CaptureContext> {
    Some(CaptureContext {
        port_id: port.into(),
        lane: "7".into(),
        direction: Direction::Entry as i32,
        captured_at_unix_ms: 1_700_000_000_000,
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_has_one_durable_record_attributed_to_its_caller() {
    let f = fixture();
    let audit = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let args = [
        "--audit-dir",
        audit.path().to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
        "--default-threshold",
        "0.4",
    ];
    let mut server = Server::start(&f.path, &args);
    let mut c = server.client().await;
    let generation = c
        .get_gallery_info(GetGalleryInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .generation;
    let g = f.engine.gallery();

    // A mated probe: a match, and the candidates it disclosed.
    let p = (0..)
        .map(|j| f.synth.probe(j))
        .find(|p| p.mate.is_some())
        .unwrap();
    let mut req = identify(p.vector.clone(), 3, "id-1");
    req.capture = capture("JFK-T4");
    let answer = c.identify(req).await.unwrap().into_inner();
    assert!(answer.r#match);
    // A Verify names its claimed subject.
    let claimed = answer.candidates[0].subject_id.clone();
    let verified = c
        .verify(VerifyRequest {
            probe: p.vector.clone(),
            subject_id: claimed.clone(),
            model_tag: TAG.into(),
            request_id: "v-1".into(),
            capture: capture("SEA-1"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // A refused request is recorded with its code.
    let bad = c
        .identify(identify(vec![1.0; DIM + 1], 3, "bad-1"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    // Streamed probes, one record each.
    let reqs: Vec<_> = (0..3)
        .map(|j| identify(f.synth.probe(j).vector.clone(), 1, &format!("s-{j}")))
        .collect();
    let stream = tokio_stream::iter(reqs);
    let mut answers = c.identify_stream(stream).await.unwrap().into_inner();
    let mut streamed = 0;
    while let Some(a) = answers.message().await.unwrap() {
        assert!(a.error.is_none());
        streamed += 1;
    }
    assert_eq!(streamed, 3);
    // A gallery change, by the back office.
    let removed = g.subject_id(1).unwrap().to_string();
    server
        .admin()
        .await
        .remove(RemoveRequest {
            subject_id: removed.clone(),
            request_id: "rm-1".into(),
        })
        .await
        .unwrap();

    let r = records(audit.path());
    assert_eq!(
        r.iter().map(|r| r.event.rpc.as_str()).collect::<Vec<_>>()[..3],
        ["Identify", "Verify", "Identify"]
    );
    assert_eq!(r.len(), 3 + 3 + 1, "{r:#?}");
    assert!(r.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1));
    for r in &r {
        assert!(r.event.peer.starts_with("127.0.0.1:"), "{:?}", r.event);
        assert!(r.event.time_unix_ms > 1_700_000_000_000);
    }
    let id = &r[0].event;
    assert_eq!(
        (
            id.code.as_str(),
            id.request_id.as_str(),
            id.port_id.as_str(),
            id.lane.as_str()
        ),
        ("OK", "id-1", "JFK-T4", "7")
    );
    assert_eq!(
        (id.direction.as_str(), id.captured_at_unix_ms),
        ("entry", 1_700_000_000_000)
    );
    assert_eq!((id.matched, id.generation), (Some(true), generation));
    let disclosed: Vec<String> = answer
        .candidates
        .iter()
        .map(|c| c.subject_id.clone())
        .collect();
    assert_eq!(id.subjects, disclosed);
    let v = &r[1].event;
    assert!(verified.r#match);
    assert_eq!((v.port_id.as_str(), v.matched), ("SEA-1", Some(true)));
    assert_eq!(v.subjects, vec![claimed]);
    let b = &r[2].event;
    assert_eq!(
        (b.code.as_str(), b.matched, b.subjects.len()),
        ("INVALID_ARGUMENT", None, 0)
    );
    assert_eq!(
        (b.port_id.as_str(), b.direction.as_str()),
        ("", "unspecified")
    );
    let mut ids: Vec<&str> = r[3..6]
        .iter()
        .map(|r| r.event.request_id.as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["s-0", "s-1", "s-2"]);
    assert!(
        r[3..6]
            .iter()
            .all(|r| r.event.rpc == "IdentifyStream" && r.event.subjects.len() == 1)
    );
    let rm = &r[6].event;
    assert_eq!(
        (rm.rpc.as_str(), rm.code.as_str(), rm.request_id.as_str()),
        ("Remove", "OK", "rm-1")
    );
    assert_eq!(rm.subjects, vec![removed]);

    // The files hold the records' fields only: never a template.
    for entry in std::fs::read_dir(audit.path()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for (key, value) in v.as_object().unwrap() {
                assert!(!value.is_array() || key == "subjects", "{key}: {value}");
            }
        }
    }
    let metrics = http_get(&server.metrics).await;
    assert_eq!(sample(&metrics, "facegate_audit_records_total"), 7.0);
    assert_eq!(sample(&metrics, "facegate_audit_failures_total"), 0.0);

    // A restart continues the numbering and the chain in a new file.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = Server::start(&f.path, &args);
    let mut c = server.client().await;
    c.identify(identify(p.vector.clone(), 1, "after"))
        .await
        .unwrap();
    let summary = verify_dir(audit.path()).unwrap();
    assert_eq!(
        (summary.files, summary.records, summary.last_seq),
        (2, 8, 8)
    );
    assert_eq!(records(audit.path())[7].event.request_id, "after");
}

#[test]
fn a_damaged_trail_stops_the_server_from_starting() {
    let f = fixture();
    let audit = tempfile::tempdir().unwrap();
    let dir = audit.path().to_str().unwrap();
    {
        let server = Server::start(&f.path, &["--audit-dir", dir]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut c = server.client().await;
            for j in 0..3 {
                let v = f.synth.probe(j).vector.clone();
                c.identify(identify(v, 1, &format!("r{j}"))).await.unwrap();
            }
        });
    }
    let file = std::fs::read_dir(audit.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let damaged = text.replace("\"r1\"", "\"r9\"");
    assert_ne!(damaged, text);
    std::fs::write(&file, damaged).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(serve_args(&f.path))
        .args(["--audit-dir", dir])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A server that started regardless would never exit: give it 60 s.
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed().as_secs() > 60 {
            child.kill().unwrap();
            panic!("the server started on a damaged audit trail");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("audit trail") && err.contains("line 2") && err.contains("chain"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn searches_are_refused_not_answered_when_their_records_cannot_be_written() {
    let f = fixture();
    let audit = tempfile::tempdir().unwrap();
    // 4 blocks: 2 KiB (dash) or 4 KiB (bash) per file, a handful of records.
    let server = Server::start_with_limit(
        &f.path,
        &[],
        &["--audit-dir", audit.path().to_str().unwrap()],
        Some(4),
    );
    let mut c = server.client().await;
    let mut answered = 0;
    let refused = loop {
        let v = f.synth.probe(answered).vector.clone();
        match c.identify(identify(v, 3, &format!("r{answered}"))).await {
            Ok(_) => answered += 1,
            Err(e) => break e,
        }
        assert!(answered < 100, "the file size limit never hit");
    };
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("could not be audited"),
        "{refused:?}"
    );
    assert!(answered >= 2, "{answered} answers before the limit");
    // Still refused: the server never answers without a record.
    let again = c
        .identify(identify(f.synth.probe(0).vector.clone(), 3, "again"))
        .await;
    assert_eq!(again.unwrap_err().code(), Code::Unavailable);
    // Every answer that left has its record; the failed writes left nothing.
    let summary = verify_dir(audit.path()).unwrap();
    assert_eq!(summary.records, answered as u64);
    assert!(summary.incomplete_tails.is_empty());
    let metrics = http_get(&server.metrics).await;
    assert_eq!(sample(&metrics, "facegate_audit_failures_total"), 2.0);
    assert_eq!(
        sample(
            &metrics,
            r#"facegate_requests_total{code="UNAVAILABLE",port="unknown",rpc="Identify"}"#
        ),
        2.0
    );
    // A back-office read discloses records as a search does: withheld too
    // (its record is smaller than a search's, so a few may still fit).
    let mut manifests = ManifestsClient::connect(format!("http://{}", server.admin_addr))
        .await
        .unwrap();
    let mut listed = 0;
    let refused = loop {
        let list = ListManifestsRequest {
            request_id: format!("list{listed}"),
            ..Default::default()
        };
        match manifests.list(list).await {
            Ok(_) => listed += 1,
            Err(e) => break e,
        }
        assert!(
            listed < 20,
            "back-office reads answered without their records"
        );
    };
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("could not be audited"),
        "{refused:?}"
    );
    let records = verify_dir(audit.path()).unwrap().records;
    assert_eq!(records, (answered + listed) as u64);
}

/// The addresses `child` (a `facegate serve` with its stdout piped)
/// prints, once it listens.
fn ready(mut child: std::process::Child) -> Server {
    use std::io::BufRead;
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut addr, mut admin_addr, mut metrics) = (String::new(), String::new(), String::new());
    while addr.is_empty() {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "facegate exited");
        let line = line.trim();
        if let Some(m) = line.strip_prefix("facegate metrics on ") {
            metrics = m.to_string();
        } else if let Some(a) = line.strip_prefix("facegate admin listening on ") {
            admin_addr = a.to_string();
        } else if let Some(a) = line.strip_prefix("facegate listening on ") {
            addr = a.to_string();
        }
    }
    Server {
        child,
        data_dir: None,
        addr,
        admin_addr,
        metrics,
    }
}

/// Waits for `child` to exit by itself (60 s at most); its stderr.
fn exit_stderr(mut child: std::process::Child) -> (bool, String) {
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed().as_secs() > 60 {
            child.kill().unwrap();
            panic!("the server did not exit");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_signed_trail_is_sealed_through_a_clean_shutdown_and_verifies_with_the_public_key() {
    use facegate_core::audit::{AuditVerifyingKey, signing, verify_seals};
    let f = fixture();
    let audit = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (_, private, public) = signing::write_new_pair(keys.path()).unwrap();
    let dir = audit.path().to_str().unwrap();
    let key = private.to_str().unwrap();
    // Started by hand to keep its log: each checkpoint's line, under its
    // documented target, is what a log shipper carries off the host.
    let log = keys.path().join("server.log");
    let child = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(serve_args(&f.path))
        .args(["--audit-dir", dir, "--audit-signing-key", key])
        .args(["--audit-seal-records", "2", "--data-dir"])
        .arg(keys.path())
        .env("RUST_LOG", "warn,facegate::audit_seal=info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = ready(child);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = server.client().await;
        for j in 0..5 {
            let v = f.synth.probe(j).vector.clone();
            c.identify(identify(v, 1, &format!("r{j}"))).await.unwrap();
        }
    });
    // A clean shutdown seals the record still pending.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(server.child.wait().unwrap().success());

    let public = AuditVerifyingKey::load(&public).unwrap();
    let r = verify_seals(audit.path(), &[public]).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!((r.seals, r.records_verified), (3, 5));
    assert_eq!(r.unsealed_after, None);
    assert_eq!(verify_dir(audit.path()).unwrap().records, 5);
    let logged = std::fs::read_to_string(&log).unwrap();
    let seal_lines: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("facegate::audit_seal") && l.contains("signed audit checkpoint"))
        .collect();
    assert_eq!(seal_lines.len(), 3, "{logged}");
    let written = std::fs::read_to_string(audit.path().join(SEALS_FILE)).unwrap();
    for (line, seal) in seal_lines.iter().zip(written.lines()) {
        assert!(line.contains(seal), "{line} carries {seal}");
    }

    // A malformed key stops the start-up, saying which file.
    let bad = keys.path().join("bad.pem");
    std::fs::write(
        &bad,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(serve_args(&f.path))
        .args([
            "--audit-dir",
            dir,
            "--audit-signing-key",
            bad.to_str().unwrap(),
        ])
        .args(["--data-dir", keys.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (ok, err) = exit_stderr(child);
    assert!(!ok);
    assert!(
        err.contains("audit signing key") && err.contains("bad.pem"),
        "{err}"
    );
}
