//! `cargo xtask <command>`: project automation (see `cargo xtask --help`).

mod bench;
mod services;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use pki::certs_dir::{self, GenCerts};
use services::{Services, Startup, StopSignal, target_dir};

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
    GenCerts {
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
    },
    /// Build and start Discount and Catalog on loopback (creating certificates if missing);
    /// Ctrl-C stops both.
    Up {
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
    },
    /// Load-test Catalog and Discount (release builds, on loopback ports the system picks) with wrk and
    /// write results.md, results.json and plot.svg to target/bench/.
    ///
    /// Scenarios: A GET /products; B with X-USER-ID: 1; C a mix of customers; D 100 of
    /// 10,000 products for customer 1; each at 1, 32 and 128 connections, with both services on
    /// their defaults; then A and B again in a tuned pass (access log off, one Discount worker
    /// thread), shown beside them. Needs wrk (installed with apt-get when missing and running
    /// as root).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::GenCerts {
            out,
            days,
            force,
            hours,
            services,
        } => {
            let dir = out.unwrap_or_else(default_certs_dir);
            gen_certs(&GenCerts {
                force,
                leaf_hours: hours,
                services,
                ..GenCerts::new(dir, days)
            })
        }
        Cmd::Up {
            certs,
            release,
            catalog_port,
            discount_port,
        } => up(
            &certs.unwrap_or_else(default_certs_dir),
            release,
            catalog_port,
            discount_port,
        ),
        Cmd::Bench(args) => bench::run(args),
    }
}

/// The workspace root, whatever the caller's working directory.
pub(crate) fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

fn default_certs_dir() -> PathBuf {
    workspace_root().join("certs")
}

fn gen_certs(opts: &GenCerts) -> anyhow::Result<()> {
    for w in certs_dir::gen_certs(opts)? {
        let action = if w.reused { "kept " } else { "wrote" };
        println!(
            "{action} {} + {}  {} (expires {})",
            w.cert_path.display(),
            w.key_path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            w.what,
            w.not_after.date()
        );
    }
    Ok(())
}

fn up(certs: &Path, release: bool, catalog_port: u16, discount_port: u16) -> anyhow::Result<()> {
    let stop = StopSignal::install()?;

    if certs_dir::is_complete(certs) {
        println!("using the certificates in {}", certs.display());
    } else {
        println!("no certificates in {}: creating them", certs.display());
        gen_certs(&GenCerts::new(certs, 365))?;
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(&cargo);
    build.args([
        "build",
        "--quiet",
        "-p",
        "discount-service",
        "-p",
        "catalog-service",
    ]);
    if release {
        build.arg("--release");
    }
    println!("building discount-service and catalog-service...");
    let status = build
        .current_dir(workspace_root())
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let bin_dir = target_dir().join(if release { "release" } else { "debug" });

    let discount_addr = format!("127.0.0.1:{discount_port}");
    let catalog_addr: SocketAddr = ([127, 0, 0, 1], catalog_port).into();
    let mut services = Services::new();
    let spawn = |name: &'static str, args: &[&str]| -> anyhow::Result<(&'static str, Child)> {
        let child = Command::new(bin_dir.join(name))
            .args(args)
            .arg("--certs-dir")
            .arg(certs)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok((name, child))
    };
    let (name, child) = spawn("discount-service", &["--listen", &discount_addr])?;
    services.push(name, child);
    let (name, child) = spawn(
        "catalog-service",
        &[
            "--listen",
            &catalog_addr.to_string(),
            "--discount-addr",
            // The address Discount binds, not `localhost`: where `localhost` also resolves to
            // `::1`, Catalog would see a second replica that never answers.
            &format!("127.0.0.1:{discount_port}"),
        ],
    )?;
    services.push(name, child);

    // Wait for Catalog to accept connections, or for a service to fail at start-up.
    match services.wait_listening(catalog_addr, &stop, Duration::from_secs(60), "Catalog")? {
        Startup::Listening(()) => {}
        Startup::Exited(name, status) => {
            bail!("{name} exited during start-up ({status}); see its error above")
        }
        Startup::Stopped => return Ok(()),
    }
    println!();
    println!("Catalog is up on http://{catalog_addr}, Discount on {discount_addr} (mutual TLS).");
    println!("Try:  curl -H 'X-USER-ID: 1' localhost:{catalog_port}/products");
    println!("Press Ctrl-C to stop both.");
    println!();

    loop {
        if let Some((name, status)) = services.exited() {
            bail!("{name} stopped unexpectedly ({status})");
        }
        if stop.wait(Duration::from_millis(200)) {
            break;
        }
    }
    services.stop();
    Ok(())
}
