//! Distributed tracing with OpenTelemetry, behind a small surface so that a service only
//! declares its spans: [`Telemetry`] (set up from the standard `OTEL_*` variables, flushed at
//! exit), the [`Tracer`] it hands out, [`Parent`] (the trace a span continues, from W3C
//! `traceparent` headers or from another span) and [`Span`].
//!
//! With no endpoint configured the tracer is off: every call here is a branch on `None`, no
//! span is built, nothing is allocated and nothing is sent; only a caller's valid
//! `traceparent` is carried through unchanged to the calls a request makes, as OpenTelemetry
//! asks of a service without an SDK. When on, sampled spans go through
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
use std::time::SystemTime;

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
    /// decided. Must be called inside a Tokio runtime. An endpoint the exporter cannot use is
    /// warned about and leaves tracing off.
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
        Self::new(config.as_ref()).or_else(|err| {
            // A setting the exporter cannot use turns tracing off; it never stops the service.
            tracing::warn!("trace export off: {err:#}");
            Ok(Self::default())
        })
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
    /// an error. With the tracer off, a valid `traceparent` is still carried through unchanged
    /// to the calls the request makes (so a service further on can continue the caller's
    /// trace), and nothing else is read.
    pub fn extract<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> Parent {
        match &self.0 {
            Some(tracer) => Parent(Some(ParentInner {
                tracer: Some(tracer.clone()),
                context: propagation::extract(get),
            })),
            None if get(propagation::TRACEPARENT).is_some() => {
                Parent(propagation::extract(get).map(|context| ParentInner {
                    tracer: None,
                    context: Some(context),
                }))
            }
            None => Parent(None),
        }
    }
}

/// What a new span continues: a remote caller's span, a span of this process, or nothing
/// (a new trace). Carries the tracer, so that whoever holds a `Parent` can start spans.
#[derive(Clone, Debug, Default)]
pub struct Parent(Option<ParentInner>);

/// Invariant: `tracer` or `context` is set (else the `Parent` is `None`).
#[derive(Clone)]
struct ParentInner {
    /// `None`: tracing is off, and `context` (a caller's) is only carried through.
    tracer: Option<SdkTracer>,
    /// `None`: start a new trace.
    context: Option<SpanContext>,
}

impl std::fmt::Debug for ParentInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parent")
            .field("traced", &self.tracer.is_some())
            .field("context", &self.context)
            .finish()
    }
}

impl Parent {
    /// No parent and no tracer: spans started from it are no-ops.
    pub const fn none() -> Self {
        Self(None)
    }

    /// Whether there is nothing to record or carry: spans started from it are no-ops.
    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }

    /// Whether spans started from it are recorded at all (the tracer is on).
    pub fn is_traced(&self) -> bool {
        self.0.as_ref().is_some_and(|inner| inner.tracer.is_some())
    }

    /// Whether its trace is sampled, as far as is known here: a new trace's fate is the
    /// sampler's to decide, so only a parent that says "not sampled" is false.
    pub fn is_sampled(&self) -> bool {
        self.0
            .as_ref()
            .and_then(|inner| inner.context.as_ref())
            .is_none_or(SpanContext::is_sampled)
    }

    /// Starts a span of `kind` under this parent. `describe` (the span's name and attributes)
    /// is called only when tracing is on.
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
        self.build(kind, linked, None, describe)
    }

    /// [`Parent::start`] for a span that began at `started` (a wait measured before the span
    /// could be made).
    pub fn start_at(
        &self,
        kind: SpanKind,
        started: SystemTime,
        describe: impl FnOnce() -> (Cow<'static, str>, Vec<KeyValue>),
    ) -> Span {
        self.build(kind, &[], Some(started), describe)
    }

    fn build(
        &self,
        kind: SpanKind,
        linked: &[Parent],
        started: Option<SystemTime>,
        describe: impl FnOnce() -> (Cow<'static, str>, Vec<KeyValue>),
    ) -> Span {
        let Some(parent) = &self.0 else {
            return Span(State::Off);
        };
        let Some(tracer) = &parent.tracer else {
            return match &parent.context {
                Some(context) => Span(State::Forward(context.clone())),
                None => Span(State::Off),
            };
        };
        let context = match &parent.context {
            Some(span) => opentelemetry::Context::new().with_remote_span_context(span.clone()),
            None => opentelemetry::Context::new(),
        };
        // Described even under a parent that is not sampled: whether that means "not
        // recorded" is the sampler's decision (a parent-based one agrees; `always_on` does not).
        let (name, attributes) = describe();
        let links = linked
            .iter()
            .filter_map(|linked| linked.0.as_ref()?.context.clone())
            .filter(SpanContext::is_valid)
            .map(Link::with_context)
            .collect();
        let mut builder = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .with_links(links);
        if let Some(started) = started {
            builder = builder.with_start_time(started);
        }
        Span(State::On(Box::new(Recording {
            tracer: tracer.clone(),
            span: builder.start_with_context(tracer, &context),
        })))
    }
}

/// A span in progress; ended when dropped (so a cancelled request still ends its spans).
#[derive(Debug, Default)]
pub struct Span(State);

#[derive(Debug, Default)]
enum State {
    /// Nothing to record or carry.
    #[default]
    Off,
    /// Tracing is off, but the caller's span context is carried through to calls made.
    Forward(SpanContext),
    /// A span of this process (recorded or not, as sampled); boxed, as it is large and made
    /// only when tracing is on.
    On(Box<Recording>),
}

#[derive(Debug)]
struct Recording {
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
        Self(State::Off)
    }

    /// This span as the parent of new spans (or as the target of links).
    pub fn parent(&self) -> Parent {
        Parent(match &self.0 {
            State::Off => None,
            State::Forward(context) => Some(ParentInner {
                tracer: None,
                context: Some(context.clone()),
            }),
            State::On(on) => Some(ParentInner {
                tracer: Some(on.tracer.clone()),
                context: Some(on.span.span_context().clone()),
            }),
        })
    }

    fn recording(&mut self) -> Option<&mut opentelemetry_sdk::trace::Span> {
        match &mut self.0 {
            State::On(on) if on.span.is_recording() => Some(&mut on.span),
            _ => None,
        }
    }

    /// Whether the span is recorded (sampled and tracing on): attributes are only worth
    /// building when it is.
    pub fn is_recording(&self) -> bool {
        matches!(&self.0, State::On(on) if on.span.is_recording())
    }

    /// Sets the attributes `attributes` returns; it is called only when the span is recorded.
    pub fn set<I: IntoIterator<Item = KeyValue>>(&mut self, attributes: impl FnOnce() -> I) {
        if let Some(span) = self.recording() {
            span.set_attributes(attributes());
        }
    }

    /// Marks the span failed, with a description of why.
    pub fn fail(&mut self, description: impl Into<Cow<'static, str>>) {
        if let Some(span) = self.recording() {
            span.set_status(Status::error(description));
        }
    }

    /// Links the span to `other`, a span of another trace it worked with.
    pub fn link(&mut self, other: &Parent) {
        let context = other.0.as_ref().and_then(|inner| inner.context.clone());
        if let Some(context) = context.filter(SpanContext::is_valid)
            && let Some(span) = self.recording()
        {
            span.add_link(context, Vec::new());
        }
    }

    /// The span's ids when tracing is on (a span of this process, sampled or not), for the
    /// log lines it covers.
    pub fn ids(&self) -> Option<SpanIds> {
        let State::On(on) = &self.0 else {
            return None;
        };
        let context = on.span.span_context();
        context.is_valid().then(|| SpanIds {
            trace_id: context.trace_id(),
            span_id: context.span_id(),
        })
    }

    /// Writes the W3C Trace Context headers that make a callee continue this span's trace:
    /// `set(name, value)` for each (`traceparent`, and `tracestate` when there is one). With
    /// tracing off, the caller's own context, if there was one.
    pub fn inject(&self, set: impl FnMut(&'static str, String)) {
        match &self.0 {
            State::Off => {}
            State::Forward(context) => propagation::inject(context, set),
            State::On(on) => propagation::inject(on.span.span_context(), set),
        }
    }

    /// Ends the span now (dropping it does too).
    pub fn end(self) {
        drop(self);
    }
}
