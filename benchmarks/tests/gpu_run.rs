//! The prepared GPU run (`benchmarks/gpu-run/run.sh`, issue 21) in
//! miniature, on Mesa's software Vulkan driver: the binary it carries,
//! with the designs `run.sh` asks for by default, runs to the end, every
//! design the adapter can serve answers exactly as the CPU engine does,
//! only a cooperative-matrix design may be skipped (lavapipe offers none),
//! and the files `torch_peer.py` maps are written as it reads them.
//!
//! A GPU machine is lent for minutes now and then; a run that fails there
//! on an unknown design name, a design that no longer opens, or a dump the
//! peer cannot read wastes it. This catches those here, in CI.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Gallery rows: small enough for a software rasteriser, and not a
/// multiple of the 32-row groups, so the last group is partial.
const ROWS: &str = "4099";

/// Batches: one probe and one tile of several (the device's larger
/// batches only take longer on lavapipe).
const BATCHES: [usize; 2] = [1, 8];

/// The default of `name=${NAME:-default}` in `run.sh`.
fn run_sh_default(script: &str, name: &str) -> String {
    let start = format!("{name}=${{{}:-", name.to_uppercase());
    let line = script
        .lines()
        .find(|l| l.trim_start().starts_with(&start))
        .unwrap_or_else(|| panic!("run.sh sets no {name} default"));
    let after = &line.trim_start()[start.len()..];
    after
        .strip_suffix('}')
        .unwrap_or_else(|| panic!("{name}'s default line is not name=${{NAME:-...}}: {line}"))
        .to_string()
}

/// The JSON array of timed cases the bench prints last with `--json`.
fn cases(stdout: &str) -> Vec<Value> {
    let start = stdout
        .find("\n[")
        .map(|i| i + 1)
        .or_else(|| stdout.starts_with('[').then_some(0))
        .expect("the bench printed no JSON array");
    serde_json::from_str(&stdout[start..]).expect("the bench's JSON parses")
}

/// Checks the layout the peer script maps the rows, scales and subjects by.
fn check_dump(dir: &Path) {
    let layout: Value =
        serde_json::from_slice(&std::fs::read(dir.join("gallery.json")).expect("gallery.json"))
            .expect("gallery.json parses");
    let file = dir.join(layout["file"].as_str().expect("gallery.json: file"));
    let len = std::fs::metadata(&file).expect("the dumped gallery").len();
    let rows = layout["rows"].as_u64().expect("gallery.json: rows");
    let dim = layout["dim"].as_u64().expect("gallery.json: dim");
    assert_eq!(rows.to_string(), ROWS);
    assert_eq!(dim, 512);
    let stride = layout["scan_rows"]["stride"]
        .as_u64()
        .expect("scan_rows.stride");
    assert!(
        stride >= dim,
        "a row's stride {stride} is shorter than {dim}"
    );
    let sections = [
        (layout["scan_rows"]["offset"].as_u64(), rows * stride),
        (layout["row_scales"]["offset"].as_u64(), rows * 4),
        (layout["row_subjects"]["offset"].as_u64(), rows * 4),
    ];
    for (offset, bytes) in sections {
        let offset = offset.expect("a section's offset");
        assert!(offset + bytes <= len, "a section ends past the file");
    }
    for npy in ["probes.npy", "answers.npy"] {
        let bytes = std::fs::read(dir.join(npy)).expect(npy);
        assert!(bytes.starts_with(b"\x93NUMPY"), "{npy} is not a .npy file");
    }
}

#[test]
fn the_prepared_gpu_run_works_on_lavapipe_with_its_default_designs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(root.join("gpu-run/run.sh")).expect("run.sh");
    let designs = run_sh_default(&script, "designs");
    for b in run_sh_default(&script, "batches").split(',') {
        let b: usize = b.parse().expect("run.sh's batches are numbers");
        assert!(b >= 1, "run.sh asks for an empty batch");
    }
    let dump = tempfile::tempdir().expect("temp dir");
    let batches = BATCHES.map(|b| b.to_string()).join(",");
    let out = Command::new(env!("CARGO_BIN_EXE_facegate-gpu-bench"))
        .args(["--allow-software-gpu", "--rows", ROWS, "--dim", "512"])
        .args([
            "--batches",
            &batches,
            "--designs",
            &designs,
            "--repeats",
            "1",
        ])
        .arg("--dump-dir")
        .arg(dump.path())
        .arg("--json")
        .env("WGPU_BACKEND", "vulkan")
        .output()
        .expect("the bench starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the bench failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cases = cases(&stdout);
    for spec in designs.split(',') {
        let timed: Vec<&Value> = cases.iter().filter(|c| c["variant"] == spec).collect();
        if timed.is_empty() {
            assert!(
                spec.contains("coop") && stderr.contains(&format!("{spec}: not run:")),
                "design {spec} was neither timed nor reported as one the device cannot run: {stderr}"
            );
            continue;
        }
        for batch in BATCHES {
            let case = timed
                .iter()
                .find(|c| c["batch"] == batch)
                .unwrap_or_else(|| panic!("{spec}: no batch of {batch}"));
            let (checked, agreed) = (&case["verified"][0], &case["verified"][1]);
            assert_eq!(checked, batch, "{spec} batch {batch}: probes checked");
            assert_eq!(
                agreed, batch,
                "{spec} batch {batch}: differs from the CPU engine"
            );
        }
    }
    assert!(
        cases.iter().any(|c| c["variant"] == "scan"),
        "the engine's own design did not run"
    );
    check_dump(dump.path());
}
