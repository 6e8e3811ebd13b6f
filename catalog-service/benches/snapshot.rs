//! What one changed row costs a large catalog: builds a snapshot of 1,000,000 products (or
//! `SNAPSHOT_BENCH_PRODUCTS`), then times applying one change (a price update, an insert, a
//! delete) to it, as the database source does for each notified row, against rebuilding the
//! whole snapshot. Run with `cargo bench -p catalog-service --bench snapshot`; it prints the
//! median and the 99th percentile of each.

use std::time::{Duration, Instant};

use catalog_service::catalog::Product;
use catalog_service::snapshot::{Change, Snapshot};

fn product(id: i32, price_in_cents: i32) -> Product {
    Product {
        id,
        slug: format!("product-{id}"),
        description: format!("Product number {id}, a thing the shop sells"),
        price_in_cents,
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn main() {
    let count: i32 = std::env::var("SNAPSHOT_BENCH_PRODUCTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let started = Instant::now();
    let base = Snapshot::from_rows((1..=count).map(|id| product(id, id % 100_000)), []);
    let build = started.elapsed();
    println!("snapshot of {count} products built in {build:.2?} (a full rebuild)");

    let rounds = 2_000;
    type MakeChange = Box<dyn Fn(i32) -> Change>;
    let mut cases: Vec<(&str, MakeChange)> = vec![
        (
            "update one price",
            Box::new(|id| Change::Product(id, Some(product(id, 1)))),
        ),
        (
            "insert one product",
            Box::new(move |id| Change::Product(count + id, Some(product(count + id, 1)))),
        ),
        (
            "delete one product",
            Box::new(|id| Change::Product(id, None)),
        ),
    ];
    for (what, change) in cases.drain(..) {
        let mut samples = Vec::with_capacity(rounds);
        let mut kept = Vec::with_capacity(rounds);
        for round in 0..rounds {
            // Spread over the catalog, so that each change walks its own path.
            let id = 1 + (round as i32 * 7_919) % count;
            let started = Instant::now();
            let next = base.with_changes([change(id)]);
            samples.push(started.elapsed());
            // Kept alive, as a request still reading the old snapshot would keep it: the
            // timing includes no freeing.
            kept.push(next);
        }
        let (p50, p99) = percentiles(samples);
        println!("{what}: p50 {p50:.2?}, p99 {p99:.2?} ({rounds} rounds, on {count} products)");
    }
}
