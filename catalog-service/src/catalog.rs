//! The shop's data: products and customers, where they come from, and the rules they obey.
//!
//! With no files given, the catalog is the original system's three products and two customers
//! (embedded). Files are JSON arrays of records; every record is checked at start-up (missing
//! or unknown fields, non-positive or duplicate ids, blank or duplicate slugs, negative prices)
//! and the first problem stops start-up with one line naming the file, the record and the
//! problem.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A product as the catalog stores it: never discounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub id: i32,
    pub slug: String,
    pub description: String,
    pub price_in_cents: i32,
}

/// What the discount rule needs to know about a product: which one, and its price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceTag {
    pub id: i32,
    pub price_in_cents: i32,
}

impl Product {
    /// This product's id and price.
    pub fn price_tag(&self) -> PriceTag {
        PriceTag {
            id: self.id,
            price_in_cents: self.price_in_cents,
        }
    }
}

/// A customer Catalog knows about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// Products and customers, validated.
#[derive(Debug, Clone)]
pub struct CatalogData {
    /// Products, in any order (the store lists them by id).
    pub products: Vec<Product>,
    /// Customers, in any order.
    pub customers: Vec<Customer>,
}

/// A data file that cannot be used. Displays as one line: file, record, problem.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub struct DataError {
    /// The file.
    pub file: PathBuf,
    /// 1-based position of the record in the file's array, if the problem is in one record.
    pub record: Option<usize>,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(record) = self.record {
            write!(f, ": record {record}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// A record type read from a data file.
trait Record: for<'de> Deserialize<'de> {
    /// What the file holds, for messages ("product").
    const KIND: &'static str;
    fn id(&self) -> i32;
    /// Checks the record's own fields.
    fn check(&self) -> Result<(), String>;
    /// A field other than the id that no two records may share: its name and value.
    fn unique_field(&self) -> Option<(&'static str, &str)> {
        None
    }
}

impl Record for Product {
    const KIND: &'static str = "product";
    fn id(&self) -> i32 {
        self.id
    }
    fn check(&self) -> Result<(), String> {
        if self.price_in_cents < 0 {
            return Err(format!(
                "price_in_cents must not be negative, got {}",
                self.price_in_cents
            ));
        }
        if self.slug.trim().is_empty() {
            return Err("slug must not be empty".into());
        }
        Ok(())
    }
    fn unique_field(&self) -> Option<(&'static str, &str)> {
        Some(("slug", &self.slug))
    }
}

impl Product {
    /// Whether this product obeys the rules every product does (a data file's or a database
    /// row): the problem, if not.
    pub fn validate(&self) -> Result<(), String> {
        validate(self)
    }
}

impl Customer {
    /// Whether this customer obeys the rules every customer does: the problem, if not.
    pub fn validate(&self) -> Result<(), String> {
        validate(self)
    }
}

/// A record's own rules: a positive id, and its fields' checks.
fn validate<R: Record>(record: &R) -> Result<(), String> {
    let id = record.id();
    if id <= 0 {
        return Err(format!("id must be positive, got {id}"));
    }
    record
        .check()
        .map_err(|problem| format!("{} {id}: {problem}", R::KIND))
}

impl Record for Customer {
    const KIND: &'static str = "customer";
    fn id(&self) -> i32 {
        self.id
    }
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

impl CatalogData {
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
        Self::from_parts(
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

    /// Data from records already known to be valid (ids unique). Later duplicates win.
    pub fn from_parts(products: Vec<Product>, customers: Vec<Customer>) -> Self {
        Self {
            products,
            customers,
        }
    }

    /// Loads whichever files are given; the embedded default stands in for a missing one.
    pub fn load(products: Option<&Path>, customers: Option<&Path>) -> Result<Self, DataError> {
        let products_text = products.map(read).transpose()?;
        let customers_text = customers.map(read).transpose()?;
        Self::parse(
            products.zip(products_text.as_deref()),
            customers.zip(customers_text.as_deref()),
        )
    }

    /// Parses and checks the given files' contents (each with its path, for messages); the
    /// embedded default stands in for a missing one.
    pub fn parse(
        products: Option<(&Path, &str)>,
        customers: Option<(&Path, &str)>,
    ) -> Result<Self, DataError> {
        let default = Self::embedded_default();
        let products = match products {
            Some((path, text)) => parse_records::<Product>(path, text)?,
            None => default.products,
        };
        let customers = match customers {
            Some((path, text)) => parse_records::<Customer>(path, text)?,
            None => default.customers,
        };
        Ok(Self {
            products,
            customers,
        })
    }
}

/// The contents of a data file.
pub fn read(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|err| DataError {
        file: path.to_owned(),
        record: None,
        problem: format!("cannot read: {err}"),
    })
}

/// Parses and checks a JSON array of records; `path` only names the file in errors.
fn parse_records<R: Record>(path: &Path, text: &str) -> Result<Vec<R>, DataError> {
    let error = |record, problem| DataError {
        file: path.to_owned(),
        record,
        problem,
    };
    // Each record stays a slice of `text` until it is parsed: no intermediate JSON tree, so a
    // large file costs little more than its records at start-up.
    let raw: Vec<&serde_json::value::RawValue> = serde_json::from_str(text)
        .map_err(|err| error(None, format!("not a JSON array of {}s: {err}", R::KIND)))?;
    let mut seen = HashMap::with_capacity(raw.len());
    let mut unique_values: HashMap<String, usize> = HashMap::new();
    let mut records = Vec::with_capacity(raw.len());
    for (index, value) in raw.into_iter().enumerate() {
        let position = index + 1;
        let record: R = serde_json::from_str(value.get())
            .map_err(|err| error(Some(position), format!("invalid {}: {err}", R::KIND)))?;
        let id = record.id();
        if id <= 0 {
            return Err(error(
                Some(position),
                format!("id must be positive, got {id}"),
            ));
        }
        if let Some(first) = seen.insert(id, position) {
            return Err(error(
                Some(position),
                format!("duplicate id {id} (first used by record {first})"),
            ));
        }
        record
            .check()
            .map_err(|problem| error(Some(position), format!("{} {id}: {problem}", R::KIND)))?;
        if let Some((field, value)) = record.unique_field()
            && let Some(first) = unique_values.insert(value.to_owned(), position)
        {
            return Err(error(
                Some(position),
                format!("duplicate {field} {value:?} (first used by record {first})"),
            ));
        }
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products(text: &str) -> Result<Vec<Product>, String> {
        parse_records::<Product>(Path::new("products.json"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn good_file_loads() {
        let loaded =
            products(r#"[{"id": 7, "slug": "x", "description": "", "price_in_cents": 0}]"#)
                .unwrap();
        assert_eq!(loaded[0].id, 7);
    }

    #[test]
    fn each_bad_record_is_named_with_its_problem() {
        let ok = r#"{"id": 1, "slug": "a", "description": "", "price_in_cents": 5}"#;
        let cases = [
            (
                format!(
                    r#"[{ok}, {{"id": 1, "slug": "b", "description": "", "price_in_cents": 5}}]"#
                ),
                "products.json: record 2: duplicate id 1 (first used by record 1)",
            ),
            (
                format!(
                    r#"[{ok}, {{"id": 2, "slug": "a", "description": "", "price_in_cents": 5}}]"#
                ),
                r#"products.json: record 2: duplicate slug "a" (first used by record 1)"#,
            ),
            (
                r#"[{"id": 2, "slug": "a", "description": "", "price_in_cents": -5}]"#.into(),
                "products.json: record 1: product 2: price_in_cents must not be negative, got -5",
            ),
            (
                r#"[{"id": 2, "description": "", "price_in_cents": 5}]"#.into(),
                "products.json: record 1: invalid product: missing field `slug`",
            ),
            (
                format!(
                    r#"[{ok}, {{"id": 2, "slug": "a", "description": "", "price_in_cents": 5, "color": "red"}}]"#
                ),
                "products.json: record 2: invalid product: unknown field `color`",
            ),
            (
                r#"[{"id": 0, "slug": "a", "description": "", "price_in_cents": 5}]"#.into(),
                "products.json: record 1: id must be positive, got 0",
            ),
            (
                r#"[{"id": "1", "slug": "a", "description": "", "price_in_cents": 5}]"#.into(),
                "products.json: record 1: invalid product: invalid type",
            ),
            (
                r#"{"id": 1}"#.into(),
                "products.json: not a JSON array of products",
            ),
            ("[".into(), "products.json: not a JSON array of products"),
        ];
        for (text, expected) in cases {
            let err = products(&text).unwrap_err();
            assert!(err.starts_with(expected), "{err}\n  expected: {expected}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn customers_file_is_checked_the_same_way() {
        let err = parse_records::<Customer>(
            Path::new("customers.json"),
            r#"[{"id": 1, "first_name": "A", "last_name": "B"}, {"id": 1, "first_name": "C", "last_name": "D"}]"#,
        )
        .unwrap_err();
        assert_eq!(err.record, Some(2));
        assert!(err.problem.contains("duplicate id 1"));
    }

    #[test]
    fn missing_file_is_named() {
        let err = CatalogData::load(Some(Path::new("/nonexistent/p.json")), None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/p.json: cannot read"),
            "{err}"
        );
    }

    #[test]
    fn default_data_is_specs() {
        let data = CatalogData::embedded_default();
        assert_eq!(data.products.len(), 3);
        assert_eq!(data.customers.len(), 2);
        assert_eq!(data.customers[1].first_name, "Daenerys");
    }
}
