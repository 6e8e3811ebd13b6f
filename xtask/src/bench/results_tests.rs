//! The results model's tests, and the sample results the Markdown and plot tests render.

use super::*;
use crate::bench::scenarios::SCENARIOS;
use crate::bench::scenarios::tests::{args, passes};

/// A run at `c` connections of `n` requests in 1 s with this p99, and Catalog's requests per
/// RPC as (sum, count) if scraped.
pub(in crate::bench) fn run(c: u32, n: u64, p99_us: u64, rpc: Option<(f64, f64)>) -> RunResult {
    let (mut stats, mut rpcs) = (WrkStats::default(), RpcMetrics::default());
    (stats.requests, stats.duration_us) = (n, 1_000_000);
    (stats.p50_us, stats.p99_us) = (p99_us / 2, p99_us);
    rpcs.catalog_requests_per_rpc = rpc.map(|(sum, count)| HistogramDelta { sum, count });
    RunResult::new(c, 2, stats, rpcs)
}

pub(in crate::bench) fn scenario(key: &str, runs: Vec<RunResult>) -> ScenarioResult {
    let mut result = ScenarioResult::new(SCENARIOS.iter().find(|s| s.key == key).unwrap());
    result.runs = runs;
    result
}

/// The peak memory of `process`, in MiB.
pub(in crate::bench) fn memory(process: &str, mib: u64) -> Memory {
    let (process, vm_hwm_kib) = (process.into(), Some(mib * 1024));
    Memory {
        process,
        pid: 0,
        vm_hwm_kib,
    }
}

/// A smoke report with `args` as on the command line: A and B ran at 32 connections, D did
/// not; no tuned pass.
pub(in crate::bench) fn report(args: &[&str]) -> Report {
    let mut failed = scenario("D", vec![]);
    failed.failure = Some("catalog-service does not accept --products".into());
    let a = scenario("A", vec![run(32, 1234, 2500, Some((0.0, 0.0)))]);
    let b = scenario("B", vec![run(32, 617, 5000, Some((900.0, 300.0)))]);
    let (scenarios, memory) = (vec![a, b, failed], vec![memory("discount-service", 10)]);
    let main = Pass::new(passes(args).0, scenarios, memory, None, &[32]);
    Report::new(&self::args(args), 0, "wrk 4.1.0".into(), main, None)
}

#[test]
fn ratios_compare_b_and_c_with_a_at_each_concurrency() {
    let a = [run(1, 1000, 100, None), run(32, 4000, 1000, None)];
    let b = [run(1, 500, 200, None), run(32, 1000, 4000, None)];
    let (a, b) = (scenario("A", a.into()), scenario("B", b.into()));
    let c = scenario("C", vec![run(1, 800, 150, None)]);
    let pass = Pass::new(passes(&[]).0, vec![a, b, c], vec![], None, &[1, 32, 128]);
    let ratios = serde_json::to_string(&pass.ratios).unwrap();
    let want = r#"[{"connections":1,"b_over_a_throughput":0.5,"c_over_a_throughput":0.8,"b_over_a_p99":2.0,"c_over_a_p99":1.4999999999999998},{"connections":32,"b_over_a_throughput":0.25,"c_over_a_throughput":null,"b_over_a_p99":4.0,"c_over_a_p99":null},{"connections":128,"b_over_a_throughput":null,"c_over_a_throughput":null,"b_over_a_p99":null,"c_over_a_p99":null}]"#;
    assert_eq!(ratios, want);
    assert_eq!(ratio(Some(1.0), Some(0.0)), None);
}

#[test]
fn problems_name_failed_scenarios_runs_with_errors_passes_that_did_not_run_and_spans_missing() {
    let mut report = report(&[]);
    let mut with_errors = scenario("B", vec![run(32, 1000, 2000, None)]);
    (with_errors.runs[0].errors, with_errors.runs[0].wrk.degraded) = (3, 3);
    let tuned = passes(&[]).1.unwrap().0;
    report.tuned = Some(Pass::new(
        tuned.clone(),
        vec![with_errors],
        vec![],
        None,
        &[32],
    ));
    let want = "scenario D (default) did not run: catalog-service does not accept --products\nscenario B (tuned) at 32 connections: 3 errors (SocketErrors { connect: 0, read: 0, write: 0, status: 0, timeout: 0 }, non-2xx 0, full-price fallback 3)";
    assert_eq!(report.problems().join("\n"), want);
    report.tuned = Some(Pass::failed(tuned, "no Discount".into()));
    let failed = "the tuned pass did not run: no Discount";
    assert_eq!(report.problems()[1], failed);

    let mut traced = self::report(&["--traced", "--tuned", "none"]);
    traced.main.scenarios.truncate(2);
    let receiver = "the traced pass was traced but the otlp-receiver";
    let missing = format!("{receiver}'s count is missing (see its log)");
    assert_eq!(traced.problems(), [missing]);
    traced.main.traces = Some(TracesReceived::default());
    assert_eq!(traced.problems(), [format!("{receiver} got no span")]);
    traced.main.traces = Some(TracesReceived {
        spans: 9,
        exports: 1,
    });
    assert!(traced.problems().is_empty());
}

#[test]
fn the_json_has_the_main_pass_at_the_top_and_the_means_of_each_run() {
    let report = report(&[]);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["settings"]["name"], "default");
    assert_eq!(json["ratios"][0]["b_over_a_throughput"], 0.5);
    let (no_tuned, no_failure) = (json["tuned"].is_null(), json.get("failure").is_none());
    assert!(no_tuned && no_failure, "{json}");
    let b = serde_json::to_string(&report.main.scenarios[1].runs[0]).unwrap();
    let want = r#"{"connections":32,"wrk_threads":2,"requests_per_sec":617.0,"p50_ms":2.5,"p99_ms":5.0,"errors":0,"requests_per_rpc":3.0,"groups_per_rpc":null,"rpc_metrics":{"catalog_requests_per_rpc":{"sum":900.0,"count":300.0},"discount_groups_per_rpc":null,"discount_rpcs":null,"catalog_log_lines_dropped":null,"discount_log_lines_dropped":null,"catalog_spans_dropped":null,"discount_spans_dropped":null},"wrk":{"requests":617,"duration_us":1000000,"bytes":0,"p50_us":2500,"p90_us":0,"p99_us":5000,"max_us":0,"mean_us":0.0,"errors":{"connect":0,"read":0,"write":0,"status":0,"timeout":0},"non2xx":0,"degraded":0}}"#;
    assert_eq!(b, want);
}
