//! Discount's plain-HTTP operations port: `GET /metrics` (Prometheus text format),
//! `GET /healthz` (200 while the process runs) and `GET /readyz` (200 while Discount accepts
//! RPCs, 503 from the moment shutdown starts: what a Kubernetes readiness probe wants, since
//! kubelet probes cannot present a client certificate to the gRPC port).
//!
//! It is off unless `--metrics-listen` is given. The gRPC port admits only mutual-TLS clients
//! from our CA, which a Prometheus scraper or a Kubernetes probe usually is not; this port has
//! no authentication at all, so it is opened only where an operator chooses to put it (typically
//! loopback or the pod's own address, never a public interface).

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use service_runtime as runtime;
use tokio::net::TcpListener;

use crate::server::Serving;

/// The operations router; `/readyz` follows `serving`.
pub fn router(serving: Serving) -> Router {
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
        .route(
            "/readyz",
            get(move || async move {
                if serving.is_serving() {
                    (StatusCode::OK, r#"{"status":"ready"}"#)
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        r#"{"status":"not_ready","not_ready":["discount: not serving (starting or shutting down)"]}"#,
                    )
                }
            }),
        )
}

/// Serves [`router`] on `listener` until the process exits.
pub async fn serve(listener: TcpListener, serving: Serving) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            "Discount operations port listening (plain HTTP: /metrics, /healthz, /readyz)"
        );
    }
    axum::serve(listener, router(serving)).await
}
