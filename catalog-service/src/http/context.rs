//! What wraps every request: its id ([`RequestId`]), one access-log line, and the HTTP
//! metrics.

use axum::http::header::HeaderValue;
use axum::response::Response;
use service_runtime::request_id;

use super::response::DISCOUNT_UNAVAILABLE_HEADER;

/// The id of the request being served (see [`service_runtime::request_id`]).
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// Gives every request an id (the caller's `X-Request-Id` if it is usable, else a new one),
/// returns it in the response, and writes one log line per request: method, path, status,
/// latency, request id, and why the discount was skipped if it was.
pub(super) async fn request_context(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let id = request
        .headers()
        .get(request_id::HEADER)
        .filter(|id| request_id::is_acceptable(id.as_bytes()))
        .cloned()
        .or_else(|| HeaderValue::from_str(&request_id::generate()).ok())
        .unwrap_or_else(|| HeaderValue::from_static("-"));
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // The route template (`/products/{id}`), so that metrics have one series per route.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let mut response = next.run(request).await;
    let elapsed = started.elapsed();
    metrics::counter!(
        "catalog_http_requests_total",
        "route" => route.clone(),
        "status" => response.status().as_str().to_owned()
    )
    .increment(1);
    metrics::histogram!("catalog_http_request_duration_seconds", "route" => route)
        .record(elapsed.as_secs_f64());
    let discount = response
        .headers()
        .get(DISCOUNT_UNAVAILABLE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info!(
        target: "access",
        request_id = id.to_str().unwrap_or("-"),
        %method,
        path,
        status = response.status().as_u16(),
        latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        discount_unavailable = discount,
        "http request"
    );
    response.headers_mut().insert(request_id::HEADER, id);
    response
}
