//! The shop's products and customers, and the JSON the API returns for them.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Serialize;

/// A product as the catalog stores it: never discounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: i32,
    pub slug: String,
    pub description: String,
    pub price_in_cents: i32,
}

/// A customer Catalog knows about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: i32,
    pub first_name: String,
    pub last_name: String,
}

/// The discount shown to a customer for one product.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DiscountView {
    /// The fraction taken off (0.1 = 10%).
    pub pct: f32,
    /// The price after the discount, in cents.
    pub value_in_cents: i32,
}

/// One element of the `/products` JSON array. Field names and order are the API contract.
#[derive(Debug, Serialize)]
pub struct ProductView<'a> {
    pub id: i32,
    pub slug: &'a str,
    pub description: &'a str,
    pub price_in_cents: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discount_value: Option<DiscountView>,
}

impl<'a> ProductView<'a> {
    /// `product` with `discount` (if any) applied.
    pub fn new(product: &'a Product, discount: Option<DiscountView>) -> Self {
        Self {
            id: product.id,
            slug: &product.slug,
            description: &product.description,
            price_in_cents: product.price_in_cents,
            discount_value: discount,
        }
    }
}

/// Products and customers, with the full-price listing serialised once.
#[derive(Debug, Clone)]
pub struct Catalog {
    products: Vec<Product>,
    customers: HashMap<i32, Customer>,
    full_price_json: Bytes,
}

impl Catalog {
    /// A catalog of `products` (in listing order) and `customers`.
    pub fn new(products: Vec<Product>, customers: Vec<Customer>) -> Self {
        let full_price_json = render(products.iter().map(|p| ProductView::new(p, None)));
        Self {
            products,
            customers: customers.into_iter().map(|c| (c.id, c)).collect(),
            full_price_json,
        }
    }

    /// The original system's data: three products, two customers.
    pub fn embedded_default() -> Self {
        let product = |id, slug: &str, description: &str, price_in_cents| Product {
            id,
            slug: slug.to_owned(),
            description: description.to_owned(),
            price_in_cents,
        };
        let customer = |id, first: &str, last: &str| Customer {
            id,
            first_name: first.to_owned(),
            last_name: last.to_owned(),
        };
        Self::new(
            vec![
                product(1, "iphone-x", "64GB, black and iOS 12", 99_999),
                product(
                    2,
                    "notebook-avell-g1511",
                    "Notebook Gamer Intel Core i7",
                    150_000,
                ),
                product(3, "playstation-4-slim", "1TB Console", 32_999),
            ],
            vec![
                customer(1, "John", "Snow"),
                customer(2, "Daenerys", "Targaryen"),
            ],
        )
    }

    /// All products, in listing order.
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// The customer with this id, if Catalog knows them.
    pub fn customer(&self, id: i32) -> Option<&Customer> {
        self.customers.get(&id)
    }

    /// The JSON array of all products at full price (serialised once, shared by every request
    /// that needs no discount).
    pub fn full_price_json(&self) -> Bytes {
        self.full_price_json.clone()
    }
}

/// Serialises product views as a JSON array.
pub fn render<'a>(views: impl Iterator<Item = ProductView<'a>>) -> Bytes {
    let views: Vec<ProductView<'a>> = views.collect();
    // Serialising plain structs of strings and numbers into a Vec cannot fail.
    serde_json::to_vec(&views).map_or_else(|_| Bytes::from_static(b"[]"), Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_price_json_has_no_discount_field() {
        let json = Catalog::embedded_default().full_price_json();
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.starts_with(r#"[{"id":1,"slug":"iphone-x","description":"64GB, black and iOS 12","price_in_cents":99999}"#), "{text}");
        assert!(!text.contains("discount_value"));
    }

    #[test]
    fn pct_serialises_as_the_fraction() {
        let catalog = Catalog::embedded_default();
        let view = ProductView::new(
            &catalog.products()[2],
            Some(DiscountView {
                pct: 0.1,
                value_in_cents: 29_699,
            }),
        );
        assert_eq!(
            serde_json::to_string(&view).unwrap(),
            r#"{"id":3,"slug":"playstation-4-slim","description":"1TB Console","price_in_cents":32999,"discount_value":{"pct":0.1,"value_in_cents":29699}}"#
        );
    }

    #[test]
    fn customers_are_found_by_id() {
        let catalog = Catalog::embedded_default();
        assert_eq!(
            catalog.customer(2).map(|c| c.first_name.as_str()),
            Some("Daenerys")
        );
        assert!(catalog.customer(99).is_none());
    }
}
