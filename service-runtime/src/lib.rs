//! What every service process does the same way, written once: logging, the Prometheus
//! recorder, tracing, signals and the drain deadline, request ids, the operations port
//! (`/healthz`, `/readyz`, `/metrics`), the `probe` subcommand that container health checks run,
//! and the flags every service takes (TLS files, operations port, logging, workers, drain).
//!
//! # Layout
//! - [`flags`]: the shared flags, declared once and flattened into each service's command line
//!   with that service's environment-variable names; they resolve to an [`mtls::TlsSource`]
//!   and to [`admission::Limits`].
//! - [`logging`]: the `tracing` subscriber, text or JSON, through a bounded background writer.
//! - [`metrics`]: the process's Prometheus recorder, and the `# HELP` descriptions of metrics.
//! - [`otel`]: OpenTelemetry tracing: spans, W3C Trace Context, OTLP export.
//! - [`shutdown`]: the shutdown signal and serving with a drain deadline.
//! - [`process`]: binding listeners and running a service's `main`.
//! - [`request_id`]: the `x-request-id` that ties one request's log lines together across
//!   services.
//! - [`ops`]: the operations port: its routes and answers, written once for every service, each
//!   giving only its readiness.
//! - [`probe`]: `<service> probe URL`, the health check that container images run.

pub mod flags;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod otel;
pub mod probe;
pub mod process;
pub mod request_id;
pub mod shutdown;

pub use logging::{LogFormat, LogGuard, init_tracing};
pub use metrics::{PROMETHEUS_CONTENT_TYPE, prometheus};
pub use process::{bind, run_service};
pub use shutdown::{GracefulSignal, serve_with_drain, shutdown_signal};
