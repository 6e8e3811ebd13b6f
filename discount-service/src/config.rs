//! Command-line flags, each with an environment-variable twin, parsed into
//! [`ServerSettings`] before any port is bound.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use mtls::TlsFileError;
use service_runtime::flags::{ProcessFlags, TlsFlags};

use crate::authz::{AllowList, RuleError};
use crate::server::ServerSettings;

service_runtime::service_names!(
    /// Discount's file names (`discount.pem`, `discount.key`) and variables (`DISCOUNT_...`).
    pub DiscountNames,
    "discount",
    "DISCOUNT"
);

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
    pub command: Option<service_runtime::probe::Command>,

    /// Address to listen on for gRPC over mutual TLS.
    #[arg(long, env = "DISCOUNT_LISTEN", default_value = "127.0.0.1:11443")]
    pub listen: SocketAddr,

    /// Who may call what: `RPC=IDENTITY[,IDENTITY...]`, RPC being ApplyDiscount,
    /// ApplyDiscountBatch, ApplyDiscountGroups or * (repeatable; in the variable, separate rules
    /// with ';').
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

    // Where the TLS files are and how they are watched.
    #[command(flatten)]
    pub tls: TlsFlags<DiscountNames>,

    /// Seconds a client may take to complete the TLS handshake.
    #[arg(long, env = "DISCOUNT_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub handshake_timeout_secs: u64,

    // Logging, worker threads and the drain deadline.
    #[command(flatten)]
    pub process: ProcessFlags<DiscountNames>,
}

impl Cli {
    /// Loads the TLS material (once: reloads read the same files) and builds the server
    /// settings.
    pub fn settings(&self) -> Result<ServerSettings, ConfigError> {
        let allow = AllowList::parse(&self.allow)?;
        let tls = self.tls.load()?;
        Ok(ServerSettings {
            allow,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            drain_timeout: self.process.drain_timeout(),
            ..ServerSettings::new(tls)
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
            cli.tls.files(),
            mtls::TlsFiles::in_dir("/srv/certs".as_ref(), "discount")
        );
    }

    #[test]
    fn file_flags_override_the_folder() {
        let cli = Cli::try_parse_from(["discount-service", "--key", "/k.pem"]).unwrap();
        assert_eq!(cli.tls.files().key, std::path::PathBuf::from("/k.pem"));
        assert!(cli.tls.files().ca.ends_with("certs/ca.pem"));
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
