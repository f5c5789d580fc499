//! det.svg/png: FNMR against FMR on log axes, with the operating threshold
//! and the EER marked.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{COLOURS, Figure, decade_below, err};
use crate::cmd::eval::report::Report;

/// The DET curve of a report.
pub struct Det<'a>(pub &'a Report);

impl Figure for Det<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let v = &self.0.verification;
        let rate = |r: &facegate_core::accuracy::Rate| r.value().unwrap_or(0.0);
        // Log axes cannot show a rate of 0: those points are left out.
        let points: Vec<(f64, f64)> = v
            .det
            .iter()
            .map(|p| (rate(&p.fmr), rate(&p.fnmr)))
            .filter(|&(x, y)| x > 0.0 && y > 0.0)
            .collect();
        let x_lo = decade_below(1.0 / v.impostor_pairs.max(1) as f64);
        let y_lo = decade_below(1.0 / v.genuine_pairs.max(1) as f64);
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "DET: {} genuine, {} impostor pairs",
                    v.genuine_pairs, v.impostor_pairs
                ),
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d((x_lo..1.0).log_scale(), (y_lo..1.0).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("false match rate, FMR (log)")
            .y_desc("false non-match rate, FNMR (log)")
            .x_label_formatter(&|x| format!("{x:.0e}"))
            .y_label_formatter(&|y| format!("{y:.0e}"))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(points, COLOURS[0].stroke_width(2)))
            .map_err(err)?
            .label("DET")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLOURS[0]));
        self.marks(&mut chart)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        Ok(())
    }
}

type Chart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<
        plotters::coord::combinators::LogCoord<f64>,
        plotters::coord::combinators::LogCoord<f64>,
    >,
>;

impl Det<'_> {
    /// The operating point and the EER, each where log axes can show it.
    fn marks<DB: DrawingBackend>(&self, chart: &mut Chart<DB>) -> anyhow::Result<()> {
        let v = &self.0.verification;
        let op = &v.at_operating_threshold;
        let (x, y) = (
            op.fmr.value().unwrap_or(0.0),
            op.fnmr.value().unwrap_or(0.0),
        );
        if x > 0.0 && y > 0.0 {
            let label = format!("threshold {}", self.0.threshold.value);
            chart
                .draw_series([Circle::new((x, y), 6, COLOURS[3].filled())])
                .map_err(err)?
                .label(label)
                .legend(|(x, y)| Circle::new((x + 10, y), 5, COLOURS[3].filled()));
        }
        let e = v.eer.eer;
        if e > 0.0 {
            chart
                .draw_series([TriangleMarker::new((e, e), 7, COLOURS[2].filled())])
                .map_err(err)?
                .label(format!("EER {e:.4}"))
                .legend(|(x, y)| TriangleMarker::new((x + 10, y), 5, COLOURS[2].filled()));
        }
        Ok(())
    }
}
