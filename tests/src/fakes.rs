//! Stand-ins for Discount: one that counts what it is asked (and can answer like the original
//! proto, or hang), and a "black hole" that accepts connections and never answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ecommerce_proto::pb::discount_server::{Discount, DiscountServer as GrpcDiscountServer};
use ecommerce_proto::pb::{
    BatchDiscountRequest, BatchDiscountResponse, DiscountRequest, DiscountResponse,
};
use mtls::Reloadable;
use pki::ServicePki;
use tonic::{Request, Response, Status};

use crate::certs::{anchors, identity};
use crate::net::{Running, bind_loopback, shutdown_on};

/// A Discount that counts what it is asked, delegating the answers to the real service. With
/// `original_style`, it behaves like a server built from the original proto: `ApplyDiscount`
/// only, `UNIMPLEMENTED` for the batch RPC.
#[derive(Debug, Default, Clone)]
pub struct CountingDiscount {
    /// Answer the batch RPC with `UNIMPLEMENTED`.
    pub original_style: bool,
    /// `ApplyDiscount` calls received.
    pub unary_calls: Arc<AtomicUsize>,
    /// `ApplyDiscountBatch` calls received.
    pub batch_calls: Arc<AtomicUsize>,
    /// Products asked about, over all calls answered.
    pub products_asked: Arc<AtomicUsize>,
    /// The `x-request-id` metadata of every call, in arrival order.
    pub request_ids: Arc<std::sync::Mutex<Vec<String>>>,
    /// When each call arrived, in order.
    pub arrivals: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
    /// Never answer a discount RPC: a replica whose RPCs hang while it still completes TLS,
    /// speaks HTTP/2 and answers health checks (`UNIMPLEMENTED`, which counts as serving).
    pub hang: bool,
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

    async fn hang_if_asked(&self) {
        if self.hang {
            std::future::pending::<()>().await;
        }
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
        self.hang_if_asked().await;
        if self.original_style {
            // What a server generated from the original proto answers for an unknown method.
            return Err(Status::unimplemented("unknown method ApplyDiscountBatch"));
        }
        self.products_asked
            .fetch_add(request.get_ref().products.len(), Ordering::SeqCst);
        discount_service::service::apply_batch(request.into_inner()).map(Response::new)
    }
}

/// Starts `service` over the same mutual TLS as the real Discount.
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
    Running::spawn(addr, |stopped| async move {
        tonic::transport::Server::builder()
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
