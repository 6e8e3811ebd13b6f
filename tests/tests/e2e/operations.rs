//! The operational surface: request ids across both services, Discount's reflection, and
//! Catalog's readiness and operations port, apart from its public port. (Discount's readiness
//! through shutdown is tested on its binary, in `discount-service/tests/ops_port.rs`.)

use std::sync::atomic::Ordering;
use std::time::Duration;

use catalog_service::balancer::ReplicaSettings;
use e2e_tests::{
    CatalogOptions, CountingDiscount, service_pki, spawn_catalog, spawn_counting_discount,
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::get_products;

#[tokio::test]
async fn callers_request_id_is_returned_and_passed_to_discount() {
    let pki = service_pki();
    let counting = CountingDiscount::default();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let response = reqwest::Client::new()
        .get(format!("http://{}/products", catalog.addr))
        .header("X-USER-ID", "1")
        .header("X-Request-Id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    assert_eq!(*counting.request_ids.lock().unwrap(), ["trace-me-42"]);
}

#[tokio::test]
async fn missing_or_unusable_request_id_is_replaced_by_a_new_one() {
    let pki = service_pki();
    let counting = CountingDiscount::default();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/products", catalog.addr);

    let first = client
        .get(&url)
        .header("X-USER-ID", "1")
        .send()
        .await
        .unwrap();
    let too_long = "x".repeat(500);
    let second = client
        .get(&url)
        .header("X-USER-ID", "1")
        .header("X-Request-Id", too_long.as_str())
        .send()
        .await
        .unwrap();
    let ids: Vec<String> = [&first, &second]
        .iter()
        .map(|r| r.headers()["x-request-id"].to_str().unwrap().to_owned())
        .collect();
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    assert_eq!(*counting.request_ids.lock().unwrap(), ids);
}

#[tokio::test]
async fn request_id_is_returned_on_errors_too() {
    let pki = service_pki();
    let no_discount = e2e_tests::closed_port();
    let catalog = spawn_catalog(&pki, no_discount.addr, CatalogOptions::default()).await;
    let response = reqwest::Client::new()
        .get(format!("http://{}/products", catalog.addr))
        .header("X-USER-ID", "abc")
        .header("X-Request-Id", "bad-input-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-request-id"], "bad-input-1");
}

/// The services a reflection client of one version lists: `$v` is `v1` or `v1alpha`, whose
/// generated types have the same shape.
macro_rules! list_services {
    ($v:ident, $channel:expr) => {{
        use tonic_reflection::pb::$v::ServerReflectionRequest;
        use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;

        let mut reflection = ServerReflectionClient::new($channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("unexpected answer: {answer:?}");
        };
        list.service
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<String>>()
    }};
}

#[tokio::test]
async fn discount_reflection_lists_its_services_in_v1_and_v1alpha() {
    let pki = service_pki();
    let discount = e2e_tests::spawn_discount(&pki).await;
    let channel = || e2e_tests::mtls_channel(discount.addr, &pki.ca, Some(&pki.catalog));
    let v1 = list_services!(v1, channel());
    let v1alpha = list_services!(v1alpha, channel());
    for names in [v1, v1alpha] {
        assert!(
            names.contains(&"ecommerce.Discount".to_owned()),
            "{names:?}"
        );
        assert!(
            names.contains(&"grpc.health.v1.Health".to_owned()),
            "{names:?}"
        );
    }
}

/// Waits until Catalog's `/readyz` on `ops` answers 200: after its first health round has
/// found Discount serving (a stalled start fails the test instead of hanging it).
async fn until_ready(ops: std::net::SocketAddr) {
    let url = format!("http://{ops}/readyz");
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(&url).await.unwrap().status() != 200 {
        assert!(
            tokio::time::Instant::now() < give_up,
            "Catalog never got ready"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn catalog_is_not_ready_before_it_has_heard_from_discount() {
    let pki = service_pki();
    // Accepts connections and never answers: no health check can complete.
    let silent = e2e_tests::spawn_black_hole().await;
    let catalog = spawn_catalog(&pki, silent.addr, CatalogOptions::default()).await;
    let response = reqwest::get(format!("http://{}/readyz", catalog.ops()))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    assert!(body.contains("discount"), "{body}");
}

#[tokio::test]
async fn catalog_is_ready_only_while_discount_is_serving() {
    let pki = service_pki();
    let discount = e2e_tests::spawn_discount(&pki).await;
    let proxy = e2e_tests::spawn_proxy(discount.addr).await;
    let catalog = spawn_catalog(&pki, proxy.addr, CatalogOptions::default()).await;
    let get = |path: &'static str| {
        let url = format!("http://{}{path}", catalog.ops());
        async move { reqwest::get(url).await.unwrap() }
    };

    assert_eq!(get("/healthz").await.status(), 200);
    until_ready(catalog.ops()).await;
    let ready = get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), r#"{"status":"ready"}"#);

    // Discount gone (new connections go nowhere, the old one is closed with it). The next
    // discount RPC fails and takes the only replica out of rotation; readiness follows at once.
    let gone = e2e_tests::closed_port();
    proxy.set_target(gone.addr);
    discount.stop().await;
    let products = get_products(catalog.addr, Some("1")).await;
    assert_eq!(products.headers()["x-discount-unavailable"], "unavailable");
    let not_ready = get("/readyz").await;
    assert_eq!(not_ready.status(), 503);
    let body: serde_json::Value = serde_json::from_str(&not_ready.text().await.unwrap()).unwrap();
    assert_eq!(body["status"], "not_ready");
    let why = body["not_ready"][0].as_str().unwrap();
    assert!(why.starts_with("discount: unavailable ("), "{body}");
    assert!(why.contains("no Discount replica in rotation"), "{body}");
    // Liveness does not depend on Discount.
    assert_eq!(get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn catalog_serves_health_readiness_and_metrics_on_its_ops_port_only() {
    let pki = service_pki();
    let discount = e2e_tests::spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;
    let get = |addr: std::net::SocketAddr, path: &'static str| async move {
        let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        let status = response.status().as_u16();
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        (status, kind, response.text().await.unwrap())
    };
    let not_found = r#"{"error":"not_found","message":"no such resource"}"#;

    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _, body) = get(catalog.addr, path).await;
        assert_eq!((status, body.as_str()), (404, not_found), "public {path}");
    }
    let (status, _, body) = get(catalog.ops(), "/healthz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    until_ready(catalog.ops()).await;
    let (status, _, body) = get(catalog.ops(), "/readyz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
    let (status, kind, body) = get(catalog.ops(), "/metrics").await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/plain"), "{kind}");
    assert!(body.contains("catalog_discount_replicas"), "{body}");

    // The API stays on the public port, and is not on the operations port.
    assert_eq!(get(catalog.addr, "/").await.0, 200);
    assert_eq!(get(catalog.addr, "/openapi.json").await.0, 200);
    assert_eq!(get_products(catalog.addr, Some("1")).await.status(), 200);
    for path in ["/", "/products", "/openapi.json"] {
        let (status, _, body) = get(catalog.ops(), path).await;
        assert_eq!((status, body.as_str()), (404, not_found), "ops {path}");
    }
    // The public API's document no longer lists the operations routes.
    let (_, _, doc) = get(catalog.addr, "/openapi.json").await;
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths, ["/products", "/products/{id}"]);
}

#[tokio::test]
async fn readiness_calls_send_no_rpc_to_discount() {
    let pki = service_pki();
    let counting = CountingDiscount::default();
    let discount = spawn_counting_discount(&pki, counting.clone()).await;
    // One health round at start, then none during the test: any further health check
    // Discount sees would come from a /readyz call.
    let options = CatalogOptions {
        replicas: ReplicaSettings {
            health_interval: Duration::from_secs(3600),
            ..ReplicaSettings::default()
        },
        ..CatalogOptions::default()
    };
    let catalog = spawn_catalog(&pki, discount.addr, options).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/readyz", catalog.ops());
    until_ready(catalog.ops()).await;
    assert_eq!(counting.health_checks.load(Ordering::SeqCst), 1);
    // The counter counts: a health check sent by hand is seen.
    let channel = e2e_tests::mtls_channel(discount.addr, &pki.ca, Some(&pki.catalog));
    let request = HealthCheckRequest {
        service: "ecommerce.Discount".into(),
    };
    HealthClient::new(channel).check(request).await.unwrap();
    assert_eq!(counting.health_checks.load(Ordering::SeqCst), 2);

    let calls: Vec<_> = (0..64)
        .map(|_| {
            let request = client.get(&url).send();
            tokio::spawn(async move {
                let response = request.await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            })
        })
        .collect();
    for call in calls {
        let answer = call.await.unwrap();
        assert_eq!(answer, (200, r#"{"status":"ready"}"#.to_owned()));
    }
    assert_eq!(counting.health_checks.load(Ordering::SeqCst), 2);
    assert_eq!(counting.calls(), 0);
}

/// The property names of a schema in the document's components, and those it requires.
fn schema_fields(doc: &serde_json::Value, name: &str) -> (Vec<String>, Vec<String>) {
    let schema = &doc["components"]["schemas"][name];
    let mut properties: Vec<String> = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {name} has no properties: {schema}"))
        .keys()
        .cloned()
        .collect();
    properties.sort();
    let required = schema["required"]
        .as_array()
        .map(|r| r.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    (properties, required)
}

/// Checks that `value` has every required field of `schema` and nothing it does not describe.
fn conforms(doc: &serde_json::Value, schema: &str, value: &serde_json::Value) {
    let (properties, required) = schema_fields(doc, schema);
    let object = value.as_object().unwrap();
    for key in object.keys() {
        assert!(
            properties.contains(key),
            "{schema} does not describe `{key}` in {value}"
        );
    }
    for key in &required {
        assert!(
            object.contains_key(key),
            "{value} lacks required `{key}` of {schema}"
        );
    }
}

#[tokio::test]
async fn openapi_document_describes_the_real_responses() {
    let pki = service_pki();
    let discount = e2e_tests::spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;
    let base = format!("http://{}", catalog.addr);
    let client = reqwest::Client::new();
    let get_json = |url: String, user: Option<&'static str>| {
        let client = client.clone();
        async move {
            let mut request = client.get(url);
            if let Some(user) = user {
                request = request.header("X-USER-ID", user);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value =
                serde_json::from_str(&response.text().await.unwrap()).unwrap();
            (status, body)
        }
    };

    let (status, doc) = get_json(format!("{base}/openapi.json"), None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let products = &doc["paths"]["/products"]["get"];
    let params: Vec<&str> = products["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["X-USER-ID", "limit", "cursor"] {
        assert!(params.contains(&name), "{name} not documented: {params:?}");
    }
    let headers = &products["responses"]["200"]["headers"];
    assert!(headers.get("x-discount-unavailable").is_some(), "{headers}");
    assert!(headers.get("link").is_some(), "{headers}");
    assert!(products["responses"].get("400").is_some());
    let shed = &products["responses"]["503"];
    assert!(shed["headers"].get("retry-after").is_some(), "{shed}");

    // Real answers, discounted and not, match the documented product schema.
    for user in [Some("1"), None] {
        let (status, list) = get_json(format!("{base}/products"), user).await;
        assert_eq!(status, 200);
        for product in list.as_array().unwrap() {
            conforms(&doc, "ProductDoc", product);
            if let Some(discount) = product.get("discount_value") {
                conforms(&doc, "DiscountDoc", discount);
            }
        }
    }
    let (_, one) = get_json(format!("{base}/products/1"), Some("1")).await;
    conforms(&doc, "ProductDoc", &one);
    // And the documented error body is what a bad request gets.
    let (status, error) = get_json(format!("{base}/products"), Some("abc")).await;
    assert_eq!(status, 400);
    conforms(&doc, "ErrorDoc", &error);
    let (status, error) = get_json(format!("{base}/products/999"), None).await;
    assert_eq!(status, 404);
    conforms(&doc, "ErrorDoc", &error);
    let (status, error) = get_json(format!("{base}/products/%ff"), None).await;
    assert_eq!(status, 400);
    conforms(&doc, "ErrorDoc", &error);
    // Every code a real error carries is one the document lists.
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap();
    assert!(codes.contains(&error["error"]), "{error}");

    // Another method: the documented 405, with the documented `Allow`.
    for path in ["/products", "/products/1"] {
        let response = client.delete(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 405);
        let template = if path == "/products" {
            path
        } else {
            "/products/{id}"
        };
        let documented = &doc["paths"][template]["get"]["responses"]["405"];
        let allow = response.headers()["allow"].to_str().unwrap().to_owned();
        assert_eq!(documented["headers"]["allow"]["schema"]["enum"][0], allow);
        let error: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        conforms(&doc, "ErrorDoc", &error);
        assert!(codes.contains(&error["error"]), "{error}");
    }
}
