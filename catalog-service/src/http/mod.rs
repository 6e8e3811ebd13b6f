//! The HTTP API: routes, the `X-USER-ID` extractor, and error responses.
//!
//! Public port ([`router`]):
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /` | 200, plain text: the service is up |
//! | `GET /products?limit=&cursor=` | 200, JSON array of one page of products, discounted for the caller named by `X-USER-ID`; `Link: <...>; rel="next"` when more follow |
//! | `GET /products/{id}` | 200, one product, discounted likewise; 404 if there is no such product |
//! | `GET /openapi.json` | 200, the OpenAPI document of these routes |
//!
//! A bad `X-USER-ID` is a 400 with a JSON body `{"error": "...", "message": "..."}`. When
//! Discount cannot be asked (down, slow, refusing), the products come at full price with the
//! header [`DISCOUNT_UNAVAILABLE_HEADER`] naming the reason: never a 5xx, never a missing product.
//! Beyond `--http-max-concurrent-requests` requests in progress, a request gets 503 with
//! `Retry-After` at once (`shed`).
//!
//! `/healthz`, `/readyz` and `/metrics` are on the operations port (`service_runtime::ops`, with
//! Catalog's readiness from `app::Readiness`); they answer 404 on the public port.
//!
//! # Layout
//! - here: the router, `/` (up), and the OpenAPI document ([`ApiDoc`]) served at
//!   `/openapi.json`;
//! - `state`: [`AppState`], what every handler shares;
//! - `context`: what wraps every public request: [`RequestId`], its span ([`RequestSpan`]),
//!   the access log, the HTTP metrics;
//! - `shed`: what a request beyond the concurrency limit gets;
//! - `products`: `/products` and `/products/{id}`, priced for the caller;
//! - `extract`: the `X-USER-ID` extractor ([`CustomerId`]) and paging ([`PageRequest`]);
//! - `response`: JSON bodies and the error responses ([`ApiError`]).

mod context;
mod extract;
mod products;
mod response;
mod shed;
mod state;

pub use context::{RequestId, RequestSpan};
pub use extract::{
    CustomerId, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, PageRequest, USER_ID_HEADER, parse_customer_id,
};
pub use response::{ApiError, DISCOUNT_UNAVAILABLE_HEADER};
pub use shed::RETRY_AFTER_SECS;
pub use state::AppState;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use utoipa::OpenApi;

use crate::openapi::{DiscountDoc, ErrorDoc, ProductDoc};
use response::json;

/// The public router: at most `max_concurrent_requests` requests in progress (one limit for
/// all routes), each one logged and counted, shed ones included.
pub fn router(state: AppState, max_concurrent_requests: usize) -> Router {
    let tracer = state.tracer.clone();
    let shed = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |err| {
            shed::overloaded(err, max_concurrent_requests)
        }))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(max_concurrent_requests));
    Router::new()
        .route("/", get(root))
        .route("/openapi.json", get(openapi_json))
        .route("/products", get(products::list_products))
        .route("/products/{id}", get(products::one_product))
        .fallback(not_found)
        .with_state(state)
        .layer(shed)
        .layer(axum::middleware::from_fn_with_state(
            tracer,
            context::request_context,
        ))
}

/// `/`: the service is up (the operations port says more).
async fn root() -> &'static str {
    "Catalog service is working.\n"
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn openapi_json() -> Response {
    json(StatusCode::OK, ApiDoc::json())
}

/// Catalog's API.
// Next to the router because it lists the handlers; the schema types it names live apart, in
// `crate::openapi`, so that the handlers can name them too without the modules importing each
// other.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Catalog",
        description = "The shop's products, discounted for the caller by the Discount service \
                       (gRPC over mutual TLS). When Discount cannot be asked, products come at \
                       full price with the `x-discount-unavailable` header.",
        version = env!("CARGO_PKG_VERSION")
    ),
    paths(products::list_products, products::one_product),
    components(schemas(ProductDoc, DiscountDoc, ErrorDoc))
)]
pub struct ApiDoc;

impl ApiDoc {
    /// The document as JSON, rendered once.
    pub fn json() -> bytes::Bytes {
        static JSON: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
        JSON.get_or_init(|| {
            bytes::Bytes::from(
                ApiDoc::openapi()
                    .to_json()
                    .unwrap_or_else(|_| "{}".to_owned()),
            )
        })
        .clone()
    }
}
