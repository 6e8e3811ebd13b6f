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
    Ok(provider_with(exporter, config))
}

/// The tracer provider for `config`, exporting with `exporter` behind the bounded queue.
fn provider_with(exporter: impl SpanExporter + 'static, config: &OtelConfig) -> SdkTracerProvider {
    let waiting = Arc::new(Waiting {
        quiet: QUIET,
        ..Waiting::default()
    });
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
    SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(config.sampler.clone())
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build()
}

/// How long after its last dropped span an outage ends (with one line), once exports work:
/// a collector that keeps up only now and then is one outage, not one per batch.
const QUIET: Duration = Duration::from_secs(10);

/// What the processor and the exporter share: spans admitted and not yet handed to the
/// exporter, and the state of the current outage, if any.
#[derive(Debug, Default)]
struct Waiting {
    /// [`QUIET`], or another period in tests.
    quiet: Duration,
    /// When the last span was dropped, in milliseconds since the Unix epoch.
    last_drop_ms: AtomicU64,
    spans: AtomicUsize,
    /// Spans dropped in the current outage.
    dropped_in_outage: AtomicU64,
    /// Spans were dropped since the last export began: the outage goes on.
    dropped_since_export: AtomicBool,
    /// An outage has been logged and not yet its end.
    outage_logged: AtomicBool,
}

impl Waiting {
    /// Counts `count` dropped spans; the first drop of an outage is logged.
    fn dropped(&self, count: usize, reason: &'static str, detail: &dyn std::fmt::Display) {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        metrics::counter!(DROPPED_SPANS_COUNTER, "reason" => reason).increment(count);
        self.dropped_in_outage.fetch_add(count, Ordering::Relaxed);
        self.dropped_since_export.store(true, Ordering::Relaxed);
        self.last_drop_ms.store(now_ms(), Ordering::Relaxed);
        if !self.outage_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                reason,
                "dropping trace spans ({detail}); requests are not affected. Counted in \
                 {DROPPED_SPANS_COUNTER}; one more line when export works again"
            );
        }
    }

    /// A batch went out: ends an outage, if one was logged, with one line, once a whole
    /// batch has gone out with nothing dropped meanwhile and nothing was dropped for
    /// [`Waiting::quiet`] (a collector that works but cannot keep up is one outage, not one per
    /// batch).
    fn exported(&self, dropped_meanwhile: bool) {
        let quiet_ms = u64::try_from(self.quiet.as_millis()).unwrap_or(u64::MAX);
        let since_drop = now_ms().saturating_sub(self.last_drop_ms.load(Ordering::Relaxed));
        if !dropped_meanwhile
            && since_drop >= quiet_ms
            && self.outage_logged.swap(false, Ordering::Relaxed)
        {
            let dropped = self.dropped_in_outage.swap(0, Ordering::Relaxed);
            tracing::info!(
                dropped,
                "trace export works again; {dropped} spans were dropped"
            );
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
struct Counted<E> {
    inner: E,
    waiting: Arc<Waiting>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len();
        self.waiting.spans.fetch_sub(count, Ordering::AcqRel);
        let dropped_before = self
            .waiting
            .dropped_since_export
            .swap(false, Ordering::Relaxed);
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                let dropped_during = self.waiting.dropped_since_export.load(Ordering::Relaxed);
                self.waiting.exported(dropped_before || dropped_during);
            }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkError;

    use super::*;
    use crate::otel::config::Protocol;

    /// An exporter that holds every export until the test opens its gate, and can fail them.
    #[derive(Debug, Default)]
    struct Gated {
        open: Mutex<bool>,
        opened: std::sync::Condvar,
        fail: AtomicBool,
        exported: AtomicUsize,
        started: AtomicUsize,
    }

    /// The exporter the provider owns; the test keeps the other handle.
    #[derive(Debug)]
    struct Handle(Arc<Gated>);

    impl SpanExporter for Handle {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let this = &self.0;
            this.started.fetch_add(1, Ordering::SeqCst);
            let mut open = this.open.lock().unwrap_or_else(|e| e.into_inner());
            while !*open {
                open = this.opened.wait(open).unwrap_or_else(|e| e.into_inner());
            }
            drop(open);
            if this.fail.load(Ordering::SeqCst) {
                return Err(OTelSdkError::InternalFailure("collector down".into()));
            }
            this.exported.fetch_add(batch.len(), Ordering::SeqCst);
            Ok(())
        }
    }

    fn config(max_queue_size: usize) -> OtelConfig {
        OtelConfig {
            endpoint: String::new(),
            protocol: Protocol::Grpc,
            service_name: "test".into(),
            sampler: opentelemetry_sdk::trace::Sampler::AlwaysOn,
            max_queue_size,
        }
    }

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < give_up, "never: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_spans_and_never_blocks_and_the_bound_reopens() {
        let exporter = Arc::new(Gated::default());
        let provider = provider_with(Handle(exporter.clone()), &config(4));
        let tracer = provider.tracer("test");
        // The first span goes out (on force_flush) and its export is held.
        drop(tracer.start("first"));
        let flushing = {
            let provider = provider.clone();
            std::thread::spawn(move || provider.force_flush())
        };
        wait_until("the first export starts", || {
            exporter.started.load(Ordering::SeqCst) == 1
        });
        // Meanwhile: four spans fit, the rest are dropped at once.
        for _ in 0..10 {
            drop(tracer.start("meanwhile"));
        }
        *exporter.open.lock().unwrap() = true;
        exporter.opened.notify_all();
        let _ = flushing.join();
        provider.force_flush().unwrap();
        assert_eq!(exporter.exported.load(Ordering::SeqCst), 1 + 4);
        // Every admitted span left the count: the bound lets spans in again.
        for _ in 0..3 {
            drop(tracer.start("after"));
        }
        provider.force_flush().unwrap();
        assert_eq!(exporter.exported.load(Ordering::SeqCst), 1 + 4 + 3);
        let _ = provider.shutdown();
    }

    #[test]
    fn an_outage_lasts_while_spans_are_dropped_within_the_quiet_period() {
        let waiting = Waiting {
            quiet: Duration::from_secs(3600),
            ..Waiting::default()
        };
        waiting.dropped(1, "queue_full", &"behind");
        waiting.exported(false);
        assert!(
            waiting.outage_logged.load(Ordering::SeqCst),
            "still in the outage"
        );
    }

    #[test]
    fn an_outage_ends_only_after_an_export_with_nothing_dropped() {
        let waiting = Waiting::default();
        waiting.dropped(2, "export_failed", &"down");
        assert!(waiting.outage_logged.load(Ordering::SeqCst));
        // Spans were dropped while this batch was out: the outage goes on.
        waiting.exported(true);
        assert!(waiting.outage_logged.load(Ordering::SeqCst));
        waiting.exported(false);
        assert!(!waiting.outage_logged.load(Ordering::SeqCst));
        assert_eq!(waiting.dropped_in_outage.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn spans_of_a_failed_export_are_no_longer_waiting() {
        let exporter = Arc::new(Gated::default());
        *exporter.open.lock().unwrap() = true;
        exporter.fail.store(true, Ordering::SeqCst);
        let provider = provider_with(Handle(exporter.clone()), &config(2));
        let tracer = provider.tracer("test");
        for _ in 0..5 {
            drop(tracer.start("lost"));
            let _ = provider.force_flush();
        }
        assert_eq!(
            exporter.started.load(Ordering::SeqCst),
            5,
            "none dropped for a full queue"
        );
        let _ = provider.shutdown();
    }
}
