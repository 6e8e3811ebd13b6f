//! Catalog's side of the Discount service.
//!
//! - The RPCs go to one or more Discount replicas, balanced client-side (see
//!   [`crate::balancer`]): one long-lived HTTP/2 connection over mutual TLS per replica,
//!   created on first use and shared by every HTTP request (HTTP/2 multiplexes their RPCs).
//!   Connections reopen on their own, so Catalog starts, and serves full prices, while
//!   Discount is down. The transport is hyper's pooled HTTP/2 client rather than tonic's
//!   `Channel`: the same connection handling without the `Channel`'s request buffer, a task
//!   hand-off per RPC that showed up in the profile under load.
//! - **Coalescing** (group commit): at most [`CoalesceSettings::rpcs_in_flight`] RPCs are in
//!   flight. A request that finds none in flight sends its own `ApplyDiscountPrices` (one
//!   group) at once; requests arriving while one is in flight queue (another slot opens when
//!   a batch's worth is waiting or those in flight are slow), and the next free slot sends
//!   them all as one `ApplyDiscountPrices`, a group per request. At low load nothing waits;
//!   under load the fixed cost of an RPC is shared by every request in it. The queue is
//!   bounded: a full queue is full prices at once. Each product travels as its id and price,
//!   each answer as its discount: a few bytes per product.
//! - A Discount built from an older proto gets what it knows: each request on its own
//!   (`ApplyDiscountBatch`), or one `ApplyDiscount` per product, bounded per request and
//!   overall ([`FallbackSettings`]); the newer RPCs are tried again after a minute.
//! - Everything for one HTTP request runs under its own deadline, retries on another replica
//!   included; any failure is a [`DiscountFailure`] that the HTTP layer turns into full prices
//!   plus a header, never into a dropped product or a 5xx.
//!
//! Here: the settings and [`DiscountGateway`]. `groups` sends coalesced RPCs over the
//! `coalesce` queue, `calls` sends one request's RPCs on their own, `retry` runs one RPC over
//! the replicas, `wire` builds the messages and checks the answers, `failure` holds
//! [`DiscountFailure`].

mod calls;
mod coalesce;
mod failure;
mod groups;
mod retry;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use mtls::Reloadable;
use service_runtime::otel::{KeyValue, Parent, SpanKind};

use crate::balancer::{ReplicaSettings, Replicas};
use crate::catalog::{Customer, DiscountView, PriceTag};
use calls::Calls;
use groups::Coalesced;
use wire::{extract, to_group};

pub use calls::{BATCH_RETRY_AFTER, FallbackSettings};
pub use coalesce::CoalesceSettings;
pub use failure::DiscountFailure;
pub use groups::PRICES_RETRY_AFTER;

// The address type and the set-up error belong to the balancer, which is set up from them;
// they are part of this client's settings and errors too, so they can be named from here.
pub use crate::balancer::{AddrError, ClientError, DEFAULT_PORT, DiscountAddr};

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
    /// How concurrent requests share RPCs.
    pub coalescing: CoalesceSettings,
    /// Bounds on per-product calls to an original-style Discount.
    pub fallback: FallbackSettings,
}

impl DiscountSettings {
    /// Settings for `addrs` with every other value at its default (250 ms deadline).
    pub fn new(addrs: Vec<DiscountAddr>) -> Self {
        Self {
            addrs,
            tls_name: None,
            timeout: Duration::from_millis(250),
            replicas: ReplicaSettings::default(),
            coalescing: CoalesceSettings::default(),
            fallback: FallbackSettings::default(),
        }
    }
}

/// The shared Discount client. Cheap to clone: clones share the replicas, connections and
/// the coalescing queue.
#[derive(Debug, Clone)]
pub struct DiscountGateway {
    sender: Arc<Coalesced>,
    timeout: Duration,
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
        let calls = Calls::new(replicas, settings.fallback);
        Ok(Self {
            sender: Coalesced::new(calls, settings.coalescing),
            timeout: settings.timeout,
        })
    }

    /// The discount for each of `products` (same order) for `customer`; `None` where the
    /// customer gets no discount. Traced as a `discount` span under `parent`, with the RPC's
    /// spans below it; a failure marks the span with its reason.
    pub async fn discounts(
        &self,
        customer: &Customer,
        products: &[PriceTag],
        request_id: &http::HeaderValue,
        parent: &Parent,
    ) -> Result<Vec<Option<DiscountView>>, DiscountFailure> {
        if products.is_empty() {
            return Ok(Vec::new());
        }
        let mut span = parent.start(SpanKind::Internal, || {
            (
                "discount".into(),
                vec![
                    KeyValue::new("catalog.customer.id", i64::from(customer.id)),
                    KeyValue::new("catalog.products", products.len() as i64),
                ],
            )
        });
        let answer = self
            .ask(customer, products, request_id, &span.parent())
            .await;
        if let Err(failure) = &answer {
            span.set(|| {
                [KeyValue::new(
                    "catalog.discount.unavailable",
                    failure.reason(),
                )]
            });
            span.fail(failure.to_string());
        }
        answer
    }

    async fn ask(
        &self,
        customer: &Customer,
        products: &[PriceTag],
        request_id: &http::HeaderValue,
        parent: &Parent,
    ) -> Result<Vec<Option<DiscountView>>, DiscountFailure> {
        let group = to_group(customer.id, products);
        // One deadline for everything, waiting and retries included. The last attempt's timer
        // ends at this very instant, so it always fires (and takes a silent replica out)
        // before the overall timeout below could cut the work off.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let answer = tokio::time::timeout_at(
            deadline,
            self.sender.submit(group, request_id, deadline, parent),
        )
        .await
        .map_err(|_| DiscountFailure::DeadlineExceeded(self.timeout))?
        .map_err(|status| DiscountFailure::from_status(&status, self.timeout))?;
        extract(products, answer)
    }

    /// HTTP requests waiting now for a coalesced RPC.
    pub fn queued(&self) -> usize {
        self.sender.queued()
    }

    /// Whether at least one Discount replica is in rotation: it answered its last health check
    /// `SERVING` (or, original-style, without the health service, answered at all) and no RPC
    /// has failed on it since. Read from the balancer's state, which its health checks keep
    /// current: nothing is sent, so readiness probes cost Discount nothing.
    pub fn ready(&self) -> Result<(), DiscountFailure> {
        self.sender
            .calls()
            .replicas()
            .ready_now()
            .map_err(DiscountFailure::Unavailable)
    }
}
