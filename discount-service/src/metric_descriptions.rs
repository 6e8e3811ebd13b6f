//! The `# HELP` text and unit of every metric Discount exports, given to the process's recorder
//! once, at start ([`describe_metrics`]), and the names of the metrics the accept loop (mtls
//! and admission) records for Discount; the metrics every service shares are described by
//! service-runtime.

use std::sync::Once;

use metrics::Unit;
use service_runtime::metrics::{Description, Kind};

/// The counter of refused TLS handshakes, labelled `reason`.
pub const HANDSHAKE_FAILURES_METRIC: &str = "discount_tls_handshake_failures_total";

/// The gauge of connections open on the gRPC port.
pub const CONNECTIONS_OPEN_METRIC: &str = "discount_connections_open";

/// The counter of connections the admission gate dropped or refused, labelled `reason`.
pub const CONNECTIONS_DROPPED_METRIC: &str = "discount_connections_dropped_total";

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
        help: "Groups (coalesced Catalog requests) each successful ApplyDiscountPrices or \
               ApplyDiscountGroups RPC carried; no labels.",
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
               expired, not_yet_valid, bad_certificate, not_tls, incompatible, closed, io); \
               those too slow are in discount_connections_dropped_total.",
    },
    Description {
        name: CONNECTIONS_OPEN_METRIC,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Connections open on the gRPC port, those still in their TLS handshake included; \
               no labels.",
    },
    Description {
        name: CONNECTIONS_DROPPED_METRIC,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Connections to the gRPC port closed by the admission rules, labelled reason: \
               unproven_evicted (still in its handshake, the oldest such, to make room), \
               unproven_timeout (handshake not done within --handshake-timeout-secs), \
               at_capacity (every one of --max-connections had completed its handshake: \
               closed before it); idle_evicted is always 0 here (Discount never evicts a \
               connection past its handshake).",
    },
];

/// Describes Discount's metrics and the shared ones to the process's recorder (installing
/// it), once per process: several servers started in one test process describe them once.
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
        // The accept loop (mtls and admission) records these under the names Discount gives it.
        recorded.push((Kind::Counter, HANDSHAKE_FAILURES_METRIC.to_owned()));
        recorded.push((Kind::Gauge, CONNECTIONS_OPEN_METRIC.to_owned()));
        recorded.push((Kind::Counter, CONNECTIONS_DROPPED_METRIC.to_owned()));
        assert_recorded_metrics_described(&recorded, METRICS);
    }

    #[test]
    fn every_name_carries_its_unit_and_every_help_text_is_a_sentence() {
        assert_named_with_units_and_helped_in_sentences(METRICS);
    }
}
