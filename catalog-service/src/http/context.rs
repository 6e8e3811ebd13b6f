//! What wraps every request: its id ([`RequestId`]), its server span ([`RequestSpan`], which
//! continues the caller's W3C trace), one access-log line, and the HTTP metrics.

use axum::extract::State;
use axum::http::header::HeaderValue;
use axum::response::Response;
use service_runtime::otel::{KeyValue, Parent, SpanKind, Tracer};
use service_runtime::request_id;

use super::response::DISCOUNT_UNAVAILABLE_HEADER;

/// The id of the request being served (see [`service_runtime::request_id`]).
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// The request's server span, as the parent of the spans its handler starts; absent when
/// there is nothing to trace (tracing off and no `traceparent` to carry through).
#[derive(Debug, Clone)]
pub struct RequestSpan(pub Parent);

/// Gives every request an id (the caller's `X-Request-Id` if it is usable, else a new one),
/// returns it in the response, traces it (a server span continuing the caller's
/// `traceparent`, or a new trace), and writes one log line per request: method, path, status,
/// latency, request id, trace and span ids when traced, and why the discount was skipped if
/// it was.
pub(super) async fn request_context(
    State(tracer): State<Tracer>,
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
    let matched = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let headers = request.headers();
    let mut span = tracer
        .extract(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .start(SpanKind::Server, || {
            let mut attributes = vec![
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("url.path", path.clone()),
                KeyValue::new("url.scheme", "http"),
            ];
            if let Some(agent) = headers.get(axum::http::header::USER_AGENT) {
                let agent = String::from_utf8_lossy(agent.as_bytes()).into_owned();
                attributes.push(KeyValue::new("user_agent.original", agent));
            }
            // Named `{method} {route}`, or the method alone when no route matched.
            let name = match &matched {
                Some(route) => {
                    attributes.push(KeyValue::new("http.route", route.clone()));
                    format!("{method} {route}")
                }
                None => method.to_string(),
            };
            (name.into(), attributes)
        });
    // Only when there is something to record or carry: with tracing off, no allocation.
    let parent = span.parent();
    if !parent.is_none() {
        request.extensions_mut().insert(RequestSpan(parent));
    }
    // The route template (`/products/{id}`), so that metrics have one series per route.
    let route = matched.unwrap_or_else(|| "unmatched".to_owned());
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
    let status = response.status();
    span.set(|| {
        let mut attributes = vec![KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        )];
        if !discount.is_empty() {
            attributes.push(KeyValue::new(
                "catalog.discount.unavailable",
                discount.to_owned(),
            ));
        }
        if status.is_server_error() {
            attributes.push(KeyValue::new("error.type", status.as_str().to_owned()));
        }
        attributes
    });
    if status.is_server_error() {
        span.fail(status.to_string());
    }
    let ids = span.ids();
    tracing::info!(
        target: "access",
        request_id = id.to_str().unwrap_or("-"),
        trace_id = ids.map(|ids| tracing::field::display(ids.trace_id)),
        span_id = ids.map(|ids| tracing::field::display(ids.span_id)),
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
