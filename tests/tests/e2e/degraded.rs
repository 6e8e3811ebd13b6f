//! Catalog when Discount is down, hung, untrusted, or of the original kind.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use catalog_service::balancer::ReplicaSettings;
use e2e_tests::{
    CatalogOptions, CountingDiscount, closed_port, other_pki, service_pki, spawn_black_hole,
    spawn_catalog, spawn_counting_discount, spawn_discount, spawn_discount_with, spawn_proxy,
};

use crate::{FULL_PRICE_JSON, SPEC_CUSTOMER_1_JSON, get_products};

/// A bound well above the deadline, only to catch a hang; not a speed assertion.
const HANG_GUARD: Duration = Duration::from_secs(5);

async fn assert_full_price_with_reason(catalog: std::net::SocketAddr, reason: &str) {
    let response = get_products(catalog, Some("1")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-discount-unavailable"], reason);
    assert_eq!(response.text().await.unwrap(), FULL_PRICE_JSON);
}

#[tokio::test]
async fn discount_stopped_means_full_prices_and_the_header() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let discount_addr = discount.addr;
    let catalog = spawn_catalog(&pki, discount_addr, CatalogOptions::default()).await;
    // First with Discount up, so the channel is connected when Discount goes away.
    let response = get_products(catalog.addr, Some("1")).await;
    assert_eq!(response.text().await.unwrap(), SPEC_CUSTOMER_1_JSON);

    discount.stop().await;

    let started = Instant::now();
    assert_full_price_with_reason(catalog.addr, "unavailable").await;
    assert!(started.elapsed() < HANG_GUARD);
}

#[tokio::test]
async fn discount_down_at_start_up_means_full_prices_and_the_header() {
    let pki = service_pki();
    let no_discount = closed_port();
    let catalog = spawn_catalog(&pki, no_discount.addr, CatalogOptions::default()).await;
    assert_full_price_with_reason(catalog.addr, "unavailable").await;
    // Customers Catalog does not know, and requests without a customer, never ask Discount.
    let response = get_products(catalog.addr, Some("99")).await;
    assert!(response.headers().get("x-discount-unavailable").is_none());
}

#[tokio::test]
async fn discount_coming_back_is_used_again() {
    let pki = service_pki();
    let no_discount = closed_port();
    let proxy = spawn_proxy(no_discount.addr).await;
    let catalog = spawn_catalog(&pki, proxy.addr, CatalogOptions::default()).await;
    assert_full_price_with_reason(catalog.addr, "unavailable").await;

    // Discount appears behind the same address: the channel reconnects by itself.
    let discount = spawn_discount(&pki).await;
    proxy.set_target(discount.addr);
    let response = get_products(catalog.addr, Some("1")).await;
    assert!(response.headers().get("x-discount-unavailable").is_none());
    assert_eq!(response.text().await.unwrap(), SPEC_CUSTOMER_1_JSON);
}

#[tokio::test]
async fn hung_discount_is_cut_off_at_the_deadline() {
    let pki = service_pki();
    let hole = spawn_black_hole().await;
    let options = CatalogOptions {
        discount_timeout: Duration::from_millis(200),
        ..CatalogOptions::default()
    };
    let catalog = spawn_catalog(&pki, hole.addr, options).await;

    let started = Instant::now();
    assert_full_price_with_reason(catalog.addr, "deadline-exceeded").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(200),
        "answered before the deadline: {elapsed:?}"
    );
    assert!(elapsed < HANG_GUARD, "{elapsed:?}");
}

/// Once Discount is out of rotation, one request at a time tries it; the others get full
/// prices at once instead of each waiting out the deadline, so requests do not pile up.
#[tokio::test]
async fn a_hung_discount_holds_up_one_request_at_a_time_not_all_of_them() {
    let pki = service_pki();
    // TLS and HTTP/2 work, RPCs never answer.
    let hung = CountingDiscount {
        hang: true,
        ..CountingDiscount::default()
    };
    let discount = spawn_counting_discount(&pki, hung.clone()).await;
    let options = CatalogOptions {
        discount_timeout: Duration::from_secs(2),
        replicas: ReplicaSettings {
            // Its health checks pass (it answers SERVING): only the back-off
            // keeps it out for the rest of the test.
            base_ejection_time: Duration::from_secs(600),
            ..ReplicaSettings::default()
        },
        ..CatalogOptions::default()
    };
    let catalog = spawn_catalog(&pki, discount.addr, options).await;
    // The first request waits out the deadline, which takes the hung Discount out of rotation.
    assert_full_price_with_reason(catalog.addr, "deadline-exceeded").await;
    assert_eq!(hung.calls(), 1);

    let addr = catalog.addr;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..20 {
        requests.spawn(async move {
            let response = get_products(addr, Some("1")).await;
            let reason = response.headers()["x-discount-unavailable"]
                .to_str()
                .unwrap()
                .to_owned();
            assert_eq!(response.text().await.unwrap(), FULL_PRICE_JSON);
            reason
        });
    }
    let mut reasons = requests.join_all().await;
    reasons.sort();
    // One of them was the trial: it reached Discount and waited out the deadline again. The
    // other 19 never reached Discount and were answered at once.
    let mut expected = vec!["deadline-exceeded".to_owned()];
    expected.extend(std::iter::repeat_n("unavailable".to_owned(), 19));
    assert_eq!(reasons, expected);
    assert_eq!(hung.calls(), 2);
}

#[tokio::test]
async fn catalog_refuses_a_discount_certified_by_another_ca() {
    let pki = service_pki();
    let impostor = other_pki();
    // The impostor trusts our Catalog's CA, so only Catalog's check can stop the call.
    let discount = spawn_discount_with(&impostor.discount, &pki.ca).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    assert_full_price_with_reason(catalog.addr, "unavailable").await;
}

#[tokio::test]
async fn original_style_discount_gets_concurrent_unary_calls() {
    let pki = service_pki();
    let original = CountingDiscount::original_style();
    let discount = spawn_counting_discount(&pki, original.clone()).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    for _ in 0..2 {
        let response = get_products(catalog.addr, Some("1")).await;
        assert!(response.headers().get("x-discount-unavailable").is_none());
        assert_eq!(response.text().await.unwrap(), SPEC_CUSTOMER_1_JSON);
    }
    // The batch RPC was tried once; after UNIMPLEMENTED, Catalog stopped trying it and sent
    // one ApplyDiscount per product.
    assert_eq!(original.batch_calls.load(Ordering::SeqCst), 1);
    assert_eq!(original.unary_calls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn catalog_refuses_a_server_from_our_ca_with_another_identity() {
    let pki = service_pki();
    // Valid for localhost and issued by our CA, but it says it is "impostor", not Discount.
    let impostor = pki
        .ca
        .issue_local_server("impostor", e2e_tests::pki::Validity::days(1))
        .unwrap();
    let discount = spawn_discount_with(&impostor, &pki.ca).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    assert_full_price_with_reason(catalog.addr, "unavailable").await;
}
