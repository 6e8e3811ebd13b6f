//! Getting the services up for the benchmark: the release build, each service's command
//! (certificates, a log file, the pass's `RUST_LOG` and flags, none of the caller's service
//! settings), and starting one Discount (with its operations port) and the Catalog processes a
//! pass needs on port 0, reading the address each one bound from the line it logs when it
//! listens.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::services::{Services, Startup, StopSignal, target_dir, wait_child};

use super::data::DataFiles;
use super::scenarios::{CatalogKind, PassSettings};

/// How long each service has to log that it listens.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What one pass has running.
#[derive(Debug)]
pub(super) struct Started {
    /// Every process started (stopped when dropped).
    pub(super) services: Services,
    /// Each Catalog's public HTTP address and its operations port (`/metrics`).
    pub(super) catalogs: Vec<(CatalogKind, CatalogAddrs)>,
    /// Discount's operations port (`/metrics`).
    pub(super) discount_metrics: SocketAddr,
}

/// Where one Catalog process answers.
#[derive(Debug, Clone, Copy)]
pub(super) struct CatalogAddrs {
    /// The public port (`/products`).
    pub(super) public: SocketAddr,
    /// The operations port (`/metrics`).
    pub(super) ops: SocketAddr,
}

/// Starts one Discount, then the Catalog processes of `kinds` pointed at it (their logs in
/// `logs`), run as `settings` says, each listening on a port the system picks, and waits until
/// every one has logged the address it listens on.
pub(super) fn start_services(
    bin_dir: &Path,
    certs: &Path,
    files: &DataFiles,
    logs: &Path,
    settings: &PassSettings,
    kinds: &[CatalogKind],
    stop: &StopSignal,
) -> anyhow::Result<Started> {
    let mut services = Services::new();
    let discount_log = logs.join("discount.log");
    let mut discount = service_command(
        &bin_dir.join("discount-service"),
        certs,
        &discount_log,
        settings.rust_log,
    )?;
    discount
        .args(["--listen", "127.0.0.1:0"])
        .args(&settings.discount_args);
    services.push(
        "discount-service",
        discount.spawn().context("cannot start discount-service")?,
    );
    let mut wait_discount = |marker| {
        wait_logged_addr(
            &mut services,
            "discount-service",
            &discount_log,
            marker,
            logs,
            stop,
            START_TIMEOUT,
        )
    };
    let discount_addr = wait_discount("Discount listening")?;
    let discount_metrics = wait_discount("Discount operations port listening")?;

    // Start every Catalog, then wait for each in turn.
    for &kind in kinds {
        let mut cmd = service_command(
            &bin_dir.join("catalog-service"),
            certs,
            &logs.join(kind.log_name()),
            settings.rust_log,
        )?;
        cmd.args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
            .args(["--discount-addr", &discount_addr.to_string()]);
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
        cmd.args(&settings.catalog_args);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", kind.process_name()))?;
        services.push(kind.process_name(), child);
    }
    let mut catalogs: Vec<(CatalogKind, CatalogAddrs)> = Vec::new();
    for &kind in kinds {
        let mut wait_catalog = |marker| {
            wait_logged_addr(
                &mut services,
                kind.process_name(),
                &logs.join(kind.log_name()),
                marker,
                logs,
                stop,
                START_TIMEOUT,
            )
        };
        let public = wait_catalog("Catalog listening")?;
        let ops = wait_catalog("Catalog operations port listening")?;
        catalogs.push((kind, CatalogAddrs { public, ops }));
    }
    Ok(Started {
        services,
        catalogs,
        discount_metrics,
    })
}

/// Waits until `name` writes a line containing `marker` to `log`, and returns the address in
/// it. Fails, with the end of the log concerned, if a service exits first or no such line
/// comes within `timeout`; fails too on Ctrl-C or SIGTERM. `logs` holds every service's log.
fn wait_logged_addr(
    services: &mut Services,
    name: &str,
    log: &Path,
    marker: &str,
    logs: &Path,
    stop: &StopSignal,
    timeout: Duration,
) -> anyhow::Result<SocketAddr> {
    let listening = || {
        let text = fs::read(log).with_context(|| format!("cannot read {}", log.display()))?;
        logged_addr(&String::from_utf8_lossy(&text), marker)
            .with_context(|| format!("{name}'s log {}", log.display()))
    };
    let not_up = || {
        format!(
            "{name} did not log that it listens (\"{marker}\" in {}) within {} s: {}",
            log.display(),
            timeout.as_secs_f64(),
            log_tail(log)
        )
    };
    match services.wait_until(stop, timeout, listening, not_up)? {
        Startup::Listening(addr) => Ok(addr),
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

/// The address in the first complete line of `log` that contains `marker`: the `addr=` field
/// of a text line (colour codes or not) or the `"addr"` member of a JSON line. `None` while
/// there is no such line yet; an error if the line holds no address.
fn logged_addr(log: &str, marker: &str) -> anyhow::Result<Option<SocketAddr>> {
    // A line still being written has no newline yet: wait for the rest of it.
    let complete = log.rfind('\n').map_or("", |end| &log[..end]);
    let Some(line) = complete
        .lines()
        .map(strip_ansi)
        .find(|line| line.contains(marker))
    else {
        return Ok(None);
    };
    let addr = if line.trim_start().starts_with('{') {
        serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|json| json.get("addr")?.as_str().map(str::to_owned))
    } else {
        line.split_whitespace()
            .find_map(|field| field.strip_prefix("addr="))
            .map(|addr| addr.trim_matches(|c| c == '"' || c == ',').to_owned())
    };
    let addr = addr.with_context(|| format!("no address in its line {line:?}"))?;
    addr.parse()
        .map(Some)
        .with_context(|| format!("bad address {addr:?} in its line {line:?}"))
}

/// `line` without ANSI escape sequences (the colours of text logs on a terminal).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
        } else if chars.next() == Some('[') {
            // A control sequence: parameters, then one final byte in '@'..='~'.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
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

/// A service command with its certificates, `RUST_LOG=rust_log`, its output appended to `log`,
/// and none of the services' environment variables from the caller's shell (so every run is
/// configured alike).
fn service_command(
    binary: &Path,
    certs: &Path,
    log: &Path,
    rust_log: &str,
) -> anyhow::Result<Command> {
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
            || key_text == "LOG_FORMAT"
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("RUST_LOG", rust_log)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `script` in `sh` as a service called `name` whose output goes to `log`.
    fn fake_service(services: &mut Services, name: &str, log: &Path, script: &str) {
        let file = File::create(log).unwrap();
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        services.push(name, child);
    }

    /// Waits as the benchmark does for the fake Discount, for at most `timeout`.
    fn wait_for_discount(script: &str, timeout: Duration) -> anyhow::Result<SocketAddr> {
        let logs = tempfile::tempdir().unwrap();
        let log = logs.path().join("discount.log");
        let mut services = Services::new();
        fake_service(&mut services, "discount-service", &log, script);
        let stop = StopSignal::never();
        wait_logged_addr(
            &mut services,
            "discount-service",
            &log,
            "Discount listening",
            logs.path(),
            &stop,
            timeout,
        )
    }

    #[test]
    fn waits_for_the_line_and_reads_its_address() {
        let addr = wait_for_discount(
            "echo starting; sleep 0.3; \
             echo 'INFO x: Discount listening (gRPC) addr=127.0.0.1:4242'; exec sleep 30",
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(addr, "127.0.0.1:4242".parse().unwrap());
    }

    #[test]
    fn a_service_that_exits_is_named_with_the_end_of_its_log() {
        let err = wait_for_discount(
            "echo 'ERROR --listen: cannot bind'; exit 3",
            Duration::from_secs(20),
        )
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("discount-service exited during start-up"),
            "{err}"
        );
        assert!(err.contains("cannot bind"), "{err}");
    }

    #[test]
    fn no_line_in_time_is_an_error_with_the_end_of_the_log() {
        let err = wait_for_discount(
            "echo 'INFO still loading'; exec sleep 30",
            Duration::from_millis(500),
        )
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("did not log that it listens"), "{err}");
        assert!(err.contains("still loading"), "{err}");
    }

    const DISCOUNT: &str = "2026-12-02T07:50:00.542683Z  INFO discount_service::server: \
        Discount listening (gRPC over mutual TLS 1.3) addr=127.0.0.1:41135\n";

    #[test]
    fn reads_the_address_of_a_text_line() {
        let log =
            format!("2026-12-02T07:50:00Z  INFO x: starting discount_addr=1.2.3.4:5\n{DISCOUNT}");
        let addr = logged_addr(&log, "Discount listening").unwrap();
        assert_eq!(addr, Some("127.0.0.1:41135".parse().unwrap()));
    }

    #[test]
    fn tells_the_grpc_port_from_the_operations_port() {
        let ops = "2026-12-02T07:50:00.540000Z  INFO discount_service::metrics_http: Discount \
            operations port listening (plain HTTP: /metrics, /healthz, /readyz) \
            addr=127.0.0.1:40001\n";
        let log = format!("{ops}{DISCOUNT}");
        let grpc = logged_addr(&log, "Discount listening").unwrap();
        assert_eq!(grpc, Some("127.0.0.1:41135".parse().unwrap()));
        let metrics = logged_addr(&log, "Discount operations port listening").unwrap();
        assert_eq!(metrics, Some("127.0.0.1:40001".parse().unwrap()));
    }

    #[test]
    fn reads_the_address_of_a_coloured_text_line() {
        let log = "\u{1b}[2m2026-12-02T07:50:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \
            \u{1b}[2mcatalog_service::app\u{1b}[0m\u{1b}[2m:\u{1b}[0m Catalog listening (HTTP) \
            \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:36155\n";
        let addr = logged_addr(log, "Catalog listening").unwrap();
        assert_eq!(addr, Some("127.0.0.1:36155".parse().unwrap()));
    }

    #[test]
    fn reads_the_address_of_a_json_line() {
        let log = r#"{"timestamp":"2026-12-02T07:50:00Z","level":"INFO","message":"Catalog listening (HTTP)","addr":"127.0.0.1:34755","target":"catalog_service::app"}
"#;
        let addr = logged_addr(log, "Catalog listening").unwrap();
        assert_eq!(addr, Some("127.0.0.1:34755".parse().unwrap()));
    }

    #[test]
    fn waits_for_a_whole_line() {
        assert_eq!(logged_addr("", "Discount listening").unwrap(), None);
        let partial = DISCOUNT.trim_end_matches('\n');
        assert_eq!(logged_addr(partial, "Discount listening").unwrap(), None);
        let other = "2026-12-02T07:50:00Z  INFO x: loading certificates\n";
        assert_eq!(logged_addr(other, "Discount listening").unwrap(), None);
    }

    #[test]
    fn a_line_without_an_address_is_an_error() {
        let log = "2026-12-02T07:50:00Z  INFO x: Discount listening somewhere\n";
        let err = logged_addr(log, "Discount listening").unwrap_err();
        assert!(format!("{err:#}").contains("no address"), "{err:#}");
        let log = "2026-12-02T07:50:00Z  INFO x: Discount listening addr=nowhere\n";
        let err = logged_addr(log, "Discount listening").unwrap_err();
        assert!(format!("{err:#}").contains("bad address"), "{err:#}");
    }
}
