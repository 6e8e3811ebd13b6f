//! `cargo xtask <command>`: project automation (see `cargo xtask --help`).

mod bench;
mod database;
mod services;

use anyhow::Result;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::{Parser, Subcommand};
use pki::certs_dir::{self, GenCerts};
use process_testing::Services;
use services::StopSignal;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create the private CA and the Discount and Catalog certificates.
    ///
    /// An existing CA is kept (only the service certificates are re-issued) unless --force.
    GenCerts(GenCertsArgs),
    /// Build and start Discount and Catalog on loopback (creating certificates if missing);
    /// Ctrl-C stops both. With --database, the catalog lives in a throwaway PostgreSQL.
    Up(UpArgs),
    /// Load-test Catalog and Discount (release builds, on loopback) with wrk and write
    /// results.md, results.json and plot.svg to target/bench/.
    ///
    /// Scenarios A to D (A GET /products; B with X-USER-ID: 1; C a mix of customers; D 100 of
    /// 10,000 products, beside D-plain: the same without X-USER-ID), and A and B served from
    /// PostgreSQL, at 1, 32 and 128 connections with both services on their defaults; A and B
    /// tuned; then Catalog following PostgreSQL. Needs wrk and, unless --no-database,
    /// PostgreSQL (Debian's; wrk installed with apt-get as root).
    Bench(bench::BenchArgs),
}

#[derive(Debug, clap::Args)]
struct GenCertsArgs {
    /// Output folder [default: certs/ at the workspace root].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Validity of new certificates, in days.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Replace an existing CA (everything it signed stops being trusted).
    #[arg(long)]
    force: bool,
    /// Make the service certificates valid for this many hours instead (short-lived
    /// certificates, to exercise rotation).
    #[arg(long, value_name = "N")]
    hours: Option<u32>,
    /// Issue a client certificate for this service only (repeatable), e.g. `--service
    /// reports` writes reports.pem and reports.key with identity
    /// spiffe://shop.local/reports.
    #[arg(long = "service", value_name = "NAME")]
    services: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Certificate folder [default: certs/ at the workspace root].
    #[arg(long)]
    certs: Option<PathBuf>,
    /// Build and run optimised binaries.
    #[arg(long)]
    release: bool,
    /// Catalog's HTTP port.
    #[arg(long, default_value_t = 11080)]
    catalog_port: u16,
    /// Discount's gRPC port.
    #[arg(long, default_value_t = 11443)]
    discount_port: u16,
    /// Serve the catalog from a throwaway PostgreSQL (the machine's own installation: Debian's
    /// `postgresql` package), over mutual TLS 1.3, loaded with the sample data; removed on
    /// Ctrl-C.
    #[arg(long)]
    database: bool,
}

fn main() -> ExitCode {
    let done = match Cli::parse().command {
        Cmd::GenCerts(args) => {
            let mut opts = GenCerts::new(args.out.unwrap_or_else(default_certs_dir), args.days);
            (opts.force, opts.leaf_hours, opts.services) = (args.force, args.hours, args.services);
            gen_certs(&opts)
        }
        Cmd::Up(args) => up(args),
        Cmd::Bench(args) => bench::run(args),
    };
    if let Err(err) = done {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The workspace root, whatever the caller's working directory.
pub(crate) fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

fn default_certs_dir() -> PathBuf {
    workspace_root().join("certs")
}

fn gen_certs(opts: &GenCerts) -> Result<()> {
    for w in certs_dir::gen_certs(opts)? {
        let action = if w.reused { "kept " } else { "wrote" };
        let key = w.key_path.file_name().unwrap_or_default().to_string_lossy();
        let (cert, what, expires) = (w.cert_path.display(), w.what, w.not_after.date());
        println!("{action} {cert} + {key}  {what} (expires {expires})");
    }
    Ok(())
}

fn up(args: UpArgs) -> Result<()> {
    let stop = StopSignal::install()?;
    let certs = &args.certs.unwrap_or_else(default_certs_dir);
    if certs_dir::is_complete(certs) {
        println!("using the certificates in {}", certs.display());
    } else {
        println!("certificates missing in {}: creating them", certs.display());
        gen_certs(&GenCerts::new(certs, 365))?;
    }

    let services = ["discount-service", "catalog-service"];
    let bin_dir = services::cargo_build(&services, args.release, &stop)?;

    // Catalog is given the address Discount binds, not `localhost`: where `localhost` also
    // resolves to `::1`, Catalog would see a second replica that never answers.
    let (catalog_port, discount_port) = (args.catalog_port, args.discount_port);
    let discount_addr = SocketAddr::from(([127, 0, 0, 1], discount_port)).to_string();
    let catalog_addr = SocketAddr::from(([127, 0, 0, 1], catalog_port));
    let command = |name: &str| {
        let mut cmd = Command::new(bin_dir.join(name));
        cmd.arg("--certs-dir").arg(certs);
        cmd
    };
    // Declared before the services: dropped (stopped, removed) after them.
    let start = || database::start(certs, &bin_dir, &stop);
    let database = args.database.then(start).transpose()?;
    let mut services = Services::default();
    let mut discount = command("discount-service");
    discount.args(["--listen", &discount_addr]);
    services.spawn("discount-service", &mut discount, None)?;
    let mut catalog = command("catalog-service");
    catalog.arg("--listen").arg(catalog_addr.to_string());
    catalog.args(["--discount-addr", &discount_addr]);
    if let Some(cluster) = &database {
        catalog.args(["--database-url", &cluster.tls_url("catalog")]);
    }
    services.spawn("catalog-service", &mut catalog, None)?;

    let connect = || TcpStream::connect_timeout(&catalog_addr, Duration::from_millis(200));
    let not_up = || format!("Catalog did not start listening on {catalog_addr} within 60 s");
    let limit = Duration::from_secs(60);
    // The probe connection is closed at once: held, Catalog would drop it as unproven.
    let interrupted = || stop.requested();
    let up = services.wait_until(&interrupted, limit, || Ok(connect().ok().map(drop)), not_up)?;
    if up.is_none() {
        return Ok(());
    }
    println!("\nCatalog is up on http://{catalog_addr}, Discount on {discount_addr} (mutual TLS).");
    println!("Try:  curl -H 'X-USER-ID: 1' localhost:{catalog_port}/products");
    if let Some(cluster) = &database {
        database::print_try(cluster);
    }
    println!("Press Ctrl-C to stop.\n");
    while !stop.wait(Duration::from_millis(200)) {
        services.exited()?;
    }
    services.stop();
    Ok(())
}
