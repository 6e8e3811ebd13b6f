//! The change notifications the database sends (migration `0002_change_notifications.sql`),
//! read back: channel [`CHANNEL`], payload `<table>:<ids>` (ids comma-separated, ascending, at
//! most [`MAX_IDS_PER_NOTIFICATION`]) or `<table>:*` (read the whole table again).

use std::fmt;
use std::str::FromStr;

/// The channel the triggers notify on (`LISTEN catalog_changes`).
pub const CHANNEL: &str = "catalog_changes";

/// Most ids one notification carries; a statement changing more sends several.
pub const MAX_IDS_PER_NOTIFICATION: usize = 500;

/// A table whose changes are announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Products,
    Customers,
}

impl Table {
    /// Its name in the database and in payloads.
    pub fn name(self) -> &'static str {
        match self {
            Table::Products => "products",
            Table::Customers => "customers",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one notification says changed (committed: NOTIFY is delivered at commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// These rows were inserted, updated or deleted: read them again (an id no longer there
    /// was deleted).
    Rows { table: Table, ids: Vec<i32> },
    /// Read the whole table again (it was truncated).
    All(Table),
}

/// A payload that is not `<table>:<ids>` or `<table>:*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a catalog change: {payload:?} ({why})")]
pub struct BadPayload {
    /// The payload, cut to 100 characters.
    pub payload: String,
    pub why: &'static str,
}

impl FromStr for Change {
    type Err = BadPayload;

    fn from_str(payload: &str) -> Result<Self, BadPayload> {
        let bad = |why| BadPayload {
            payload: payload.chars().take(100).collect(),
            why,
        };
        let (table, rest) = payload
            .split_once(':')
            .ok_or_else(|| bad("no `:` after the table"))?;
        let table = match table {
            "products" => Table::Products,
            "customers" => Table::Customers,
            _ => return Err(bad("unknown table")),
        };
        if rest == "*" {
            return Ok(Change::All(table));
        }
        let ids = rest
            .split(',')
            .map(|id| id.parse::<i32>().ok().filter(|id| *id > 0))
            .collect::<Option<Vec<i32>>>()
            .ok_or_else(|| bad("ids must be positive integers, comma-separated"))?;
        Ok(Change::Rows { table, ids })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_back() {
        assert_eq!(
            "products:1,2,30".parse(),
            Ok(Change::Rows {
                table: Table::Products,
                ids: vec![1, 2, 30]
            })
        );
        assert_eq!(
            "customers:7".parse(),
            Ok(Change::Rows {
                table: Table::Customers,
                ids: vec![7]
            })
        );
        assert_eq!("customers:*".parse(), Ok(Change::All(Table::Customers)));
    }

    #[test]
    fn anything_else_is_refused() {
        for payload in [
            "products",
            "orders:1",
            "products:",
            "products:1,,2",
            "products:0",
            "products:-3",
            "products:1 ,2",
            "products:**",
            "Products:1",
        ] {
            assert!(payload.parse::<Change>().is_err(), "{payload:?} was read");
        }
    }

    #[test]
    fn the_largest_payload_stays_under_postgresql_limit() {
        let ids = vec![i32::MAX.to_string(); MAX_IDS_PER_NOTIFICATION].join(",");
        let payload = format!("{}:{ids}", Table::Customers);
        assert!(payload.len() < 8000, "{} bytes", payload.len());
        assert!(payload.parse::<Change>().is_ok());
    }

    #[test]
    fn the_triggers_use_this_channel_and_chunk_size() {
        let sql = super::super::migrate::MIGRATIONS
            .iter()
            .map(|migration| migration.sql)
            .collect::<String>();
        assert!(sql.contains(&format!("pg_notify('{CHANNEL}'")), "channel");
        assert!(
            sql.contains(&format!(") / {MAX_IDS_PER_NOTIFICATION} AS chunk")),
            "chunk size"
        );
    }
}
