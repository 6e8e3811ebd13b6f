//! A product as served: [`StoredProduct`] keeps its id and price (what Discount needs) and its
//! JSON serialisation (all but the closing brace), made once when the product enters a
//! snapshot. A response is assembled by copying these fragments, adding a `discount_value`
//! where the customer gets one ([`render_json`]), instead of serialising every product anew.
//! A `discount_value` is written from fixed text, its cents with `itoa`, and its `pct` (a
//! float, which takes real work to print) formatted once per response and copied after that.

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

    /// Appends this product's JSON object, with `discount` if there is one (its `pct` as
    /// `pct` has it rendered).
    pub fn write_json(&self, out: &mut Vec<u8>, discount: Option<DiscountView>, pct: &mut PctText) {
        out.extend_from_slice(self.json_head.as_bytes());
        if let Some(discount) = discount {
            out.extend_from_slice(b",\"discount_value\":{\"pct\":");
            out.extend_from_slice(pct.of(discount.pct));
            out.extend_from_slice(b",\"value_in_cents\":");
            out.extend_from_slice(
                itoa::Buffer::new()
                    .format(discount.value_in_cents)
                    .as_bytes(),
            );
            out.push(b'}');
        }
        out.push(b'}');
    }

    /// Upper bound of the JSON size without a discount, for buffer sizing.
    fn json_len(&self) -> usize {
        self.json_head.len() + 1
    }
}

/// A discount's `pct` as JSON, formatted as serde_json formats an `f32`, and only when it
/// differs from the last one (a response's discounts nearly always share theirs).
#[derive(Debug, Default)]
pub struct PctText {
    /// The bits of the `pct` that `text` renders.
    bits: Option<u32>,
    text: Vec<u8>,
}

impl PctText {
    /// `pct` as JSON.
    pub fn of(&mut self, pct: f32) -> &[u8] {
        if self.bits != Some(pct.to_bits()) {
            self.text.clear();
            // A float always serialises (a non-finite one as `null`, as serde_json writes it).
            let _ = serde_json::to_writer(&mut self.text, &pct);
            self.bits = Some(pct.to_bits());
        }
        &self.text
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
    let mut pct = PctText::default();
    out.push(b'[');
    for (i, product) in products.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let discount = discounts.and_then(|d| d.get(i).copied().flatten());
        product.write_json(&mut out, discount, &mut pct);
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
    fn a_discount_is_written_as_serde_writes_it() {
        let data = CatalogData::embedded_default();
        let stored = stored(&data.products);
        let mut pct = PctText::default();
        for view in [
            (0.1, 89_999),
            (0.1, 0),
            (0.25, i32::MAX),
            (1.0, 7),
            (0.0, -1),
            (f32::MIN_POSITIVE, 1),
            (0.1, 5),
        ] {
            let discount = DiscountView {
                pct: view.0,
                value_in_cents: view.1,
            };
            // What serialising the struct with serde_json gives, byte for byte.
            let mut expected = serde_json::to_string(&data.products[0]).unwrap();
            expected.pop();
            expected.push_str(",\"discount_value\":");
            expected.push_str(&serde_json::to_string(&discount).unwrap());
            expected.push('}');
            let mut ours = Vec::new();
            stored[0].write_json(&mut ours, Some(discount), &mut pct);
            assert_eq!(String::from_utf8(ours).unwrap(), expected);
        }
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
