//! The PostgreSQL these process tests share: one throwaway cluster per test binary (TLS 1.3,
//! the `catalog` role by certificate), a fresh database per test, its owner's connection over
//! the Unix socket (a plain `tokio-postgres` client, independent of the code under test), and
//! the real binary run once as a subcommand.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use throwaway_postgres::{Cluster, Options, Tls};

use crate::common::{Catalog, refusing_port, run_to_exit, start_catalog_in};

/// The role Catalog serves as: the common name of its certificate.
pub const CATALOG_ROLE: &str = "catalog";

/// A cluster and the certificate folder it trusts.
#[derive(Debug)]
pub struct TestCluster {
    /// `gen-certs`' files: the CA (with its key), Discount's, Catalog's and PostgreSQL's.
    certs: tempfile::TempDir,
    /// Locked while a test makes its database.
    cluster: Mutex<Cluster>,
}

/// A database of its own for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// The superuser over the Unix socket: the tables' owner (migrates, imports, changes rows).
    pub owner: tokio_postgres::Client,
    /// The owner's URL, as `--database-url` takes it.
    pub owner_url: String,
    /// Catalog's URL: TLS to `localhost` as `catalog`, `sslmode=verify-full`.
    pub catalog_url: String,
    /// How Catalog names that URL in its log: `localhost:PORT/DBNAME as catalog`.
    pub catalog_target: String,
}

/// The cluster every test of this binary shares, started on first use (off the runtime's
/// threads: it blocks for a second or two). Never dropped: its guardian stops it and removes
/// its folder when the binary exits.
pub async fn shared() -> &'static TestCluster {
    static SHARED: OnceLock<TestCluster> = OnceLock::new();
    tokio::task::spawn_blocking(|| SHARED.get_or_init(TestCluster::start))
        .await
        .unwrap()
}

impl TestCluster {
    fn start() -> Self {
        let certs = tempfile::tempdir().unwrap();
        pki::certs_dir::gen_certs(&pki::certs_dir::GenCerts::new(certs.path(), 1)).unwrap();
        let tls = Tls::in_certs_dir(certs.path());
        let cluster = Cluster::start(Options::new(tls, "shop").cert_role(CATALOG_ROLE))
            .unwrap_or_else(|err| panic!("{err}"));
        Self {
            certs,
            cluster: Mutex::new(cluster),
        }
    }

    /// A new, empty database (no schema): its owner connected.
    pub async fn database(&'static self) -> TestDatabase {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let name = format!("proc_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let made = name.clone();
        let (owner_url, catalog_url, port) = tokio::task::spawn_blocking(move || {
            let mut cluster = self.cluster.lock().unwrap();
            cluster
                .create_database(&made)
                .unwrap_or_else(|err| panic!("{err}"));
            (
                cluster.owner_url_to(&made),
                cluster.tls_url_to(&made, CATALOG_ROLE),
                cluster.port(),
            )
        })
        .await
        .unwrap();
        TestDatabase {
            owner: connect(&owner_url).await,
            owner_url,
            catalog_url,
            catalog_target: format!("localhost:{port}/{name} as {CATALOG_ROLE}"),
        }
    }

    /// A copy of the certificate folder the cluster trusts (the CA's key too): Catalog's own,
    /// which its test may rotate without touching another test's.
    pub fn certs_copy(&self) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        for file in pki::certs_dir::FILES {
            // `fs::copy` keeps the mode: the keys stay owner-only.
            std::fs::copy(self.certs.path().join(file), copy.path().join(file)).unwrap();
        }
        copy
    }
}

/// A client at `url` (the owner over the socket, or another role there), its connection
/// driven by a task of its own.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|err| panic!("{url}: {err}"));
    tokio::spawn(connection);
    client
}

/// Runs `catalog-service <command> --database-url <url> <extra>`: it must exit 0 without an
/// error or a warning. Returns its log.
pub async fn run_ok(command: &str, url: &str, extra: &[&str]) -> String {
    let mut args = vec![command, "--database-url", url];
    args.extend_from_slice(extra);
    let output = run_to_exit(&args).await;
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{command}: {log}");
    assert!(
        !log.contains("ERROR") && !log.contains("WARN") && !log.contains("panicked"),
        "{command}: {log}"
    );
    log
}

/// [`run_ok`]'s `migrate` then `import` (SPEC's data): a database ready to serve.
pub async fn migrate_and_import(db: &TestDatabase) {
    run_ok("migrate", &db.owner_url, &[]).await;
    run_ok("import", &db.owner_url, &[]).await;
}

/// A database of its own, migrated and loaded with SPEC's data, and Catalog serving it:
/// `--database-url` as `catalog` over TLS, a copy of the cluster's certificate folder as its
/// own (`Catalog::certs`), Discount down (its refusing socket returned, to hold), and the flags
/// `extra`. Returns once Catalog listens, maybe before it has read the database.
pub async fn serving_catalog(extra: &[&str]) -> (TestDatabase, Catalog, tokio::net::TcpSocket) {
    let cluster = shared().await;
    let db = cluster.database().await;
    migrate_and_import(&db).await;
    let (refusing, discount) = refusing_port();
    let mut args = vec!["--database-url", db.catalog_url.as_str()];
    args.extend_from_slice(extra);
    let catalog = start_catalog_in(cluster.certs_copy(), discount, &args, &[]).await;
    (db, catalog, refusing)
}

/// A product row: id, slug, description, price.
pub type ProductRow = (i32, String, String, i32);

/// A customer row: id, first name, last name.
pub type CustomerRow = (i32, String, String);

/// SPEC's products, as rows.
pub fn spec_products() -> Vec<ProductRow> {
    [
        (1, "iphone-x", "64GB, black and iOS 12", 99_999),
        (
            2,
            "notebook-avell-g1511",
            "Notebook Gamer Intel Core i7",
            150_000,
        ),
        (3, "playstation-4-slim", "1TB Console", 32_999),
    ]
    .into_iter()
    .map(|(id, slug, description, price)| (id, slug.into(), description.into(), price))
    .collect()
}

/// SPEC's customers, as rows.
pub fn spec_customers() -> Vec<CustomerRow> {
    vec![
        (1, "John".into(), "Snow".into()),
        (2, "Daenerys".into(), "Targaryen".into()),
    ]
}

/// Every product, by id.
pub async fn products(owner: &tokio_postgres::Client) -> Vec<ProductRow> {
    let sql = "SELECT id, slug, description, price_in_cents FROM products ORDER BY id";
    let rows = owner.query(sql, &[]).await.unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// Every customer, by id.
pub async fn customers(owner: &tokio_postgres::Client) -> Vec<CustomerRow> {
    let sql = "SELECT id, first_name, last_name FROM customers ORDER BY id";
    let rows = owner.query(sql, &[]).await.unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Every row of both tables with the transaction that last wrote it (`xmin`): equal before
/// and after only if no row was written in between, not even with the same values.
pub async fn row_versions(owner: &tokio_postgres::Client) -> Vec<String> {
    let sql = "SELECT 'products ' || id || ' ' || xmin::text FROM products \
               UNION ALL SELECT 'customers ' || id || ' ' || xmin::text FROM customers \
               ORDER BY 1";
    let rows = owner.query(sql, &[]).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}
