//! The operations port's routes, each asked once through the router itself: status, content
//! type and body of `/healthz`, `/readyz` (ready, and not ready with the service's reasons as
//! they change), `/metrics` (from its own registry), unknown paths and other methods; and a
//! port that is off.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::{Method, Request};
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::ServiceExt;

use super::*;

/// What the router answers to `method path`: status, content type, `Allow`, body.
async fn ask(router: &Router, method: Method, path: &str) -> (u16, String, String, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (kind, allow) = (header(CONTENT_TYPE), header(axum::http::header::ALLOW));
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        kind,
        allow,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

async fn get(router: &Router, path: &str) -> (u16, String, String) {
    let (status, kind, _, body) = ask(router, Method::GET, path).await;
    (status, kind, body)
}

/// A router that is always ready, with a registry of its own (empty).
fn ready_router() -> Router {
    router(Vec::new, PrometheusBuilder::new().build_recorder().handle())
}

const JSON: &str = "application/json";

#[tokio::test]
async fn healthz_is_ok_in_json() {
    let answer = get(&ready_router(), "/healthz").await;
    assert_eq!(answer, (200, JSON.into(), r#"{"status":"ok"}"#.into()));
}

#[tokio::test]
async fn readyz_is_ready_when_the_service_names_nothing() {
    let answer = get(&ready_router(), "/readyz").await;
    assert_eq!(answer, (200, JSON.into(), r#"{"status":"ready"}"#.into()));
}

#[tokio::test]
async fn readyz_is_503_listing_the_service_s_reasons_as_they_are_now() {
    let stopping = Arc::new(AtomicBool::new(false));
    let readiness = {
        let stopping = stopping.clone();
        move || {
            let mut reasons = vec!["discount: unavailable (no replica)".to_owned()];
            if stopping.load(Ordering::Relaxed) {
                reasons.push("catalog: shutting down".to_owned());
            }
            reasons
        }
    };
    let router = router(
        readiness,
        PrometheusBuilder::new().build_recorder().handle(),
    );

    let (status, kind, body) = get(&router, "/readyz").await;
    assert_eq!((status, kind.as_str()), (503, JSON));
    assert_eq!(
        body,
        r#"{"status":"not_ready","not_ready":["discount: unavailable (no replica)"]}"#
    );
    stopping.store(true, Ordering::Relaxed);
    let (_, _, body) = get(&router, "/readyz").await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(
        body["not_ready"],
        serde_json::json!([
            "discount: unavailable (no replica)",
            "catalog: shutting down"
        ])
    );
}

#[tokio::test]
async fn metrics_are_the_registry_s_prometheus_text() {
    let recorder = PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("ops_test_probes_total").increment(3);
    });
    let router = router(Vec::new, recorder.handle());
    let (status, kind, body) = get(&router, "/metrics").await;
    assert_eq!((status, kind.as_str()), (200, PROMETHEUS_CONTENT_TYPE));
    assert!(
        body.contains("# TYPE ops_test_probes_total counter"),
        "{body}"
    );
    assert!(body.contains("ops_test_probes_total 3"), "{body}");
}

#[tokio::test]
async fn any_other_path_is_a_json_404() {
    let router = ready_router();
    for path in [
        "/",
        "/health",
        "/healthz/",
        "/readyz/x",
        "/products",
        "/metrics.json",
    ] {
        let answer = get(&router, path).await;
        let body = r#"{"error":"not_found","message":"no such resource"}"#;
        assert_eq!(answer, (404, JSON.into(), body.into()), "{path}");
    }
}

#[tokio::test]
async fn head_answers_as_get_without_a_body() {
    let router = ready_router();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, kind, _, body) = ask(&router, Method::HEAD, path).await;
        let (get_status, get_kind, _) = get(&router, path).await;
        assert_eq!((status, kind), (get_status, get_kind), "{path}");
        assert_eq!(body, "", "{path}");
    }
}

#[tokio::test]
async fn other_methods_are_a_json_405_that_allows_get_and_head() {
    let router = ready_router();
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        for path in ["/healthz", "/readyz", "/metrics"] {
            let answer = ask(&router, method.clone(), path).await;
            let body =
                r#"{"error":"method_not_allowed","message":"only GET and HEAD are served here"}"#;
            let expected = (405, JSON.into(), "GET,HEAD".into(), body.into());
            assert_eq!(answer, expected, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn a_port_without_a_listener_is_off() {
    let ops = OpsPort::start("Example", None, Vec::new);
    assert_eq!(ops.addr(), None);
    ops.stop().await;
}

#[tokio::test]
async fn a_started_port_serves_until_stopped_then_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops = OpsPort::start("Example", Some(listener), Vec::new);
    let addr = ops.addr().unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"status":"ok"}"#), "{answer}");

    ops.stop().await;
    let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// A request that never finishes (here, a readiness check that blocks until the test lets it
/// go) holds the port's stop for [`STOP_TIMEOUT`] and no longer. The test waits until the
/// request is inside the handler before it stops the port, so the stop always has a request
/// in progress to wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_request_does_not_hold_the_stop_up() {
    use std::sync::{Arc, Condvar, Mutex};
    /// Lets the blocked handler go when dropped, even when an assertion fails, so the runtime
    /// (whose worker thread it blocks) can shut down.
    struct Release(Arc<(Mutex<bool>, Condvar)>);
    impl Drop for Release {
        fn drop(&mut self) {
            *self.0.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.0.1.notify_all();
        }
    }
    let released = Arc::new((Mutex::new(false), Condvar::new()));
    let _release = Release(released.clone());
    let (entered, mut inside) = tokio::sync::mpsc::unbounded_channel();
    let readiness = {
        let released = released.clone();
        move || {
            let _ = entered.send(());
            let (lock, freed) = &*released;
            let mut free = lock.lock().unwrap();
            while !*free {
                free = freed.wait(free).unwrap();
            }
            Vec::new()
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops = OpsPort::start("Example", Some(listener), readiness);
    let addr = ops.addr().unwrap();
    let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    stuck
        .write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    inside
        .recv()
        .await
        .expect("the request reaches the handler");

    let started = tokio::time::Instant::now();
    let bound = STOP_TIMEOUT + std::time::Duration::from_secs(2);
    tokio::time::timeout(bound, ops.stop())
        .await
        .expect("stop returns within its timeout");
    let waited = started.elapsed();
    assert!(waited >= STOP_TIMEOUT, "the stop waited {waited:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
