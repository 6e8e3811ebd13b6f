//! The HTTP API: routes, the `X-USER-ID` extractor, and error responses.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /` | 200, plain text: the service is up |
//! | `GET /products?limit=&cursor=` | 200, JSON array of one page of products, discounted for the caller named by `X-USER-ID`; `Link: <...>; rel="next"` when more follow |
//! | `GET /products/{id}` | 200, one product, discounted likewise; 404 if there is no such product |
//!
//! A bad `X-USER-ID` is a 400 with a JSON body `{"error": "...", "message": "..."}`. When
//! Discount cannot be asked (down, slow, refusing), the products come at full price with the
//! header [`DISCOUNT_UNAVAILABLE_HEADER`] naming the reason: never a 5xx, never a missing product.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, FromRequestParts, Path, Query, State};
use axum::http::header::{CONTENT_TYPE, HeaderValue, LINK};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use service_runtime::{self as runtime, request_id};

use crate::catalog::{Customers, DiscountView, PriceTag};
use crate::discount::DiscountGateway;
use crate::openapi::{ErrorDoc, ProductDoc};
use crate::store::{ProductStore, StoreError, StoredProduct, render_json};

/// The request header that names the customer.
pub const USER_ID_HEADER: &str = "x-user-id";

/// Set on a response whose prices are full because the discount could not be applied; the
/// value is the reason (`unavailable`, `deadline-exceeded`, `rejected`, `bad-response`).
pub const DISCOUNT_UNAVAILABLE_HEADER: &str = "x-discount-unavailable";

/// Products per page when `limit` is not given.
pub const DEFAULT_PAGE_LIMIT: usize = 100;

/// The largest `limit` accepted.
pub const MAX_PAGE_LIMIT: usize = 1000;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Where products live.
    pub products: Arc<dyn ProductStore>,
    /// The customers Catalog knows.
    pub customers: Arc<Customers>,
    /// The Discount client.
    pub discounts: DiscountGateway,
    /// Set when shutdown starts: readiness then fails so that load balancers move away.
    pub shutting_down: Arc<std::sync::atomic::AtomicBool>,
}

/// Builds the router. Tests drive it directly or over a socket.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .route("/products", get(list_products))
        .route("/products/{id}", get(one_product))
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn(request_context))
}

/// The id of the request being served (see [`service_runtime::request_id`]).
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// Gives every request an id (the caller's `X-Request-Id` if it is usable, else a new one),
/// returns it in the response, and writes one log line per request: method, path, status,
/// latency, request id, and why the discount was skipped if it was.
async fn request_context(
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

async fn root() -> &'static str {
    "Catalog service is working.\n"
}

async fn openapi_json() -> Response {
    json(StatusCode::OK, crate::openapi::json())
}

/// Prometheus metrics of this process.
async fn metrics_text() -> Response {
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

/// The products, one page at a time, discounted for the caller.
#[utoipa::path(get, path = "/products", tag = "products",
    params(
        ("X-USER-ID" = Option<String>, Header,
            description = "The customer: a whole number from 1 to 2147483647. Absent: full prices."),
        ("X-Request-Id" = Option<String>, Header,
            description = "Correlation id (1-128 visible ASCII characters); made up if absent or unusable."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000,
            description = "Products per page (default 100, at most 1000)."),
        ("cursor" = Option<String>, Query,
            description = "Where the page starts: copy it from the previous page's `Link` header."),
    ),
    responses(
        (status = 200, description = "One page of products, in ascending id order", body = [ProductDoc],
            headers(
                ("link" = String, description = "RFC 8288 link to the next page (`rel=\"next\"`), when there is one"),
                ("x-discount-unavailable" = String, description = "Present when the discount could not be applied and prices are full: `unavailable`, `deadline-exceeded`, `rejected` or `bad-response`"),
                ("x-request-id" = String, description = "The request's correlation id"),
            )),
        (status = 400, description = "Bad `X-USER-ID`, `limit` or `cursor`", body = ErrorDoc),
    ))]
pub(crate) async fn list_products(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    CustomerId(customer): CustomerId,
    page: PageRequest,
) -> Result<Response, ApiError> {
    let page_products = state.products.page(page.after, page.limit).await?;
    let mut response = priced(
        &state,
        &request_id,
        customer,
        &page_products.products,
        false,
    )
    .await;
    if let Some(after) = page_products.next_after {
        let link = format!(
            "</products?limit={}&cursor={}>; rel=\"next\"",
            page.limit,
            encode_cursor(after)
        );
        // Digits, letters and punctuation only: always a valid header value.
        if let Ok(link) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(LINK, link);
        }
    }
    Ok(response)
}

/// One product, discounted for the caller.
#[utoipa::path(get, path = "/products/{id}", tag = "products",
    params(
        ("id" = i32, Path, minimum = 1, description = "Product id"),
        ("X-USER-ID" = Option<String>, Header,
            description = "The customer: a whole number from 1 to 2147483647. Absent: full price."),
    ),
    responses(
        (status = 200, description = "The product", body = ProductDoc,
            headers(
                ("x-discount-unavailable" = String, description = "Present when the discount could not be applied"),
                ("x-request-id" = String, description = "The request's correlation id"),
            )),
        (status = 400, description = "Bad id or `X-USER-ID`", body = ErrorDoc),
        (status = 404, description = "No such product", body = ErrorDoc),
    ))]
pub(crate) async fn one_product(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    CustomerId(customer): CustomerId,
) -> Result<Response, ApiError> {
    let id = parse_positive_id(&id).ok_or(ApiError::InvalidProductId)?;
    let product = state
        .products
        .product(id)
        .await?
        .ok_or(ApiError::NoSuchProduct(id))?;
    Ok(priced(&state, &request_id, customer, &[product], true).await)
}

/// Renders `products` for the caller: full prices unless Catalog knows the customer and
/// Discount answers in time. `single` renders the one product as an object, not an array.
async fn priced(
    state: &AppState,
    request_id: &RequestId,
    customer: Option<i32>,
    products: &[Arc<StoredProduct>],
    single: bool,
) -> Response {
    let render = |discounts: Option<&[Option<DiscountView>]>| -> Bytes {
        match (single, products.first()) {
            (true, Some(product)) => {
                let mut out = Vec::with_capacity(256);
                product.write_json(
                    &mut out,
                    discounts.and_then(|d| d.first().copied().flatten()),
                );
                Bytes::from(out)
            }
            _ => render_json(products, discounts),
        }
    };
    let Some(id) = customer else {
        return json(StatusCode::OK, render(None));
    };
    let Some(customer) = state.customers.get(id) else {
        tracing::debug!(customer = id, "unknown customer: full prices");
        return json(StatusCode::OK, render(None));
    };
    let asked: Vec<PriceTag> = products.iter().map(|p| p.price_tag()).collect();
    let outcome = state
        .discounts
        .discounts(customer, &asked, &request_id.0)
        .await;
    let label = outcome
        .as_ref()
        .map_or_else(|failure| failure.reason(), |_| "ok");
    metrics::counter!("catalog_discount_calls_total", "outcome" => label).increment(1);
    match outcome {
        Ok(discounts) => json(StatusCode::OK, render(Some(&discounts))),
        Err(failure) => {
            tracing::warn!(
                request_id = request_id.0.to_str().unwrap_or("-"),
                customer = id,
                reason = failure.reason(),
                "serving full prices: {failure}"
            );
            let mut response = json(StatusCode::OK, render(None));
            response.headers_mut().insert(
                DISCOUNT_UNAVAILABLE_HEADER,
                HeaderValue::from_static(failure.reason()),
            );
            response
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

fn json(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// The caller's customer id from `X-USER-ID`: `None` when the header is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerId(pub Option<i32>);

impl<S: Send + Sync> FromRequestParts<S> for CustomerId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_customer_id(&parts.headers).map(CustomerId)
    }
}

/// Reads `X-USER-ID`: absent, or exactly one positive decimal integer that fits an `int32`
/// (the type of `Customer.id` on the wire). Anything else is refused rather than guessed at.
pub fn parse_customer_id(headers: &HeaderMap) -> Result<Option<i32>, ApiError> {
    let mut values = headers.get_all(USER_ID_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::InvalidUserId(
            "X-USER-ID must be sent at most once",
        ));
    }
    let text = value
        .to_str()
        .map_err(|_| ApiError::InvalidUserId("X-USER-ID must be plain ASCII"))?
        .trim();
    if text.is_empty() {
        return Err(ApiError::InvalidUserId("X-USER-ID is empty"));
    }
    parse_positive_id(text)
        .map(Some)
        .ok_or(ApiError::InvalidUserId(
            "X-USER-ID must be a customer id: a whole number from 1 to 2147483647",
        ))
}

/// A positive `int32` written in plain decimal digits (no sign, no spaces, no exponent).
fn parse_positive_id(text: &str) -> Option<i32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i32>().ok().filter(|id| *id > 0)
}

/// Which page of products to list, from `?limit=` and `?cursor=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Products per page (1 to [`MAX_PAGE_LIMIT`]).
    pub limit: usize,
    /// List products with ids after this one (from the cursor).
    pub after: Option<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for PageRequest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(raw) = Query::<RawPageQuery>::from_request_parts(parts, state)
            .await
            .map_err(|err: QueryRejection| ApiError::InvalidQuery(err.body_text()))?;
        let limit = match raw.limit.as_deref() {
            None => DEFAULT_PAGE_LIMIT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|limit| (1..=MAX_PAGE_LIMIT).contains(limit))
                .ok_or_else(|| {
                    ApiError::InvalidQuery(format!(
                        "limit must be a whole number from 1 to {MAX_PAGE_LIMIT}"
                    ))
                })?,
        };
        let after = match raw.cursor.as_deref() {
            None => None,
            Some(cursor) => Some(decode_cursor(cursor).ok_or_else(|| {
                ApiError::InvalidQuery(
                    "cursor is not one this service issued: use the Link header of the previous page"
                        .into(),
                )
            })?),
        };
        Ok(Self { limit, after })
    }
}

/// Cursors are opaque to clients; today they carry the last id of the previous page, with a
/// version prefix so the format can change without misreading old cursors.
const CURSOR_PREFIX: &str = "v1.";

fn encode_cursor(after: i32) -> String {
    format!("{CURSOR_PREFIX}{after}")
}

fn decode_cursor(cursor: &str) -> Option<i32> {
    cursor
        .strip_prefix(CURSOR_PREFIX)
        .and_then(parse_positive_id)
}

/// An error answered to the client. The message says what was wrong with the request; nothing
/// internal is ever put in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidUserId(&'static str),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("product id must be a whole number from 1 to 2147483647")]
    InvalidProductId,
    #[error("no product with id {0}")]
    NoSuchProduct(i32),
    #[error("no such resource")]
    NotFound,
    /// The product store failed. The cause goes to the log, not to the client.
    #[error("the product store is unavailable")]
    Store(String),
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::Store(err.to_string())
    }
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidUserId(_) => (StatusCode::BAD_REQUEST, "invalid_user_id"),
            ApiError::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            ApiError::InvalidProductId => (StatusCode::BAD_REQUEST, "invalid_product_id"),
            ApiError::NoSuchProduct(_) | ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            ApiError::Store(cause) => tracing::error!("product store failed: {cause}"),
            ApiError::NotFound | ApiError::NoSuchProduct(_) => {}
            _ => tracing::info!(status = status.as_u16(), "rejected request: {self}"),
        }
        let body = serde_json::json!({ "error": code, "message": self.to_string() });
        json(status, Bytes::from(body.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(USER_ID_HEADER, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    #[test]
    fn absent_header_means_no_customer() {
        assert_eq!(parse_customer_id(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn positive_ids_are_accepted() {
        assert_eq!(parse_customer_id(&headers(&[b"1"])), Ok(Some(1)));
        assert_eq!(
            parse_customer_id(&headers(&[b"2147483647"])),
            Ok(Some(i32::MAX))
        );
        assert_eq!(parse_customer_id(&headers(&[b"007"])), Ok(Some(7)));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            &b"abc"[..],
            b"-5",
            b"-1",
            b"0",
            b"1.5",
            b"1.0",
            b"",
            b"+1",
            b"1e3",
            b"0x10",
            b"2147483648",
            b"1234567890123456789012345678901234567890",
            b"\xff",
        ] {
            assert!(
                matches!(
                    parse_customer_id(&headers(&[bad])),
                    Err(ApiError::InvalidUserId(_))
                ),
                "{:?} was accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        for foreign in [
            "",
            "42",
            "v1.",
            "v1.-3",
            "v1.0",
            "v2.42",
            "v1.4x",
            "v1.99999999999",
        ] {
            assert_eq!(decode_cursor(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn repeated_header_is_refused() {
        assert!(parse_customer_id(&headers(&[b"1", b"2"])).is_err());
    }
}
