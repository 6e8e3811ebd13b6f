//! The flags every service takes, declared once: where its TLS files are and how they are
//! watched ([`TlsFlags`]), where its operations port listens ([`OpsFlags`]), how its process
//! runs ([`ProcessFlags`]), and the caps on its public port's connections ([`ConnectionFlags`]).
//! A service flattens them into its own command line (`#[command(flatten)]`); the
//! environment-variable twins carry the service's prefix (`CATALOG_TLS_CA`,
//! `DISCOUNT_TLS_CA`...), named by a [`ServiceNames`] type that
//! [`service_names!`](crate::service_names) declares, with the service's own defaults; it also
//! names the connection flags (Catalog's keep the `--http-` of its HTTP flags).

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mtls::{ReloadSettings, TlsFileError, TlsFiles, TlsSource};

use crate::logging::LogFormat;

/// A service's name, the environment variables of its shared flags, and the defaults that
/// differ between services.
pub trait ServiceNames: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// The service's name: its files in the certs folder are `<NAME>.pem` and `<NAME>.key`.
    const NAME: &'static str;
    /// Variable for `--ops-listen`.
    const OPS_LISTEN: &'static str;
    /// Default of `--ops-listen`: a loopback address, a port of its own per service so that
    /// both run on one machine.
    const OPS_LISTEN_DEFAULT: &'static str;
    /// Variable for `--ca`.
    const TLS_CA: &'static str;
    /// Variable for `--cert`.
    const TLS_CERT: &'static str;
    /// Variable for `--key`.
    const TLS_KEY: &'static str;
    /// Variable for `--tls-reload-interval-secs`.
    const TLS_RELOAD_INTERVAL_SECS: &'static str;
    /// Variable for `--cert-expiry-warning-hours`.
    const CERT_EXPIRY_WARNING_HOURS: &'static str;
    /// Variable for `--worker-threads`.
    const WORKER_THREADS: &'static str;
    /// Variable for `--drain-timeout-secs`.
    const DRAIN_TIMEOUT_SECS: &'static str;
    /// The flag for the cap on open connections (`max-connections`, with the service's port
    /// prefix).
    const MAX_CONNECTIONS_FLAG: &'static str;
    /// Its variable.
    const MAX_CONNECTIONS: &'static str;
    /// The flag for the cap on unproven connections (`max-unproven-connections`, with the
    /// service's port prefix).
    const MAX_UNPROVEN_CONNECTIONS_FLAG: &'static str;
    /// Its variable.
    const MAX_UNPROVEN_CONNECTIONS: &'static str;
}

/// Declares a [`ServiceNames`] type:
/// `service_names!(pub Catalog, "catalog", "CATALOG", ops_listen = "127.0.0.1:9465");` names the
/// files `catalog.pem`/`catalog.key`, the variables `CATALOG_TLS_CA`, ..., `CATALOG_OPS_LISTEN`
/// (and gives `--ops-listen` its default), and the connection flags `--max-connections`
/// (`CATALOG_MAX_CONNECTIONS`), ...; a trailing `port: "http-", "CATALOG_HTTP"` names them
/// `--http-max-connections` (`CATALOG_HTTP_MAX_CONNECTIONS`), ... instead.
#[macro_export]
macro_rules! service_names {
    (
        $(#[$meta:meta])* $vis:vis $ty:ident, $name:literal, $prefix:literal,
        ops_listen = $ops_listen:literal
    ) => {
        $crate::service_names!(
            $(#[$meta])* $vis $ty, $name, $prefix, ops_listen = $ops_listen, port: "", $prefix
        );
    };
    (
        $(#[$meta:meta])* $vis:vis $ty:ident, $name:literal, $prefix:literal,
        ops_listen = $ops_listen:literal, port: $flag_prefix:literal, $port_prefix:literal
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        $vis struct $ty;

        impl $crate::flags::ServiceNames for $ty {
            const NAME: &'static str = $name;
            const OPS_LISTEN: &'static str = concat!($prefix, "_OPS_LISTEN");
            const OPS_LISTEN_DEFAULT: &'static str = $ops_listen;
            const TLS_CA: &'static str = concat!($prefix, "_TLS_CA");
            const TLS_CERT: &'static str = concat!($prefix, "_TLS_CERT");
            const TLS_KEY: &'static str = concat!($prefix, "_TLS_KEY");
            const TLS_RELOAD_INTERVAL_SECS: &'static str =
                concat!($prefix, "_TLS_RELOAD_INTERVAL_SECS");
            const CERT_EXPIRY_WARNING_HOURS: &'static str =
                concat!($prefix, "_CERT_EXPIRY_WARNING_HOURS");
            const WORKER_THREADS: &'static str = concat!($prefix, "_WORKER_THREADS");
            const DRAIN_TIMEOUT_SECS: &'static str = concat!($prefix, "_DRAIN_TIMEOUT_SECS");
            const MAX_CONNECTIONS_FLAG: &'static str = concat!($flag_prefix, "max-connections");
            const MAX_CONNECTIONS: &'static str = concat!($port_prefix, "_MAX_CONNECTIONS");
            const MAX_UNPROVEN_CONNECTIONS_FLAG: &'static str =
                concat!($flag_prefix, "max-unproven-connections");
            const MAX_UNPROVEN_CONNECTIONS: &'static str =
                concat!($port_prefix, "_MAX_UNPROVEN_CONNECTIONS");
        }
    };
}

/// Where a service's TLS material is and how it is watched for rotation.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsFlags<S: ServiceNames> {
    /// Folder holding `ca.pem`, `<service>.pem` and `<service>.key` (as written by
    /// `cargo xtask gen-certs`) [default: the repository's certs/ folder].
    #[arg(long, env = "CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,

    /// CA bundle that the peer's certificate must chain to [default: <certs-dir>/ca.pem].
    #[arg(long, env = S::TLS_CA)]
    pub ca: Option<PathBuf>,

    /// This service's certificate chain [default: <certs-dir>/<service>.pem].
    #[arg(long, env = S::TLS_CERT)]
    pub cert: Option<PathBuf>,

    /// This service's private key [default: <certs-dir>/<service>.key].
    #[arg(long, env = S::TLS_KEY)]
    pub key: Option<PathBuf>,

    /// Seconds between checks of the TLS files for a rotated certificate (SIGHUP also
    /// triggers a check).
    #[arg(long, env = S::TLS_RELOAD_INTERVAL_SECS, default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub tls_reload_interval_secs: u64,

    /// Warn when the certificate in use expires within this many hours.
    #[arg(long, env = S::CERT_EXPIRY_WARNING_HOURS, default_value_t = 12)]
    pub cert_expiry_warning_hours: u64,

    #[arg(skip)]
    service: PhantomData<S>,
}

impl<S: ServiceNames> TlsFlags<S> {
    /// The TLS files to load: each of `--ca`, `--cert`, `--key` if given, else its default in
    /// the certs folder.
    pub fn files(&self) -> TlsFiles {
        let dir = self.certs_dir.clone().unwrap_or_else(default_certs_dir);
        let defaults = TlsFiles::in_dir(&dir, S::NAME);
        TlsFiles {
            ca: self.ca.clone().unwrap_or(defaults.ca),
            cert: self.cert.clone().unwrap_or(defaults.cert),
            key: self.key.clone().unwrap_or(defaults.key),
        }
    }

    /// The files and how they are watched for rotation.
    pub fn reload_settings(&self) -> ReloadSettings {
        ReloadSettings::from_flags(
            self.files(),
            self.tls_reload_interval_secs,
            self.cert_expiry_warning_hours,
        )
    }

    /// Loads the files once: the service's TLS material from now on, reloaded from there.
    pub fn load(&self) -> Result<TlsSource, TlsFileError> {
        TlsSource::from_files(self.reload_settings())
    }
}

/// The repository's `certs/` folder, where `cargo xtask gen-certs` writes by default. Resolved
/// at build time, so a binary run from the repository finds it whatever the working directory;
/// a deployed binary is given `--certs-dir` or the file flags.
pub fn default_certs_dir() -> PathBuf {
    let this_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    this_crate.parent().unwrap_or(this_crate).join("certs")
}

/// Where a service's operations port ([`crate::ops`]) listens, or that it is off.
#[derive(Debug, Clone, clap::Args)]
pub struct OpsFlags<S: ServiceNames> {
    /// Address of the operations port (plain HTTP: /healthz, /readyz, /metrics), for probes
    /// and metrics scrapers, or `off`. No authentication: keep it off public interfaces.
    #[arg(long, env = S::OPS_LISTEN, default_value = S::OPS_LISTEN_DEFAULT,
          value_name = "ADDR|off")]
    pub ops_listen: OpsListen,

    #[arg(skip)]
    service: PhantomData<S>,
}

/// The value of `--ops-listen`: an address (`127.0.0.1:9465`, `0.0.0.0:9465`), or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsListen {
    /// No operations port.
    Off,
    /// The operations port on this address.
    At(SocketAddr),
}

impl OpsListen {
    /// Binds the address for the setting `flag` (the error names both), or nothing when off.
    pub async fn bind(self, flag: &str) -> anyhow::Result<Option<tokio::net::TcpListener>> {
        match self {
            OpsListen::Off => Ok(None),
            OpsListen::At(addr) => crate::process::bind(addr, flag).await.map(Some),
        }
    }
}

impl std::str::FromStr for OpsListen {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "off" {
            return Ok(OpsListen::Off);
        }
        value.parse().map(OpsListen::At).map_err(|_| {
            "expected an IP address and port, such as 127.0.0.1:9465 or 0.0.0.0:9465, or `off`"
                .to_owned()
        })
    }
}

impl std::fmt::Display for OpsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpsListen::Off => f.write_str("off"),
            OpsListen::At(addr) => addr.fmt(f),
        }
    }
}

/// How a service's process runs: its logs, its threads and how long it drains on shutdown.
#[derive(Debug, Clone, clap::Args)]
pub struct ProcessFlags<S: ServiceNames> {
    /// Log line format on stderr: `text` for people, `json` for log collectors.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Tokio worker threads [default: one per CPU core].
    #[arg(long, env = S::WORKER_THREADS,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,

    /// Seconds in-flight requests may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = S::DRAIN_TIMEOUT_SECS, default_value_t = 10)]
    pub drain_timeout_secs: u64,

    #[arg(skip)]
    service: PhantomData<S>,
}

impl<S: ServiceNames> ProcessFlags<S> {
    /// How long in-flight requests may take after a stop is asked for.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
}

/// The caps on the connections to a service's public port, admitted by the rules of the
/// [`admission`] crate (the deadline to prove itself is each service's own flag: Discount's
/// handshake timeout, Catalog's header timeout).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionFlags<S: ServiceNames> {
    /// Most connections open at once on --listen, unproven ones included. When all are taken, a
    /// new connection takes the place of the oldest unproven one (then, on Catalog, of the
    /// longest-idle keep-alive connection); only when every one is proven and in use is it
    /// closed unanswered. Keep it below the open-file limit (ulimit -n).
    #[arg(long = S::MAX_CONNECTIONS_FLAG, env = S::MAX_CONNECTIONS,
          default_value_t = admission::DEFAULT_MAX_CONNECTIONS as u32,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Most connections open at once that have not proved themselves yet (Discount: mutual-TLS
    /// handshake not done; Catalog: first request head not whole). Past it, a new connection
    /// takes the place of the oldest unproven one, so a flood only evicts itself; a real client
    /// proves itself long before this many newer connections arrive. At most
    /// the connection cap (a larger value acts as it).
    #[arg(long = S::MAX_UNPROVEN_CONNECTIONS_FLAG, env = S::MAX_UNPROVEN_CONNECTIONS,
          default_value_t = admission::DEFAULT_MAX_UNPROVEN as u32,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_unproven_connections: u32,

    #[arg(skip)]
    service: PhantomData<S>,
}

impl<S: ServiceNames> ConnectionFlags<S> {
    /// The admission rules, with `unproven_timeout` for a connection to prove itself.
    pub fn limits(&self, unproven_timeout: Duration) -> admission::Limits {
        admission::Limits {
            max_connections: self.max_connections as usize,
            max_unproven: self.max_unproven_connections as usize,
            unproven_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    crate::service_names!(Example, "example", "EXAMPLE", ops_listen = "127.0.0.1:9999");
    crate::service_names!(
        WebExample, "web", "WEB", ops_listen = "127.0.0.1:9998", port: "http-", "WEB_HTTP"
    );

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        tls: TlsFlags<Example>,
        #[command(flatten)]
        ops: OpsFlags<Example>,
        #[command(flatten)]
        process: ProcessFlags<Example>,
        #[command(flatten)]
        connections: ConnectionFlags<Example>,
    }

    #[derive(Debug, Parser)]
    struct WebCli {
        #[command(flatten)]
        connections: ConnectionFlags<WebExample>,
    }

    #[test]
    fn connection_caps_have_defaults_flags_and_variables_named_per_service() {
        let timeout = Duration::from_secs(3);
        let cli = Cli::try_parse_from(["example"]).unwrap();
        assert_eq!(
            cli.connections.limits(timeout),
            admission::Limits {
                max_connections: 1000,
                max_unproven: 500,
                unproven_timeout: timeout,
            }
        );
        let cli = Cli::try_parse_from([
            "example",
            "--max-connections=7",
            "--max-unproven-connections=3",
        ])
        .unwrap();
        let limits = cli.connections.limits(timeout);
        assert_eq!((limits.max_connections, limits.max_unproven), (7, 3));
        let web = WebCli::try_parse_from([
            "web",
            "--http-max-connections=9",
            "--http-max-unproven-connections=4",
        ])
        .unwrap();
        let limits = web.connections.limits(timeout);
        assert_eq!((limits.max_connections, limits.max_unproven), (9, 4));
        assert!(WebCli::try_parse_from(["web", "--max-connections=9"]).is_err());
        let help = |mut command: clap::Command| command.render_long_help().to_string();
        let example = help(<Cli as clap::CommandFactory>::command());
        let web = help(<WebCli as clap::CommandFactory>::command());
        for (help, var) in [
            (&example, "EXAMPLE_MAX_CONNECTIONS=]"),
            (&example, "EXAMPLE_MAX_UNPROVEN_CONNECTIONS=]"),
            (&web, "WEB_HTTP_MAX_CONNECTIONS=]"),
            (&web, "WEB_HTTP_MAX_UNPROVEN_CONNECTIONS=]"),
        ] {
            assert!(help.contains(&format!("[env: {var}")), "{var}:\n{help}");
        }
        for args in [
            &["--max-connections", "0"][..],
            &["--max-unproven-connections", "0"],
            &["--max-unproven-connections", "many"],
        ] {
            let err = Cli::try_parse_from(std::iter::once("example").chain(args.iter().copied()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(args[0]), "{err}");
        }
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("example").chain(args.iter().copied()))
    }

    #[test]
    fn the_operations_port_is_on_at_the_service_s_default_address() {
        let cli = parse(&[]).unwrap();
        let default = OpsListen::At("127.0.0.1:9999".parse().unwrap());
        assert_eq!(cli.ops.ops_listen, default);
    }

    #[test]
    fn the_operations_port_takes_an_address_or_off() {
        let cli = parse(&["--ops-listen", "0.0.0.0:9465"]).unwrap();
        assert_eq!(cli.ops.ops_listen.to_string(), "0.0.0.0:9465");
        let cli = parse(&["--ops-listen", "[::1]:0"]).unwrap();
        assert_eq!(cli.ops.ops_listen.to_string(), "[::1]:0");
        let cli = parse(&["--ops-listen", "off"]).unwrap();
        assert_eq!(cli.ops.ops_listen, OpsListen::Off);
    }

    #[tokio::test]
    async fn off_binds_nothing_and_an_address_binds_it() {
        assert!(OpsListen::Off.bind("--ops-listen").await.unwrap().is_none());
        let any_port = OpsListen::At("127.0.0.1:0".parse().unwrap());
        let listener = any_port.bind("--ops-listen").await.unwrap().unwrap();
        let taken = listener.local_addr().unwrap();
        let err = OpsListen::At(taken).bind("--ops-listen").await.unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.starts_with(&format!("--ops-listen {taken}: cannot bind")),
            "{err}"
        );
    }

    #[test]
    fn files_default_to_the_service_s_names_in_the_certs_folder() {
        let cli = Cli::try_parse_from(["example", "--certs-dir", "/srv/certs"]).unwrap();
        assert_eq!(
            cli.tls.files(),
            TlsFiles::in_dir("/srv/certs".as_ref(), "example")
        );
    }

    #[test]
    fn file_flags_override_the_folder() {
        let cli = Cli::try_parse_from(["example", "--key", "/k.pem"]).unwrap();
        assert_eq!(cli.tls.files().key, PathBuf::from("/k.pem"));
        assert!(cli.tls.files().ca.ends_with("certs/ca.pem"));
    }

    #[test]
    fn environment_variables_carry_the_service_s_prefix() {
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for var in [
            "EXAMPLE_TLS_CA",
            "EXAMPLE_TLS_CERT",
            "EXAMPLE_TLS_KEY",
            "EXAMPLE_TLS_RELOAD_INTERVAL_SECS",
            "EXAMPLE_CERT_EXPIRY_WARNING_HOURS",
            "EXAMPLE_WORKER_THREADS",
            "EXAMPLE_DRAIN_TIMEOUT_SECS",
            "EXAMPLE_OPS_LISTEN",
            "CERTS_DIR",
            "LOG_FORMAT",
        ] {
            assert!(
                help.contains(&format!("[env: {var}")),
                "{var} missing:\n{help}"
            );
        }
    }

    #[test]
    fn bad_values_name_the_flag() {
        for args in [
            &["--worker-threads", "0"][..],
            &["--tls-reload-interval-secs", "0"],
            &["--log-format", "xml"],
            &["--ops-listen", "9465"],
            &["--ops-listen", "localhost:9465"],
            &["--ops-listen", "OFF"],
            &["--ops-listen", ""],
        ] {
            let err = Cli::try_parse_from(std::iter::once("example").chain(args.iter().copied()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(args[0]), "{err}");
        }
    }

    #[test]
    fn missing_files_name_the_path_and_the_fix() {
        let cli = Cli::try_parse_from(["example", "--certs-dir", "/nonexistent"]).unwrap();
        let err = cli.tls.load().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        assert!(err.contains("gen-certs"), "{err}");
    }
}
