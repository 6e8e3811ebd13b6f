//! The real `catalog-service` binary's `/metrics`, on its operations port: counts of this
//! process's own requests and Discount outcomes, exact because no other test writes to a child
//! process's recorder; and every family it exports described by a `# HELP` line. The public
//! port does not serve it.
#![allow(clippy::unwrap_used)]

mod common;

use common::start_catalog;

/// The value of the Prometheus series whose line starts with `series` (name and labels).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn catalog_metrics_count_requests_and_discount_outcomes() {
    // Discount's address refuses connections (bound, never listening, held for the test).
    let no_discount = tokio::net::TcpSocket::new_v4().unwrap();
    no_discount.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let catalog = start_catalog(no_discount.local_addr().unwrap(), &[]).await;
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

/// The metric families in a Prometheus text exposition that have a `# TYPE` line, each with
/// whether a `# HELP` line with some text describes it.
fn families_and_help(text: &str) -> Vec<(&str, bool)> {
    let helped: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, help)| !help.trim().is_empty())
        .map(|(name, _)| name)
        .collect();
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .map(|name| (name, helped.contains(&name)))
        .collect()
}

#[tokio::test]
async fn every_metric_catalog_exports_has_help_text() {
    // Discount's address refuses connections (bound, never listening, held for the test).
    let no_discount = tokio::net::TcpSocket::new_v4().unwrap();
    no_discount.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let catalog = start_catalog(no_discount.local_addr().unwrap(), &[]).await;
    let client = reqwest::Client::new();
    for path in ["/products", "/products/1", "/nope"] {
        client
            .get(format!("http://{}{path}", catalog.addr))
            .header("X-USER-ID", "1")
            .send()
            .await
            .unwrap();
    }

    let text = client
        .get(format!("http://{}/metrics", catalog.ops_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let families = families_and_help(&text);
    // Those the traffic above made: Catalog's own and a shared one.
    for name in [
        "catalog_http_requests_total",
        "catalog_http_request_duration_seconds",
        "catalog_http_connections_open",
        "catalog_discount_calls_total",
        "catalog_discount_requests_per_rpc",
        "tls_certificate_expiry_timestamp_seconds",
    ] {
        assert!(
            families.iter().any(|(family, _)| *family == name),
            "no {name}: {text}"
        );
    }
    let undescribed: Vec<&str> = families
        .iter()
        .filter(|(_, helped)| !helped)
        .map(|(family, _)| *family)
        .collect();
    assert!(
        undescribed.is_empty(),
        "no # HELP for {undescribed:?}: {text}"
    );
}
