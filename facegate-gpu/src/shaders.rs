//! The WGSL sources, embedded at build time from the repository's shaders/
//! directory. Each file's header comment gives its bindings and workgroup layout.

/// int8 rows x int8 probes with `dot4I8Packed`.
pub const SCORE_INT8: &str = include_str!("../../shaders/score_int8.wgsl");
/// f16 rows (read as packed pairs) x f32 probes.
pub const SCORE_F16: &str = include_str!("../../shaders/score_f16.wgsl");
/// f32 rows x f32 probes.
pub const SCORE_F32: &str = include_str!("../../shaders/score_f32.wgsl");
/// Per-segment top-M selection and merging in workgroup memory.
pub const TOPK: &str = include_str!("../../shaders/topk.wgsl");

/// Every shader with its file name, for validation and diagnostics.
pub const ALL: [(&str, &str); 4] = [
    ("score_int8.wgsl", SCORE_INT8),
    ("score_f16.wgsl", SCORE_F16),
    ("score_f32.wgsl", SCORE_F32),
    ("topk.wgsl", TOPK),
];

/// Probes scored per invocation (PROBE_TILE in the score shaders).
pub const PROBE_TILE: u32 = 8;
/// Workgroup width of the score shaders.
pub const SCORE_WORKGROUP: u32 = 64;
/// Workgroup width of the top-k shader.
pub const TOPK_WORKGROUP: u32 = 256;
/// Largest K (kept candidates per workgroup) the top-k shader's buffer holds.
pub const TOPK_MAX_K: u32 = 1024;
