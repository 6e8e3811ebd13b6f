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
//! Every error this router writes is one JSON shape, `{"error": "<code>", "message": "..."}`
//! ([`ApiError`]): a bad `X-USER-ID`, `limit`, `cursor` or product id (even one that is not
//! UTF-8 once percent-decoded, like `%ff`) is a 400; an unknown path a 404; another method
//! than `GET` or `HEAD` on a route a 405 with `Allow` (axum's method-not-allowed fallback).
//! Every answer carries `x-request-id` (`context`), and `HEAD` is answered wherever `GET` is.
//!
//! When Discount cannot be asked (down, slow, refusing, too busy), the products come at full
//! price with the header [`DISCOUNT_UNAVAILABLE_HEADER`] naming the reason: never a 5xx, never a
//! missing product. Beyond `--http-max-concurrent-requests` requests in progress, a request gets
//! 503 with `Retry-After` at once (`shed`).
//!
//! `/healthz`, `/readyz` and `/metrics` are on the operations port (`service_runtime::ops`, with
//! Catalog's readiness from `app::Readiness`); they answer 404 on the public port.
//!
//! # Layout
//! - here: the router, `/` (up), and the 404 and 405 fallbacks;
//! - `doc`: the OpenAPI document ([`ApiDoc`]) served at `/openapi.json`;
//! - `state`: [`AppState`], what every handler shares;
//! - `context`: what wraps every public request: [`RequestId`], its span ([`RequestSpan`]),
//!   the access log, the HTTP metrics;
//! - `shed`: what a request beyond the concurrency limit gets;
//! - `products`: `/products` and `/products/{id}`, priced for the caller;
//! - `extract`: the `X-USER-ID` extractor ([`CustomerId`]), the product id ([`ProductId`])
//!   and paging ([`PageRequest`]), with their schemas in the document;
//! - `response`: JSON bodies and the error responses ([`ApiError`]).

mod context;
mod doc;
mod extract;
mod products;
mod response;
mod shed;
mod state;

pub use context::{RequestId, RequestSpan};
pub use doc::ApiDoc;
pub use extract::{
    CustomerId, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, PageRequest, ProductId, USER_ID_HEADER,
    parse_customer_id,
};
pub use response::{ApiError, DISCOUNT_UNAVAILABLE_HEADER, RETRY_AFTER_SECS};
pub use state::AppState;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;

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
        .method_not_allowed_fallback(method_not_allowed)
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

/// A path that exists, with a method it does not serve. axum adds `Allow`.
async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method)
}
