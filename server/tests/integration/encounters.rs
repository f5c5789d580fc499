//! Encounters through the real server: ports record entries and exits with
//! their searches (Identify, Verify, manifest), the back office reads them
//! back and reconciles them: a traveller who enters, overstays, is
//! reported, and leaves; an impostor's exit; an officer's correction;
//! idempotent retries; SIGKILL while recording loses no acknowledged
//! record; each error its own status.

use crate::common::*;

use facegate_api::v1::encounters_client::EncountersClient;
use facegate_api::v1::manifests_client::ManifestsClient;
use facegate_api::v1::matcher_client::MatcherClient;
use facegate_api::v1::{
    Admission, CaptureContext, CorrectEncounterRequest, Direction, EncounterDecision,
    GetEncounterRequest, IdentifyRequest, IrregularKind, ListIrregularRequest,
    ListOverstaysRequest, ListScheduledErasuresRequest, ManifestHeader, ManifestKind,
    PutTravellerRequest, ReconcileManifestRequest, StageManifestRequest, StayRule,
    StayStatusRequest, TravelHistoryRequest, Traveller, TravellerCategory, VerifyRequest,
    stay_rule,
};
use facegate_core::encounter::Day;
use facegate_core::synth::Synth;
use tonic::Code;
use tonic::transport::Channel;

const DAY_MS: i64 = 86_400_000;

/// 2026-01-01, and days after it.
fn day(n: i32) -> Day {
    "2026-01-01".parse::<Day>().unwrap().plus(n)
}

fn capture(id: &str, direction: Direction, d: i32) -> CaptureContext {
    CaptureContext {
        port_id: "JFK-T4".into(),
        lane: "3".into(),
        direction: direction.into(),
        captured_at_unix_ms: day(d).start().0 + 10 * 3_600_000,
        encounter_id: id.into(),
        carrier: "XA".into(),
        voyage: "XA100".into(),
        record: true,
    }
}

/// A capture of subject number `s` (one of its enrolment photos: it
/// matches at any threshold).
fn face(f: &Fixture, s: usize) -> Vec<f32> {
    f.synth.subject(s).templates[0].clone()
}

fn at(f: &Fixture, s: usize, id: &str, direction: Direction, d: i32) -> IdentifyRequest {
    IdentifyRequest {
        capture: Some(capture(id, direction, d)),
        ..identify(face(f, s), 3, id)
    }
}

async fn encounters(server: &Server) -> EncountersClient<Channel> {
    EncountersClient::connect(format!("http://{}", server.admin_addr))
        .await
        .unwrap()
}

async fn admit(e: &mut EncountersClient<Channel>, subject: &str, rule: stay_rule::Rule) {
    e.put_traveller(PutTravellerRequest {
        traveller: Some(Traveller {
            subject_id: subject.into(),
            category: TravellerCategory::VisaExempt.into(),
            admissions: vec![Admission {
                class_of_admission: "visa-exempt".into(),
                port_id: "JFK-T4".into(),
                day: day(0).to_string(),
                rule: Some(StayRule { rule: Some(rule) }),
            }],
        }),
        request_id: "admit".into(),
    })
    .await
    .unwrap();
}

async fn overstayers(e: &mut EncountersClient<Channel>, as_of: i32) -> Vec<(String, u32)> {
    let r = e
        .list_overstays(ListOverstaysRequest {
            as_of: day(as_of).to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    r.overstays
        .into_iter()
        .map(|o| (o.subject_id, o.days_over))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_traveller_enters_overstays_is_reported_and_leaves() {
    let f = fixture();
    let server = Server::start(&f.path, &[]);
    let (mut m, mut e) = (server.client().await, encounters(&server).await);
    let who = Synth::subject_id(7);
    admit(&mut e, &who, stay_rule::Rule::NinetyIn180(true)).await;

    let entry = m
        .identify(at(&f, 7, "in-1", Direction::Entry, 0))
        .await
        .unwrap()
        .into_inner();
    assert!(entry.r#match);
    let rec = entry.encounter.expect("the entry was recorded");
    assert!(rec.first_record);
    // A retry (the port lost the answer) is answered with the first record.
    let again = m
        .identify(at(&f, 7, "in-1", Direction::Entry, 0))
        .await
        .unwrap()
        .into_inner();
    let again = again.encounter.unwrap();
    assert_eq!(
        (again.record_id, again.first_record),
        (rec.record_id, false)
    );

    // Days 0..=89 are allowed; on day 100 they are 11 days over.
    assert!(overstayers(&mut e, 89).await.is_empty());
    assert_eq!(overstayers(&mut e, 100).await, [(who.clone(), 11)]);
    let status = e
        .stay_status(StayStatusRequest {
            subject_id: who.clone(),
            as_of: day(100).to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.in_country_since, day(0).to_string());
    assert_eq!((status.days_used_in_180, status.days_over), (101, 11));
    assert_eq!(status.rule, "90_in_180");

    // They leave on day 101, verified against their passport.
    let exit = m
        .verify(VerifyRequest {
            probe: face(&f, 7),
            subject_id: who.clone(),
            model_tag: TAG.into(),
            request_id: "out-1".into(),
            capture: Some(capture("out-1", Direction::Exit, 101)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(exit.r#match && exit.encounter.is_some());
    assert!(overstayers(&mut e, 102).await.is_empty());
    let later = e
        .stay_status(StayStatusRequest {
            subject_id: who.clone(),
            as_of: day(102).to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((later.days_over, later.past_days_over), (0, 12));
    let history = e
        .travel_history(TravelHistoryRequest { subject_id: who })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = history
        .encounters
        .iter()
        .map(|v| v.capture.as_ref().unwrap().encounter_id.as_str())
        .collect();
    assert_eq!(ids, ["in-1", "out-1"]);
    assert_eq!(history.traveller.unwrap().admissions.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overstayers_erasure_is_announced_within_the_notice_period() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    // Overstayers' records kept 200 days after the exit, announced 30 days
    // ahead; the purge runs every 50 ms.
    let policy = dir.path().join("retention.toml");
    std::fs::write(
        &policy,
        "[encounters]\noverstayer = { keep = \"200days\", from = \"exit\" }\n\
         [notices]\noverstayer_erasure = \"30days\"\n",
    )
    .unwrap();
    let server = Server::start(
        &f.path,
        &[
            "--retention-policy",
            policy.to_str().unwrap(),
            "--retention-interval-ms",
            "50",
        ],
    );
    let (mut m, mut e) = (server.client().await, encounters(&server).await);
    // Days are counted from 2026-01-01 by `capture`: today is day `today`.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let today = ((now_ms - day(0).start().0) / DAY_MS) as i32;
    let who = Synth::subject_id(9);
    admit(&mut e, &who, stay_rule::Rule::NinetyIn180(true)).await;
    // In for 121 days (31 over 90 in 180), out 180 days ago: the erasure is
    // due in about 20 days, inside the 30 announced.
    let (entry, exit) = (today - 300, today - 180);
    for (id, direction, d) in [
        ("in", Direction::Entry, entry),
        ("out", Direction::Exit, exit),
    ] {
        let answer = m.identify(at(&f, 9, id, direction, d)).await.unwrap();
        assert!(answer.into_inner().encounter.is_some());
    }
    let listed = e
        .list_scheduled_erasures(ListScheduledErasuresRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.notice_seconds, 30 * 86_400);
    assert_eq!(listed.next_page_token, "");
    let [one] = listed.erasures.as_slice() else {
        panic!("one overstay announced, got {:?}", listed.erasures);
    };
    let exit_ms = capture("out", Direction::Exit, exit).captured_at_unix_ms;
    assert_eq!(
        (one.subject_id.as_str(), one.exit_unix_ms),
        (who.as_str(), exit_ms)
    );
    assert_eq!(one.erase_at_unix_ms, exit_ms + 200 * DAY_MS);
    let status = e
        .stay_status(StayStatusRequest {
            subject_id: who.clone(),
            as_of: day(today).to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.days_over, status.past_days_over);
    assert!(one.days_over > 0);
    // The purge counts it for the dashboards, without a subject id.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let metrics = http_get(&server.metrics).await;
        if sample(&metrics, "facegate_retention_overstays_noticed") == 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the purge never counted it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_impostors_exit_is_reported_and_an_officer_corrects_it() {
    let f = fixture();
    let server = Server::start(&f.path, &[]);
    let (mut m, mut e) = (server.client().await, encounters(&server).await);
    // Subject 9 never entered; someone leaves matching them.
    let out = m
        .identify(at(&f, 9, "out-9", Direction::Exit, 3))
        .await
        .unwrap()
        .into_inner();
    let record_id = out.encounter.unwrap().record_id;
    let irregular = e
        .list_irregular(ListIrregularRequest {
            kind: IrregularKind::ExitWithoutEntry.into(),
            from_unix_ms: day(0).start().0,
            until_unix_ms: day(10).start().0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let found: Vec<_> = irregular.encounters.iter().map(|v| v.record_id).collect();
    assert_eq!(found, [record_id]);
    assert_eq!(irregular.encounters[0].subject_id, Synth::subject_id(9));
    // Counted as it was recorded (the writer found no entry before it).
    let unmatched = "facegate_unmatched_exits_total{port=\"JFK-T4\"}";
    let text = http_get(&server.metrics).await;
    assert_eq!(sample(&text, unmatched), 1.0, "{text}");
    // Subject 10 enters, then leaves: not counted.
    m.identify(at(&f, 10, "in-10", Direction::Entry, 1))
        .await
        .unwrap();
    m.identify(at(&f, 10, "out-10", Direction::Exit, 4))
        .await
        .unwrap();
    let text = http_get(&server.metrics).await;
    assert_eq!(sample(&text, unmatched), 1.0, "{text}");
    // Each of the three recorded answers counted its wait for the record.
    let waits = "facegate_encounter_record_wait_seconds_count";
    assert_eq!(sample(&text, waits), 3.0, "{text}");

    // The officer checks the passport: it is subject 10.
    let fixed = e
        .correct(CorrectEncounterRequest {
            record_id,
            decision: EncounterDecision::OfficerOverride.into(),
            subject_id: Synth::subject_id(10),
            note: "passport inspected; not the matched person".into(),
            request_id: "fix-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fixed.subject_id, Synth::subject_id(10));
    assert_eq!(fixed.changes.len(), 1);
    assert_eq!(fixed.changes[0].old_subject_id, Synth::subject_id(9));
    let got = e
        .get(GetEncounterRequest { record_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, fixed);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_captures_and_requests_get_their_own_status_and_record_nothing() {
    let f = fixture();
    let server = Server::start(&f.path, &[]);
    let (mut m, mut e) = (server.client().await, encounters(&server).await);
    let mut no_id = at(&f, 1, "", Direction::Entry, 0);
    let s = m.identify(no_id.clone()).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("encounter_id: is empty"), "{s:?}");
    no_id.capture.as_mut().unwrap().encounter_id = "x".into();
    no_id.capture.as_mut().unwrap().direction = 0;
    let s = m.identify(no_id).await.unwrap_err();
    assert!(s.message().contains("direction"), "{s:?}");
    // Without `record`, nothing is recorded and no id is returned.
    let mut plain = at(&f, 1, "p", Direction::Entry, 0);
    plain.capture.as_mut().unwrap().record = false;
    assert!(
        m.identify(plain)
            .await
            .unwrap()
            .into_inner()
            .encounter
            .is_none()
    );
    let h = e
        .travel_history(TravelHistoryRequest {
            subject_id: Synth::subject_id(1),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(h.encounters.is_empty());

    let s = e
        .get(GetEncounterRequest { record_id: 42 })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    let s = e
        .stay_status(StayStatusRequest {
            subject_id: "S1".into(),
            as_of: "2026-02-30".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    let s = e
        .list_irregular(ListIrregularRequest {
            kind: IrregularKind::EntryWithoutExit.into(),
            from_unix_ms: 10,
            until_unix_ms: 10,
            limit: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    let s = e
        .correct(CorrectEncounterRequest {
            record_id: 1,
            decision: EncounterDecision::Match.into(),
            subject_id: String::new(),
            note: "x".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_is_reconciled_from_its_recorded_captures() {
    let f = fixture();
    let server = Server::start(&f.path, &[]);
    let (mut m, mut e) = (server.client().await, encounters(&server).await);
    let mut staging = ManifestsClient::connect(format!("http://{}", server.admin_addr))
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let travellers: Vec<String> = (20..25).map(Synth::subject_id).collect();
    staging
        .stage(StageManifestRequest {
            header: Some(ManifestHeader {
                manifest_id: "XA100".into(),
                kind: ManifestKind::Flight.into(),
                port_id: "JFK-T4".into(),
                direction: Direction::Exit.into(),
                valid_from_unix_ms: now - DAY_MS,
                valid_until_unix_ms: now + DAY_MS,
                ..Default::default()
            }),
            subject_ids: travellers.clone(),
            request_id: "stage".into(),
        })
        .await
        .unwrap();
    for s in [20, 21] {
        let r = m
            .identify(IdentifyRequest {
                manifest_id: "XA100".into(),
                ..at(&f, s, &format!("b{s}"), Direction::Exit, 0)
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.r#match && r.encounter.is_some());
    }
    let r = e
        .reconcile_manifest(ReconcileManifestRequest {
            manifest_id: "XA100".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.matched, travellers[..2]);
    assert_eq!(r.no_show, travellers[2..]);
    assert!(r.not_matched.is_empty());
    assert_eq!(r.travellers, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_recording_loses_no_acknowledged_encounter() {
    let f = fixture();
    let data = tempfile::tempdir().unwrap();
    let args = ["--data-dir", data.path().to_str().unwrap()];
    let mut server = Server::start(&f.path, &args);
    let client = server.client().await;
    // 8 ports record as fast as they can; the server is killed mid-stream.
    let ports: Vec<_> = (0..8)
        .map(|p| {
            let mut c: MatcherClient<Channel> = client.clone();
            let req = at(&f, p, "", Direction::Entry, 0);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    let mut r = req.clone();
                    r.capture.as_mut().unwrap().encounter_id = format!("p{p}-{i}");
                    match c.identify(r).await {
                        Ok(resp) => acked.push(resp.into_inner().encounter.unwrap().record_id),
                        Err(_) => return acked,
                    }
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let mut acked = Vec::new();
    for p in ports {
        acked.extend(p.await.unwrap());
    }
    assert!(
        acked.len() > 8,
        "only {} records before the kill",
        acked.len()
    );
    let server = Server::start(&f.path, &args);
    let mut e = encounters(&server).await;
    for id in acked {
        e.get(GetEncounterRequest { record_id: id })
            .await
            .unwrap_or_else(|s| panic!("acknowledged record {id} lost: {s:?}"));
    }
}

/// Every file under `dir` (recursively) but those under `skip`, and `extra`.
fn files_outside(
    dir: &std::path::Path,
    skip: &std::path::Path,
    extra: &std::path::Path,
) -> Vec<std::path::PathBuf> {
    fn walk(d: &std::path::Path, skip: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(d).unwrap() {
            let p = entry.unwrap().path();
            if p.starts_with(skip) {
                continue;
            }
            if p.is_dir() {
                walk(&p, skip, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = vec![extra.to_path_buf()];
    walk(dir, skip, &mut out);
    out
}

/// The files among `paths` whose bytes contain `needle`.
fn holding(paths: &[std::path::PathBuf], needle: &[u8]) -> Vec<std::path::PathBuf> {
    paths
        .iter()
        .filter(|p| std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
        .cloned()
        .collect()
}

/// A subject's id, and the f16 bytes (as the gallery stores its exact rows)
/// of the first 16 values of each of their templates.
fn citizen_needles(f: &Fixture, s: usize, id: &str) -> Vec<Vec<u8>> {
    let mut needles = vec![id.as_bytes().to_vec()];
    for t in f.synth.subject(s).templates {
        let mut unit = vec![0f32; t.len()];
        facegate_core::quantize::normalize_into(&t, &mut unit, &|| "t".into()).unwrap();
        needles.push(
            unit[..16]
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
        );
    }
    needles
}

/// Whether `needle` occurs in the bytes of any file under `dir`.
fn on_disk(dir: &std::path::Path, needle: &str) -> bool {
    std::fs::read_dir(dir).unwrap().any(|f| {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_citizens_encounter_leaves_the_disk_within_12_hours_of_simulated_time() {
    use facegate_core::clock::{ManualClock, UnixMillis};
    use std::sync::Arc;
    let f = fixture();
    let data = tempfile::tempdir().unwrap();
    let t0 = day(0).start().0 + 10 * 3_600_000;
    let clock = Arc::new(ManualClock::new(UnixMillis(t0)));
    let server = serve_in_process(&f, data.path(), clock.clone(), |s| {
        s.retention_interval_ms = 20;
        s.compaction_interval_ms = 50;
        s.manifest_purge_interval_ms = 20;
    })
    .await;
    let mut m = MatcherClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let mut e = EncountersClient::connect(format!("http://{}", server.admin_addr))
        .await
        .unwrap();
    let (citizen, visitor) = (Synth::subject_id(30), Synth::subject_id(31));
    e.put_traveller(PutTravellerRequest {
        traveller: Some(Traveller {
            subject_id: citizen.clone(),
            category: TravellerCategory::Citizen.into(),
            admissions: Vec::new(),
        }),
        request_id: String::new(),
    })
    .await
    .unwrap();
    admit(&mut e, &visitor, stay_rule::Rule::NinetyIn180(true)).await;
    // Both on a flight's manifest (valid for six hours); the citizen's
    // entry is searched in it, their exit verified against their passport.
    let mut staging = ManifestsClient::connect(format!("http://{}", server.admin_addr))
        .await
        .unwrap();
    staging
        .stage(StageManifestRequest {
            header: Some(ManifestHeader {
                manifest_id: "CIT-FLIGHT".into(),
                kind: ManifestKind::Flight.into(),
                port_id: "JFK-T4".into(),
                direction: Direction::Entry.into(),
                valid_from_unix_ms: t0 - 3_600_000,
                valid_until_unix_ms: t0 + 6 * 3_600_000,
                ..Default::default()
            }),
            subject_ids: vec![citizen.clone(), visitor.clone()],
            request_id: String::new(),
        })
        .await
        .unwrap();
    let scoped = m
        .identify(IdentifyRequest {
            manifest_id: "CIT-FLIGHT".into(),
            ..at(&f, 30, "cit-in", Direction::Entry, 0)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(scoped.r#match && scoped.encounter.is_some());
    m.verify(VerifyRequest {
        probe: face(&f, 30),
        subject_id: citizen.clone(),
        model_tag: TAG.into(),
        capture: Some(capture("cit-out", Direction::Exit, 0)),
        ..Default::default()
    })
    .await
    .unwrap();
    m.identify(at(&f, 31, "vis-in", Direction::Entry, 0))
        .await
        .unwrap();
    let dir = data.path().join("encounters");
    assert!(on_disk(&dir, "cit-in"));

    let history = |e: &mut EncountersClient<Channel>, s: String| {
        let mut e = e.clone();
        async move {
            e.travel_history(TravelHistoryRequest { subject_id: s })
                .await
                .unwrap()
                .into_inner()
                .encounters
                .len()
        }
    };
    // The citizen's gallery templates and id are on disk before (the
    // positive control for the byte search below).
    let everywhere = || files_outside(data.path(), &data.path().join("audit"), &f.path);
    let needles: Vec<Vec<u8>> = citizen_needles(&f, 30, &citizen)
        .into_iter()
        .filter(|n| !holding(&everywhere(), n).is_empty())
        .collect();
    assert_eq!(
        needles.len(),
        1 + f.synth.subject(30).templates.len(),
        "the id and every template's bytes are found before"
    );
    // Eleven hours on, several purges later: still there.
    clock.set(UnixMillis(t0 + 11 * 3_600_000));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(history(&mut e, citizen.clone()).await, 2, "entry and exit");
    // Thirteen hours on: gone, from the API and from the bytes on disk.
    clock.set(UnixMillis(t0 + 13 * 3_600_000));
    let by = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while history(&mut e, citizen.clone()).await > 0 {
        assert!(
            std::time::Instant::now() < by,
            "the citizen's record was never purged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !on_disk(&dir, "cit-in"),
        "the citizen's encounter is still on disk"
    );
    // Out of the gallery too (5 h 30 min after their file), and once the
    // scheduled compaction has run, out of every file but the audit trail.
    let found = m
        .identify(identify(face(&f, 30), 5, "c"))
        .await
        .unwrap()
        .into_inner();
    assert!(found.candidates.iter().all(|c| c.subject_id != citizen));
    let by = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left: Vec<_> = needles
            .iter()
            .flat_map(|n| holding(&everywhere(), n))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < by, "still on disk: {left:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        history(&mut e, visitor.clone()).await,
        1,
        "the visitor's is kept"
    );
    let text = http_get(&server.metrics).await;
    assert!(
        sample(
            &text,
            "facegate_retention_erased_total{kind=\"encounter\",store=\"encounters\"}"
        ) >= 1.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_whose_encounter_cannot_be_made_durable_is_withheld_and_audited_so() {
    let f = fixture();
    // Files limited to a few hundred KiB: the audit trail's records fit,
    // the encounter store's pages and WAL soon do not (EFBIG, as on a
    // full disk).
    let server = Server::start_with_limit(&f.path, &[], &[], Some(400));
    let mut m = server.client().await;
    let mut answered = 0;
    let (refused, failed_id) = loop {
        let id = format!("in-{answered}");
        match m
            .identify(at(&f, answered % 20, &id, Direction::Entry, 1))
            .await
        {
            Ok(r) => {
                assert!(r.into_inner().encounter.is_some());
                answered += 1;
            }
            Err(e) => break (e, id),
        }
        assert!(answered < 2_000, "the file size limit never hit");
    };
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("encounter"), "{refused:?}");
    // The audit record written beside the encounter said the answer was
    // given; the one after it says it was withheld.
    let audit = server.data_dir.as_ref().unwrap().path().join("audit");
    let mut records = Vec::new();
    facegate_core::audit::read_dir(&audit, &mut |r| records.push(r.clone())).unwrap();
    let of_failed: Vec<_> = records
        .iter()
        .filter(|r| r.event.request_id == failed_id)
        .map(|r| r.event.code.as_str())
        .collect();
    assert_eq!(of_failed, ["OK", "UNAVAILABLE"]);
    let text = http_get(&server.metrics).await;
    assert!(sample(&text, "facegate_encounter_record_failures_total") >= 1.0);
}
