//! Paging through a large catalog, single-product lookups, and bad query parameters.

use std::collections::HashSet;
use std::net::SocketAddr;

use std::sync::atomic::Ordering;

use e2e_tests::{
    CatalogOptions, CountingDiscount, closed_port, generated_catalog, service_pki, spawn_catalog,
    spawn_counting_discount, spawn_discount,
};
use serde_json::Value;

use crate::{FULL_PRICE_JSON, SPEC_CUSTOMER_1_JSON};

async fn get(url: &str, user: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(user) = user {
        request = request.header("X-USER-ID", user);
    }
    request.send().await.unwrap()
}

/// The target of a `Link: <...>; rel="next"` header, if any.
fn next_link(response: &reqwest::Response) -> Option<String> {
    let link = response.headers().get("link")?.to_str().unwrap();
    let target = link.strip_prefix('<')?.split_once(">; rel=\"next\"")?.0;
    Some(target.to_owned())
}

async fn ten_thousand_products() -> (e2e_tests::Running, e2e_tests::Running, SocketAddr) {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let options = CatalogOptions {
        data: generated_catalog(10_000),
        ..CatalogOptions::default()
    };
    let catalog = spawn_catalog(&pki, discount.addr, options).await;
    let addr = catalog.addr;
    (discount, catalog, addr)
}

#[tokio::test]
async fn ten_thousand_products_are_paged_through_once_each_in_order() {
    let (_discount, _catalog, addr) = ten_thousand_products().await;

    let mut url = format!("http://{addr}/products?limit=1000");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let response = get(&url, Some("1")).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("x-discount-unavailable").is_none());
        let next = next_link(&response);
        let page: Vec<Value> = response.json_body().await;
        for product in &page {
            let price = product["price_in_cents"].as_i64().unwrap();
            // Every product on every page was discounted for customer 1 (price 0 excepted).
            assert_eq!(
                product.get("discount_value").is_some(),
                price > 0,
                "{product}"
            );
            seen.push(product["id"].as_i64().unwrap());
        }
        pages += 1;
        match next {
            Some(next) => url = format!("http://{addr}{next}"),
            None => break,
        }
    }
    assert_eq!(pages, 10);
    assert_eq!(seen.len(), 10_000);
    assert_eq!(
        seen,
        (1..=10_000).collect::<Vec<_>>(),
        "every product once, in id order"
    );
}

#[tokio::test]
async fn default_page_is_one_hundred_products_with_a_next_link() {
    let (_discount, _catalog, addr) = ten_thousand_products().await;

    let response = get(&format!("http://{addr}/products"), None).await;
    let next = next_link(&response).expect("a next link");
    let page: Vec<Value> = response.json_body().await;
    assert_eq!(page.len(), 100);
    assert_eq!(page[99]["id"], 100);
    assert_eq!(next, "/products?limit=100&cursor=v1.100");

    let response = get(&format!("http://{addr}{next}"), None).await;
    let page: Vec<Value> = response.json_body().await;
    let ids: HashSet<_> = page.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (101..=200).collect());
}

#[tokio::test]
async fn only_the_requested_page_is_sent_to_discount() {
    let pki = service_pki();
    let counting = CountingDiscount::default();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let options = CatalogOptions {
        data: generated_catalog(10_000),
        ..CatalogOptions::default()
    };
    let catalog = spawn_catalog(&pki, discount.addr, options).await;

    let url = format!("http://{}/products?limit=7&cursor=v1.500", catalog.addr);
    let page: Vec<Value> = get(&url, Some("1")).await.json_body().await;
    assert_eq!(page.len(), 7);
    assert_eq!(page[0]["id"], 501);
    assert_eq!(counting.calls(), 1);
    assert_eq!(counting.products_asked.load(Ordering::SeqCst), 7);

    let product: Value = get(&format!("http://{}/products/9", catalog.addr), Some("1"))
        .await
        .json_body()
        .await;
    assert_eq!(product["id"], 9);
    assert_eq!(counting.calls(), 2, "one RPC per product lookup");
    assert_eq!(counting.products_asked.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn small_catalog_without_parameters_is_exactly_spec() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let response = get(&format!("http://{}/products", catalog.addr), Some("1")).await;
    assert!(response.headers().get("link").is_none());
    assert_eq!(response.text().await.unwrap(), SPEC_CUSTOMER_1_JSON);

    // A page that ends exactly at the last product announces no next page.
    let response = get(&format!("http://{}/products?limit=3", catalog.addr), None).await;
    assert!(response.headers().get("link").is_none());
    assert_eq!(response.text().await.unwrap(), FULL_PRICE_JSON);
}

#[tokio::test]
async fn bad_query_parameters_get_400_with_a_json_error() {
    let pki = service_pki();
    let no_discount = closed_port();
    let catalog = spawn_catalog(&pki, no_discount.addr, CatalogOptions::default()).await;

    for query in [
        "limit=0",
        "limit=-1",
        "limit=abc",
        "limit=1001",
        "limit=",
        "limit=1.5",
        "limit=%2B2",
        "limit=+2",
        "cursor=abc",
        "cursor=42",
        "cursor=v1.",
        "cursor=v9.3",
        "limit=1&limit=2",
        "page=2",
    ] {
        let response = get(&format!("http://{}/products?{query}", catalog.addr), None).await;
        assert_eq!(response.status(), 400, "?{query}");
        let body: Value = response.json_body().await;
        assert_eq!(body["error"], "invalid_query", "?{query}: {body}");
        assert!(
            body["message"].as_str().unwrap().len() > 10,
            "?{query}: {body}"
        );
    }
}

#[tokio::test]
async fn one_product_is_discounted_like_the_list() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let response = get(&format!("http://{}/products/3", catalog.addr), Some("1")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"id":3,"slug":"playstation-4-slim","description":"1TB Console","price_in_cents":32999,"discount_value":{"pct":0.1,"value_in_cents":29699}}"#
    );

    let response = get(&format!("http://{}/products/3", catalog.addr), None).await;
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"id":3,"slug":"playstation-4-slim","description":"1TB Console","price_in_cents":32999}"#
    );
}

#[tokio::test]
async fn one_product_falls_back_to_full_price_when_discount_is_down() {
    let pki = service_pki();
    let no_discount = closed_port();
    let catalog = spawn_catalog(&pki, no_discount.addr, CatalogOptions::default()).await;

    let response = get(&format!("http://{}/products/1", catalog.addr), Some("1")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-discount-unavailable"], "unavailable");
    let product: Value = response.json_body().await;
    assert_eq!(product["price_in_cents"], 99_999);
    assert!(product.get("discount_value").is_none());
}

#[tokio::test]
async fn unknown_product_is_404_and_non_numeric_id_is_400() {
    let pki = service_pki();
    let no_discount = closed_port();
    let catalog = spawn_catalog(&pki, no_discount.addr, CatalogOptions::default()).await;

    let response = get(&format!("http://{}/products/42", catalog.addr), Some("1")).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json_body().await;
    assert_eq!(body["error"], "not_found");
    assert!(body["message"].as_str().unwrap().contains("42"));

    for bad in [
        "abc",
        "1.5",
        "-1",
        "0",
        "99999999999",
        "2147483648",
        "%2B1",
        "%ff",
    ] {
        let response = get(&format!("http://{}/products/{bad}", catalog.addr), None).await;
        assert_eq!(response.status(), 400, "/products/{bad}");
        let body: Value = response.json_body().await;
        assert_eq!(body["error"], "invalid_product_id");
    }
}

/// Parses a response body as JSON (reqwest is built without its `json` feature).
trait JsonBody {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> T;
}

impl JsonBody for reqwest::Response {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> T {
        serde_json::from_str(&self.text().await.unwrap()).unwrap()
    }
}
