//! The HTTP API: routes, the `X-USER-ID` extractor, and error responses.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /` | 200, plain text: the service is up |
//! | `GET /products` | 200, JSON array of products, discounted for the caller named by `X-USER-ID` |
//!
//! A bad `X-USER-ID` is a 400 with a JSON body `{"error": "...", "message": "..."}`. When
//! Discount cannot be asked (down, slow, refusing), the products come at full price with the
//! header [`DISCOUNT_UNAVAILABLE_HEADER`] naming the reason: never a 5xx, never a missing product.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use crate::catalog::{Catalog, ProductView, render};
use crate::discount::DiscountGateway;

/// The request header that names the customer.
pub const USER_ID_HEADER: &str = "x-user-id";

/// Set on a `/products` response whose prices are full because the discount could not be
/// applied; the value is the reason (`unavailable`, `deadline-exceeded`, `rejected`,
/// `bad-response`).
pub const DISCOUNT_UNAVAILABLE_HEADER: &str = "x-discount-unavailable";

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Products and customers.
    pub catalog: Arc<Catalog>,
    /// The Discount client.
    pub discounts: DiscountGateway,
}

/// Builds the router. Tests drive it directly or over a socket.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/products", get(list_products))
        .fallback(not_found)
        .with_state(state)
}

async fn root() -> &'static str {
    "Catalog service is working.\n"
}

async fn list_products(State(state): State<AppState>, CustomerId(id): CustomerId) -> Response {
    let catalog = &state.catalog;
    let Some(id) = id else {
        return json(StatusCode::OK, catalog.full_price_json());
    };
    let Some(customer) = catalog.customer(id) else {
        tracing::debug!(customer = id, "unknown customer: full prices");
        return json(StatusCode::OK, catalog.full_price_json());
    };
    match state
        .discounts
        .discounts(customer, catalog.products())
        .await
    {
        Ok(discounts) => {
            let views = catalog
                .products()
                .iter()
                .zip(discounts)
                .map(|(product, discount)| ProductView::new(product, discount));
            json(StatusCode::OK, render(views))
        }
        Err(failure) => {
            tracing::warn!(
                customer = id,
                reason = failure.reason(),
                "serving full prices: {failure}"
            );
            let mut response = json(StatusCode::OK, catalog.full_price_json());
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
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::InvalidUserId(
            "X-USER-ID must be a customer id: a whole number from 1 to 2147483647",
        ));
    }
    match text.parse::<i32>() {
        Ok(id) if id > 0 => Ok(Some(id)),
        _ => Err(ApiError::InvalidUserId(
            "X-USER-ID is out of range: customer ids run from 1 to 2147483647",
        )),
    }
}

/// An error answered to the client. The message says what was wrong with the request; nothing
/// internal is ever put in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidUserId(&'static str),
    #[error("no such resource")]
    NotFound,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidUserId(_) => (StatusCode::BAD_REQUEST, "invalid_user_id"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_client_error() && status != StatusCode::NOT_FOUND {
            tracing::info!(status = status.as_u16(), "rejected request: {self}");
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
    fn repeated_header_is_refused() {
        assert!(parse_customer_id(&headers(&[b"1", b"2"])).is_err());
    }
}
