//! `results.md`: the results model rendered in Markdown. Each pass's runs with requests and
//! groups per discount RPC (the tuned and database passes' beside the main one's), the ratios
//! to A and of D to its plain twin (from the scenarios' runs, and by turns), peak memory, with
//! `--traced` the spans each pass exported, and how Catalog followed PostgreSQL, held to its
//! goals.

use std::fmt::{Result, Write as _};

use super::results::{Following, HistogramDelta, Paired, Pass, Report, ratio};

pub fn render(report: &Report) -> String {
    let mut md = String::new();
    write(&mut md, report).expect("writing to a String cannot fail");
    md
}

fn write(md: &mut String, report: &Report) -> Result {
    let (smoke, traced) = (report.smoke, report.main.settings.traced);
    let flags = [(smoke, " --smoke"), (traced, " --traced")];
    let flags: String = flags.iter().filter(|f| f.0).map(|f| f.1).collect();
    let commit = report.git_commit.as_deref().unwrap_or("unknown");
    writeln!(
        md,
        "# cargo xtask bench{flags}\n\n{} s per run after {} s of warm-up per scenario; {}; {} \
         CPUs shared by wrk and the services; commit {commit}.\n\nErrors are socket errors, \
         timeouts (2 s), non-2xx answers and full-price answers (`x-discount-unavailable`). \
         Requests/RPC: HTTP requests per discount RPC from Catalog during the run \
         (`catalog_discount_requests_per_rpc` on Catalog's operations port, `/metrics`: growth \
         of `_sum` over growth of `_count`; a request that finds no RPC in flight goes alone, \
         those that queue go together). Groups/RPC: the same from Discount's \
         `discount_groups_per_rpc`, which counts the groups RPCs only. `-`: no such \
         RPC in the run; `n/a`: not scraped.",
        report.duration_secs, report.warmup_secs, report.wrk, report.cpus
    )?;
    pass_section(md, &report.main, None)?;
    if let Some(tuned) = &report.tuned {
        pass_section(md, tuned, Some(&report.main))?;
    }
    if let Some(database) = &report.database {
        following(md, database)?;
    }

    let (mut ratios, mut paired, mut memory) = (Vec::new(), Vec::new(), Vec::new());
    // Log lines, then spans, that a service dropped during a run.
    let mut dropped = [Vec::new(), Vec::new()];
    for pass in report.passes() {
        let name = pass.settings.name;
        for r in &pass.ratios {
            let d = (r.d_over_d_plain_throughput, r.d_over_d_plain_p99);
            let rps = [r.b_over_a_throughput, r.c_over_a_throughput, d.0];
            let p99 = [r.b_over_a_p99, r.c_over_a_p99, d.1];
            let cells: Vec<String> = [rps, p99].concat().into_iter().map(ratio_cell).collect();
            let (c, cells) = (r.connections, cells.join(" | "));
            ratios.push(format!("{name} | {c} | {cells}"));
        }
        paired.extend(pass.paired.iter().map(|p| paired_row(name, p)));
        for m in &pass.memory {
            let mib = dash(m.vm_hwm_kib.map(|k| format!("{:.1}", k as f64 / 1024.0)));
            memory.push(format!("{} | {name} | {mib}", m.process));
        }
        for s in &pass.scenarios {
            for r in &s.runs {
                let m = &r.rpc_metrics;
                let at = format!("{} ({name}) at {}", s.key, r.connections);
                let lines = [m.catalog_log_lines_dropped, m.discount_log_lines_dropped];
                let spans = [m.catalog_spans_dropped, m.discount_spans_dropped];
                for (i, counts) in [lines, spans].into_iter().enumerate() {
                    for (who, n) in ["Catalog", "Discount"].into_iter().zip(counts) {
                        let n = n.filter(|&n| n > 0.0);
                        dropped[i].extend(n.map(|n| format!("{at}: {who} {n:.0}")));
                    }
                }
            }
        }
    }
    writeln!(md, "\n## Ratios: B and C to A, D to its plain twin")?;
    let head = "pass | connections | B/A requests/s | C/A requests/s | D/D-plain requests/s | \
                B/A p99 | C/A p99 | D/D-plain p99";
    table(md, head, ratios)?;
    if !paired.is_empty() {
        writeln!(
            md,
            "\n## The same ratios by turns\n\nEach pair measured again on the same processes \
             after the pass's scenarios, a short run of each by turns (the order swapped every \
             round), so both sides of a round see the same machine: each round's ratio of \
             requests/s, their median (nearest rank) and range."
        )?;
        let head = "pass | ratio | connections | rounds | median | range | each round";
        table(md, head, paired)?;
    }
    writeln!(md, "\n## Peak resident memory (VmHWM) after each pass")?;
    table(md, "process | pass | VmHWM MiB", memory)?;
    let whats = [
        "Log lines dropped by a service's log writer during a run (`log_lines_dropped_total`)",
        "Spans a service dropped rather than exported during a run (`trace_spans_dropped_total`: \
         its export queue was full or an export failed)",
    ];
    for (what, notes) in whats.iter().zip(dropped) {
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
    let keys: Vec<&str> = pass.scenarios.iter().map(|s| s.key).collect();
    let keys = keys.join(", ");
    let intro = match main {
        // The defaults but for the operations port Discount opens for the bench's scrapes.
        None if settings.name == "default" => format!(
            "Both services on their default settings, as a user runs them: {describe}. \
             Discount's operations port is open only for the bench's scrapes."
        ),
        None => format!("The services as asked, not all on their defaults: {describe}."),
        Some(_) => format!(
            "Scenarios {keys} again, on fresh processes started after the main pass: {describe}."
        ),
    };
    writeln!(md, "{intro}")?;
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
            let m = &r.rpc_metrics;
            let per_rpc = [m.catalog_requests_per_rpc, m.discount_groups_per_rpc].map(per_rpc_cell);
            let (c, rps, p50, p99) = (r.connections, r.requests_per_sec, r.p50_ms, r.p99_ms);
            let (errors, per_rpc) = (r.errors, per_rpc.join(" | "));
            let cells = format!("{rps:.0} | {p50:.3} | {p99:.3} | {errors} | {per_rpc}");
            let before = main.map(|main| main.run(s.key, c).map(|m| m.requests_per_sec));
            let beside = before.map(|b| format!(" | {}", ratio_cell(ratio(Some(rps), b))));
            let beside = beside.unwrap_or_default();
            rows.push(format!("{name} | {c} | {cells}{beside}"));
        }
        if let Some(failure) = &s.failure {
            let (beside, failure) = (if main.is_some() { " | –" } else { "" }, one_line(failure));
            let (dashes, did_not_run) = ("– | – | – | –", format!("did not run: {failure}"));
            rows.push(format!("{name} | {dashes} | {did_not_run} | – | –{beside}"));
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

/// How Catalog followed PostgreSQL at each size, the large transaction, and the goals.
fn following(md: &mut String, following: &Following) -> Result {
    let poll = following.poll_ms;
    writeln!(
        md,
        "\n## Catalog following PostgreSQL\n\nEach size on a fresh Catalog, after \
         `catalog-service import` of its products. First snapshot: from Catalog's start to its \
         first 200 from `/products?limit=1`. Changes: prices changed one at a time by the owner \
         (an `UPDATE` each, on one `psql` session), each timed from its commit to the new price \
         in `/products/{{id}}`, asked every {poll} ms. VmHWM: Catalog's peak at the end."
    )?;
    let (mut rows, mut goals, mut large) = (Vec::new(), Vec::new(), String::new());
    let mut goal = |goal: String, measured: String, met| {
        let met = if met { "met" } else { "**not met**" };
        goals.push(format!("{goal} | {measured} | {met}"));
    };
    for s in &following.stages {
        let (at, first) = (s.products, s.first_snapshot_ms);
        let (p50, p99) = (s.visible_p50_ms, s.visible_p99_ms);
        let (changes, mib) = (s.visible_ms.len(), s.catalog_vm_hwm_kib.map(|k| k / 1024));
        let (mib_cell, rss_met) = (dash(mib), mib.is_some_and(|m| m < 500));
        rows.push(format!(
            "{at} | {first:.0} | {mib_cell} | {changes} | {p50:.1} | {p99:.1}"
        ));
        let Some(t) = &s.transaction else {
            let what = format!("a change served < 100 ms after its commit (p99), {at} products");
            goal(what, format!("{p99:.1} ms"), p99 < 100.0);
            continue;
        };
        let (rows, commit, served) = (t.rows, t.commit_ms, t.visible_ms);
        let (quiet_rps, quiet_p99) = (t.quiet.requests_per_sec, t.quiet.p99_ms);
        let (rps, p99, errors) = (t.during.requests_per_sec, t.during.p99_ms, t.during.errors);
        writeln!(
            large,
            "\nAt {at} products, `UPDATE products SET price_in_cents = price_in_cents + 1 WHERE id \
             <= {rows}` (one transaction) was committed in {commit:.0} ms, its last row served \
             {served:.0} ms later. `/products?limit=100` (no `X-USER-ID`) at 32 connections: \
             {quiet_rps:.0} requests/s, p99 {quiet_p99:.3} ms in a run without it; {rps:.0} \
             requests/s, p99 {p99:.3} ms and {errors} errors in a run it fell in, a fifth of the \
             way."
        )?;
        let what = format!("first snapshot < 10 s, {at} products");
        goal(what, format!("{first:.0} ms"), first < 10_000.0);
        let what = format!("peak RSS < 500 MiB, {at} products");
        goal(what, format!("{mib_cell} MiB"), rss_met);
        let what = format!("p99 while {rows} rows change ≤ 2 × quiet, all 200");
        let met = p99 <= 2.0 * quiet_p99 && errors == 0;
        goal(what, format!("{p99:.2} ms, quiet {quiet_p99:.2} ms"), met);
    }
    let head = "products | first snapshot ms | VmHWM MiB | changes | p50 ms | p99 ms";
    table(md, head, rows)?;
    if let Some(failure) = &following.failure {
        writeln!(md, "\nIt stopped short: {}", one_line(failure))?;
    }
    writeln!(md, "{large}\nGoals, at the sizes of this run:")?;
    table(md, "goal | measured | met", goals)
}

/// A Markdown table after a blank line, its columns named in `head` and its `rows` ("a | b"):
/// the first column left-aligned, the others right.
fn table(md: &mut String, head: &str, rows: Vec<String>) -> Result {
    let align = " ---: |".repeat(head.matches(" | ").count());
    writeln!(md, "\n| {head} |\n| --- |{align}")?;
    rows.iter().try_for_each(|row| writeln!(md, "| {row} |"))
}

/// A row of the ratios by turns: pass, pair, connections, rounds, median, range, each round
/// (and why the rounds stopped short, if they did).
fn paired_row(pass: &str, p: &Paired) -> String {
    let ratios = p.ratios();
    let low = ratios.iter().copied().reduce(f64::min);
    let range = low.zip(ratios.iter().copied().reduce(f64::max));
    let range = dash(range.map(|(low, high)| format!("{low:.2}-{high:.2}")));
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    let mut each = dash(Some(each.join(" ")).filter(|e| !e.is_empty()));
    if let Some(why) = &p.failure {
        each = format!("{each}; stopped short: {}", one_line(why));
    }
    let (pair, c) = (format!("{}/{}", p.numerator, p.denominator), p.connections);
    let (median, rounds) = (ratio_cell(p.median), p.rounds.len());
    format!(
        "{pass} | {pair} | {c} | {rounds} x {} s | {median} | {range} | {each}",
        p.round_secs
    )
}

fn ratio_cell(r: Option<f64>) -> String {
    dash(r.map(|r| format!("{r:.2}")))
}

/// `value`, or `–` if there is none.
fn dash(value: Option<impl std::fmt::Display>) -> String {
    value.map_or("–".into(), |v| v.to_string())
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
    use crate::bench::results::tests::{database, report, sample};
    use crate::bench::scenarios::tests::passes;

    #[test]
    fn every_pass_with_its_runs_failures_ratios_memory_and_the_database_pass_s_goals() {
        insta::assert_snapshot!(render(&sample()));
    }

    #[test]
    fn a_traced_run_says_so_with_the_spans_received_and_dropped_and_what_did_not_run() {
        let mut traced = report("--smoke --traced --tuned A");
        let (spans, exports) = (4321, 9);
        traced.main.traces = Some(TracesReceived { spans, exports });
        let b = &mut traced.main.scenarios[1].runs[0];
        b.rpc_metrics.catalog_spans_dropped = Some(17.0);
        let tuned = passes("--traced").1.unwrap().0;
        traced.tuned = Some(Pass::failed(tuned, "discount-service exited".into()));
        let mut stopped = database();
        stopped.stages.truncate(1);
        stopped.failure = Some("no psql".into());
        traced.database = Some(stopped);
        insta::assert_snapshot!(render(&traced));
    }
}
