//! What goes over the wire to Discount and back: requests that carry Catalog's deadline, the
//! request id and the trace context, products reduced to id and price, and answers checked and
//! reduced to the discounts.

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

/// A group's answer, as the RPC that carried it gave it.
#[derive(Debug)]
pub(super) enum Reply {
    /// `ApplyDiscountPrices`: the discounts alone.
    Discounts(pb::Discounts),
    /// The older RPCs (`ApplyDiscountBatch`, `ApplyDiscount`): the products back, discounted.
    Products(Vec<pb::Product>),
}

/// What Discount is sent for one request: the customer's id and, of each product, its id and
/// price (Discount needs nothing else, and Catalog takes only the discounts back).
pub(super) fn to_group(customer_id: i32, products: &[PriceTag]) -> pb::PriceGroup {
    pb::PriceGroup {
        customer_id,
        product_ids: products.iter().map(|p| p.id).collect(),
        prices_in_cents: products.iter().map(|p| p.price_in_cents).collect(),
    }
}

/// `group` as the older RPCs take it: slug and description stay empty (valid proto3, and the
/// rule ignores them), and so do the customer's names.
pub(super) fn to_batch(group: &pb::PriceGroup) -> pb::BatchDiscountRequest {
    pb::BatchDiscountRequest {
        customer: Some(pb::Customer {
            id: group.customer_id,
            ..pb::Customer::default()
        }),
        products: group
            .product_ids
            .iter()
            .zip(&group.prices_in_cents)
            .map(|(&id, &price_in_cents)| pb::Product {
                id,
                price_in_cents,
                ..pb::Product::default()
            })
            .collect(),
    }
}

/// Takes the discounts from Discount's answer, after checking that it answers for exactly the
/// products asked about, in order, with plausible values. Catalog stays the source of truth for
/// everything else about a product.
pub(super) fn extract(
    asked: &[PriceTag],
    reply: Reply,
) -> Result<Vec<Option<DiscountView>>, DiscountFailure> {
    match reply {
        Reply::Discounts(discounts) => from_discounts(asked, discounts),
        Reply::Products(products) => from_products(asked, products),
    }
}

fn from_discounts(
    asked: &[PriceTag],
    discounts: pb::Discounts,
) -> Result<Vec<Option<DiscountView>>, DiscountFailure> {
    let pb::Discounts {
        pct,
        value_in_cents,
    } = discounts;
    if pct.is_empty() && value_in_cents.is_empty() {
        return Ok(vec![None; asked.len()]);
    }
    if pct.len() != asked.len() || value_in_cents.len() != asked.len() {
        return Err(DiscountFailure::BadResponse(format!(
            "{} discounts and {} values back for {} products sent",
            pct.len(),
            value_in_cents.len(),
            asked.len()
        )));
    }
    // A loop rather than `collect::<Result<Vec<_>, _>>()`, which cannot size the list first.
    let mut views = Vec::with_capacity(asked.len());
    for ((asked, pct), value_in_cents) in asked.iter().zip(pct).zip(value_in_cents) {
        // A pct of 0 is no discount: the value must be the price, and is not shown.
        if pct == 0.0 && value_in_cents != asked.price_in_cents {
            return Err(DiscountFailure::BadResponse(format!(
                "product {} without a discount at {value_in_cents} cents, priced {}",
                asked.id, asked.price_in_cents
            )));
        }
        let discount = pb::DiscountValue {
            pct,
            value_in_cents,
        };
        views.push(checked(asked, (pct != 0.0).then_some(discount))?);
    }
    Ok(views)
}

fn from_products(
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
            checked(asked, got.discount_value)
        })
        .collect()
}

/// A discount for `asked`, if it is one: a fraction between 0 and 1 and a value between 0 and
/// the price that is the price less that fraction, truncated (within what an `f32` fraction
/// can say). Answers are matched to products by position, so this is what catches values
/// shifted from one product to another.
fn checked(
    asked: &PriceTag,
    discount: Option<pb::DiscountValue>,
) -> Result<Option<DiscountView>, DiscountFailure> {
    match discount {
        None => Ok(None),
        Some(d)
            if (0..=asked.price_in_cents).contains(&d.value_in_cents)
                && (0.0..=1.0).contains(&d.pct)
                && consistent(asked.price_in_cents, d) =>
        {
            Ok(Some(DiscountView {
                pct: d.pct,
                value_in_cents: d.value_in_cents,
            }))
        }
        Some(d) => Err(DiscountFailure::BadResponse(format!(
            "product {} discounted to {} cents ({} off) from {}",
            asked.id, d.value_in_cents, d.pct, asked.price_in_cents
        ))),
    }
}

/// Whether `d.value_in_cents` is `price` less `d.pct` of it, give or take a cent and the
/// precision of an `f32` fraction.
fn consistent(price: i32, d: pb::DiscountValue) -> bool {
    let expected = f64::from(price) * (1.0 - f64::from(d.pct));
    (expected - f64::from(d.value_in_cents)).abs() <= 1.0 + f64::from(price) / f64::from(1 << 20)
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

    fn products(answer: Vec<pb::Product>) -> Reply {
        Reply::Products(answer)
    }

    fn discounts(pct: &[f32], value_in_cents: &[i32]) -> Reply {
        Reply::Discounts(pb::Discounts {
            pct: pct.to_vec(),
            value_in_cents: value_in_cents.to_vec(),
        })
    }

    #[test]
    fn discounts_must_match_what_was_asked() {
        let asked = [product(1, 100), product(2, 200)];
        let ok = extract(&asked, discounts(&[0.1, 0.0], &[90, 200])).unwrap();
        assert_eq!(
            ok,
            [
                Some(DiscountView {
                    pct: 0.1,
                    value_in_cents: 90
                }),
                None
            ]
        );
        assert_eq!(extract(&asked, discounts(&[], &[])).unwrap(), [None, None]);
        for bad in [
            discounts(&[0.1], &[90]),
            discounts(&[0.1, 0.1], &[90]),
            discounts(&[0.1, 0.1, 0.1], &[90, 180, 1]),
            discounts(&[0.1, 0.0], &[101, 200]),
            discounts(&[0.1, 0.0], &[-1, 200]),
            discounts(&[1.5, 0.0], &[90, 200]),
            discounts(&[-0.1, 0.0], &[90, 200]),
            discounts(&[f32::NAN, 0.0], &[90, 200]),
            // Without a discount, the value is the price.
            discounts(&[0.1, 0.0], &[90, 199]),
            // Values shifted between products, each below its price.
            discounts(&[0.1, 0.1], &[90, 60]),
            discounts(&[0.5, 0.1], &[90, 180]),
        ] {
            assert!(matches!(
                extract(&asked, bad),
                Err(DiscountFailure::BadResponse(_))
            ));
        }
    }

    #[test]
    fn the_rules_answers_are_consistent_for_every_size_of_price() {
        // What Discount answers: 90% of the price, truncated, with the f32 fraction 0.1.
        let prices = (1..200_000)
            .step_by(7)
            .chain([1 << 24, 1 << 30, i32::MAX - 1, i32::MAX]);
        for price in prices {
            let value_in_cents = (i64::from(price) * 9 / 10) as i32;
            let d = pb::DiscountValue {
                pct: 0.1,
                value_in_cents,
            };
            assert!(consistent(price, d), "{price} -> {value_in_cents}");
        }
    }

    #[test]
    fn products_must_match_what_was_asked() {
        let asked = [product(1, 100), product(2, 200)];
        let ok = extract(&asked, products(vec![answer(1, Some(90)), answer(2, None)])).unwrap();
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
                extract(&asked, products(bad)),
                Err(DiscountFailure::BadResponse(_))
            ));
        }
    }

    #[test]
    fn the_older_rpcs_are_sent_ids_and_prices() {
        let group = to_group(7, &[product(1, 100), product(2, 200)]);
        assert_eq!(group.product_ids, [1, 2]);
        assert_eq!(group.prices_in_cents, [100, 200]);
        let batch = to_batch(&group);
        assert_eq!(batch.customer.map(|c| c.id), Some(7));
        let sent: Vec<_> = batch
            .products
            .iter()
            .map(|p| (p.id, p.price_in_cents))
            .collect();
        assert_eq!(sent, [(1, 100), (2, 200)]);
        assert!(
            batch
                .products
                .iter()
                .all(|p| p.slug.is_empty() && p.discount_value.is_none())
        );
    }
}
