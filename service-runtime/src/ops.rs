//! The operations port, the same on every service: plain HTTP on a listener of its own, for
//! kubelet's probes and metrics scrapers, which cannot present a client certificate. The one
//! definition of its routes and answers; each service gives it only its readiness
//! ([`Readiness`]: what is not ready, in words) and starts it with [`OpsPort::start`].
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /healthz` | 200 `{"status":"ok"}` (`application/json`) while the process serves |
//! | `GET /readyz` | 200 `{"status":"ready"}`, or 503 `{"status":"not_ready","not_ready":[...]}` listing the service's reasons (`application/json`) |
//! | `GET /metrics` | 200, the process's Prometheus text ([`PROMETHEUS_CONTENT_TYPE`]) |
//! | `HEAD` on those | the `GET` answer's status and headers, no body |
//! | another method on those | 405 `{"error":"method_not_allowed","message":"only GET and HEAD are served here"}` with `Allow: GET,HEAD` |
//! | any other path | 404 `{"error":"not_found","message":"no such resource"}` |
//!
//! No authentication (keep it on loopback or the pod's address), no access log (probes and
//! scrapes would fill it), and its requests are not counted in the metrics.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::serve::ListenerExt;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::metrics::{PROMETHEUS_CONTENT_TYPE, prometheus};

/// What a service says of its readiness: what is not ready, one short reason each, naming its
/// part (`"discount: unavailable (...)"`, `"catalog: shutting down"`); none when ready. Asked
/// on every `/readyz`, so it reads state the service keeps current: no I/O.
pub trait Readiness: Send + Sync + 'static {
    /// The reasons the service is not ready; empty when it is.
    fn not_ready(&self) -> Vec<String>;
}

impl<F> Readiness for F
where
    F: Fn() -> Vec<String> + Send + Sync + 'static,
{
    fn not_ready(&self) -> Vec<String> {
        self()
    }
}

/// The routes of the operations port (see the module's table): `/readyz` asks `readiness`,
/// `/metrics` renders `metrics`.
pub fn router(readiness: impl Readiness, metrics: PrometheusHandle) -> Router {
    let readiness: Arc<dyn Readiness> = Arc::new(readiness);
    let only_get = |route: MethodRouter| route.fallback(method_not_allowed);
    Router::new()
        .route("/healthz", only_get(get(healthz)))
        .route(
            "/readyz",
            only_get(get(move || std::future::ready(readyz(readiness.as_ref())))),
        )
        .route(
            "/metrics",
            only_get(get(move || std::future::ready(metrics_text(&metrics)))),
        )
        .fallback(not_found)
}

/// Serves [`router`] (with the process's [`prometheus`] registry) on `listener` until
/// `shutdown` completes, then stops accepting and lets requests in progress finish. Logs
/// `<service> operations port listening` with its address first.
pub async fn serve(
    service: &str,
    listener: TcpListener,
    readiness: impl Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            "{service} operations port listening (plain HTTP: /healthz, /readyz, /metrics)"
        );
    }
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(readiness, prometheus()))
        .with_graceful_shutdown(shutdown)
        .await
}

/// How long [`OpsPort::stop`] waits for requests in progress before it drops their
/// connections. The answers need no I/O, so only a stuck or slow client is still there by then,
/// and it must not hold up the exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// A service's operations port, served in a task of its own from [`OpsPort::start`] until
/// [`OpsPort::stop`]: a service stops it after its own drain, so that `/readyz` answers (503)
/// all through the drain.
#[derive(Debug)]
pub struct OpsPort {
    addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl OpsPort {
    /// Starts serving on `listener` ([`serve`]), or, without one (`--ops-listen off`), logs
    /// that the port is off and serves nothing. Needs a Tokio runtime.
    pub fn start(
        service: &'static str,
        listener: Option<TcpListener>,
        readiness: impl Readiness,
    ) -> Self {
        let Some(listener) = listener else {
            tracing::info!("{service} operations port off: no /healthz, /readyz or /metrics");
            return Self {
                addr: None,
                stop: None,
                task: None,
            };
        };
        let addr = listener.local_addr().ok();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            if let Err(err) = serve(service, listener, readiness, stopped).await {
                tracing::error!(%err, "{service} operations port stopped");
            }
        });
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Where it listens; `None` when it is off.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Closes the port, lets requests in progress finish for at most [`STOP_TIMEOUT`], and
    /// returns.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(STOP_TIMEOUT, &mut task).await.is_err()
        {
            task.abort();
            tracing::warn!(
                timeout = ?STOP_TIMEOUT,
                "operations port: a connection was still open at its stop; dropped"
            );
        }
    }
}

impl Drop for OpsPort {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A response with `body`, which is JSON.
fn json(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.into(),
    )
        .into_response()
}

async fn healthz() -> Response {
    json(StatusCode::OK, r#"{"status":"ok"}"#)
}

fn readyz(readiness: &dyn Readiness) -> Response {
    let not_ready = readiness.not_ready();
    if not_ready.is_empty() {
        return json(StatusCode::OK, r#"{"status":"ready"}"#);
    }
    /// The 503 body, its fields in this order whatever `serde_json`'s features.
    #[derive(serde::Serialize)]
    struct NotReady {
        status: &'static str,
        not_ready: Vec<String>,
    }
    let body = NotReady {
        status: "not_ready",
        not_ready,
    };
    // Serializing strings cannot fail; the fallback keeps the status and shape regardless.
    let body = serde_json::to_string(&body)
        .unwrap_or_else(|_| r#"{"status":"not_ready","not_ready":[]}"#.to_owned());
    json(StatusCode::SERVICE_UNAVAILABLE, body)
}

fn metrics_text(metrics: &PrometheusHandle) -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE),
        )],
        metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    json(
        StatusCode::NOT_FOUND,
        r#"{"error":"not_found","message":"no such resource"}"#,
    )
}

/// A method other than GET or HEAD on a route; axum adds `Allow: GET,HEAD`.
async fn method_not_allowed() -> Response {
    json(
        StatusCode::METHOD_NOT_ALLOWED,
        r#"{"error":"method_not_allowed","message":"only GET and HEAD are served here"}"#,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
