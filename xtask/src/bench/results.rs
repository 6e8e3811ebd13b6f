//! The benchmark's results, one model for both files: `results.json` is it serialised as it
//! is, `results.md` ([`super::markdown`]) renders it. What each pass (the services' defaults,
//! then the tuned one) measured, with requests and groups per discount RPC, the B/A, C/A and
//! D/D-plain ratios (and B/A, D/D-plain by turns), peak memory, the spans the OTLP receiver
//! got (`--traced`), how Catalog followed PostgreSQL, and what went wrong.

use std::process::Command;

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
    /// Catalog following PostgreSQL, unless `--no-database`.
    pub database: Option<Following>,
}

/// One pass: its services' settings and what they measured.
#[derive(Debug, Clone, Serialize)]
pub struct Pass {
    pub settings: PassSettings,
    pub scenarios: Vec<ScenarioResult>,
    pub ratios: Vec<Ratios>,
    /// B to A and D to D-plain again, measured by turns ([`super::paired`]).
    pub paired: Vec<Paired>,
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
    /// Groups per groups RPC at Discount during the run (the mean of
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

/// B and C relative to A, and D to its plain twin, at one concurrency: throughput and p99 ratios.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratios {
    pub connections: u32,
    pub b_over_a_throughput: Option<f64>,
    pub c_over_a_throughput: Option<f64>,
    pub d_over_d_plain_throughput: Option<f64>,
    pub b_over_a_p99: Option<f64>,
    pub c_over_a_p99: Option<f64>,
    pub d_over_d_plain_p99: Option<f64>,
}

/// One pair's scenarios measured by turns on the same processes ([`super::paired`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paired {
    pub numerator: &'static str,
    pub denominator: &'static str,
    pub connections: u32,
    pub round_secs: u64,
    /// Each round's requests/s: `[numerator, denominator]`.
    pub rounds: Vec<[f64; 2]>,
    /// The median of the rounds' ratios (nearest rank); `None` without a round.
    pub median: Option<f64>,
    /// Errors in all its runs, as a scenario's runs count them.
    pub errors: u64,
    /// Why the rounds stopped short, if they did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl Paired {
    /// `numerator` over `denominator` at `connections`, before its rounds.
    pub fn new(
        numerator: &'static str,
        denominator: &'static str,
        connections: u32,
        round_secs: u64,
    ) -> Self {
        Self {
            numerator,
            denominator,
            connections,
            round_secs,
            rounds: Vec::new(),
            median: None,
            errors: 0,
            failure: None,
        }
    }

    /// Each round's ratio (rounds with a denominator of zero left out).
    pub fn ratios(&self) -> Vec<f64> {
        let each = self.rounds.iter().map(|&[n, d]| ratio(Some(n), Some(d)));
        each.flatten().collect()
    }

    /// The median of [`Self::ratios`], if any.
    pub fn median_ratio(&self) -> Option<f64> {
        let ratios = self.ratios();
        (!ratios.is_empty()).then(|| percentile(&ratios, 0.5))
    }
}

/// Peak resident memory of one process: a service, or the OTLP receiver of a traced pass.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub process: String,
    pub pid: u32,
    /// VmHWM from /proc/<pid>/status, in KiB.
    pub vm_hwm_kib: Option<u64>,
}

/// Catalog following PostgreSQL at each size, a fresh process each (the database pass).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Following {
    /// How often a change, or the first snapshot, was looked for: the times' resolution.
    pub poll_ms: u64,
    pub stages: Vec<Stage>,
    /// Why the pass stopped short (or did not start), if it did.
    pub failure: Option<String>,
}

/// One size: its catalog read in full, then prices changed one at a time by the owner (an
/// `UPDATE` each, on one `psql` session), each timed from its commit acknowledged to the new
/// price in `/products/{id}` (`visible_ms`, in order).
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub products: u32,
    /// From Catalog's spawn to its first `200` from `/products?limit=1`.
    pub first_snapshot_ms: f64,
    /// Catalog's peak resident memory (VmHWM) at the end, in KiB.
    pub catalog_vm_hwm_kib: Option<u64>,
    pub visible_p50_ms: f64,
    pub visible_p99_ms: f64,
    pub visible_ms: Vec<f64>,
    pub transaction: Option<Transaction>,
}

/// `UPDATE products SET price_in_cents = price_in_cents + 1 WHERE id <= rows`, one transaction
/// sent a fifth of the way into a wrk run of `/products?limit=100` at 32 connections
/// (`during`), after a run without it (`quiet`).
#[derive(Debug, Clone, Serialize)]
pub struct Transaction {
    pub rows: u32,
    /// From sending it to its commit acknowledged.
    pub commit_ms: f64,
    /// From its commit to the last row's new price in `/products/{rows}`.
    pub visible_ms: f64,
    pub quiet: RunResult,
    pub during: RunResult,
}

impl RunResult {
    /// The summary of `stats`, measured at `connections`, and what the services' metrics
    /// counted meanwhile.
    pub fn new(connections: u32, stats: WrkStats, rpcs: RpcMetrics) -> Self {
        Self {
            connections,
            wrk_threads: super::wrk::threads_for(connections),
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

impl ScenarioResult {
    /// `scenario`, before it runs.
    pub fn new(scenario: &Scenario) -> Self {
        Self {
            key: scenario.key,
            description: scenario.description,
            catalog: scenario.catalog.name,
            path: scenario.path,
            runs: Vec::new(),
            failure: None,
        }
    }
}

impl Memory {
    /// The peak resident set of process `pid`, called `process`.
    pub fn of((process, pid): (String, u32)) -> Self {
        Self {
            process,
            pid,
            vm_hwm_kib: process_testing::peak_resident_kib(pid),
        }
    }
}

/// The `p`-quantile of `samples` by nearest rank (the least sample that at least that share
/// of them do not exceed); `NaN` if there are none.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied().unwrap_or(f64::NAN)
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
        let run = |key, c| run_of(&scenarios, key, c);
        let ratios = connections.iter().map(|&c| {
            let rps = |key| run(key, c).map(|r| r.requests_per_sec);
            let p99 = |key| run(key, c).map(|r| r.p99_ms);
            Ratios {
                connections: c,
                b_over_a_throughput: ratio(rps("B"), rps("A")),
                c_over_a_throughput: ratio(rps("C"), rps("A")),
                d_over_d_plain_throughput: ratio(rps("D"), rps("D-plain")),
                b_over_a_p99: ratio(p99("B"), p99("A")),
                c_over_a_p99: ratio(p99("C"), p99("A")),
                d_over_d_plain_p99: ratio(p99("D"), p99("D-plain")),
            }
        });
        let (ratios, failure) = (ratios.collect(), None);
        Self {
            settings,
            scenarios,
            ratios,
            paired: Vec::new(),
            memory,
            traces,
            failure,
        }
    }

    /// A pass that did not run, and why.
    pub fn failed(settings: PassSettings, why: String) -> Self {
        let mut failed = Self::new(settings, vec![], vec![], None, &[]);
        failed.failure = Some(why);
        failed
    }

    /// The run of scenario `key` at `connections`, if there was one.
    pub fn run(&self, key: &str, connections: u32) -> Option<&RunResult> {
        run_of(&self.scenarios, key, connections)
    }

    /// What went wrong in this pass, in words: it did not run, a traced pass whose receiver
    /// got no span (or did not say), scenarios that failed, runs with errors, rounds by turns
    /// that stopped short or had errors.
    fn problems(&self) -> Vec<String> {
        let name = self.settings.name;
        if let Some(failure) = &self.failure {
            return vec![format!("the {name} pass did not run: {failure}")];
        }
        let traced = format!("the {name} pass was traced but the otlp-receiver");
        let mut problems = Vec::new();
        match self.traces {
            _ if !self.settings.traced => {}
            None => problems.push(format!("{traced}'s count is missing (see its log)")),
            Some(t) if t.spans == 0 => problems.push(format!("{traced} got no span")),
            Some(_) => {}
        }
        for s in &self.scenarios {
            let scenario = format!("scenario {} ({name})", s.key);
            let failure = s.failure.iter();
            problems.extend(failure.map(|f| format!("{scenario} did not run: {f}")));
            for r in s.runs.iter().filter(|r| r.errors > 0) {
                let (w, errors, c) = (&r.wrk, r.errors, r.connections);
                let (socket, non2xx) = (w.errors, w.non2xx.max(w.errors.status));
                let (fallback, at) = (w.degraded, format!("{scenario} at {c} connections"));
                let why = format!("{socket:?}, non-2xx {non2xx}, full-price fallback {fallback}");
                problems.push(format!("{at}: {errors} errors ({why})"));
            }
        }
        for p in &self.paired {
            let pair = format!("{}/{} by turns ({name})", p.numerator, p.denominator);
            problems.extend(
                p.failure
                    .iter()
                    .map(|f| format!("{pair} stopped short: {f}")),
            );
            if p.errors > 0 {
                problems.push(format!("{pair}: {} errors", p.errors));
            }
        }
        problems
    }
}

/// The run of scenario `key` at `connections` among `scenarios`, if there was one.
fn run_of<'a>(scenarios: &'a [ScenarioResult], key: &str, c: u32) -> Option<&'a RunResult> {
    let scenario = scenarios.iter().find(|s| s.key == key)?;
    scenario.runs.iter().find(|r| r.connections == c)
}

impl Report {
    /// The report of a run of `args` that started at `started_unix`, with wrk `wrk`, on this
    /// machine and commit, with its main pass (the others to be added).
    pub fn new(args: &BenchArgs, started_unix: u64, wrk: String, main: Pass) -> Self {
        let mut git = Command::new("git");
        // Its stderr is captured with its output, not shown.
        git.args(["rev-parse", "--short", "HEAD"]);
        let git = git.current_dir(crate::workspace_root()).output().ok();
        let git = git.filter(|out| out.status.success());
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
            tuned: None,
            database: None,
        }
    }

    pub fn passes(&self) -> impl Iterator<Item = &Pass> {
        std::iter::once(&self.main).chain(&self.tuned)
    }

    /// What went wrong, in words; empty if all is well.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self.passes().flat_map(Pass::problems).collect();
        let stopped = self.database.iter().filter_map(|d| d.failure.as_ref());
        problems.extend(stopped.map(|f| format!("the database pass stopped short: {f}")));
        problems
    }
}

#[cfg(test)]
#[path = "results_tests.rs"]
pub(super) mod tests;
