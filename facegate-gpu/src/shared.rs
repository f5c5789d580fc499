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
}

// The top-k kernel's bitonic sort needs a power-of-two buffer, and K is
// chosen between TOPK_WORKGROUP and TOPK_MAX_K.
const _: () = assert!(TOPK_MAX_K.is_power_of_two() && TOPK_WORKGROUP.is_power_of_two());
const _: () = assert!(TOPK_WORKGROUP <= TOPK_MAX_K);

/// Workgroup memory the top-k kernel declares, checked against the adapter's
/// limit before the engine starts: keys (f32) and rows (u32) of
/// [`TOPK_CAPACITY`] entries, and four 4-byte scalars (the append counter, its
/// uniform copy, and the cut's key and row). tests/shaders_validate.rs checks
/// this against naga's layout of topk.wgsl.
pub const TOPK_WORKGROUP_BYTES: u32 = TOPK_CAPACITY * (4 + 4) + 4 * 4;

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
        /// Candidates one workgroup keeps while it selects (K: a power of two,
        /// `TOPK_WORKGROUP <= K <= TOPK_MAX_K`, `K >= M`).
        k,
        /// 1 when the inputs are (score, row) pairs, 0 when they are scores of
        /// rows `row_base + i`.
        from_pairs,
        /// Gallery row of the first score (selection only).
        row_base,
        /// Distance between two probes' outputs.
        out_stride,
        /// Offset of the first output list within a probe's outputs.
        out_base,
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
