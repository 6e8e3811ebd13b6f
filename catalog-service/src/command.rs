//! Catalog's subcommands: the `probe` both services share, and the database owner's `migrate`
//! (schema and serving role) and `import` (data files into the tables), each run once and
//! reported in the log.
//!
//! `--database-url`, `--products` and `--customers` are the serving flags (global, so they may
//! follow the subcommand); Catalog's TLS flags (`--certs-dir`, `--ca`, `--cert`, `--key`) give
//! the certificate shown to PostgreSQL over TCP unless the URL names its own.

use anyhow::Context;
use mtls::ReloadSettings;

use crate::catalog::CatalogData;
use crate::database::{
    self, Counts, DataFiles, Database, DatabaseUrl, MigrateReport, RoleName, RoleOutcome,
};

/// Something other than serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    // `probe URL`, as every service has it.
    #[command(flatten)]
    Shared(service_runtime::probe::Command),

    /// Creates or updates Catalog's tables and triggers in --database-url's database (run it
    /// as the tables' owner), and makes the serving role a login that may only read them. Run
    /// it again at any time: it changes only what is missing.
    Migrate(MigrateArgs),

    /// Loads --products and --customers (default: the embedded sample data) into the
    /// database, inserting or updating by id, in one transaction: a bad record or a database
    /// error changes nothing.
    Import(ImportArgs),
}

/// `migrate`'s own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// The role Catalog serves as (the CN of its certificate): created if missing, LOGIN
    /// without a password, no other power, SELECT on products and customers only.
    #[arg(long, env = "CATALOG_DATABASE_ROLE", default_value = database::DEFAULT_ROLE)]
    pub catalog_role: RoleName,
}

/// `import`'s own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// Rows sent per statement (a million rows take a hundred statements, one transaction).
    #[arg(long, env = "CATALOG_IMPORT_CHUNK_ROWS", default_value_t = database::import::DEFAULT_CHUNK_ROWS,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub chunk_rows: u32,
}

/// The database named by `--database-url`, over TCP with `catalog_tls`'s files unless the URL
/// names others. The owner signs in as the URL's user (else the system user, as libpq does).
fn database(url: Option<&str>, catalog_tls: &ReloadSettings) -> anyhow::Result<Database> {
    let url = url.context("--database-url (or DATABASE_URL) is required")?;
    let url = DatabaseUrl::parse(url, None)?;
    Ok(Database::new(url, catalog_tls)?)
}

/// `migrate`: the schema brought to the latest version and the serving role made as it must
/// be; what was done is logged.
pub async fn migrate(
    url: Option<&str>,
    catalog_tls: ReloadSettings,
    args: MigrateArgs,
) -> anyhow::Result<()> {
    let database = database(url, &catalog_tls)?;
    let mut client = database.connect_spawned().await?;
    let report = database::migrate(&mut client, &args.catalog_role).await?;
    log_migrate(&database, &args.catalog_role, &report);
    Ok(())
}

fn log_migrate(database: &Database, role: &RoleName, report: &MigrateReport) {
    let target = database.url().to_string();
    if report.applied.is_empty() {
        tracing::info!(database = %target, version = report.version, "schema already up to date");
    } else {
        tracing::info!(
            database = %target,
            version = report.version,
            applied = ?report.applied,
            "schema migrated"
        );
    }
    let did = match &report.role {
        RoleOutcome::Created => "created".to_owned(),
        RoleOutcome::Existed { changed } if changed.is_empty() => "already as required".to_owned(),
        RoleOutcome::Existed { changed } => format!("existed; set {}", changed.join(" ")),
    };
    tracing::info!(
        database = %target,
        "role {role} {did}: LOGIN, no password, NOSUPERUSER NOCREATEDB NOCREATEROLE \
         NOREPLICATION NOBYPASSRLS, may only SELECT products and customers"
    );
}

/// `import`: the files checked first (nothing is sent if one is bad), then upserted; the
/// counts are logged.
pub async fn import(
    url: Option<&str>,
    catalog_tls: ReloadSettings,
    files: DataFiles,
    args: ImportArgs,
) -> anyhow::Result<()> {
    let data = CatalogData::load(files.products.as_deref(), files.customers.as_deref())
        .map_err(|err| anyhow::anyhow!("data file {err}; nothing was imported"))?;
    let database = database(url, &catalog_tls)?;
    let mut client = database.connect_spawned().await?;
    let report = database::import(&mut client, &data, &files, args.chunk_rows as usize).await?;
    let counts = |c: Counts| {
        format!(
            "{} inserted, {} updated, {} unchanged",
            c.inserted, c.updated, c.unchanged
        )
    };
    tracing::info!(
        database = %database.url(),
        "imported: products {}; customers {}",
        counts(report.products),
        counts(report.customers)
    );
    Ok(())
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
