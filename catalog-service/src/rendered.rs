//! A product as served: [`StoredProduct`] keeps its id and price (what Discount needs) and its
//! JSON serialisation (all but the closing brace), made once when the product enters a
//! snapshot. A response is assembled by copying these fragments, adding a `discount_value`
//! where the customer gets one ([`render_json`]), instead of serialising every product anew.

use bytes::Bytes;

use crate::catalog::{DiscountView, PriceTag, Product};

/// A product as served: its id and price (for Discount) and its pre-rendered JSON. The
/// slug and description live only inside the JSON, so each is stored once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProduct {
    tag: PriceTag,
    /// `{"id":..,"slug":..,"description":..,"price_in_cents":..` (no closing brace).
    json_head: Box<str>,
}

impl StoredProduct {
    /// Renders `product` once.
    pub fn new(product: &Product) -> Self {
        // A struct of strings and integers always serialises; it ends with '}'.
        let mut json = serde_json::to_string(product).unwrap_or_default();
        json.pop();
        Self {
            tag: product.price_tag(),
            json_head: json.into_boxed_str(),
        }
    }

    /// The product's id and price.
    pub fn price_tag(&self) -> PriceTag {
        self.tag
    }

    /// Appends this product's JSON object, with `discount` if there is one.
    pub fn write_json(&self, out: &mut Vec<u8>, discount: Option<DiscountView>) {
        out.extend_from_slice(self.json_head.as_bytes());
        if let Some(discount) = discount {
            out.extend_from_slice(b",\"discount_value\":");
            // Serialising a struct of two numbers into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &discount);
        }
        out.push(b'}');
    }

    /// Upper bound of the JSON size without a discount, for buffer sizing.
    fn json_len(&self) -> usize {
        self.json_head.len() + 1
    }
}

/// Renders products as a JSON array; `discounts`, if given, pairs with `products` by position.
pub fn render_json(
    products: &[&StoredProduct],
    discounts: Option<&[Option<DiscountView>]>,
) -> Bytes {
    /// Room for `,"discount_value":{"pct":0.1,"value_in_cents":2147483647}`.
    const DISCOUNT_ROOM: usize = 64;
    let extra = if discounts.is_some() {
        DISCOUNT_ROOM
    } else {
        0
    };
    let capacity = 2 + products
        .iter()
        .map(|p| p.json_len() + 1 + extra)
        .sum::<usize>();
    let mut out = Vec::with_capacity(capacity);
    out.push(b'[');
    for (i, product) in products.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let discount = discounts.and_then(|d| d.get(i).copied().flatten());
        product.write_json(&mut out, discount);
    }
    out.push(b']');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogData;

    fn stored(products: &[Product]) -> Vec<StoredProduct> {
        products.iter().map(StoredProduct::new).collect()
    }

    #[test]
    fn rendering_matches_serde() {
        let data = CatalogData::embedded_default();
        let stored = stored(&data.products);
        let page: Vec<&StoredProduct> = stored.iter().collect();
        assert_eq!(
            render_json(&page, None),
            serde_json::to_vec(&data.products).unwrap()
        );
        let discounts = [
            Some(DiscountView {
                pct: 0.1,
                value_in_cents: 89_999,
            }),
            None,
            None,
        ];
        let json = render_json(&page, Some(&discounts));
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.starts_with(r#"[{"id":1,"slug":"iphone-x","description":"64GB, black and iOS 12","price_in_cents":99999,"discount_value":{"pct":0.1,"value_in_cents":89999}},{"id":2,"#), "{text}");
        serde_json::from_str::<serde_json::Value>(text).unwrap();
    }

    #[test]
    fn strings_are_escaped() {
        let stored = stored(&[Product {
            id: 1,
            slug: "a\"b".into(),
            description: "line\nbreak \u{1F600}".into(),
            price_in_cents: 1,
        }]);
        let json = render_json(&[&stored[0]], None);
        let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(parsed[0]["slug"], "a\"b");
        assert_eq!(parsed[0]["description"], "line\nbreak \u{1F600}");
    }
}
