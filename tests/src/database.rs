//! Catalog on PostgreSQL: a throwaway cluster (TLS from a `gen-certs` folder, the `catalog`
//! role by certificate), a database of its own per test, migrated and loaded with SPEC's data
//! by the owner over the Unix socket; and a [`Shop`]: Discount and Catalog serving from the
//! same certificate files, Catalog reading its catalog from that database over mutual TLS.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use catalog_service::app::Application;
use catalog_service::catalog::CatalogData;
use catalog_service::data::{Data, DataSource, DatabaseWatch};
use catalog_service::database::{self, DataFiles, Database, DatabaseUrl, RoleName};
use discount_service::server::ServerSettings;
use mtls::{ReloadSettings, TlsFiles, TlsSource};
use throwaway_postgres::{Cluster, Options, Tls};

use crate::net::Running;
use crate::servers::{
    CatalogOptions, catalog_settings, run_catalog, spawn_discount_settings, target,
};

/// A cluster and the certificate folder it trusts.
#[derive(Debug)]
pub struct TestCluster {
    /// `gen-certs`' files: the CA, Discount's, Catalog's and PostgreSQL's.
    pub certs: tempfile::TempDir,
    /// The cluster (locked while a test makes its database, stops or restarts it).
    pub cluster: Mutex<Cluster>,
}

/// The cluster every test of this binary shares, started on first use (and stopped, and its
/// folder removed, by its guardian when the binary exits).
pub fn shared_cluster() -> &'static TestCluster {
    static SHARED: OnceLock<TestCluster> = OnceLock::new();
    SHARED.get_or_init(TestCluster::start)
}

/// A database of a cluster, with its owner's connection.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// The superuser, over the Unix socket (the owner: migrates, imports, changes rows).
    pub owner: tokio_postgres::Client,
    /// The owner's URL (`user=postgres`, over the socket).
    pub owner_url: String,
    /// How Catalog reaches it: TLS to `localhost` as `catalog`, `sslmode=verify-full`.
    pub catalog_url: String,
}

impl TestCluster {
    /// Writes a PKI to a new folder and starts a cluster on it (blocking: a second or two).
    pub fn start() -> Self {
        let certs = tempfile::tempdir().unwrap();
        pki::certs_dir::gen_certs(&pki::certs_dir::GenCerts::new(certs.path(), 1)).unwrap();
        let tls = Tls::in_certs_dir(certs.path());
        let cluster = Cluster::start(Options::new(tls, "shop").cert_role(database::DEFAULT_ROLE))
            .unwrap_or_else(|err| panic!("{err}"));
        Self {
            certs,
            cluster: Mutex::new(cluster),
        }
    }

    /// The certificate folder.
    pub fn certs(&self) -> &Path {
        self.certs.path()
    }

    /// Runs `f` on the cluster off the runtime's threads (its calls block).
    pub async fn with<T: Send + 'static>(
        &'static self,
        f: impl FnOnce(&mut Cluster) -> T + Send + 'static,
    ) -> T {
        tokio::task::spawn_blocking(move || f(&mut self.cluster.lock().unwrap()))
            .await
            .unwrap()
    }

    /// A new database, migrated (the `catalog` role may read it) and holding SPEC's data.
    pub async fn database(&'static self) -> TestDatabase {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let name = format!("shop_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let made = name.clone();
        let (owner_url, catalog_url) = self
            .with(move |cluster| {
                cluster.create_database(&made).unwrap();
                (
                    cluster.owner_url_to(&made),
                    cluster.tls_url_to(&made, database::DEFAULT_ROLE),
                )
            })
            .await;
        let mut owner = self.connect(&owner_url).await;
        database::migrate(
            &mut owner,
            &database::DEFAULT_ROLE.parse::<RoleName>().unwrap(),
        )
        .await
        .unwrap();
        let files = DataFiles {
            products: None,
            customers: None,
        };
        database::import(&mut owner, &CatalogData::embedded_default(), &files, 1000)
            .await
            .unwrap();
        TestDatabase {
            name,
            owner,
            owner_url,
            catalog_url,
        }
    }

    /// A client at `url` (Catalog's certificate, for TLS), its connection driven.
    pub async fn connect(&self, url: &str) -> tokio_postgres::Client {
        self.database_at(url)
            .connect_spawned()
            .await
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// `url` as Catalog reaches it, with Catalog's certificate files (unless the URL names
    /// others).
    pub fn database_at(&self, url: &str) -> Database {
        let url = DatabaseUrl::parse(url, Some(database::DEFAULT_ROLE)).unwrap();
        Database::new(url, &reload_settings(self.certs(), "catalog")).unwrap()
    }
}

fn reload_settings(dir: &Path, service: &str) -> ReloadSettings {
    ReloadSettings {
        files: TlsFiles::in_dir(dir, service),
        interval: Duration::from_secs(3600),
        expiry_warning: Duration::from_secs(60),
    }
}

/// Discount and Catalog, Catalog serving from a database.
#[derive(Debug)]
pub struct Shop {
    /// Discount, from the cluster's certificate folder.
    pub discount: Running,
    /// Catalog.
    pub catalog: Running,
    /// Catalog's catalog: the snapshot it serves and what its source last said.
    pub data: Data,
}

/// How often the test Catalog pings an idle database: how soon a stopped server is noticed.
pub const HEALTH_INTERVAL: Duration = Duration::from_millis(100);

/// Starts Discount and a Catalog reading its catalog from `url` (with the certificates in
/// `certs`); returns at once, before Catalog has read anything.
pub async fn spawn_shop(certs: &Path, url: &str) -> Shop {
    spawn_shop_with(certs, url, |_| ()).await
}

/// [`spawn_shop`], with the settings of Catalog's database source that `configure` leaves
/// (its timeout, say).
pub async fn spawn_shop_with(
    certs: &Path,
    url: &str,
    configure: impl FnOnce(&mut DatabaseWatch),
) -> Shop {
    let (identity, anchors) = TlsFiles::in_dir(certs, "discount").load().unwrap();
    let discount =
        spawn_discount_settings(ServerSettings::new(TlsSource::fixed(identity, anchors))).await;
    let mut settings = catalog_settings(
        CatalogOptions::default(),
        vec![target(discount.addr)],
        TlsSource::from_files(reload_settings(certs, "catalog")).unwrap(),
    );
    let url = DatabaseUrl::parse(url, Some(database::DEFAULT_ROLE)).unwrap();
    let mut watch = DatabaseWatch {
        database: Database::new(url, &reload_settings(certs, "catalog")).unwrap(),
        health_interval: HEALTH_INTERVAL,
        max_pending_ids: 100_000,
        max_backoff: Duration::from_millis(500),
        timeout: Duration::from_secs(30),
        max_connection_age: None,
    };
    configure(&mut watch);
    settings.data = DataSource::Database(Box::new(watch));
    let (catalog, data) = run_catalog(settings, Application::data).await;
    Shop {
        discount,
        catalog,
        data,
    }
}

/// `GET /products` from `clients` loops (every other one as customer 1) until `stop`; returns
/// the counters and the tasks, to be joined.
pub fn load_products(
    addr: std::net::SocketAddr,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicU64>, Arc<AtomicU64>, tokio::task::JoinSet<()>) {
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        tasks.spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let mut request = http.get(format!("http://{addr}/products"));
                if client % 2 == 0 {
                    request = request.header("X-USER-ID", "1");
                }
                match request.send().await {
                    Ok(response) if response.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    (ok, failed, tasks)
}
