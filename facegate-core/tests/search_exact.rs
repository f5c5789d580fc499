//! The CPU engine against brute force, and int8 + re-score against f32 exact.

mod common;

use std::collections::HashMap;

use common::*;
use facegate_core::kernels::Kernels;
use facegate_core::{CpuEngine, ElementType, ProbeBatch, ScanTarget, SearchEngine};

/// Best score per subject by a plain f64 loop over the normalised input.
fn brute_force(
    data: &[f32],
    ids: &[String],
    dim: usize,
    probe: &[f32],
    k: usize,
) -> Vec<(String, f64)> {
    let norm = |v: &[f32]| {
        v.iter()
            .map(|x| f64::from(*x) * f64::from(*x))
            .sum::<f64>()
            .sqrt()
    };
    let pn = norm(probe);
    let mut best: HashMap<&str, f64> = HashMap::new();
    for (row, id) in data.chunks_exact(dim).zip(ids) {
        let s = row
            .iter()
            .zip(probe)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum::<f64>()
            / (norm(row) * pn);
        let e = best.entry(id).or_insert(f64::NEG_INFINITY);
        *e = e.max(s);
    }
    let mut v: Vec<_> = best.into_iter().map(|(i, s)| (i.to_string(), s)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.truncate(k);
    v
}

#[test]
fn every_element_type_and_kernel_set_matches_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    // An odd dimension and a row count that is not a multiple of any tile.
    let dim = 77;
    let s = synth(300, 20, dim, 11);
    let (data, ids) = population(&s);
    let probes = probe_rows(&s, 0..20);
    let batch = ProbeBatch::new(dim, &probes).unwrap();
    for ty in [ElementType::F32, ElementType::F16, ElementType::Int8] {
        let g = open(&build(
            dir.path(),
            &format!("{ty}.fgal"),
            &data,
            dim,
            &ids,
            ty,
        ));
        for kernels in Kernels::available() {
            let engine = CpuEngine::with_kernels(ScanTarget::whole(g.clone()), kernels);
            for k in [1, 10, 100] {
                let got = engine.search(&batch, k).unwrap();
                for (j, cands) in got.iter().enumerate() {
                    let want = brute_force(&data, &ids, dim, batch.unit(j), k);
                    assert_eq!(cands.len(), want.len().min(k));
                    // Scores agree within the stored precision; the order agrees
                    // wherever neighbouring scores are further apart than that.
                    let tol = if ty == ElementType::F32 { 1e-5 } else { 1e-3 };
                    for (c, (wid, ws)) in cands.iter().zip(&want) {
                        let gid = g.subject_id(c.subject).unwrap();
                        if gid != wid {
                            let wanted_score = want.iter().find(|(i, _)| i == gid).map(|w| w.1);
                            assert!(
                                wanted_score.is_some_and(|w| (w - *ws).abs() < 2.0 * tol),
                                "{ty}/{} k={k} probe {j}: {gid} in place of {wid}",
                                kernels.name
                            );
                        }
                        assert!(
                            (f64::from(c.score) - ws).abs() < tol,
                            "{ty}: {} vs {ws}",
                            c.score
                        );
                    }
                    for w in cands.windows(2) {
                        assert!(w[0].ranks_before(&w[1]), "not sorted");
                        assert_ne!(w[0].subject, w[1].subject, "duplicate subject");
                    }
                }
            }
        }
    }
}

#[test]
fn a_batch_answers_as_its_probes_alone_would() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 64;
    let s = synth(500, 7, dim, 5);
    let g = int8_gallery(dir.path(), &s);
    let engine = CpuEngine::new(ScanTarget::whole(g));
    let probes = probe_rows(&s, 0..7);
    let together = engine
        .search(&ProbeBatch::new(dim, &probes).unwrap(), 10)
        .unwrap();
    for (j, p) in probes.chunks_exact(dim).enumerate() {
        let alone = engine
            .search(&ProbeBatch::single(dim, p).unwrap(), 10)
            .unwrap();
        assert_eq!(alone[0], together[j]);
    }
}

#[test]
fn ties_and_duplicate_subjects_resolve_by_row_order() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 8;
    // Rows 0..6 identical; subjects a, b, a, c, b, d.
    let row = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let data: Vec<f32> = row.iter().copied().cycle().take(6 * dim).collect();
    let ids: Vec<String> = ["a", "b", "a", "c", "b", "d"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for ty in [ElementType::F32, ElementType::F16, ElementType::Int8] {
        let g = open(&build(
            dir.path(),
            &format!("{ty}.fgal"),
            &data,
            dim,
            &ids,
            ty,
        ));
        let engine = CpuEngine::new(ScanTarget::whole(g.clone()));
        let got = engine
            .search(&ProbeBatch::single(dim, &row).unwrap(), 3)
            .unwrap();
        let names: Vec<(&str, u32)> = got[0]
            .iter()
            .map(|c| (g.subject_id(c.subject).unwrap(), c.row))
            .collect();
        assert_eq!(names, [("a", 0), ("b", 1), ("c", 3)], "{ty}");
        // Any k past the subjects' count gives every subject once, however
        // large (no allocation, overflow or wrap-around by k).
        for k in [5, 1 << 40, usize::MAX] {
            let all = engine
                .search(&ProbeBatch::single(dim, &row).unwrap(), k)
                .unwrap();
            assert_eq!(all[0].len(), 4, "{ty} k={k}");
        }
    }
}

#[test]
fn int8_with_rescore_agrees_with_f32_exact_on_mated_probes() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 512;
    let probes_n = 2000;
    let s = synth(10_000, probes_n, dim, 42);
    let (data, ids) = population(&s);
    let f32g = open(&build(
        dir.path(),
        "f32.fgal",
        &data,
        dim,
        &ids,
        ElementType::F32,
    ));
    let i8g = open(&build(
        dir.path(),
        "i8.fgal",
        &data,
        dim,
        &ids,
        ElementType::Int8,
    ));
    let probes: Vec<_> = (0..probes_n).map(|j| s.probe(j)).collect();
    assert!(probes.iter().all(|p| p.mate.is_some()));
    let flat: Vec<f32> = probes.iter().flat_map(|p| p.vector.clone()).collect();
    let batch = ProbeBatch::new(dim, &flat).unwrap();
    let exact = CpuEngine::new(ScanTarget::whole(f32g.clone()))
        .search(&batch, 10)
        .unwrap();
    let fast = CpuEngine::new(ScanTarget::whole(i8g.clone()))
        .search(&batch, 10)
        .unwrap();
    let mut same_top1 = 0;
    let mut max_err = 0f32;
    for (e, f) in exact.iter().zip(&fast) {
        if f32g.subject_id(e[0].subject).unwrap() == i8g.subject_id(f[0].subject).unwrap() {
            same_top1 += 1;
        }
        for fc in f {
            let id = i8g.subject_id(fc.subject).unwrap();
            if let Some(ec) = e.iter().find(|c| f32g.subject_id(c.subject).unwrap() == id) {
                max_err = max_err.max((ec.score - fc.score).abs());
            }
        }
    }
    let agreement = same_top1 as f64 / probes_n as f64;
    println!("int8+rescore top-1 agreement {agreement:.4}, max score error {max_err:.2e}");
    assert!(agreement >= 0.999, "top-1 agreement {agreement}");
    assert!(max_err < 1e-3, "score error {max_err}");
}

#[test]
fn bad_probes_and_parameters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 16;
    let s = synth(20, 0, dim, 2);
    let (data, ids) = population(&s);
    let engine = CpuEngine::new(ScanTarget::whole(open(&build(
        dir.path(),
        "g.fgal",
        &data,
        dim,
        &ids,
        ElementType::Int8,
    ))));
    let good = vec![0.5f32; dim];
    assert!(
        ProbeBatch::single(dim, &good[..15])
            .unwrap_err()
            .to_string()
            .contains("expected dimension 16, got 15")
    );
    let mut nan = good.clone();
    nan[3] = f32::NAN;
    assert!(
        ProbeBatch::single(dim, &nan)
            .unwrap_err()
            .to_string()
            .contains("element 3 is not finite")
    );
    assert!(
        ProbeBatch::single(dim, &vec![0.0; dim])
            .unwrap_err()
            .to_string()
            .contains("zero norm")
    );
    let wrong_dim = ProbeBatch::single(8, &good[..8]).unwrap();
    assert!(
        engine
            .search(&wrong_dim, 3)
            .unwrap_err()
            .to_string()
            .contains("expected dimension 16")
    );
    let p = ProbeBatch::single(dim, &good).unwrap();
    assert!(
        engine
            .search(&p, 0)
            .unwrap_err()
            .to_string()
            .contains("top_k")
    );
    // k larger than the number of subjects returns every subject once.
    let all = engine.search(&p, 1000).unwrap();
    assert_eq!(all[0].len(), engine.gallery().subjects());
}

#[test]
fn every_kernel_set_gives_the_same_answers_over_many_chunks() {
    // More rows than three of the engine's parallel chunks (16,384 rows), so
    // that several workers each carry their selections across chunks; the
    // int8 scan's scores are exact integers, so every kernel set must give
    // the portable one's candidates exactly, at every batch size (and the
    // same f16 re-scores up to the float kernels' summation order).
    let dir = tempfile::tempdir().unwrap();
    let dim = 40;
    let s = synth(25_000, 9, dim, 23);
    let (data, ids) = population(&s);
    assert!(data.len() / dim > 3 * 16_384, "{} rows", data.len() / dim);
    let probes = probe_rows(&s, 0..9);
    let g = open(&build(
        dir.path(),
        "g.fgal",
        &data,
        dim,
        &ids,
        ElementType::Int8,
    ));
    let portable = CpuEngine::with_kernels(ScanTarget::whole(g.clone()), Kernels::portable());
    for count in [1, 5, 9] {
        let batch = ProbeBatch::new(dim, &probes[..count * dim]).unwrap();
        let want = portable.search(&batch, 10).unwrap();
        for kernels in Kernels::available() {
            let engine = CpuEngine::with_kernels(ScanTarget::whole(g.clone()), kernels);
            let got = engine.search(&batch, 10).unwrap();
            let key = |v: &[Vec<facegate_core::Candidate>]| -> Vec<Vec<(u32, u32)>> {
                v.iter()
                    .map(|c| c.iter().map(|c| (c.subject, c.row)).collect())
                    .collect()
            };
            assert_eq!(key(&got), key(&want), "{} batch {count}", kernels.name);
            for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                assert!((g.score - w.score).abs() < 1e-5, "{}", kernels.name);
            }
        }
    }
}
