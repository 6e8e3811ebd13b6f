//! The routes for operators and tools: `/` (up), `/healthz` (live), `/readyz` (ready:
//! Discount answers, not shutting down) and `/metrics` (Prometheus).

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
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", content_type = "application/json")))]
pub(crate) async fn healthz() -> Response {
    json(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// Readiness: 200 when Catalog can serve discounted prices, 503 naming what is not ready
/// (Discount unreachable or not serving, or shutting down).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready: Discount answers and reports SERVING", content_type = "application/json"),
        (status = 503, description = "Not ready; `not_ready` lists what (Discount, or shutting down)", content_type = "application/json"),
    ))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let mut not_ready = Vec::new();
    if state
        .shutting_down
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        not_ready.push("catalog: shutting down".to_owned());
    }
    if let Err(failure) = state.discounts.ready().await {
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
