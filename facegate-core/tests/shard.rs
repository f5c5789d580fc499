//! A gallery split into shards: every subject in exactly one, the one its
//! id hashes to; the shards' rows are the source's, written as a one-shard
//! split writes them, so the top-k merged over the shards is, bit for bit,
//! the one-shard gallery's top-k (and the source's, to within the f16
//! rounding every rewrite has, as after a compaction).

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use facegate_core::shard::{ShardSpec, merge_map, read_map, shard_of, split};
use facegate_core::{
    Candidate, CpuEngine, ElementType, Gallery, ProbeBatch, ScanTarget, SearchEngine,
};

/// (subject id, score bits), best first, ties by subject id: comparable
/// across galleries whose row numbers differ.
fn ranked(g: &Gallery, cands: &[Candidate]) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = cands
        .iter()
        .map(|c| {
            (
                g.subject_id(c.subject).unwrap().to_string(),
                c.score.to_bits(),
            )
        })
        .collect();
    out.sort_by(|a, b| {
        f32::from_bits(b.1)
            .total_cmp(&f32::from_bits(a.1))
            .then(a.0.cmp(&b.0))
    });
    out
}

fn search(g: &Arc<Gallery>, batch: &ProbeBatch, k: usize) -> Vec<Vec<(String, u32)>> {
    let engine = CpuEngine::new(ScanTarget::whole(g.clone()));
    engine
        .search(batch, k)
        .unwrap()
        .iter()
        .map(|c| ranked(g, c))
        .collect()
}

#[test]
fn shards_partition_subjects_and_their_merged_top_k_is_the_whole_galleries() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 64;
    let s = synth(300, 20, dim, 7);
    let (data, ids) = population(&s);
    let probes = probe_rows(&s, 0..20);
    let batch = ProbeBatch::new(dim, &probes).unwrap();
    for ty in [ElementType::Int8, ElementType::F32] {
        let source = open(&build(
            dir.path(),
            &format!("{ty}.fgal"),
            &data,
            dim,
            &ids,
            ty,
        ));
        let out = dir.path().join(format!("{ty}-shards"));
        std::fs::create_dir_all(&out).unwrap();
        let map = split(source.clone(), 3, &out, "g", false, &mut |_| {}).unwrap();
        let whole = split(source.clone(), 1, &out, "whole", false, &mut |_| {}).unwrap();
        assert_eq!(read_map(&out.join("g.shards.json")).unwrap(), map);
        let shards: Vec<Arc<Gallery>> = map
            .shards
            .iter()
            .map(|e| open(&out.join(&e.file)))
            .collect();
        let one = open(&out.join(&whole.shards[0].file));

        // Every subject in exactly one shard, its own; every row kept.
        let mut seen = HashSet::new();
        for (k, g) in shards.iter().enumerate() {
            let spec = ShardSpec {
                index: k as u32,
                count: 3,
            };
            assert_eq!(spec.strangers(g).unwrap(), 0);
            for i in 0..g.subjects() as u32 {
                let id = g.subject_id(i).unwrap();
                assert_eq!(shard_of(id, 3), k as u32);
                assert!(seen.insert(id.to_string()), "{id} in two shards");
            }
            assert_eq!(map.shards[k].rows, g.rows() as u64);
        }
        assert_eq!(seen.len(), source.subjects());
        assert_eq!(
            map.shards.iter().map(|e| e.rows).sum::<u64>(),
            source.rows() as u64
        );
        assert!(map.shards.iter().all(|e| e.subjects > 50), "{map:?}");

        for k in [1, 10, 50] {
            let per_shard: Vec<_> = shards.iter().map(|g| search(g, &batch, k)).collect();
            let want = search(&one, &batch, k);
            let from_source = search(&source, &batch, k);
            for (j, want) in want.iter().enumerate() {
                let mut merged: Vec<(String, u32)> =
                    per_shard.iter().flat_map(|r| r[j].clone()).collect();
                merged.sort_by(|a, b| {
                    f32::from_bits(b.1)
                        .total_cmp(&f32::from_bits(a.1))
                        .then(a.0.cmp(&b.0))
                });
                merged.truncate(k);
                assert_eq!(&merged, want, "{ty} k={k} probe {j}");
                for ((_, got), (_, src)) in merged.iter().zip(&from_source[j]) {
                    let (got, src) = (f32::from_bits(*got), f32::from_bits(*src));
                    assert!(
                        (got - src).abs() < 2e-3,
                        "{ty} k={k} probe {j}: {got} vs {src}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_server_given_the_wrong_shard_finds_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let s = synth(120, 1, 32, 3);
    let (data, ids) = population(&s);
    let source = open(&build(
        dir.path(),
        "g.fgal",
        &data,
        32,
        &ids,
        ElementType::Int8,
    ));
    let map = split(source.clone(), 2, dir.path(), "g", false, &mut |_| {}).unwrap();
    let shard0 = open(&dir.path().join(&map.shards[0].file));
    let wrong = ShardSpec { index: 1, count: 2 };
    assert_eq!(wrong.strangers(&shard0).unwrap(), shard0.subjects() as u64);
    // Writing over an existing shard needs overwrite.
    assert!(split(source, 2, dir.path(), "g", false, &mut |_| {}).is_err());
}

#[test]
fn shards_merged_back_answer_as_the_whole_and_reshard_to_another_count() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 48;
    let s = synth(240, 12, dim, 11);
    let source = int8_gallery(dir.path(), &s);
    let probes = probe_rows(&s, 0..12);
    let batch = ProbeBatch::new(dim, &probes).unwrap();
    let three = dir.path().join("three");
    std::fs::create_dir_all(&three).unwrap();
    split(source.clone(), 3, &three, "g", false, &mut |_| {}).unwrap();
    // The whole, written as a one-shard split writes it: what a merge must equal.
    let whole = split(source.clone(), 1, &three, "whole", false, &mut |_| {}).unwrap();
    let one = open(&three.join(&whole.shards[0].file));

    let merged_path = dir.path().join("merged.fgal");
    let report = merge_map(
        &three.join("g.shards.json"),
        &merged_path,
        false,
        &mut |_| {},
    )
    .unwrap();
    let merged = open(&merged_path);
    assert_eq!(report.header.rows, source.rows() as u64);
    assert_eq!(merged.subjects(), source.subjects());
    for k in [1, 10] {
        assert_eq!(search(&merged, &batch, k), search(&one, &batch, k), "k={k}");
    }
    // Resharding 3 -> 2 from the merge: the same answers again.
    let two = dir.path().join("two");
    std::fs::create_dir_all(&two).unwrap();
    let map = split(merged, 2, &two, "g", false, &mut |_| {}).unwrap();
    for (k, e) in map.shards.iter().enumerate() {
        let g = open(&two.join(&e.file));
        assert_eq!(
            ShardSpec {
                index: k as u32,
                count: 2
            }
            .strangers(&g)
            .unwrap(),
            0
        );
    }
    // A map whose files are of another split is refused, naming the file.
    let wrong = dir.path().join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    let mut bad = read_map(&two.join("g.shards.json")).unwrap();
    for f in ["g-0-of-2.fgal", "g-1-of-2.fgal"] {
        std::fs::copy(two.join(f), wrong.join(f)).unwrap();
    }
    bad.shards.swap(0, 1);
    bad.shards[0].index = 0;
    bad.shards[1].index = 1;
    facegate_core::shard::write_map(&bad, &wrong.join("g.shards.json")).unwrap();
    let e = merge_map(
        &wrong.join("g.shards.json"),
        &dir.path().join("x.fgal"),
        false,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("belong to other shards"), "{e}");
}
