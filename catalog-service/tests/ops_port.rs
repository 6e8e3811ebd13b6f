//! The real `catalog-service` binary's operations port: it answers as every service's does
//! (`service_runtime::ops`), here not ready while no Discount answers; and `off` opens no port.
#![allow(clippy::unwrap_used)]

mod common;

use common::{refusing_port, spawn_catalog, start_catalog};
use process_testing::{assert_operations_port, listening_ports};

#[tokio::test]
async fn the_operations_port_answers_as_every_service_s_and_names_the_missing_discount() {
    let (_down, discount) = refusing_port();
    let catalog = start_catalog(discount, &[]).await;
    let ready = assert_operations_port(catalog.ops_addr).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    let body: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
    let reasons = body["not_ready"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{body}");
    assert!(
        reasons[0].as_str().unwrap().starts_with("discount: "),
        "{body}"
    );
}

#[tokio::test]
async fn off_opens_no_operations_port() {
    let (_down, discount) = refusing_port();
    let (child, log, _certs) = spawn_catalog(discount, &["--ops-listen", "off"], &[]);
    let off = log.line_with("Catalog operations port off").await;
    assert!(off.contains("no /healthz, /readyz or /metrics"), "{off}");
    let public = log.addr_of("Catalog listening").await;
    // Its one listening socket is the public port.
    assert_eq!(listening_ports(child.id().unwrap()), [public]);
    assert!(
        !log.all().contains("operations port listening"),
        "{}",
        log.all()
    );
}
