//! The results model's tests, and the sample results the Markdown and plot tests render.

use super::*;
use crate::bench::scenarios::tests::{args, passes};
use crate::bench::scenarios::{FROM_DATABASE, SCENARIOS};

/// A run at `c` connections of `n` requests in 1 s with this p99, and Catalog's requests per
/// RPC as (sum, count) if scraped.
pub(in crate::bench) fn run(c: u32, n: u64, p99_us: u64, rpc: Option<(f64, f64)>) -> RunResult {
    let (mut stats, mut rpcs) = (WrkStats::default(), RpcMetrics::default());
    (stats.requests, stats.duration_us) = (n, 1_000_000);
    (stats.p50_us, stats.p99_us) = (p99_us / 2, p99_us);
    rpcs.catalog_requests_per_rpc = rpc.map(|(sum, count)| HistogramDelta { sum, count });
    RunResult::new(c, stats, rpcs)
}

pub(in crate::bench) fn scenario(key: &str, runs: Vec<RunResult>) -> ScenarioResult {
    let mut scenarios = SCENARIOS.iter().chain(&FROM_DATABASE);
    let mut result = ScenarioResult::new(scenarios.find(|s| s.key == key).unwrap());
    result.runs = runs;
    result
}

/// A smoke report with `args` as on the command line: A and B ran at 32 connections, D did
/// not; no tuned pass.
pub(in crate::bench) fn report(args: &str) -> Report {
    let mut failed = scenario("D", vec![]);
    failed.failure = Some("catalog-service does not accept --products".into());
    let a = scenario("A", vec![run(32, 1234, 2500, Some((0.0, 0.0)))]);
    let b = scenario("B", vec![run(32, 617, 5000, Some((900.0, 300.0)))]);
    let mut memory = Memory::of(("discount-service".into(), 0));
    memory.vm_hwm_kib = Some(10240);
    let (settings, scenarios) = (passes(args).0, vec![a, b, failed]);
    let main = Pass::new(settings, scenarios, vec![memory], None, &[32]);
    let mut report = Report::new(&self::args(args), 0, "wrk 4.1.0".into(), main);
    // The same on every machine, at every commit.
    (report.git_commit, report.cpus) = (None, 2);
    report
}

/// Catalog following PostgreSQL: 4 changes at 10,000 products (1 to 150 ms); at 1,000,000
/// products 12 s to the first snapshot, 600 MiB, one change in 2 ms, and 100,000 rows that took
/// p99 from 4 ms to 9 ms.
pub(in crate::bench) fn database() -> Following {
    let stage = |products, first_snapshot_ms, mib: u64, visible_ms: Vec<f64>, transaction| Stage {
        products,
        first_snapshot_ms,
        catalog_vm_hwm_kib: Some(mib * 1024),
        visible_p50_ms: percentile(&visible_ms, 0.5),
        visible_p99_ms: percentile(&visible_ms, 0.99),
        visible_ms,
        transaction,
    };
    let (quiet, during) = (run(32, 5000, 4000, None), run(32, 4000, 9000, None));
    let (rows, commit_ms, visible_ms) = (100_000, 900.0, 1500.0);
    let transaction = Transaction {
        rows,
        commit_ms,
        visible_ms,
        quiet,
        during,
    };
    let changes = stage(10_000, 12.0, 20, vec![3.0, 1.0, 2.0, 150.0], None);
    let large = stage(1_000_000, 12_000.0, 600, vec![2.0], Some(transaction));
    let mut following = Following::default();
    (following.poll_ms, following.stages) = (1, vec![changes, large]);
    following
}

/// Every pass: the main one at 1 and 32 connections (C only at 1, A from PostgreSQL at 32, B
/// from it not at all), the tuned one with A and B, and the database pass's sizes.
pub(in crate::bench) fn sample() -> Report {
    let mut report = report("--connections 1,32");
    let a1 = run(1, 1000, 100, None);
    let a = scenario("A", vec![a1, run(32, 4000, 1000, Some((0.0, 0.0)))]);
    let b1 = run(1, 500, 200, Some((500.0, 500.0)));
    let b = scenario("B", vec![b1, run(32, 1000, 4000, None)]);
    let c = scenario("C", vec![run(1, 800, 150, None)]);
    let d = scenario("D", vec![run(1, 300, 400, None), run(32, 900, 6000, None)]);
    let d_plain = vec![run(1, 600, 200, None), run(32, 3600, 1500, None)];
    let d_plain = scenario("D-plain", d_plain);
    let a_db = scenario("A-db", vec![run(32, 4400, 900, None)]);
    let mut b_db = scenario("B-db", vec![]);
    b_db.failure = Some("GET /products with X-USER-ID 1 does not get the expected answer".into());
    let scenarios = vec![a, b, c, d, d_plain, a_db, b_db];
    let main = report.main.settings.clone();
    report.main = Pass::new(main, scenarios, report.main.memory, None, &[1, 32]);
    let (tuned, memory) = (passes("").1.unwrap().0, report.main.memory.clone());
    let a = scenario("A", vec![run(32, 2000, 2000, Some((0.0, 0.0)))]);
    let b = scenario("B", vec![run(32, 800, 4000, Some((800.0, 400.0)))]);
    let mut tuned = Pass::new(tuned, vec![a, b], memory, None, &[32]);
    // B over A by turns: 0.5, 0.45 and 0.55; D over D-plain stopped after one round.
    tuned.paired = vec![paired(
        "B",
        "A",
        &[[500.0, 1000.0], [450.0, 1000.0], [550.0, 1000.0]],
    )];
    let mut d = paired("D", "D-plain", &[[900.0, 3000.0]]);
    d.failure = Some("round 1, D: wrk exited".into());
    report.main.paired = vec![paired("B", "A", &[[1000.0, 4000.0]]), d];
    report.tuned = Some(tuned);
    report.database = Some(database());
    report
}

/// `numerator` over `denominator` by turns at 32 connections, 2 s a run, these rounds.
pub(in crate::bench) fn paired(
    num: &'static str,
    den: &'static str,
    rounds: &[[f64; 2]],
) -> Paired {
    let mut paired = Paired::new(num, den, 32, 2);
    paired.rounds = rounds.to_vec();
    paired.median = paired.median_ratio();
    paired
}

#[test]
fn by_turns_each_round_s_ratio_counts_and_their_median_is_the_middle_one() {
    let odd = paired("B", "A", &[[3.0, 10.0], [9.0, 10.0], [5.0, 10.0]]);
    assert_eq!((odd.ratios(), odd.median), (vec![0.3, 0.9, 0.5], Some(0.5)));
    // Nearest rank: the lower of the middle two; a round with no requests in its denominator
    // has no ratio.
    let even = paired("D", "D-plain", &[[4.0, 10.0], [6.0, 10.0], [1.0, 0.0]]);
    assert_eq!((even.ratios(), even.median), (vec![0.4, 0.6], Some(0.4)));
    assert_eq!(paired("B", "A", &[]).median, None);
}

#[test]
fn the_json_has_the_main_pass_at_the_top_every_run_s_figures_and_the_ratios() {
    insta::assert_snapshot!(serde_json::to_string_pretty(&sample()).unwrap());
    assert_eq!(ratio(Some(1.0), Some(0.0)), None);
    // Nearest rank: the 4 changes of 10,000 products take 1, 2, 3 and 150 ms.
    let p = [0.5, 0.75, 0.99].map(|p| percentile(&[3.0, 1.0, 2.0, 150.0], p));
    assert_eq!(p, [2.0, 3.0, 150.0]);
}

#[test]
fn problems_name_failed_scenarios_runs_with_errors_passes_that_did_not_run_and_spans_missing() {
    let mut report = report("");
    let mut with_errors = scenario("B", vec![run(32, 1000, 2000, None)]);
    (with_errors.runs[0].errors, with_errors.runs[0].wrk.degraded) = (3, 3);
    let tuned = passes("").1.unwrap().0;
    let mut ran = Pass::new(tuned.clone(), vec![with_errors], vec![], None, &[32]);
    let mut by_turns = paired("B", "A", &[[1.0, 2.0]]);
    (by_turns.errors, by_turns.failure) = (2, Some("round 1, A: wrk exited".into()));
    ran.paired = vec![by_turns];
    report.tuned = Some(ran);
    let mut problems = report.problems();
    report.tuned = Some(Pass::failed(tuned, "no Discount".into()));
    let mut stopped = database();
    stopped.failure = Some("no PostgreSQL".into());
    report.database = Some(stopped);
    problems.extend(report.problems());
    // A traced pass whose receiver did not say, got no span, or got some.
    let mut traced = self::report("--traced --tuned none");
    traced.main.scenarios.truncate(2);
    for spans in [None, Some(0), Some(9)] {
        traced.main.traces = spans.map(|spans| TracesReceived { spans, exports: 1 });
        problems.push(format!("spans {spans:?}: {:?}", traced.problems()));
    }
    insta::assert_snapshot!(problems.join("\n"));
}
