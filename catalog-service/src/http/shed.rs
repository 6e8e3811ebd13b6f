//! Load shedding: at most `--http-max-concurrent-requests` requests in progress at once. A
//! request beyond it is not queued: it is answered at once with 503, `Retry-After` and a JSON
//! error body, counted in `catalog_http_requests_shed_total`. Fast refusals under overload
//! keep the answers that are given fast, and tell clients and load balancers to go elsewhere.
//!
//! The limit is tower's global concurrency limit under its load shedder, layered in the router
//! (`http`); here is what a shed request gets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::BoxError;
use axum::response::{IntoResponse, Response};

use super::response::ApiError;

/// The most one warning line per this long about requests being shed.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// The answer to a request the limit turned away (the shedder's error), or to anything else
/// that failed in the layers (never seen: the routes do not fail).
pub(super) async fn overloaded(err: BoxError, max: usize) -> Response {
    if !err.is::<tower::load_shed::error::Overloaded>() {
        tracing::error!(%err, "request failed in the load-shedding layers");
    }
    metrics::counter!("catalog_http_requests_shed_total").increment(1);
    warn_now_and_then(max);
    ApiError::Overloaded.into_response()
}

/// Logs that requests are being shed, at most once per [`WARN_EVERY`], with how many were
/// shed since the last line: under overload a line per request would add to it.
fn warn_now_and_then(max: usize) {
    static SHED: AtomicU64 = AtomicU64::new(0);
    static LAST_WARNED_SECS: AtomicU64 = AtomicU64::new(0);
    SHED.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let last = LAST_WARNED_SECS.load(Ordering::Relaxed);
    if now >= last + WARN_EVERY.as_secs()
        && LAST_WARNED_SECS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let shed = SHED.swap(0, Ordering::Relaxed);
        tracing::warn!(
            max,
            shed,
            "too many requests in progress (--http-max-concurrent-requests): answering 503"
        );
    }
}
