//! The `# HELP` text and unit of every metric Discount exports, given to the process's recorder
//! once, at start ([`describe_metrics`]), and the names of the counters the mTLS accept loop
//! records for Discount; the metrics every service shares are described by service-runtime.

use std::sync::Once;

use metrics::Unit;
use service_runtime::metrics::{Description, Kind, describe};

/// The counter of refused TLS handshakes, labelled `reason`.
pub const HANDSHAKE_FAILURES_METRIC: &str = "discount_tls_handshake_failures_total";

/// The counter of connections closed at once because `max_connections` were open.
pub const CONNECTIONS_REFUSED_METRIC: &str = "discount_connections_refused_total";

/// Discount's own metrics (the shared ones are in [`service_runtime::metrics::SHARED_METRICS`]).
pub const METRICS: &[Description] = &[
    Description {
        name: "discount_rpc_requests_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "RPCs answered, labelled rpc (the method) and code (the gRPC status, e.g. OK or \
               PERMISSION_DENIED).",
    },
    Description {
        name: "discount_rpc_duration_seconds",
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "Time taken to answer an RPC, in seconds, labelled rpc (the method).",
    },
    Description {
        name: "discount_groups_per_rpc",
        kind: Kind::Histogram,
        unit: Unit::Count,
        help: "Groups (coalesced Catalog requests) each successful ApplyDiscountGroups RPC \
               carried; no labels.",
    },
    Description {
        name: "discount_authz_denied_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "RPCs refused because the allow-list does not name the caller for them, \
               labelled rpc (the method).",
    },
    Description {
        name: HANDSHAKE_FAILURES_METRIC,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "TLS handshakes refused, labelled reason (no_client_certificate, unknown_ca, \
               expired, not_yet_valid, bad_certificate, not_tls, incompatible, timeout, io).",
    },
    Description {
        name: CONNECTIONS_REFUSED_METRIC,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Connections closed before the TLS handshake because --max-connections were \
               open; no labels.",
    },
];

/// Describes Discount's metrics and the shared ones to the process's recorder (installing
/// it), once per process: several servers started in one test process describe them once.
pub fn describe_metrics() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        service_runtime::metrics::describe_metrics();
        describe(METRICS);
    });
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The (kind, name) of each metric recorded under `dir` by a `counter!`, `gauge!` or
    /// `histogram!` call that names it with a string literal.
    fn recorded_in(dir: &Path, found: &mut Vec<(Kind, String)>) {
        let kinds = [
            ("counter", Kind::Counter),
            ("gauge", Kind::Gauge),
            ("histogram", Kind::Histogram),
        ];
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                recorded_in(&path, found);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (word, kind) in kinds {
                let call = format!("{word}!(");
                for (at, _) in text.match_indices(&call) {
                    let rest = text[at + call.len()..].trim_start();
                    if let Some(literal) = rest.strip_prefix('"') {
                        let end = literal.find('"').unwrap();
                        found.push((kind, literal[..end].to_owned()));
                    }
                }
            }
        }
    }

    #[test]
    fn every_metric_recorded_in_the_source_is_described_once_as_what_it_is() {
        let mut recorded = Vec::new();
        recorded_in(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut recorded,
        );
        // The accept loop (in mtls) records these under the names Discount gives it.
        recorded.push((Kind::Counter, HANDSHAKE_FAILURES_METRIC.to_owned()));
        recorded.push((Kind::Counter, CONNECTIONS_REFUSED_METRIC.to_owned()));
        for (kind, name) in &recorded {
            let described: Vec<&Description> = METRICS.iter().filter(|d| d.name == name).collect();
            assert_eq!(described.len(), 1, "{name} is described {described:?}");
            assert_eq!(described[0].kind, *kind, "{name}");
        }
        for description in METRICS {
            assert!(
                recorded.iter().any(|(_, name)| name == description.name),
                "{} is described but never recorded",
                description.name
            );
        }
    }

    #[test]
    fn every_name_carries_its_unit_and_every_help_text_is_a_sentence() {
        for description in METRICS {
            assert!(description.unit_in_name(), "{description:?}");
            assert!(description.help.ends_with('.'), "{description:?}");
        }
    }
}
