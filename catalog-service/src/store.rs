//! Where products live: the [`ProductStore`] interface the HTTP layer uses, and the in-memory
//! store built from the catalog data (the one implementation for now).
//!
//! The interface is asynchronous and returns owned (`Arc`) products, so that a database-backed
//! store can implement it later without any change to the HTTP layer.
//!
//! Products are listed in ascending id order and paged by keyset: a page starts after the id
//! of the last product of the previous page, so paging is stable even if products are added
//! meanwhile, and costs the same on page 1 and page 100.
//!
//! Each stored product keeps its JSON serialisation (all but the closing brace), made once when
//! the store is built: a response is assembled by copying these fragments, adding a
//! `discount_value` where the customer gets one, instead of serialising every product anew.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::catalog::{DiscountView, PriceTag, Product};

/// A boxed future, as returned by [`ProductStore`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store that cannot answer (an in-memory store never fails; a database might).
#[derive(Debug, thiserror::Error)]
#[error("product store: {0}")]
pub struct StoreError(pub String);

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
    products: &[Arc<StoredProduct>],
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

/// One page of products.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The products on this page, in ascending id order.
    pub products: Vec<Arc<StoredProduct>>,
    /// Where the next page starts (the last id on this page), if there are more products.
    pub next_after: Option<i32>,
}

/// Read access to products, as the HTTP layer needs it.
pub trait ProductStore: Send + Sync + fmt::Debug + 'static {
    /// The product with this id, if any.
    fn product(&self, id: i32) -> StoreFuture<'_, Option<Arc<StoredProduct>>>;

    /// Up to `limit` products with ids greater than `after` (from the start if `None`), in
    /// ascending id order.
    fn page(&self, after: Option<i32>, limit: usize) -> StoreFuture<'_, Page>;
}

/// All products in memory: O(1) lookup by id, O(log n) to find where a page starts.
#[derive(Debug, Clone, Default)]
pub struct InMemoryStore {
    /// Sorted by id.
    products: Vec<Arc<StoredProduct>>,
    /// id -> position in `products`.
    index: HashMap<i32, usize>,
}

impl InMemoryStore {
    /// A store of `products` (ids must be unique; a later duplicate would shadow an earlier
    /// one in lookups, which the data loader rules out).
    pub fn new(mut products: Vec<Product>) -> Self {
        products.sort_by_key(|p| p.id);
        let products: Vec<Arc<StoredProduct>> = products
            .into_iter()
            .map(|p| Arc::new(StoredProduct::new(&p)))
            .collect();
        let index = products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.tag.id, i))
            .collect();
        Self { products, index }
    }

    /// How many products the store holds.
    pub fn len(&self) -> usize {
        self.products.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    fn page_now(&self, after: Option<i32>, limit: usize) -> Page {
        let start = after.map_or(0, |after| {
            self.products.partition_point(|p| p.tag.id <= after)
        });
        let end = start.saturating_add(limit).min(self.products.len());
        let products = self.products[start..end].to_vec();
        let next_after = if end < self.products.len() {
            products.last().map(|p| p.tag.id)
        } else {
            None
        };
        Page {
            products,
            next_after,
        }
    }
}

impl ProductStore for InMemoryStore {
    fn product(&self, id: i32) -> StoreFuture<'_, Option<Arc<StoredProduct>>> {
        let found = self.index.get(&id).map(|&i| self.products[i].clone());
        Box::pin(std::future::ready(Ok(found)))
    }

    fn page(&self, after: Option<i32>, limit: usize) -> StoreFuture<'_, Page> {
        Box::pin(std::future::ready(Ok(self.page_now(after, limit))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogData;

    fn store(ids: &[i32]) -> InMemoryStore {
        InMemoryStore::new(
            ids.iter()
                .map(|&id| Product {
                    id,
                    slug: format!("p{id}"),
                    description: String::new(),
                    price_in_cents: id * 100,
                })
                .collect(),
        )
    }

    fn ids(page: &Page) -> Vec<i32> {
        page.products.iter().map(|p| p.price_tag().id).collect()
    }

    #[tokio::test]
    async fn pages_walk_in_id_order_and_end() {
        let store = store(&[5, 1, 3, 9, 7]);
        let first = store.page(None, 2).await.unwrap();
        assert_eq!((ids(&first), first.next_after), (vec![1, 3], Some(3)));
        let second = store.page(Some(3), 2).await.unwrap();
        assert_eq!((ids(&second), second.next_after), (vec![5, 7], Some(7)));
        let last = store.page(Some(7), 2).await.unwrap();
        assert_eq!((ids(&last), last.next_after), (vec![9], None));
        // A page that ends exactly at the last product announces no next page.
        let exact = store.page(Some(5), 2).await.unwrap();
        assert_eq!((ids(&exact), exact.next_after), (vec![7, 9], None));
        // A cursor between or beyond ids still works: keyset, not offset.
        assert_eq!(ids(&store.page(Some(4), 1).await.unwrap()), [5]);
        assert!(store.page(Some(100), 10).await.unwrap().products.is_empty());
    }

    #[tokio::test]
    async fn lookup_by_id() {
        let store = store(&[2, 4]);
        assert_eq!(
            store.product(4).await.unwrap().map(|p| p.price_tag().id),
            Some(4)
        );
        assert!(store.product(3).await.unwrap().is_none());
    }

    #[test]
    fn rendering_matches_serde() {
        let data = CatalogData::embedded_default();
        let store = InMemoryStore::new(data.products.clone());
        let page = store.page_now(None, 100);
        assert_eq!(
            render_json(&page.products, None),
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
        let json = render_json(&page.products, Some(&discounts));
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.starts_with(r#"[{"id":1,"slug":"iphone-x","description":"64GB, black and iOS 12","price_in_cents":99999,"discount_value":{"pct":0.1,"value_in_cents":89999}},{"id":2,"#), "{text}");
        serde_json::from_str::<serde_json::Value>(text).unwrap();
    }

    #[test]
    fn strings_are_escaped() {
        let store = InMemoryStore::new(vec![Product {
            id: 1,
            slug: "a\"b".into(),
            description: "line\nbreak \u{1F600}".into(),
            price_in_cents: 1,
        }]);
        let json = render_json(&store.page_now(None, 1).products, None);
        let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(parsed[0]["slug"], "a\"b");
        assert_eq!(parsed[0]["description"], "line\nbreak \u{1F600}");
    }
}
