//! Stand-ins for Discount: one that counts what it is asked, health checks included (and can
//! answer like the original proto or an older one, hang, or hold each answer until the test
//! lets it go), and a "black hole" that accepts connections and never answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ecommerce_proto::pb::discount_server::{Discount, DiscountServer as GrpcDiscountServer};
use ecommerce_proto::pb::{
    BatchDiscountRequest, BatchDiscountResponse, DiscountGroupsRequest, DiscountGroupsResponse,
    DiscountRequest, DiscountResponse, PricesRequest, PricesResponse,
};
use mtls::Reloadable;
use pki::ServicePki;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::certs::{anchors, identity};
use crate::net::{Running, bind_loopback, shutdown_on};

/// A Discount that counts what it is asked, delegating the answers to the real service. With
/// `original_style`, it behaves like a server built from the original proto: `ApplyDiscount`
/// only, `UNIMPLEMENTED` for the batch and groups RPCs; with `without_groups`, like a server
/// with the batch RPC but neither groups RPC (`ApplyDiscountGroups`, `ApplyDiscountPrices`).
#[derive(Debug, Default, Clone)]
pub struct CountingDiscount {
    /// Answer the batch RPC with `UNIMPLEMENTED`.
    pub original_style: bool,
    /// `ApplyDiscount` calls received.
    pub unary_calls: Arc<AtomicUsize>,
    /// `ApplyDiscountBatch` calls received.
    pub batch_calls: Arc<AtomicUsize>,
    /// Answer the groups RPCs with `UNIMPLEMENTED`.
    pub without_groups: bool,
    /// Answer the groups RPCs with `PERMISSION_DENIED` (an allow-list that names only the
    /// older RPCs).
    pub deny_groups: bool,
    /// The number of groups in each groups RPC received (`ApplyDiscountPrices`, what Catalog
    /// sends, or `ApplyDiscountGroups`), in arrival order.
    pub group_sizes: Arc<std::sync::Mutex<Vec<usize>>>,
    /// When set, every discount RPC waits for a permit before answering (and uses it up):
    /// the test lets answers go one by one with `add_permits`.
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
    /// Discount RPCs being answered now, and the most seen at once.
    pub in_flight: Arc<AtomicUsize>,
    /// The most discount RPCs ever in flight at once.
    pub max_in_flight: Arc<AtomicUsize>,
    /// Products asked about, over all calls answered.
    pub products_asked: Arc<AtomicUsize>,
    /// The `x-request-id` metadata of every call, in arrival order.
    pub request_ids: Arc<std::sync::Mutex<Vec<String>>>,
    /// When each call arrived, in order.
    pub arrivals: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
    /// Never answer a discount RPC: a replica whose RPCs hang while it still completes TLS,
    /// speaks HTTP/2 and answers health checks (`SERVING`; `UNIMPLEMENTED` if original-style,
    /// which counts as serving too).
    pub hang: bool,
    /// `grpc.health.v1.Health/Check` calls received (answered `SERVING`, or `UNIMPLEMENTED`
    /// if original-style).
    pub health_checks: Arc<AtomicUsize>,
}

impl CountingDiscount {
    fn record<T>(&self, request: &Request<T>) {
        let id = request
            .metadata()
            .get("x-request-id")
            .and_then(|id| id.to_str().ok())
            .unwrap_or("")
            .to_owned();
        self.request_ids.lock().unwrap().push(id);
        self.arrivals
            .lock()
            .unwrap()
            .push(tokio::time::Instant::now());
    }

    /// Waits as asked (`hang`, `gate`), counting the RPC as in flight meanwhile.
    async fn hang_if_asked(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let _done = InFlight(self.in_flight.clone());
        if self.hang {
            std::future::pending::<()>().await;
        }
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
    }

    /// Discount RPCs received so far, of every kind.
    pub fn calls(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl CountingDiscount {
    /// A server with only `ApplyDiscount`.
    pub fn original_style() -> Self {
        Self {
            original_style: true,
            ..Self::default()
        }
    }

    /// A server with `ApplyDiscount` and `ApplyDiscountBatch`, but neither groups RPC.
    pub fn without_groups() -> Self {
        Self {
            without_groups: true,
            ..Self::default()
        }
    }

    /// The same server, holding every answer until the returned gate gets a permit.
    pub fn gated(self) -> (Self, Arc<tokio::sync::Semaphore>) {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        (
            Self {
                gate: Some(gate.clone()),
                ..self
            },
            gate,
        )
    }
}

#[tonic::async_trait]
impl Discount for CountingDiscount {
    async fn apply_discount(
        &self,
        request: Request<DiscountRequest>,
    ) -> Result<Response<DiscountResponse>, Status> {
        self.record(&request);
        self.unary_calls.fetch_add(1, Ordering::SeqCst);
        self.hang_if_asked().await;
        self.products_asked.fetch_add(1, Ordering::SeqCst);
        discount_service::service::apply_one(request.into_inner()).map(Response::new)
    }

    async fn apply_discount_batch(
        &self,
        request: Request<BatchDiscountRequest>,
    ) -> Result<Response<BatchDiscountResponse>, Status> {
        self.record(&request);
        self.batch_calls.fetch_add(1, Ordering::SeqCst);
        if self.original_style {
            // What a server generated from the original proto answers, at once, for an
            // unknown method.
            return Err(Status::unimplemented("unknown method ApplyDiscountBatch"));
        }
        self.hang_if_asked().await;
        self.products_asked
            .fetch_add(request.get_ref().products.len(), Ordering::SeqCst);
        discount_service::service::apply_batch(request.into_inner()).map(Response::new)
    }

    async fn apply_discount_groups(
        &self,
        request: Request<DiscountGroupsRequest>,
    ) -> Result<Response<DiscountGroupsResponse>, Status> {
        if self.original_style || self.without_groups {
            return Err(Status::unimplemented("unknown method ApplyDiscountGroups"));
        }
        if self.deny_groups {
            return Err(Status::permission_denied(
                "spiffe://shop.local/catalog may not call ApplyDiscountGroups",
            ));
        }
        self.record(&request);
        let groups = &request.get_ref().groups;
        self.group_sizes.lock().unwrap().push(groups.len());
        let products: usize = groups.iter().map(|group| group.products.len()).sum();
        self.hang_if_asked().await;
        self.products_asked.fetch_add(products, Ordering::SeqCst);
        discount_service::service::apply_groups(request.into_inner()).map(Response::new)
    }

    async fn apply_discount_prices(
        &self,
        request: Request<PricesRequest>,
    ) -> Result<Response<PricesResponse>, Status> {
        if self.original_style || self.without_groups {
            return Err(Status::unimplemented("unknown method ApplyDiscountPrices"));
        }
        if self.deny_groups {
            return Err(Status::permission_denied(
                "spiffe://shop.local/catalog may not call ApplyDiscountPrices",
            ));
        }
        self.record(&request);
        let groups = &request.get_ref().groups;
        self.group_sizes.lock().unwrap().push(groups.len());
        let products: usize = groups.iter().map(|group| group.product_ids.len()).sum();
        self.hang_if_asked().await;
        self.products_asked.fetch_add(products, Ordering::SeqCst);
        discount_service::service::apply_prices(request.into_inner()).map(Response::new)
    }
}

/// The health service beside [`CountingDiscount`]: every service is `SERVING`, or, for an
/// original-style server (which has no health service), every check is `UNIMPLEMENTED`, as
/// the gRPC router answers for a service it does not know. Checks are counted either way.
#[derive(Debug)]
struct CountingHealth {
    checks: Arc<AtomicUsize>,
    original_style: bool,
}

#[tonic::async_trait]
impl Health for CountingHealth {
    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        if self.original_style {
            return Err(Status::unimplemented(
                "unknown service grpc.health.v1.Health",
            ));
        }
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving.into(),
        }))
    }

    type WatchStream = tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented(
            "the counting Discount does not watch",
        ))
    }
}

/// Starts `service` over the same mutual TLS as the real Discount, with a health service that
/// counts its checks in [`CountingDiscount::health_checks`].
pub async fn spawn_counting_discount(pki: &ServicePki, service: CountingDiscount) -> Running {
    let listener = bind_loopback().await;
    let addr = listener.local_addr().unwrap();
    let config = mtls::server_config(&identity(&pki.discount), &anchors(&pki.ca)).unwrap();
    let incoming = mtls::tls_incoming(
        listener,
        Reloadable::new(config),
        mtls::AcceptSettings::default(),
        std::future::pending(),
    );
    let health = HealthServer::new(CountingHealth {
        checks: service.health_checks.clone(),
        original_style: service.original_style,
    });
    Running::spawn(addr, |stopped| async move {
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(GrpcDiscountServer::new(service))
            .serve_with_incoming_shutdown(incoming, shutdown_on(stopped))
            .await
            .unwrap();
    })
}

/// A "Discount" that accepts TCP connections and never answers: a hung dependency.
pub async fn spawn_black_hole() -> Running {
    let listener = bind_loopback().await;
    let addr = listener.local_addr().unwrap();
    Running::spawn(addr, |stopped| async move {
        let mut held = Vec::new();
        let mut stopped = std::pin::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => {
                    if let Ok((socket, _)) = accepted {
                        held.push(socket);
                    }
                }
            }
        }
    })
}
