//! The accuracy figure: FPIR against the number of people searched, one
//! line per threshold, with 95 % intervals and what independence predicts.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::Rate;

/// Colours of successive thresholds.
const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(230, 120, 0),
    RGBColor(200, 30, 30),
    RGBColor(0, 140, 60),
];

/// Draws `rates` on log-log axes. A size with no false positive is drawn at
/// the top of its interval as a hollow marker (an upper bound, not a rate).
pub fn write_svg(
    path: &Path,
    rates: &[Rate],
    subjects: usize,
    probes: usize,
) -> anyhow::Result<()> {
    facegate_benchmarks::register_plot_font()?;
    let x_hi = rates.iter().map(|r| r.searched).max().unwrap_or(1) as f64 * 2.0;
    let x_lo = rates.iter().map(|r| r.searched).min().unwrap_or(1) as f64 / 2.0;
    let y_lo = rates
        .iter()
        .map(|r| {
            if r.false_positives > 0 {
                r.ci95.0
            } else {
                r.ci95.1
            }
        })
        .chain(rates.iter().map(|r| r.predicted))
        .filter(|&v| v > 0.0)
        .fold(1.0, f64::min)
        / 2.0;
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "FPIR against people searched ({subjects} synthetic subjects, {probes} non-mated probes)"
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..1.0).log_scale())?;
    chart
        .configure_mesh()
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .x_desc("people searched (log): manifests of 420 and 42,000, then the whole gallery")
        .y_desc("false-positive identification rate (log)")
        .draw()?;
    let mut thresholds: Vec<f32> = rates.iter().map(|r| r.threshold).collect();
    thresholds.sort_by(f32::total_cmp);
    thresholds.dedup();
    for (i, &th) in thresholds.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut at: Vec<&Rate> = rates.iter().filter(|r| r.threshold == th).collect();
        at.sort_by_key(|r| r.searched);
        draw_threshold(&mut chart, &at, colour, th)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::combinators::LogCoord<f64>,
        plotters::coord::combinators::LogCoord<f64>,
    >,
>;

/// One threshold: measured points with their intervals, joined where a
/// false positive was seen, and the dashed prediction.
fn draw_threshold(
    chart: &mut Chart,
    at: &[&Rate],
    colour: RGBColor,
    th: f32,
) -> anyhow::Result<()> {
    let x = |r: &Rate| r.searched as f64;
    let seen: Vec<(f64, f64)> = at
        .iter()
        .filter(|r| r.false_positives > 0)
        .map(|r| (x(r), r.fpir))
        .collect();
    chart
        .draw_series(LineSeries::new(seen, colour.stroke_width(2)).point_size(4))?
        .label(format!("measured, threshold {th:.2}"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    chart.draw_series(
        at.iter()
            .filter(|r| r.false_positives > 0)
            .map(|r| ErrorBar::new_vertical(x(r), r.ci95.0, r.fpir, r.ci95.1, colour.filled(), 8)),
    )?;
    chart.draw_series(
        at.iter()
            .filter(|r| r.false_positives == 0)
            .map(|r| Circle::new((x(r), r.ci95.1), 5, colour.stroke_width(2))),
    )?;
    chart.draw_series(DashedLineSeries::new(
        at.iter().map(|r| (x(r), r.predicted)),
        6,
        4,
        colour.mix(0.6).into(),
    ))?;
    Ok(())
}
