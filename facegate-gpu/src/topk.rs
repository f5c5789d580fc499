//! The top-k kernel's passes, which both designs share: candidate lists
//! of (score, row) pairs, selection from a score matrix, and merges until
//! one list per probe is left.

use crate::buffers::{ChunkRange, scratch, uniform, upload};
use crate::pipeline::bind;
use crate::shared::{TOPK_WORKGROUP, TopkParams};

/// Scores one top-k workgroup reduces in the first pass.
pub(crate) const SEG_LEN: u32 = crate::plan::SEG_LEN as u32;
/// Partial lists one top-k workgroup merges in later passes.
const MERGE_LISTS: u32 = 8;

/// A pair of candidate buffers (scores, rows).
pub(crate) struct Pairs {
    pub(crate) scores: wgpu::Buffer,
    pub(crate) rows: wgpu::Buffer,
}

impl Pairs {
    /// Buffers for `entries` (score, row) pairs.
    pub(crate) fn new(device: &wgpu::Device, label: &str, entries: u64) -> Pairs {
        Pairs {
            scores: scratch(device, label, entries * 4),
            rows: scratch(device, label, entries * 4),
        }
    }
}

/// `count` candidate lists of M (score, row) pairs per probe in `pairs`:
/// probe p's list i starts at entry `p * stride + base + i * M`.
#[derive(Clone, Copy)]
pub(crate) struct Lists<'a> {
    pub(crate) pairs: &'a Pairs,
    pub(crate) count: u32,
    pub(crate) stride: u32,
    pub(crate) base: u32,
}

impl<'a> Lists<'a> {
    /// `count` lists per probe, packed from the start of `pairs`.
    pub(crate) fn packed(pairs: &'a Pairs, count: u32, m: u32) -> Lists<'a> {
        Lists {
            pairs,
            count,
            stride: count * m,
            base: 0,
        }
    }

    /// List `i` of these alone.
    pub(crate) fn list(self, i: u32, m: u32) -> Lists<'a> {
        Lists {
            count: 1,
            base: self.base + i * m,
            ..self
        }
    }
}

/// Each probe's list of (score, row) pairs, `capacity` entries apart, of
/// which the first `counts[p]` are filled, and the parts its selection
/// splits it into.
#[derive(Clone, Copy)]
pub(crate) struct CountedLists<'a> {
    pub(crate) pairs: &'a Pairs,
    pub(crate) capacity: u32,
    pub(crate) segments: u32,
    pub(crate) counts: &'a wgpu::Buffer,
}

/// The sizes every top-k pass of one batch shares.
#[derive(Clone, Copy)]
pub(crate) struct TopkShape {
    /// Probes in the batch (the dispatch's y).
    pub(crate) probes: u32,
    /// Candidates kept per list.
    pub(crate) m: u32,
    /// Candidates a workgroup keeps while selecting: the kernel's K.
    pub(crate) k: u32,
}

impl TopkShape {
    /// The sizes for `probes` probes keeping `m` candidates: K is the
    /// smallest power of two the kernel accepts that holds M.
    pub(crate) fn new(probes: usize, m: u32) -> TopkShape {
        TopkShape {
            probes: probes as u32,
            m,
            k: TOPK_WORKGROUP.max(m.next_power_of_two()),
        }
    }

    /// Where a pass producing `count` lists writes: into `dest` when it
    /// produces the last list, else packed into `spare`.
    pub(crate) fn output<'a>(
        self,
        count: u32,
        dest: Option<Lists<'a>>,
        spare: &'a Pairs,
    ) -> Lists<'a> {
        match dest {
            Some(dest) if count == 1 => dest,
            _ => Lists::packed(spare, count, self.m),
        }
    }
}

/// The top-k pipeline and what its passes bind where they read no counts.
pub(crate) struct Topk {
    device: wgpu::Device,
    pipeline: wgpu::ComputePipeline,
    /// Bound as the kernel's counts where it reads none.
    no_counts: wgpu::Buffer,
}

impl Topk {
    /// Compiles the kernel on `device`.
    pub(crate) fn new(device: &wgpu::Device) -> Topk {
        Topk {
            device: device.clone(),
            pipeline: crate::pipeline::topk(device),
            no_counts: upload(device, "no counts", &[0; 4]),
        }
    }

    /// Reduces a chunk's score matrix `scores` to each probe's best M rows,
    /// written to `dest`: the best M of every `SEG_LEN` rows (into
    /// `spare[0]`), then merged until one list is left.
    pub(crate) fn reduce_scores(
        &self,
        pass: &mut wgpu::ComputePass,
        shape: TopkShape,
        scores: &Pairs,
        spare: [&Pairs; 2],
        chunk: ChunkRange,
        dest: Lists,
    ) {
        for ready in self.reduce_ready(shape, scores, spare, chunk, dest) {
            self.dispatch(pass, &ready, shape.probes);
        }
    }

    /// The passes of [`Topk::reduce_scores`], made ready to dispatch for
    /// any number of probes up to the buffers' (the second design makes
    /// them once per scratch).
    pub(crate) fn reduce_ready(
        &self,
        shape: TopkShape,
        scores: &Pairs,
        [a, b]: [&Pairs; 2],
        chunk: ChunkRange,
        dest: Lists,
    ) -> Vec<ReadyPass> {
        let segments = chunk.rows.div_ceil(SEG_LEN);
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
            counted: 0,
            _pad1: 0,
            _pad2: 0,
        };
        let mut out = vec![self.ready(scores, per_segment, params, &self.no_counts)];
        self.merge_ready(shape, per_segment, Some(dest), [b, a], &mut out);
        out
    }

    /// The passes selecting each probe's best M from its counted list of
    /// (score, row) pairs (`capacity` entries a probe, the first `counts[p]`
    /// filled) into `dest`: the best M of each of `segments` equal parts, a
    /// workgroup each (parts past the count finish at once), then merged
    /// until one list is left; so a long list can be selected by many
    /// workgroups, not one.
    pub(crate) fn select_counted_ready(
        &self,
        shape: TopkShape,
        counted: CountedLists,
        [a, b]: [&Pairs; 2],
        dest: Lists,
    ) -> Vec<ReadyPass> {
        let CountedLists {
            pairs: lists,
            capacity,
            segments,
            counts,
        } = counted;
        let per_segment = shape.output(segments, Some(dest), a);
        let params = TopkParams {
            n_in: capacity,
            in_stride: capacity,
            seg_len: capacity.div_ceil(segments),
            m: shape.m,
            k: shape.k,
            from_pairs: 1,
            row_base: 0,
            out_stride: per_segment.stride,
            out_base: per_segment.base,
            counted: 1,
            _pad1: 0,
            _pad2: 0,
        };
        let mut out = vec![self.ready(lists, per_segment, params, counts)];
        self.merge_ready(shape, per_segment, Some(dest), [b, a], &mut out);
        out
    }

    /// Merges `lists` `MERGE_LISTS` at a time until one list per probe is
    /// left, and returns where it is: in `dest` when given, else in a spare.
    /// Successive passes write to `spare[0]`, `spare[1]`, `spare[0]`, ...
    pub(crate) fn merge_until_one<'a>(
        &self,
        pass: &mut wgpu::ComputePass,
        shape: TopkShape,
        lists: Lists<'a>,
        dest: Option<Lists<'a>>,
        spare: [&'a Pairs; 2],
    ) -> Lists<'a> {
        let mut passes = Vec::new();
        let merged = self.merge_ready(shape, lists, dest, spare, &mut passes);
        for ready in &passes {
            self.dispatch(pass, ready, shape.probes);
        }
        merged
    }

    /// The passes of [`Topk::merge_until_one`], appended to `out`; where
    /// the one list ends up.
    fn merge_ready<'a>(
        &self,
        shape: TopkShape,
        mut lists: Lists<'a>,
        dest: Option<Lists<'a>>,
        mut spare: [&'a Pairs; 2],
        out: &mut Vec<ReadyPass>,
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
                counted: 0,
                _pad1: 0,
                _pad2: 0,
            };
            out.push(self.ready(lists.pairs, merged, params, &self.no_counts));
            lists = merged;
            spare.swap(0, 1);
        }
        lists
    }

    /// One top-k pass, made ready: a workgroup per output list and probe
    /// will read `input` (only each probe's first `counts[p]` when
    /// `params.counted`) as `params` says and write its list into `output`.
    pub(crate) fn ready(
        &self,
        input: &Pairs,
        output: Lists,
        params: TopkParams,
        counts: &wgpu::Buffer,
    ) -> ReadyPass {
        let params = uniform(&self.device, "topk params", &params);
        let group = bind(
            &self.device,
            &self.pipeline,
            &[
                &input.scores,
                &input.rows,
                &output.pairs.scores,
                &output.pairs.rows,
                &params,
                counts,
            ],
        );
        ReadyPass {
            group,
            lists: output.count,
        }
    }

    /// Dispatches a ready pass for `probes` probes.
    pub(crate) fn dispatch(&self, pass: &mut wgpu::ComputePass, ready: &ReadyPass, probes: u32) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &ready.group, &[]);
        pass.dispatch_workgroups(ready.lists, probes, 1);
    }
}

/// A top-k pass with its parameters and buffers bound, to dispatch for any
/// number of probes its buffers hold.
pub(crate) struct ReadyPass {
    group: wgpu::BindGroup,
    /// Lists it writes per probe (the dispatch's x).
    lists: u32,
}
