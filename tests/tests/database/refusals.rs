//! What Catalog is refused, and says: no catalog before the database answers (503 with
//! `Retry-After` and the cause; not ready), each TLS failure named (a certificate from another
//! CA, a server certificate for another name, no client certificate), and the `catalog` role
//! may read but not write.

use std::time::Duration;

use e2e_tests::pki::certs_dir::{GenCerts, gen_certs};
use process_testing::{ask, poll_until};

use crate::get_products;

/// Waits until Catalog says why it has no catalog, and returns it.
async fn why_not(shop: &e2e_tests::Shop, needle: &str) -> String {
    let why = poll_until(
        &format!("Catalog says why it has no catalog ({needle})"),
        || async { shop.data.not_ready().filter(|why| why.contains(needle)) },
    )
    .await;
    eprintln!("why: {why}");
    why
}

#[tokio::test]
async fn without_its_first_snapshot_catalog_answers_503_naming_why_and_is_not_ready() {
    let cluster = e2e_tests::shared_cluster();
    let closed = e2e_tests::closed_port();
    let url = format!(
        "postgresql://localhost:{}/shop?sslmode=verify-full",
        closed.addr.port()
    );
    let shop = e2e_tests::spawn_shop(cluster.certs(), &url).await;
    let why = why_not(&shop, "refused").await;
    let response = reqwest::get(format!("http://{}/products", shop.catalog.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "catalog_unavailable", "{body}");
    // The public is told what is missing; the operator, on the operations port, why.
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("not read its catalog"), "{message}");
    assert!(
        !message.contains("localhost"),
        "no detail in public: {message}"
    );
    let ready = ask(shop.catalog.ops(), "GET", "/readyz").await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(
        ready.body.contains("data: no catalog yet"),
        "{}",
        ready.body
    );
    assert!(ready.body.contains("refused"), "{} / {why}", ready.body);
    // Per product too.
    let (status, _) = get_products(shop.catalog.addr, Some("1")).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused_by_the_server_and_named() {
    let cluster = e2e_tests::shared_cluster();
    let db = cluster.database().await;
    let other = tempfile::tempdir().unwrap();
    gen_certs(&GenCerts::new(other.path(), 1)).unwrap();
    let url = format!(
        "{}&sslcert={}&sslkey={}",
        db.catalog_url,
        other.path().join("catalog.pem").display(),
        other.path().join("catalog.key").display()
    );
    let shop = e2e_tests::spawn_shop(cluster.certs(), &url).await;
    let why = why_not(&shop, "certificate").await;
    assert!(why.contains("refused our certificate"), "{why}");
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_refused_and_named() {
    let cluster = e2e_tests::shared_cluster();
    let db = cluster.database().await;
    // The socket goes to the cluster; the name checked is elsewhere.example, which its
    // certificate (localhost, 127.0.0.1, ::1) does not carry.
    let url = db
        .catalog_url
        .replace("//localhost:", "//elsewhere.example:")
        .replace("?", "?hostaddr=127.0.0.1&");
    let shop = e2e_tests::spawn_shop(cluster.certs(), &url).await;
    let why = why_not(&shop, "localhost").await;
    assert!(
        why.contains("elsewhere.example"),
        "names the name asked for: {why}"
    );
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_and_named() {
    let cluster = e2e_tests::shared_cluster();
    let db = cluster.database().await;
    let other = tempfile::tempdir().unwrap();
    gen_certs(&GenCerts::new(other.path(), 1)).unwrap();
    let url = format!(
        "{}&sslrootcert={}",
        db.catalog_url,
        other.path().join("ca.pem").display()
    );
    let shop = e2e_tests::spawn_shop(cluster.certs(), &url).await;
    let why = why_not(&shop, "certificate").await;
    assert!(why.contains("our CA"), "{why}");
}

#[tokio::test]
async fn without_a_client_certificate_the_server_refuses_and_says_so() {
    let cluster = e2e_tests::shared_cluster();
    let db = cluster.database().await;
    let (_, anchors) = mtls::TlsFiles::in_dir(cluster.certs(), "catalog")
        .load()
        .unwrap();
    let no_identity = mtls::client_config(&anchors, None, None).unwrap();
    let mut config: tokio_postgres::Config = db
        .catalog_url
        .replace("&sslmode=verify-full", "&sslmode=require")
        .parse()
        .unwrap();
    config.connect_timeout(Duration::from_secs(10));
    let err = config
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(
            (*no_identity).clone(),
        ))
        .await
        .map(|_| ())
        .unwrap_err();
    let why = catalog_service::database::error::describe(&err, Some("localhost"));
    eprintln!("why: {why}");
    assert!(why.contains("certificate"), "{why}");
}

#[tokio::test]
async fn the_catalog_role_may_read_but_not_write() {
    let cluster = e2e_tests::shared_cluster();
    let db = cluster.database().await;
    let catalog = cluster.connect(&db.catalog_url).await;
    let count: i64 = catalog
        .query_one("SELECT count(*) FROM products", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 3);
    // migrate pointed the role at the tables' schema.
    let path: String = catalog
        .query_one("SHOW search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(path, "public");
    for statement in [
        "INSERT INTO products VALUES (9, 'x', '', 1)",
        "UPDATE products SET price_in_cents = 1",
        "DELETE FROM customers",
        "TRUNCATE products",
        "CREATE TABLE notes (id int)",
    ] {
        let err = catalog.batch_execute(statement).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_server_that_accepts_and_never_answers_is_given_up_after_the_connect_timeout() {
    let cluster = e2e_tests::shared_cluster();
    // Accepts connections (the kernel's backlog does) and never reads or writes a byte.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "postgresql://localhost:{}/shop?sslmode=verify-full&connect_timeout=1",
        silent.local_addr().unwrap().port()
    );
    let database = cluster.database_at(&url);
    let attempt = tokio::time::timeout(Duration::from_secs(20), database.connect());
    let err = attempt
        .await
        .expect("given up, not hung")
        .map(|_| ())
        .unwrap_err();
    assert!(err.reason.contains("no answer within 1s"), "{err}");
}

#[tokio::test]
async fn migrate_refuses_a_serving_role_that_is_a_member_of_another_role() {
    let cluster = e2e_tests::shared_cluster();
    let mut db = cluster.database().await;
    // Roles are cluster-wide: names of this test's own.
    db.owner
        .batch_execute(
            "CREATE ROLE member_test LOGIN; CREATE ROLE member_test_writer; \
             GRANT member_test_writer TO member_test;",
        )
        .await
        .unwrap();
    let role = "member_test".parse().unwrap();
    let err = catalog_service::database::migrate(&mut db.owner, &role)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("member of member_test_writer") && err.contains("REVOKE"),
        "{err}"
    );
}
