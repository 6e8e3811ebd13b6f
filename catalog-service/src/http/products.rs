//! The product routes, `/products` and `/products/{id}`: a page or one product, priced for
//! the caller: discounted when Catalog knows the customer and Discount answers in time, else
//! at full price with [`DISCOUNT_UNAVAILABLE_HEADER`] naming why. A request reads one catalog
//! snapshot from start to end.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::http::header::{HeaderValue, LINK};
use axum::response::Response;
use bytes::Bytes;

use super::context::{RequestId, RequestSpan};
use super::extract::{
    CursorSchema, CustomerId, PageRequest, ProductId, UserIdSchema, encode_cursor,
};
use super::response::{ApiError, DISCOUNT_UNAVAILABLE_HEADER, DiscountUnavailableSchema, json};
use super::state::AppState;
use crate::catalog::{DiscountView, PriceTag};
use crate::openapi::{ErrorDoc, ProductDoc};
use crate::rendered::{PctText, StoredProduct, render_json};
use crate::snapshot::Snapshot;
use service_runtime::otel::Parent;

/// The parent of a request with nothing to trace.
static NO_PARENT: Parent = Parent::none();

/// `catalog_discount_calls_total{outcome="ok"}`, looked up in the recorder once (the
/// application installs the recorder before it serves): finding a labelled counter on every
/// discounted request showed in the profile.
fn discount_calls_ok() -> &'static metrics::Counter {
    static OK: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    OK.get_or_init(|| metrics::counter!("catalog_discount_calls_total", "outcome" => "ok"))
}

/// The products, one page at a time, discounted for the caller.
#[utoipa::path(get, path = "/products", tag = "products",
    params(
        ("X-USER-ID" = inline(Option<UserIdSchema>), Header, nullable = false,
            description = "The customer: a whole number from 1 to 2147483647, in decimal digits. \
                           Absent: full prices. Anything else (empty, signed, too large, sent \
                           twice) is a 400 `invalid_user_id`."),
        ("limit" = Option<i32>, Query, nullable = false, minimum = 1, maximum = 1000,
            description = "Products per page, in decimal digits (default 100, at most 1000). \
                           Anything else is a 400 `invalid_query`."),
        ("cursor" = inline(Option<CursorSchema>), Query, nullable = false,
            description = "Where the page starts: copy it from the previous page's `Link` \
                           header. Anything else is a 400 `invalid_query`, as is any other \
                           query parameter."),
    ),
    responses(
        (status = 200, description = "One page of products, in ascending id order", body = [ProductDoc],
            headers(
                ("link" = String, description = "RFC 8288 link to the next page (`rel=\"next\"`), when there is one"),
                ("x-discount-unavailable" = inline(DiscountUnavailableSchema), description = "Present when the discount could not be applied and prices are full: why"),
            )),
        (status = 400, description = "Bad `X-USER-ID` (`invalid_user_id`), or bad `limit` or `cursor`, or another query parameter (`invalid_query`)", body = ErrorDoc),
    ))]
pub(crate) async fn list_products(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    span: Option<Extension<RequestSpan>>,
    CustomerId(customer): CustomerId,
    page: PageRequest,
) -> Result<Response, ApiError> {
    let snapshot = state.data.serving().map_err(ApiError::NoCatalogYet)?;
    let page_products = snapshot.page(page.after, page.limit);
    let mut response = priced(
        &state,
        &snapshot,
        (&request_id, span.as_ref().map(|s| &s.0.0)),
        customer,
        &page_products.products,
        false,
    )
    .await;
    if let Some(after) = page_products.next_after {
        let link = format!(
            "</products?limit={}&cursor={}>; rel=\"next\"",
            page.limit,
            encode_cursor(after)
        );
        // Digits, letters and punctuation only: always a valid header value.
        if let Ok(link) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(LINK, link);
        }
    }
    Ok(response)
}

/// One product, discounted for the caller.
#[utoipa::path(get, path = "/products/{id}", tag = "products",
    params(
        ("id" = i32, Path, minimum = 1, maximum = 2147483647,
            description = "Product id, in decimal digits. Anything else is a 400 `invalid_product_id`."),
        ("X-USER-ID" = inline(Option<UserIdSchema>), Header, nullable = false,
            description = "The customer: a whole number from 1 to 2147483647, in decimal digits. \
                           Absent: full price. Anything else (empty, signed, too large, sent \
                           twice) is a 400 `invalid_user_id`."),
    ),
    responses(
        (status = 200, description = "The product", body = ProductDoc,
            headers(
                ("x-discount-unavailable" = inline(DiscountUnavailableSchema), description = "Present when the discount could not be applied and the price is full: why"),
            )),
        (status = 400, description = "Bad id, even one that is not UTF-8 once percent-decoded (`invalid_product_id`), or bad `X-USER-ID` (`invalid_user_id`)", body = ErrorDoc),
        (status = 404, description = "No such product (`not_found`)", body = ErrorDoc),
    ))]
pub(crate) async fn one_product(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    span: Option<Extension<RequestSpan>>,
    ProductId(id): ProductId,
    CustomerId(customer): CustomerId,
) -> Result<Response, ApiError> {
    let snapshot = state.data.serving().map_err(ApiError::NoCatalogYet)?;
    let product = snapshot.product(id).ok_or(ApiError::NoSuchProduct(id))?;
    Ok(priced(
        &state,
        &snapshot,
        (&request_id, span.as_ref().map(|s| &s.0.0)),
        customer,
        &[product],
        true,
    )
    .await)
}

/// Renders `products` for the caller: full prices unless Catalog knows the customer and
/// Discount answers in time. `single` renders the one product as an object, not an array.
async fn priced(
    state: &AppState,
    snapshot: &Snapshot,
    (request_id, span): (&RequestId, Option<&Parent>),
    customer: Option<i32>,
    products: &[&StoredProduct],
    single: bool,
) -> Response {
    let render = |discounts: Option<&[Option<DiscountView>]>| -> Bytes {
        match (single, products.first()) {
            (true, Some(product)) => {
                let mut out = Vec::with_capacity(256);
                product.write_json(
                    &mut out,
                    discounts.and_then(|d| d.first().copied().flatten()),
                    &mut PctText::default(),
                );
                Bytes::from(out)
            }
            _ => render_json(products, discounts),
        }
    };
    let Some(id) = customer else {
        return json(StatusCode::OK, render(None));
    };
    let Some(customer) = snapshot.customer(id) else {
        tracing::debug!(customer = id, "unknown customer: full prices");
        return json(StatusCode::OK, render(None));
    };
    let asked: Vec<PriceTag> = products.iter().map(|p| p.price_tag()).collect();
    let outcome = state
        .discounts
        .discounts(customer, &asked, &request_id.0, span.unwrap_or(&NO_PARENT))
        .await;
    match &outcome {
        Ok(_) => discount_calls_ok().increment(1),
        Err(failure) => {
            let label = failure.reason();
            metrics::counter!("catalog_discount_calls_total", "outcome" => label).increment(1);
        }
    }
    match outcome {
        Ok(discounts) => json(StatusCode::OK, render(Some(&discounts))),
        Err(failure) => {
            tracing::warn!(
                request_id = request_id.0.to_str().unwrap_or("-"),
                customer = id,
                reason = failure.reason(),
                "serving full prices: {failure}"
            );
            let mut response = json(StatusCode::OK, render(None));
            response.headers_mut().insert(
                DISCOUNT_UNAVAILABLE_HEADER,
                HeaderValue::from_static(failure.reason()),
            );
            response
        }
    }
}
