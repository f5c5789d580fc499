//! The second design on the device (int8 galleries): the rows interleaved
//! by group ([`crate::interleave`]) and resident, a pilot sample, persistent
//! scratch with its bind groups made once, and one submission and one
//! mapped read-back per batch ([`crate::plan`] says what each step moves).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use facegate_core::Gallery;
use facegate_core::format::ScanRows;

use crate::GpuError;
use crate::buffers::{map_read, scratch, upload};
use crate::device::GpuDevice;
use crate::interleave::{chunks_of, interleave, sample_rows};
use crate::pipeline::{ScanPipelines, bind_layout};
use crate::plan::{SAMPLE_GROUPS, ScanPlan};
use crate::shared::{SCAN_GROUP_ROWS, SCAN_MAX_THREAD_PROBES, ScanKernel, ScanParams};
use crate::stages::{STAMP_BYTES, StageClock, StageTimes};
use crate::topk::{CountedLists, Lists, Pairs, ReadyPass, Topk, TopkShape};

/// A probe's candidate rows and their scan scores, best first.
pub(crate) type Candidates = Vec<(u32, f32)>;

/// Groups of rows laid out for the scan kernel, in one binding.
pub(crate) struct GroupBuffers {
    data: wgpu::Buffer,
    scales: wgpu::Buffer,
    /// Gallery row of the first row.
    first_row: u32,
    /// Real rows.
    rows: u32,
    /// Groups of 32 (the last may be padded).
    groups: u32,
}

/// What the second design keeps on the device for one gallery.
pub(crate) struct ScanDesign {
    parts: Vec<GroupBuffers>,
    sample: GroupBuffers,
    chunks: u64,
    sample_groups: u64,
    capacity: Option<u64>,
    /// The largest binding: a batch's lists and pilot scores must fit one.
    max_binding: u64,
    pipelines: ScanPipelines,
    /// The probes per invocation every batch uses, when the options force one.
    thread_probes: Option<u32>,
    /// GPU time per stage, when the options ask for it and the device can.
    clock: Option<StageClock>,
    scratch: Mutex<Option<Scratch>>,
    /// Device memory the rows take (gallery and sample).
    pub bytes: u64,
    /// Probes whose list overflowed (answered by the CPU), since start.
    pub overflows: AtomicU64,
}

/// The second design's settings, where not the defaults: the pilot's
/// sample, the lists' capacity, and what the benchmark compares.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Row groups of 32 the pilot samples (default [`SAMPLE_GROUPS`]).
    pub sample_groups: Option<u64>,
    /// Entries of each probe's candidate list (default: the plan's).
    pub list_capacity: Option<u64>,
    /// Probes each scan invocation scores (1, 2, 4 or 8) for every batch,
    /// instead of the smallest tile that holds the batch.
    pub thread_probes: Option<u32>,
    /// Compile the scan kernel with the bounds clamps, loop guards and
    /// division checks naga adds to untrusted shaders. Off by default: the
    /// kernel is a trusted module ([`ScanPipelines::new`] says why that is
    /// sound), which ran 2.2 to 3.1 times faster on an H200 (docs/benchmarks.md).
    pub runtime_checks: bool,
    /// Time each stage of every batch on the GPU ([`crate::stages`]).
    pub profile: bool,
    /// The scan kernel: the staged one by default; the others are variants
    /// for the benchmark to compare on a real device before any becomes
    /// the default for any batch. [`ScanKernel::Coop`] opens the device
    /// with cooperative matrices, and the engine refuses to start where
    /// they are not offered.
    pub kernel: ScanKernel,
}

/// The probes per invocation the scan kernel is compiled for.
const THREAD_PROBES: [u32; 4] = [1, 2, 4, SCAN_MAX_THREAD_PROBES];

fn upload_groups(
    device: &wgpu::Device,
    gallery: &Gallery,
    rows: &[usize],
    first_row: u32,
) -> GroupBuffers {
    // Built only for int8 galleries (`engine::scan_fits`); others lay out nothing.
    let (data, scales, stride): (&[i8], &[f32], usize) = match gallery.scan_rows() {
        ScanRows::Int8 {
            data,
            scales,
            stride,
        } => (data, scales, stride),
        _ => (&[], &[], 0),
    };
    let rows = if stride == 0 { &[][..] } else { rows };
    let laid = interleave(data, scales, stride, gallery.dim(), rows);
    GroupBuffers {
        data: upload(device, "interleaved rows", &laid.bytes),
        scales: upload(
            device,
            "interleaved scales",
            bytemuck::cast_slice(&laid.scales),
        ),
        first_row,
        rows: laid.rows as u32,
        groups: laid.groups as u32,
    }
}

impl ScanDesign {
    /// Lays the gallery out in parts of at most `max_binding` bytes (and
    /// `max_part_rows` rows, rounded down to whole groups) and uploads them
    /// with the pilot's sample.
    pub(crate) fn new(
        dev: &GpuDevice,
        gallery: &Gallery,
        max_binding: u64,
        max_part_rows: Option<usize>,
        opts: ScanOptions,
    ) -> ScanDesign {
        let device = &dev.device;
        let chunks = chunks_of(gallery.dim()) as u64;
        let group = u64::from(SCAN_GROUP_ROWS);
        let by_rows = max_part_rows.map_or(u64::MAX, |r| r as u64 / group);
        let groups_per_part = (max_binding / (group * chunks * 16)).min(by_rows).max(1);
        let rows_per_part = (groups_per_part * group) as usize;
        let n = gallery.rows();
        let parts: Vec<GroupBuffers> = (0..n)
            .step_by(rows_per_part)
            .map(|first| {
                let rows: Vec<usize> = (first..(first + rows_per_part).min(n)).collect();
                upload_groups(device, gallery, &rows, first as u32)
            })
            .collect();
        let sample_groups = opts.sample_groups.unwrap_or(SAMPLE_GROUPS).max(1);
        let sample = upload_groups(device, gallery, &sample_rows(n, sample_groups as usize), 0);
        let bytes = parts
            .iter()
            .chain([&sample])
            .map(|p| p.data.size() + p.scales.size())
            .sum();
        ScanDesign {
            parts,
            sample,
            chunks,
            sample_groups,
            capacity: opts.list_capacity,
            max_binding,
            pipelines: ScanPipelines::new(
                device,
                chunks as u32,
                &THREAD_PROBES,
                opts.kernel,
                dev.coop_tile().unwrap_or(0),
                opts.runtime_checks,
            ),
            thread_probes: opts.thread_probes,
            clock: opts.profile.then(|| StageClock::new(dev)).flatten(),
            scratch: Mutex::new(None),
            bytes,
            overflows: AtomicU64::new(0),
        }
    }

    /// Bindings the gallery's rows take.
    pub(crate) fn parts(&self) -> usize {
        self.parts.len()
    }

    /// GPU time per stage since the last call, when profiling.
    pub(crate) fn stage_times(&self) -> Option<StageTimes> {
        self.clock.as_ref().map(StageClock::take)
    }

    /// The plan of a batch of `probes` keeping `m` over `rows` rows, for
    /// scratch that holds batches up to the next power of two (at least 64),
    /// so that growing batches remake it rarely. The lists' capacity is cut
    /// to what one binding holds for that many probes.
    pub(crate) fn plan(&self, rows: usize, probes: usize, m: u32) -> ScanPlan {
        let room = (probes as u64).next_power_of_two().max(64);
        let plan = ScanPlan::new(
            rows as u64,
            self.chunks * 16,
            room,
            u64::from(m),
            self.sample_groups,
            self.capacity,
        );
        let fits = (self.max_binding / (room * 4)).max(1);
        ScanPlan {
            capacity: plan.capacity.min(fits),
            ..plan
        }
    }
}

/// A batch's buffers, kept from batch to batch (remade only for a larger
/// batch or another M), with every pass's bind group made once.
pub(crate) struct Scratch {
    plan: ScanPlan,
    probes: wgpu::Buffer,
    probe_scales: wgpu::Buffer,
    pilot_best: Pairs,
    counts: wgpu::Buffer,
    best: Pairs,
    staging: wgpu::Buffer,
    /// Buffers only the bind groups name (the pilot's scores and lists,
    /// the candidate lists), held here so that their lifetime is plain.
    _bound: [Pairs; 6],
    /// The pilot's scan, then each part's: params and bind group.
    scans: Vec<(wgpu::Buffer, wgpu::BindGroup)>,
    /// The top-k passes reducing the pilot's scores to its best M.
    pilot_reduce: Vec<ReadyPass>,
    /// The top-k passes selecting each probe's best M from its list.
    select: Vec<ReadyPass>,
}

/// The final selection's passes over each probe's counted list into
/// `best`, and the spare lists they write between passes.
fn select_passes(
    d: &wgpu::Device,
    topk: &Topk,
    plan: ScanPlan,
    lists: &Pairs,
    counts: &wgpu::Buffer,
    best: &Pairs,
) -> (Vec<ReadyPass>, [Pairs; 2]) {
    let shape = TopkShape::new(plan.probes as usize, plan.m as u32);
    let segments = match plan.pilot_is_exact() {
        true => 1,
        false => plan.select_segments(),
    };
    let spare_len = plan.probes * plan.m * segments;
    let spare = [
        Pairs::new(d, "select lists a", spare_len),
        Pairs::new(d, "select lists b", spare_len),
    ];
    let counted = CountedLists {
        pairs: lists,
        capacity: plan.capacity as u32,
        segments: segments as u32,
        counts,
    };
    let into_best = Lists::packed(best, 1, shape.m);
    let passes = topk.select_counted_ready(shape, counted, [&spare[0], &spare[1]], into_best);
    (passes, spare)
}

/// What every scan dispatch of a scratch binds besides its rows and output.
struct ScanInputs<'a> {
    probes: &'a wgpu::Buffer,
    probe_scales: &'a wgpu::Buffer,
    /// The pilot's best M per probe, whose M-th is the probe's cut.
    cuts: &'a wgpu::Buffer,
    counts: &'a wgpu::Buffer,
}

/// An uninitialised buffer of `size` bytes for `usage`.
fn buffer(
    device: &wgpu::Device,
    label: &str,
    size: u64,
    usage: wgpu::BufferUsages,
) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage,
        mapped_at_creation: false,
    })
}

fn params_buffer(device: &wgpu::Device) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("scan params"),
        size: std::mem::size_of::<ScanParams>() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

impl ScanDesign {
    /// The scratch for `plan`, made now if the kept one was made for
    /// another.
    fn scratch_for<'a>(
        &self,
        dev: &GpuDevice,
        topk: &Topk,
        kept: &'a mut Option<Scratch>,
        plan: ScanPlan,
    ) -> &'a mut Scratch {
        if kept.as_ref().is_some_and(|s| s.plan != plan) {
            *kept = None;
        }
        kept.get_or_insert_with(|| self.make_scratch(dev, topk, plan))
    }

    fn make_scratch(&self, dev: &GpuDevice, topk: &Topk, plan: ScanPlan) -> Scratch {
        let d = &dev.device;
        let (b, m) = (plan.probes, plan.m);
        use wgpu::BufferUsages as U;
        let probes = buffer(
            d,
            "scan probes",
            b * self.chunks * 16,
            U::STORAGE | U::COPY_DST,
        );
        let probe_scales = buffer(d, "scan probe scales", b * 4, U::STORAGE | U::COPY_DST);
        let counts = buffer(
            d,
            "list counts",
            b * 4,
            U::STORAGE | U::COPY_DST | U::COPY_SRC,
        );
        let staging = buffer(
            d,
            "scan read-back",
            stamps_at(plan) + STAMP_BYTES,
            U::MAP_READ | U::COPY_DST,
        );
        let pilot = Pairs {
            scores: scratch(d, "pilot scores", b * plan.sample_rows * 4),
            rows: upload(d, "no rows", &[0; 4]),
        };
        let per_probe = if plan.pilot_is_exact() {
            1
        } else {
            plan.capacity
        };
        let spare = [
            Pairs::new(d, "pilot lists a", b * m * plan.pilot_segments()),
            Pairs::new(d, "pilot lists b", b * m * plan.pilot_segments()),
        ];
        let pilot_best = Pairs::new(d, "pilot best", b * m);
        let lists = Pairs::new(d, "candidate lists", b * per_probe);
        let best = Pairs::new(d, "best", b * m);
        let shared = ScanInputs {
            probes: &probes,
            probe_scales: &probe_scales,
            cuts: &pilot_best.scores,
            counts: &counts,
        };
        let scans = std::iter::once(self.bind_scan(d, &shared, &self.sample, &pilot))
            .chain(
                self.parts
                    .iter()
                    .map(|part| self.bind_scan(d, &shared, part, &lists)),
            )
            .collect();
        let shape = TopkShape::new(b as usize, m as u32);
        let sample = crate::buffers::ChunkRange {
            first_row: 0,
            rows: plan.sample_rows as u32,
        };
        let into_pilot_best = Lists::packed(&pilot_best, 1, shape.m);
        let [a, c] = [&spare[0], &spare[1]];
        let pilot_reduce = topk.reduce_ready(shape, &pilot, [a, c], sample, into_pilot_best);
        let (select, [select_a, select_b]) = select_passes(d, topk, plan, &lists, &counts, &best);
        let [spare_a, spare_b] = spare;
        Scratch {
            plan,
            probes,
            probe_scales,
            pilot_best,
            counts,
            best,
            staging,
            _bound: [pilot, spare_a, spare_b, lists, select_a, select_b],
            scans,
            pilot_reduce,
            select,
        }
    }

    /// A scan dispatch's parameters buffer and bind group: `rows` scored
    /// against the batch, into `out`.
    fn bind_scan(
        &self,
        d: &wgpu::Device,
        shared: &ScanInputs<'_>,
        rows: &GroupBuffers,
        out: &Pairs,
    ) -> (wgpu::Buffer, wgpu::BindGroup) {
        let params = params_buffer(d);
        let group = bind_layout(
            d,
            &self.pipelines.layout,
            &[
                &rows.data,
                &rows.scales,
                shared.probes,
                shared.probe_scales,
                shared.cuts,
                shared.counts,
                &out.scores,
                &out.rows,
                &params,
            ],
        );
        (params, group)
    }

    /// The best `m` candidate rows of probes `b0 .. b0 + nb`, by the second
    /// design; `None` for a probe whose list overflowed (the caller answers
    /// it with the exact CPU scan).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn candidates(
        &self,
        dev: &GpuDevice,
        topk: &Topk,
        rows: usize,
        probes: &facegate_core::search::ProbeBatch,
        b0: usize,
        nb: usize,
        m: u32,
    ) -> Result<Vec<Option<Candidates>>, GpuError> {
        let room = self.plan(rows, nb, m);
        let mut kept = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let s = self.scratch_for(dev, topk, &mut kept, room);
        // This batch: the scratch's sizes, its own probe count.
        let plan = ScanPlan {
            probes: nb as u64,
            ..room
        };
        self.write_batch(dev, s, plan, probes, b0, nb);
        let mut enc = dev
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("scan batch"),
            });
        enc.clear_buffer(&s.counts, 0, Some(plan.probes * 4));
        let answer = self.record_batch(&mut enc, topk, s, plan);
        let stages = if plan.pilot_is_exact() { 2 } else { 4 };
        // The scratch's read-back is laid out for its room, not this batch.
        let stamps = stamps_at(s.plan);
        if let Some(clock) = &self.clock {
            clock.resolve(&mut enc, stages, &s.staging, stamps);
        }
        let bytes = plan.probes * plan.m * 4;
        enc.copy_buffer_to_buffer(&answer.scores, 0, &s.staging, 0, bytes);
        enc.copy_buffer_to_buffer(&answer.rows, 0, &s.staging, bytes, bytes);
        enc.copy_buffer_to_buffer(&s.counts, 0, &s.staging, 2 * bytes, plan.probes * 4);
        dev.queue.submit([enc.finish()]);
        let out = map_read(&dev.device, &s.staging, |view| {
            if let Some(clock) = &self.clock {
                clock.collect(&view[stamps as usize..], stages);
            }
            read_answers(view, plan)
        })?;
        let overflowed = out.iter().filter(|l| l.is_none()).count() as u64;
        self.overflows.fetch_add(overflowed, Ordering::Relaxed);
        Ok(out)
    }

    /// Writes the batch's probes and every dispatch's parameters (queue
    /// writes land before the batch's submission runs).
    fn write_batch(
        &self,
        dev: &GpuDevice,
        s: &Scratch,
        plan: ScanPlan,
        probes: &facegate_core::search::ProbeBatch,
        b0: usize,
        nb: usize,
    ) {
        let q = &dev.queue;
        let row_bytes = self.chunks as usize * 16;
        let mut bytes = vec![0u8; nb * row_bytes];
        let mut scales = Vec::with_capacity(nb);
        for i in 0..nb {
            let (quantised, scale) = probes.quantized(b0 + i);
            bytes[i * row_bytes..i * row_bytes + quantised.len()]
                .copy_from_slice(bytemuck::cast_slice(quantised));
            scales.push(scale);
        }
        q.write_buffer(&s.probes, 0, &bytes);
        q.write_buffer(&s.probe_scales, 0, bytemuck::cast_slice(&scales));
        let targets = std::iter::once((&self.sample, 1, plan.sample_rows))
            .chain(self.parts.iter().map(|p| (p, 0, plan.capacity)));
        for ((rows, dense, out_stride), (params, _)) in targets.zip(&s.scans) {
            let p = ScanParams {
                groups: rows.groups,
                rows: rows.rows,
                _pad3: 0,
                probes: nb as u32,
                row_base: rows.first_row,
                dense,
                out_stride: out_stride as u32,
                cut_stride: plan.m as u32,
                cut_index: plan.m as u32 - 1,
                _pad0: 0,
                _pad1: 0,
                _pad2: 0,
            };
            q.write_buffer(params, 0, bytemuck::bytes_of(&p));
        }
    }

    /// The compute pass of stage `i` (timed when profiling).
    fn stage_pass<'e>(&self, enc: &'e mut wgpu::CommandEncoder, i: usize) -> wgpu::ComputePass<'e> {
        enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(crate::stages::STAGES[i]),
            timestamp_writes: self.clock.as_ref().map(|c| c.writes(i)),
        })
    }

    /// Records the pilot, the scan and the final selection, one compute
    /// pass per stage (timed when profiling); where each probe's best M
    /// end up.
    fn record_batch<'a>(
        &self,
        enc: &mut wgpu::CommandEncoder,
        topk: &Topk,
        s: &'a Scratch,
        plan: ScanPlan,
    ) -> &'a Pairs {
        let shape = TopkShape::new(plan.probes as usize, plan.m as u32);
        let pipeline = self
            .pipelines
            .for_batch(plan.probes as u32, self.thread_probes);
        let dispatch = |pass: &mut wgpu::ComputePass,
                        groups: u32,
                        (_, bind): &(wgpu::Buffer, wgpu::BindGroup)| {
            let groups = groups.div_ceil(self.pipelines.kernel.groups_per_workgroup());
            let x = groups.clamp(1, 65_535);
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind, &[]);
            pass.dispatch_workgroups(x, groups.div_ceil(x), 1);
        };
        dispatch(
            &mut self.stage_pass(enc, 0),
            self.sample.groups,
            &s.scans[0],
        );
        {
            let mut pass = self.stage_pass(enc, 1);
            for ready in &s.pilot_reduce {
                topk.dispatch(&mut pass, ready, shape.probes);
            }
        }
        if plan.pilot_is_exact() {
            return &s.pilot_best;
        }
        {
            let mut pass = self.stage_pass(enc, 2);
            for (part, scan) in self.parts.iter().zip(&s.scans[1..]) {
                dispatch(&mut pass, part.groups, scan);
            }
        }
        {
            let mut pass = self.stage_pass(enc, 3);
            for ready in &s.select {
                topk.dispatch(&mut pass, ready, shape.probes);
            }
        }
        &s.best
    }
}

/// Where a scratch's read-back keeps the stage timestamps: after its
/// answers (scores, rows and counts for every probe of its room), at a
/// multiple of 8 bytes.
fn stamps_at(room: ScanPlan) -> u64 {
    (room.probes * (room.m * 8 + 4)).div_ceil(8) * 8
}

/// Splits the mapped read-back into each probe's list (`None` when the
/// probe's count passed the list's capacity).
fn read_answers(view: &[u8], plan: ScanPlan) -> Vec<Option<Candidates>> {
    let (b, m) = (plan.probes as usize, plan.m as usize);
    let words: &[u32] = bytemuck::cast_slice(&view[..b * (m * 8 + 4)]);
    let (scores, rest) = words.split_at(b * m);
    let (rows, counts) = rest.split_at(b * m);
    (0..b)
        .map(|p| {
            let overflowed = !plan.pilot_is_exact() && u64::from(counts[p]) > plan.capacity;
            (!overflowed).then(|| {
                let list = p * m..(p + 1) * m;
                rows[list.clone()]
                    .iter()
                    .copied()
                    .zip(scores[list].iter().map(|&s| f32::from_bits(s)))
                    .collect()
            })
        })
        .collect()
}
