//! The `ecommerce.Discount` gRPC handlers: each checks the caller against the allow-list, hands
//! the request to [`crate::apply`], and writes the RPC's one access-log line, metrics and
//! spans (a server span continuing the caller's W3C trace, and one for the rule).

use std::sync::Arc;
use std::time::Instant;

use ecommerce_proto::pb::discount_server::Discount;
use ecommerce_proto::pb::{
    BatchDiscountRequest, BatchDiscountResponse, DiscountGroupsRequest, DiscountGroupsResponse,
    DiscountRequest, DiscountResponse, PricesRequest, PricesResponse,
};
use mtls::PeerInfo;
use service_runtime::otel::{KeyValue, Span, SpanKind, Tracer};
use service_runtime::request_id;
use tonic::{Code, Request, Response, Status};

pub use crate::apply::{
    MAX_BATCH_PRODUCTS, MAX_GROUPS, MAX_GROUPS_PRODUCTS, apply_batch, apply_groups, apply_one,
};
use crate::authz::AllowList;
pub use crate::prices::apply_prices;

/// The Discount service: who may call it ([`AllowList`]) and the rule, which needs nothing
/// but the request.
#[derive(Debug, Default, Clone)]
pub struct DiscountService {
    allow: Arc<AllowList>,
    tracer: Tracer,
}

impl DiscountService {
    /// A service that lets the identities in `allow` call its RPCs.
    pub fn new(allow: AllowList) -> Self {
        Self {
            allow: Arc::new(allow),
            tracer: Tracer::default(),
        }
    }

    /// The same service, tracing its RPCs with `tracer`.
    pub fn traced(self, tracer: Tracer) -> Self {
        Self { tracer, ..self }
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

    /// Turns the service into the tonic server that routes `ecommerce.Discount` RPCs to it,
    /// refusing request messages over `max_message_bytes` (tonic answers `OUT_OF_RANGE`;
    /// [`crate::limits`] makes it `RESOURCE_EXHAUSTED`).
    pub fn into_server(
        self,
        max_message_bytes: usize,
    ) -> ecommerce_proto::pb::discount_server::DiscountServer<Self> {
        ecommerce_proto::pb::discount_server::DiscountServer::new(self)
            .max_decoding_message_size(max_message_bytes)
    }
}

/// Who asked and under which request id, read before the request is consumed, for the one log
/// line each RPC gets; and the RPC's server span.
struct RpcLog {
    rpc: &'static str,
    caller: Option<Arc<str>>,
    request_id: Option<tonic::metadata::AsciiMetadataValue>,
    started: Instant,
    span: Span,
}

/// The gRPC service, as spans name it (`rpc.service`).
const RPC_SERVICE: &str = "ecommerce.Discount";

impl RpcLog {
    fn start<T>(tracer: &Tracer, rpc: &'static str, request: &Request<T>) -> Self {
        let peer = PeerInfo::of(request);
        let metadata = request.metadata();
        let span = tracer
            .extract(|name| metadata.get(name).and_then(|v| v.to_str().ok()))
            .start(SpanKind::Server, || {
                let mut attributes = vec![
                    KeyValue::new("rpc.system", "grpc"),
                    KeyValue::new("rpc.service", RPC_SERVICE),
                    KeyValue::new("rpc.method", rpc),
                ];
                if let Some(peer) = peer {
                    let addr = peer.remote_addr;
                    attributes.push(KeyValue::new("client.address", addr.ip().to_string()));
                    attributes.push(KeyValue::new("client.port", i64::from(addr.port())));
                    if let Some(identity) = &peer.identity {
                        attributes.push(KeyValue::new("discount.caller", identity.to_string()));
                    }
                }
                (format!("{RPC_SERVICE}/{rpc}").into(), attributes)
            });
        Self {
            rpc,
            span,
            caller: peer.and_then(|peer| peer.identity.clone()),
            request_id: request
                .metadata()
                .get(request_id::HEADER)
                .filter(|id| request_id::is_acceptable(id.as_encoded_bytes()))
                .cloned(),
            started: Instant::now(),
        }
    }

    /// A child span for the rule, applied to `sizes()` groups of products in all (counted
    /// only when the span is recorded).
    fn rule_span(&self, sizes: impl FnOnce() -> (usize, usize)) -> Span {
        self.span.parent().start(SpanKind::Internal, || {
            let (groups, products) = sizes();
            (
                "discount rule".into(),
                vec![
                    KeyValue::new("discount.groups", groups as i64),
                    KeyValue::new("discount.products", products as i64),
                ],
            )
        })
    }

    fn finish<T>(mut self, result: &Result<T, Status>) {
        let code = match result {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        self.span
            .set(|| [KeyValue::new("rpc.grpc.status_code", code as i64)]);
        if let Err(status) = result
            && is_server_error(code)
        {
            self.span.fail(status.message().to_owned());
        }
        let ids = self.span.ids();
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
            trace_id = ids.map(|ids| tracing::field::display(ids.trace_id)),
            span_id = ids.map(|ids| tracing::field::display(ids.span_id)),
            code = ?code,
            latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "rpc"
        );
    }
}

/// Whether a status is the server's fault, and so marks its span as failed (the semantic
/// conventions' list for gRPC servers; a refused or invalid request is the caller's).
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
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
        let log = RpcLog::start(&self.tracer, "ApplyDiscount", &request);
        let result = self.authorize(&log).and_then(|()| {
            let _rule = log.rule_span(|| (1, 1));
            apply_one(request.into_inner())
        });
        log.finish(&result);
        result.map(Response::new)
    }

    async fn apply_discount_batch(
        &self,
        request: Request<BatchDiscountRequest>,
    ) -> Result<Response<BatchDiscountResponse>, Status> {
        let log = RpcLog::start(&self.tracer, "ApplyDiscountBatch", &request);
        let result = self.authorize(&log).and_then(|()| {
            let _rule = log.rule_span(|| (1, request.get_ref().products.len()));
            apply_batch(request.into_inner())
        });
        log.finish(&result);
        result.map(Response::new)
    }

    async fn apply_discount_groups(
        &self,
        request: Request<DiscountGroupsRequest>,
    ) -> Result<Response<DiscountGroupsResponse>, Status> {
        let log = RpcLog::start(&self.tracer, "ApplyDiscountGroups", &request);
        let groups = request.get_ref().groups.len();
        let result = self.authorize(&log).and_then(|()| {
            let _rule = log.rule_span(|| {
                let products = request.get_ref().groups.iter().map(|g| g.products.len());
                (groups, products.sum())
            });
            apply_groups(request.into_inner())
        });
        if result.is_ok() {
            metrics::histogram!("discount_groups_per_rpc").record(groups as f64);
        }
        log.finish(&result);
        result.map(Response::new)
    }

    async fn apply_discount_prices(
        &self,
        request: Request<PricesRequest>,
    ) -> Result<Response<PricesResponse>, Status> {
        let log = RpcLog::start(&self.tracer, "ApplyDiscountPrices", &request);
        let groups = request.get_ref().groups.len();
        let result = self.authorize(&log).and_then(|()| {
            let _rule = log.rule_span(|| {
                let products = request
                    .get_ref()
                    .groups
                    .iter()
                    .map(crate::prices::group_size);
                (groups, products.sum())
            });
            apply_prices(request.into_inner())
        });
        if result.is_ok() {
            metrics::histogram!("discount_groups_per_rpc").record(groups as f64);
        }
        log.finish(&result);
        result.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::fixtures::{customer, product};

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
    async fn groups_rpc_is_authorized_like_the_others() {
        let service = DiscountService::default();
        let request = || DiscountGroupsRequest {
            groups: vec![BatchDiscountRequest {
                customer: customer(1),
                products: vec![product(1, 100)],
            }],
        };
        let catalog = as_caller(request(), Some(crate::authz::CATALOG_IDENTITY));
        assert!(service.apply_discount_groups(catalog).await.is_ok());
        let other = as_caller(request(), Some("spiffe://shop.local/reports"));
        let denied = service.apply_discount_groups(other).await.unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
    }
}
