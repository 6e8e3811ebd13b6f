//! Measuring one scenario against its running Catalog: probe until the answer is the one the
//! scenario means to measure, warm up with wrk, then one wrk run per concurrency, reading
//! Catalog's and Discount's `/metrics` just before and just after each run.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::services::StopSignal;

use super::probe::{self, Expect};
use super::report::{RpcMetrics, RunResult, ScenarioResult};
use super::scenarios::{Plan, Scenario};
use super::scrape::{self, Scrape};
use super::wrk::{self, Wrk};

/// Where a scenario's services answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Endpoints {
    /// The scenario's Catalog (HTTP).
    pub(super) catalog: SocketAddr,
    /// Its operations port (`/metrics`).
    pub(super) catalog_metrics: SocketAddr,
    /// Discount's operations port (`/metrics`).
    pub(super) discount_metrics: SocketAddr,
}

/// Probes, warms up and measures one scenario at each concurrency, appending to `result`.
pub(super) fn run_scenario(
    scenario: &Scenario,
    endpoints: Endpoints,
    plan: &Plan,
    wrk: &Wrk,
    scripts: &Path,
    stop: &StopSignal,
    result: &mut ScenarioResult,
) -> anyhow::Result<()> {
    println!();
    println!("scenario {}: {}", scenario.key, scenario.description);
    let addr = endpoints.catalog;
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
        let before = Snapshot::take(endpoints);
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
        let rpcs = Snapshot::take(endpoints).growth_since(&before);
        let run = RunResult::new(connections, wrk::threads_for(connections), stats, rpcs);
        let per_rpc = run
            .requests_per_rpc
            .map_or_else(|| "-".to_owned(), |m| format!("{m:.2}"));
        println!(
            "  {:>4} connections: {:>9.0} requests/s, p50 {:.3} ms, p99 {:.3} ms, {} errors, \
             {per_rpc} requests/RPC",
            run.connections, run.requests_per_sec, run.p50_ms, run.p99_ms, run.errors
        );
        result.runs.push(run);
        if stop.requested() {
            bail!("interrupted");
        }
    }
    Ok(())
}

/// Both services' metrics at one moment; `None` where a scrape failed (with a warning: the
/// run is still measured, its per-RPC figures are then unknown).
struct Snapshot {
    catalog: Option<Scrape>,
    discount: Option<Scrape>,
}

impl Snapshot {
    fn take(endpoints: Endpoints) -> Self {
        let get = |addr, who: &str| {
            scrape::get(addr)
                .map_err(|err| eprintln!("warning: cannot read {who}'s /metrics: {err:#}"))
                .ok()
        };
        Self {
            catalog: get(endpoints.catalog_metrics, "Catalog"),
            discount: get(endpoints.discount_metrics, "Discount"),
        }
    }

    /// What the metrics gained since `before`.
    fn growth_since(&self, before: &Self) -> RpcMetrics {
        let catalog = self.catalog.as_ref().zip(before.catalog.as_ref());
        let discount = self.discount.as_ref().zip(before.discount.as_ref());
        // The counters appear with the first line or span dropped: absent counts as none.
        let dropped = |(now, then): (&Scrape, &Scrape)| now.growth(then, scrape::LOG_LINES_DROPPED);
        let spans_dropped =
            |(now, then): (&Scrape, &Scrape)| now.growth(then, scrape::SPANS_DROPPED);
        RpcMetrics {
            catalog_requests_per_rpc: catalog
                .map(|(now, then)| now.histogram_growth(then, scrape::CATALOG_REQUESTS_PER_RPC)),
            discount_groups_per_rpc: discount
                .map(|(now, then)| now.histogram_growth(then, scrape::DISCOUNT_GROUPS_PER_RPC)),
            discount_rpcs: discount.map(|(now, then)| now.growth(then, scrape::DISCOUNT_RPCS)),
            catalog_log_lines_dropped: catalog.map(dropped),
            discount_log_lines_dropped: discount.map(dropped),
            catalog_spans_dropped: catalog.map(spans_dropped),
            discount_spans_dropped: discount.map(spans_dropped),
        }
    }
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
