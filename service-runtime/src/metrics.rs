//! The process's Prometheus recorder, behind the `metrics` facade every crate records to; the
//! descriptions (`# HELP` lines) of the metrics every service exports alike, and the way each
//! service describes its own; and the content type the text exposition is served with. For
//! crates' tests: the scan of a crate's source for the metrics it records, the check that each
//! is described once, as what it is, and the check of names and help texts.

use std::path::Path;
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
/// share it). [`describe_service`] calls it first.
pub fn describe_metrics() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| describe(SHARED_METRICS));
}

/// Describes [`SHARED_METRICS`] and then a service's `own` metrics, the first time it is called
/// with `described` (the service's `static` [`Once`]): several servers of one service started in
/// one test process describe them once. Each service's `describe_metrics` is this call.
pub fn describe_service(described: &Once, own: &[Description]) {
    described.call_once(|| {
        describe_metrics();
        describe(own);
    });
}

/// For crates' tests: the (kind, name) of each metric recorded in the `.rs` files under `dir`
/// (recursively) by a `counter!`, `gauge!` or `histogram!` call that names it with a string
/// literal, one entry per call. Names given as constants or variables are not found: a test adds
/// those itself. An error is a file or folder that cannot be read.
pub fn metrics_recorded_in(dir: &Path) -> std::io::Result<Vec<(Kind, String)>> {
    let mut found = Vec::new();
    scan(dir, &mut found)?;
    Ok(found)
}

fn scan(dir: &Path, found: &mut Vec<(Kind, String)>) -> std::io::Result<()> {
    let kinds = [
        ("counter", Kind::Counter),
        ("gauge", Kind::Gauge),
        ("histogram", Kind::Histogram),
    ];
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            scan(&path, found)?;
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        for (word, kind) in kinds {
            let call = format!("{word}!(");
            for (at, _) in text.match_indices(&call) {
                let rest = text[at + call.len()..].trim_start();
                if let Some((name, _)) = rest.strip_prefix('"').and_then(|l| l.split_once('"')) {
                    found.push((kind, name.to_owned()));
                }
            }
        }
    }
    Ok(())
}

/// For crates' tests: panics unless every name in `descriptions` carries its unit
/// ([`Description::unit_in_name`]) and every help text is a sentence (ends with a full stop).
pub fn assert_named_with_units_and_helped_in_sentences(descriptions: &[Description]) {
    for description in descriptions {
        assert!(description.unit_in_name(), "{description:?}");
        assert!(description.help.ends_with('.'), "{description:?}");
    }
}

/// For crates' tests: panics unless every metric in `recorded` (as [`metrics_recorded_in`]
/// finds them, plus any a test adds) is described exactly once in `descriptions`, as the kind it
/// is recorded as, and every description is of a metric in `recorded`.
pub fn assert_recorded_metrics_described(
    recorded: &[(Kind, String)],
    descriptions: &[Description],
) {
    for (kind, name) in recorded {
        let described: Vec<&Description> = descriptions.iter().filter(|d| d.name == name).collect();
        assert_eq!(described.len(), 1, "{name} is described {described:?}");
        assert_eq!(described[0].kind, *kind, "{name}");
    }
    for description in descriptions {
        assert!(
            recorded.iter().any(|(_, name)| name == description.name),
            "{} is described but never recorded",
            description.name
        );
    }
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
    fn the_scan_finds_metrics_named_by_literals_in_rust_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a");
        std::fs::create_dir(&nested).unwrap();
        std::fs::write(
            nested.join("b.rs"),
            r#"counter!("a_total", "l" => "v"); gauge!( "b_open"); histogram!(NAME);"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("c.rs"), r#"histogram!("c_seconds")"#).unwrap();
        std::fs::write(dir.path().join("d.md"), r#"counter!("d_total")"#).unwrap();
        let mut found = metrics_recorded_in(dir.path()).unwrap();
        found.sort_by(|a, b| a.1.cmp(&b.1));
        let names = |kind, name: &str| (kind, name.to_owned());
        assert_eq!(
            found,
            [
                names(Kind::Counter, "a_total"),
                names(Kind::Gauge, "b_open"),
                names(Kind::Histogram, "c_seconds"),
            ]
        );
        assert!(metrics_recorded_in(&dir.path().join("none")).is_err());
    }

    #[test]
    #[should_panic(expected = "b_total is described but never recorded")]
    fn a_description_of_nothing_recorded_is_refused() {
        let described = |name| Description {
            name,
            kind: Kind::Counter,
            unit: Unit::Count,
            help: ".",
        };
        let recorded = [(Kind::Counter, "a_total".to_owned())];
        assert_recorded_metrics_described(&recorded, &[described("a_total")]);
        assert_recorded_metrics_described(&recorded, &[described("a_total"), described("b_total")]);
    }

    #[test]
    fn every_shared_name_carries_its_unit_and_every_help_text_is_a_sentence() {
        assert_named_with_units_and_helped_in_sentences(SHARED_METRICS);
    }
}
