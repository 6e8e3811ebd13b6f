//! Discount's explicit limits per connection and per message, as clients see them: a request
//! message over the size limit is answered RESOURCE_EXHAUSTED; streams beyond the
//! per-connection limit are refused, and a stock client queues its calls instead. After each,
//! the next well-behaved call succeeds. (The limits on connections are in `admission`.)

use std::convert::Infallible;
use std::time::Duration;

use discount_service::limits::DEFAULT_MAX_MESSAGE_BYTES;
use discount_service::service::{MAX_GROUPS, MAX_GROUPS_PRODUCTS};
use e2e_tests::{
    grpc_client, mtls_channel, service_pki, spawn_discount_configured, status_chain, tls_connect,
};
use ecommerce_proto::pb::discount_client::DiscountClient;
use ecommerce_proto::pb::discount_group_result::Result as GroupResult;
use ecommerce_proto::pb::{
    BatchDiscountRequest, Customer, DiscountGroupsRequest, DiscountRequest, Product,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::codegen::{Bytes, http};
use tower::{Service, ServiceExt};

/// How long a test waits for something the server must do promptly before calling it broken.
const GUARD: Duration = Duration::from_secs(10);

fn customer(id: i32) -> Option<Customer> {
    Some(Customer {
        id,
        first_name: "John".into(),
        last_name: "Snow".into(),
    })
}

/// A small, valid request.
pub(crate) fn one_product() -> DiscountRequest {
    DiscountRequest {
        customer: customer(1),
        product: Some(Product {
            id: 1,
            price_in_cents: 99_999,
            ..Product::default()
        }),
    }
}

/// A batch of `count` products of about 110 bytes each on the wire.
fn batch(count: i32) -> BatchDiscountRequest {
    let products = (1..=count)
        .map(|id| Product {
            id,
            slug: format!("product-{id}"),
            description: "x".repeat(90),
            price_in_cents: 1000,
            discount_value: None,
        })
        .collect();
    BatchDiscountRequest {
        customer: customer(1),
        products,
    }
}

#[tokio::test]
async fn message_over_the_limit_is_resource_exhausted_and_the_next_call_succeeds() {
    let pki = service_pki();
    let discount =
        spawn_discount_configured(&pki, |settings| settings.max_message_bytes = 1024).await;
    let addr = discount.addr;
    let mut client = grpc_client(addr, &pki.ca, Some(&pki.catalog));

    // About 2,200 bytes.
    let status = client.apply_discount_batch(batch(20)).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status_chain(&status)
    );
    assert!(status.message().contains("1024 bytes"), "{status:?}");

    // About 550 bytes, on the same connection: served.
    let served = client.apply_discount_batch(batch(5)).await.unwrap();
    assert_eq!(served.into_inner().products.len(), 5);
}

#[tokio::test]
async fn half_the_default_message_limit_takes_catalogs_largest_request() {
    let pki = service_pki();
    let discount = spawn_discount_configured(&pki, |settings| {
        settings.max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES / 2;
    })
    .await;
    let mut client = grpc_client(discount.addr, &pki.ca, Some(&pki.catalog));

    // As a Catalog from before ApplyDiscountPrices sends it at its bounds (ApplyDiscountPrices
    // carries the same in fewer bytes): MAX_GROUPS groups, MAX_GROUPS_PRODUCTS products in all,
    // each product its id and price only, both as long as a positive varint gets (5 bytes).
    let mut groups = vec![
        BatchDiscountRequest {
            customer: Some(Customer {
                id: i32::MAX,
                first_name: "F".repeat(32),
                last_name: "L".repeat(32),
            }),
            products: Vec::new(),
        };
        MAX_GROUPS
    ];
    for i in 0..MAX_GROUPS_PRODUCTS {
        let big = i32::MAX - i32::try_from(i).unwrap();
        groups[i % MAX_GROUPS].products.push(Product {
            id: big,
            price_in_cents: big,
            ..Product::default()
        });
    }
    let request = DiscountGroupsRequest { groups };
    let results = client
        .apply_discount_groups(request)
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), MAX_GROUPS);
    assert!(
        results
            .iter()
            .all(|result| matches!(result.result, Some(GroupResult::Discounted(_))))
    );
}

// Just enough HTTP/2 (RFC 9113) to open streams the way a client that ignores the server's
// SETTINGS would.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const REFUSED_STREAM: u32 = 0x7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let [_, len @ ..] = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = len.to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// The headers of an `ApplyDiscount` call, in HPACK (RFC 7541) without Huffman coding or the
/// dynamic table: static-table fields, and literals not indexed.
fn apply_discount_headers() -> Vec<u8> {
    fn string(block: &mut Vec<u8>, text: &[u8]) {
        block.push(u8::try_from(text.len()).unwrap());
        block.extend(text);
    }
    // :method POST and :scheme https, whole from the static table.
    let mut block = vec![0x83, 0x87];
    // :path and :authority, names from the static table (4 and 1).
    block.push(0x04);
    string(&mut block, b"/ecommerce.Discount/ApplyDiscount");
    block.push(0x01);
    string(&mut block, b"localhost");
    for (name, value) in [("content-type", "application/grpc"), ("te", "trailers")] {
        block.push(0x00);
        string(&mut block, name.as_bytes());
        string(&mut block, value.as_bytes());
    }
    block
}

/// Reads one frame: its type, flags, stream and payload.
async fn read_frame(io: &mut (impl AsyncRead + Unpin)) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    io.read_exact(&mut head).await.unwrap();
    let [len0, len1, len2, kind, flags, stream @ ..] = head;
    let len = u32::from_be_bytes([0, len0, len1, len2]);
    let mut payload = vec![0; usize::try_from(len).unwrap()];
    io.read_exact(&mut payload).await.unwrap();
    (
        kind,
        flags,
        u32::from_be_bytes(stream) & 0x7fff_ffff,
        payload,
    )
}

#[tokio::test]
async fn streams_beyond_the_limit_are_refused_and_the_next_call_succeeds() {
    let pki = service_pki();
    let discount =
        spawn_discount_configured(&pki, |settings| settings.max_concurrent_streams = 2).await;
    let addr = discount.addr;

    // Three calls at once, all sent before the server's SETTINGS are read; their bodies never
    // come, so the first two stay open.
    let mut tls = tls_connect(addr, &pki).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for stream in [1, 3, 5] {
        out.extend(frame(
            HEADERS,
            END_HEADERS,
            stream,
            &apply_discount_headers(),
        ));
    }
    tls.write_all(&out).await.unwrap();
    tls.flush().await.unwrap();

    let mut advertised = None;
    let read = async {
        loop {
            match read_frame(&mut tls).await {
                (SETTINGS, flags, 0, payload) if flags & ACK == 0 => {
                    advertised = payload.chunks_exact(6).find_map(|setting| {
                        let (id, value) = setting.split_at(2);
                        (u16::from_be_bytes(id.try_into().unwrap())
                            == SETTINGS_MAX_CONCURRENT_STREAMS)
                            .then(|| u32::from_be_bytes(value.try_into().unwrap()))
                    });
                }
                (RST_STREAM, _, stream, code) => {
                    return (stream, u32::from_be_bytes(code.try_into().unwrap()));
                }
                (GOAWAY, _, _, payload) => panic!("GOAWAY: {payload:?}"),
                _ => {}
            }
        }
    };
    let reset = tokio::time::timeout(GUARD, read)
        .await
        .expect("the stream beyond the limit is reset");
    assert_eq!(reset, (5, REFUSED_STREAM), "(stream, error code)");
    assert_eq!(advertised, Some(2), "SETTINGS_MAX_CONCURRENT_STREAMS");

    let mut client = grpc_client(addr, &pki.ca, Some(&pki.catalog));
    client.apply_discount(one_product()).await.unwrap();
}

/// An `ApplyDiscount` call whose body stays open until `body` is closed.
fn held_call(
    body: tokio::sync::mpsc::Receiver<Result<Bytes, Infallible>>,
) -> http::Request<tonic::body::Body> {
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(body));
    http::Request::builder()
        .method("POST")
        .uri("/ecommerce.Discount/ApplyDiscount")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(body))
        .unwrap()
}

/// How long a queued call is watched for an answer it must not get yet. Not a wait for
/// readiness: without the limit the call is answered within a millisecond or two.
const QUEUED_WATCH: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_stock_client_queues_calls_beyond_the_limit_until_a_stream_ends() {
    let pki = service_pki();
    let discount =
        spawn_discount_configured(&pki, |settings| settings.max_concurrent_streams = 1).await;
    let addr = discount.addr;
    let channel = mtls_channel(addr, &pki.ca, Some(&pki.catalog));
    let mut client = DiscountClient::new(channel.clone());
    // Answered: the connection is up and the client has read the server's SETTINGS.
    client.apply_discount(one_product()).await.unwrap();

    // The connection's only stream, held open. `call` queues it in the channel at once, so it
    // goes out before the call below.
    let (body, held_body) = tokio::sync::mpsc::channel(1);
    let mut held_channel = channel.clone();
    let held = held_channel
        .ready()
        .await
        .unwrap()
        .call(held_call(held_body));
    let held = tokio::spawn(held);
    let mut queued = tokio::spawn(async move { client.apply_discount(one_product()).await });

    let early = tokio::time::timeout(QUEUED_WATCH, &mut queued).await;
    assert!(
        early.is_err(),
        "answered while the only stream was held: {early:?}"
    );

    // The held call ends (its body ends without a message, which the server refuses); its
    // stream is free and the queued call goes out.
    drop(body);
    let refused = tokio::time::timeout(GUARD, held)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let refused = tonic::Status::from_header_map(refused.headers());
    assert!(refused.is_some_and(|status| status.code() != Code::Ok));
    let answered = tokio::time::timeout(GUARD, queued).await.unwrap().unwrap();
    assert!(answered.is_ok(), "{answered:?}");
}
