//! One RPC on the balanced replicas ([`call`]): what a failure says about its replica, each
//! attempt's share of the deadline, and the retry on another replica.

use std::future::Future;
use std::time::Duration;

use ecommerce_proto::pb::discount_client::DiscountClient;
use tonic::{Code, Status};

use crate::balancer::{NoPick, Replicas, Transport, error_chain};

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

/// Runs `rpc` on a replica; when the replica fails (unreachable, reset, or silent for
/// half the time left), takes it out of rotation and tries another, all within the one
/// deadline.
pub(super) async fn call<T, F, Fut>(
    replicas: &Replicas,
    deadline: tokio::time::Instant,
    rpc: F,
) -> Result<T, Status>
where
    F: Fn(DiscountClient<Transport>, Duration) -> Fut,
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
