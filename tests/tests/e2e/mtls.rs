//! Discount's side of mutual TLS, seen by gRPC clients: who gets in and who does not.

use e2e_tests::pki::Validity;
use e2e_tests::{
    grpc_client, other_pki, plaintext_grpc_client, service_pki, spawn_discount, status_chain,
};
use ecommerce_proto::pb::{Customer, DiscountRequest, DiscountValue, Product};
use tonic::Code;

fn request(price_in_cents: i32) -> DiscountRequest {
    DiscountRequest {
        customer: Some(Customer {
            id: 1,
            first_name: "John".into(),
            last_name: "Snow".into(),
        }),
        product: Some(Product {
            id: 1,
            slug: "iphone-x".into(),
            description: "64GB, black and iOS 12".into(),
            price_in_cents,
            discount_value: None,
        }),
    }
}

#[tokio::test]
async fn catalog_certificate_is_accepted_and_discounted() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let mut client = grpc_client(discount.addr, &pki.ca, Some(&pki.catalog));

    let product = client
        .apply_discount(request(99_999))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(
        product.discount_value,
        Some(DiscountValue {
            pct: 0.1,
            value_in_cents: 89_999
        })
    );
}

#[tokio::test]
async fn invalid_argument_travels_over_the_wire() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let mut client = grpc_client(discount.addr, &pki.ca, Some(&pki.catalog));

    let status = client.apply_discount(request(-1)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("product.price_in_cents"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let mut client = grpc_client(discount.addr, &pki.ca, None);

    let status = client.apply_discount(request(100)).await.unwrap_err();
    let chain = status_chain(&status);
    assert!(chain.contains("CertificateRequired"), "{chain}");
}

#[tokio::test]
async fn client_certified_by_another_ca_is_refused() {
    let pki = service_pki();
    let stranger = other_pki();
    let discount = spawn_discount(&pki).await;
    // The stranger trusts our server, but its own certificate comes from its own CA.
    let mut client = grpc_client(discount.addr, &pki.ca, Some(&stranger.catalog));

    let status = client.apply_discount(request(100)).await.unwrap_err();
    let chain = status_chain(&status);
    assert!(chain.contains("UnknownCA"), "{chain}");
}

#[tokio::test]
async fn client_with_expired_certificate_is_refused() {
    let pki = service_pki();
    let expired = pki.ca.issue_client("catalog", Validity::expired()).unwrap();
    let discount = spawn_discount(&pki).await;
    let mut client = grpc_client(discount.addr, &pki.ca, Some(&expired));

    let status = client.apply_discount(request(100)).await.unwrap_err();
    let chain = status_chain(&status);
    assert!(chain.contains("CertificateExpired"), "{chain}");
}

#[tokio::test]
async fn plaintext_client_is_refused_and_discount_keeps_serving() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;

    let status = plaintext_grpc_client(discount.addr)
        .apply_discount(request(100))
        .await
        .unwrap_err();
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Internal
        ),
        "{}",
        status_chain(&status)
    );

    let mut good = grpc_client(discount.addr, &pki.ca, Some(&pki.catalog));
    assert!(good.apply_discount(request(100)).await.is_ok());
}

#[tokio::test]
async fn client_refuses_a_server_certified_by_another_ca() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let stranger = other_pki();
    // A client that trusts only another CA must not talk to our Discount.
    let mut client = grpc_client(discount.addr, &stranger.ca, Some(&stranger.catalog));

    let status = client.apply_discount(request(100)).await.unwrap_err();
    let chain = status_chain(&status);
    assert!(chain.contains("UnknownIssuer"), "{chain}");
}

#[tokio::test]
async fn another_service_from_our_ca_is_permission_denied_by_name() {
    let pki = service_pki();
    let reports = pki.ca.issue_client("reports", Validity::days(1)).unwrap();
    let discount = spawn_discount(&pki).await;
    let mut client = grpc_client(discount.addr, &pki.ca, Some(&reports));

    let status = client.apply_discount(request(100)).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "{}",
        status_chain(&status)
    );
    assert!(
        status.message().contains("spiffe://shop.local/reports"),
        "{}",
        status.message()
    );
    let batch = client
        .apply_discount_batch(ecommerce_proto::pb::BatchDiscountRequest::default())
        .await
        .unwrap_err();
    assert_eq!(batch.code(), Code::PermissionDenied);

    // Catalog, on the same server, is allowed.
    let mut catalog = grpc_client(discount.addr, &pki.ca, Some(&pki.catalog));
    assert!(catalog.apply_discount(request(100)).await.is_ok());
}

#[tokio::test]
async fn client_certificate_without_identity_is_permission_denied() {
    let pki = service_pki();
    let anonymous = pki
        .ca
        .issue_client_without_identity(Validity::days(1))
        .unwrap();
    let discount = spawn_discount(&pki).await;
    let mut client = grpc_client(discount.addr, &pki.ca, Some(&anonymous));

    let status = client.apply_discount(request(100)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("no service identity"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn client_with_not_yet_valid_certificate_is_refused() {
    let pki = service_pki();
    let early = pki
        .ca
        .issue_client("catalog", Validity::not_yet_valid())
        .unwrap();
    let discount = spawn_discount(&pki).await;
    let mut client = grpc_client(discount.addr, &pki.ca, Some(&early));

    let status = client.apply_discount(request(100)).await.unwrap_err();
    let chain = status_chain(&status);
    assert!(
        chain.contains("BadCertificate") || chain.contains("CertificateExpired"),
        "{chain}"
    );
}
