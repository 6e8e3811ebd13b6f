//! An OpenTelemetry collector in a test's own process: it receives OTLP traces on loopback,
//! over gRPC (the collector's generated `TraceService` server) and over HTTP/protobuf
//! (`POST /v1/traces`), each on its own port 0, and keeps every span for the test to look at.
//!
//! Real protocol, real sockets: what a service exports to it is what it would export to a
//! Jaeger or an OpenTelemetry Collector. A test can also make it hang (accept exports and never
//! answer, like an overloaded collector) or stop it (its ports close, like a crashed one).
//!
//! [`Receiver::start_counting`] keeps no spans, only their count, so that it can take a load
//! test's every span in constant memory: the `otlp-receiver` binary (`cargo xtask bench
//! --traced`) runs it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// OTLP's span kinds, as [`ReceivedSpan::kind`] holds them.
pub mod kind {
    /// An internal operation.
    pub const INTERNAL: i32 = 1;
    /// The server side of a request.
    pub const SERVER: i32 = 2;
    /// The client side of a request.
    pub const CLIENT: i32 = 3;
}

/// OTLP's status code for a failed span ([`ReceivedSpan::status_code`]).
pub const STATUS_ERROR: i32 = 2;

/// How long [`Receiver::wait_for`] waits before it fails the test.
const WAIT_GUARD: Duration = Duration::from_secs(30);

/// One received span, flattened: ids in lowercase hex, attributes as text.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The exporting service's `service.name`.
    pub service: String,
    /// The span's name.
    pub name: String,
    /// One of [`kind`].
    pub kind: i32,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; empty for a trace's root span.
    pub parent_span_id: String,
    /// Attribute values as text (`200`, `GET`, `true`).
    pub attributes: BTreeMap<String, String>,
    /// The spans this one links to: (trace id, span id).
    pub links: Vec<(String, String)>,
    /// 0 unset, 1 ok, [`STATUS_ERROR`].
    pub status_code: i32,
    /// The status's description.
    pub status_message: String,
    /// When the span started, as the exporting service's clock said.
    pub start: SystemTime,
    /// When it ended, likewise.
    pub end: SystemTime,
}

impl ReceivedSpan {
    /// The attribute `key`, as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The receiver: its two ports and what it has received. Stops when dropped.
#[derive(Debug)]
pub struct Receiver {
    grpc: SocketAddr,
    http: SocketAddr,
    shared: Arc<Shared>,
    servers: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    /// Every span received; stays empty when counting.
    spans: watch::Sender<Vec<ReceivedSpan>>,
    /// Whether spans are only counted, not kept.
    counting: bool,
    /// Spans received, kept or not (those of exports still held by [`Receiver::hang`] too).
    spans_received: AtomicU64,
    /// Export calls received, answered or not.
    exports: AtomicUsize,
    /// While true, exports are held unanswered.
    hang: watch::Sender<bool>,
}

impl Receiver {
    /// Starts both servers on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(false).await
    }

    /// Starts both servers on `127.0.0.1:0`, counting spans without keeping them, so memory
    /// stays the same however many arrive: [`Self::spans_received`] and [`Self::exports`] grow,
    /// [`Self::spans`] stays empty (and [`Self::wait_for`] sees no span).
    pub async fn start_counting() -> std::io::Result<Self> {
        Self::start_with(true).await
    }

    async fn start_with(counting: bool) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            spans: watch::Sender::new(Vec::new()),
            counting,
            spans_received: AtomicU64::new(0),
            exports: AtomicUsize::new(0),
            hang: watch::Sender::new(false),
        });
        let grpc_listener = TcpListener::bind("127.0.0.1:0").await?;
        let http_listener = TcpListener::bind("127.0.0.1:0").await?;
        let grpc = grpc_listener.local_addr()?;
        let http = http_listener.local_addr()?;
        let service = TraceServiceServer::new(Grpc(shared.clone()));
        let grpc_server = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        let router = axum::Router::new()
            .route("/v1/traces", axum::routing::post(http_export))
            .with_state(shared.clone());
        let http_server = tokio::spawn(async move {
            let _ = axum::serve(http_listener, router).await;
        });
        Ok(Self {
            grpc,
            http,
            shared,
            servers: vec![grpc_server, http_server],
        })
    }

    /// The gRPC server's address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// The HTTP/protobuf server's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The endpoint for `OTEL_EXPORTER_OTLP_ENDPOINT` with protocol `grpc`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// The base endpoint for `OTEL_EXPORTER_OTLP_ENDPOINT` with protocol `http/protobuf` (the
    /// exporter appends `/v1/traces`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Export calls received so far, over either protocol, answered or not.
    pub fn exports(&self) -> usize {
        self.shared.exports.load(Ordering::SeqCst)
    }

    /// Spans received so far, over either protocol, kept or only counted.
    pub fn spans_received(&self) -> u64 {
        self.shared.spans_received.load(Ordering::SeqCst)
    }

    /// Every span received so far (none when counting).
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.spans.borrow().clone()
    }

    /// Waits until the spans received satisfy `done`, and returns them; panics (naming `what`)
    /// after 30 s.
    pub async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let mut spans = self.shared.spans.subscribe();
        match tokio::time::timeout(WAIT_GUARD, spans.wait_for(|spans| done(spans))).await {
            Ok(Ok(spans)) => spans.clone(),
            _ => panic!("never received {what}; got {:#?}", self.spans()),
        }
    }

    /// Holds every export unanswered from now on (`true`), like a collector that accepts
    /// connections but never answers, or answers them again (`false`).
    pub fn hang(&self, hang: bool) {
        self.shared.hang.send_replace(hang);
    }

    /// Stops both servers at once, closing their ports and connections, as a crashed collector
    /// would.
    pub fn stop(&mut self) {
        for server in self.servers.drain(..) {
            server.abort();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    /// Records one export request; returns once the receiver is not hanging.
    async fn export(&self, request: ExportTraceServiceRequest) {
        self.exports.fetch_add(1, Ordering::SeqCst);
        let count: usize = request
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum();
        self.spans_received
            .fetch_add(count as u64, Ordering::SeqCst);
        let mut hang = self.hang.subscribe();
        let _ = hang.wait_for(|hang| !*hang).await;
        if !self.counting {
            let received = flatten(request);
            self.spans.send_modify(|spans| spans.extend(received));
        }
    }
}

#[derive(Debug)]
struct Grpc(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.export(request.into_inner()).await;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn http_export(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    body: bytes::Bytes,
) -> Result<([(&'static str, &'static str); 1], Vec<u8>), axum::http::StatusCode> {
    let request =
        ExportTraceServiceRequest::decode(body).map_err(|_| axum::http::StatusCode::BAD_REQUEST)?;
    shared.export(request).await;
    Ok((
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s,
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// A time given as nanoseconds since the Unix epoch.
fn unix_nanos(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// The spans of one export request, each with its resource's `service.name`.
fn flatten(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .into_iter()
            .flat_map(|resource| resource.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.and_then(|v| v.value)))
            .unwrap_or_default();
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            let status = span.status.unwrap_or_default();
            out.push(ReceivedSpan {
                service: service.clone(),
                name: span.name,
                kind: span.kind,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                attributes: span
                    .attributes
                    .into_iter()
                    .map(|kv| (kv.key, text(kv.value.and_then(|v| v.value))))
                    .collect(),
                links: span
                    .links
                    .into_iter()
                    .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                    .collect(),
                status_code: status.code,
                status_message: status.message,
                start: unix_nanos(span.start_time_unix_nano),
                end: unix_nanos(span.end_time_unix_nano),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    /// One export with `spans` spans in each of its scopes.
    fn request(spans: &[usize]) -> ExportTraceServiceRequest {
        let scope = |n: usize| ScopeSpans {
            spans: (0..n)
                .map(|i| Span {
                    name: format!("span {i}"),
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_005_000_000,
                    ..Span::default()
                })
                .collect(),
            ..ScopeSpans::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: spans.iter().map(|&n| scope(n)).collect(),
                ..ResourceSpans::default()
            }],
        }
    }

    async fn send(receiver: &Receiver, spans: &[usize]) {
        let mut client = TraceServiceClient::connect(receiver.grpc_endpoint())
            .await
            .unwrap();
        client.export(request(spans)).await.unwrap();
    }

    #[tokio::test]
    async fn keeps_and_counts_every_span() {
        let receiver = Receiver::start().await.unwrap();
        send(&receiver, &[3, 2]).await;
        send(&receiver, &[1]).await;
        assert_eq!(receiver.exports(), 2);
        assert_eq!(receiver.spans_received(), 6);
        assert_eq!(receiver.spans().len(), 6);
        assert_eq!(receiver.spans()[0].trace_id, "01".repeat(16));
        let span = &receiver.spans()[0];
        assert_eq!(
            span.end.duration_since(span.start).unwrap(),
            Duration::from_millis(5)
        );
    }

    #[tokio::test]
    async fn counting_keeps_no_span() {
        let receiver = Receiver::start_counting().await.unwrap();
        send(&receiver, &[3, 2]).await;
        send(&receiver, &[]).await;
        assert_eq!(receiver.exports(), 2);
        assert_eq!(receiver.spans_received(), 5);
        assert!(receiver.spans().is_empty());
    }
}
