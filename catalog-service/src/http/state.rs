//! [`AppState`]: what every handler shares.

use crate::data::Data;
use crate::discount::DiscountGateway;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The catalog: products and the customers Catalog knows, one snapshot per request.
    pub data: Data,
    /// The Discount client.
    pub discounts: DiscountGateway,
    /// Starts each request's server span (off unless traces are exported).
    pub tracer: service_runtime::otel::Tracer,
}
