//! The end-to-end test harness: real servers on `127.0.0.1:0`, certificates made in memory by
//! the same code as `cargo xtask gen-certs`, and clients that speak real mutual TLS.
//!
//! Servers are started in process and are ready as soon as the spawn function returns (their
//! listener is bound before it returns), so no test sleeps or polls for readiness.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use catalog_service::app::{Application, Settings};
use catalog_service::catalog::{CatalogData, Customer, Product};
use catalog_service::discount::{DiscountAddr, DiscountSettings};
use catalog_service::replicas::ReplicaSettings;
use discount_service::server::{DiscountServer, ServerSettings};
use ecommerce_proto::pb::discount_client::DiscountClient;
use ecommerce_proto::pb::discount_server::{Discount, DiscountServer as GrpcDiscountServer};
use ecommerce_proto::pb::{
    BatchDiscountRequest, BatchDiscountResponse, DiscountRequest, DiscountResponse,
};
use mtls::{self as tls, Identity, MtlsConnector, TlsFiles, TlsSource, TrustAnchors};
use mtls::{ReloadSettings, Reloadable, TlsReloader};
use pki::{CertificateAuthority, CertifiedKey, ServicePki, Validity};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

pub use pki;

/// A fresh CA with Discount's and Catalog's certificates, valid for a day.
pub fn service_pki() -> ServicePki {
    ServicePki::generate(1).unwrap()
}

/// A second, unrelated CA with its own Discount and Catalog certificates.
pub fn other_pki() -> ServicePki {
    let ca = CertificateAuthority::new("Some Other CA", Validity::days(1)).unwrap();
    ServicePki::from_ca(ca, 1).unwrap()
}

/// Parses a PEM certificate and key into a TLS identity.
pub fn identity(cert: &CertifiedKey) -> Identity {
    Identity::from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap()
}

/// Parses a PEM CA certificate into trust anchors.
pub fn anchors(ca: &CertificateAuthority) -> TrustAnchors {
    TrustAnchors::from_pem(ca.cert_pem().as_bytes()).unwrap()
}

async fn bind_loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A server running in a task, stopped by [`Running::stop`] (or aborted when dropped).
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    fn spawn<F>(addr: SocketAddr, run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Self {
            addr,
            stop: Some(stop),
            task: Some(tokio::spawn(run(stopped))),
        }
    }

    /// Asks the server to shut down gracefully, without waiting for it.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Asks the server to shut down gracefully and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn shutdown_on(stopped: oneshot::Receiver<()>) {
    let _ = stopped.await;
}

/// Starts the real Discount service with `server_cert`, trusting clients from `client_ca`.
pub async fn spawn_discount_with(
    server_cert: &CertifiedKey,
    client_ca: &CertificateAuthority,
) -> Running {
    let listener = bind_loopback().await;
    let addr = listener.local_addr().unwrap();
    let settings = ServerSettings::new(TlsSource::fixed(identity(server_cert), anchors(client_ca)));
    let server = DiscountServer::build(settings, listener).unwrap();
    Running::spawn(addr, |stopped| async move {
        server.run_until(shutdown_on(stopped)).await.unwrap();
    })
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
}

impl Default for CatalogOptions {
    fn default() -> Self {
        Self {
            discount_timeout: Duration::from_millis(500),
            data: CatalogData::embedded_default(),
            replicas: ReplicaSettings::default(),
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
fn catalog_settings(
    options: CatalogOptions,
    discounts: Vec<DiscountAddr>,
    tls: TlsSource,
) -> Settings {
    let (products, customers) = catalog_service::app::in_memory(options.data);
    Settings {
        products,
        customers,
        discount: DiscountSettings {
            addrs: discounts,
            tls_name: Some("localhost".into()),
            timeout: options.discount_timeout,
            replicas: options.replicas,
        },
        tls,
        discount_identity: pki::spiffe_id("discount"),
        drain_timeout: Duration::from_secs(5),
    }
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
    let listener = bind_loopback().await;
    let addr = listener.local_addr().unwrap();
    let settings = catalog_settings(
        options,
        discounts,
        TlsSource::fixed(identity(&pki.catalog), anchors(&pki.ca)),
    );
    let app = Application::build(settings, listener).unwrap();
    Running::spawn(addr, |stopped| async move {
        app.run_until(shutdown_on(stopped)).await.unwrap();
    })
}

/// A gRPC channel to `addr` that trusts `server_ca` and presents `client_cert` (or no
/// certificate at all).
pub fn mtls_channel(
    addr: SocketAddr,
    server_ca: &CertificateAuthority,
    client_cert: Option<&CertifiedKey>,
) -> Channel {
    let client_identity = client_cert.map(identity);
    let config = tls::client_config(&anchors(server_ca), client_identity.as_ref(), None).unwrap();
    let connector = MtlsConnector::new(
        Reloadable::new(config),
        "127.0.0.1",
        addr.port(),
        "localhost",
    )
    .unwrap();
    Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .connect_with_connector_lazy(connector)
}

/// A Discount client over [`mtls_channel`].
pub fn grpc_client(
    addr: SocketAddr,
    server_ca: &CertificateAuthority,
    client_cert: Option<&CertifiedKey>,
) -> DiscountClient<Channel> {
    DiscountClient::new(mtls_channel(addr, server_ca, client_cert))
}

/// A gRPC client for Discount on `addr` that speaks plaintext HTTP/2 (no TLS at all).
pub fn plaintext_grpc_client(addr: SocketAddr) -> DiscountClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    DiscountClient::new(channel)
}

/// A Discount that counts what it is asked, delegating the answers to the real service. With
/// `original_style`, it behaves like a server built from the original proto: `ApplyDiscount`
/// only, `UNIMPLEMENTED` for the batch RPC.
#[derive(Debug, Default, Clone)]
pub struct CountingDiscount {
    /// Answer the batch RPC with `UNIMPLEMENTED`.
    pub original_style: bool,
    /// `ApplyDiscount` calls received.
    pub unary_calls: Arc<AtomicUsize>,
    /// `ApplyDiscountBatch` calls received.
    pub batch_calls: Arc<AtomicUsize>,
    /// Products asked about, over all calls answered.
    pub products_asked: Arc<AtomicUsize>,
    /// The `x-request-id` metadata of every call, in arrival order.
    pub request_ids: Arc<std::sync::Mutex<Vec<String>>>,
    /// When each call arrived, in order.
    pub arrivals: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
    /// Never answer a discount RPC: a replica whose RPCs hang while it still completes TLS,
    /// speaks HTTP/2 and answers health checks (`UNIMPLEMENTED`, which counts as serving).
    pub hang: bool,
}

impl CountingDiscount {
    fn record<T>(&self, request: &Request<T>) {
        let id = request
            .metadata()
            .get("x-request-id")
            .and_then(|id| id.to_str().ok())
            .unwrap_or("")
            .to_owned();
        self.request_ids.lock().unwrap().push(id);
        self.arrivals
            .lock()
            .unwrap()
            .push(tokio::time::Instant::now());
    }

    async fn hang_if_asked(&self) {
        if self.hang {
            std::future::pending::<()>().await;
        }
    }
}

impl CountingDiscount {
    /// A server with only `ApplyDiscount`.
    pub fn original_style() -> Self {
        Self {
            original_style: true,
            ..Self::default()
        }
    }
}

#[tonic::async_trait]
impl Discount for CountingDiscount {
    async fn apply_discount(
        &self,
        request: Request<DiscountRequest>,
    ) -> Result<Response<DiscountResponse>, Status> {
        self.record(&request);
        self.unary_calls.fetch_add(1, Ordering::SeqCst);
        self.hang_if_asked().await;
        self.products_asked.fetch_add(1, Ordering::SeqCst);
        discount_service::service::apply_one(request.into_inner()).map(Response::new)
    }

    async fn apply_discount_batch(
        &self,
        request: Request<BatchDiscountRequest>,
    ) -> Result<Response<BatchDiscountResponse>, Status> {
        self.record(&request);
        self.batch_calls.fetch_add(1, Ordering::SeqCst);
        self.hang_if_asked().await;
        if self.original_style {
            // What a server generated from the original proto answers for an unknown method.
            return Err(Status::unimplemented("unknown method ApplyDiscountBatch"));
        }
        self.products_asked
            .fetch_add(request.get_ref().products.len(), Ordering::SeqCst);
        discount_service::service::apply_batch(request.into_inner()).map(Response::new)
    }
}

/// Starts `service` over the same mutual TLS as the real Discount.
pub async fn spawn_counting_discount(pki: &ServicePki, service: CountingDiscount) -> Running {
    let listener = bind_loopback().await;
    let addr = listener.local_addr().unwrap();
    let config = tls::server_config(&identity(&pki.discount), &anchors(&pki.ca)).unwrap();
    let incoming = tls::tls_incoming(
        listener,
        Reloadable::new(config),
        tls::AcceptSettings::default(),
        std::future::pending(),
    );
    Running::spawn(addr, |stopped| async move {
        tonic::transport::Server::builder()
            .add_service(GrpcDiscountServer::new(service))
            .serve_with_incoming_shutdown(incoming, shutdown_on(stopped))
            .await
            .unwrap();
    })
}

/// A "Discount" that accepts TCP connections and never answers: a hung dependency.
pub async fn spawn_black_hole() -> Running {
    let listener = bind_loopback().await;
    let addr = listener.local_addr().unwrap();
    Running::spawn(addr, |stopped| async move {
        let mut held = Vec::new();
        let mut stopped = std::pin::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => {
                    if let Ok((socket, _)) = accepted {
                        held.push(socket);
                    }
                }
            }
        }
    })
}

/// An address on which nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    bind_loopback().await.local_addr().unwrap()
}

/// A status with its whole source chain, where TLS alerts show up.
pub fn status_chain(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        text.push_str(" <- ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

/// A TCP proxy that counts the connections it accepts (to show how many connections a client
/// really opens) and whose target can be switched (to take a dependency away and bring it back
/// without reusing a port).
#[derive(Debug)]
pub struct Proxy {
    /// Where the proxy listens.
    pub addr: SocketAddr,
    /// Connections accepted so far.
    accepted: tokio::sync::watch::Receiver<usize>,
    /// Connections open now (both sides still connected).
    open: tokio::sync::watch::Receiver<usize>,
    target: Arc<std::sync::Mutex<SocketAddr>>,
    _running: Running,
}

impl Proxy {
    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        *self.open.borrow()
    }

    /// Waits until `n` connections have been accepted in all; panics after `guard`.
    pub async fn wait_for_connections(&self, n: usize, guard: Duration) {
        let mut accepted = self.accepted.clone();
        tokio::time::timeout(guard, accepted.wait_for(|&count| count >= n))
            .await
            .unwrap_or_else(|_| panic!("{} connection(s), never {n}", self.connections()))
            .unwrap();
    }

    /// Waits until at most `n` connections are open; panics after `guard`.
    pub async fn wait_for_open_at_most(&self, n: usize, guard: Duration) {
        let mut open = self.open.clone();
        tokio::time::timeout(guard, open.wait_for(|&count| count <= n))
            .await
            .unwrap_or_else(|_| panic!("{} connection(s) stay open, expected {n}", self.open()))
            .unwrap();
    }

    /// Sends new connections to `target` from now on.
    pub fn set_target(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }
}

/// Starts a [`Proxy`] to `target`.
pub async fn spawn_proxy(target: SocketAddr) -> Proxy {
    let listener = bind_loopback().await;
    let addr = listener.local_addr().unwrap();
    let (accepted_tx, accepted) = tokio::sync::watch::channel(0usize);
    let (open_tx, open) = tokio::sync::watch::channel(0usize);
    let open_tx = Arc::new(open_tx);
    let target = Arc::new(std::sync::Mutex::new(target));
    let current = target.clone();
    let running = Running::spawn(addr, |stopped| async move {
        let mut stopped = std::pin::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => {
                    let Ok((mut inbound, _)) = accepted else { continue };
                    accepted_tx.send_modify(|n| *n += 1);
                    open_tx.send_modify(|n| *n += 1);
                    let target = *current.lock().unwrap();
                    let open_tx = open_tx.clone();
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                        open_tx.send_modify(|n| *n -= 1);
                    });
                }
            }
        }
    });
    Proxy {
        addr,
        accepted,
        open,
        target,
        _running: running,
    }
}

/// Starts the real Discount service with the PKI's certificates, and its plain-HTTP
/// operations port (`/metrics`, `/healthz`, `/readyz`): `(discount, operations)`.
pub async fn spawn_discount_with_ops(pki: &ServicePki) -> (Running, Running) {
    let listener = bind_loopback().await;
    let addr = listener.local_addr().unwrap();
    let settings = ServerSettings::new(TlsSource::fixed(identity(&pki.discount), anchors(&pki.ca)));
    let server = DiscountServer::build(settings, listener).unwrap();
    let serving = server.serving();
    let discount = Running::spawn(addr, |stopped| async move {
        server.run_until(shutdown_on(stopped)).await.unwrap();
    });
    let listener = bind_loopback().await;
    let ops_addr = listener.local_addr().unwrap();
    let ops = Running::spawn(ops_addr, |stopped| async move {
        axum::serve(listener, discount_service::metrics_http::router(serving))
            .with_graceful_shutdown(shutdown_on(stopped))
            .await
            .unwrap();
    });
    (discount, ops)
}

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
    let listener = bind_loopback().await;
    let catalog_addr = listener.local_addr().unwrap();
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
    let app = Application::build(settings, listener).unwrap();
    let catalog_tls = app.tls_reloader();
    let catalog = Running::spawn(catalog_addr, |stopped| async move {
        app.run_until(shutdown_on(stopped)).await.unwrap();
    });
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
    let config = tls::client_config(&anchors, Some(&identity), None).unwrap();
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

/// A real Discount replica in a thread and Tokio runtime of its own, so that it can be killed
/// the way a crashed process dies: the listener and every connection dropped at once, RPCs in
/// flight included, with no health flip and no drain. It counts the RPCs it answers (from its
/// own access log, which only this thread's subscriber sees).
#[derive(Debug)]
pub struct Replica {
    /// Where it listens; a restart listens here again.
    pub addr: SocketAddr,
    settings: ServerSettings,
    answered: Arc<AtomicUsize>,
    kill: Option<oneshot::Sender<()>>,
    dead: Option<oneshot::Receiver<()>>,
}

impl Replica {
    /// Starts a replica with the PKI's Discount certificate on a free loopback port.
    pub async fn start(pki: &ServicePki) -> Self {
        let mut replica = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            settings: ServerSettings::new(TlsSource::fixed(
                identity(&pki.discount),
                anchors(&pki.ca),
            )),
            answered: Arc::new(AtomicUsize::new(0)),
            kill: None,
            dead: None,
        };
        replica.run().await;
        replica
    }

    /// RPCs answered so far (access-log lines), across restarts.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    /// Kills the replica and returns once its sockets are closed.
    pub async fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(dead) = self.dead.take() {
            let _ = dead.await;
        }
    }

    /// Starts the replica again on the same address.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.run().await;
    }

    async fn run(&mut self) {
        let (kill, killed) = oneshot::channel::<()>();
        let (dead, is_dead) = oneshot::channel::<()>();
        let (bound, is_bound) = oneshot::channel::<SocketAddr>();
        let settings = self.settings.clone();
        let wanted = self.addr;
        let answered = self.answered.clone();
        std::thread::spawn(move || {
            use tracing_subscriber::layer::SubscriberExt;
            let _log = tracing::subscriber::set_default(
                tracing_subscriber::registry().with(CountAccessLines(answered)),
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = bind_again(wanted).await;
                let _ = bound.send(listener.local_addr().unwrap());
                let server = DiscountServer::build(settings, listener).unwrap();
                tokio::select! {
                    served = server.run_until(std::future::pending()) => served.unwrap(),
                    _ = killed => {}
                }
            });
            // Dropping the runtime drops every task: the listener and all connections close.
            drop(runtime);
            let _ = dead.send(());
        });
        self.addr = is_bound.await.unwrap();
        self.kill = Some(kill);
        self.dead = Some(is_dead);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

/// Binds `addr`; a port just released may still be held for a moment by a socket on its
/// way out, so that is tried again for a while.
async fn bind_again(addr: SocketAddr) -> TcpListener {
    let mut attempts = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse && attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("cannot listen on {addr} again: {err}"),
        }
    }
}

/// Counts Discount's access-log lines (one per RPC answered).
struct CountAccessLines(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountAccessLines {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "access" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A name resolver whose answer the test sets: DNS for a headless Service, on loopback.
#[derive(Debug, Default)]
pub struct TestResolver {
    answer: std::sync::Mutex<Vec<SocketAddr>>,
}

impl TestResolver {
    /// From now on, every name resolves to `addrs`.
    pub fn set(&self, addrs: &[SocketAddr]) {
        *self.answer.lock().unwrap() = addrs.to_vec();
    }
}

impl catalog_service::replicas::Resolve for TestResolver {
    fn resolve(
        &self,
        _host: &str,
        _port: u16,
    ) -> catalog_service::replicas::BoxFuture<std::io::Result<Vec<SocketAddr>>> {
        let answer = self.answer.lock().unwrap().clone();
        Box::pin(async move { Ok(answer) })
    }
}
