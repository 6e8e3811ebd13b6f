//! The schema types of the OpenAPI 3 description of Catalog's HTTP API: what its bodies look
//! like. The document itself is generated from the handlers' annotations and these types, and
//! served at `GET /openapi.json`, by the router's module (`http`), which lists the handlers.
//!
//! The product schema is [`ProductDoc`]; the end-to-end suite checks real responses against the
//! served document, so the two cannot drift apart unnoticed. The error body, [`ErrorDoc`] with
//! its [`ErrorCode`], is not a description only: it is the type every error answer is written
//! from.

use serde::Serialize;
use utoipa::ToSchema;

/// One product as `/products` returns it.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ProductDoc {
    /// Product id (positive).
    pub id: i32,
    /// URL-friendly name.
    pub slug: String,
    /// Free text.
    pub description: String,
    /// Full price, in cents.
    pub price_in_cents: i32,
    /// Present only when the caller gets a discount on this product (never `null`).
    #[schema(nullable = false)]
    pub discount_value: Option<DiscountDoc>,
}

/// The discount on one product.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct DiscountDoc {
    /// The fraction taken off: 0.1 means 10%.
    pub pct: f32,
    /// The price after the discount, in cents (truncated to whole cents).
    pub value_in_cents: i32,
}

/// The body of every 4xx and 5xx answer Catalog's router writes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDoc {
    /// What kind of error: stable, for programs.
    pub error: ErrorCode,
    /// What was wrong, for people.
    pub message: String,
}

/// The stable code of an error answer, with the status it comes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: `X-USER-ID` is not one customer id.
    InvalidUserId,
    /// 400: `limit` or `cursor` is not one Catalog accepts, or the query names another
    /// parameter.
    InvalidQuery,
    /// 400: the product id in the path is not a whole number from 1 to 2147483647 (or is not
    /// even text once percent-decoded, like `%ff`).
    InvalidProductId,
    /// 404: no such product, or no such path.
    NotFound,
    /// 405: the path exists, the method is not served there; `Allow` lists those that are.
    MethodNotAllowed,
    /// 503: Catalog has no catalog data yet (its source has not answered since start-up);
    /// `Retry-After` says when to try again, the message names the cause.
    CatalogUnavailable,
    /// 503: too many requests in progress; `Retry-After` says when to try again.
    Overloaded,
}
