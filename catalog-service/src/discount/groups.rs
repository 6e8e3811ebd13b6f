//! Coalesced sending: each request either sends its own RPC at once or waits in the
//! [`Coalescer`]'s queue, and whoever frees a slot, or queues the request that makes a batch's
//! worth, sends what is queued as one `ApplyDiscountPrices` RPC (one group per HTTP request),
//! handing each request its own answer.
//! A request that goes out at once is an `ApplyDiscountPrices` of one group: one RPC, one
//! message shape, whatever the load.
//!
//! Every request keeps its own deadline: it stops waiting when its deadline passes, while the
//! RPC goes on for the others. A Discount that refuses `ApplyDiscountPrices` (`UNIMPLEMENTED`
//! from a server built before it, or `PERMISSION_DENIED` from an allow-list naming only the
//! older RPCs) gets each group on its own instead, as [`Calls::one_group`] sends it, and the
//! RPC is tried again after [`PRICES_RETRY_AFTER`]; a batch refused as too large is sent group
//! by group the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ecommerce_proto::pb;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tonic::{Code, Status};

use service_runtime::otel::{KeyValue, Parent, SpanKind};

use super::calls::{Calls, OffSwitch};
use super::coalesce::{Admission, CoalesceSettings, Coalescer};
use super::retry::{self, Origin};
use super::wire::Reply;

/// How long Catalog sends each request on its own after Discount said it has no
/// `ApplyDiscountPrices` (or may not be asked it), before it tries that RPC again.
pub const PRICES_RETRY_AFTER: Duration = Duration::from_secs(60);

type Answer = Result<Reply, Status>;

/// Groups Discount would not take in one `ApplyDiscountPrices`, handed back to be sent on
/// their own.
struct Refused(Vec<pb::PriceGroup>);

/// When a batch is sent request by request (to a server without the groups RPC), at most this
/// many of those RPCs are in flight at once for one batch.
const EACH_ON_ITS_OWN_AT_ONCE: usize = 8;

/// A request waiting for a coalesced RPC.
#[derive(Debug)]
struct Queued {
    group: pb::PriceGroup,
    request_id: http::HeaderValue,
    deadline: tokio::time::Instant,
    reply: oneshot::Sender<Answer>,
    /// The request's discount span: parent of the RPC's spans when it leads the batch, linked
    /// from them otherwise.
    parent: Parent,
    /// When it was queued, if traced: its wait is a span from then until its batch is sent.
    queued_at: Option<std::time::SystemTime>,
}

/// The coalescing sender shared by every HTTP request.
#[derive(Debug)]
pub(super) struct Coalesced {
    calls: Calls,
    /// Whether `ApplyDiscountPrices` is tried.
    prices: OffSwitch,
    coalescer: Coalescer<Queued>,
}

impl Coalesced {
    pub(super) fn new(calls: Calls, settings: CoalesceSettings) -> Arc<Self> {
        Arc::new(Self {
            calls,
            prices: OffSwitch::new(),
            coalescer: Coalescer::new(settings, is_waiting, products),
        })
    }

    pub(super) fn calls(&self) -> &Calls {
        &self.calls
    }

    pub(super) fn queued(&self) -> usize {
        self.coalescer.queued()
    }

    /// Sends `batch` on the slot the coalescer gave it at `started`, in a task of its own that
    /// goes on sending while requests keep queueing, then frees the slot.
    fn hand_on(self: &Arc<Self>, started: Instant, batch: Vec<Queued>) {
        // The guard is made here, not in the task: a task dropped before its first poll (the
        // runtime is shutting down) still frees the slot.
        let held = Held {
            sender: self.clone(),
            started,
            freed: false,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(drive(held, batch));
            }
            // No runtime: only a slot dropped as the process stops gets here (requests are
            // served on the runtime). Dropping the batch (and `held`, which frees the slot and
            // anything nobody else will send) ends those requests' waits at once, with full
            // prices.
            Err(_) => drop(batch),
        }
    }

    /// Discount's answer for `group` (same order as its products): sent now if a slot is free,
    /// else with the next coalesced RPC. The RPC is bounded by `deadline`; a queued request's
    /// wait is bounded by its caller (dropping this future ends it). A full queue is answered
    /// at once with `RESOURCE_EXHAUSTED`. The RPC's spans join `parent`'s trace.
    pub(super) async fn submit(
        self: &Arc<Self>,
        group: pb::PriceGroup,
        request_id: &http::HeaderValue,
        deadline: tokio::time::Instant,
        parent: &Parent,
    ) -> Answer {
        let mut group = Some(group);
        let mut waiting = None;
        let now = Instant::now();
        let admission = self.coalescer.admit(now, || {
            let (reply, answer) = oneshot::channel();
            waiting = Some(answer);
            Queued {
                group: group.take().unwrap_or_default(),
                request_id: request_id.clone(),
                deadline,
                reply,
                parent: parent.clone(),
                queued_at: parent.is_traced().then(std::time::SystemTime::now),
            }
        });
        match admission {
            Admission::Lead => {
                // Held across the RPC; dropped (even if this request is cancelled), it hands
                // the slot to the requests that queued meanwhile.
                let _slot = Slot::new(self.clone(), now);
                // `admit` runs the closure only when it queues.
                let Some(group) = group else {
                    return Err(Status::internal("coalescer admission out of step"));
                };
                let origin = Origin {
                    request_id,
                    parent,
                    links: &[],
                };
                self.on_its_own(group, origin, deadline).await
            }
            // The caller bounds the wait by the deadline (one timer per request); when it
            // stops waiting, the dropped receiver takes this request out of the next batch.
            Admission::Queued => wait(waiting).await,
            Admission::Send(batch) => {
                // The slot is handed on before anything else can fail or be cancelled.
                self.hand_on(now, batch);
                wait(waiting).await
            }
            Admission::Full => {
                metrics::counter!("catalog_discount_queue_full_total").increment(1);
                Err(Status::resource_exhausted(
                    "too many requests are waiting for Discount",
                ))
            }
        }
    }

    /// Sends `batch` as one RPC and hands each request its answer.
    async fn send(&self, batch: Vec<Queued>) {
        let requests = batch.len() as i64;
        for queued in &batch {
            if let Some(queued_at) = queued.queued_at {
                // Started and ended here, outside the coalescer's lock: the wait is over.
                queued.parent.start_at(SpanKind::Internal, queued_at, || {
                    (
                        "discount queue wait".into(),
                        vec![KeyValue::new("catalog.discount.requests_in_rpc", requests)],
                    )
                });
            }
        }
        if !self.prices.is_on() {
            self.each_on_its_own(batch).await;
            return;
        }
        let deadline = batch
            .iter()
            .map(|queued| queued.deadline)
            .max()
            .unwrap_or_else(tokio::time::Instant::now);
        let request_id = batch[0].request_id.clone();
        // The RPC's spans belong to the first sampled request's trace and link to every
        // request's (see docs/operations.md, "Tracing").
        let leader = batch
            .iter()
            .find(|queued| queued.parent.is_sampled())
            .unwrap_or(&batch[0])
            .parent
            .clone();
        let links: Vec<Parent> = if leader.is_traced() {
            batch.iter().map(|queued| queued.parent.clone()).collect()
        } else {
            Vec::new()
        };
        let mut groups = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for queued in batch {
            groups.push(queued.group);
            waiting.push((
                queued.reply,
                queued.request_id,
                queued.deadline,
                queued.parent,
            ));
        }
        let origin = Origin {
            request_id: &request_id,
            parent: &leader,
            links: &links,
        };
        match self.prices_rpc(groups, origin, deadline).await {
            Ok(answers) => {
                for ((reply, ..), answer) in waiting.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
            Err(Refused(groups)) => {
                let batch = groups
                    .into_iter()
                    .zip(waiting)
                    .map(|(group, (reply, request_id, deadline, parent))| Queued {
                        group,
                        request_id,
                        deadline,
                        reply,
                        parent,
                        queued_at: None,
                    })
                    .collect();
                self.each_on_its_own(batch).await;
            }
        }
    }

    /// One request's group sent at once: an `ApplyDiscountPrices` of one group, or, from a
    /// Discount without it, the older RPCs.
    async fn on_its_own(
        &self,
        group: pb::PriceGroup,
        origin: Origin<'_>,
        deadline: tokio::time::Instant,
    ) -> Answer {
        if !self.prices.is_on() {
            return self.calls.one_group(&group, origin, deadline).await;
        }
        match self.prices_rpc(vec![group], origin, deadline).await {
            Ok(mut answers) => answers
                .pop()
                .unwrap_or_else(|| Err(Status::internal("no answer for the group sent"))),
            Err(Refused(groups)) => match groups.first() {
                Some(group) => self.calls.one_group(group, origin, deadline).await,
                None => Err(Status::internal("the group sent was lost")),
            },
        }
    }

    /// One `ApplyDiscountPrices` carrying `groups`: each group's answer, in order (the RPC's
    /// error for each, if it failed), or [`Refused`] when Discount turned the RPC down in a way
    /// that says nothing about the groups in it.
    async fn prices_rpc(
        &self,
        groups: Vec<pb::PriceGroup>,
        origin: Origin<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Answer>, Refused> {
        let sent = groups.len();
        let message = pb::PricesRequest { groups };
        let sent_at = Instant::now();
        let answer = retry::call(
            self.calls.replicas(),
            deadline,
            "ApplyDiscountPrices",
            origin,
            |mut client, stamp| {
                let request = stamp.request(message.clone());
                async move { Ok(client.apply_discount_prices(request).await?.into_inner()) }
            },
        )
        .await;
        let every = |status: Status| (0..sent).map(|_| Err(status.clone())).collect();
        if !matches!(&answer, Err(status) if refuses_the_rpc(status)) {
            // A refused RPC is counted by the calls that replace it.
            metrics::histogram!("catalog_discount_requests_per_rpc").record(sent as f64);
        }
        match answer {
            Ok(response) if response.results.len() == sent => {
                // How long an RPC usually takes decides when another may open beside it.
                self.coalescer.record(sent_at.elapsed());
                Ok(response.results.into_iter().map(group_answer).collect())
            }
            // Results are matched to requests by position: with a count that does not match,
            // no position can be trusted, and no request gets someone else's prices.
            Ok(response) => Ok(every(Status::internal(format!(
                "ApplyDiscountPrices answered {} groups for {sent} sent",
                response.results.len(),
            )))),
            Err(status) if refuses_the_rpc(&status) => {
                // A server from before this RPC (UNIMPLEMENTED), an allow-list that names the
                // older RPCs but not this one (PERMISSION_DENIED), or a batch too large for
                // this server: every request still gets its discount, each on its own.
                if matches!(status.code(), Code::Unimplemented | Code::PermissionDenied) {
                    self.prices.turn_off_for(PRICES_RETRY_AFTER);
                }
                tracing::info!(
                    code = ?status.code(),
                    "Discount refused ApplyDiscountPrices ({}); sending each request's \
                     discounts on their own",
                    status.message()
                );
                Err(Refused(message.groups))
            }
            Err(status) => Ok(every(status)),
        }
    }

    /// Each request of `batch` on its own RPC, at most [`EACH_ON_ITS_OWN_AT_ONCE`] at a time,
    /// each within its own deadline.
    async fn each_on_its_own(&self, batch: Vec<Queued>) {
        futures_util::stream::iter(batch)
            .for_each_concurrent(EACH_ON_ITS_OWN_AT_ONCE, |queued| async move {
                let origin = Origin {
                    request_id: &queued.request_id,
                    parent: &queued.parent,
                    links: &[],
                };
                let answer = self
                    .calls
                    .one_group(&queued.group, origin, queued.deadline)
                    .await;
                let _ = queued.reply.send(answer);
            })
            .await;
    }
}

/// Whether a refusal of a whole `ApplyDiscountPrices` says nothing about the requests in it,
/// so each can still be sent on its own.
fn refuses_the_rpc(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unimplemented
            | Code::PermissionDenied
            | Code::InvalidArgument
            | Code::ResourceExhausted
            | Code::OutOfRange
    )
}

/// One group's part of the answer: its products, or its own error.
fn group_answer(result: pb::PricesResult) -> Answer {
    match result.result {
        Some(pb::prices_result::Result::Discounted(discounts)) => Ok(Reply::Discounts(discounts)),
        Some(pb::prices_result::Result::Error(error)) => {
            Err(Status::new(Code::from(error.code), error.message))
        }
        None => Err(Status::internal("ApplyDiscountPrices left a group empty")),
    }
}

/// A slot of the coalescer, held while an RPC is in flight. When its holder is done (or
/// dropped), the slot goes on to the requests that queued meanwhile: a task sends them, and
/// keeps sending while more arrive, then frees the slot.
#[derive(Debug)]
struct Slot {
    sender: Arc<Coalesced>,
    /// When the slot's RPC started.
    started: Instant,
}

impl Slot {
    fn new(sender: Arc<Coalesced>, started: Instant) -> Self {
        Self { sender, started }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let now = Instant::now();
        if let Some(batch) = self.sender.coalescer.take_batch(self.started, now) {
            self.sender.hand_on(now, batch);
        }
    }
}

/// Sends batches on one slot while requests keep queueing; frees the slot when none are left.
async fn drive(mut held: Held, mut batch: Vec<Queued>) {
    loop {
        held.sender.send(batch).await;
        let now = Instant::now();
        match held.sender.coalescer.take_batch(held.started, now) {
            Some(next) => {
                batch = next;
                held.started = now;
            }
            None => {
                held.freed = true;
                return;
            }
        }
    }
}

/// A slot handed on to [`drive`]: frees it if the task ends early (dropped as the runtime
/// stops, even before it first runs).
struct Held {
    sender: Arc<Coalesced>,
    /// When the slot's current RPC started.
    started: Instant,
    /// The slot was freed by `take_batch` finding nothing to send.
    freed: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.freed {
            drop(self.sender.coalescer.release(self.started));
        }
    }
}

/// A queued request's answer, once its batch's RPC is done.
async fn wait(answer: Option<oneshot::Receiver<Answer>>) -> Answer {
    // `admit` runs the closure, which makes the receiver, exactly when it queues.
    let Some(answer) = answer else {
        return Err(Status::internal("coalescer admission out of step"));
    };
    answer.await.unwrap_or_else(|_| {
        Err(Status::unavailable(
            "the coalesced RPC carrying this request was dropped",
        ))
    })
}

/// A queued request's weight against the batch's product budget.
fn products(queued: &Queued) -> usize {
    queued.group.product_ids.len()
}

fn is_waiting(queued: &Queued) -> bool {
    !queued.reply.is_closed()
}
