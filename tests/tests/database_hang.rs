//! PostgreSQL hung under load (Catalog's server process stopped with SIGSTOP: the connection
//! stays open and answers nothing), in a binary and a cluster of its own: Catalog gives the
//! connection up after its timeout, keeps answering every request meanwhile, and reconnects
//! once the server answers again.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use e2e_tests::TestCluster;
use process_testing::poll_until;

/// Sends `signal` to process `pid`.
fn signal(pid: i32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_database_is_given_up_after_the_timeout_while_every_request_is_answered() {
    let cluster: &'static TestCluster = Box::leak(Box::new(
        tokio::task::spawn_blocking(TestCluster::start)
            .await
            .unwrap(),
    ));
    let db = cluster.database().await;
    let shop = e2e_tests::spawn_shop_with(cluster.certs(), &db.catalog_url, |watch| {
        watch.timeout = std::time::Duration::from_secs(1);
    })
    .await;
    poll_until("Catalog has read its catalog", || async {
        shop.data.current().ok().map(|_| ())
    })
    .await;
    let backend: i32 = db
        .owner
        .query_one(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND usename = 'catalog'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, mut clients) = e2e_tests::load_products(shop.catalog.addr, 4, stop.clone());
    // Catalog's server process hangs: its connection stays open, and answers nothing.
    signal(backend, rustix::process::Signal::STOP);
    poll_until("Catalog gives the hung connection up", || async {
        (!shop.data.source_is_up()).then_some(())
    })
    .await;
    signal(backend, rustix::process::Signal::CONT);
    poll_until("Catalog is connected again", || async {
        shop.data.source_is_up().then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    while clients.join_next().await.is_some() {}
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 0);
}
