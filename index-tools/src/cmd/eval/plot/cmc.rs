//! cmc.svg/png: FNIR by rank without a threshold (investigative lists).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{COLOURS, Figure, err};
use crate::cmd::eval::report::Report;

/// The CMC of a report.
pub struct Cmc<'a>(pub &'a Report);

impl Figure for Cmc<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let cmc = &self.0.cmc;
        let points: Vec<(f64, f64)> = cmc
            .iter()
            .map(|c| (c.rank as f64, c.fnir.value().unwrap_or(0.0)))
            .collect();
        let y_hi = points.iter().map(|p| p.1).fold(0.0, f64::max).max(0.01) * 1.1;
        let x_hi = cmc.len().max(2) as f64;
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "CMC: FNIR by rank, no threshold ({} mated searches)",
                    self.0.probes.mated
                ),
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d(1.0..x_hi, 0.0..y_hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("rank r")
            .y_desc("FNIR(r): mate not within the top r")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.3}"))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(points.clone(), COLOURS[0].stroke_width(2)))
            .map_err(err)?;
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, COLOURS[0].filled())),
            )
            .map_err(err)?;
        Ok(())
    }
}
