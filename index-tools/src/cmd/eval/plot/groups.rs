//! groups.svg/png: FPIR and FNIR per group at the operating threshold, as
//! bars with their bootstrap intervals, one panel per rate (their scales
//! differ by orders of magnitude).

use facegate_core::accuracy::{GroupMetric, GroupRates};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{COLOURS, Figure, err};
use crate::cmd::eval::report::Report;

/// The per-group bars of a report.
pub struct Groups<'a>(pub &'a Report);

impl Figure for Groups<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        root.fill(&WHITE).map_err(err)?;
        let t = &self.0.groups;
        let root = root
            .titled(
                &format!(
                    "Per group at threshold {} ({:.0} % bootstrap intervals)",
                    t.threshold,
                    t.bootstrap.confidence * 100.0
                ),
                ("sans-serif", 22),
            )
            .map_err(err)?;
        let panels = root.split_evenly((1, 2));
        panel(&panels[0], &t.groups, "FPIR", |g| &g.fpir, COLOURS[3])?;
        panel(
            &panels[1],
            &t.groups,
            "FNIR (rank 1)",
            |g| &g.fnir,
            COLOURS[0],
        )
    }
}

/// One rate's bars and intervals, groups along x.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    groups: &[GroupRates],
    name: &str,
    metric: impl Fn(&GroupRates) -> &GroupMetric,
    colour: RGBColor,
) -> anyhow::Result<()> {
    let value = |g: &GroupRates| metric(g).rate.value().unwrap_or(0.0);
    let high = |g: &GroupRates| metric(g).ci.map_or(value(g), |c| c.high);
    let y_hi = groups.iter().map(high).fold(0.0, f64::max).max(1e-3) * 1.15;
    let n = groups.len();
    let mut chart = ChartBuilder::on(area)
        .caption(name, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..y_hi)
        .map_err(err)?;
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
            groups[i as usize].group.clone()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.max(1))
        .x_label_formatter(&label)
        .y_label_formatter(&|y| format!("{y:.4}"))
        .y_desc(name)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(groups.iter().enumerate().map(|(i, g)| {
            let x = i as f64;
            Rectangle::new(
                [(x - 0.3, 0.0), (x + 0.3, value(g))],
                colour.mix(0.7).filled(),
            )
        }))
        .map_err(err)?;
    chart
        .draw_series(groups.iter().enumerate().filter_map(|(i, g)| {
            let ci = metric(g).ci?;
            Some(ErrorBar::new_vertical(
                i as f64,
                ci.low,
                value(g),
                ci.high,
                BLACK.stroke_width(2),
                12,
            ))
        }))
        .map_err(err)?;
    Ok(())
}
