//! `plot.svg`: throughput and p99 latency against concurrent connections, one line per
//! scenario of the main pass (A and B served from PostgreSQL among them), drawn with plotters'
//! SVG backend (no font or bitmap libraries: the SVG names a font family and the viewer draws
//! the text).

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

use super::results::{RunResult, ScenarioResult};

/// The lines' colours, as 0xRRGGBB (matplotlib's "tab10"), in the scenarios' order.
const COLOURS: [u32; 7] = [
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2,
];

/// Draws `scenarios` (those with runs) at `connections` into the SVG file `path`.
pub fn draw(path: &Path, scenarios: &[ScenarioResult], connections: &[u32]) -> Result<()> {
    let drawn: Vec<&ScenarioResult> = scenarios.iter().filter(|s| !s.runs.is_empty()).collect();
    let legend_height = 24 * u32::try_from(drawn.len()).unwrap_or(4) + 16;
    let root = SVGBackend::new(path, (1200, 500 + legend_height)).into_drawing_area();
    root.fill(&WHITE).context("cannot draw the plot")?;
    let (charts, legend) = root.split_vertically(500);
    let (left, right) = charts.split_horizontally(600);
    let rgb = COLOURS.map(u32::to_be_bytes);
    let colours = rgb.map(|[_, r, g, b]| RGBColor(r, g, b));
    // Connections go on evenly spaced slots 0, 1, 2, ... (1, 32, 128 would crowd a linear
    // axis), each labelled with its count.
    let slot = |c: u32| connections.iter().position(|&x| x == c).map(|i| i as f64);
    let x_label = |x: &f64| {
        let near = (x - x.round()).abs() < 1e-6 && *x >= 0.0;
        let count = connections.get(x.round() as usize).filter(|_| near);
        count.map_or_else(String::new, u32::to_string)
    };
    let requests_per_sec: fn(&RunResult) -> f64 = |r| r.requests_per_sec;
    let throughput = "Throughput (requests/s, higher is better)";
    let panels = [
        (left, throughput, requests_per_sec, 0),
        (right, "p99 latency (ms, lower is better)", |r| r.p99_ms, 1),
    ];
    for (area, title, value, decimals) in panels {
        let runs = drawn.iter().flat_map(|s| &s.runs);
        let y_max = runs.map(value).fold(0.0_f64, f64::max);
        let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5..connections.len() as f64 - 0.5, 0.0..y_max)
            .context("cannot lay out the plot")?;
        chart
            .configure_mesh()
            .x_desc("concurrent connections")
            .x_labels(connections.len())
            .x_label_formatter(&x_label)
            .y_label_formatter(&|y| format!("{y:.decimals$}"))
            .disable_x_mesh()
            .draw()
            .context("cannot draw the axes")?;
        for (s, colour) in drawn.iter().zip(colours.iter().cycle()) {
            let point = |r: &RunResult| Some((slot(r.connections)?, value(r)));
            let points = s.runs.iter().filter_map(point);
            let line = LineSeries::new(points, colour.stroke_width(2)).point_size(4);
            chart.draw_series(line).context("cannot draw a series")?;
        }
    }

    // One legend for both charts, below them, so it never hides a point.
    let colours = colours.iter().cycle();
    for ((s, colour), y) in drawn.iter().zip(colours).zip((12..).step_by(24)) {
        let line = PathElement::new(vec![(90, y + 7), (120, y + 7)], colour.stroke_width(3));
        let name = format!("{}: {}", s.key, s.description);
        let text = Text::new(name, (130, y), ("sans-serif", 14).into_font());
        let drawn = legend.draw(&line).and_then(|()| legend.draw(&text));
        drawn.context("cannot draw the legend")?;
    }
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::tests::sample;

    #[test]
    fn draws_every_scenario_that_ran_with_its_legend_and_each_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let (path, report) = (dir.path().join("plot.svg"), sample());
        draw(&path, &report.main.scenarios, &report.connections).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("\n32\n"), "{svg}");
        let legend = "D-plain: D&apos;s plain twin: ?limit=100 without X-USER-ID\nA-db: A, Catalog";
        for name in legend.lines() {
            assert!(svg.contains(name), "no {name} in {svg}");
        }
        let no_run = "a scenario without runs has no line";
        assert!(!svg.contains("B-db: B"), "{no_run}");
    }
}
