//! The GPU search engine.

use std::sync::Mutex;

use facegate_core::format::row_stride;
use facegate_core::search::{
    Candidate, CpuEngine, ProbeBatch, ScanTarget, SearchEngine, SearchError,
};
use facegate_core::{ElementType, InputError};

use crate::GpuError;
use crate::buffers::{ChunkRange, GpuGallery, read_back, scratch, uniform, upload};
use crate::device::{DeviceOptions, GpuDevice};
use crate::pipeline::Pipelines;
use crate::shared::{
    PROBE_TILE, SCORE_WORKGROUP, ScoreParams, TOPK_MAX_K, TOPK_WORKGROUP, TOPK_WORKGROUP_BYTES,
    TopkParams,
};

/// Probes scored together in one pass (bounds the score buffer).
const MAX_BATCH: usize = 64;
/// Scores one top-k workgroup reduces in the first pass.
const SEG_LEN: u32 = 4096;
/// Partial lists one top-k workgroup merges in later passes.
const MERGE_LISTS: u32 = 8;

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
}

/// A pair of candidate buffers (scores, rows).
struct Pairs {
    scores: wgpu::Buffer,
    rows: wgpu::Buffer,
}

impl Pairs {
    fn new(device: &wgpu::Device, label: &str, entries: u64) -> Pairs {
        Pairs {
            scores: scratch(device, label, entries * 4),
            rows: scratch(device, label, entries * 4),
        }
    }
}

/// `count` candidate lists of M (score, row) pairs per probe in `pairs`:
/// probe p's list i starts at entry `p * stride + base + i * M`.
#[derive(Clone, Copy)]
struct Lists<'a> {
    pairs: &'a Pairs,
    count: u32,
    stride: u32,
    base: u32,
}

impl<'a> Lists<'a> {
    /// `count` lists per probe, packed from the start of `pairs`.
    fn packed(pairs: &'a Pairs, count: u32, m: u32) -> Lists<'a> {
        Lists {
            pairs,
            count,
            stride: count * m,
            base: 0,
        }
    }

    /// List `i` of these alone.
    fn list(self, i: u32, m: u32) -> Lists<'a> {
        Lists {
            count: 1,
            base: self.base + i * m,
            ..self
        }
    }
}

/// The sizes every top-k pass of one batch shares.
#[derive(Clone, Copy)]
struct TopkShape {
    /// Probes in the batch (the dispatch's y).
    probes: u32,
    /// Candidates kept per list.
    m: u32,
    /// Candidates a workgroup keeps while selecting: the kernel's K.
    k: u32,
}

impl TopkShape {
    /// The sizes for `probes` probes keeping `m` candidates: K is the
    /// smallest power of two the kernel accepts that holds M.
    fn new(probes: usize, m: u32) -> TopkShape {
        TopkShape {
            probes: probes as u32,
            m,
            k: TOPK_WORKGROUP.max(m.next_power_of_two()),
        }
    }

    /// Where a pass producing `count` lists writes: into `dest` when it
    /// produces the last list, else packed into `spare`.
    fn output<'a>(self, count: u32, dest: Option<Lists<'a>>, spare: &'a Pairs) -> Lists<'a> {
        match dest {
            Some(dest) if count == 1 => dest,
            _ => Lists::packed(spare, count, self.m),
        }
    }
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
    on_gpu: GpuGallery,
    ty: ElementType,
    dim_words: u32,
    stride_words: u32,
    /// One search on the device at a time: each allocates scratch buffers
    /// sized for its batch, so unbounded concurrency could exhaust GPU memory.
    /// The server's dispatcher batches requests across ports and runs one
    /// batch at a time; this lock holds any other caller to the same rule.
    in_flight: Mutex<()>,
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
        let dev = GpuDevice::open(opts.device)?;
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
        let (pipes, on_gpu) = checked(&dev.device, || {
            let pipes = Pipelines::new(&dev.device, ty);
            let on_gpu = GpuGallery::new(&dev.device, &gallery, chunk_rows, budget)?;
            Ok((pipes, on_gpu))
        })?;
        tracing::info!(
            adapter = %dev.describe(),
            chunks = on_gpu.chunks.len(),
            gpu_bytes = on_gpu.bytes,
            streamed = on_gpu.is_streamed(),
            "gallery on the GPU"
        );
        Ok(GpuEngine {
            cpu: CpuEngine::new(target),
            dev,
            pipes,
            on_gpu,
            ty,
            dim_words: dim.div_ceil(lanes) as u32,
            stride_words: (stride_bytes / word_bytes) as u32,
            in_flight: Mutex::new(()),
        })
    }

    /// GPU memory held by the gallery rows.
    pub fn gpu_memory_bytes(&self) -> u64 {
        self.on_gpu.bytes
    }

    /// Number of chunks the gallery was split into.
    pub fn chunks(&self) -> usize {
        self.on_gpu.chunks.len()
    }

    /// Whether the rows are streamed from host memory on every search
    /// (the gallery exceeds the memory budget).
    pub fn is_streamed(&self) -> bool {
        self.on_gpu.is_streamed()
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

    /// A bind group giving `buffers` to `pipeline`'s bindings 0, 1, ... in order.
    fn bind(&self, pipeline: &wgpu::ComputePipeline, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.dev
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
    }

    /// Searches probes `b0 .. b0 + nb` on the GPU; returns each probe's best
    /// `m` (row, score) pairs. Each chunk is one submission (so that streamed
    /// chunks can reuse their slots); the merge across chunks is the last.
    fn gpu_candidates(
        &self,
        probes: &ProbeBatch,
        b0: usize,
        nb: usize,
        m: u32,
    ) -> Result<Vec<Vec<(u32, f32)>>, GpuError> {
        let shape = TopkShape::new(nb, m);
        let bufs = self.batch_buffers(probes, b0, nb, m);
        let chunks = &self.on_gpu.chunks;
        let chunk_best = Lists::packed(&bufs.chunk_best, chunks.len() as u32, m);
        for (c, &chunk) in chunks.iter().enumerate() {
            let chunk_buffers = self.on_gpu.chunk(&self.dev.queue, self.cpu.gallery(), c);
            self.submit_pass("chunk", |pass| {
                self.score_pass(pass, &bufs, chunk_buffers, chunk.rows, shape.probes);
                let dest = chunk_best.list(c as u32, m);
                self.reduce_chunk(pass, shape, &bufs, chunk, dest);
            });
        }
        let best = self.submit_pass("merge", |pass| {
            let [a, b] = &bufs.spare;
            self.merge_until_one(pass, shape, chunk_best, None, [a, b])
        });
        self.read_lists(best, shape)
    }

    /// Uploads the batch's probes and allocates the scratch its passes need:
    /// a score matrix for the largest chunk, and lists of M for its segments
    /// and for the chunks.
    fn batch_buffers(&self, probes: &ProbeBatch, b0: usize, nb: usize, m: u32) -> BatchBuffers {
        let d = &self.dev.device;
        let chunks = &self.on_gpu.chunks;
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
        let bg = self.bind(
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

    /// Reduces a chunk's score matrix to each probe's best M rows, written to
    /// `dest`: the best M of every `SEG_LEN` rows, then merged until one list
    /// is left.
    fn reduce_chunk(
        &self,
        pass: &mut wgpu::ComputePass,
        shape: TopkShape,
        bufs: &BatchBuffers,
        chunk: ChunkRange,
        dest: Lists,
    ) {
        let segments = chunk.rows.div_ceil(SEG_LEN);
        let [a, b] = &bufs.spare;
        let per_segment = shape.output(segments, Some(dest), a);
        let params = TopkParams {
            n_in: chunk.rows,
            in_stride: chunk.rows,
            seg_len: SEG_LEN,
            m: shape.m,
            k: shape.k,
            from_pairs: 0,
            row_base: chunk.first_row,
            out_stride: per_segment.stride,
            out_base: per_segment.base,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        };
        self.topk_pass(pass, shape, &bufs.chunk_scores, per_segment, params);
        self.merge_until_one(pass, shape, per_segment, Some(dest), [b, a]);
    }

    /// Merges `lists` `MERGE_LISTS` at a time until one list per probe is
    /// left, and returns where it is: in `dest` when given, else in a spare.
    /// Successive passes write to `spare[0]`, `spare[1]`, `spare[0]`, ...
    fn merge_until_one<'a>(
        &self,
        pass: &mut wgpu::ComputePass,
        shape: TopkShape,
        mut lists: Lists<'a>,
        dest: Option<Lists<'a>>,
        mut spare: [&'a Pairs; 2],
    ) -> Lists<'a> {
        while lists.count > 1 {
            let merged = shape.output(lists.count.div_ceil(MERGE_LISTS), dest, spare[0]);
            // The kernel reads every probe's inputs from the start of its stride.
            debug_assert_eq!(lists.base, 0);
            let params = TopkParams {
                n_in: lists.count * shape.m,
                in_stride: lists.stride,
                seg_len: MERGE_LISTS * shape.m,
                m: shape.m,
                k: shape.k,
                from_pairs: 1,
                row_base: 0,
                out_stride: merged.stride,
                out_base: merged.base,
                _pad0: 0,
                _pad1: 0,
                _pad2: 0,
            };
            self.topk_pass(pass, shape, lists.pairs, merged, params);
            lists = merged;
            spare.swap(0, 1);
        }
        lists
    }

    /// One top-k pass: a workgroup per output list and probe reads `input`
    /// as `params` says and writes its list into `output`.
    fn topk_pass(
        &self,
        pass: &mut wgpu::ComputePass,
        shape: TopkShape,
        input: &Pairs,
        output: Lists,
        params: TopkParams,
    ) {
        let params = uniform(&self.dev.device, "topk params", &params);
        let bg = self.bind(
            &self.pipes.topk,
            &[
                &input.scores,
                &input.rows,
                &output.pairs.scores,
                &output.pairs.rows,
                &params,
            ],
        );
        pass.set_pipeline(&self.pipes.topk);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(output.count, shape.probes, 1);
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
        let m = self.cpu.refiner().candidate_rows(top_k) as u32;
        if m > TOPK_MAX_K {
            // More candidates than the top-k kernel keeps: the CPU answers.
            return self.cpu.search(probes, top_k);
        }
        let mut out = Vec::with_capacity(probes.len());
        let mut b0 = 0;
        while b0 < probes.len() {
            let nb = MAX_BATCH.min(probes.len() - b0);
            let lists = {
                // A poisoned lock only means another search panicked; the device state is per search.
                let _one = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                checked(&self.dev.device, || self.gpu_candidates(probes, b0, nb, m))
                    .map_err(|e| SearchError::Unavailable(e.to_string()))?
            };
            for (i, list) in lists.into_iter().enumerate() {
                let ranked = self
                    .cpu
                    .refiner()
                    .rank_candidates(probes, b0 + i, list, top_k)?;
                out.push(self.fill_masked(probes, b0 + i, ranked, top_k)?);
            }
            b0 += nb;
        }
        Ok(out)
    }
}
