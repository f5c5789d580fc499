//! What the Rust engine and the WGSL kernels must agree on, declared once:
//! the constants both sides use and the uniform structs the engine uploads.
//!
//! The kernels do not declare these themselves: [`wgsl_prelude`] writes their
//! WGSL declarations from the definitions below, and every pipeline compiles
//! that prelude followed by its .wgsl file ([`crate::shaders::Kernel::source`]).
//! A value changed here therefore changes on both sides at once.
//! tests/shaders_validate.rs checks with naga what the prelude cannot
//! guarantee by construction: that WGSL lays each uniform struct out exactly
//! as `repr(C)` does, and that the top-k kernel declares
//! [`TOPK_WORKGROUP_BYTES`] of workgroup memory.

use std::fmt::Write;

/// Declares `u32` constants and lists them, by name, in [`CONSTANTS`] for the prelude.
macro_rules! shared_constants {
    ($($(#[doc = $doc:literal])* $name:ident = $value:expr;)*) => {
        $($(#[doc = $doc])* pub const $name: u32 = $value;)*

        /// Every constant shared with WGSL, by name, as the prelude declares them.
        pub const CONSTANTS: &[(&str, u32)] = &[$((stringify!($name), $name)),*];
    };
}

shared_constants! {
    /// Probes one score invocation scores, so that each row word it reads
    /// serves that many probes.
    PROBE_TILE = 8;
    /// Workgroup width of the score kernels: rows scored per workgroup.
    SCORE_WORKGROUP = 64;
    /// Workgroup width of the top-k kernel; also the smallest K it accepts.
    TOPK_WORKGROUP = 256;
    /// Largest K (candidates one top-k workgroup keeps); when a search needs
    /// more candidate rows than this, the CPU engine answers it.
    TOPK_MAX_K = 1024;
    /// Entries of the top-k kernel's workgroup buffer: the K kept and up to K appended.
    TOPK_CAPACITY = 2 * TOPK_MAX_K;
    /// The row the top-k kernel writes for a missing candidate, which
    /// `CpuEngine::rank_candidates` skips (it is `u32::MAX` there too).
    NO_ROW = u32::MAX;
    /// Rows interleaved together in the second design's layout (and scored
    /// by one workgroup of the scan kernel): 16-byte chunk c of row r is
    /// unit `((r / 32) * chunks + c) * 32 + r % 32`, so the rows of a group
    /// lie in one contiguous block, chunk by chunk.
    SCAN_GROUP_ROWS = 32;
    /// Invocations of one scan workgroup.
    SCAN_WORKGROUP = 128;
    /// Most 16-byte chunks of a row the scan kernel holds (512 int8 dimensions).
    SCAN_MAX_CHUNKS = 32;
    /// Workgroup width of the read-bandwidth kernel.
    BANDWIDTH_WORKGROUP = 256;
}

/// Probe-row pairs one scan invocation may score per row chunk it reads, at
/// most: the largest [`ScanShape::thread_probes`].
pub const SCAN_MAX_THREAD_PROBES: u32 = 8;

/// What one scan pipeline is compiled for, declared as WGSL constants before
/// the kernel (after the prelude), so that its loops have constant bounds
/// and its workgroup arrays the gallery's size: the gallery's chunks per
/// row, and how many probes each invocation scores per row word it reads
/// (1 for the smallest batches, where more would score padding; more for
/// large ones, where each word then serves more probes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanShape {
    /// 16-byte chunks per row, 1 ..= [`SCAN_MAX_CHUNKS`].
    pub chunks: u32,
    /// Probes one invocation scores: 1, 2, 4 or [`SCAN_MAX_THREAD_PROBES`]
    /// (the probe tile is 4 times as many).
    pub thread_probes: u32,
    /// Which of the scan kernels.
    pub kernel: ScanKernel,
    /// The side of the cooperative matrices [`ScanKernel::Coop`] multiplies
    /// ([`COOP_TILES`]: what the device offers); unused by the others.
    pub coop_tile: u32,
}

/// The sides of the f16 x f16 -> f32 cooperative matrices the coop kernel
/// can be compiled for, in order of preference: 16 (the H200's; WGSL's
/// `coop_mat16x16`) and 8 (lavapipe's from Mesa 25.1 on; `coop_mat8x8`).
pub const COOP_TILES: [u32; 2] = [16, 8];

/// Dimensions of the K slice the coop kernel widens to f16 in workgroup
/// memory at a time (2 chunks of 16): small enough that the largest probe
/// tile's slices fit the 32 KiB of workgroup memory lavapipe offers.
pub const COOP_SLICE: u32 = 32;

/// The coop kernel's row stride in workgroup memory, in f16: the slice
/// and 8 more, so that the rows an invocation stage writes start in
/// different banks (and every row stays 16-byte aligned).
pub const COOP_STRIDE: u32 = COOP_SLICE + 8;

/// The scan kernels, all with the same bindings, cut and appends; they
/// differ in where a group's rows are held while scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScanKernel {
    /// `scan_int8.wgsl`: the group staged in workgroup memory, each
    /// invocation a row against `thread_probes` probes of the tile.
    #[default]
    Staged,
    /// `scan_int8_direct.wgsl`: each invocation a share of a row's chunks
    /// in registers against the whole tile, partial sums added in
    /// workgroup memory.
    Direct,
    /// `scan_int8_rows.wgsl`: each invocation a whole row read straight
    /// from memory against the whole tile; several groups a workgroup.
    Rows,
    /// `scan_f16_coop.wgsl`: the rows and probes widened to f16 in
    /// workgroup memory and multiplied as cooperative matrices (tensor
    /// cores), f32 accumulation, so scores stay exact; several groups a
    /// workgroup, one per 32 invocations. Only on devices that offer f16
    /// cooperative matrices with f32 results of a side in [`COOP_TILES`].
    Coop,
}

impl ScanKernel {
    /// Every int8 kernel, which any device runs, for tests and the
    /// benchmark ([`ScanKernel::Coop`] needs a device that offers it).
    pub const ALL: [ScanKernel; 3] = [ScanKernel::Staged, ScanKernel::Direct, ScanKernel::Rows];

    /// Row groups one workgroup scores: the dispatch is the groups divided
    /// by this, rounded up.
    pub const fn groups_per_workgroup(self) -> u32 {
        match self {
            ScanKernel::Rows | ScanKernel::Coop => SCAN_WORKGROUP / SCAN_GROUP_ROWS,
            ScanKernel::Staged | ScanKernel::Direct => 1,
        }
    }

    /// The most workgroup memory any of this kernel's shapes declares
    /// (512 dimensions, the largest probe tile, the larger cooperative
    /// tile): what the engine checks the adapter offers.
    pub const fn max_workgroup_bytes(self) -> u32 {
        ScanShape {
            chunks: SCAN_MAX_CHUNKS,
            thread_probes: SCAN_MAX_THREAD_PROBES,
            kernel: self,
            coop_tile: COOP_TILES[0],
        }
        .workgroup_bytes()
    }
}

impl ScanShape {
    /// Probes a workgroup holds in workgroup memory at a time: 4 per
    /// thread probe for the int8 kernels, 16 for the coop kernel (one
    /// 16-row cooperative tile, or two of 8, per thread probe).
    pub const fn probe_tile(self) -> u32 {
        match self.kernel {
            ScanKernel::Coop => 16 * self.thread_probes,
            _ => SCAN_WORKGROUP / SCAN_GROUP_ROWS * self.thread_probes,
        }
    }

    /// Workgroup memory the kernel declares: a tile of probes, and a
    /// group's rows (staged) or every invocation's partial sums for the
    /// tile (direct). tests/shaders_validate.rs checks this against naga's
    /// layout.
    pub const fn workgroup_bytes(self) -> u32 {
        let probes = self.probe_tile() * self.chunks * 16;
        match self.kernel {
            ScanKernel::Staged => probes + SCAN_GROUP_ROWS * self.chunks * 16,
            ScanKernel::Direct => probes + SCAN_WORKGROUP * self.probe_tile() * 4,
            ScanKernel::Rows => probes,
            // The probe and row slices in f16, and each 32 invocations'
            // scores of one cooperative row of probes in f32.
            ScanKernel::Coop => {
                let rows = SCAN_WORKGROUP;
                (self.probe_tile() + rows) * COOP_STRIDE * 2 + rows * self.coop_tile * 4
            }
        }
    }

    /// The WGSL constants the scan kernel uses but neither it nor the
    /// prelude declares.
    pub fn wgsl(self) -> String {
        let mut out = format!(
            "const SCAN_CHUNKS: u32 = {}u;\nconst SCAN_THREAD_PROBES: u32 = {}u;\nconst SCAN_PROBE_TILE: u32 = {}u;\n",
            self.chunks,
            self.thread_probes,
            self.probe_tile()
        );
        if self.kernel == ScanKernel::Coop {
            let t = self.coop_tile;
            // Infallible: writing to a String.
            let _ = write!(
                out,
                "const COOP_TILE: u32 = {t}u;\nconst COOP_SLICE: u32 = {COOP_SLICE}u;\n\
                 const COOP_STRIDE: u32 = {COOP_STRIDE}u;\n\
                 alias CoopA = coop_mat{t}x{t}<f16, A>;\nalias CoopB = coop_mat{t}x{t}<f16, B>;\n\
                 alias CoopC = coop_mat{t}x{t}<f32, C>;\n"
            );
        }
        out
    }

    /// The directives the kernel's module must start with (before the
    /// prelude): f16 and cooperative matrices for the coop kernel.
    pub fn enables(self) -> &'static str {
        match self.kernel {
            ScanKernel::Coop => "enable f16;\nenable wgpu_cooperative_matrix;\n",
            _ => "",
        }
    }
}

// The top-k kernel's bitonic sort needs a power-of-two buffer, and K is
// chosen between TOPK_WORKGROUP and TOPK_MAX_K.
const _: () = assert!(TOPK_MAX_K.is_power_of_two() && TOPK_WORKGROUP.is_power_of_two());
const _: () = assert!(TOPK_WORKGROUP <= TOPK_MAX_K);

/// Workgroup memory the top-k kernel declares, checked against the adapter's
/// limit before the engine starts: keys (f32) and rows (u32) of
/// [`TOPK_CAPACITY`] entries, and five 4-byte scalars (the append counter, its
/// uniform copy, the cut's key and row, and the probe's input count). tests/shaders_validate.rs checks
/// this against naga's layout of topk.wgsl.
pub const TOPK_WORKGROUP_BYTES: u32 = TOPK_CAPACITY * (4 + 4) + 5 * 4;

/// How a uniform struct is laid out in Rust: what the prelude declares in
/// WGSL, and what the layout test compares naga's layout with.
#[derive(Debug, Clone, Copy)]
pub struct UniformLayout {
    /// The struct's name, the same in Rust and WGSL.
    pub name: &'static str,
    /// `size_of` the Rust struct: the bytes the engine uploads.
    pub size: usize,
    /// Each member's name and `offset_of` in the Rust struct, in order.
    pub members: &'static [(&'static str, usize)],
}

/// Declares `repr(C)` structs of `u32` members (so WGSL's uniform layout rules
/// cannot pad them differently: padding is spelled out as members) and lists
/// their layouts in [`UNIFORMS`] for the prelude and the layout test.
macro_rules! uniform_structs {
    ($($(#[doc = $doc:literal])* struct $name:ident {
        $($(#[doc = $mdoc:literal])* $member:ident,)*
    })*) => {
        $(
            $(#[doc = $doc])*
            #[repr(C)]
            #[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
            pub struct $name {
                $($(#[doc = $mdoc])* pub $member: u32,)*
            }
        )*

        /// Every uniform struct shared with WGSL, as the prelude declares them.
        pub const UNIFORMS: &[UniformLayout] = &[$(UniformLayout {
            name: stringify!($name),
            size: std::mem::size_of::<$name>(),
            members: &[$((stringify!($member), std::mem::offset_of!($name, $member))),*],
        }),*];
    };
}

uniform_structs! {
    /// The score kernels' parameters (binding 5) for one chunk and probe batch.
    struct ScoreParams {
        /// Rows in the chunk.
        rows,
        /// Words (u32, or vec4 for f32) of one probe, padding included.
        dim_words,
        /// Words from one row to the next.
        stride_words,
        /// Probes in the batch.
        probes,
    }

    /// The top-k kernel's parameters (binding 4) for one pass: a selection
    /// from a chunk's score matrix or a merge of candidate lists.
    struct TopkParams {
        /// Inputs per probe.
        n_in,
        /// Distance between two probes' inputs.
        in_stride,
        /// Inputs one workgroup reduces to one list.
        seg_len,
        /// Candidates kept per list (M).
        m,
        /// The most candidates one workgroup keeps while it selects (K: a
        /// power of two, `k_least <= K <= TOPK_MAX_K`); a workgroup keeps
        /// fewer, down to `k_least`, when its segment holds fewer inputs.
        k,
        /// The fewest it keeps: a power of two, at least `TOPK_WORKGROUP`
        /// and M.
        k_least,
        /// 1 when the inputs are (score, row) pairs, 0 when they are scores of
        /// rows `row_base + i`.
        from_pairs,
        /// Gallery row of the first score (selection only).
        row_base,
        /// Distance between two probes' outputs.
        out_stride,
        /// Offset of the first output list within a probe's outputs.
        out_base,
        /// 1 when each probe's inputs are only the first `counts[p]` (at most
        /// `n_in`): the second design's candidate lists.
        counted,
        /// Padding.
        _pad2,
    }

    /// The second design's scan kernel parameters (binding 8) for one
    /// dispatch over a buffer of interleaved row groups.
    struct ScanParams {
        /// Row groups in the buffer.
        groups,
        /// Valid rows in the buffer (the last group may be padded).
        rows,
        /// Padding (the chunks per row are the pipeline's constant
        /// `SCAN_CHUNKS`, not a parameter).
        _pad3,
        /// Probes in the batch.
        probes,
        /// Gallery row of the buffer's first row (what candidate lists name).
        row_base,
        /// 1: write every score to `out_scores[q * out_stride + row]` (the
        /// pilot); 0: append rows scoring at or above the probe's cut.
        dense,
        /// Dense: entries per probe of the score matrix. Lists: entries per
        /// probe of the lists (their capacity).
        out_stride,
        /// Where probe q's cut is: `cuts[q * cut_stride + cut_index]`.
        cut_stride,
        /// See `cut_stride`.
        cut_index,
        /// Padding to 48 bytes.
        _pad0,
        /// Padding.
        _pad1,
        /// Padding.
        _pad2,
    }
}

/// The WGSL declarations of every shared constant and uniform struct, which
/// each kernel's source starts with.
pub fn wgsl_prelude() -> String {
    let mut out =
        String::from("// Generated from facegate-gpu/src/shared.rs: what Rust and WGSL share.\n");
    for (name, value) in CONSTANTS {
        // Infallible: writing to a String.
        let _ = writeln!(out, "const {name}: u32 = {value}u;");
    }
    for layout in UNIFORMS {
        let _ = writeln!(out, "struct {} {{", layout.name);
        for (member, _) in layout.members {
            let _ = writeln!(out, "    {member}: u32,");
        }
        out.push_str("}\n");
    }
    out
}
