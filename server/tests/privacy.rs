//! Erasure on request through the real server: one back-office call takes a
//! subject out of the gallery, every manifest and the encounter store; the
//! raw bytes of the manifest and encounter files no longer hold their id;
//! a second erasure erases nothing more; the reason is required.

mod common;

use common::*;

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
