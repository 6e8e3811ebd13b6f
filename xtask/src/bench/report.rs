//! The benchmark's results as written to `results.json`: what each pass (the services'
//! defaults, then the tuned one) measured, with requests and groups per discount RPC, the B/A
//! and C/A ratios, peak memory, the spans the OTLP receiver got (`--traced`), and what went
//! wrong. Pure functions of the numbers, so they
//! are unit-tested; `markdown` turns them into `results.md`.

use serde::Serialize;

use super::scenarios::PassSettings;
use super::scrape::HistogramDelta;
use super::wrk::WrkStats;

/// Everything one `cargo xtask bench` run found, as written to `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    /// `git rev-parse --short HEAD`, if available (uncommitted changes are not shown).
    pub git_commit: Option<String>,
    /// First line of `wrk -v`.
    pub wrk: String,
    /// Logical CPUs the machine has (wrk and the services share them).
    pub cpus: usize,
    pub smoke: bool,
    pub duration_secs: u64,
    pub warmup_secs: u64,
    pub connections: Vec<u32>,
    /// How the services of the main pass (`scenarios`, `ratios`, `memory`) ran: their
    /// defaults.
    pub settings: PassSettings,
    pub scenarios: Vec<ScenarioResult>,
    pub ratios: Vec<Ratios>,
    pub memory: Vec<Memory>,
    /// What the OTLP receiver got during the main pass; `None` if not traced, or if its count
    /// could not be read.
    pub traces: Option<TracesReceived>,
    /// The tuned pass, on processes of its own, if one was asked for.
    pub tuned: Option<Pass>,
}

/// A pass other than the main one: the same measurements with other service settings.
#[derive(Debug, Clone, Serialize)]
pub struct Pass {
    pub settings: PassSettings,
    pub scenarios: Vec<ScenarioResult>,
    pub ratios: Vec<Ratios>,
    pub memory: Vec<Memory>,
    /// What the OTLP receiver got during the pass (as [`Report::traces`]).
    pub traces: Option<TracesReceived>,
    /// Why the pass could not run (its services did not start, say).
    pub failure: Option<String>,
}

/// What the `otlp-receiver` of a traced pass got from both services, from its start to its
/// stop (probes and warm-ups included), as it said when it exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TracesReceived {
    pub spans: u64,
    /// Export calls (batches of spans).
    pub exports: u64,
}

/// One scenario: its runs, or why it could not run.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// "A", "B", ...
    pub key: &'static str,
    pub description: &'static str,
    /// Which Catalog process served it.
    pub catalog: String,
    /// Request path.
    pub path: &'static str,
    pub runs: Vec<RunResult>,
    /// Why the scenario (or its remaining runs) did not run.
    pub failure: Option<String>,
}

/// One wrk run at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub connections: u32,
    pub wrk_threads: u32,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors, timeouts, non-2xx statuses and full-price fallbacks.
    pub errors: u64,
    /// HTTP requests per discount RPC from Catalog during the run (the mean of
    /// `catalog_discount_requests_per_rpc`); `None`: no RPC, or Catalog could not be scraped.
    pub requests_per_rpc: Option<f64>,
    /// Groups per `ApplyDiscountGroups` RPC at Discount during the run (the mean of
    /// `discount_groups_per_rpc`); `None`: no such RPC, or Discount could not be scraped.
    pub groups_per_rpc: Option<f64>,
    /// What the services' `/metrics` counted during the run.
    pub rpc_metrics: RpcMetrics,
    /// wrk's raw numbers.
    pub wrk: WrkStats,
}

/// What the services' `/metrics` gained between just before and just after one run; `None`
/// where a scrape failed. A metric not yet on `/metrics` counts as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RpcMetrics {
    /// Catalog's `catalog_discount_requests_per_rpc`.
    pub catalog_requests_per_rpc: Option<HistogramDelta>,
    /// Discount's `discount_groups_per_rpc` (recorded for `ApplyDiscountGroups` only).
    pub discount_groups_per_rpc: Option<HistogramDelta>,
    /// Discount's RPCs answered, of every kind (`discount_rpc_requests_total`).
    pub discount_rpcs: Option<f64>,
    /// Log lines Catalog's writer dropped (`log_lines_dropped_total`).
    pub catalog_log_lines_dropped: Option<f64>,
    /// Log lines Discount's writer dropped (`log_lines_dropped_total`).
    pub discount_log_lines_dropped: Option<f64>,
    /// Spans Catalog never exported (`trace_spans_dropped_total`: queue full, export failed).
    pub catalog_spans_dropped: Option<f64>,
    /// Spans Discount never exported (`trace_spans_dropped_total`).
    pub discount_spans_dropped: Option<f64>,
}

impl RunResult {
    /// The summary of `stats`, measured with `connections` and `wrk_threads`, and what the
    /// services' metrics counted meanwhile.
    pub fn new(connections: u32, wrk_threads: u32, stats: WrkStats, rpcs: RpcMetrics) -> Self {
        Self {
            connections,
            wrk_threads,
            requests_per_sec: stats.requests_per_sec(),
            p50_ms: stats.p50_us as f64 / 1000.0,
            p99_ms: stats.p99_us as f64 / 1000.0,
            errors: stats.total_errors(),
            requests_per_rpc: rpcs.catalog_requests_per_rpc.and_then(|d| d.mean()),
            groups_per_rpc: rpcs.discount_groups_per_rpc.and_then(|d| d.mean()),
            rpc_metrics: rpcs,
            wrk: stats,
        }
    }
}

/// Scenario B and C relative to A at one concurrency: throughput and p99 latency ratios.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratios {
    pub connections: u32,
    /// B's requests/s over A's.
    pub b_over_a_throughput: Option<f64>,
    /// C's requests/s over A's.
    pub c_over_a_throughput: Option<f64>,
    /// B's p99 over A's.
    pub b_over_a_p99: Option<f64>,
    /// C's p99 over A's.
    pub c_over_a_p99: Option<f64>,
}

/// Peak resident memory of one process: a service, or the OTLP receiver of a traced pass.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub process: String,
    pub pid: u32,
    /// VmHWM from /proc/<pid>/status, in KiB.
    pub vm_hwm_kib: Option<u64>,
}

/// `num / den`, if both exist and `den` is positive.
pub fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

/// B/A and C/A at each of `connections`, from the scenarios keyed "A", "B" and "C".
pub fn ratios(scenarios: &[ScenarioResult], connections: &[u32]) -> Vec<Ratios> {
    let run = |key: &str, c: u32| {
        scenarios
            .iter()
            .find(|s| s.key == key)
            .and_then(|s| s.runs.iter().find(|r| r.connections == c))
    };
    let rps = |key, c| run(key, c).map(|r| r.requests_per_sec);
    let p99 = |key, c| run(key, c).map(|r| r.p99_ms);
    connections
        .iter()
        .map(|&c| Ratios {
            connections: c,
            b_over_a_throughput: ratio(rps("B", c), rps("A", c)),
            c_over_a_throughput: ratio(rps("C", c), rps("A", c)),
            b_over_a_p99: ratio(p99("B", c), p99("A", c)),
            c_over_a_p99: ratio(p99("C", c), p99("A", c)),
        })
        .collect()
}

/// The peak resident set (VmHWM, KiB) from the text of `/proc/<pid>/status`.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix("VmHWM:")?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The peak resident set of process `pid`, if /proc can tell.
pub fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_hwm(&status)
}

impl Report {
    /// Scenarios that failed, and runs with errors, in words (the tuned pass's too); empty if
    /// all is well.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = scenario_problems(&self.scenarios, "");
        problems.extend(traces_problem(&self.settings, self.traces, "main"));
        if let Some(tuned) = &self.tuned {
            if let Some(failure) = &tuned.failure {
                problems.push(format!("the tuned pass did not run: {failure}"));
            } else {
                problems.extend(traces_problem(&tuned.settings, tuned.traces, "tuned"));
            }
            problems.extend(scenario_problems(&tuned.scenarios, " (tuned)"));
        }
        problems
    }
}

/// A traced pass whose receiver got no span, or whose count is unknown: its figures may not
/// be those of traced services.
fn traces_problem(
    settings: &PassSettings,
    traces: Option<TracesReceived>,
    pass: &str,
) -> Option<String> {
    match traces {
        _ if !settings.traced => None,
        None => Some(format!(
            "the {pass} pass was traced but the otlp-receiver's count is missing (see its log)"
        )),
        Some(t) if t.spans == 0 => Some(format!(
            "the {pass} pass was traced but the otlp-receiver got no span"
        )),
        Some(_) => None,
    }
}

fn scenario_problems(scenarios: &[ScenarioResult], pass: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for s in scenarios {
        if let Some(failure) = &s.failure {
            problems.push(format!("scenario {}{pass} did not run: {failure}", s.key));
        }
        for r in s.runs.iter().filter(|r| r.errors > 0) {
            let w = &r.wrk;
            problems.push(format!(
                "scenario {}{pass} at {} connections: {} errors (connect {}, read {}, write {}, \
                 timeout {}, non-2xx {}, full-price fallback {})",
                s.key,
                r.connections,
                r.errors,
                w.errors.connect,
                w.errors.read,
                w.errors.write,
                w.errors.timeout,
                w.non2xx.max(w.errors.status),
                w.degraded
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: u64, p99_us: u64) -> WrkStats {
        WrkStats {
            requests,
            duration_us: 1_000_000,
            p50_us: p99_us / 2,
            p90_us: p99_us,
            p99_us,
            max_us: p99_us,
            ..WrkStats::default()
        }
    }

    fn scenario(key: &'static str, runs: &[(u32, u64, u64)]) -> ScenarioResult {
        ScenarioResult {
            key,
            description: "test",
            catalog: "catalog".into(),
            path: "/products",
            runs: runs
                .iter()
                .map(|&(c, rps, p99)| RunResult::new(c, 1, stats(rps, p99), RpcMetrics::default()))
                .collect(),
            failure: None,
        }
    }

    #[test]
    fn ratios_compare_b_and_c_with_a_at_each_concurrency() {
        let scenarios = [
            scenario("A", &[(1, 1000, 100), (32, 4000, 1000)]),
            scenario("B", &[(1, 500, 300), (32, 1000, 4000)]),
            scenario("C", &[(1, 800, 150)]),
        ];
        let r = ratios(&scenarios, &[1, 32, 128]);
        let close = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < 1e-9);
        assert!(close(r[0].b_over_a_throughput, 0.5), "{r:?}");
        assert!(close(r[0].c_over_a_throughput, 0.8), "{r:?}");
        assert!(close(r[0].b_over_a_p99, 3.0), "{r:?}");
        assert!(close(r[1].b_over_a_throughput, 0.25), "{r:?}");
        assert_eq!(r[1].c_over_a_throughput, None, "C did not run at 32");
        assert_eq!(r[2].b_over_a_throughput, None, "nobody ran at 128");
    }

    #[test]
    fn ratio_of_nothing_or_zero_is_none() {
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
    }

    #[test]
    fn reads_vm_hwm_from_proc_status() {
        let status = "Name:\tcatalog-service\nVmPeak:\t  123456 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   19000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(20480));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
        // This very process has one.
        assert!(vm_hwm(std::process::id()).is_some_and(|k| k > 0));
    }

    #[test]
    fn problems_name_failed_scenarios_and_runs_with_errors_in_both_passes() {
        let mut failed = scenario("D", &[]);
        failed.failure = Some("catalog-service does not accept --products".into());
        let mut with_errors = scenario("B", &[(32, 1000, 2000)]);
        with_errors.runs[0].errors = 3;
        with_errors.runs[0].wrk.degraded = 3;
        let report = Report {
            started_unix: 0,
            git_commit: None,
            wrk: "wrk 4.1.0".into(),
            cpus: 2,
            smoke: true,
            duration_secs: 1,
            warmup_secs: 1,
            connections: vec![32],
            settings: PassSettings::defaults(None, false),
            scenarios: vec![scenario("A", &[(32, 1234, 2500)]), failed],
            ratios: vec![],
            memory: vec![],
            traces: None,
            tuned: Some(Pass {
                settings: PassSettings::tuned(None, false, &[], &[]),
                scenarios: vec![with_errors],
                ratios: vec![],
                memory: vec![],
                traces: None,
                failure: None,
            }),
        };
        let problems = report.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("scenario D did not run"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("scenario B (tuned) at 32 connections: 3 errors"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("full-price fallback 3"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_traced_pass_needs_spans_received() {
        let traced = PassSettings::defaults(None, true);
        let got = |spans| Some(TracesReceived { spans, exports: 2 });
        assert_eq!(traces_problem(&traced, got(10), "main"), None);
        let none = traces_problem(&traced, got(0), "main").unwrap();
        assert!(none.contains("got no span"), "{none}");
        let missing = traces_problem(&traced, None, "tuned").unwrap();
        assert!(missing.contains("tuned pass was traced"), "{missing}");
        let untraced = PassSettings::defaults(None, false);
        assert_eq!(traces_problem(&untraced, None, "main"), None);
    }

    #[test]
    fn a_run_s_means_come_from_its_metrics() {
        let rpcs = RpcMetrics {
            catalog_requests_per_rpc: Some(HistogramDelta {
                sum: 300.0,
                count: 100.0,
            }),
            discount_groups_per_rpc: Some(HistogramDelta {
                sum: 0.0,
                count: 0.0,
            }),
            ..RpcMetrics::default()
        };
        let run = RunResult::new(32, 2, stats(1000, 2000), rpcs);
        assert_eq!(run.requests_per_rpc, Some(3.0));
        assert_eq!(
            run.groups_per_rpc, None,
            "no ApplyDiscountGroups in the run"
        );
        let json = serde_json::to_value(&run).unwrap();
        assert_eq!(json["requests_per_rpc"], 3.0);
        assert!(json["groups_per_rpc"].is_null());
        assert_eq!(
            json["rpc_metrics"]["catalog_requests_per_rpc"]["count"],
            100.0
        );
    }
}
