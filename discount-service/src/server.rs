//! Serving the Discount handlers over mutual TLS on a listener the caller has bound.
//!
//! Taking a bound listener (rather than an address) lets tests bind `127.0.0.1:0` and read the
//! port, and lets `main` report a busy port before anything else starts.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ecommerce_proto::pb::{self, discount_server::DiscountServer as DiscountGrpcServer};
use mtls::{AcceptSettings, Reloadable, TlsError, TlsReloader, TlsSource};
use service_runtime as runtime;
use tokio::net::TcpListener;

use crate::authz::AllowList;
use crate::limits::{
    DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_MESSAGE_BYTES, OversizedAsExhaustedLayer,
};
pub use crate::metric_descriptions::{
    CONNECTIONS_DROPPED_METRIC, CONNECTIONS_OPEN_METRIC, HANDSHAKE_FAILURES_METRIC,
};
use crate::service::DiscountService;

/// Everything the server needs, already loaded and validated.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The server's certificate chain and key, and the CA(s) a client certificate must chain
    /// to: in memory, or files that are reloaded when they change.
    pub tls: TlsSource,
    /// How long a client may take to complete the TLS handshake, from its connection's
    /// acceptance (the admission gate's deadline for unproven connections).
    pub handshake_timeout: Duration,
    /// After shutdown is requested, how long in-flight RPCs may take before the server stops
    /// anyway.
    pub drain_timeout: Duration,
    /// Which caller identities may call which RPC.
    pub allow: AllowList,
    /// Connections open at once, handshakes in progress included. When all are taken, a new
    /// connection takes the place of the oldest one still in its handshake; only when every
    /// one has completed its handshake is the new one closed before it (see the `admission`
    /// crate; counted in [`CONNECTIONS_DROPPED_METRIC`] by reason).
    pub max_connections: usize,
    /// Connections in their handshake at once; past it, a new connection takes the place of
    /// the oldest of them.
    pub max_unproven_connections: usize,
    /// HTTP/2 streams (RPCs in progress) per connection, advertised to clients
    /// (SETTINGS_MAX_CONCURRENT_STREAMS): a stock client queues calls beyond it on its side; a
    /// stream opened beyond it anyway is refused (REFUSED_STREAM, which clients surface as
    /// UNAVAILABLE).
    pub max_concurrent_streams: u32,
    /// The largest request message, in bytes; a larger one is answered `RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
    /// Starts each RPC's server span (off by default; see [`service_runtime::otel`]).
    pub tracer: service_runtime::otel::Tracer,
}

impl ServerSettings {
    /// Settings with the default timeouts and limits.
    pub fn new(tls: TlsSource) -> Self {
        Self {
            tls,
            handshake_timeout: admission::DEFAULT_UNPROVEN_TIMEOUT,
            drain_timeout: Duration::from_secs(10),
            allow: AllowList::default(),
            max_connections: admission::DEFAULT_MAX_CONNECTIONS,
            max_unproven_connections: admission::DEFAULT_MAX_UNPROVEN,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            tracer: service_runtime::otel::Tracer::default(),
        }
    }

    /// The rules connections are admitted by: the caps, and the handshake timeout as the
    /// deadline for a connection to prove itself.
    pub fn connection_limits(&self) -> admission::Limits {
        admission::Limits {
            max_connections: self.max_connections,
            max_unproven: self.max_unproven_connections,
            unproven_timeout: self.handshake_timeout,
        }
    }
}

/// Whether Discount accepts RPCs: from when it starts serving until shutdown starts. The
/// same moments its gRPC health turns SERVING and NOT_SERVING. Its readiness on the operations
/// port: not ready outside those moments.
#[derive(Debug, Clone, Default)]
pub struct Serving(Arc<AtomicBool>);

/// Why Discount is not ready while it does not accept RPCs.
pub const NOT_SERVING: &str = "discount: not serving (starting or shutting down)";

impl runtime::ops::Readiness for Serving {
    fn not_ready(&self) -> Vec<String> {
        if self.is_serving() {
            Vec::new()
        } else {
            vec![NOT_SERVING.to_owned()]
        }
    }
}

impl Serving {
    /// True while RPCs are accepted.
    pub fn is_serving(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, serving: bool) {
        self.0.store(serving, Ordering::Relaxed);
    }
}

/// A Discount server bound to a listener, ready to run.
#[derive(Debug)]
pub struct DiscountServer {
    listener: TcpListener,
    admission: admission::Gate,
    serving: Serving,
    tls: Arc<Reloadable<rustls::ServerConfig>>,
    reloader: Arc<TlsReloader<rustls::ServerConfig>>,
    settings: ServerSettings,
}

/// The gauge of the certificate's expiry time, labelled `service`.
pub const CERTIFICATE_EXPIRY_METRIC: &str = runtime::metrics::CERTIFICATE_EXPIRY_METRIC;

impl DiscountServer {
    /// Builds the TLS configuration (mutual, TLS 1.3 only) for `listener`.
    pub fn build(settings: ServerSettings, listener: TcpListener) -> Result<Self, TlsError> {
        crate::metric_descriptions::describe_metrics();
        let reloader = TlsReloader::start(
            "discount",
            settings.tls.clone(),
            CERTIFICATE_EXPIRY_METRIC,
            mtls::server_config,
        )?;
        let tls = reloader.config();
        // RPC and handshake metrics go to the process's registry from the first connection on.
        runtime::prometheus();
        let admission = admission::Gate::new(
            settings.connection_limits(),
            admission::MetricNames {
                open: Some(CONNECTIONS_OPEN_METRIC),
                dropped: Some(CONNECTIONS_DROPPED_METRIC),
            },
        );
        Ok(Self {
            listener,
            admission,
            serving: Serving::default(),
            tls,
            reloader,
            settings,
        })
    }

    /// Follows whether this server accepts RPCs (for the operations port's `/readyz`).
    pub fn serving(&self) -> Serving {
        self.serving.clone()
    }

    /// The gate admitting connections: its limits, and what it has done so far.
    pub fn admission(&self) -> admission::Gate {
        self.admission.clone()
    }

    /// The certificate reloader (it reloads only material that came from files).
    pub fn tls_reloader(&self) -> Arc<TlsReloader<rustls::ServerConfig>> {
        self.reloader.clone()
    }

    /// The address the server listens on (useful when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting connections and lets in-flight
    /// RPCs finish, for at most the drain timeout.
    pub async fn run_until<F>(self, shutdown: F) -> Result<(), tonic::transport::Error>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Self {
            listener,
            admission,
            serving,
            tls,
            reloader,
            settings,
        } = self;
        reloader.spawn();
        let addr = listener.local_addr();
        let limits = admission.limits();
        // Closes the listener when shutdown starts (tonic keeps the stream of connections
        // until every open one has drained, so it cannot be the trigger).
        let (stop_accepting, stopped_accepting) = tokio::sync::oneshot::channel::<()>();
        let accept = AcceptSettings {
            gate: admission,
            failure_counter: Some(HANDSHAKE_FAILURES_METRIC),
        };
        let incoming = mtls::tls_incoming(listener, tls, accept, async move {
            let _ = stopped_accepting.await;
        });
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<DiscountGrpcServer<DiscountService>>()
            .await;
        serving.set(true);
        // Logged once ready: whoever waits for this line finds `/readyz` answering 200.
        if let Ok(addr) = addr {
            tracing::info!(
                %addr,
                max_connections = limits.max_connections,
                max_unproven_connections = limits.max_unproven,
                handshake_timeout = ?limits.unproven_timeout,
                "Discount listening (gRPC over mutual TLS 1.3)"
            );
        }
        // Reflection in both versions: v1, and v1alpha, which many stock clients still speak
        // (Python's grpcio-reflection, older grpcurl, Postman, grpcui).
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let no_reflection = |err: tonic_reflection::server::Error| {
            tracing::error!(%err, "cannot build the reflection service; serving without it");
        };
        let reflection_v1 = reflection().build_v1().map_err(no_reflection).ok();
        let reflection_v1alpha = reflection().build_v1alpha().map_err(no_reflection).ok();
        let router = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            // Without it tonic advertises no limit at all (hyper's default of 200 is overridden).
            .max_concurrent_streams(settings.max_concurrent_streams)
            .layer(OversizedAsExhaustedLayer)
            .add_service(
                DiscountService::new(settings.allow.clone())
                    .traced(settings.tracer.clone())
                    .into_server(settings.max_message_bytes),
            )
            .add_service(health_service)
            .add_optional_service(reflection_v1)
            .add_optional_service(reflection_v1alpha);
        // Health turns NOT_SERVING the moment shutdown starts, so that clients still connected
        // during the drain see it and move away.
        let shutdown = async move {
            shutdown.await;
            let _ = stop_accepting.send(());
            serving.set(false);
            health
                .set_not_serving::<DiscountGrpcServer<DiscountService>>()
                .await;
            tracing::info!("shutting down: health is NOT_SERVING, draining in-flight RPCs");
        };
        let served = runtime::serve_with_drain(shutdown, settings.drain_timeout, |signal| {
            router.serve_with_incoming_shutdown(incoming, signal)
        })
        .await;
        tracing::info!("Discount stopped");
        served.unwrap_or(Ok(()))
    }
}
