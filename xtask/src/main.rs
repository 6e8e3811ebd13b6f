//! `cargo xtask <command>`: project automation (see `cargo xtask --help`).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use xtask::certs_dir::{self, GenCerts};

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
        Cmd::GenCerts { out, days, force } => {
            let dir = out.unwrap_or_else(default_certs_dir);
            gen_certs(&GenCerts { dir, days, force })
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
    }
}

fn default_certs_dir() -> PathBuf {
    xtask::workspace_root().join("certs")
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

/// Child processes that are sent SIGTERM (then killed, if they do not stop) when dropped, so
/// nothing outlives `up`, whichever way it ends.
struct Services(Vec<(&'static str, Child)>);

impl Services {
    fn stop(&mut self) {
        for (name, child) in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let pid = rustix::process::Pid::from_child(child);
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                eprintln!("stopping {name}...");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for (name, child) in &mut self.0 {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        eprintln!("{name} exited ({status})");
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        eprintln!("{name} did not stop in time; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.0.clear();
    }

    /// The first service that has exited, if any.
    fn exited(&mut self) -> Option<(&'static str, std::process::ExitStatus)> {
        self.0
            .iter_mut()
            .find_map(|(name, child)| child.try_wait().ok().flatten().map(|s| (*name, s)))
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop();
    }
}

fn up(certs: &Path, release: bool, catalog_port: u16, discount_port: u16) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;

    if certs_dir::is_complete(certs) {
        println!("using the certificates in {}", certs.display());
    } else {
        println!("no certificates in {}: creating them", certs.display());
        gen_certs(&GenCerts {
            dir: certs.to_owned(),
            days: 365,
            force: false,
        })?;
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
        .current_dir(xtask::workspace_root())
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let bin_dir = target_dir().join(if release { "release" } else { "debug" });

    let discount_addr = format!("127.0.0.1:{discount_port}");
    let catalog_addr: SocketAddr = ([127, 0, 0, 1], catalog_port).into();
    let mut services = Services(Vec::new());
    let spawn = |name: &'static str, args: &[&str]| -> anyhow::Result<(&'static str, Child)> {
        let child = Command::new(bin_dir.join(name))
            .args(args)
            .arg("--certs-dir")
            .arg(certs)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok((name, child))
    };
    services
        .0
        .push(spawn("discount-service", &["--listen", &discount_addr])?);
    services.0.push(spawn(
        "catalog-service",
        &[
            "--listen",
            &catalog_addr.to_string(),
            "--discount-addr",
            &format!("localhost:{discount_port}"),
        ],
    )?);

    // Wait for Catalog to accept connections, or for a service to fail at start-up.
    let started = Instant::now();
    loop {
        if let Some((name, status)) = services.exited() {
            bail!("{name} exited during start-up ({status}); see its error above");
        }
        if stop_rx.try_recv().is_ok() {
            return Ok(());
        }
        if TcpStream::connect_timeout(&catalog_addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("Catalog did not start listening on {catalog_addr} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
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
        match stop_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    services.stop();
    Ok(())
}

/// Cargo's target folder, honouring `CARGO_TARGET_DIR`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                xtask::workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| xtask::workspace_root().join("target"))
}
