//! The second design (interleaved int8 scan, pilot cut, bounded lists) on a
//! real (software) Vulkan device, against the exact CPU engine: batches of
//! 1, 7, 64, 256 and 300 probes; k = 1, 10, 100; ties; rows of all +127 and
//! all -127; rows that do not fill a group or a chunk; several bindings; a
//! pilot that is the whole gallery and one that is a small sample; lists
//! forced to overflow. Set FACEGATE_SKIP_GPU_TESTS=1 on a machine with no
//! Vulkan driver.

use std::sync::Arc;

use facegate_core::format::{BuildOptions, SliceRows, build_gallery};
use facegate_core::{CpuEngine, ElementType, Gallery, ProbeBatch, ScanTarget, SearchEngine};
use facegate_gpu::shared::ScanKernel;
use facegate_gpu::{DeviceOptions, GpuEngine, GpuOptions, ScanOptions, TopkOptions};
use rand::{Rng, SeedableRng};

fn skip() -> bool {
    std::env::var("FACEGATE_SKIP_GPU_TESTS").is_ok_and(|v| v == "1")
}

/// `rows` random int8 rows of `dim`, with exact duplicates (ties), a row of
/// all +1 and one of all -1 (+127 and -127 once quantised), and subjects of
/// several rows.
fn gallery(dir: &std::path::Path, rows: usize, dim: usize) -> (Arc<Gallery>, Vec<f32>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(dim as u64);
    let mut data: Vec<f32> = (0..rows * dim)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    for r in (0..rows).step_by(89) {
        let src = (r + 17) % rows;
        let copy = data[src * dim..(src + 1) * dim].to_vec();
        data[r * dim..(r + 1) * dim].copy_from_slice(&copy);
    }
    data[5 * dim..6 * dim].fill(1.0);
    data[(rows - 1) * dim..rows * dim].fill(-1.0);
    let ids: Vec<String> = (0..rows)
        .map(|r| format!("s{}", (r * 7919) % (rows / 3 + 1)))
        .collect();
    let path = dir.join(format!("g-{rows}-{dim}.fgal"));
    let opts = BuildOptions {
        scan_type: ElementType::Int8,
        model_tag: "t".into(),
        overwrite: true,
    };
    let mut source = SliceRows::new(&data, dim, "t").unwrap();
    build_gallery(&path, &mut source, &ids, "ids", &opts, &mut |_| {}).unwrap();
    (Arc::new(Gallery::open(&path).unwrap()), data)
}

/// An engine on `g` (bindings of at most `part_rows` rows) on a software
/// adapter, or why none could start.
fn try_engine(
    g: &Arc<Gallery>,
    part_rows: Option<usize>,
    scan: ScanOptions,
) -> Result<GpuEngine, facegate_gpu::GpuError> {
    try_engine_with(g, part_rows, scan, TopkOptions::default())
}

/// [`try_engine`] with the top-k kernel set up as `topk` says.
fn try_engine_with(
    g: &Arc<Gallery>,
    part_rows: Option<usize>,
    scan: ScanOptions,
    topk: TopkOptions,
) -> Result<GpuEngine, facegate_gpu::GpuError> {
    let opts = GpuOptions {
        device: DeviceOptions {
            allow_software: true,
        },
        max_chunk_rows: part_rows,
        scan,
        topk,
        ..Default::default()
    };
    let e = GpuEngine::new(ScanTarget::whole(g.clone()), opts)?;
    assert_eq!(e.design_name(), "interleaved scan");
    Ok(e)
}

const NO_ADAPTER: &str =
    "a Vulkan adapter (install mesa-vulkan-drivers, or set FACEGATE_SKIP_GPU_TESTS=1)";

fn engine(g: &Arc<Gallery>, part_rows: Option<usize>, scan: ScanOptions) -> GpuEngine {
    try_engine(g, part_rows, scan).expect(NO_ADAPTER)
}

/// The top-k kernel as the first three H200 runs ran it: with naga's
/// runtime checks, and K = 256 for every pass (M allowing).
fn topk_as_before() -> TopkOptions {
    TopkOptions {
        runtime_checks: true,
        keep: Some(facegate_gpu::shared::TOPK_WORKGROUP),
    }
}

/// `nb` probes: gallery rows (ties with their duplicates), the all +1 and
/// all -1 rows, and random vectors.
fn probes(data: &[f32], rows: usize, dim: usize, nb: usize, seed: u64) -> ProbeBatch {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut raw = Vec::with_capacity(nb * dim);
    for j in 0..nb {
        match j % 4 {
            0 => {
                let r = rng.random_range(0..rows);
                raw.extend_from_slice(&data[r * dim..(r + 1) * dim]);
            }
            1 => raw.extend(std::iter::repeat_n(
                if j % 8 == 1 { 1.0 } else { -1.0 },
                dim,
            )),
            _ => raw.extend((0..dim).map(|_| rng.random_range(-1.0f32..1.0))),
        }
    }
    ProbeBatch::new(dim, &raw).unwrap()
}

/// The GPU's answers equal the CPU's: the same subjects in the same order,
/// and int8 scan scores bit for bit (the exact re-score agrees to 1e-4).
fn same(cpu: &CpuEngine, gpu: &GpuEngine, probes: &ProbeBatch, k: usize, label: &str) {
    let want = cpu.search(probes, k).unwrap();
    let got = gpu.search(probes, k).unwrap();
    assert_eq!(got.len(), want.len(), "{label}");
    for (b, (w, g)) in want.iter().zip(&got).enumerate() {
        let ws: Vec<u32> = w.iter().map(|c| c.subject).collect();
        let gs: Vec<u32> = g.iter().map(|c| c.subject).collect();
        assert_eq!(gs, ws, "{label} probe {b}");
        for (x, y) in w.iter().zip(g) {
            assert!(
                (x.score - y.score).abs() <= 1e-4,
                "{label} probe {b}: {x:?} vs {y:?}"
            );
        }
    }
}

#[test]
fn a_sampled_pilot_and_bounded_lists_give_the_cpus_answers() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 5,001 rows: 157 groups, the last with 9 rows; parts of 31 groups.
    let (g, data) = gallery(dir.path(), 5001, 40);
    let cpu = CpuEngine::new(ScanTarget::whole(g.clone()));
    let scan = ScanOptions {
        sample_groups: Some(8),
        ..Default::default()
    };
    let e = engine(&g, Some(1000), scan);
    assert_eq!(e.chunks(), 6);
    let plan = e.scan_plan(300, 64).unwrap();
    assert!(!plan.pilot_is_exact());
    assert_eq!(plan.sample_rows, 256);
    for nb in [1, 7, 64, 256, 300] {
        let p = probes(&data, 5001, 40, nb, nb as u64);
        for k in [1, 10, 100] {
            same(&cpu, &e, &p, k, &format!("B={nb} k={k}"));
        }
    }
    assert_eq!(
        e.list_overflows(),
        0,
        "the default capacity holds these lists"
    );
}

#[test]
fn a_pilot_over_the_whole_gallery_is_the_answer() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 512 dimensions (32 chunks, the most the kernel holds), 700 rows.
    let (g, data) = gallery(dir.path(), 700, 512);
    let cpu = CpuEngine::new(ScanTarget::whole(g.clone()));
    let e = engine(&g, None, ScanOptions::default());
    assert!(e.scan_plan(64, 32).unwrap().pilot_is_exact());
    for nb in [1, 7, 64] {
        let p = probes(&data, 700, 512, nb, 40 + nb as u64);
        for k in [1, 10, 100] {
            same(&cpu, &e, &p, k, &format!("whole B={nb} k={k}"));
        }
    }
}

#[test]
fn an_overflowing_list_is_detected_and_answered_exactly() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (g, data) = gallery(dir.path(), 3000, 64);
    let cpu = CpuEngine::new(ScanTarget::whole(g.clone()));
    // A sample of one group puts the cut low; lists of 64 cannot hold what
    // passes it.
    let scan = ScanOptions {
        sample_groups: Some(1),
        list_capacity: Some(64),
        ..Default::default()
    };
    let e = engine(&g, None, scan);
    let p = probes(&data, 3000, 64, 9, 7);
    same(&cpu, &e, &p, 10, "overflow");
    assert!(e.list_overflows() > 0, "some list must have overflowed");
}

#[test]
fn every_kernel_and_shape_trusted_or_checked_gives_the_cpus_answers() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 72 dimensions: 5 chunks, the last part padding; 2,011 rows.
    let (g, data) = gallery(dir.path(), 2011, 72);
    let cpu = CpuEngine::new(ScanTarget::whole(g.clone()));
    let kernels = ScanKernel::ALL.into_iter();
    for (kernel, runtime_checks) in kernels.flat_map(|k| [(k, false), (k, true)]) {
        // Checked: the top-k kernel checked too, with the old K.
        let topk = match runtime_checks {
            true => topk_as_before(),
            false => TopkOptions::default(),
        };
        for tp in [1, 2, 4, 8] {
            let scan = ScanOptions {
                sample_groups: Some(4),
                thread_probes: Some(tp),
                runtime_checks,
                kernel,
                ..Default::default()
            };
            let e = try_engine_with(&g, None, scan, topk).expect(NO_ADAPTER);
            // Batches at and around the tiles' edges (4, 8, 16, 32 probes).
            for nb in [1, 3, 4, 5, 17, 33] {
                let p = probes(&data, 2011, 72, nb, 100 + nb as u64);
                let label = format!("tp={tp} {kernel:?} checks={runtime_checks} B={nb}");
                same(&cpu, &e, &p, 10, &label);
            }
        }
    }
    // And the default: each batch picks its own tile.
    let e = engine(&g, None, ScanOptions::default());
    for nb in [1, 2, 6, 9, 31, 64] {
        let p = probes(&data, 2011, 72, nb, 200 + nb as u64);
        same(&cpu, &e, &p, 5, &format!("auto B={nb}"));
    }
}

#[test]
fn profiling_times_each_stage_of_each_batch() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (g, data) = gallery(dir.path(), 3000, 64);
    let scan = ScanOptions {
        sample_groups: Some(4),
        profile: true,
        ..Default::default()
    };
    let e = engine(&g, None, scan);
    let times = e.stage_times().expect("lavapipe writes timestamps");
    assert_eq!(times.batches, 0);
    let p = probes(&data, 3000, 64, 5, 3);
    e.search(&p, 10).unwrap();
    e.search(&p, 10).unwrap();
    let times = e.stage_times().unwrap();
    assert_eq!(times.batches, 2);
    for (stage, secs) in facegate_gpu::STAGES.iter().zip(times.seconds) {
        assert!(secs > 0.0, "{stage}: {secs} s");
    }
    assert_eq!(
        e.stage_times().unwrap().batches,
        0,
        "taking the times resets them"
    );
    // A pilot over the whole gallery runs (and times) its two stages only.
    let (small, small_data) = gallery(dir.path(), 100, 64);
    let whole = ScanOptions {
        profile: true,
        ..Default::default()
    };
    let e = engine(&small, None, whole);
    assert!(e.scan_plan(5, 40).unwrap().pilot_is_exact());
    e.search(&probes(&small_data, 100, 64, 5, 4), 10).unwrap();
    let times = e.stage_times().unwrap();
    assert_eq!(times.batches, 1);
    assert!(
        times.seconds[0] > 0.0 && times.seconds[1] > 0.0,
        "{times:?}"
    );
    assert_eq!(times.seconds[2..], [0.0, 0.0], "{times:?}");
    // Without the option, no clock.
    assert!(
        engine(&g, None, ScanOptions::default())
            .stage_times()
            .is_none()
    );
}

#[test]
fn long_lists_are_selected_in_segments_for_small_batches_and_whole_for_large() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A one-group sample puts the cut so low that about 40 x 20,000 / 32 =
    // 25,000 rows a probe pass it: seven segments of 4,096 hold them.
    let (g, data) = gallery(dir.path(), 20_000, 16);
    let cpu = CpuEngine::new(ScanTarget::whole(g.clone()));
    let scan = ScanOptions {
        sample_groups: Some(1),
        ..Default::default()
    };
    // Each with K chosen per pass (1,024 over segments: a fold when 1,024
    // entries have been appended) and with the old K of 256 (a fold after
    // nearly every block of 256).
    for (topk, label) in [
        (TopkOptions::default(), "K by pass"),
        (topk_as_before(), "K 256"),
    ] {
        let e = try_engine_with(&g, None, scan, topk).expect(NO_ADAPTER);
        let plan = e.scan_plan(3, 40).unwrap();
        assert!(plan.select_segments() >= 7, "{plan:?}");
        let p = probes(&data, 20_000, 16, 3, 11);
        same(&cpu, &e, &p, 10, &format!("segments, {label}"));
        // A larger batch selects each long list in one workgroup.
        assert_eq!(e.scan_plan(65, 40).unwrap().select_segments(), 1);
        let p = probes(&data, 20_000, 16, 65, 12);
        same(&cpu, &e, &p, 10, &format!("one segment, {label}"));
        assert_eq!(e.list_overflows(), 0);
    }
}

/// An engine on the coop kernel, or `None` (with a note) where the device
/// offers no cooperative matrices the kernel can use: Debian 12's lavapipe
/// (CI) does not; Mesa 25.1's and later do (8x8), as the H200 does (16x16).
/// FACEGATE_REQUIRE_COOP=1 (scripts/coop-lavapipe.sh sets it) makes their
/// absence a failure.
fn coop_engine(g: &Arc<Gallery>, part_rows: Option<usize>, scan: ScanOptions) -> Option<GpuEngine> {
    let scan = ScanOptions {
        kernel: ScanKernel::Coop,
        ..scan
    };
    match try_engine(g, part_rows, scan) {
        Ok(e) => Some(e),
        Err(facegate_gpu::GpuError::Unsupported(why))
            if !std::env::var("FACEGATE_REQUIRE_COOP").is_ok_and(|v| v == "1") =>
        {
            eprintln!("coop kernel not run here: {why}");
            None
        }
        Err(e) => panic!("coop engine: {e}"),
    }
}

#[test]
fn the_coop_kernel_gives_the_cpus_answers_at_every_shape_and_edge() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 72 dimensions: 5 chunks, so three K slices of 2, the last half padding;
    // 2,011 rows: 63 groups, the last with 27 rows, the last workgroup with
    // 3 of its 4 groups.
    let (g, data) = gallery(dir.path(), 2011, 72);
    let cpu = CpuEngine::new(ScanTarget::whole(g.clone()));
    for (tp, runtime_checks) in [1, 2, 4, 8]
        .into_iter()
        .flat_map(|t| [(t, false), (t, true)])
    {
        let scan = ScanOptions {
            sample_groups: Some(4),
            thread_probes: Some(tp),
            runtime_checks,
            ..Default::default()
        };
        let Some(e) = coop_engine(&g, None, scan) else {
            return;
        };
        // Batches at and around the probe tiles' edges (16 to 128 probes).
        for nb in [1, 3, 16, 17, 33, 65, 129] {
            let p = probes(&data, 2011, 72, nb, 300 + nb as u64);
            let label = format!("coop tp={tp} checks={runtime_checks} B={nb}");
            same(&cpu, &e, &p, 10, &label);
        }
    }
    // 512 dimensions (16 K slices), several bindings, the shape picked by
    // batch, batches of 256 and 300 (several tiles), k = 1, 10, 100.
    let (g, data) = gallery(dir.path(), 1500, 512);
    let cpu = CpuEngine::new(ScanTarget::whole(g.clone()));
    let scan = ScanOptions {
        sample_groups: Some(8),
        ..Default::default()
    };
    let e = coop_engine(&g, Some(600), scan).expect("offered above");
    for nb in [1, 7, 64, 256, 300] {
        let p = probes(&data, 1500, 512, nb, 400 + nb as u64);
        for k in [1, 10, 100] {
            same(&cpu, &e, &p, k, &format!("coop 512 B={nb} k={k}"));
        }
    }
    assert_eq!(e.list_overflows(), 0);
}
