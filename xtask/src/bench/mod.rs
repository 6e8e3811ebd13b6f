//! `cargo xtask bench`: a reproducible load benchmark of Catalog (and, through it, Discount).
//!
//! It builds release binaries, makes throw-away certificates and data files in a temporary
//! folder, starts one Discount and three Catalog processes on free loopback ports, checks
//! that each scenario gets the answer it means to measure, warms up, and drives load with
//! wrk (installing Debian's package if it is missing and we are root). Then it reads each
//! service's peak memory, stops everything it started (also on Ctrl-C or SIGTERM), and writes
//! `results.md`, `results.json` and `plot.svg` (to `target/bench/` unless `--out`). Service
//! logs go to `logs/` beside them.
//!
//! | scenario | Catalog process | request |
//! | --- | --- | --- |
//! | A | SPEC data (3 products, 2 customers) | `GET /products`, no `X-USER-ID` |
//! | B | SPEC data | `GET /products`, `X-USER-ID: 1` |
//! | C | SPEC's 3 products, 500 customers | `GET /products`, a fixed mix of customers (see [`wrk::Requests::CustomerMix`]) |
//! | D | 10,000 products, 500 customers | `GET /products?limit=100`, `X-USER-ID: 1` |
//!
//! It is a benchmark, not a test: nothing in CI runs it or times anything. `--smoke` (1 s per
//! scenario at one concurrency) checks that it still works end to end.

mod data;
mod plot;
mod probe;
mod report;
mod wrk;

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use pki::certs_dir::{self, GenCerts};

use crate::services::{Services, Startup, StopSignal, target_dir, wait_child};
use probe::Expect;
use report::{Memory, Report, RunResult, ScenarioResult};
use wrk::{Requests, Wrk};

/// `cargo xtask bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Seconds each measurement runs.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Seconds of unrecorded load before each scenario's measurements.
    #[arg(long, value_name = "SECS", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub warmup: u64,
    /// Concurrent connections to measure at (wrk -c), comma-separated.
    #[arg(long, value_name = "N,N,..", value_delimiter = ',', default_value = "1,32,128",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: Vec<u32>,
    /// Check that the benchmark still works: 1 s of warm-up and 1 s of load per scenario, at
    /// 32 connections only.
    #[arg(long, conflicts_with_all = ["duration", "warmup", "connections"])]
    pub smoke: bool,
    /// Folder for results.md, results.json, plot.svg and the services' logs
    /// [default: target/bench].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Tokio worker threads for Discount. One by default: wrk, Catalog and Discount share this
    /// machine's cores, Discount's work per RPC is microseconds, and a single thread spares the
    /// cross-thread wake-ups that a second one costs here.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub discount_threads: u16,
}

/// Which Catalog process a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CatalogKind {
    /// No data flags: SPEC's embedded products and customers.
    Spec,
    /// SPEC's products and 500 customers, from files.
    Customers,
    /// 10,000 products and 500 customers, from files.
    Large,
}

impl CatalogKind {
    const ALL: [Self; 3] = [Self::Spec, Self::Customers, Self::Large];

    fn process_name(self) -> &'static str {
        match self {
            Self::Spec => "catalog-service (SPEC data)",
            Self::Customers => "catalog-service (3 products, 500 customers)",
            Self::Large => "catalog-service (10,000 products, 500 customers)",
        }
    }

    fn log_name(self) -> &'static str {
        match self {
            Self::Spec => "catalog-spec.log",
            Self::Customers => "catalog-customers.log",
            Self::Large => "catalog-large.log",
        }
    }
}

/// One scenario.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    key: &'static str,
    description: &'static str,
    catalog: CatalogKind,
    path: &'static str,
    requests: Requests,
    /// Requests to check before measuring (`X-USER-ID`, what the answer must be).
    probes: &'static [(Option<&'static str>, Expect)],
}

const SPEC_PLAIN: Expect = Expect {
    products: 3,
    discounted: false,
};
const SPEC_DISCOUNTED: Expect = Expect {
    products: 3,
    discounted: true,
};

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        key: "A",
        description: "GET /products, no X-USER-ID",
        catalog: CatalogKind::Spec,
        path: "/products",
        requests: Requests::Fixed(None),
        probes: &[(None, SPEC_PLAIN)],
    },
    Scenario {
        key: "B",
        description: "GET /products, X-USER-ID: 1",
        catalog: CatalogKind::Spec,
        path: "/products",
        requests: Requests::Fixed(Some(1)),
        probes: &[(Some("1"), SPEC_DISCOUNTED)],
    },
    Scenario {
        key: "C",
        description: "GET /products, customer mix (25% id 1, 50% 2..=500, 25% unknown)",
        catalog: CatalogKind::Customers,
        path: "/products",
        requests: Requests::CustomerMix,
        probes: &[
            (Some("1"), SPEC_DISCOUNTED),
            (Some("2"), SPEC_PLAIN),
            (Some("500"), SPEC_PLAIN),
            (Some("100000"), SPEC_PLAIN),
        ],
    },
    Scenario {
        key: "D",
        description: "GET /products?limit=100 of 10,000, X-USER-ID: 1",
        catalog: CatalogKind::Large,
        path: "/products?limit=100",
        requests: Requests::Fixed(Some(1)),
        probes: &[(
            Some("1"),
            Expect {
                products: 100,
                discounted: true,
            },
        )],
    },
];

/// The settings a run uses, after `--smoke` is applied.
#[derive(Debug, Clone)]
struct Plan {
    duration: Duration,
    warmup: Duration,
    connections: Vec<u32>,
    smoke: bool,
    out: PathBuf,
    discount_threads: u16,
}

impl Plan {
    fn new(args: BenchArgs) -> Self {
        let out = args.out.unwrap_or_else(|| target_dir().join("bench"));
        if args.smoke {
            return Self {
                duration: Duration::from_secs(1),
                warmup: Duration::from_secs(1),
                connections: vec![32],
                smoke: true,
                out,
                discount_threads: args.discount_threads,
            };
        }
        let mut connections = args.connections;
        connections.sort_unstable();
        connections.dedup();
        Self {
            duration: Duration::from_secs(args.duration),
            warmup: Duration::from_secs(args.warmup),
            connections,
            smoke: false,
            out,
            discount_threads: args.discount_threads,
        }
    }
}

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
    let bin_dir = build_release(&stop)?;

    let tmp = tempfile::Builder::new()
        .prefix("xtask-bench-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let certs = tmp.path().join("certs");
    certs_dir::gen_certs(&GenCerts::new(certs.clone(), 1))
        .context("cannot make certificates for the benchmark")?;
    let files = write_data(tmp.path())?;

    // Start everything, then wait for each Catalog in turn.
    let ports = free_ports(1 + CatalogKind::ALL.len())?;
    let discount_port = ports[0];
    let mut services = Services::new();
    let discount_log = logs.join("discount.log");
    let mut discount = service_command(&bin_dir.join("discount-service"), &certs, &discount_log)?;
    discount
        .args(["--listen", &format!("127.0.0.1:{discount_port}")])
        .args(["--worker-threads", &plan.discount_threads.to_string()]);
    services.push(
        "discount-service",
        discount.spawn().context("cannot start discount-service")?,
    );
    let mut catalogs: Vec<(CatalogKind, SocketAddr)> = Vec::new();
    for (kind, port) in CatalogKind::ALL.into_iter().zip(&ports[1..]) {
        let addr = SocketAddr::from(([127, 0, 0, 1], *port));
        let mut cmd = service_command(
            &bin_dir.join("catalog-service"),
            &certs,
            &logs.join(kind.log_name()),
        )?;
        cmd.args(["--listen", &addr.to_string()])
            .args(["--discount-addr", &format!("localhost:{discount_port}")]);
        match kind {
            CatalogKind::Spec => {}
            CatalogKind::Customers => {
                cmd.arg("--products").arg(&files.spec_products);
                cmd.arg("--customers").arg(&files.customers);
            }
            CatalogKind::Large => {
                cmd.arg("--products").arg(&files.large_products);
                cmd.arg("--customers").arg(&files.customers);
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", kind.process_name()))?;
        services.push(kind.process_name(), child);
        catalogs.push((kind, addr));
    }

    for &(kind, addr) in &catalogs {
        let startup =
            services.wait_listening(addr, &stop, Duration::from_secs(60), kind.process_name())?;
        match startup {
            Startup::Listening => {}
            Startup::Stopped => bail!("interrupted"),
            Startup::Exited(who, status) => {
                let log = CatalogKind::ALL
                    .into_iter()
                    .find(|k| k.process_name() == who)
                    .map_or_else(|| logs.join("discount.log"), |k| logs.join(k.log_name()));
                bail!(
                    "{who} exited during start-up ({status}): {}",
                    log_tail(&log)
                );
            }
        }
    }

    let mut results = Vec::new();
    for scenario in &SCENARIOS {
        let mut result = ScenarioResult {
            key: scenario.key,
            description: scenario.description,
            catalog: scenario.catalog.process_name().to_owned(),
            path: scenario.path,
            runs: Vec::new(),
            failure: None,
        };
        let addr = catalogs
            .iter()
            .find(|(k, _)| *k == scenario.catalog)
            .map(|(_, a)| *a);
        match addr {
            None => result.failure = Some("no Catalog process for it".into()),
            Some(addr) => {
                if let Err(err) =
                    run_scenario(scenario, addr, &plan, &wrk, &scripts, &stop, &mut result)
                {
                    if stop.requested() {
                        return Err(err);
                    }
                    eprintln!("warning: scenario {} failed: {err:#}", scenario.key);
                    result.failure = Some(format!("{err:#}"));
                }
            }
        }
        results.push(result);
    }

    let memory: Vec<Memory> = services
        .pids()
        .into_iter()
        .map(|(process, pid)| Memory {
            vm_hwm_kib: report::vm_hwm(pid),
            process,
            pid,
        })
        .collect();
    services.stop();

    let report = Report {
        started_unix,
        git_commit: git_commit(),
        wrk: wrk.version.clone(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        smoke: plan.smoke,
        duration_secs: plan.duration.as_secs(),
        warmup_secs: plan.warmup.as_secs(),
        ratios: report::ratios(&results, &plan.connections),
        connections: plan.connections.clone(),
        scenarios: results,
        memory,
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

/// Probes, warms up and measures one scenario at each concurrency, appending to `result`.
fn run_scenario(
    scenario: &Scenario,
    addr: SocketAddr,
    plan: &Plan,
    wrk: &Wrk,
    scripts: &Path,
    stop: &StopSignal,
    result: &mut ScenarioResult,
) -> anyhow::Result<()> {
    println!();
    println!("scenario {}: {}", scenario.key, scenario.description);
    // Catalog connects to Discount on first use: give it a few seconds to get there.
    for &(user, expect) in scenario.probes {
        probe_until_ok(addr, scenario.path, user, expect, stop).with_context(|| {
            format!(
                "GET {} with X-USER-ID {} does not get the expected answer",
                scenario.path,
                user.unwrap_or("(none)")
            )
        })?;
    }

    let script = scripts.join(format!("{}.lua", scenario.key));
    fs::write(&script, wrk::script(scenario.requests))
        .with_context(|| format!("cannot write {}", script.display()))?;
    let url = format!("http://{addr}{}", scenario.path);
    let max_connections = plan.connections.iter().copied().max().unwrap_or(1);
    println!(
        "  warm-up: {} s at {max_connections} connections",
        plan.warmup.as_secs()
    );
    wrk.run(
        wrk::Run {
            script: &script,
            url: &url,
            connections: max_connections,
            duration: plan.warmup,
        },
        stop,
    )
    .context("warm-up")?;

    for &connections in &plan.connections {
        let stats = wrk
            .run(
                wrk::Run {
                    script: &script,
                    url: &url,
                    connections,
                    duration: plan.duration,
                },
                stop,
            )
            .with_context(|| format!("run at {connections} connections"))?;
        let run = RunResult::new(connections, wrk::threads_for(connections), stats);
        println!(
            "  {:>4} connections: {:>9.0} requests/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
            run.connections, run.requests_per_sec, run.p50_ms, run.p99_ms, run.errors
        );
        result.runs.push(run);
        if stop.requested() {
            bail!("interrupted");
        }
    }
    Ok(())
}

/// Retries a probe for up to 10 s (Catalog serves full prices until its lazy channel to
/// Discount is up); the last failure is the error.
fn probe_until_ok(
    addr: SocketAddr,
    path: &str,
    user: Option<&str>,
    expect: Expect,
    stop: &StopSignal,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let outcome = probe::get(addr, path, user).and_then(|reply| probe::check(&reply, expect));
        match outcome {
            Ok(()) => return Ok(()),
            Err(err) if started.elapsed() > Duration::from_secs(10) => return Err(err),
            Err(_) => {
                if stop.wait(Duration::from_millis(250)) {
                    bail!("interrupted");
                }
            }
        }
    }
}

/// `cargo build --release` of both services; returns the folder holding the binaries.
fn build_release(stop: &StopSignal) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("building discount-service and catalog-service (release)...");
    let mut child = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "discount-service",
            "-p",
            "catalog-service",
        ])
        .current_dir(crate::workspace_root())
        .spawn()
        .context("cannot run cargo build")?;
    let status = wait_child(&mut child, "cargo build", stop, Duration::from_secs(3600))?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }
    Ok(target_dir().join("release"))
}

/// The data files Catalog is given.
#[derive(Debug)]
struct DataFiles {
    spec_products: PathBuf,
    large_products: PathBuf,
    customers: PathBuf,
}

fn write_data(dir: &Path) -> anyhow::Result<DataFiles> {
    let files = DataFiles {
        spec_products: dir.join("products-spec.json"),
        large_products: dir.join("products-10000.json"),
        customers: dir.join("customers-500.json"),
    };
    data::write_json(&files.spec_products, &data::spec_products())?;
    data::write_json(&files.large_products, &data::generated_products(10_000))?;
    data::write_json(&files.customers, &data::generated_customers(500))?;
    Ok(files)
}

/// A service command with its certificates, its output appended to `log`, and none of the
/// services' environment variables from the caller's shell (so every run is configured alike).
fn service_command(binary: &Path, certs: &Path, log: &Path) -> anyhow::Result<Command> {
    let file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let file2 = file
        .try_clone()
        .with_context(|| format!("cannot reopen {}", log.display()))?;
    let mut cmd = Command::new(binary);
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("CATALOG_")
            || key_text.starts_with("DISCOUNT_")
            || key_text == "CERTS_DIR"
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .arg("--certs-dir")
        .arg(certs)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(file2));
    Ok(cmd)
}

/// The last few non-empty lines of a log, joined, for an error message.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    if tail.is_empty() {
        format!("(nothing in {})", path.display())
    } else {
        tail
    }
}

/// `n` distinct loopback ports that were free a moment ago.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find a free loopback port")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr().context("cannot read a bound port")?.port()))
        .collect()
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
    let md = report.markdown();
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
