//! The OpenAPI document of the public API ([`ApiDoc`]), served at `/openapi.json`: what each
//! handler declares in its annotation, plus what the router and its layers give every route
//! alike (the `X-Request-Id` header, 405 with `Allow` for another method, 503 when shedding),
//! added here to every operation so that none can miss it.

use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi as Document, Ref, RefOr, Required, Response,
    ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi};

use super::products;
use super::response::RETRY_AFTER_SECS;
use crate::openapi::{DiscountDoc, ErrorCode, ErrorDoc, ProductDoc};
use service_runtime::request_id;

/// Catalog's API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Catalog",
        description = "The shop's products, discounted for the caller by the Discount service \
                       (gRPC over mutual TLS). When Discount cannot be asked, products come at \
                       full price with the `x-discount-unavailable` header.\n\n\
                       Every error Catalog writes, 4xx or 5xx, is a JSON `ErrorDoc` with a \
                       stable `error` code. Every response carries `x-request-id`. Each path \
                       also answers `HEAD` as it answers `GET`, without the body; any other \
                       method is a 405 with `Allow`. Any other path is a 404 `not_found`.",
        version = env!("CARGO_PKG_VERSION")
    ),
    paths(products::list_products, products::one_product),
    components(schemas(ProductDoc, DiscountDoc, ErrorDoc, ErrorCode)),
    modifiers(&EveryRoute)
)]
pub struct ApiDoc;

/// Response headers present on every response that documents them: the header type of
/// utoipa has no `required`, so the rendered document gets it here.
const ALWAYS_SENT: [&str; 2] = ["x-request-id", "allow"];

impl ApiDoc {
    /// The document served at `/openapi.json`.
    pub fn document() -> serde_json::Value {
        let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        let operations = document["paths"]
            .as_object_mut()
            .into_iter()
            .flat_map(|paths| paths.values_mut())
            .filter_map(serde_json::Value::as_object_mut)
            .flat_map(|item| item.values_mut());
        for operation in operations {
            let headers = operation["responses"]
                .as_object_mut()
                .into_iter()
                .flat_map(|responses| responses.values_mut())
                .filter_map(|response| response["headers"].as_object_mut());
            for headers in headers {
                for name in ALWAYS_SENT {
                    if let Some(header) = headers.get_mut(name) {
                        header["required"] = true.into();
                    }
                }
            }
        }
        document
    }

    /// [`ApiDoc::document`] as JSON, rendered once.
    pub fn json() -> bytes::Bytes {
        static JSON: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
        JSON.get_or_init(|| bytes::Bytes::from(ApiDoc::document().to_string()))
            .clone()
    }
}

/// What every route gets from the router and its layers (`context`, `shed`, axum's method
/// routing), added to each operation.
struct EveryRoute;

impl Modify for EveryRoute {
    fn modify(&self, openapi: &mut Document) {
        for item in openapi.paths.paths.values_mut() {
            let allow = allowed_methods(item);
            for operation in operations(item) {
                let parameters = operation.parameters.get_or_insert_with(Vec::new);
                parameters.push(
                    ParameterBuilder::new()
                        .name("X-Request-Id")
                        .parameter_in(ParameterIn::Header)
                        .required(Required::False)
                        .description(Some(format!(
                            "Correlation id, returned in `x-request-id` and logged: used if it \
                             is 1 to {} visible ASCII characters, else replaced by a new one \
                             (never refused).",
                            request_id::MAX_LEN
                        )))
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .build(),
                );
                let responses = &mut operation.responses.responses;
                responses.insert("405".into(), method_not_allowed(&allow).into());
                responses.insert("503".into(), unavailable().into());
                for response in responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response
                            .headers
                            .insert(request_id::HEADER.into(), request_id_header());
                    }
                }
            }
        }
    }
}

/// The operations of a path.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The `Allow` header axum sends with a 405 on this path: its methods, `HEAD` after `GET`
/// (axum serves it for every `GET` route).
fn allowed_methods(item: &PathItem) -> String {
    let mut methods = Vec::new();
    for (name, operation) in [
        ("GET", &item.get),
        ("POST", &item.post),
        ("PUT", &item.put),
        ("DELETE", &item.delete),
        ("PATCH", &item.patch),
    ] {
        if operation.is_some() {
            methods.push(name);
            if name == "GET" {
                methods.push("HEAD");
            }
        }
    }
    methods.join(",")
}

fn request_id_header() -> Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!("^[!-~]{{1,{}}}$", request_id::MAX_LEN))),
        )
        .description(Some(
            "The request's correlation id: the caller's `X-Request-Id` if usable, else a new one",
        ))
        .build()
}

fn error_body() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorDoc")))
        .build()
}

fn method_not_allowed(allow: &str) -> Response {
    ResponseBuilder::new()
        .description(format!(
            "Any method but {} on this path (`method_not_allowed`); `Allow` lists those served",
            allow.replace(',', " or ")
        ))
        .header(
            "allow",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([allow])),
                )
                .description(Some("The methods this path serves"))
                .build(),
        )
        .content("application/json", error_body())
        .build()
}

fn unavailable() -> Response {
    ResponseBuilder::new()
        .description(
            "Too many requests in progress (`overloaded`), or no catalog data yet since \
             start-up (`catalog_unavailable`, the message names the cause): try again after \
             `Retry-After`",
        )
        .header(
            "retry-after",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0))
                        .examples([RETRY_AFTER_SECS]),
                )
                .description(Some("Seconds to wait before trying again"))
                .build(),
        )
        .content("application/json", error_body())
        .build()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::discount::DiscountFailure;
    use crate::http::{ApiError, MAX_PAGE_LIMIT};

    /// Every operation of the document: (path, method, operation).
    fn operations(document: &Value) -> Vec<(String, String, Value)> {
        let mut found = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                found.push((path.clone(), method.clone(), operation.clone()));
            }
        }
        assert!(!found.is_empty());
        found
    }

    #[test]
    fn every_response_of_every_operation_carries_the_request_id() {
        let document = ApiDoc::document();
        for (path, method, operation) in operations(&document) {
            let responses = operation["responses"].as_object().unwrap();
            for (status, response) in responses {
                let header = &response["headers"]["x-request-id"];
                assert_eq!(header["required"], true, "{method} {path} {status}");
                assert_eq!(
                    header["schema"]["type"], "string",
                    "{method} {path} {status}"
                );
            }
            let parameters = operation["parameters"].as_array().unwrap();
            assert!(
                parameters.iter().any(|p| p["name"] == "X-Request-Id"),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn every_operation_documents_405_with_allow_and_503_with_retry_after() {
        let document = ApiDoc::document();
        for (path, method, operation) in operations(&document) {
            let wrong_method = &operation["responses"]["405"];
            let allow = &wrong_method["headers"]["allow"];
            assert_eq!(allow["required"], true, "{method} {path}");
            assert_eq!(allow["schema"]["enum"], serde_json::json!(["GET,HEAD"]));
            let shed = &operation["responses"]["503"];
            assert_eq!(shed["headers"]["retry-after"]["schema"]["type"], "integer");
        }
    }

    #[test]
    fn every_error_response_has_the_error_body() {
        let document = ApiDoc::document();
        for (path, method, operation) in operations(&document) {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorDoc",
                        "{method} {path} {status}"
                    );
                }
            }
        }
        let products = &document["paths"]["/products/{id}"]["get"]["responses"];
        for status in ["400", "404", "405", "503"] {
            assert!(products.get(status).is_some(), "/products/{{id}} {status}");
        }
    }

    #[test]
    fn the_error_codes_are_every_code_an_error_is_answered_with() {
        let every = [
            ApiError::InvalidUserId(""),
            ApiError::InvalidQuery(String::new()),
            ApiError::InvalidProductId,
            ApiError::NoSuchProduct(1),
            ApiError::NotFound,
            ApiError::MethodNotAllowed(axum::http::Method::POST),
            ApiError::NoCatalogYet(""),
            ApiError::Overloaded,
        ];
        let mut codes: Vec<Value> = every
            .iter()
            .map(|error| {
                // No wildcard: a new variant does not compile until it is added above.
                match error {
                    ApiError::InvalidUserId(_)
                    | ApiError::InvalidQuery(_)
                    | ApiError::InvalidProductId
                    | ApiError::NoSuchProduct(_)
                    | ApiError::NotFound
                    | ApiError::MethodNotAllowed(_)
                    | ApiError::NoCatalogYet(_)
                    | ApiError::Overloaded => {
                        serde_json::to_value(error.status_and_code().1).unwrap()
                    }
                }
            })
            .collect();
        codes.sort_by_key(Value::to_string);
        codes.dedup();
        let document = ApiDoc::document();
        let mut documented = document["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap()
            .clone();
        documented.sort_by_key(Value::to_string);
        assert_eq!(codes, documented);
    }

    #[test]
    fn discount_unavailable_lists_every_reason() {
        let document = ApiDoc::document();
        for (path, method, operation) in operations(&document) {
            let header = &operation["responses"]["200"]["headers"]["x-discount-unavailable"];
            assert_eq!(
                header["schema"]["enum"],
                serde_json::json!(DiscountFailure::REASONS),
                "{method} {path}"
            );
            assert!(header.get("required").is_none(), "{method} {path}");
        }
    }

    #[test]
    fn parameters_are_what_the_extractors_accept() {
        let document = ApiDoc::document();
        let parameter = |path: &str, name: &str| {
            document["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{path} has no {name}"))
                .clone()
        };
        let limit = parameter("/products", "limit");
        assert_eq!(limit["required"], false);
        assert_eq!(limit["schema"]["minimum"], 1);
        assert_eq!(limit["schema"]["maximum"], MAX_PAGE_LIMIT);
        let id = parameter("/products/{id}", "id");
        assert_eq!(id["schema"]["minimum"], 1);
        assert_eq!(id["schema"]["maximum"], i32::MAX);
        // Optional, never null, and exactly the id form: no "any string".
        for path in ["/products", "/products/{id}"] {
            let user = parameter(path, "X-USER-ID");
            assert_eq!(user["required"], false, "{path}");
            assert_eq!(user["schema"]["type"], "string", "{path}");
            assert_eq!(
                user["schema"]["pattern"],
                format!("^{}$", crate::http::extract::POSITIVE_ID_PATTERN),
                "{path}"
            );
        }
        let cursor = parameter("/products", "cursor");
        assert_eq!(cursor["schema"]["type"], "string");
        assert!(
            cursor["schema"]["pattern"]
                .as_str()
                .unwrap()
                .starts_with("^v1\\.0*"),
            "{cursor}"
        );
    }

    #[test]
    fn the_served_json_is_the_document() {
        let served: Value = serde_json::from_slice(&ApiDoc::json()).unwrap();
        assert_eq!(served, ApiDoc::document());
    }
}
