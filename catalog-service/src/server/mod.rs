//! The public HTTP server: an accept loop over hyper-util's connection builder, with the limits
//! `axum::serve` cannot set ([`HttpLimits`]):
//!
//! - **Open connections**: each accepted connection takes a slot; with none free, a new
//!   connection is closed at once (counted in `catalog_http_connections_refused_total`). The
//!   slot is freed just before the socket closes. Keep the limit below the process's open-file
//!   limit, so that the operations port and Discount's connections still get theirs.
//! - **Header read timeout** (slowloris): a request head must arrive whole within it, counted
//!   from the connection's start or from the first byte of a later request; else the
//!   connection is cut (`catalog_http_header_timeouts_total`).
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

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use timer::{Activity, Expired, HeadTimer, Watched};

/// The limits of the public HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most connections open at once; beyond it new connections are closed at once.
    pub max_connections: usize,
    /// Longest a request head may take to arrive, from the connection's start or from the
    /// first byte of a later request.
    pub header_timeout: Duration,
    /// Longest a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Most requests in progress at once; beyond it a request gets 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
}

impl Default for HttpLimits {
    /// 1000 connections (below the common open-file limit of 1024), 10 s for a request head,
    /// 90 s idle (longer than the 60 s of common load balancers and proxies, so that they, not
    /// Catalog, close the idle connections they pool), 512 requests in progress.
    fn default() -> Self {
        Self {
            max_connections: 1000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_concurrent_requests: 512,
        }
    }
}

/// After an accept error that is not about one connection (out of file descriptors), how
/// long to wait before accepting again, as `axum::serve` does.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` within `limits` until `shutdown` completes; then stops
/// accepting and returns once every connection has closed (see the module's documentation).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .keep_alive(true)
        .header_read_timeout(limits.header_timeout);
    let mut refused_in_a_row: u64 = 0;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                tracing::error!(%err, pause = ?ACCEPT_ERROR_PAUSE, "cannot accept connections");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!("catalog_http_connections_refused_total").increment(1);
            if refused_in_a_row == 0 {
                tracing::warn!(
                    max = limits.max_connections,
                    %peer,
                    "connection limit reached (--http-max-connections): closing new \
                     connections at once until one ends"
                );
            }
            refused_in_a_row += 1;
            drop(stream);
            continue;
        };
        if refused_in_a_row > 0 {
            tracing::info!(
                refused = refused_in_a_row,
                "accepting connections again after the connection limit"
            );
            refused_in_a_row = 0;
        }
        // Small JSON responses: do not let Nagle's algorithm hold them back.
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(Watched::new(stream, activity.clone(), Slot::take(permit)));
        let mut builder = builder.clone();
        builder.http1().timer(HeadTimer::new(
            activity.clone(),
            limits.idle_timeout,
            limits.header_timeout,
        ));
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let connection = builder.serve_connection(io, service);
            if let Err(err) = watcher.watch(connection).await {
                ended_with(&*err, activity.expired(), peer, limits);
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Logs (and counts) why a connection ended with an error.
fn ended_with(
    err: &(dyn std::error::Error + Send + Sync),
    expired: Option<Expired>,
    peer: SocketAddr,
    limits: HttpLimits,
) {
    match expired {
        Some(Expired::Header) => {
            metrics::counter!("catalog_http_header_timeouts_total").increment(1);
            tracing::info!(
                %peer,
                timeout = ?limits.header_timeout,
                "closed a connection whose request headers did not arrive in time \
                 (--http-header-timeout-ms)"
            );
        }
        Some(Expired::Idle) => {
            tracing::debug!(%peer, timeout = ?limits.idle_timeout, "closed an idle connection");
        }
        None => tracing::debug!(%peer, %err, "connection ended with an error"),
    }
}

/// Errors that concern one connection only (the client gave up during the handshake).
fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// One of the `--http-max-connections` slots, counted in `catalog_http_connections_open`.
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    fn take(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!("catalog_http_connections_open").increment(1.0);
        Self { _permit: permit }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!("catalog_http_connections_open").decrement(1.0);
    }
}
