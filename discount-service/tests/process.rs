//! The real `discount-service` binary: start-up errors are one clear line and exit 1; SIGTERM
//! is a clean exit 0; its operations port counts RPCs, refusals and connections, and describes
//! every metric family with a `# HELP` line; with `OTEL_*` set, an RPC continues its caller's
//! trace in the spans it exports and in its access line.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{certs, grpc_client, run, spawn, start_with_ops_port, start_with_ops_port_and};
use ecommerce_proto::pb::{BatchDiscountRequest, Customer, DiscountGroupsRequest, DiscountRequest};
use process_testing::{
    LOG_GUARD, assert_families_described, exit_within, metric, metrics_of, sigterm,
    single_error_line,
};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn bad_allow_rule_is_named() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    let line = single_error_line(&run(&["--certs-dir", dir, "--allow", "Nope=spiffe://x/y"]).await);
    assert!(line.contains("invalid --allow rule"), "{line}");
}

#[tokio::test]
async fn key_that_does_not_match_is_named() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    let key = format!("{dir}/catalog.key");
    let line = single_error_line(&run(&["--certs-dir", dir, "--key", &key]).await);
    assert!(
        line.contains("private key does not match the certificate"),
        "{line}"
    );
}

#[tokio::test]
async fn sigterm_stops_it_cleanly() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    let (mut child, log) = spawn(dir, &["--ops-listen", "127.0.0.1:0"], &[]);
    // Ready once it says it listens (read from its log: no polling, no sleep).
    log.line_with("Discount listening").await;

    sigterm(&child);
    let status = exit_within(&mut child, Duration::from_secs(10), "exits after SIGTERM").await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn probe_subcommand_checks_the_operations_port() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    let discount = start_with_ops_port(dir).await;
    let ops = discount.ops;

    for path in ["/healthz", "/readyz"] {
        let output = run(&["probe", &format!("http://{ops}{path}")]).await;
        assert_eq!(output.status.code(), Some(0), "{path}: {output:?}");
    }
    let output = run(&["probe", &format!("http://{ops}/nope")]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("answered 404"), "{stderr}");
}

#[tokio::test]
async fn discount_metrics_count_rpcs_and_refused_handshakes() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    let discount = start_with_ops_port(dir).await;

    let mut good = grpc_client(discount.grpc, certs.path(), true);
    let request = BatchDiscountRequest {
        customer: Some(Customer {
            id: 1,
            ..Default::default()
        }),
        products: Vec::new(),
    };
    good.apply_discount_batch(request).await.unwrap();
    let mut anonymous = grpc_client(discount.grpc, certs.path(), false);
    let refused = anonymous
        .apply_discount_batch(BatchDiscountRequest::default())
        .await;
    assert!(refused.is_err());
    // The refusal is counted before it is logged: once logged, /metrics shows it.
    let line = discount.log.line_with("TLS handshake refused").await;
    assert!(line.contains("no_client_certificate"), "{line}");

    let response = reqwest::get(format!("http://{}/metrics", discount.ops))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let rpcs = r#"discount_rpc_requests_total{rpc="ApplyDiscountBatch",code="OK"}"#;
    assert_eq!(metric(&text, rpcs), Some(1.0), "{text}");
    let handshakes = r#"discount_tls_handshake_failures_total{reason="no_client_certificate"}"#;
    assert_eq!(metric(&text, handshakes), Some(1.0), "{text}");
    let health = reqwest::get(format!("http://{}/healthz", discount.ops))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// A valid batch: customer 1, no products.
fn no_products() -> BatchDiscountRequest {
    BatchDiscountRequest {
        customer: Some(Customer {
            id: 1,
            ..Default::default()
        }),
        products: Vec::new(),
    }
}

#[tokio::test]
async fn connections_past_the_caps_make_room_or_are_closed_counted_and_logged() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    // A connection not dropped by a cap waits for its handshake far longer than the test.
    let discount = start_with_ops_port_and(
        dir,
        &["--max-connections", "1", "--handshake-timeout-secs", "600"],
    )
    .await;
    // The one connection allowed, silent: a real client takes its place.
    let mut silent = tokio::net::TcpStream::connect(discount.grpc).await.unwrap();
    let mut first = grpc_client(discount.grpc, certs.path(), true);
    first.apply_discount_batch(no_products()).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(LOG_GUARD, silent.read(&mut buf))
        .await
        .expect("closed to make room");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let line = discount.log.line_with("had not proved themselves").await;
    assert!(line.contains("unproven_evicted=1"), "{line}");

    // Now the one connection allowed has done its handshake: the next is closed without a
    // byte of TLS.
    let mut extra = tokio::net::TcpStream::connect(discount.grpc).await.unwrap();
    let read = tokio::time::timeout(LOG_GUARD, extra.read(&mut buf))
        .await
        .expect("closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    let text = metrics_of(discount.ops).await;
    let dropped = |reason: &str| {
        let series = format!("discount_connections_dropped_total{{reason=\"{reason}\"}}");
        metric(&text, &series)
    };
    assert_eq!(dropped("unproven_evicted"), Some(1.0), "{text}");
    assert_eq!(dropped("at_capacity"), Some(1.0), "{text}");
    assert_eq!(
        metric(&text, "discount_connections_open"),
        Some(1.0),
        "{text}"
    );
    // The open connection keeps being served.
    first.apply_discount_batch(no_products()).await.unwrap();
}

#[tokio::test]
async fn every_metric_discount_exports_has_help_text() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    // Catalog may call the batch and groups RPCs, not ApplyDiscount: one of each answer.
    let catalog = "spiffe://shop.local/catalog";
    let discount = start_with_ops_port_and(
        dir,
        &[
            "--allow",
            &format!("ApplyDiscountBatch={catalog}"),
            "--allow",
            &format!("ApplyDiscountGroups={catalog}"),
        ],
    )
    .await;
    let mut client = grpc_client(discount.grpc, certs.path(), true);
    client.apply_discount_batch(no_products()).await.unwrap();
    let groups = DiscountGroupsRequest {
        groups: vec![no_products(), no_products()],
    };
    client.apply_discount_groups(groups).await.unwrap();
    let denied = client.apply_discount(DiscountRequest::default()).await;
    assert_eq!(denied.unwrap_err().code(), tonic::Code::PermissionDenied);
    let mut anonymous = grpc_client(discount.grpc, certs.path(), false);
    assert!(anonymous.apply_discount_batch(no_products()).await.is_err());
    discount.log.line_with("TLS handshake refused").await;

    let text = metrics_of(discount.ops).await;
    // Those the traffic above made: Discount's own and a shared one.
    let made = [
        "discount_rpc_requests_total",
        "discount_rpc_duration_seconds",
        "discount_groups_per_rpc",
        "discount_authz_denied_total",
        "discount_tls_handshake_failures_total",
        "discount_connections_open",
        "discount_connections_dropped_total",
        "tls_certificate_expiry_timestamp_seconds",
    ];
    assert_families_described(&text, &made);
}

#[tokio::test]
async fn rpcs_continue_the_callers_trace_and_access_lines_carry_its_ids() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CALLER_SPAN: &str = "00f067aa0ba902b7";
    let receiver = otlp_receiver::Receiver::start().await.unwrap();
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    let endpoint = receiver.grpc_endpoint();
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "20"),
    ];
    let (_child, log) = spawn(dir, &["--ops-listen", "off"], &vars);
    let grpc = log.addr_of("Discount listening").await;

    let mut request = tonic::Request::new(no_products());
    let parent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    request
        .metadata_mut()
        .insert("traceparent", parent.parse().unwrap());
    grpc_client(grpc, certs.path(), true)
        .apply_discount_batch(request)
        .await
        .unwrap();

    let spans = receiver
        .wait_for("Discount's server and rule spans", |spans| spans.len() >= 2)
        .await;
    let server = spans
        .iter()
        .find(|s| s.kind == otlp_receiver::kind::SERVER)
        .unwrap();
    assert_eq!(server.service, "discount", "the default service name");
    assert_eq!(server.trace_id, TRACE);
    assert_eq!(server.parent_span_id, CALLER_SPAN);
    assert_eq!(server.name, "ecommerce.Discount/ApplyDiscountBatch");
    assert_eq!(server.attr("rpc.system"), Some("grpc"));
    assert_eq!(server.attr("rpc.service"), Some("ecommerce.Discount"));
    assert_eq!(server.attr("rpc.method"), Some("ApplyDiscountBatch"));
    assert_eq!(server.attr("rpc.grpc.status_code"), Some("0"));
    let rule = spans.iter().find(|s| s.name == "discount rule").unwrap();
    assert_eq!(rule.parent_span_id, server.span_id);

    let line = log.line_with("rpc=\"ApplyDiscountBatch\"").await;
    assert!(line.contains(&format!("trace_id={TRACE}")), "{line}");
    assert!(
        line.contains(&format!("span_id={}", server.span_id)),
        "{line}"
    );
}
