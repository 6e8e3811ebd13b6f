//! Reading the catalog's rows with Catalog's own `SELECT`s: all of them (at start-up and after
//! every reconnect), or the rows of the ids a notification named. A notification is only a hint
//! (any role may send any payload on any channel); what Catalog serves always comes from these
//! reads. Each row is checked against the rules the data files obey; a row that breaks one is
//! left out, by a full read and by a read by id alike (logged and counted as refused): the
//! database's constraints make that impossible unless someone removed them.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::catalog::{Customer, Product};
use crate::database::changes::Table;
use crate::snapshot::{Change, Snapshot};

const PRODUCTS: &str = "SELECT id, slug, description, price_in_cents FROM products";
const CUSTOMERS: &str = "SELECT id, first_name, last_name FROM customers";

/// What a read found.
#[derive(Debug)]
pub struct Read<T> {
    /// The rows, as Catalog serves them.
    pub found: T,
    /// Rows left out because they break a rule: (table, id, problem).
    pub refused: Vec<(Table, i32, String)>,
}

/// Why a read failed.
#[derive(Debug)]
pub enum ReadError {
    /// The database said so, or the connection failed.
    Database(tokio_postgres::Error),
    /// Nothing came for this long: the server hangs, or the network drops packets.
    Silent(Duration),
}

impl From<tokio_postgres::Error> for ReadError {
    fn from(err: tokio_postgres::Error) -> Self {
        ReadError::Database(err)
    }
}

/// `step`, unless nothing comes of it within `limit`. Each step of a read is bounded, not the
/// read: reading a million rows may take longer than any one answer should.
async fn within<T>(
    limit: Duration,
    step: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, ReadError> {
    match tokio::time::timeout(limit, step).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(ReadError::Silent(limit)),
    }
}

/// Every product and customer, read in one read-only transaction (one consistent view), each
/// step (the next row included) answered within `limit`.
pub async fn everything(client: &mut Client, limit: Duration) -> Result<Read<Snapshot>, ReadError> {
    let transaction = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start();
    let transaction = within(limit, transaction).await?;
    // Streamed, row by row into the snapshot: a million rows are never all in memory twice.
    let mut snapshot = Snapshot::default();
    let mut refused = Vec::new();
    for (table, query) in [(Table::Products, PRODUCTS), (Table::Customers, CUSTOMERS)] {
        let sql = format!("{query} ORDER BY id");
        let rows = within(
            limit,
            transaction.query_raw(&sql, std::iter::empty::<i32>()),
        )
        .await?;
        let mut rows = std::pin::pin!(rows);
        loop {
            let next = within(limit, async { rows.next().await.transpose() }).await?;
            let Some(row) = next else { break };
            let change = match table {
                Table::Products => checked(table, product(&row), &mut refused)
                    .map(|p| Change::Product(p.id, Some(p))),
                Table::Customers => checked(table, customer(&row), &mut refused)
                    .map(|c| Change::Customer(c.id, Some(c))),
            };
            if let Some(change) = change {
                snapshot.apply(change);
            }
        }
    }
    within(limit, transaction.commit()).await?;
    Ok(Read {
        found: snapshot,
        refused,
    })
}

/// The rows of `table` with these ids, as changes: an id with no row was deleted, and so is
/// one whose row breaks a rule (as a full read leaves it out). Answered within `limit`.
pub async fn by_id(
    client: &Client,
    table: Table,
    ids: &[i32],
    limit: Duration,
) -> Result<Read<Vec<Change>>, ReadError> {
    let query = match table {
        Table::Products => PRODUCTS,
        Table::Customers => CUSTOMERS,
    };
    let params: [&(dyn ToSql + Sync); 1] = [&ids];
    let sql = format!("{query} WHERE id = ANY($1)");
    let rows = within(limit, client.query(&sql, &params)).await?;
    let mut refused = Vec::new();
    let mut changes = Vec::with_capacity(ids.len());
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    for row in &rows {
        let id: i32 = row.try_get(0)?;
        // A refused row is not seen: it is removed below, as a full read leaves it out.
        let change = match table {
            Table::Products => {
                checked(table, product(row), &mut refused).map(|p| Change::Product(id, Some(p)))
            }
            Table::Customers => {
                checked(table, customer(row), &mut refused).map(|c| Change::Customer(id, Some(c)))
            }
        };
        if let Some(change) = change {
            seen.insert(id);
            changes.push(change);
        }
    }
    for &id in ids.iter().filter(|id| !seen.contains(id)) {
        changes.push(match table {
            Table::Products => Change::Product(id, None),
            Table::Customers => Change::Customer(id, None),
        });
    }
    Ok(Read {
        found: changes,
        refused,
    })
}

/// A record read, with the id it claims: kept if it obeys the rules, else noted in `refused`.
fn checked<R: Rule>(
    table: Table,
    record: Result<R, tokio_postgres::Error>,
    refused: &mut Vec<(Table, i32, String)>,
) -> Option<R> {
    let record = match record {
        Ok(record) => record,
        Err(err) => {
            refused.push((table, 0, format!("unreadable row: {err}")));
            return None;
        }
    };
    match record.rule() {
        Ok(()) => Some(record),
        Err(problem) => {
            refused.push((table, record.id(), problem));
            None
        }
    }
}

/// The rules a record read from the database must obey: the data files'.
trait Rule {
    fn id(&self) -> i32;
    fn rule(&self) -> Result<(), String>;
}

impl Rule for Product {
    fn id(&self) -> i32 {
        self.id
    }
    fn rule(&self) -> Result<(), String> {
        self.validate()
    }
}

impl Rule for Customer {
    fn id(&self) -> i32 {
        self.id
    }
    fn rule(&self) -> Result<(), String> {
        self.validate()
    }
}

fn product(row: &Row) -> Result<Product, tokio_postgres::Error> {
    Ok(Product {
        id: row.try_get(0)?,
        slug: row.try_get(1)?,
        description: row.try_get(2)?,
        price_in_cents: row.try_get(3)?,
    })
}

fn customer(row: &Row) -> Result<Customer, tokio_postgres::Error> {
    Ok(Customer {
        id: row.try_get(0)?,
        first_name: row.try_get(1)?,
        last_name: row.try_get(2)?,
    })
}
