//! Command-line flags, each with an environment-variable twin, parsed into [`Settings`]
//! before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use mtls::TlsFileError;
use service_runtime::flags::{ConnectionFlags, OpsFlags, ProcessFlags, TlsFlags};

use crate::app::Settings;
use crate::balancer::ReplicaSettings;
use crate::catalog::{CatalogData, DataError};
use crate::command::Command;
use crate::data::{DataSource, DatabaseWatch, FileWatch};
use crate::database::{self, Database, DatabaseUrl, UrlError};
use crate::discount::{CoalesceSettings, DiscountAddr, DiscountSettings, FallbackSettings};
use crate::server::HttpLimits;

service_runtime::service_names!(
    /// Catalog's file names (`catalog.pem`, `catalog.key`) and variables (`CATALOG_...`); its
    /// connection flags are its HTTP port's (`--http-max-connections`, `CATALOG_HTTP_...`).
    pub CatalogNames,
    "catalog",
    "CATALOG",
    ops_listen = "127.0.0.1:9465",
    port: "http-",
    "CATALOG_HTTP"
);

/// A setting that stops start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("data file {0}")]
    Data(DataError),
    #[error("TLS file {0}")]
    Tls(TlsFileError),
    #[error(transparent)]
    Database(#[from] UrlError),
    #[error(transparent)]
    DatabaseTls(#[from] database::DatabaseTlsError),
    #[error(
        "--products and --customers are what `import` loads into the database; serving with \
         --database-url reads the catalog from the database: give one or the other"
    )]
    FilesAndDatabase,
}

// Not `#[from]`: that would also chain the cause, and `{:#}` would print it twice.
impl From<DataError> for ConfigError {
    fn from(err: DataError) -> Self {
        ConfigError::Data(err)
    }
}

impl From<TlsFileError> for ConfigError {
    fn from(err: TlsFileError) -> Self {
        ConfigError::Tls(err)
    }
}

/// Catalog: the shop's product list over HTTP, discounted by Discount over mutual TLS.
#[derive(Debug, Clone, Parser)]
#[command(name = "catalog-service", version, about)]
pub struct Cli {
    /// Something other than serving (`probe`, `migrate`, `import`); none: serve.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on for HTTP.
    #[arg(long, env = "CATALOG_LISTEN", default_value = "127.0.0.1:11080")]
    pub listen: SocketAddr,

    // Where the operations port listens (`--ops-listen`, on by default on 127.0.0.1:9465).
    #[command(flatten)]
    pub ops: OpsFlags<CatalogNames>,

    // The caps on connections open and not yet proven (first request head not whole):
    // `--http-max-connections`, `--http-max-unproven-connections`.
    #[command(flatten)]
    pub connections: ConnectionFlags<CatalogNames>,

    /// Milliseconds a request's headers may take to arrive, from the connection's acceptance
    /// (the first request) or from the first byte of a later request; slower connections are
    /// cut (slowloris).
    #[arg(long, env = "CATALOG_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub http_header_timeout_ms: u64,

    /// Milliseconds a kept-alive HTTP connection may wait for its next request before it is
    /// closed.
    #[arg(long, env = "CATALOG_HTTP_IDLE_TIMEOUT_MS", default_value_t = 90_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub http_idle_timeout_ms: u64,

    /// Most HTTP requests in progress at once; beyond it a request is answered at once with
    /// 503 and Retry-After (not queued).
    #[arg(long, env = "CATALOG_HTTP_MAX_CONCURRENT_REQUESTS", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub http_max_concurrent_requests: u32,

    /// Discount's replicas: host[:port] (port 11443 if omitted), comma-separated. A name that
    /// resolves to several addresses (a headless Service) stands for all of them; RPCs are
    /// spread over every replica that is up.
    #[arg(
        long,
        env = "DISCOUNT_SERVICE_HOST",
        default_value = "127.0.0.1:11443",
        value_delimiter = ',',
        value_name = "HOST[:PORT],..."
    )]
    pub discount_addr: Vec<DiscountAddr>,

    /// Name Discount's certificates must carry [default: the host of each --discount-addr].
    #[arg(long, env = "DISCOUNT_TLS_NAME")]
    pub discount_tls_name: Option<String>,

    /// Seconds between lookups of Discount's names, to follow replicas as they come and go.
    #[arg(long, env = "DISCOUNT_RESOLVE_INTERVAL_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub discount_resolve_interval_secs: u64,

    /// Milliseconds between health checks of each Discount replica: a replica that fails one
    /// leaves the rotation, one that passes one comes back.
    #[arg(long, env = "DISCOUNT_HEALTH_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub discount_health_interval_ms: u64,

    /// Seconds after which a connection to a Discount replica is replaced by a new one (give
    /// or take 10%), so that rotated certificates take effect; 0: never. A reload of Catalog's
    /// own TLS files renews every connection at once.
    #[arg(long, env = "DISCOUNT_MAX_CONNECTION_AGE_SECS", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub discount_max_connection_age_secs: u64,

    /// Identity (URI SAN) Discount's certificate must carry.
    #[arg(
        long,
        env = "DISCOUNT_IDENTITY",
        default_value = "spiffe://shop.local/discount"
    )]
    pub discount_identity: String,

    /// Milliseconds to wait for Discount per HTTP request before serving full prices.
    #[arg(long, env = "DISCOUNT_TIMEOUT_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub discount_timeout_ms: u64,

    /// Most discount RPCs in flight at once; requests arriving while one is in flight wait and
    /// go out together, as one RPC, when it completes (another opens when a batch's worth is
    /// waiting or those in flight are slow).
    #[arg(long, env = "DISCOUNT_RPCS_IN_FLIGHT", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub discount_rpcs_in_flight: u32,

    /// Most HTTP requests one coalesced discount RPC carries.
    #[arg(long, env = "DISCOUNT_MAX_REQUESTS_PER_RPC", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub discount_max_requests_per_rpc: u32,

    /// Most products one coalesced discount RPC carries, its requests together (a request is
    /// never split; at least one page of 1,000 products).
    #[arg(long, env = "DISCOUNT_MAX_PRODUCTS_PER_RPC", default_value_t = 20_000,
          value_parser = clap::value_parser!(u32).range(1000..=100_000))]
    pub discount_max_products_per_rpc: u32,

    /// Most HTTP requests waiting for a discount RPC; beyond it a request gets full prices at
    /// once (header `x-discount-unavailable: overloaded`).
    #[arg(long, env = "DISCOUNT_MAX_QUEUED", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub discount_max_queued: u32,

    /// With an original-style Discount (one ApplyDiscount per product): calls in flight at
    /// once for one HTTP request.
    #[arg(long, env = "DISCOUNT_FALLBACK_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub discount_fallback_concurrency: u32,

    /// With an original-style Discount: ApplyDiscount calls in flight at once in all.
    #[arg(long, env = "DISCOUNT_FALLBACK_MAX_IN_FLIGHT", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub discount_fallback_max_in_flight: u32,

    /// Products file: a JSON array of {id, slug, description, price_in_cents}
    /// [default: the three embedded sample products].
    #[arg(long, env = "CATALOG_PRODUCTS_FILE", global = true)]
    pub products: Option<PathBuf>,

    /// Customers file: a JSON array of {id, first_name, last_name}
    /// [default: the two embedded sample customers].
    #[arg(long, env = "CATALOG_CUSTOMERS_FILE", global = true)]
    pub customers: Option<PathBuf>,

    /// Seconds between looks at the data files: changed files that parse and validate replace
    /// the catalog, others are refused and the last good data keeps serving. SIGHUP also
    /// triggers a look.
    #[arg(long, env = "CATALOG_DATA_RELOAD_INTERVAL_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub data_reload_interval_secs: u64,

    /// PostgreSQL holding the catalog, as a libpq URL:
    /// postgresql://HOST[:PORT]/DBNAME?sslmode=verify-full (TCP: TLS 1.3, the server's
    /// certificate and name checked, Catalog's certificate shown; sslrootcert, sslcert, sslkey
    /// replace --ca, --cert, --key), or postgresql:///DBNAME?host=/run/postgresql (a Unix
    /// socket). No password: the role (default catalog) signs in with its certificate. When
    /// serving, the catalog comes from this database instead of the files.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,

    /// Milliseconds between pings of the database: each answer confirms the catalog served is
    /// current (catalog_data_snapshot_age_seconds), and a ping unanswered within
    /// --database-timeout-secs ends a dead connection.
    #[arg(long, env = "CATALOG_DATABASE_HEALTH_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub database_health_interval_ms: u64,

    /// Most changed rows announced by the database and not read yet; beyond it Catalog reads
    /// the whole catalog again instead (a flood of notifications costs bounded memory).
    #[arg(long, env = "CATALOG_DATABASE_MAX_PENDING_CHANGES", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub database_max_pending_changes: u32,

    /// Longest wait, in milliseconds, between two attempts to reach the database (the wait
    /// doubles from 100 ms, with jitter, up to this).
    #[arg(long, env = "CATALOG_DATABASE_MAX_BACKOFF_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub database_max_backoff_ms: u64,

    /// Seconds to wait for any answer from the database (a ping, reading the whole catalog)
    /// before giving the connection up and opening another; a hung server or a dropped
    /// network is noticed this way.
    #[arg(long, env = "CATALOG_DATABASE_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub database_timeout_secs: u64,

    /// Seconds after which the database connection is replaced by a new one (give or take
    /// 10%), so that a rotated certificate is used; the catalog is then read in full again. 0:
    /// never.
    #[arg(long, env = "CATALOG_DATABASE_MAX_CONNECTION_AGE_SECS", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub database_max_connection_age_secs: u64,

    // Where the TLS files are and how they are watched.
    #[command(flatten)]
    pub tls: TlsFlags<CatalogNames>,

    // Logging, worker threads and the drain deadline.
    #[command(flatten)]
    pub process: ProcessFlags<CatalogNames>,
}

impl Cli {
    /// Loads the data files and the TLS material (once: reloads read the same files) and
    /// builds the settings (tracing off: see [`Settings::tracer`]).
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let data = self.data_source()?;
        let tls = self.tls.load()?;
        let timeout = Duration::from_millis(self.discount_timeout_ms);
        Ok(Settings {
            data,
            discount: DiscountSettings {
                addrs: self.discount_addr.clone(),
                tls_name: self.discount_tls_name.clone(),
                timeout,
                replicas: ReplicaSettings {
                    resolve_interval: Duration::from_secs(self.discount_resolve_interval_secs),
                    health_interval: Duration::from_millis(self.discount_health_interval_ms),
                    max_connection_age: (self.discount_max_connection_age_secs > 0)
                        .then(|| Duration::from_secs(self.discount_max_connection_age_secs)),
                    ..ReplicaSettings::default()
                },
                coalescing: CoalesceSettings {
                    rpcs_in_flight: self.discount_rpcs_in_flight as usize,
                    max_requests_per_rpc: self.discount_max_requests_per_rpc as usize,
                    max_products_per_rpc: self.discount_max_products_per_rpc as usize,
                    max_queued: self.discount_max_queued as usize,
                },
                fallback: FallbackSettings {
                    per_request: self.discount_fallback_concurrency as usize,
                    max_in_flight: self.discount_fallback_max_in_flight as usize,
                },
            },
            tls,
            discount_identity: self.discount_identity.clone(),
            drain_timeout: self.process.drain_timeout(),
            http: self.http_limits(),
            // Tracing is set up from the `OTEL_*` variables by the binary, inside its runtime.
            tracer: service_runtime::otel::Tracer::default(),
        })
    }

    /// Where the catalog comes from: the database (its URL and TLS files checked now), or
    /// the files, loaded now (a bad file stops start-up).
    pub fn data_source(&self) -> Result<DataSource, ConfigError> {
        if let Some(url) = self.database_url()? {
            if self.products.is_some() || self.customers.is_some() {
                return Err(ConfigError::FilesAndDatabase);
            }
            return Ok(DataSource::Database(Box::new(DatabaseWatch {
                database: Database::new(url, &self.tls.reload_settings())?,
                health_interval: Duration::from_millis(self.database_health_interval_ms),
                max_pending_ids: self.database_max_pending_changes as usize,
                max_backoff: Duration::from_millis(self.database_max_backoff_ms),
                timeout: Duration::from_secs(self.database_timeout_secs),
                max_connection_age: (self.database_max_connection_age_secs > 0)
                    .then(|| Duration::from_secs(self.database_max_connection_age_secs)),
            })));
        }
        if self.products.is_none() && self.customers.is_none() {
            return Ok(DataSource::Fixed(CatalogData::embedded_default()));
        }
        let watch = FileWatch::new(
            self.products.clone(),
            self.customers.clone(),
            Duration::from_secs(self.data_reload_interval_secs),
        );
        let (data, watch) = watch.load()?;
        Ok(DataSource::Files(data, watch))
    }

    /// `--database-url`, checked, with the serving role as the default user; `None` when not
    /// given.
    pub fn database_url(&self) -> Result<Option<DatabaseUrl>, UrlError> {
        self.database_url
            .as_deref()
            .map(|url| DatabaseUrl::parse(url, Some(database::DEFAULT_ROLE)))
            .transpose()
    }

    /// The public HTTP server's limits.
    pub fn http_limits(&self) -> HttpLimits {
        let header_timeout = Duration::from_millis(self.http_header_timeout_ms);
        let admission = self.connections.limits(header_timeout);
        HttpLimits {
            max_connections: admission.max_connections,
            max_unproven: admission.max_unproven,
            header_timeout,
            idle_timeout: Duration::from_millis(self.http_idle_timeout_ms),
            max_concurrent_requests: self.http_max_concurrent_requests as usize,
        }
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
