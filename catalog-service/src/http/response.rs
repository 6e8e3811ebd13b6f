//! How answers are written: JSON bodies, the error answers with their status and stable code
//! ([`ApiError`], the one shape of every 4xx and 5xx Catalog's router writes), and the header that marks
//! full prices.

use axum::http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};

use crate::discount::DiscountFailure;
use crate::openapi::{ErrorCode, ErrorDoc};

/// Set on a response whose prices are full because the discount could not be applied; the
/// value is the reason (`unavailable`, `deadline-exceeded`, `rejected`, `bad-response`,
/// `overloaded`: [`crate::discount::DiscountFailure::REASONS`]).
pub const DISCOUNT_UNAVAILABLE_HEADER: &str = "x-discount-unavailable";

/// [`DISCOUNT_UNAVAILABLE_HEADER`]'s values, for the OpenAPI document: every reason there is.
#[derive(Debug)]
pub(super) struct DiscountUnavailableSchema;

impl utoipa::PartialSchema for DiscountUnavailableSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(DiscountFailure::REASONS))
            .into()
    }
}

impl utoipa::ToSchema for DiscountUnavailableSchema {}

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
    /// The path exists but not with this method; axum adds the `Allow` header.
    #[error("method {0} is not allowed here: the Allow header lists those that are")]
    MethodNotAllowed(Method),
    /// No catalog data yet (its source has not answered since start-up): what the public may
    /// know of why, and when to try again.
    #[error("{0}: retry in {RETRY_AFTER_SECS} s")]
    NoCatalogYet(&'static str),
    /// Too many requests in progress: shed, to be retried after [`RETRY_AFTER_SECS`].
    #[error("too many requests in progress: retry in {RETRY_AFTER_SECS} s")]
    Overloaded,
}

/// What a 503's `Retry-After` says, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    /// The status and the stable code this error is answered with.
    pub(super) fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            ApiError::InvalidUserId(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidUserId),
            ApiError::InvalidQuery(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidQuery),
            ApiError::InvalidProductId => (StatusCode::BAD_REQUEST, ErrorCode::InvalidProductId),
            ApiError::NoSuchProduct(_) | ApiError::NotFound => {
                (StatusCode::NOT_FOUND, ErrorCode::NotFound)
            }
            ApiError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed)
            }
            ApiError::NoCatalogYet(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::CatalogUnavailable,
            ),
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Overloaded),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            // The access log line says enough of these; shed requests are logged together,
            // not one line each (`shed`), and the data source logs why it has no catalog yet.
            ApiError::NotFound
            | ApiError::NoSuchProduct(_)
            | ApiError::MethodNotAllowed(_)
            | ApiError::NoCatalogYet(_)
            | ApiError::Overloaded => {}
            _ => tracing::info!(status = status.as_u16(), "rejected request: {self}"),
        }
        let body = ErrorDoc {
            error: code,
            message: self.to_string(),
        };
        // A struct of a unit enum and a string: serializing it cannot fail.
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = json(status, Bytes::from(body));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}
