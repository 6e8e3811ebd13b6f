//! The real `catalog-service` binary admits connections by the limits its flags and their
//! variables set: with `--http-max-unproven-connections 1`, a second silent connection takes
//! the first one's place at once; `--http-header-timeout-ms` cuts the second; with
//! `CATALOG_HTTP_MAX_CONNECTIONS=2` and both slots held by keep-alive connections between
//! requests, a new client takes the place of the one idle the longest. What is dropped is
//! counted by reason and logged in one line with the counts.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{refusing_port, start_catalog_with};
use process_testing::{metric, metrics_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (a reset counts as closed); returns what came.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            got.extend_from_slice(&buf[..n]);
        }
    });
    read.await.expect("the server closes the connection");
    got
}

/// Sends `GET /` on `conn` and reads until the whole answer has come (the connection stays
/// open, kept alive).
async fn request_on(conn: &mut TcpStream) {
    conn.write_all(b"GET / HTTP/1.1\r\nHost: catalog\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got)
        .trim_end()
        .ends_with("Catalog service is working.")
    {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn connection_caps_and_header_timeout_come_from_the_flags_and_the_variable() {
    // Discount's address refuses connections (held for the test).
    let (_refusing, discount) = refusing_port();
    let header_timeout = Duration::from_millis(500);
    let catalog = start_catalog_with(
        discount,
        &[
            "--http-header-timeout-ms",
            "500",
            "--http-max-unproven-connections",
            "1",
        ],
        &[("CATALOG_HTTP_MAX_CONNECTIONS", "2")],
    )
    .await;

    // Two silent connections: the second takes the first's place at once.
    let connecting = Instant::now();
    let mut first = TcpStream::connect(catalog.addr).await.unwrap();
    let mut second = TcpStream::connect(catalog.addr).await.unwrap();
    assert_eq!(read_to_close(&mut first).await, b"");
    // Evicted, not timed out: the log line says which.
    let line = catalog.log.line_with("had not proved themselves").await;
    assert!(line.contains("unproven_evicted=1"), "{line}");
    // The second is cut at the header timeout. (Timed from before the connection: the
    // server's deadline starts once it has accepted it, later.)
    assert_eq!(read_to_close(&mut second).await, b"");
    assert!(connecting.elapsed() >= header_timeout);

    // Two keep-alive connections between requests hold both slots: a new client takes the
    // place of one of them.
    let mut older = TcpStream::connect(catalog.addr).await.unwrap();
    request_on(&mut older).await;
    let mut newer = TcpStream::connect(catalog.addr).await.unwrap();
    request_on(&mut newer).await;
    let give_up = Instant::now() + Duration::from_secs(30);
    let products = loop {
        let products = reqwest::get(format!("http://{}/products", catalog.addr)).await;
        // Refused only if it came before both had gone idle (their responses are written just
        // before); the test then tries again.
        if let Ok(products) = products {
            break products;
        }
        assert!(Instant::now() < give_up, "never served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(products.status(), 200);
    // One of the two made room. Which one is the e2e suite's to show (it waits until both are
    // idle, which this process does not expose): the older may not have gone idle yet when
    // the newcomer came, and then the newer was the one idle the longest.
    let closed = tokio::select! {
        closed = read_to_close(&mut older) => closed,
        closed = read_to_close(&mut newer) => closed,
    };
    assert_eq!(closed, b"");

    let text = metrics_of(catalog.ops_addr).await;
    let dropped = |reason: &str| {
        let series = format!("catalog_http_connections_dropped_total{{reason=\"{reason}\"}}");
        metric(&text, &series).unwrap_or(0.0)
    };
    assert_eq!(dropped("unproven_evicted"), 1.0, "{text}");
    assert_eq!(dropped("unproven_timeout"), 1.0, "{text}");
    assert_eq!(dropped("idle_evicted"), 1.0, "{text}");
}
