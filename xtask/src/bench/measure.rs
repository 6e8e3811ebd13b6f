//! Measuring one scenario against its running Catalog: probe until the answer is the one the
//! scenario means to measure, warm up with wrk, then one wrk run per concurrency.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::services::StopSignal;

use super::probe::{self, Expect};
use super::report::{RunResult, ScenarioResult};
use super::scenarios::{Plan, Scenario};
use super::wrk::{self, Wrk};

/// Probes, warms up and measures one scenario at each concurrency, appending to `result`.
pub(super) fn run_scenario(
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
