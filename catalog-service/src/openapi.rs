//! The schema types of the OpenAPI 3 description of Catalog's HTTP API: what its bodies look
//! like. The document itself is generated from the handlers' annotations and these types, and
//! served at `GET /openapi.json`, by the router's module (`http`), which lists the handlers.
//!
//! The product schema is [`ProductDoc`]; the end-to-end suite checks real responses against the
//! served document, so the two cannot drift apart unnoticed.

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
    /// Present only when the caller gets a discount on this product.
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

/// The body of every 4xx/5xx answer.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ErrorDoc {
    /// A stable code: `invalid_user_id`, `invalid_query`, `invalid_product_id`, `not_found`,
    /// `store_unavailable`, `overloaded`.
    pub error: String,
    /// What was wrong, for people.
    pub message: String,
}
