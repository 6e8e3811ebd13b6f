//! The RPCs for one HTTP request's products, sent on their own: `ApplyDiscountBatch`, or, for a
//! Discount built from the original proto (which answers it `UNIMPLEMENTED`), one
//! `ApplyDiscount` per product, with bounded concurrency per request and overall.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ecommerce_proto::pb;
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tonic::{Code, Status};

use super::retry::{self, Origin};
use super::wire::{Reply, to_batch};
use crate::balancer::Replicas;

/// How long Catalog uses per-product calls after Discount said it has no batch RPC, before it
/// tries the batch RPC again (Discount may have been upgraded meanwhile).
pub const BATCH_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Bounds on the per-product calls made to an original-style Discount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallbackSettings {
    /// `ApplyDiscount` calls in flight at once for one HTTP request.
    pub per_request: usize,
    /// `ApplyDiscount` calls in flight at once in all.
    pub max_in_flight: usize,
}

impl Default for FallbackSettings {
    fn default() -> Self {
        Self {
            per_request: 8,
            max_in_flight: 64,
        }
    }
}

/// An RPC Discount may turn out not to have: off for a while after it answered
/// `UNIMPLEMENTED`, then tried again.
#[derive(Debug)]
pub(super) struct OffSwitch {
    /// Milliseconds after `epoch` before which the RPC is not tried; 0 = always try.
    off_until_ms: AtomicU64,
    epoch: Instant,
}

impl OffSwitch {
    pub(super) fn new() -> Self {
        Self {
            off_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub(super) fn is_on(&self) -> bool {
        let until = self.off_until_ms.load(Ordering::Relaxed);
        until == 0 || self.elapsed_ms() >= until
    }

    pub(super) fn turn_off_for(&self, pause: Duration) {
        let until = self.elapsed_ms() + u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
        self.off_until_ms.store(until.max(1), Ordering::Relaxed);
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Sends one request's products to Discount on their own.
#[derive(Debug)]
pub(super) struct Calls {
    replicas: Arc<Replicas>,
    batch: OffSwitch,
    fallback_per_request: usize,
    /// Overall bound on per-product calls in flight.
    fallback_permits: Semaphore,
}

impl Calls {
    pub(super) fn new(replicas: Arc<Replicas>, fallback: FallbackSettings) -> Self {
        Self {
            replicas,
            batch: OffSwitch::new(),
            fallback_per_request: fallback.per_request.max(1),
            fallback_permits: Semaphore::new(fallback.max_in_flight.max(1)),
        }
    }

    pub(super) fn replicas(&self) -> &Replicas {
        &self.replicas
    }

    /// Discount's answer for `group`'s products (same order), within `deadline`, from a
    /// Discount without `ApplyDiscountPrices`: one `ApplyDiscountBatch`, or per-product calls
    /// where Discount has no batch RPC either.
    pub(super) async fn one_group(
        &self,
        group: &pb::PriceGroup,
        origin: Origin<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<Reply, Status> {
        let group = to_batch(group);
        if self.batch.is_on() {
            match self.batch_rpc(&group, origin, deadline).await {
                Err(status) if status.code() == Code::Unimplemented => {
                    self.batch.turn_off_for(BATCH_RETRY_AFTER);
                    tracing::info!(
                        "Discount has no ApplyDiscountBatch (original-style server); \
                         using concurrent ApplyDiscount calls"
                    );
                }
                answer => return answer.map(Reply::Products),
            }
        }
        self.one_by_one(group, origin, deadline)
            .await
            .map(Reply::Products)
    }

    async fn batch_rpc(
        &self,
        group: &pb::BatchDiscountRequest,
        origin: Origin<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<pb::Product>, Status> {
        metrics::histogram!("catalog_discount_requests_per_rpc").record(1.0);
        retry::call(
            &self.replicas,
            deadline,
            "ApplyDiscountBatch",
            origin,
            |mut client, stamp| {
                let request = stamp.request(group.clone());
                async move {
                    Ok(client
                        .apply_discount_batch(request)
                        .await?
                        .into_inner()
                        .products)
                }
            },
        )
        .await
    }

    /// One `ApplyDiscount` per product, at most `fallback_per_request` at once for this
    /// request and `fallback_permits` in all; answers in the products' order.
    async fn one_by_one(
        &self,
        group: pb::BatchDiscountRequest,
        origin: Origin<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<pb::Product>, Status> {
        let pb::BatchDiscountRequest { customer, products } = group;
        let calls = products.into_iter().map(|product| {
            let message = pb::DiscountRequest {
                customer: customer.clone(),
                product: Some(product),
            };
            async move {
                let _permit = tokio::time::timeout_at(deadline, self.fallback_permits.acquire())
                    .await
                    .map_err(|_| {
                        Status::deadline_exceeded(
                            "no room for another ApplyDiscount call before the deadline",
                        )
                    })?
                    .map_err(|_| Status::unavailable("Catalog is shutting down"))?;
                retry::call(
                    &self.replicas,
                    deadline,
                    "ApplyDiscount",
                    origin,
                    |mut client, stamp| {
                        let request = stamp.request(message.clone());
                        async move {
                            let response = client.apply_discount(request).await?.into_inner();
                            response.product.ok_or_else(|| {
                                Status::internal("DiscountResponse without a product")
                            })
                        }
                    },
                )
                .await
            }
        });
        futures_util::stream::iter(calls)
            .buffered(self.fallback_per_request)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }
}
