//! Catalog serving its catalog from a real PostgreSQL over mutual TLS 1.3: one throwaway
//! cluster for this binary, a database of its own per test (so tests run in parallel), Discount
//! and Catalog in process.
#![allow(clippy::unwrap_used)]

mod changes;
mod refusals;

use std::net::SocketAddr;

use e2e_tests::Shop;
use process_testing::poll_until;

/// SPEC's expected body for `X-USER-ID: 1`, byte for byte.
const SPEC_CUSTOMER_1_JSON: &str = concat!(
    r#"[{"id":1,"slug":"iphone-x","description":"64GB, black and iOS 12","price_in_cents":99999,"discount_value":{"pct":0.1,"value_in_cents":89999}},"#,
    r#"{"id":2,"slug":"notebook-avell-g1511","description":"Notebook Gamer Intel Core i7","price_in_cents":150000,"discount_value":{"pct":0.1,"value_in_cents":135000}},"#,
    r#"{"id":3,"slug":"playstation-4-slim","description":"1TB Console","price_in_cents":32999,"discount_value":{"pct":0.1,"value_in_cents":29699}}]"#,
);

/// `GET /products` with an optional `X-USER-ID`: status and body.
async fn get_products(addr: SocketAddr, user: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(format!("http://{addr}/products"));
    if let Some(user) = user {
        request = request.header("X-USER-ID", user);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The products Catalog serves, as (id, price) pairs.
async fn prices(addr: SocketAddr) -> Vec<(i64, i64)> {
    let (status, body) = get_products(addr, None).await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    body.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_i64().unwrap(),
                p["price_in_cents"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Waits until Catalog serves exactly these (id, price) pairs.
async fn wait_for_prices(shop: &Shop, expected: &[(i64, i64)]) {
    poll_until(&format!("Catalog serves {expected:?}"), || async {
        (prices(shop.catalog.addr).await == expected).then_some(())
    })
    .await;
}

/// Waits until Catalog has read its catalog from the database.
async fn wait_for_catalog(shop: &Shop) {
    poll_until("Catalog has read its catalog", || async {
        shop.data.current().ok().map(|_| ())
    })
    .await;
}

/// SPEC's prices.
const SPEC_PRICES: [(i64, i64); 3] = [(1, 99_999), (2, 150_000), (3, 32_999)];

#[tokio::test]
async fn the_catalog_is_served_from_the_database_as_spec_says() {
    let cluster = e2e_tests::shared_cluster();
    let db = cluster.database().await;
    let shop = e2e_tests::spawn_shop(cluster.certs(), &db.catalog_url).await;
    wait_for_catalog(&shop).await;
    let (status, body) = get_products(shop.catalog.addr, Some("1")).await;
    assert_eq!((status, body.as_str()), (200, SPEC_CUSTOMER_1_JSON));
    assert_eq!(prices(shop.catalog.addr).await, SPEC_PRICES);
    assert!(shop.data.source_is_up());
}
