//! Running `facegate-index` as a data engineer runs it: the helpers every
//! command-line test shares.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::process::{Command, Output};

/// Runs `facegate-index` with `args`.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_facegate-index"))
        .args(args)
        .output()
        .expect("facegate-index runs")
}

/// Runs it and expects success; its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs it and expects failure; its stderr.
pub fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "{args:?} succeeded unexpectedly");
    String::from_utf8(out.stderr).unwrap()
}

/// A path as an argument.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Synthesises a population into `d` (`synth` with `synth_args`) and builds
/// its gallery, `d/g.fgal`.
pub fn population(d: &Path, synth_args: &[&str]) {
    let mut synth = vec!["synth", "--out-dir", p(d)];
    synth.extend_from_slice(synth_args);
    ok(&synth);
    let (embeddings, ids, gallery) = (
        d.join("gallery.npy"),
        d.join("gallery_ids.txt"),
        d.join("g.fgal"),
    );
    ok(&[
        "build",
        "--embeddings",
        p(&embeddings),
        "--ids",
        p(&ids),
        "--out",
        p(&gallery),
    ]);
}
