//! The WGSL kernels, embedded at build time from the repository's shaders/
//! directory, and the source each pipeline compiles: the prelude generated
//! from [`crate::shared`] (the constants and uniform structs the files use but
//! do not declare) followed by the file. Each file's header comment gives its
//! bindings and workgroup layout.

use facegate_core::ElementType;

use crate::shared::{
    COOP_TILES, SCAN_MAX_CHUNKS, SCAN_MAX_THREAD_PROBES, ScanKernel, ScanShape, wgsl_prelude,
};

/// One compute kernel of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// int8 rows x int8 probes with `dot4I8Packed`.
    ScoreInt8,
    /// f16 rows (read as packed pairs) x f32 probes.
    ScoreF16,
    /// f32 rows x f32 probes.
    ScoreF32,
    /// Per-segment top-M selection and merging in workgroup memory.
    Topk,
    /// The second design's int8 scan: interleaved row groups in workgroup
    /// memory, probes in tiles, candidates appended at or above a cut.
    ScanInt8,
    /// Reads a buffer once: the device's read bandwidth, the scan's limit.
    ReadBandwidth,
    /// The second design's int8 scan with the rows in registers (a variant
    /// to measure beside [`Kernel::ScanInt8`]).
    ScanInt8Direct,
    /// The second design's int8 scan with one row per invocation (a
    /// variant for small batches, to measure beside [`Kernel::ScanInt8`]).
    ScanInt8Rows,
    /// The second design's scan on f16 cooperative matrices (tensor
    /// cores), exact for int8 rows; for large batches, where the device
    /// offers them.
    ScanCoop,
}

impl Kernel {
    /// Every kernel, for validation and diagnostics.
    pub const ALL: [Kernel; 9] = [
        Kernel::ScoreInt8,
        Kernel::ScoreF16,
        Kernel::ScoreF32,
        Kernel::Topk,
        Kernel::ScanInt8,
        Kernel::ReadBandwidth,
        Kernel::ScanInt8Direct,
        Kernel::ScanInt8Rows,
        Kernel::ScanCoop,
    ];

    /// The score kernel for a gallery whose scan rows are of type `ty`.
    pub fn score(ty: ElementType) -> Kernel {
        match ty {
            ElementType::Int8 => Kernel::ScoreInt8,
            ElementType::F16 => Kernel::ScoreF16,
            ElementType::F32 => Kernel::ScoreF32,
        }
    }

    /// The kernel's file name in shaders/, which also labels its pipeline.
    pub fn file_name(self) -> &'static str {
        match self {
            Kernel::ScoreInt8 => "score_int8.wgsl",
            Kernel::ScoreF16 => "score_f16.wgsl",
            Kernel::ScoreF32 => "score_f32.wgsl",
            Kernel::Topk => "topk.wgsl",
            Kernel::ScanInt8 => "scan_int8.wgsl",
            Kernel::ReadBandwidth => "read_bandwidth.wgsl",
            Kernel::ScanInt8Direct => "scan_int8_direct.wgsl",
            Kernel::ScanInt8Rows => "scan_int8_rows.wgsl",
            Kernel::ScanCoop => "scan_f16_coop.wgsl",
        }
    }

    /// The file as written: not valid WGSL on its own, since it uses the
    /// prelude's declarations.
    pub fn file(self) -> &'static str {
        match self {
            Kernel::ScoreInt8 => include_str!("../../shaders/score_int8.wgsl"),
            Kernel::ScoreF16 => include_str!("../../shaders/score_f16.wgsl"),
            Kernel::ScoreF32 => include_str!("../../shaders/score_f32.wgsl"),
            Kernel::Topk => include_str!("../../shaders/topk.wgsl"),
            Kernel::ScanInt8 => include_str!("../../shaders/scan_int8.wgsl"),
            Kernel::ReadBandwidth => include_str!("../../shaders/read_bandwidth.wgsl"),
            Kernel::ScanInt8Direct => include_str!("../../shaders/scan_int8_direct.wgsl"),
            Kernel::ScanInt8Rows => include_str!("../../shaders/scan_int8_rows.wgsl"),
            Kernel::ScanCoop => include_str!("../../shaders/scan_f16_coop.wgsl"),
        }
    }

    /// What the pipeline compiles: the shared prelude, then the file. A
    /// marker line says where the file starts, to map line numbers in
    /// compiler errors back to it. The scan kernel gets the default shape
    /// ([`Kernel::scan_source`] for another).
    pub fn source(self) -> String {
        let kernel = match self {
            Kernel::ScanInt8 => ScanKernel::Staged,
            Kernel::ScanInt8Direct => ScanKernel::Direct,
            Kernel::ScanInt8Rows => ScanKernel::Rows,
            Kernel::ScanCoop => ScanKernel::Coop,
            _ => return self.source_with("", ""),
        };
        Kernel::scan_source(ScanShape {
            kernel,
            ..DEFAULT_SCAN_SHAPE
        })
    }

    /// The scan kernel `shape` names, compiled for it: after its enable
    /// directives and the prelude, the shape's constants and what every
    /// scan kernel shares (`shaders/scan_common.wgsl`: bindings, `dot16`,
    /// `emit`), and for the int8 kernels their probe tile
    /// (`shaders/scan_probe_tile.wgsl`).
    pub fn scan_source(shape: ScanShape) -> String {
        let (kernel, probe_tile) = match shape.kernel {
            ScanKernel::Staged => (Kernel::ScanInt8, SCAN_PROBE_TILE),
            ScanKernel::Direct => (Kernel::ScanInt8Direct, SCAN_PROBE_TILE),
            ScanKernel::Rows => (Kernel::ScanInt8Rows, SCAN_PROBE_TILE),
            ScanKernel::Coop => (Kernel::ScanCoop, ""),
        };
        let extra = format!("{}{SCAN_COMMON}{probe_tile}", shape.wgsl());
        kernel.source_with(shape.enables(), &extra)
    }

    fn source_with(self, enables: &str, extra: &str) -> String {
        let prelude = format!("{enables}{}{extra}", wgsl_prelude());
        let first_line = prelude.lines().count() + 2;
        format!(
            "{prelude}// shaders/{}, whose line 1 is line {first_line} here:\n{}",
            self.file_name(),
            self.file()
        )
    }
}

/// What the scan kernels share, put before each of them.
const SCAN_COMMON: &str = include_str!("../../shaders/scan_common.wgsl");

/// The int8 scan kernels' probe tile, put after [`SCAN_COMMON`].
const SCAN_PROBE_TILE: &str = include_str!("../../shaders/scan_probe_tile.wgsl");

/// The shape [`Kernel::source`] compiles the scan kernel for (512
/// dimensions, the largest probe tile): what the validation tests check.
pub const DEFAULT_SCAN_SHAPE: ScanShape = ScanShape {
    chunks: SCAN_MAX_CHUNKS,
    thread_probes: SCAN_MAX_THREAD_PROBES,
    kernel: ScanKernel::Staged,
    coop_tile: COOP_TILES[0],
};
