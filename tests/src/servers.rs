//! The real services, in process: Discount and Catalog (pointed at one Discount, several
//! replicas, or names; its operations port, `service_runtime::ops` as the binary starts it, in
//! [`Running::ops_addr`]), each on `127.0.0.1:0` and ready when its spawn function returns (the
//! listeners are bound first), so no test waits for them.

use std::net::SocketAddr;
use std::time::Duration;

use catalog_service::app::{Application, Settings};
use catalog_service::balancer::ReplicaSettings;
use catalog_service::catalog::{CatalogData, Customer, Product};
use catalog_service::discount::{
    CoalesceSettings, DiscountAddr, DiscountGateway, DiscountSettings, FallbackSettings,
};
use catalog_service::server::HttpLimits;
use discount_service::server::{DiscountServer, ServerSettings};
use mtls::TlsSource;
use pki::{CertificateAuthority, CertifiedKey, ServicePki};
use service_runtime::ops::OpsPort;
use service_runtime::otel::Tracer;

use crate::certs::{anchors, identity};
use crate::net::{Running, bind_loopback, shutdown_on};

/// Starts the real Discount service with `server_cert`, trusting clients from `client_ca`.
pub async fn spawn_discount_with(
    server_cert: &CertifiedKey,
    client_ca: &CertificateAuthority,
) -> Running {
    spawn_discount_traced(server_cert, client_ca, Tracer::default()).await
}

/// [`spawn_discount_with`], tracing its RPCs with `tracer`.
pub async fn spawn_discount_traced(
    server_cert: &CertifiedKey,
    client_ca: &CertificateAuthority,
    tracer: Tracer,
) -> Running {
    let settings = ServerSettings {
        tracer,
        ..ServerSettings::new(TlsSource::fixed(identity(server_cert), anchors(client_ca)))
    };
    spawn_discount_settings(settings).await
}

/// Starts the real Discount service with the PKI's certificates and the settings `configure`
/// leaves (its limits, say).
pub async fn spawn_discount_configured(
    pki: &ServicePki,
    configure: impl FnOnce(&mut ServerSettings),
) -> Running {
    let tls = TlsSource::fixed(identity(&pki.discount), anchors(&pki.ca));
    let mut settings = ServerSettings::new(tls);
    configure(&mut settings);
    spawn_discount_settings(settings).await
}

/// Starts the real Discount service with `settings`; [`Running::admission`] is its gate.
pub(crate) async fn spawn_discount_settings(settings: ServerSettings) -> Running {
    let listener = bind_loopback().await;
    let addr = listener.local_addr().unwrap();
    let server = DiscountServer::build(settings, listener).unwrap();
    let admission = server.admission();
    Running::spawn(addr, |stopped| async move {
        server.run_until(shutdown_on(stopped)).await.unwrap();
    })
    .with_admission(admission)
}

/// Starts the real Discount service with the PKI's certificates.
pub async fn spawn_discount(pki: &ServicePki) -> Running {
    spawn_discount_with(&pki.discount, &pki.ca).await
}

/// How the test Catalog is set up.
#[derive(Debug, Clone)]
pub struct CatalogOptions {
    /// Deadline for Discount per request.
    pub discount_timeout: Duration,
    /// Products and customers.
    pub data: CatalogData,
    /// How Discount's replicas are found and health-checked.
    pub replicas: ReplicaSettings,
    /// How concurrent requests share RPCs.
    pub coalescing: CoalesceSettings,
    /// Bounds on per-product calls to an original-style Discount.
    pub fallback: FallbackSettings,
    /// The public HTTP server's limits.
    pub http: HttpLimits,
    /// Where Catalog's spans go (off by default).
    pub tracer: Tracer,
}

impl Default for CatalogOptions {
    fn default() -> Self {
        Self {
            discount_timeout: Duration::from_millis(500),
            data: CatalogData::embedded_default(),
            replicas: ReplicaSettings::default(),
            coalescing: CoalesceSettings::default(),
            fallback: FallbackSettings::default(),
            http: HttpLimits::default(),
            tracer: Tracer::default(),
        }
    }
}

/// `count` products with ids 1..=count and prices that vary (including 0), and SPEC's customers.
pub fn generated_catalog(count: i32) -> CatalogData {
    let products = (1..=count)
        .map(|id| Product {
            id,
            slug: format!("product-{id}"),
            description: format!("Generated product number {id}"),
            price_in_cents: (id * 7919) % 100_000,
        })
        .collect();
    let customer = |id, first: &str, last: &str| Customer {
        id,
        first_name: first.into(),
        last_name: last.into(),
    };
    CatalogData::from_parts(
        products,
        vec![
            customer(1, "John", "Snow"),
            customer(2, "Daenerys", "Targaryen"),
        ],
    )
}

/// Catalog's settings for the tests: Discount's replicas at `discounts` (certificates for
/// `localhost`), the given TLS material, no file watching.
pub(crate) fn catalog_settings(
    options: CatalogOptions,
    discounts: Vec<DiscountAddr>,
    tls: TlsSource,
) -> Settings {
    Settings {
        data: catalog_service::data::DataSource::Fixed(options.data),
        discount: DiscountSettings {
            addrs: discounts,
            tls_name: Some("localhost".into()),
            timeout: options.discount_timeout,
            replicas: options.replicas,
            coalescing: options.coalescing,
            fallback: options.fallback,
        },
        tls,
        discount_identity: pki::spiffe_id("discount"),
        drain_timeout: Duration::from_secs(5),
        http: options.http,
        tracer: options.tracer,
    }
}

/// Builds Catalog with `settings` on a fresh loopback listener and runs it in a task, with its
/// operations port on another ([`Running::ops_addr`]), closed after its drain as in the binary;
/// `inspect` sees the application first.
pub(crate) async fn run_catalog<T>(
    settings: Settings,
    inspect: impl FnOnce(&Application) -> T,
) -> (Running, T) {
    let listener = bind_loopback().await;
    let app = Application::build(settings, listener).unwrap();
    let ops = OpsPort::start("Catalog", Some(bind_loopback().await), app.readiness());
    let seen = inspect(&app);
    let addr = app.local_addr().unwrap();
    let ops_addr = ops.addr().unwrap();
    let admission = app.admission();
    let running = Running::spawn(addr, |stopped| async move {
        app.run_until(shutdown_on(stopped)).await;
        ops.stop().await;
    });
    (running.with_ops(ops_addr).with_admission(admission), seen)
}

/// Starts the real Catalog service pointed at Discount on `discount`, with the PKI's Catalog
/// certificate, trusting Discount certificates from the PKI's CA.
pub async fn spawn_catalog(
    pki: &ServicePki,
    discount: SocketAddr,
    options: CatalogOptions,
) -> Running {
    spawn_catalog_balancing(pki, &[discount], options).await
}

/// Starts the real Catalog service balancing over the Discount replicas at `discounts`.
pub async fn spawn_catalog_balancing(
    pki: &ServicePki,
    discounts: &[SocketAddr],
    options: CatalogOptions,
) -> Running {
    let targets = discounts.iter().map(|addr| target(*addr)).collect();
    spawn_catalog_for(pki, targets, options).await
}

/// `addr` as a `--discount-addr` entry.
pub fn target(addr: SocketAddr) -> DiscountAddr {
    DiscountAddr {
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

/// Starts the real Catalog service with Discount at `discounts`: addresses or names (names
/// are looked up with `options.replicas.resolver`).
pub async fn spawn_catalog_for(
    pki: &ServicePki,
    discounts: Vec<DiscountAddr>,
    options: CatalogOptions,
) -> Running {
    let settings = catalog_settings(
        options,
        discounts,
        TlsSource::fixed(identity(&pki.catalog), anchors(&pki.ca)),
    );
    run_catalog(settings, |_| ()).await.0
}

/// [`spawn_catalog`], also returning Catalog's Discount client, to watch its coalescing queue.
pub async fn spawn_catalog_watched(
    pki: &ServicePki,
    discount: SocketAddr,
    options: CatalogOptions,
) -> (Running, DiscountGateway) {
    let settings = catalog_settings(
        options,
        vec![target(discount)],
        TlsSource::fixed(identity(&pki.catalog), anchors(&pki.ca)),
    );
    run_catalog(settings, Application::discount_gateway).await
}
