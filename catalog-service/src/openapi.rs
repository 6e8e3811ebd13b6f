//! The OpenAPI 3 description of Catalog's HTTP API, generated from the handlers' annotations
//! and these schema types, and served at `GET /openapi.json`.
//!
//! The product schema is [`ProductDoc`]; the end-to-end suite checks real responses against the
//! served document, so the two cannot drift apart unnoticed.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

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
    /// `store_unavailable`.
    pub error: String,
    /// What was wrong, for people.
    pub message: String,
}

/// Catalog's API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Catalog",
        description = "The shop's products, discounted for the caller by the Discount service \
                       (gRPC over mutual TLS). When Discount cannot be asked, products come at \
                       full price with the `x-discount-unavailable` header.",
        version = env!("CARGO_PKG_VERSION")
    ),
    paths(
        crate::http::list_products,
        crate::http::one_product,
        crate::http::healthz,
        crate::http::readyz
    ),
    components(schemas(ProductDoc, DiscountDoc, ErrorDoc))
)]
pub struct ApiDoc;

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
