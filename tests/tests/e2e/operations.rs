//! The operational surface: request ids across both services.

use e2e_tests::{
    CatalogOptions, CountingDiscount, service_pki, spawn_catalog, spawn_counting_discount,
};

#[tokio::test]
async fn callers_request_id_is_returned_and_passed_to_discount() {
    let pki = service_pki();
    let counting = CountingDiscount::default();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let response = reqwest::Client::new()
        .get(format!("http://{}/products", catalog.addr))
        .header("X-USER-ID", "1")
        .header("X-Request-Id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    assert_eq!(*counting.request_ids.lock().unwrap(), ["trace-me-42"]);
}

#[tokio::test]
async fn missing_or_unusable_request_id_is_replaced_by_a_new_one() {
    let pki = service_pki();
    let counting = CountingDiscount::default();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/products", catalog.addr);

    let first = client
        .get(&url)
        .header("X-USER-ID", "1")
        .send()
        .await
        .unwrap();
    let too_long = "x".repeat(500);
    let second = client
        .get(&url)
        .header("X-USER-ID", "1")
        .header("X-Request-Id", too_long.as_str())
        .send()
        .await
        .unwrap();
    let ids: Vec<String> = [&first, &second]
        .iter()
        .map(|r| r.headers()["x-request-id"].to_str().unwrap().to_owned())
        .collect();
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    assert_eq!(*counting.request_ids.lock().unwrap(), ids);
}

#[tokio::test]
async fn request_id_is_returned_on_errors_too() {
    let pki = service_pki();
    let catalog = spawn_catalog(
        &pki,
        e2e_tests::closed_port().await,
        CatalogOptions::default(),
    )
    .await;
    let response = reqwest::Client::new()
        .get(format!("http://{}/products", catalog.addr))
        .header("X-USER-ID", "abc")
        .header("X-Request-Id", "bad-input-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-request-id"], "bad-input-1");
}
