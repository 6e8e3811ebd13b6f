//! Catalog's HTTP behaviour with a healthy Discount behind it (SPEC's request table).

use e2e_tests::{CatalogOptions, service_pki, spawn_catalog, spawn_discount};
use reqwest::Method;

use crate::{FULL_PRICE_JSON, SPEC_CUSTOMER_1_JSON, get_products};

#[tokio::test]
async fn customer_1_gets_spec_json_byte_for_byte() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let response = get_products(catalog.addr, Some("1")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().get("x-discount-unavailable").is_none());
    assert_eq!(response.text().await.unwrap(), SPEC_CUSTOMER_1_JSON);
}

#[tokio::test]
async fn no_header_lists_full_prices() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let response = get_products(catalog.addr, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), FULL_PRICE_JSON);
}

#[tokio::test]
async fn known_customer_without_discount_gets_products_without_discount_value() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let response = get_products(catalog.addr, Some("2")).await;
    assert_eq!(response.status(), 200);
    // Discount answered (no degraded-mode header): customer 2 is simply not eligible.
    assert!(response.headers().get("x-discount-unavailable").is_none());
    assert_eq!(response.text().await.unwrap(), FULL_PRICE_JSON);
}

#[tokio::test]
async fn unknown_customer_gets_full_prices() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let response = get_products(catalog.addr, Some("99")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-discount-unavailable").is_none());
    assert_eq!(response.text().await.unwrap(), FULL_PRICE_JSON);
}

#[tokio::test]
async fn bad_user_ids_get_400_with_a_json_error() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;

    let forty_digits = "1234567890123456789012345678901234567890";
    let twenty_digits = "12345678901234567890";
    for bad in [
        "abc",
        "-5",
        "1.5",
        "1.0",
        "",
        "0",
        "-1",
        "2147483648",
        twenty_digits,
        forty_digits,
    ] {
        let response = get_products(catalog.addr, Some(bad)).await;
        assert_eq!(response.status(), 400, "X-USER-ID: {bad:?}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(body["error"], "invalid_user_id", "X-USER-ID: {bad:?}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("X-USER-ID"), "{message}");
    }
    // Bad input costs nothing: the next good request is served normally.
    let response = get_products(catalog.addr, Some("1")).await;
    assert_eq!(response.text().await.unwrap(), SPEC_CUSTOMER_1_JSON);
}

#[tokio::test]
async fn root_says_it_is_working() {
    let pki = service_pki();
    let no_discount = e2e_tests::closed_port();
    let catalog = spawn_catalog(&pki, no_discount.addr, CatalogOptions::default()).await;

    let response = reqwest::get(format!("http://{}/", catalog.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("working"));
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let pki = service_pki();
    let no_discount = e2e_tests::closed_port();
    let catalog = spawn_catalog(&pki, no_discount.addr, CatalogOptions::default()).await;

    let response = reqwest::get(format!("http://{}/nope", catalog.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "not_found");
}

/// The status, content type, `x-request-id` and JSON body of an answer.
async fn json_answer(response: reqwest::Response) -> (u16, String, bool, serde_json::Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let kind = headers
        .get("content-type")
        .map_or("", |v| v.to_str().unwrap())
        .to_owned();
    let body = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    (status, kind, headers.contains_key("x-request-id"), body)
}

#[tokio::test]
async fn another_method_is_a_json_405_with_allow() {
    let pki = service_pki();
    let no_discount = e2e_tests::closed_port();
    let catalog = spawn_catalog(&pki, no_discount.addr, CatalogOptions::default()).await;
    let client = reqwest::Client::new();

    for path in [
        "/",
        "/products",
        "/products/1",
        "/products/%ff",
        "/openapi.json",
    ] {
        for method in [
            "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "QUERY",
        ] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let url = format!("http://{}{path}", catalog.addr);
            let response = client.request(method.clone(), url).send().await.unwrap();
            let allow = response.headers().get("allow").cloned();
            let (status, kind, has_id, body) = json_answer(response).await;
            assert_eq!(status, 405, "{method} {path}");
            assert_eq!(allow.unwrap(), "GET,HEAD", "{method} {path}");
            assert_eq!(kind, "application/json", "{method} {path}");
            assert!(has_id, "{method} {path}: no x-request-id");
            assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains(method.as_str()), "{message}");
        }
    }
    // An unknown path is still a 404, whatever the method.
    let url = format!("http://{}/nope", catalog.addr);
    let (status, _, has_id, body) = json_answer(client.post(url).send().await.unwrap()).await;
    assert_eq!((status, has_id), (404, true));
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn a_product_id_that_is_not_utf8_is_a_json_400() {
    let pki = service_pki();
    let no_discount = e2e_tests::closed_port();
    let catalog = spawn_catalog(&pki, no_discount.addr, CatalogOptions::default()).await;

    for id in ["%ff", "%c3%28", "1%ff", "%80"] {
        let url = format!("http://{}/products/{id}", catalog.addr);
        let (status, kind, has_id, body) = json_answer(reqwest::get(url).await.unwrap()).await;
        assert_eq!(status, 400, "/products/{id}");
        assert_eq!(kind, "application/json", "/products/{id}");
        assert!(has_id, "/products/{id}: no x-request-id");
        assert_eq!(body["error"], "invalid_product_id", "/products/{id}");
    }
}

/// `method url` with `X-USER-ID: user`.
async fn ask(client: &reqwest::Client, method: Method, url: &str, user: &str) -> reqwest::Response {
    let request = client.request(method, url).header("X-USER-ID", user);
    request.send().await.unwrap()
}

#[tokio::test]
async fn head_answers_as_get_does_without_a_body() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let catalog = spawn_catalog(&pki, discount.addr, CatalogOptions::default()).await;
    let client = reqwest::Client::new();

    for (path, status) in [
        ("/products", 200),
        ("/products/1", 200),
        ("/openapi.json", 200),
        ("/products/%ff", 400),
        ("/products/0", 400),
        ("/products/42", 404),
        ("/nope", 404),
    ] {
        let url = format!("http://{}{path}", catalog.addr);
        let get = ask(&client, Method::GET, &url, "1").await;
        let head = ask(&client, Method::HEAD, &url, "1").await;
        assert_eq!(get.status(), status, "GET {path}");
        assert_eq!(head.status(), status, "HEAD {path}");
        for name in ["content-type", "content-length"] {
            let (head, get) = (head.headers().get(name), get.headers().get(name));
            assert_eq!(head, get, "{name} {path}");
        }
        assert!(head.headers().contains_key("x-request-id"), "HEAD {path}");
        let body = head.text().await.unwrap();
        assert!(body.is_empty(), "HEAD {path} has a body: {body}");
        assert!(!get.text().await.unwrap().is_empty(), "GET {path}");
    }
    // A bad X-USER-ID is refused on HEAD as on GET.
    let url = format!("http://{}/products", catalog.addr);
    assert_eq!(ask(&client, Method::HEAD, &url, "0").await.status(), 400);
}

#[tokio::test]
async fn concurrent_requests_share_one_discount_connection() {
    let pki = service_pki();
    let discount = spawn_discount(&pki).await;
    let proxy = e2e_tests::spawn_proxy(discount.addr).await;
    let catalog = spawn_catalog(&pki, proxy.addr, CatalogOptions::default()).await;

    let requests: Vec<_> = (0..50)
        .map(|_| tokio::spawn(get_products(catalog.addr, Some("1"))))
        .collect();
    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), SPEC_CUSTOMER_1_JSON);
    }
    // 50 concurrent HTTP requests, 50 RPCs, one TCP (and TLS) connection to Discount.
    assert_eq!(proxy.connections(), 1);
}
