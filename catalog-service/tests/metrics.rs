//! The real `catalog-service` binary's `/metrics`, on its operations port: counts of this
//! process's own requests and Discount outcomes, exact because no other test writes to a child
//! process's recorder; and every family it exports described by a `# HELP` line. The public
//! port does not serve it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{refusing_port, start_catalog};
use process_testing::{assert_families_described, metric, metrics_of};

#[tokio::test]
async fn catalog_metrics_count_requests_and_discount_outcomes() {
    // Discount's address refuses connections (held for the test).
    let (_refusing, discount) = refusing_port();
    let catalog = start_catalog(discount, &[]).await;
    let client = reqwest::Client::new();
    let products = client
        .get(format!("http://{}/products", catalog.addr))
        .header("X-USER-ID", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(products.status(), 200);
    assert_eq!(products.headers()["x-discount-unavailable"], "unavailable");

    let public = client
        .get(format!("http://{}/metrics", catalog.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);

    let response = client
        .get(format!("http://{}/metrics", catalog.ops_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let requests = r#"catalog_http_requests_total{route="/products",status="200"}"#;
    assert_eq!(metric(&text, requests), Some(1.0), "{text}");
    // The public 404 counts too; the operations port's own requests do not.
    let not_found = r#"catalog_http_requests_total{route="unmatched",status="404"}"#;
    assert_eq!(metric(&text, not_found), Some(1.0), "{text}");
    let fallbacks = r#"catalog_discount_calls_total{outcome="unavailable"}"#;
    assert_eq!(metric(&text, fallbacks), Some(1.0), "{text}");
    assert!(
        text.contains(r#"catalog_http_request_duration_seconds_bucket{route="/products","#),
        "{text}"
    );
}

#[tokio::test]
async fn every_metric_catalog_exports_has_help_text() {
    // Discount's address refuses connections (held for the test).
    let (_refusing, discount) = refusing_port();
    let catalog = start_catalog(discount, &[]).await;
    let client = reqwest::Client::new();
    for path in ["/products", "/products/1", "/nope"] {
        client
            .get(format!("http://{}{path}", catalog.addr))
            .header("X-USER-ID", "1")
            .send()
            .await
            .unwrap();
    }

    let text = metrics_of(catalog.ops_addr).await;
    // Those the traffic above made: Catalog's own and a shared one.
    let made = [
        "catalog_http_requests_total",
        "catalog_http_request_duration_seconds",
        "catalog_http_connections_open",
        "catalog_http_connections_dropped_total",
        "catalog_discount_calls_total",
        "catalog_discount_requests_per_rpc",
        "tls_certificate_expiry_timestamp_seconds",
    ];
    assert_families_described(&text, &made);
}
