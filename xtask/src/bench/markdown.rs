//! `results.md`: the results model rendered in Markdown. Each pass's runs with requests and
//! groups per discount RPC (the tuned pass's beside the main one's), the ratios to A, peak
//! memory, and with `--traced` the spans each pass exported.

use std::fmt::{Result, Write as _};

use super::results::{HistogramDelta, Pass, Report, ratio};

pub fn render(report: &Report) -> String {
    let mut md = String::new();
    write(&mut md, report).expect("writing to a String cannot fail");
    md
}

fn write(md: &mut String, report: &Report) -> Result {
    let flag = |on, text| if on { text } else { "" };
    let (smoke, traced) = (report.smoke, report.main.settings.traced);
    writeln!(
        md,
        "# cargo xtask bench{}{}\n",
        flag(smoke, " --smoke"),
        flag(traced, " --traced")
    )?;
    let commit = report.git_commit.as_deref().unwrap_or("unknown");
    writeln!(
        md,
        "{} s per run after {} s of warm-up per scenario; {}; {} CPUs shared by wrk and the \
         services; commit {commit}.\n\nErrors are socket errors, timeouts (2 s), non-2xx answers \
         and full-price answers (`x-discount-unavailable`). Requests/RPC: HTTP requests per \
         discount RPC from Catalog during the run (`catalog_discount_requests_per_rpc` on \
         Catalog's operations port, `/metrics`: growth of `_sum` over growth of `_count`; a \
         request that finds a free slot goes alone, those that queue go together). Groups/RPC: \
         the same from Discount's `discount_groups_per_rpc`, which counts `ApplyDiscountGroups` \
         RPCs only. `-`: no such RPC in the run; `n/a`: not scraped.",
        report.duration_secs, report.warmup_secs, report.wrk, report.cpus
    )?;
    pass_section(md, &report.main, None)?;
    if let Some(tuned) = &report.tuned {
        pass_section(md, tuned, Some(&report.main))?;
    }

    writeln!(md, "\n## Relative to A (no X-USER-ID)")?;
    let mut rows = Vec::new();
    for pass in report.passes() {
        for r in &pass.ratios {
            let (b, c) = (r.b_over_a_throughput, r.c_over_a_throughput);
            let ratios = [b, c, r.b_over_a_p99, r.c_over_a_p99]
                .map(ratio_cell)
                .join(" | ");
            rows.push(format!(
                "{} | {} | {ratios}",
                pass.settings.name, r.connections
            ));
        }
    }
    let head = "pass | connections | B/A requests/s | C/A requests/s | B/A p99 | C/A p99";
    table(md, head, rows)?;

    writeln!(md, "\n## Peak resident memory (VmHWM) after each pass")?;
    let mut rows = Vec::new();
    for pass in report.passes() {
        for m in &pass.memory {
            let mib = dash(m.vm_hwm_kib.map(|k| format!("{:.1}", k as f64 / 1024.0)));
            rows.push(format!("{} | {} | {mib}", m.process, pass.settings.name));
        }
    }
    table(md, "process | pass | VmHWM MiB", rows)?;

    let log_lines = "Log lines dropped by a service's log writer during a run \
                     (`log_lines_dropped_total`)";
    let spans = "Spans a service dropped rather than exported during a run \
                 (`trace_spans_dropped_total`: its export queue was full or an export failed)";
    for (what, spans) in [(log_lines, false), (spans, true)] {
        let mut notes = Vec::new();
        for pass in report.passes() {
            for s in &pass.scenarios {
                for r in &s.runs {
                    let m = &r.rpc_metrics;
                    let [catalog, discount] = match spans {
                        false => [m.catalog_log_lines_dropped, m.discount_log_lines_dropped],
                        true => [m.catalog_spans_dropped, m.discount_spans_dropped],
                    };
                    let at = format!("{} ({}) at {}", s.key, pass.settings.name, r.connections);
                    for (who, n) in [("Catalog", catalog), ("Discount", discount)] {
                        let n = n.filter(|&n| n > 0.0);
                        notes.extend(n.map(|n| format!("{at}: {who} {n:.0}")));
                    }
                }
            }
        }
        if !notes.is_empty() {
            writeln!(md, "\n{what}: {}.", notes.join("; "))?;
        }
    }
    Ok(())
}

/// A pass's settings, its runs (a row each, and a row per scenario that did not run; beside
/// `main`'s throughput if given) and, if traced, the spans the OTLP receiver got.
fn pass_section(md: &mut String, pass: &Pass, main: Option<&Pass>) -> Result {
    let (settings, describe) = (&pass.settings, pass.settings.describe());
    let title = if main.is_some() { "Tuned" } else { "Main" };
    writeln!(md, "\n## {title} pass: {}\n", settings.name)?;
    if let Some(failure) = &pass.failure {
        return writeln!(md, "It did not run ({describe}): {}", one_line(failure));
    }
    match main {
        // The defaults but for the operations port Discount opens for the bench's scrapes.
        None if settings.name == "default" => writeln!(
            md,
            "Both services on their default settings, as a user runs them: {describe}. \
             Discount's operations port is open only for the bench's scrapes."
        )?,
        None => writeln!(
            md,
            "The services as asked, not all on their defaults: {describe}."
        )?,
        Some(_) => {
            let keys: Vec<&str> = pass.scenarios.iter().map(|s| s.key).collect();
            let keys = keys.join(", ");
            writeln!(
                md,
                "Scenarios {keys} again, on fresh processes started after the main pass: {describe}."
            )?;
        }
    }
    let mut head = "scenario | connections | requests/s | p50 ms | p99 ms | errors | \
                    requests/RPC | groups/RPC"
        .to_owned();
    if let Some(main) = main {
        head += &format!(" | requests/s {} / {}", settings.name, main.settings.name);
    }
    let mut rows = Vec::new();
    for s in &pass.scenarios {
        let name = format!("{}: {}", s.key, s.description);
        for r in &s.runs {
            let (connections, rps, p50, p99) =
                (r.connections, r.requests_per_sec, r.p50_ms, r.p99_ms);
            let (m, errors) = (&r.rpc_metrics, r.errors);
            let per_rpc = [m.catalog_requests_per_rpc, m.discount_groups_per_rpc].map(per_rpc_cell);
            let mut row =
                format!("{name} | {connections} | {rps:.0} | {p50:.3} | {p99:.3} | {errors}");
            row += &format!(" | {}", per_rpc.join(" | "));
            if let Some(main) = main {
                let before = main.run(s.key, connections).map(|m| m.requests_per_sec);
                row += &format!(" | {}", ratio_cell(ratio(Some(rps), before)));
            }
            rows.push(row);
        }
        if let Some(failure) = &s.failure {
            let beside = if main.is_some() { " | –" } else { "" };
            let failure = one_line(failure);
            rows.push(format!(
                "{name} | – | – | – | – | did not run: {failure} | – | –{beside}"
            ));
        }
    }
    table(md, &head, rows)?;
    if settings.traced {
        let got = pass.traces.map_or_else(
            || "did not say how many spans it got (see its log)".to_owned(),
            |t| format!("got {} spans in {} exports", t.spans, t.exports),
        );
        let during = "from both services during this pass (probes and warm-ups included)";
        writeln!(md, "\nTracing: the `otlp-receiver` {got} {during}.")?;
    }
    Ok(())
}

/// A Markdown table after a blank line, its columns named in `head` and its `rows` ("a | b"):
/// the first column left-aligned, the others right.
fn table(md: &mut String, head: &str, rows: Vec<String>) -> Result {
    let align = " ---: |".repeat(head.matches(" | ").count());
    writeln!(md, "\n| {head} |\n| --- |{align}")?;
    rows.iter().try_for_each(|row| writeln!(md, "| {row} |"))
}

fn dash(cell: Option<String>) -> String {
    cell.unwrap_or_else(|| "–".to_owned())
}

fn ratio_cell(r: Option<f64>) -> String {
    dash(r.map(|r| format!("{r:.2}")))
}

/// The mean per RPC, `-` when there was no RPC, `n/a` when the service was not scraped.
fn per_rpc_cell(delta: Option<HistogramDelta>) -> String {
    match delta.map(|d| d.mean()) {
        None => "n/a".to_owned(),
        Some(mean) => mean.map_or_else(|| "-".to_owned(), |m| format!("{m:.2}")),
    }
}

fn one_line(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::TracesReceived;
    use crate::bench::results::tests::{memory, report, run, scenario};
    use crate::bench::scenarios::tests::{assert_has, passes};

    #[test]
    fn a_row_per_run_with_requests_per_rpc_and_a_line_per_failure() {
        let md = render(&report(&["--smoke", "--tuned", "none"]));
        assert!(md.starts_with("# cargo xtask bench --smoke\n"), "{md}");
        assert_has(
            &md,
            &[
                "| A: GET /products, no X-USER-ID | 32 | 1234 | 1.250 | 2.500 | 0 | - | n/a |",
                "| B: GET /products, X-USER-ID: 1 | 32 | 617 | 2.500 | 5.000 | 0 | 3.00 | n/a |",
                "| D: GET /products?limit=100 of 10,000, X-USER-ID: 1 | – | – | – | – | did not run: catalog-service does not accept --products | – | – |",
                "| default | 32 | 0.50 | – | 2.00 | – |",
                "Both services on their default settings, as a user runs them: `RUST_LOG=info` (access log on)",
                "Discount `--ops-listen 127.0.0.1:0` (worker threads: its default",
                "| discount-service | default | 10.0 |",
            ],
        );
        assert!(!md.contains("Tuned pass"), "{md}");
    }

    #[test]
    fn the_tuned_pass_is_labelled_and_set_beside_the_defaults() {
        let mut report = report(&[]);
        let scenarios = vec![
            scenario("A", vec![run(32, 2000, 2000, Some((0.0, 0.0)))]),
            scenario("B", vec![run(32, 800, 4000, Some((800.0, 400.0)))]),
        ];
        let memory = vec![memory("discount-service", 9)];
        let settings = passes(&[]).1.unwrap().0;
        report.tuned = Some(Pass::new(settings, scenarios, memory, None, &[32]));
        assert_has(
            &render(&report),
            &[
                "## Tuned pass: tuned\n\nScenarios A, B again, on fresh processes started after the main pass: \
             `RUST_LOG=info,access=off` (access log off); Discount `--ops-listen 127.0.0.1:0 --worker-threads 1`;",
                "| groups/RPC | requests/s tuned / default |",
                "| B: GET /products, X-USER-ID: 1 | 32 | 800 | 2.000 | 4.000 | 0 | 2.00 | n/a | 1.30 |",
                "| tuned | 32 | 0.40 | – | 2.00 | – |",
                "| discount-service | tuned | 9.0 |",
            ],
        );
        report.tuned.as_mut().unwrap().failure = Some("discount-service exited".into());
        let failed = "## Tuned pass: tuned\n\nIt did not run (`RUST_LOG=info,access=off` (access log off); Discount `--ops-listen 127.0.0.1:0 --worker-threads 1`; Catalog on its defaults; tracing off (no `OTEL_*` variable)): discount-service exited\n";
        assert_has(&render(&report), &[failed]);
    }

    #[test]
    fn a_traced_run_says_so_with_the_spans_received_and_dropped() {
        let mut traced = report(&["--smoke", "--traced", "--tuned", "none"]);
        traced.main.traces = Some(TracesReceived {
            spans: 4321,
            exports: 9,
        });
        traced.main.scenarios[1].runs[0]
            .rpc_metrics
            .catalog_spans_dropped = Some(17.0);
        let md = render(&traced);
        assert!(
            md.starts_with("# cargo xtask bench --smoke --traced\n"),
            "{md}"
        );
        assert_has(
            &md,
            &[
                "The services as asked, not all on their defaults:",
                "; tracing on",
                "Tracing: the `otlp-receiver` got 4321 spans in 9 exports",
                "(`trace_spans_dropped_total`: its export queue was full or an export failed): B (traced) at 32: Catalog 17.",
            ],
        );
        let plain = render(&report(&["--smoke"]));
        assert!(
            !plain.contains("Tracing:") && !plain.contains("trace_spans_dropped"),
            "{plain}"
        );
    }
}
