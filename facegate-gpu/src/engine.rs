//! The GPU search engine.

use std::sync::Mutex;

use facegate_core::format::row_stride;
use facegate_core::search::{
    Candidate, CpuEngine, ProbeBatch, ScanTarget, SearchEngine, SearchError,
};
use facegate_core::{ElementType, InputError};
use rayon::prelude::*;

use crate::GpuError;
use crate::buffers::{GpuGallery, read_back, scratch, uniform, upload};
use crate::device::{DeviceOptions, GpuDevice};
use crate::pipeline::{Pipelines, bind};
use crate::scan::{Candidates, ScanDesign, ScanOptions};
use crate::shared::{
    PROBE_TILE, SCORE_WORKGROUP, ScanKernel, ScoreParams, TOPK_MAX_K, TOPK_WORKGROUP_BYTES,
};
use crate::topk::{Lists, Pairs, SEG_LEN, Topk, TopkOptions, TopkShape};

/// Probes scored together in one pass by the first design (bounds its
/// score buffer).
const MAX_BATCH: usize = 64;
/// Probes one batch of the second design holds: its scratch grows with the
/// batch, not with the gallery.
const MAX_SCAN_BATCH: usize = 1024;

/// How to set the GPU engine up.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Adapter choice.
    pub device: DeviceOptions,
    /// Most GPU memory the gallery rows may take (default: no limit beyond the device's).
    pub memory_budget_bytes: Option<u64>,
    /// Cap on rows per chunk (default: from the adapter's binding limit); tests
    /// use small values to exercise many chunks.
    pub max_chunk_rows: Option<usize>,
    /// Which design searches (default: the second for int8 galleries it can
    /// hold, the first otherwise).
    pub design: Design,
    /// The second design's pilot sample and list capacity.
    pub scan: ScanOptions,
    /// How the top-k kernel (both designs) is compiled and what it keeps.
    pub topk: TopkOptions,
}

/// The engine's two designs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Design {
    /// The second (int8 galleries resident in device memory, up to 512
    /// dimensions, with room for its workgroup memory), else the first.
    #[default]
    Auto,
    /// The first: row per invocation, a score matrix per chunk, top-k
    /// passes over it. Kept for f16/f32 galleries, for galleries streamed
    /// from the host, and to be measured beside the second.
    Classic,
}

/// The rows on the device, in the design that searches them.
enum Rows {
    Classic(GpuGallery),
    Scan(Box<ScanDesign>),
}

/// The buffers one batch's search works in, sized for its probes, its M and
/// the gallery's chunks.
struct BatchBuffers {
    /// The batch's probes, in the score kernels' layout.
    probes: wgpu::Buffer,
    /// Their int8 scales (a placeholder for f16/f32).
    probe_scales: wgpu::Buffer,
    /// One chunk's score matrix, probe-major; its `rows` is an unread placeholder.
    chunk_scores: Pairs,
    /// Intermediate lists: the passes of one reduction write them in turn.
    spare: [Pairs; 2],
    /// Each chunk's best M per probe: chunk c's is list c.
    chunk_best: Pairs,
}

/// The GPU engine: resident gallery and compiled kernels that pre-select
/// rows; candidates are finished by the same [`facegate_core::search::Refiner`]
/// as the CPU engine's.
pub struct GpuEngine {
    /// The exact CPU engine over the same target: its refiner finishes the
    /// GPU's candidates, and its scan answers the probes the kernels cannot
    /// (more candidates than the top-k kernel keeps, or masked-short lists).
    cpu: CpuEngine,
    dev: GpuDevice,
    pipes: Pipelines,
    topk: Topk,
    rows: Rows,
    ty: ElementType,
    dim_words: u32,
    stride_words: u32,
    /// One search on the device at a time: each allocates scratch buffers
    /// sized for its batch, so unbounded concurrency could exhaust GPU memory.
    /// The server's dispatcher batches requests across ports and runs one
    /// batch at a time; this lock holds any other caller to the same rule.
    in_flight: Mutex<()>,
}

/// Whether the second design can hold `gallery`: int8 rows of at most
/// 512 dimensions, resident within the budget, and the workgroup memory
/// its scan kernel declares; and whether the options ask for it.
fn scan_fits(
    dev: &GpuDevice,
    gallery: &facegate_core::Gallery,
    opts: &GpuOptions,
    budget: u64,
    max_binding: u64,
) -> bool {
    let chunks = crate::interleave::chunks_of(gallery.dim()) as u64;
    let group = u64::from(crate::shared::SCAN_GROUP_ROWS);
    let bytes = gallery.rows().div_ceil(group as usize) as u64 * group * (chunks * 16 + 4);
    opts.design == Design::Auto
        && gallery.header().scan_type == ElementType::Int8
        && chunks <= u64::from(crate::shared::SCAN_MAX_CHUNKS)
        && bytes <= budget
        && group * chunks * 16 <= max_binding
        && dev.limits.max_compute_workgroup_storage_size >= opts.scan.kernel.max_workgroup_bytes()
}

/// Opens the device `opts` choose, with cooperative matrices when its scan
/// kernel is the coop one; UNSUPPORTED, saying what the adapter offers,
/// where that kernel cannot run.
fn open_device(opts: &GpuOptions) -> Result<GpuDevice, GpuError> {
    let coop = opts.scan.kernel == ScanKernel::Coop;
    let dev = GpuDevice::open(opts.device, coop)?;
    if coop && dev.coop_tile().is_none() {
        return Err(GpuError::Unsupported(format!(
            "the coop scan kernel needs f16 x f16 -> f32 cooperative matrices of side 16 or 8 \
             and subgroups of at most 32 invocations; {} offers {:?} (subgroups of {} to {})",
            dev.describe(),
            dev.cooperative_matrices,
            dev.info.subgroup_min_size,
            dev.info.subgroup_max_size
        )));
    }
    Ok(dev)
}

/// Runs `f` inside out-of-memory and validation error scopes.
fn checked<T>(
    device: &wgpu::Device,
    f: impl FnOnce() -> Result<T, GpuError>,
) -> Result<T, GpuError> {
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let out = f();
    let v = pollster::block_on(validation.pop());
    let o = pollster::block_on(oom.pop());
    if let Some(e) = v.or(o) {
        return Err(GpuError::Operation(e.to_string()));
    }
    out
}

impl GpuEngine {
    /// Masked subjects are dropped from the GPU's candidate rows on the
    /// host; when so many of a probe's candidates were masked that fewer than
    /// `top_k` subjects remain (while more are live), that probe is answered
    /// by the exact CPU scan, which masks while it selects. Removals are few
    /// between rebuilds, so this is rare; the result is exact either way.
    fn fill_masked(
        &self,
        probes: &ProbeBatch,
        b: usize,
        ranked: Vec<Candidate>,
        top_k: usize,
    ) -> Result<Vec<Candidate>, SearchError> {
        let target = self.cpu.refiner().target();
        let unmasked = target.unmasked_subjects();
        if ranked.len() >= top_k || target.mask().is_empty() || ranked.len() as u64 >= unmasked {
            return Ok(ranked);
        }
        // The probe is unit length already: preparing it again changes nothing.
        let single =
            ProbeBatch::single(probes.dim(), probes.unit(b)).map_err(SearchError::Input)?;
        Ok(self.cpu.search(&single, top_k)?.swap_remove(0))
    }

    /// Opens a device, compiles the kernels and uploads the scan rows of
    /// `target`'s gallery; its mask applies to every search.
    pub fn new(target: ScanTarget, opts: GpuOptions) -> Result<GpuEngine, GpuError> {
        let gallery = target.gallery().clone();
        let dev = open_device(&opts)?;
        let ty = gallery.header().scan_type;
        let dim = gallery.dim();
        let (lanes, word_bytes) = match ty {
            ElementType::Int8 => (4, 4),
            ElementType::F16 => (2, 4),
            ElementType::F32 => (4, 16),
        };
        let stride_bytes = row_stride(ty, dim);
        let max_binding = dev
            .limits
            .max_storage_buffer_binding_size
            .min(dev.limits.max_buffer_size);
        let chunk_rows = [
            max_binding / stride_bytes as u64,
            max_binding / (MAX_BATCH as u64 * 4),
            u64::from(dev.limits.max_compute_workgroups_per_dimension) * u64::from(SCORE_WORKGROUP),
            opts.max_chunk_rows.unwrap_or(usize::MAX) as u64,
        ]
        .into_iter()
        .min()
        .unwrap_or(1)
        .max(1) as usize;
        if dev.limits.max_compute_workgroup_storage_size < TOPK_WORKGROUP_BYTES {
            return Err(GpuError::Unsupported(format!(
                "the top-k kernel needs {TOPK_WORKGROUP_BYTES} bytes of workgroup memory, the adapter offers {}",
                dev.limits.max_compute_workgroup_storage_size
            )));
        }
        let budget = opts.memory_budget_bytes.unwrap_or(u64::MAX);
        let chunks = gallery.rows().div_ceil(chunk_rows) as u64;
        // The per-chunk candidate lists of one pass must fit one binding.
        if chunks * MAX_BATCH as u64 * u64::from(TOPK_MAX_K) * 4 > max_binding {
            return Err(GpuError::Unsupported(format!(
                "{chunks} chunks: candidate lists would exceed the {max_binding}-byte binding limit"
            )));
        }
        let scan = scan_fits(&dev, &gallery, &opts, budget, max_binding);
        let (pipes, topk, rows) = checked(&dev.device, || {
            let pipes = Pipelines::new(&dev.device, ty);
            let topk = Topk::new(&dev.device, opts.topk);
            let rows = match scan {
                true => Rows::Scan(Box::new(ScanDesign::new(
                    &dev,
                    &gallery,
                    max_binding,
                    opts.max_chunk_rows,
                    opts.scan,
                ))),
                false => Rows::Classic(GpuGallery::new(&dev.device, &gallery, chunk_rows, budget)?),
            };
            Ok((pipes, topk, rows))
        })?;
        let engine = GpuEngine {
            cpu: CpuEngine::new(target),
            dev,
            pipes,
            rows,
            topk,
            ty,
            dim_words: dim.div_ceil(lanes) as u32,
            stride_words: (stride_bytes / word_bytes) as u32,
            in_flight: Mutex::new(()),
        };
        tracing::info!(
            adapter = %engine.dev.describe(),
            design = engine.design_name(),
            chunks = engine.chunks(),
            gpu_bytes = engine.gpu_memory_bytes(),
            streamed = engine.is_streamed(),
            "gallery on the GPU"
        );
        Ok(engine)
    }

    /// "interleaved scan" (the second design) or "score matrix" (the first).
    pub fn design_name(&self) -> &'static str {
        match self.rows {
            Rows::Scan(_) => "interleaved scan",
            Rows::Classic(_) => "score matrix",
        }
    }

    /// Probes the second design answered with the CPU because their
    /// candidate list overflowed, since the engine started.
    pub fn list_overflows(&self) -> u64 {
        match &self.rows {
            Rows::Scan(d) => d.overflows.load(std::sync::atomic::Ordering::Relaxed),
            Rows::Classic(_) => 0,
        }
    }

    /// GPU time per stage of the second design's batches since the last
    /// call, when `ScanOptions::profile` asked for it and the device writes
    /// timestamps.
    pub fn stage_times(&self) -> Option<crate::stages::StageTimes> {
        match &self.rows {
            Rows::Scan(d) => d.stage_times(),
            Rows::Classic(_) => None,
        }
    }

    /// The second design's plan for a batch of `probes` keeping `m`
    /// candidates (what the benchmark prints), when it searches.
    pub fn scan_plan(&self, probes: usize, m: u32) -> Option<crate::plan::ScanPlan> {
        match &self.rows {
            Rows::Scan(d) => Some(crate::plan::ScanPlan {
                probes: probes as u64,
                ..d.plan(self.cpu.gallery().rows(), probes, m)
            }),
            Rows::Classic(_) => None,
        }
    }

    /// GPU memory held by the gallery rows.
    pub fn gpu_memory_bytes(&self) -> u64 {
        match &self.rows {
            Rows::Classic(g) => g.bytes,
            Rows::Scan(d) => d.bytes,
        }
    }

    /// Number of chunks (bindings) the gallery was split into.
    pub fn chunks(&self) -> usize {
        match &self.rows {
            Rows::Classic(g) => g.chunks.len(),
            Rows::Scan(d) => d.parts(),
        }
    }

    /// Whether the rows are streamed from host memory on every search
    /// (the gallery exceeds the memory budget).
    pub fn is_streamed(&self) -> bool {
        match &self.rows {
            Rows::Classic(g) => g.is_streamed(),
            Rows::Scan(_) => false,
        }
    }

    /// The device in use.
    pub fn device(&self) -> &GpuDevice {
        &self.dev
    }

    /// Uploads probes `b0 .. b0 + nb` as the score kernel reads them (int8
    /// words and scales, or unit f32 vectors), each padded to `dim_words`.
    fn probe_buffers(
        &self,
        probes: &ProbeBatch,
        b0: usize,
        nb: usize,
    ) -> (wgpu::Buffer, wgpu::Buffer) {
        let d = &self.dev.device;
        let words = self.dim_words as usize;
        match self.ty {
            ElementType::Int8 => {
                let mut bytes = vec![0u8; nb * words * 4];
                let mut scales = Vec::with_capacity(nb);
                for i in 0..nb {
                    let (q, s) = probes.quantized(b0 + i);
                    bytes[i * words * 4..i * words * 4 + q.len()]
                        .copy_from_slice(bytemuck::cast_slice(q));
                    scales.push(s);
                }
                (
                    upload(d, "probes", &bytes),
                    upload(d, "probe scales", bytemuck::cast_slice(&scales)),
                )
            }
            ElementType::F16 | ElementType::F32 => {
                let per = words * if self.ty == ElementType::F16 { 2 } else { 4 };
                let mut v = vec![0f32; nb * per];
                for i in 0..nb {
                    let u = probes.unit(b0 + i);
                    v[i * per..i * per + u.len()].copy_from_slice(u);
                }
                (
                    upload(d, "probes", bytemuck::cast_slice(&v)),
                    upload(d, "no scales", &[0; 4]),
                )
            }
        }
    }

    /// Searches probes `b0 .. b0 + nb` on the GPU; returns each probe's best
    /// `m` (row, score) pairs. Each chunk is one submission (so that streamed
    /// chunks can reuse their slots); the merge across chunks is the last.
    fn gpu_candidates(
        &self,
        on_gpu: &GpuGallery,
        probes: &ProbeBatch,
        b0: usize,
        nb: usize,
        m: u32,
    ) -> Result<Vec<Vec<(u32, f32)>>, GpuError> {
        let shape = TopkShape::new(nb, m);
        let bufs = self.batch_buffers(on_gpu, probes, b0, nb, m);
        let chunks = &on_gpu.chunks;
        let chunk_best = Lists::packed(&bufs.chunk_best, chunks.len() as u32, m);
        for (c, &chunk) in chunks.iter().enumerate() {
            let chunk_buffers = on_gpu.chunk(&self.dev.queue, self.cpu.gallery(), c);
            self.submit_pass("chunk", |pass| {
                self.score_pass(pass, &bufs, chunk_buffers, chunk.rows, shape.probes);
                let dest = chunk_best.list(c as u32, m);
                let [a, b] = &bufs.spare;
                self.topk
                    .reduce_scores(pass, shape, &bufs.chunk_scores, [a, b], chunk, dest);
            });
        }
        let best = self.submit_pass("merge", |pass| {
            let [a, b] = &bufs.spare;
            self.topk
                .merge_until_one(pass, shape, chunk_best, None, [a, b])
        });
        self.read_lists(best, shape)
    }

    /// Uploads the batch's probes and allocates the scratch its passes need:
    /// a score matrix for the largest chunk, and lists of M for its segments
    /// and for the chunks.
    fn batch_buffers(
        &self,
        on_gpu: &GpuGallery,
        probes: &ProbeBatch,
        b0: usize,
        nb: usize,
        m: u32,
    ) -> BatchBuffers {
        let d = &self.dev.device;
        let chunks = &on_gpu.chunks;
        let max_rows = chunks.iter().map(|c| c.rows).max().unwrap_or(1);
        let most_segments = max_rows.div_ceil(SEG_LEN);
        let nchunks = chunks.len() as u32;
        // Entries of `lists` lists of M for every probe.
        let entries = |lists: u32| nb as u64 * u64::from(m) * u64::from(lists);
        let (probes, probe_scales) = self.probe_buffers(probes, b0, nb);
        let chunk_scores = Pairs {
            scores: scratch(d, "scores", nb as u64 * u64::from(max_rows) * 4),
            rows: upload(d, "no rows", &[0; 4]),
        };
        let spare_entries = entries(most_segments.max(nchunks));
        BatchBuffers {
            probes,
            probe_scales,
            chunk_scores,
            spare: [
                Pairs::new(d, "candidates a", spare_entries),
                Pairs::new(d, "candidates b", spare_entries),
            ],
            chunk_best: Pairs::new(d, "chunk candidates", entries(nchunks)),
        }
    }

    /// Records `record` in one compute pass and submits it.
    fn submit_pass<T>(&self, label: &str, record: impl FnOnce(&mut wgpu::ComputePass) -> T) -> T {
        let mut enc = self
            .dev
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        let out = {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            record(&mut pass)
        };
        self.dev.queue.submit([enc.finish()]);
        out
    }

    /// Scores the batch's probes against one chunk's `rows` (its data and
    /// scales buffers) into `bufs.chunk_scores`.
    fn score_pass(
        &self,
        pass: &mut wgpu::ComputePass,
        bufs: &BatchBuffers,
        (rows, scales): (&wgpu::Buffer, &wgpu::Buffer),
        chunk_rows: u32,
        probes: u32,
    ) {
        let params = ScoreParams {
            rows: chunk_rows,
            dim_words: self.dim_words,
            stride_words: self.stride_words,
            probes,
        };
        let params = uniform(&self.dev.device, "score params", &params);
        let bg = bind(
            &self.dev.device,
            &self.pipes.score,
            &[
                rows,
                scales,
                &bufs.probes,
                &bufs.probe_scales,
                &bufs.chunk_scores.scores,
                &params,
            ],
        );
        pass.set_pipeline(&self.pipes.score);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(
            chunk_rows.div_ceil(SCORE_WORKGROUP),
            probes.div_ceil(PROBE_TILE),
            1,
        );
    }

    /// Reads each probe's one list of M back as (row, score) pairs.
    fn read_lists(&self, best: Lists, shape: TopkShape) -> Result<Vec<Vec<(u32, f32)>>, GpuError> {
        debug_assert_eq!((best.count, best.stride, best.base), (1, shape.m, 0));
        let (d, q) = (&self.dev.device, &self.dev.queue);
        let bytes = u64::from(shape.probes) * u64::from(shape.m) * 4;
        let scores = read_back(d, q, &best.pairs.scores, bytes)?;
        let rows = read_back(d, q, &best.pairs.rows, bytes)?;
        let scores: &[f32] = bytemuck::cast_slice(&scores);
        let rows: &[u32] = bytemuck::cast_slice(&rows);
        let m = shape.m as usize;
        Ok((0..shape.probes as usize)
            .map(|p| {
                let list = p * m..(p + 1) * m;
                rows[list.clone()]
                    .iter()
                    .copied()
                    .zip(scores[list].iter().copied())
                    .collect()
            })
            .collect())
    }
}

impl GpuEngine {
    /// Each probe's best `m` candidate rows by the engine's design; `None`
    /// where the second design's list overflowed.
    fn candidates(
        &self,
        probes: &ProbeBatch,
        b0: usize,
        nb: usize,
        m: u32,
    ) -> Result<Vec<Option<Candidates>>, GpuError> {
        match &self.rows {
            Rows::Classic(g) => Ok(self
                .gpu_candidates(g, probes, b0, nb, m)?
                .into_iter()
                .map(Some)
                .collect()),
            Rows::Scan(d) => d.candidates(
                &self.dev,
                &self.topk,
                self.cpu.gallery().rows(),
                probes,
                b0,
                nb,
                m,
            ),
        }
    }

    /// Probe `b`'s answer from its candidate rows, exactly as the CPU
    /// engine finishes its own; by the exact CPU scan when its list
    /// overflowed.
    fn finish(
        &self,
        probes: &ProbeBatch,
        b: usize,
        list: Option<Vec<(u32, f32)>>,
        top_k: usize,
    ) -> Result<Vec<Candidate>, SearchError> {
        let Some(list) = list else {
            // The probe is unit length already: preparing it again changes nothing.
            let single =
                ProbeBatch::single(probes.dim(), probes.unit(b)).map_err(SearchError::Input)?;
            return Ok(self.cpu.search(&single, top_k)?.swap_remove(0));
        };
        let ranked = self.cpu.refiner().rank_candidates(probes, b, list, top_k)?;
        self.fill_masked(probes, b, ranked, top_k)
    }
}

impl SearchEngine for GpuEngine {
    fn describe(&self) -> String {
        format!("gpu/{}", self.dev.info.name)
    }

    fn is_lost(&self) -> bool {
        self.dev.is_lost()
    }

    fn search(
        &self,
        probes: &ProbeBatch,
        top_k: usize,
    ) -> Result<Vec<Vec<Candidate>>, SearchError> {
        let gallery = self.cpu.gallery();
        if probes.dim() != gallery.dim() {
            return Err(InputError::Dimension {
                what: "probe".into(),
                expected: gallery.dim(),
                actual: probes.dim(),
            }
            .into());
        }
        if top_k == 0 {
            return Err(InputError::BadParameter("top_k must be at least 1".into()).into());
        }
        if self.dev.is_lost() {
            return Err(SearchError::Unavailable("GPU device lost".into()));
        }
        let m = self.cpu.refiner().candidate_rows(top_k);
        if m == 0 || m > TOPK_MAX_K as usize {
            // More candidates than the top-k kernel keeps (or none: an
            // empty gallery): the CPU answers. The kernel, a trusted module,
            // relies on 1 <= M <= TOPK_MAX_K.
            return self.cpu.search(probes, top_k);
        }
        let m = m as u32;
        let batch = match self.rows {
            Rows::Classic(_) => MAX_BATCH,
            Rows::Scan(_) => MAX_SCAN_BATCH,
        };
        let mut out = Vec::with_capacity(probes.len());
        let mut b0 = 0;
        while b0 < probes.len() {
            let nb = batch.min(probes.len() - b0);
            let lists = {
                // A poisoned lock only means another search panicked; the device state is per search.
                let _one = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                checked(&self.dev.device, || self.candidates(probes, b0, nb, m))
                    .map_err(|e| SearchError::Unavailable(e.to_string()))?
            };
            // The exact re-score runs on the CPU after the batch: on every
            // core, or it grows the batch's wall time by tens of
            // microseconds a probe (docs/benchmarks.md, the H200's run 3).
            let finished: Vec<Vec<Candidate>> = lists
                .into_par_iter()
                .enumerate()
                .map(|(i, list)| self.finish(probes, b0 + i, list, top_k))
                .collect::<Result<_, _>>()?;
            out.extend(finished);
            b0 += nb;
        }
        Ok(out)
    }
}
