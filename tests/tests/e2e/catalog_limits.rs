//! Catalog's public HTTP server under abuse, as clients see it: connections beyond the maximum
//! are closed at once while the operations port answers, and clients are served again once
//! they go; a request head trickled in is cut at the header timeout; a kept-alive connection
//! waits the idle timeout (not the header timeout) for its next request, whose head then has
//! the header timeout; requests beyond the concurrency limit get 503 with `Retry-After` at
//! once, not a place in a queue.

use std::time::{Duration, Instant};

use catalog_service::discount::CoalesceSettings;
use catalog_service::server::HttpLimits;
use e2e_tests::{
    CatalogOptions, CountingDiscount, Running, service_pki, spawn_catalog, spawn_catalog_watched,
    spawn_counting_discount, spawn_discount,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::stream::STALL_GUARD;
use crate::{SPEC_CUSTOMER_1_JSON, get_products, until};

const REQUEST: &[u8] = b"GET /products HTTP/1.1\r\nHost: catalog\r\nX-USER-ID: 1\r\n\r\n";

/// Catalog's options with `limits` for its HTTP server.
fn with_limits(limits: HttpLimits) -> CatalogOptions {
    CatalogOptions {
        http: limits,
        ..CatalogOptions::default()
    }
}

/// Reads until the server closes the connection (a reset counts as closed) and returns what
/// came; fails if it stays open for [`STALL_GUARD`].
pub(crate) async fn read_to_close(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(STALL_GUARD, async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "still open after {STALL_GUARD:?}");
    got
}

/// Reads one whole response (head, then a `content-length` body) and returns it as text.
pub(crate) async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse().unwrap());
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(STALL_GUARD, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed mid-response: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// The value of one series on Catalog's `/metrics` (operations port), 0 if absent.
async fn ops_metric(catalog: &Running, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", catalog.ops()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0.0, |value| value.parse().unwrap())
}

async fn ops_status(catalog: &Running, path: &str) -> u16 {
    let url = format!("http://{}{path}", catalog.ops());
    reqwest::get(url).await.unwrap().status().as_u16()
}

/// Writes `head` one byte every `pace`, then an endless header value, until the server closes.
fn trickle(mut writer: impl AsyncWriteExt + Unpin + Send + 'static, pace: Duration) {
    tokio::spawn(async move {
        let head = b"GET /products HTTP/1.1\r\nHost: catalog\r\nX-Slow: ";
        for byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            // Not a wait: the slow client is what is tested.
            tokio::time::sleep(pace).await;
        }
    });
}

/// Returns once a connection opened now, trickling a request head in, has been cut at the
/// header timeout: proof that a header timeout has passed since the call, however busy the
/// machine.
async fn header_timeout_passes(catalog: std::net::SocketAddr) {
    let (mut reader, writer) = TcpStream::connect(catalog).await.unwrap().into_split();
    trickle(writer, Duration::from_millis(100));
    assert_eq!(read_to_close(&mut reader).await, b"");
}

#[tokio::test]
async fn a_request_head_trickled_in_is_cut_at_the_header_timeout() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let header_timeout = Duration::from_millis(1500);
    let limits = HttpLimits {
        header_timeout,
        ..HttpLimits::default()
    };
    let catalog = spawn_catalog(&pki, discount.addr, with_limits(limits)).await;

    // It never stops sending, one byte every 250 ms, and never finishes its head.
    let started = Instant::now();
    let (mut reader, writer) = TcpStream::connect(catalog.addr).await.unwrap().into_split();
    trickle(writer, Duration::from_millis(250));
    let got = read_to_close(&mut reader).await;
    let lasted = started.elapsed();
    assert_eq!(String::from_utf8_lossy(&got), "");
    assert!(lasted >= header_timeout, "cut after {lasted:?}");
    assert!(
        lasted < header_timeout + Duration::from_secs(3),
        "cut after {lasted:?}"
    );
    // Cut by the admission gate: its first request head never came whole.
    assert_eq!(catalog.admission().counts().unproven_timeout, 1);
    // The service keeps serving.
    assert_eq!(get_products(catalog.addr, Some("1")).await.status(), 200);
}

#[tokio::test]
async fn a_kept_alive_connection_waits_the_idle_timeout_not_the_header_timeout() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let header_timeout = Duration::from_millis(500);
    let idle_timeout = Duration::from_secs(2);
    let limits = HttpLimits {
        header_timeout,
        idle_timeout,
        ..HttpLimits::default()
    };
    let catalog = spawn_catalog(&pki, discount.addr, with_limits(limits)).await;

    let mut conn = TcpStream::connect(catalog.addr).await.unwrap();
    conn.write_all(REQUEST).await.unwrap();
    assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200 "));
    // Idle past the header timeout: still open, and the next request is served.
    header_timeout_passes(catalog.addr).await;
    // Then idle for good: closed at the idle timeout. (Counted from before the request: the
    // server's wait starts once it has answered, later.)
    let idle_since = Instant::now();
    conn.write_all(REQUEST).await.unwrap();
    assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200 "));
    assert_eq!(read_to_close(&mut conn).await, b"");
    let idled = idle_since.elapsed();
    assert!(idled >= idle_timeout, "closed after {idled:?}");
    assert!(
        idled < idle_timeout + Duration::from_secs(3),
        "closed after {idled:?}"
    );
}

#[tokio::test]
async fn the_next_request_on_a_kept_alive_connection_has_the_header_timeout_from_its_first_byte() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let header_timeout = Duration::from_millis(500);
    let idle_timeout = Duration::from_secs(5);
    let limits = HttpLimits {
        header_timeout,
        idle_timeout,
        ..HttpLimits::default()
    };
    let catalog = spawn_catalog(&pki, discount.addr, with_limits(limits)).await;

    let mut conn = TcpStream::connect(catalog.addr).await.unwrap();
    conn.write_all(REQUEST).await.unwrap();
    assert!(read_response(&mut conn).await.starts_with("HTTP/1.1 200 "));
    let idle_since = Instant::now();
    // Idle past the header timeout, then a request head trickled in.
    header_timeout_passes(catalog.addr).await;
    let quiet = idle_since.elapsed();
    let (mut reader, writer) = conn.into_split();
    trickle(writer, Duration::from_millis(100));
    assert_eq!(read_to_close(&mut reader).await, b"");
    let lasted = idle_since.elapsed();
    assert!(lasted >= quiet + header_timeout, "cut after {lasted:?}");
    assert!(lasted < idle_timeout, "cut after {lasted:?}");
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_get_503_with_retry_after_at_once() {
    let pki = service_pki();
    let (counting, gate) = CountingDiscount::default().gated();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let options = CatalogOptions {
        discount_timeout: Duration::from_secs(30),
        // One RPC at a time: the first request holds it, the others queue behind it.
        coalescing: CoalesceSettings {
            rpcs_in_flight: 1,
            ..CoalesceSettings::default()
        },
        http: HttpLimits {
            max_concurrent_requests: 3,
            ..HttpLimits::default()
        },
        ..CatalogOptions::default()
    };
    let (catalog, gateway) = spawn_catalog_watched(&pki, discount.addr, options).await;
    let shed = "catalog_http_requests_shed_total ";
    let shed_before = ops_metric(&catalog, shed).await;

    // Three requests in progress, held by Discount's gate.
    let held: Vec<JoinHandle<(u16, String)>> = (0..3)
        .map(|_| {
            let addr = catalog.addr;
            tokio::spawn(async move {
                let response = get_products(addr, Some("1")).await;
                (response.status().as_u16(), response.text().await.unwrap())
            })
        })
        .collect();
    until("three requests in progress", || {
        counting.calls() == 1 && gateway.queued() == 2
    })
    .await;

    // A fourth gets 503 at once (the gate is still shut), whatever it asks for.
    for (path, user) in [("/products", Some("1")), ("/products/1", None)] {
        let mut request = reqwest::Client::new().get(format!("http://{}{path}", catalog.addr));
        if let Some(user) = user {
            request = request.header("X-USER-ID", user);
        }
        let response = tokio::time::timeout(STALL_GUARD, request.send())
            .await
            .expect("answered at once, not queued")
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        assert!(response.headers().contains_key("x-request-id"));
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(body["error"], "overloaded", "{body}");
    }
    assert_eq!(ops_metric(&catalog, shed).await, shed_before + 2.0);
    // The operations port is not subject to the limit.
    assert_eq!(ops_status(&catalog, "/metrics").await, 200);

    // Discount answers: the held requests complete, and the limit lets requests in again.
    gate.add_permits(1000);
    for request in held {
        assert_eq!(
            request.await.unwrap(),
            (200, SPEC_CUSTOMER_1_JSON.to_owned())
        );
    }
    let response = get_products(catalog.addr, Some("1")).await;
    assert_eq!(response.status(), 200);
}
