//! Getting the services up for the benchmark: the release build, each service's command
//! (certificates, a log file, none of the caller's service settings), and starting one
//! Discount and the three Catalog processes, waiting until each Catalog listens.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::services::{Services, Startup, StopSignal, target_dir, wait_child};

use super::data::DataFiles;
use super::scenarios::CatalogKind;

/// Starts one Discount and the three Catalog processes (their logs in `logs`), and waits until
/// every Catalog listens. Returns the services (stopped when dropped) and each Catalog's
/// address.
pub(super) fn start_services(
    bin_dir: &Path,
    certs: &Path,
    files: &DataFiles,
    logs: &Path,
    discount_threads: u16,
    stop: &StopSignal,
) -> anyhow::Result<(Services, Vec<(CatalogKind, SocketAddr)>)> {
    // Start everything, then wait for each Catalog in turn.
    let ports = free_ports(1 + CatalogKind::ALL.len())?;
    let discount_port = ports[0];
    let mut services = Services::new();
    let discount_log = logs.join("discount.log");
    let mut discount = service_command(&bin_dir.join("discount-service"), certs, &discount_log)?;
    discount
        .args(["--listen", &format!("127.0.0.1:{discount_port}")])
        .args(["--worker-threads", &discount_threads.to_string()]);
    services.push(
        "discount-service",
        discount.spawn().context("cannot start discount-service")?,
    );
    let mut catalogs: Vec<(CatalogKind, SocketAddr)> = Vec::new();
    for (kind, port) in CatalogKind::ALL.into_iter().zip(&ports[1..]) {
        let addr = SocketAddr::from(([127, 0, 0, 1], *port));
        let mut cmd = service_command(
            &bin_dir.join("catalog-service"),
            certs,
            &logs.join(kind.log_name()),
        )?;
        cmd.args(["--listen", &addr.to_string()])
            .args(["--discount-addr", &format!("localhost:{discount_port}")]);
        match kind {
            CatalogKind::Spec => {}
            CatalogKind::Customers => {
                cmd.arg("--products").arg(&files.spec_products);
                cmd.arg("--customers").arg(&files.customers);
            }
            CatalogKind::Large => {
                cmd.arg("--products").arg(&files.large_products);
                cmd.arg("--customers").arg(&files.customers);
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", kind.process_name()))?;
        services.push(kind.process_name(), child);
        catalogs.push((kind, addr));
    }

    for &(kind, addr) in &catalogs {
        let startup =
            services.wait_listening(addr, stop, Duration::from_secs(60), kind.process_name())?;
        match startup {
            Startup::Listening => {}
            Startup::Stopped => bail!("interrupted"),
            Startup::Exited(who, status) => {
                let log = CatalogKind::ALL
                    .into_iter()
                    .find(|k| k.process_name() == who)
                    .map_or_else(|| logs.join("discount.log"), |k| logs.join(k.log_name()));
                bail!(
                    "{who} exited during start-up ({status}): {}",
                    log_tail(&log)
                );
            }
        }
    }
    Ok((services, catalogs))
}

/// `cargo build --release` of both services; returns the folder holding the binaries.
pub(super) fn build_release(stop: &StopSignal) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("building discount-service and catalog-service (release)...");
    let mut child = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "discount-service",
            "-p",
            "catalog-service",
        ])
        .current_dir(crate::workspace_root())
        .spawn()
        .context("cannot run cargo build")?;
    let status = wait_child(&mut child, "cargo build", stop, Duration::from_secs(3600))?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }
    Ok(target_dir().join("release"))
}

/// A service command with its certificates, its output appended to `log`, and none of the
/// services' environment variables from the caller's shell (so every run is configured alike).
fn service_command(binary: &Path, certs: &Path, log: &Path) -> anyhow::Result<Command> {
    let file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let file2 = file
        .try_clone()
        .with_context(|| format!("cannot reopen {}", log.display()))?;
    let mut cmd = Command::new(binary);
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("CATALOG_")
            || key_text.starts_with("DISCOUNT_")
            || key_text == "CERTS_DIR"
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .arg("--certs-dir")
        .arg(certs)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(file2));
    Ok(cmd)
}

/// The last few non-empty lines of a log, joined, for an error message.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    if tail.is_empty() {
        format!("(nothing in {})", path.display())
    } else {
        tail
    }
}

/// `n` distinct loopback ports that were free a moment ago.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find a free loopback port")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr().context("cannot read a bound port")?.port()))
        .collect()
}
