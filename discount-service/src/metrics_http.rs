//! Discount's plain-HTTP operations port: `GET /metrics` (Prometheus text format) and
//! `GET /healthz` (200 while the process runs).
//!
//! It is off unless `--metrics-listen` is given. The gRPC port admits only mutual-TLS clients
//! from our CA, which a Prometheus scraper or a Kubernetes probe usually is not; this port has
//! no authentication at all, so it is opened only where an operator chooses to put it (typically
//! loopback or the pod's own address, never a public interface).

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use ecommerce_proto::runtime;
use tokio::net::TcpListener;

/// The operations router.
pub fn router() -> Router {
    let handle = runtime::prometheus();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(CONTENT_TYPE, runtime::PROMETHEUS_CONTENT_TYPE)],
                        handle.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { r#"{"status":"ok"}"# }))
}

/// Serves [`router`] on `listener` until the process exits.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "Discount metrics listening (plain HTTP: /metrics, /healthz)");
    }
    axum::serve(listener, router()).await
}
