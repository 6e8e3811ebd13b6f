//! The `ecommerce.Discount` gRPC handlers.
//!
//! Handlers only validate and convert: the decision is [`crate::rule::discount_for`]. Invalid
//! input is answered with `INVALID_ARGUMENT` and a message naming the field.

use ecommerce_proto::pb::discount_server::Discount;
use ecommerce_proto::pb::{
    BatchDiscountRequest, BatchDiscountResponse, Customer, DiscountRequest, DiscountResponse,
    DiscountValue, Product,
};
use std::sync::Arc;
use std::time::Instant;

use mtls::PeerInfo;
use service_runtime::request_id;
use tonic::{Code, Request, Response, Status};

use crate::authz::AllowList;
use crate::rule::{self, RuleError};

/// Most products one batch may carry. Far above any page Catalog sends; it bounds the work one
/// request can ask for.
pub const MAX_BATCH_PRODUCTS: usize = 10_000;

/// The Discount service: who may call it ([`AllowList`]) and the rule, which needs nothing
/// but the request.
#[derive(Debug, Default, Clone)]
pub struct DiscountService {
    allow: Arc<AllowList>,
}

impl DiscountService {
    /// A service that lets the identities in `allow` call its RPCs.
    pub fn new(allow: AllowList) -> Self {
        Self {
            allow: Arc::new(allow),
        }
    }

    /// Refuses a caller the allow-list does not name, with a log line and a metric.
    fn authorize(&self, log: &RpcLog) -> Result<(), Status> {
        let verdict = self.allow.check(log.rpc, log.caller.as_deref());
        if let Err(status) = &verdict {
            metrics::counter!("discount_authz_denied_total", "rpc" => log.rpc).increment(1);
            tracing::warn!(
                rpc = log.rpc,
                caller = log.caller.as_deref().unwrap_or("none"),
                "permission denied: {}",
                status.message()
            );
        }
        verdict
    }

    /// Turns the service into the tonic server that routes `ecommerce.Discount` RPCs to it.
    pub fn into_server(self) -> ecommerce_proto::pb::discount_server::DiscountServer<Self> {
        ecommerce_proto::pb::discount_server::DiscountServer::new(self)
    }
}

fn require_customer(customer: Option<Customer>) -> Result<Customer, Status> {
    customer.ok_or_else(|| Status::invalid_argument("customer is required"))
}

/// Applies the rule to one product; `field` names it in error messages (`product`,
/// `products[3]`).
fn discount_product(
    customer: &Customer,
    mut product: Product,
    field: &str,
) -> Result<Product, Status> {
    match rule::discount_for(customer.id, product.price_in_cents) {
        Ok(Some(discount)) => {
            product.discount_value = Some(DiscountValue {
                pct: discount.pct,
                value_in_cents: discount.value_in_cents,
            });
            Ok(product)
        }
        // No discount: the product goes back exactly as it came.
        Ok(None) => Ok(product),
        Err(RuleError::NegativePrice(price)) => Err(Status::invalid_argument(format!(
            "{field}.price_in_cents must not be negative, got {price}"
        ))),
    }
}

/// Who asked and under which request id, read before the request is consumed, for the one log
/// line each RPC gets.
struct RpcLog {
    rpc: &'static str,
    caller: Option<Arc<str>>,
    request_id: Option<tonic::metadata::AsciiMetadataValue>,
    started: Instant,
}

impl RpcLog {
    fn start<T>(rpc: &'static str, request: &Request<T>) -> Self {
        Self {
            rpc,
            caller: PeerInfo::of(request).and_then(|peer| peer.identity.clone()),
            request_id: request
                .metadata()
                .get(request_id::HEADER)
                .filter(|id| request_id::is_acceptable(id.as_encoded_bytes()))
                .cloned(),
            started: Instant::now(),
        }
    }

    fn finish<T>(self, result: &Result<T, Status>) {
        let code = match result {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        let elapsed = self.started.elapsed();
        metrics::counter!(
            "discount_rpc_requests_total",
            "rpc" => self.rpc,
            "code" => code_label(code)
        )
        .increment(1);
        metrics::histogram!("discount_rpc_duration_seconds", "rpc" => self.rpc)
            .record(elapsed.as_secs_f64());
        tracing::info!(
            target: "access",
            rpc = self.rpc,
            caller = self.caller.as_deref().unwrap_or("unknown"),
            request_id = self.request_id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or("-"),
            code = ?code,
            latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "rpc"
        );
    }
}

/// The gRPC status code as a metric label (`OK`, `INVALID_ARGUMENT`, ...).
fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::Unauthenticated => "UNAUTHENTICATED",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::Cancelled => "CANCELLED",
        Code::Unavailable => "UNAVAILABLE",
        Code::Internal => "INTERNAL",
        _ => "OTHER",
    }
}

#[tonic::async_trait]
impl Discount for DiscountService {
    async fn apply_discount(
        &self,
        request: Request<DiscountRequest>,
    ) -> Result<Response<DiscountResponse>, Status> {
        let log = RpcLog::start("ApplyDiscount", &request);
        let result = self
            .authorize(&log)
            .and_then(|()| apply_one(request.into_inner()));
        log.finish(&result);
        result.map(Response::new)
    }

    async fn apply_discount_batch(
        &self,
        request: Request<BatchDiscountRequest>,
    ) -> Result<Response<BatchDiscountResponse>, Status> {
        let log = RpcLog::start("ApplyDiscountBatch", &request);
        let result = self
            .authorize(&log)
            .and_then(|()| apply_batch(request.into_inner()));
        log.finish(&result);
        result.map(Response::new)
    }
}

/// `ApplyDiscount` without the authorization step.
pub fn apply_one(request: DiscountRequest) -> Result<DiscountResponse, Status> {
    let DiscountRequest { customer, product } = request;
    let customer = require_customer(customer)?;
    let product = product.ok_or_else(|| Status::invalid_argument("product is required"))?;
    let product = discount_product(&customer, product, "product")?;
    Ok(DiscountResponse {
        product: Some(product),
    })
}

/// `ApplyDiscountBatch` without the authorization step.
pub fn apply_batch(request: BatchDiscountRequest) -> Result<BatchDiscountResponse, Status> {
    let BatchDiscountRequest { customer, products } = request;
    let customer = require_customer(customer)?;
    if products.len() > MAX_BATCH_PRODUCTS {
        return Err(Status::invalid_argument(format!(
            "products: at most {MAX_BATCH_PRODUCTS} per batch, got {}",
            products.len()
        )));
    }
    let products = products
        .into_iter()
        .enumerate()
        .map(|(i, product)| discount_product(&customer, product, &format!("products[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BatchDiscountResponse { products })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(id: i32) -> Option<Customer> {
        Some(Customer {
            id,
            first_name: "John".into(),
            last_name: "Snow".into(),
        })
    }

    fn product(id: i32, price_in_cents: i32) -> Product {
        Product {
            id,
            slug: format!("p{id}"),
            description: String::new(),
            price_in_cents,
            discount_value: None,
        }
    }

    async fn apply(
        customer: Option<Customer>,
        product: Option<Product>,
    ) -> Result<Product, Status> {
        let response = apply_one(DiscountRequest { customer, product })?;
        Ok(response.product.expect("handler always sets product"))
    }

    fn as_caller<T>(message: T, identity: Option<&str>) -> Request<T> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(PeerInfo {
            remote_addr: ([127, 0, 0, 1], 1).into(),
            identity: identity.map(Arc::from),
        });
        request
    }

    #[tokio::test]
    async fn only_allowed_identities_reach_the_rule() {
        let service = DiscountService::default();
        let request = || DiscountRequest {
            customer: customer(1),
            product: Some(product(1, 100)),
        };
        let catalog = as_caller(request(), Some(crate::authz::CATALOG_IDENTITY));
        assert!(service.apply_discount(catalog).await.is_ok());
        let other = as_caller(request(), Some("spiffe://shop.local/reports"));
        let denied = service.apply_discount(other).await.unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.message().contains("spiffe://shop.local/reports"));
        let anonymous = as_caller(request(), None);
        let denied = service.apply_discount(anonymous).await.unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        let batch = as_caller(
            BatchDiscountRequest::default(),
            Some("spiffe://shop.local/reports"),
        );
        let denied = service.apply_discount_batch(batch).await.unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
    }

    #[tokio::test]
    async fn eligible_customer_gets_ten_percent_off() {
        let discounted = apply(customer(1), Some(product(1, 99_999))).await.unwrap();
        assert_eq!(
            discounted.discount_value,
            Some(DiscountValue {
                pct: 0.1,
                value_in_cents: 89_999
            })
        );
        assert_eq!(discounted.price_in_cents, 99_999);
    }

    #[tokio::test]
    async fn other_customer_gets_the_product_back_unchanged() {
        let original = product(2, 150_000);
        assert_eq!(
            apply(customer(2), Some(original.clone())).await.unwrap(),
            original
        );
    }

    #[tokio::test]
    async fn missing_customer_is_invalid_argument() {
        let status = apply(None, Some(product(1, 1))).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("customer"), "{status:?}");
    }

    #[tokio::test]
    async fn missing_product_is_invalid_argument() {
        let status = apply(customer(1), None).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("product"), "{status:?}");
    }

    #[tokio::test]
    async fn negative_price_is_invalid_argument() {
        let status = apply(customer(1), Some(product(1, -5))).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("product.price_in_cents"),
            "{status:?}"
        );
        assert!(status.message().contains("-5"), "{status:?}");
    }

    #[tokio::test]
    async fn batch_keeps_order_and_names_the_bad_index() {
        let request = BatchDiscountRequest {
            customer: customer(1),
            products: vec![product(3, 32_999), product(1, 0), product(2, 150_000)],
        };
        let products = apply_batch(request).unwrap().products;
        let ids: Vec<_> = products.iter().map(|p| p.id).collect();
        assert_eq!(ids, [3, 1, 2]);
        let values: Vec<_> = products
            .iter()
            .map(|p| p.discount_value.map(|d| d.value_in_cents))
            .collect();
        assert_eq!(values, [Some(29_699), None, Some(135_000)]);

        let request = BatchDiscountRequest {
            customer: customer(1),
            products: vec![product(1, 10), product(2, -1)],
        };
        let status = apply_batch(request).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("products[1].price_in_cents"),
            "{status:?}"
        );
    }

    #[tokio::test]
    async fn batch_without_customer_is_invalid_argument() {
        let status = apply_batch(BatchDiscountRequest {
            customer: None,
            products: vec![product(1, 1)],
        })
        .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("customer"));
    }
}
