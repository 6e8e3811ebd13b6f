//! Tracing across the hop: both services export to an in-process OTLP collector (one over
//! gRPC, one over HTTP/protobuf), configured with the same `OTEL_*` names as the binaries; one
//! request is one trace from the caller's `traceparent` through Catalog, the RPC and Discount's
//! rule; a malformed `traceparent` starts a new trace; coalesced requests keep their own traces
//! and the shared RPC links to each; a collector that hangs costs requests nothing.

use std::net::SocketAddr;
use std::time::Duration;

use catalog_service::discount::CoalesceSettings;
use e2e_tests::{
    CatalogOptions, CountingDiscount, service_pki, spawn_catalog, spawn_catalog_watched,
    spawn_counting_discount, spawn_discount_traced,
};
use otlp_receiver::{ReceivedSpan, Receiver, STATUS_ERROR, kind};
use service_runtime::otel::{OtelConfig, Telemetry};

use crate::{SPEC_CUSTOMER_1_JSON, until};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

/// Tracing for a service named `name`, from these `OTEL_*` variables (and no others).
pub(crate) fn telemetry(name: &str, vars: &[(&str, String)]) -> Telemetry {
    let config = OtelConfig::from_lookup(name, |key| {
        vars.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    });
    Telemetry::new(config.as_ref()).unwrap()
}

fn grpc_to(receiver: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
    ]
}

pub(crate) fn http_to(receiver: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
    ]
}

/// `GET /products` as customer `user` with an optional `traceparent`: status and body.
async fn get(catalog: SocketAddr, user: &str, parent: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .get(format!("http://{catalog}/products"))
        .header("X-USER-ID", user);
    if let Some(parent) = parent {
        request = request.header("traceparent", parent);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    test: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|span| test(span)).collect();
    assert_eq!(found.len(), 1, "exactly one {what} in {spans:#?}");
    found[0]
}

fn catalog_server_span(span: &ReceivedSpan) -> bool {
    span.service == "catalog" && span.kind == kind::SERVER
}

#[tokio::test]
async fn one_request_is_one_trace_from_the_caller_through_discounts_rule() {
    let pki = service_pki();
    let receiver = Receiver::start().await.unwrap();
    let discount_telemetry = telemetry("discount", &grpc_to(&receiver));
    let catalog_telemetry = telemetry("catalog", &http_to(&receiver));
    let discount = spawn_discount_traced(&pki.discount, &pki.ca, discount_telemetry.tracer()).await;
    let options = CatalogOptions {
        tracer: catalog_telemetry.tracer(),
        ..CatalogOptions::default()
    };
    let catalog = spawn_catalog(&pki, discount.addr, options).await;

    let parent = traceparent(TRACE, CALLER_SPAN);
    assert_eq!(
        get(catalog.addr, "1", Some(&parent)).await,
        (200, SPEC_CUSTOMER_1_JSON.to_owned())
    );
    catalog_telemetry.flush().await;
    discount_telemetry.flush().await;
    let spans = receiver
        .wait_for("both services' spans", |spans| {
            spans.iter().any(catalog_server_span)
                && spans
                    .iter()
                    .any(|s| s.service == "discount" && s.name == "discount rule")
        })
        .await;
    assert!(
        spans.iter().all(|span| span.trace_id == TRACE),
        "{spans:#?}"
    );

    let server = one(&spans, "Catalog server span", catalog_server_span);
    assert_eq!(server.name, "GET /products");
    assert_eq!(server.parent_span_id, CALLER_SPAN);
    assert_eq!(server.attr("http.request.method"), Some("GET"));
    assert_eq!(server.attr("http.route"), Some("/products"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert_eq!(server.attr("catalog.discount.unavailable"), None);

    let discount_step = one(&spans, "discount span", |s| s.name == "discount");
    assert_eq!(discount_step.parent_span_id, server.span_id);
    let client = one(&spans, "client span", |s| s.kind == kind::CLIENT);
    assert_eq!(client.name, "ecommerce.Discount/ApplyDiscountPrices");
    assert_eq!(client.parent_span_id, discount_step.span_id);
    assert_eq!(client.attr("rpc.system"), Some("grpc"));
    assert_eq!(client.attr("rpc.service"), Some("ecommerce.Discount"));
    assert_eq!(client.attr("rpc.method"), Some("ApplyDiscountPrices"));
    assert_eq!(client.attr("rpc.grpc.status_code"), Some("0"));
    assert_eq!(client.attr("server.address"), Some("127.0.0.1"));
    let port = discount.addr.port().to_string();
    assert_eq!(client.attr("server.port"), Some(port.as_str()));

    let rpc = one(&spans, "Discount server span", |s| {
        s.service == "discount" && s.kind == kind::SERVER
    });
    assert_eq!(
        rpc.parent_span_id, client.span_id,
        "Discount continues Catalog's span"
    );
    assert_eq!(rpc.name, "ecommerce.Discount/ApplyDiscountPrices");
    assert_eq!(rpc.attr("rpc.system"), Some("grpc"));
    assert_eq!(rpc.attr("rpc.method"), Some("ApplyDiscountPrices"));
    assert_eq!(rpc.attr("rpc.grpc.status_code"), Some("0"));
    let rule = one(&spans, "rule span", |s| s.name == "discount rule");
    assert_eq!(rule.parent_span_id, rpc.span_id);
    assert_eq!(rule.attr("discount.products"), Some("3"));
}

#[tokio::test]
async fn a_malformed_traceparent_starts_a_new_trace_and_the_request_is_served() {
    let pki = service_pki();
    let receiver = Receiver::start().await.unwrap();
    let catalog_telemetry = telemetry("catalog", &grpc_to(&receiver));
    let discount = e2e_tests::spawn_discount(&pki).await;
    let options = CatalogOptions {
        tracer: catalog_telemetry.tracer(),
        ..CatalogOptions::default()
    };
    let catalog = spawn_catalog(&pki, discount.addr, options).await;

    let malformed = format!("00-{TRACE}-not-a-span-01");
    assert_eq!(
        get(catalog.addr, "1", Some(&malformed)).await,
        (200, SPEC_CUSTOMER_1_JSON.to_owned())
    );
    catalog_telemetry.flush().await;
    let spans = receiver
        .wait_for("Catalog's server span", |spans| {
            spans.iter().any(catalog_server_span)
        })
        .await;
    let server = one(&spans, "Catalog server span", catalog_server_span);
    assert_eq!(server.parent_span_id, "", "a new trace has no parent");
    assert_ne!(server.trace_id, TRACE);
    assert_eq!(server.trace_id.len(), 32);
    assert_ne!(server.trace_id, "0".repeat(32));
}

#[tokio::test]
async fn coalesced_requests_keep_their_own_traces_and_the_shared_rpc_links_to_each() {
    let pki = service_pki();
    let receiver = Receiver::start().await.unwrap();
    let catalog_telemetry = telemetry("catalog", &grpc_to(&receiver));
    let (counting, gate) = CountingDiscount::default().gated();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let options = CatalogOptions {
        discount_timeout: Duration::from_secs(10),
        coalescing: CoalesceSettings {
            rpcs_in_flight: 1,
            ..CoalesceSettings::default()
        },
        tracer: catalog_telemetry.tracer(),
        ..CatalogOptions::default()
    };
    let (catalog, gateway) = spawn_catalog_watched(&pki, discount.addr, options).await;
    let traces = ["a".repeat(32), "b".repeat(32), "c".repeat(32)];
    // The caller did not sample the second trace: the shared RPC must still be recorded, in
    // the trace of the first request in it that is sampled.
    let send = |trace: &str| {
        let flags = if trace.starts_with('b') { "00" } else { "01" };
        let parent = format!("00-{trace}-{CALLER_SPAN}-{flags}");
        let addr = catalog.addr;
        tokio::spawn(async move { get(addr, "1", Some(&parent)).await })
    };

    // The first request takes the only slot; the next two queue behind it and share an RPC.
    let first = send(&traces[0]);
    until("the first RPC reaches Discount", || counting.calls() == 1).await;
    let queued = [send(&traces[1]), send(&traces[2])];
    until("two requests queue", || gateway.queued() == 2).await;
    gate.add_permits(2);
    for answer in [first].into_iter().chain(queued) {
        assert_eq!(
            answer.await.unwrap(),
            (200, SPEC_CUSTOMER_1_JSON.to_owned())
        );
    }
    assert_eq!(*counting.group_sizes.lock().unwrap(), [1, 2]);

    catalog_telemetry.flush().await;
    let spans = receiver
        .wait_for("the groups RPC's span", |spans| {
            spans.iter().filter(|s| catalog_server_span(s)).count() == 2
                && spans.iter().any(coalesced_rpc)
        })
        .await;
    for trace in [&traces[0], &traces[2]] {
        let server = one(&spans, "server span of the trace", |s| {
            catalog_server_span(s) && s.trace_id == *trace
        });
        assert_eq!(server.parent_span_id, CALLER_SPAN);
    }
    assert!(
        spans.iter().all(|s| s.trace_id != traces[1]),
        "the unsampled trace was exported: {spans:#?}"
    );
    let groups = one(&spans, "groups RPC span", coalesced_rpc);
    assert_eq!(groups.kind, kind::CLIENT);
    assert_eq!(groups.attr("catalog.discount.requests_in_rpc"), Some("2"));
    // It belongs to the first sampled request it carries, and links to both requests'
    // discount spans (the unsampled one's too: it has ids, though it is not exported).
    assert_eq!(groups.trace_id, traces[2]);
    let discount_step = one(&spans, "discount span of the sampled trace", |s| {
        s.name == "discount" && s.trace_id == traces[2]
    });
    assert_eq!(groups.parent_span_id, discount_step.span_id);
    assert!(
        groups
            .links
            .contains(&(traces[2].clone(), discount_step.span_id.clone())),
        "no link to the sampled request in {groups:#?}"
    );
    assert!(
        groups.links.iter().any(|(trace, _)| *trace == traces[1]),
        "no link to the unsampled request in {groups:#?}"
    );
    let wait = one(&spans, "queue wait of the sampled trace", |s| {
        s.name == "discount queue wait" && s.trace_id == traces[2]
    });
    assert_eq!(wait.parent_span_id, discount_step.span_id);
    assert_eq!(wait.attr("catalog.discount.requests_in_rpc"), Some("2"));
}

#[tokio::test]
async fn a_collector_that_hangs_costs_requests_nothing_and_a_failed_discount_is_on_the_span() {
    let pki = service_pki();
    let receiver = Receiver::start().await.unwrap();
    receiver.hang(true);
    let catalog_telemetry = telemetry("catalog", &grpc_to(&receiver));
    // Discount is a port that refuses connections: every request falls back to full prices.
    let no_discount = e2e_tests::closed_port();
    let options = CatalogOptions {
        tracer: catalog_telemetry.tracer(),
        ..CatalogOptions::default()
    };
    let catalog = spawn_catalog(&pki, no_discount.addr, options).await;

    // One request's spans go out in an export the collector holds; requests go on being
    // answered meanwhile.
    let (status, _) = get(catalog.addr, "1", None).await;
    assert_eq!(status, 200);
    let flushing = {
        let done = tokio::spawn(async move {
            catalog_telemetry.flush().await;
            catalog_telemetry
        });
        until("an export reaches the collector", || receiver.exports() > 0).await;
        done
    };
    for _ in 0..20 {
        let (status, _) = get(catalog.addr, "1", Some(&traceparent(TRACE, CALLER_SPAN))).await;
        assert_eq!(status, 200);
    }

    receiver.hang(false);
    let catalog_telemetry = flushing.await.unwrap();
    catalog_telemetry.flush().await;
    let spans = receiver
        .wait_for("the requests' spans", |spans| {
            // The held export's own spans may have been given up by the exporter meanwhile.
            spans.iter().filter(|s| catalog_server_span(s)).count() >= 20
        })
        .await;
    let server = spans.iter().find(|s| catalog_server_span(s)).unwrap();
    assert_eq!(
        server.attr("catalog.discount.unavailable"),
        Some("unavailable")
    );
    let discount_step = spans.iter().find(|s| s.name == "discount").unwrap();
    assert_eq!(discount_step.status_code, STATUS_ERROR);
    assert_eq!(
        discount_step.attr("catalog.discount.unavailable"),
        Some("unavailable")
    );
}

#[tokio::test]
async fn with_catalogs_tracing_off_the_callers_trace_still_reaches_discount() {
    let pki = service_pki();
    let receiver = Receiver::start().await.unwrap();
    let discount_telemetry = telemetry("discount", &grpc_to(&receiver));
    let discount = spawn_discount_traced(&pki.discount, &pki.ca, discount_telemetry.tracer()).await;
    // Catalog exports nothing (no tracer), but carries the caller's context through.
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let parent = traceparent(TRACE, CALLER_SPAN);
    assert_eq!(
        get(catalog.addr, "1", Some(&parent)).await,
        (200, SPEC_CUSTOMER_1_JSON.to_owned())
    );
    discount_telemetry.flush().await;
    let spans = receiver
        .wait_for("Discount's server span", |spans| {
            spans.iter().any(|s| s.kind == kind::SERVER)
        })
        .await;
    let rpc = one(&spans, "Discount server span", |s| s.kind == kind::SERVER);
    assert_eq!(rpc.trace_id, TRACE);
    assert_eq!(
        rpc.parent_span_id, CALLER_SPAN,
        "the caller's span, carried unchanged"
    );
    assert!(spans.iter().all(|s| s.service == "discount"));
}

/// The client span of an RPC that carried two requests.
fn coalesced_rpc(span: &ReceivedSpan) -> bool {
    span.attr("rpc.method") == Some("ApplyDiscountPrices")
        && span.attr("catalog.discount.requests_in_rpc") == Some("2")
}
