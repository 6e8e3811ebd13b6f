//! PostgreSQL stopped under load, in a binary of its own (its one test reads the process's
//! metrics, which no other test writes) and a cluster of its own (stopping a shared one would
//! disturb other tests): Catalog keeps answering every request from its last snapshot while
//! the snapshot's age rises and the source is down, and converges once the server is back.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use e2e_tests::TestCluster;
use process_testing::{metric, metrics_of, poll_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_stopped_under_load_every_request_is_answered_and_then_it_converges() {
    // Its own cluster: stopping a shared one would disturb other tests. Never dropped (it is
    // needed to the end); its guardian removes it when the binary exits.
    let cluster: &'static TestCluster = Box::leak(Box::new(
        tokio::task::spawn_blocking(TestCluster::start)
            .await
            .unwrap(),
    ));
    let db = cluster.database().await;
    let shop = e2e_tests::spawn_shop(cluster.certs(), &db.catalog_url).await;
    poll_until("Catalog has read its catalog", || async {
        shop.data.current().ok().map(|_| ())
    })
    .await;
    let ops = shop.catalog.ops();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, mut clients) = e2e_tests::load_products(shop.catalog.addr, 8, stop.clone());

    cluster.with(|cluster| cluster.stop().unwrap()).await;
    let age = poll_until(
        "the snapshot's age rises past 1 s with the source down",
        || async {
            let text = metrics_of(ops).await;
            let up = metric(&text, "catalog_data_source_up")?;
            let age = metric(&text, "catalog_data_snapshot_age_seconds")?;
            (up == 0.0 && age >= 1.0).then_some(age)
        },
    )
    .await;
    let served_while_down = ok.load(Ordering::Relaxed);

    cluster.with(|cluster| cluster.restart().unwrap()).await;
    db_change_after_restart(cluster, &db.owner_url).await;
    poll_until("the change made after the restart is served", || async {
        let snapshot = shop.data.current().ok()?;
        (snapshot.product(2)?.price_tag().price_in_cents == 1).then_some(())
    })
    .await;
    poll_until(
        "the source is up and the snapshot's age back under 1 s",
        || async {
            let text = metrics_of(ops).await;
            let up = metric(&text, "catalog_data_source_up")?;
            let now = metric(&text, "catalog_data_snapshot_age_seconds")?;
            (up == 1.0 && now < 1.0 && now < age).then_some(())
        },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    while clients.join_next().await.is_some() {}
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{ok} answered 200");
    assert!(
        ok > served_while_down && served_while_down > 0,
        "{served_while_down} of {ok}"
    );
}

/// Changes product 2's price as the owner, on a new connection (the old one died with the
/// server).
async fn db_change_after_restart(cluster: &TestCluster, owner_url: &str) {
    let owner = cluster.connect(owner_url).await;
    owner
        .execute("UPDATE products SET price_in_cents = 1 WHERE id = 2", &[])
        .await
        .unwrap();
}
