//! Distributed tracing with OpenTelemetry, behind a small surface so that a service only
//! declares its spans: [`Telemetry`] (set up from the standard `OTEL_*` variables, flushed at
//! exit), the [`Tracer`] it hands out, [`Parent`] (the trace a span continues, from W3C
//! `traceparent` headers or from another span) and [`Span`].
//!
//! With no endpoint configured the tracer is off: every call here is a branch on `None`, no
//! span is built, nothing is allocated and nothing is sent. When on, sampled spans go through
//! a bounded batch queue to an OTLP exporter on their own thread: a collector that is down or
//! slow costs requests nothing; spans that cannot be sent are dropped and counted in
//! [`DROPPED_SPANS_COUNTER`].
//!
//! Spans are handled explicitly (a value passed along) rather than through a "current span":
//! Catalog's coalesced RPCs carry several requests from several traces at once, and a value
//! says plainly which trace each span belongs to.
//!
//! # Layout
//! - here: [`Telemetry`], [`Tracer`], [`Parent`], [`Span`];
//! - `config`: the environment variables ([`OtelConfig`]);
//! - `export`: the provider, the bounded queue and the drop counter;
//! - `propagation`: W3C Trace Context in and out.

mod config;
mod export;
mod propagation;

use std::borrow::Cow;

use opentelemetry::trace::{
    Link, Span as _, SpanContext, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

pub use config::{OtelConfig, Protocol};
pub use export::DROPPED_SPANS_COUNTER;
pub use opentelemetry::trace::{SpanId, SpanKind, TraceId};
pub use opentelemetry::{KeyValue, Value};

/// The process's tracing set-up: the tracer provider (when exporting) and its [`Tracer`].
/// [`Telemetry::shutdown`] sends what is still queued.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    tracer: Tracer,
}

impl Telemetry {
    /// Tracing as the `OTEL_*` environment variables say (see [`OtelConfig`]), with
    /// `default_service_name` when `OTEL_SERVICE_NAME` is unset; logs one line saying what it
    /// decided. Must be called inside a Tokio runtime.
    pub fn from_env(default_service_name: &str) -> anyhow::Result<Self> {
        let config = OtelConfig::from_env(default_service_name);
        match &config {
            Some(config) => tracing::info!(
                endpoint = %config.endpoint,
                protocol = ?config.protocol,
                service_name = %config.service_name,
                sampler = ?config.sampler,
                "exporting traces with OTLP"
            ),
            None => tracing::info!(
                "trace export off (set OTEL_EXPORTER_OTLP_ENDPOINT to send traces to a \
                 collector)"
            ),
        }
        Self::new(config.as_ref())
    }

    /// Tracing for `config`; off for `None`. Must be called inside a Tokio runtime.
    pub fn new(config: Option<&OtelConfig>) -> anyhow::Result<Self> {
        let Some(config) = config else {
            return Ok(Self::default());
        };
        let provider = export::provider(config)?;
        let tracer = Tracer(Some(provider.tracer(config.service_name.clone())));
        Ok(Self {
            provider: Some(provider),
            tracer,
        })
    }

    /// The tracer spans are started from; off when nothing is exported.
    pub fn tracer(&self) -> Tracer {
        self.tracer.clone()
    }

    /// Exports every span that has ended so far, waiting for the exporter (on a blocking
    /// thread, so the runtime keeps running meanwhile).
    pub async fn flush(&self) {
        if let Some(provider) = self.provider.clone() {
            let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        }
    }

    /// Exports what is still queued and stops the exporter.
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Not shut down explicitly (an early return): stop the exporter without blocking
        // whatever is dropping this, possibly a runtime thread its export needs.
        if let Some(provider) = self.provider.take() {
            let _ = std::thread::Builder::new()
                .name("otel-shutdown".into())
                .spawn(move || provider.shutdown());
        }
    }
}

/// Starts spans; off (every span a no-op) by default. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tracer(Option<SdkTracer>);

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Tracer(on)"
        } else {
            "Tracer(off)"
        })
    }
}

impl Tracer {
    /// Whether spans are recorded at all.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The trace a request continues, from its W3C Trace Context headers (`traceparent`,
    /// `tracestate`) as `get` returns them. Missing or malformed headers give a new trace: never
    /// an error. Reads nothing when the tracer is off.
    pub fn extract<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> Parent {
        Parent(self.0.as_ref().map(|tracer| ParentInner {
            tracer: tracer.clone(),
            context: propagation::extract(get),
        }))
    }
}

/// What a new span continues: a remote caller's span, a span of this process, or nothing
/// (a new trace). Carries the tracer, so that whoever holds a `Parent` can start spans.
#[derive(Clone, Debug, Default)]
pub struct Parent(Option<ParentInner>);

#[derive(Clone)]
struct ParentInner {
    tracer: SdkTracer,
    /// `None`: start a new trace.
    context: Option<SpanContext>,
}

impl std::fmt::Debug for ParentInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parent")
            .field("context", &self.context)
            .finish()
    }
}

impl Parent {
    /// No parent and no tracer: spans started from it are no-ops.
    pub fn none() -> Self {
        Self(None)
    }

    /// Whether spans started from it are recorded at all (the tracer is on).
    pub fn is_traced(&self) -> bool {
        self.0.is_some()
    }

    /// Starts a span of `kind` under this parent. `describe` (the span's name and attributes)
    /// is called only when the span will be recorded.
    pub fn start(
        &self,
        kind: SpanKind,
        describe: impl FnOnce() -> (Cow<'static, str>, Vec<KeyValue>),
    ) -> Span {
        self.start_linked(kind, &[], describe)
    }

    /// [`Parent::start`], with links to `linked`: spans of other traces this one works for
    /// (a coalesced RPC links to every request it carries).
    pub fn start_linked(
        &self,
        kind: SpanKind,
        linked: &[Parent],
        describe: impl FnOnce() -> (Cow<'static, str>, Vec<KeyValue>),
    ) -> Span {
        let Some(parent) = &self.0 else {
            return Span(None);
        };
        let context = match &parent.context {
            Some(span) => opentelemetry::Context::new().with_remote_span_context(span.clone()),
            None => opentelemetry::Context::new(),
        };
        // A parent that is not sampled has children that are not either: skip describing them.
        if parent
            .context
            .as_ref()
            .is_some_and(|span| !span.is_sampled())
        {
            let span = parent
                .tracer
                .span_builder("unsampled")
                .with_kind(kind)
                .start_with_context(&parent.tracer, &context);
            return Span(Some(SpanInner {
                tracer: parent.tracer.clone(),
                span,
            }));
        }
        let (name, attributes) = describe();
        let links = linked
            .iter()
            .filter_map(|linked| linked.0.as_ref()?.context.clone())
            .filter(SpanContext::is_valid)
            .map(Link::with_context)
            .collect();
        let span = parent
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .with_links(links)
            .start_with_context(&parent.tracer, &context);
        Span(Some(SpanInner {
            tracer: parent.tracer.clone(),
            span,
        }))
    }
}

/// A span in progress; ended when dropped (so a cancelled request still ends its spans).
#[derive(Debug, Default)]
pub struct Span(Option<SpanInner>);

#[derive(Debug)]
struct SpanInner {
    tracer: SdkTracer,
    span: opentelemetry_sdk::trace::Span,
}

/// A span's ids, for log lines: both print as lowercase hex, as in `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanIds {
    /// The trace's id (32 hex digits).
    pub trace_id: TraceId,
    /// The span's id (16 hex digits).
    pub span_id: SpanId,
}

impl Span {
    /// A span that records nothing.
    pub fn none() -> Self {
        Self(None)
    }

    /// This span as the parent of new spans (or as the target of links).
    pub fn parent(&self) -> Parent {
        Parent(self.0.as_ref().map(|inner| ParentInner {
            tracer: inner.tracer.clone(),
            context: Some(inner.span.span_context().clone()),
        }))
    }

    /// Whether the span is recorded (sampled and tracing on): attributes are only worth
    /// building when it is.
    pub fn is_recording(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|inner| inner.span.is_recording())
    }

    /// Sets the attributes `attributes` returns; it is called only when the span is recorded.
    pub fn set<I: IntoIterator<Item = KeyValue>>(&mut self, attributes: impl FnOnce() -> I) {
        if let Some(inner) = &mut self.0
            && inner.span.is_recording()
        {
            inner.span.set_attributes(attributes());
        }
    }

    /// Marks the span failed, with a description of why.
    pub fn fail(&mut self, description: impl Into<Cow<'static, str>>) {
        if let Some(inner) = &mut self.0
            && inner.span.is_recording()
        {
            inner.span.set_status(Status::error(description));
        }
    }

    /// Links the span to `other`, a span of another trace it worked with.
    pub fn link(&mut self, other: &Parent) {
        if let (Some(inner), Some(other)) = (&mut self.0, other.0.as_ref())
            && let Some(context) = &other.context
            && context.is_valid()
            && inner.span.is_recording()
        {
            inner.span.add_link(context.clone(), Vec::new());
        }
    }

    /// The span's ids when it has a valid trace (tracing on), for the log lines it covers.
    pub fn ids(&self) -> Option<SpanIds> {
        let context = self.0.as_ref()?.span.span_context();
        context.is_valid().then(|| SpanIds {
            trace_id: context.trace_id(),
            span_id: context.span_id(),
        })
    }

    /// Writes the W3C Trace Context headers that make a callee continue this span's trace:
    /// `set(name, value)` for each (`traceparent`, and `tracestate` when there is one).
    pub fn inject(&self, set: impl FnMut(&'static str, String)) {
        if let Some(inner) = &self.0 {
            propagation::inject(inner.span.span_context(), set);
        }
    }

    /// Ends the span now (dropping it does too).
    pub fn end(self) {
        drop(self);
    }
}
