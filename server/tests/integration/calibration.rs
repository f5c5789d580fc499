//! The default threshold's source through the real server: a calibration
//! sidecar beside the gallery sets it (and, per size, a manifest search's),
//! `--default-threshold` overrides it, a stale one is used and reported,
//! a corrupt one stops start-up, and none gives the built-in value.

use crate::common::*;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use facegate_api::v1::manifests_client::ManifestsClient;
use facegate_api::v1::{
    Direction, GalleryInfo, GetGalleryInfoRequest, IdentifyRequest, ManifestHeader, ManifestKind,
    StageManifestRequest, ThresholdSource,
};
use facegate_core::accuracy::Calibration;
use facegate_core::accuracy::calibration::{
    CALIBRATION_FORMAT, CalibratedGallery, ManifestThreshold, Measured, ProbeSet,
};

const NATIONAL: f32 = 0.42;
const MANIFEST_50: f32 = 0.05;

fn measured(errors: u64, trials: u64) -> Measured {
    Measured {
        errors,
        trials,
        rate: errors as f64 / trials as f64,
    }
}

/// A sealed calibration of the fixture's gallery at `generation`.
fn calibration(f: &Fixture, generation: u64) -> Calibration {
    let g = f.engine.gallery();
    Calibration {
        format: CALIBRATION_FORMAT.into(),
        gallery: CalibratedGallery {
            file: "g.fgal".into(),
            generation: format!("{generation:016x}"),
            rows: g.rows() as u64,
            subjects: g.subjects() as u64,
            model_tag: TAG.into(),
        },
        target_fpir: 0.001,
        threshold: NATIONAL,
        fpir: measured(1, 1000),
        fnir: None,
        manifests: vec![ManifestThreshold {
            people: 50,
            threshold: MANIFEST_50,
            fpir: measured(1, 1000),
        }],
        probes: ProbeSet {
            file: "p.npy".into(),
            xxh3: "0000000000000000".into(),
            truth_file: "t.csv".into(),
            truth_xxh3: "0000000000000000".into(),
            mated: 0,
            non_mated: 1000,
        },
        seed: 1,
        made_unix_ms: 1,
        tool: "test".into(),
        checksum: String::new(),
    }
    .seal()
}

async fn info(server: &Server) -> GalleryInfo {
    let mut c = server.client().await;
    c.get_gallery_info(GetGalleryInfoRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The threshold an Identify without one was judged by.
async fn identify_threshold(server: &Server, req: IdentifyRequest) -> f32 {
    let mut c = server.client().await;
    let resp = c.identify(req).await.unwrap().into_inner();
    let best = resp
        .candidates
        .first()
        .map_or(f32::NEG_INFINITY, |c| c.score);
    assert_eq!(resp.r#match, best >= resp.threshold);
    resp.threshold
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_sets_the_default_and_a_configured_threshold_wins() {
    let f = fixture();
    let generation = f.engine.gallery().header().generation;
    calibration(&f, generation)
        .write(&Calibration::sidecar_path(&f.path))
        .unwrap();
    let probe = f.synth.probe(0).vector;

    let server = Server::start(&f.path, &[]);
    let i = info(&server).await;
    assert_eq!(i.threshold_source(), ThresholdSource::Calibrated);
    assert_eq!(i.default_threshold, NATIONAL);
    assert_eq!(i.target_fpir, 0.001);
    assert_eq!(i.calibrated_generation, generation);
    assert!(!i.calibration_stale);
    assert_eq!(i.manifest_thresholds.len(), 1);
    assert_eq!(
        (
            i.manifest_thresholds[0].people,
            i.manifest_thresholds[0].threshold
        ),
        (50, MANIFEST_50)
    );
    let req = identify(probe.clone(), 5, "national");
    assert_eq!(identify_threshold(&server, req).await, NATIONAL);
    let asked = IdentifyRequest {
        threshold: Some(0.7),
        ..identify(probe.clone(), 5, "asked")
    };
    assert_eq!(identify_threshold(&server, asked).await, 0.7);

    // A manifest of 10 people uses the 50-people threshold; asked still wins.
    stage(&server, &f, "m10", 10).await;
    let scoped = |threshold| IdentifyRequest {
        manifest_id: "m10".into(),
        threshold,
        ..identify(probe.clone(), 5, "scoped")
    };
    assert_eq!(identify_threshold(&server, scoped(None)).await, MANIFEST_50);
    assert_eq!(identify_threshold(&server, scoped(Some(0.6))).await, 0.6);
    drop(server);

    let server = Server::start(&f.path, &["--default-threshold", "0.5"]);
    let i = info(&server).await;
    assert_eq!(i.threshold_source(), ThresholdSource::Configured);
    assert_eq!((i.default_threshold, i.target_fpir), (0.5, 0.0));
    assert!(i.manifest_thresholds.is_empty());
    let req = identify(probe, 5, "configured");
    assert_eq!(identify_threshold(&server, req).await, 0.5);
}

async fn stage(server: &Server, f: &Fixture, id: &str, count: u32) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let g = f.engine.gallery();
    let subject_ids = (0..count)
        .map(|s| g.subject_id(s).unwrap().to_string())
        .collect();
    let mut m = ManifestsClient::connect(format!("http://{}", server.admin_addr))
        .await
        .unwrap();
    m.stage(StageManifestRequest {
        header: Some(ManifestHeader {
            manifest_id: id.into(),
            kind: ManifestKind::Flight.into(),
            carrier: "XA".into(),
            voyage: "XA1".into(),
            port_id: "JFK-T4".into(),
            direction: Direction::Entry.into(),
            scheduled_unix_ms: now,
            valid_from_unix_ms: now - 3_600_000,
            valid_until_unix_ms: now + 3_600_000,
        }),
        subject_ids,
        request_id: format!("stage-{id}"),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_is_used_and_reported_none_is_built_in_corrupt_refuses_start() {
    let f = fixture();
    let sidecar = Calibration::sidecar_path(&f.path);

    let server = Server::start(&f.path, &[]);
    let i = info(&server).await;
    assert_eq!(i.threshold_source(), ThresholdSource::BuiltIn);
    assert_eq!((i.default_threshold, i.calibrated_generation), (0.35, 0));
    drop(server);

    calibration(&f, 0x1234).write(&sidecar).unwrap();
    let server = Server::start(&f.path, &[]);
    let i = info(&server).await;
    assert_eq!(i.threshold_source(), ThresholdSource::Calibrated);
    assert_eq!(i.default_threshold, NATIONAL);
    assert_eq!(i.calibrated_generation, 0x1234);
    assert!(i.calibration_stale);
    drop(server);

    let text = std::fs::read_to_string(&sidecar).unwrap();
    std::fs::write(&sidecar, &text[..text.len() / 2]).unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(serve_args(&f.path))
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt calibration file"), "{err}");
    assert!(err.contains("calibration.json"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_reads_the_sidecar_again_and_keeps_it_when_it_turns_bad() {
    use facegate_api::v1::ReloadRequest;
    let f = fixture();
    let sidecar = Calibration::sidecar_path(&f.path);
    let generation = f.engine.gallery().header().generation;
    let server = Server::start(&f.path, &[]);
    assert_eq!(
        info(&server).await.threshold_source(),
        ThresholdSource::BuiltIn
    );

    calibration(&f, generation).write(&sidecar).unwrap();
    let mut admin = server.admin().await;
    admin.reload(ReloadRequest::default()).await.unwrap();
    let i = info(&server).await;
    assert_eq!(i.threshold_source(), ThresholdSource::Calibrated);
    assert_eq!(i.default_threshold, NATIONAL);

    // Damaged after start: logged, and the calibration in force stays.
    std::fs::write(&sidecar, b"{").unwrap();
    admin.reload(ReloadRequest::default()).await.unwrap();
    let i = info(&server).await;
    assert_eq!(i.threshold_source(), ThresholdSource::Calibrated);
    assert_eq!(i.default_threshold, NATIONAL);
}
