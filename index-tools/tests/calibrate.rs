//! `facegate-index calibrate` on a synthetic population: synth, build,
//! calibrate, then the threshold checked against an independent count of
//! `eval`'s scores.csv.

mod common;
use common::*;

use std::path::Path;
use std::process::Output;

const TARGET: f64 = 0.01;

/// 3,000 subjects, 2,400 probes (about 1,200 non-mated: k = 12 at 0.01).
fn standard_population(d: &Path) {
    population(
        d,
        &[
            "--subjects",
            "3000",
            "--probes",
            "2400",
            "--mated-fraction",
            "0.5",
            "--seed",
            "7",
        ],
    );
}

fn calibrate(d: &Path, extra: &[&str]) -> Output {
    let (g, probes, truth) = (
        d.join("g.fgal"),
        d.join("probes.npy"),
        d.join("probes_truth.csv"),
    );
    let mut a = vec!["calibrate", "--gallery", p(&g), "--probes", p(&probes)];
    a.extend_from_slice(&["--truth", p(&truth), "--manifests-per-probe", "4"]);
    a.extend_from_slice(extra);
    run(&a)
}

/// Non-mated best scores from eval's scores.csv.
fn non_mated_best(d: &Path) -> Vec<f32> {
    let mut r = csv::Reader::from_path(d.join("eval/scores.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (mated, best) = (col("mated"), col("best_score"));
    r.records()
        .map(|r| r.unwrap())
        .filter(|r| &r[mated] == "false")
        .map(|r| r[best].parse::<f32>().unwrap_or(f32::NEG_INFINITY))
        .collect()
}

fn fpir(best: &[f32], t: f32) -> f64 {
    best.iter().filter(|&&s| s >= t).count() as f64 / best.len() as f64
}

#[test]
fn calibrate_meets_the_target_and_manifest_thresholds_grow_with_size() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    standard_population(d);
    let target = TARGET.to_string();
    let out = calibrate(
        d,
        &[
            "--target-fpir",
            &target,
            "--manifest-sizes",
            "1000,50,300,5000",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sidecar = d.join("g.fgal.calibration.json");
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    assert_eq!(c["format"], "facegate-calibration/1");
    assert_eq!(c["target_fpir"], TARGET);
    let t = c["threshold"].as_f64().unwrap() as f32;

    // Independently: eval's scores, counted here.
    let (g, probes, truth) = (
        d.join("g.fgal"),
        d.join("probes.npy"),
        d.join("probes_truth.csv"),
    );
    ok(&[
        "eval",
        "--gallery",
        p(&g),
        "--probes",
        p(&probes),
        "--truth",
        p(&truth),
        "--out-dir",
        p(&d.join("eval")),
        "--bootstrap",
        "0",
        "--impostor-pairs",
        "100",
        "--target-fpir",
        &target,
    ]);
    let best = non_mated_best(d);
    assert_eq!(
        c["probes"]["non_mated"].as_u64().unwrap() as usize,
        best.len()
    );
    assert!(fpir(&best, t) <= TARGET, "FPIR at {t}: {}", fpir(&best, t));
    assert!(fpir(&best, t.next_down()) > TARGET, "{t} is not the lowest");
    assert_eq!(c["fpir"]["rate"].as_f64().unwrap(), fpir(&best, t));
    let generation = c["gallery"]["generation"].as_str().unwrap();
    let report = std::fs::read_to_string(d.join("eval/report.json")).unwrap();
    assert!(
        report.contains(generation),
        "eval names generation {generation}"
    );

    // 5000 is not below the 3000 subjects: the national threshold covers it.
    let m = c["manifests"].as_array().unwrap();
    let sizes: Vec<u64> = m.iter().map(|e| e["people"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [50, 300, 1000]);
    let mut thresholds: Vec<f32> = m
        .iter()
        .map(|e| e["threshold"].as_f64().unwrap() as f32)
        .collect();
    thresholds.push(t);
    assert!(
        thresholds.windows(2).all(|w| w[0] <= w[1]),
        "not monotone: {thresholds:?}"
    );
    for e in m {
        assert!(e["fpir"]["rate"].as_f64().unwrap() <= TARGET);
    }

    // An existing sidecar is replaced only with --force.
    let again = calibrate(d, &["--target-fpir", &target]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

#[test]
fn an_unestimable_target_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    population(d, &["--subjects", "200", "--probes", "100", "--seed", "3"]);
    let (g, probes, truth) = (
        d.join("g.fgal"),
        d.join("probes.npy"),
        d.join("probes_truth.csv"),
    );
    let err = fails(&[
        "calibrate",
        "--gallery",
        p(&g),
        "--probes",
        p(&probes),
        "--truth",
        p(&truth),
    ]);
    assert!(err.contains("not estimable"), "{err}");
    assert!(err.contains("at least 1000 non-mated probes"), "{err}");
    assert!(!d.join("g.fgal.calibration.json").exists());
}
