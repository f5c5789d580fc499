//! The plots, each drawn twice from one function generic over the plotters
//! backend: SVG (for documents) and PNG (for anything that shows images).
//!
//! Text needs a font: plotters' `ab_glyph` feature renders with a font we
//! register, DejaVu Sans embedded from assets/fonts/, so the PNGs have their
//! labels on any machine without fontconfig or system fonts.

mod cmc;
mod det;
mod groups;

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::Report;

/// Width and height of every plot, in pixels.
const SIZE: (u32, u32) = (900, 600);

/// The font of every label.
static FONT: &[u8] = include_bytes!("../../../../../assets/fonts/DejaVuSans.ttf");

/// Colours of the series, in order (colour-blind safe: blue, orange, green, red).
const COLOURS: [RGBColor; 4] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
];

/// A plot that can be drawn on any backend.
trait Figure {
    /// Draws the whole plot on `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>;
}

/// Writes det, cmc and groups as .svg and .png into `dir`.
pub fn write_all(dir: &Path, report: &Report) -> anyhow::Result<()> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the embedded font is not a font plotters can read"))?;
    both(dir, "det", &det::Det(report))?;
    both(dir, "cmc", &cmc::Cmc(report))?;
    both(dir, "groups", &groups::Groups(report))
}

/// Draws `fig` into `dir/name.svg` and `dir/name.png`.
fn both(dir: &Path, name: &str, fig: &impl Figure) -> anyhow::Result<()> {
    let svg = dir.join(format!("{name}.svg"));
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        fig.draw(&root)?;
        root.present()
            .map_err(|e| anyhow!("writing {}: {e}", svg.display()))?;
    }
    let mut rgb = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        fig.draw(&root)?;
        root.present()
            .map_err(|e| anyhow!("drawing {name}.png: {e}"))?;
    }
    write_png(&dir.join(format!("{name}.png")), &rgb)
}

/// Encodes an RGB buffer of [`SIZE`] as PNG.
fn write_png(path: &Path, rgb: &[u8]) -> anyhow::Result<()> {
    let at = || format!("writing {}", path.display());
    let file = std::io::BufWriter::new(std::fs::File::create(path).with_context(at)?);
    let mut enc = png::Encoder::new(file, SIZE.0, SIZE.1);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().with_context(at)?;
    w.write_image_data(rgb).with_context(at)?;
    w.finish().with_context(at)?;
    Ok(())
}

/// A drawing error, which borrows nothing, for `?`.
fn err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("drawing: {e}")
}

/// The decade at or below `v` (for the low end of a log axis).
fn decade_below(v: f64) -> f64 {
    10f64.powf(v.log10().floor())
}
