//! A throwaway PostgreSQL cluster, for tests and local runs: `initdb` in a temporary folder,
//! TLS 1.3 only, each certificate role allowed in over loopback TCP by its client certificate
//! alone, the superuser over a Unix socket only, and all of it stopped and removed when the
//! [`Cluster`] is dropped or the process ends. Blocking: it runs PostgreSQL's own programs
//! (`initdb`, `pg_ctl`, `psql`) from the machine's installation (Debian's `postgresql`
//! package).
//!
//! ```no_run
//! use throwaway_postgres::{Cluster, Options, Tls};
//! let tls = Tls { cert: "postgres.pem".into(), key: "postgres.key".into(), ca: "ca.pem".into() };
//! let cluster = Cluster::start(Options::new(tls, "shop").cert_role("catalog"))?;
//! cluster.psql("CREATE TABLE products (id text PRIMARY KEY)")?;
//! let url = cluster.tls_url("catalog"); // postgresql://localhost:PORT/shop?user=catalog&sslmode=verify-full
//! # Ok::<(), throwaway_postgres::Error>(())
//! ```
//!
//! # Layout
//! - [`cluster`]: the cluster itself (start on a free port, psql, stop, restart, drop).
//! - [`config`]: the folder's layout, the TLS copies, `pg_hba.conf` and the server settings.
//! - [`session`]: a `psql` session kept open, for statements sent one after another.
//! - [`binaries`]: finding the installation.
//! - [`user`]: running the server as the `postgres` user when the caller is root.
//! - [`guardian`]: the process that cleans up if this one ends without dropping the cluster.
//! - [`error`]: the error type.

pub mod binaries;
pub mod cluster;
pub mod config;
pub mod error;
pub mod guardian;
pub mod session;
pub mod user;

pub use binaries::Binaries;
pub use cluster::{Cluster, DEFAULT_PORTS, Options, SUPERUSER};
pub use config::Tls;
pub use error::Error;
pub use session::Session;
