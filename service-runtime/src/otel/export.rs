//! The export pipeline: the SDK's batch span processor and OTLP exporter, with a bound in
//! front that drops (and counts) spans rather than let a slow or absent collector cost a
//! request anything, and one log line per outage.
//!
//! The SDK's `BatchSpanProcessor` already drops spans when its queue is full, but keeps the
//! count to itself (it logs it only at shutdown). So [`Bounded`] keeps the same bound one step
//! earlier, where it can count: it admits a span only while fewer than the queue's size are
//! waiting, and [`Counted`] (around the exporter) marks spans as no longer waiting when a batch
//! goes out. The processor's own queue therefore never overflows, and every span is either
//! exported, dropped here and counted, or lost with a failed export and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, Span, SpanData, SpanExporter,
    SpanProcessor,
};

use super::config::{OtelConfig, Protocol};

/// The Prometheus counter of spans that were never exported, labelled `reason`:
/// `queue_full` (the exporter fell behind) or `export_failed` (the collector refused them or
/// could not be reached).
pub const DROPPED_SPANS_COUNTER: &str = "trace_spans_dropped_total";

/// The tracer provider for `config`: sampled spans go through the bounded batch queue to the
/// OTLP exporter. Must be called inside a Tokio runtime (the gRPC exporter's connection lives
/// on it); nothing is sent until the first batch.
pub(super) fn provider(config: &OtelConfig) -> anyhow::Result<SdkTracerProvider> {
    use anyhow::Context;
    let exporter = match config.protocol {
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.endpoint.clone())
            .build(),
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(config.endpoint.clone())
            .build(),
    }
    .with_context(|| format!("OTLP exporter for {}", config.endpoint))?;
    let waiting = Arc::new(Waiting::default());
    let exporter = Counted {
        inner: exporter,
        waiting: waiting.clone(),
    };
    let batches = BatchConfigBuilder::default()
        .with_max_queue_size(config.max_queue_size)
        .build();
    let processor = Bounded {
        inner: BatchSpanProcessor::builder(exporter)
            .with_batch_config(batches)
            .build(),
        waiting,
        capacity: config.max_queue_size,
    };
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(config.sampler.clone())
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build())
}

/// What the processor and the exporter share: spans admitted and not yet handed to the
/// exporter, and the state of the current outage, if any.
#[derive(Debug, Default)]
struct Waiting {
    spans: AtomicUsize,
    /// Spans dropped since the last successful export.
    dropped_in_outage: AtomicU64,
    /// An outage has been logged and not yet its end.
    outage_logged: AtomicBool,
}

impl Waiting {
    /// Counts `count` dropped spans; the first drop of an outage is logged.
    fn dropped(&self, count: usize, reason: &'static str, detail: &dyn std::fmt::Display) {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        metrics::counter!(DROPPED_SPANS_COUNTER, "reason" => reason).increment(count);
        self.dropped_in_outage.fetch_add(count, Ordering::Relaxed);
        if !self.outage_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                reason,
                "dropping trace spans ({detail}); requests are not affected. Counted in \
                 {DROPPED_SPANS_COUNTER}; one more line when export works again"
            );
        }
    }

    /// A batch was exported: ends an outage, if one was logged, with one line.
    fn exported(&self) {
        if self.outage_logged.swap(false, Ordering::Relaxed) {
            let dropped = self.dropped_in_outage.swap(0, Ordering::Relaxed);
            tracing::info!(
                dropped,
                "trace export works again; {dropped} spans were dropped"
            );
        }
    }
}

/// The SDK's batch processor behind a counted bound (see the module's documentation).
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    waiting: Arc<Waiting>,
    capacity: usize,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.waiting.spans.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.waiting.spans.fetch_sub(1, Ordering::AcqRel);
            self.waiting
                .dropped(1, "queue_full", &"the exporter is not keeping up");
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, marking spans as no longer waiting when their batch goes out and
/// counting the spans of a failed export as dropped.
#[derive(Debug)]
struct Counted {
    inner: opentelemetry_otlp::SpanExporter,
    waiting: Arc<Waiting>,
}

impl SpanExporter for Counted {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len();
        self.waiting.spans.fetch_sub(count, Ordering::AcqRel);
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self.waiting.exported(),
            Err(err) => self.waiting.dropped(count, "export_failed", err),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
