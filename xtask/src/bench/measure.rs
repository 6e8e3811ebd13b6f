//! Measuring one scenario against its running Catalog: ask until the answer is the one the
//! scenario means to measure (the right products, discounted or not, not the full-price
//! fallback), warm up with wrk, then one wrk run per concurrency, reading Catalog's and
//! Discount's `/metrics` just before and just after each run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use process_testing::metric;
use reqwest::blocking::Client;

use super::Env;
use super::results::{HistogramDelta, RpcMetrics, RunResult, ScenarioResult};
use super::scenarios::Scenario;

/// Where a scenario's services answer: its Catalog (HTTP), Catalog's operations port and
/// Discount's (`/metrics`); and when that Catalog was started.
#[derive(Debug, Clone, Copy)]
pub(super) struct Endpoints {
    pub(super) catalog: SocketAddr,
    pub(super) catalog_ops: SocketAddr,
    pub(super) discount_ops: SocketAddr,
    pub(super) spawned: Instant,
}

/// Checks, warms up and measures one scenario at each concurrency, appending to `result`.
pub(super) fn run_scenario(
    env: &Env<'_>,
    scenario: &Scenario,
    at: Endpoints,
    result: &mut ScenarioResult,
) -> Result<()> {
    println!("\nscenario {}: {}", scenario.key, scenario.description);
    let url = format!("http://{}{}", at.catalog, scenario.path);
    // Catalog serves full prices until its lazy channel to Discount is up: ask for up to 10 s.
    let polling = (Duration::from_millis(250), Duration::from_secs(10));
    for &(user, products, discounted) in scenario.probes {
        let expect = (products, discounted);
        let asked = poll(env, polling, || ask(env.http, &url, user, expect));
        let (path, user) = (scenario.path, user.unwrap_or("(none)"));
        let what = format!("GET {path} with X-USER-ID {user} does not get the expected answer");
        asked.context(what)?;
    }

    let (args, wrk) = (env.args, env.wrk);
    let lua = wrk.script(scenario.key, scenario.requests)?;
    let most = args.connections.iter().copied().max().unwrap_or(1);
    println!("  warm-up: {} s at {most} connections", args.warmup);
    wrk.run(&lua, &url, most, args.warmup).context("warm-up")?;

    for &connections in &args.connections {
        let before = scrape(env.http, at);
        let stats = wrk.run(&lua, &url, connections, args.duration);
        let stats = stats.with_context(|| format!("run at {connections} connections"))?;
        let run = RunResult::new(connections, stats, growth(&before, &scrape(env.http, at)));
        let (rps, p50, p99, errors) = (run.requests_per_sec, run.p50_ms, run.p99_ms, run.errors);
        let per_rpc = run.requests_per_rpc.map(|m| format!("{m:.2}"));
        let per_rpc = per_rpc.unwrap_or_else(|| "-".into());
        println!(
            "  {connections:>4} connections: {rps:>9.0} requests/s, p50 {p50:.3} ms, \
             p99 {p99:.3} ms, {errors} errors, {per_rpc} requests/RPC"
        );
        result.runs.push(run);
        if env.stop.requested() {
            bail!("interrupted");
        }
    }
    Ok(())
}

/// Runs `check` every `every` until it succeeds, and returns how long that took, in
/// milliseconds; fails with its last error after `patience`, or on Ctrl-C.
pub(super) fn poll(
    env: &Env,
    (every, patience): (Duration, Duration),
    mut check: impl FnMut() -> Result<()>,
) -> Result<f64> {
    let started = Instant::now();
    loop {
        match check() {
            Ok(()) => return Ok(started.elapsed().as_secs_f64() * 1e3),
            Err(err) if started.elapsed() > patience => return Err(err),
            Err(_) if env.stop.requested() => bail!("interrupted"),
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// `GET url` (with `X-USER-ID: user`), and checks the answer: status 200, not the full-price
/// fallback, the products expected.
fn ask(http: &Client, url: &str, user: Option<&str>, expect: (usize, bool)) -> Result<()> {
    let reply = match user {
        Some(user) => http.get(url).header("X-USER-ID", user),
        None => http.get(url),
    }
    .send()?;
    let fallback = reply.headers().get("x-discount-unavailable").cloned();
    let status = reply.status();
    let body = reply.text().context("cannot read the answer")?;
    ensure!(status == 200, "status {status} ({body})");
    if let Some(reason) = fallback {
        bail!("Catalog served full prices because Discount could not be asked ({reason:?})");
    }
    check_products(&body, expect)
}

/// Checks that `body` holds the number of products expected, discounted where expected.
fn check_products(body: &str, (count, discounted): (usize, bool)) -> Result<()> {
    let products: Vec<serde_json::Value> =
        serde_json::from_str(body).context("the body is not a JSON array")?;
    let found = products.len();
    ensure!(found == count, "{found} products, expected {count}");
    for p in &products {
        let priced = p["price_in_cents"].as_i64().unwrap_or_default() > 0;
        let has_discount = p.get("discount_value").is_some();
        if has_discount != (discounted && priced) {
            let has = if has_discount { "has" } else { "lacks" };
            bail!("product {} {has} a discount_value", p["id"]);
        }
    }
    Ok(())
}

/// Catalog's and Discount's `/metrics` text at one moment; `None` where a scrape failed (with
/// a warning: the run is still measured, its per-RPC figures are then unknown).
fn scrape(http: &Client, at: Endpoints) -> [Option<String>; 2] {
    [(at.catalog_ops, "Catalog"), (at.discount_ops, "Discount")].map(|(addr, who)| {
        let sent = http.get(format!("http://{addr}/metrics")).send();
        let text = sent.and_then(|r| r.error_for_status()?.text());
        let warn = |err| eprintln!("warning: cannot read {who}'s /metrics: {err}");
        text.map_err(warn).ok()
    })
}

/// What the metrics gained from `before` to `after` (each Catalog's, then Discount's); a
/// metric not there yet counts as 0.
fn growth(before: &[Option<String>; 2], after: &[Option<String>; 2]) -> RpcMetrics {
    let grew = |i: usize, name: &str| {
        let (then, now) = (before[i].as_deref()?, after[i].as_deref()?);
        Some(metric(now, name).unwrap_or(0.0) - metric(then, name).unwrap_or(0.0))
    };
    let histogram = |i, name: &str| {
        Some(HistogramDelta {
            sum: grew(i, &format!("{name}_sum"))?,
            count: grew(i, &format!("{name}_count"))?,
        })
    };
    RpcMetrics {
        catalog_requests_per_rpc: histogram(0, "catalog_discount_requests_per_rpc"),
        discount_groups_per_rpc: histogram(1, "discount_groups_per_rpc"),
        discount_rpcs: grew(1, "discount_rpc_requests_total"),
        catalog_log_lines_dropped: grew(0, "log_lines_dropped_total"),
        discount_log_lines_dropped: grew(1, "log_lines_dropped_total"),
        catalog_spans_dropped: grew(0, "trace_spans_dropped_total"),
        discount_spans_dropped: grew(1, "trace_spans_dropped_total"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_what_the_metrics_gained_summed_over_labels_absent_as_0_unscraped_as_none() {
        let before = "catalog_discount_requests_per_rpc_sum 10\n\
                      catalog_discount_requests_per_rpc_count 10\n\
                      discount_rpc_requests_total{rpc=\"ApplyDiscountBatch\",code=\"OK\"} 7\n";
        let after = "catalog_discount_requests_per_rpc_sum 55.5\n\
                     catalog_discount_requests_per_rpc_count 20\n\
                     discount_rpc_requests_total{rpc=\"ApplyDiscountBatch\",code=\"OK\"} 9\n\
                     discount_rpc_requests_total{rpc=\"ApplyDiscountGroups\",code=\"OK\"} 8\n";
        let both = |text: &str| [Some(text.to_owned()), Some(text.to_owned())];
        let rpcs = growth(&both(before), &both(after));
        let mean = rpcs.catalog_requests_per_rpc.and_then(|d| d.mean());
        assert_eq!(mean, Some(4.55));
        let unscraped = growth(&[None, Some(before.into())], &both(after));
        insta::assert_debug_snapshot!((rpcs, unscraped));
    }

    #[test]
    fn the_check_names_what_is_wrong() {
        let body = r#"[{"id":1,"price_in_cents":10,"discount_value":{"pct":0.1,"value_in_cents":9}},
                       {"id":2,"price_in_cents":0}]"#;
        check_products(body, (2, true)).unwrap();
        let err = check_products(body, (2, false)).unwrap_err().to_string();
        assert_eq!(err, "product 1 has a discount_value");
        let err = check_products(body, (100, true)).unwrap_err().to_string();
        assert_eq!(err, "2 products, expected 100");
    }
}
