//! The real `catalog-service` binary serving its catalog from data files that change while it
//! runs: a good change is served (on the reload interval, and at once on SIGHUP), a bad one is
//! refused with the start-up error's one line, counted, and the last good data keeps serving.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{Catalog, refusing_port, start_catalog};
use process_testing::{metric, metrics_of, poll_until, sighup};

/// SPEC's three products, with product 3 at `price` and, if given, a fourth product.
fn products(price: i32, fourth: bool) -> String {
    let mut products = vec![
        r#"{"id":1,"slug":"iphone-x","description":"64GB, black and iOS 12","price_in_cents":99999}"#.to_owned(),
        r#"{"id":2,"slug":"notebook-avell-g1511","description":"Notebook Gamer Intel Core i7","price_in_cents":150000}"#.to_owned(),
        format!(r#"{{"id":3,"slug":"playstation-4-slim","description":"1TB Console","price_in_cents":{price}}}"#),
    ];
    if fourth {
        products
            .push(r#"{"id":4,"slug":"switch","description":"","price_in_cents":29999}"#.to_owned());
    }
    format!("[{}]", products.join(","))
}

/// Replaces `path` whole (written aside, then renamed), as a deployment tool does.
fn replace(path: &Path, text: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// The products Catalog serves: (id, price) pairs.
async fn served(catalog: &Catalog) -> Vec<(i64, i64)> {
    let body = reqwest::get(format!("http://{}/products", catalog.addr))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    body.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_i64().unwrap(),
                p["price_in_cents"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn wait_until_served(catalog: &Catalog, expected: &[(i64, i64)]) {
    poll_until(&format!("Catalog serves {expected:?}"), || async {
        (served(catalog).await == expected).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_changed_file_is_served_and_a_bad_one_is_refused_while_the_last_good_data_serves() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("products.json");
    std::fs::write(&file, products(32_999, false)).unwrap();
    let (_down, discount) = refusing_port();
    let path = file.to_str().unwrap();
    let catalog = start_catalog(
        discount,
        &["--products", path, "--data-reload-interval-secs", "1"],
    )
    .await;
    let spec = [(1, 99_999), (2, 150_000), (3, 32_999)];
    assert_eq!(served(&catalog).await, spec);

    replace(&file, &products(30_000, true));
    let changed = [(1, 99_999), (2, 150_000), (3, 30_000), (4, 29_999)];
    wait_until_served(&catalog, &changed).await;
    catalog.log.line_with("data files reloaded").await;

    // Record 2 breaks a rule: refused with the line start-up would print, counted; the last
    // good data keeps serving.
    replace(&file, &products(30_000, false).replace("150000", "-1"));
    let refused = catalog
        .log
        .line_with("refused, the last good data keeps serving")
        .await;
    assert!(
        refused.contains(
            "products.json: record 2: product 2: price_in_cents must not be negative, got -1"
        ),
        "{refused}"
    );
    let text = metrics_of(catalog.ops_addr).await;
    assert_eq!(
        metric(
            &text,
            r#"catalog_data_reloads_total{source="files",result="refused"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "catalog_data_source_up"), Some(0.0), "{text}");
    assert_eq!(served(&catalog).await, changed);
    // While the files stay bad, the data served ages; the refusal is not repeated.
    poll_until("the snapshot's age passes 1 s", || async {
        let text = metrics_of(catalog.ops_addr).await;
        metric(&text, "catalog_data_snapshot_age_seconds").filter(|age| *age >= 1.0)
    })
    .await;
    assert_eq!(
        catalog.log.all().matches("refused, the last good").count(),
        1
    );

    // Good again: served, and the source is up.
    replace(&file, &products(1, false));
    wait_until_served(&catalog, &[(1, 99_999), (2, 150_000), (3, 1)]).await;
    let text = metrics_of(catalog.ops_addr).await;
    assert_eq!(metric(&text, "catalog_data_source_up"), Some(1.0), "{text}");
    assert_eq!(
        metric(
            &text,
            r#"catalog_data_reloads_total{source="files",result="applied"}"#
        ),
        Some(2.0),
        "{text}"
    );
}

#[tokio::test]
async fn sighup_rereads_the_files_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("products.json");
    std::fs::write(&file, products(32_999, false)).unwrap();
    let (_down, discount) = refusing_port();
    let path = file.to_str().unwrap();
    // An interval far beyond the test's deadline: only the signal can make the change seen.
    let catalog = start_catalog(
        discount,
        &["--products", path, "--data-reload-interval-secs", "86400"],
    )
    .await;
    replace(&file, &products(7, false));
    sighup(&catalog.child);
    catalog
        .log
        .line_with("SIGHUP: re-reading the data files")
        .await;
    wait_until_served(&catalog, &[(1, 99_999), (2, 150_000), (3, 7)]).await;
}
