//! What a request asks for, read and checked before any handler runs: the customer from
//! `X-USER-ID` ([`CustomerId`]), the product from the path ([`ProductId`]) and the page from
//! `?limit=` and `?cursor=` ([`PageRequest`]), with the opaque cursors; and the schemas the
//! OpenAPI document gives them, written next to the code they describe. Anything unclear is
//! refused with an [`ApiError`], never guessed at.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use serde::Deserialize;
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};

use super::response::ApiError;

/// The request header that names the customer.
pub const USER_ID_HEADER: &str = "x-user-id";

/// Products per page when `limit` is not given.
pub const DEFAULT_PAGE_LIMIT: usize = 100;

/// The largest `limit` accepted.
pub const MAX_PAGE_LIMIT: usize = 1000;

/// The caller's customer id from `X-USER-ID`: `None` when the header is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerId(pub Option<i32>);

impl<S: Send + Sync> FromRequestParts<S> for CustomerId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_customer_id(&parts.headers).map(CustomerId)
    }
}

/// Reads `X-USER-ID`: absent, or exactly one positive decimal integer that fits an `int32`
/// (the type of `Customer.id` on the wire). Anything else is refused rather than guessed at.
pub fn parse_customer_id(headers: &HeaderMap) -> Result<Option<i32>, ApiError> {
    let mut values = headers.get_all(USER_ID_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::InvalidUserId(
            "X-USER-ID must be sent at most once",
        ));
    }
    let text = value
        .to_str()
        .map_err(|_| ApiError::InvalidUserId("X-USER-ID must be plain ASCII"))?
        .trim();
    if text.is_empty() {
        return Err(ApiError::InvalidUserId("X-USER-ID is empty"));
    }
    parse_positive_id(text)
        .map(Some)
        .ok_or(ApiError::InvalidUserId(
            "X-USER-ID must be a customer id: a whole number from 1 to 2147483647",
        ))
}

/// A positive `int32` written in plain decimal digits (no sign, no spaces, no exponent;
/// leading zeros allowed): exactly the strings [`POSITIVE_ID_PATTERN`] matches.
pub(super) fn parse_positive_id(text: &str) -> Option<i32> {
    parse_digits(text)?.parse::<i32>().ok().filter(|id| *id > 0)
}

/// `text` if it is one or more ASCII digits and nothing else (Rust's integer parsing would also
/// take a leading `+`).
fn parse_digits(text: &str) -> Option<&str> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

/// What [`parse_positive_id`] accepts, as a regular expression (unanchored) for the OpenAPI
/// document: any leading zeros, then 1 to 2147483647. Up to nine digits, any number is in range;
/// a ten-digit one is when it starts like `2147483647` and is smaller at the first digit where
/// they differ (one branch per such digit), or is `2147483647`. A unit test checks it against
/// the parser.
pub const POSITIVE_ID_PATTERN: &str = "0*(?:[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}\
    |214[0-6][0-9]{6}|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}\
    |2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7])";

/// The product id of `/products/{id}`: a positive `int32`, written as [`parse_positive_id`]
/// reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductId(pub i32);

impl<S: Send + Sync> FromRequestParts<S> for ProductId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // The path extractor's own rejection is a bad id too: the route has one parameter, so
        // its only failure at run time is an id that is not UTF-8 once percent-decoded
        // (`/products/%ff`), which is no number either.
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::InvalidProductId)?;
        parse_positive_id(&text)
            .map(ProductId)
            .ok_or(ApiError::InvalidProductId)
    }
}

/// Which page of products to list, from `?limit=` and `?cursor=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Products per page (1 to [`MAX_PAGE_LIMIT`]).
    pub limit: usize,
    /// List products with ids after this one (from the cursor).
    pub after: Option<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for PageRequest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(raw) = Query::<RawPageQuery>::from_request_parts(parts, state)
            .await
            .map_err(|err: QueryRejection| ApiError::InvalidQuery(err.body_text()))?;
        let limit = match raw.limit.as_deref() {
            None => DEFAULT_PAGE_LIMIT,
            Some(text) => parse_digits(text)
                .and_then(|digits| digits.parse::<usize>().ok())
                .filter(|limit| (1..=MAX_PAGE_LIMIT).contains(limit))
                .ok_or_else(|| {
                    ApiError::InvalidQuery(format!(
                        "limit must be a whole number from 1 to {MAX_PAGE_LIMIT}"
                    ))
                })?,
        };
        let after = match raw.cursor.as_deref() {
            None => None,
            Some(cursor) => Some(decode_cursor(cursor).ok_or_else(|| {
                ApiError::InvalidQuery(
                    "cursor is not one this service issued: use the Link header of the previous page"
                        .into(),
                )
            })?),
        };
        Ok(Self { limit, after })
    }
}

/// Cursors are opaque to clients; today they carry the last id of the previous page, with a
/// version prefix so the format can change without misreading old cursors.
const CURSOR_PREFIX: &str = "v1.";

pub(super) fn encode_cursor(after: i32) -> String {
    format!("{CURSOR_PREFIX}{after}")
}

fn decode_cursor(cursor: &str) -> Option<i32> {
    cursor
        .strip_prefix(CURSOR_PREFIX)
        .and_then(parse_positive_id)
}

/// `X-USER-ID` as the OpenAPI document gives it: a string of exactly the form
/// [`parse_customer_id`] accepts, so that every value the schema allows is served and every
/// other one is a 400.
#[derive(Debug)]
pub(super) struct UserIdSchema;

impl utoipa::PartialSchema for UserIdSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^{POSITIVE_ID_PATTERN}$")))
            .examples(["1"])
            .into()
    }
}

impl utoipa::ToSchema for UserIdSchema {}

/// `cursor` as the OpenAPI document gives it: exactly the form [`decode_cursor`] accepts
/// (what this service issues, and what it would issue for any product id).
#[derive(Debug)]
pub(super) struct CursorSchema;

impl utoipa::PartialSchema for CursorSchema {
    fn schema() -> RefOr<Schema> {
        let prefix = CURSOR_PREFIX.replace('.', "\\.");
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^{prefix}{POSITIVE_ID_PATTERN}$")))
            .examples([encode_cursor(100)])
            .into()
    }
}

impl utoipa::ToSchema for CursorSchema {}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(USER_ID_HEADER, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    #[test]
    fn absent_header_means_no_customer() {
        assert_eq!(parse_customer_id(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn positive_ids_are_accepted() {
        assert_eq!(parse_customer_id(&headers(&[b"1"])), Ok(Some(1)));
        assert_eq!(
            parse_customer_id(&headers(&[b"2147483647"])),
            Ok(Some(i32::MAX))
        );
        assert_eq!(parse_customer_id(&headers(&[b"007"])), Ok(Some(7)));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            &b"abc"[..],
            b"-5",
            b"-1",
            b"0",
            b"1.5",
            b"1.0",
            b"",
            b"+1",
            b"1e3",
            b"0x10",
            b"2147483648",
            b"1234567890123456789012345678901234567890",
            b"\xff",
        ] {
            assert!(
                matches!(
                    parse_customer_id(&headers(&[bad])),
                    Err(ApiError::InvalidUserId(_))
                ),
                "{:?} was accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        for foreign in [
            "",
            "42",
            "v1.",
            "v1.-3",
            "v1.0",
            "v2.42",
            "v1.4x",
            "v1.99999999999",
        ] {
            assert_eq!(decode_cursor(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn repeated_header_is_refused() {
        assert!(parse_customer_id(&headers(&[b"1", b"2"])).is_err());
    }

    /// The anchored `pattern` of a schema built in code.
    fn pattern_of(schema: RefOr<Schema>) -> regex::Regex {
        let RefOr::T(Schema::Object(object)) = schema else {
            panic!("not an inline object schema");
        };
        regex::Regex::new(object.pattern.as_deref().expect("a pattern")).unwrap()
    }

    /// Texts on both sides of every edge of "1 to 2147483647 in digits": powers of ten, each
    /// digit of 2147483647 one up and one down, leading zeros, signs, spaces, non-digits; and
    /// a spread of numbers up to eleven digits.
    fn id_like_texts() -> Vec<String> {
        let mut texts: Vec<String> = [
            "", "0", "00", "+1", "-1", "1 ", " 1", "1.0", "1e3", "0x1", "abc", "١", "1_000",
        ]
        .map(String::from)
        .to_vec();
        let mut numbers: Vec<u64> = Vec::new();
        for power in 0..=11 {
            let ten = 10u64.pow(power);
            numbers.extend([ten - 1, ten, ten + 1]);
        }
        let max = i32::MAX.to_string();
        for position in 0..max.len() {
            for step in [-1i32, 1] {
                let mut digits: Vec<u8> = max.bytes().collect();
                let digit = i32::from(digits[position] - b'0') + step;
                if (0..=9).contains(&digit) {
                    digits[position] = b'0' + u8::try_from(digit).unwrap();
                    texts.push(String::from_utf8(digits).unwrap());
                }
            }
        }
        let max = u64::from(i32::MAX.unsigned_abs());
        numbers.extend((max - 20)..=(max + 20));
        // A fixed pseudo-random spread (splitmix64), so that a failure reproduces.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let z = z ^ (z >> 31);
            // 1 to 11 digits.
            let digits = u32::try_from(z >> 60).unwrap() % 11 + 1;
            numbers.push(z % 10u64.pow(digits));
        }
        for number in numbers {
            texts.push(number.to_string());
            texts.push(format!("0{number}"));
            texts.push(format!("000{number}"));
        }
        texts
    }

    #[test]
    fn the_user_id_schema_allows_exactly_what_is_accepted() {
        let pattern = pattern_of(<UserIdSchema as utoipa::PartialSchema>::schema());
        for text in id_like_texts() {
            assert_eq!(
                pattern.is_match(&text),
                parse_positive_id(&text).is_some(),
                "{text:?}"
            );
        }
        assert!(pattern.is_match("2147483647") && !pattern.is_match("2147483648"));
    }

    #[test]
    fn the_cursor_schema_allows_exactly_what_is_accepted() {
        let pattern = pattern_of(<CursorSchema as utoipa::PartialSchema>::schema());
        let mut cursors: Vec<String> = id_like_texts()
            .iter()
            .flat_map(|id| [format!("v1.{id}"), format!("v2.{id}"), format!("v1x{id}")])
            .collect();
        cursors.extend(["v1", "V1.1", " v1.1", "v1.1 "].map(String::from));
        for cursor in cursors {
            assert_eq!(
                pattern.is_match(&cursor),
                decode_cursor(&cursor).is_some(),
                "{cursor:?}"
            );
        }
        assert!(pattern.is_match(&encode_cursor(i32::MAX)));
    }

    async fn page(query: &str) -> Result<PageRequest, ApiError> {
        let (mut parts, ()) = axum::http::Request::builder()
            .uri(format!("/products?{query}"))
            .body(())
            .unwrap()
            .into_parts();
        PageRequest::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn limit_is_digits_only_from_1_to_the_maximum() {
        assert_eq!(page("").await.unwrap().limit, DEFAULT_PAGE_LIMIT);
        assert_eq!(page("limit=0010").await.unwrap().limit, 10);
        assert_eq!(page("limit=1000").await.unwrap().limit, MAX_PAGE_LIMIT);
        for bad in [
            "limit=%2B5",
            "limit=+5",
            "limit=-5",
            "limit=%205",
            "limit=0",
            "limit=1001",
            "limit=1.0",
            "limit=1e2",
            "limit=",
        ] {
            assert!(
                matches!(page(bad).await, Err(ApiError::InvalidQuery(_))),
                "?{bad} was accepted"
            );
        }
    }
}
