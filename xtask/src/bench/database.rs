//! The database pass: Catalog following a throwaway PostgreSQL ([`crate::database`]: TLS 1.3,
//! certificate authentication, migrated and loaded by `catalog-service migrate` and `import`,
//! which also serves A and B in the main pass). At each size the generated products are
//! imported and a fresh Catalog started: the time to its first snapshot, how soon a committed
//! price is served, and at the large size its peak memory and its latency while one transaction
//! changes many rows. Prices change through one `psql` session, so a time is the change's
//! propagation, not `psql`'s start-up.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use throwaway_postgres::{Cluster, Session};

use super::launch::{self, Started};
use super::measure::{Endpoints, poll};
use super::results::{Following, Memory, RpcMetrics, RunResult, Stage, Transaction, percentile};
use super::scenarios::{Catalog, PassSettings, Source};
use super::{Env, data, or_failed};

/// How often a price, or the first snapshot, is looked for (the times' resolution), and for
/// how long at most.
const POLL_MS: u64 = 1;
const POLLING: (Duration, Duration) = (Duration::from_millis(POLL_MS), Duration::from_secs(120));
/// Connections of the wrk runs around the large transaction.
const CONNECTIONS: u32 = 32;

/// Each size: products imported, prices then changed one at a time, and rows changed in one
/// transaction (the large size only).
type Size = (u32, u32, Option<u32>);
const SIZES: [Size; 2] = [(10_000, 500, None), (1_000_000, 20, Some(100_000))];
const SMOKE_SIZES: [Size; 2] = [(1_000, 20, None), (10_000, 5, Some(10_000))];

/// A Catalog serving from the database, logging to `log`.
const fn serving(name: &'static str, log: &'static str) -> Catalog {
    let source = Source::Database;
    Catalog { name, log, source }
}
const SMALL: Catalog = serving("catalog-service (PostgreSQL, small)", "catalog-small.log");
const LARGE: Catalog = serving("catalog-service (PostgreSQL, large)", "catalog-large.log");

/// Follows `cluster` (if it did not start, that is the pass's failure) at each size, with the
/// main pass's `settings` and the logs in `logs`. A failure is recorded with the sizes measured
/// so far; Ctrl-C is an error.
pub(super) fn follow(
    env: &Env,
    settings: &PassSettings,
    cluster: Result<Cluster>,
    logs: &Path,
) -> Result<Following> {
    println!("\ndatabase pass: Catalog following PostgreSQL, as in the main pass");
    let mut stages = Vec::new();
    let followed = cluster.and_then(|cluster| {
        std::fs::create_dir_all(logs).with_context(|| format!("cannot create {logs:?}"))?;
        let mut owner = cluster.session()?;
        for size in if env.args.smoke { SMOKE_SIZES } else { SIZES } {
            let path = |file: &str| env.data.join(file).display().to_string();
            let products = path(&data::write_products(env.data, size.0)?);
            let customers = path(data::CUSTOMERS);
            let import = ["import", "--products", &products, "--customers", &customers];
            crate::database::as_owner(&cluster, env.bin_dir, &import, env.stop)?;
            let catalog = if size.2.is_some() { LARGE } else { SMALL };
            let started = launch::start(env, settings, &[catalog], logs)?;
            stages.push(stage(env, &started, &mut owner, size)?);
        }
        Ok(())
    });
    let failure = or_failed(env.stop, "the database pass", followed.map(|()| None), Some)?;
    Ok(Following {
        poll_ms: POLL_MS,
        stages,
        failure,
    })
}

/// One size, on the Catalog just `started`: its first snapshot, prices changed one at a time,
/// rows changed in one transaction under load (the large size), and its peak memory.
fn stage(env: &Env, started: &Started, owner: &mut Session, size: Size) -> Result<Stage> {
    let ((catalog, at), (products, changes, rows)) = (started.catalogs[0], size);
    println!("\n{}: {products} products", catalog.name);
    let first = format!("http://{}/products?limit=1", at.catalog);
    poll(env, POLLING, || {
        let status = env.http.get(&first).send()?.status();
        ensure!(status.is_success(), "{first} answers {status}");
        Ok(())
    })?;
    let first_snapshot_ms = at.spawned.elapsed().as_secs_f64() * 1e3;
    let mut visible_ms = Vec::new();
    for i in 0..changes {
        let (id, price) = (1 + i * 7919 % products, 5_000_000 + u64::from(i));
        let sql = format!("UPDATE products SET price_in_cents = {price} WHERE id = {id}");
        owner.run(&sql)?;
        visible_ms.push(served(env, at, id, price)?);
    }
    let transaction = rows.map(|rows| transaction(env, owner, at, rows));
    // The Catalog is the last service started.
    let memory = started.services.pids().pop().map(Memory::of);
    Ok(Stage {
        products,
        first_snapshot_ms,
        catalog_vm_hwm_kib: memory.and_then(|m| m.vm_hwm_kib),
        visible_p50_ms: percentile(&visible_ms, 0.5),
        visible_p99_ms: percentile(&visible_ms, 0.99),
        visible_ms,
        transaction: transaction.transpose()?,
    })
}

/// `UPDATE ... WHERE id <= rows` a fifth of the way into a wrk run of `/products?limit=100`
/// (`during`), after a warm-up and a run without it (`quiet`).
fn transaction(env: &Env, owner: &mut Session, at: Endpoints, rows: u32) -> Result<Transaction> {
    let url = format!("http://{}/products?limit=100", at.catalog);
    let script = env.wrk.script("database", "")?;
    let run = |secs| -> Result<RunResult> {
        let stats = env.wrk.run(&script, &url, CONNECTIONS, secs)?;
        Ok(RunResult::new(CONNECTIONS, stats, RpcMetrics::default()))
    };
    run(env.args.warmup).context("warm-up")?;
    let quiet = run(env.args.duration).context("the run before the transaction")?;
    let price = product_price(env, at, rows)?.context("no price")? + 1;
    let sql = format!("UPDATE products SET price_in_cents = price_in_cents + 1 WHERE id <= {rows}");
    let (during, changed) = thread::scope(|scope| {
        let during = scope.spawn(|| run(env.args.duration));
        thread::sleep(Duration::from_secs(env.args.duration) / 5);
        let sent = Instant::now();
        let changed = owner.run(&sql).map_err(anyhow::Error::from).and_then(|_| {
            let commit_ms = sent.elapsed().as_secs_f64() * 1e3;
            Ok((commit_ms, served(env, at, rows, price)?))
        });
        (during.join(), changed)
    });
    let during = during.map_err(|_| anyhow!("wrk's thread panicked"))?;
    let during = during.context("the run during the transaction")?;
    let (commit_ms, visible_ms) = changed?;
    Ok(Transaction {
        rows,
        commit_ms,
        visible_ms,
        quiet,
        during,
    })
}

/// How long, in milliseconds, until product `id` is served at `price`.
fn served(env: &Env, at: Endpoints, id: u32, price: u64) -> Result<f64> {
    poll(env, POLLING, || match product_price(env, at, id)? {
        Some(served) if served == price => Ok(()),
        served => bail!("product {id} is served at {served:?}, not yet at {price}"),
    })
}

/// The price `/products/{id}` answers with (`None`: no product in the answer).
fn product_price(env: &Env, at: Endpoints, id: u32) -> Result<Option<u64>> {
    let url = format!("http://{}/products/{id}", at.catalog);
    let product: serde_json::Value = serde_json::from_str(&env.http.get(url).send()?.text()?)?;
    Ok(product["price_in_cents"].as_u64())
}
