//! Getting the services up for the benchmark: the release build, each service's command
//! (certificates, a log file, the pass's `RUST_LOG` and flags, none of the caller's service
//! or `OTEL_*` settings), and starting one Discount (with its operations port) and the Catalog
//! processes a pass needs on port 0, reading the address each one bound from the line it logs
//! when it listens; in a traced pass, the OTLP receiver first, and both services pointed at it.

use std::ffi::OsString;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::services::{Services, Startup, StopSignal, target_dir, wait_child};

use super::data::DataFiles;
use super::logline::{log_tail, logged_addr};
use super::otlp;
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
    /// The OTLP receiver of a traced pass; after `services`, so that it is stopped after them
    /// when dropped.
    pub(super) receiver: Option<otlp::Receiver>,
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
/// every one has logged the address it listens on. A traced pass starts the OTLP receiver
/// before them.
pub(super) fn start_services(
    bin_dir: &Path,
    certs: &Path,
    files: &DataFiles,
    logs: &Path,
    settings: &PassSettings,
    kinds: &[CatalogKind],
    stop: &StopSignal,
) -> anyhow::Result<Started> {
    // Declared first, so dropped (stopped) after the services on an early return.
    let receiver = if settings.traced {
        Some(otlp::start(bin_dir, logs, stop)?)
    } else {
        None
    };
    let otel_env: Vec<(&str, String)> = receiver
        .iter()
        .flat_map(otlp::Receiver::service_env)
        .collect();
    let mut services = Services::new();
    let discount_log = logs.join("discount.log");
    let mut discount = service_command(
        &bin_dir.join("discount-service"),
        certs,
        &discount_log,
        settings.rust_log,
        &otel_env,
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
            &otel_env,
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
        receiver,
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

/// `cargo build --release` of both services, and of the OTLP receiver if `traced`; returns
/// the folder holding the binaries.
pub(super) fn build_release(stop: &StopSignal, traced: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut packages = vec!["discount-service", "catalog-service"];
    if traced {
        packages.push(otlp::BINARY);
    }
    println!("building {} (release)...", packages.join(", "));
    let mut child = Command::new(&cargo)
        .args(["build", "--release"])
        .args(packages.iter().flat_map(|p| ["-p", p]))
        .current_dir(crate::workspace_root())
        .spawn()
        .context("cannot run cargo build")?;
    let status = wait_child(&mut child, "cargo build", stop, Duration::from_secs(3600))?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }
    Ok(target_dir().join("release"))
}

/// A service command with its certificates, `RUST_LOG=rust_log`, the OpenTelemetry variables
/// `otel_env` (none: tracing off), its output appended to `log`, and none of the services'
/// environment variables, nor any `OTEL_*` one, from the caller's shell (so every run is
/// configured alike, and a shell cannot turn tracing on).
fn service_command(
    binary: &Path,
    certs: &Path,
    log: &Path,
    rust_log: &str,
    otel_env: &[(&str, String)],
) -> anyhow::Result<Command> {
    let file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let file2 = file
        .try_clone()
        .with_context(|| format!("cannot reopen {}", log.display()))?;
    let mut cmd = Command::new(binary);
    remove_service_vars(&mut cmd, std::env::vars_os().map(|(key, _)| key));
    cmd.envs(otel_env.iter().map(|(key, value)| (key, value)))
        .env("RUST_LOG", rust_log)
        .env("NO_COLOR", "1")
        .arg("--certs-dir")
        .arg(certs)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(file2));
    Ok(cmd)
}

/// Removes from `cmd`'s environment each of `inherited` that configures a service: its own
/// variables (`CATALOG_*`, `DISCOUNT_*`, `CERTS_DIR`, `LOG_FORMAT`) and OpenTelemetry's.
fn remove_service_vars(cmd: &mut Command, inherited: impl IntoIterator<Item = OsString>) {
    for key in inherited {
        let text = key.to_string_lossy();
        if ["CATALOG_", "DISCOUNT_", "OTEL_"]
            .iter()
            .any(|prefix| text.starts_with(prefix))
            || text == "CERTS_DIR"
            || text == "LOG_FORMAT"
        {
            cmd.env_remove(&key);
        }
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

    /// `cmd`'s environment changes: each variable with its value, `None` if removed.
    fn env_of(cmd: &Command) -> Vec<(String, Option<String>)> {
        let text = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
        cmd.get_envs()
            .map(|(k, v)| (text(k), v.map(text)))
            .collect()
    }

    #[test]
    fn services_inherit_no_otel_or_service_variable() {
        let mut cmd = Command::new("true");
        let inherited = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_SDK_DISABLED",
            "CATALOG_LISTEN",
            "DISCOUNT_LISTEN",
            "CERTS_DIR",
            "LOG_FORMAT",
            "PATH",
            "MY_OTEL_THING",
        ];
        remove_service_vars(&mut cmd, inherited.map(OsString::from));
        let removed: Vec<String> = env_of(&cmd).into_iter().map(|(k, _)| k).collect();
        let mut expected = inherited[..6].to_vec();
        expected.sort_unstable();
        assert_eq!(removed, expected, "{:?}", env_of(&cmd));
        assert!(env_of(&cmd).iter().all(|(_, v)| v.is_none()));
    }

    #[test]
    fn a_service_command_sets_otel_variables_only_when_traced() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("service.log");
        let plain = service_command(Path::new("true"), dir.path(), &log, "info", &[]).unwrap();
        let env = env_of(&plain);
        assert!(
            env.iter()
                .all(|(k, v)| !k.starts_with("OTEL_") || v.is_none()),
            "{env:?}"
        );
        assert!(env.contains(&("RUST_LOG".into(), Some("info".into()))));
        let otel = otlp::service_env("127.0.0.1:4317".parse().unwrap());
        let traced = service_command(Path::new("true"), dir.path(), &log, "info", &otel).unwrap();
        let env = env_of(&traced);
        for (key, value) in otel {
            assert!(env.contains(&(key.into(), Some(value))), "{env:?}");
        }
    }
}
