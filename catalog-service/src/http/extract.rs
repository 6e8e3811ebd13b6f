//! What a request asks for, read and checked before any handler runs: the customer from
//! `X-USER-ID` ([`CustomerId`]) and the page from `?limit=` and `?cursor=` ([`PageRequest`]),
//! with the opaque cursors. Anything unclear is refused with an [`ApiError`], never guessed at.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use serde::Deserialize;

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

/// A positive `int32` written in plain decimal digits (no sign, no spaces, no exponent).
pub(super) fn parse_positive_id(text: &str) -> Option<i32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i32>().ok().filter(|id| *id > 0)
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
            Some(text) => text
                .parse::<usize>()
                .ok()
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
}
