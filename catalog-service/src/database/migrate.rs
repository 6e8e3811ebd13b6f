//! Catalog's schema: the versioned SQL files in `catalog-service/migrations/`, embedded in the
//! binary and applied in order, each once, recorded in `catalog_schema_migrations`; then the
//! serving role made to exist with read-only rights ([`super::role`]). All in one transaction
//! under an advisory lock, so replicas or operators running it at once take turns and a
//! failure changes nothing.
//!
//! Written by hand (about fifty lines, no dependency) rather than with a migration crate:
//! refinery 0.10 needs Rust 1.92 and takes no lock, sqlx 0.9 needs Rust 1.94 and brings its own
//! driver and TLS stack; both pull in much more than this needs (the workspace builds with
//! Rust 1.88).

use tokio_postgres::Client;

use super::role::{RoleError, RoleName, RoleOutcome, ensure_role};

/// One migration: its version (the file's number), file name and SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub file: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $file:literal) => {
        Migration {
            version: $version,
            file: $file,
            sql: include_str!(concat!("../../migrations/", $file)),
        }
    };
}

/// Every migration, in the order they apply. A new one goes at the end, with the next number.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_catalog.sql"),
    migration!(2, "0002_change_notifications.sql"),
];

/// The table recording which migrations are applied.
pub const VERSION_TABLE: &str = "catalog_schema_migrations";

/// The advisory lock migrate and import take for their transaction (any fixed number, the
/// same in every Catalog).
pub const LOCK_KEY: i64 = i64::from_be_bytes(*b"\0catalog");

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// The versions applied now (empty: the schema was up to date).
    pub applied: Vec<i32>,
    /// The version the schema is at.
    pub version: i32,
    /// What was done to the serving role.
    pub role: RoleOutcome,
}

/// Why migrate failed (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the database's schema is at version {found}, newer than this catalog-service knows \
         ({known}): run a newer catalog-service"
    )]
    NewerSchema { found: i32, known: i32 },
    #[error("migration {file}: {reason}")]
    Migration { file: &'static str, reason: String },
    #[error(transparent)]
    Role(RoleError),
    #[error("{0}")]
    Db(String),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(err: tokio_postgres::Error) -> Self {
        MigrateError::Db(super::error::describe(&err, None))
    }
}

impl From<RoleError> for MigrateError {
    fn from(err: RoleError) -> Self {
        match err {
            RoleError::Db(db) => db.into(),
            other => MigrateError::Role(other),
        }
    }
}

/// Applies the migrations not yet applied, then makes `role` the read-only serving role; in
/// one transaction, under [`LOCK_KEY`]. Running it again changes nothing.
pub async fn migrate(client: &mut Client, role: &RoleName) -> Result<MigrateReport, MigrateError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
             version integer PRIMARY KEY,
             file text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )"
    ))
    .await?;
    let found: Option<i32> = tx
        .query_one(&format!("SELECT max(version) FROM {VERSION_TABLE}"), &[])
        .await?
        .get(0);
    let found = found.unwrap_or(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if found > known {
        return Err(MigrateError::NewerSchema { found, known });
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.batch_execute(migration.sql)
            .await
            .map_err(|err| MigrateError::Migration {
                file: migration.file,
                reason: super::error::describe(&err, None),
            })?;
        tx.execute(
            &format!("INSERT INTO {VERSION_TABLE} (version, file) VALUES ($1, $2)"),
            &[&migration.version, &migration.file],
        )
        .await?;
        applied.push(migration.version);
    }
    let role = ensure_role(&tx, role).await?;
    tx.commit().await?;
    Ok(MigrateReport {
        applied,
        version: known,
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_1_without_gaps_as_their_files() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            let expected = i32::try_from(index).unwrap() + 1;
            assert_eq!(migration.version, expected, "{}", migration.file);
            assert!(
                migration.file.starts_with(&format!("{expected:04}_")),
                "{}",
                migration.file
            );
            assert!(!migration.sql.trim().is_empty(), "{}", migration.file);
        }
    }

    #[test]
    fn every_file_in_the_migrations_folder_is_listed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.file).collect();
        assert_eq!(files, listed);
    }

    #[test]
    fn the_tables_obey_the_data_files_rules() {
        let sql = MIGRATIONS[0].sql;
        for rule in [
            "CHECK (id > 0)",
            "UNIQUE (slug)",
            "CHECK (slug ~ '[^[:space:]]')",
            "CHECK (price_in_cents >= 0)",
        ] {
            assert!(sql.contains(rule), "{rule}");
        }
    }
}
