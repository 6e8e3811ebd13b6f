//! Graceful shutdown of the real `catalog-service` binary: on SIGTERM it stops accepting,
//! lets the request in flight finish while its operations port says it is shutting down, and
//! exits 0; and it never waits past its drain deadline.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Catalog, start_catalog};
use process_testing::{exit_within, sigterm};
use tokio::net::TcpListener;
use tokio::process::Command;

/// A "Discount" that accepts connections and never answers, and says when the first one
/// arrives: from then on, a request is in flight in Catalog.
async fn black_hole() -> (SocketAddr, tokio::sync::oneshot::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn request_in_flight_at_sigterm_completes_and_process_exits_0() {
    let (discount, in_flight) = black_hole().await;
    // The request waits 1.5 s for Discount, then answers with full prices.
    let Catalog {
        mut child,
        addr,
        ops_addr,
        log,
        certs: _certs,
    } = start_catalog(discount, &["--discount-timeout-ms", "1500"]).await;

    let request = tokio::spawn(
        reqwest::Client::new()
            .get(format!("http://{addr}/products"))
            .header("X-USER-ID", "1")
            .send(),
    );
    in_flight.await.unwrap();
    sigterm(&child);
    log.line_with("shutting down: no new connections").await;
    // While the request drains, readiness says so on the operations port.
    let ready = reqwest::get(format!("http://{ops_addr}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body = ready.text().await.unwrap();
    assert!(body.contains("catalog: shutting down"), "{body}");

    let response = request
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-discount-unavailable"],
        "deadline-exceeded"
    );
    let status = exit_within(&mut child, Duration::from_secs(10), "exits after draining").await;
    assert_eq!(status.code(), Some(0));
    // And it no longer accepts connections, on either port.
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
    assert!(tokio::net::TcpStream::connect(&ops_addr).await.is_err());
}

#[tokio::test]
async fn drain_deadline_bounds_shutdown() {
    let (discount, in_flight) = black_hole().await;
    // A request that would take 30 s; the drain deadline is 1 s.
    let Catalog {
        mut child,
        addr,
        log: _log,
        certs: _certs,
        ..
    } = start_catalog(
        discount,
        &[
            "--discount-timeout-ms",
            "30000",
            "--drain-timeout-secs",
            "1",
        ],
    )
    .await;
    let request = tokio::spawn(
        reqwest::Client::new()
            .get(format!("http://{addr}/products"))
            .header("X-USER-ID", "1")
            .send(),
    );
    in_flight.await.unwrap();

    let signalled = Instant::now();
    sigterm(&child);
    let limit = Duration::from_secs(10);
    let status = exit_within(
        &mut child,
        limit,
        "exits at the drain deadline, not after the request",
    )
    .await;
    assert_eq!(status.code(), Some(0));
    let waited = signalled.elapsed();
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    // The cut-off request fails rather than hanging.
    assert!(request.await.unwrap().is_err());
}

/// The container health check: `catalog-service probe URL` exits 0 on 2xx, 1 otherwise.
async fn probe(url: &str) -> std::process::Output {
    let probe = Command::new(env!("CARGO_BIN_EXE_catalog-service"))
        .args(["probe", url])
        .env_clear()
        .output();
    tokio::time::timeout(Duration::from_secs(30), probe)
        .await
        .expect("the probe exits")
        .unwrap()
}

#[tokio::test]
async fn probe_passes_while_catalog_runs_and_fails_once_it_stopped() {
    let (discount, _) = black_hole().await;
    let Catalog {
        mut child,
        ops_addr,
        log: _log,
        certs: _certs,
        ..
    } = start_catalog(discount, &[]).await;
    let url = format!("http://{ops_addr}/healthz");

    let up = probe(&url).await;
    assert_eq!(up.status.code(), Some(0), "{up:?}");

    sigterm(&child);
    child.wait().await.unwrap();
    let down = probe(&url).await;
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(
        stderr.contains(&format!("cannot reach {ops_addr}")),
        "{stderr}"
    );
}
