//! The benchmark's results: what was measured, the B/A and C/A ratios, peak memory, and their
//! Markdown and JSON forms. Pure functions of the numbers, so they are unit-tested.

use std::fmt::Write as _;

use serde::Serialize;

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
    pub scenarios: Vec<ScenarioResult>,
    pub ratios: Vec<Ratios>,
    pub memory: Vec<Memory>,
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
    /// wrk's raw numbers.
    pub wrk: WrkStats,
}

impl RunResult {
    /// The summary of `stats`, measured with `connections` and `wrk_threads`.
    pub fn new(connections: u32, wrk_threads: u32, stats: WrkStats) -> Self {
        Self {
            connections,
            wrk_threads,
            requests_per_sec: stats.requests_per_sec(),
            p50_ms: stats.p50_us as f64 / 1000.0,
            p99_ms: stats.p99_us as f64 / 1000.0,
            errors: stats.total_errors(),
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

/// Peak resident memory of one service process.
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
    /// Scenarios that failed, and runs with errors, in words; empty if all is well.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for s in &self.scenarios {
            if let Some(failure) = &s.failure {
                problems.push(format!("scenario {} did not run: {failure}", s.key));
            }
            for r in s.runs.iter().filter(|r| r.errors > 0) {
                let w = &r.wrk;
                problems.push(format!(
                    "scenario {} at {} connections: {} errors (connect {}, read {}, write {}, \
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

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# cargo xtask bench{}",
            if self.smoke { " --smoke" } else { "" }
        );
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "{} s per run after {} s of warm-up per scenario; {}; {} CPUs shared by wrk and the \
             services; commit {}.",
            self.duration_secs,
            self.warmup_secs,
            self.wrk,
            self.cpus,
            self.git_commit.as_deref().unwrap_or("unknown")
        );
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "| scenario | connections | requests/s | p50 ms | p99 ms | errors |"
        );
        let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: |");
        for s in &self.scenarios {
            let name = format!("{}: {}", s.key, s.description);
            for r in &s.runs {
                let _ = writeln!(
                    md,
                    "| {name} | {} | {:.0} | {:.3} | {:.3} | {} |",
                    r.connections, r.requests_per_sec, r.p50_ms, r.p99_ms, r.errors
                );
            }
            if let Some(failure) = &s.failure {
                let failure = failure.replace('|', "\\|").replace('\n', " ");
                let _ = writeln!(md, "| {name} | – | – | – | – | did not run: {failure} |");
            }
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "Errors are socket errors, timeouts (2 s), non-2xx answers and full-price answers \
             (`x-discount-unavailable`)."
        );
        let _ = writeln!(md);
        let _ = writeln!(md, "## Relative to A (no X-USER-ID)");
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "| connections | B/A requests/s | C/A requests/s | B/A p99 | C/A p99 |"
        );
        let _ = writeln!(md, "| ---: | ---: | ---: | ---: | ---: |");
        let cell = |r: Option<f64>| r.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}"));
        for r in &self.ratios {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                r.connections,
                cell(r.b_over_a_throughput),
                cell(r.c_over_a_throughput),
                cell(r.b_over_a_p99),
                cell(r.c_over_a_p99)
            );
        }
        let _ = writeln!(md);
        let _ = writeln!(md, "## Peak resident memory (VmHWM) after the run");
        let _ = writeln!(md);
        let _ = writeln!(md, "| process | VmHWM MiB |");
        let _ = writeln!(md, "| --- | ---: |");
        for m in &self.memory {
            let mib = m
                .vm_hwm_kib
                .map_or_else(|| "–".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
            let _ = writeln!(md, "| {} | {mib} |", m.process);
        }
        md
    }
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
                .map(|&(c, rps, p99)| RunResult::new(c, 1, stats(rps, p99)))
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
    fn markdown_has_a_row_per_run_and_a_line_per_failure() {
        let mut failed = scenario("D", &[]);
        failed.failure = Some("catalog-service does not accept --products".into());
        let report = Report {
            started_unix: 0,
            git_commit: None,
            wrk: "wrk 4.1.0".into(),
            cpus: 2,
            smoke: true,
            duration_secs: 1,
            warmup_secs: 1,
            connections: vec![32],
            scenarios: vec![scenario("A", &[(32, 1234, 2500)]), failed],
            ratios: vec![],
            memory: vec![],
        };
        let md = report.markdown();
        assert!(
            md.contains("| A: test | 32 | 1234 | 1.250 | 2.500 | 0 |"),
            "{md}"
        );
        assert!(md.contains("did not run: catalog-service does not accept --products"));
        assert_eq!(report.problems().len(), 1);
    }
}
