//! `facegate-index eval` on a synthetic population, as a data engineer runs
//! it: synth, build, eval; then what the report says about the groups.

mod common;
use common::*;

use std::path::Path;
use std::process::Output;

/// 3,000 subjects and 1,500 probes, half of them non-mated, so that the
/// default targets can be estimated down to FPIR 0.003 (k = 2 of 750).
fn standard_population(d: &Path) {
    population(
        d,
        &[
            "--subjects",
            "3000",
            "--probes",
            "1500",
            "--mated-fraction",
            "0.5",
            "--seed",
            "7",
        ],
    );
}

fn eval(d: &Path, truth: &Path, out: &str, extra: &[&str]) -> Output {
    let (gallery, probes, out_dir) = (d.join("g.fgal"), d.join("probes.npy"), d.join(out));
    let mut a = vec![
        "eval",
        "--gallery",
        p(&gallery),
        "--probes",
        p(&probes),
        "--truth",
        p(truth),
        "--out-dir",
        p(&out_dir),
    ];
    a.extend_from_slice(extra);
    run(&a)
}

#[test]
fn eval_reports_and_the_tightest_group_has_the_highest_fpir() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    standard_population(d);
    let started = std::time::Instant::now();
    let out = eval(d, &d.join("probes_truth.csv"), "out", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "eval of 1,500 probes: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let o = d.join("out");
    for f in [
        "report.json",
        "report.md",
        "scores.csv",
        "det.svg",
        "det.png",
        "cmc.svg",
        "cmc.png",
        "groups.svg",
        "groups.png",
    ] {
        let len = std::fs::metadata(o.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 100, "{f}: {len} bytes");
    }
    assert!(
        std::fs::read(o.join("det.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(o.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["gallery"]["subjects"], 3000);
    assert_eq!(r["probes"]["total"], 1500);
    assert_eq!(r["cmc"].as_array().unwrap().len(), 50);
    let points = r["identification"]["fnir_at_fpir"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    // 1/N > 0.001 with some 750 non-mated probes: not estimable, not invented.
    assert!(points[0]["at"].is_null());
    let threshold = r["threshold"]["value"].as_f64().unwrap();
    assert_eq!(points[1]["at"]["threshold"].as_f64().unwrap(), threshold);
    assert!(r["threshold"]["rule"].as_str().unwrap().contains("0.003"));
    // The construction: the tightest group (g3) has the highest impostor
    // scores, so the highest FPIR at the operating threshold.
    let groups = r["groups"]["groups"].as_array().unwrap();
    let fpir = |g: &serde_json::Value| g["fpir"]["rate"]["rate"].as_f64().unwrap();
    let g3 = groups.iter().find(|g| g["group"] == "g3").unwrap();
    for g in groups.iter().filter(|g| g["group"] != "g3") {
        assert!(fpir(g3) > fpir(g), "{g3} vs {g}");
    }
    let scores = std::fs::read_to_string(o.join("scores.csv")).unwrap();
    assert_eq!(scores.lines().count(), 1501);
    assert!(
        std::fs::read_to_string(o.join("report.md"))
            .unwrap()
            .contains("| g3 |")
    );
    // Outputs are kept unless --force.
    let again = eval(d, &d.join("probes_truth.csv"), "out", &["--bootstrap", "0"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("pass --force"));
}

#[test]
fn a_bad_truth_file_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    population(
        d,
        &[
            "--subjects",
            "50",
            "--probes",
            "20",
            "--dim",
            "16",
            "--seed",
            "3",
        ],
    );
    let truth = std::fs::read_to_string(d.join("probes_truth.csv")).unwrap();
    let lines: Vec<&str> = truth.lines().collect();
    let write = |name: &str, body: String| {
        let path = d.join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    let err = |path: &Path| String::from_utf8(eval(d, path, "o", &[]).stderr).unwrap();
    // An index past the .npy's rows, on line 4.
    let mut bad = lines.clone();
    let moved = bad[3].replacen("2,", "99,", 1);
    bad[3] = &moved;
    let e = err(&write("unknown.csv", bad.join("\n")));
    assert!(
        e.contains("unknown.csv:4") && e.contains("unknown probe index 99"),
        "{e}"
    );
    // One row short.
    let e = err(&write("short.csv", lines[..lines.len() - 1].join("\n")));
    assert!(e.contains("19 rows") && e.contains("20 probes"), "{e}");
    // A mate that the gallery does not hold.
    let mated = lines.iter().position(|l| l.contains(",true,")).unwrap();
    let mut bad = lines.clone();
    let renamed = bad[mated].replacen(",S0", ",X0", 1);
    bad[mated] = &renamed;
    let e = err(&write("mate.csv", bad.join("\n")));
    assert!(
        e.contains(&format!("mate.csv:{}", mated + 1)) && e.contains("not in the gallery"),
        "{e}"
    );
    // A missing column.
    let e = err(&write("cols.csv", truth.replacen("group", "grp", 1)));
    assert!(e.contains("no column \"group\""), "{e}");
    // Probes of another dimension than the gallery's.
    facegate_core::npy::write_matrix(d.join("p8.npy"), &[0.5; 8 * 20], 8).unwrap();
    let e = fails(&[
        "eval",
        "--gallery",
        p(&d.join("g.fgal")),
        "--probes",
        p(&d.join("p8.npy")),
        "--truth",
        p(&d.join("probes_truth.csv")),
        "--out-dir",
        p(&d.join("o")),
    ]);
    assert!(e.contains("dimension 8") && e.contains("has 16"), "{e}");
}

/// The GPU engine (WGSL on lavapipe here) answers every probe with the same
/// candidates and scores as the CPU engine, so an evaluation measures the
/// same rates on either: the two `scores.csv` are byte for byte equal.
#[test]
fn the_gpu_engine_evaluates_to_the_same_scores_as_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    population(
        d,
        &[
            "--subjects",
            "300",
            "--probes",
            "200",
            "--dim",
            "128",
            "--mated-fraction",
            "0.5",
            "--seed",
            "3",
        ],
    );
    let truth = d.join("probes_truth.csv");
    let fast = [
        "--bootstrap",
        "0",
        "--impostor-pairs",
        "500",
        "--top-k",
        "20",
        "--target-fpir",
        "0.05",
    ];
    let cpu = eval(d, &truth, "cpu", &fast);
    assert!(
        cpu.status.success(),
        "{}",
        String::from_utf8_lossy(&cpu.stderr)
    );
    let mut gpu_args = fast.to_vec();
    gpu_args.extend(["--engine", "gpu", "--allow-software-gpu"]);
    let gpu = eval(d, &truth, "gpu", &gpu_args);
    assert!(
        gpu.status.success(),
        "{}",
        String::from_utf8_lossy(&gpu.stderr)
    );
    let read = |out: &str| std::fs::read_to_string(d.join(out).join("scores.csv")).unwrap();
    assert_eq!(read("cpu"), read("gpu"));
    let report = std::fs::read_to_string(d.join("gpu").join("report.json")).unwrap();
    assert!(report.contains("\"gpu/"), "the report names the GPU engine");
}
