//! The RPCs' work once a caller is authorized: checking the input, applying the rule to each
//! product and building the answer. Invalid input is answered with `INVALID_ARGUMENT` and a
//! message naming the field; the decision itself is [`crate::rule::discount_for`].

use ecommerce_proto::pb::{
    BatchDiscountRequest, BatchDiscountResponse, Customer, DiscountGroupResult,
    DiscountGroupsRequest, DiscountGroupsResponse, DiscountRequest, DiscountResponse,
    DiscountValue, GroupError, Product, discount_group_result,
};
use tonic::Status;

use crate::rule::{self, RuleError};

/// Most products one batch may carry. Far above any page Catalog sends; it bounds the work one
/// request can ask for.
pub const MAX_BATCH_PRODUCTS: usize = 10_000;

/// Most groups one `ApplyDiscountGroups` may carry. Far above what Catalog coalesces into one
/// RPC; it bounds the work one request can ask for.
pub const MAX_GROUPS: usize = 4096;

/// Most products all the groups of one `ApplyDiscountGroups` may carry together.
pub const MAX_GROUPS_PRODUCTS: usize = 100_000;

fn require_customer(customer: Option<Customer>) -> Result<Customer, Status> {
    customer.ok_or_else(|| Status::invalid_argument("customer is required"))
}

/// The refusal of a negative price, naming its field (`products[3].price_in_cents`, ...).
pub(crate) fn negative_price(field: impl std::fmt::Display, price: i32) -> Status {
    Status::invalid_argument(format!("{field} must not be negative, got {price}"))
}

/// Applies the rule to one product; `field` names its price in an error
/// (`product.price_in_cents`, `products[3].price_in_cents`) and is formatted only then.
fn discount_product(
    customer: &Customer,
    mut product: Product,
    field: impl FnOnce() -> String,
) -> Result<Product, Status> {
    match rule::discount_for(customer.id, product.price_in_cents) {
        Ok(Some(discount)) => {
            product.discount_value = Some(DiscountValue {
                pct: discount.pct,
                value_in_cents: discount.value_in_cents,
            });
            Ok(product)
        }
        // No discount: the product goes back exactly as it came.
        Ok(None) => Ok(product),
        Err(RuleError::NegativePrice(price)) => Err(negative_price(field(), price)),
    }
}

/// `ApplyDiscount` without the authorization step.
pub fn apply_one(request: DiscountRequest) -> Result<DiscountResponse, Status> {
    let DiscountRequest { customer, product } = request;
    let customer = require_customer(customer)?;
    let product = product.ok_or_else(|| Status::invalid_argument("product is required"))?;
    let product = discount_product(&customer, product, || "product.price_in_cents".into())?;
    Ok(DiscountResponse {
        product: Some(product),
    })
}

/// `ApplyDiscountBatch` without the authorization step.
pub fn apply_batch(request: BatchDiscountRequest) -> Result<BatchDiscountResponse, Status> {
    let BatchDiscountRequest { customer, products } = request;
    let customer = require_customer(customer)?;
    if products.len() > MAX_BATCH_PRODUCTS {
        return Err(Status::invalid_argument(format!(
            "products: at most {MAX_BATCH_PRODUCTS} per batch, got {}",
            products.len()
        )));
    }
    let products = products
        .into_iter()
        .enumerate()
        .map(|(i, product)| {
            discount_product(&customer, product, || {
                format!("products[{i}].price_in_cents")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BatchDiscountResponse { products })
}

/// `ApplyDiscountGroups` without the authorization step: each group answered as
/// [`apply_batch`] would answer it, a refused group carrying its own error.
pub fn apply_groups(request: DiscountGroupsRequest) -> Result<DiscountGroupsResponse, Status> {
    let DiscountGroupsRequest { groups } = request;
    let products = groups.iter().map(|group| group.products.len()).sum();
    check_groups(groups.len(), products)?;
    let results = groups
        .into_iter()
        .enumerate()
        .map(|(i, group)| {
            let result = match apply_batch(group) {
                Ok(discounted) => discount_group_result::Result::Discounted(discounted),
                Err(status) => discount_group_result::Result::Error(group_error(i, &status)),
            };
            DiscountGroupResult {
                result: Some(result),
            }
        })
        .collect();
    Ok(DiscountGroupsResponse { results })
}

/// The bounds of both groups RPCs: at most [`MAX_GROUPS`] groups and
/// [`MAX_GROUPS_PRODUCTS`] products in all, else the whole request is refused.
pub(crate) fn check_groups(groups: usize, products: usize) -> Result<(), Status> {
    if groups > MAX_GROUPS {
        return Err(Status::invalid_argument(format!(
            "groups: at most {MAX_GROUPS} per request, got {groups}"
        )));
    }
    if products > MAX_GROUPS_PRODUCTS {
        return Err(Status::invalid_argument(format!(
            "groups: at most {MAX_GROUPS_PRODUCTS} products in all, got {products}"
        )));
    }
    Ok(())
}

/// Group `i`'s refusal, as both groups RPCs answer it: its code, and its message naming it.
pub(crate) fn group_error(i: usize, status: &Status) -> GroupError {
    GroupError {
        code: status.code() as i32,
        message: format!("groups[{i}]: {}", status.message()),
    }
}

/// Test data shared by this module's tests and the handlers' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use ecommerce_proto::pb::{Customer, Product};

    /// Customer `id`, named.
    pub(crate) fn customer(id: i32) -> Option<Customer> {
        Some(Customer {
            id,
            first_name: "John".into(),
            last_name: "Snow".into(),
        })
    }

    /// Product `id` at `price_in_cents`, without a discount.
    pub(crate) fn product(id: i32, price_in_cents: i32) -> Product {
        Product {
            id,
            slug: format!("p{id}"),
            description: String::new(),
            price_in_cents,
            discount_value: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{customer, product};
    use super::*;
    use tonic::Code;

    async fn apply(
        customer: Option<Customer>,
        product: Option<Product>,
    ) -> Result<Product, Status> {
        let response = apply_one(DiscountRequest { customer, product })?;
        Ok(response.product.expect("handler always sets product"))
    }

    #[tokio::test]
    async fn eligible_customer_gets_ten_percent_off() {
        let discounted = apply(customer(1), Some(product(1, 99_999))).await.unwrap();
        assert_eq!(
            discounted.discount_value,
            Some(DiscountValue {
                pct: 0.1,
                value_in_cents: 89_999
            })
        );
        assert_eq!(discounted.price_in_cents, 99_999);
    }

    #[tokio::test]
    async fn other_customer_gets_the_product_back_unchanged() {
        let original = product(2, 150_000);
        assert_eq!(
            apply(customer(2), Some(original.clone())).await.unwrap(),
            original
        );
    }

    #[tokio::test]
    async fn missing_customer_is_invalid_argument() {
        let status = apply(None, Some(product(1, 1))).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("customer"), "{status:?}");
    }

    #[tokio::test]
    async fn missing_product_is_invalid_argument() {
        let status = apply(customer(1), None).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("product"), "{status:?}");
    }

    #[tokio::test]
    async fn negative_price_is_invalid_argument() {
        let status = apply(customer(1), Some(product(1, -5))).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("product.price_in_cents"),
            "{status:?}"
        );
        assert!(status.message().contains("-5"), "{status:?}");
    }

    #[tokio::test]
    async fn batch_keeps_order_and_names_the_bad_index() {
        let request = BatchDiscountRequest {
            customer: customer(1),
            products: vec![product(3, 32_999), product(1, 0), product(2, 150_000)],
        };
        let products = apply_batch(request).unwrap().products;
        let ids: Vec<_> = products.iter().map(|p| p.id).collect();
        assert_eq!(ids, [3, 1, 2]);
        let values: Vec<_> = products
            .iter()
            .map(|p| p.discount_value.map(|d| d.value_in_cents))
            .collect();
        assert_eq!(values, [Some(29_699), None, Some(135_000)]);

        let request = BatchDiscountRequest {
            customer: customer(1),
            products: vec![product(1, 10), product(2, -1)],
        };
        let status = apply_batch(request).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("products[1].price_in_cents"),
            "{status:?}"
        );
    }

    #[tokio::test]
    async fn batch_without_customer_is_invalid_argument() {
        let status = apply_batch(BatchDiscountRequest {
            customer: None,
            products: vec![product(1, 1)],
        })
        .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("customer"));
    }

    fn group(id: i32, products: Vec<Product>) -> BatchDiscountRequest {
        BatchDiscountRequest {
            customer: customer(id),
            products,
        }
    }

    #[test]
    fn groups_are_answered_in_order_each_by_its_own_customer() {
        let response = apply_groups(DiscountGroupsRequest {
            groups: vec![
                group(2, vec![product(1, 99_999)]),
                group(1, vec![product(1, 99_999), product(3, 32_999)]),
                group(99, vec![product(2, 150_000)]),
            ],
        })
        .unwrap();
        let values: Vec<Vec<Option<i32>>> = response
            .results
            .into_iter()
            .map(|result| match result.result {
                Some(discount_group_result::Result::Discounted(batch)) => batch
                    .products
                    .iter()
                    .map(|p| p.discount_value.map(|d| d.value_in_cents))
                    .collect(),
                other => panic!("expected a discounted group, got {other:?}"),
            })
            .collect();
        assert_eq!(
            values,
            [vec![None], vec![Some(89_999), Some(29_699)], vec![None]]
        );
    }

    #[test]
    fn one_bad_group_does_not_cost_the_others_their_discount() {
        let response = apply_groups(DiscountGroupsRequest {
            groups: vec![
                group(1, vec![product(1, -5)]),
                BatchDiscountRequest {
                    customer: None,
                    products: vec![product(1, 10)],
                },
                group(1, vec![product(2, 150_000)]),
            ],
        })
        .unwrap();
        let results: Vec<_> = response.results.into_iter().map(|r| r.result).collect();
        match &results[0] {
            Some(discount_group_result::Result::Error(error)) => {
                assert_eq!(error.code, Code::InvalidArgument as i32);
                assert!(
                    error
                        .message
                        .starts_with("groups[0]: products[0].price_in_cents"),
                    "{error:?}"
                );
            }
            other => panic!("expected an error, got {other:?}"),
        }
        match &results[1] {
            Some(discount_group_result::Result::Error(error)) => {
                assert!(error.message.contains("customer"), "{error:?}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
        match &results[2] {
            Some(discount_group_result::Result::Discounted(batch)) => assert_eq!(
                batch.products[0].discount_value.map(|d| d.value_in_cents),
                Some(135_000)
            ),
            other => panic!("expected a discounted group, got {other:?}"),
        }
    }

    #[test]
    fn too_many_groups_or_products_are_refused_whole() {
        let many = DiscountGroupsRequest {
            groups: vec![group(1, Vec::new()); MAX_GROUPS + 1],
        };
        let status = apply_groups(many).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("at most 4096"), "{status:?}");
        let heavy = DiscountGroupsRequest {
            groups: vec![group(1, vec![product(1, 1); MAX_BATCH_PRODUCTS]); 11],
        };
        let status = apply_groups(heavy).unwrap_err();
        assert!(status.message().contains("products in all"), "{status:?}");
    }
}
