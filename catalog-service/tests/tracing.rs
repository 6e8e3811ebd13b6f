//! The real `catalog-service` binary configured for tracing by the standard `OTEL_*` variables,
//! exporting to an in-process OTLP collector: access lines (text and JSON) carry the trace and
//! span ids; `OTEL_SDK_DISABLED=true` sends nothing, even with an endpoint set, while the same
//! start without it sends its spans at exit; a collector that is down or hangs costs requests
//! nothing, and the spans lost are counted (by reason) and logged once. Discount is a port that refuses connections
//! (full prices), which is all these tests need of it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Catalog, refusing_port, start_catalog_with};
use otlp_receiver::{Receiver, kind};
use process_testing::{exit_within, metric, metrics_of, poll_until, sigterm};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn get_products(catalog: &Catalog, traceparent: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new()
        .get(format!("http://{}/products", catalog.addr))
        .header("X-USER-ID", "1");
    if let Some(parent) = traceparent {
        request = request.header("traceparent", parent);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Stops Catalog with SIGTERM and waits for it to exit (it flushes its spans first).
async fn terminate(mut catalog: Catalog) {
    sigterm(&catalog.child);
    let limit = Duration::from_secs(30);
    let status = exit_within(&mut catalog.child, limit, "Catalog exits after SIGTERM").await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn access_lines_carry_the_trace_and_span_ids_in_text_and_json() {
    let receiver = Receiver::start().await.unwrap();
    let (_refusing, discount) = refusing_port();
    let endpoint = receiver.http_endpoint();
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "20"),
    ];
    for format in ["text", "json"] {
        let catalog = start_catalog_with(discount, &["--log-format", format], &vars).await;
        assert_eq!(get_products(&catalog, Some(PARENT)).await, 200);
        let line = catalog.log.line_with("http request").await;
        let spans = receiver
            .wait_for("this Catalog's server span", |spans| {
                spans.iter().filter(|s| s.kind == kind::SERVER).count()
                    == 1 + usize::from(format == "json")
            })
            .await;
        let server = spans.iter().rev().find(|s| s.kind == kind::SERVER).unwrap();
        assert_eq!(server.trace_id, TRACE);
        assert_eq!(server.service, "catalog", "the default service name");
        let (trace_field, span_field) = match format {
            "text" => (
                format!("trace_id={TRACE}"),
                format!("span_id={}", server.span_id),
            ),
            _ => (
                format!(r#""trace_id":"{TRACE}""#),
                format!(r#""span_id":"{}""#, server.span_id),
            ),
        };
        assert!(line.contains(&trace_field), "{format}: {line}");
        assert!(line.contains(&span_field), "{format}: {line}");
    }
}

#[tokio::test]
async fn otel_sdk_disabled_sends_nothing_though_an_endpoint_is_set() {
    let receiver = Receiver::start().await.unwrap();
    let (_refusing, discount) = refusing_port();
    let endpoint = receiver.grpc_endpoint();
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_SERVICE_NAME", "shop-catalog"),
    ];

    let mut disabled = vars.to_vec();
    disabled.push(("OTEL_SDK_DISABLED", "true"));
    let catalog = start_catalog_with(discount, &[], &disabled).await;
    catalog.log.line_with("trace export off").await;
    assert_eq!(get_products(&catalog, Some(PARENT)).await, 200);
    let line = catalog.log.line_with("http request").await;
    assert!(!line.contains("trace_id"), "{line}");
    terminate(catalog).await;
    assert_eq!(receiver.exports(), 0, "{:#?}", receiver.spans());

    // The same start without OTEL_SDK_DISABLED sends its spans by the time it has exited.
    let catalog = start_catalog_with(discount, &[], &vars).await;
    assert_eq!(get_products(&catalog, Some(PARENT)).await, 200);
    terminate(catalog).await;
    let spans = receiver.spans();
    assert!(receiver.exports() > 0);
    assert!(
        spans
            .iter()
            .any(|s| s.service == "shop-catalog" && s.trace_id == TRACE),
        "{spans:#?}"
    );
}

#[tokio::test]
async fn a_collector_that_is_down_costs_requests_nothing_and_lost_spans_are_counted_and_logged_once()
 {
    let (_refusing, discount) = refusing_port();
    let (_down, collector) = refusing_port();
    let endpoint = format!("http://{collector}");
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "10"),
    ];
    let catalog = start_catalog_with(discount, &[], &vars).await;
    for _ in 0..30 {
        let started = std::time::Instant::now();
        assert_eq!(get_products(&catalog, Some(PARENT)).await, 200);
        // Not a benchmark: a request that waited for the exporter would take its whole
        // timeout (10 s).
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    let dropped = r#"trace_spans_dropped_total{reason="export_failed"}"#;
    let count = poll_until(
        "spans lost to the collector being down are counted",
        || async { metric(&metrics_of(catalog.ops_addr).await, dropped) },
    )
    .await;
    assert!(count >= 1.0, "{count}");
    assert!(
        metrics_of(catalog.ops_addr)
            .await
            .contains("# HELP trace_spans_dropped_total"),
        "described"
    );
    catalog.log.line_with("dropping trace spans").await;
    // More requests, more failed exports: still one line for the outage.
    for _ in 0..10 {
        assert_eq!(get_products(&catalog, None).await, 200);
    }
    poll_until("more lost spans are counted", || async {
        metric(&metrics_of(catalog.ops_addr).await, dropped).filter(|&now| now > count)
    })
    .await;
    let lines = catalog.log.all();
    assert_eq!(lines.matches("dropping trace spans").count(), 1, "{lines}");
}

#[tokio::test]
async fn a_collector_that_hangs_costs_requests_nothing_and_a_full_queue_is_counted() {
    let receiver = Receiver::start().await.unwrap();
    // It takes exports and never answers them; the exporter waits for a minute.
    receiver.hang(true);
    let (_refusing, discount) = refusing_port();
    let endpoint = receiver.grpc_endpoint();
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "60000"),
        ("OTEL_BSP_SCHEDULE_DELAY", "10"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
    ];
    let catalog = start_catalog_with(discount, &[], &vars).await;
    // The first request's spans go out and are held; the queue behind them fills.
    assert_eq!(get_products(&catalog, Some(PARENT)).await, 200);
    poll_until("an export reaches the collector", || async {
        (receiver.exports() > 0).then_some(())
    })
    .await;
    for _ in 0..30 {
        assert_eq!(get_products(&catalog, Some(PARENT)).await, 200);
    }
    let text = metrics_of(catalog.ops_addr).await;
    let full = r#"trace_spans_dropped_total{reason="queue_full"}"#;
    let dropped = metric(&text, full).unwrap_or_else(|| panic!("no {full} in {text}"));
    // At least 30 requests' spans did not fit in a queue of 8.
    assert!(dropped >= 30.0, "{dropped}");
    assert_eq!(receiver.exports(), 1, "one export, still held");
    catalog.log.line_with("dropping trace spans").await;
}
