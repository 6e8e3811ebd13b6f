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
        let in_flight = replica.start();
        let outcome =
            tokio::time::timeout(attempt_timeout, rpc(replica.client.clone(), stamp)).await;
        drop(in_flight);
        let timed_out = outcome.is_err();
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
