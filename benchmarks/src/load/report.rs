//! Presents load steps: a markdown table (one row per step) and, for a sweep,
//! an SVG of latency percentiles and achieved throughput against offered load.

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::stats::{LatencyMs, RunStats};

fn pct(n: u64, frac: f64) -> String {
    if n == 0 {
        "0".into()
    } else {
        format!("{n} ({:.2} %)", frac * 100.0)
    }
}

/// A markdown table of `runs`, one row each, for docs/benchmarks.md; the
/// class column tells scoped requests from national ones.
pub fn markdown(runs: &[RunStats]) -> String {
    let mut s = String::from(
        "| label | class | mode | ports | offered/s | achieved/s | sent | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | shed | deadline | errors | dropped |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        let offered = r
            .offered_rate
            .map_or("closed".into(), |x| format!("{x:.0}"));
        let lat = match r.latency_ms {
            Some(l) => [l.p50, l.p90, l.p99, l.p999, l.max].map(|v| format!("{v:.2}")),
            None => std::array::from_fn(|_| "–".to_string()),
        };
        let errors = if r.errors.is_empty() {
            "0".to_string()
        } else {
            r.errors
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.class.name(),
            r.mode,
            r.ports,
            offered,
            r.throughput,
            r.sent,
            lat[0],
            lat[1],
            lat[2],
            lat[3],
            lat[4],
            pct(r.shed, r.shed_fraction),
            pct(r.deadline, r.deadline_fraction),
            errors,
            r.dropped
        );
    }
    s
}

/// The axes of the sweep plot: offered rate (x, log), latency (left y,
/// log) and throughput (right y), each with a margin around the data.
struct PlotRanges {
    x_lo: f64,
    x_hi: f64,
    y_lo: f64,
    y_hi: f64,
    t_hi: f64,
}

impl PlotRanges {
    /// The ranges that hold every open-loop run of `open` and its
    /// latencies `lat` (offered rate, percentiles).
    fn of(open: &[&RunStats], lat: &[(f64, LatencyMs)]) -> PlotRanges {
        let rate = |r: &RunStats| r.offered_rate.unwrap_or_default();
        let (x_lo, x_hi) = open.iter().fold((f64::MAX, f64::MIN), |(a, b), r| {
            (a.min(rate(r)), b.max(rate(r)))
        });
        let (y_lo, y_hi) = lat.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, l)| {
            (a.min(l.p50), b.max(l.p999))
        });
        let (y_lo, y_hi) = if lat.is_empty() {
            (0.1, 1000.0)
        } else {
            ((y_lo / 2.0).max(0.001), y_hi * 2.0)
        };
        let t_hi = open
            .iter()
            .map(|r| r.throughput.max(rate(r)))
            .fold(1.0, f64::max)
            * 1.1;
        PlotRanges {
            x_lo: x_lo / 1.2,
            x_hi: x_hi * 1.2,
            y_lo,
            y_hi,
            t_hi,
        }
    }
}

/// A named, coloured curve of (offered rate, value) points.
type Curve = (&'static str, RGBColor, Vec<(f64, f64)>);

/// The p50, p99 and p99.9 curves of `lat` (offered rate, latencies), each
/// with its name and colour.
fn percentile_curves(lat: &[(f64, LatencyMs)]) -> [Curve; 3] {
    let curve = |get: fn(&LatencyMs) -> f64| -> Vec<(f64, f64)> {
        lat.iter().map(|(x, l)| (*x, get(l))).collect()
    };
    [
        ("p50", BLUE, curve(|l| l.p50)),
        ("p99", RGBColor(230, 120, 0), curve(|l| l.p99)),
        ("p99.9", RED, curve(|l| l.p999)),
    ]
}

/// The offered = achieved line from `x_lo` to `x_hi` (below `t_hi`):
/// straight in data space, curved on the log x axis, so drawn in steps.
fn diagonal(x_lo: f64, x_hi: f64, t_hi: f64) -> impl Iterator<Item = (f64, f64)> + Clone {
    (0..=64)
        .map(move |i| x_lo * (x_hi / x_lo).powf(f64::from(i) / 64.0))
        .filter(move |&x| x <= t_hi)
        .map(|x| (x, x))
}

/// Draws p50, p99 and p99.9 of OK latencies (log axis, left) and achieved
/// throughput (right axis, with the offered = achieved diagonal) against the
/// offered rate of each open-loop run in `runs`.
pub fn write_svg(path: &Path, runs: &[RunStats], title: &str) -> anyhow::Result<()> {
    crate::register_plot_font()?;
    let open: Vec<&RunStats> = runs.iter().filter(|r| r.offered_rate.is_some()).collect();
    anyhow::ensure!(
        !open.is_empty(),
        "the plot needs at least one open-loop run"
    );
    let rate = |r: &RunStats| r.offered_rate.unwrap_or_default();
    let lat: Vec<_> = open
        .iter()
        .filter_map(|r| r.latency_ms.map(|l| (rate(r), l)))
        .collect();
    let PlotRanges {
        x_lo,
        x_hi,
        y_lo,
        y_hi,
        t_hi,
    } = PlotRanges::of(&open, &lat);
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..y_hi).log_scale())?
        .set_secondary_coord((x_lo..x_hi).log_scale(), 0.0..t_hi);
    chart
        .configure_mesh()
        .x_labels(12)
        .y_labels(12)
        .x_label_formatter(&|v| format!("{v}"))
        .y_label_formatter(&|v| format!("{v}"))
        .x_desc("offered load (requests/s, log)")
        .y_desc("latency of OK answers (ms, log)")
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("achieved throughput (OK answers/s)")
        .draw()?;
    for (name, color, points) in percentile_curves(&lat) {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)).point_size(3))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    let green = RGBColor(0, 140, 60);
    chart
        .draw_secondary_series(
            LineSeries::new(
                open.iter().map(|r| (rate(r), r.throughput)),
                green.stroke_width(2),
            )
            .point_size(3),
        )?
        .label("achieved throughput (right axis)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], green));
    chart
        .draw_secondary_series(DashedLineSeries::new(
            diagonal(x_lo, x_hi, t_hi),
            6,
            4,
            BLACK.mix(0.4).into(),
        ))?
        .label("offered = achieved (right axis)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
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
