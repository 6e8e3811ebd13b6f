//! `catalog-service import`: products and customers, already checked by the data files'
//! loader, upserted by id in one transaction, in chunks so that a million rows take a few
//! statements. A row that would not change is not written (so it sends no notification). Any
//! error rolls everything back and names the record when it can.

use std::path::PathBuf;

use tokio_postgres::{Client, Transaction};

use super::error::describe;
use super::migrate::LOCK_KEY;
use crate::catalog::{CatalogData, Customer, DataError, Product};

/// Rows sent per statement when no flag says otherwise.
pub const DEFAULT_CHUNK_ROWS: u32 = 10_000;

/// Where the data came from, to name a record in an error.
#[derive(Debug, Clone, Default)]
pub struct DataFiles {
    /// `--products`; `None`: the embedded sample data.
    pub products: Option<PathBuf>,
    /// `--customers`; `None`: the embedded sample data.
    pub customers: Option<PathBuf>,
}

/// What happened to the rows of one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub inserted: u64,
    pub updated: u64,
    /// Already in the table exactly as in the file.
    pub unchanged: u64,
}

/// What [`import`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub products: Counts,
    pub customers: Counts,
}

/// Why an import failed; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}; nothing was imported")]
    Record(DataError),
    #[error("table {0} does not exist: run `catalog-service migrate` first; nothing was imported")]
    NoTable(String),
    #[error("{0}; nothing was imported")]
    Db(String),
}

impl From<tokio_postgres::Error> for ImportError {
    fn from(err: tokio_postgres::Error) -> Self {
        ImportError::Db(describe(&err, None))
    }
}

/// Inserts or updates one chunk and counts both. `xmax = 0` tells a row just inserted from one
/// updated by ON CONFLICT (which sets xmax to the updating transaction), the usual way to count
/// both in one statement; rows the WHERE leaves alone are not returned: they are unchanged.
const UPSERT_PRODUCTS: &str = "
WITH upserted AS (
    INSERT INTO products AS p (id, slug, description, price_in_cents)
    SELECT * FROM unnest($1::integer[], $2::text[], $3::text[], $4::integer[])
    ON CONFLICT (id) DO UPDATE
        SET slug = excluded.slug,
            description = excluded.description,
            price_in_cents = excluded.price_in_cents
        WHERE (p.slug, p.description, p.price_in_cents)
              IS DISTINCT FROM (excluded.slug, excluded.description, excluded.price_in_cents)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted";

/// [`UPSERT_PRODUCTS`] for customers.
const UPSERT_CUSTOMERS: &str = "
WITH upserted AS (
    INSERT INTO customers AS c (id, first_name, last_name)
    SELECT * FROM unnest($1::integer[], $2::text[], $3::text[])
    ON CONFLICT (id) DO UPDATE
        SET first_name = excluded.first_name,
            last_name = excluded.last_name
        WHERE (c.first_name, c.last_name)
              IS DISTINCT FROM (excluded.first_name, excluded.last_name)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted";

/// Upserts `data` by id in one transaction, `chunk_rows` rows per statement, and reports how
/// many rows were inserted, updated and left unchanged. `files` names the records in errors.
pub async fn import(
    client: &mut Client,
    data: &CatalogData,
    files: &DataFiles,
    chunk_rows: usize,
) -> Result<ImportReport, ImportError> {
    match upsert_all(client, data, chunk_rows.max(1)).await {
        Ok(report) => Ok(report),
        Err(err) => Err(explain(client, &err, data, files).await),
    }
}

/// The transaction itself; on error it is rolled back (dropped) before this returns.
async fn upsert_all(
    client: &mut Client,
    data: &CatalogData,
    chunk_rows: usize,
) -> Result<ImportReport, tokio_postgres::Error> {
    let mut customers: Vec<&Customer> = data.customers.iter().collect();
    customers.sort_unstable_by_key(|customer| customer.id);
    let tx = client.transaction().await?;
    // Waits for a migrate in progress (and for another import).
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    // Slugs are checked at commit, so one import may swap two products' slugs.
    tx.batch_execute("SET CONSTRAINTS products_slug_unique DEFERRED")
        .await?;
    let mut report = ImportReport::default();
    for chunk in data.products.chunks(chunk_rows) {
        let counted = upsert_products(&tx, chunk).await?;
        add(&mut report.products, counted, chunk.len());
    }
    for chunk in customers.chunks(chunk_rows) {
        let counted = upsert_customers(&tx, chunk).await?;
        add(&mut report.customers, counted, chunk.len());
    }
    tx.commit().await?;
    Ok(report)
}

fn add(counts: &mut Counts, (inserted, updated): (u64, u64), rows: usize) {
    counts.inserted += inserted;
    counts.updated += updated;
    counts.unchanged += (rows as u64).saturating_sub(inserted + updated);
}

async fn upsert_products(
    tx: &Transaction<'_>,
    chunk: &[Product],
) -> Result<(u64, u64), tokio_postgres::Error> {
    let ids: Vec<i32> = chunk.iter().map(|p| p.id).collect();
    let slugs: Vec<&str> = chunk.iter().map(|p| p.slug.as_str()).collect();
    let descriptions: Vec<&str> = chunk.iter().map(|p| p.description.as_str()).collect();
    let prices: Vec<i32> = chunk.iter().map(|p| p.price_in_cents).collect();
    let row = tx
        .query_one(UPSERT_PRODUCTS, &[&ids, &slugs, &descriptions, &prices])
        .await?;
    Ok(counts(&row))
}

async fn upsert_customers(
    tx: &Transaction<'_>,
    chunk: &[&Customer],
) -> Result<(u64, u64), tokio_postgres::Error> {
    let ids: Vec<i32> = chunk.iter().map(|c| c.id).collect();
    let first: Vec<&str> = chunk.iter().map(|c| c.first_name.as_str()).collect();
    let last: Vec<&str> = chunk.iter().map(|c| c.last_name.as_str()).collect();
    let row = tx
        .query_one(UPSERT_CUSTOMERS, &[&ids, &first, &last])
        .await?;
    Ok(counts(&row))
}

fn counts(row: &tokio_postgres::Row) -> (u64, u64) {
    let inserted: i64 = row.get(0);
    let updated: i64 = row.get(1);
    (inserted.unsigned_abs(), updated.unsigned_abs())
}

/// The error in an operator's words, naming the record when the database says which: a slug
/// already used by another product in the table (the files' own duplicates are refused before
/// anything is sent), or a missing table.
async fn explain(
    client: &Client,
    err: &tokio_postgres::Error,
    data: &CatalogData,
    files: &DataFiles,
) -> ImportError {
    let Some(db) = err.as_db_error() else {
        return err_into(err);
    };
    if *db.code() == tokio_postgres::error::SqlState::UNDEFINED_TABLE {
        let table = ["products", "customers"]
            .into_iter()
            .find(|table| db.message().contains(&format!("\"{table}\"")))
            .unwrap_or("products");
        return ImportError::NoTable(table.to_owned());
    }
    if *db.code() == tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE {
        return ImportError::Db(format!(
            "{} (import as the tables' owner)",
            describe(err, None)
        ));
    }
    if db.constraint() != Some("products_slug_unique") {
        return err_into(err);
    }
    let Some(slug) = db.detail().and_then(conflicting_slug) else {
        return err_into(err);
    };
    let Some(position) = data.products.iter().position(|p| p.slug == slug) else {
        return err_into(err);
    };
    // The transaction is over: the table is as it was, and says who holds the slug.
    let holder = client
        .query_opt("SELECT id FROM products WHERE slug = $1", &[&slug])
        .await
        .ok()
        .flatten()
        .map(|row| row.get::<_, i32>(0));
    let product = &data.products[position];
    let problem = match holder {
        Some(holder) => format!(
            "product {}: slug {slug:?} already belongs to product {holder} in the database, \
             which this file does not change",
            product.id
        ),
        None => format!(
            "product {}: slug {slug:?} is already used in the database",
            product.id
        ),
    };
    ImportError::Record(DataError {
        file: files
            .products
            .clone()
            .unwrap_or_else(|| PathBuf::from("(embedded sample products)")),
        record: Some(position + 1),
        problem,
    })
}

fn err_into(err: &tokio_postgres::Error) -> ImportError {
    ImportError::Db(describe(err, None))
}

/// The slug in a unique violation's detail: `Key (slug)=(iphone-x) already exists.`
fn conflicting_slug(detail: &str) -> Option<String> {
    detail
        .strip_prefix("Key (slug)=(")?
        .strip_suffix(") already exists.")
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slug_is_read_from_the_violation_detail() {
        assert_eq!(
            conflicting_slug("Key (slug)=(iphone-x) already exists."),
            Some("iphone-x".to_owned())
        );
        assert_eq!(
            conflicting_slug("Key (slug)=(a) b) already exists."),
            Some("a) b".to_owned())
        );
        assert_eq!(conflicting_slug("Key (id)=(1) already exists."), None);
    }

    #[test]
    fn counts_add_up_over_chunks() {
        let mut counts = Counts::default();
        add(&mut counts, (2, 1), 5);
        add(&mut counts, (0, 0), 3);
        assert_eq!(
            counts,
            Counts {
                inserted: 2,
                updated: 1,
                unchanged: 5
            }
        );
    }
}
