//! `cargo xtask bench`: a reproducible load benchmark of Catalog (and, through it, Discount).
//!
//! It builds release binaries, makes throw-away certificates and data files in a temporary
//! folder, starts one Discount and three Catalog processes on loopback ports the system picks
//! (each binds port 0 and the address is read from its log), checks that each scenario gets
//! the answer it means to measure, warms up, and drives load with wrk (installing Debian's
//! package if it is missing and we are root). Around each run it reads Catalog's and
//! Discount's `/metrics`, for the requests and groups each discount RPC carried. Then it reads
//! each service's peak memory and stops everything it started (also on Ctrl-C or SIGTERM).
//!
//! That main pass runs both services on their defaults, as a user runs them (access log on).
//! A tuned pass follows (scenarios A and B unless `--tuned` says otherwise) on fresh processes:
//! access log off, Discount on one worker thread. It writes `results.md` (both passes side by
//! side), `results.json` and `plot.svg` (the main pass; to `target/bench/` unless `--out`).
//! Service logs go to `logs/` beside them, the tuned pass's to `logs/tuned/`.
//!
//! Tracing is off in every pass (the services get no `OTEL_*` variable, whatever the caller's
//! shell holds) unless `--traced`: then each pass starts a local `otlp-receiver` (built with
//! the services; a collector that counts spans and keeps none, its log beside theirs) before
//! the services, and both export every request's spans to it over OTLP/gRPC
//! (`OTEL_TRACES_SAMPLER=always_on`). The passes are then named `traced` and `tuned-traced`,
//! and results.md gives the spans the receiver got in each, and any a service dropped.
//!
//! | scenario | Catalog process | request |
//! | --- | --- | --- |
//! | A | SPEC data (3 products, 2 customers) | `GET /products`, no `X-USER-ID` |
//! | B | SPEC data | `GET /products`, `X-USER-ID: 1` |
//! | C | SPEC's 3 products, 500 customers | `GET /products`, a fixed mix of customers (see [`wrk::Requests::CustomerMix`]) |
//! | D | 10,000 products, 500 customers | `GET /products?limit=100`, `X-USER-ID: 1` |
//!
//! It is a benchmark, not a test: nothing in CI runs it or times anything. `--smoke` (1 s per
//! scenario at one concurrency, the tuned pass too) checks that it still works end to end.

mod data;
mod launch;
mod logline;
mod markdown;
mod measure;
mod otlp;
mod plot;
mod probe;
mod report;
mod scenarios;
mod scrape;
mod wrk;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, bail};
use pki::certs_dir::{self, GenCerts};

use crate::services::StopSignal;
use data::DataFiles;
use report::{Memory, Pass, Report, ScenarioResult, TracesReceived};
use scenarios::{CatalogKind, PassSettings, Plan, SCENARIOS, Scenario};
use wrk::Wrk;

pub use scenarios::BenchArgs;

/// Runs the benchmark. Fails (after writing the results) if a scenario could not run or a run
/// had errors.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let plan = Plan::new(args);
    let stop = StopSignal::install()?;
    let started_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let logs = plan.out.join("logs");
    let scripts = plan.out.join("wrk");
    for dir in [&plan.out, &logs, &scripts] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    let wrk = wrk::ensure(&stop)?;
    println!("using {} ({})", wrk.version, wrk.path.display());
    let bin_dir = launch::build_release(&stop, plan.main.traced)?;

    let tmp = tempfile::Builder::new()
        .prefix("xtask-bench-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let certs = tmp.path().join("certs");
    certs_dir::gen_certs(&GenCerts::new(certs.clone(), 1))
        .context("cannot make certificates for the benchmark")?;
    let files = data::write_data(tmp.path())?;

    let env = Env {
        plan: &plan,
        wrk: &wrk,
        bin_dir: &bin_dir,
        certs: &certs,
        files: &files,
        scripts: &scripts,
        stop: &stop,
    };
    println!();
    println!("main pass: {}", plan.main.describe());
    let main = run_pass(&env, &plan.main, &SCENARIOS, &logs)?;
    let tuned = match &plan.tuned {
        None => None,
        Some((settings, scenarios)) => {
            println!();
            println!("tuned pass: {}", settings.describe());
            let pass = match run_pass(&env, settings, scenarios, &logs.join("tuned")) {
                Ok(outcome) => Pass {
                    settings: settings.clone(),
                    ratios: report::ratios(&outcome.scenarios, &plan.connections),
                    scenarios: outcome.scenarios,
                    memory: outcome.memory,
                    traces: outcome.traces,
                    failure: None,
                },
                Err(err) if stop.requested() => return Err(err),
                Err(err) => {
                    eprintln!("warning: the tuned pass failed: {err:#}");
                    Pass {
                        settings: settings.clone(),
                        scenarios: Vec::new(),
                        ratios: Vec::new(),
                        memory: Vec::new(),
                        traces: None,
                        failure: Some(format!("{err:#}")),
                    }
                }
            };
            Some(pass)
        }
    };

    let report = Report {
        started_unix,
        git_commit: git_commit(),
        wrk: wrk.version.clone(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        smoke: plan.smoke,
        duration_secs: plan.duration.as_secs(),
        warmup_secs: plan.warmup.as_secs(),
        ratios: report::ratios(&main.scenarios, &plan.connections),
        connections: plan.connections.clone(),
        settings: plan.main.clone(),
        scenarios: main.scenarios,
        memory: main.memory,
        traces: main.traces,
        tuned,
    };
    write_report(&report, &plan.out)?;

    let problems = report.problems();
    if !problems.is_empty() {
        bail!(
            "the results are incomplete:\n  - {}",
            problems.join("\n  - ")
        );
    }
    Ok(())
}

/// What every pass shares.
struct Env<'a> {
    plan: &'a Plan,
    wrk: &'a Wrk,
    bin_dir: &'a Path,
    certs: &'a Path,
    files: &'a DataFiles,
    scripts: &'a Path,
    stop: &'a StopSignal,
}

/// What one pass found.
struct PassOutcome {
    scenarios: Vec<ScenarioResult>,
    memory: Vec<Memory>,
    /// What the OTLP receiver got, in a traced pass (if it said).
    traces: Option<TracesReceived>,
}

/// Starts the services as `settings` says (only the Catalogs `scenarios` need, logs in
/// `logs`; the OTLP receiver first if traced), measures each scenario, reads peak memory and
/// stops them (the receiver last). A scenario that fails is recorded and the next one runs;
/// services that do not start, or Ctrl-C, are an error.
fn run_pass(
    env: &Env<'_>,
    settings: &PassSettings,
    scenarios: &[Scenario],
    logs: &Path,
) -> anyhow::Result<PassOutcome> {
    fs::create_dir_all(logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let kinds: Vec<CatalogKind> = CatalogKind::ALL
        .into_iter()
        .filter(|k| scenarios.iter().any(|s| s.catalog == *k))
        .collect();
    let mut started = launch::start_services(
        env.bin_dir,
        env.certs,
        env.files,
        logs,
        settings,
        &kinds,
        env.stop,
    )?;

    let mut results = Vec::new();
    for scenario in scenarios {
        let mut result = ScenarioResult {
            key: scenario.key,
            description: scenario.description,
            catalog: scenario.catalog.process_name().to_owned(),
            path: scenario.path,
            runs: Vec::new(),
            failure: None,
        };
        let addr = started
            .catalogs
            .iter()
            .find(|(k, _)| *k == scenario.catalog)
            .map(|(_, a)| *a);
        match addr {
            None => result.failure = Some("no Catalog process for it".into()),
            Some(catalog) => {
                let endpoints = measure::Endpoints {
                    catalog: catalog.public,
                    catalog_metrics: catalog.ops,
                    discount_metrics: started.discount_metrics,
                };
                if let Err(err) = measure::run_scenario(
                    scenario,
                    endpoints,
                    env.plan,
                    env.wrk,
                    env.scripts,
                    env.stop,
                    &mut result,
                ) {
                    if env.stop.requested() {
                        return Err(err);
                    }
                    eprintln!("warning: scenario {} failed: {err:#}", scenario.key);
                    result.failure = Some(format!("{err:#}"));
                }
            }
        }
        results.push(result);
    }

    let receiver_pid = started.receiver.as_ref().and_then(otlp::Receiver::pid);
    let memory: Vec<Memory> = started
        .services
        .pids()
        .into_iter()
        .chain(receiver_pid.map(|pid| (otlp::BINARY.to_owned(), pid)))
        .map(|(process, pid)| Memory {
            vm_hwm_kib: report::vm_hwm(pid),
            process,
            pid,
        })
        .collect();
    started.services.stop();
    let traces = started.receiver.take().and_then(otlp::Receiver::stop);
    Ok(PassOutcome {
        scenarios: results,
        memory,
        traces,
    })
}

fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(crate::workspace_root())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn write_report(report: &Report, out: &Path) -> anyhow::Result<()> {
    let md = markdown::render(report);
    println!();
    print!("{md}");
    let md_path = out.join("results.md");
    fs::write(&md_path, &md).with_context(|| format!("cannot write {}", md_path.display()))?;
    let json_path = out.join("results.json");
    let json = serde_json::to_string_pretty(report).context("cannot serialise the results")?;
    fs::write(&json_path, json + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let svg_path = out.join("plot.svg");
    plot::draw(&svg_path, &report.scenarios, &report.connections)?;
    println!();
    println!(
        "wrote {}, {} and {}",
        md_path.display(),
        json_path.display(),
        svg_path.display()
    );
    Ok(())
}
