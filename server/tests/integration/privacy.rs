//! Erasure on request through the real server: one back-office call takes a
//! subject out of the gallery, every manifest and the encounter store; the
//! raw bytes of the manifest and encounter files no longer hold their id;
//! a second erasure erases nothing more; the reason is required.

use crate::common::*;

use facegate_api::v1::encounters_client::EncountersClient;
use facegate_api::v1::manifests_client::ManifestsClient;
use facegate_api::v1::privacy_client::PrivacyClient;
use facegate_api::v1::{
    CaptureContext, Direction, EraseSubjectRequest, GetManifestRequest, IdentifyRequest,
    ManifestHeader, ManifestKind, StageManifestRequest, TravelHistoryRequest,
};
use facegate_core::synth::Synth;
use tonic::Code;

/// Whether `needle` occurs in the bytes of any file directly under `dir`.
fn on_disk(dir: &std::path::Path, needle: &str) -> bool {
    std::fs::read_dir(dir).unwrap().any(|f| {
        let p = f.unwrap().path();
        p.is_file() && {
            let bytes = std::fs::read(p).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn one_call_erases_a_subject_from_every_store() {
    let f = fixture();
    let data = tempfile::tempdir().unwrap();
    let args = ["--data-dir", data.path().to_str().unwrap()];
    let server = Server::start(&f.path, &args);
    let admin = format!("http://{}", server.admin_addr);
    let mut m = server.client().await;
    let mut manifests = ManifestsClient::connect(admin.clone()).await.unwrap();
    let mut encounters = EncountersClient::connect(admin.clone()).await.unwrap();
    let mut privacy = PrivacyClient::connect(admin).await.unwrap();
    let who = Synth::subject_id(40);
    let face = f.synth.subject(40).templates[0].clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    manifests
        .stage(StageManifestRequest {
            header: Some(ManifestHeader {
                manifest_id: "ERASE-FLIGHT".into(),
                kind: ManifestKind::Flight.into(),
                port_id: "JFK-T4".into(),
                direction: Direction::Entry.into(),
                valid_from_unix_ms: now - 60_000,
                valid_until_unix_ms: now + 3_600_000,
                ..Default::default()
            }),
            subject_ids: vec![who.clone(), Synth::subject_id(41)],
            request_id: String::new(),
        })
        .await
        .unwrap();
    let seen = m
        .identify(IdentifyRequest {
            capture: Some(CaptureContext {
                port_id: "JFK-T4".into(),
                direction: Direction::Entry.into(),
                captured_at_unix_ms: now,
                encounter_id: "erase-1".into(),
                record: true,
                ..Default::default()
            }),
            ..identify(face.clone(), 1, "before")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.candidates[0].subject_id, who);

    let no_reason = privacy
        .erase_subject(EraseSubjectRequest {
            subject_id: who.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(no_reason.code(), Code::InvalidArgument);
    let erased = privacy
        .erase_subject(EraseSubjectRequest {
            subject_id: who.clone(),
            reason: "art. 35 request, case 2026/118".into(),
            request_id: "erase".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(erased.removed_from_gallery && erased.gallery_bytes_pending_compaction);
    assert_eq!(erased.manifests, ["ERASE-FLIGHT"]);
    assert_eq!(erased.encounter_rows_erased, 1);

    // Gone from searches, the manifest, the encounters, and their bytes.
    let after = m
        .identify(identify(face, 5, "after"))
        .await
        .unwrap()
        .into_inner();
    assert!(after.candidates.iter().all(|c| c.subject_id != who));
    let listed = manifests
        .get(GetManifestRequest {
            manifest_id: "ERASE-FLIGHT".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.subject_ids, [Synth::subject_id(41)]);
    let history = encounters
        .travel_history(TravelHistoryRequest {
            subject_id: who.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(history.encounters.is_empty());
    assert!(!on_disk(&data.path().join("encounters"), &who));
    assert!(
        !on_disk(data.path(), &who),
        "manifests.db still holds the id"
    );

    let again = privacy
        .erase_subject(EraseSubjectRequest {
            subject_id: who,
            reason: "retry".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.removed_from_gallery && again.manifests.is_empty());
    assert_eq!(again.encounter_rows_erased, 0);
}

/// Every file under `dir`, recursively, except under `skip`.
fn files(dir: &std::path::Path, skip: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.starts_with(skip) {
            continue;
        }
        if p.is_dir() {
            out.extend(files(&p, skip));
        } else {
            out.push(p);
        }
    }
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

/// The first 16 values of `t` as little-endian f32 and f16 bytes.
fn encodings(t: &[f32]) -> [Vec<u8>; 2] {
    let f32s = t[..16].iter().flat_map(|v| v.to_le_bytes()).collect();
    let f16s = t[..16]
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect();
    [f32s, f16s]
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erased_subjects_bytes_leave_every_file_after_the_scheduled_compaction() {
    use facegate_api::v1::{EnrollRequest, Template};
    let f = fixture();
    let data = tempfile::tempdir().unwrap();
    let args = [
        "--data-dir",
        data.path().to_str().unwrap(),
        "--compaction-interval-ms",
        "300",
    ];
    let server = Server::start(&f.path, &args);
    let mut privacy = PrivacyClient::connect(format!("http://{}", server.admin_addr))
        .await
        .unwrap();
    // One subject of the base file, one enrolled online (in the change log).
    let base_id = Synth::subject_id(50);
    let base_template = f.synth.subject(50).templates[0].clone();
    let online_id = "ONLINE-ERASE-77";
    // Someone never in the base file (the population has 400 subjects).
    let online_template = f.synth.subject(10_000).templates[0].clone();
    server
        .admin()
        .await
        .enroll(EnrollRequest {
            subject_id: online_id.into(),
            templates: vec![Template {
                values: online_template.clone(),
            }],
            model_tag: TAG.into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let audit = data.path().join("audit");
    let everywhere = || {
        let mut all = files(data.path(), &audit);
        all.push(f.path.clone());
        all
    };
    // Positive controls: each needle is found before the erasure, so its
    // absence after means something.
    let mut needles: Vec<Vec<u8>> = vec![base_id.clone().into(), online_id.into()];
    needles.extend(encodings(&base_template));
    needles.extend(encodings(&online_template));
    let present: Vec<&Vec<u8>> = needles
        .iter()
        .filter(|n| !holding(&everywhere(), n).is_empty())
        .collect();
    assert!(
        present.len() >= 4,
        "only {} of the needles found before",
        present.len()
    );

    for id in [base_id.as_str(), online_id] {
        privacy
            .erase_subject(EraseSubjectRequest {
                subject_id: id.into(),
                reason: "erasure request".into(),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    let by = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = http_get(&server.metrics).await;
        if sample(&text, "facegate_compactions_total{outcome=\"compacted\"}") >= 1.0 {
            break;
        }
        assert!(std::time::Instant::now() < by, "no compaction ran");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for n in present {
        let left = holding(&everywhere(), n);
        assert!(
            left.is_empty(),
            "{:?} still in {left:?}",
            String::from_utf8_lossy(n)
        );
    }
    // The audit trail keeps the ids for its own period, as documented.
    assert!(
        !holding(
            &files(&audit, std::path::Path::new("/nonexistent")),
            base_id.as_bytes()
        )
        .is_empty()
    );
}
