//! One RPC on the balanced replicas ([`call`]): what a failure says about its replica, each
//! attempt's share of the deadline, the retry on another replica, and a client span per
//! attempt.

use std::future::Future;

use ecommerce_proto::pb::discount_client::DiscountClient;
use service_runtime::otel::{KeyValue, Parent, Span, SpanKind};
use tonic::{Code, Status};

use super::wire::Stamp;
use crate::balancer::{NoPick, Replicas, Transport, error_chain};

/// Whom an RPC works for: the HTTP request id it carries, and the trace its attempts' spans
/// join: `parent`'s, linked to the spans in `links` (the other requests of a coalesced RPC).
#[derive(Debug, Clone, Copy)]
pub(super) struct Origin<'a> {
    pub(super) request_id: &'a http::HeaderValue,
    pub(super) parent: &'a Parent,
    pub(super) links: &'a [Parent],
}

/// The gRPC service every RPC here belongs to, as spans name it (`rpc.service`).
const RPC_SERVICE: &str = "ecommerce.Discount";

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

/// Whether an RPC that failed with `status` ran out of the time given to its attempt, which
/// ended at `deadline`. Discount holds the same deadline (`grpc-timeout`) and ends an RPC
/// itself when it passes (`CANCELLED`, or `DEADLINE_EXCEEDED` from other servers); its clock
/// starts later, but on a busy machine its answer can still be read before this side's timer
/// is seen to fire. Either way the replica did not answer in time.
fn ran_out(status: &Status, deadline: tokio::time::Instant) -> bool {
    matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded)
        && tokio::time::Instant::now() >= deadline
}

/// At most this many replicas are tried for one RPC.
const MAX_ATTEMPTS: usize = 3;

/// Runs `rpc` (the RPC `method`) on a replica; when the replica fails (unreachable, reset, or
/// silent for half the time left), takes it out of rotation and tries another, all within the
/// one deadline. Each attempt is a client span (`rpc.*` and `server.*` attributes, the attempt's
/// number, its status) under `origin`'s parent, and its request carries that span's context.
pub(super) async fn call<T, F, Fut>(
    replicas: &Replicas,
    deadline: tokio::time::Instant,
    method: &'static str,
    origin: Origin<'_>,
    rpc: F,
) -> Result<T, Status>
where
    F: for<'s> Fn(DiscountClient<Transport>, Stamp<'s>) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let known = replicas.known().await;
    let mut tried = Vec::new();
    let mut last_failure = None;
    while tried.len() < MAX_ATTEMPTS {
        let picked = match replicas.pick(&known, &tried) {
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
        let mut span = attempt_span(origin, method, replica.addr, tried.len());
        let mut trace = Vec::new();
        span.inject(|name, value| trace.push((name, value)));
        let stamp = Stamp {
            timeout: attempt_timeout,
            request_id: origin.request_id,
            trace,
        };
        let attempt_deadline = tokio::time::Instant::now() + attempt_timeout;
        let in_flight = replica.start();
        let outcome =
            tokio::time::timeout_at(attempt_deadline, rpc(replica.client.clone(), stamp)).await;
        drop(in_flight);
        let timed_out = match &outcome {
            Err(_) => true,
            Ok(Err(status)) => ran_out(status, attempt_deadline),
            Ok(Ok(_)) => false,
        };
        let status = match outcome {
            Ok(Ok(answer)) => {
                span.set(|| [KeyValue::new("rpc.grpc.status_code", Code::Ok as i64)]);
                if picked.last_resort.is_some() {
                    replicas.trial_succeeded(&replica);
                }
                return Ok(answer);
            }
            Ok(Err(status)) => status,
            Err(_) => Status::deadline_exceeded(format!(
                "replica {} did not answer within {attempt_timeout:?}",
                replica.addr
            )),
        };
        span.set(|| [KeyValue::new("rpc.grpc.status_code", status.code() as i64)]);
        span.fail(format!("{:?}: {}", status.code(), status.message()));
        // The attempt is over: its span ends before the replica leaves the rotation, so it
        // covers none of the time out.
        span.end();
        match verdict(&status) {
            Verdict::Final => return Err(status),
            _ if timed_out => replicas.take_out(&replica, "timeout", status.message()),
            Verdict::Sick(why) => replicas.take_out(&replica, why, &error_chain(&status)),
            Verdict::TryElsewhere => {}
        }
        last_failure = Some(status);
        // A replica already out of rotation is a last resort: when it fails too, every
        // replica is failing, and trying the others again would only multiply the load.
        if picked.last_resort.is_some() {
            break;
        }
    }
    Err(last_failure.unwrap_or_else(|| Status::unavailable(replicas.why_none())))
}

/// The client span of one attempt (the `attempt`th) of `method` on the replica at `addr`.
fn attempt_span(
    origin: Origin<'_>,
    method: &'static str,
    addr: std::net::SocketAddr,
    attempt: usize,
) -> Span {
    origin
        .parent
        .start_linked(SpanKind::Client, origin.links, || {
            (
                format!("{RPC_SERVICE}/{method}").into(),
                vec![
                    KeyValue::new("rpc.system", "grpc"),
                    KeyValue::new("rpc.service", RPC_SERVICE),
                    KeyValue::new("rpc.method", method),
                    KeyValue::new("server.address", addr.ip().to_string()),
                    KeyValue::new("server.port", i64::from(addr.port())),
                    KeyValue::new("catalog.discount.attempt", attempt as i64),
                    KeyValue::new(
                        "catalog.discount.requests_in_rpc",
                        origin.links.len().max(1) as i64,
                    ),
                ],
            )
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use service_runtime::otel::Parent;
    use tokio::time::Instant;

    use super::*;
    use crate::balancer::{ReplicaSettings, unreachable_replicas};

    /// Runs one RPC on two replicas whose first attempt fails with `status` after `after` (its
    /// share of the deadline when `None`) and whose second succeeds; returns how many replicas
    /// are out of rotation then.
    async fn first_attempt_fails(status: fn() -> Status, after: Option<Duration>) -> usize {
        let replicas = unreachable_replicas(&[1, 2], ReplicaSettings::default());
        let request_id = http::HeaderValue::from_static("test");
        let parent = Parent::default();
        let origin = Origin {
            request_id: &request_id,
            parent: &parent,
            links: &[],
        };
        let attempts = AtomicUsize::new(0);
        let deadline = Instant::now() + Duration::from_secs(2);
        let answer = call(
            &replicas,
            deadline,
            "ApplyDiscountBatch",
            origin,
            |_, stamp| {
                let first = attempts.fetch_add(1, Ordering::SeqCst) == 0;
                let wait = after.unwrap_or(stamp.timeout);
                async move {
                    if first {
                        tokio::time::sleep(wait).await;
                        return Err(status());
                    }
                    Ok("discounted")
                }
            },
        )
        .await;
        assert_eq!(
            answer.unwrap(),
            "discounted",
            "retried on the other replica"
        );
        let known = replicas.known().await;
        known.iter().filter(|r| !r.in_rotation()).count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_that_ends_an_rpc_on_its_deadline_is_taken_out_as_if_it_timed_out() {
        // Discount's own deadline ends the RPC, and its answer is read as this side's timer
        // fires (in paused time both come due at once, as on a busy machine; the answer wins).
        let out = first_attempt_fails(|| Status::cancelled("Timeout expired"), None).await;
        assert_eq!(
            out, 1,
            "the replica that did not answer in time is out of rotation"
        );
        let out = first_attempt_fails(|| Status::deadline_exceeded("deadline"), None).await;
        assert_eq!(out, 1, "likewise with DEADLINE_EXCEEDED");
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_that_cancels_an_rpc_before_its_deadline_stays_in_rotation() {
        let quick = Some(Duration::from_millis(10));
        let out = first_attempt_fails(|| Status::cancelled("cancelled"), quick).await;
        assert_eq!(
            out, 0,
            "one cancelled RPC is no reason to take a replica out"
        );
    }
}
