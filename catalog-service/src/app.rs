//! [`Application`]: the Catalog service bound to its public HTTP listener, ready to run (the
//! API, within [`HttpLimits`]); and its [`Readiness`], which the operations port
//! (`service_runtime::ops`, started beside it) answers `/readyz` with.
//!
//! Taking a bound listener lets tests bind `127.0.0.1:0` and read the port, and lets `main`
//! report a busy port before anything else starts.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mtls::{TlsReloader, TlsSource};
use service_runtime as runtime;
use tokio::net::TcpListener;

use crate::data::{Data, DataSource};
use crate::discount::{ClientError, DiscountGateway, DiscountSettings};
use crate::http::{AppState, router};
use crate::server::{self, HttpLimits};

/// Everything Catalog needs, already loaded and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the catalog (products and customers) comes from.
    pub data: DataSource,
    /// How to reach Discount.
    pub discount: DiscountSettings,
    /// Catalog's client certificate and key, shown to Discount, and the CA(s) Discount's
    /// certificate must chain to: in memory, or files that are reloaded when they change.
    pub tls: TlsSource,
    /// The URI SAN Discount's certificate must carry (not merely any certificate from the CA).
    pub discount_identity: String,
    /// After shutdown is requested, how long in-flight requests may take.
    pub drain_timeout: Duration,
    /// The public HTTP server's limits.
    pub http: HttpLimits,
    /// Starts the spans of each request (off by default; see [`runtime::otel`]).
    pub tracer: runtime::otel::Tracer,
}

/// The Catalog service, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    admission: admission::Gate,
    drain_timeout: Duration,
    shutting_down: Arc<AtomicBool>,
    reloader: Arc<TlsReloader<rustls::ClientConfig>>,
    discounts: DiscountGateway,
    data: Data,
}

/// The gauge of the certificate's expiry time, labelled `service`.
pub const CERTIFICATE_EXPIRY_METRIC: &str = runtime::metrics::CERTIFICATE_EXPIRY_METRIC;

impl Application {
    /// Builds the TLS client configuration and the (lazy) Discount channel, to serve the API
    /// on `listener`. Does not wait for Discount: Catalog serves full prices until it is
    /// reachable. Needs a Tokio runtime.
    pub fn build(settings: Settings, listener: TcpListener) -> Result<Self, ClientError> {
        crate::metric_descriptions::describe_metrics();
        let discount_identity = settings.discount_identity.clone();
        let build = move |identity: &mtls::Identity, ca: &mtls::TrustAnchors| {
            mtls::client_config(ca, Some(identity), Some(&discount_identity))
        };
        let reloader =
            TlsReloader::start("catalog", settings.tls, CERTIFICATE_EXPIRY_METRIC, build)?;
        reloader.spawn();
        let client_tls = reloader.config();
        runtime::prometheus();
        let discounts = DiscountGateway::connect_lazy(&settings.discount, client_tls)?;
        let addrs: Vec<String> = settings
            .discount
            .addrs
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::info!(
            discount = %addrs.join(","),
            timeout = ?settings.discount.timeout,
            "Discount client ready (mutual TLS 1.3, balanced over the replicas, connects on first use)"
        );
        let shutting_down = Arc::new(AtomicBool::new(false));
        let data = settings.data.start();
        let state = AppState {
            data: data.clone(),
            discounts: discounts.clone(),
            tracer: settings.tracer,
        };
        Ok(Self {
            listener,
            router: router(state, settings.http.max_concurrent_requests),
            limits: settings.http,
            admission: settings.http.gate(),
            drain_timeout: settings.drain_timeout,
            shutting_down,
            reloader,
            discounts,
            data,
        })
    }

    /// The catalog the handlers serve, and what its source last said.
    pub fn data(&self) -> Data {
        self.data.clone()
    }

    /// The certificate reloader (it reloads only material that came from files).
    pub fn tls_reloader(&self) -> Arc<TlsReloader<rustls::ClientConfig>> {
        self.reloader.clone()
    }

    /// The gate admitting connections to the public port: its limits, and what it has done.
    pub fn admission(&self) -> admission::Gate {
        self.admission.clone()
    }

    /// The Discount client its handlers use (shared: it sees their coalescing queue).
    pub fn discount_gateway(&self) -> DiscountGateway {
        self.discounts.clone()
    }

    /// The address Catalog listens on (useful when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Catalog's readiness, for the operations port's `/readyz`.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            shutting_down: self.shutting_down.clone(),
            discounts: self.discounts.clone(),
            data: self.data.clone(),
        }
    }

    /// Serves HTTP until `shutdown` completes, then stops accepting connections on the public
    /// port and lets in-flight requests finish, for at most the drain timeout. [`Readiness`]
    /// says "shutting down" from the moment `shutdown` completes: an operations port stopped
    /// after this returns answers `/readyz` 503 all through the drain.
    pub async fn run_until<F>(self, shutdown: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if let Ok(addr) = self.listener.local_addr() {
            let limits = self.limits;
            tracing::info!(
                %addr,
                max_connections = limits.max_connections,
                max_unproven_connections = limits.max_unproven,
                header_timeout = ?limits.header_timeout,
                idle_timeout = ?limits.idle_timeout,
                max_concurrent_requests = limits.max_concurrent_requests,
                "Catalog listening (HTTP)"
            );
        }
        let shutting_down = self.shutting_down;
        let shutdown = async move {
            shutdown.await;
            shutting_down.store(true, Ordering::Relaxed);
            tracing::info!("shutting down: no new connections, draining in-flight requests");
        };
        runtime::serve_with_drain(shutdown, self.drain_timeout, |signal| {
            server::serve(
                self.listener,
                self.router,
                self.limits,
                self.admission,
                signal,
            )
        })
        .await;
        tracing::info!("Catalog stopped");
    }
}

/// Whether Catalog can serve its catalog at discounted prices: not while it shuts down, nor
/// before its first catalog snapshot, nor while no Discount replica is in rotation. Read from
/// state its sources and the balancer's health checks keep current: no I/O per call, however
/// often it is asked.
#[derive(Debug, Clone)]
pub struct Readiness {
    shutting_down: Arc<AtomicBool>,
    discounts: DiscountGateway,
    data: Data,
}

impl runtime::ops::Readiness for Readiness {
    fn not_ready(&self) -> Vec<String> {
        let mut not_ready = Vec::new();
        if self.shutting_down.load(Ordering::Relaxed) {
            not_ready.push("catalog: shutting down".to_owned());
        }
        if let Some(why) = self.data.not_ready() {
            not_ready.push(format!("data: no catalog yet ({why})"));
        }
        if let Err(failure) = self.discounts.ready() {
            not_ready.push(format!("discount: {} ({failure})", failure.reason()));
        }
        not_ready
    }
}
