//! `catalog-service migrate` and `import`, run as the database's owner over the Unix socket:
//! each exits 0 and says what it did, again changes nothing and says so, and a bad file or a
//! record the database refuses stops it with one line naming the record, with nothing changed.

use crate::cluster::{
    self, customers, products, row_versions, run_ok, spec_customers, spec_products, write,
};
use crate::common::run_to_exit;

/// The triggers migration 2 makes: four per table.
const TRIGGERS: [&str; 8] = [
    "customers_notify_delete",
    "customers_notify_insert",
    "customers_notify_truncate",
    "customers_notify_update",
    "products_notify_delete",
    "products_notify_insert",
    "products_notify_truncate",
    "products_notify_update",
];

#[tokio::test]
async fn migrate_twice_makes_the_schema_then_says_it_is_up_to_date() {
    let db = cluster::shared().await.database().await;

    let first = run_ok("migrate", &db.owner_url, &[]).await;
    assert!(first.contains("schema migrated"), "{first}");
    assert!(first.contains("applied=[1, 2]"), "{first}");
    let second = run_ok("migrate", &db.owner_url, &[]).await;
    assert!(second.contains("schema already up to date"), "{second}");
    assert!(!second.contains("schema migrated"), "{second}");
    assert!(
        second.contains("role catalog already as required"),
        "{second}"
    );

    let owner = &db.owner;
    let names = |sql: &'static str| async move {
        let rows = owner.query(sql, &[]).await.unwrap();
        rows.iter().map(|r| r.get(0)).collect::<Vec<String>>()
    };
    let tables =
        names("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1");
    assert_eq!(
        tables.await,
        ["catalog_schema_migrations", "customers", "products"]
    );
    let triggers = names("SELECT tgname::text FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1");
    assert_eq!(triggers.await, TRIGGERS);
    let versions = owner
        .query(
            "SELECT version FROM catalog_schema_migrations ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i32> = versions.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, [1, 2], "each migration recorded once");

    // The serving role: a login without a password or any power, that may read both tables in
    // this database and nothing more.
    let role = owner
        .query_one(
            "SELECT rolcanlogin, rolpassword IS NULL, rolsuper OR rolcreatedb OR rolcreaterole \
                    OR rolreplication OR rolbypassrls \
             FROM pg_authid WHERE rolname = 'catalog'",
            &[],
        )
        .await
        .unwrap();
    let role: (bool, bool, bool) = (role.get(0), role.get(1), role.get(2));
    assert_eq!(role, (true, true, false), "login, no password, no power");
    for table in ["products", "customers"] {
        for (privilege, granted) in [
            ("SELECT", true),
            ("INSERT", false),
            ("UPDATE", false),
            ("DELETE", false),
            ("TRUNCATE", false),
        ] {
            let row = owner
                .query_one(
                    "SELECT has_table_privilege('catalog', $1, $2)",
                    &[&table, &privilege],
                )
                .await
                .unwrap();
            assert_eq!(row.get::<_, bool>(0), granted, "{privilege} on {table}");
        }
    }
}

#[tokio::test]
async fn migrate_creates_a_serving_role_that_does_not_exist() {
    let db = cluster::shared().await.database().await;
    let role = "reader_made_by_migrate";
    let exists = "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1";
    assert!(
        db.owner
            .query_opt(exists, &[&role])
            .await
            .unwrap()
            .is_none()
    );

    let log = run_ok("migrate", &db.owner_url, &["--catalog-role", role]).await;
    assert!(log.contains(&format!("role {role} created")), "{log}");
    let row = db.owner.query_one(exists, &[&role]).await.unwrap();
    assert!(row.get::<_, bool>(0), "a login");
    let read = db
        .owner
        .query_one(
            "SELECT has_table_privilege($1, 'products', 'SELECT')",
            &[&role],
        )
        .await
        .unwrap();
    assert!(read.get::<_, bool>(0));
}

#[tokio::test]
async fn import_without_files_loads_spec_data_and_again_changes_nothing() {
    let db = cluster::shared().await.database().await;
    run_ok("migrate", &db.owner_url, &[]).await;

    let first = run_ok("import", &db.owner_url, &[]).await;
    assert!(
        first.contains(
            "imported: products 3 inserted, 0 updated, 0 unchanged; \
             customers 2 inserted, 0 updated, 0 unchanged"
        ),
        "{first}"
    );
    assert_eq!(products(&db.owner).await, spec_products());
    assert_eq!(customers(&db.owner).await, spec_customers());
    let before = row_versions(&db.owner).await;

    let second = run_ok("import", &db.owner_url, &[]).await;
    assert!(
        second.contains(
            "imported: products 0 inserted, 0 updated, 3 unchanged; \
             customers 0 inserted, 0 updated, 2 unchanged"
        ),
        "{second}"
    );
    assert_eq!(
        row_versions(&db.owner).await,
        before,
        "no row written again, not even with the same values"
    );
    assert_eq!(products(&db.owner).await, spec_products());
    assert_eq!(customers(&db.owner).await, spec_customers());
}

/// Imports a products file holding `text` (with the flags `extra`) into a database loaded
/// with SPEC's data: it must fail with one line saying that nothing was imported, and leave
/// every row as it was, not even written again. Returns the line and the file's path.
async fn refused_import(text: &str, extra: &[&str]) -> (String, String) {
    let db = cluster::shared().await.database().await;
    cluster::migrate_and_import(&db).await;
    let before = row_versions(&db.owner).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "products.json", text);
    let mut args = vec![
        "import",
        "--database-url",
        &db.owner_url,
        "--products",
        &file,
    ];
    args.extend_from_slice(extra);
    let line = process_testing::single_error_line(&run_to_exit(&args).await);
    assert!(line.contains("nothing was imported"), "{line}");
    assert_eq!(row_versions(&db.owner).await, before, "nothing written");
    assert_eq!(products(&db.owner).await, spec_products());
    assert_eq!(customers(&db.owner).await, spec_customers());
    (line, file)
}

#[tokio::test]
async fn a_bad_products_file_is_named_by_record_and_changes_nothing() {
    // Record 1 would change product 1; record 2 breaks a rule.
    let (line, file) = refused_import(
        r#"[{"id":1,"slug":"iphone-x","description":"64GB","price_in_cents":1},
            {"id":2,"slug":"notebook","description":"","price_in_cents":-5}]"#,
        &[],
    )
    .await;
    assert!(
        line.contains(&format!(
            "{file}: record 2: product 2: price_in_cents must not be negative, got -5"
        )),
        "{line}"
    );
}

#[tokio::test]
async fn a_slug_taken_in_the_database_is_named_by_record_and_rolls_everything_back() {
    // Record 1 changes product 1 and record 3 adds product 11, both good on their own; record 2
    // takes the slug of product 2, which the file leaves as it is. One record per statement:
    // the database finds the clash at commit, after each record was written in the same
    // transaction.
    let (line, file) = refused_import(
        r#"[{"id":1,"slug":"iphone-x","description":"64GB","price_in_cents":1},
            {"id":10,"slug":"notebook-avell-g1511","description":"","price_in_cents":5},
            {"id":11,"slug":"switch","description":"","price_in_cents":7}]"#,
        &["--chunk-rows", "1"],
    )
    .await;
    assert!(
        line.contains(&format!(
            "{file}: record 2: product 10: slug \"notebook-avell-g1511\" already belongs to \
             product 2 in the database"
        )),
        "{line}"
    );
}
