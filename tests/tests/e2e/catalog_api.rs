//! Catalog's HTTP behaviour with a healthy Discount behind it (SPEC's request table).

use e2e_tests::{CatalogOptions, service_pki, spawn_catalog, spawn_discount};

use crate::{FULL_PRICE_JSON, SPEC_CUSTOMER_1_JSON, get_products};

#[tokio::test]
async fn customer_1_gets_spec_json_byte_for_byte() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let response = get_products(catalog.addr, Some("1")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().get("x-discount-unavailable").is_none());
    assert_eq!(response.text().await.unwrap(), SPEC_CUSTOMER_1_JSON);
}

#[tokio::test]
async fn no_header_lists_full_prices() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let response = get_products(catalog.addr, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), FULL_PRICE_JSON);
}

#[tokio::test]
async fn known_customer_without_discount_gets_products_without_discount_value() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let response = get_products(catalog.addr, Some("2")).await;
    assert_eq!(response.status(), 200);
    // Discount answered (no degraded-mode header): customer 2 is simply not eligible.
    assert!(response.headers().get("x-discount-unavailable").is_none());
    assert_eq!(response.text().await.unwrap(), FULL_PRICE_JSON);
}

#[tokio::test]
async fn unknown_customer_gets_full_prices() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let response = get_products(catalog.addr, Some("99")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-discount-unavailable").is_none());
    assert_eq!(response.text().await.unwrap(), FULL_PRICE_JSON);
}

#[tokio::test]
async fn bad_user_ids_get_400_with_a_json_error() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let forty_digits = "1234567890123456789012345678901234567890";
    let twenty_digits = "12345678901234567890";
    for bad in [
        "abc",
        "-5",
        "1.5",
        "1.0",
        "",
        "0",
        "-1",
        "2147483648",
        twenty_digits,
        forty_digits,
    ] {
        let response = get_products(catalog.addr, Some(bad)).await;
        assert_eq!(response.status(), 400, "X-USER-ID: {bad:?}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(body["error"], "invalid_user_id", "X-USER-ID: {bad:?}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("X-USER-ID"), "{message}");
    }
    // Bad input costs nothing: the next good request is served normally.
    let response = get_products(catalog.addr, Some("1")).await;
    assert_eq!(response.text().await.unwrap(), SPEC_CUSTOMER_1_JSON);
}

#[tokio::test]
async fn root_says_it_is_working() {
    let pki = service_pki();
    let no_discount = e2e_tests::closed_port();
    let catalog = spawn_catalog(&pki, no_discount.addr, CatalogOptions::default()).await;

    let response = reqwest::get(format!("http://{}/", catalog.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("working"));
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let pki = service_pki();
    let no_discount = e2e_tests::closed_port();
    let catalog = spawn_catalog(&pki, no_discount.addr, CatalogOptions::default()).await;

    let response = reqwest::get(format!("http://{}/nope", catalog.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn concurrent_requests_share_one_discount_connection() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let proxy = e2e_tests::spawn_proxy(discount.addr).await;
    let catalog = spawn_catalog(&pki, proxy.addr, CatalogOptions::default()).await;

    let requests: Vec<_> = (0..50)
        .map(|_| tokio::spawn(get_products(catalog.addr, Some("1"))))
        .collect();
    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), SPEC_CUSTOMER_1_JSON);
    }
    // 50 concurrent HTTP requests, 50 RPCs, one TCP (and TLS) connection to Discount.
    assert_eq!(proxy.connections(), 1);
}
