//! Manifest galleries through the real server: staged on the back office's
//! listener, searched by ports (answers equal an exact search over the
//! manifest's travellers computed here), amended, closed, durable across a
//! restart, a removal seen at once, the national fallback, each error's
//! status, port keys, audit records naming the manifest, and expiry with a
//! clock the test moves (the server run in-process with a `ManualClock`).

use crate::common::*;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use facegate_api::v1::manifests_client::ManifestsClient;
use facegate_api::v1::{
    AmendManifestRequest, CloseManifestRequest, Direction, GetManifestRequest, IdentifyRequest,
    IdentifyResponse, ListManifestsRequest, ManifestHeader, ManifestKind, RemoveRequest,
    SearchScope, StageManifestRequest,
};
use facegate_core::ProbeBatch;
use facegate_core::SearchEngine;
use facegate_core::audit::{AuditRecord, read_dir};
use facegate_core::clock::{ManualClock, UnixMillis};
use tonic::Code;
use tonic::transport::Channel;

const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn stage_request(
    id: &str,
    port: &str,
    window: (i64, i64),
    subjects: &[String],
) -> StageManifestRequest {
    StageManifestRequest {
        header: Some(ManifestHeader {
            manifest_id: id.into(),
            kind: ManifestKind::Flight.into(),
            carrier: "XA".into(),
            voyage: "XA123".into(),
            port_id: port.into(),
            direction: Direction::Entry.into(),
            scheduled_unix_ms: window.0,
            valid_from_unix_ms: window.0,
            valid_until_unix_ms: window.1,
        }),
        subject_ids: subjects.to_vec(),
        request_id: format!("stage-{id}"),
    }
}

fn scoped(probe: Vec<f32>, k: u32, manifest: &str, fallback: bool) -> IdentifyRequest {
    IdentifyRequest {
        manifest_id: manifest.into(),
        fallback,
        ..identify(probe, k, &format!("in-{manifest}"))
    }
}

async fn manifests_client(addr: &str) -> ManifestsClient<Channel> {
    ManifestsClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

/// The gallery's subject ids of subject numbers `range`.
fn ids(f: &Fixture, range: std::ops::Range<u32>) -> Vec<String> {
    let g = f.engine.gallery();
    range
        .map(|s| g.subject_id(s).unwrap().to_string())
        .collect()
}

/// Every subject's exact best score for `probe`, best first, from the
/// test's own exact engine (every subject in the pool, so every score is
/// the exact re-score).
fn exact_all(f: &Fixture, probe: &[f32]) -> Vec<(String, f32)> {
    let g = f.engine.gallery();
    let probes = ProbeBatch::single(DIM, probe).unwrap();
    let all = f.engine.search(&probes, g.subjects()).unwrap().remove(0);
    all.into_iter()
        .map(|c| (g.subject_id(c.subject).unwrap().to_string(), c.score))
        .collect()
}

/// The exact 1:few answer: the best `k` of `travellers` (less `removed`).
fn exact_in(
    f: &Fixture,
    probe: &[f32],
    travellers: &HashSet<String>,
    k: usize,
) -> Vec<(String, f32)> {
    let mut v = exact_all(f, probe);
    v.retain(|(id, _)| travellers.contains(id));
    v.truncate(k);
    v
}

fn assert_answer(resp: &IdentifyResponse, want: &[(String, f32)]) {
    let got: Vec<&str> = resp
        .candidates
        .iter()
        .map(|c| c.subject_id.as_str())
        .collect();
    let want_ids: Vec<&str> = want.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(got, want_ids);
    for (c, (_, score)) in resp.candidates.iter().zip(want) {
        assert!((c.score - score).abs() < 1e-5, "{} vs {score}", c.score);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn staged_searched_amended_closed_and_durable_across_a_restart() {
    let f = fixture();
    let data = tempfile::tempdir().unwrap();
    let args = ["--data-dir", data.path().to_str().unwrap()];
    let server = Server::start(&f.path, &args);
    let mut m = manifests_client(&server.admin_addr).await;
    let mut c = server.client().await;
    let now = now_ms();
    let open = (now - HOUR_MS, now + HOUR_MS);

    // Staged: 40 travellers and two ids the gallery does not hold.
    let mut travellers = ids(&f, 0..40);
    travellers.extend(["ZZ-UNKNOWN-1".to_string(), "ZZ-UNKNOWN-2".to_string()]);
    let staged = m
        .stage(stage_request("XA123-D1", "JFK-T4", open, &travellers))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(staged.travellers, 42);
    assert_eq!(staged.not_in_gallery, ["ZZ-UNKNOWN-1", "ZZ-UNKNOWN-2"]);
    assert!(staged.newly_staged);
    let again = m
        .stage(stage_request("XA123-D1", "JFK-T4", open, &travellers))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.newly_staged, "a retry stages nothing new");
    let conflict = m
        .stage(stage_request("XA123-D1", "JFK-T4", open, &travellers[..3]))
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists, "{conflict:?}");

    // Searched: the answers are the exact best of the travellers.
    let mut set: HashSet<String> = travellers.iter().cloned().collect();
    for j in 0..20 {
        let p = f.synth.probe(j).vector;
        let resp = c
            .identify(scoped(p.clone(), 5, "XA123-D1", false))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.answered_by, SearchScope::Manifest as i32);
        assert_eq!(resp.manifest_id, "XA123-D1");
        assert_answer(&resp, &exact_in(&f, &p, &set, 5));
    }
    // A national search says so.
    let national = c
        .identify(identify(f.synth.probe(0).vector, 3, "n"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(national.answered_by, SearchScope::National as i32);
    assert_eq!(national.manifest_id, "");

    // Amended: a late booking in, a no-board out.
    let late = ids(&f, 100..101).remove(0);
    let no_board = travellers[0].clone();
    let amended = m
        .amend(AmendManifestRequest {
            manifest_id: "XA123-D1".into(),
            add: vec![late.clone()],
            drop: vec![no_board.clone()],
            request_id: "amend".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((amended.travellers, amended.not_in_gallery.len()), (42, 0));
    set.insert(late.clone());
    set.remove(&no_board);
    let got = m
        .get(GetManifestRequest {
            manifest_id: "XA123-D1".into(),
            request_id: "get".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut want: Vec<String> = set.iter().cloned().collect();
    want.sort();
    assert_eq!(got.subject_ids, want);

    // A removal from the gallery is reflected at once.
    let removed = travellers[5].clone();
    server
        .admin()
        .await
        .remove(RemoveRequest {
            subject_id: removed.clone(),
            request_id: "rm".into(),
        })
        .await
        .unwrap();
    let in_gallery: HashSet<String> = set.iter().filter(|id| **id != removed).cloned().collect();
    for j in 0..20 {
        let p = f.synth.probe(j).vector;
        let resp = c
            .identify(scoped(p.clone(), 8, "XA123-D1", false))
            .await
            .unwrap()
            .into_inner();
        assert_answer(&resp, &exact_in(&f, &p, &in_gallery, 8));
    }

    // Streamed: the same answer; an unknown manifest fails only its message.
    let p = f.synth.probe(3).vector;
    let stream = tokio_stream::iter(vec![
        scoped(p.clone(), 4, "XA123-D1", false),
        scoped(p.clone(), 4, "NO-SUCH", false),
    ]);
    let mut out = c.identify_stream(stream).await.unwrap().into_inner();
    let mut answers = Vec::new();
    while let Some(r) = out.message().await.unwrap() {
        answers.push(r);
    }
    answers.sort_by_key(|r| r.error.is_some());
    assert_eq!(answers.len(), 2);
    assert_answer(&answers[0], &exact_in(&f, &p, &in_gallery, 4));
    assert_eq!(
        answers[1].error.as_ref().unwrap().code,
        Code::NotFound as i32
    );

    // Restarted (killed): every manifest is still there and searchable.
    let future = (now + 2 * HOUR_MS, now + 3 * HOUR_MS);
    m.stage(stage_request(
        "XA999-LATER",
        "JFK-T4",
        future,
        &ids(&f, 50..60),
    ))
    .await
    .unwrap();
    drop((m, c));
    drop(server);
    let server = Server::start(&f.path, &args);
    let mut m = manifests_client(&server.admin_addr).await;
    let mut c = server.client().await;
    let after = m
        .get(GetManifestRequest {
            manifest_id: "XA123-D1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.subject_ids, want);
    let p = f.synth.probe(7).vector;
    let resp = c
        .identify(scoped(p.clone(), 5, "XA123-D1", false))
        .await
        .unwrap()
        .into_inner();
    assert_answer(&resp, &exact_in(&f, &p, &in_gallery, 5));
    let page = m
        .list(ListManifestsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.manifests.len(), 1);
    assert_eq!(
        page.manifests[0].header.as_ref().unwrap().manifest_id,
        "XA123-D1"
    );
    let rest = m
        .list(ListManifestsRequest {
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let rest_ids: Vec<&str> = rest
        .manifests
        .iter()
        .map(|s| s.header.as_ref().unwrap().manifest_id.as_str())
        .collect();
    assert_eq!(
        (rest_ids, rest.next_page_token.as_str()),
        (vec!["XA999-LATER"], "")
    );

    // Closed: no longer searchable.
    m.close(CloseManifestRequest {
        manifest_id: "XA123-D1".into(),
        request_id: "close".into(),
    })
    .await
    .unwrap();
    let closed = c
        .identify(scoped(p, 5, "XA123-D1", false))
        .await
        .unwrap_err();
    assert_eq!(closed.code(), Code::FailedPrecondition, "{closed:?}");
    assert!(closed.message().contains("expired"), "{}", closed.message());

    // The audit trail names the manifest of each scoped search and change.
    let records: Vec<AuditRecord> = {
        let mut v = Vec::new();
        read_dir(&data.path().join("audit"), &mut |r| v.push(r.clone())).unwrap();
        v
    };
    let named = |rpc: &str| {
        records
            .iter()
            .filter(|r| r.event.rpc == rpc)
            .all(|r| r.event.manifest_id.is_some())
    };
    for rpc in [
        "StageManifest",
        "AmendManifest",
        "CloseManifest",
        "GetManifest",
    ] {
        assert!(
            records.iter().any(|r| r.event.rpc == rpc),
            "{rpc} not audited"
        );
        assert!(named(rpc), "{rpc} without its manifest");
    }
    let scoped_searches = records
        .iter()
        .filter(|r| r.event.rpc == "Identify" && r.event.manifest_id.as_deref() == Some("XA123-D1"))
        .count();
    assert!(scoped_searches >= 41, "{scoped_searches}");
    assert!(
        records
            .iter()
            .any(|r| r.event.rpc == "Identify" && r.event.manifest_id.is_none()),
        "the national search has no manifest"
    );
}

/// A server over the fixture with one manifest staged for port JFK-T4,
/// valid from an hour ago to an hour ahead.
struct Staged {
    server: Server,
    matcher: facegate_api::v1::matcher_client::MatcherClient<Channel>,
    /// The manifest's travellers: the fixture's first subjects.
    travellers: HashSet<String>,
}

async fn start_with_manifest(f: &Fixture, id: &str, count: u32) -> Staged {
    let server = Server::start(&f.path, &[]);
    let mut m = manifests_client(&server.admin_addr).await;
    let matcher = server.client().await;
    let now = now_ms();
    let travellers = ids(f, 0..count);
    m.stage(stage_request(
        id,
        "JFK-T4",
        (now - HOUR_MS, now + HOUR_MS),
        &travellers,
    ))
    .await
    .unwrap();
    Staged {
        server,
        matcher,
        travellers: travellers.into_iter().collect(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_searches_the_nation_only_when_the_manifest_gives_no_match() {
    let f = fixture();
    let Staged {
        server,
        matcher: mut c,
        travellers: set,
    } = start_with_manifest(&f, "FB-1", 30).await;
    // A probe whose best national candidate scores above every traveller.
    let (p, in_manifest, nation) = (0..100)
        .map(|j| f.synth.probe(j).vector)
        .find_map(|p| {
            let nation = exact_all(&f, &p);
            let best_in = exact_in(&f, &p, &set, 5);
            (nation[0].1 > best_in[0].1 + 0.05 && !set.contains(&nation[0].0))
                .then_some((p, best_in, nation))
        })
        .expect("a probe of someone not on the manifest");
    let threshold = (in_manifest[0].1 + nation[0].1) / 2.0;
    let ask = |fallback: bool| IdentifyRequest {
        threshold: Some(threshold),
        ..scoped(p.clone(), 5, "FB-1", fallback)
    };

    let without = c.identify(ask(false)).await.unwrap().into_inner();
    assert_eq!(without.answered_by, SearchScope::Manifest as i32);
    assert!(!without.r#match);
    assert_answer(&without, &in_manifest);

    let with = c.identify(ask(true)).await.unwrap().into_inner();
    assert_eq!(with.answered_by, SearchScope::ManifestThenNational as i32);
    assert_eq!(with.manifest_id, "FB-1");
    assert!(with.r#match);
    assert_answer(&with, &nation[..5]);

    // A match in the manifest needs no fallback.
    let low = IdentifyRequest {
        threshold: Some(in_manifest[0].1 - 0.01),
        ..ask(true)
    };
    let matched = c.identify(low).await.unwrap().into_inner();
    assert_eq!(matched.answered_by, SearchScope::Manifest as i32);
    assert!(matched.r#match);

    // Fallback without a manifest is refused, not ignored.
    let bad = IdentifyRequest {
        fallback: true,
        ..identify(p.clone(), 5, "x")
    };
    let err = c.identify(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let metrics = http_get(&server.metrics).await;
    for (outcome, n) in [("no_match", 1.0), ("fallback_match", 1.0), ("match", 1.0)] {
        let series = format!("facegate_scoped_searches_total{{outcome=\"{outcome}\"}}");
        assert_eq!(sample(&metrics, &series), n, "{series}");
    }
    assert_eq!(sample(&metrics, "facegate_manifests_live"), 1.0);
}

/// Scoped searches never wait behind a national batch because they never
/// enter the dispatcher at all: after many of them, streamed and unary, the
/// dispatcher has formed no batch and queued nothing (a structural check, not
/// a timing: the p99 under national load belongs in the benchmarks).
#[tokio::test(flavor = "multi_thread")]
async fn scoped_searches_never_enter_the_national_queue() {
    let f = fixture();
    let Staged {
        server,
        matcher: mut c,
        travellers: set,
    } = start_with_manifest(&f, "Q-1", 40).await;
    for j in 0..20 {
        let p = f.synth.probe(j).vector;
        let resp = c
            .identify(scoped(p.clone(), 3, "Q-1", false))
            .await
            .unwrap();
        assert_answer(&resp.into_inner(), &exact_in(&f, &p, &set, 3));
    }
    let metrics = http_get(&server.metrics).await;
    assert_eq!(sample(&metrics, "facegate_batch_size_count"), 0.0);
    assert_eq!(sample(&metrics, "facegate_queue_wait_seconds_count"), 0.0);
    let series = "facegate_scoped_searches_total{outcome=\"match\"}";
    let scoped_total = sample(&metrics, series)
        + sample(
            &metrics,
            "facegate_scoped_searches_total{outcome=\"no_match\"}",
        );
    assert_eq!(scoped_total, 20.0);
    // One national search does go through it.
    c.identify(identify(f.synth.probe(0).vector, 3, "n"))
        .await
        .unwrap();
    let metrics = http_get(&server.metrics).await;
    assert_eq!(sample(&metrics, "facegate_batch_size_count"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_error_has_its_own_status_and_nothing_is_half_staged() {
    let f = fixture();
    let server = Server::start(&f.path, &["--no-audit"]);
    let mut m = manifests_client(&server.admin_addr).await;
    let mut c = server.client().await;
    let now = now_ms();
    let open = (now - HOUR_MS, now + HOUR_MS);
    let some = ids(&f, 0..5);
    let mut too_many: Vec<String> = (0..50_001).map(|i| format!("T{i:08}")).collect();
    let mut bad_kind = stage_request("K", "JFK-T4", open, &some);
    bad_kind.header.as_mut().unwrap().kind = 0;
    let mut twice = some.clone();
    twice.push(some[0].clone());
    for (req, want) in [
        (
            stage_request("W", "JFK-T4", (now - 2 * HOUR_MS, now - HOUR_MS), &some),
            Code::FailedPrecondition,
        ),
        (
            stage_request("W", "JFK-T4", (now + HOUR_MS, now), &some),
            Code::InvalidArgument,
        ),
        (
            stage_request("", "JFK-T4", open, &some),
            Code::InvalidArgument,
        ),
        (stage_request("P", "", open, &some), Code::InvalidArgument),
        (
            stage_request("D", "JFK-T4", open, &twice),
            Code::InvalidArgument,
        ),
        (
            stage_request("B", "JFK-T4", open, &["bad\nid".to_string()]),
            Code::InvalidArgument,
        ),
        (
            stage_request("T", "JFK-T4", open, &too_many),
            Code::InvalidArgument,
        ),
        (bad_kind, Code::InvalidArgument),
    ] {
        let id = req.header.as_ref().unwrap().manifest_id.clone();
        assert_eq!(code(m.stage(req).await), want, "{id}");
    }
    too_many.clear();
    let listed = m
        .list(ListManifestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.manifests.is_empty(),
        "nothing half-staged: {listed:?}"
    );

    let get = |id: &str| GetManifestRequest {
        manifest_id: id.into(),
        ..Default::default()
    };
    assert_eq!(code(m.get(get("NOPE")).await), Code::NotFound);
    assert_eq!(code(m.get(get("bad\u{1}")).await), Code::InvalidArgument);
    let amend = AmendManifestRequest {
        manifest_id: "NOPE".into(),
        add: some.clone(),
        ..Default::default()
    };
    assert_eq!(code(m.amend(amend).await), Code::NotFound);

    // Searches: unknown, not yet valid, bad id.
    let later = (now + HOUR_MS, now + 2 * HOUR_MS);
    m.stage(stage_request("LATER", "JFK-T4", later, &some))
        .await
        .unwrap();
    let p = || f.synth.probe(0).vector;
    assert_eq!(
        code(c.identify(scoped(p(), 3, "NOPE", false)).await),
        Code::NotFound
    );
    let early = c
        .identify(scoped(p(), 3, "LATER", false))
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);
    assert!(
        early.message().contains("valid only from"),
        "{}",
        early.message()
    );
    assert_eq!(
        code(c.identify(scoped(p(), 3, "bad\u{1}", false)).await),
        Code::InvalidArgument
    );
    let amend_dup = AmendManifestRequest {
        manifest_id: "LATER".into(),
        add: vec![some[0].clone()],
        drop: vec![some[0].clone()],
        ..Default::default()
    };
    assert_eq!(code(m.amend(amend_dup).await), Code::InvalidArgument);

    // The ports' listener does not serve Manifests.
    let mut wrong = manifests_client(&server.addr).await;
    let unserved = wrong.get(get("LATER")).await.unwrap_err();
    assert_eq!(unserved.code(), Code::Unimplemented);
}

/// The status code of an answer (OK for an answer); a refusal must say why.
fn code<T>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => {
            assert!(!s.message().is_empty(), "{s:?}");
            s.code()
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_key_searches_only_its_own_ports_manifests_and_a_refusal_is_audited() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (jfk, jfk_line) = keygen("JFK-T4");
    let (sea, sea_line) = keygen("SEA-1");
    let keys = dir.path().join("ports.keys");
    std::fs::write(&keys, format!("{jfk_line}\n{sea_line}\n")).unwrap();
    let data = dir.path().join("data");
    let server = Server::start(
        &f.path,
        &[
            "--port-keys",
            keys.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    let mut m = manifests_client(&server.admin_addr).await;
    let mut c = server.client().await;
    let now = now_ms();
    m.stage(stage_request(
        "JFK-ONLY",
        "JFK-T4",
        (now - HOUR_MS, now + HOUR_MS),
        &ids(&f, 0..20),
    ))
    .await
    .unwrap();
    let p = f.synth.probe(0).vector;
    let own = c
        .identify(with_key(scoped(p.clone(), 3, "JFK-ONLY", false), &jfk))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.answered_by, SearchScope::Manifest as i32);
    let other = c
        .identify(with_key(scoped(p.clone(), 3, "JFK-ONLY", true), &sea))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied, "{other:?}");

    let mut records = Vec::new();
    read_dir(&data.join("audit"), &mut |r| records.push(r.clone())).unwrap();
    let refused = records
        .iter()
        .find(|r| r.event.code == "PERMISSION_DENIED")
        .expect("the refusal is audited");
    assert_eq!(refused.event.principal, "SEA-1");
    assert_eq!(refused.event.manifest_id.as_deref(), Some("JFK-ONLY"));
    assert!(refused.event.subjects.is_empty(), "nothing disclosed");
}

/// The server as `facegate serve` runs it, in this process, on a clock the
/// test moves.
async fn serve_in_process(
    f: &Fixture,
    data: &std::path::Path,
    clock: Arc<ManualClock>,
) -> InProcess {
    crate::common::serve_in_process(f, data, clock, |s| s.manifest_purge_interval_ms = 20).await
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_searched_after_valid_until_and_expired_manifests_are_purged() {
    let f = fixture();
    let data = tempfile::tempdir().unwrap();
    let t0 = 1_800_000_000_000;
    let clock = Arc::new(ManualClock::new(UnixMillis(t0)));
    let server = serve_in_process(&f, data.path(), clock.clone()).await;
    let mut m = manifests_client(&server.admin_addr).await;
    let mut c = matcher_at(&server.addr).await;
    let travellers = ids(&f, 0..25);
    m.stage(stage_request(
        "DAY-1",
        "JFK-T4",
        (t0 - 1_000, t0 + 60_000),
        &travellers,
    ))
    .await
    .unwrap();
    m.stage(stage_request(
        "DAY-2",
        "JFK-T4",
        (t0 + 60_000, t0 + 120_000),
        &travellers,
    ))
    .await
    .unwrap();
    let p = f.synth.probe(2).vector;
    let set: HashSet<String> = travellers.iter().cloned().collect();
    let resp = c
        .identify(scoped(p.clone(), 5, "DAY-1", false))
        .await
        .unwrap()
        .into_inner();
    assert_answer(&resp, &exact_in(&f, &p, &set, 5));
    let early = c
        .identify(scoped(p.clone(), 5, "DAY-2", false))
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);

    // One millisecond before the end: searchable; at the end: not.
    clock.set(UnixMillis(t0 + 59_999));
    c.identify(scoped(p.clone(), 5, "DAY-1", false))
        .await
        .unwrap();
    clock.set(UnixMillis(t0 + 60_000));
    let expired = c
        .identify(scoped(p.clone(), 5, "DAY-1", false))
        .await
        .unwrap_err();
    assert_eq!(expired.code(), Code::FailedPrecondition, "{expired:?}");
    assert!(
        expired.message().contains("expired"),
        "{}",
        expired.message()
    );
    c.identify(scoped(p.clone(), 5, "DAY-2", false))
        .await
        .unwrap();

    // The purge timer drops DAY-1 from memory and disk.
    let by = Instant::now() + Duration::from_secs(10);
    loop {
        let text = http_get(&server.metrics).await;
        if sample(&text, "facegate_manifest_expiries_total") >= 1.0 {
            assert_eq!(sample(&text, "facegate_manifests_live"), 1.0);
            break;
        }
        assert!(Instant::now() < by, "DAY-1 was not purged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listed = m
        .list(ListManifestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<&str> = listed
        .manifests
        .iter()
        .map(|s| s.header.as_ref().unwrap().manifest_id.as_str())
        .collect();
    assert_eq!(listed, ["DAY-2"]);
    let gone = c
        .identify(scoped(p.clone(), 5, "DAY-1", false))
        .await
        .unwrap_err();
    assert_eq!(
        gone.code(),
        Code::FailedPrecondition,
        "purged: still told expired"
    );
}

async fn matcher_at(addr: &str) -> facegate_api::v1::matcher_client::MatcherClient<Channel> {
    facegate_api::v1::matcher_client::MatcherClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}
