//! The `# HELP` text and unit of every metric Catalog exports, given to the process's recorder
//! once, at start ([`describe_metrics`]); the metrics every service shares are described by
//! service-runtime.

use std::sync::Once;

use metrics::Unit;
use service_runtime::metrics::{Description, Kind, describe};

/// Catalog's own metrics (the shared ones are in [`service_runtime::metrics::SHARED_METRICS`]).
pub const METRICS: &[Description] = &[
    Description {
        name: "catalog_http_requests_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "HTTP requests answered on the public port, labelled route (the route template, \
               or unmatched) and status (the HTTP status code).",
    },
    Description {
        name: "catalog_http_request_duration_seconds",
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "Time taken to answer an HTTP request on the public port, in seconds, labelled \
               route (the route template, or unmatched).",
    },
    Description {
        name: "catalog_http_requests_shed_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "HTTP requests answered 503 at once because --http-max-concurrent-requests were \
               in progress (also counted in catalog_http_requests_total); no labels.",
    },
    Description {
        name: "catalog_http_connections_open",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "HTTP connections open on the public port; no labels.",
    },
    Description {
        name: "catalog_http_connections_refused_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Connections to the public port closed at once because --http-max-connections \
               were open; no labels.",
    },
    Description {
        name: "catalog_http_header_timeouts_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Connections closed because a request's headers did not arrive within \
               --http-header-timeout-ms; no labels.",
    },
    Description {
        name: "catalog_discount_calls_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Discount steps for known customers, labelled outcome: ok, or why full prices \
               were served (unavailable, deadline-exceeded, rejected, bad-response, \
               overloaded).",
    },
    Description {
        name: "catalog_discount_requests_per_rpc",
        kind: Kind::Histogram,
        unit: Unit::Count,
        help: "HTTP requests each discount RPC carried (1 for a request's own RPC, more when \
               coalesced); no labels.",
    },
    Description {
        name: "catalog_discount_queue_full_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Requests served full prices at once because the coalescing queue was full; no \
               labels.",
    },
    Description {
        name: "catalog_discount_replicas",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Discount replicas known, labelled state (in_rotation or out_of_rotation).",
    },
    Description {
        name: "catalog_discount_replica_ejections_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Discount replicas taken out of rotation, labelled reason (unavailable, timeout \
               or health).",
    },
    Description {
        name: "catalog_discount_retries_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Discount RPCs sent again to another replica after a failed attempt; no labels.",
    },
    Description {
        name: "catalog_discount_short_circuited_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Discount RPCs not sent (full prices at once) because every replica was out of \
               rotation and another RPC was already trying one; no labels.",
    },
];

/// Describes Catalog's metrics and the shared ones to the process's recorder (installing it),
/// once per process: several Catalogs started in one test process describe them once.
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
