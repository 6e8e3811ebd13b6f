//! Floods of connections that never prove themselves, as an outsider makes them: 2,000 TCP
//! connections held against a server, idle or stalled after a partial TLS ClientHello or a
//! partial request head, each reopened as soon as the server closes it. Through each, a real
//! client must be served within a second: a freshly started Catalog's first discounted request
//! (its first TLS handshake with a flooded Discount), or a plain `GET /products` on a flooded
//! Catalog; and the flood must cost a few log lines, not one per connection.
//!
//! A test binary of its own, its tests one at a time: a flood takes thousands of file
//! descriptors and both cores, which would slow the end-to-end suite's timing-sensitive tests
//! (and be slowed by them). What each test asserts is its own servers' (their gates' counts,
//! the lines naming their listeners), never a process-wide counter.
#![allow(clippy::unwrap_used)]

mod logs;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e_tests::{
    CatalogOptions, Flood, PARTIAL_CLIENT_HELLO, PARTIAL_REQUEST_HEAD, Running,
    raise_open_file_limit, service_pki, spawn_catalog, spawn_discount,
};

/// Connections in each flood.
const SQUATTERS: usize = 2000;

/// How long a real client may wait for its answer under a flood.
const WITHIN: Duration = Duration::from_secs(1);

/// How long a test waits for a flood to take hold before calling it broken.
const GUARD: Duration = Duration::from_secs(60);

/// One flood at a time in this process.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Floods `server` with [`SQUATTERS`] connections that send `first` and then nothing, and
/// returns once the flood holds it: every slot an unproven connection may hold is taken, and
/// the server has closed as many of the flood's connections as there are squatters (each
/// reopened at once), however it chose them.
async fn flood(server: &Running, first: &'static [u8]) -> Flood {
    raise_open_file_limit();
    let flood = Flood::start(server.addr, SQUATTERS, first);
    let gate = server.admission();
    let max_unproven = gate.limits().max_unproven;
    let give_up = Instant::now() + GUARD;
    loop {
        let counts = gate.counts();
        if counts.unproven >= max_unproven && flood.closed() >= SQUATTERS as u64 {
            return flood;
        }
        assert!(
            Instant::now() < give_up,
            "the flood never took hold: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `GET /products` on a new connection, with `user` as `X-USER-ID`: the response's status,
/// `x-discount-unavailable` header, body as JSON, and how long it took.
async fn get_products(
    catalog: SocketAddr,
    user: Option<&str>,
) -> (u16, Option<String>, serde_json::Value, Duration) {
    let started = Instant::now();
    let mut request = reqwest::Client::new().get(format!("http://{catalog}/products"));
    if let Some(user) = user {
        request = request.header("X-USER-ID", user);
    }
    let response = tokio::time::timeout(GUARD, request.send())
        .await
        .expect("answered")
        .expect("answered");
    let status = response.status().as_u16();
    let unavailable = response
        .headers()
        .get("x-discount-unavailable")
        .map(|value| value.to_str().unwrap().to_owned());
    let body = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    (status, unavailable, body, started.elapsed())
}

/// A fresh Catalog's first discounted request while Discount is flooded by squatters sending
/// `first`: answered with the discount, within [`WITHIN`].
async fn first_discount_through_a_flood_of(first: &'static [u8]) {
    let _one = ONE_AT_A_TIME.lock().await;
    logs::install();
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let started = Instant::now();
    let flood = flood(&discount, first).await;
    let gate = discount.admission();
    let before = gate.counts();

    // Discount's answer may take the whole second (its connection, handshake included, waits
    // behind the flood's in the kernel's queue), not the harness's usual half.
    let options = CatalogOptions {
        discount_timeout: WITHIN,
        ..CatalogOptions::default()
    };
    let catalog = spawn_catalog(&pki, discount.addr, options).await;
    let (status, unavailable, body, took) = get_products(catalog.addr, Some("1")).await;
    let after = gate.counts();
    eprintln!(
        "first discounted request through {SQUATTERS} squatters: {took:?}; flood reconnected \
         {} times; Discount {after:?}",
        flood.closed()
    );
    assert_eq!((status, unavailable), (200, None), "{body}");
    let products = body.as_array().unwrap();
    assert_eq!(products.len(), 3, "{body}");
    assert!(
        products.iter().all(|p| p["discount_value"]["pct"] == 0.1),
        "{body}"
    );
    assert!(took < WITHIN, "answered after {took:?}");
    // Served through the flood, not after it: it kept taking slots meanwhile, and Catalog's
    // connection is the one proven one.
    assert!(
        after.unproven_evicted > before.unproven_evicted,
        "{after:?}"
    );
    assert_eq!(after.proven, 1, "{after:?}");
    assert_eq!(after.at_capacity, 0, "{after:?}");
    assert_few_warnings(discount.addr, started.elapsed());
}

/// A plain `GET /products` while Catalog's public port is flooded by squatters sending
/// `first`: answered within [`WITHIN`].
async fn products_through_a_flood_of(first: &'static [u8]) {
    let _one = ONE_AT_A_TIME.lock().await;
    logs::install();
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;
    let started = Instant::now();
    let flood = flood(&catalog, first).await;
    let gate = catalog.admission();
    let before = gate.counts();

    let (status, _, body, took) = get_products(catalog.addr, None).await;
    let after = gate.counts();
    eprintln!(
        "GET /products through {SQUATTERS} squatters: {took:?}; flood reconnected {} times; \
         Catalog {after:?}",
        flood.closed()
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 3, "{body}");
    assert!(took < WITHIN, "answered after {took:?}");
    assert!(
        after.unproven_evicted > before.unproven_evicted,
        "{after:?}"
    );
    assert_eq!(after.proven, before.proven + 1, "{after:?}");
    assert_eq!(after.at_capacity, 0, "{after:?}");
    assert_few_warnings(catalog.addr, started.elapsed());
}

/// A flood of thousands of connections cost at most two warnings per kind (the admission
/// gate's, and on Discount the refused handshakes') per log interval: the first at once, then
/// one per interval with the counts.
fn assert_few_warnings(listener: SocketAddr, lasted: Duration) {
    let intervals = lasted.as_secs() / admission::LOG_INTERVAL.as_secs() + 1;
    let warnings = logs::warnings_about(listener);
    eprintln!("warnings naming {listener} in {lasted:?}: {warnings}");
    assert!(warnings >= 1, "the flood is reported");
    assert!(
        warnings <= 2 * (intervals + 1),
        "{warnings} warnings in {lasted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_catalog_gets_its_first_discount_within_a_second_through_2000_idle_connections() {
    first_discount_through_a_flood_of(b"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_catalog_gets_its_first_discount_within_a_second_through_2000_stalled_handshakes() {
    first_discount_through_a_flood_of(PARTIAL_CLIENT_HELLO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_products_is_answered_within_a_second_through_2000_idle_connections() {
    products_through_a_flood_of(b"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_products_is_answered_within_a_second_through_2000_stalled_request_heads() {
    products_through_a_flood_of(PARTIAL_REQUEST_HEAD).await;
}
