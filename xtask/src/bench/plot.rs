//! `plot.svg`: throughput and p99 latency against concurrent connections, one line per
//! scenario, drawn with plotters' SVG backend (no font or bitmap libraries: the SVG names a
//! font family and the viewer draws the text).

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::report::{RunResult, ScenarioResult};

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Draws `scenarios` (those with runs) at `connections` into the SVG file `path`.
pub fn draw(path: &Path, scenarios: &[ScenarioResult], connections: &[u32]) -> anyhow::Result<()> {
    let drawn: Vec<&ScenarioResult> = scenarios.iter().filter(|s| !s.runs.is_empty()).collect();
    let legend_height = 24 * u32::try_from(drawn.len()).unwrap_or(4) + 16;
    let root = SVGBackend::new(path, (1200, 500 + legend_height)).into_drawing_area();
    root.fill(&WHITE).context("cannot draw the plot")?;
    let (charts, legend) = root.split_vertically(500);
    let (left, right) = charts.split_horizontally(600);
    panel(
        &left,
        "Throughput (requests/s, higher is better)",
        &drawn,
        connections,
        |r| r.requests_per_sec,
        |v| format!("{v:.0}"),
    )?;
    panel(
        &right,
        "p99 latency (ms, lower is better)",
        &drawn,
        connections,
        |r| r.p99_ms,
        |v| format!("{v:.1}"),
    )?;

    // One legend for both charts, below them, so it never hides a point.
    for (i, s) in drawn.iter().enumerate() {
        let y = 12 + 24 * i32::try_from(i).unwrap_or(0);
        let colour = COLOURS[i % COLOURS.len()];
        legend
            .draw(&PathElement::new(
                vec![(90, y + 7), (120, y + 7)],
                colour.stroke_width(3),
            ))
            .context("cannot draw the legend")?;
        legend
            .draw(&Text::new(
                format!("{}: {}", s.key, s.description),
                (130, y),
                ("sans-serif", 14).into_font(),
            ))
            .context("cannot draw the legend")?;
    }
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    scenarios: &[&ScenarioResult],
    connections: &[u32],
    value: impl Fn(&RunResult) -> f64,
    y_label: impl Fn(&f64) -> String,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    // Connections go on evenly spaced slots 0, 1, 2, ... (1, 32, 128 would crowd a linear
    // axis), each labelled with its count.
    let slots = connections.len() as f64;
    let slot = |c: u32| connections.iter().position(|&x| x == c).map(|i| i as f64);
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        connections
            .get(i as usize)
            .map_or_else(String::new, u32::to_string)
    };
    let y_max = scenarios
        .iter()
        .flat_map(|s| &s.runs)
        .map(&value)
        .fold(0.0_f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };

    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..slots - 0.5, 0.0..y_max)
        .context("cannot lay out the plot")?;
    chart
        .configure_mesh()
        .x_desc("concurrent connections")
        .x_labels(connections.len())
        .x_label_formatter(&label)
        .y_label_formatter(&y_label)
        .disable_x_mesh()
        .draw()
        .context("cannot draw the axes")?;

    for (i, s) in scenarios.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<(f64, f64)> = s
            .runs
            .iter()
            .filter_map(|r| slot(r.connections).map(|x| (x, value(r))))
            .collect();
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)).point_size(4))
            .context("cannot draw a series")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::RpcMetrics;
    use crate::bench::wrk::WrkStats;

    fn scenario(key: &'static str, rps: &[(u32, u64)]) -> ScenarioResult {
        let runs = rps
            .iter()
            .map(|&(c, requests)| {
                let stats = WrkStats {
                    requests,
                    duration_us: 1_000_000,
                    p50_us: 100 * u64::from(c),
                    p90_us: 150 * u64::from(c),
                    p99_us: 200 * u64::from(c),
                    max_us: 300 * u64::from(c),
                    ..WrkStats::default()
                };
                RunResult::new(c, 1, stats, RpcMetrics::default())
            })
            .collect();
        ScenarioResult {
            key,
            description: "a scenario",
            catalog: "catalog".into(),
            path: "/products",
            runs,
            failure: None,
        }
    }

    #[test]
    fn draws_every_scenario_that_ran_with_its_legend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.svg");
        let mut failed = scenario("D", &[]);
        failed.failure = Some("did not start".into());
        let scenarios = [
            scenario("A", &[(1, 9000), (32, 90000), (128, 80000)]),
            scenario("B", &[(1, 3000), (32, 25000), (128, 24000)]),
            failed,
        ];
        draw(&path, &scenarios, &[1, 32, 128]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("A: a scenario") && svg.contains("B: a scenario"));
        assert!(
            !svg.contains("D: a scenario"),
            "a scenario without runs has no line"
        );
        assert!(svg.contains("\n128\n"), "the x axis names each concurrency");
    }

    #[test]
    fn one_concurrency_level_is_labelled_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.svg");
        draw(&path, &[scenario("A", &[(32, 9000)])], &[32]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("\n32\n"), "{svg}");
    }
}
