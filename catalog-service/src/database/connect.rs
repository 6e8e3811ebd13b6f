//! Connecting to PostgreSQL: [`Database`] holds the checked URL and, over TCP, the TLS client
//! configuration (Catalog's certificate, or the URL's, reloaded when the files change), and
//! opens one connection at a time; [`spawn_connection`] drives a connection for one-shot work.
//!
//! The client is tokio-postgres with tokio-postgres-rustls because that adapter takes our own
//! rustls `ClientConfig` (TLS 1.3 only, `mtls`' verification, certificates reloaded without a
//! restart). sqlx builds its own TLS configuration from file paths (TLS 1.2 allowed, no custom
//! verifier, no reload), so it cannot carry the same guarantees.

use std::sync::Arc;

use mtls::{ConnectFailure, ReloadSettings, TlsFileError, TlsReloader, TlsSource};
use rustls::ClientConfig;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::{describe, tls_failure};
use super::url::{DatabaseUrl, Transport};

/// The label of the database hop's TLS material in logs and in the certificate-expiry gauge.
pub const TLS_SERVICE: &str = "catalog-database";

/// A connection to PostgreSQL, as [`Database::connect`] opens it: whoever holds it drives it,
/// by `.await` (see [`spawn_connection`]) or with `poll_message` to receive notifications.
pub type PgConnection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// Where Catalog's database is and how to reach it (clones share the TLS watcher).
#[derive(Clone)]
pub struct Database {
    url: DatabaseUrl,
    /// Over TCP: the TLS configuration new connections use, reloaded from its files.
    tls: Option<Arc<TlsReloader<ClientConfig>>>,
    /// On a Unix socket: never used (TLS is off), but tokio-postgres wants a connector.
    unused_tls: ClientConfig,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &self.url)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Why the database's TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseTlsError {
    #[error("database TLS file {0}")]
    Files(TlsFileError),
    #[error("database TLS: {0}")]
    Config(mtls::TlsError),
}

/// Why a connection to PostgreSQL could not be opened. Displays as one line: where, and why
/// (PostgreSQL's message, the TLS failure, or the network's).
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to PostgreSQL at {target}: {reason}")]
pub struct ConnectError {
    /// Hosts, database and role (never a secret).
    pub target: String,
    /// Why, on one line.
    pub reason: String,
    /// The TLS failure, when that is why.
    pub tls: Option<ConnectFailure>,
    /// PostgreSQL's SQLSTATE, when the server refused (e.g. `28000`: pg_hba.conf, certificate
    /// authentication).
    pub code: Option<tokio_postgres::error::SqlState>,
}

impl Database {
    /// Checks `url` and, over TCP, loads the TLS material: Catalog's own files
    /// (`catalog_tls`: `--certs-dir`, `--ca`, `--cert`, `--key`), each replaced by the one the
    /// URL names (`sslrootcert`, `sslcert`, `sslkey`). Nothing is loaded for a Unix socket.
    pub fn new(url: DatabaseUrl, catalog_tls: &ReloadSettings) -> Result<Self, DatabaseTlsError> {
        let unused_tls = ClientConfig::builder_with_provider(mtls::crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|err| DatabaseTlsError::Config(err.into()))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let tls = match url.transport() {
            Transport::UnixSocket => None,
            Transport::Tcp => {
                let settings = ReloadSettings {
                    files: url.tls_files().apply(&catalog_tls.files),
                    ..catalog_tls.clone()
                };
                let source = TlsSource::from_files(settings).map_err(DatabaseTlsError::Files)?;
                let reloader = TlsReloader::start(
                    TLS_SERVICE,
                    source,
                    service_runtime::metrics::CERTIFICATE_EXPIRY_METRIC,
                    |identity, ca| mtls::postgres_client_config(ca, identity),
                )
                .map_err(DatabaseTlsError::Config)?;
                Some(reloader)
            }
        };
        Ok(Self {
            url,
            tls,
            unused_tls,
        })
    }

    /// The URL this connects to.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The TLS material's watcher (over TCP): [`TlsReloader::spawn`] it in a long-running
    /// process to re-read the files on a timer and on SIGHUP and to warn before the
    /// certificate expires. [`Self::connect`] also looks at the files before each connection.
    pub fn tls_reloader(&self) -> Option<&Arc<TlsReloader<ClientConfig>>> {
        self.tls.as_ref()
    }

    /// Opens one connection: TCP with TLS 1.3 (verify-full, our certificate) or the Unix
    /// socket. The connection is returned undriven: nothing happens on the client until the
    /// caller drives it ([`spawn_connection`], or `poll_message` for notifications). Each call
    /// uses the TLS material current at that moment, re-reading the files first if they
    /// changed, so a rotated certificate is used without a restart.
    pub async fn connect(&self) -> Result<(Client, PgConnection), ConnectError> {
        let config = match &self.tls {
            Some(reloader) => {
                reloader.reload_and_log();
                (*reloader.config().current()).clone()
            }
            None => self.unused_tls.clone(),
        };
        // tokio-postgres bounds only the TCP connect by `connect_timeout`: a server that
        // accepts and then says nothing (a stopped postmaster, a proxy before a dead backend)
        // would hold the TLS handshake and the login for ever. The whole attempt is bounded,
        // per host tried.
        let config_pg = self.url.config();
        let per_host = config_pg
            .get_connect_timeout()
            .copied()
            .unwrap_or(super::url::DEFAULT_CONNECT_TIMEOUT);
        let hosts = u32::try_from(config_pg.get_hosts().len().max(1)).unwrap_or(1);
        let limit = per_host.saturating_mul(hosts);
        let attempt = config_pg.connect(MakeRustlsConnect::new(config));
        let connected = tokio::time::timeout(limit, attempt)
            .await
            .map_err(|_| ConnectError {
                target: self.url.to_string(),
                reason: format!(
                    "no answer within {limit:?} (connect_timeout): the TLS handshake or the login \
                 did not complete"
                ),
                tls: None,
                code: None,
            })?;
        connected.map_err(|err| {
            let name = self.url.server_name();
            ConnectError {
                target: self.url.to_string(),
                reason: describe(&err, name),
                tls: tls_failure(&err, name),
                code: err.code().cloned(),
            }
        })
    }

    /// [`Self::connect`], with the connection driven by its own task ([`spawn_connection`]):
    /// for commands that send statements and need no notifications.
    pub async fn connect_spawned(&self) -> Result<Client, ConnectError> {
        let (client, connection) = self.connect().await?;
        spawn_connection(connection, self.url.to_string());
        Ok(client)
    }
}

/// Drives `connection` in a task of its own until it closes; an error ending it is logged with
/// `target`. Notifications received meanwhile are dropped (use `poll_message` to get them).
pub fn spawn_connection(connection: PgConnection, target: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(
                database = %target,
                "PostgreSQL connection ended: {}",
                describe(&err, None)
            );
        }
    })
}
