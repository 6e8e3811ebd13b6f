//! Certificate rotation: Discount and Catalog serving from certificate files in one folder and
//! reloading them when asked ([`RotatingPair`]), and which certificate a file holds or a
//! server presents.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use catalog_service::app::Application;
use catalog_service::balancer::ReplicaSettings;
use discount_service::server::{DiscountServer, ServerSettings};
use mtls::{MtlsConnector, ReloadSettings, Reloadable, TlsFiles, TlsReloader, TlsSource};

use crate::net::{Running, bind_loopback, shutdown_on};
use crate::proxy::{Proxy, spawn_proxy};
use crate::servers::{CatalogOptions, catalog_settings, run_catalog, target};

/// Services that read their certificates from files in one folder (as `gen-certs` writes
/// them) and reload them when asked, for rotation tests.
#[derive(Debug)]
pub struct RotatingPair {
    /// The folder holding the files.
    pub dir: std::path::PathBuf,
    /// Discount, serving from `dir`.
    pub discount: Running,
    /// Catalog, serving from `dir`, reaching Discount through `proxy`.
    pub catalog: Running,
    /// Between Catalog and Discount: counts Catalog's connections.
    pub proxy: Proxy,
    /// Discount's reloader.
    pub discount_tls: Arc<TlsReloader<rustls::ServerConfig>>,
    /// Catalog's reloader.
    pub catalog_tls: Arc<TlsReloader<rustls::ClientConfig>>,
}

fn reload_settings(dir: &std::path::Path, service: &str) -> ReloadSettings {
    ReloadSettings {
        files: TlsFiles::in_dir(dir, service),
        // Tests reload explicitly; the timer never fires during a test.
        interval: Duration::from_secs(3600),
        expiry_warning: Duration::from_secs(60),
    }
}

/// Writes a fresh PKI to `dir` and starts Discount and Catalog on it, watching the files.
pub async fn spawn_rotating_pair(dir: &std::path::Path) -> RotatingPair {
    pki::certs_dir::gen_certs(&pki::certs_dir::GenCerts::new(dir, 1)).unwrap();
    let listener = bind_loopback().await;
    let discount_addr = listener.local_addr().unwrap();
    let source = TlsSource::from_files(reload_settings(dir, "discount")).unwrap();
    let server = DiscountServer::build(ServerSettings::new(source), listener).unwrap();
    let discount_tls = server.tls_reloader();
    let discount = Running::spawn(discount_addr, |stopped| async move {
        server.run_until(shutdown_on(stopped)).await.unwrap();
    });

    let proxy = spawn_proxy(discount_addr).await;
    let settings = catalog_settings(
        CatalogOptions {
            discount_timeout: Duration::from_secs(2),
            replicas: ReplicaSettings {
                // Also how soon a reload reaches the connections.
                health_interval: Duration::from_millis(50),
                ..ReplicaSettings::default()
            },
            ..CatalogOptions::default()
        },
        vec![target(proxy.addr)],
        TlsSource::from_files(reload_settings(dir, "catalog")).unwrap(),
    );
    let (catalog, catalog_tls) = run_catalog(settings, Application::tls_reloader).await;
    RotatingPair {
        dir: dir.to_owned(),
        discount,
        catalog,
        proxy,
        discount_tls,
        catalog_tls,
    }
}

/// The serial number (hex) of the certificate in a PEM file.
pub fn pem_serial(path: &std::path::Path) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(path).unwrap();
    mtls::serial_hex(&der)
}

/// Opens a new mutual-TLS connection to Discount at `addr` with the catalog files in `dir`, and
/// returns the serial number (hex) of the certificate the server presented.
pub async fn server_serial(addr: SocketAddr, dir: &std::path::Path) -> String {
    use tower::Service;
    let (identity, anchors) = TlsFiles::in_dir(dir, "catalog").load().unwrap();
    let config = mtls::client_config(&anchors, Some(&identity), None).unwrap();
    let mut connector = MtlsConnector::new(
        Reloadable::new(config),
        "127.0.0.1",
        addr.port(),
        "localhost",
    )
    .unwrap();
    let io = connector
        .call(
            format!("https://localhost:{}", addr.port())
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    let leaf = io.inner().server_certificates().unwrap()[0].clone();
    mtls::serial_hex(&leaf)
}
