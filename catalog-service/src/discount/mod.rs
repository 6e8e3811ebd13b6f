//! Catalog's side of the Discount service.
//!
//! - The RPCs go to one or more Discount replicas, balanced client-side (see
//!   [`crate::balancer`]): one long-lived HTTP/2 connection over mutual TLS per replica,
//!   created on first use and shared by every HTTP request (HTTP/2 multiplexes their RPCs).
//!   Connections reopen on their own, so Catalog starts, and serves full prices, while
//!   Discount is down. The transport is hyper's pooled HTTP/2 client rather than tonic's
//!   `Channel`: the same connection handling without the `Channel`'s request buffer, a task
//!   hand-off per RPC that showed up in the profile under load.
//! - One `ApplyDiscountBatch` RPC per HTTP request. A Discount that answers `UNIMPLEMENTED`
//!   (built from the original proto) gets concurrent `ApplyDiscount` calls instead, and the
//!   batch RPC is tried again after [`BATCH_RETRY_AFTER`].
//! - Everything runs under one deadline, retries on another replica included; any failure is
//!   a [`DiscountFailure`] that the HTTP layer turns into full prices plus a header, never into
//!   a dropped product or a 5xx.
//!
//! Here: the settings and [`DiscountGateway`], which asks for the batch and falls back to
//! per-product calls. `retry` runs one RPC over the replicas, `wire` builds the messages and
//! checks the answers, `failure` holds [`DiscountFailure`].

mod failure;
mod retry;
mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ecommerce_proto::pb;
use mtls::Reloadable;
use tonic::{Code, Status};

use crate::balancer::{ReplicaSettings, Replicas};
use crate::catalog::{Customer, DiscountView, PriceTag};
use wire::{extract, request, to_pb};

pub use failure::DiscountFailure;

// The address type and the set-up error belong to the balancer, which is set up from them;
// they are part of this client's settings and errors too, so they can be named from here.
pub use crate::balancer::{AddrError, ClientError, DEFAULT_PORT, DiscountAddr};

/// How long Catalog uses per-product calls after Discount said it has no batch RPC, before it
/// tries the batch RPC again (Discount may have been upgraded meanwhile).
pub const BATCH_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How to reach Discount.
#[derive(Debug, Clone)]
pub struct DiscountSettings {
    /// Where Discount's replicas are: IP addresses, and names that resolve to one or more.
    pub addrs: Vec<DiscountAddr>,
    /// The name Discount's certificates must carry [default: the host of each address].
    pub tls_name: Option<String>,
    /// Deadline for the whole discount step of one HTTP request.
    pub timeout: Duration,
    /// How replicas are found and watched.
    pub replicas: ReplicaSettings,
}

/// The shared Discount client. Cheap to clone: clones share the replicas and connections.
#[derive(Debug, Clone)]
pub struct DiscountGateway {
    replicas: Arc<Replicas>,
    timeout: Duration,
    /// Milliseconds after `epoch` before which the batch RPC is not tried; 0 = always try.
    batch_off_until_ms: Arc<AtomicU64>,
    epoch: Instant,
}

impl DiscountGateway {
    /// Sets up the replicas and starts watching them. Connections open on first use and
    /// reopen by themselves; this never waits for Discount. Must be called inside a Tokio
    /// runtime.
    pub fn connect_lazy(
        settings: &DiscountSettings,
        tls: Arc<Reloadable<rustls::ClientConfig>>,
    ) -> Result<Self, ClientError> {
        let replicas = Replicas::new(
            &settings.addrs,
            settings.tls_name.as_deref(),
            tls,
            settings.replicas.clone(),
        )?;
        replicas.start();
        Ok(Self {
            replicas,
            timeout: settings.timeout,
            batch_off_until_ms: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        })
    }

    /// The discount for each of `products` (same order) for `customer`; `None` where the
    /// customer gets no discount.
    pub async fn discounts(
        &self,
        customer: &Customer,
        products: &[PriceTag],
        request_id: &http::HeaderValue,
    ) -> Result<Vec<Option<DiscountView>>, DiscountFailure> {
        if products.is_empty() {
            return Ok(Vec::new());
        }
        let customer = pb::Customer {
            id: customer.id,
            first_name: customer.first_name.clone(),
            last_name: customer.last_name.clone(),
        };
        // One deadline for everything, retries included. The last attempt's timer ends at this
        // very instant, so it always fires (and takes a silent replica out) before the
        // overall timeout below could cut the work off.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let work = async {
            if self.batch_enabled() {
                match self
                    .batch(customer.clone(), products, request_id, deadline)
                    .await
                {
                    Err(status) if status.code() == Code::Unimplemented => {
                        self.disable_batch();
                        tracing::info!(
                            "Discount has no ApplyDiscountBatch (original-style server); \
                             using concurrent ApplyDiscount calls"
                        );
                    }
                    Err(status) => return Err(DiscountFailure::from_status(&status, self.timeout)),
                    Ok(answer) => return extract(products, answer),
                }
            }
            let answer = self
                .one_by_one(customer, products, request_id, deadline)
                .await
                .map_err(|status| DiscountFailure::from_status(&status, self.timeout))?;
            extract(products, answer)
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| DiscountFailure::DeadlineExceeded(self.timeout))?
    }

    /// Whether at least one Discount replica answers over mutual TLS and reports
    /// `ecommerce.Discount` SERVING, checked now, within the deadline. A Discount without the
    /// health service (original-style) counts as ready once it answers at all.
    pub async fn ready(&self) -> Result<(), DiscountFailure> {
        let check = self.replicas.check_now(self.timeout);
        match tokio::time::timeout(self.timeout, check).await {
            Err(_) => Err(DiscountFailure::DeadlineExceeded(self.timeout)),
            Ok(Ok(())) => Ok(()),
            Ok(Err(reasons)) => Err(DiscountFailure::Unavailable(reasons.join("; "))),
        }
    }

    async fn batch(
        &self,
        customer: pb::Customer,
        products: &[PriceTag],
        request_id: &http::HeaderValue,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<pb::Product>, Status> {
        let message = pb::BatchDiscountRequest {
            customer: Some(customer),
            products: products.iter().map(to_pb).collect(),
        };
        retry::call(&self.replicas, deadline, |mut client, timeout| {
            let request = request(message.clone(), request_id, timeout);
            async move {
                Ok(client
                    .apply_discount_batch(request)
                    .await?
                    .into_inner()
                    .products)
            }
        })
        .await
    }

    async fn one_by_one(
        &self,
        customer: pb::Customer,
        products: &[PriceTag],
        request_id: &http::HeaderValue,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<pb::Product>, Status> {
        let calls = products.iter().map(|product| {
            let message = pb::DiscountRequest {
                customer: Some(customer.clone()),
                product: Some(to_pb(product)),
            };
            retry::call(&self.replicas, deadline, move |mut client, timeout| {
                let request = request(message.clone(), request_id, timeout);
                async move {
                    let response = client.apply_discount(request).await?.into_inner();
                    response
                        .product
                        .ok_or_else(|| Status::internal("DiscountResponse without a product"))
                }
            })
        });
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .collect()
    }

    fn batch_enabled(&self) -> bool {
        let until = self.batch_off_until_ms.load(Ordering::Relaxed);
        until == 0 || self.elapsed_ms() >= until
    }

    fn disable_batch(&self) {
        let until = self.elapsed_ms() + BATCH_RETRY_AFTER.as_millis() as u64;
        self.batch_off_until_ms
            .store(until.max(1), Ordering::Relaxed);
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}
