//! The benchmark's results, one model for both files: `results.json` is it serialised as it
//! is, `results.md` ([`super::markdown`]) renders it. What each pass (the services' defaults,
//! then the tuned one) measured, with requests and groups per discount RPC, the B/A and C/A
//! ratios, peak memory, the spans the OTLP receiver got (`--traced`), and what went wrong.

use std::process::{Command, Stdio};

use serde::Serialize;

use super::scenarios::{BenchArgs, PassSettings, Scenario};
use super::wrk::WrkStats;

/// Everything one `cargo xtask bench` run found.
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
    /// The main pass, its fields at the top level of `results.json`.
    #[serde(flatten)]
    pub main: Pass,
    /// The tuned pass, on processes of its own, if one was asked for.
    pub tuned: Option<Pass>,
}

/// One pass: its services' settings and what they measured.
#[derive(Debug, Clone, Serialize)]
pub struct Pass {
    pub settings: PassSettings,
    pub scenarios: Vec<ScenarioResult>,
    pub ratios: Vec<Ratios>,
    pub memory: Vec<Memory>,
    /// What the OTLP receiver got during the pass; `None` if not traced, or if its count could
    /// not be read.
    pub traces: Option<TracesReceived>,
    /// Why the pass could not run (its services did not start, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// What the `otlp-receiver` of a traced pass got from both services, from its start to its
/// stop (probes and warm-ups included), as it said when it exited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TracesReceived {
    pub spans: u64,
    /// Export calls (batches of spans).
    pub exports: u64,
}

/// One scenario: its runs, or why it (or its remaining runs) could not run.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub key: &'static str,
    pub description: &'static str,
    /// Which Catalog process served it.
    pub catalog: &'static str,
    pub path: &'static str,
    pub runs: Vec<RunResult>,
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
    pub rpc_metrics: RpcMetrics,
    pub wrk: WrkStats,
}

/// What the services' `/metrics` gained between just before and just after one run; `None`
/// where a scrape failed. A metric not yet on `/metrics` counts as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RpcMetrics {
    pub catalog_requests_per_rpc: Option<HistogramDelta>,
    pub discount_groups_per_rpc: Option<HistogramDelta>,
    /// Discount's RPCs answered, of every kind (`discount_rpc_requests_total`).
    pub discount_rpcs: Option<f64>,
    /// Log lines each service's writer dropped (`log_lines_dropped_total`).
    pub catalog_log_lines_dropped: Option<f64>,
    pub discount_log_lines_dropped: Option<f64>,
    /// Spans each service never exported (`trace_spans_dropped_total`: queue full, export
    /// failed).
    pub catalog_spans_dropped: Option<f64>,
    pub discount_spans_dropped: Option<f64>,
}

/// What a histogram gained between two scrapes: the growth of its `_sum` and `_count`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HistogramDelta {
    pub sum: f64,
    pub count: f64,
}

impl HistogramDelta {
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }
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
    pub b_over_a_throughput: Option<f64>,
    pub c_over_a_throughput: Option<f64>,
    pub b_over_a_p99: Option<f64>,
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

impl ScenarioResult {
    pub fn new(scenario: &Scenario) -> Self {
        let (key, description, path) = (scenario.key, scenario.description, scenario.path);
        let (catalog, runs, failure) = (scenario.catalog.name, Vec::new(), None);
        Self {
            key,
            description,
            catalog,
            path,
            runs,
            failure,
        }
    }
}

impl Memory {
    /// The peak resident set of process `pid`, called `process`.
    pub fn of((process, pid): (String, u32)) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
        let status = status.unwrap_or_default();
        let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"));
        let vm_hwm_kib = line.and_then(|l| l.trim().strip_suffix("kB")?.trim().parse().ok());
        Self {
            process,
            pid,
            vm_hwm_kib,
        }
    }
}

/// `num / den`, if both exist and `den` is positive.
pub fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    num.zip(den).filter(|&(_, d)| d > 0.0).map(|(n, d)| n / d)
}

impl Pass {
    /// A pass that ran, with its ratios at each of `connections`.
    pub fn new(
        settings: PassSettings,
        scenarios: Vec<ScenarioResult>,
        memory: Vec<Memory>,
        traces: Option<TracesReceived>,
        connections: &[u32],
    ) -> Self {
        let (ratios, failure) = (Vec::new(), None);
        let mut pass = Self {
            settings,
            scenarios,
            ratios,
            memory,
            traces,
            failure,
        };
        let rps = |key, c| pass.run(key, c).map(|r| r.requests_per_sec);
        let p99 = |key, c| pass.run(key, c).map(|r| r.p99_ms);
        let ratios = connections.iter().map(|&c| Ratios {
            connections: c,
            b_over_a_throughput: ratio(rps("B", c), rps("A", c)),
            c_over_a_throughput: ratio(rps("C", c), rps("A", c)),
            b_over_a_p99: ratio(p99("B", c), p99("A", c)),
            c_over_a_p99: ratio(p99("C", c), p99("A", c)),
        });
        pass.ratios = ratios.collect();
        pass
    }

    /// The run of scenario `key` at `connections`, if there was one.
    pub fn run(&self, key: &str, connections: u32) -> Option<&RunResult> {
        let scenario = self.scenarios.iter().find(|s| s.key == key)?;
        scenario.runs.iter().find(|r| r.connections == connections)
    }

    /// What went wrong in this pass, in words: it did not run, a traced pass whose receiver
    /// got no span (or did not say), scenarios that failed, runs with errors.
    fn problems(&self) -> Vec<String> {
        let name = self.settings.name;
        if let Some(failure) = &self.failure {
            return vec![format!("the {name} pass did not run: {failure}")];
        }
        let mut problems = Vec::new();
        let traced = format!("the {name} pass was traced but the otlp-receiver");
        match self.traces {
            _ if !self.settings.traced => {}
            None => problems.push(format!("{traced}'s count is missing (see its log)")),
            Some(t) if t.spans == 0 => problems.push(format!("{traced} got no span")),
            Some(_) => {}
        }
        for s in &self.scenarios {
            let scenario = format!("scenario {} ({name})", s.key);
            if let Some(failure) = &s.failure {
                problems.push(format!("{scenario} did not run: {failure}"));
            }
            for r in s.runs.iter().filter(|r| r.errors > 0) {
                let (w, connections, errors) = (&r.wrk, r.connections, r.errors);
                let (non2xx, fallback) = (w.non2xx.max(w.errors.status), w.degraded);
                let why = format!(
                    "{:?}, non-2xx {non2xx}, full-price fallback {fallback}",
                    w.errors
                );
                problems.push(format!(
                    "{scenario} at {connections} connections: {errors} errors ({why})"
                ));
            }
        }
        problems
    }
}

impl Report {
    /// The report of a run of `args` that started at `started_unix`, with wrk `wrk`, on this
    /// machine and commit.
    pub fn new(
        args: &BenchArgs,
        started_unix: u64,
        wrk: String,
        main: Pass,
        tuned: Option<Pass>,
    ) -> Self {
        let mut git = Command::new("git");
        git.args(["rev-parse", "--short", "HEAD"])
            .current_dir(crate::workspace_root());
        let git = git
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success());
        Self {
            started_unix,
            git_commit: git.map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned()),
            wrk,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            smoke: args.smoke,
            duration_secs: args.duration,
            warmup_secs: args.warmup,
            connections: args.connections.clone(),
            main,
            tuned,
        }
    }

    pub fn passes(&self) -> impl Iterator<Item = &Pass> {
        std::iter::once(&self.main).chain(&self.tuned)
    }

    /// What went wrong in either pass, in words; empty if all is well.
    pub fn problems(&self) -> Vec<String> {
        self.passes().flat_map(Pass::problems).collect()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::bench::scenarios::SCENARIOS;
    use crate::bench::scenarios::tests::{args, passes};

    /// A run at `c` connections of `requests` in 1 s with this p99, and Catalog's requests per
    /// RPC as (sum, count) if scraped.
    pub(in crate::bench) fn run(c: u32, n: u64, p99_us: u64, rpc: Option<(f64, f64)>) -> RunResult {
        let (mut stats, mut rpcs) = (WrkStats::default(), RpcMetrics::default());
        (
            stats.requests,
            stats.duration_us,
            stats.p50_us,
            stats.p99_us,
        ) = (n, 1_000_000, p99_us / 2, p99_us);
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
        let mut memory = Memory::of((process.into(), 0));
        memory.vm_hwm_kib = Some(mib * 1024);
        memory
    }

    /// A smoke report with `args` as on the command line: A and B ran at 32 connections, D
    /// did not; no tuned pass.
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
        let a = scenario(
            "A",
            vec![run(1, 1000, 100, None), run(32, 4000, 1000, None)],
        );
        let b = scenario("B", vec![run(1, 500, 200, None), run(32, 1000, 4000, None)]);
        let c = scenario("C", vec![run(1, 800, 150, None)]);
        let pass = Pass::new(passes(&[]).0, vec![a, b, c], vec![], None, &[1, 32, 128]);
        let ratios = serde_json::to_string(&pass.ratios).unwrap();
        let want = r#"[{"connections":1,"b_over_a_throughput":0.5,"c_over_a_throughput":0.8,"b_over_a_p99":2.0,"c_over_a_p99":1.4999999999999998},{"connections":32,"b_over_a_throughput":0.25,"c_over_a_throughput":null,"b_over_a_p99":4.0,"c_over_a_p99":null},{"connections":128,"b_over_a_throughput":null,"c_over_a_throughput":null,"b_over_a_p99":null,"c_over_a_p99":null}]"#;
        assert_eq!(ratios, want);
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
    }

    #[test]
    fn reads_this_process_s_peak_memory() {
        let me = Memory::of(("xtask".into(), std::process::id()));
        assert!(me.vm_hwm_kib.is_some_and(|k| k > 0), "{me:?}");
    }

    #[test]
    fn problems_name_failed_scenarios_runs_with_errors_passes_that_did_not_run_and_spans_missing() {
        let mut report = report(&[]);
        let mut with_errors = scenario("B", vec![run(32, 1000, 2000, None)]);
        (with_errors.runs[0].errors, with_errors.runs[0].wrk.degraded) = (3, 3);
        let tuned = passes(&[]).1.unwrap().0;
        report.tuned = Some(Pass::new(tuned, vec![with_errors], vec![], None, &[32]));
        let want = "scenario D (default) did not run: catalog-service does not accept --products\nscenario B (tuned) at 32 connections: 3 errors (SocketErrors { connect: 0, read: 0, write: 0, status: 0, timeout: 0 }, non-2xx 0, full-price fallback 3)";
        assert_eq!(report.problems().join("\n"), want);
        report.tuned.as_mut().unwrap().failure = Some("no Discount".into());
        assert_eq!(
            report.problems()[1],
            "the tuned pass did not run: no Discount"
        );

        let mut traced = self::report(&["--traced", "--tuned", "none"]);
        traced.main.scenarios.truncate(2);
        let missing =
            "the traced pass was traced but the otlp-receiver's count is missing (see its log)";
        assert_eq!(traced.problems(), [missing]);
        traced.main.traces = Some(TracesReceived {
            spans: 0,
            exports: 0,
        });
        assert_eq!(
            traced.problems(),
            ["the traced pass was traced but the otlp-receiver got no span"]
        );
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
        assert!(
            json["tuned"].is_null() && json.get("failure").is_none(),
            "{json}"
        );
        let b = serde_json::to_string(&report.main.scenarios[1].runs[0]).unwrap();
        let want = r#"{"connections":32,"wrk_threads":2,"requests_per_sec":617.0,"p50_ms":2.5,"p99_ms":5.0,"errors":0,"requests_per_rpc":3.0,"groups_per_rpc":null,"rpc_metrics":{"catalog_requests_per_rpc":{"sum":900.0,"count":300.0},"discount_groups_per_rpc":null,"discount_rpcs":null,"catalog_log_lines_dropped":null,"discount_log_lines_dropped":null,"catalog_spans_dropped":null,"discount_spans_dropped":null},"wrk":{"requests":617,"duration_us":1000000,"bytes":0,"p50_us":2500,"p90_us":0,"p99_us":5000,"max_us":0,"mean_us":0.0,"errors":{"connect":0,"read":0,"write":0,"status":0,"timeout":0},"non2xx":0,"degraded":0}}"#;
        assert_eq!(b, want);
    }
}
