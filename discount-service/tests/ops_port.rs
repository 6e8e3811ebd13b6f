//! The real `discount-service` binary's operations port: it answers as every service's does
//! (`service_runtime::ops`), ready while Discount serves and 503 from the moment shutdown
//! starts until it has drained; `off` opens no port; the deprecated `--metrics-listen` still
//! opens it, with one warning, and may not be given with `--ops-listen`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{certs, channel, command, spawn, start, start_with_ops_port};
use process_testing::{ask, assert_operations_port, exit_within, listening_ports, sigterm};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::test]
async fn the_operations_port_answers_as_every_service_s_and_discount_is_ready() {
    let certs = certs();
    let discount = start_with_ops_port(certs.path().to_str().unwrap()).await;
    let ready = assert_operations_port(discount.ops).await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (200, r#"{"status":"ready"}"#)
    );
}

#[tokio::test]
async fn readyz_is_503_from_the_start_of_shutdown_and_the_port_closes_after_the_drain() {
    let certs = certs();
    let mut discount = start_with_ops_port(certs.path().to_str().unwrap()).await;
    let mut health = HealthClient::new(channel(discount.grpc, certs.path(), true));
    let request = || HealthCheckRequest {
        service: "ecommerce.Discount".into(),
    };
    assert_eq!(ask(discount.ops, "GET", "/readyz").await.status, 200);

    // A watch stream stays open through the drain: it sees the flip, and holds the drain open
    // while the test looks.
    let mut watch = health.watch(request()).await.unwrap().into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    sigterm(&discount.child);
    let next = watch.message().await.unwrap().unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    // What a Kubernetes readiness probe sees: not ready, and why.
    let ready = ask(discount.ops, "GET", "/readyz").await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(ready.content_type, "application/json");
    assert_eq!(
        ready.body,
        r#"{"status":"not_ready","not_ready":["discount: not serving (starting or shutting down)"]}"#
    );
    assert_eq!(ask(discount.ops, "GET", "/healthz").await.status, 200);

    drop(watch);
    let status = exit_within(&mut discount.child, Duration::from_secs(15), "exits").await;
    assert_eq!(status.code(), Some(0));
    assert!(tokio::net::TcpStream::connect(discount.ops).await.is_err());
}

#[tokio::test]
async fn off_opens_no_operations_port() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    let (child, log) = spawn(dir, &[], &[("DISCOUNT_OPS_LISTEN", "off")]);
    let off = log.line_with("Discount operations port off").await;
    assert!(off.contains("no /healthz, /readyz or /metrics"), "{off}");
    let grpc = log.addr_of("Discount listening").await;
    // Its one listening socket is gRPC's.
    let pid = child.id().unwrap();
    assert_eq!(listening_ports(pid), [grpc]);
    assert!(
        !log.all().contains("operations port listening"),
        "{}",
        log.all()
    );
}

/// The lines of `log` that warn of the deprecated flag.
fn deprecation_warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains("--metrics-listen"))
        .collect()
}

#[tokio::test]
async fn the_deprecated_metrics_listen_opens_the_port_with_one_warning() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    let discount = start(dir, &["--metrics-listen", "127.0.0.1:0"]).await;
    assert_eq!(assert_operations_port(discount.ops).await.status, 200);
    let all = discount.log.all();
    let warnings = deprecation_warnings(&all);
    assert_eq!(warnings.len(), 1, "{all}");
    let warning = warnings[0];
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("deprecated"), "{warning}");
    assert!(
        warning.contains("use --ops-listen (DISCOUNT_OPS_LISTEN)"),
        "{warning}"
    );
    // One port opened, where the deprecated flag said: gRPC's and this one.
    let pid = discount.child.id().unwrap();
    let mut ports = listening_ports(pid);
    ports.sort();
    let mut expected = vec![discount.grpc, discount.ops];
    expected.sort();
    assert_eq!(ports, expected);
}

#[tokio::test]
async fn the_deprecated_variable_works_too_and_with_the_new_one_stops_start_up() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    let (mut child, log) = spawn(dir, &[], &[("DISCOUNT_METRICS_LISTEN", "127.0.0.1:0")]);
    let ops = log.addr_of("Discount operations port listening").await;
    assert_eq!(ask(ops, "GET", "/healthz").await.status, 200);
    log.line_with("Discount listening").await;
    assert_eq!(deprecation_warnings(&log.all()).len(), 1, "{}", log.all());
    sigterm(&child);
    exit_within(&mut child, Duration::from_secs(15), "exits").await;

    // Both names given (say, the image's DISCOUNT_OPS_LISTEN and a deployment's old
    // DISCOUNT_METRICS_LISTEN): which port was meant is unclear, so it does not start.
    let both = command(&["--certs-dir", dir, "--listen", "127.0.0.1:0"])
        .env("DISCOUNT_OPS_LISTEN", "127.0.0.1:0")
        .env("DISCOUNT_METRICS_LISTEN", "127.0.0.1:0")
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), both)
        .await
        .expect("exits at start-up")
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.contains("--metrics-listen"), "{stderr}");
    assert!(first.contains("--ops-listen"), "{stderr}");
    assert!(first.contains("cannot be used with"), "{stderr}");
}
