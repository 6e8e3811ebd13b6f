//! The admission rules on both servers, as clients see them: a real client takes the place of
//! the oldest connection that has not proved itself (Discount: TLS handshake not done; Catalog:
//! no whole request head); on Catalog, with none unproven, of the keep-alive connection idle the
//! longest; only when every connection is proven and in use is a new one closed at once, while
//! the others (and Catalog's operations port) keep being served; an unproven connection is cut
//! at its deadline. Each test reads its own server's gate, never a process-wide metric.

use std::time::{Duration, Instant};

use catalog_service::server::HttpLimits;
use e2e_tests::{
    CatalogOptions, CountingDiscount, PARTIAL_CLIENT_HELLO, PARTIAL_REQUEST_HEAD, Running,
    grpc_client, service_pki, spawn_catalog, spawn_counting_discount, spawn_discount,
    spawn_discount_configured, status_chain, tls_connect,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tonic::Code;

use crate::catalog_limits::{read_response, read_to_close};
use crate::limits::one_product;
use crate::{get_products, until};

/// A connection to `addr` that sends `first` and then nothing.
async fn squatter(addr: std::net::SocketAddr, first: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(first).await.unwrap();
    tcp
}

/// Two squatters on `server`, admitted: one silent, then one stalled after `stalled_after`.
async fn two_squatters(server: &Running, stalled_after: &[u8]) -> (TcpStream, TcpStream) {
    let silent = squatter(server.addr, b"").await;
    let stalled = squatter(server.addr, stalled_after).await;
    let gate = server.admission();
    until("both squatters admitted", || gate.counts().unproven == 2).await;
    (silent, stalled)
}

/// The silent squatter was closed to make room (the only eviction), and the stalled one is
/// still open.
async fn the_oldest_made_room(server: &Running, silent: &mut TcpStream, stalled: &mut TcpStream) {
    assert_eq!(read_to_close(silent).await, b"", "the oldest made room");
    let counts = server.admission().counts();
    assert_eq!(
        (counts.unproven_evicted, counts.proven, counts.unproven),
        (1, 1, 1),
        "{counts:?}"
    );
    assert!(
        stalled.write_all(b"\x00").await.is_ok(),
        "the stalled one stays"
    );
}

#[tokio::test]
async fn on_discount_a_real_client_takes_the_place_of_the_oldest_unfinished_handshake() {
    let pki = service_pki();
    let discount = spawn_discount_configured(&pki, |settings| settings.max_connections = 2).await;
    let (mut silent, mut stalled) = two_squatters(&discount, PARTIAL_CLIENT_HELLO).await;
    let mut client = grpc_client(discount.addr, &pki.ca, Some(&pki.catalog));
    client.apply_discount(one_product()).await.unwrap();
    the_oldest_made_room(&discount, &mut silent, &mut stalled).await;
    client.apply_discount(one_product()).await.unwrap();
}

#[tokio::test]
async fn on_discount_with_every_connection_past_its_handshake_a_new_one_is_closed_before_it() {
    let pki = service_pki();
    let discount = spawn_discount_configured(&pki, |settings| settings.max_connections = 2).await;
    let (addr, gate) = (discount.addr, discount.admission());

    // Two connections, both proven: a gRPC client that has been answered, and a TLS
    // connection whose handshake is done.
    let mut first = grpc_client(addr, &pki.ca, Some(&pki.catalog));
    first.apply_discount(one_product()).await.unwrap();
    let mut second = tls_connect(addr, &pki).await.unwrap();
    until("both proven", || gate.counts().proven == 2).await;

    // A third is closed before its TLS handshake: no alert, just the end of the connection.
    let closed = tls_connect(addr, &pki).await.unwrap_err();
    assert!(
        matches!(
            closed.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
        ),
        "{closed:?}"
    );
    // What a gRPC client sees: UNAVAILABLE.
    let status = grpc_client(addr, &pki.ca, Some(&pki.catalog))
        .apply_discount(one_product())
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unavailable,
        "{}",
        status_chain(&status)
    );
    assert_eq!(gate.counts().at_capacity, 2);
    // The open connections keep being served.
    first.apply_discount(one_product()).await.unwrap();

    // The second goes away: once the server has closed its end, its slot is free (the server
    // frees the slot before it closes the socket).
    second.shutdown().await.unwrap();
    // (What comes first is the server's HTTP/2 SETTINGS.)
    read_to_close(&mut second).await;
    let mut third = grpc_client(addr, &pki.ca, Some(&pki.catalog));
    third.apply_discount(one_product()).await.unwrap();
}

#[tokio::test]
async fn on_discount_a_handshake_not_done_by_the_handshake_timeout_is_cut() {
    let pki = service_pki();
    let timeout = Duration::from_millis(300);
    let discount =
        spawn_discount_configured(&pki, |settings| settings.handshake_timeout = timeout).await;
    let started = Instant::now();
    let mut stalled = squatter(discount.addr, PARTIAL_CLIENT_HELLO).await;
    assert_eq!(read_to_close(&mut stalled).await, b"");
    assert!(
        started.elapsed() >= timeout,
        "cut after {:?}",
        started.elapsed()
    );
    assert_eq!(discount.admission().counts().unproven_timeout, 1);
    let mut client = grpc_client(discount.addr, &pki.ca, Some(&pki.catalog));
    client.apply_discount(one_product()).await.unwrap();
}

/// Catalog's options with at most `max_connections` on its public port.
fn catalog_of(max_connections: usize) -> CatalogOptions {
    CatalogOptions {
        http: HttpLimits {
            max_connections,
            ..HttpLimits::default()
        },
        ..CatalogOptions::default()
    }
}

/// Sends a plain `GET /products` on `conn` and reads its whole response (keeping the
/// connection alive); returns the status line.
async fn request_on(conn: &mut TcpStream) -> String {
    conn.write_all(b"GET /products HTTP/1.1\r\nHost: catalog\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(conn).await;
    response.lines().next().unwrap().to_owned()
}

#[tokio::test]
async fn on_catalog_a_real_client_takes_the_place_of_the_oldest_connection_without_a_request() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, catalog_of(2)).await;
    let (mut silent, mut stalled) = two_squatters(&catalog, PARTIAL_REQUEST_HEAD).await;
    assert_eq!(get_products(catalog.addr, Some("1")).await.status(), 200);
    the_oldest_made_room(&catalog, &mut silent, &mut stalled).await;
}

#[tokio::test]
async fn on_catalog_with_none_unproven_the_longest_idle_keep_alive_connection_makes_room() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, catalog_of(2)).await;
    let gate = catalog.admission();
    let mut older = TcpStream::connect(catalog.addr).await.unwrap();
    assert_eq!(request_on(&mut older).await, "HTTP/1.1 200 OK");
    let mut newer = TcpStream::connect(catalog.addr).await.unwrap();
    assert_eq!(request_on(&mut newer).await, "HTTP/1.1 200 OK");
    until("both idle, waiting for a next request", || {
        gate.counts().idle == 2
    })
    .await;

    assert_eq!(get_products(catalog.addr, None).await.status(), 200);
    assert_eq!(read_to_close(&mut older).await, b"", "idle the longest");
    assert_eq!(gate.counts().idle_evicted, 1);
    assert_eq!(request_on(&mut newer).await, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn on_catalog_with_every_connection_in_use_a_new_one_is_closed_at_once_until_one_is_done() {
    let pki = service_pki();
    let (counting, answers) = CountingDiscount::default().gated();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let options = CatalogOptions {
        discount_timeout: Duration::from_secs(30),
        ..catalog_of(2)
    };
    let catalog = spawn_catalog(&pki, discount.addr, options).await;
    let gate = catalog.admission();

    // Two requests in progress, held by Discount's gate: both connections proven and in use.
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(get_products(catalog.addr, Some("1"))))
        .collect();
    until("two requests in progress", || gate.counts().proven == 2).await;

    // One more is closed at once, unanswered; the operations port answers meanwhile.
    let mut extra = TcpStream::connect(catalog.addr).await.unwrap();
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: c\r\n\r\n").await;
    assert_eq!(read_to_close(&mut extra).await, b"");
    assert_eq!(gate.counts().at_capacity, 1);
    let health = reqwest::get(format!("http://{}/healthz", catalog.ops()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // Discount answers: the held requests complete, and new ones are served again.
    answers.add_permits(1000);
    for request in held {
        assert_eq!(request.await.unwrap().status(), 200);
    }
    assert_eq!(get_products(catalog.addr, Some("1")).await.status(), 200);
    assert_eq!(gate.counts().at_capacity, 1);
}

#[tokio::test]
async fn on_catalog_a_pipelined_request_in_progress_is_never_taken_for_idle() {
    let pki = service_pki();
    let (counting, answers) = CountingDiscount::default().gated();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let options = CatalogOptions {
        discount_timeout: Duration::from_secs(30),
        ..catalog_of(1)
    };
    let catalog = spawn_catalog(&pki, discount.addr, options).await;
    let gate = catalog.admission();

    // Two requests in one write: hyper answers the first and parses the second from what it
    // has already read, with no new read to say a request has begun.
    let mut pipelined = TcpStream::connect(catalog.addr).await.unwrap();
    pipelined
        .write_all(
            b"GET / HTTP/1.1\r\nHost: c\r\n\r\n\
              GET /products HTTP/1.1\r\nHost: c\r\nX-USER-ID: 1\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    until("the second request is waiting for Discount", || {
        counting.calls() == 1
    })
    .await;

    // The one slot is in use: a newcomer is closed at once, the pipelined request kept.
    let mut extra = TcpStream::connect(catalog.addr).await.unwrap();
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: c\r\n\r\n").await;
    assert_eq!(read_to_close(&mut extra).await, b"");
    let counts = gate.counts();
    assert_eq!((counts.at_capacity, counts.idle_evicted), (1, 0));

    answers.add_permits(1000);
    let answered = String::from_utf8(read_to_close(&mut pipelined).await).unwrap();
    assert_eq!(answered.matches("HTTP/1.1 200 OK").count(), 2, "{answered}");
    assert!(answered.contains("discount_value"), "{answered}");
}
