//! The `# HELP` text and unit of every metric Catalog exports, given to the process's recorder
//! once, at start ([`describe_metrics`]), and the names of the metrics the admission gate
//! records for Catalog's public port; the metrics every service shares are described by
//! service-runtime.

use std::sync::Once;

use metrics::Unit;
use service_runtime::metrics::{Description, Kind};

/// The gauge of connections open on the public port.
pub const CONNECTIONS_OPEN_METRIC: &str = "catalog_http_connections_open";

/// The counter of connections to the public port the admission gate dropped or refused,
/// labelled `reason`.
pub const CONNECTIONS_DROPPED_METRIC: &str = "catalog_http_connections_dropped_total";

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
        name: CONNECTIONS_OPEN_METRIC,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "HTTP connections open on the public port, those whose first request has not \
               arrived included; no labels.",
    },
    Description {
        name: CONNECTIONS_DROPPED_METRIC,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Connections to the public port closed by the admission rules, labelled reason: \
               unproven_evicted (no whole request head yet, the oldest such, to make room), \
               unproven_timeout (no whole first request head within --http-header-timeout-ms), \
               idle_evicted (kept alive between requests, the longest idle, to make room), \
               at_capacity (every one of --http-max-connections in use: closed at once).",
    },
    Description {
        name: "catalog_http_header_timeouts_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Kept-alive connections closed because a later request's headers did not arrive \
               within --http-header-timeout-ms of its first byte (a first request's are \
               catalog_http_connections_dropped_total{reason=\"unproven_timeout\"}); no \
               labels.",
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
        name: "catalog_data_snapshot_age_seconds",
        kind: Kind::Gauge,
        unit: Unit::Seconds,
        help: "Seconds since the data source last confirmed that the catalog served is current \
               (0 for the embedded data, which never changes); rises while the source is down \
               or refuses its changes; no labels.",
    },
    Description {
        name: "catalog_data_source_up",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Whether the data source could be read at its last look: 1 or 0; no labels.",
    },
    Description {
        name: "catalog_data_reloads_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Changes from the data source, labelled source (files or database) and result \
               (applied: a new snapshot serves; refused: the last good data keeps serving).",
    },
    Description {
        name: "catalog_data_notifications_total",
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Change notifications received from the database, labelled result (read: its \
               ids are read again with Catalog's own SELECT; malformed: not a catalog change, \
               ignored; read_all: `<table>:*`, the whole catalog read again, at most once a second or \
               once per the last full read's duration). A notification is only a hint: anyone \
               may send one.",
    },
    Description {
        name: "catalog_data_products",
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Products in the catalog snapshot served; no labels.",
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
    service_runtime::metrics::describe_service(&DESCRIBED, METRICS);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use service_runtime::metrics::{
        assert_named_with_units_and_helped_in_sentences, assert_recorded_metrics_described,
        metrics_recorded_in,
    };

    use super::*;

    #[test]
    fn every_metric_recorded_in_the_source_is_described_once_as_what_it_is() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut recorded = metrics_recorded_in(&src).unwrap();
        // The admission gate records these under the names Catalog gives it.
        recorded.push((Kind::Gauge, CONNECTIONS_OPEN_METRIC.to_owned()));
        recorded.push((Kind::Counter, CONNECTIONS_DROPPED_METRIC.to_owned()));
        assert_recorded_metrics_described(&recorded, METRICS);
    }

    #[test]
    fn every_name_carries_its_unit_and_every_help_text_is_a_sentence() {
        assert_named_with_units_and_helped_in_sentences(METRICS);
    }
}
