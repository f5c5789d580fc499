//! The GPU search engine.

use std::sync::{Arc, Mutex};

use facegate_core::format::row_stride;
use facegate_core::live::Tombstones;
use facegate_core::search::{Candidate, CpuEngine, ProbeBatch, SearchEngine, SearchError};
use facegate_core::{ElementType, Gallery, InputError};

use crate::GpuError;
use crate::buffers::{GpuGallery, read_back, scratch, uniform, upload};
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
    /// Base subjects removed or re-enrolled since the gallery was built,
    /// shared with the live gallery that sets them; none when absent.
    pub tombstones: Option<Arc<Tombstones>>,
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

/// The GPU engine: resident gallery, compiled kernels, and the CPU engine
/// that finishes candidates (and answers what the GPU kernels cannot).
pub struct GpuEngine {
    cpu: CpuEngine,
    dev: GpuDevice,
    pipes: Pipelines,
    on_gpu: GpuGallery,
    ty: ElementType,
    dim_words: u32,
    stride_words: u32,
    /// One search on the device at a time: each allocates scratch buffers
    /// sized for its batch, so unbounded concurrency could exhaust GPU memory.
    /// (Cross-port batching will feed this one queue with large batches.)
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
        let masked = self.cpu.tombstones();
        let live = self.cpu.gallery().subjects() as u64 - masked.count();
        if ranked.len() >= top_k || masked.is_empty() || ranked.len() as u64 >= live {
            return Ok(ranked);
        }
        // The probe is unit length already: preparing it again changes nothing.
        let single =
            ProbeBatch::single(probes.dim(), probes.unit(b)).map_err(SearchError::Input)?;
        Ok(self.cpu.search(&single, top_k)?.swap_remove(0))
    }

    /// Opens a device, compiles the kernels and uploads the gallery's scan rows.
    pub fn new(gallery: Arc<Gallery>, opts: GpuOptions) -> Result<GpuEngine, GpuError> {
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
            cpu: match opts.tombstones {
                Some(t) => CpuEngine::new(gallery).masked(t),
                None => CpuEngine::new(gallery),
            },
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

    fn topk_pass(
        &self,
        pass: &mut wgpu::ComputePass,
        input: &Pairs,
        output: &Pairs,
        p: TopkParams,
        segments: u32,
        nb: u32,
    ) {
        let params = uniform(&self.dev.device, "topk params", &p);
        let bg = self.bind(
            &self.pipes.topk,
            &[
                &input.scores,
                &input.rows,
                &output.scores,
                &output.rows,
                &params,
            ],
        );
        pass.set_pipeline(&self.pipes.topk);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(segments, nb, 1);
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
        let d = &self.dev.device;
        let k = TOPK_WORKGROUP.max(m.next_power_of_two());
        let chunks = &self.on_gpu.chunks;
        let nchunks = chunks.len() as u32;
        let max_rows = chunks.iter().map(|c| c.rows).max().unwrap_or(1);
        let nseg1 = max_rows.div_ceil(SEG_LEN);
        let nb32 = nb as u32;
        let (probe_buf, pscale_buf) = self.probe_buffers(probes, b0, nb);
        let scores = Pairs {
            scores: scratch(d, "scores", u64::from(nb32) * u64::from(max_rows) * 4),
            rows: upload(d, "no rows", &[0; 4]),
        };
        let ping_entries = u64::from(nb32) * u64::from(m) * u64::from(nseg1.max(nchunks));
        let ping = Pairs::new(d, "candidates a", ping_entries);
        let pong = Pairs::new(d, "candidates b", ping_entries);
        let fin = Pairs::new(
            d,
            "chunk candidates",
            u64::from(nb32) * u64::from(m) * u64::from(nchunks),
        );
        let topk = |n_in, seg_len, from_pairs, row_base, out: (u32, u32)| TopkParams {
            n_in,
            in_stride: n_in,
            seg_len,
            m,
            k,
            from_pairs,
            row_base,
            out_stride: out.0,
            out_base: out.1,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        };
        let gallery = self.cpu.gallery();
        for (c, chunk) in chunks.iter().enumerate() {
            let (rows_buf, scales_buf) = self.on_gpu.chunk(&self.dev.queue, gallery, c);
            let mut enc = d.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("chunk"),
            });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("chunk"),
                    timestamp_writes: None,
                });
                let params = uniform(
                    d,
                    "score params",
                    &ScoreParams {
                        rows: chunk.rows,
                        dim_words: self.dim_words,
                        stride_words: self.stride_words,
                        probes: nb32,
                    },
                );
                let bg = self.bind(
                    &self.pipes.score,
                    &[
                        rows_buf,
                        scales_buf,
                        &probe_buf,
                        &pscale_buf,
                        &scores.scores,
                        &params,
                    ],
                );
                pass.set_pipeline(&self.pipes.score);
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(
                    chunk.rows.div_ceil(SCORE_WORKGROUP),
                    nb32.div_ceil(PROBE_TILE),
                    1,
                );

                // The score matrix to one list per segment, then merged until
                // one list is left, in the chunk's slot of `fin`.
                let fin_slot = (nchunks * m, c as u32 * m);
                let mut nseg = chunk.rows.div_ceil(SEG_LEN);
                let (mut cur, mut other) = (&ping, &pong);
                let out = if nseg == 1 {
                    (&fin, fin_slot)
                } else {
                    (cur, (nseg * m, 0))
                };
                let first = topk(chunk.rows, SEG_LEN, 0, chunk.first_row, out.1);
                self.topk_pass(&mut pass, &scores, out.0, first, nseg, nb32);
                while nseg > 1 {
                    let n_in = nseg * m;
                    let next = n_in.div_ceil(MERGE_LISTS * m);
                    let out = if next == 1 {
                        (&fin, fin_slot)
                    } else {
                        (other, (next * m, 0))
                    };
                    let merge = topk(n_in, MERGE_LISTS * m, 1, 0, out.1);
                    self.topk_pass(&mut pass, cur, out.0, merge, next, nb32);
                    std::mem::swap(&mut cur, &mut other);
                    nseg = next;
                }
            }
            self.dev.queue.submit([enc.finish()]);
        }
        // Merge the chunks' lists.
        let mut enc = d.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("merge"),
        });
        let mut result = &fin;
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("merge"),
                timestamp_writes: None,
            });
            let (mut a, mut b) = (&ping, &pong);
            let mut n = nchunks;
            while n > 1 {
                let n_in = n * m;
                let next = n_in.div_ceil(MERGE_LISTS * m);
                self.topk_pass(
                    &mut pass,
                    result,
                    a,
                    topk(n_in, MERGE_LISTS * m, 1, 0, (next * m, 0)),
                    next,
                    nb32,
                );
                result = a;
                std::mem::swap(&mut a, &mut b);
                n = next;
            }
        }
        self.dev.queue.submit([enc.finish()]);
        let bytes = u64::from(nb32) * u64::from(m) * 4;
        let s = read_back(d, &self.dev.queue, &result.scores, bytes)?;
        let r = read_back(d, &self.dev.queue, &result.rows, bytes)?;
        let s: &[f32] = bytemuck::cast_slice(&s);
        let r: &[u32] = bytemuck::cast_slice(&r);
        let m = m as usize;
        Ok((0..nb)
            .map(|i| {
                r[i * m..(i + 1) * m]
                    .iter()
                    .copied()
                    .zip(s[i * m..(i + 1) * m].iter().copied())
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
        let m = self.cpu.candidate_rows(top_k) as u32;
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
                let ranked = self.cpu.rank_candidates(probes, b0 + i, list, top_k)?;
                out.push(self.fill_masked(probes, b0 + i, ranked, top_k)?);
            }
            b0 += nb;
        }
        Ok(out)
    }
}
