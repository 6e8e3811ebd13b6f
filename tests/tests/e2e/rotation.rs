//! Certificate rotation without restarts: both services pick up re-issued certificates from
//! disk while requests keep flowing, Catalog's connections to Discount are renewed so that
//! rotated certificates take effect, and a broken replacement is refused.

use std::time::Duration;

use catalog_service::balancer::ReplicaSettings;
use e2e_tests::{
    CatalogOptions, pem_serial, server_serial, service_pki, spawn_catalog, spawn_discount,
    spawn_proxy, spawn_rotating_pair,
};
use mtls::ReloadOutcome;
use pki::certs_dir::{GenCerts, gen_certs};

use crate::SPEC_CUSTOMER_1_JSON;
use crate::stream::{STALL_GUARD, Stream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_loses_no_request_and_new_connections_get_new_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pair = spawn_rotating_pair(dir.path()).await;
    let old_server_serial = server_serial(pair.discount.addr, dir.path()).await;
    assert_eq!(
        old_server_serial,
        pem_serial(&dir.path().join("discount.pem"))
    );

    // A steady stream of discounted requests through Catalog, from four clients.
    let mut stream = Stream::start(pair.catalog.addr, 4);
    stream.wait_for_more(50).await;
    // Usually one; a handshake cut short on a loaded machine makes another.
    let before = pair.proxy.connections();

    // Re-issue both services' certificates from the same CA, as an operator would.
    gen_certs(&GenCerts::new(dir.path(), 1)).unwrap();
    let new_discount = pem_serial(&dir.path().join("discount.pem"));
    let new_catalog = pem_serial(&dir.path().join("catalog.pem"));
    assert_ne!(new_discount, old_server_serial);
    assert_eq!(
        pair.discount_tls.reload().unwrap(),
        ReloadOutcome::Reloaded {
            serial: new_discount.clone()
        }
    );
    assert_eq!(
        pair.catalog_tls.reload().unwrap(),
        ReloadOutcome::Reloaded {
            serial: new_catalog
        }
    );
    // Nothing changed since: a second look is a no-op.
    assert_eq!(
        pair.discount_tls.reload().unwrap(),
        ReloadOutcome::Unchanged
    );

    // Catalog's reload renews its connection (a new handshake, with the configuration now in
    // use on both sides); the old connection closes once its RPCs are done.
    pair.proxy
        .wait_for_connections(before + 1, STALL_GUARD)
        .await;
    stream.wait_for_more(50).await;
    stream.stop().await;
    pair.proxy.wait_for_open_at_most(1, STALL_GUARD).await;
    // A new connection now gets the new certificate.
    assert_eq!(
        server_serial(pair.discount.addr, dir.path()).await,
        new_discount
    );
}

/// A TLS handshake's certificates last as long as its connection: Catalog renews each
/// connection after its maximum age, so that certificates rotated on either side take effect,
/// without a single request failing or losing its discount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_their_maximum_age_are_renewed_without_failing_a_request() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let proxy = spawn_proxy(discount.addr).await;
    let options = CatalogOptions {
        discount_timeout: Duration::from_secs(2),
        replicas: ReplicaSettings {
            health_interval: Duration::from_millis(20),
            max_connection_age: Some(Duration::from_millis(200)),
            ..ReplicaSettings::default()
        },
        ..CatalogOptions::default()
    };
    let catalog = spawn_catalog(&pki, proxy.addr, options).await;

    let stream = Stream::start(catalog.addr, 4);
    // Three renewals while requests keep coming.
    proxy.wait_for_connections(4, STALL_GUARD).await;
    stream.stop().await;
    // Replaced connections are closed, not leaked.
    proxy.wait_for_open_at_most(1, STALL_GUARD).await;
}

#[tokio::test]
async fn broken_replacement_is_refused_and_the_old_certificate_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let pair = spawn_rotating_pair(dir.path()).await;
    let serial = server_serial(pair.discount.addr, dir.path()).await;

    // A key that is not a key, then a key that belongs to another certificate.
    std::fs::write(dir.path().join("discount.key"), "not a key").unwrap();
    let err = pair.discount_tls.reload().unwrap_err().to_string();
    assert!(err.contains("private key"), "{err}");
    let catalog_key = std::fs::read(dir.path().join("catalog.key")).unwrap();
    std::fs::write(dir.path().join("discount.key"), catalog_key).unwrap();
    let err = pair.discount_tls.reload().unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");

    assert_eq!(server_serial(pair.discount.addr, dir.path()).await, serial);
    let response = reqwest::Client::new()
        .get(format!("http://{}/products", pair.catalog.addr))
        .header("X-USER-ID", "1")
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("x-discount-unavailable").is_none());
    assert_eq!(response.text().await.unwrap(), SPEC_CUSTOMER_1_JSON);
}

#[tokio::test]
async fn not_yet_valid_replacement_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pair = spawn_rotating_pair(dir.path()).await;
    let serial = server_serial(pair.discount.addr, dir.path()).await;

    let ca = pki::CertificateAuthority::from_pem(
        &std::fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
        &std::fs::read_to_string(dir.path().join("ca.key")).unwrap(),
        pki::Validity::days(1),
    )
    .unwrap();
    let early = ca
        .issue_local_server("discount", pki::Validity::not_yet_valid())
        .unwrap();
    std::fs::write(dir.path().join("discount.key"), &early.key_pem).unwrap();
    std::fs::write(dir.path().join("discount.pem"), &early.cert_pem).unwrap();

    let err = pair.discount_tls.reload().unwrap_err().to_string();
    assert!(err.contains("not valid until"), "{err}");
    assert_eq!(server_serial(pair.discount.addr, dir.path()).await, serial);
}
