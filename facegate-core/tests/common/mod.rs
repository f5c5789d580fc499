//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use facegate_core::format::{BuildOptions, SliceRows, build_gallery};
use facegate_core::synth::{Synth, SynthConfig};
use facegate_core::{ElementType, Gallery};

pub fn synth(subjects: usize, probes: usize, dim: usize, seed: u64) -> Synth {
    Synth::new(SynthConfig {
        subjects,
        probes,
        dim,
        mated_fraction: 1.0,
        seed,
    })
    .unwrap()
}

/// The synthetic gallery as raw rows and ids.
pub fn population(s: &Synth) -> (Vec<f32>, Vec<String>) {
    let mut rows = s.gallery_rows();
    let mut data = Vec::new();
    while let Some((_, r)) = rows.next_with_id() {
        data.extend_from_slice(r);
    }
    (data, rows.into_ids())
}

pub fn build(
    dir: &Path,
    name: &str,
    data: &[f32],
    dim: usize,
    ids: &[String],
    ty: ElementType,
) -> PathBuf {
    let path = dir.join(name);
    let mut src = SliceRows::new(data, dim, "test").unwrap();
    build_gallery(
        &path,
        &mut src,
        ids,
        "ids",
        &BuildOptions {
            scan_type: ty,
            model_tag: "synthetic-v1".into(),
            overwrite: false,
        },
        &mut |_| {},
    )
    .unwrap();
    path
}

pub fn open(p: &Path) -> std::sync::Arc<Gallery> {
    std::sync::Arc::new(Gallery::open(p).unwrap())
}

/// The synthetic population of `s` as an int8 gallery `g.fgal` in `dir`,
/// opened: the set-up most search and shard tests share.
pub fn int8_gallery(dir: &Path, s: &Synth) -> std::sync::Arc<Gallery> {
    let (data, ids) = population(s);
    open(&build(
        dir,
        "g.fgal",
        &data,
        s.config().dim,
        &ids,
        ElementType::Int8,
    ))
}

/// Probes `which` of `s`, one after another, as a probe batch takes them.
pub fn probe_rows(s: &Synth, which: std::ops::Range<usize>) -> Vec<f32> {
    which.flat_map(|j| s.probe(j).vector).collect()
}
