//! End-to-end suite: one test binary, modules by concern.
//!
//! Every test starts its own servers on `127.0.0.1:0` with certificates made in memory, so tests
//! run in parallel and depend on nothing a previous command made.
#![allow(clippy::unwrap_used)]

mod admission;
mod balancing;
mod catalog_api;
mod catalog_limits;
mod coalescing;
mod degraded;
mod handshake;
mod limits;
mod mtls;
mod operations;
mod pagination;
mod rotation;
mod stream;
mod tracing;

/// SPEC's expected body for `X-USER-ID: 1`, byte for byte.
pub const SPEC_CUSTOMER_1_JSON: &str = concat!(
    r#"[{"id":1,"slug":"iphone-x","description":"64GB, black and iOS 12","price_in_cents":99999,"discount_value":{"pct":0.1,"value_in_cents":89999}},"#,
    r#"{"id":2,"slug":"notebook-avell-g1511","description":"Notebook Gamer Intel Core i7","price_in_cents":150000,"discount_value":{"pct":0.1,"value_in_cents":135000}},"#,
    r#"{"id":3,"slug":"playstation-4-slim","description":"1TB Console","price_in_cents":32999,"discount_value":{"pct":0.1,"value_in_cents":29699}}]"#,
);

/// The same products at full price (no `discount_value`).
pub const FULL_PRICE_JSON: &str = concat!(
    r#"[{"id":1,"slug":"iphone-x","description":"64GB, black and iOS 12","price_in_cents":99999},"#,
    r#"{"id":2,"slug":"notebook-avell-g1511","description":"Notebook Gamer Intel Core i7","price_in_cents":150000},"#,
    r#"{"id":3,"slug":"playstation-4-slim","description":"1TB Console","price_in_cents":32999}]"#,
);

/// `GET /products` with an optional `X-USER-ID`.
pub async fn get_products(base: std::net::SocketAddr, user: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("http://{base}/products"));
    if let Some(user) = user {
        request = request.header("X-USER-ID", user);
    }
    request.send().await.expect("Catalog answers")
}

/// Polls `condition` until it holds (a stalled test fails instead of hanging).
pub async fn until(what: &str, condition: impl Fn() -> bool) {
    let give_up = tokio::time::Instant::now() + stream::STALL_GUARD;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "never happened: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}
