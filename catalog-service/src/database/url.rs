//! `--database-url`: a libpq-style `postgresql://` URL read into tokio-postgres' settings, with
//! the rules Catalog adds: over TCP only `sslmode=verify-full`; a Unix socket without TLS; no
//! password anywhere (the hop authenticates by certificate); `sslcert`, `sslkey` and
//! `sslrootcert` taken out (tokio-postgres knows none of them, nor `verify-full`) to replace
//! Catalog's own TLS files.
//!
//! Every refusal is one line naming the flag, the problem and what to write instead, and none
//! repeats the URL (which could hold a password).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use mtls::TlsFiles;
use percent_encoding::percent_decode_str;
use tokio_postgres::config::{Host, SslMode, SslNegotiation};

use super::error::error_chain;

/// How long connecting (TCP, TLS and authentication) may take when the URL has no
/// `connect_timeout` (libpq would wait for ever).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `application_name` PostgreSQL shows for Catalog's sessions when the URL has none.
pub const APPLICATION_NAME: &str = "catalog-service";

/// `--database-url`, read and checked: where to connect, as whom, and over what.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: tokio_postgres::Config,
    transport: Transport,
    tls_files: TlsFileOverrides,
}

/// How the connection travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP, always TLS 1.3 with the server's certificate and name checked (verify-full).
    Tcp,
    /// A Unix socket on this machine: no TLS (PostgreSQL never does TLS on a socket).
    UnixSocket,
}

/// The TLS files the URL names (`sslrootcert`, `sslcert`, `sslkey`), each replacing Catalog's
/// own (`--ca`, `--cert`, `--key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFileOverrides {
    /// `sslrootcert`: the CA the server's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// `sslcert`: the client certificate chain.
    pub cert: Option<PathBuf>,
    /// `sslkey`: the client's private key.
    pub key: Option<PathBuf>,
}

impl TlsFileOverrides {
    /// `defaults` with each file the URL names in its place.
    pub fn apply(&self, defaults: &TlsFiles) -> TlsFiles {
        TlsFiles {
            ca: self.ca.clone().unwrap_or_else(|| defaults.ca.clone()),
            cert: self.cert.clone().unwrap_or_else(|| defaults.cert.clone()),
            key: self.key.clone().unwrap_or_else(|| defaults.key.clone()),
        }
    }
}

/// Why `--database-url` cannot be used. One line each, without the URL itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "--database-url must be a URL such as postgresql://HOST/DBNAME?sslmode=verify-full \
         or postgresql:///DBNAME?host=/run/postgresql (key=value strings are not accepted)"
    )]
    NotAUrl,
    #[error(
        "--database-url carries a password: Catalog signs in to PostgreSQL with its \
         certificate (pg_hba.conf method `cert`), so remove the password from the URL"
    )]
    Password,
    #[error(
        "--database-url has no sslmode: a TCP connection must check the server's certificate \
         and name, so add sslmode=verify-full (or connect through a Unix socket: \
         ?host=/run/postgresql)"
    )]
    NoSslMode,
    #[error("--database-url has sslmode={mode}, which {why}: write sslmode=verify-full instead")]
    WeakSslMode { mode: String, why: &'static str },
    #[error(
        "--database-url names no host: write postgresql://HOST[:PORT]/DBNAME?sslmode=verify-full, \
         or a socket folder: postgresql:///DBNAME?host=/run/postgresql"
    )]
    NoHost,
    #[error(
        "--database-url has hostaddr but no host: the server's certificate is checked against \
         host, so give both (host=NAME&hostaddr=IP)"
    )]
    HostaddrWithoutHost,
    #[error(
        "--database-url mixes a Unix socket with TCP hosts: give either socket folders or TCP \
         hosts"
    )]
    MixedTransports,
    #[error(
        "--database-url gives the port after the host and as port= too: write it once, after \
         the host (postgresql://HOST:PORT/DBNAME)"
    )]
    PortTwice,
    #[error(
        "--database-url has sslrootcert=system: give the CA file the server's certificate must \
         chain to (or leave it out for Catalog's --ca)"
    )]
    SystemRoots,
    #[error(
        "--database-url has sslnegotiation=direct, which needs PostgreSQL 17's ALPN: leave it \
         out (TLS starts inside PostgreSQL's protocol)"
    )]
    DirectNegotiation,
    #[error("--database-url: {0}")]
    Invalid(String),
}

/// The libpq keys Catalog reads itself and takes out of the query before tokio-postgres sees it.
const OURS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl DatabaseUrl {
    /// Reads `url`; `default_user` is the role to sign in as when the URL names none (`None`:
    /// the operating-system user, as libpq does).
    pub fn parse(url: &str, default_user: Option<&str>) -> Result<Self, UrlError> {
        let rest = ["postgresql://", "postgres://"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme))
            .ok_or(UrlError::NotAUrl)?;
        let (base, query) = match rest.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (rest, None),
        };
        let mut ours = Ours::default();
        let mut kept = Vec::new();
        for pair in query.into_iter().flat_map(|query| query.split('&')) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(raw_key)?;
            if OURS.contains(&key.as_str()) {
                ours.set(&key, decode(raw_value)?);
            } else if key == "password" {
                return Err(UrlError::Password);
            } else {
                kept.push(pair);
            }
        }
        let mut rebuilt = format!("postgresql://{base}");
        if !kept.is_empty() {
            rebuilt.push('?');
            rebuilt.push_str(&kept.join("&"));
        }
        let mut config = tokio_postgres::Config::from_str(&rebuilt)
            .map_err(|err| UrlError::Invalid(error_chain(&err)))?;
        if config.get_password().is_some() {
            return Err(UrlError::Password);
        }
        let transport = transport(&config)?;
        match transport {
            Transport::Tcp => {
                check_ssl_mode(ours.sslmode.as_deref())?;
                if config.get_ssl_negotiation() == SslNegotiation::Direct {
                    return Err(UrlError::DirectNegotiation);
                }
                // verify-full is the ClientConfig's job (chain and name); tokio-postgres only
                // has to insist on TLS, never fall back to plaintext.
                config.ssl_mode(SslMode::Require);
            }
            Transport::UnixSocket => {
                config.ssl_mode(SslMode::Disable);
            }
        }
        if ours.sslrootcert.as_deref() == Some("system") {
            return Err(UrlError::SystemRoots);
        }
        if config.get_user().is_none()
            && let Some(user) = default_user
        {
            config.user(user);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        Ok(Self {
            config,
            transport,
            tls_files: TlsFileOverrides {
                ca: ours.sslrootcert.map(PathBuf::from),
                cert: ours.sslcert.map(PathBuf::from),
                key: ours.sslkey.map(PathBuf::from),
            },
        })
    }

    /// tokio-postgres' settings (TLS required over TCP, disabled on a socket).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// TCP (with TLS) or a Unix socket.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The TLS files the URL names instead of Catalog's own.
    pub fn tls_files(&self) -> &TlsFileOverrides {
        &self.tls_files
    }

    /// The name the server's certificate must carry: the first TCP host (`None` on a socket).
    pub fn server_name(&self) -> Option<&str> {
        self.config.get_hosts().iter().find_map(|host| match host {
            Host::Tcp(name) => Some(name.as_str()),
            #[cfg(unix)]
            Host::Unix(_) => None,
        })
    }
}

/// For logs and errors: hosts, ports, database and user, never anything secret.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports = self.config.get_ports();
        let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| match host {
                Host::Tcp(name) => format!("{name}:{}", port(i)),
                #[cfg(unix)]
                Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port(i)),
            })
            .collect();
        write!(f, "{}", hosts.join(","))?;
        if let Some(dbname) = self.config.get_dbname() {
            write!(f, "/{dbname}")?;
        }
        if let Some(user) = self.config.get_user() {
            write!(f, " as {user}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("target", &self.to_string())
            .field("transport", &self.transport)
            .field("tls_files", &self.tls_files)
            .finish()
    }
}

/// The values of the keys in [`OURS`] (the last one given wins, as in libpq).
#[derive(Default)]
struct Ours {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
}

impl Ours {
    fn set(&mut self, key: &str, value: String) {
        let slot = match key {
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            _ => &mut self.sslkey,
        };
        *slot = Some(value);
    }
}

fn decode(raw: &str) -> Result<String, UrlError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| UrlError::Invalid("a query parameter is not UTF-8 once decoded".into()))
}

/// TCP or a Unix socket, from the hosts; mixing both, or neither, is refused.
fn transport(config: &tokio_postgres::Config) -> Result<Transport, UrlError> {
    let hosts = config.get_hosts();
    let sockets = hosts
        .iter()
        .filter(|host| !matches!(host, Host::Tcp(_)))
        .count();
    if hosts.is_empty() {
        return Err(if config.get_hostaddrs().is_empty() {
            UrlError::NoHost
        } else {
            UrlError::HostaddrWithoutHost
        });
    }
    // In the URL form every host in the authority gets a port (5432 if none), and `port=`
    // adds more: tokio-postgres would fail at connect with "invalid number of ports".
    let ports = config.get_ports().len();
    if ports > 1 && ports != hosts.len() {
        return Err(UrlError::PortTwice);
    }
    if sockets == 0 {
        Ok(Transport::Tcp)
    } else if sockets == hosts.len() && config.get_hostaddrs().is_empty() {
        Ok(Transport::UnixSocket)
    } else {
        Err(UrlError::MixedTransports)
    }
}

/// Over TCP only `verify-full` will do; anything weaker is refused, saying what it lacks.
fn check_ssl_mode(mode: Option<&str>) -> Result<(), UrlError> {
    let why = match mode {
        None => return Err(UrlError::NoSslMode),
        Some("verify-full") => return Ok(()),
        Some("disable") => "sends everything in plaintext",
        Some("allow" | "prefer") => "falls back to plaintext",
        Some("require") => "does not check the server's certificate",
        Some("verify-ca") => "does not check that the certificate is the server's (its name)",
        Some(_) => "is not a libpq sslmode",
    };
    Err(UrlError::WeakSslMode {
        mode: mode.unwrap_or_default().to_owned(),
        why,
    })
}

#[cfg(test)]
#[path = "url_tests.rs"]
mod tests;
