//! Catalog's side of the Discount service.
//!
//! - The RPCs go to one or more Discount replicas, balanced client-side (see
//!   [`crate::replicas`]): one long-lived HTTP/2 connection over mutual TLS per replica,
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

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ecommerce_proto::pb::{self, discount_client::DiscountClient};
use mtls::Reloadable;
use tonic::{Code, Request, Status};

use crate::catalog::{Customer, DiscountView, PriceTag};
use crate::replicas::{NoPick, ReplicaSettings, Replicas, Transport, error_chain};

// The address type and the set-up error belong to the replicas, which are set up from them;
// they are part of this client's settings and errors too, so they can be named from here.
pub use crate::replicas::{AddrError, ClientError, DEFAULT_PORT, DiscountAddr};

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

/// Why a discount could not be applied. The HTTP layer serves full prices instead.
#[derive(Debug, thiserror::Error)]
pub enum DiscountFailure {
    #[error("Discount did not answer within {0:?}")]
    DeadlineExceeded(Duration),
    #[error("Discount is unreachable: {0}")]
    Unavailable(String),
    #[error("Discount refused the request: {0}")]
    Rejected(String),
    #[error("Discount sent an unusable answer: {0}")]
    BadResponse(String),
}

impl DiscountFailure {
    /// Short, stable reason for the response header, logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DiscountFailure::DeadlineExceeded(_) => "deadline-exceeded",
            DiscountFailure::Unavailable(_) => "unavailable",
            DiscountFailure::Rejected(_) => "rejected",
            DiscountFailure::BadResponse(_) => "bad-response",
        }
    }

    fn from_status(status: &Status, timeout: Duration) -> Self {
        match status.code() {
            Code::DeadlineExceeded | Code::Cancelled => DiscountFailure::DeadlineExceeded(timeout),
            Code::Unavailable => DiscountFailure::Unavailable(error_chain(status)),
            _ => DiscountFailure::Rejected(error_chain(status)),
        }
    }
}

/// What a failed RPC says about its replica, and so what to do next. (Discount's RPCs are pure
/// functions of their input, so trying one again elsewhere is always safe.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The replica is unreachable or did not answer in time: take it out of rotation, try
    /// another.
    Sick(&'static str),
    /// One RPC went wrong there (an internal error, overload, a cancelled stream): try another,
    /// but one bad answer is no reason to take the replica out; its health checks decide.
    TryElsewhere,
    /// The request itself was refused (invalid, not allowed, not implemented): the same
    /// answer would come from every replica.
    Final,
}

fn verdict(status: &Status) -> Verdict {
    match status.code() {
        Code::Unavailable => Verdict::Sick("unavailable"),
        Code::Unknown
        | Code::Internal
        | Code::Cancelled
        | Code::DataLoss
        | Code::ResourceExhausted
        | Code::DeadlineExceeded => Verdict::TryElsewhere,
        _ => Verdict::Final,
    }
}

/// At most this many replicas are tried for one RPC.
const MAX_ATTEMPTS: usize = 3;

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

    /// Runs `rpc` on a replica; when the replica fails (unreachable, reset, or silent for
    /// half the time left), takes it out of rotation and tries another, all within the one
    /// deadline.
    async fn call<T, F, Fut>(&self, deadline: tokio::time::Instant, rpc: F) -> Result<T, Status>
    where
        F: Fn(DiscountClient<Transport>, Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let replicas = self.replicas.known().await;
        let mut tried = Vec::new();
        let mut last_failure = None;
        while tried.len() < MAX_ATTEMPTS {
            let picked = match self.replicas.pick(&replicas, &tried) {
                Ok(picked) => picked,
                Err(NoPick::NoneLeft) => break,
                Err(NoPick::TrialInFlight) => {
                    metrics::counter!("catalog_discount_short_circuited_total").increment(1);
                    last_failure.get_or_insert_with(|| {
                        Status::unavailable(
                            "every Discount replica is out of rotation, and another request \
                             is trying one of them now",
                        )
                    });
                    break;
                }
            };
            let replica = picked.replica;
            if !tried.is_empty() {
                metrics::counter!("catalog_discount_retries_total").increment(1);
            }
            tried.push(replica.addr);
            // Half the time left when another replica could still be tried, else all of it;
            // Discount is told the same (grpc-timeout), so it never works past Catalog's wait.
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let can_retry = picked.others_in_rotation > 0 && tried.len() < MAX_ATTEMPTS;
            let attempt_timeout = if can_retry { remaining / 2 } else { remaining };
            let in_flight = replica.start();
            let outcome = tokio::time::timeout(
                attempt_timeout,
                rpc(replica.client.clone(), attempt_timeout),
            )
            .await;
            drop(in_flight);
            let timed_out = outcome.is_err();
            let status = match outcome {
                Ok(Ok(answer)) => {
                    if picked.last_resort.is_some() {
                        self.replicas.trial_succeeded(&replica);
                    }
                    return Ok(answer);
                }
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded(format!(
                    "replica {} did not answer within {attempt_timeout:?}",
                    replica.addr
                )),
            };
            match verdict(&status) {
                Verdict::Final => return Err(status),
                _ if timed_out => self
                    .replicas
                    .take_out(&replica, "timeout", status.message()),
                Verdict::Sick(why) => self.replicas.take_out(&replica, why, &error_chain(&status)),
                Verdict::TryElsewhere => {}
            }
            last_failure = Some(status);
            // A replica already out of rotation is a last resort: when it fails too, every
            // replica is failing, and trying the others again would only multiply the load.
            if picked.last_resort.is_some() {
                break;
            }
        }
        Err(last_failure.unwrap_or_else(|| Status::unavailable(self.replicas.why_none())))
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
        self.call(deadline, |mut client, timeout| {
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
            self.call(deadline, move |mut client, timeout| {
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

/// A request carrying Catalog's deadline (`grpc-timeout`, so Discount knows when Catalog stops
/// waiting) and the HTTP request's id.
fn request<T>(message: T, request_id: &http::HeaderValue, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    // Request ids are checked to be visible ASCII, so they are valid ASCII metadata.
    if let Ok(id) = tonic::metadata::AsciiMetadataValue::try_from(request_id.as_bytes()) {
        request
            .metadata_mut()
            .insert(service_runtime::request_id::HEADER, id);
    }
    request
}

/// What Discount is sent about a product: its id and price. Slug and description stay empty
/// (valid proto3, and the rule ignores them): Catalog takes only `discount_value` from the
/// answer, so sending them would only double the bytes on the wire.
fn to_pb(product: &PriceTag) -> pb::Product {
    pb::Product {
        id: product.id,
        price_in_cents: product.price_in_cents,
        ..pb::Product::default()
    }
}

/// Takes only the discounts from Discount's answer, after checking that it answers for exactly
/// the products asked about, in order, with plausible prices. Catalog stays the source of truth
/// for everything else about a product.
fn extract(
    asked: &[PriceTag],
    answer: Vec<pb::Product>,
) -> Result<Vec<Option<DiscountView>>, DiscountFailure> {
    if answer.len() != asked.len() {
        return Err(DiscountFailure::BadResponse(format!(
            "{} products back for {} sent",
            answer.len(),
            asked.len()
        )));
    }
    asked
        .iter()
        .zip(answer)
        .map(|(asked, got)| {
            if got.id != asked.id {
                return Err(DiscountFailure::BadResponse(format!(
                    "product {} came back as product {}",
                    asked.id, got.id
                )));
            }
            match got.discount_value {
                None => Ok(None),
                Some(d)
                    if (0..=asked.price_in_cents).contains(&d.value_in_cents)
                        && (0.0..=1.0).contains(&d.pct) =>
                {
                    Ok(Some(DiscountView {
                        pct: d.pct,
                        value_in_cents: d.value_in_cents,
                    }))
                }
                Some(d) => Err(DiscountFailure::BadResponse(format!(
                    "product {} discounted to {} cents from {}",
                    asked.id, d.value_in_cents, asked.price_in_cents
                ))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: i32, price_in_cents: i32) -> PriceTag {
        PriceTag { id, price_in_cents }
    }

    fn answer(id: i32, value: Option<i32>) -> pb::Product {
        pb::Product {
            id,
            discount_value: value.map(|value_in_cents| pb::DiscountValue {
                pct: 0.1,
                value_in_cents,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn answers_must_match_what_was_asked() {
        let asked = [product(1, 100), product(2, 200)];
        let ok = extract(&asked, vec![answer(1, Some(90)), answer(2, None)]).unwrap();
        assert_eq!(ok[0].map(|d| d.value_in_cents), Some(90));
        assert_eq!(ok[1], None);

        for bad in [
            vec![answer(1, Some(90))],
            vec![answer(2, None), answer(1, None)],
            vec![answer(1, Some(101)), answer(2, None)],
            vec![answer(1, Some(-1)), answer(2, None)],
            vec![
                pb::Product {
                    discount_value: Some(pb::DiscountValue {
                        pct: f32::NAN,
                        value_in_cents: 90,
                    }),
                    ..answer(1, None)
                },
                answer(2, None),
            ],
        ] {
            assert!(matches!(
                extract(&asked, bad),
                Err(DiscountFailure::BadResponse(_))
            ));
        }
    }
}
