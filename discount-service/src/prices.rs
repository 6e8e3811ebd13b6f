//! `ApplyDiscountPrices`' work once the caller is authorized: the groups RPC in its compact
//! form. Each group is a customer id and two packed lists (product ids, prices); each answer is
//! the discounts only, written over the request's own price list, so a group costs one new
//! list (the percentages) and nothing is formatted unless something is refused.

use ecommerce_proto::pb::{
    Discounts, PriceGroup, PricesRequest, PricesResponse, PricesResult, prices_result,
};
use tonic::Status;

use crate::apply::{MAX_BATCH_PRODUCTS, check_groups, group_error, negative_price};
use crate::rule::{self, RuleError};

/// `ApplyDiscountPrices` without the authorization step: each group judged on its own, as
/// `ApplyDiscountBatch` would judge its products, a refused group carrying its own error.
pub fn apply_prices(request: PricesRequest) -> Result<PricesResponse, Status> {
    let PricesRequest { groups } = request;
    check_groups(groups.len(), groups.iter().map(group_size).sum())?;
    let results = groups
        .into_iter()
        .enumerate()
        .map(|(i, group)| {
            let result = match discount_group(group) {
                Ok(discounts) => prices_result::Result::Discounted(discounts),
                Err(status) => prices_result::Result::Error(group_error(i, &status)),
            };
            PricesResult {
                result: Some(result),
            }
        })
        .collect();
    Ok(PricesResponse { results })
}

/// The products a group carries, as counted against the limits (the longer list).
pub fn group_size(group: &PriceGroup) -> usize {
    group.product_ids.len().max(group.prices_in_cents.len())
}

/// One group's discounts: both lists empty when no product gets one, else one entry per
/// product (`pct` 0 and the price itself where there is none).
fn discount_group(group: PriceGroup) -> Result<Discounts, Status> {
    let PriceGroup {
        customer_id,
        product_ids,
        prices_in_cents,
    } = group;
    if product_ids.len() != prices_in_cents.len() {
        return Err(Status::invalid_argument(format!(
            "product_ids and prices_in_cents must be as long as each other, got {} and {}",
            product_ids.len(),
            prices_in_cents.len()
        )));
    }
    if prices_in_cents.len() > MAX_BATCH_PRODUCTS {
        return Err(Status::invalid_argument(format!(
            "products: at most {MAX_BATCH_PRODUCTS} per group, got {}",
            prices_in_cents.len()
        )));
    }
    // The answer's values are written over the prices: no list is allocated for them.
    let mut values = prices_in_cents;
    let mut pct: Vec<f32> = Vec::new();
    for (i, value) in values.iter_mut().enumerate() {
        match rule::discount_for(customer_id, *value) {
            Ok(Some(discount)) => {
                if pct.is_empty() {
                    // The first discounted product: the ones before it get none.
                    pct.reserve_exact(product_ids.len());
                    pct.resize(i, 0.0);
                }
                pct.push(discount.pct);
                *value = discount.value_in_cents;
            }
            Ok(None) if !pct.is_empty() => pct.push(0.0),
            Ok(None) => {}
            Err(RuleError::NegativePrice(price)) => {
                let id = product_ids[i];
                let field = format_args!("prices_in_cents[{i}] (product {id})");
                return Err(negative_price(field, price));
            }
        }
    }
    if pct.is_empty() {
        values.clear();
    }
    Ok(Discounts {
        pct,
        value_in_cents: values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::MAX_GROUPS;
    use tonic::Code;

    fn group(customer_id: i32, products: &[(i32, i32)]) -> PriceGroup {
        PriceGroup {
            customer_id,
            product_ids: products.iter().map(|p| p.0).collect(),
            prices_in_cents: products.iter().map(|p| p.1).collect(),
        }
    }

    fn results(groups: Vec<PriceGroup>) -> Vec<prices_result::Result> {
        let response = apply_prices(PricesRequest { groups }).unwrap();
        response
            .results
            .into_iter()
            .map(|r| r.result.unwrap())
            .collect()
    }

    #[test]
    fn each_group_gets_its_customers_discounts_in_order() {
        let spec = [(1, 99_999), (2, 150_000), (3, 32_999)];
        let answers = results(vec![
            group(1, &spec),
            group(2, &spec),
            group(1, &[(7, 0), (8, 1), (9, 10)]),
        ]);
        let discounted = |answer: &prices_result::Result| match answer {
            prices_result::Result::Discounted(d) => d.clone(),
            other => panic!("expected discounts, got {other:?}"),
        };
        let first = discounted(&answers[0]);
        assert_eq!(first.value_in_cents, [89_999, 135_000, 29_699]);
        assert_eq!(first.pct, [0.1, 0.1, 0.1]);
        // Not eligible: nothing at all, in no bytes.
        assert_eq!(discounted(&answers[1]), Discounts::default());
        // A free product gets none, between and before discounted ones.
        let third = discounted(&answers[2]);
        assert_eq!(third.pct, [0.0, 0.1, 0.1]);
        assert_eq!(third.value_in_cents, [0, 0, 9]);
    }

    #[test]
    fn a_bad_group_is_refused_on_its_own_naming_the_product() {
        let answers = results(vec![
            group(1, &[(1, 10), (42, -5)]),
            PriceGroup {
                customer_id: 1,
                product_ids: vec![1, 2],
                prices_in_cents: vec![10],
            },
            group(1, &[(2, 150_000)]),
        ]);
        match &answers[0] {
            prices_result::Result::Error(error) => {
                assert_eq!(error.code, Code::InvalidArgument as i32);
                assert_eq!(
                    error.message,
                    "groups[0]: prices_in_cents[1] (product 42) must not be negative, got -5"
                );
            }
            other => panic!("expected an error, got {other:?}"),
        }
        match &answers[1] {
            prices_result::Result::Error(error) => {
                assert!(error.message.contains("as long as each other"), "{error:?}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(matches!(
            &answers[2],
            prices_result::Result::Discounted(d) if d.value_in_cents == [135_000]
        ));
    }

    #[test]
    fn too_many_groups_or_products_are_refused_whole() {
        let many = PricesRequest {
            groups: vec![PriceGroup::default(); MAX_GROUPS + 1],
        };
        let status = apply_prices(many).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("at most 4096"), "{status:?}");
        let heavy = PricesRequest {
            groups: vec![group(1, &vec![(1, 1); MAX_BATCH_PRODUCTS]); 11],
        };
        let status = apply_prices(heavy).unwrap_err();
        assert!(status.message().contains("products in all"), "{status:?}");
        let one_too_big = results(vec![group(1, &vec![(1, 1); MAX_BATCH_PRODUCTS + 1])]);
        assert!(matches!(
            &one_too_big[0],
            prices_result::Result::Error(e) if e.message.contains("per group")
        ));
    }
}
