//! Changes made in the database while Catalog serves: each row change reaches `/products` (no
//! restart, no fixed wait: polled to a deadline), also across a killed connection, and a forged
//! notification changes nothing that is served.

use process_testing::poll_until;

use crate::{SPEC_PRICES, wait_for_catalog, wait_for_prices};

#[tokio::test]
async fn an_update_an_insert_and_a_delete_are_each_served() {
    let cluster = e2e_tests::shared_cluster();
    let db = cluster.database().await;
    let shop = e2e_tests::spawn_shop(cluster.certs(), &db.catalog_url).await;
    wait_for_catalog(&shop).await;

    db.owner
        .execute("UPDATE products SET price_in_cents = 100 WHERE id = 2", &[])
        .await
        .unwrap();
    wait_for_prices(&shop, &[(1, 99_999), (2, 100), (3, 32_999)]).await;

    db.owner
        .execute(
            "INSERT INTO products VALUES (10, 'switch', 'Console', 29999)",
            &[],
        )
        .await
        .unwrap();
    wait_for_prices(&shop, &[(1, 99_999), (2, 100), (3, 32_999), (10, 29_999)]).await;

    db.owner
        .execute("DELETE FROM products WHERE id = 1", &[])
        .await
        .unwrap();
    wait_for_prices(&shop, &[(2, 100), (3, 32_999), (10, 29_999)]).await;

    // Customers too: a new one is known at once (Catalog then asks Discount for them).
    assert!(shop.data.current().unwrap().customer(3).is_none());
    db.owner
        .execute("INSERT INTO customers VALUES (3, 'Arya', 'Stark')", &[])
        .await
        .unwrap();
    poll_until("customer 3 is known", || async {
        shop.data.current().unwrap().customer(3).map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn a_change_made_while_the_connection_was_killed_is_served_after_the_reconnect() {
    let cluster = e2e_tests::shared_cluster();
    let db = cluster.database().await;
    let shop = e2e_tests::spawn_shop(cluster.certs(), &db.catalog_url).await;
    wait_for_catalog(&shop).await;
    let backend = "SELECT pid FROM pg_stat_activity \
                   WHERE datname = current_database() AND usename = 'catalog'";
    let before: i32 = db.owner.query_one(backend, &[]).await.unwrap().get(0);
    // Killed, and the change committed right after, in one round trip: its notification goes
    // to no one (Catalog's LISTEN died with its session).
    db.owner
        .batch_execute(&format!(
            "SELECT pg_terminate_backend({before}); \
             UPDATE products SET price_in_cents = 7 WHERE id = 3;"
        ))
        .await
        .unwrap();
    wait_for_prices(&shop, &[(1, 99_999), (2, 150_000), (3, 7)]).await;
    let after: i32 = db.owner.query_one(backend, &[]).await.unwrap().get(0);
    assert_ne!(before, after, "a new connection");
    assert!(shop.data.source_is_up());
}

#[tokio::test]
async fn a_forged_notification_from_another_role_changes_nothing_that_is_served() {
    let cluster = e2e_tests::shared_cluster();
    let db = cluster.database().await;
    let shop = e2e_tests::spawn_shop(cluster.certs(), &db.catalog_url).await;
    wait_for_catalog(&shop).await;
    db.owner
        .batch_execute("CREATE ROLE intruder LOGIN")
        .await
        .unwrap_or_else(|err| {
            // Roles are cluster-wide: another test's run may have made it.
            assert!(err.to_string().contains("already exists"), "{err}");
        });
    let url = db.owner_url.replace("user=postgres", "user=intruder");
    let intruder = cluster.connect(&url).await;
    // No privilege is checked on NOTIFY: these all reach Catalog. Only ids are read from a
    // payload, and then only to read those rows again with Catalog's own SELECT.
    let forge = |payloads: &'static [&'static str]| {
        let intruder = &intruder;
        async move {
            for payload in payloads {
                intruder
                    .execute("SELECT pg_notify('catalog_changes', $1)", &[payload])
                    .await
                    .unwrap();
            }
        }
    };
    // Ids first, with no full read among them that could repair what they did.
    forge(&[
        "products:1",
        "products:999",
        r#"products:{"id":1,"price_in_cents":1}"#,
        "customers:1,2,77",
        "garbage",
    ])
    .await;
    // A real change after them: once it is served, the forged ones were handled.
    db.owner
        .execute("UPDATE products SET price_in_cents = 5 WHERE id = 2", &[])
        .await
        .unwrap();
    wait_for_prices(&shop, &[(1, 99_999), (2, 5), (3, 32_999)]).await;
    let snapshot = shop.data.current().unwrap();
    assert_eq!(snapshot.product_count(), 3);
    assert_eq!(snapshot.customer_count(), 2);
    assert!(snapshot.customer(77).is_none());

    // Then whole-table reads: they read the truth again, at most once a second.
    forge(&["products:*", "customers:*", "products:*"]).await;
    db.owner
        .execute("UPDATE products SET price_in_cents = 6 WHERE id = 2", &[])
        .await
        .unwrap();
    wait_for_prices(&shop, &[(SPEC_PRICES[0]), (2, 6), (SPEC_PRICES[2])]).await;
    assert_eq!(shop.data.current().unwrap().customer_count(), 2);
}

#[tokio::test]
async fn the_connection_is_renewed_at_its_maximum_age_without_going_down() {
    let cluster = e2e_tests::shared_cluster();
    let db = cluster.database().await;
    let shop = e2e_tests::spawn_shop_with(cluster.certs(), &db.catalog_url, |watch| {
        watch.max_connection_age = Some(std::time::Duration::from_millis(300));
    })
    .await;
    wait_for_catalog(&shop).await;
    // While a connection is renewed, none or two may be listed: any new pid will do.
    let backends = "SELECT pid FROM pg_stat_activity \
                    WHERE datname = current_database() AND usename = 'catalog'";
    let pids = || async {
        let rows = db.owner.query(backends, &[]).await.unwrap();
        rows.iter()
            .map(|row| row.get::<_, i32>(0))
            .collect::<Vec<_>>()
    };
    let first = poll_until("Catalog is connected", || async {
        pids().await.first().copied()
    })
    .await;
    poll_until("Catalog's connection is replaced", || async {
        pids().await.iter().any(|pid| *pid != first).then_some(())
    })
    .await;
    // A renewal is not an outage: the source never went down.
    db.owner
        .execute("UPDATE products SET price_in_cents = 3 WHERE id = 3", &[])
        .await
        .unwrap();
    wait_for_prices(&shop, &[(1, 99_999), (2, 150_000), (3, 3)]).await;
    assert_eq!(shop.data.outages(), 0);
}
