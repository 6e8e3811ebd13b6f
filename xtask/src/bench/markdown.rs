//! `results.md`: the report in Markdown. The main figures (both services on their defaults)
//! with requests and groups per discount RPC, the ratios to A, the tuned pass and the two
//! passes side by side, peak memory, and with `--traced` the spans each pass exported.

use std::fmt::Write as _;

use super::report::{Memory, Pass, Report, RpcMetrics, RunResult, ScenarioResult, TracesReceived};
use super::scenarios::PassSettings;
use super::scrape::HistogramDelta;

/// The report as Markdown.
pub fn render(report: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# cargo xtask bench{}{}",
        if report.smoke { " --smoke" } else { "" },
        if report.settings.traced {
            " --traced"
        } else {
            ""
        }
    );
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "{} s per run after {} s of warm-up per scenario; {}; {} CPUs shared by wrk and the \
         services; commit {}.",
        report.duration_secs,
        report.warmup_secs,
        report.wrk,
        report.cpus,
        report.git_commit.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(md);
    if report.settings.is_defaults() {
        let _ = writeln!(
            md,
            "Main figures: both services on their default settings, as a user runs them: {}. \
             Discount's operations port is open only for the bench's scrapes.",
            report.settings.describe()
        );
    } else {
        let _ = writeln!(
            md,
            "Main figures: the services as asked, not all on their defaults: {}.",
            report.settings.describe()
        );
    }
    let _ = writeln!(md);
    runs_table(&mut md, &report.scenarios);
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Errors are socket errors, timeouts (2 s), non-2xx answers and full-price answers \
         (`x-discount-unavailable`)."
    );
    let _ = writeln!(
        md,
        "Requests/RPC: HTTP requests per discount RPC from Catalog during the run \
         (`catalog_discount_requests_per_rpc` on Catalog's operations port, `/metrics`: growth of `_sum` over \
         growth of `_count`; a request that finds a free slot goes alone, those that queue go \
         together). Groups/RPC: the same from Discount's `discount_groups_per_rpc`, which counts \
         `ApplyDiscountGroups` RPCs only. `-`: no such RPC in the run; `n/a`: not scraped."
    );
    traces_line(&mut md, &report.settings, report.traces);
    let _ = writeln!(md);
    let _ = writeln!(md, "## Relative to A (no X-USER-ID)");
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "| connections | B/A requests/s | C/A requests/s | B/A p99 | C/A p99 |"
    );
    let _ = writeln!(md, "| ---: | ---: | ---: | ---: | ---: |");
    for r in &report.ratios {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            r.connections,
            ratio_cell(r.b_over_a_throughput),
            ratio_cell(r.c_over_a_throughput),
            ratio_cell(r.b_over_a_p99),
            ratio_cell(r.c_over_a_p99)
        );
    }
    if let Some(tuned) = &report.tuned {
        tuned_sections(&mut md, report, tuned);
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "## Peak resident memory (VmHWM) after the run");
    let _ = writeln!(md);
    let _ = writeln!(md, "| process | VmHWM MiB |");
    let _ = writeln!(md, "| --- | ---: |");
    memory_rows(&mut md, &report.memory, "");
    if let Some(tuned) = &report.tuned {
        memory_rows(
            &mut md,
            &tuned.memory,
            &format!(" ({})", tuned.settings.name),
        );
    }
    dropped_note(&mut md, report, DROPPED_LOG_LINES);
    dropped_note(&mut md, report, DROPPED_SPANS);
    md
}

/// In a traced pass, the line saying how many spans the OTLP receiver got.
fn traces_line(md: &mut String, settings: &PassSettings, traces: Option<TracesReceived>) {
    if !settings.traced {
        return;
    }
    let got = traces.map_or_else(
        || "did not say how many spans it got (see its log)".to_owned(),
        |t| format!("got {} spans in {} exports", t.spans, t.exports),
    );
    let _ = writeln!(
        md,
        "Tracing: the `otlp-receiver` {got} from both services during this pass (probes and \
         warm-ups included)."
    );
}

/// One row per run, and one line per scenario that did not run.
fn runs_table(md: &mut String, scenarios: &[ScenarioResult]) {
    let _ = writeln!(
        md,
        "| scenario | connections | requests/s | p50 ms | p99 ms | errors | requests/RPC | \
         groups/RPC |"
    );
    let _ = writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for s in scenarios {
        let name = format!("{}: {}", s.key, s.description);
        for r in &s.runs {
            let _ = writeln!(
                md,
                "| {name} | {} | {:.0} | {:.3} | {:.3} | {} | {} | {} |",
                r.connections,
                r.requests_per_sec,
                r.p50_ms,
                r.p99_ms,
                r.errors,
                per_rpc_cell(r.rpc_metrics.catalog_requests_per_rpc),
                per_rpc_cell(r.rpc_metrics.discount_groups_per_rpc)
            );
        }
        if let Some(failure) = &s.failure {
            let failure = one_line(failure);
            let _ = writeln!(
                md,
                "| {name} | – | – | – | – | did not run: {failure} | – | – |"
            );
        }
    }
}

/// The tuned pass's own table, then its figures beside the main pass's.
fn tuned_sections(md: &mut String, report: &Report, tuned: &Pass) {
    let _ = writeln!(md);
    let _ = writeln!(md, "## Tuned pass");
    let _ = writeln!(md);
    if let Some(failure) = &tuned.failure {
        let _ = writeln!(
            md,
            "The tuned pass ({}) did not run: {}",
            tuned.settings.describe(),
            one_line(failure)
        );
        return;
    }
    let keys: Vec<&str> = tuned.scenarios.iter().map(|s| s.key).collect();
    let _ = writeln!(
        md,
        "Scenario{} {} again, on fresh processes started after the main pass: {}.",
        if keys.len() == 1 { "" } else { "s" },
        keys.join(", "),
        tuned.settings.describe()
    );
    let _ = writeln!(md);
    runs_table(md, &tuned.scenarios);
    traces_line(md, &tuned.settings, tuned.traces);

    let (d, t) = (report.settings.name, tuned.settings.name);
    let _ = writeln!(md);
    let _ = writeln!(md, "## Side by side: {d} and {t}");
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "| scenario | connections | requests/s {d} | requests/s {t} | {t}/{d} | p99 ms {d} | \
         p99 ms {t} | requests/RPC {d} | requests/RPC {t} |"
    );
    let _ = writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for t in &tuned.scenarios {
        let main = report.scenarios.iter().find(|s| s.key == t.key);
        for tr in &t.runs {
            let dr = main.and_then(|s| s.runs.iter().find(|r| r.connections == tr.connections));
            let value = |r: Option<&RunResult>, f: fn(&RunResult) -> String| {
                r.map_or_else(|| "–".to_owned(), f)
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {} | {} | {:.3} | {} | {} |",
                t.key,
                tr.connections,
                value(dr, |r| format!("{:.0}", r.requests_per_sec)),
                tr.requests_per_sec,
                ratio_cell(dr.and_then(|d| {
                    (d.requests_per_sec > 0.0).then(|| tr.requests_per_sec / d.requests_per_sec)
                })),
                value(dr, |r| format!("{:.3}", r.p99_ms)),
                tr.p99_ms,
                value(dr, |r| per_rpc_cell(r.rpc_metrics.catalog_requests_per_rpc)),
                per_rpc_cell(tr.rpc_metrics.catalog_requests_per_rpc)
            );
        }
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "| connections | B/A requests/s {d} | B/A requests/s {t} |"
    );
    let _ = writeln!(md, "| ---: | ---: | ---: |");
    for d in &report.ratios {
        let t = tuned.ratios.iter().find(|t| t.connections == d.connections);
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            d.connections,
            ratio_cell(d.b_over_a_throughput),
            ratio_cell(t.and_then(|t| t.b_over_a_throughput))
        );
    }
}

fn memory_rows(md: &mut String, memory: &[Memory], suffix: &str) {
    for m in memory {
        let mib = m
            .vm_hwm_kib
            .map_or_else(|| "–".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
        let _ = writeln!(md, "| {}{suffix} | {mib} |", m.process);
    }
}

/// Something a service drops rather than slow requests down: how results.md names it, and
/// how many Catalog and Discount dropped during a run.
type Dropped = (&'static str, fn(&RpcMetrics) -> [Option<f64>; 2]);

/// Log lines: a service's access log then cost less than writing every line would have.
const DROPPED_LOG_LINES: Dropped = (
    "Log lines dropped by a service's log writer during a run (`log_lines_dropped_total`)",
    |m| [m.catalog_log_lines_dropped, m.discount_log_lines_dropped],
);
/// Spans (traced passes): fewer were exported than the services made.
const DROPPED_SPANS: Dropped = (
    "Spans a service dropped rather than exported during a run (`trace_spans_dropped_total`: \
     its export queue was full or an export failed)",
    |m| [m.catalog_spans_dropped, m.discount_spans_dropped],
);

/// A line when a service dropped something during a run.
fn dropped_note(md: &mut String, report: &Report, (what, dropped): Dropped) {
    let mut notes = Vec::new();
    let passes = std::iter::once(("", &report.scenarios))
        .chain(report.tuned.iter().map(|t| (" (tuned)", &t.scenarios)));
    for (pass, scenarios) in passes {
        for s in scenarios {
            for r in &s.runs {
                for (who, dropped) in ["Catalog", "Discount"]
                    .into_iter()
                    .zip(dropped(&r.rpc_metrics))
                {
                    if let Some(n) = dropped.filter(|&n| n > 0.0) {
                        notes.push(format!(
                            "{}{pass} at {}: {who} {n:.0}",
                            s.key, r.connections
                        ));
                    }
                }
            }
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(md);
        let _ = writeln!(md, "{what}: {}.", notes.join("; "));
    }
}

fn ratio_cell(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}"))
}

/// The mean per RPC, `-` when there was no RPC, `n/a` when the service was not scraped.
fn per_rpc_cell(delta: Option<HistogramDelta>) -> String {
    match delta {
        None => "n/a".to_owned(),
        Some(d) => d
            .mean()
            .map_or_else(|| "-".to_owned(), |m| format!("{m:.2}")),
    }
}

/// `text` fit for a table cell.
fn one_line(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::ratios;
    use crate::bench::wrk::WrkStats;

    fn run(connections: u32, requests: u64, p99_us: u64, per_rpc: Option<(f64, f64)>) -> RunResult {
        let stats = WrkStats {
            requests,
            duration_us: 1_000_000,
            p50_us: p99_us / 2,
            p90_us: p99_us,
            p99_us,
            max_us: p99_us,
            ..WrkStats::default()
        };
        let rpcs = RpcMetrics {
            catalog_requests_per_rpc: per_rpc.map(|(sum, count)| HistogramDelta { sum, count }),
            ..RpcMetrics::default()
        };
        RunResult::new(connections, 2, stats, rpcs)
    }

    fn scenario(key: &'static str, runs: Vec<RunResult>) -> ScenarioResult {
        ScenarioResult {
            key,
            description: "test",
            catalog: "catalog".into(),
            path: "/products",
            runs,
            failure: None,
        }
    }

    fn report(tuned: Option<Pass>) -> Report {
        let mut failed = scenario("D", vec![]);
        failed.failure = Some("catalog-service does not accept --products".into());
        let scenarios = vec![
            scenario("A", vec![run(32, 1234, 2500, Some((0.0, 0.0)))]),
            scenario("B", vec![run(32, 617, 5000, Some((900.0, 300.0)))]),
            failed,
        ];
        Report {
            started_unix: 0,
            git_commit: None,
            wrk: "wrk 4.1.0".into(),
            cpus: 2,
            smoke: true,
            duration_secs: 1,
            warmup_secs: 1,
            connections: vec![32],
            settings: PassSettings::defaults(None, false),
            ratios: ratios(&scenarios, &[32]),
            scenarios,
            memory: vec![Memory {
                process: "discount-service".into(),
                pid: 1,
                vm_hwm_kib: Some(10240),
            }],
            traces: None,
            tuned,
        }
    }

    #[test]
    fn a_row_per_run_with_requests_per_rpc_and_a_line_per_failure() {
        let md = render(&report(None));
        assert!(
            md.contains("| A: test | 32 | 1234 | 1.250 | 2.500 | 0 | - | n/a |"),
            "{md}"
        );
        assert!(
            md.contains("| B: test | 32 | 617 | 2.500 | 5.000 | 0 | 3.00 | n/a |"),
            "{md}"
        );
        assert!(md.contains("did not run: catalog-service does not accept --products"));
        assert!(md.contains("| 32 | 0.50 | – | 2.00 | – |"), "B/A: {md}");
        assert!(md.contains("`RUST_LOG=info` (access log on)"), "{md}");
        assert!(
            md.contains("Main figures: both services on their default"),
            "{md}"
        );
        assert!(
            md.contains("Discount `--metrics-listen 127.0.0.1:0` (worker threads: its default"),
            "{md}"
        );
        assert!(!md.contains("Tuned pass"), "{md}");
        assert!(md.contains("| discount-service | 10.0 |"), "{md}");
    }

    #[test]
    fn the_tuned_pass_is_labelled_and_set_beside_the_defaults() {
        let scenarios = vec![
            scenario("A", vec![run(32, 2000, 2000, Some((0.0, 0.0)))]),
            scenario("B", vec![run(32, 800, 4000, Some((800.0, 400.0)))]),
        ];
        let tuned = Pass {
            settings: PassSettings::tuned(None, false, &[], &[]),
            ratios: ratios(&scenarios, &[32]),
            scenarios,
            memory: vec![Memory {
                process: "discount-service".into(),
                pid: 2,
                vm_hwm_kib: Some(9216),
            }],
            traces: None,
            failure: None,
        };
        let md = render(&report(Some(tuned)));
        assert!(md.contains("## Tuned pass"), "{md}");
        assert!(
            md.contains("`RUST_LOG=info,access=off` (access log off)"),
            "{md}"
        );
        assert!(
            md.contains("Discount `--metrics-listen 127.0.0.1:0 --worker-threads 1`;"),
            "{md}"
        );
        assert!(md.contains("## Side by side: default and tuned"), "{md}");
        assert!(
            md.contains("| requests/s default | requests/s tuned |"),
            "{md}"
        );
        assert!(
            md.contains("| B | 32 | 617 | 800 | 1.30 | 5.000 | 4.000 | 3.00 | 2.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| 32 | 0.50 | 0.40 |"),
            "B/A side by side: {md}"
        );
        assert!(md.contains("| discount-service (tuned) | 9.0 |"), "{md}");
    }

    #[test]
    fn a_tuned_pass_that_failed_says_why() {
        let tuned = Pass {
            settings: PassSettings::tuned(None, false, &[], &[]),
            scenarios: vec![],
            ratios: vec![],
            memory: vec![],
            traces: None,
            failure: Some("discount-service exited during start-up".into()),
        };
        let md = render(&report(Some(tuned)));
        assert!(
            md.contains(") did not run: discount-service exited"),
            "{md}"
        );
    }

    #[test]
    fn a_traced_run_says_so_with_the_spans_received_and_dropped() {
        let mut traced = report(None);
        traced.settings = PassSettings::defaults(None, true);
        traced.traces = Some(TracesReceived {
            spans: 4321,
            exports: 9,
        });
        traced.scenarios[1].runs[0]
            .rpc_metrics
            .catalog_spans_dropped = Some(17.0);
        let md = render(&traced);
        assert!(
            md.starts_with("# cargo xtask bench --smoke --traced\n"),
            "{md}"
        );
        assert!(md.contains("not all on their defaults"), "{md}");
        assert!(md.contains("tracing on"), "{md}");
        assert!(
            md.contains("Tracing: the `otlp-receiver` got 4321 spans in 9 exports"),
            "{md}"
        );
        assert!(md.contains("(`trace_spans_dropped_total`"), "{md}");
        assert!(md.contains("B at 32: Catalog 17."), "{md}");
        let plain = render(&report(None));
        assert!(!plain.contains("Tracing:"), "{plain}");
        assert!(!plain.contains("trace_spans_dropped_total"), "{plain}");
    }
}
