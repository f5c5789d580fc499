//! The top-k kernel's passes, which both designs share: candidate lists
//! of (score, row) pairs, selection from a score matrix, and merges until
//! one list per probe is left.

use crate::buffers::{ChunkRange, scratch, uniform, upload};
use crate::pipeline::bind;
use crate::shared::{TOPK_MAX_K, TOPK_WORKGROUP, TopkParams};

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

/// How the top-k kernel is compiled and how much it keeps while it
/// selects; the defaults are what the engine runs, the rest are for the
/// benchmark to compare.
#[derive(Debug, Clone, Copy, Default)]
pub struct TopkOptions {
    /// Compile the kernel with naga's bounds clamps and loop guards (as
    /// every run before the fourth H200 run did). Off by default: the
    /// module is trusted ([`crate::pipeline::topk`] says why that is sound),
    /// as the scan kernel is, which ran 2.2 to 3.1 times faster so.
    pub runtime_checks: bool,
    /// The K every pass keeps (a power of two, at least M, `TOPK_WORKGROUP`
    /// and at most `TOPK_MAX_K`), instead of one chosen from each pass's
    /// segment (`k_for` in topk.rs). `Some(TOPK_WORKGROUP)` is the rule the first
    /// three H200 runs used.
    pub keep: Option<u32>,
}

/// The most a workgroup of a pass keeps (the kernel's K) when the pass
/// reads segments of `seg_len` inputs and keeps `m`: the smallest power of
/// two that holds the whole segment (or `keep`, rounded up to one), between
/// the smallest the kernel accepts for M and `TOPK_MAX_K`. Each workgroup
/// keeps the smallest power of two that holds the inputs its segment
/// actually has, within the same bounds, so that the mostly empty
/// segments of a counted list sort no more than before.
///
/// Why: the kernel folds its appended half in (a bitonic sort of 2K
/// entries, log2(2K) (log2(2K) + 1) / 2 stages, each ending at a barrier)
/// whenever the next block of `TOPK_WORKGROUP` inputs could overflow that
/// half. With K = `TOPK_WORKGROUP` that is after every block that appended
/// anything: a 4,096-entry segment of shuffled scores is about 16 folds of
/// 45 stages. With K = 1,024 the first four blocks fill the half, one fold
/// sets a cut at the M-th best of 1,024, and few later inputs pass it: about
/// two folds of 66 stages. The first count is what the H200's
/// 0.28 and 0.36 ms for the pilot's and the final selection at one probe
/// fit (about 900 cycles a stage; run 2's one workgroup over a whole list,
/// some 94 folds, took 1.97 ms). The workgroup memory is the same: the
/// kernel declares 2 x `TOPK_MAX_K` entries whatever K is.
pub(crate) fn k_for(m: u32, seg_len: u32, keep: Option<u32>) -> u32 {
    let least = TOPK_WORKGROUP.max(m.next_power_of_two());
    keep.unwrap_or(seg_len)
        .next_power_of_two()
        .min(TOPK_MAX_K)
        .max(least)
}

/// The sizes every top-k pass of one batch shares.
#[derive(Clone, Copy)]
pub(crate) struct TopkShape {
    /// Probes in the batch (the dispatch's y).
    pub(crate) probes: u32,
    /// Candidates kept per list.
    pub(crate) m: u32,
}

impl TopkShape {
    /// The sizes for `probes` probes keeping `m` candidates (at least 1, at
    /// most `TOPK_MAX_K`: the engine answers larger M on the CPU).
    pub(crate) fn new(probes: usize, m: u32) -> TopkShape {
        TopkShape {
            probes: probes as u32,
            m,
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
    /// The K every pass keeps, when the options force one.
    keep: Option<u32>,
}

impl Topk {
    /// Compiles the kernel on `device` as `opts` say.
    pub(crate) fn new(device: &wgpu::Device, opts: TopkOptions) -> Topk {
        Topk {
            device: device.clone(),
            pipeline: crate::pipeline::topk(device, opts.runtime_checks),
            no_counts: upload(device, "no counts", &[0; 4]),
            keep: opts.keep,
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
            k: self.k_for(shape, SEG_LEN),
            k_least: self.k_least(shape),
            from_pairs: 0,
            row_base: chunk.first_row,
            out_stride: per_segment.stride,
            out_base: per_segment.base,
            counted: 0,
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
            k: self.k_for(shape, capacity.div_ceil(segments)),
            k_least: self.k_least(shape),
            from_pairs: 1,
            row_base: 0,
            out_stride: per_segment.stride,
            out_base: per_segment.base,
            counted: 1,
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
                k: self.k_for(shape, MERGE_LISTS * shape.m),
                k_least: self.k_least(shape),
                from_pairs: 1,
                row_base: 0,
                out_stride: merged.stride,
                out_base: merged.base,
                counted: 0,
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

    /// The most a workgroup of a pass over segments of `seg_len` inputs
    /// keeps ([`k_for`]).
    fn k_for(&self, shape: TopkShape, seg_len: u32) -> u32 {
        k_for(shape.m, seg_len, self.keep)
    }

    /// The least a workgroup keeps (the kernel keeps the smallest power of
    /// two that holds its segment's inputs, between this and the pass's
    /// K): the kernel's least for M, or the forced K.
    fn k_least(&self, shape: TopkShape) -> u32 {
        k_for(shape.m, 1, self.keep)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_holds_the_segment_within_the_kernels_bounds_and_is_a_power_of_two() {
        // The pilot's and the final selection's segments of 4,096: the largest K.
        assert_eq!(k_for(40, SEG_LEN, None), TOPK_MAX_K);
        // A merge of 8 lists of 40: one fold at the end.
        assert_eq!(k_for(40, MERGE_LISTS * 40, None), 512);
        // Short segments: never below the workgroup or M.
        assert_eq!(k_for(40, 10, None), TOPK_WORKGROUP);
        assert_eq!(k_for(600, 10, None), 1024);
        // A forced K: rounded up to a power of two, within the same bounds.
        assert_eq!(k_for(40, SEG_LEN, Some(TOPK_WORKGROUP)), TOPK_WORKGROUP);
        assert_eq!(k_for(300, SEG_LEN, Some(TOPK_WORKGROUP)), 512);
        assert_eq!(k_for(40, SEG_LEN, Some(300)), 512);
        assert_eq!(k_for(40, SEG_LEN, Some(1 << 20)), TOPK_MAX_K);
        for m in 1..=TOPK_MAX_K {
            for seg in [1, 100, 320, 4096, 1 << 20] {
                let k = k_for(m, seg, None);
                assert!(
                    k.is_power_of_two() && k >= m && (TOPK_WORKGROUP..=TOPK_MAX_K).contains(&k)
                );
            }
        }
    }
}
