//! What the benchmark binaries share: synthetic galleries of noise rows,
//! the load generator's machinery ([`load`]), and the int8 peak loops the
//! scan benchmark reads its kernels against ([`int8_peak`]).

#[cfg(feature = "faiss")]
pub mod faiss_peer;
pub mod int8_peak;
pub mod load;

use std::path::Path;
use std::sync::Arc;

use facegate_core::format::{BuildOptions, RowSource, build_gallery};
use facegate_core::{ElementType, Gallery, GalleryError};

/// The font plotters draws every label with: DejaVu Sans, embedded from
/// assets/fonts/. plotters renders text with ab_glyph (a workspace feature:
/// facegate-index draws PNGs without system font libraries), which knows
/// only fonts registered with it.
static PLOT_FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers `PLOT_FONT` (DejaVu Sans, bundled) as "sans-serif"; call before drawing a plot.
pub fn register_plot_font() -> anyhow::Result<()> {
    plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, PLOT_FONT)
        .map_err(|_| anyhow::anyhow!("the embedded plot font is not a font plotters can read"))
}

/// Uniform noise rows: a scan's speed does not depend on the values, and
/// this is far faster to generate than the synthetic population.
pub struct NoiseRows {
    dim: usize,
    rows: usize,
    state: u64,
}

impl NoiseRows {
    /// `rows` rows of `dim` values in [-0.5, 0.5).
    pub fn new(rows: usize, dim: usize) -> Self {
        Self::with_seed(rows, dim, 0)
    }

    /// Another stream of noise rows (probes that differ from the gallery).
    pub fn with_seed(rows: usize, dim: usize, seed: u64) -> Self {
        NoiseRows {
            dim,
            rows,
            // xorshift must not start at zero; the golden-ratio constant
            // keeps seed 0 equal to what `new` always produced.
            state: (0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0xbf58_476d_1ce4_e5b9)) | 1,
        }
    }
}

impl RowSource for NoiseRows {
    fn dim(&self) -> usize {
        self.dim
    }
    fn rows(&self) -> usize {
        self.rows
    }
    fn next_row(&mut self, out: &mut [f32]) -> Result<(), GalleryError> {
        for x in out.iter_mut() {
            // xorshift64*: fast, and good enough for benchmark data.
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d);
            *x = (v >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        }
        Ok(())
    }
    fn describe_row(&self, row: usize) -> String {
        format!("noise row {row}")
    }
}

/// Builds (replacing) and opens a noise gallery of two templates per subject.
pub fn noise_gallery(
    path: &Path,
    rows: usize,
    dim: usize,
    ty: ElementType,
) -> Result<Arc<Gallery>, GalleryError> {
    let ids: Vec<String> = (0..rows).map(|i| format!("s{}", i / 2)).collect();
    let opts = BuildOptions {
        scan_type: ty,
        model_tag: "bench".into(),
        overwrite: true,
    };
    build_gallery(
        path,
        &mut NoiseRows::new(rows, dim),
        &ids,
        "generated ids",
        &opts,
        &mut |_| {},
    )?;
    Ok(Arc::new(Gallery::open(path)?))
}
