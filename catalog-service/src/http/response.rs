//! How answers are written: JSON bodies, the error answers with their status and stable code
//! ([`ApiError`]), and the header that marks full prices.

use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::store::StoreError;

/// Set on a response whose prices are full because the discount could not be applied; the
/// value is the reason (`unavailable`, `deadline-exceeded`, `rejected`, `bad-response`).
pub const DISCOUNT_UNAVAILABLE_HEADER: &str = "x-discount-unavailable";

/// A response with `body`, which is JSON.
pub(super) fn json(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
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
    /// Too many requests in progress: shed, to be retried after this many seconds.
    #[error("too many requests in progress: retry in {0} s")]
    Overloaded(u64),
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
            ApiError::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            ApiError::Store(cause) => tracing::error!("product store failed: {cause}"),
            // Shed requests are logged together, not one line each (`shed`).
            ApiError::NotFound | ApiError::NoSuchProduct(_) | ApiError::Overloaded(_) => {}
            _ => tracing::info!(status = status.as_u16(), "rejected request: {self}"),
        }
        let body = serde_json::json!({ "error": code, "message": self.to_string() });
        json(status, Bytes::from(body.to_string()))
    }
}
