//! Certificate rotation without restarts: both services pick up re-issued certificates from
//! disk while requests keep flowing, and refuse a broken replacement.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use e2e_tests::{pem_serial, server_serial, spawn_rotating_pair};
use ecommerce_proto::reload::ReloadOutcome;
use xtask::certs_dir::{GenCerts, gen_certs};

use crate::SPEC_CUSTOMER_1_JSON;

#[tokio::test]
async fn rotation_under_load_loses_no_request_and_new_connections_get_new_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pair = spawn_rotating_pair(dir.path()).await;
    let old_server_serial = server_serial(pair.discount.addr, dir.path()).await;
    assert_eq!(
        old_server_serial,
        pem_serial(&dir.path().join("discount.pem"))
    );

    // A steady stream of discounted requests through Catalog, from four clients.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let url = format!("http://{}/products", pair.catalog.addr);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while !stop.load(Ordering::SeqCst) {
                    let response = client.get(&url).header("X-USER-ID", "1").send().await;
                    let good = match response {
                        Ok(r) if r.headers().get("x-discount-unavailable").is_none() => {
                            r.status() == 200 && r.text().await.unwrap() == SPEC_CUSTOMER_1_JSON
                        }
                        _ => false,
                    };
                    let counter = if good { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // Let the stream get going before rotating (counted, not timed).
    while ok.load(Ordering::SeqCst) < 50 {
        tokio::task::yield_now().await;
    }

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

    let served_before = ok.load(Ordering::SeqCst);
    while ok.load(Ordering::SeqCst) < served_before + 50 {
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during rotation"
    );
    // A new connection now gets the new certificate.
    assert_eq!(
        server_serial(pair.discount.addr, dir.path()).await,
        new_discount
    );
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

    let ca = xtask::pki::CertificateAuthority::from_pem(
        &std::fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
        &std::fs::read_to_string(dir.path().join("ca.key")).unwrap(),
        xtask::pki::Validity::days(1),
    )
    .unwrap();
    let early = ca
        .issue_local_server("discount", xtask::pki::Validity::not_yet_valid())
        .unwrap();
    std::fs::write(dir.path().join("discount.key"), &early.key_pem).unwrap();
    std::fs::write(dir.path().join("discount.pem"), &early.cert_pem).unwrap();

    let err = pair.discount_tls.reload().unwrap_err().to_string();
    assert!(err.contains("not valid until"), "{err}");
    assert_eq!(server_serial(pair.discount.addr, dir.path()).await, serial);
}
