//! The real binary serving its catalog from PostgreSQL (`--database-url`, mutual TLS 1.3 as
//! `catalog`): SPEC's catalog served, an owner's change followed, a forged notification from
//! another role counted and ignored, all seen on its own `/metrics`; and its log says it
//! connected without showing key material.

use std::net::SocketAddr;

use process_testing::{metric, metrics_of, poll_until};

use crate::cluster::{self, connect};

/// SPEC's products at full price (no `X-USER-ID`: Discount is not asked), byte for byte.
const FULL_PRICE_JSON: &str = concat!(
    r#"[{"id":1,"slug":"iphone-x","description":"64GB, black and iOS 12","price_in_cents":99999},"#,
    r#"{"id":2,"slug":"notebook-avell-g1511","description":"Notebook Gamer Intel Core i7","price_in_cents":150000},"#,
    r#"{"id":3,"slug":"playstation-4-slim","description":"1TB Console","price_in_cents":32999}]"#,
);

/// `GET /products`: status and body.
async fn get_products(addr: SocketAddr) -> (u16, String) {
    let response = reqwest::get(format!("http://{addr}/products"))
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Waits until Catalog serves `expected` as its `/products` body.
async fn wait_until_served(addr: SocketAddr, expected: &str) {
    poll_until(&format!("Catalog serves {expected}"), || async {
        (get_products(addr).await == (200, expected.to_owned())).then_some(())
    })
    .await;
}

/// The value of `series` on Catalog's `/metrics` (0 if absent).
async fn value(ops: SocketAddr, series: &str) -> f64 {
    metric(&metrics_of(ops).await, series).unwrap_or(0.0)
}

const SOURCE_UP: &str = "catalog_data_source_up";
const APPLIED: &str = r#"catalog_data_reloads_total{source="database",result="applied"}"#;
const READ: &str = r#"catalog_data_notifications_total{result="read"}"#;
const MALFORMED: &str = r#"catalog_data_notifications_total{result="malformed"}"#;

#[tokio::test]
async fn the_binary_serves_the_database_follows_a_change_and_ignores_a_forged_notification() {
    let (db, catalog, _refusing) = cluster::serving_catalog(&[]).await;
    let key = std::fs::read_to_string(catalog.certs.path().join("catalog.key")).unwrap();

    wait_until_served(catalog.addr, FULL_PRICE_JSON).await;
    let ops = catalog.ops_addr;
    assert_eq!(value(ops, SOURCE_UP).await, 1.0);
    assert!(value(ops, APPLIED).await >= 1.0, "the full read");

    // The owner changes a row: the trigger's notification reaches Catalog, which reads it.
    db.owner
        .execute("UPDATE products SET price_in_cents = 100 WHERE id = 2", &[])
        .await
        .unwrap();
    let changed = FULL_PRICE_JSON.replace("150000", "100");
    wait_until_served(catalog.addr, &changed).await;
    let text = metrics_of(ops).await;
    assert!(metric(&text, READ) >= Some(1.0), "{text}");
    assert_eq!(metric(&text, MALFORMED), None, "{text}");
    let applied = metric(&text, APPLIED).unwrap();
    assert!(applied >= 2.0, "the full read and the row: {text}");

    // Anyone who may connect may NOTIFY on any channel: a payload that is no change is counted
    // and changes nothing.
    db.owner
        .batch_execute("CREATE ROLE intruder LOGIN")
        .await
        .unwrap_or_else(|err| {
            // Roles are cluster-wide: another test of this binary may have made it.
            assert!(format!("{err:?}").contains("already exists"), "{err:?}");
        });
    let intruder = connect(&db.owner_url.replace("user=postgres", "user=intruder")).await;
    intruder
        .batch_execute("NOTIFY catalog_changes, 'garbage'")
        .await
        .unwrap();
    poll_until(
        "the forged notification is counted as malformed",
        || async { (value(ops, MALFORMED).await == 1.0).then_some(()) },
    )
    .await;
    assert_eq!(get_products(catalog.addr).await, (200, changed));
    assert_eq!(value(ops, APPLIED).await, applied, "nothing applied");
    assert_eq!(value(ops, SOURCE_UP).await, 1.0);

    // The log: the first line about the database says it connected, where and as whom; no key
    // material anywhere.
    let log = catalog.log.all();
    let first = log
        .lines()
        .find(|line| line.contains("database"))
        .unwrap_or_else(|| panic!("no line about the database: {log}"));
    assert!(
        first.contains("database connected: catalog read in full, following its changes"),
        "{log}"
    );
    assert!(first.contains(&db.catalog_target), "{first}");
    assert!(!log.contains("PRIVATE KEY"), "{log}");
    for line in key.lines().filter(|line| !line.starts_with("-----")) {
        assert!(!log.contains(line), "a line of the key is logged: {log}");
    }
}
