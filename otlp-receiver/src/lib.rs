//! An OpenTelemetry collector in a test's own process: it receives OTLP traces on loopback,
//! over gRPC (the collector's generated `TraceService` server) and over HTTP/protobuf
//! (`POST /v1/traces`), each on its own port 0, and keeps every span for the test to look at.
//!
//! Real protocol, real sockets: what a service exports to it is what it would export to a
//! Jaeger or an OpenTelemetry Collector. A test can also make it hang (accept exports and never
//! answer, like an overloaded collector) or stop it (its ports close, like a crashed one).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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
    spans: watch::Sender<Vec<ReceivedSpan>>,
    /// Export calls received, answered or not.
    exports: AtomicUsize,
    /// While true, exports are held unanswered.
    hang: watch::Sender<bool>,
}

impl Receiver {
    /// Starts both servers on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            spans: watch::Sender::new(Vec::new()),
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

    /// Every span received so far.
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
        let mut hang = self.hang.subscribe();
        let _ = hang.wait_for(|hang| !*hang).await;
        let received = flatten(request);
        self.spans.send_modify(|spans| spans.extend(received));
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
            });
        }
    }
    out
}
