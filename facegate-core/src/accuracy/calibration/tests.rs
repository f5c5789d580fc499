//! The sidecar round trip, and every way a damaged one is refused.

use super::*;

fn measured(errors: u64, trials: u64) -> Measured {
    Measured {
        errors,
        trials,
        rate: errors as f64 / trials as f64,
    }
}

fn sample() -> Calibration {
    Calibration {
        format: CALIBRATION_FORMAT.into(),
        gallery: CalibratedGallery {
            file: "g.fgal".into(),
            generation: "00ab00cd00ef0012".into(),
            rows: 7_000,
            subjects: 3_000,
            model_tag: "synthetic-v1".into(),
        },
        target_fpir: 0.001,
        threshold: 0.404_802_7,
        fpir: measured(4, 4953),
        fnir: Some(measured(341, 5047)),
        manifests: vec![
            ManifestThreshold {
                people: 50,
                threshold: 0.31,
                fpir: measured(9, 10_000),
            },
            ManifestThreshold {
                people: 300,
                threshold: 0.35,
                fpir: measured(10, 10_000),
            },
        ],
        probes: ProbeSet {
            file: "probes.npy".into(),
            xxh3: "0123456789abcdef".into(),
            truth_file: "probes_truth.csv".into(),
            truth_xxh3: "fedcba9876543210".into(),
            mated: 5047,
            non_mated: 4953,
        },
        seed: 1,
        made_unix_ms: 1_700_000_000_000,
        tool: "facegate-index test".into(),
        checksum: String::new(),
    }
    .seal()
}

fn written() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Calibration::sidecar_path(&dir.path().join("g.fgal"));
    sample().write(&path).unwrap();
    (dir, path)
}

#[test]
fn round_trip_is_exact() {
    let (_dir, path) = written();
    assert!(path.to_string_lossy().ends_with("g.fgal.calibration.json"));
    let back = Calibration::read(&path).unwrap().unwrap();
    assert_eq!(back, sample());
    assert_eq!(back.generation(), Some(0x00ab_00cd_00ef_0012));
    assert!(!back.is_stale_for(0x00ab_00cd_00ef_0012));
    assert!(back.is_stale_for(1));
}

#[test]
fn missing_sidecar_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        Calibration::read(&dir.path().join("x.json"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn manifest_threshold_takes_the_smallest_size_not_below() {
    let c = sample();
    assert_eq!(c.manifest_threshold(1), 0.31);
    assert_eq!(c.manifest_threshold(50), 0.31);
    assert_eq!(c.manifest_threshold(51), 0.35);
    assert_eq!(c.manifest_threshold(300), 0.35);
    assert_eq!(c.manifest_threshold(301), c.threshold);
}

fn refused(bytes: &[u8]) -> CalibrationError {
    Calibration::parse(Path::new("s.json"), bytes).unwrap_err()
}

#[test]
fn truncated_and_garbage_files_are_corrupt() {
    let (_dir, path) = written();
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 1, bytes.len() / 2, bytes.len() - 3] {
        let e = refused(&bytes[..cut]);
        assert!(matches!(e, CalibrationError::Corrupt { .. }), "{cut}: {e}");
        assert!(e.to_string().contains("s.json"), "{e}");
    }
    assert!(matches!(
        refused(b"\x00\xffnot json"),
        CalibrationError::Corrupt { .. }
    ));
}

#[test]
fn another_version_is_named_as_such() {
    let (_dir, path) = written();
    let text = std::fs::read_to_string(&path).unwrap();
    let other = text.replace(CALIBRATION_FORMAT, "facegate-calibration/2");
    match refused(other.as_bytes()) {
        CalibrationError::Version { found, .. } => assert_eq!(found, "facegate-calibration/2"),
        e => panic!("{e}"),
    }
}

#[test]
fn an_edited_value_fails_the_checksum() {
    let (_dir, path) = written();
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen("0.4048027", "0.3048027", 1);
    assert_ne!(edited, text);
    let e = refused(edited.as_bytes());
    assert!(matches!(e, CalibrationError::Checksum { .. }), "{e}");
}

#[test]
fn unknown_fields_and_impossible_values_are_refused() {
    let (_dir, path) = written();
    let text = std::fs::read_to_string(&path).unwrap();
    let extra = text.replacen("\"seed\"", "\"extra\": 1, \"seed\"", 1);
    assert!(matches!(
        refused(extra.as_bytes()),
        CalibrationError::Corrupt { .. }
    ));
    let mut bad = sample();
    bad.fpir = measured(10, 4953); // above the target
    let bad = bad.seal();
    let json = serde_json::to_vec(&bad).unwrap();
    assert!(matches!(refused(&json), CalibrationError::Invalid { .. }));
    let dir = tempfile::tempdir().unwrap();
    assert!(bad.write(&dir.path().join("s.json")).is_err());
}
