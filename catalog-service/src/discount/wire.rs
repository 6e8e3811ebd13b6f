//! What goes over the wire to Discount and back: requests that carry Catalog's deadline, the
//! request id and the trace context, products reduced to id and price, and answers checked and reduced to the
//! discounts.

use std::time::Duration;

use ecommerce_proto::pb;
use tonic::Request;
use tonic::metadata::AsciiMetadataValue;

use super::failure::DiscountFailure;
use crate::catalog::{DiscountView, PriceTag};

/// What every RPC attempt carries besides its message: Catalog's deadline (`grpc-timeout`, so
/// Discount knows when Catalog stops waiting), the HTTP request's id, and the attempt's W3C
/// Trace Context (so Discount's spans join the trace).
#[derive(Debug)]
pub(super) struct Stamp<'a> {
    pub(super) timeout: Duration,
    pub(super) request_id: &'a http::HeaderValue,
    /// `traceparent` and `tracestate`, when the attempt is traced.
    pub(super) trace: Vec<(&'static str, String)>,
}

impl Stamp<'_> {
    /// `message` as a request carrying the stamp.
    pub(super) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        // Request ids are checked to be visible ASCII, so they are valid ASCII metadata.
        if let Ok(id) = AsciiMetadataValue::try_from(self.request_id.as_bytes()) {
            request
                .metadata_mut()
                .insert(service_runtime::request_id::HEADER, id);
        }
        for (name, value) in &self.trace {
            if let Ok(value) = AsciiMetadataValue::try_from(value.as_str()) {
                request.metadata_mut().insert(*name, value);
            }
        }
        request
    }
}

/// What Discount is sent about a product: its id and price. Slug and description stay empty
/// (valid proto3, and the rule ignores them): Catalog takes only `discount_value` from the
/// answer, so sending them would only double the bytes on the wire.
pub(super) fn to_pb(product: &PriceTag) -> pb::Product {
    pb::Product {
        id: product.id,
        price_in_cents: product.price_in_cents,
        ..pb::Product::default()
    }
}

/// Takes only the discounts from Discount's answer, after checking that it answers for exactly
/// the products asked about, in order, with plausible prices. Catalog stays the source of truth
/// for everything else about a product.
pub(super) fn extract(
    asked: &[PriceTag],
    answer: Vec<pb::Product>,
) -> Result<Vec<Option<DiscountView>>, DiscountFailure> {
    if answer.len() != asked.len() {
        return Err(DiscountFailure::BadResponse(format!(
            "{} products back for {} sent",
            answer.len(),
            asked.len()
        )));
    }
    asked
        .iter()
        .zip(answer)
        .map(|(asked, got)| {
            if got.id != asked.id {
                return Err(DiscountFailure::BadResponse(format!(
                    "product {} came back as product {}",
                    asked.id, got.id
                )));
            }
            match got.discount_value {
                None => Ok(None),
                Some(d)
                    if (0..=asked.price_in_cents).contains(&d.value_in_cents)
                        && (0.0..=1.0).contains(&d.pct) =>
                {
                    Ok(Some(DiscountView {
                        pct: d.pct,
                        value_in_cents: d.value_in_cents,
                    }))
                }
                Some(d) => Err(DiscountFailure::BadResponse(format!(
                    "product {} discounted to {} cents from {}",
                    asked.id, d.value_in_cents, asked.price_in_cents
                ))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: i32, price_in_cents: i32) -> PriceTag {
        PriceTag { id, price_in_cents }
    }

    fn answer(id: i32, value: Option<i32>) -> pb::Product {
        pb::Product {
            id,
            discount_value: value.map(|value_in_cents| pb::DiscountValue {
                pct: 0.1,
                value_in_cents,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn answers_must_match_what_was_asked() {
        let asked = [product(1, 100), product(2, 200)];
        let ok = extract(&asked, vec![answer(1, Some(90)), answer(2, None)]).unwrap();
        assert_eq!(ok[0].map(|d| d.value_in_cents), Some(90));
        assert_eq!(ok[1], None);

        for bad in [
            vec![answer(1, Some(90))],
            vec![answer(2, None), answer(1, None)],
            vec![answer(1, Some(101)), answer(2, None)],
            vec![answer(1, Some(-1)), answer(2, None)],
            vec![
                pb::Product {
                    discount_value: Some(pb::DiscountValue {
                        pct: f32::NAN,
                        value_in_cents: 90,
                    }),
                    ..answer(1, None)
                },
                answer(2, None),
            ],
        ] {
            assert!(matches!(
                extract(&asked, bad),
                Err(DiscountFailure::BadResponse(_))
            ));
        }
    }
}
