//! The routes for operators and tools: `/` (up) on the public port; `/healthz` (live),
//! `/readyz` (ready: a Discount replica in rotation, not shutting down) and `/metrics`
//! (Prometheus) on the operations port.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use service_runtime as runtime;

use super::response::json;
use super::state::AppState;

pub(super) async fn root() -> &'static str {
    "Catalog service is working.\n"
}

/// Prometheus metrics of this process.
pub(super) async fn metrics_text() -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(runtime::PROMETHEUS_CONTENT_TYPE),
        )],
        runtime::prometheus().render(),
    )
        .into_response()
}

/// Liveness: the process is up and serving HTTP.
pub(super) async fn healthz() -> Response {
    json(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// Readiness: 200 when Catalog can serve discounted prices, 503 naming what is not ready (no
/// Discount replica in rotation, or shutting down). Read from the balancer's state, which its
/// health checks keep current: no RPC per call, however often it is called.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let mut not_ready = Vec::new();
    if state
        .shutting_down
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        not_ready.push("catalog: shutting down".to_owned());
    }
    if let Err(failure) = state.discounts.ready() {
        not_ready.push(format!("discount: {} ({failure})", failure.reason()));
    }
    if not_ready.is_empty() {
        return json(StatusCode::OK, Bytes::from_static(br#"{"status":"ready"}"#));
    }
    let body = serde_json::json!({ "status": "not_ready", "not_ready": not_ready });
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        Bytes::from(body.to_string()),
    )
}
