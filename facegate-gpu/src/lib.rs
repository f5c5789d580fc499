//! facegate-gpu: the WGSL search engine, run through wgpu.
//!
//! The gallery's scan rows are uploaded once into GPU storage buffers, in
//! chunks sized from the adapter's limits (or, beyond the memory budget,
//! streamed from the host map through two chunk buffers on every search). A search scores a batch of probes
//! against every chunk ([`shaders`]: int8 with `dot4I8Packed`, f16, f32), keeps
//! each probe's best rows with a top-k kernel in workgroup memory, merges the
//! partial lists on the GPU, and reads back only B x M candidates. The CPU
//! engine then finishes them exactly as it finishes its own scan (distinct
//! subjects, exact re-score). For int8 galleries the GPU's scan scores are
//! bit-identical to the CPU's, so both engines give the same answers; for
//! f16/f32 the scan scores differ in the last bits (summation order), and the
//! exact re-score of a 2k-subject pool makes a difference in the final top-k
//! possible only among subjects whose scores agree to within rounding.
//!
//! Two designs search ([`engine::Design`]). The first scores each chunk
//! into a probe x row matrix in device memory and selects from it. The
//! second (int8 galleries, the default where it fits) keeps the rows
//! interleaved by groups of 32 ([`interleave`]), reads the gallery once
//! per batch of up to 1,024 probes with the batch's probes in workgroup
//! memory, and writes no score matrix: a pilot over a sample gives each
//! probe a cut no higher than its true M-th best, and only rows at or above
//! it are appended to a bounded list ([`plan`], [`scan`]).
//!
//! Modules: [`device`] (adapter and device), [`shared`] (the constants and
//! uniform structs Rust and WGSL share, and the WGSL prelude declaring them),
//! [`shaders`] (WGSL sources), [`pipeline`] (compute pipelines), [`buffers`]
//! (gallery chunks on the GPU and transfers), [`engine`] (the `SearchEngine`).

pub mod bandwidth;
pub mod buffers;
pub mod device;
pub mod engine;
pub mod interleave;
pub mod pipeline;
pub mod plan;
pub mod scan;
pub mod shaders;
pub mod shared;
pub mod stages;
mod topk;

pub use device::{DeviceOptions, GpuDevice};
pub use engine::{Design, GpuEngine, GpuOptions};
pub use scan::ScanOptions;
pub use stages::{STAGES, StageTimes};
pub use topk::TopkOptions;

/// Why the GPU engine could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No usable adapter: none at all, or only software ones when those were not allowed.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The device could not be created.
    #[error("GPU device request failed: {0}")]
    Device(String),
    /// The gallery or request does not fit what this engine supports.
    #[error("GPU engine cannot serve this: {0}")]
    Unsupported(String),
    /// A GPU operation failed (validation, out of memory, device lost).
    #[error("GPU operation failed: {0}")]
    Operation(String),
}
