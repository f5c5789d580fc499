//! facegate's CPU engine against Faiss's exact IndexFlatIP on the same rows:
//! the f32 engine must give Faiss's answers, and the int8 + re-score path must
//! recall them. (Speed is the benchmark's business, not this test's.)

use std::sync::Arc;

use facegate_benchmarks::NoiseRows;
use facegate_benchmarks::faiss_peer::{FaissPeer, PeerKind, agreement, distinct_subjects};
use facegate_core::format::{BuildOptions, RowSource, SliceRows, build_gallery};
use facegate_core::{CpuEngine, ElementType, Gallery, ProbeBatch, ScanTarget, SearchEngine};

const DIM: usize = 64;
const ROWS: usize = 20_000;
const PROBES: usize = 64;
const K: usize = 10;

fn unit(src: &mut NoiseRows, n: usize) -> Vec<f32> {
    let mut v = vec![0f32; n * DIM];
    for r in v.chunks_exact_mut(DIM) {
        src.next_row(r).unwrap();
        let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        r.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn gallery(dir: &std::path::Path, rows: &[f32], ty: ElementType) -> Arc<Gallery> {
    // Two templates per subject, as in the benchmark.
    let ids: Vec<String> = (0..ROWS).map(|i| format!("s{}", i / 2)).collect();
    let path = dir.join(format!("{}.fgal", ty.name()));
    build_gallery(
        &path,
        &mut SliceRows::new(rows, DIM, "noise").unwrap(),
        &ids,
        "ids",
        &BuildOptions {
            scan_type: ty,
            model_tag: "t".into(),
            overwrite: false,
        },
        &mut |_| {},
    )
    .unwrap();
    Arc::new(Gallery::open(&path).unwrap())
}

#[test]
fn facegate_finds_what_faiss_flat_ip_finds() {
    let dir = tempfile::tempdir().unwrap();
    let rows = unit(&mut NoiseRows::new(ROWS, DIM), ROWS);
    let mut probes = unit(&mut NoiseRows::with_seed(PROBES, DIM, 1), PROBES);
    for (j, p) in probes.chunks_exact_mut(DIM).enumerate().step_by(2) {
        let t = j * 301 % ROWS;
        p.iter_mut()
            .zip(&rows[t * DIM..(t + 1) * DIM])
            .for_each(|(x, g)| *x += g);
        let norm = p.iter().map(|x| x * x).sum::<f32>().sqrt();
        p.iter_mut().for_each(|x| *x /= norm);
    }
    let mut faiss = FaissPeer::build(PeerKind::Flat, DIM, &rows).unwrap();
    let raw = faiss.search(&probes, 2 * K).unwrap();
    assert_eq!(raw.len(), PROBES);
    assert!(raw.iter().all(|r| r.len() == 2 * K));

    for ty in [ElementType::F32, ElementType::Int8] {
        let g = gallery(dir.path(), &rows, ty);
        let subject_of = |r: u64| Ok(g.row_subject(r as usize)?);
        let theirs: Vec<_> = raw
            .iter()
            .map(|r| distinct_subjects(r, subject_of, K).unwrap())
            .collect();
        assert!(theirs.iter().all(|t| t.len() == K));
        let ours = CpuEngine::new(ScanTarget::whole(g.clone()))
            .search(&ProbeBatch::new(DIM, &probes).unwrap(), K)
            .unwrap();
        let a = agreement(&ours, &theirs);
        println!("{}: {a:?}", ty.name());
        assert_eq!(a.probes, PROBES);
        match ty {
            // Same precision: the same subjects, the same scores.
            ElementType::F32 => {
                assert_eq!(a.recall, 1.0, "{a:?}");
                assert!(a.max_score_diff_at_rank < 1e-5, "{a:?}");
            }
            // int8 scan + f16 re-score: every mated probe's match, nearly
            // every subject, and scores within f16 rounding.
            _ => {
                assert!(a.recall >= 0.99, "{a:?}");
                assert_eq!(a.top1_same, PROBES, "{a:?}");
                assert!(a.max_score_diff_at_rank < 2e-3, "{a:?}");
            }
        }
        // Mated probes find their own subject first in both.
        for j in (0..PROBES).step_by(2) {
            let s = g.row_subject(j * 301 % ROWS).unwrap();
            assert_eq!(theirs[j][0].0, s);
            assert_eq!(ours[j][0].subject, s);
        }
    }
}

#[test]
fn distinct_subjects_keep_each_subjects_best_row() {
    let rows = [(4u64, 0.9), (5, 0.8), (1, 0.7), (9, 0.6)];
    let got = distinct_subjects(&rows, |r| Ok((r / 2) as u32), 3).unwrap();
    assert_eq!(got, [(2, 0.9), (0, 0.7), (4, 0.6)]);
}
