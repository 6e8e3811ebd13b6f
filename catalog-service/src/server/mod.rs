//! The public HTTP server: [`admission`]'s accept loop (the same caps, deadline and eviction as
//! every server of the workspace) over hyper-util's connection builder, with the limits
//! `axum::serve` cannot set ([`HttpLimits`]):
//!
//! - **Admission** (`--http-max-connections`, `--http-max-unproven-connections`): a connection
//!   is unproven until a whole first request head has arrived (the service is called). When
//!   the caps are reached, a new connection takes the place of the oldest unproven one, then of
//!   the keep-alive connection idle the longest (its client reconnects for its next request, as
//!   after an idle timeout); only when every connection is proven and in use is a new one
//!   closed at once. Counted in `catalog_http_connections_dropped_total{reason}`; open ones in
//!   `catalog_http_connections_open`. Keep the cap below the process's open-file limit, so that
//!   the operations port and Discount's connections still get theirs.
//! - **Header read timeout** (slowloris): the first request head must arrive whole within it,
//!   from the connection's acceptance (the gate's deadline for unproven connections, counted as
//!   `unproven_timeout`); a later one within it from its first byte (hyper's timer,
//!   `catalog_http_header_timeouts_total`). Else the connection is cut.
//! - **Idle keep-alive timeout**: a kept-alive connection with no new request within it is
//!   closed. hyper has one timer for both waits; `timer` tells them apart.
//! - **Concurrent requests** are limited in the router (`http`), where a request beyond the
//!   limit gets 503 with `Retry-After`; only the number is carried here.
//!
//! HTTP/1.1 only, as `axum::serve` served it: hyper has no header timeout for HTTP/2, and no
//! timer while it sniffs which version a client speaks. Every response goes out with
//! `TCP_NODELAY`. On shutdown the listener closes at once, idle connections close, and those
//! with a request in flight close once it is answered.

mod timer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use admission::{Gate, ThrottledLog};
use hyper::service::Service as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::metric_descriptions::{CONNECTIONS_DROPPED_METRIC, CONNECTIONS_OPEN_METRIC};
use timer::{Activity, Expired, HeadTimer, Watched};

/// The limits of the public HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most connections open at once, unproven ones included (see the module's documentation).
    pub max_connections: usize,
    /// Most connections open at once whose first request head has not arrived whole.
    pub max_unproven: usize,
    /// Longest a request head may take to arrive, from the connection's acceptance or from the
    /// first byte of a later request.
    pub header_timeout: Duration,
    /// Longest a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Most requests in progress at once; beyond it a request gets 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
}

impl Default for HttpLimits {
    /// The admission defaults (1000 connections, below the common open-file limit of 1024,
    /// 500 of them unproven; 10 s for a request head), 90 s idle (longer than the 60 s of
    /// common load balancers and proxies, so that they, not Catalog, close the idle
    /// connections they pool), 512 requests in progress.
    fn default() -> Self {
        Self {
            max_connections: admission::DEFAULT_MAX_CONNECTIONS,
            max_unproven: admission::DEFAULT_MAX_UNPROVEN,
            header_timeout: admission::DEFAULT_UNPROVEN_TIMEOUT,
            idle_timeout: Duration::from_secs(90),
            max_concurrent_requests: 512,
        }
    }
}

impl HttpLimits {
    /// The rules connections are admitted by: the caps, and the header timeout as the deadline
    /// for the first request head.
    pub fn admission(&self) -> admission::Limits {
        admission::Limits {
            max_connections: self.max_connections,
            max_unproven: self.max_unproven,
            unproven_timeout: self.header_timeout,
        }
    }

    /// The gate admitting connections to the public port by these limits, recording Catalog's
    /// connection metrics.
    pub fn gate(&self) -> Gate {
        let metrics = admission::MetricNames {
            open: Some(CONNECTIONS_OPEN_METRIC),
            dropped: Some(CONNECTIONS_DROPPED_METRIC),
        };
        Gate::new(self.admission(), metrics)
    }
}

/// Serves `router` on `listener` within `limits`, admitting connections through `gate` (made by
/// [`HttpLimits::gate`]), until `shutdown` completes; then stops accepting and returns once
/// every connection has closed (see the module's documentation).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    gate: Gate,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .keep_alive(true)
        .header_read_timeout(limits.header_timeout);
    let header_timeouts = header_timeout_log(limits.header_timeout);
    let (shutting_down, closed) = tokio::sync::watch::channel(false);
    admission::accept_loop(listener, gate, shutdown, |stream, peer, slot| {
        let activity = Arc::new(Activity::default());
        let handle = (*slot).clone();
        let io = TokioIo::new(Watched::new(stream, activity.clone(), slot));
        let mut builder = builder.clone();
        builder.http1().timer(HeadTimer::new(
            activity.clone(),
            handle.clone(),
            limits.idle_timeout,
            limits.header_timeout,
        ));
        // A whole request head has arrived: the connection has proved itself.
        let proving = handle.clone();
        let router = TowerToHyperService::new(router.clone());
        // Busy as well: a pipelined request is parsed from hyper's buffer with no read that
        // would have marked it so, and a connection with a request in flight is never evicted.
        let service = hyper::service::service_fn(move |request| {
            proving.prove();
            proving.busy();
            router.call(request)
        });
        let watcher = graceful.watcher();
        let mut closing = closed.clone();
        let header_timeouts = header_timeouts.clone();
        tokio::spawn(async move {
            let connection = async {
                // No HTTP state for a connection until it has sent something: one that stays
                // silent (the commonest flood) costs a socket and this task. Closed at once on
                // shutdown, as hyper closes a connection with no request in flight.
                tokio::select! {
                    readable = io.inner().socket().readable() => readable?,
                    _ = closing.wait_for(|closing| *closing) => return Ok(()),
                }
                watcher.watch(builder.serve_connection(io, service)).await
            };
            // Dropped by the gate (evicted, or no whole head in time): counted and logged there.
            if let Ok(Err(err)) = handle.guard(connection).await {
                ended_with(&*err, activity.expired(), peer, &header_timeouts);
            }
        });
    })
    .await;
    let _ = shutting_down.send(true);
    graceful.shutdown().await;
}

/// The log of later request heads cut at the header timeout (slowloris on a connection that
/// has already made a request): one line per interval with their number.
fn header_timeout_log(timeout: Duration) -> ThrottledLog {
    ThrottledLog::new(admission::LOG_INTERVAL, move |summary| {
        tracing::info!(
            cut = summary.total(),
            first = %summary.firsts(),
            ?timeout,
            "closed connections whose next request's headers did not arrive in time \
             (--http-header-timeout-ms); count since the last such line"
        );
    })
}

/// Logs (and counts) why a connection ended with an error.
fn ended_with(
    err: &(dyn std::error::Error + Send + Sync),
    expired: Option<Expired>,
    peer: SocketAddr,
    header_timeouts: &ThrottledLog,
) {
    match expired {
        Some(Expired::Header) => {
            metrics::counter!("catalog_http_header_timeouts_total").increment(1);
            header_timeouts.record("header_timeout", || peer.to_string());
        }
        Some(Expired::Idle) => tracing::debug!(%peer, "closed an idle connection"),
        None => tracing::debug!(%peer, %err, "connection ended with an error"),
    }
}
