//! The real `catalog-service` binary takes its HTTP limits from its flags and their variables:
//! with `CATALOG_HTTP_MAX_CONNECTIONS=1`, a second connection is closed at once while the
//! operations port answers; `--http-header-timeout-ms` cuts the first, silent one; and then
//! the next client is served. Each refusal and cut is logged.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{refusing_port, start_catalog_with};
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

#[tokio::test]
async fn connection_limit_and_header_timeout_come_from_the_variable_and_the_flag() {
    // Discount's address refuses connections (held for the test).
    let (_refusing, discount) = refusing_port();
    let header_timeout = Duration::from_millis(500);
    let catalog = start_catalog_with(
        discount,
        &["--http-header-timeout-ms", "500"],
        &[("CATALOG_HTTP_MAX_CONNECTIONS", "1")],
    )
    .await;

    // The only connection, silent; then one too many, closed at once. (Timed from before the
    // connection: the server's timer starts once it has accepted it, later.)
    let connecting = Instant::now();
    let mut silent = TcpStream::connect(catalog.addr).await.unwrap();
    let mut extra = TcpStream::connect(catalog.addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /products HTTP/1.1\r\nHost: catalog\r\n\r\n")
        .await;
    assert_eq!(read_to_close(&mut extra).await, b"");
    catalog.log.line_with("connection limit reached").await;
    let health = reqwest::get(format!("http://{}/healthz", catalog.ops_addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // The silent one is cut at the header timeout, which frees its slot.
    assert_eq!(read_to_close(&mut silent).await, b"");
    assert!(connecting.elapsed() >= header_timeout);
    catalog
        .log
        .line_with("request headers did not arrive in time")
        .await;
    let products = reqwest::get(format!("http://{}/products", catalog.addr))
        .await
        .unwrap();
    assert_eq!(products.status(), 200);
}
