//! `cargo xtask bench`: a reproducible load benchmark of Catalog (and, through it, Discount),
//! described in docs/performance.md. A main pass (both services on their defaults), a tuned
//! pass, each on fresh processes ([`launch`]), each scenario ([`scenarios::SCENARIOS`], and A
//! and B served from PostgreSQL) checked, warmed up and measured with wrk ([`measure`]), B and
//! A, D and D-plain again by turns ([`paired`]); then
//! Catalog following PostgreSQL ([`database`]); one results model ([`results`]) written as
//! `results.json`, `results.md` ([`markdown`]) and `plot.svg` ([`plot`]). `--smoke` checks that
//! it still works end to end; nothing in CI times anything.

mod data;
mod database;
mod launch;
mod markdown;
mod measure;
mod paired;
mod plot;
mod results;
mod scenarios;
mod wrk;

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use pki::certs_dir::{self, GenCerts};
use reqwest::blocking::Client;

use crate::services::StopSignal;
use results::{Memory, Pass, Report, ScenarioResult};
use scenarios::{Catalog, FROM_DATABASE, PassSettings, SCENARIOS, Scenario};
use wrk::Wrk;

pub use scenarios::BenchArgs;

/// What every pass works with.
#[derive(Clone, Copy)]
struct Env<'a> {
    args: &'a BenchArgs,
    wrk: &'a Wrk,
    bin_dir: &'a Path,
    certs: &'a Path,
    /// Where Catalog's data files are.
    data: &'a Path,
    stop: &'a StopSignal,
    /// The client that checks answers and reads `/metrics`.
    http: &'a Client,
    /// The database pass's PostgreSQL, as Catalog reaches it.
    database_url: Option<&'a str>,
}

/// Runs the benchmark. Fails (after writing the results) if a scenario could not run or a run
/// had errors.
pub fn run(args: BenchArgs) -> Result<()> {
    let args = args.normalised();
    let out = (args.out.clone()).unwrap_or_else(|| crate::services::target_dir().join("bench"));
    let stop = StopSignal::install()?;
    let started_unix = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    let (logs, scripts) = (out.join("logs"), out.join("wrk"));
    for dir in [&logs, &scripts] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    let wrk = wrk::ensure(scripts, &stop)?;
    println!("using {}", wrk.version);
    let binaries = ["discount-service", "catalog-service", launch::RECEIVER];
    let binaries = &binaries[..if args.traced { 3 } else { 2 }];
    let bin_dir = crate::services::cargo_build(binaries, true, &stop)?;
    let tmp = tempfile::Builder::new().prefix("xtask-bench-").tempdir();
    let tmp = tmp.context("cannot create a temporary folder")?;
    let certs = tmp.path().join("certs");
    let made = certs_dir::gen_certs(&GenCerts::new(certs.clone(), 1));
    made.context("cannot make certificates for the benchmark")?;
    data::write_data(tmp.path())?;
    let timeout = Duration::from_secs(5);
    let http = Client::builder().no_proxy().timeout(timeout).build();
    // The database pass's PostgreSQL, up before the main pass: it serves A and B there too.
    let cluster = (!args.no_database).then(|| crate::database::start(&certs, &bin_dir, &stop));
    let running = cluster.as_ref().and_then(|c| c.as_ref().ok());
    let url = running.map(|c| c.tls_url("catalog"));
    let env = Env {
        args: &args,
        wrk: &wrk,
        bin_dir: &bin_dir,
        certs: &certs,
        data: tmp.path(),
        stop: &stop,
        http: &http.context("cannot make an HTTP client")?,
        database_url: url.as_deref(),
    };

    let settings = PassSettings::new(false, &args);
    println!("\nmain pass: {}", settings.describe());
    let from_database = url.as_ref().map_or(&[][..], |_| &FROM_DATABASE[..]);
    let scenarios = [&SCENARIOS, from_database].concat();
    let main = run_pass(&env, &settings, &scenarios, &logs)?;
    let tuned = args.tuned_pass().map(|(settings, scenarios)| {
        println!("\ntuned pass: {}", settings.describe());
        let pass = run_pass(&env, &settings, &scenarios, &logs.join("tuned"));
        let failed = |why| Pass::failed(settings, why);
        or_failed(&stop, "the tuned pass", pass, failed)
    });
    let database = cluster.map(|c| database::follow(&env, &settings, c, &logs.join("database")));
    let (tuned, database) = (tuned.transpose()?, database.transpose()?);

    let started_unix = started_unix.map_or(0, |d| d.as_secs());
    let mut report = Report::new(&args, started_unix, wrk.version.clone(), main);
    (report.tuned, report.database) = (tuned, database);
    write_report(&report, &out)?;
    let problems = report.problems().join("\n  - ");
    if !problems.is_empty() {
        bail!("the results are incomplete:\n  - {problems}");
    }
    Ok(())
}

/// `ran` if it did; if not, with a warning, `failed` with why; on Ctrl-C, its error.
fn or_failed<T>(
    stop: &StopSignal,
    what: &str,
    ran: Result<T>,
    failed: impl FnOnce(String) -> T,
) -> Result<T> {
    match ran {
        Err(err) if stop.requested() => Err(err),
        Err(err) => {
            eprintln!("warning: {what} failed: {err:#}");
            Ok(failed(format!("{err:#}")))
        }
        ran => ran,
    }
}

/// Starts the processes as `settings` says (the Catalogs `scenarios` need, those sharing one
/// next to each other; logs in `logs`), measures each scenario, reads peak memory and stops
/// them. A scenario that fails is recorded and the next one runs; processes that do not start,
/// or Ctrl-C, are an error.
fn run_pass(
    env: &Env<'_>,
    settings: &PassSettings,
    scenarios: &[Scenario],
    logs: &Path,
) -> Result<Pass> {
    fs::create_dir_all(logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let mut catalogs: Vec<Catalog> = scenarios.iter().map(|s| s.catalog).collect();
    catalogs.dedup();
    let started = launch::start(env, settings, &catalogs, logs)?;

    let at = |s: &Scenario| {
        let mut catalogs = started.catalogs.iter();
        catalogs.find(|(c, _)| *c == s.catalog).map(|(_, at)| *at)
    };
    let mut results = Vec::new();
    for scenario in scenarios {
        let mut result = ScenarioResult::new(scenario);
        let at = at(scenario).context("no Catalog")?;
        let measured = measure::run_scenario(env, scenario, at, &mut result);
        let what = format!("scenario {}", scenario.key);
        result.failure = or_failed(env.stop, &what, measured.map(|()| None), Some)?;
        results.push(result);
    }
    let paired = paired::measure(env, scenarios, &results, at)?;

    let memory = started.services.pids().into_iter().map(Memory::of);
    let memory = memory.collect();
    let traces = started.stop();
    let (settings, connections) = (settings.clone(), &env.args.connections);
    let mut pass = Pass::new(settings, results, memory, traces, connections);
    pass.paired = paired;
    Ok(pass)
}

/// Writes `results.md` (and prints it), `results.json` and `plot.svg` into `out`.
fn write_report(report: &Report, out: &Path) -> Result<()> {
    let md = markdown::render(report);
    print!("\n{md}");
    let json = serde_json::to_string_pretty(report).context("cannot serialise the results")?;
    let paths = ["results.md", "results.json", "plot.svg"].map(|name| out.join(name));
    for (path, text) in paths.iter().zip([md, json + "\n"]) {
        fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    plot::draw(&paths[2], &report.main.scenarios, &report.connections)?;
    let [md, json, svg] = paths.map(|p| p.display().to_string());
    println!("\nwrote {md}, {json} and {svg}");
    Ok(())
}
