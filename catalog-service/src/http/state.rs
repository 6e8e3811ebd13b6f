//! [`AppState`]: what every handler shares.

use std::sync::Arc;

use crate::catalog::Customers;
use crate::discount::DiscountGateway;
use crate::store::ProductStore;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Where products live.
    pub products: Arc<dyn ProductStore>,
    /// The customers Catalog knows.
    pub customers: Arc<Customers>,
    /// The Discount client.
    pub discounts: DiscountGateway,
    /// Starts each request's server span (off unless traces are exported).
    pub tracer: service_runtime::otel::Tracer,
}
