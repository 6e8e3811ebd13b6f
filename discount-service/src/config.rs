//! Command-line flags, each with an environment-variable twin, parsed into
//! [`ServerSettings`] before any port is bound.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use mtls::TlsFileError;
use service_runtime::flags::{ConnectionFlags, OpsFlags, OpsListen, ProcessFlags, TlsFlags};

use crate::authz::{AllowList, RuleError};
use crate::limits::{DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_MESSAGE_BYTES};
use crate::server::ServerSettings;

service_runtime::service_names!(
    /// Discount's file names (`discount.pem`, `discount.key`) and variables (`DISCOUNT_...`).
    pub DiscountNames,
    "discount",
    "DISCOUNT",
    ops_listen = "127.0.0.1:9466"
);

/// What `--metrics-listen` (the deprecated name of `--ops-listen`) logs, once, when it is given.
pub const METRICS_LISTEN_DEPRECATED: &str = "--metrics-listen (DISCOUNT_METRICS_LISTEN) is \
    deprecated and will be removed: use --ops-listen (DISCOUNT_OPS_LISTEN), which it stands for \
    meanwhile";

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
    /// ApplyDiscountBatch, ApplyDiscountGroups, ApplyDiscountPrices or * (repeatable; in the
    /// variable, separate rules with ';').
    #[arg(
        long = "allow",
        env = "DISCOUNT_ALLOW",
        value_delimiter = ';',
        default_value = "*=spiffe://shop.local/catalog",
        value_name = "RULE"
    )]
    pub allow: Vec<String>,

    // Where the operations port listens (`--ops-listen`, on by default on 127.0.0.1:9466).
    #[command(flatten)]
    pub ops: OpsFlags<DiscountNames>,

    /// Deprecated name of --ops-listen: takes effect, with a warning at start-up. Given with
    /// --ops-listen (or DISCOUNT_OPS_LISTEN), it stops start-up: say one.
    #[arg(
        long,
        env = "DISCOUNT_METRICS_LISTEN",
        hide = true,
        value_name = "ADDR",
        conflicts_with = "ops_listen"
    )]
    pub metrics_listen: Option<SocketAddr>,

    // Where the TLS files are and how they are watched.
    #[command(flatten)]
    pub tls: TlsFlags<DiscountNames>,

    /// Seconds a client may take to complete the TLS handshake, counted from its connection's
    /// acceptance; an unfinished one is closed (counted as unproven_timeout).
    #[arg(long, env = "DISCOUNT_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub handshake_timeout_secs: u64,

    // The caps on connections open and not yet proven (handshake not done): `--max-connections`,
    // `--max-unproven-connections`.
    #[command(flatten)]
    pub connections: ConnectionFlags<DiscountNames>,

    /// RPCs in progress at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
    /// Clients are told; a stock client queues calls beyond it until one ends, and a stream
    /// opened beyond it anyway is refused (REFUSED_STREAM, seen as UNAVAILABLE).
    #[arg(long, env = "DISCOUNT_MAX_CONCURRENT_STREAMS", default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrent_streams: u32,

    /// The largest request message, in bytes; a larger one is answered RESOURCE_EXHAUSTED.
    /// Catalog's largest request (4096 groups, 100,000 products) is under 2 MiB.
    #[arg(long, env = "DISCOUNT_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    pub max_message_bytes: u64,

    // Logging, worker threads and the drain deadline.
    #[command(flatten)]
    pub process: ProcessFlags<DiscountNames>,
}

impl Cli {
    /// Where the operations port listens, and the flag that says so: `--metrics-listen` when
    /// its deprecated name was given, else `--ops-listen`.
    pub fn ops_listen(&self) -> (OpsListen, &'static str) {
        match self.metrics_listen {
            Some(addr) => (OpsListen::At(addr), "--metrics-listen"),
            None => (self.ops.ops_listen, "--ops-listen"),
        }
    }

    /// Loads the TLS material (once: reloads read the same files) and builds the server
    /// settings.
    pub fn settings(&self) -> Result<ServerSettings, ConfigError> {
        let allow = AllowList::parse(&self.allow)?;
        let tls = self.tls.load()?;
        Ok(ServerSettings {
            allow,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            drain_timeout: self.process.drain_timeout(),
            max_connections: self.connections.max_connections as usize,
            max_unproven_connections: self.connections.max_unproven_connections as usize,
            max_concurrent_streams: self.max_concurrent_streams,
            // Its range fits in `usize` on every target Discount builds for (32 bits and up).
            max_message_bytes: usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX),
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
    fn the_operations_port_is_on_by_default_beside_catalog_s() {
        let cli = Cli::try_parse_from(["discount-service"]).unwrap();
        let default = OpsListen::At("127.0.0.1:9466".parse().unwrap());
        assert_eq!(cli.ops_listen(), (default, "--ops-listen"));
        let cli = Cli::try_parse_from(["discount-service", "--ops-listen", "off"]).unwrap();
        assert_eq!(cli.ops_listen(), (OpsListen::Off, "--ops-listen"));
    }

    #[test]
    fn the_deprecated_metrics_listen_stands_for_ops_listen() {
        let cli =
            Cli::try_parse_from(["discount-service", "--metrics-listen", "0.0.0.0:9464"]).unwrap();
        let given = OpsListen::At("0.0.0.0:9464".parse().unwrap());
        assert_eq!(cli.ops_listen(), (given, "--metrics-listen"));
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(!help.contains("--metrics-listen"), "hidden: {help}");
        assert!(help.contains("[env: DISCOUNT_OPS_LISTEN="), "{help}");
        assert!(help.contains("[default: 127.0.0.1:9466]"), "{help}");
    }

    #[test]
    fn metrics_listen_with_ops_listen_is_refused_naming_both() {
        let err = Cli::try_parse_from([
            "discount-service",
            "--metrics-listen",
            "127.0.0.1:9464",
            "--ops-listen",
            "127.0.0.1:9466",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let err = err.to_string();
        assert!(err.contains("--metrics-listen"), "{err}");
        assert!(err.contains("--ops-listen"), "{err}");
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
    fn limits_have_explicit_defaults() {
        let certs = tempfile::tempdir().unwrap();
        pki::certs_dir::gen_certs(&pki::certs_dir::GenCerts::new(certs.path(), 1)).unwrap();
        let dir = certs.path().to_str().unwrap();
        let cli = Cli::try_parse_from(["discount-service", "--certs-dir", dir]).unwrap();
        let settings = cli.settings().unwrap();
        assert_eq!(settings.max_connections, 1000);
        assert_eq!(settings.max_unproven_connections, 500);
        assert_eq!(settings.handshake_timeout, Duration::from_secs(10));
        assert_eq!(settings.max_concurrent_streams, 200);
        assert_eq!(settings.max_message_bytes, 4 * 1024 * 1024);

        let cli = Cli::try_parse_from([
            "discount-service",
            "--certs-dir",
            dir,
            "--max-connections",
            "7",
            "--max-unproven-connections",
            "5",
            "--handshake-timeout-secs",
            "2",
            "--max-concurrent-streams",
            "8",
            "--max-message-bytes",
            "9000",
        ])
        .unwrap();
        let settings = cli.settings().unwrap();
        assert_eq!(settings.max_connections, 7);
        assert_eq!(
            settings.connection_limits(),
            admission::Limits {
                max_connections: 7,
                max_unproven: 5,
                unproven_timeout: Duration::from_secs(2),
            }
        );
        assert_eq!(settings.max_concurrent_streams, 8);
        assert_eq!(settings.max_message_bytes, 9000);
    }

    #[test]
    fn bad_limits_name_the_flag() {
        for (flag, value) in [
            ("--max-connections", "0"),
            ("--max-connections", "many"),
            ("--max-unproven-connections", "0"),
            ("--handshake-timeout-secs", "0"),
            ("--handshake-timeout-secs", "601"),
            ("--max-concurrent-streams", "0"),
            ("--max-concurrent-streams", "100001"),
            ("--max-message-bytes", "1023"),
            ("--max-message-bytes", "4MiB"),
            ("--ops-listen", "9466"),
            ("--metrics-listen", "off"),
        ] {
            let err = Cli::try_parse_from(["discount-service", flag, value]).unwrap_err();
            assert!(err.to_string().contains(flag), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn help_documents_each_limit_with_its_variable_and_default() {
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for (flag, variable, default) in [
            ("--max-connections", "DISCOUNT_MAX_CONNECTIONS", "1000"),
            (
                "--max-unproven-connections",
                "DISCOUNT_MAX_UNPROVEN_CONNECTIONS",
                "500",
            ),
            (
                "--handshake-timeout-secs",
                "DISCOUNT_HANDSHAKE_TIMEOUT_SECS",
                "10",
            ),
            (
                "--max-concurrent-streams",
                "DISCOUNT_MAX_CONCURRENT_STREAMS",
                "200",
            ),
            (
                "--max-message-bytes",
                "DISCOUNT_MAX_MESSAGE_BYTES",
                "4194304",
            ),
        ] {
            let at = help
                .find(flag)
                .unwrap_or_else(|| panic!("{flag} in {help}"));
            let entry = &help[at..];
            let entry = &entry[..entry[2..].find("\n  -").map_or(entry.len(), |end| end + 2)];
            assert!(entry.contains(&format!("env: {variable}=")), "{entry}");
            assert!(entry.contains(&format!("default: {default}")), "{entry}");
        }
    }

    #[test]
    fn missing_files_name_the_path_and_the_fix() {
        let cli = Cli::try_parse_from(["discount-service", "--certs-dir", "/nonexistent"]).unwrap();
        let err = cli.settings().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        assert!(err.contains("gen-certs"), "{err}");
    }
}
