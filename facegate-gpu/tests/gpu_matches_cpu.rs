//! Every kernel on a real (software) Vulkan device, against the exact CPU engine.
//!
//! Needs a Vulkan driver: `.ci/run` installs Mesa's lavapipe. Set
//! FACEGATE_SKIP_GPU_TESTS=1 to skip on a machine that has none.

use std::sync::Arc;

use facegate_core::format::{BuildOptions, SliceRows, build_gallery};
use facegate_core::{CpuEngine, ElementType, Gallery, ProbeBatch, ScanTarget, SearchEngine};
use facegate_gpu::{Design, DeviceOptions, GpuEngine, GpuOptions};
use rand::{Rng, SeedableRng};

fn skip() -> bool {
    std::env::var("FACEGATE_SKIP_GPU_TESTS").is_ok_and(|v| v == "1")
}

/// The first design (score matrix) over `g` in chunks of `chunk_rows`.
fn gpu(g: &Arc<Gallery>, chunk_rows: usize) -> GpuEngine {
    gpu_with(
        g,
        GpuOptions {
            max_chunk_rows: Some(chunk_rows),
            design: Design::Classic,
            ..Default::default()
        },
    )
}

/// The engine over `g` with `opts`, on any adapter, software included.
fn gpu_with(g: &Arc<Gallery>, opts: GpuOptions) -> GpuEngine {
    GpuEngine::new(
        ScanTarget::whole(g.clone()),
        GpuOptions {
            device: DeviceOptions {
                allow_software: true,
            },
            ..opts
        },
    )
    .expect("a Vulkan adapter (install mesa-vulkan-drivers, or set FACEGATE_SKIP_GPU_TESTS=1)")
}

/// A gallery with near-duplicate rows (ties), subjects with several rows, and
/// an odd row count.
fn gallery(
    dir: &std::path::Path,
    ty: ElementType,
    rows: usize,
    dim: usize,
    seed: u64,
) -> (Arc<Gallery>, Vec<f32>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut data: Vec<f32> = (0..rows * dim)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    // Exact duplicates: ties that must break by row order.
    for r in (0..rows).step_by(97) {
        let src = (r + 13) % rows;
        let copy: Vec<f32> = data[src * dim..(src + 1) * dim].to_vec();
        data[r * dim..(r + 1) * dim].copy_from_slice(&copy);
    }
    let ids: Vec<String> = (0..rows)
        .map(|r| format!("p{}", (r * 7919) % (rows / 3 + 1)))
        .collect();
    let path = dir.join(format!("{ty}-{rows}-{dim}.fgal"));
    let opts = BuildOptions {
        scan_type: ty,
        model_tag: "t".into(),
        overwrite: true,
    };
    build_gallery(
        &path,
        &mut SliceRows::new(&data, dim, "t").unwrap(),
        &ids,
        "ids",
        &opts,
        &mut |_| {},
    )
    .unwrap();
    (Arc::new(Gallery::open(&path).unwrap()), data)
}

fn compare(g: &Arc<Gallery>, gpu: &GpuEngine, probes: &ProbeBatch, k: usize, label: &str) {
    compare_with(
        &CpuEngine::new(ScanTarget::whole(g.clone())),
        gpu,
        probes,
        k,
        label,
    );
}

fn compare_with(cpu: &CpuEngine, gpu: &GpuEngine, probes: &ProbeBatch, k: usize, label: &str) {
    let want = cpu.search(probes, k).unwrap();
    let got = gpu.search(probes, k).unwrap();
    assert_eq!(got.len(), want.len());
    for (b, (w, gt)) in want.iter().zip(&got).enumerate() {
        assert_eq!(gt.len(), w.len(), "{label} probe {b}: lengths");
        for (i, (x, y)) in w.iter().zip(gt).enumerate() {
            assert_eq!(
                x.subject, y.subject,
                "{label} probe {b} rank {i}: {x:?} vs {y:?}"
            );
            assert!(
                (x.score - y.score).abs() <= 1e-4,
                "{label} probe {b} rank {i}: {x:?} vs {y:?}"
            );
        }
    }
}

#[test]
fn gpu_equals_cpu_for_every_element_type_batch_and_k() {
    if skip() {
        eprintln!("FACEGATE_SKIP_GPU_TESTS=1: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (ty, dim) in [
        (ElementType::Int8, 64),
        (ElementType::F16, 30),
        (ElementType::F32, 52),
    ] {
        // 2,501 rows in chunks of 700: four chunks, none a multiple of the workgroup.
        let (g, data) = gallery(dir.path(), ty, 2501, dim, 3);
        let engine = gpu(&g, 700);
        assert_eq!(engine.chunks(), 4);
        assert!(engine.gpu_memory_bytes() > 0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for nb in [1usize, 7, 64] {
            // Half the probes are gallery rows themselves (exact ties with duplicates).
            let mut raw = Vec::with_capacity(nb * dim);
            for j in 0..nb {
                if j % 2 == 0 {
                    let r = rng.random_range(0..2501);
                    raw.extend_from_slice(&data[r * dim..(r + 1) * dim]);
                } else {
                    raw.extend((0..dim).map(|_| rng.random_range(-1.0f32..1.0)));
                }
            }
            let probes = ProbeBatch::new(dim, &raw).unwrap();
            for k in [1, 10, 100] {
                compare(&g, &engine, &probes, k, &format!("{ty} B={nb} k={k}"));
            }
        }
    }
}

#[test]
fn masked_subjects_are_never_returned_even_when_they_fill_the_candidates() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (g, data) = gallery(dir.path(), ElementType::Int8, 2501, 64, 4);
    let target = ScanTarget::whole(g.clone());
    let tombstones = target.mask().clone();
    let engine = GpuEngine::new(
        target.clone(),
        GpuOptions {
            device: DeviceOptions {
                allow_software: true,
            },
            max_chunk_rows: Some(700),
            ..Default::default()
        },
    )
    .unwrap();
    let cpu = CpuEngine::new(target);
    let raw: Vec<f32> = (0..7)
        .flat_map(|r| data[r * 64 * 11..r * 64 * 11 + 64].to_vec())
        .collect();
    let probes = ProbeBatch::new(64, &raw).unwrap();
    // Mask every subject the first probe's GPU candidates hold (they fill
    // its candidate rows, so the CPU must take over for it), plus a scatter.
    let unmasked = cpu.search(&probes, 200).unwrap();
    for c in &unmasked[0] {
        tombstones.remove(c.subject);
    }
    for s in (0..g.subjects() as u32).step_by(5) {
        tombstones.remove(s);
    }
    for k in [1, 10, 100] {
        compare_with(&cpu, &engine, &probes, k, &format!("masked k={k}"));
        for list in engine.search(&probes, k).unwrap() {
            assert_eq!(list.len(), k);
            assert!(list.iter().all(|c| !tombstones.is_removed(c.subject)));
        }
    }
}

#[test]
fn one_chunk_and_a_batch_larger_than_one_pass() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (g, _) = gallery(dir.path(), ElementType::Int8, 9001, 128, 5);
    let engine = gpu(&g, usize::MAX);
    assert_eq!(engine.chunks(), 1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let raw: Vec<f32> = (0..100 * 128)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    compare(
        &g,
        &engine,
        &ProbeBatch::new(128, &raw).unwrap(),
        5,
        "int8 B=100",
    );
}

#[test]
fn software_adapters_are_refused_unless_allowed() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (g, _) = gallery(dir.path(), ElementType::F32, 100, 16, 1);
    match GpuEngine::new(ScanTarget::whole(g), GpuOptions::default()) {
        // A machine with a hardware GPU opens it: nothing to check here.
        Ok(e) => assert!(!e.device().is_software()),
        Err(e) => assert!(
            e.to_string().contains("allow them explicitly")
                || e.to_string().contains("no Vulkan adapter"),
            "{e}"
        ),
    }
}

#[test]
fn a_gallery_over_the_memory_budget_is_streamed_through_two_slots() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 2,501 int8 rows of 64 bytes + 4-byte scales = 170,068 bytes; chunks of
    // 700 rows need 47,600 bytes each, so a 100,000-byte budget streams.
    let (g, data) = gallery(dir.path(), ElementType::Int8, 2501, 64, 8);
    let engine = GpuEngine::new(
        ScanTarget::whole(g.clone()),
        GpuOptions {
            device: DeviceOptions {
                allow_software: true,
            },
            max_chunk_rows: Some(700),
            memory_budget_bytes: Some(100_000),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(engine.is_streamed());
    assert_eq!(
        (engine.chunks(), engine.gpu_memory_bytes()),
        (4, 2 * 700 * 68)
    );
    let mut raw: Vec<f32> = data[..7 * 64].to_vec();
    raw.extend_from_slice(&data[1000 * 64..1009 * 64]);
    let probes = ProbeBatch::new(64, &raw).unwrap();
    for k in [1, 10] {
        compare(&g, &engine, &probes, k, &format!("streamed k={k}"));
    }
    // A budget below two chunks is refused with the reason.
    let err = GpuEngine::new(
        ScanTarget::whole(g),
        GpuOptions {
            device: DeviceOptions {
                allow_software: true,
            },
            max_chunk_rows: Some(700),
            memory_budget_bytes: Some(50_000),
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("below two"), "{err}");
}

#[test]
fn lists_merge_over_several_passes_within_a_chunk_and_across_chunks() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 40,000 rows: one chunk has 10 segments of 4,096 rows (merged 10 -> 2 -> 1);
    // chunks of 400 rows make 100 chunks (merged 100 -> 13 -> 2 -> 1).
    let (g, data) = gallery(dir.path(), ElementType::Int8, 40_000, 16, 9);
    let mut raw: Vec<f32> = data[..3 * 16].to_vec();
    raw.extend_from_slice(&data[31_000 * 16..31_002 * 16]);
    let probes = ProbeBatch::new(16, &raw).unwrap();
    for (chunk_rows, chunks) in [(usize::MAX, 1), (400, 100)] {
        let engine = gpu(&g, chunk_rows);
        assert_eq!(engine.chunks(), chunks);
        for k in [1, 10] {
            compare(&g, &engine, &probes, k, &format!("{chunks} chunks k={k}"));
        }
    }
}
