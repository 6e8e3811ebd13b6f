//! Command-line flags, each with an environment-variable twin, parsed into
//! [`ServerSettings`] before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ecommerce_proto::reload::ReloadSettings;
use ecommerce_proto::runtime::LogFormat;
use ecommerce_proto::tls::{TlsFileError, TlsFiles};

use crate::authz::{AllowList, RuleError};
use crate::server::ServerSettings;

/// A setting that stops start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Allow(#[from] RuleError),
    #[error(transparent)]
    Tls(#[from] TlsFileError),
}

/// Discount: the shop's discount rule as a gRPC service, reachable only over mutual TLS.
#[derive(Debug, Clone, Parser)]
#[command(name = "discount-service", version, about)]
pub struct Cli {
    /// Something other than serving (`probe`); none: serve.
    #[command(subcommand)]
    pub command: Option<ecommerce_proto::probe::Command>,

    /// Address to listen on for gRPC over mutual TLS.
    #[arg(long, env = "DISCOUNT_LISTEN", default_value = "127.0.0.1:11443")]
    pub listen: SocketAddr,

    /// Who may call what: `RPC=IDENTITY[,IDENTITY...]`, RPC being ApplyDiscount,
    /// ApplyDiscountBatch or * (repeatable; in the variable, separate rules with ';').
    #[arg(
        long = "allow",
        env = "DISCOUNT_ALLOW",
        value_delimiter = ';',
        default_value = "*=spiffe://shop.local/catalog",
        value_name = "RULE"
    )]
    pub allow: Vec<String>,

    /// Address for the plain-HTTP metrics port (`/metrics`, `/healthz`), e.g. 127.0.0.1:9464.
    /// Off when not given: it has no authentication, so it is opened only where you choose.
    #[arg(long, env = "DISCOUNT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Folder holding `ca.pem`, `discount.pem` and `discount.key` (as written by
    /// `cargo xtask gen-certs`) [default: the repository's certs/ folder].
    #[arg(long, env = "CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,

    /// CA bundle that client certificates must chain to [default: <certs-dir>/ca.pem].
    #[arg(long, env = "DISCOUNT_TLS_CA")]
    pub ca: Option<PathBuf>,

    /// This server's certificate chain [default: <certs-dir>/discount.pem].
    #[arg(long, env = "DISCOUNT_TLS_CERT")]
    pub cert: Option<PathBuf>,

    /// This server's private key [default: <certs-dir>/discount.key].
    #[arg(long, env = "DISCOUNT_TLS_KEY")]
    pub key: Option<PathBuf>,

    /// Seconds a client may take to complete the TLS handshake.
    #[arg(long, env = "DISCOUNT_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub handshake_timeout_secs: u64,

    /// Seconds between checks of the TLS files for a rotated certificate (SIGHUP also
    /// triggers a check).
    #[arg(long, env = "DISCOUNT_TLS_RELOAD_INTERVAL_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub tls_reload_interval_secs: u64,

    /// Warn when the certificate in use expires within this many hours.
    #[arg(long, env = "DISCOUNT_CERT_EXPIRY_WARNING_HOURS", default_value_t = 12)]
    pub cert_expiry_warning_hours: u64,

    /// Log line format on stderr: `text` for people, `json` for log collectors.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Tokio worker threads [default: one per CPU core].
    #[arg(long, env = "DISCOUNT_WORKER_THREADS",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,

    /// Seconds in-flight RPCs may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "DISCOUNT_DRAIN_TIMEOUT_SECS", default_value_t = 10)]
    pub drain_timeout_secs: u64,
}

impl Cli {
    /// How the TLS files are watched for rotation.
    pub fn reload_settings(&self) -> ReloadSettings {
        ReloadSettings::from_flags(
            self.tls_files(),
            self.tls_reload_interval_secs,
            self.cert_expiry_warning_hours,
        )
    }

    /// The TLS files to load, flags overriding the certs folder.
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles::resolve(
            self.certs_dir.as_deref(),
            "discount",
            self.ca.as_deref(),
            self.cert.as_deref(),
            self.key.as_deref(),
        )
    }

    /// Loads the TLS material and builds the server settings.
    pub fn settings(&self) -> Result<ServerSettings, ConfigError> {
        let allow = AllowList::parse(&self.allow)?;
        let (identity, client_ca) = self.tls_files().load()?;
        Ok(ServerSettings {
            allow,
            reload: Some(self.reload_settings()),
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
            ..ServerSettings::new(identity, client_ca)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_point_into_the_certs_folder() {
        let cli = Cli::try_parse_from(["discount-service", "--certs-dir", "/srv/certs"]).unwrap();
        assert_eq!(cli.listen, "127.0.0.1:11443".parse().unwrap());
        assert_eq!(
            cli.tls_files(),
            TlsFiles::in_dir("/srv/certs".as_ref(), "discount")
        );
    }

    #[test]
    fn file_flags_override_the_folder() {
        let cli = Cli::try_parse_from(["discount-service", "--key", "/k.pem"]).unwrap();
        assert_eq!(cli.tls_files().key, PathBuf::from("/k.pem"));
        assert!(cli.tls_files().ca.ends_with("certs/ca.pem"));
    }

    #[test]
    fn malformed_listen_address_is_refused() {
        let err = Cli::try_parse_from(["discount-service", "--listen", "localhost"]).unwrap_err();
        assert!(err.to_string().contains("--listen"), "{err}");
    }

    #[test]
    fn missing_files_name_the_path_and_the_fix() {
        let cli = Cli::try_parse_from(["discount-service", "--certs-dir", "/nonexistent"]).unwrap();
        let err = cli.settings().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        assert!(err.contains("gen-certs"), "{err}");
    }
}
