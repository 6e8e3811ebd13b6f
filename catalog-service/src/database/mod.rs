//! Catalog's PostgreSQL database: where it is (`--database-url`), connecting to it over mutual
//! TLS 1.3 (or a local Unix socket), its schema and the role Catalog serves as, importing the
//! data files into it, and the change notifications its triggers send.
//!
//! # Layout
//! Dependencies go one way: `connect` → `url` → `error`; `migrate` → `role`; `import` →
//! `migrate`; `changes` uses none.
//! - [`url`]: [`DatabaseUrl`], the libpq-style URL read and checked (verify-full over TCP, a
//!   socket without TLS, no password, `sslcert`/`sslkey`/`sslrootcert` taken out).
//! - [`connect`]: [`Database`], which opens connections with the TLS material current at
//!   that moment ([`mtls::postgres_client_config`], reloaded), and [`spawn_connection`].
//! - [`error`]: a tokio-postgres error on one line: PostgreSQL's message or the TLS reason.
//! - [`migrate`]: the embedded, versioned SQL files applied in one locked transaction.
//! - [`role`]: the serving role (`--catalog-role`): login, no password, SELECT only.
//! - [`import`]: the data files upserted by id, in chunks, in one transaction.
//! - [`changes`]: the notifications' channel and payload format, read back ([`Change`]).

pub mod changes;
pub mod connect;
pub mod error;
pub mod import;
pub mod migrate;
pub mod role;
pub mod url;

pub use changes::{CHANNEL, Change, MAX_IDS_PER_NOTIFICATION, Table};
pub use connect::{ConnectError, Database, DatabaseTlsError, PgConnection, spawn_connection};
pub use import::{Counts, DataFiles, ImportError, ImportReport, import};
pub use migrate::{MIGRATIONS, MigrateError, MigrateReport, migrate};
pub use role::{DEFAULT_ROLE, RoleName, RoleOutcome};
pub use url::{DatabaseUrl, Transport, UrlError};
