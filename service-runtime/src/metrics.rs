//! The process's Prometheus recorder, behind the `metrics` facade every crate records to; the
//! descriptions (`# HELP` lines) of the metrics every service exports alike, and the way each
//! service describes its own; and the content type the text exposition is served with.

use std::sync::{Once, OnceLock};

use metrics::Unit;

use crate::logging::DROPPED_COUNTER;

/// The process's Prometheus registry: installed as the `metrics` recorder on first use, the
/// same handle afterwards (so several services in one test process share it harmlessly).
/// Histograms get fixed buckets from 0.5 ms to 2.5 s, except counts per RPC (names ending in
/// `_per_rpc`), which get powers of two from 1 to 1024; a background thread folds recorded
/// samples into them every second, so memory stays flat under load.
pub fn prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            const BUCKETS: [f64; 12] = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ];
            const PER_RPC_BUCKETS: [f64; 11] = [
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ];
            let per_rpc = metrics_exporter_prometheus::Matcher::Suffix("_per_rpc".into());
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
            // Setting buckets fails only for an empty list.
            let builder = builder
                .set_buckets(&BUCKETS)
                .and_then(|builder| builder.set_buckets_for_metric(per_rpc, &PER_RPC_BUCKETS))
                .unwrap_or_else(|_| metrics_exporter_prometheus::PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            // The recorder queues histogram samples until they are folded into buckets; without
            // this upkeep they would pile up with every request.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        upkeep.run_upkeep();
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                });
            if let Err(err) = spawned {
                tracing::error!(%err, "cannot start metrics upkeep: histograms will grow");
            }
            handle
        })
        .clone()
}

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The gauge of the expiry time of the certificate a service uses, in Unix seconds, labelled
/// `service`: one name for every service (each passes it to [`mtls::TlsReloader::start`]).
pub const CERTIFICATE_EXPIRY_METRIC: &str = "tls_certificate_expiry_timestamp_seconds";

/// What kind of metric a [`Description`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (names end in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Samples counted into buckets.
    Histogram,
}

/// A metric as its `# HELP` line describes it: its name, kind, unit (`Count` for a plain
/// number of things), and one sentence saying what it counts and what its labels are.
#[derive(Debug, Clone, Copy)]
pub struct Description {
    /// The name, unit suffix included (`_seconds`, `_total`).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// What one unit of its value is.
    pub unit: Unit,
    /// What it counts and its labels: the `# HELP` text.
    pub help: &'static str,
}

impl Description {
    /// Whether the name says its unit as Prometheus's conventions ask: a counter's ends in
    /// `_total`, and a value in seconds or bytes says so (`_seconds`, `_bytes`; before
    /// `_total` for a counter). A plain count needs no suffix.
    pub fn unit_in_name(&self) -> bool {
        let base = match self.kind {
            Kind::Counter => match self.name.strip_suffix("_total") {
                Some(base) => base,
                None => return false,
            },
            Kind::Gauge | Kind::Histogram => self.name,
        };
        self.unit == Unit::Count
            || base
                .strip_suffix(self.unit.as_str())
                .is_some_and(|rest| rest.ends_with('_'))
    }
}

/// The metrics every service exports: service-runtime's own, and those it names for all.
pub const SHARED_METRICS: &[Description] = &[
    Description {
        name: DROPPED_COUNTER,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Log lines dropped because the log sink's buffer was full or its write failed; \
               no labels.",
    },
    Description {
        name: CERTIFICATE_EXPIRY_METRIC,
        kind: Kind::Gauge,
        unit: Unit::Seconds,
        help: "When the TLS certificate in use expires, in Unix seconds, labelled service \
               (the service using it).",
    },
    Description {
        name: crate::otel::DROPPED_SPANS_COUNTER,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Trace spans never exported, labelled reason: queue_full (the exporter fell \
               behind) or export_failed (the collector could not be reached or refused them).",
    },
];

/// Gives the process's recorder (installed first: a description given before the recorder
/// exists is lost) the `# HELP` text and unit of each metric in `descriptions`. The first
/// description of a name is kept; later ones are ignored.
pub fn describe(descriptions: &[Description]) {
    prometheus();
    for metric in descriptions {
        let (name, unit, help) = (metric.name, metric.unit, metric.help);
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(name, unit, help),
            Kind::Gauge => metrics::describe_gauge!(name, unit, help),
            Kind::Histogram => metrics::describe_histogram!(name, unit, help),
        }
    }
}

/// Describes [`SHARED_METRICS`], once per process (services started in one test process
/// share it). Each service's own `describe_metrics` calls it.
pub fn describe_metrics() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| describe(SHARED_METRICS));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_carries_its_unit_or_does_not() {
        let named = |name, kind, unit| Description {
            name,
            kind,
            unit,
            help: "",
        };
        assert!(named("a_total", Kind::Counter, Unit::Count).unit_in_name());
        assert!(!named("a", Kind::Counter, Unit::Count).unit_in_name());
        assert!(named("a_seconds_total", Kind::Counter, Unit::Seconds).unit_in_name());
        assert!(!named("a_total", Kind::Counter, Unit::Seconds).unit_in_name());
        assert!(named("a_duration_seconds", Kind::Histogram, Unit::Seconds).unit_in_name());
        assert!(!named("a_duration", Kind::Histogram, Unit::Seconds).unit_in_name());
        assert!(!named("a_xseconds", Kind::Gauge, Unit::Seconds).unit_in_name());
        assert!(named("a_size_bytes", Kind::Gauge, Unit::Bytes).unit_in_name());
        assert!(named("a_open", Kind::Gauge, Unit::Count).unit_in_name());
    }

    #[test]
    fn every_shared_name_carries_its_unit_and_every_help_text_is_a_sentence() {
        for description in SHARED_METRICS {
            assert!(description.unit_in_name(), "{description:?}");
            assert!(description.help.ends_with('.'), "{description:?}");
        }
    }
}
